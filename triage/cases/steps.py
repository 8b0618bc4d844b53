"""The steps a department takes towards the citizen: first contact, returning a case it does not own
(退单), recording that the reply went out, and the follow-up (回访) with the citizen's satisfaction.

The service records that a reply went out (who, through which channel, when); it does not send SMS or
letters itself. A follow-up with 满意 or 基本满意 closes the case; 不满意 reopens it for its department
with the reason and a new reply deadline, and counts against its typical problem.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, tzinfo
from enum import StrEnum

from sqlalchemy.orm import Session

from triage.access.models import User
from triage.cases.actions import CaseActions, Outcome
from triage.cases.models import CaseDetail
from triage.cases.rows import CaseRow
from triage.cases.schedule import facts, start
from triage.cases.states import Action, CaseStatus, Role
from triage.clock import in_utc
from triage.deadlines.rules import Deadlines
from triage.errors import ForbiddenError, InputError


class Satisfaction(StrEnum):
    SATISFIED = "满意"
    BASICALLY = "基本满意"
    DISSATISFIED = "不满意"


SATISFIED = frozenset({Satisfaction.SATISFIED, Satisfaction.BASICALLY})


class Steps:
    """Records the steps; thread-safe."""

    def __init__(self, actions: CaseActions, deadlines: Deadlines, *, no_return_channels: Collection[str] = ()) -> None:
        self.actions = actions
        self.deadlines = deadlines
        self.no_return_channels = frozenset(no_return_channels)

    @property
    def tz(self) -> tzinfo:
        return self.deadlines.tz

    def _when(self, value: datetime | None, field: str) -> datetime:
        """A time a person gives for a step (now when left out): not in the future."""
        now = self.actions.clock()
        when = in_utc(value, self.tz) if value is not None else now
        if when > now:
            raise InputError("is in the future", field=field)
        return when

    def contact(self, case_id: str, *, user: User, version: int, at: datetime | None = None) -> CaseDetail:
        """The department reached the citizen (首次联系); the next deadline becomes the reply's."""
        when = self._when(at, "at")

        def apply(s: Session, row: CaseRow) -> tuple[Outcome, dict[str, list[object]]]:
            _after_complaint(row, when)
            if row.contacted_at is not None:
                raise InputError("the first contact is already recorded", field="at")
            row.contacted_at = when
            return Outcome(), {"contacted_at": [None, when.isoformat()]}

        return self.actions.act(case_id, user=user, version=version, action=Action.CONTACT, apply=apply)

    def return_case(self, case_id: str, *, user: User, version: int, reason: str) -> CaseDetail:
        """Hand the case back (退单): it is not this department's; the reason names whose it is."""
        if not reason.strip():
            raise InputError("give the jurisdiction reason: whose matter it is and why", field="reason")

        def apply(s: Session, row: CaseRow) -> tuple[Outcome, dict[str, list[object]]]:
            if row.channel in self.no_return_channels and user.role is Role.CASEWORKER:
                raise ForbiddenError(
                    f"{row.channel} cases are not returned by departments; ask a supervisor to reassign it"
                )
            row.returns += 1
            return Outcome(department=row.department, reason=reason), {"reason": [None, reason]}

        return self.actions.act(case_id, user=user, version=version, action=Action.RETURN, apply=apply)

    def send_reply(
        self, case_id: str, *, user: User, version: int, channel: str, at: datetime | None = None
    ) -> CaseDetail:
        """The approved reply went out to the citizen (by SMS, phone, letter, the platform ...)."""
        if not channel.strip():
            raise InputError("say how the reply went out (短信, 电话, 平台 ...)", field="channel")
        when = self._when(at, "at")

        def apply(s: Session, row: CaseRow) -> tuple[Outcome, dict[str, list[object]]]:
            _after_complaint(row, when)
            row.reply_sent_at, row.reply_sent_by, row.reply_channel = when, user.name, channel.strip()[:50]
            row.contacted_at = row.contacted_at or when  # the reply reached the citizen: contact is made
            return Outcome(), {"reply_sent_at": [None, when.isoformat()], "reply_channel": [None, row.reply_channel]}

        return self.actions.act(case_id, user=user, version=version, action=Action.SEND_REPLY, apply=apply)

    def follow_up(
        self,
        case_id: str,
        *,
        user: User,
        version: int,
        satisfaction: Satisfaction,
        note: str | None = None,
        at: datetime | None = None,
    ) -> CaseDetail:
        """The citizen's verdict on the reply: satisfied closes the case, dissatisfied reopens it."""
        when = self._when(at, "at")
        if satisfaction is Satisfaction.DISSATISFIED and not (note or "").strip():
            raise InputError("say what the citizen is still dissatisfied with", field="note")

        def apply(s: Session, row: CaseRow) -> tuple[Outcome, dict[str, list[object]]]:
            _after_complaint(row, when)
            row.followed_up_at, row.satisfaction, row.follow_up_note = when, satisfaction.value, note
            row.follow_ups += 1
            if satisfaction in SATISFIED:
                return Outcome(reason=note), {}
            # reopened: handled again by its department, with a new reply deadline counted from now
            row.dissatisfactions += 1
            row.reply_sent_at = None
            row.reply_due_at = self.deadlines.after(self.deadlines.reply_span(facts(row)), when)
            return Outcome(reason=note, status=CaseStatus.REOPENED), {"reason": [None, note]}

        return self.actions.act(case_id, user=user, version=version, action=Action.FOLLOW_UP, apply=apply)


def _after_complaint(row: CaseRow, when: datetime) -> None:
    """A step's time lies between the complaint and now (the rates measure it against the deadlines)."""
    if when < start(row):
        raise InputError("is before the complaint was made", field="at")
