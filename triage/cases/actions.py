"""One action on one case, in one transaction: the checks, the state change, the decision, the audit.

- Optimistic concurrency: the ORM writes a case with `... WHERE version = <the version read>`, so of
  two actions on the same version exactly one lands; the other gets StaleVersionError.
- The state comes from the state machine (states.TRANSITIONS) unless the action's outcome names
  another one the machine allows for it (a follow-up that reopens the case).
- Every action records a decision and an audit event with the fields it changed, and recomputes the
  case's next deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from triage.access import policy
from triage.access.models import User
from triage.cases import queries, schedule
from triage.cases.models import CaseDetail
from triage.cases.records import audit, diff, snapshot
from triage.cases.rows import CaseRow, DecisionRow, utcnow
from triage.cases.states import TRANSITIONS, Action, CaseStatus, allowed_actions
from triage.clock import Clock, system_clock
from triage.database import Database
from triage.errors import ConcurrentUpdateError, InvalidTransitionError, StaleVersionError


@dataclass(frozen=True)
class Outcome:
    """What an action settles: the values its decision records, and where the case goes."""

    department: str | None = None
    typical_problem_id: str | None = None
    root_cause: str | None = None
    reply: str | None = None
    reason: str | None = None
    edited: tuple[str, ...] = ()  # the draft fields a person changed
    status: CaseStatus | None = None  # overrides the state machine's target (follow-up: reopened)

    def field(self, name: str) -> str | None:
        value: str | None = getattr(self, name)
        return value


Apply = Callable[[Session, CaseRow], tuple[Outcome, dict[str, list[object]]]]


class CaseActions:
    """Runs actions on cases; thread-safe."""

    def __init__(self, db: Database, *, clock: Clock = system_clock) -> None:
        self.db = db
        self.clock = clock

    def act(
        self, case_id: str, *, user: User, version: int, action: Action, apply: Apply, draft_before: bool = False
    ) -> CaseDetail:
        """Check and apply `action` to the case at `version`; `draft_before`: the decision records the
        draft that was current before the action (re-triage replaces it)."""
        try:
            with self.db.write() as s:
                row = queries.visible_row(s, case_id, user)
                self.check(row, user, action, version)
                before = snapshot(row)
                draft_no = row.draft_no
                with s.no_autoflush:  # one UPDATE, so one version step per action
                    outcome, extra = apply(s, row)
                    row.status = (outcome.status or TRANSITIONS[CaseStatus(row.status)][action]).value
                    row.updated_at = utcnow()
                    schedule.refresh(row)
                    s.add(_decision(row, action, user, outcome, draft_no=draft_no if draft_before else row.draft_no))
                s.flush()  # UPDATE ... WHERE version = :read; no row -> ConcurrentUpdateError
                audit(s, row, actor=user.name, action=action.value, changes=diff(before, snapshot(row)) | extra)
                return queries.detail(s, row, user, now=self.clock())
        except ConcurrentUpdateError as exc:
            with self.db.read() as s:  # the case as it is now, if the caller may still see it
                current = queries.get_case(s, case_id, user, now=self.clock())
            raise StaleVersionError(version, current) from exc

    def check(self, row: CaseRow, user: User, action: Action, version: int) -> None:
        policy.require_action(user, action, row.status)
        if row.version != version:
            raise StaleVersionError(version, queries.summary(row, now=self.clock()))
        if action not in TRANSITIONS[CaseStatus(row.status)]:
            raise InvalidTransitionError(action.value, row.status, allowed_actions(row.status, user.role))

    def read(self, case_id: str, user: User, action: Action, version: int) -> CaseRow:
        """The case, checked for `action` at `version`, outside any transaction (for work done before
        the action's transaction, such as drafting)."""
        with self.db.read() as s:
            row = queries.visible_row(s, case_id, user)
            self.check(row, user, action, version)
            return row


def _decision(row: CaseRow, action: Action, user: User, outcome: Outcome, *, draft_no: int) -> DecisionRow:
    return DecisionRow(
        case_id=row.id,
        action=action.value,
        actor=user.name,
        draft_no=draft_no,
        edited_fields=list(outcome.edited),
        edited=bool(outcome.edited),
        department=outcome.department,
        typical_problem_id=outcome.typical_problem_id,
        root_cause=outcome.root_cause,
        reply=outcome.reply,
        reason=outcome.reason,
    )
