"""Re-triage jobs: durable, resumable, shared by many workers, never overwriting a human decision.

A job's items live in `job_items`. A worker claims a chunk (pending items, or running ones whose
lease expired because their worker died) with `SELECT ... FOR UPDATE SKIP LOCKED`, drafts them, and
commits each chunk in one transaction that locks the claimed items it still owns and writes the new
draft versions, the case updates, the audit events and the items' `done` together. A worker killed
at any point therefore leaves each item either done (with its draft) or claimable again (without
one): resumed, every item ends done exactly once. SQLite has no row locks to skip: one worker there.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, true, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from prompts import load as load_prompt
from triage.cases import queries
from triage.cases.records import UNDECIDED, add_draft
from triage.cases.rows import CaseRow, to_utc, utcnow
from triage.cases.states import CaseStatus
from triage.errors import InputError, NotFoundError, StoreError, UnknownDepartmentError
from triage.jobs.models import Estimate, JobFilters, JobProgress, JobSummary, NewJob
from triage.jobs.ratelimit import COMPLETION_ESTIMATE, RateLimitedDrafter, RateLimiter
from triage.jobs.rows import JobItemRow, JobRow
from triage.knowledge import KnowledgeBase
from triage.models import CHANNEL_VALUES, Draft
from triage.pipeline import TriagePipeline
from triage.redaction import redact
from triage.settings import Settings
from triage.workspace import Workspace

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3
LLM_LANES = 3  # chunks in flight per worker when drafting with an LLM (see JobService.work)
EVIDENCE_TOKENS = 1500  # typical problems and past cases quoted in an LLM prompt (dry-run estimate)
Progress = Callable[[JobProgress], None]


@dataclass(frozen=True)
class _Run:
    """One worker's run of one job: what every step of it needs."""

    job_id: str
    worker: str
    pool: ThreadPoolExecutor
    pipeline: TriagePipeline


class _Active:
    """The lanes of a worker still running, for a lane deciding whether it may leave the rest to others."""

    def __init__(self, names: Sequence[str]) -> None:
        self._names = set(names)
        self._lock = threading.Lock()

    def leave(self, name: str) -> None:
        with self._lock:
            self._names.discard(name)

    def try_leave(self, name: str) -> bool:
        """Leave if another lane stays (checked and done at once, so the last lane never leaves)."""
        with self._lock:
            if len(self._names) > 1:
                self._names.discard(name)
                return True
            return False


class JobService:
    """Create, estimate, work, cancel and summarise re-triage jobs."""

    def __init__(
        self,
        engine: Engine,
        pipeline: TriagePipeline,
        *,
        lease_s: float = 60.0,
        price_input_per_1k: float = 0.0,
        price_output_per_1k: float = 0.0,
        rpm: int | None = None,
        tpm: int | None = None,
        guard: Callable[[], AbstractContextManager[None]] = nullcontext,
    ) -> None:
        self.engine = engine
        self.pipeline = pipeline
        self.lease = timedelta(seconds=lease_s)
        self.prices = (price_input_per_1k, price_output_per_1k)
        self.limits = (rpm, tpm)  # defaults for work()
        self.guard = guard  # held while drafting (the API passes its models' read lock)
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.sqlite = engine.dialect.name == "sqlite"

    @property
    def kb(self) -> KnowledgeBase:
        return self.pipeline.ws.kb

    @classmethod
    def for_workspace(
        cls, settings: Settings, workspace: Workspace, pipeline: TriagePipeline | None = None
    ) -> JobService:
        """A job service on a workspace's case database, with the settings' lease and prices."""
        return cls(
            workspace.store.engine,
            pipeline or TriagePipeline.from_settings(settings, workspace),
            lease_s=settings.job_lease_s,
            price_input_per_1k=settings.llm_price_input_per_1k,
            price_output_per_1k=settings.llm_price_output_per_1k,
            rpm=settings.job_rpm,
            tpm=settings.job_tpm,
        )

    # -- choosing cases --------------------------------------------------------------------
    def validate(self, filters: JobFilters) -> None:
        """Unknown filter values are refused before any work, with the valid ones listed."""
        if filters.is_empty():
            raise InputError(
                "choose the cases: a status, department, channel, typical problem, date range, ids file, or undecided",
                field="filters",
            )
        for name in filters.department:
            if name not in self.kb.department_names:
                raise UnknownDepartmentError(name, self.kb.department_names)
        for channel in filters.channel:
            if channel not in CHANNEL_VALUES:
                raise InputError(f"unknown channel '{channel}'; valid: {', '.join(CHANNEL_VALUES)}", field="channel")
        for pid in filters.typical_problem_id:
            if pid not in self.kb.problems_by_id:
                valid = ", ".join(sorted(self.kb.problems_by_id))
                raise InputError(f"unknown typical problem '{pid}'; valid: {valid}", field="typical_problem_id")
        if filters.ids:
            with self._sessions() as s:
                known: set[str] = set()
                for start in range(0, len(filters.ids), 500):
                    chunk = filters.ids[start : start + 500]
                    known.update(s.scalars(select(CaseRow.id).where(CaseRow.id.in_(chunk))))
            unknown = [i for i in filters.ids if i not in known]
            if unknown:
                more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
                raise InputError(f"no such case: {', '.join(unknown[:5])}{more}", field="ids")

    def _matching(self, s: Session, f: JobFilters) -> list[tuple[str, str]]:
        conds: list[ColumnElement[bool]] = []
        if f.status:
            conds.append(CaseRow.status.in_([x.value for x in f.status]))
        if f.undecided:
            conds.append(CaseRow.status.in_([x.value for x in UNDECIDED]))
        if f.department:
            conds.append(CaseRow.department.in_(f.department))
        if f.channel:
            conds.append(CaseRow.channel.in_(f.channel))
        if f.typical_problem_id:
            conds.append(CaseRow.typical_problem_id.in_(f.typical_problem_id))
        if f.received_from:
            conds.append(CaseRow.received_at >= to_utc(f.received_from))
        if f.received_to:
            conds.append(CaseRow.received_at < to_utc(f.received_to))
        query = select(CaseRow.id, CaseRow.status, CaseRow.received_at).where(and_(true(), *conds))
        if not f.ids:
            return [(i, st) for i, st, _ in s.execute(query.order_by(CaseRow.received_at, CaseRow.id))]
        found: list[Any] = []
        for start in range(0, len(f.ids), 1000):
            found += s.execute(query.where(CaseRow.id.in_(f.ids[start : start + 1000]))).all()
        return [(i, st) for i, st, _ in sorted(found, key=lambda r: (r[2], r[0]))]

    @staticmethod
    def _skip_reason(status: str, include_decided: bool) -> str | None:
        if include_decided or CaseStatus(status) in UNDECIDED:
            return None
        return f"{status}: a decided case is left alone unless decided cases are included"

    def estimate(self, new: NewJob) -> Estimate:
        """Count the items and estimate tokens and cost, calling no LLM."""
        self.validate(new.filters)
        with self._sessions() as s:
            matching = self._matching(s, new.filters)
            todo = [i for i, st in matching if self._skip_reason(st, new.include_decided) is None]
            texts = []
            for start in range(0, len(todo), 500):
                texts += list(s.scalars(select(CaseRow.text).where(CaseRow.id.in_(todo[start : start + 500]))))
        counter = self.pipeline.tokens
        budget = self.pipeline.settings.max_complaint_tokens
        complaint = sum(min(counter.count(redact(t).text), budget) for t in texts)
        template = load_prompt("triage_draft")
        overhead = sum(counter.count(v) for v in template.sections.values()) + EVIDENCE_TOKENS
        prompt = complaint + overhead * len(todo)
        completion = COMPLETION_ESTIMATE * len(todo)
        llm = self.pipeline.settings.llm_model
        return Estimate(
            cases=len(matching),
            to_retriage=len(todo),
            skipped_decided=len(matching) - len(todo),
            complaint_tokens=complaint,
            estimated_prompt_tokens=prompt,
            estimated_completion_tokens=completion,
            estimated_cost=round(self._cost(prompt, completion), 4),
            drafter=f"llm:{llm}" if llm else "offline (no LLM tokens would be spent)",
            tokens_estimated=counter.estimated,
        )

    def _cost(self, prompt: int, completion: int) -> float:
        return prompt / 1000 * self.prices[0] + completion / 1000 * self.prices[1]

    def create(self, new: NewJob, *, actor: str) -> JobProgress:
        """Store the job and one item per matching case; decided cases are items skipped with a reason."""
        self.validate(new.filters)
        job_id = str(uuid.uuid4())
        try:
            with self._sessions.begin() as s:
                matching = self._matching(s, new.filters)
                s.add(
                    JobRow(
                        id=job_id,
                        status="running",
                        created_by=actor,
                        filters=new.filters.model_dump(mode="json"),
                        include_decided=new.include_decided,
                        total=len(matching),
                    )
                )
                s.flush()
                now = utcnow()
                s.add_all(
                    JobItemRow(
                        job_id=job_id,
                        case_id=case_id,
                        state="skipped" if reason else "pending",
                        reason=reason,
                        attempts=0,
                        finished_at=now if reason else None,
                    )
                    for case_id, status in matching
                    for reason in [self._skip_reason(status, new.include_decided)]
                )
        except SQLAlchemyError as exc:
            raise StoreError(f"could not store the job: {type(exc).__name__}: {exc}") from exc
        return self.progress(job_id)

    # -- reading ---------------------------------------------------------------------------
    def _job(self, s: Session, job_id: str) -> JobRow:
        job = s.get(JobRow, job_id)
        if job is None:
            raise NotFoundError(f"no job '{job_id}'")
        return job

    def progress(self, job_id: str) -> JobProgress:
        with self._sessions() as s:
            return self._progress(s, self._job(s, job_id))

    def _progress(self, s: Session, job: JobRow) -> JobProgress:
        counts = dict(
            s.execute(
                select(JobItemRow.state, func.count()).where(JobItemRow.job_id == job.id).group_by(JobItemRow.state)
            ).all()
        )
        return JobProgress(
            id=job.id,
            status=job.status,
            created_by=job.created_by,
            created_at=job.created_at,
            finished_at=job.finished_at,
            filters=JobFilters.model_validate(job.filters),
            include_decided=job.include_decided,
            total=job.total,
            **{k: int(counts.get(k, 0)) for k in ("pending", "running", "done", "failed", "skipped")},
        )

    def jobs(self, limit: int = 50) -> list[JobProgress]:
        with self._sessions() as s:
            rows = list(s.scalars(select(JobRow).order_by(JobRow.created_at.desc()).limit(limit)))
            return [self._progress(s, j) for j in rows]

    def summary(self, job_id: str) -> JobSummary:
        with self._sessions() as s:
            job = self._job(s, job_id)
            progress = self._progress(s, job)
            items = list(s.scalars(select(JobItemRow).where(JobItemRow.job_id == job_id)))
        matrix: dict[str, dict[str, int]] = {}
        problems: Counter[str] = Counter()
        for i in items:
            if i.state != "done":
                continue
            old, new = i.old_department or "(none)", i.new_department or "(none)"
            matrix.setdefault(old, {}).setdefault(new, 0)
            matrix[old][new] += 1
            if i.old_problem != i.new_problem:
                problems[f"{i.old_problem or '(none)'} -> {i.new_problem or '(none)'}"] += 1
        done = [i for i in items if i.state == "done"]
        return JobSummary(
            **progress.model_dump(),
            department_changes=matrix,
            departments_changed=sum(1 for i in done if i.old_department != i.new_department),
            problems_changed=sum(problems.values()),
            problem_changes=dict(problems.most_common()),
            skipped_reasons=dict(Counter(i.reason or "" for i in items if i.state == "skipped")),
            errors={i.case_id: i.error or "" for i in items if i.state == "failed"},
            prompt_tokens=sum(i.prompt_tokens for i in items),
            completion_tokens=sum(i.completion_tokens for i in items),
            cost=round(sum(i.cost for i in items), 4),
        )

    def cancel(self, job_id: str) -> JobProgress:
        """Stop handing out items; pending ones are skipped, running ones finish."""
        with self._sessions.begin() as s:
            job = self._job(s, job_id)
            if job.status == "running":
                job.status = "cancelled"
                job.finished_at = utcnow()
                abandoned = and_(JobItemRow.state == "running", JobItemRow.lease_until < self._now())
                s.execute(
                    update(JobItemRow)
                    .where(JobItemRow.job_id == job_id, or_(JobItemRow.state == "pending", abandoned))
                    .values(state="skipped", reason="job cancelled", finished_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
        return self.progress(job_id)

    # -- working ---------------------------------------------------------------------------
    def work(
        self,
        job_id: str,
        *,
        concurrency: int = 1,
        chunk: int = 64,
        rpm: int | None = None,
        tpm: int | None = None,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
        worker: str | None = None,
    ) -> JobSummary:
        """Work the job until no item is left (or it is cancelled, or `stop` is set); resumable."""
        worker = worker or f"worker-{uuid.uuid4().hex[:8]}"
        rpm, tpm = rpm or self.limits[0], tpm or self.limits[1]
        pipeline = self.pipeline
        if pipeline.llm is not None and (rpm or tpm):  # a pipeline of its own: the limits are this job's
            limited = RateLimitedDrafter(pipeline.llm, RateLimiter(rpm, tpm), pipeline.tokens)
            pipeline = TriagePipeline(pipeline.ws, llm=limited, tokens=pipeline.tokens)
        size = max(chunk, concurrency) if pipeline.llm is not None else chunk
        # With an LLM, a chunk spends most of its time waiting on the endpoint, and a worker with one
        # chunk in hand leaves the endpoint idle while it reads, retrieves and commits between chunks.
        # Two lanes (each claiming and committing its own chunks under a worker name of its own) keep
        # the shared pool of `concurrency` calls busy across those gaps. SQLite has one writer: one lane.
        lanes = LLM_LANES if pipeline.llm is not None and not self.sqlite else 1
        names = [worker] if lanes == 1 else [f"{worker}.{k}" for k in range(lanes)]
        beating = threading.Event()
        heart = threading.Thread(target=self._heartbeat, args=(job_id, names, beating), daemon=True)
        heart.start()
        try:
            with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="retriage") as pool:
                runs = [_Run(job_id, name, pool, pipeline) for name in names]
                if lanes == 1:
                    self._loop(runs[0], size, progress, stop)
                else:
                    self._lanes(runs, size, progress, stop)
        finally:
            beating.set()
            heart.join()
        return self.summary(job_id)

    def _lanes(self, runs: list[_Run], size: int, progress: Progress | None, stop: threading.Event | None) -> None:
        """Run the lanes; one failing (or the caller's stop, or an interrupt) stops them all after their
        current chunk, and the first error is raised here, as a single-lane worker would raise it. The
        items a failed lane held keep their leases only while this worker's heartbeat runs."""
        active = _Active([run.worker for run in runs])
        halt = threading.Event()
        errors: list[BaseException] = []

        def lane(run: _Run) -> None:
            try:
                self._loop(run, size, progress, halt, siblings=active)
            except BaseException as exc:  # re-raised in the caller's thread below
                errors.append(exc)
                halt.set()
            finally:
                active.leave(run.worker)

        threads = [threading.Thread(target=lane, args=(run,), name=f"retriage-{run.worker}") for run in runs]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.5)
                    if stop is not None and stop.is_set():
                        halt.set()
        except BaseException:  # Ctrl-C lands here, in the caller's thread: stop the lanes, then re-raise
            halt.set()
            for t in threads:
                t.join()
            raise
        if errors:
            raise errors[0]

    def _loop(
        self,
        run: _Run,
        size: int,
        progress: Progress | None,
        stop: threading.Event | None,
        siblings: _Active | None = None,
    ) -> None:
        job_id = run.job_id
        failures = 0
        while not (stop and stop.is_set()):
            try:
                with self._sessions() as s:
                    if self._job(s, job_id).status != "running":
                        break
                claimed = self._claim(job_id, run.worker, size)
                if claimed:
                    self._process_isolating(run, claimed)
                elif self._finish_if_complete(job_id):
                    break
                elif siblings is not None and siblings.try_leave(run.worker):
                    break  # the other lanes finish what is in flight and wait for other workers
                else:  # items leased by other workers: wait for them to finish or their leases to lapse
                    time.sleep(min(1.0, self.lease.total_seconds()))
                if progress is not None:
                    progress(self.progress(job_id))
                failures = 0
            except SQLAlchemyError as exc:
                # A database hiccup (a restart, SQLite's busy writer): the chunk was rolled back whole;
                # its items are still ours and are claimed again next round. Give up after a few in a row.
                failures += 1
                if failures >= 5:
                    raise StoreError(f"database unavailable: {type(exc).__name__}: {exc}") from exc
                log.warning("database error while working job %s, retrying: %s", job_id, exc)
                time.sleep(min(5.0, self.lease.total_seconds()))

    def _heartbeat(self, job_id: str, workers: list[str], done: threading.Event) -> None:
        """Extend this worker's leases while it lives, so a slow chunk (rate limits, a slow LLM) is not
        taken over by another worker while still being drafted; a dead worker's leases lapse."""
        while not done.wait(self.lease.total_seconds() / 3):
            try:
                with self._sessions.begin() as s:
                    s.execute(
                        update(JobItemRow)
                        .where(
                            JobItemRow.job_id == job_id,
                            JobItemRow.worker.in_(workers),
                            JobItemRow.state == "running",
                        )
                        .values(lease_until=self._now() + self.lease)
                        .execution_options(synchronize_session=False)
                    )
            except SQLAlchemyError as exc:
                log.warning("could not extend the leases of %s: %s", ", ".join(workers), exc)

    def _now(self) -> Any:
        """The database's clock on PostgreSQL (workers on several machines agree on leases); SQLite has
        one worker, on this machine."""
        return utcnow() if self.sqlite else func.now()

    def _process_isolating(self, run: _Run, claimed: Sequence[tuple[int, str]]) -> None:
        """Process a chunk; if its transaction fails, process the items one by one, so one bad item
        fails alone (after MAX_ATTEMPTS) instead of taking its chunk down with it."""
        try:
            self._process(run, claimed)
            return
        except SQLAlchemyError as exc:
            if len(claimed) == 1:
                self._record_failure(claimed[0][0], run.worker, exc)
                return
            log.warning("chunk of %d failed (%s); retrying item by item", len(claimed), type(exc).__name__)
        for item in claimed:
            try:
                self._process(run, [item])
            except SQLAlchemyError as exc:
                self._record_failure(item[0], run.worker, exc)

    def _record_failure(self, item_id: int, worker: str, exc: BaseException) -> None:
        """An item whose transaction failed: back to pending, or failed after MAX_ATTEMPTS."""
        with self._sessions.begin() as s:
            item = s.get(JobItemRow, item_id, with_for_update=True)
            if item is None or item.state != "running" or item.worker != worker:
                return
            item.error = f"{type(exc).__name__}: {exc}"[:2000]
            item.state = _after_failure(item.attempts, self._job(s, item.job_id).status)
            item.reason = "job cancelled" if item.state == "skipped" else None
            item.finished_at = utcnow() if item.state != "pending" else None

    def _claim(self, job_id: str, worker: str, n: int) -> list[tuple[int, str]]:
        now = self._now()
        lapsed = and_(JobItemRow.state == "running", JobItemRow.lease_until < now)
        # Between chunks this worker holds nothing: a running item of its own was left by a chunk that
        # failed mid-way (its heartbeat keeps such leases fresh, so they would never lapse).
        orphaned = and_(JobItemRow.state == "running", JobItemRow.worker == worker)
        with self._sessions.begin() as s:  # an item whose worker died MAX_ATTEMPTS times is not tried again
            s.execute(
                update(JobItemRow)
                .where(JobItemRow.job_id == job_id, or_(lapsed, orphaned), JobItemRow.attempts >= MAX_ATTEMPTS)
                .values(
                    state="failed",
                    error=func.coalesce(JobItemRow.error, "its worker stopped before finishing it, three times"),
                    finished_at=utcnow(),
                )
                .execution_options(synchronize_session=False)
            )
        claimable = (
            select(JobItemRow.id)
            .where(
                JobItemRow.job_id == job_id,
                or_(JobItemRow.state == "pending", lapsed, orphaned),
            )
            .order_by(JobItemRow.id)
            .limit(n)
            .with_for_update(skip_locked=True)
        )
        with self._sessions.begin() as s:
            rows = s.execute(
                update(JobItemRow)
                .where(JobItemRow.id.in_(claimable.scalar_subquery()))
                .values(state="running", worker=worker, lease_until=now + self.lease, attempts=JobItemRow.attempts + 1)
                .returning(JobItemRow.id, JobItemRow.case_id)
                .execution_options(synchronize_session=False)
            ).all()
        return sorted((int(i), str(c)) for i, c in rows)

    def _finish_if_complete(self, job_id: str) -> bool:
        with self._sessions.begin() as s:
            open_items = s.scalar(
                select(func.count())
                .select_from(JobItemRow)
                .where(JobItemRow.job_id == job_id, JobItemRow.state.in_(["pending", "running"]))
            )
            if open_items:
                return False
            s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == "running")
                .values(status="done", finished_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            return True

    @staticmethod
    def _draft_all(
        complaints: list[Any], pool: ThreadPoolExecutor, pipeline: TriagePipeline
    ) -> list[Draft | BaseException]:
        # Retrieval and routing batched for the chunk; LLM drafts concurrently on the pool.
        try:
            return list(pipeline.triage_many(complaints, pool=pool))
        except Exception:
            log.exception("drafting the chunk failed; drafting one by one to find the failing items")

        def one(c: Any) -> Draft | BaseException:
            try:
                return pipeline.triage(c)
            except Exception as exc:
                return exc

        return list(pool.map(one, complaints))

    def _process(self, run: _Run, claimed: Sequence[tuple[int, str]]) -> None:
        job_id, worker = run.job_id, run.worker
        case_ids = [c for _, c in claimed]
        with self._sessions() as s:
            rows = {r.id: r for r in s.scalars(select(CaseRow).where(CaseRow.id.in_(case_ids)))}
        with self.guard():
            drafted = self._draft_all([queries.complaint_of(rows[c]) for c in case_ids], run.pool, run.pipeline)
        drafts = dict(zip(case_ids, drafted, strict=True))
        actor = f"job:{job_id}"
        with self._sessions.begin() as s:
            job = self._job(s, job_id)
            owned = {
                i.id: i
                for i in s.scalars(
                    select(JobItemRow)
                    .where(
                        JobItemRow.id.in_([i for i, _ in claimed]),
                        JobItemRow.state == "running",
                        JobItemRow.worker == worker,
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
                    item.reason = "job cancelled" if item.state == "skipped" else None
                    item.finished_at = now if item.state != "pending" else None
                    continue
                reason = self._skip_reason(case.status, job.include_decided)
                if reason is not None:  # decided while the job ran
                    item.state, item.reason, item.finished_at = "skipped", reason, now
                    continue
                item.old_department, item.old_problem = case.department, case.typical_problem_id
                add_draft(s, case, result, actor=actor, action="retriage", keep_decision=True)
                item.new_department = result.department
                item.new_problem = result.typical_problem.id if result.typical_problem else None
                item.draft_no = case.draft_no
                item.drafted_by = result.drafted_by
                item.prompt_tokens, item.completion_tokens = result.tokens.prompt, result.tokens.completion
                item.cost = self._cost(result.tokens.prompt, result.tokens.completion)
                item.state, item.error, item.finished_at = "done", None, now


def _after_failure(attempts: int, job_status: str) -> str:
    """Where an item goes when drafting or committing it failed."""
    if attempts >= MAX_ATTEMPTS:
        return "failed"
    return "pending" if job_status == "running" else "skipped"


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
