"""`triage eval compare A B`: metric deltas, items whose department changed, and CI gates."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triage.errors import InputError

HEADLINE = ("accuracy", "macro_f1", "top3_accuracy")


def _load(run: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    try:
        metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
        predictions = {}
        for line in (run / "predictions.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                predictions[record["id"]] = record
    except FileNotFoundError as exc:
        raise InputError(f"{run} is not an evaluation run directory: {exc.filename} is missing") from None
    return metrics, predictions


def flat_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Scalar metrics by dotted name: accuracy, typical_problem.hit_at_1, reply_quality.mean, latency_ms.p95..."""
    out: dict[str, float] = {k: float(metrics[k]) for k in HEADLINE if k in metrics}
    for group in ("typical_problem", "latency_ms"):
        for k, v in (metrics.get(group) or {}).items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                out[f"{group}.{k}"] = float(v)
    if "reply_quality" in metrics:
        out["reply_quality.mean"] = float(metrics["reply_quality"]["mean"])
    for dep, values in (metrics.get("per_department") or {}).items():
        out[f"f1.{dep}"] = float(values["f1"])
    return out


@dataclass
class Comparison:
    rows: list[tuple[str, float | None, float | None, float | None]]
    changed: list[tuple[str, str, str, str]]  # id, gold, department in A, department in B
    failures: list[str]


def compare(run_a: Path, run_b: Path, gates: Sequence[str] = ()) -> Comparison:
    metrics_a, pred_a = _load(run_a)
    metrics_b, pred_b = _load(run_b)
    flat_a, flat_b = flat_metrics(metrics_a), flat_metrics(metrics_b)
    rows = []
    for key in dict.fromkeys([*flat_a, *flat_b]):
        a, b = flat_a.get(key), flat_b.get(key)
        rows.append((key, a, b, None if a is None or b is None else round(b - a, 4)))
    changed = [
        (item, pred_a[item]["gold_department"], pred_a[item]["department"], pred_b[item]["department"])
        for item in pred_a
        if item in pred_b and pred_a[item]["department"] != pred_b[item]["department"]
    ]
    failures = []
    for gate in gates:
        name, sep, limit = gate.partition("=")
        try:
            allowed = float(limit)
        except ValueError:
            raise InputError(f"--max-drop expects metric=number, got '{gate}'") from None
        if not sep or name not in flat_a or name not in flat_b:
            known = ", ".join(sorted(set(flat_a) & set(flat_b)))
            raise InputError(f"--max-drop: unknown metric '{name}'; metrics in both runs: {known}")
        drop = flat_a[name] - flat_b[name]
        if drop > allowed + 1e-12:
            failures.append(
                f"{name} dropped by {drop:.4f} ({flat_a[name]:.4f} -> {flat_b[name]:.4f}), allowed {allowed}"
            )
    return Comparison(rows=rows, changed=changed, failures=failures)
