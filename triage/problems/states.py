"""The lifecycle of a typical problem and who may move it.

    candidate ──confirm──> confirmed ──plan──> rectifying ──report──> rectified ──verify──> verified
        │                                        ▲   │ (plan again)      │                    │
        └──merge──> archived                     │   └───────────────────┼──reopen──> reopened┘
                                                 └────────────plan─────────────────── reopened
    any state but archived ──archive──> archived

Supervisors confirm, verify, reopen, merge and archive; the owner department's caseworkers plan and
report the rectification; a revised plan (a new deadline or owner while rectifying) is a supervisor's:
the deadline is what the rectification is measured against (admins may do everything). Every transition
names the version it was decided on; a stale one is refused.
"""

from __future__ import annotations

from enum import StrEnum

from triage.cases.states import Role
from triage.models import ProblemStatus


class ProblemAction(StrEnum):
    CONFIRM = "confirm"
    PLAN = "plan"
    REPORT = "report"
    VERIFY = "verify"
    REOPEN = "reopen"
    ARCHIVE = "archive"
    MERGE = "merge"
    EDIT = "edit"  # the unified reply, title or description; the state stays


_EVERY_STATE_ARCHIVES = {ProblemAction.ARCHIVE: ProblemStatus.ARCHIVED}

TRANSITIONS: dict[ProblemStatus, dict[ProblemAction, ProblemStatus]] = {
    ProblemStatus.CANDIDATE: {
        ProblemAction.CONFIRM: ProblemStatus.CONFIRMED,
        ProblemAction.MERGE: ProblemStatus.ARCHIVED,
        ProblemAction.EDIT: ProblemStatus.CANDIDATE,
        **_EVERY_STATE_ARCHIVES,
    },
    ProblemStatus.CONFIRMED: {
        ProblemAction.PLAN: ProblemStatus.RECTIFYING,
        ProblemAction.EDIT: ProblemStatus.CONFIRMED,
        **_EVERY_STATE_ARCHIVES,
    },
    ProblemStatus.RECTIFYING: {
        ProblemAction.PLAN: ProblemStatus.RECTIFYING,  # a revised plan
        ProblemAction.REPORT: ProblemStatus.RECTIFIED,
        ProblemAction.EDIT: ProblemStatus.RECTIFYING,
        **_EVERY_STATE_ARCHIVES,
    },
    ProblemStatus.RECTIFIED: {
        ProblemAction.VERIFY: ProblemStatus.VERIFIED,
        ProblemAction.REOPEN: ProblemStatus.REOPENED,
        ProblemAction.EDIT: ProblemStatus.RECTIFIED,
        **_EVERY_STATE_ARCHIVES,
    },
    ProblemStatus.VERIFIED: {
        ProblemAction.REOPEN: ProblemStatus.REOPENED,
        ProblemAction.EDIT: ProblemStatus.VERIFIED,
        **_EVERY_STATE_ARCHIVES,
    },
    ProblemStatus.REOPENED: {
        ProblemAction.PLAN: ProblemStatus.RECTIFYING,
        ProblemAction.EDIT: ProblemStatus.REOPENED,
        **_EVERY_STATE_ARCHIVES,
    },
    ProblemStatus.ARCHIVED: {},
}

SUPERVISING = frozenset({Role.SUPERVISOR, Role.ADMIN})
OWNING = frozenset({Role.CASEWORKER, Role.ADMIN})  # caseworkers only of the owner department

ACTION_ROLES: dict[ProblemAction, frozenset[Role]] = {
    ProblemAction.CONFIRM: SUPERVISING,
    ProblemAction.VERIFY: SUPERVISING,
    ProblemAction.REOPEN: SUPERVISING,
    ProblemAction.ARCHIVE: SUPERVISING,
    ProblemAction.MERGE: SUPERVISING,
    ProblemAction.PLAN: OWNING,
    ProblemAction.REPORT: OWNING,
    ProblemAction.EDIT: SUPERVISING | OWNING,
}

# Problems whose rectification is being tracked: they have (or need) a plan and a deadline.
TRACKED = frozenset({ProblemStatus.RECTIFYING, ProblemStatus.REOPENED})
# Problems a complaint can be matched to.
MATCHABLE = frozenset(set(ProblemStatus) - {ProblemStatus.ARCHIVED})
DONE = frozenset({ProblemStatus.RECTIFIED, ProblemStatus.VERIFIED})


def roles_for(status: ProblemStatus | str, action: ProblemAction) -> frozenset[Role]:
    """Who may take `action` on a problem in `status`."""
    if action is ProblemAction.PLAN and ProblemStatus(status) is ProblemStatus.RECTIFYING:
        return SUPERVISING  # a revised plan
    return ACTION_ROLES[action]


def allowed_actions(status: ProblemStatus | str, role: Role | None = None) -> list[str]:
    possible = TRANSITIONS[ProblemStatus(status)]
    return [a.value for a in ProblemAction if a in possible and (role is None or role in roles_for(status, a))]
