# The two commands of the README: `make demo` and `make test`. Both bootstrap a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help
# uv from PATH, else as a module of python3 (installed with pip on first use).
UV ?= $(shell command -v uv 2>/dev/null || echo python3 -m uv)
DEB_PACKAGES := git docker-registry chromium postgresql
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export UV_LINK_MODE := copy
# Two pytest workers (pytest-xdist), a test file per worker at a time: the tests mostly wait on
# servers, so two run in about 60% of the time of one. PYTEST_ARGS= runs them in one process.
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: help uv bootstrap deps lint test test-postgres demo

help:
	@echo "make demo   start the sandbox, a Prefect server and worker, and promote v1.0.1"
	@echo "make test   lint, type-check and run every test"

uv:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv

deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages; run: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

bootstrap: uv deps
	@$(UV) sync --frozen --quiet --group dev --group sandbox

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

test: lint
	.venv/bin/pytest $(PYTEST_ARGS)

# The pipeline tests again, on a Prefect server on PostgreSQL (a throwaway cluster per pytest
# worker); `make test` runs them on SQLite and tests/postgres on PostgreSQL with two workers.
test-postgres: bootstrap
	RELEASE_PROMOTION_TEST_DATABASE=postgres .venv/bin/pytest $(PYTEST_ARGS) tests/pipeline tests/postgres

demo: bootstrap
	.venv/bin/python -m deployments.demo $(ARGS)
