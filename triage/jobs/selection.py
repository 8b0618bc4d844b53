"""Choosing a job's cases: filters checked against the taxonomy, the cases they match, why a case
is left alone, and the dry-run estimate of tokens and cost (no LLM called)."""

from __future__ import annotations

from datetime import UTC, tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from prompts import load as load_prompt
from triage.cases import filters
from triage.cases.rows import CaseRow
from triage.cases.states import UNDECIDED, CaseStatus
from triage.clock import in_utc
from triage.database import Database
from triage.errors import InputError
from triage.jobs.models import Estimate, JobFilters, NewJob, Prices
from triage.jobs.ratelimit import COMPLETION_ESTIMATE
from triage.knowledge import KnowledgeBase
from triage.models import CHANNEL_VALUES
from triage.pipeline import TriagePipeline
from triage.redaction import redact

EVIDENCE_TOKENS = 1500  # typical problems and past cases quoted in an LLM prompt (dry-run estimate)


def validate(filters: JobFilters, *, db: Database, kb: KnowledgeBase, tz: tzinfo = UTC) -> JobFilters:
    """The filters with canonical department names and times in UTC (a time without an offset is read
    in `tz`); unknown values are refused before any work, with the valid ones listed."""
    if filters.is_empty():
        raise InputError(
            "choose the cases: a status, department, channel, typical problem, date range, ids file, or undecided",
            field="filters",
        )
    departments = [kb.check_department(name) for name in filters.department]  # aliases too, as the queue
    for channel in filters.channel:
        if channel not in CHANNEL_VALUES:
            raise InputError(f"unknown channel '{channel}'; valid: {', '.join(CHANNEL_VALUES)}", field="channel")
    for pid in filters.typical_problem_id:
        if pid not in kb.problems_by_id:
            valid = ", ".join(sorted(kb.problems_by_id))
            raise InputError(f"unknown typical problem '{pid}'; valid: {valid}", field="typical_problem_id")
    if filters.ids:
        with db.read() as s:
            known: set[str] = set()
            for start in range(0, len(filters.ids), 500):
                chunk = filters.ids[start : start + 500]
                known.update(s.scalars(select(CaseRow.id).where(CaseRow.id.in_(chunk))))
        unknown = [i for i in filters.ids if i not in known]
        if unknown:
            more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
            raise InputError(f"no such case: {', '.join(unknown[:5])}{more}", field="ids")
    return filters.model_copy(
        update={
            "department": departments,
            "received_from": in_utc(filters.received_from, tz),
            "received_to": in_utc(filters.received_to, tz),
        }
    )


def matching(s: Session, f: JobFilters) -> list[tuple[str, str]]:
    """(case id, status) of every case the filters select, oldest first."""
    values = filters.params(f, undecided=filters.UNDECIDED_VALUES if f.undecided else None)
    query = select(CaseRow.id, CaseRow.status, CaseRow.received_at)
    if not f.ids:
        rows = s.execute(query.where(filters.where(tuple(values))).order_by(CaseRow.received_at, CaseRow.id), values)
        return [(i, st) for i, st, _ in rows]
    found: list[Any] = []
    with_ids = query.where(filters.where((*values, "ids")))
    for start in range(0, len(f.ids), 1000):  # one IN list per thousand ids
        found += s.execute(with_ids, {**values, "ids": f.ids[start : start + 1000]}).all()
    return [(i, st) for i, st, _ in sorted(found, key=lambda r: (r[2], r[0]))]


def skip_reason(status: str, include_decided: bool) -> str | None:
    """Why a case in `status` is left alone, or None when the job re-triages it."""
    if include_decided or CaseStatus(status) in UNDECIDED:
        return None
    return f"{status}: a decided case is left alone unless decided cases are included"


def estimate(new: NewJob, *, db: Database, pipeline: TriagePipeline, prices: Prices) -> Estimate:
    """Count the items and estimate tokens and cost, calling no LLM (`new`: validated filters)."""
    with db.read() as s:
        found = matching(s, new.filters)
        todo = [i for i, st in found if skip_reason(st, new.include_decided) is None]
        texts: list[str] = []
        for start in range(0, len(todo), 500):
            texts += list(s.scalars(select(CaseRow.text).where(CaseRow.id.in_(todo[start : start + 500]))))
    counter = pipeline.tokens
    budget = pipeline.settings.max_complaint_tokens
    complaint = sum(min(counter.count(redact(t).text), budget) for t in texts)
    template = load_prompt("triage_draft")
    overhead = sum(counter.count(v) for v in template.sections.values()) + EVIDENCE_TOKENS
    prompt = complaint + overhead * len(todo)
    completion = COMPLETION_ESTIMATE * len(todo)
    llm = pipeline.settings.llm_model
    return Estimate(
        cases=len(found),
        to_retriage=len(todo),
        skipped_decided=len(found) - len(todo),
        complaint_tokens=complaint,
        estimated_prompt_tokens=prompt,
        estimated_completion_tokens=completion,
        estimated_cost=round(prices.cost(prompt, completion), 4),
        drafter=f"llm:{llm}" if llm else "offline (no LLM tokens would be spent)",
        tokens_estimated=counter.estimated,
    )
