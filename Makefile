# The two commands a newcomer needs: `make run` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: setup run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)

## Set up, then run the built-in sample complaints through the offline pipeline.
run: setup
	$(BIN)/triage demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Lint, type-check and run the whole test suite.
test: lint
	$(BIN)/pytest

bench: setup
	$(BIN)/python benchmarks/bench_triage.py

clean:
	rm -rf $(VENV) .triage .mypy_cache .ruff_cache .pytest_cache
