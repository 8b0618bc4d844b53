"""The figures supervisors follow, by department and for the whole, computed by the database.

One grouped pass over the cases (conditional counts per department) and one over the problems:

- overdue cases: open cases past their next deadline;
- response rate: cases answered / cases whose reply was due by now (or that were answered anyway);
- on-time rate: answers sent by their reply deadline / answers sent;
- satisfaction rate: follow-ups with 满意 or 基本满意 / follow-ups (every follow-up counts, not only a
  case's last: a 不满意 that reopened a case stays counted after a later 满意);
- rectification completion rate: problems rectified or verified by their deadline / problems whose
  deadline has passed; overdue problems: those still under rectification past their deadline;
- bad reviews: 好差评 ratings of 1 or 2, except those whose appeal was upheld.

Rejected cases (not actionable) count in `cases` only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, select, true
from sqlalchemy.orm import Session

from triage.cases.rows import CaseRow
from triage.cases.states import OPEN, CaseStatus
from triage.models import ProblemStatus
from triage.problems.rows import ProblemRow
from triage.problems.states import DONE, TRACKED
from triage.supervision.models import DepartmentFigures

UNASSIGNED = "(unassigned)"


def _n(condition: ColumnElement[bool]) -> Any:
    return func.sum(case((condition, 1), else_=0))


def case_figures(s: Session, *, now: datetime, where: ColumnElement[bool]) -> dict[str, dict[str, int]]:
    """department -> counts of its cases."""
    is_open = CaseRow.status.in_([st.value for st in OPEN])
    handled = CaseRow.status != CaseStatus.REJECTED.value
    answered = CaseRow.reply_sent_at.is_not(None)
    columns = {
        "cases": func.count(),
        "open_cases": _n(is_open),
        "overdue_cases": _n(and_(is_open, CaseRow.due_at < now)),
        "supervised_cases": _n(and_(is_open, CaseRow.supervised_at.is_not(None))),
        "reminded_cases": _n(and_(is_open, CaseRow.reminded_at.is_not(None))),
        "notified_cases": _n(and_(is_open, CaseRow.notified_at.is_not(None))),
        "returns": func.sum(CaseRow.returns),
        "bounces": func.sum(CaseRow.bounces),
        "replies_due": _n(and_(handled, (CaseRow.reply_due_at < now) | answered)),
        "replied": _n(and_(handled, answered)),
        "replied_on_time": _n(and_(handled, answered, CaseRow.reply_sent_at <= CaseRow.reply_due_at)),
        "followed_up": func.sum(CaseRow.follow_ups),
        "satisfied": func.sum(CaseRow.follow_ups - CaseRow.dissatisfactions),
        "reopened": func.sum(CaseRow.dissatisfactions),
        "bad_reviews": _n(and_(CaseRow.channel == "好差评", CaseRow.rating <= 2, CaseRow.appeal_upheld.is_(False))),
        "appeals_upheld": _n(CaseRow.appeal_upheld.is_(True)),
    }
    department = func.coalesce(CaseRow.department, UNASSIGNED)
    rows = s.execute(select(department, *columns.values()).where(where).group_by(department))
    return {str(d): {k: int(v or 0) for k, v in zip(columns, values, strict=True)} for d, *values in rows}


def problem_figures(s: Session, *, now: datetime, departments: list[str] | None) -> dict[str, dict[str, int]]:
    """owner department -> counts of its problems' rectification."""
    owner = func.coalesce(ProblemRow.owner_department, ProblemRow.department)
    past = and_(ProblemRow.deadline.is_not(None), ProblemRow.deadline < now)
    on_time = and_(
        past,
        ProblemRow.status.in_([st.value for st in DONE]),
        ProblemRow.rectified_at.is_not(None),
        ProblemRow.rectified_at <= ProblemRow.deadline,
    )
    overdue = and_(past, ProblemRow.status.in_([st.value for st in TRACKED]))
    scope = owner.in_(departments) if departments is not None else true()
    rows = s.execute(
        select(owner, _n(past), _n(on_time), _n(overdue))
        .where(scope, ProblemRow.status != ProblemStatus.ARCHIVED.value)
        .group_by(owner)
    )
    return {
        str(d): {"problems_due": int(a or 0), "problems_done_on_time": int(b or 0), "overdue_problems": int(c or 0)}
        for d, a, b, c in rows
    }


def combine(cases: dict[str, int], problems: dict[str, int]) -> DepartmentFigures:
    c = {k: cases.get(k, 0) for k in _CASE_KEYS}
    p = {k: problems.get(k, 0) for k in ("problems_due", "problems_done_on_time", "overdue_problems")}
    return DepartmentFigures(
        **c,
        **p,
        response_rate=_rate(c["replied"], c["replies_due"]),
        on_time_rate=_rate(c["replied_on_time"], c["replied"]),
        satisfaction_rate=_rate(c["satisfied"], c["followed_up"]),
        rectification_completion_rate=_rate(p["problems_done_on_time"], p["problems_due"]),
    )


def total(parts: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in parts:
        for k, v in part.items():
            out[k] = out.get(k, 0) + v
    return out


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


_CASE_KEYS = (
    "cases",
    "open_cases",
    "overdue_cases",
    "supervised_cases",
    "reminded_cases",
    "notified_cases",
    "returns",
    "bounces",
    "replies_due",
    "replied",
    "replied_on_time",
    "followed_up",
    "satisfied",
    "reopened",
    "bad_reviews",
    "appeals_upheld",
)
