"""Working a job: claim a chunk, draft it, commit it; a heartbeat keeps the leases of what is in hand.

A worker claims a chunk (pending items, or running ones whose lease expired because their worker
died) with `SELECT ... FOR UPDATE SKIP LOCKED`, drafts it, and commits it in one transaction that
locks the claimed items it still owns and writes the new draft versions, the case updates, the audit
events and the items' `done` together. A worker killed at any point therefore leaves each item
either done (with its draft) or claimable again (without one): resumed, every item ends done exactly
once. Several worker processes share a job that way; SQLite has no row locks to skip: one worker there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, or_, select, update

from triage.access.policy import job_actor
from triage.cases import queries
from triage.cases.records import add_draft
from triage.cases.rows import CaseRow, utcnow
from triage.database import Database
from triage.errors import ConcurrentUpdateError, DuplicateError, StoreError
from triage.jobs.models import OPEN_STATES, ItemState, JobStatus, Prices
from triage.jobs.rows import JobItemRow, JobRow, get_job
from triage.jobs.selection import skip_reason
from triage.models import Complaint, Draft
from triage.pipeline import TriagePipeline

if TYPE_CHECKING:
    from triage.jobs.service import JobService

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3
MAX_HICCUPS = 5  # database errors in a row before a worker gives up
# A chunk's transaction failing for this item alone (retried item by item; see _process_isolating).
ITEM_ERRORS = (StoreError, ConcurrentUpdateError, DuplicateError)


def lease_clock(db: Database) -> Any:
    """The database's clock on PostgreSQL (workers on several machines agree on leases); SQLite has
    one worker, on this machine."""
    return utcnow() if db.sqlite else func.now()


class Worker:
    """One worker on one job; `name` marks the items it holds."""

    def __init__(
        self, db: Database, job_id: str, *, name: str, pipeline: TriagePipeline, lease: timedelta, prices: Prices
    ) -> None:
        self.db = db
        self.job_id = job_id
        self.name = name
        self.pipeline = pipeline
        self.lease = lease
        self.prices = prices

    def run(
        self,
        *,
        concurrency: int,
        size: int,
        on_chunk: Callable[[], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        """Claim chunks of `size` until none is left (or the job is cancelled, or `stop` is set)."""
        beating = threading.Event()
        heart = threading.Thread(target=self._heartbeat, args=(beating,), name=f"lease-{self.name}", daemon=True)
        heart.start()
        try:
            with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="retriage") as pool:
                self._loop(pool, size, on_chunk, stop)
        finally:
            beating.set()
            heart.join()

    def _loop(
        self, pool: ThreadPoolExecutor, size: int, on_chunk: Callable[[], None] | None, stop: threading.Event | None
    ) -> None:
        hiccups = 0
        while not (stop and stop.is_set()):
            try:
                with self.db.read() as s:
                    if get_job(s, self.job_id).status != JobStatus.RUNNING:
                        break
                claimed = self._claim(size)
                if claimed:
                    self._process_isolating(pool, claimed)
                elif self._finish_if_complete():
                    break
                else:  # items leased by other workers: wait for them to finish or their leases to lapse
                    time.sleep(min(1.0, self.lease.total_seconds()))
                if on_chunk is not None:
                    on_chunk()
                hiccups = 0
            except StoreError as exc:
                # A database hiccup (a restart, SQLite's busy writer): the chunk was rolled back whole;
                # its items are still ours and are claimed again next round. Give up after a few in a row.
                hiccups += 1
                if hiccups >= MAX_HICCUPS:
                    raise
                log.warning("database error while working job %s, retrying: %s", self.job_id, exc)
                time.sleep(min(5.0, self.lease.total_seconds()))

    def _heartbeat(self, done: threading.Event) -> None:
        """Extend this worker's leases while it lives, so a slow chunk (rate limits, a slow LLM) is not
        taken over by another worker while still being drafted; a dead worker's leases lapse."""
        while not done.wait(self.lease.total_seconds() / 3):
            try:
                with self.db.write() as s:
                    s.execute(
                        update(JobItemRow)
                        .where(
                            JobItemRow.job_id == self.job_id,
                            JobItemRow.worker == self.name,
                            JobItemRow.state == ItemState.RUNNING,
                        )
                        .values(lease_until=lease_clock(self.db) + self.lease)
                        .execution_options(synchronize_session=False)
                    )
            except StoreError as exc:
                log.warning("could not extend the leases of %s: %s", self.name, exc)

    def _claim(self, n: int) -> list[tuple[int, str]]:
        now = lease_clock(self.db)
        lapsed = and_(JobItemRow.state == ItemState.RUNNING, JobItemRow.lease_until < now)
        # Between chunks this worker holds nothing: a running item of its own was left by a chunk that
        # failed mid-way (its heartbeat keeps such leases fresh, so they would never lapse).
        orphaned = and_(JobItemRow.state == ItemState.RUNNING, JobItemRow.worker == self.name)
        with self.db.write() as s:  # an item whose worker died MAX_ATTEMPTS times is not tried again
            s.execute(
                update(JobItemRow)
                .where(JobItemRow.job_id == self.job_id, or_(lapsed, orphaned), JobItemRow.attempts >= MAX_ATTEMPTS)
                .values(
                    state=ItemState.FAILED,
                    error=func.coalesce(JobItemRow.error, "its worker stopped before finishing it, three times"),
                    finished_at=utcnow(),
                )
                .execution_options(synchronize_session=False)
            )
        claimable = (
            select(JobItemRow.id)
            .where(JobItemRow.job_id == self.job_id, or_(JobItemRow.state == ItemState.PENDING, lapsed, orphaned))
            .order_by(JobItemRow.id)
            .limit(n)
            .with_for_update(skip_locked=True)
        )
        with self.db.write() as s:
            rows = s.execute(
                update(JobItemRow)
                .where(JobItemRow.id.in_(claimable.scalar_subquery()))
                .values(
                    state=ItemState.RUNNING,
                    worker=self.name,
                    lease_until=now + self.lease,
                    attempts=JobItemRow.attempts + 1,
                )
                .returning(JobItemRow.id, JobItemRow.case_id)
                .execution_options(synchronize_session=False)
            ).all()
        return sorted((int(i), str(c)) for i, c in rows)

    def _finish_if_complete(self) -> bool:
        with self.db.write() as s:
            open_items = s.scalar(
                select(func.count())
                .select_from(JobItemRow)
                .where(JobItemRow.job_id == self.job_id, JobItemRow.state.in_(OPEN_STATES))
            )
            if open_items:
                return False
            s.execute(
                update(JobRow)
                .where(JobRow.id == self.job_id, JobRow.status == JobStatus.RUNNING)
                .values(status=JobStatus.DONE, finished_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            return True

    def _process_isolating(self, pool: ThreadPoolExecutor, claimed: Sequence[tuple[int, str]]) -> None:
        """Process a chunk; if its transaction fails, process the items one by one, so one bad item
        fails alone (after MAX_ATTEMPTS) instead of taking its chunk down with it."""
        try:
            self._process(pool, claimed)
            return
        except ITEM_ERRORS as exc:
            if len(claimed) == 1:
                self._record_failure(claimed[0][0], exc)
                return
            log.warning("chunk of %d failed (%s); retrying item by item", len(claimed), exc)
        for item in claimed:
            try:
                self._process(pool, [item])
            except ITEM_ERRORS as exc:
                self._record_failure(item[0], exc)

    def _record_failure(self, item_id: int, exc: BaseException) -> None:
        """An item whose transaction failed: back to pending, or failed after MAX_ATTEMPTS."""
        with self.db.write() as s:
            item = s.get(JobItemRow, item_id, with_for_update=True)
            if item is None or item.state != ItemState.RUNNING or item.worker != self.name:
                return
            item.error = f"{type(exc).__name__}: {exc}"[:2000]
            item.state = _after_failure(item.attempts, get_job(s, item.job_id).status)
            item.reason = "job cancelled" if item.state == ItemState.SKIPPED else None
            item.finished_at = utcnow() if item.state != ItemState.PENDING else None

    def _draft_all(
        self, complaints: list[Complaint], chosen: list[str | None], pool: ThreadPoolExecutor
    ) -> list[Draft | BaseException]:
        """Drafts for the chunk; a case whose department a person chose is drafted for that department.
        Retrieval and routing are batched for the chunk; LLM drafts run concurrently on the pool."""
        try:
            return list(self.pipeline.triage_many(complaints, departments=chosen, pool=pool))
        except Exception:
            log.exception("drafting the chunk failed; drafting one by one to find the failing items")

        def one(item: tuple[Complaint, str | None]) -> Draft | BaseException:
            try:
                return self.pipeline.triage_many([item[0]], departments=[item[1]])[0]
            except Exception as exc:
                return exc

        return list(pool.map(one, zip(complaints, chosen, strict=True)))

    def _process(self, pool: ThreadPoolExecutor, claimed: Sequence[tuple[int, str]]) -> None:
        case_ids = [c for _, c in claimed]
        with self.db.read() as s:
            rows = {r.id: r for r in s.scalars(select(CaseRow).where(CaseRow.id.in_(case_ids)))}
        complaints = [queries.complaint_of(rows[c]) for c in case_ids]
        chosen = [rows[c].department if rows[c].assigned_by else None for c in case_ids]
        drafted = self._draft_all(complaints, chosen, pool)
        drafts = dict(zip(case_ids, drafted, strict=True))
        actor = job_actor(self.job_id)
        with self.db.write() as s:
            job = get_job(s, self.job_id)
            owned = {
                i.id: i
                for i in s.scalars(
                    select(JobItemRow)
                    .where(
                        JobItemRow.id.in_([i for i, _ in claimed]),
                        JobItemRow.state == ItemState.RUNNING,
                        JobItemRow.worker == self.name,
                    )
                    .order_by(JobItemRow.id)  # one lock order everywhere: no deadlocks between workers
                    .with_for_update()
                )
            }
            cases = {
                c.id: c
                for c in s.scalars(
                    select(CaseRow).where(CaseRow.id.in_(case_ids)).order_by(CaseRow.id).with_for_update()
                )
            }
            now = utcnow()
            for item_id, case_id in claimed:
                item = owned.get(item_id)
                if item is None:  # our lease lapsed and another worker has it: its draft, not ours
                    continue
                result, case = drafts[case_id], cases[case_id]
                if isinstance(result, BaseException):
                    item.error = f"{type(result).__name__}: {result}"[:2000]
                    item.state = _after_failure(item.attempts, job.status)
                    item.reason = "job cancelled" if item.state == ItemState.SKIPPED else None
                    item.finished_at = now if item.state != ItemState.PENDING else None
                    continue
                reason = skip_reason(case.status, job.include_decided)
                if reason is not None:  # decided while the job ran
                    item.state, item.reason, item.finished_at = ItemState.SKIPPED, reason, now
                    continue
                item.old_department, item.old_problem = case.department, case.typical_problem_id
                add_draft(s, case, result, actor=actor, action="retriage", keep_decision=True)
                item.new_department = case.department  # the draft's, unless a person chose it (or decided)
                item.new_problem = result.typical_problem.id if result.typical_problem else None
                item.draft_no = case.draft_no
                item.drafted_by = result.drafted_by
                item.prompt_tokens, item.completion_tokens = result.tokens.prompt, result.tokens.completion
                item.cost = self.prices.cost(result.tokens.prompt, result.tokens.completion)
                item.state, item.error, item.finished_at = ItemState.DONE, None, now


def _after_failure(attempts: int, job_status: str) -> ItemState:
    """Where an item goes when drafting or committing it failed."""
    if attempts >= MAX_ATTEMPTS:
        return ItemState.FAILED
    return ItemState.PENDING if job_status == JobStatus.RUNNING else ItemState.SKIPPED


class JobRunner:
    """Works jobs started through the API on background threads of the API process.

    On shutdown the threads stop after their current chunk; unfinished items stay claimable, so
    `triage retriage --resume JOB` (or any worker) finishes the job.
    """

    def __init__(self, jobs: JobService, *, concurrency: int = 4) -> None:
        self.jobs = jobs
        self.concurrency = concurrency
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, job_id: str) -> None:
        thread = threading.Thread(target=self._work, args=(job_id,), name=f"job-{job_id[:8]}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _work(self, job_id: str) -> None:
        try:
            self.jobs.work(job_id, concurrency=self.concurrency, stop=self._stop)
        except Exception:
            log.exception("job %s stopped with an error; resume it with `triage retriage --resume %s`", job_id, job_id)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
