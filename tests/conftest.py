"""Shared pytest setup."""

import pytest

pytest_plugins = ["tests.harness.pytest_plugin"]


def pytest_addoption(parser):
    parser.addoption(
        "--update-golden", action="store_true", default=False,
        help="rewrite the expected files under tests/golden/ and delete orphaned ones (make golden)")


def pytest_configure(config):
    # Readable log lines in captured output (no colour codes, plain tracebacks).
    from xds_ingress import logs

    logs.configure("debug", json=False)


@pytest.fixture(autouse=True)
def _test_log_format():
    """Every test starts with the readable log format of pytest_configure: a command run in-process (cli.main)
    configures logging for its own process, JSON when stderr is no terminal, and must not change how the
    tests after it read their captured log lines."""
    yield
    from xds_ingress import logs

    logs.configure("debug", json=False)
