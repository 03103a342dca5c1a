# mevstack — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
CONFIG ?= mevstack.toml

.PHONY: setup test test-fast lint demo bench devnet clean

setup: $(PY_STAMP) $(NODE_STAMP)
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q chromium; \
		else echo "setup: Debian chromium is needed for the dashboard tests: sudo apt-get install chromium" >&2; exit 1; fi; }
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q --no-install-recommends prometheus; \
		else echo "setup: Debian prometheus is needed for the alerting-rule tests: sudo apt-get install prometheus" >&2; exit 1; fi; }

$(PY_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@test -x node_modules/.bin/anvil || { echo "anvil missing after npm ci" >&2; exit 1; }
	@touch $@

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: setup lint
	$(BIN)/pytest -q -p no:cacheprovider

test-fast: setup
	$(BIN)/pytest -q -m "not slow"

devnet: setup
	$(BIN)/mevstack devnet --out devnet.toml --activity

demo: setup
	$(BIN)/mevstack demo

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) node_modules .mevstack .pytest_cache .mypy_cache .ruff_cache
