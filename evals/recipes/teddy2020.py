"""Recipe: evaluate on real citizen messages (teddy2020) with a 7-department taxonomy.

    .venv/bin/python -m evals.recipes.teddy2020 [--data ../shared/datasets/teddy2020] [--out out/teddy2020]

1. Build a departments file from the 7 first-level categories of messages_labeled.jsonl, each
   described by its second- and third-level category names from taxonomy.json.
2. Hold out a seeded random test set (1,000 messages); the rest is the history pool.
3. Unlabelled corpus: the replies and votes messages, less any text in the test set.
4. For each history size (300, and all the rest): a fresh workspace, then the same CLI commands a
   deployment would run: `kb load`, `corpus import`, `history import`, `eval run`.
Everything runs through `python -m triage`, so the figures are what a user gets.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _triage(data_dir: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "triage", "--data-dir", str(data_dir), *args]
    print("$", "triage", "--data-dir", data_dir, *args, flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/teddy2020"))
    parser.add_argument("--out", type=Path, default=Path("out/teddy2020"))
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", default="300,all", help="History sizes, comma-separated; 'all' = the rest.")
    args = parser.parse_args()

    labelled = _jsonl(args.data / "messages_labeled.jsonl")
    categories = sorted({r["category"] for r in labelled})
    tree: dict[str, list[str]] = defaultdict(list)
    for node in json.loads((args.data / "taxonomy.json").read_text(encoding="utf-8")):
        if node["level1"] in categories:
            tree[node["level1"]].append(f"{node['level2']}：{node['level3']}")
    args.out.mkdir(parents=True, exist_ok=True)
    departments = args.out / "departments.json"
    departments.write_text(
        json.dumps([{"name": c, "description": "；".join(tree[c])} for c in categories], ensure_ascii=False),
        encoding="utf-8",
    )

    rows = labelled[:]
    random.Random(args.seed).shuffle(rows)
    test, pool = rows[: args.test_size], rows[args.test_size :]
    _write(args.out / "test.jsonl", test)
    test_texts = {r["text"] for r in test}
    unlabelled = [
        {"title": r.get("title"), "text": r["text"]}
        for name in ("messages_with_replies.jsonl", "messages_with_votes.jsonl")
        for r in _jsonl(args.data / name)
        if r["text"] not in test_texts
    ]
    _write(args.out / "unlabelled.jsonl", unlabelled)

    summary = {}
    for size in args.sizes.split(","):
        n = len(pool) if size == "all" else int(size)
        history = args.out / f"history-{size}.jsonl"
        _write(history, pool[:n])
        ws = args.out / f"ws-{size}"
        shutil.rmtree(ws, ignore_errors=True)
        _triage(ws, "kb", "load", "--departments", str(departments))
        _triage(ws, "corpus", "import", str(args.out / "unlabelled.jsonl"), "--no-reindex")
        start = time.perf_counter()
        _triage(ws, "history", "import", str(history), "--map", "department=category")
        import_s = time.perf_counter() - start
        run = args.out / f"run-{size}"
        _triage(ws, "eval", "run", str(args.out / "test.jsonl"), "--out", str(run), "--map", "department=category")
        metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
        summary[size] = {
            "history": n,
            "test": metrics["n"],
            "accuracy": metrics["accuracy"],
            "macro_f1": metrics["macro_f1"],
            "top3_accuracy": metrics["top3_accuracy"],
            "routing_weights": metrics["run"]["routing_weights"],
            "import_s": round(import_s, 1),
        }
    (args.out / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    print(json.dumps(summary, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
