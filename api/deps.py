"""Dependencies the routes take, as `Annotated` aliases: the services built in the lifespan, the caller.

Dependencies are `async def` where they do no I/O: FastAPI runs a plain `def` dependency in the
thread pool, and each such hop costs more than the rest of the dependency work together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from triage.access import policy
from triage.access.models import User
from triage.access.users import UserDirectory
from triage.cases.decisions import Decisions
from triage.cases.drafting import BackgroundDrafter
from triage.cases.intake import Intake
from triage.cases.service import CaseService
from triage.cases.steps import Steps
from triage.jobs.service import JobService
from triage.jobs.worker import JobRunner
from triage.problems.service import ProblemService
from triage.services import Services
from triage.supervision.service import SupervisionService
from triage.workspace import Workspace

_bearer = HTTPBearer(auto_error=False, description="An API key from `triage users add` or POST /users.")


@dataclass(frozen=True)
class Runtime:
    """What the API process runs beside the services: the background drafter and the job runner."""

    services: Services
    drafter: BackgroundDrafter
    job_runner: JobRunner


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_services(runtime: RuntimeDep) -> Services:
    return runtime.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_workspace(services: ServicesDep) -> Workspace:
    return services.workspace


async def get_cases(services: ServicesDep) -> CaseService:
    return services.cases


async def get_intake(services: ServicesDep) -> Intake:
    return services.intake


async def get_decisions(services: ServicesDep) -> Decisions:
    return services.decisions


async def get_jobs(services: ServicesDep) -> JobService:
    return services.jobs


async def get_users(services: ServicesDep) -> UserDirectory:
    return services.users


async def get_steps(services: ServicesDep) -> Steps:
    return services.steps


async def get_problems(services: ServicesDep) -> ProblemService:
    return services.problems


async def get_supervision(services: ServicesDep) -> SupervisionService:
    return services.supervision


WorkspaceDep = Annotated[Workspace, Depends(get_workspace)]
CasesDep = Annotated[CaseService, Depends(get_cases)]
IntakeDep = Annotated[Intake, Depends(get_intake)]
DecisionsDep = Annotated[Decisions, Depends(get_decisions)]
JobsDep = Annotated[JobService, Depends(get_jobs)]
UsersDep = Annotated[UserDirectory, Depends(get_users)]
StepsDep = Annotated[Steps, Depends(get_steps)]
ProblemsDep = Annotated[ProblemService, Depends(get_problems)]
SupervisionDep = Annotated[SupervisionService, Depends(get_supervision)]


async def current_user(
    users: UsersDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> User:
    key = credentials.credentials if credentials else None
    cached = users.cached(key)  # a recent check of this key, from memory
    if cached is not None:
        return cached
    return await run_in_threadpool(users.authenticate, key)  # the database lookup


CurrentUser = Annotated[User, Depends(current_user)]


async def admin_user(user: CurrentUser) -> User:
    policy.require_admin(user)
    return user


AdminUser = Annotated[User, Depends(admin_user)]


async def operator(user: CurrentUser) -> User:
    policy.require_jobs(user)
    return user


Operator = Annotated[User, Depends(operator)]
