"""Shared pytest setup."""

pytest_plugins = ["tests.harness.pytest_plugin"]


def pytest_addoption(parser):
    parser.addoption(
        "--update-golden", action="store_true", default=False,
        help="rewrite the expected files under tests/golden/ and delete orphaned ones (make golden)")


def pytest_configure(config):
    # Readable log lines in captured output (no colour codes, plain tracebacks).
    from xds_ingress import logs

    logs.configure("debug", json=False)
