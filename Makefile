# Wardline: `make run` starts the bot, `make test` runs the tests. Both set themselves up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,local,postgres
comma := ,
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)-$(subst $(comma),_,$(EXTRAS))

.PHONY: setup run test test-fast e2e e2e-deps lint format bench manifest clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	@rm -f $(VENV)/.installed-*
	@touch $@

run: $(STAMP)
	WARDLINE_DIRECTORY=$${WARDLINE_DIRECTORY:-bot/directory.example.toml} $(BIN)/wardline serve

e2e-deps:
	bash infra/e2e/install.sh

test: $(STAMP) e2e-deps
	$(BIN)/python -m pytest

test-fast: $(STAMP) e2e-deps
	$(BIN)/python -m pytest -m "not e2e"

e2e: $(STAMP) e2e-deps
	$(BIN)/python -m pytest -m e2e

manifest: $(STAMP)
	$(BIN)/wardline manifest build

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python tests/bench/retrieval_bench.py

clean:
	rm -rf $(VENV) var test-artifacts .pytest_cache .mypy_cache .ruff_cache
