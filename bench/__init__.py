"""Benchmarks of xds-ingress: `python -m bench` (or `make bench`). Not tests: no timing asserts.

Each benchmark prints a table and writes JSON to bench/results/. See bench/__main__.py for the
options and README.md ("Performance") for the latest figures.
"""
