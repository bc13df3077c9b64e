# One-command entry points. Each target creates .venv and installs the pinned
# dependencies first (once; again when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
GAME ?= Pong
SEED ?= 1
PRESET ?= atari100k

.PHONY: install train test test-fast lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[all,dev,ray]"
	touch $(STAMP)

install: $(STAMP)

# --resume without a directory: continue this run if it exists (a second `make train`), else start it.
train: $(STAMP)
	$(BIN)/storm-wm train --game $(GAME) --seed $(SEED) --preset $(PRESET) --resume

# The whole suite, after the check that every import follows the layers in pyproject.toml.
test: $(STAMP)
	$(BIN)/lint-imports --no-logo
	$(BIN)/pytest

# The suite without the tests marked slow (learning, sweeps, the bench loop): a few minutes.
test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests tools scripts
	$(BIN)/ruff format --check src tests tools scripts
	$(BIN)/lint-imports --no-logo

bench: $(STAMP)
	$(BIN)/storm-wm bench

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .import_linter_cache
