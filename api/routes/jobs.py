"""Re-triage jobs through the API: start one, follow it, read its summary, cancel it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status

from api.deps import CurrentUser
from triage.cases.models import User
from triage.cases.states import Role
from triage.errors import ForbiddenError
from triage.jobs.models import JobProgress, JobSummary, NewJob
from triage.jobs.service import JobService

router = APIRouter(tags=["jobs"])


async def operator(user: CurrentUser) -> User:
    if user.role not in (Role.SUPERVISOR, Role.ADMIN):
        raise ForbiddenError("only supervisors and admins run re-triage jobs")
    return user


Operator = Annotated[User, Depends(operator)]


async def _jobs(request: Request) -> JobService:
    jobs: JobService = request.app.state.jobs
    return jobs


Jobs = Annotated[JobService, Depends(_jobs)]


@router.post("/jobs", status_code=status.HTTP_202_ACCEPTED)
def start_job(body: NewJob, request: Request, jobs: Jobs, user: Operator) -> JobProgress:
    """Re-triage the cases the filters select, in the background; decided cases only if included."""
    progress = jobs.create(body, actor=user.name)
    request.app.state.job_runner.start(progress.id)
    return progress


@router.get("/jobs")
def list_jobs(jobs: Jobs, user: Operator) -> list[JobProgress]:
    """The 50 newest jobs with their progress."""
    return jobs.jobs()


@router.get("/jobs/{job_id}")
def job_summary(job_id: str, jobs: Jobs, user: Operator) -> JobSummary:
    """Progress and summary: department changes, typical-problem changes, failures, tokens and cost."""
    return jobs.summary(job_id)


@router.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: str, jobs: Jobs, user: Operator) -> JobProgress:
    """Stop the job: pending items are skipped, items being drafted finish."""
    return jobs.cancel(job_id)
