"""Shared pytest setup."""

pytest_plugins = ["tests.harness.pytest_plugin"]


def pytest_addoption(parser):
    parser.addoption(
        "--update-golden", action="store_true", default=False,
        help="rewrite the expected files under tests/golden/ and delete orphaned ones (make golden)")
