# The two commands a newcomer needs: `make run` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: setup run test lint bench eval-own eval-teddy rubric clean

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
	$(BIN)/python benchmarks/bench_import.py

## Own labelled set: knowledge base only, then with its history split imported.
eval-own: setup
	rm -rf out/own && mkdir -p out/own
	$(BIN)/triage --data-dir out/own/ws eval run evals/datasets/shanghai_test.jsonl --out out/own/kb-only
	$(BIN)/triage --data-dir out/own/ws history import evals/datasets/shanghai_history.jsonl
	$(BIN)/triage --data-dir out/own/ws eval run evals/datasets/shanghai_test.jsonl --out out/own/with-history

## Real messages, 7 departments, 300 and all-the-rest history (needs ../shared/datasets/teddy2020).
eval-teddy: setup
	$(BIN)/python -m evals.recipes.teddy2020 --out out/teddy2020

rubric: setup
	$(BIN)/triage eval rubric ../shared/datasets/teddy2020/messages_with_replies.jsonl

clean:
	rm -rf $(VENV) .triage out .mypy_cache .ruff_cache .pytest_cache
