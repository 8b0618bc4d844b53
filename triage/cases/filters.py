"""Which cases: the one vocabulary of case filters, shared by the queue and re-triage jobs.

A filter becomes bound values (`params`) and SQL conditions named like them (`where`), so a query
of one shape is built once and reused with new values (see queries._queue_statements). The
caller's visibility (triage.access.policy.case_scope) comes in the same form.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, and_, bindparam, or_, true

from triage.cases.rows import CaseRow, to_utc
from triage.cases.states import UNDECIDED, CaseStatus

LIKE_ESCAPE = "\\"


class CaseFilters(BaseModel):
    """Every filter is optional; filters combine with AND, the values of one filter with OR."""

    status: list[CaseStatus] = Field(default_factory=list)
    department: list[str] = Field(default_factory=list)
    channel: list[str] = Field(default_factory=list)
    typical_problem_id: list[str] = Field(default_factory=list)
    received_from: datetime | None = None
    received_to: datetime | None = None


def params(f: CaseFilters, **extra: Any) -> dict[str, Any]:
    """The bound values of the filters that are set; `extra` adds named conditions' values."""
    values: dict[str, Any] = {}
    if f.status:
        values["status"] = [s.value for s in f.status]
    if f.department:
        values["department"] = list(f.department)
    if f.channel:
        values["channel"] = list(f.channel)
    if f.typical_problem_id:
        values["typical_problem_id"] = list(f.typical_problem_id)
    if f.received_from:
        values["received_from"] = to_utc(f.received_from)
    if f.received_to:
        values["received_to"] = to_utc(f.received_to)
    values.update({k: v for k, v in extra.items() if v})
    return values


def like_pattern(text: str) -> str:
    """A LIKE pattern finding `text` anywhere, its own % and _ taken literally."""
    escaped = text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", LIKE_ESCAPE + "%")
    return "%" + escaped.replace("_", LIKE_ESCAPE + "_") + "%"


def _in(column: Any, name: str) -> ColumnElement[bool]:
    condition: ColumnElement[bool] = column.in_(bindparam(name, expanding=True))
    return condition


CONDITIONS: dict[str, Any] = {
    # visibility (policy.case_scope)
    "scope_departments": lambda: _in(CaseRow.department, "scope_departments"),
    "scope_submitter": lambda: CaseRow.submitted_by == bindparam("scope_submitter"),
    # CaseFilters
    "status": lambda: _in(CaseRow.status, "status"),
    "department": lambda: _in(CaseRow.department, "department"),
    "channel": lambda: _in(CaseRow.channel, "channel"),
    "typical_problem_id": lambda: _in(CaseRow.typical_problem_id, "typical_problem_id"),
    "received_from": lambda: CaseRow.received_at >= bindparam("received_from", type_=CaseRow.received_at.type),
    "received_to": lambda: CaseRow.received_at < bindparam("received_to", type_=CaseRow.received_at.type),
    # the queue's and the jobs' own
    "undecided": lambda: _in(CaseRow.status, "undecided"),
    "ids": lambda: _in(CaseRow.id, "ids"),
    "batch_id": lambda: CaseRow.batch_id == bindparam("batch_id"),
    "text": lambda: or_(
        CaseRow.text.like(bindparam("text"), escape=LIKE_ESCAPE),
        CaseRow.title.like(bindparam("text"), escape=LIKE_ESCAPE),
    ),
}

UNDECIDED_VALUES = [s.value for s in UNDECIDED]


def where(names: tuple[str, ...] | list[str]) -> ColumnElement[bool]:
    """The conditions named, ANDed (their values are bound at execution)."""
    return and_(true(), *(CONDITIONS[name]() for name in names))
