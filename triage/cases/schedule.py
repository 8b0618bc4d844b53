"""A case's deadlines: set when it is stored, moved by extensions, supervision and reopening.

`due_at` is the deadline of the next step, kept in the row so the queue can filter and sort by it:
first contact with the citizen (when the rule has a contact step and it has not happened), then the
reply. A case whose reply went out, or that is rejected or closed, has nothing due. The clock
starts when the citizen complained (the complaint's own time, kept as given on import), so replayed
history gets the deadlines it had.
"""

from __future__ import annotations

from datetime import UTC, datetime

from triage.cases.rows import CaseRow
from triage.cases.states import OPEN, CaseStatus
from triage.deadlines.rules import CaseFacts, Deadlines


def facts(row: CaseRow) -> CaseFacts:
    return CaseFacts(
        channel=row.channel,
        rating=row.rating,
        request_type=row.request_type,
        urgent=bool(row.urgent),
        submitter_type=row.submitter_type,
    )


def start(row: CaseRow) -> datetime:
    when = row.complained_at or row.received_at
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def schedule(row: CaseRow, deadlines: Deadlines) -> None:
    """Set a new case's deadlines from the rule that matches it."""
    due = deadlines.due(facts(row), start(row))
    row.deadline_rule = due.rule
    row.contact_due_at = due.contact
    row.reply_due_at = due.reply
    refresh(row)


def restart(row: CaseRow, deadlines: Deadlines, now: datetime) -> None:
    """The case's rule again, counted from `now` (a department given the case by a reassignment has the
    rule's time, not what the previous one left); a contact already made stays made."""
    due = deadlines.due(facts(row), now)
    row.contact_due_at = due.contact if row.contacted_at is None else row.contact_due_at
    row.reply_due_at = due.reply
    refresh(row)


# Nothing is due from a case that waits for the citizen's verdict or for a supervisor to place it.
_WAITING = frozenset({CaseStatus.REPLY_SENT, CaseStatus.RETURNED})


def next_due(row: CaseRow) -> datetime | None:
    if CaseStatus(row.status) not in OPEN or CaseStatus(row.status) in _WAITING:
        return None
    if row.reply_sent_at is not None:
        return None
    if row.contact_due_at is not None and row.contacted_at is None:
        return row.contact_due_at
    return row.reply_due_at


def refresh(row: CaseRow) -> None:
    """Recompute `due_at` after a step or a new deadline; a later deadline starts a new escalation
    ladder (the reminders and notices of the old one stay in the audit trail)."""
    before = row.due_at
    row.due_at = next_due(row)
    if row.due_at is not None and (before is None or _aware(row.due_at) > _aware(before)):
        row.reminded_at = None
        row.notified_at = None


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite hands back naive UTC
