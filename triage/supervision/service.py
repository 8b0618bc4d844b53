"""Supervision (督办): flags and new deadlines on cases, departments' extension requests (延期) and
appeals (申诉复核) with the supervisors' decisions, the escalation sweep, and the figures.

Who may do what:
- a department's caseworkers (and admins) request an extension, before the deadline, or appeal a
  review of one of their cases;
- supervisors (and admins) flag cases, and grant or refuse requests: a granted extension moves the
  reply deadline; an upheld appeal keeps the case on record but out of the department's bad-review
  figures;
- the figures: supervisors and admins see every department, caseworkers their own.
Every step is audited on the case.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, select, true
from sqlalchemy.orm import Session

from triage.access import policy
from triage.access.models import User
from triage.cache import TtlCache
from triage.cases import queries, schedule
from triage.cases.models import CaseDetail
from triage.cases.records import audit, diff, snapshot
from triage.cases.rows import CaseRow, RequestRow, utcnow
from triage.cases.states import OPEN, CaseStatus, Role
from triage.clock import Clock, deadline_utc, in_utc, system_clock
from triage.database import Database
from triage.deadlines.rules import Deadlines
from triage.errors import ForbiddenError, InputError, InvalidTransitionError, NotFoundError, StaleVersionError
from triage.supervision import escalation, figures
from triage.supervision.models import (
    AppealRequest,
    Escalation,
    ExtensionRequest,
    RequestDecision,
    RequestKind,
    RequestStatus,
    Supervise,
    Supervision,
)

SUPERVISORS = frozenset({Role.SUPERVISOR, Role.ADMIN})
Change = Callable[[Session, CaseRow], dict[str, list[object]]]


class SupervisionService:
    """Thread-safe. The figures are reused per scope and period for `cache_s` seconds (triage.cache)."""

    def __init__(
        self,
        db: Database,
        deadlines: Deadlines,
        *,
        clock: Clock = system_clock,
        notice_after: int = 3,
        cache_s: float = 0.0,
    ) -> None:
        self.db = db
        self.deadlines = deadlines
        self.clock = clock
        self.notice_after = notice_after
        self._figures: TtlCache[Supervision] = TtlCache(cache_s)

    @property
    def tz(self) -> ZoneInfo:
        return self.deadlines.tz

    # -- on cases --------------------------------------------------------------------------
    def supervise(self, case_id: str, body: Supervise, *, user: User) -> CaseDetail:
        """Flag the case (督办) with a note and a new deadline, which replaces its open deadlines (a first
        contact still due included); it goes to the top of its department's queue."""
        due = deadline_utc(body.due, self.tz)

        def change(s: Session, row: CaseRow) -> dict[str, list[object]]:
            _require(user, SUPERVISORS, "flag cases for supervision")
            if due <= self.clock():
                raise InputError("the new deadline has passed already", field="due")
            _open(row, "supervise")
            row.supervised_at, row.supervised_by, row.supervision_note = self.clock(), user.name, body.note
            row.reply_due_at = due
            if row.contacted_at is None:
                row.contact_due_at = None
            return {"supervision_note": [None, body.note]}

        return self._change(case_id, user, body.version, "supervise", change)

    def request_extension(self, case_id: str, body: ExtensionRequest, *, user: User) -> CaseDetail:
        """The department asks for more time for the reply, before the deadline, with a reason."""
        now = self.clock()

        def change(s: Session, row: CaseRow) -> dict[str, list[object]]:
            _department(user, row)
            _open(row, "request an extension for")
            if row.reply_due_at is None or _utc(row.reply_due_at) <= now:
                raise InputError("an extension is requested before the reply deadline; it has passed", field="until")
            until = deadline_utc(body.until, self.tz) if body.until else self._complex_deadline(row)
            if until is None:
                raise InputError("say until when: the case's deadline rule has no longer deadline", field="until")
            if row.reply_due_at is not None and until <= _utc(row.reply_due_at):
                raise InputError("must be later than the current reply deadline", field="until")
            _no_pending(s, row, RequestKind.EXTENSION)
            s.add(_request(row, RequestKind.EXTENSION, user, body.reason, now, until))
            return {"extension_requested": [None, until.isoformat()]}

        return self._change(case_id, user, body.version, "request_extension", change)

    def appeal(self, case_id: str, body: AppealRequest, *, user: User) -> CaseDetail:
        """The department appeals the review as mistaken or malicious (申诉复核)."""
        now = self.clock()

        def change(s: Session, row: CaseRow) -> dict[str, list[object]]:
            _department(user, row)
            if row.appeal_upheld:
                raise InputError("an appeal on this case was upheld already", field="reason")
            _no_pending(s, row, RequestKind.APPEAL)
            s.add(_request(row, RequestKind.APPEAL, user, body.reason, now, None))
            return {"appeal_requested": [None, body.reason]}

        return self._change(case_id, user, body.version, "appeal", change)

    def decide(self, case_id: str, request_id: int, body: RequestDecision, *, user: User) -> CaseDetail:
        """Grant or refuse a pending request: an extension moves the reply deadline, an upheld appeal
        takes the case out of the department's bad-review figures."""
        now = self.clock()

        def change(s: Session, row: CaseRow) -> dict[str, list[object]]:
            _require(user, SUPERVISORS, "decide extension requests and appeals")
            request = s.get(RequestRow, request_id, with_for_update=True)
            if request is None or request.case_id != row.id:
                raise NotFoundError(f"no request {request_id} on case '{case_id}'")
            if request.status != RequestStatus.PENDING:
                raise InvalidTransitionError("decide", f"request {request.status}", [])
            request.status = (RequestStatus.GRANTED if body.grant else RequestStatus.REFUSED).value
            request.decided_by, request.decided_at, request.decision_note = user.name, now, body.note
            until = request.requested_until
            if body.grant and request.kind == RequestKind.EXTENSION and until is not None:
                if row.reply_due_at is not None and _utc(until) <= _utc(row.reply_due_at):
                    raise InputError(
                        "the reply deadline is already later than the extension asked for; refuse it", field="grant"
                    )
                row.reply_due_at = until
            if body.grant and request.kind == RequestKind.APPEAL:
                row.appeal_upheld = True
            return {f"{request.kind}_{request.status}": [None, body.note]}

        return self._change(case_id, user, body.version, f"decide_{'grant' if body.grant else 'refuse'}", change)

    def _complex_deadline(self, row: CaseRow) -> datetime | None:
        due = self.deadlines.due(schedule.facts(row), schedule.start(row))
        return due.complex_reply

    def _change(self, case_id: str, user: User, version: int, action: str, change: Change) -> CaseDetail:
        with self.db.write() as s:
            row = s.scalars(
                select(CaseRow).where(CaseRow.id == case_id, policy.visible(user)).with_for_update()
            ).one_or_none()
            if row is None:
                raise NotFoundError(f"no case '{case_id}'")
            if row.version != version:
                raise StaleVersionError(version, queries.summary(row, now=self.clock()))
            before = snapshot(row)
            with s.no_autoflush:
                extra = change(s, row)
                schedule.refresh(row)
                row.updated_at = utcnow()
            s.flush()
            audit(s, row, actor=user.name, action=action, changes=diff(before, snapshot(row)) | extra)
            return queries.detail(s, row, user, now=self.clock())

    # -- the sweep and the figures ---------------------------------------------------------
    def _count_cases(
        self, scope: list[str] | None, start: datetime | None, end: datetime | None, now: datetime
    ) -> dict[str, dict[str, int]]:
        conditions: list[ColumnElement[bool]] = []
        if scope is not None:
            conditions.append(CaseRow.department.in_(scope))
        if start is not None:
            conditions.append(CaseRow.complained_at >= start)
        if end is not None:
            conditions.append(CaseRow.complained_at < end)
        with self.db.read() as s:
            return figures.case_figures(s, now=now, where=and_(true(), *conditions))

    def sweep(self, *, user: User | None = None) -> Escalation:
        """Remind and notice the overdue cases due for it (`user`: a person asking; None: the sweeper)."""
        if user is not None:
            _require(user, SUPERVISORS, "run the escalation sweep")
        return escalation.sweep(self.db, self.deadlines, now=self.clock(), notice_after=self.notice_after)

    def figures(
        self, *, user: User, period_from: datetime | None = None, period_to: datetime | None = None
    ) -> Supervision:
        """Overdue cases and problems, response, on-time, satisfaction and rectification completion
        rates, for the whole and by department; complaints of a period when one is given."""
        if user.role is Role.INTAKE:
            raise ForbiddenError("intake systems do not read supervision figures")
        start, end = in_utc(period_from, self.tz), in_utc(period_to, self.tz)
        scope = user.departments if user.role is Role.CASEWORKER else None
        key = (tuple(scope) if scope is not None else None, start, end)
        return self._figures.get(key, lambda: self._compute(scope, start, end))

    def _compute(self, scope: list[str] | None, start: datetime | None, end: datetime | None) -> Supervision:
        now = self.clock()
        by_cases = self._count_cases(scope, start, end, now)
        with self.db.read() as s:
            by_problems = figures.problem_figures(s, now=now, departments=scope)
        departments = sorted(set(by_cases) | set(by_problems))
        by_department = {d: figures.combine(by_cases.get(d, {}), by_problems.get(d, {})) for d in departments}
        whole = figures.combine(
            figures.total(list(by_cases.values())), figures.total(list(by_problems.values()))
        ).model_dump()
        ranking = sorted(
            departments,
            key=lambda d: (-by_department[d].overdue_cases, by_department[d].on_time_rate or 0.0, d),
        )
        return Supervision(
            **whole,
            as_of=now,
            period_from=start,
            period_to=end,
            by_department=by_department,
            ranking=ranking,
        )


def _require(user: User, roles: frozenset[Role], what: str) -> None:
    if user.role not in roles:
        raise ForbiddenError(f"role {user.role.value} may not {what}")


def _department(user: User, row: CaseRow) -> None:
    """Requests come from the department holding the case (or an admin)."""
    if user.role is Role.ADMIN:
        return
    if user.role is not Role.CASEWORKER or row.department not in user.departments:
        raise ForbiddenError("requests on a case come from the caseworkers of the department holding it")


def _open(row: CaseRow, what: str) -> None:
    if CaseStatus(row.status) not in OPEN or CaseStatus(row.status) is CaseStatus.REPLY_SENT:
        raise InvalidTransitionError(what, row.status, [])


def _no_pending(s: Session, row: CaseRow, kind: RequestKind) -> None:
    pending = s.scalar(
        select(RequestRow.id).where(
            RequestRow.case_id == row.id,
            RequestRow.kind == kind.value,
            RequestRow.status == RequestStatus.PENDING.value,
        )
    )
    if pending is not None:
        raise InputError(f"a {kind.value} request ({pending}) is already waiting for a supervisor", field="reason")


def _request(
    row: CaseRow, kind: RequestKind, user: User, reason: str, now: datetime, until: datetime | None
) -> RequestRow:
    return RequestRow(
        case_id=row.id,
        kind=kind.value,
        status=RequestStatus.PENDING.value,
        reason=reason,
        requested_by=user.name,
        requested_at=now,
        requested_until=until,
    )


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
