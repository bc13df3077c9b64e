# One-command entry points. Each target creates .venv and installs the pinned
# dependencies first (once; again when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
GAME ?= Pong
SEED ?= 1
PRESET ?= atari100k

.PHONY: install train test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[dev,ray]"
	touch $(STAMP)

install: $(STAMP)

# --resume without a directory: continue this run if it exists (a second `make train`), else start it.
train: $(STAMP)
	$(BIN)/storm-wm train --game $(GAME) --seed $(SEED) --preset $(PRESET) --resume

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests tools
	$(BIN)/ruff format --check src tests tools

bench: $(STAMP)
	$(BIN)/storm-wm bench

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
