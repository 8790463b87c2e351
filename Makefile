# Two commands do everything on a fresh machine: `make main` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: main test test-all lint install-server

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test,lint,browser,dask]'
	touch $@

install-server: $(BIN)/.installed
	$(BIN)/python -m local_stack install

## Nightly regeneration end to end on the local default (local server, local Prefect).
main: install-server
	$(BIN)/python -m flows.main_job

## Lint, then the tests CI runs: unit, integration against the real server, reliability
## (the production-size cases marked slow are left to test-all). Two pytest-xdist workers,
## each with its own server and Prefect test API, a test file per worker at a time.
test: install-server
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q -m "not slow" -n 2 --dist loadfile

## Lint, then every test, the slow production-size cases included; fails when the reliability
## tally is below its bars (tests/tally.py).
test-all: install-server
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q --tally-bars
