# dbsnap developer tasks. `make test` on a fresh clone installs everything into .venv and runs the tests;
# run again, it only runs the tests (the install is redone when pyproject.toml changes).

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
LINT_PATHS := dbsnap tests bench examples
PYTEST_ARGS ?=
# Tests run in this many processes (pytest-xdist; 0 = in this one): most of a test's time is child processes and
# servers working, so two workers on two cores finish the suite sooner. Every test owns its databases and folders.
PYTEST_WORKERS ?= 2

.PHONY: venv test test-faults lint demo

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -e '.[test]'
	touch $@

test: venv
	$(VENV)/bin/python -m pytest -q -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# What the main suite leaves out for its time budget: the kill -9 / SIGTERM sweeps (tests marked `sweep`) and the
# slow real-project and blocking-session tests (marked `slow`). .ci/run runs it after `make test`.
test-faults: venv
	$(VENV)/bin/python -m pytest -q -n $(PYTEST_WORKERS) -m 'sweep or slow' $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

demo: venv
	bash examples/demo.sh
