"""Typical problems as tracked work: list and read them with their figures, move them through their
lifecycle (states.py), edit them, and merge a candidate into an existing problem.

Every change is one transaction: the problem (optimistic concurrency on its version), an event in
its history with the fields changed, and for a merge the cases relinked with their audit events. A
change to what a complaint can match (a new candidate, an edit, a merge or an archive) then becomes
a new build of the workspace's models, so the next draft uses it: the unified reply (统一答复口径)
included.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from triage.access import policy
from triage.access.models import User
from triage.cache import TtlCache
from triage.cases.records import audit
from triage.cases.rows import CaseRow, utcnow
from triage.cases.states import OPEN, Role
from triage.clock import Clock, deadline_utc, in_utc, system_clock
from triage.database import Database
from triage.errors import (
    ConcurrentUpdateError,
    ForbiddenError,
    InputError,
    InvalidTransitionError,
    NotFoundError,
    StaleVersionError,
    TriageError,
)
from triage.models import ProblemStatus
from triage.problems import figures
from triage.problems.models import (
    Merge,
    NewProblem,
    Plan,
    ProblemDetail,
    ProblemEdit,
    ProblemEvent,
    ProblemSummary,
    Report,
    Transition,
)
from triage.problems.rows import ProblemEventRow, ProblemRow, get_problem
from triage.problems.states import OWNING, TRACKED, TRANSITIONS, ProblemAction, allowed_actions, roles_for
from triage.workspace import Workspace

log = logging.getLogger(__name__)
Apply = Callable[[Session, ProblemRow], dict[str, list[object]]]
LISTED_CASES = 200


class ProblemService:
    """Typical problems on one case database; thread-safe."""

    def __init__(
        self, db: Database, workspace: Workspace, *, clock: Clock = system_clock, tz: ZoneInfo, cache_s: float = 0.0
    ) -> None:
        self.db = db
        self.workspace = workspace
        self.clock = clock
        self.tz = tz
        # The list is reused for `cache_s` seconds (its case counts are a pass over every case). A change
        # made through this service clears it, so it shows at once here; another process's within cache_s.
        self._lists: TtlCache[list[ProblemSummary]] = TtlCache(cache_s)

    # -- reading ---------------------------------------------------------------------------
    def summaries(
        self,
        *,
        user: User,
        status: list[ProblemStatus] | None = None,
        department: str | None = None,
        overdue: bool | None = None,
    ) -> list[ProblemSummary]:
        """Every problem (archived ones only when asked for), most cases first."""
        _reads(user)
        key = (tuple(status or ()), department, overdue)
        return self._lists.get(key, lambda: self._summaries(status, department, overdue))

    def _summaries(
        self, status: list[ProblemStatus] | None, department: str | None, overdue: bool | None
    ) -> list[ProblemSummary]:
        now = self.clock()
        with self.db.read() as s:
            query = select(ProblemRow)
            if status:
                query = query.where(ProblemRow.status.in_([st.value for st in status]))
            else:
                query = query.where(ProblemRow.status != ProblemStatus.ARCHIVED.value)
            if department:
                query = query.where(ProblemRow.department == self.workspace.kb.check_department(department))
            rows = list(s.scalars(query))
            numbers = figures.case_counts(s, now=now)
        items = [self._summary(r, numbers.get(r.id, (0, 0, 0)), now) for r in rows]
        if overdue is not None:
            items = [p for p in items if p.overdue == overdue]
        return sorted(items, key=lambda p: (-p.case_count, p.id))

    def get(self, problem_id: str, *, user: User) -> ProblemDetail:
        _reads(user)
        now = self.clock()
        with self.db.read() as s:
            row = get_problem(s, problem_id)
            return self._detail(s, row, user, now)

    def _summary(self, row: ProblemRow, numbers: tuple[int, int, int], now: datetime) -> ProblemSummary:
        deadline = figures.aware(row.deadline)
        status = ProblemStatus(row.status)
        return ProblemSummary(
            id=row.id,
            title=row.title,
            department=row.department,
            status=status,
            source=row.source,
            owner_department=row.owner_department,
            deadline=deadline,
            overdue=status in TRACKED and deadline is not None and deadline < now,
            case_count=numbers[0],
            open_case_count=numbers[1],
            overdue_case_count=numbers[2],
            version=row.version,
            updated_at=figures.aware(row.updated_at) or now,
        )

    def _detail(self, s: Session, row: ProblemRow, user: User, now: datetime) -> ProblemDetail:
        numbers = figures.case_counts(s, now=now, ids=[row.id]).get(row.id, (0, 0, 0))
        days = figures.by_day(s, row.id, dialect=self.db.engine.dialect.name, tz=self.tz)
        by_month, by_week = figures.periods(days)
        mine = figures.counted(CaseRow.typical_problem_id == row.id)
        visible = policy.visible(user)
        open_ids = list(
            s.scalars(
                select(CaseRow.id)
                .where(mine, visible, CaseRow.status.in_([st.value for st in OPEN]))
                .order_by(CaseRow.complained_at, CaseRow.id)
                .limit(LISTED_CASES)
            )
        )
        overdue_ids = list(
            s.scalars(
                select(CaseRow.id)
                .where(mine, visible, CaseRow.status.in_([st.value for st in OPEN]), CaseRow.due_at < now)
                .order_by(CaseRow.due_at, CaseRow.id)
                .limit(LISTED_CASES)
            )
        )
        confirmed = s.scalar(select(func.count()).where(mine, CaseRow.approved_at.is_not(None))) or 0
        dissatisfied = s.scalar(select(func.sum(CaseRow.dissatisfactions)).where(mine)) or 0
        events = s.scalars(
            select(ProblemEventRow).where(ProblemEventRow.problem_id == row.id).order_by(ProblemEventRow.id)
        )
        return ProblemDetail(
            **self._summary(row, numbers, now).model_dump(),
            description=row.description,
            service_items=list(row.service_items or []),
            root_cause=row.root_cause,
            rectification=row.rectification,
            reply_guidance=row.reply_guidance,
            unified_reply=row.unified_reply,
            plan_measures=row.plan_measures,
            rectified_at=figures.aware(row.rectified_at),
            rectified_summary=row.rectified_summary,
            verified_at=figures.aware(row.verified_at),
            merged_into=row.merged_into,
            confirmed_case_count=int(confirmed),
            dissatisfied_count=int(dissatisfied),
            cases_by_month=by_month,
            cases_by_week=by_week,
            by_channel=figures.by_column(s, row.id, CaseRow.channel),
            by_service_item=figures.by_column(s, row.id, CaseRow.service_item),
            by_region=figures.by_column(s, row.id, CaseRow.region),
            open_cases=open_ids,
            overdue_cases=overdue_ids,
            history=[
                ProblemEvent(
                    at=figures.aware(e.at) or now, actor=e.actor, action=e.action, note=e.note, changes=e.changes
                )
                for e in events
            ],
            effect=figures.effect(days, figures.aware(row.rectified_at), now=now, tz=self.tz),
            allowed_actions=self._allowed(row, user),
        )

    def _allowed(self, row: ProblemRow, user: User) -> list[str]:
        actions = allowed_actions(row.status, user.role)
        if user.role is Role.CASEWORKER and _owner(row) not in user.departments:
            actions = [a for a in actions if roles_for(row.status, ProblemAction(a)) != OWNING]
        return actions

    # -- changing --------------------------------------------------------------------------
    def create(self, new: NewProblem, *, user: User, source: str = "person") -> ProblemDetail:
        """A candidate typical problem (supervisors and admins)."""
        if user.role not in (Role.SUPERVISOR, Role.ADMIN):
            raise ForbiddenError("only supervisors and admins propose typical problems")
        department = self.workspace.kb.check_department(new.department)
        pid = new.id or f"TP-C-{uuid.uuid4().hex[:8].upper()}"
        now = utcnow()
        with self.db.write() as s:
            if s.get(ProblemRow, pid) is not None:
                raise InputError(f"typical problem '{pid}' exists already", field="id")
            row = ProblemRow(
                id=pid,
                title=new.title,
                description=new.description,
                department=department,
                service_items=list(new.service_items),
                root_cause="",
                rectification="",
                reply_guidance="",
                status=ProblemStatus.CANDIDATE.value,
                source=source,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
            s.flush()
            s.add(
                ProblemEventRow(
                    problem_id=pid,
                    at=self.clock(),
                    actor=user.name,
                    action="propose",
                    note=new.note,
                    changes={"status": [None, "candidate"]},
                )
            )
        self._lists.clear()
        self._rebuild()
        return self.get(pid, user=user)

    def confirm(self, pid: str, body: Transition, *, user: User) -> ProblemDetail:
        return self._act(pid, body, user, ProblemAction.CONFIRM, lambda s, row: {})

    def plan(self, pid: str, body: Plan, *, user: User) -> ProblemDetail:
        """A rectification plan (or a revised one): measures, owner department, deadline."""
        deadline = deadline_utc(body.deadline, self.tz)
        if deadline <= self.clock():
            raise InputError("the deadline has passed already", field="deadline")
        owner = (
            self.workspace.kb.check_department(body.owner_department, field="owner_department")
            if (body.owner_department)
            else None
        )

        def apply(s: Session, row: ProblemRow) -> dict[str, list[object]]:
            changes = _set(row, plan_measures=body.measures, deadline=deadline, owner_department=owner or _owner(row))
            row.rectified_at = row.rectified_summary = row.verified_at = None
            return changes

        return self._act(pid, body, user, ProblemAction.PLAN, apply)

    def report(self, pid: str, body: Report, *, user: User) -> ProblemDetail:
        """The rectification is done: what was done, and when."""
        when = in_utc(body.rectified_at, self.tz) if body.rectified_at else self.clock()
        if when > self.clock():
            raise InputError("is in the future", field="rectified_at")

        def apply(s: Session, row: ProblemRow) -> dict[str, list[object]]:
            planned = _last_plan(s, row.id)
            if planned is not None and when < planned:
                raise InputError("is before the rectification was planned", field="rectified_at")
            return _set(row, rectified_at=when, rectified_summary=body.summary)

        return self._act(pid, body, user, ProblemAction.REPORT, apply)

    def verify(self, pid: str, body: Transition, *, user: User) -> ProblemDetail:
        now = self.clock()
        return self._act(pid, body, user, ProblemAction.VERIFY, lambda s, row: _set(row, verified_at=now))

    def reopen(self, pid: str, body: Transition, *, user: User) -> ProblemDetail:
        if not (body.note or "").strip():
            raise InputError("say why: what shows the problem continues", field="note")
        return self._act(pid, body, user, ProblemAction.REOPEN, lambda s, row: {})

    def archive(self, pid: str, body: Transition, *, user: User) -> ProblemDetail:
        return self._act(pid, body, user, ProblemAction.ARCHIVE, lambda s, row: {}, rebuild=True)

    def merge(self, pid: str, body: Merge, *, user: User) -> ProblemDetail:
        """Merge a candidate into an existing problem: its cases move there, it is archived."""
        if body.into == pid:
            raise InputError("a problem cannot be merged into itself", field="into")

        def apply(s: Session, row: ProblemRow) -> dict[str, list[object]]:
            target = s.get(ProblemRow, body.into)
            if target is None or target.status == ProblemStatus.ARCHIVED.value:
                raise InputError(f"no typical problem '{body.into}' to merge into", field="into")
            moved = list(
                s.scalars(
                    select(CaseRow).where(CaseRow.typical_problem_id == pid).order_by(CaseRow.id).with_for_update()
                )
            )
            for case in moved:
                case.typical_problem_id, case.updated_at = body.into, utcnow()
            s.flush()  # each case one version step, as any other change to it
            for case in moved:
                audit(
                    s, case, actor=user.name, action="merge_problem", changes={"typical_problem_id": [pid, body.into]}
                )
            changes = _set(row, merged_into=body.into)
            changes["cases_moved"] = [0, len(moved)]
            return changes

        return self._act(pid, body, user, ProblemAction.MERGE, apply, rebuild=True)

    def edit(self, pid: str, body: ProblemEdit, *, user: User) -> ProblemDetail:
        """Edit the problem's text, service items or unified reply; the next drafts use them."""
        given = body.model_fields_set - {"version", "note"}
        if not given:
            raise InputError("nothing to change", field="body")

        def apply(s: Session, row: ProblemRow) -> dict[str, list[object]]:
            return _set(row, **{f: getattr(body, f) for f in given})

        return self._act(pid, body, user, ProblemAction.EDIT, apply, rebuild=True)

    def _act(
        self, pid: str, body: Transition, user: User, action: ProblemAction, apply: Apply, *, rebuild: bool = False
    ) -> ProblemDetail:
        try:
            with self.db.write() as s:
                row = s.scalars(select(ProblemRow).where(ProblemRow.id == pid).with_for_update()).one_or_none()
                if row is None:
                    raise NotFoundError(f"no typical problem '{pid}'")
                self._check(row, user, action, body.version)
                before = row.status
                with s.no_autoflush:
                    changes = apply(s, row)
                    row.status = TRANSITIONS[ProblemStatus(row.status)][action].value
                    row.updated_at = utcnow()
                if row.status != before:
                    changes["status"] = [before, row.status]
                s.flush()  # UPDATE ... WHERE version = :read
                s.add(
                    ProblemEventRow(
                        problem_id=pid,
                        at=self.clock(),
                        actor=user.name,
                        action=action.value,
                        note=body.note,
                        changes=changes,
                    )
                )
        except ConcurrentUpdateError as exc:
            raise StaleVersionError(body.version, self.get(pid, user=user)) from exc
        self._lists.clear()
        if rebuild:
            self._rebuild()
        return self.get(pid, user=user)

    def _check(self, row: ProblemRow, user: User, action: ProblemAction, version: int) -> None:
        roles = roles_for(row.status, action)
        if user.role not in roles:
            what = "revise the plan of" if action is ProblemAction.PLAN else f"{action.value}"
            raise ForbiddenError(f"role {user.role.value} may not {what} {row.status} typical problems")
        if roles == OWNING and user.role is Role.CASEWORKER and _owner(row) not in user.departments:
            raise ForbiddenError(f"only {_owner(row)}'s caseworkers {action.value} the rectification of {row.id}")
        if action is ProblemAction.EDIT and user.role is Role.CASEWORKER and _owner(row) not in user.departments:
            raise ForbiddenError(f"only {_owner(row)}'s caseworkers and supervisors edit {row.id}")
        if row.version != version:
            raise StaleVersionError(version, self.get(row.id, user=user))
        if action not in TRANSITIONS[ProblemStatus(row.status)]:
            raise InvalidTransitionError(action.value, row.status, self._allowed(row, user))

    def _rebuild(self) -> None:
        """Let the next drafts match the problems as they are now (committed already: a failure here
        leaves them to the next build)."""
        if not self.workspace.built:
            return
        try:
            self.workspace.refresh_problems()
        except TriageError as exc:
            log.warning("typical problems changed, but the models could not be refreshed yet: %s", exc)


def _last_plan(s: Session, pid: str) -> datetime | None:
    at = s.scalar(
        select(func.max(ProblemEventRow.at)).where(
            ProblemEventRow.problem_id == pid, ProblemEventRow.action == ProblemAction.PLAN.value
        )
    )
    return _utc(at) if at is not None else None


def _reads(user: User) -> None:
    """Problems are the city's work: every person reads them, intake systems do not."""
    if user.role is Role.INTAKE:
        raise ForbiddenError("intake systems do not read typical problems")


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _owner(row: ProblemRow) -> str:
    return row.owner_department or row.department


def _set(row: ProblemRow, **values: object) -> dict[str, list[object]]:
    """Set fields, returning what changed as JSON values (field -> [before, after])."""
    changes: dict[str, list[object]] = {}
    for name, value in values.items():
        old = getattr(row, name)
        if old != value:
            changes[name] = [_plain(old), _plain(value)]
            setattr(row, name, value)
    return changes


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return (figures.aware(value) or value).isoformat()
    return list(value) if isinstance(value, tuple) else value
