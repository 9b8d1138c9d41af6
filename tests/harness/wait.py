"""Bounded polling for tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_until"]

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "",
) -> T:
    """Call `predicate` until it returns a truthy value and return that value.

    Exceptions raised by the predicate count as falsy. After `timeout` seconds an
    AssertionError names `message`, the last value and the last exception.
    """
    deadline = time.monotonic() + timeout
    last_value: object = None
    last_exc: BaseException | None = None
    attempts = 0
    while True:
        attempts += 1
        try:
            value = predicate()
        except Exception as exc:  # noqa: BLE001 - a failing probe is "not yet"
            last_exc = exc
        else:
            if value:
                return value
            last_value = value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(interval, remaining))
    detail = f"last value {last_value!r}"
    if last_exc is not None:
        detail += f", last exception {type(last_exc).__name__}: {last_exc}"
    raise AssertionError(
        f"timed out after {timeout:.1f}s ({attempts} attempts)"
        f"{': ' + message if message else ''}; {detail}"
    ) from last_exc
