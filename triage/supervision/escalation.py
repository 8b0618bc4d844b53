"""The escalation ladder for cases past their deadline, applied by a sweep.

    deadline missed ──next working day──> reminder (催办) ──N more working days──> notice (通报)

A supervisor's flag (督办, with a note and a new deadline) sits between them: it is a person's act
(see service.py), and a later deadline starts the ladder again. Each step is written on the case
and in its audit trail by the system actor. The API process sweeps every TRIAGE_ESCALATION_EVERY_S
seconds (on PostgreSQL one process at a time); `triage supervision sweep` runs one from cron.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import or_, select

from triage.access.policy import SYSTEM_ACTOR
from triage.cases.records import audit, diff, snapshot
from triage.cases.rows import CaseRow
from triage.cases.states import OPEN
from triage.database import Database
from triage.deadlines.rules import Deadlines
from triage.supervision.models import Escalation

log = logging.getLogger(__name__)
CHUNK = 500
ESCALATION_LOCK = 0x7472_6961_6766  # the advisory lock key of the escalation sweeper (PostgreSQL)


def sweep(db: Database, deadlines: Deadlines, *, now: datetime, notice_after: int) -> Escalation:
    """Remind and notice what is due for it as of `now`; idempotent (a step is taken once per deadline)."""
    reminded: list[str] = []
    notified: list[str] = []
    with db.read() as s:
        ids = list(
            s.scalars(
                select(CaseRow.id)
                .where(
                    CaseRow.status.in_([st.value for st in OPEN]),
                    CaseRow.due_at < now,
                    or_(CaseRow.reminded_at.is_(None), CaseRow.notified_at.is_(None)),
                )
                .order_by(CaseRow.id)
            )
        )
    for start in range(0, len(ids), CHUNK):
        with db.write() as s:
            rows = s.scalars(
                select(CaseRow).where(CaseRow.id.in_(ids[start : start + CHUNK])).order_by(CaseRow.id).with_for_update()
            )
            for row in rows:
                if row.due_at is None or _utc(row.due_at) >= now:  # its deadline moved meanwhile
                    continue
                before = snapshot(row)
                if row.reminded_at is None:
                    if deadlines.working_days_late(_utc(row.due_at), now) < 1:
                        continue
                    row.reminded_at, action, field = now, "remind", "reminded_at"
                    reminded.append(row.id)
                elif row.notified_at is None:
                    if deadlines.working_days_late(_utc(row.reminded_at), now) < notice_after:
                        continue
                    row.notified_at, action, field = now, "notify", "notified_at"
                    notified.append(row.id)
                else:
                    continue
                s.flush()
                changes = diff(before, snapshot(row)) | {field: [None, now.isoformat()]}
                audit(s, row, actor=SYSTEM_ACTOR, action=action, changes=changes)
    if reminded or notified:
        log.info("escalation: %d reminded, %d noticed", len(reminded), len(notified))
    return Escalation(as_of=now, reminded=reminded, notified=notified)


class Sweeper:
    """Runs the sweep on a thread of the API process every `every_s` seconds while `may_run()` holds
    (on PostgreSQL: this process holds the sweeping lock)."""

    def __init__(self, run: Callable[[], Escalation], *, every_s: float, may_run: Callable[[], bool]) -> None:
        self._run = run
        self.every_s = every_s
        self._may_run = may_run
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Sweeper:
        if self.every_s > 0:
            self._thread = threading.Thread(target=self._loop, name="escalation-sweeper", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                if self._may_run():
                    self._run()
            except Exception:  # the next round tries again; the cases are unchanged
                log.exception("the escalation sweep failed")

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
