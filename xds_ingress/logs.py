"""structlog set up once: JSON lines when not on a terminal (containers), readable colours on a TTY."""

from __future__ import annotations

import logging
import sys

import structlog

LEVELS = ("debug", "info", "warning", "error")


def configure(level: str = "info", *, json: bool | None = None, stream=None) -> None:
    """`stream` defaults to whatever sys.stderr is at the time of each log call."""
    target = stream
    stream = stream or sys.stderr
    if json is None:
        json = not (hasattr(stream, "isatty") and stream.isatty())
    colors = hasattr(stream, "isatty") and stream.isatty()
    renderer = (structlog.processors.JSONRenderer() if json
                else structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=structlog.dev.plain_traceback))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=(structlog.PrintLoggerFactory(file=target) if target is not None
                        else (lambda *_: structlog.PrintLogger(file=sys.stderr))),
        cache_logger_on_first_use=False,
    )
