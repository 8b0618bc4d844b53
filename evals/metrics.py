"""Metrics over prediction records: routing, coverage, typical problems, replies, latency, tokens."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import f1_score, precision_recall_fscore_support

from evals.reply_quality import CRITERIA

THRESHOLDS = [round(t, 2) for t in np.arange(0.0, 1.0, 0.05)]


def _percentile(values: Sequence[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if values else 0.0


def coverage_curve(records: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
    """At each confidence threshold: the share routed automatically and how accurate those are."""
    n = len(records)
    curve = []
    for t in THRESHOLDS:
        kept = [r for r in records if r["confidence"] >= t]
        accuracy = sum(r["correct"] for r in kept) / len(kept) if kept else 1.0
        curve.append(
            {"threshold": t, "coverage": round(len(kept) / n, 4) if n else 0.0, "accuracy": round(accuracy, 4)}
        )
    return curve


def routing(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    gold = [r["gold_department"] for r in records]
    pred = [r["department"] for r in records]
    labels = sorted(set(gold) | set(pred))
    p, r, f, s = precision_recall_fscore_support(gold, pred, labels=labels, zero_division=0)
    return {
        "accuracy": round(sum(a == b for a, b in zip(gold, pred, strict=True)) / len(gold), 4),
        "macro_f1": round(float(f1_score(gold, pred, labels=sorted(set(gold)), average="macro", zero_division=0)), 4),
        "top3_accuracy": round(
            sum(r["gold_department"] in [t["department"] for t in r["top_departments"]] for r in records)
            / len(records),
            4,
        ),
        "per_department": {
            label: {
                "precision": round(float(p[i]), 4),
                "recall": round(float(r[i]), 4),
                "f1": round(float(f[i]), 4),
                "support": int(s[i]),
            }
            for i, label in enumerate(labels)
        },
        "coverage_curve": coverage_curve(records),
    }


def typical_problems(records: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """hit@1 / hit@3 on items whose gold is a typical problem; no-match accuracy on the rest."""
    labelled = [r for r in records if r.get("has_gold_problem")]
    if not labelled:
        return None
    with_gold = [r for r in labelled if r["gold_typical_problem_id"]]
    without = [r for r in labelled if not r["gold_typical_problem_id"]]
    out: dict[str, Any] = {"n_with_problem": len(with_gold), "n_without_problem": len(without)}
    if with_gold:
        out["hit_at_1"] = round(
            sum(r["typical_problem_id"] == r["gold_typical_problem_id"] for r in with_gold) / len(with_gold), 4
        )
        out["hit_at_3"] = round(
            sum(r["gold_typical_problem_id"] in r["problem_candidates"][:3] for r in with_gold) / len(with_gold), 4
        )
    if without:
        out["no_match_accuracy"] = round(sum(r["typical_problem_id"] is None for r in without) / len(without), 4)
    out["accuracy"] = round(
        sum(r["typical_problem_id"] == (r["gold_typical_problem_id"] or None) for r in labelled) / len(labelled), 4
    )
    return out


def reply_quality(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    scores = [r["reply_quality"]["score"] for r in records]
    out: dict[str, Any] = {
        "mean": round(float(np.mean(scores)), 4) if scores else 0.0,
        "pass_rate": {
            c: round(sum(r["reply_quality"]["passed"][c] for r in records) / len(records), 4) if records else 0.0
            for c in CRITERIA
        },
    }
    refs = [r["reference_quality"] for r in records if r.get("reference_quality") is not None]
    if refs:
        out["reference_mean"] = round(float(np.mean(refs)), 4)
        out["n_references"] = len(refs)
    judged = [r["judge"] for r in records if r.get("judge")]
    if judged:
        dims = sorted({k for j in judged for k in j if k != "comment"})
        out["llm_judge"] = {d: round(float(np.mean([j[d] for j in judged if d in j])), 3) for d in dims}
        out["llm_judge"]["n"] = len(judged)
    return out


def summarise(records: Sequence[Mapping[str, Any]], invalid: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """metrics.json (less the run's configuration, added by the runner)."""
    if not records:
        return {"n": 0, "invalid": list(invalid), "n_invalid": len(invalid)}
    latencies = [r["latency_ms"] for r in records]
    out: dict[str, Any] = {"n": len(records), **routing(records)}
    problems = typical_problems(records)
    if problems is not None:
        out["typical_problem"] = problems
    out["reply_quality"] = reply_quality(records)
    out["latency_ms"] = {
        "p50": _percentile(latencies, 50),
        "p95": _percentile(latencies, 95),
        "mean": round(float(np.mean(latencies)), 2),
    }
    out["tokens"] = {
        "prompt": sum(r["tokens"]["prompt"] for r in records),
        "completion": sum(r["tokens"]["completion"] for r in records),
        "complaint": sum(r["tokens"]["complaint"] for r in records),
        "estimated": any(r["tokens"]["estimated"] for r in records),
    }
    out["drafted_by"] = dict(Counter(r["drafted_by"] for r in records))
    out["fallbacks"] = sum(1 for r in records if r["fallback_reason"])
    out["invalid"] = list(invalid)
    out["n_invalid"] = len(invalid)
    return out
