# order-bridge: every target creates .venv (with the dev extra) when it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint browser postgres bench soak lock clean

# Installs are locked: requirements-dev.lock pins (with hashes) everything `make run`, `make test`
# and the build of the project itself need, so a fresh clone tests against the versions CI was
# green with and the image ships (requirements.lock, the runtime subset, pins the same versions).
# The venv's own pip does the install; the project goes in editable, without dependencies and
# without build isolation (setuptools comes from the lock too).
$(STAMP): requirements-dev.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

# The service on 127.0.0.1:8080 against the built-in Sendcloud sandbox (no credentials needed).
# In another terminal: .venv/bin/order-bridge send-sample --platform shopify http://127.0.0.1:8080/webhooks/shopify/1
run: $(STAMP)
	$(BIN)/order-bridge serve --config examples/sandbox.toml

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The browser tests of the admin console drive Debian's chromium package through Playwright
# (`make browser`); Playwright's own browser downloads are never used. The PostgreSQL tests start
# a server of their own from the machine's binaries (`make postgres`).
test: lint browser postgres
	$(BIN)/pytest

# PostgreSQL's server binaries (initdb, pg_ctl) from Debian for the tests, installed when missing
# (needs root for apt-get); tests/postgres.py starts its own server with them, as user postgres.
postgres:
	command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql)

# Chromium from Debian for the Playwright tests, installed when missing (needs root for apt-get).
browser:
	command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium)

# The benchmarks (bench/, docs/benchmarks.md): ingest, latency, e2e, batching, memory, translate;
# pick with SCENARIOS="ingest memory" (add "profile" for py-spy). Needs root for apt-get and taskset
# on 2 CPUs; about 12 minutes; results under /tmp/bench-results/.
bench: $(STAMP)
	command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
	SCENARIOS="$(SCENARIOS)" bash bench/run_all.sh

# 10 minutes of steady webhooks with Sendcloud faults sprinkled in (not part of `make test`);
# SOAK_SECONDS=120 for a shorter run. Prints RSS/pending samples and a PASS/FAILED verdict.
soak: $(STAMP)
	$(BIN)/python bench/soak.py

# The locks, from pyproject's loose ranges: requirements.lock is the runtime dependencies (the
# container image installs it with --require-hashes); requirements-dev.lock adds the dev extra and
# the build backend, constrained to the runtime lock's versions. Existing pins are kept:
# `make lock LOCK_FLAGS=--upgrade` (or `LOCK_FLAGS="-P httpx"`) moves them. Run it with Python 3.11
# on Linux, like the image: environment markers are resolved for this interpreter.
# tests/test_locks.py checks that both agree with pyproject.toml and with each other.
# pip-compile comes from the dev lock, installed here without the project: not through $(STAMP),
# whose `pip check` fails on a dependency just added to pyproject.toml and not locked yet.
LOCK := CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --generate-hashes --strip-extras \
	--allow-unsafe --no-emit-index-url --no-emit-find-links $(LOCK_FLAGS)
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements-dev.lock
	$(LOCK) --output-file requirements.lock pyproject.toml
	$(LOCK) --extra dev --all-build-deps --constraint requirements.lock --output-file requirements-dev.lock pyproject.toml

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info
