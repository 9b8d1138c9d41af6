"""pytest plugin: a failing test's report gets the log tail of every running Envoy.

Enable it with ``pytest_plugins = ["tests.harness.pytest_plugin"]`` in the root conftest.
"""

from __future__ import annotations

import time
from collections.abc import Generator

import pytest

from .envoy import Envoy


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach "envoy log" sections to failed setup/call reports."""
    report = yield
    envoys = [e for e in list(Envoy.running) if e.returncode is None]
    if report.failed and envoys:
        time.sleep(0.15)  # Envoy flushes its log file every 100 ms
        for e in envoys:
            report.sections.append((f"envoy log tail (pid {e.pid}, {e.log_path})", e.log_tail(60)))
    return report
