"""The caller, the taxonomy, and (admins only) users, keys and the knowledge base index."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, status

from api.deps import AdminUser, CurrentUser, ServicesDep, UsersDep, WorkspaceDep
from api.schemas import UserUpdate
from triage.access.models import IssuedKey, NewUser, User, UserKeys
from triage.errors import NotFoundError
from triage.models import Department, TypicalProblem

router = APIRouter()


@router.get("/me", tags=["access"])
async def me(user: CurrentUser) -> User:
    """Who the key belongs to: name, role and departments."""
    return user


@router.get("/departments", tags=["knowledge"])
def departments(workspace: WorkspaceDep, user: CurrentUser) -> list[Department]:
    """The departments cases can be routed to."""
    return list(workspace.kb.departments)


@router.get("/typical-problems", tags=["knowledge"])
def typical_problems(workspace: WorkspaceDep, user: CurrentUser, department: str | None = None) -> list[TypicalProblem]:
    """Known typical problems, optionally of one department."""
    kb = workspace.kb
    if department is not None:
        department = kb.check_department(department)
    return [p for p in kb.problems if department is None or p.department == department]


@router.post("/kb/reindex", tags=["knowledge"])
def reindex(services: ServicesDep, admin: AdminUser) -> dict[str, Any]:
    """Rebuild the vector index and retrain routing from the stored knowledge and history."""
    return asdict(services.reindex())


@router.get("/users", tags=["access"])
def list_users(users: UsersDep, admin: AdminUser) -> list[UserKeys]:
    """Every user with their keys (prefixes only)."""
    return [UserKeys(user=u, keys=keys) for u, keys in users.list()]


@router.post("/users", status_code=status.HTTP_201_CREATED, tags=["access"])
def add_user(body: NewUser, users: UsersDep, workspace: WorkspaceDep, admin: AdminUser) -> IssuedKey:
    """Create a user; the response holds their key, shown this once."""
    return users.add(body, valid_departments=workspace.kb.department_names)


@router.patch("/users/{name}", tags=["access"])
def update_user(name: str, body: UserUpdate, users: UsersDep, admin: AdminUser) -> User:
    """Deactivate (or reactivate) a user; their keys stop (or start) working at once."""
    return users.set_active(name, body.active)


@router.post("/users/{name}/keys", status_code=status.HTTP_201_CREATED, tags=["access"])
def issue_key(name: str, users: UsersDep, admin: AdminUser) -> IssuedKey:
    """Another key for the user (for rotation); shown this once."""
    return users.issue_key(name)


@router.delete("/users/{name}/keys/{prefix}", tags=["access"])
def revoke_key(name: str, prefix: str, users: UsersDep, admin: AdminUser) -> dict[str, int]:
    """Revoke one of the user's keys by its prefix."""
    revoked = users.revoke_keys(name, prefix)
    if not revoked:
        raise NotFoundError(f"user '{name}' has no active key '{prefix}'")
    return {"revoked": revoked}
