"""Ingest: store complaints (idempotent on the submitter's external id), then draft them.

A valid complaint is committed before anything that can fail runs; a single complaint is then
drafted in its request, a batch by the background drafter (triage.cases.drafting).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.access import policy
from triage.access.models import User
from triage.cases import queries
from triage.cases.drafting import FirstDrafts
from triage.cases.models import CaseDetail, IngestReceipt
from triage.cases.records import audit
from triage.cases.rows import BatchRow, CaseRow
from triage.cases.schedule import schedule
from triage.cases.states import CaseStatus
from triage.clock import Clock, in_utc, system_clock
from triage.database import Database
from triage.deadlines.rules import Deadlines
from triage.errors import DuplicateError, IdempotencyError, StoreError
from triage.models import Complaint

log = logging.getLogger(__name__)


class Intake:
    """Stores complaints and drafts single ones at once; thread-safe."""

    def __init__(self, db: Database, drafts: FirstDrafts, *, deadlines: Deadlines, clock: Clock = system_clock) -> None:
        self.db = db
        self.drafts = drafts
        self.deadlines = deadlines  # counted in the deployment's zone, where offset-less complaint times are read
        self.clock = clock

    def ingest(self, complaint: Complaint, *, user: User) -> tuple[CaseDetail, bool]:
        """Store and draft one complaint; returns (the case, created). Idempotent on external_id."""
        policy.require_ingest(user)
        existing = self._existing({0: complaint}, user).get(0)
        if existing is None:
            try:
                with self.db.write() as s:
                    [row] = self._insert(s, [complaint], user, batch_id=None)
            except DuplicateError:  # its external id was committed a moment ago by another request
                existing = self._existing({0: complaint}, user)[0]
            else:  # committed: from here on nothing fails the request
                stored = self.drafts.draft_rows([row]).get(row.id)
                if stored is None:  # drafting failed (the reason is on the case) or its store did
                    try:
                        return self._read(row.id, user), True
                    except StoreError:  # stored all the same: answer with the case as it was committed
                        return queries.detail_of(row, [], [], user, now=self.clock()), True
                case, draft_row = stored  # as the draft's transaction left it: answered without a read-back
                draft = queries.draft_version(draft_row)
                return queries.detail_of(case, [draft], [], user, now=self.clock()), True
        return self._read(existing, user), False

    def _read(self, case_id: str, user: User) -> CaseDetail:
        with self.db.read() as s:
            return queries.get_case(s, case_id, user, now=self.clock())

    def ingest_batch(self, complaints: Sequence[Complaint], *, user: User) -> IngestReceipt:
        """Store a batch at once (one transaction); the background drafter drafts it."""
        policy.require_ingest(user)
        for attempt in range(2):
            existing = self._existing(dict(enumerate(complaints)), user)
            slots: list[str | int] = []  # per complaint: a known case id, or its index in `new`
            new: list[Complaint] = []
            seen: dict[str, tuple[int, str]] = {}  # external id -> (index in `new`, text), within the batch
            for i, c in enumerate(complaints):
                known = existing.get(i)
                if known is not None:
                    slots.append(known)
                elif c.external_id in seen:
                    index, text = seen[c.external_id]
                    if text != c.text:
                        raise IdempotencyError(
                            f"complaints[{i}].external_id: '{c.external_id}' names two different complaints "
                            "in this batch"
                        )
                    slots.append(index)
                else:
                    if c.external_id:
                        seen[c.external_id] = (len(new), c.text)
                    slots.append(len(new))
                    new.append(c)
            batch_id = str(uuid.uuid4())
            try:
                with self.db.write() as s:
                    # The batch's progress covers the cases it created; the others were drafted before.
                    s.add(BatchRow(id=batch_id, submitted_by=user.name, total=len(new)))
                    rows = self._insert(s, new, user, batch_id=batch_id)
            except DuplicateError as exc:  # an external id committed meanwhile by another request: look again
                if attempt:
                    raise IdempotencyError("external ids of this batch were being stored concurrently; retry") from exc
                continue
            return IngestReceipt(
                batch_id=batch_id,
                total=len(complaints),
                created=len(rows),
                existing=len(complaints) - len(rows),
                case_ids=[rows[x].id if isinstance(x, int) else x for x in slots],
            )
        raise AssertionError("unreachable")

    def _existing(self, complaints: dict[int, Complaint], user: User) -> dict[int, str]:
        """Cases this submitter already sent under these external ids; a reused id with other text is refused."""
        keyed = {i: c for i, c in complaints.items() if c.external_id}
        if not keyed:
            return {}
        with self.db.read() as s:
            rows = {
                r.external_id: r
                for r in s.execute(
                    select(CaseRow.id, CaseRow.external_id, CaseRow.text).where(
                        CaseRow.submitted_by == user.name,
                        CaseRow.external_id.in_({c.external_id for c in keyed.values()}),
                    )
                )
            }
        found: dict[int, str] = {}
        for i, c in keyed.items():
            row = rows.get(c.external_id)
            if row is None:
                continue
            if row.text != c.text:
                where = "external_id" if len(complaints) == 1 else f"complaints[{i}].external_id"
                raise IdempotencyError(
                    f"{where}: '{c.external_id}' already names case {row.id} with different text; "
                    "use a new external id for a new complaint"
                )
            found[i] = row.id
        return found

    def _insert(
        self, s: Session, complaints: Sequence[Complaint], user: User, *, batch_id: str | None
    ) -> list[CaseRow]:
        """New cases (status new) with their deadlines, each with its ingest event, in the caller's
        transaction; one flush. A complaint time without an offset is read in the deployment's zone."""
        now = self.clock()
        tz = self.deadlines.tz
        rows = [
            CaseRow(
                id=str(uuid.uuid4()),
                external_id=c.external_id,
                text=c.text,
                title=c.title,
                channel=c.channel.value,
                service_item=c.service_item,
                rating=c.rating,
                region=c.region,
                contact=c.contact,
                complained_at=in_utc(c.created_at, tz) if c.created_at else now,
                request_type=c.request_type.value if c.request_type else None,
                urgent=c.urgent,
                submitter_type=c.submitter_type.value,
                enterprise_name=c.enterprise_name,
                likes=c.likes,
                dislikes=c.dislikes,
                returns=0,
                bounces=0,
                follow_ups=0,
                dissatisfactions=0,
                appeal_upheld=False,
                status=CaseStatus.NEW.value,
                draft_no=0,
                batch_id=batch_id,
                submitted_by=user.name,
                received_at=now,
                updated_at=now,
            )
            for c in complaints
        ]
        for row in rows:
            schedule(row, self.deadlines)
        # Inserted in key order: two transactions inserting the same external ids then meet in the same
        # order, so the second waits and fails on the unique key instead of deadlocking.
        in_key_order: list[CaseRow] = sorted(rows, key=lambda r: r.external_id or "")
        s.add_all(in_key_order)
        s.flush()  # the cases get their version here
        for row in rows:
            audit(s, row, actor=row.submitted_by, action="ingest", changes={"status": [None, CaseStatus.NEW.value]})
        return rows
