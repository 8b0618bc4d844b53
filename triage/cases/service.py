"""The review service: ingest complaints, keep their drafts, and record caseworkers' decisions.

Invariants:
- A valid complaint is committed (status `new`) before anything that can fail runs. A drafting
  failure leaves it `new` with `draft_error` saying why (re-triage drafts it again); a case whose
  draft was never stored (the process or database went away) is picked up by the background drafter.
- Each action is one transaction: the case update, the decision, the audit event (and, on approval,
  the past case) commit together or not at all.
- Optimistic concurrency: the ORM writes a case with `... WHERE version = <the version read>`, so of
  two decisions on the same version exactly one lands; the other gets StaleVersionError.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from triage.cases import queries
from triage.cases.models import (
    AuditEvent,
    BatchStatus,
    CaseDetail,
    CasePage,
    CaseQuery,
    Edits,
    IngestReceipt,
    QueueStats,
    User,
)
from triage.cases.records import add_draft, add_drafts, audit, diff, snapshot
from triage.cases.rows import BatchRow, CaseRow, DecisionRow, DraftRow, to_utc, utcnow
from triage.cases.states import ACTION_ROLES, INGEST_ROLES, TRANSITIONS, Action, CaseStatus, Role, allowed_actions
from triage.cases.users import UserDirectory
from triage.errors import (
    ForbiddenError,
    IdempotencyError,
    InputError,
    InvalidTransitionError,
    StaleVersionError,
    StoreError,
    TriageError,
    UnknownDepartmentError,
)
from triage.knowledge import KnowledgeBase
from triage.locks import GroupCall, ReadWriteLock
from triage.models import Complaint, Draft, PastCase
from triage.pipeline import TriagePipeline
from triage.store import PastCaseRow
from triage.workspace import settle_heap

log = logging.getLogger(__name__)
SYSTEM = "triage"  # the actor of automatic drafts
DRAFT_FIELDS = ("department", "typical_problem_id", "root_cause", "reply")
FRESHNESS_CHECK_S = 1.0  # how often a process looks for models rebuilt by another
RETRY_QUEUED_AFTER = timedelta(seconds=60)  # a single ingest drafts in-request; only stragglers are swept


@dataclass(frozen=True)
class _Ingested:
    """What became of one complaint of a (grouped) single ingest."""

    case_id: str | None  # None: not stored (see `error`), or its external id was committed by another request
    detail: CaseDetail | None = None  # the drafted case as its submitter sees it; None: read it again
    error: Exception | None = None  # why this complaint could not be stored; raised to its caller alone


class CaseService:
    """Built once per process from an engine and a pipeline; thread-safe."""

    def __init__(self, engine: Engine, pipeline: TriagePipeline, *, auth_cache_s: float = 0.0) -> None:
        self.engine = engine
        self.pipeline = pipeline
        self._next_freshness_check = 0.0
        self._settle_pending = False  # models were reloaded: settle_heap() at the next safe point
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # Single-statement reads (the queue) need no transaction: autocommit saves BEGIN and ROLLBACK.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.users = UserDirectory(self._sessions, cache_s=auth_cache_s)
        # SQLite has one writer; serialising writes in the process avoids its busy/deadlock errors.
        self._write_lock: threading.Lock | None = threading.Lock() if engine.dialect.name == "sqlite" else None
        self._models = ReadWriteLock()  # triage and indexing read the models; a reindex replaces them
        self._indexer: GroupCall[PastCase, None] = GroupCall(self._index_approved)
        # Offline drafting batches well (retrieval and routing are vectorised): concurrent drafting shares
        # one triage_many call, and concurrent single ingests share their two transactions as well. LLM
        # drafting is one network call per complaint, so it is not grouped.
        self._triage: GroupCall[Complaint, Draft] | None = None if pipeline.llm else GroupCall(self._triage_many)
        self._ingester: GroupCall[tuple[Complaint, User], _Ingested] | None = (
            None if pipeline.llm else GroupCall(self._ingest_many)
        )

    # -- plumbing --------------------------------------------------------------------------
    @contextmanager
    def _read(self) -> Iterator[Session]:
        try:
            with self._sessions() as s:
                yield s
        except SQLAlchemyError as exc:
            raise StoreError(f"database unavailable: {type(exc).__name__}: {exc}") from exc

    @contextmanager
    def _statement(self) -> Iterator[Connection]:
        try:
            with self._autocommit.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"database unavailable: {type(exc).__name__}: {exc}") from exc

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """One transaction; rolled back whole on any error."""
        with self._write_lock or nullcontext():
            try:
                with self._sessions.begin() as s:
                    yield s
            except (StaleDataError, IntegrityError, TriageError):
                raise
            except SQLAlchemyError as exc:
                raise StoreError(f"database unavailable: {type(exc).__name__}: {exc}") from exc

    @property
    def kb(self) -> KnowledgeBase:
        return self.pipeline.ws.kb

    def _fresh_models(self) -> None:
        """Load the models another process rebuilt (another API worker's reindex, `triage kb load`),
        looking at most once a second; drafting and indexing wait while they are swapped."""
        now = time.monotonic()
        if now < self._next_freshness_check:
            return
        self._next_freshness_check = now + FRESHNESS_CHECK_S
        if self.pipeline.ws.stale():
            with self._models.write():
                if self.pipeline.ws.stale():
                    self.pipeline.ws.reload()
                    self._settle_pending = True  # not here: this may run inside a caller's transaction

    def ping(self) -> None:
        with self._read() as s:
            s.execute(select(1))

    def department_names(self) -> list[str]:
        self._fresh_models()  # a `triage kb load` elsewhere may have changed the taxonomy
        return self.kb.department_names

    def check_department(self, name: str, *, field: str = "department") -> str:
        self._fresh_models()
        canonical = self.kb.resolve_department(name)
        if canonical is None:
            raise UnknownDepartmentError(name, self.kb.department_names, field=field)
        return canonical

    def models_read(self) -> AbstractContextManager[None]:
        """Held while drafting: a knowledge-base rebuild through this process waits for it."""
        self._fresh_models()
        return self._models.read()

    def _index_approved(self, cases: list[PastCase]) -> list[None]:
        self._fresh_models()
        with self._models.read():
            self.pipeline.ws.index_cases(cases)
        return [None] * len(cases)

    def _triage_many(self, complaints: list[Complaint]) -> list[Draft]:
        self._fresh_models()
        if self._settle_pending:  # models reloaded since; drafting runs outside any transaction
            self._settle_pending = False
            settle_heap()
        with self._models.read():
            return self.pipeline.triage_many(complaints)

    def _drafts(self, complaints: list[Complaint]) -> list[Draft]:
        return self._triage.submit(complaints) if self._triage else self._triage_many(complaints)

    def reindex(self) -> dict[str, Any]:
        """Rebuild the index and retrain routing from the database; triage waits meanwhile."""
        with self._models.write():
            self.pipeline.ws.reindex()
            stats = dict(vars(self.pipeline.ws.stats()))
        settle_heap()  # the new models are long-lived too
        return stats

    # -- reads -----------------------------------------------------------------------------
    def get(self, case_id: str, *, user: User) -> CaseDetail:
        with self._read() as s:
            return queries.get_case(s, case_id, user)

    def queue(self, query: CaseQuery, *, user: User) -> CasePage:
        query = query.model_copy(
            update={
                "department": [self.check_department(d) for d in query.department],
                "received_from": to_utc(query.received_from),
                "received_to": to_utc(query.received_to),
            }
        )
        with self._statement() as conn:
            return queries.list_cases(conn, query, user)

    def audit(self, case_id: str, *, user: User) -> list[AuditEvent]:
        with self._read() as s:
            return queries.audit_trail(s, case_id, user)

    def batch(self, batch_id: str, *, user: User) -> BatchStatus:
        with self._read() as s:
            return queries.batch_status(s, batch_id, user)

    def stats(self, *, user: User, since: datetime | None = None, until: datetime | None = None) -> QueueStats:
        with self._read() as s:
            return queries.queue_stats(s, user, since=to_utc(since), until=to_utc(until))

    # -- ingest ----------------------------------------------------------------------------
    def ingest(self, complaint: Complaint, *, user: User) -> tuple[CaseDetail, bool]:
        """Store and draft one complaint; returns (the case, created). Idempotent on external_id."""
        self._require_ingest(user)
        existing = self._existing({0: complaint}, user).get(0)
        if existing is None:
            entry = [(complaint, user)]
            [done] = self._ingester.submit(entry) if self._ingester else self._ingest_many(entry)
            if done.error is not None:
                raise done.error
            if done.detail is not None:
                return done.detail, True
            if done.case_id is not None:  # stored, but not drafted here: as it is now
                return self.get(done.case_id, user=user), True
            existing = self._existing({0: complaint}, user)[0]  # committed a moment ago by another request
        return self.get(existing, user=user), False

    def _ingest_many(self, entries: list[tuple[Complaint, User]]) -> list[_Ingested]:
        """Store complaints (one transaction), draft them together, store the drafts (one transaction)
        and answer each from what was written, without reading it back. What goes wrong for one
        complaint stays with its own caller; once the complaints are committed, nothing raises."""
        try:
            with self._write() as s:
                rows = self._insert(s, entries, batch_id=None)
        except Exception as exc:
            if len(entries) > 1:  # whose complaint failed the group? each again on its own
                return [self._ingest_alone(entry) for entry in entries]
            if isinstance(exc, IntegrityError):  # its external id was committed meanwhile by another request
                return [_Ingested(None)]
            raise
        # The complaints are committed; now draft them from the rows just written.
        drafted = self._draft_or_record(rows)
        try:
            stored = self._store_drafts(drafted, actor=SYSTEM)
        except Exception:  # the complaints are stored all the same: each caller reads its case as it stands
            log.exception("could not store the drafts of %d new case(s)", len(drafted))
            stored = {}
        drafts = {row.id: draft for row, draft in drafted}
        done = []
        for row, (_, user) in zip(rows, entries, strict=True):
            hit = stored.get(row.id)
            detail = None
            if hit is not None:  # the case as this transaction left it, the new draft its only version
                case, draft_row = hit
                detail = queries.detail_of(case, [queries.draft_version(draft_row, drafts[row.id])], [], user)
            done.append(_Ingested(row.id, detail))
        return done

    def _ingest_alone(self, entry: tuple[Complaint, User]) -> _Ingested:
        try:
            return self._ingest_many([entry])[0]
        except Exception as exc:
            return _Ingested(None, error=exc)

    def ingest_batch(self, complaints: Sequence[Complaint], *, user: User) -> IngestReceipt:
        """Store a batch at once (one transaction); the background drafter drafts it (draft_cases)."""
        self._require_ingest(user)
        for attempt in range(2):
            existing = self._existing(dict(enumerate(complaints)), user)
            batch_id = str(uuid.uuid4())
            slots: list[str | int] = []  # per complaint: a known case id, or its index in `new`
            new: list[tuple[Complaint, User]] = []
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
                    new.append((c, user))
            try:
                with self._write() as s:
                    # The batch's progress covers the cases it created; the others were drafted before.
                    s.add(BatchRow(id=batch_id, submitted_by=user.name, total=len(new)))
                    rows = self._insert(s, new, batch_id=batch_id)
            except IntegrityError as exc:  # an external id committed meanwhile by another request: look again
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

    def _require_ingest(self, user: User) -> None:
        if user.role not in INGEST_ROLES:
            raise ForbiddenError(f"role {user.role.value} may not ingest complaints")

    def _existing(self, complaints: dict[int, Complaint], user: User) -> dict[int, str]:
        """Cases this submitter already sent under these external ids; a reused id with other text is refused."""
        keyed = {i: c for i, c in complaints.items() if c.external_id}
        if not keyed:
            return {}
        with self._read() as s:
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

    def _insert(self, s: Session, entries: Sequence[tuple[Complaint, User]], *, batch_id: str | None) -> list[CaseRow]:
        """New cases (status new), each with its ingest event, in the caller's transaction; one flush."""
        now = utcnow()
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
                complained_at=to_utc(c.created_at),
                status=CaseStatus.NEW.value,
                draft_no=0,
                batch_id=batch_id,
                submitted_by=user.name,
                received_at=now,
                updated_at=now,
            )
            for c, user in entries
        ]
        # Inserted in key order: two transactions inserting the same external ids then meet in the same
        # order, so the second waits and fails on the unique key instead of deadlocking.
        in_key_order = sorted(rows, key=lambda r: (r.submitted_by, r.external_id or ""))
        s.add_all(in_key_order)
        s.flush()  # the cases get their version here
        for row in rows:
            audit(s, row, actor=row.submitted_by, action="ingest", changes={"status": [None, CaseStatus.NEW.value]})
        return rows

    # -- drafting --------------------------------------------------------------------------
    def draft_cases(self, case_ids: Sequence[str], *, actor: str) -> int:
        """Draft cases still `new` (batched); a failure is recorded on each case. Returns drafts stored."""
        with self._read() as s:
            rows = list(
                s.scalars(select(CaseRow).where(CaseRow.id.in_(case_ids), CaseRow.status == CaseStatus.NEW.value))
            )
        if not rows:
            return 0
        return len(self._store_drafts(self._draft_or_record(rows), actor=actor))

    def _draft_or_record(self, rows: list[CaseRow]) -> list[tuple[CaseRow, Draft]]:
        """Drafts for stored cases: together (shared with other callers' drafting when offline); if that
        fails, each alone, so that one complaint's failure is not every case's. A case whose drafting
        fails alone keeps its complaint and gets the reason."""
        try:
            return list(zip(rows, self._drafts([queries.complaint_of(r) for r in rows]), strict=True))
        except Exception as exc:
            if len(rows) == 1 and self._triage is None:  # it was drafted alone already
                self._draft_failed(rows[0], exc)
                return []
            log.warning("drafting %d case(s) together failed (%s); drafting each alone", len(rows), exc)
        drafted = []
        for row in rows:
            try:
                drafted.append((row, self._triage_many([queries.complaint_of(row)])[0]))
            except Exception as exc:
                self._draft_failed(row, exc)
        return drafted

    def _draft_failed(self, row: CaseRow, exc: Exception) -> None:
        log.error("drafting failed for case %s", row.id, exc_info=exc)
        self._record_draft_error(row.id, row.version, f"{type(exc).__name__}: {exc}")

    def _store_drafts(self, drafted: list[tuple[CaseRow, Draft]], *, actor: str) -> dict[str, tuple[CaseRow, DraftRow]]:
        """Store first drafts in one transaction, for the cases still `new` and unchanged since their row
        was read; a case changed meanwhile keeps its new state. Returns the stored cases and draft rows by id."""
        if not drafted:
            return {}
        wanted = {row.id: (row.version, draft) for row, draft in drafted}
        todo = []
        try:
            with self._write() as s:
                locked = select(CaseRow).where(CaseRow.id.in_(wanted)).order_by(CaseRow.id).with_for_update()
                for row in s.scalars(locked):
                    version, draft = wanted[row.id]
                    if row.version == version and row.status == CaseStatus.NEW.value:
                        todo.append((row, draft))
                    else:
                        log.info("case %s changed while being drafted; its new state stands", row.id)
                draft_rows = add_drafts(s, todo, actor=actor, action="draft")
        except StaleDataError:  # changed between the read and the write (SQLite has no FOR UPDATE)
            log.info("%d case(s) changed while being drafted; their new state stands", len(wanted))
            return {}
        return {row.id: (row, d) for (row, _), d in zip(todo, draft_rows, strict=True)}

    def pending(self, limit: int, *, exclude: set[str]) -> list[str]:
        """Queued cases awaiting a first draft: batch cases, and single ones whose in-request draft was lost."""
        cutoff = utcnow() - RETRY_QUEUED_AFTER
        with self._read() as s:
            ids = s.scalars(
                select(CaseRow.id)
                .where(
                    CaseRow.status == CaseStatus.NEW.value,
                    CaseRow.draft_error.is_(None),
                    CaseRow.draft_no == 0,
                    CaseRow.batch_id.is_not(None) | (CaseRow.received_at < cutoff),
                )
                .order_by(CaseRow.received_at, CaseRow.id)
                .limit(limit + len(exclude))
            )
            return [i for i in ids if i not in exclude][:limit]

    def _record_draft_error(self, case_id: str, version: int, reason: str) -> None:
        try:
            with self._write() as s:
                row = s.get(CaseRow, case_id)
                if row is None or row.version != version:
                    return
                before = snapshot(row)
                row.draft_error = reason[:2000]
                row.updated_at = utcnow()
                s.flush()
                audit(s, row, actor=SYSTEM, action="draft_failed", changes=diff(before, snapshot(row)))
        except (StaleDataError, StoreError):
            log.warning("could not record the drafting failure of case %s", case_id)

    def _save_draft(
        self,
        case_id: str,
        version: int,
        draft: Draft,
        *,
        actor: str,
        action: str,
        expect: Sequence[CaseStatus],
        decision: Callable[[CaseRow], DecisionRow] | None = None,
    ) -> None:
        """Store a draft version of a case in one of the `expect`ed states, unchanged since `version`."""
        try:
            with self._write() as s:
                row = s.get(CaseRow, case_id)
                assert row is not None
                if row.version != version:
                    raise StaleVersionError(version, queries.summary(row))
                if CaseStatus(row.status) not in expect:
                    raise InvalidTransitionError(action, row.status, allowed_actions(row.status))
                if decision is not None:
                    s.add(decision(row))
                add_draft(s, row, draft, actor=actor, action=action)
        except StaleDataError as exc:
            raise StaleVersionError(version, self._peek(case_id)) from exc

    # -- decisions -------------------------------------------------------------------------
    def approve(self, case_id: str, *, user: User, version: int, edits: Edits | None = None) -> CaseDetail:
        """Approve the current draft, as is or with edits; the case joins the past cases at once."""
        approved: list[PastCase] = []

        def apply(s: Session, row: CaseRow) -> tuple[DecisionRow, dict[str, Any]]:
            draft = self._current_draft(s, row)
            original: dict[str, Any] = {
                # the case's department and problem: the draft's, unless a person reassigned it since
                "department": row.department or (draft.department if draft else None),
                "typical_problem_id": row.typical_problem_id,
                "root_cause": draft.root_cause if draft else None,
                "reply": draft.reply if draft else None,
            }
            final = dict(original)
            given = edits.model_fields_set if edits else set()
            for f in given:
                final[f] = getattr(edits, f)
            final["department"] = self.check_department(final["department"] or "", field="edits.department")
            self._check_final(final, user)
            if draft is not None and draft.department != final["department"] and "reply" not in given:
                raise InputError(
                    f"the draft reply was written for {draft.department}; give the reply for "
                    f"{final['department']} in edits.reply",
                    field="edits.reply",
                )
            edited = [f for f in DRAFT_FIELDS if final[f] != original[f]]
            if "department" in edited:
                row.assigned_by = user.name
            row.department = final["department"]
            row.typical_problem_id = final["typical_problem_id"]
            row.decided_at = row.decided_at or utcnow()
            approved.append(self._past_case(row, final))
            s.merge(PastCaseRow.from_model(approved[-1]))
            extra = {f"draft.{f}": [original[f], final[f]] for f in edited if f not in ("department",)}
            return self._decision(row, Action.APPROVE, user, edited=edited, **final), extra

        detail = self._act(case_id, user=user, version=version, action=Action.APPROVE, apply=apply)
        try:
            self._indexer.submit(approved)  # retrievable when this returns
        except TriageError as exc:  # the row is committed; `triage kb reindex` rebuilds the index from it
            log.warning("approved case %s is stored but not yet retrievable: %s", case_id, exc)
        return detail

    def reject(self, case_id: str, *, user: User, version: int, reason: str) -> CaseDetail:
        """Reject the draft with a reason; the case can then be re-triaged, reassigned or closed."""

        def apply(s: Session, row: CaseRow) -> tuple[DecisionRow, dict[str, Any]]:
            row.decided_at = row.decided_at or utcnow()
            return self._decision(row, Action.REJECT, user, reason=reason), {"reason": [None, reason]}

        return self._act(case_id, user=user, version=version, action=Action.REJECT, apply=apply)

    def reassign(self, case_id: str, *, user: User, version: int, department: str, reason: str | None) -> CaseDetail:
        """Move the case to another department's queue."""
        target = self.check_department(department)

        def apply(s: Session, row: CaseRow) -> tuple[DecisionRow, dict[str, Any]]:
            if target == row.department:
                raise InputError(f"the case is already with {target}", field="department")
            row.department = target
            row.assigned_by = user.name
            problem = self.kb.problems_by_id.get(row.typical_problem_id or "")
            if problem is not None and problem.department != target:  # another department's problem
                row.typical_problem_id = None
            return self._decision(row, Action.REASSIGN, user, department=target, reason=reason), {}

        return self._act(case_id, user=user, version=version, action=Action.REASSIGN, apply=apply)

    def close(self, case_id: str, *, user: User, version: int, note: str | None = None) -> CaseDetail:
        """Close a decided case (the reply went out, or a rejected case needs nothing more)."""

        def apply(s: Session, row: CaseRow) -> tuple[DecisionRow, dict[str, Any]]:
            return self._decision(row, Action.CLOSE, user, reason=note), {}

        return self._act(case_id, user=user, version=version, action=Action.CLOSE, apply=apply)

    def retriage(self, case_id: str, *, user: User, version: int) -> CaseDetail:
        """Draft the case again with the current knowledge and models; earlier versions are kept."""
        with self._read() as s:
            row = queries.visible_row(s, case_id, user)
            self._check(row, user, Action.RETRIAGE, version)
            complaint = queries.complaint_of(row)
            draft_no = row.draft_no
        draft = self._drafts([complaint])[0]
        try:
            self._save_draft(
                case_id,
                version,
                draft,
                actor=user.name,
                action=Action.RETRIAGE.value,
                expect=[st for st, moves in TRANSITIONS.items() if Action.RETRIAGE in moves],
                decision=lambda r: DecisionRow(
                    case_id=r.id, action=Action.RETRIAGE.value, actor=user.name, draft_no=draft_no, edited_fields=[]
                ),
            )
        except StaleVersionError as exc:  # show the case as it is now, if the caller may still see it
            raise StaleVersionError(version, self.get(case_id, user=user)) from exc
        return self.get(case_id, user=user)

    def _act(
        self,
        case_id: str,
        *,
        user: User,
        version: int,
        action: Action,
        apply: Callable[[Session, CaseRow], tuple[DecisionRow, dict[str, Any]]],
    ) -> CaseDetail:
        try:
            with self._write() as s:
                row = queries.visible_row(s, case_id, user)
                self._check(row, user, action, version)
                before = snapshot(row)
                with s.no_autoflush:  # one UPDATE, so one version step per action
                    decision, extra = apply(s, row)
                    row.status = TRANSITIONS[CaseStatus(row.status)][action].value
                    row.updated_at = utcnow()
                    s.add(decision)
                s.flush()  # UPDATE ... WHERE version = :read; no row -> StaleDataError
                audit(s, row, actor=user.name, action=action.value, changes=diff(before, snapshot(row)) | extra)
                return queries.detail(s, row, user)
        except StaleDataError as exc:
            raise StaleVersionError(version, self.get(case_id, user=user)) from exc

    def _check(self, row: CaseRow, user: User, action: Action, version: int) -> None:
        if user.role not in ACTION_ROLES[action]:
            raise ForbiddenError(f"role {user.role.value} may not {action.value} cases")
        if row.version != version:
            raise StaleVersionError(version, queries.summary(row))
        if action not in TRANSITIONS[CaseStatus(row.status)]:
            raise InvalidTransitionError(action.value, row.status, allowed_actions(row.status, user.role))

    def _check_final(self, final: dict[str, Any], user: User) -> None:
        if user.role is Role.CASEWORKER and final["department"] not in user.departments:
            raise ForbiddenError(
                f"you may approve only for {', '.join(user.departments)}; reassign the case to "
                f"{final['department']} instead"
            )
        pid = final["typical_problem_id"]
        if pid is not None:
            problem = self.kb.problems_by_id.get(pid)
            if problem is None:
                raise InputError(f"unknown typical problem '{pid}'", field="edits.typical_problem_id")
            if problem.department != final["department"]:
                raise InputError(
                    f"typical problem {pid} belongs to {problem.department}, not {final['department']}",
                    field="edits.typical_problem_id",
                )
        for f in ("root_cause", "reply"):
            if not final[f]:
                raise InputError("the case has no draft to take it from; give it in the edits", field=f"edits.{f}")

    def _current_draft(self, s: Session, row: CaseRow) -> Draft | None:
        if not row.draft_no:
            return None
        body = s.scalars(select(DraftRow.body).where(DraftRow.case_id == row.id, DraftRow.number == row.draft_no)).one()
        return Draft.model_validate(body)

    @staticmethod
    def _decision(
        row: CaseRow, action: Action, user: User, *, edited: Sequence[str] = (), **values: Any
    ) -> DecisionRow:
        return DecisionRow(
            case_id=row.id,
            action=action.value,
            actor=user.name,
            draft_no=row.draft_no,
            edited_fields=list(edited),
            edited=bool(edited),
            **values,
        )

    @staticmethod
    def _past_case(row: CaseRow, final: dict[str, Any]) -> PastCase:
        when = row.complained_at or row.received_at
        return PastCase(
            id=f"case-{row.id}",
            text=row.text,
            title=row.title,
            department=final["department"],
            typical_problem_id=final["typical_problem_id"],
            root_cause=final["root_cause"],
            reply=final["reply"],
            channel=row.channel,
            created_at=when.astimezone(UTC).isoformat() if when.tzinfo else when.isoformat(),
            source="approved",
        )

    def _peek(self, case_id: str) -> Any:
        with self._read() as s:
            row = s.get(CaseRow, case_id)
            return queries.summary(row) if row else None
