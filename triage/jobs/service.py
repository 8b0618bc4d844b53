"""Re-triage jobs: create, estimate, follow, summarise, cancel and work them.

Choosing the cases lives in `selection`, working a job (claims, leases, the per-chunk commit) in
`worker`; this module is what the API and the CLI call.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, timedelta, tzinfo

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from triage.cases.rows import utcnow
from triage.database import Database
from triage.jobs import selection
from triage.jobs.models import Estimate, ItemState, JobFilters, JobProgress, JobStatus, JobSummary, NewJob, Prices
from triage.jobs.ratelimit import RateLimitedDrafter, RateLimiter
from triage.jobs.rows import JobItemRow, JobRow, get_job
from triage.jobs.worker import Worker, lease_clock
from triage.pipeline import TriagePipeline

Progress = Callable[[JobProgress], None]


class JobService:
    """Jobs on one case database, drafted by one pipeline; thread-safe."""

    def __init__(
        self,
        db: Database,
        pipeline: TriagePipeline,
        *,
        lease_s: float = 60.0,
        prices: Prices | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        tz: tzinfo = UTC,
    ) -> None:
        self.db = db
        self.tz = tz  # job filter times without an offset are read in it
        self.pipeline = pipeline
        self.lease = timedelta(seconds=lease_s)
        self.prices = prices or Prices()
        self.limits = (rpm, tpm)  # defaults for work()

    # -- choosing cases --------------------------------------------------------------------
    def validate(self, filters: JobFilters) -> JobFilters:
        """The filters made canonical; unknown values are refused before any work, with the valid ones."""
        return selection.validate(filters, db=self.db, kb=self.pipeline.ws.kb, tz=self.tz)

    def estimate(self, new: NewJob) -> Estimate:
        """Count the items and estimate tokens and cost, calling no LLM."""
        new = new.model_copy(update={"filters": self.validate(new.filters)})
        return selection.estimate(new, db=self.db, pipeline=self.pipeline, prices=self.prices)

    def create(self, new: NewJob, *, actor: str) -> JobProgress:
        """Store the job and one item per matching case; decided cases are items skipped with a reason."""
        new = new.model_copy(update={"filters": self.validate(new.filters)})
        job_id = str(uuid.uuid4())
        with self.db.write() as s:
            found = selection.matching(s, new.filters)
            s.add(
                JobRow(
                    id=job_id,
                    status=JobStatus.RUNNING,
                    created_by=actor,
                    filters=new.filters.model_dump(mode="json"),
                    include_decided=new.include_decided,
                    total=len(found),
                )
            )
            s.flush()
            now = utcnow()
            s.add_all(
                JobItemRow(
                    job_id=job_id,
                    case_id=case_id,
                    state=ItemState.SKIPPED if reason else ItemState.PENDING,
                    reason=reason,
                    attempts=0,
                    finished_at=now if reason else None,
                )
                for case_id, status in found
                for reason in [selection.skip_reason(status, new.include_decided)]
            )
        return self.progress(job_id)

    # -- reading ---------------------------------------------------------------------------
    def progress(self, job_id: str) -> JobProgress:
        with self.db.read() as s:
            return _progress(s, get_job(s, job_id))

    def jobs(self, limit: int = 50) -> list[JobProgress]:
        with self.db.read() as s:
            rows = list(s.scalars(select(JobRow).order_by(JobRow.created_at.desc()).limit(limit)))
            return [_progress(s, j) for j in rows]

    def summary(self, job_id: str) -> JobSummary:
        with self.db.read() as s:
            progress = _progress(s, get_job(s, job_id))
            items = list(s.scalars(select(JobItemRow).where(JobItemRow.job_id == job_id)))
        matrix: dict[str, dict[str, int]] = {}
        problems: Counter[str] = Counter()
        done = [i for i in items if i.state == ItemState.DONE]
        for i in done:
            old, new = i.old_department or "(none)", i.new_department or "(none)"
            matrix.setdefault(old, {}).setdefault(new, 0)
            matrix[old][new] += 1
            if i.old_problem != i.new_problem:
                problems[f"{i.old_problem or '(none)'} -> {i.new_problem or '(none)'}"] += 1
        return JobSummary(
            **progress.model_dump(),
            department_changes=matrix,
            departments_changed=sum(1 for i in done if i.old_department != i.new_department),
            problems_changed=sum(problems.values()),
            problem_changes=dict(problems.most_common()),
            skipped_reasons=dict(Counter(i.reason or "" for i in items if i.state == ItemState.SKIPPED)),
            errors={i.case_id: i.error or "" for i in items if i.state == ItemState.FAILED},
            prompt_tokens=sum(i.prompt_tokens for i in items),
            completion_tokens=sum(i.completion_tokens for i in items),
            cost=round(sum(i.cost for i in items), 4),
        )

    def cancel(self, job_id: str) -> JobProgress:
        """Stop handing out items; pending ones are skipped, running ones finish."""
        with self.db.write() as s:
            job = get_job(s, job_id)
            if job.status == JobStatus.RUNNING:
                job.status = JobStatus.CANCELLED
                job.finished_at = utcnow()
                abandoned = and_(JobItemRow.state == ItemState.RUNNING, JobItemRow.lease_until < lease_clock(self.db))
                s.execute(
                    update(JobItemRow)
                    .where(JobItemRow.job_id == job_id, or_(JobItemRow.state == ItemState.PENDING, abandoned))
                    .values(state=ItemState.SKIPPED, reason="job cancelled", finished_at=utcnow())
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
        """Work the job until no item is left (or it is cancelled, or `stop` is set); resumable.

        With an LLM, `concurrency` drafts are in flight at once; more throughput comes from more
        worker processes on the same job (`triage retriage --resume JOB`), not more threads here.
        """
        self.progress(job_id)  # an unknown job is NotFoundError before any thread starts
        rpm, tpm = rpm or self.limits[0], tpm or self.limits[1]
        pipeline = self.pipeline
        if pipeline.llm is not None and (rpm or tpm):  # a pipeline of its own: the limits are this job's
            limited = RateLimitedDrafter(pipeline.llm, RateLimiter(rpm, tpm))
            pipeline = TriagePipeline(pipeline.ws, llm=limited, tokens=pipeline.tokens)
        # An LLM chunk waits on the endpoint: at least one item per call in flight keeps it busy.
        size = max(chunk, concurrency) if pipeline.llm is not None else chunk
        runner = Worker(
            self.db,
            job_id,
            name=worker or f"worker-{uuid.uuid4().hex[:8]}",
            pipeline=pipeline,
            lease=self.lease,
            prices=self.prices,
        )
        report = (lambda: progress(self.progress(job_id))) if progress is not None else None
        runner.run(concurrency=concurrency, size=size, on_chunk=report, stop=stop)
        return self.summary(job_id)


def _progress(s: Session, job: JobRow) -> JobProgress:
    counts = dict(
        s.execute(
            select(JobItemRow.state, func.count()).where(JobItemRow.job_id == job.id).group_by(JobItemRow.state)
        ).all()
    )
    return JobProgress(
        id=job.id,
        status=JobStatus(job.status),
        created_by=job.created_by,
        created_at=job.created_at,
        finished_at=job.finished_at,
        filters=JobFilters.model_validate(job.filters),
        include_decided=job.include_decided,
        total=job.total,
        **{state.value: int(counts.get(state.value, 0)) for state in ItemState},
    )
