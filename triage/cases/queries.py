"""Reading cases: one case, the queue, the audit trail, batch progress and supervisor numbers.

Every read is scoped to what the caller may see: a caseworker their departments' cases, an intake
system what it submitted, supervisors and admins everything. A case outside the scope is "not found".
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from typing import Any, overload

from sqlalchemy import ColumnElement, Select, and_, func, select, true
from sqlalchemy.orm import Session

from triage.cases.models import (
    AuditEvent,
    BatchStatus,
    CaseDetail,
    CasePage,
    CaseQuery,
    CaseSummary,
    DecisionRecord,
    DraftVersion,
    QueueStats,
    User,
)
from triage.cases.rows import AuditRow, BatchRow, CaseRow, DecisionRow, DraftRow
from triage.cases.states import Action, CaseStatus, Role, allowed_actions
from triage.errors import NotFoundError
from triage.models import Complaint, Draft

EXCERPT_CHARS = 120


def scope(user: User) -> ColumnElement[bool]:
    """SQL condition selecting the cases a user may see."""
    if user.role is Role.CASEWORKER:
        return CaseRow.department.in_(user.departments)
    if user.role is Role.INTAKE:
        return CaseRow.submitted_by == user.name
    return true()


def visible_row(s: Session, case_id: str, user: User) -> CaseRow:
    row = s.scalars(select(CaseRow).where(CaseRow.id == case_id, scope(user))).one_or_none()
    if row is None:
        raise NotFoundError(f"no case '{case_id}'")
    return row


def complaint_of(row: CaseRow) -> Complaint:
    return Complaint.model_validate(
        {
            "text": row.text,
            "title": row.title,
            "channel": row.channel,
            "service_item": row.service_item,
            "rating": row.rating,
            "region": row.region,
            "created_at": _aware(row.complained_at),
            "contact": row.contact,
            "external_id": row.external_id,
        }
    )


@overload
def _aware(value: datetime) -> datetime: ...
@overload
def _aware(value: None) -> None: ...
def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands timezone-aware columns back naive; they were written in UTC.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def summary(row: CaseRow) -> CaseSummary:
    text = row.text if len(row.text) <= EXCERPT_CHARS else row.text[:EXCERPT_CHARS] + "……"
    return CaseSummary(
        id=row.id,
        external_id=row.external_id,
        status=row.status,  # pydantic validates the string; cheaper than CaseStatus(...) per row
        department=row.department,
        typical_problem_id=row.typical_problem_id,
        channel=row.channel,
        title=row.title,
        excerpt=text,
        confidence=row.confidence,
        draft_no=row.draft_no,
        draft_error=row.draft_error,
        version=row.version,
        batch_id=row.batch_id,
        submitted_by=row.submitted_by,
        received_at=_aware(row.received_at),
        updated_at=_aware(row.updated_at),
        decided_at=_aware(row.decided_at),
    )


def detail(s: Session, row: CaseRow, user: User) -> CaseDetail:
    drafts = list(s.scalars(select(DraftRow).where(DraftRow.case_id == row.id).order_by(DraftRow.number)))
    decisions = list(s.scalars(select(DecisionRow).where(DecisionRow.case_id == row.id).order_by(DecisionRow.id)))
    versions = [
        DraftVersion(
            number=d.number,
            created_at=_aware(d.created_at),
            created_by=d.created_by,
            draft=Draft.model_validate(d.body),
        )
        for d in drafts
    ]
    current = next((v.draft for v in versions if v.number == row.draft_no), None)
    return CaseDetail(
        **summary(row).model_dump(),
        complaint=complaint_of(row),
        draft=current,
        drafts=versions,
        decisions=[
            DecisionRecord(
                action=d.action,
                actor=d.actor,
                at=_aware(d.at),
                draft_no=d.draft_no,
                edited_fields=list(d.edited_fields),
                department=d.department,
                typical_problem_id=d.typical_problem_id,
                root_cause=d.root_cause,
                reply=d.reply,
                reason=d.reason,
            )
            for d in decisions
        ],
        allowed_actions=allowed_actions(row.status, user.role),
    )


def get_case(s: Session, case_id: str, user: User) -> CaseDetail:
    return detail(s, visible_row(s, case_id, user), user)


_SORTS: dict[str, Any] = {
    "received_at": CaseRow.received_at.asc(),
    "-received_at": CaseRow.received_at.desc(),
    "updated_at": CaseRow.updated_at.asc(),
    "-updated_at": CaseRow.updated_at.desc(),
    "confidence": CaseRow.confidence.asc().nulls_first(),
    "-confidence": CaseRow.confidence.desc().nulls_last(),
}


def _filtered(stmt: Select[Any], q: CaseQuery, user: User) -> Select[Any]:
    conds: list[ColumnElement[bool]] = [scope(user)]
    if q.status:
        conds.append(CaseRow.status.in_([s.value for s in q.status]))
    if q.department:
        conds.append(CaseRow.department.in_(q.department))
    if q.channel:
        conds.append(CaseRow.channel.in_(q.channel))
    if q.typical_problem_id:
        conds.append(CaseRow.typical_problem_id == q.typical_problem_id)
    if q.received_from:
        conds.append(CaseRow.received_at >= q.received_from)
    if q.received_to:
        conds.append(CaseRow.received_at < q.received_to)
    if q.batch_id:
        conds.append(CaseRow.batch_id == q.batch_id)
    if q.text:
        conds.append(CaseRow.text.contains(q.text, autoescape=True) | CaseRow.title.contains(q.text, autoescape=True))
    return stmt.where(and_(*conds))


def list_cases(s: Session, q: CaseQuery, user: User) -> CasePage:
    # Two index scans (count, then the page in index order) beat one query with count(*) OVER (),
    # which makes PostgreSQL materialise and sort every matching row before the LIMIT.
    total = int(s.scalar(_filtered(select(func.count()).select_from(CaseRow), q, user)) or 0)
    stmt = _filtered(select(CaseRow), q, user).order_by(_SORTS[q.sort], CaseRow.id)
    rows = s.scalars(stmt.offset((q.page - 1) * q.page_size).limit(q.page_size))
    return CasePage(items=[summary(r) for r in rows], total=total, page=q.page, page_size=q.page_size)


def audit_trail(s: Session, case_id: str, user: User) -> list[AuditEvent]:
    visible_row(s, case_id, user)
    rows = s.scalars(select(AuditRow).where(AuditRow.case_id == case_id).order_by(AuditRow.id))
    return [AuditEvent(id=r.id, at=_aware(r.at), actor=r.actor, action=r.action, changes=r.changes) for r in rows]


def batch_status(s: Session, batch_id: str, user: User) -> BatchStatus:
    batch = s.get(BatchRow, batch_id)
    if batch is None or (user.role in (Role.CASEWORKER, Role.INTAKE) and batch.submitted_by != user.name):
        raise NotFoundError(f"no batch '{batch_id}'")
    counts = s.execute(
        select(CaseRow.status, CaseRow.draft_error.is_not(None), func.count())
        .where(CaseRow.batch_id == batch_id)
        .group_by(CaseRow.status, CaseRow.draft_error.is_not(None))
    ).all()
    by_status: dict[str, int] = {}
    pending = failed = 0
    for status, has_error, n in counts:
        by_status[status] = by_status.get(status, 0) + n
        if status == CaseStatus.NEW:
            failed += n if has_error else 0
            pending += 0 if has_error else n
    return BatchStatus(
        id=batch.id,
        submitted_by=batch.submitted_by,
        created_at=_aware(batch.created_at),
        total=batch.total,
        by_status=by_status,
        pending=pending,
        failed=failed,
        done=pending == 0,
    )


def queue_stats(s: Session, user: User, *, since: datetime | None = None, until: datetime | None = None) -> QueueStats:
    conds: list[ColumnElement[bool]] = [scope(user)]
    if since:
        conds.append(CaseRow.received_at >= since)
    if until:
        conds.append(CaseRow.received_at < until)
    where = and_(*conds)
    by_status: dict[str, int] = {}
    by_department: dict[str, dict[str, int]] = {}
    for department, status, n in s.execute(
        select(CaseRow.department, CaseRow.status, func.count())
        .where(where)
        .group_by(CaseRow.department, CaseRow.status)
    ):
        by_status[status] = by_status.get(status, 0) + n
        by_department.setdefault(department or "(unassigned)", {})[status] = n
    approvals = s.execute(
        select(DecisionRow.edited, func.count())
        .join(CaseRow, CaseRow.id == DecisionRow.case_id)
        .where(where, DecisionRow.action == Action.APPROVE.value)
        .group_by(DecisionRow.edited)
    ).all()
    approved = sum(n for _, n in approvals)
    unedited = sum(n for edited, n in approvals if not edited)
    decided_rows = s.execute(
        select(CaseRow.received_at, CaseRow.decided_at).where(where, CaseRow.decided_at.is_not(None))
    ).all()
    waits = [(_aware(d) - _aware(r)).total_seconds() for r, d in decided_rows if d is not None]
    return QueueStats(
        total=sum(by_status.values()),
        by_status=by_status,
        by_department=by_department,
        approved=approved,
        approved_unedited=unedited,
        approved_unedited_share=round(unedited / approved, 4) if approved else None,
        decided=len(waits),
        median_time_to_decision_s=round(statistics.median(waits), 3) if waits else None,
    )
