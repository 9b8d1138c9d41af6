# xds-ingress: the two commands a newcomer needs are `make run` and `make test`.
SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench reliability lint golden clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m xds_ingress.demo

test: $(STAMP)
	$(BIN)/lint-imports --no-cache
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

golden: $(STAMP)
	$(BIN)/python -m pytest tests/test_golden.py --update-golden

# Benchmarks: tables printed, JSON in bench/results/. BENCH_ARGS=--quick (a smoke run), --only 1,4, --help.
# The reliability scenarios with their figures printed (they also run in `make test`, where the churn and the
# property tests are short: XDS_RELIABILITY_LONG=1 makes them long here, about 2 minutes more).
reliability: $(STAMP)
	set -o pipefail; XDS_RELIABILITY_LONG=1 PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -s -q \
		tests/test_reliability.py tests/test_make_before_break.py tests/test_envoy_properties.py \
		tests/test_hostile_manifests.py tests/test_edge_security.py tests/test_kube_e2e.py \
		tests/test_e2e_routing.py -k "not matching" 2>&1 | grep -E "^(make before break|NACK|churn|secrets|properties|control plane|Envoy restarted|drain then|hostile corpus|slow headers|leader handover|Envoy moved|edits under load|[0-9]+ mutations|[0-9]+ (passed|failed)|FAILED)"

bench: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
