"""Dependencies every route takes: the service built in the lifespan, and the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from triage.cases.models import User
from triage.cases.service import CaseService
from triage.cases.states import Role
from triage.errors import ForbiddenError

_bearer = HTTPBearer(auto_error=False, description="An API key from `triage users add` or POST /users.")


# Dependencies are `async def` where they do no I/O: FastAPI runs a plain `def` dependency in the
# thread pool, and each such hop cost more than the rest of the dependency work together.


async def get_service(request: Request) -> CaseService:
    service: CaseService = request.app.state.service
    return service


ServiceDep = Annotated[CaseService, Depends(get_service)]


async def current_user(
    service: ServiceDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> User:
    key = credentials.credentials if credentials else None
    cached = service.users.cached(key)  # a recent check of this key, from memory
    if cached is not None:
        return cached
    return await run_in_threadpool(service.users.authenticate, key)  # the database lookup


CurrentUser = Annotated[User, Depends(current_user)]


async def admin_user(user: CurrentUser) -> User:
    if user.role is not Role.ADMIN:
        raise ForbiddenError("only admins manage users, keys and the knowledge base")
    return user


AdminUser = Annotated[User, Depends(admin_user)]
