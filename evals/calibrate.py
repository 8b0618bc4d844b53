"""How well the reply rubric agrees with human annotations of real government replies.

The teddy2020 replies file marks part of its rows with public annotations: reply_complete and
reply_interpretable (是/否). We report the rubric's mean score per label, the AUC (probability that
an annotated-good reply outscores an annotated-bad one) and the pass rate of each criterion per label.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evals.reply_quality import CRITERIA, score_reply
from triage.tabular import Format, cell, parse_mapping, read_table, resolve_columns

FIELDS: dict[str, tuple[str, ...]] = {"text": (), "title": (), "reply": (), "labels": ()}


def _auc(pos: Sequence[float], neg: Sequence[float]) -> float | None:
    if not pos or not neg:
        return None
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return round(float(((p > n).sum() + 0.5 * (p == n).sum()) / (len(pos) * len(neg))), 4)


def calibrate(
    path: Path, *, labels: Sequence[str], fmt: Format = "auto", mapping: Sequence[str] = ()
) -> dict[str, Any]:
    table = read_table(path, fmt)
    columns = resolve_columns(
        table,
        {k: v for k, v in FIELDS.items() if k != "labels"},
        ["text", "reply"],
        parse_mapping(mapping, [k for k in FIELDS if k != "labels"]),
    )
    scored = []
    for row in table.rows:
        reply, text = cell(row, columns, "reply"), cell(row, columns, "text")
        if not reply or not text:
            continue
        title = cell(row, columns, "title")
        s = score_reply(reply, f"{title}。{text}" if title else text)
        scored.append((row, s))
    out: dict[str, Any] = {
        "n_replies": len(scored),
        "mean_score": round(float(np.mean([s.score for _, s in scored])), 4),
    }
    for label in labels:
        yes = [
            s
            for row, s in scored
            if str(row.values.get(label, "")).strip() in {"是", "yes", "1", "1.0", "true", "True"}
        ]
        no = [
            s
            for row, s in scored
            if str(row.values.get(label, "")).strip() in {"否", "no", "0", "0.0", "false", "False"}
        ]
        out[label] = {
            "n_yes": len(yes),
            "n_no": len(no),
            "mean_score_yes": round(float(np.mean([s.score for s in yes])), 4) if yes else None,
            "mean_score_no": round(float(np.mean([s.score for s in no])), 4) if no else None,
            "auc": _auc([s.score for s in yes], [s.score for s in no]),
            "pass_rate_yes": {c: round(float(np.mean([s.passed[c] for s in yes])), 3) for c in CRITERIA} if yes else {},
            "pass_rate_no": {c: round(float(np.mean([s.passed[c] for s in no])), 3) for c in CRITERIA} if no else {},
        }
    return out
