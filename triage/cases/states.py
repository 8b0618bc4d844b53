"""The case state machine and who may do what.

    new ──retriage──> drafted ──approve──> approved ──close──> closed
     │                 │  ▲  ──reject───> rejected ──close──> closed
     │                 │  └──retriage── (rejected, reassigned, drafted)
     └──reassign──> reassigned ──approve / reject / reassign / retriage──> ...

`new` means stored without a draft yet (queued for background drafting, or drafting failed; the
case says why). Every action bumps the case's version, so a decision made on a stale read is refused.
"""

from __future__ import annotations

from enum import StrEnum


class CaseStatus(StrEnum):
    NEW = "new"
    DRAFTED = "drafted"
    APPROVED = "approved"
    REJECTED = "rejected"
    REASSIGNED = "reassigned"
    CLOSED = "closed"


UNDECIDED = frozenset({CaseStatus.NEW, CaseStatus.DRAFTED, CaseStatus.REASSIGNED})  # no person has decided yet


class Action(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    REASSIGN = "reassign"
    RETRIAGE = "retriage"
    CLOSE = "close"


class Role(StrEnum):
    CASEWORKER = "caseworker"  # decides cases of their own departments
    SUPERVISOR = "supervisor"  # reads everything, reassigns, ingests
    ADMIN = "admin"  # everything, plus users, keys and the knowledge base
    INTAKE = "intake"  # a feeding system (12345 hotline, 好差评 platform): ingests and reads what it sent


TRANSITIONS: dict[CaseStatus, dict[Action, CaseStatus]] = {
    CaseStatus.NEW: {Action.RETRIAGE: CaseStatus.DRAFTED, Action.REASSIGN: CaseStatus.REASSIGNED},
    CaseStatus.DRAFTED: {
        Action.APPROVE: CaseStatus.APPROVED,
        Action.REJECT: CaseStatus.REJECTED,
        Action.REASSIGN: CaseStatus.REASSIGNED,
        Action.RETRIAGE: CaseStatus.DRAFTED,
    },
    CaseStatus.REASSIGNED: {
        Action.APPROVE: CaseStatus.APPROVED,
        Action.REJECT: CaseStatus.REJECTED,
        Action.REASSIGN: CaseStatus.REASSIGNED,
        Action.RETRIAGE: CaseStatus.DRAFTED,
    },
    CaseStatus.REJECTED: {
        Action.RETRIAGE: CaseStatus.DRAFTED,
        Action.REASSIGN: CaseStatus.REASSIGNED,
        Action.CLOSE: CaseStatus.CLOSED,
    },
    CaseStatus.APPROVED: {Action.CLOSE: CaseStatus.CLOSED},
    CaseStatus.CLOSED: {},
}

# Which roles may take each action (caseworkers only on their departments' cases).
ACTION_ROLES: dict[Action, frozenset[Role]] = {
    Action.APPROVE: frozenset({Role.CASEWORKER, Role.ADMIN}),
    Action.REJECT: frozenset({Role.CASEWORKER, Role.ADMIN}),
    Action.CLOSE: frozenset({Role.CASEWORKER, Role.ADMIN}),
    Action.REASSIGN: frozenset({Role.CASEWORKER, Role.SUPERVISOR, Role.ADMIN}),
    Action.RETRIAGE: frozenset({Role.CASEWORKER, Role.SUPERVISOR, Role.ADMIN}),
}
INGEST_ROLES = frozenset({Role.INTAKE, Role.SUPERVISOR, Role.ADMIN})


def allowed_actions(status: CaseStatus | str, role: Role | None = None) -> list[str]:
    """Actions the state allows (and, given a role, that the role may take), in a stable order."""
    possible = TRANSITIONS[CaseStatus(status)]
    return [a.value for a in Action if a in possible and (role is None or role in ACTION_ROLES[a])]
