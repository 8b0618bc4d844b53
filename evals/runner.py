"""`triage eval run`: triage every item of a labelled dataset and write predictions, metrics, report."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import prompts
from evals.dataset import EvalData, EvalItem, load_dataset
from evals.metrics import summarise
from evals.reply_quality import score_reply
from triage.errors import InputError
from triage.pipeline import Exclusions, TriagePipeline
from triage.redaction import redact
from triage.routing import Router
from triage.settings import Settings
from triage.store import content_hash
from triage.tabular import Format
from triage.workspace import Workspace, case_text


def _exclude_overlap(ws: Workspace, data: EvalData) -> int:
    """Retrain routing in memory without history cases that are also evaluation items (same id or text)."""
    ids = {item.id for item in data.items}
    hashes = {content_hash(item.complaint.text) for item in data.items}
    cases = ws.past_cases()
    kept = [c for c in cases if c.id not in ids and content_hash(c.text) not in hashes]
    if len(kept) == len(cases):
        return 0
    m = ws.models
    router = Router.train(kb=m.kb, model=m.text_model, history=[(case_text(c), c.department) for c in kept])
    ws.use(replace(m, router=router))  # in memory only: the workspace's own build is untouched
    return len(cases) - len(kept)


def _record(item: EvalItem, pipeline: TriagePipeline, exclude: Exclusions, judge: Any) -> dict[str, Any]:
    start = time.perf_counter()
    draft = pipeline.triage_many([item.complaint], exclude=exclude)[0]
    latency = (time.perf_counter() - start) * 1000
    kb = pipeline.ws.kb
    dep = kb.by_name.get(draft.department)
    names = [draft.department, *(dep.aliases if dep else []), *([dep.full_name] if dep and dep.full_name else [])]
    text = f"{item.complaint.title}。{item.complaint.text}" if item.complaint.title else item.complaint.text
    quality = score_reply(draft.reply, text, names)
    record: dict[str, Any] = {
        "id": item.id,
        "line": item.line,
        "gold_department": item.gold_department,
        "department": draft.department,
        "correct": draft.department == item.gold_department,
        "confidence": draft.confidence,
        "top_departments": [s.model_dump() for s in draft.top_departments],
        "has_gold_problem": item.has_gold_problem,
        "gold_typical_problem_id": item.gold_problem,
        "typical_problem_id": draft.typical_problem.id if draft.typical_problem else None,
        "problem_candidates": [e.id for e in draft.evidence if e.kind == "typical_problem"],
        "drafted_by": draft.drafted_by,
        "fallback_reason": draft.fallback_reason,
        "latency_ms": round(latency, 2),
        "tokens": draft.tokens.model_dump(),
        "reply_quality": {"score": quality.score, "passed": quality.passed, "reasons": quality.reasons},
        "reference_quality": score_reply(item.reference_reply, text, names).score if item.reference_reply else None,
        "text": redact(text).text[:300],
        "reply": draft.reply,
    }
    if judge is not None:
        record["judge"] = judge.score(text, draft.reply)
    return record


def run_eval(
    *,
    settings: Settings,
    dataset: Path,
    out: Path,
    mode: Literal["offline", "llm"] = "offline",
    fmt: Format = "auto",
    mapping: Sequence[str] = (),
    limit: int | None = None,
    workers: int = 1,
    judge: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Evaluate; writes DIR/predictions.jsonl, DIR/metrics.json and DIR/report.html, returns the metrics."""
    if mode == "llm" and not settings.llm_enabled:
        raise InputError("--llm needs an LLM: set TRIAGE_LLM_MODEL (and TRIAGE_LLM_BASE_URL, TRIAGE_LLM_API_KEY)")
    if judge and not settings.llm_enabled:
        raise InputError("--judge needs an LLM: set TRIAGE_LLM_MODEL (and TRIAGE_LLM_BASE_URL, TRIAGE_LLM_API_KEY)")
    run_settings = settings if mode == "llm" else settings.model_copy(update={"llm_model": None})
    ws = Workspace.open(run_settings)
    data = load_dataset(dataset, ws.kb, fmt=fmt, mapping=mapping)
    items = data.items[:limit] if limit else data.items
    overlap = _exclude_overlap(ws, data)
    exclude = Exclusions(
        ids=frozenset(i.id for i in data.items),
        text_hashes=frozenset(content_hash(i.complaint.text) for i in data.items),
    )
    pipeline = TriagePipeline.from_settings(run_settings, ws)
    judge_model = None
    if judge:
        from evals.judge import ReplyJudge

        judge_model = ReplyJudge(settings)
    started = time.perf_counter()
    records: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, record in enumerate(pool.map(lambda it: _record(it, pipeline, exclude, judge_model), items), start=1):
            records.append(record)
            if progress:
                progress(i, len(items))
    elapsed = time.perf_counter() - started
    metrics = summarise(records, data.invalid)
    m = ws.models
    metrics["run"] = {
        "dataset": str(dataset),
        "columns": data.columns,
        "mode": mode,
        "model": run_settings.llm_model,
        "prompt_version": (pipeline.offline.prompt if pipeline.llm is None else prompts.load("triage_draft")).version,
        "embedder": m.embedder.fingerprint,
        "router": m.router.fingerprint,
        "routing_weights": m.router.weights,
        "history_cases": m.router.n_history,
        "history_overlap_excluded": overlap,
        "workers": workers,
        "elapsed_s": round(elapsed, 2),
        "items_per_s": round(len(records) / elapsed, 2) if elapsed else None,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out.mkdir(parents=True, exist_ok=True)
    with (out / "predictions.jsonl").open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    (out / "metrics.json").write_text(json.dumps(metrics, ensure_ascii=False, indent=2), encoding="utf-8")
    from evals.report import write_report

    write_report(out / "report.html", metrics, records)
    ws.close()
    return metrics
