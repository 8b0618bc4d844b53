"""First drafts of stored cases: in the ingest request, or by the background drafter.

A valid complaint is committed (status `new`) before drafting starts. A drafting failure leaves it
`new` with `draft_error` saying why (re-triage drafts it again); a case whose draft was never stored
(the process or the database went away) is picked up by the background drafter.

The background drafter runs inside the API process: batch ingest commits its cases as `new` and
wakes it; on start, and every `poll_s`, it looks for cases still waiting. On PostgreSQL, where
several API processes may share one database, one process's drafter sweeps at a time: it holds an
advisory lock on a connection of its own, which PostgreSQL releases if the process dies, and
another takes over at its next poll. Were two to sweep anyway, they could not store two drafts for
one case (the version check refuses the second).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import Connection, select, text
from sqlalchemy.exc import SQLAlchemyError

from triage.access.policy import SYSTEM_ACTOR
from triage.cases import queries
from triage.cases.queries import WILL_RETRY
from triage.cases.records import add_drafts, audit, diff, snapshot
from triage.cases.rows import CaseRow, DraftRow, utcnow
from triage.cases.states import CaseStatus
from triage.database import Database
from triage.errors import ConcurrentUpdateError, EmbeddingError, NotBuiltError, StoreError, VectorStoreError
from triage.models import Draft
from triage.pipeline import TriagePipeline

log = logging.getLogger(__name__)
RETRY_QUEUED_AFTER = timedelta(seconds=60)  # a single ingest drafts in-request; only stragglers are swept
# Failures of what drafting needs rather than of the complaint: the case is drafted again later.
TRANSIENT = (NotBuiltError, VectorStoreError, EmbeddingError, StoreError)
SWEEPER_LOCK = 0x7472_6961_6765  # the advisory lock key of the queue sweeper


class FirstDrafts:
    """Drafts cases that have none yet and stores the drafts; thread-safe."""

    def __init__(self, db: Database, pipeline: TriagePipeline) -> None:
        self.db = db
        self.pipeline = pipeline

    def draft_cases(self, case_ids: Sequence[str], *, actor: str = SYSTEM_ACTOR) -> int:
        """Draft cases still `new` (batched); a failure is recorded on each case. Returns drafts stored."""
        with self.db.read() as s:
            rows = list(
                s.scalars(select(CaseRow).where(CaseRow.id.in_(case_ids), CaseRow.status == CaseStatus.NEW.value))
            )
        return len(self.draft_rows(rows, actor=actor))

    def draft_rows(self, rows: list[CaseRow], *, actor: str = SYSTEM_ACTOR) -> dict[str, tuple[CaseRow, DraftRow]]:
        """Draft stored cases and store the drafts; never raises once given committed rows. Returns the
        cases whose draft was stored, as that transaction left them, with their draft rows."""
        drafted = self._draft_or_record(rows)
        try:
            return self._store(drafted, actor=actor)
        except StoreError:  # the complaints are stored all the same; the sweeper drafts them later
            log.exception("could not store the drafts of %d case(s)", len(drafted))
            return {}

    def _draft_or_record(self, rows: list[CaseRow]) -> list[tuple[CaseRow, Draft]]:
        """Drafts for stored cases, together; if that fails, each alone, so that one complaint's failure
        is not every case's. A case whose drafting fails alone keeps its complaint and gets the reason."""
        if not rows:
            return []
        try:
            return list(zip(rows, self.pipeline.triage_many([queries.complaint_of(r) for r in rows]), strict=True))
        except Exception as exc:
            if len(rows) == 1:
                self._failed(rows[0], exc)
                return []
            log.warning("drafting %d case(s) together failed (%s); drafting each alone", len(rows), exc)
        drafted = []
        for row in rows:
            try:
                drafted.append((row, self.pipeline.triage(queries.complaint_of(row))))
            except Exception as exc:
                self._failed(row, exc)
        return drafted

    def _failed(self, row: CaseRow, exc: Exception) -> None:
        if isinstance(exc, TRANSIENT):  # the models, index or database are not there yet: drafted later
            log.warning("case %s waits for drafting: %s", row.id, exc)
            self._record_error(row.id, row.version, f"{WILL_RETRY}{type(exc).__name__}: {exc}")
            return
        log.error("drafting failed for case %s", row.id, exc_info=exc)
        self._record_error(row.id, row.version, f"{type(exc).__name__}: {exc}")

    def _store(self, drafted: list[tuple[CaseRow, Draft]], *, actor: str) -> dict[str, tuple[CaseRow, DraftRow]]:
        """Store first drafts in one transaction, for the cases still `new` and unchanged since their row
        was read; a case changed meanwhile keeps its new state."""
        if not drafted:
            return {}
        wanted = {row.id: (row.version, draft) for row, draft in drafted}
        todo = []
        try:
            with self.db.write() as s:
                locked = select(CaseRow).where(CaseRow.id.in_(wanted)).order_by(CaseRow.id).with_for_update()
                for row in s.scalars(locked):
                    version, draft = wanted[row.id]
                    if row.version == version and row.status == CaseStatus.NEW.value:
                        todo.append((row, draft))
                    else:
                        log.info("case %s changed while being drafted; its new state stands", row.id)
                draft_rows = add_drafts(s, todo, actor=actor, action="draft")
        except ConcurrentUpdateError:  # changed between the read and the write (SQLite has no FOR UPDATE)
            log.info("%d case(s) changed while being drafted; their new state stands", len(wanted))
            return {}
        return {row.id: (row, d) for (row, _), d in zip(todo, draft_rows, strict=True)}

    def pending(self, limit: int, *, exclude: set[str]) -> list[str]:
        """Queued cases awaiting a first draft: batch cases, and single ones whose in-request draft was lost."""
        cutoff = utcnow() - RETRY_QUEUED_AFTER
        waiting = CaseRow.draft_error.is_(None) & (CaseRow.batch_id.is_not(None) | (CaseRow.received_at < cutoff))
        retrying = CaseRow.draft_error.startswith(WILL_RETRY) & (CaseRow.updated_at < cutoff)
        with self.db.read() as s:
            ids = s.scalars(
                select(CaseRow.id)
                .where(CaseRow.status == CaseStatus.NEW.value, CaseRow.draft_no == 0, waiting | retrying)
                .order_by(CaseRow.received_at, CaseRow.id)
                .limit(limit + len(exclude))
            )
            return [i for i in ids if i not in exclude][:limit]

    def _record_error(self, case_id: str, version: int, reason: str) -> None:
        try:
            with self.db.write() as s:
                row = s.get(CaseRow, case_id)
                if row is None or row.version != version:
                    return
                before = snapshot(row)
                row.draft_error = reason[:2000]
                row.updated_at = utcnow()
                s.flush()
                audit(s, row, actor=SYSTEM_ACTOR, action="draft_failed", changes=diff(before, snapshot(row)))
        except (ConcurrentUpdateError, StoreError):
            log.warning("could not record the drafting failure of case %s", case_id)


class Leadership:
    """Whether this process does a job only one process should do (sweeping the drafting queue, the
    escalation sweep): always on SQLite (one process); on PostgreSQL while it holds the job's advisory
    lock, which PostgreSQL releases when the process dies."""

    def __init__(self, db: Database, *, key: int = SWEEPER_LOCK, what: str = "sweeps the drafting queue") -> None:
        self._engine = db.autocommit()
        self._shared = db.postgresql
        self._key = key
        self._what = what
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    def held(self) -> bool:
        if not self._shared:
            return True
        with self._lock:
            try:
                if self._conn is not None:
                    self._conn.exec_driver_sql("SELECT 1")  # the lock lives as long as this session
                    return True
                conn = self._engine.connect()
                try:
                    got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key}).scalar()
                except SQLAlchemyError:
                    conn.invalidate()
                    conn.close()
                    raise
                if got:
                    self._conn = conn
                    log.info("this process %s", self._what)
                    return True
                conn.close()
            except SQLAlchemyError as exc:
                log.warning("unknown whether this process %s (%s); not now", self._what, type(exc).__name__)
                self._drop()
            return False

    def release(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.invalidate()  # closes the session, and with it the lock: never back to the pool
                conn.close()
            except SQLAlchemyError:
                pass


class BackgroundDrafter:
    """Threads that draft queued cases in chunks while this process leads the sweep."""

    def __init__(self, drafts: FirstDrafts, *, threads: int = 1, chunk: int = 32, poll_s: float = 5.0) -> None:
        self.drafts = drafts
        self.chunk = chunk
        self.poll_s = poll_s
        self._wake = threading.Condition()
        self._stopping = False
        self._claims = threading.Lock()  # guards _in_flight; held across the claim query...
        self._in_flight: set[str] = set()
        self.leadership = Leadership(drafts.db)
        self._threads = [
            threading.Thread(target=self._run, name=f"triage-drafter-{i}", daemon=True) for i in range(threads)
        ]

    def start(self) -> BackgroundDrafter:
        for t in self._threads:
            t.start()
        return self

    def wake(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def stop(self, timeout: float = 30.0) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        for t in self._threads:
            t.join(timeout)
        self.leadership.release()

    def _claim(self) -> list[str]:
        with self._claims:  # ...so wake() from a request never waits for a query
            ids = self.drafts.pending(self.chunk, exclude=set(self._in_flight))
            self._in_flight.update(ids)
            return ids

    def _run(self) -> None:
        while not self._stopping:
            try:
                ids = self._claim() if self.leadership.held() else []
            except Exception:
                log.exception("could not read the drafting queue; retrying in %.0f s", self.poll_s)
                ids = []
            if ids:
                try:
                    self.drafts.draft_cases(ids)
                    continue
                except Exception:  # e.g. the database went away: the cases stay queued for the next sweep
                    log.exception("background drafting of %d case(s) failed; they stay queued", len(ids))
                finally:
                    with self._claims:
                        self._in_flight.difference_update(ids)
            with self._wake:
                if not self._stopping:
                    self._wake.wait(self.poll_s)
