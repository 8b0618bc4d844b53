"""The case state machine and who may do what.

    new ──retriage──> drafted ──approve──> approved ──send_reply──> reply_sent ──follow_up──> closed
     │                 │  ▲  ──reject───> rejected ──close──> closed               │ (满意 / 基本满意)
     │                 │  └──retriage── (rejected, reassigned, drafted)            └──follow_up──> reopened
     ├──reassign──> reassigned ──approve / reject / reassign / retriage──> ...          (不满意)
     └──return──> returned ──reassign──> reassigned                  reopened ──approve──> approved ...

`new` means stored without a draft yet (queued for background drafting, or drafting failed; the
case says why). `returned`: the department handed it back (退单) with the jurisdiction reason; a
supervisor reassigns it. `reopened`: the citizen was not satisfied with the reply; the department
handles it again. `contact` (first contact with the citizen) is a step that keeps the state. Every
action bumps the case's version, so a decision made on a stale read is refused.
"""

from __future__ import annotations

from enum import StrEnum


class CaseStatus(StrEnum):
    NEW = "new"
    DRAFTED = "drafted"
    APPROVED = "approved"
    REJECTED = "rejected"
    REASSIGNED = "reassigned"
    RETURNED = "returned"
    REPLY_SENT = "reply_sent"
    REOPENED = "reopened"
    CLOSED = "closed"


UNDECIDED = frozenset({CaseStatus.NEW, CaseStatus.DRAFTED, CaseStatus.REASSIGNED})  # no person has decided yet
# Cases whose handling goes on: they have a next step and (usually) a deadline for it.
OPEN = frozenset(
    {
        CaseStatus.NEW,
        CaseStatus.DRAFTED,
        CaseStatus.REASSIGNED,
        CaseStatus.RETURNED,
        CaseStatus.REOPENED,
        CaseStatus.APPROVED,
        CaseStatus.REPLY_SENT,
    }
)


class Action(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    REASSIGN = "reassign"
    RETRIAGE = "retriage"
    CLOSE = "close"
    CONTACT = "contact"
    RETURN = "return"
    SEND_REPLY = "send_reply"
    FOLLOW_UP = "follow_up"


class Role(StrEnum):
    CASEWORKER = "caseworker"  # decides cases of their own departments
    SUPERVISOR = "supervisor"  # reads everything, reassigns, ingests, supervises
    ADMIN = "admin"  # everything, plus users, keys and the knowledge base
    INTAKE = "intake"  # a feeding system (12345 hotline, 好差评 platform): ingests and reads what it sent


_HANDLING = {
    Action.APPROVE: CaseStatus.APPROVED,
    Action.REJECT: CaseStatus.REJECTED,
    Action.REASSIGN: CaseStatus.REASSIGNED,
    Action.RETRIAGE: CaseStatus.DRAFTED,
    Action.RETURN: CaseStatus.RETURNED,
}

TRANSITIONS: dict[CaseStatus, dict[Action, CaseStatus]] = {
    CaseStatus.NEW: {
        Action.RETRIAGE: CaseStatus.DRAFTED,
        Action.REASSIGN: CaseStatus.REASSIGNED,
        Action.RETURN: CaseStatus.RETURNED,
        Action.CONTACT: CaseStatus.NEW,
    },
    CaseStatus.DRAFTED: {**_HANDLING, Action.CONTACT: CaseStatus.DRAFTED},
    CaseStatus.REASSIGNED: {**_HANDLING, Action.CONTACT: CaseStatus.REASSIGNED},
    CaseStatus.REOPENED: {**_HANDLING, Action.RETRIAGE: CaseStatus.REOPENED, Action.CONTACT: CaseStatus.REOPENED},
    CaseStatus.RETURNED: {
        Action.REASSIGN: CaseStatus.REASSIGNED,
        Action.RETRIAGE: CaseStatus.RETURNED,
        Action.CLOSE: CaseStatus.CLOSED,
    },
    CaseStatus.REJECTED: {
        Action.RETRIAGE: CaseStatus.DRAFTED,
        Action.REASSIGN: CaseStatus.REASSIGNED,
        Action.CLOSE: CaseStatus.CLOSED,
    },
    CaseStatus.APPROVED: {
        Action.SEND_REPLY: CaseStatus.REPLY_SENT,
        Action.CONTACT: CaseStatus.APPROVED,
        Action.CLOSE: CaseStatus.CLOSED,
    },
    # follow_up closes the case, or reopens it when the citizen was not satisfied (see followup.py)
    CaseStatus.REPLY_SENT: {Action.FOLLOW_UP: CaseStatus.CLOSED, Action.CLOSE: CaseStatus.CLOSED},
    CaseStatus.CLOSED: {},
}

_DEPARTMENT = frozenset({Role.CASEWORKER, Role.ADMIN})
# Which roles may take each action (caseworkers only on their departments' cases).
ACTION_ROLES: dict[Action, frozenset[Role]] = {
    Action.APPROVE: _DEPARTMENT,
    Action.REJECT: _DEPARTMENT,
    Action.CLOSE: _DEPARTMENT,
    Action.CONTACT: _DEPARTMENT,
    Action.RETURN: _DEPARTMENT,
    Action.SEND_REPLY: _DEPARTMENT,
    Action.FOLLOW_UP: frozenset({Role.CASEWORKER, Role.SUPERVISOR, Role.ADMIN}),  # 回访, often by the hotline
    Action.REASSIGN: frozenset({Role.CASEWORKER, Role.SUPERVISOR, Role.ADMIN}),
    Action.RETRIAGE: frozenset({Role.CASEWORKER, Role.SUPERVISOR, Role.ADMIN}),
}
INGEST_ROLES = frozenset({Role.INTAKE, Role.SUPERVISOR, Role.ADMIN})
# A returned case is the supervisors' to place: its department handed it back.
SUPERVISING = frozenset({Role.SUPERVISOR, Role.ADMIN})


def roles_for(status: CaseStatus | str, action: Action) -> frozenset[Role]:
    """Who may take `action` on a case in `status`."""
    return SUPERVISING if CaseStatus(status) is CaseStatus.RETURNED else ACTION_ROLES[action]


def allowed_actions(status: CaseStatus | str, role: Role | None = None) -> list[str]:
    """Actions the state allows (and, given a role, that the role may take), in a stable order."""
    possible = TRANSITIONS[CaseStatus(status)]
    return [a.value for a in Action if a in possible and (role is None or role in roles_for(status, a))]
