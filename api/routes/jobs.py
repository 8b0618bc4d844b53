"""Re-triage jobs through the API: start one, follow it, read its summary, cancel it."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import JobsDep, Operator, RuntimeDep
from triage.jobs.models import JobProgress, JobSummary, NewJob

router = APIRouter(tags=["jobs"])


@router.post("/jobs", status_code=status.HTTP_202_ACCEPTED)
def start_job(body: NewJob, runtime: RuntimeDep, user: Operator) -> JobProgress:
    """Re-triage the cases the filters select, in the background; decided cases only if included."""
    progress = runtime.services.jobs.create(body, actor=user.name)
    runtime.job_runner.start(progress.id)
    return progress


@router.get("/jobs")
def list_jobs(jobs: JobsDep, user: Operator) -> list[JobProgress]:
    """The 50 newest jobs with their progress."""
    return jobs.jobs()


@router.get("/jobs/{job_id}")
def job_summary(job_id: str, jobs: JobsDep, user: Operator) -> JobSummary:
    """Progress and summary: department changes, typical-problem changes, failures, tokens and cost."""
    return jobs.summary(job_id)


@router.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: str, jobs: JobsDep, user: Operator) -> JobProgress:
    """Stop the job: pending items are skipped, items being drafted finish."""
    return jobs.cancel(job_id)
