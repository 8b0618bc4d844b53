"""Who may do what, on which cases: the one place the API, the CLI, cases and jobs ask.

    role         sees                         may
    caseworker   its departments' cases       approve, reject, close, reassign, re-triage them
    supervisor   every case                   ingest, reassign, re-triage, run re-triage jobs
    admin        every case                   everything, plus users, keys and the knowledge base
    intake       the cases it submitted       ingest (a feeding system: 12345, the 好差评 platform)

A case outside what a caller sees is "not found", never "forbidden": its existence is not told.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, true

from triage.access.models import User
from triage.cases.rows import CaseRow
from triage.cases.states import INGEST_ROLES, Action, CaseStatus, Role, roles_for
from triage.errors import ForbiddenError

SYSTEM_ACTOR = "triage"  # the actor of automatic drafts in the audit trail
CLI_ACTOR = "cli"  # the creator of jobs started from the command line
RESERVED_NAMES = frozenset({SYSTEM_ACTOR, CLI_ACTOR, "system"})  # no person may act under these names
JOB_ROLES = frozenset({Role.SUPERVISOR, Role.ADMIN})


def job_actor(job_id: str) -> str:
    """The audit actor of a re-triage job's drafts ("job:<id>"; no user name can contain ':')."""
    return f"job:{job_id}"


def case_scope(user: User) -> dict[str, Any]:
    """The visibility rule as the bound values of the queue's cached statements (see `visible`)."""
    if user.role is Role.CASEWORKER:
        return {"scope_departments": list(user.departments)}
    if user.role is Role.INTAKE:
        return {"scope_submitter": user.name}
    return {}


def visible(user: User) -> ColumnElement[bool]:
    """The visibility rule as a SQL condition on cases."""
    if user.role is Role.CASEWORKER:
        return CaseRow.department.in_(user.departments)
    if user.role is Role.INTAKE:
        return CaseRow.submitted_by == user.name
    return true()


def sees_everything(user: User) -> bool:
    return not case_scope(user)


def require_action(user: User, action: Action, status: CaseStatus | str) -> None:
    if user.role not in roles_for(status, action):
        where = " returned cases (a supervisor places them)" if status == CaseStatus.RETURNED else " cases"
        raise ForbiddenError(f"role {user.role.value} may not {action.value}{where}")


def require_ingest(user: User) -> None:
    if user.role not in INGEST_ROLES:
        raise ForbiddenError(f"role {user.role.value} may not ingest complaints")


def require_decides_for(user: User, department: str) -> None:
    """A caseworker decides only for their own departments."""
    if user.role is Role.CASEWORKER and department not in user.departments:
        raise ForbiddenError(
            f"you may approve only for {', '.join(user.departments)}; reassign the case to {department} instead"
        )


def require_jobs(user: User) -> None:
    if user.role not in JOB_ROLES:
        raise ForbiddenError("only supervisors and admins run re-triage jobs")


def require_admin(user: User) -> None:
    if user.role is not Role.ADMIN:
        raise ForbiddenError("only admins manage users, keys and the knowledge base")
