"""Reading cases: one case, the queue, the audit trail, batch progress and supervisor numbers.

Writing lives beside it, one module a responsibility: `intake` (store complaints), `drafting`
(first drafts, the background drafter) and `decisions` (what caseworkers decide).
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

from triage.access.models import User
from triage.cases import queries, queue
from triage.cases.models import AuditEvent, BatchStatus, CaseDetail, CasePage, CaseQuery, QueueStats
from triage.clock import Clock, in_utc, system_clock
from triage.database import Database
from triage.workspace import Workspace


class CaseService:
    """Reads scoped to what the caller may see; thread-safe. `overdue` is as of the clock."""

    def __init__(self, db: Database, workspace: Workspace, *, clock: Clock = system_clock, tz: tzinfo = UTC) -> None:
        self.db = db
        self.workspace = workspace
        self.clock = clock
        self.tz = tz  # times given without an offset are read in it

    def get(self, case_id: str, *, user: User) -> CaseDetail:
        with self.db.read() as s:
            return queries.get_case(s, case_id, user, now=self.clock())

    def queue(self, query: CaseQuery, *, user: User) -> CasePage:
        kb = self.workspace.kb
        query = query.model_copy(
            update={
                "department": [kb.check_department(d) for d in query.department],
                "received_from": in_utc(query.received_from, self.tz),
                "received_to": in_utc(query.received_to, self.tz),
            }
        )
        with self.db.statement() as conn:
            return queue.list_cases(conn, query, user, now=self.clock())

    def audit(self, case_id: str, *, user: User) -> list[AuditEvent]:
        with self.db.read() as s:
            return queries.audit_trail(s, case_id, user)

    def batch(self, batch_id: str, *, user: User) -> BatchStatus:
        with self.db.read() as s:
            return queries.batch_status(s, batch_id, user)

    def stats(self, *, user: User, since: datetime | None = None, until: datetime | None = None) -> QueueStats:
        with self.db.read() as s:
            return queries.queue_stats(s, user, since=in_utc(since, self.tz), until=in_utc(until, self.tz))
