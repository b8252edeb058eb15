# Two entry points: `make run` serves on the embedded local backend, `make test`
# runs every check. Both create .venv and install the project on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint soak bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	@test -n "$$CRM_BRIDGE_API_KEYS" || { \
	  echo "Set CRM_BRIDGE_API_KEYS to the key(s) Enginy will send." >&2; exit 2; }
	$(BIN)/crm-bridge serve --config config.example.toml

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

soak: $(STAMP)
	$(BIN)/python -m bench.soak $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.throughput $(ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
