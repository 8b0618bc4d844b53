"""A self-contained HTML report: charts as embedded PNGs, Chinese labels in a bundled CJK font."""

from __future__ import annotations

import base64
import html
import importlib.util
import io
import logging
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import font_manager

log = logging.getLogger(__name__)
_CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC", "WenQuanYi Zen Hei", "SimHei")


@cache
def cjk_font() -> str | None:
    """Register a CJK font so Chinese renders as characters, not boxes; None when none is available."""
    spec = importlib.util.find_spec("mplfonts")  # ships Noto Sans CJK SC; found without importing it
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "fonts" / "NotoSansCJKsc-Regular.otf"
        if path.exists():
            font_manager.fontManager.addfont(str(path))
            return font_manager.FontProperties(fname=str(path)).get_name()
    installed = {f.name for f in font_manager.fontManager.ttflist}
    for name in _CJK_FONTS:
        if name in installed:
            return name
    log.warning("no CJK font found: Chinese labels in report charts will not render")
    return None


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def confusion_png(records: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> str:
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for r in records:
        matrix[index[r["gold_department"]], index[r["department"]]] += 1
    size = max(5.0, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("预测部门")
    ax.set_ylabel("标准部门")
    ax.set_title("混淆矩阵")
    for i in range(len(labels)):
        for j in range(len(labels)):
            if matrix[i, j]:
                color = "white" if matrix[i, j] > matrix.max() / 2 else "black"
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7, color=color)
    fig.colorbar(im, ax=ax, fraction=0.04)
    return _png(fig)


def per_department_png(per_department: Mapping[str, Mapping[str, float]]) -> str:
    labels = list(per_department)
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(labels) + 2), 4))
    ax.bar(x - 0.2, [per_department[k]["precision"] for k in labels], 0.4, label="精确率 precision")
    ax.bar(x + 0.2, [per_department[k]["recall"] for k in labels], 0.4, label="召回率 recall")
    ax.set_xticks(x, labels, rotation=60, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_title("各部门精确率与召回率")
    ax.legend(loc="lower right")
    return _png(fig)


def coverage_png(curve: Sequence[Mapping[str, float]]) -> str:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([p["coverage"] for p in curve], [p["accuracy"] for p in curve], marker="o")
    for p in curve[::4]:
        ax.annotate(
            f"≥{p['threshold']:.2f}",
            (p["coverage"], p["accuracy"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.set_xlabel("自动分派覆盖率 coverage")
    ax.set_ylabel("准确率 accuracy")
    ax.set_title("置信度阈值：覆盖率与准确率")
    ax.set_xlim(0, 1.02)
    ax.grid(alpha=0.3)
    return _png(fig)


def reply_png(pass_rate: Mapping[str, float]) -> str:
    names = {
        "polite": "礼貌称呼",
        "restates_issue": "复述问题",
        "names_department": "说明责任部门",
        "next_step_with_time": "下一步及时限",
        "contact_channel": "联系渠道",
        "no_pii": "无个人信息",
        "no_placeholder": "无占位文字",
        "sensible_length": "长度适中",
    }
    keys = list(pass_rate)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.barh([names.get(k, k) for k in keys], [pass_rate[k] for k in keys], color="#4c9a6a")
    ax.set_xlim(0, 1)
    ax.set_title("答复质量：各项通过率")
    return _png(fig)


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(path: Path, metrics: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> None:
    font = cjk_font()
    if font:
        plt.rcParams["font.family"] = [font, "DejaVu Sans"]
    plt.rcParams["axes.unicode_minus"] = False
    parts = [
        f"<h1>Triage evaluation · 分派评估</h1><p>{html.escape(str(metrics.get('run', {}).get('dataset', '')))}</p>"
    ]
    if not records:
        parts.append("<p>No valid items.</p>")
    else:
        summary = [
            ("items", metrics["n"]),
            ("invalid items", metrics["n_invalid"]),
            ("accuracy", metrics["accuracy"]),
            ("macro-F1", metrics["macro_f1"]),
            ("top-3 accuracy", metrics["top3_accuracy"]),
            ("reply quality (rubric mean)", metrics["reply_quality"]["mean"]),
            ("latency p50 / p95 ms", f"{metrics['latency_ms']['p50']} / {metrics['latency_ms']['p95']}"),
        ]
        if "typical_problem" in metrics:
            tp = metrics["typical_problem"]
            summary += [(f"typical problem {k}", v) for k, v in tp.items()]
        parts.append(_table(summary, ["metric", "value"]))
        labels = sorted({r["gold_department"] for r in records} | {r["department"] for r in records})
        for title, png in (
            ("Confusion matrix", confusion_png(records, labels)),
            ("Precision and recall per department", per_department_png(metrics["per_department"])),
            ("Coverage vs accuracy", coverage_png(metrics["coverage_curve"])),
            ("Reply quality", reply_png(metrics["reply_quality"]["pass_rate"])),
        ):
            parts.append(f"<h2>{title}</h2><img alt='{title}' src='data:image/png;base64,{png}'>")
        errors = sorted((r for r in records if not r["correct"]), key=lambda r: -r["confidence"])[:25]
        parts.append("<h2>Worst errors (most confident first)</h2>")
        parts.append(
            _table(
                [
                    (r["id"], r["gold_department"], r["department"], f"{r['confidence']:.2f}", r["text"][:120])
                    for r in errors
                ],
                ["id", "gold", "predicted", "confidence", "text"],
            )
        )
        low = sorted(records, key=lambda r: r["reply_quality"]["score"])[:10]
        parts.append("<h2>Lowest-scoring replies</h2>")
        parts.append(
            _table(
                [
                    (r["id"], r["reply_quality"]["score"], "; ".join(r["reply_quality"]["reasons"]), r["reply"][:160])
                    for r in low
                ],
                ["id", "score", "failed", "reply"],
            )
        )
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}"
        "img{max-width:100%}"
    )
    page = (
        f"<!doctype html><html lang='zh'><meta charset='utf-8'><title>Triage evaluation</title><style>{style}</style>"
    )
    path.write_text(page + "".join(parts) + "</html>", encoding="utf-8")
