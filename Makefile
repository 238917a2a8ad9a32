# order-bridge: every target creates .venv (with the dev extra) when it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench soak lock clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The service on 127.0.0.1:8080 against the built-in Sendcloud sandbox (no credentials needed).
# In another terminal: .venv/bin/order-bridge send-sample --platform shopify http://127.0.0.1:8080/webhooks/shopify/1
run: $(STAMP)
	$(BIN)/order-bridge serve --config examples/sandbox.toml

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

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

# requirements.lock: the container image's runtime dependencies (pyproject's [project.dependencies]
# only, no extras) pinned with hashes; the Dockerfile installs it with --require-hashes. Existing
# pins are kept: `make lock LOCK_FLAGS=--upgrade` (or `LOCK_FLAGS="-P httpx"`) moves them. Run it
# with Python 3.11 on Linux, like the image: environment markers are resolved for this interpreter.
lock: $(STAMP)
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --generate-hashes --strip-extras \
		--allow-unsafe --no-emit-index-url --no-emit-find-links --output-file requirements.lock $(LOCK_FLAGS) pyproject.toml

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info
