"""Shared pytest setup."""

pytest_plugins = ["tests.harness.pytest_plugin"]
