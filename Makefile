# order-bridge: every target creates .venv (with the dev extra) when it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

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

bench: $(STAMP)
	$(BIN)/python bench/translate.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info
