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

.PHONY: venv test test-faults test-docker lint demo

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
	$(VENV)/bin/python -m pytest -q -n $(PYTEST_WORKERS) -m '(sweep or slow) and not docker' $(PYTEST_ARGS)

# dbsnap on the host, PostgreSQL and Django in docker compose services (tests marked `docker`): installs the engine
# if needed (Debian's docker.io + compose), starts dockerd if it is stopped, builds the test images (reused on later
# runs), runs the tests, and stops dockerd again only if it started it. DBSNAP_TEST_SKIP_DOCKER=1 skips, loudly.
test-docker: venv
	@if [ -n "$$DBSNAP_TEST_SKIP_DOCKER" ] && [ -z "$$CI" ]; then echo "SKIPPED: make test-docker (DBSNAP_TEST_SKIP_DOCKER is set)"; exit 0; fi; \
	bash tests/docker/setup.sh up || { echo "FATAL: no container engine could be started for the docker tests" >&2; exit 1; }; \
	rc=0; $(VENV)/bin/python -m pytest -q -n $(PYTEST_WORKERS) -m docker $(PYTEST_ARGS) tests/test_docker.py || rc=$$?; \
	bash tests/docker/setup.sh down; exit $$rc

lint: venv
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

demo: venv
	bash examples/demo.sh
