# Qingshou — one entry point for developers, CI and ops.
#   make demo   install what is missing, start Kafka, PostgreSQL and the services, check health
#   make test   install what is missing, start the infrastructure, lint, type-check, run all tests
SHELL := /bin/bash
.DEFAULT_GOAL := help
ROOT := $(abspath .)
export QS_HOME ?= $(ROOT)/.local
# Byte-code caches, under .local rather than beside the sources: a machine that sets
# PYTHONDONTWRITEBYTECODE made every Python process compile pydantic, SQLAlchemy, FastAPI and
# ours from source again (about 3.7 s of CPU per start: a service, a test subprocess, a
# restart after a crash). Python checks each cache against its source's mtime and size.
export PYTHONDONTWRITEBYTECODE :=
export PYTHONPYCACHEPREFIX ?= $(QS_HOME)/pycache
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
PYTEST_ARGS ?=
BENCHES := staging incentives notifier ingest

.PHONY: help venv deps infra up down clean demo test test-quick lint typecheck bench status \
	$(addprefix bench-,$(BENCHES))

help:
	@echo "make demo | up | down | clean | status | test | test-quick | lint | bench | bench-<service>"

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@test -x $(VENV)/bin/uv || $(PY) -m pip install -q uv==0.13.8
	@$(VENV)/bin/uv pip install --python $(PY) -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

venv: $(STAMP)

deps:
	@bash scripts/deps.sh

infra: venv deps
	@bash scripts/pg.sh start
	@bash scripts/kafka.sh start

up: infra
	@$(PY) -m shared.cli topics
	@bash scripts/stack.sh start

status:
	@bash scripts/stack.sh status

down:
	@bash scripts/stack.sh stop
	@bash scripts/kafka.sh stop
	@bash scripts/pg.sh stop

clean: down
	rm -rf $(QS_HOME)

# The demo plays business dates, not the wall clock: the notifier must run with the simulation
# clock (services already running keep the clock they were started with).
QS_DEMO_LOANS ?= 2000
QS_DEMO_DAYS ?= 120
demo: export QS_SIMULATION_CLOCK ?= true
demo: up
	@$(PY) -m shared.cli check
	@$(PY) -m shared.cli demo play --loans $(QS_DEMO_LOANS) --days $(QS_DEMO_DAYS)

lint: venv
	$(VENV)/bin/ruff check .

typecheck: venv
	$(VENV)/bin/mypy

test: infra lint typecheck
	$(PY) -m pytest $(PYTEST_ARGS)

test-quick: venv lint
	$(PY) -m pytest -m "not integration and not e2e and not slow" $(PYTEST_ARGS)

bench: infra
	$(PY) -m shared.cli bench runner --processes 2

# A service's own benchmark with this Makefile's byte-code cache (a worker process started
# without it compiles its imports from source first, on this machine about 2 s of CPU beside
# the consumer already timed): make bench-staging ARGS="200000 0 2 --business-date 2026-02-10"
$(addprefix bench-,$(BENCHES)): bench-%: infra
	$(PY) -m services.$*.bench $(ARGS)
