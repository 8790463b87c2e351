# Two commands do everything on a fresh machine: `make main` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := pip install -q --disable-pip-version-check
UV_INSTALL = $(BIN)/uv pip install -q --python $(BIN)/python
# The pinned, hash-checked dependencies: requirements-dev.lock for this venv (every extra make
# and CI use), requirements.lock for a worker or the image (flows only). `make lock` re-resolves.
LOCK := requirements-dev.lock
UV_VERSION := 0.13.9
LOCK_ARGS := --universal --python-version 3.11 --generate-hashes --no-header -q

.PHONY: main test test-all lint install-server lock image-steps

# uv installs the lock in seconds where pip took about 2.5 min of one core (CI waits on it).
$(BIN)/.installed: pyproject.toml $(LOCK)
	$(PY) -m venv $(VENV)
	$(BIN)/$(PIP) 'uv==$(UV_VERSION)'
	$(UV_INSTALL) --require-hashes -r $(LOCK)
	$(UV_INSTALL) --no-deps -e .
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

## Lint, then every test, the slow production-size cases included, in the same two workers;
## fails when the reliability tally (added up from both) is below its bars (tests/tally.py).
test-all: install-server
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q -n 2 --dist loadfile --tally-bars

## The Dockerfile's build steps without docker (CI has none): each COPY into a temporary
## directory, each pip step into a fresh venv, then every flow loaded from there.
image-steps: $(BIN)/.installed
	$(BIN)/python scripts/dockerfile_steps.py

## Re-resolve both lock files from pyproject.toml (needs PyPI; keeps every pin that still fits,
## `make lock UPGRADE=--upgrade` takes the newest). The runtime lock is held to the dev lock's pins.
lock:
	$(PY) -m venv .venv-lock
	.venv-lock/bin/$(PIP) 'uv==$(UV_VERSION)'
	.venv-lock/bin/uv pip compile pyproject.toml $(LOCK_ARGS) $(UPGRADE) \
		--extra test --extra lint --extra browser --extra dask --extra s3 -o requirements-dev.lock
	.venv-lock/bin/uv pip compile pyproject.toml $(LOCK_ARGS) \
		--extra dask --extra s3 -c requirements-dev.lock -o requirements.lock
