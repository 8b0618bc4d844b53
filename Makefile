# The two commands a newcomer needs: `make run` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: setup run demo test lint bench bench-api bench-retriage bench-loop eval-own eval-teddy rubric clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)

## Set up, then serve the review API on http://127.0.0.1:8000 (docs at /docs) with the built-in knowledge
## base; on a new database it creates user 'admin', prints its key once and ingests ten sample complaints.
run: setup
	$(BIN)/triage serve --demo

## The ten sample complaints through the offline pipeline, as a table (no server).
demo: setup
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

## Review API under load: one process, then two (needs PostgreSQL at 127.0.0.1:5432).
bench-api: setup
	$(BIN)/python benchmarks/bench_api.py
	$(BIN)/python benchmarks/bench_api.py --workers 2 --out benchmarks/results/api_2workers.json

## Batch re-triage of 10,000 cases, offline and against a 300 ms scripted LLM (needs PostgreSQL).
bench-retriage: setup
	$(BIN)/python benchmarks/bench_retriage.py

## The loop's reads on 100,000 cases (needs PostgreSQL), and `triage cases import` of 10,000 rows.
bench-loop: setup
	$(BIN)/python benchmarks/bench_loop.py

## Own labelled set: knowledge base only, then with its history split imported.
eval-own: setup
	rm -rf out/own && mkdir -p out/own
	$(BIN)/triage --data-dir out/own/ws kb reindex
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
