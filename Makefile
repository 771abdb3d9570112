# One front door for the commands the README documents and CI runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MANAGE := $(BIN)/python manage.py
ROWS ?= 1000000
WORKERS ?= 2
# Test files run in parallel, a file's tests on one worker (they share fixtures and
# tables); the chaos tests restart the shared servers and run alone, afterwards.
PYTEST_WORKERS ?= 2
PARALLEL := -n $(PYTEST_WORKERS) --dist loadfile
# What PostgreSQL 18 changed for this project: NOT NULL (contract, checks,
# makebackfill), the schema steps and their gap waiter and guard, tables of
# every key shape with real workers, and pacing's signals.
PG18_TESTS := tests/backfill/test_not_null_versions.py tests/backfill/test_enforce_not_null.py \
	tests/backfill/test_contract_races.py \
	tests/backfill/test_scaffold.py tests/backfill/test_deploy_check.py tests/backfill/test_plan.py \
	tests/backfill/test_schema_gaps.py tests/organizations/test_write_guard.py \
	tests/organizations/test_expand_migration.py tests/examples/test_tables.py \
	tests/backfill/test_pacing.py tests/backfill/test_latency_probe.py
PG18_WORKERS ?= 1
# A broker database per pytest worker, the two runs' lists disjoint (tests/settings.py
# stops a run whose workers outnumber its list).
SUITE_REDIS_DBS ?= 15,14,11,10,9,8
PG18_REDIS_DBS ?= 13,12
# These targets are for a development machine: DEBUG on (and with it a
# development SECRET_KEY) unless the caller says otherwise. Production sets
# DEBUG=false and SECRET_KEY (README, "Deploying"). `make web` serves the
# dashboard, so it runs as in production unless asked: `make web DEBUG=true`.
ifeq ($(filter web,$(MAKECMDGOALS)),web)
ifeq ($(origin DEBUG),undefined)
DEBUG := false
endif
ifneq ($(DEBUG),true)
ifeq ($(strip $(SECRET_KEY)),)
$(error SECRET_KEY is not set: export SECRET_KEY="$$(python3 -c 'import secrets; print(secrets.token_urlsafe(50))')" then make web, or make web DEBUG=true on a development machine)
endif
endif
endif
export DEBUG ?= true

.PHONY: help setup bench-setup services browser promtool database migrate demo test test-suite test-pg18 lint worker beat web clean

help:  ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

setup: $(BIN)/.installed  ## Create the virtualenv with the pinned dependencies

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

bench-setup: setup  ## Install the Django peer that benchmarks.cost compares with (benchmarks only)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --ignore-requires-python -r requirements-bench.txt

services: setup  ## Start local PostgreSQL (Debian's, else an embedded 18) and Redis if they are down
	VENV=$(VENV) scripts/ensure-services.sh

database: setup services  ## Create the database if needed
	$(BIN)/python scripts/create_database.py

migrate: database  ## Apply migrations, each DDL statement under a short lock timeout
	$(MANAGE) migrate_with_timeouts --lock-timeout-in-ms 100 --lock-timeout-max-retries 10

demo: migrate  ## Seed organizations, backfill them with real workers, check, finalize
	ROWS=$(ROWS) WORKERS=$(WORKERS) VENV=$(VENV) scripts/demo.sh

lint: database  ## ruff, mypy, the import contracts and makemigrations --check (it reads the database)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports
	DJANGO_SETTINGS_MODULE=examples.settings $(MANAGE) makemigrations --check --dry-run

browser:  ## Debian's chromium for the browser test (installed when missing, if root)
	scripts/ensure-chromium.sh

promtool: setup  ## Prometheus' promtool, for the metrics lint test (extracted into the venv)
	VENV=$(VENV) scripts/ensure-promtool.sh

test: setup services browser promtool lint  ## Lint, the suite on this PostgreSQL beside the database tests on 18, then chaos
	$(MAKE) --no-print-directory -j2 --output-sync=target test-suite test-pg18
	$(BIN)/pytest -p no:xdist -m chaos

test-suite: setup  ## The whole suite but the chaos tests, on this PostgreSQL
	TEST_REDIS_DBS=$(SUITE_REDIS_DBS) $(BIN)/pytest $(PARALLEL) -m "not chaos" --durations=15

# Beside test-suite: a broker database and an output folder of its own.
test-pg18: setup  ## The database-facing tests on PostgreSQL 18 (embedded, on a free port, stopped after)
	TEST_REDIS_DBS=$(PG18_REDIS_DBS) TEST_OUTPUT=test-output/pg18 \
	$(BIN)/python scripts/local_postgres.py run --data .postgres/test18 -- \
		$(BIN)/pytest -n $(PG18_WORKERS) --dist loadfile -m "not chaos" $(PG18_TESTS)

worker: setup  ## A Celery worker for the backfill queue
	$(BIN)/celery -A project worker -Q backfill,default -c 2 -l INFO

beat: setup  ## Celery beat (runs the sweeper)
	$(BIN)/celery -A project beat -l INFO

web: migrate  ## The dashboard on http://127.0.0.1:8000/backfill/ (gunicorn, static files by WhiteNoise)
	$(MANAGE) collectstatic --no-input -v0
	$(BIN)/gunicorn project.wsgi --bind 127.0.0.1:8000 --workers 2 --access-logfile -

clean:  ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-output .postgres/test18
