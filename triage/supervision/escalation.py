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
from typing import Any

from sqlalchemy import CursorResult, select, update

from triage.access.policy import SYSTEM_ACTOR
from triage.cases.rows import AuditRow, CaseRow
from triage.cases.states import OPEN
from triage.database import Database
from triage.deadlines.rules import Deadlines
from triage.supervision.models import Escalation

log = logging.getLogger(__name__)
CHUNK = 500
ESCALATION_LOCK = 0x7472_6961_6766  # the advisory lock key of the escalation sweeper (PostgreSQL)


def sweep(db: Database, deadlines: Deadlines, *, now: datetime, notice_after: int) -> Escalation:
    """Remind and notice what is due for it as of `now`; idempotent (a step is taken once per deadline).

    A case already past its deadline when it was received (replayed history, a late import) is not
    escalated: no one could have acted in time. The steps are written without moving the case's
    version: they are the system's, and a caseworker acting on the case meanwhile is not refused.
    """
    with db.read() as s:
        rows = s.execute(
            select(CaseRow.id, CaseRow.due_at, CaseRow.reminded_at, CaseRow.version).where(
                CaseRow.status.in_([st.value for st in OPEN]),
                CaseRow.due_at < now,
                CaseRow.due_at >= CaseRow.received_at,
                CaseRow.notified_at.is_(None),
            )
        ).all()
    remind: list[tuple[str, Any, int]] = []
    notify: list[tuple[str, Any, int]] = []
    for case_id, due_at, reminded_at, version in rows:
        if due_at is None:  # excluded by the query; for the type checker
            continue
        if reminded_at is None:
            if deadlines.working_days_late(_utc(due_at), now) >= 1:
                remind.append((case_id, due_at, version))
        elif deadlines.working_days_late(_utc(reminded_at), now) >= notice_after:
            notify.append((case_id, due_at, version))
    reminded = _step(db, remind, "remind", CaseRow.reminded_at, now)
    notified = _step(db, notify, "notify", CaseRow.notified_at, now)
    if reminded or notified:
        log.info("escalation: %d reminded, %d noticed", len(reminded), len(notified))
    return Escalation(as_of=now, reminded=reminded, notified=notified)


def _step(db: Database, due: list[tuple[str, Any, int]], action: str, column: Any, now: datetime) -> list[str]:
    """Write the step on each case whose deadline is still the one it was due on; audit it."""
    done: list[str] = []
    for start in range(0, len(due), CHUNK):
        chunk = due[start : start + CHUNK]
        with db.write() as s:
            for case_id, due_at, version in chunk:
                result: CursorResult[Any] = s.execute(  # type: ignore[assignment]
                    update(CaseRow)
                    .where(CaseRow.id == case_id, CaseRow.due_at == due_at, column.is_(None))
                    .values({column.key: now})
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount:
                    changes = {column.key: [None, now.isoformat()], "version": version}
                    s.add(AuditRow(case_id=case_id, actor=SYSTEM_ACTOR, action=action, changes=changes))
                    done.append(case_id)
    return done


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
