# Two set-up commands: `make demo` (embedded, no server) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck pytest test-services schemas clean bench chaos fuzz lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Installs are reproducible: every dependency comes pinned, with its hashes, from a lock
# file (`make lock` renews them); the project itself is installed on top without deps.
LOCK := requirements/lianban.lock
DEV_LOCK := requirements/dev.lock
PIP_COMPILE := $(BIN)/pip-compile -q --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links

$(VENV)/.installed: pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(DEV_LOCK) | $(BIN)/python
	$(BIN)/python -m pip install -q --require-hashes -r $(DEV_LOCK)
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@ $(VENV)/.installed

# After changing the dependencies in pyproject.toml: re-pin both lock files (the runtime
# one has the image's extras, s3 and otlp) and commit them. `make lock UPGRADE=1` also
# moves every pin to the newest version the ranges allow.
lock: $(VENV)/.installed-dev
	$(PIP_COMPILE) $(if $(UPGRADE),--upgrade) --extra s3 --extra otlp -o $(LOCK) pyproject.toml
	$(PIP_COMPILE) $(if $(UPGRADE),--upgrade) --extra dev -o $(DEV_LOCK) pyproject.toml

demo: $(VENV)/.installed
	$(BIN)/lianban demo

test: $(VENV)/.installed-dev lint typecheck pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

# Most tests wait on the broker, the database or a department's answer rather than on a
# CPU: they run on TEST_WORKERS workers, each with a database of its own and a vhost per
# test. The chaos tests restart the machine's RabbitMQ and PostgreSQL, so they run after,
# alone.
TEST_WORKERS ?= 3
pytest: $(VENV)/.installed-dev test-services
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal -m "not chaos"
	$(BIN)/python -m pytest -m chaos

# What the tests and the benchmark need of the machine: RabbitMQ (with its management
# API and a raised file limit), PostgreSQL and Redis running, chromium for the ops page.
test-services:
	.ci/services

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[bench]'
	touch $@ $(VENV)/.installed

# The end-to-end benchmark on the machine's RabbitMQ, PostgreSQL and Redis (about ten
# minutes): writes bench/report.md and its plot. See bench/README.md.
bench: $(VENV)/.installed-bench test-services
	$(BIN)/python -m bench $(BENCH_ARGS)

# The long chaos run (`make test` runs one round): SIGKILLs at every step boundary, broker,
# database and department outages, a three-node cluster losing nodes; then the verdict.
CHAOS_ROUNDS ?= 3
chaos: $(VENV)/.installed-dev test-services
	LIANBAN_CHAOS_ROUNDS=$(CHAOS_ROUNDS) LIANBAN_CHAOS_OUTAGE_SECONDS=60 \
	LIANBAN_CHAOS_NODE_DOWN_SECONDS=20 LIANBAN_STATEFUL_EXAMPLES=100 \
	$(BIN)/python -m pytest -s -m chaos tests/test_chaos.py tests/test_correlator_stateful.py

# The long fuzzing run of the intake API (`make test` runs 10 examples per operation);
# it prints how many requests it sent, by status.
FUZZ_EXAMPLES ?= 300
fuzz: $(VENV)/.installed-dev
	LIANBAN_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -s tests/test_fuzz_intake.py

# Regenerate the checked-in JSON Schema, OpenAPI and AsyncAPI documents.
schemas: $(VENV)/.installed
	$(BIN)/lianban schemas export

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
