"""Background drafting of queued cases inside the API process.

Batch ingest commits its cases as `new` and wakes this worker, which drafts them in chunks (the
pipeline batches retrieval and routing). Queued cases survive a restart: on start, and every
`poll_s`, the worker looks for cases still waiting. On PostgreSQL, where several API processes may
share one database, one process's drafter sweeps at a time: it holds an advisory lock on a
connection of its own, which PostgreSQL releases if the process dies, and another takes over at its
next poll. Were two to sweep anyway, they could not store two drafts for one case (the version
check refuses the second); re-triage jobs claim work with SKIP LOCKED instead.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Connection, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from triage.cases.service import SYSTEM, CaseService

log = logging.getLogger(__name__)
SWEEPER_LOCK = 0x7472_6961_6765  # the advisory lock key of the queue sweeper


class Leadership:
    """Whether this process sweeps the drafting queue: always on SQLite (one process); on PostgreSQL
    while it holds the sweeper's advisory lock."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._shared = engine.dialect.name == "postgresql"
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
                    got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": SWEEPER_LOCK}).scalar()
                except SQLAlchemyError:
                    conn.invalidate()
                    conn.close()
                    raise
                if got:
                    self._conn = conn
                    log.info("this process sweeps the drafting queue")
                    return True
                conn.close()
            except SQLAlchemyError as exc:
                log.warning("drafting queue leadership unknown (%s); not sweeping", type(exc).__name__)
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
    def __init__(self, service: CaseService, *, threads: int = 1, chunk: int = 32, poll_s: float = 5.0) -> None:
        self.service = service
        self.chunk = chunk
        self.poll_s = poll_s
        self._wake = threading.Condition()
        self._stopping = False
        self._claims = threading.Lock()  # guards _in_flight; held across the claim query...
        self._in_flight: set[str] = set()
        self.leadership = Leadership(service.engine)
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
            ids = self.service.pending(self.chunk, exclude=set(self._in_flight))
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
                    self.service.draft_cases(ids, actor=SYSTEM)
                    continue
                except Exception:  # e.g. the database went away: the cases stay queued for the next sweep
                    log.exception("background drafting of %d case(s) failed; they stay queued", len(ids))
                finally:
                    with self._claims:
                        self._in_flight.difference_update(ids)
            with self._wake:
                if not self._stopping:
                    self._wake.wait(self.poll_s)
