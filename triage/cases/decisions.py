"""Caseworkers' decisions: approve (as is or edited), reject, reassign, re-triage, close.

Each is one transaction through `CaseActions` (actions.py): the case update, the decision, the audit
event (and, on approval, the past case) commit together or not at all. Drafting (re-triage, the
re-draft of a reassignment) runs before the transaction, never inside it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import replace
from datetime import UTC

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.access import policy
from triage.access.models import User
from triage.cases import queries
from triage.cases.actions import CaseActions, Outcome
from triage.cases.models import CaseDetail, Edits
from triage.cases.records import attach_draft, follow_draft
from triage.cases.rows import CaseRow, DraftRow, utcnow
from triage.cases.schedule import restart
from triage.cases.states import Action, CaseStatus, Role
from triage.database import Database
from triage.deadlines.rules import Deadlines
from triage.errors import ForbiddenError, InputError, TriageError
from triage.groupcall import GroupCall
from triage.knowledge import KnowledgeBase
from triage.models import Draft, PastCase
from triage.pipeline import TriagePipeline
from triage.store import PastCaseRow
from triage.workspace import Workspace

log = logging.getLogger(__name__)
DRAFT_FIELDS = ("department", "typical_problem_id", "root_cause", "reply")


class Decisions:
    """Records decisions on cases; thread-safe."""

    def __init__(
        self,
        db: Database,
        pipeline: TriagePipeline,
        workspace: Workspace,
        *,
        actions: CaseActions,
        deadlines: Deadlines,
        no_return_channels: Collection[str] = (),
    ) -> None:
        self.db = db
        self.pipeline = pipeline
        self.workspace = workspace
        self.actions = actions
        self.deadlines = deadlines
        self.no_return_channels = frozenset(no_return_channels)
        # An approval makes the case retrievable at once. Chroma's upsert has a high fixed cost (embedded
        # Chroma persists its log on every write), so concurrent approvals share one upsert call.
        self._indexer: GroupCall[PastCase, None] = GroupCall(self._index)

    @property
    def kb(self) -> KnowledgeBase:
        return self.workspace.kb

    def check_department(self, name: str, *, field: str = "department") -> str:
        return self.workspace.kb.check_department(name, field=field)

    def _index(self, cases: list[PastCase]) -> list[None]:
        self.workspace.index_cases(cases)
        return [None] * len(cases)

    # -- the actions -----------------------------------------------------------------------
    def approve(self, case_id: str, *, user: User, version: int, edits: Edits | None = None) -> CaseDetail:
        """Approve the current draft, as is or with edits; the case joins the past cases at once."""
        approved: list[PastCase] = []
        kb = self.kb

        def apply(s: Session, row: CaseRow) -> tuple[Outcome, dict[str, list[object]]]:
            draft = _current_draft(s, row)
            original = Outcome(
                # the case's department and problem: the draft's, unless a person reassigned it since
                department=row.department or (draft.department if draft else None),
                typical_problem_id=row.typical_problem_id,
                root_cause=draft.root_cause if draft else None,
                reply=draft.reply if draft else None,
            )
            given = edits.model_fields_set if edits else set()
            final = replace(original, **{f: getattr(edits, f) for f in given})
            final = replace(final, department=kb.check_department(final.department or "", field="edits.department"))
            assert final.department is not None
            _check_final(kb, final, user)
            if draft is not None and draft.department != final.department and "reply" not in given:
                raise InputError(
                    f"the draft reply was written for {draft.department}; give the reply for "
                    f"{final.department} in edits.reply",
                    field="edits.reply",
                )
            edited = tuple(f for f in DRAFT_FIELDS if final.field(f) != original.field(f))
            if "department" in edited:
                row.assigned_by = user.name
            row.department = final.department
            row.typical_problem_id = final.typical_problem_id
            row.decided_at = row.decided_at or utcnow()
            row.approved_at = row.approved_at or self.actions.clock()
            approved.append(_past_case(row, final))
            s.merge(PastCaseRow.from_model(approved[-1]))
            extra: dict[str, list[object]] = {
                f"draft.{f}": [original.field(f), final.field(f)] for f in edited if f != "department"
            }
            return replace(final, edited=edited), extra

        detail = self.actions.act(case_id, user=user, version=version, action=Action.APPROVE, apply=apply)
        try:
            self._indexer.submit(approved)  # retrievable when this returns
        except TriageError as exc:  # the row is committed; `triage kb reindex` rebuilds the index from it
            log.warning("approved case %s is stored but not yet retrievable: %s", case_id, exc)
        return detail

    def reject(self, case_id: str, *, user: User, version: int, reason: str) -> CaseDetail:
        """Reject the draft with a reason; the case can then be re-triaged, reassigned or closed."""

        def apply(s: Session, row: CaseRow) -> tuple[Outcome, dict[str, list[object]]]:
            row.decided_at = row.decided_at or utcnow()
            return Outcome(reason=reason), {"reason": [None, reason]}

        return self.actions.act(case_id, user=user, version=version, action=Action.REJECT, apply=apply)

    def reassign(self, case_id: str, *, user: User, version: int, department: str, reason: str | None) -> CaseDetail:
        """Move the case to another department's queue, with a draft written for that department and the
        deadlines of its rule counted from now. A returned case may go back to the department that
        returned it (the supervisor refuses the return)."""
        target = self.check_department(department)
        with self.db.read() as s:
            row = queries.visible_row(s, case_id, user)
            self.actions.check(row, user, Action.REASSIGN, version)
            self._may_move(row, user)
            _moves(row, target)
            complaint = queries.complaint_of(row)
        failure = ""
        try:
            draft: Draft | None = self.pipeline.triage_many([complaint], departments=[target])[0]
        except Exception as exc:  # the move is the person's decision; it stands without a new draft
            log.exception("re-drafting case %s for %s failed", case_id, target)
            draft, failure = None, f"re-drafting for {target} failed: {type(exc).__name__}: {exc}"

        def apply(s: Session, row: CaseRow) -> tuple[Outcome, dict[str, list[object]]]:
            _moves(row, target)
            if row.department is not None and row.department != target:
                row.bounces += 1
                restart(row, self.deadlines, self.actions.clock())
            row.department = target
            row.assigned_by = user.name
            if draft is not None:
                attach_draft(s, row, draft, actor=user.name, now=utcnow())
                follow_draft(row, draft)
            else:  # the old department's problem and reply do not follow the case
                row.typical_problem_id = None
                row.draft_error = failure[:2000]
            return Outcome(department=target, reason=reason), {}

        return self.actions.act(case_id, user=user, version=version, action=Action.REASSIGN, apply=apply)

    def _may_move(self, row: CaseRow, user: User) -> None:
        """Cases of some channels (好差评 by default) are moved by supervisors only: no returns, and no
        reassignment by the department holding them."""
        if row.channel in self.no_return_channels and user.role is Role.CASEWORKER:
            raise ForbiddenError(
                f"{row.channel} cases are not returned or reassigned by departments; ask a supervisor to reassign it"
            )

    def close(self, case_id: str, *, user: User, version: int, note: str | None = None) -> CaseDetail:
        """Close a decided case (the reply went out, or a rejected case needs nothing more)."""

        def apply(s: Session, row: CaseRow) -> tuple[Outcome, dict[str, list[object]]]:
            return Outcome(reason=note), {}

        return self.actions.act(case_id, user=user, version=version, action=Action.CLOSE, apply=apply)

    def retriage(self, case_id: str, *, user: User, version: int) -> CaseDetail:
        """Draft the case again with the current knowledge and models; earlier versions are kept."""
        with self.db.read() as s:
            row = queries.visible_row(s, case_id, user)
            self.actions.check(row, user, Action.RETRIAGE, version)
            complaint = queries.complaint_of(row)
            chosen = row.department if row.assigned_by else None  # a person's choice: drafted for it
        draft = self.pipeline.triage_many([complaint], departments=[chosen])[0]

        def apply(s: Session, row: CaseRow) -> tuple[Outcome, dict[str, list[object]]]:
            attach_draft(s, row, draft, actor=user.name, now=utcnow())
            follow_draft(row, draft)
            return Outcome(), {}

        # The decision records the draft it replaced, as before this action.
        return self.actions.act(
            case_id, user=user, version=version, action=Action.RETRIAGE, apply=apply, draft_before=True
        )


def _moves(row: CaseRow, target: str) -> None:
    if target == row.department and CaseStatus(row.status) is not CaseStatus.RETURNED:
        raise InputError(f"the case is already with {target}", field="department")


def _check_final(kb: KnowledgeBase, final: Outcome, user: User) -> None:
    assert final.department is not None
    policy.require_decides_for(user, final.department)
    pid = final.typical_problem_id
    if pid is not None:
        problem = kb.problems_by_id.get(pid)
        if problem is None:
            raise InputError(f"unknown typical problem '{pid}'", field="edits.typical_problem_id")
        if problem.department != final.department:
            raise InputError(
                f"typical problem {pid} belongs to {problem.department}, not {final.department}",
                field="edits.typical_problem_id",
            )
    for f in ("root_cause", "reply"):
        if not final.field(f):
            raise InputError("the case has no draft to take it from; give it in the edits", field=f"edits.{f}")


def _current_draft(s: Session, row: CaseRow) -> Draft | None:
    if not row.draft_no:
        return None
    body = s.scalars(select(DraftRow.body).where(DraftRow.case_id == row.id, DraftRow.number == row.draft_no)).one()
    return Draft.model_validate(body)


def _past_case(row: CaseRow, final: Outcome) -> PastCase:
    when = row.complained_at or row.received_at
    assert final.department is not None and final.root_cause is not None and final.reply is not None
    return PastCase(
        id=f"case-{row.id}",
        text=row.text,
        title=row.title,
        department=final.department,
        typical_problem_id=final.typical_problem_id,
        root_cause=final.root_cause,
        reply=final.reply,
        channel=row.channel,
        created_at=when.astimezone(UTC).isoformat() if when.tzinfo else when.isoformat(),
        source="approved",
    )
