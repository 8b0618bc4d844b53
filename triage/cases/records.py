"""What every change to a case writes besides the case: draft versions and audit events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from triage.cases.rows import AuditRow, CaseRow, DraftRow, utcnow
from triage.cases.states import UNDECIDED, CaseStatus
from triage.models import Draft

TRACKED = (
    "status",
    "department",
    "assigned_by",
    "typical_problem_id",
    "confidence",
    "draft_no",
    "draft_error",
    "due_at",
    "contact_due_at",
    "reply_due_at",
    "contacted_at",
    "reply_sent_at",
    "supervised_at",
    "satisfaction",
    "returns",
    "bounces",
    "appeal_upheld",
)


def snapshot(row: CaseRow) -> dict[str, Any]:
    """The audited fields as JSON values (times in ISO 8601, UTC)."""
    return {f: _json(getattr(row, f)) for f in TRACKED}


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    return value


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {k: [before.get(k), v] for k, v in after.items() if before.get(k) != v}


def add_draft(s: Session, row: CaseRow, draft: Draft, *, actor: str, action: str, keep_decision: bool = False) -> None:
    """Store `draft` as the case's next version, in the caller's transaction (see add_drafts)."""
    add_drafts(s, [(row, draft)], actor=actor, action=action, keep_decision=keep_decision)


def add_drafts(
    s: Session, drafted: Sequence[tuple[CaseRow, Draft]], *, actor: str, action: str, keep_decision: bool = False
) -> list[DraftRow]:
    """Store each draft as its case's next version, in the caller's transaction, with one flush for all.

    It becomes the working draft: status drafted; department (unless a person chose it), typical
    problem and confidence follow it. With `keep_decision` (batch jobs) an approved, rejected or
    closed case keeps its state, department and decision, and the new version sits beside them.
    Returns the new draft rows, in order.
    """
    now = utcnow()
    befores, draft_rows = [], []
    with s.no_autoflush:  # one UPDATE per case, so one version step each
        for row, draft in drafted:
            befores.append(snapshot(row))
            draft_rows.append(attach_draft(s, row, draft, actor=actor, now=now))
            if not keep_decision or CaseStatus(row.status) in UNDECIDED:
                row.status = CaseStatus.DRAFTED.value
                follow_draft(row, draft)
    s.flush()  # UPDATE ... WHERE version = :read; a case changed meanwhile -> StaleDataError
    for (row, _), before in zip(drafted, befores, strict=True):
        audit(s, row, actor=actor, action=action, changes=diff(before, snapshot(row)))
    return draft_rows


def attach_draft(s: Session, row: CaseRow, draft: Draft, *, actor: str, now: datetime) -> DraftRow:
    """Add `draft` as the case's next version (no flush: the caller's action writes the case once)."""
    number = row.draft_no + 1
    draft_row = DraftRow(
        case_id=row.id, number=number, created_at=now, created_by=actor, body=draft.model_dump(mode="json")
    )
    s.add(draft_row)
    row.draft_no = number
    row.updated_at = now
    return draft_row


def follow_draft(row: CaseRow, draft: Draft) -> None:
    """The working draft's department (unless a person chose it), typical problem and confidence."""
    if row.assigned_by is None:  # a person's choice of department outlives re-drafting
        row.department = draft.department
    row.typical_problem_id = draft.typical_problem.id if draft.typical_problem else None
    row.confidence = draft.confidence
    row.draft_error = None


def audit(s: Session, row: CaseRow, *, actor: str, action: str, changes: dict[str, Any]) -> None:
    """Append an audit event; `version` is the case's version after the action."""
    s.add(AuditRow(case_id=row.id, actor=actor, action=action, changes=changes | {"version": row.version}))
