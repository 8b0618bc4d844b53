"""Reading cases: one case, the queue, the audit trail, batch progress and supervisor numbers.

Every read is scoped to what the caller may see: a caseworker their departments' cases, an intake
system what it submitted, supervisors and admins everything. A case outside the scope is "not found".
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from typing import overload

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from triage.access import policy
from triage.access.models import User
from triage.cases.models import (
    AuditEvent,
    BatchStatus,
    CaseDetail,
    CaseRequest,
    CaseSummary,
    DecisionRecord,
    DraftVersion,
    Handling,
    QueueStats,
)
from triage.cases.rows import AuditRow, BatchRow, CaseRow, DecisionRow, DraftRow, RequestRow
from triage.cases.states import Action, CaseStatus, allowed_actions
from triage.errors import NotFoundError
from triage.models import Complaint, Draft

EXCERPT_CHARS = 120
WILL_RETRY = "will retry: "  # a draft_error prefix: drafting failed for lack of models, index or database


def visible_row(s: Session, case_id: str, user: User) -> CaseRow:
    row = s.scalars(select(CaseRow).where(CaseRow.id == case_id, policy.visible(user))).one_or_none()
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
            "request_type": row.request_type,
            "urgent": row.urgent,
            "submitter_type": row.submitter_type,
            "enterprise_name": row.enterprise_name,
            "likes": row.likes,
            "dislikes": row.dislikes,
        }
    )


@overload
def _aware(value: datetime) -> datetime: ...
@overload
def _aware(value: None) -> None: ...
def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands timezone-aware columns back naive; they were written in UTC.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def summary(row: CaseRow, *, now: datetime) -> CaseSummary:
    """The case as a queue row; `overdue` as of `now`."""
    text = row.text if len(row.text) <= EXCERPT_CHARS else row.text[:EXCERPT_CHARS] + "……"
    due = _aware(row.due_at)
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
        complained_at=_aware(row.complained_at),
        due_at=due,
        overdue=due is not None and due < now,
        supervised=row.supervised_at is not None,
        submitter_type=row.submitter_type,
        bounces=row.bounces,
    )


def detail(s: Session, row: CaseRow, user: User, *, now: datetime) -> CaseDetail:
    drafts = list(s.scalars(select(DraftRow).where(DraftRow.case_id == row.id).order_by(DraftRow.number)))
    decisions = list(s.scalars(select(DecisionRow).where(DecisionRow.case_id == row.id).order_by(DecisionRow.id)))
    requests = list(s.scalars(select(RequestRow).where(RequestRow.case_id == row.id).order_by(RequestRow.id)))
    return detail_of(row, [draft_version(d) for d in drafts], decisions, user, now=now, requests=requests)


def draft_version(d: DraftRow, draft: Draft | None = None) -> DraftVersion:
    """A stored draft version; pass `draft` when it is at hand, to skip parsing the stored body."""
    return DraftVersion(
        number=d.number,
        created_at=_aware(d.created_at),
        created_by=d.created_by,
        draft=draft if draft is not None else Draft.model_validate(d.body),
    )


def detail_of(
    row: CaseRow,
    versions: list[DraftVersion],
    decisions: list[DecisionRow],
    user: User,
    *,
    now: datetime,
    requests: list[RequestRow] | None = None,
) -> CaseDetail:
    """The case as `user` sees it, from its row, draft versions, decisions and requests."""
    current = next((v.draft for v in versions if v.number == row.draft_no), None)
    return CaseDetail(
        **summary(row, now=now).model_dump(),
        handling=handling(row, requests or []),
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


def handling(row: CaseRow, requests: list[RequestRow]) -> Handling:
    times = {
        f: _aware(getattr(row, f))
        for f in (
            "contact_due_at",
            "reply_due_at",
            "contacted_at",
            "approved_at",
            "reply_sent_at",
            "followed_up_at",
            "supervised_at",
            "reminded_at",
            "notified_at",
        )
    }
    return Handling(
        **times,
        deadline_rule=row.deadline_rule,
        reply_sent_by=row.reply_sent_by,
        reply_channel=row.reply_channel,
        satisfaction=row.satisfaction,
        follow_up_note=row.follow_up_note,
        returns=row.returns,
        supervised_by=row.supervised_by,
        supervision_note=row.supervision_note,
        appeal_upheld=row.appeal_upheld,
        requests=[
            CaseRequest(
                id=r.id,
                kind=r.kind,
                status=r.status,
                reason=r.reason,
                requested_by=r.requested_by,
                requested_at=_aware(r.requested_at),
                requested_until=_aware(r.requested_until),
                decided_by=r.decided_by,
                decided_at=_aware(r.decided_at),
                decision_note=r.decision_note,
            )
            for r in requests
        ],
    )


def get_case(s: Session, case_id: str, user: User, *, now: datetime) -> CaseDetail:
    return detail(s, visible_row(s, case_id, user), user, now=now)


def audit_trail(s: Session, case_id: str, user: User) -> list[AuditEvent]:
    visible_row(s, case_id, user)
    rows = s.scalars(select(AuditRow).where(AuditRow.case_id == case_id).order_by(AuditRow.id))
    return [AuditEvent(id=r.id, at=_aware(r.at), actor=r.actor, action=r.action, changes=r.changes) for r in rows]


def batch_status(s: Session, batch_id: str, user: User) -> BatchStatus:
    batch = s.get(BatchRow, batch_id)
    if batch is None or (not policy.sees_everything(user) and batch.submitted_by != user.name):
        raise NotFoundError(f"no batch '{batch_id}'")
    # a case whose drafting failed for good has a draft_error; one waiting to be drafted again says so
    failed_for_good = CaseRow.draft_error.is_not(None) & ~CaseRow.draft_error.startswith(WILL_RETRY)
    counts = s.execute(
        select(CaseRow.status, failed_for_good, func.count())
        .where(CaseRow.batch_id == batch_id)
        .group_by(CaseRow.status, failed_for_good)
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
    conds: list[ColumnElement[bool]] = [policy.visible(user)]
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
