"""The case after the draft: first contact, return, reply sent, follow-up; supervision flags, extension
requests and appeals with their decisions."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentUser, StepsDep, SupervisionDep
from api.schemas import Contact, FollowUp, Return, SendReply
from triage.cases.models import CaseDetail
from triage.supervision.models import AppealRequest, ExtensionRequest, RequestDecision, Supervise

router = APIRouter(tags=["handling"])


@router.post("/cases/{case_id}/contact")
def contact(case_id: str, body: Contact, steps: StepsDep, user: CurrentUser) -> CaseDetail:
    """Record the first contact with the citizen (首次联系); the next deadline becomes the reply's."""
    return steps.contact(case_id, user=user, version=body.version, at=body.at)


@router.post("/cases/{case_id}/return")
def return_case(case_id: str, body: Return, steps: StepsDep, user: CurrentUser) -> CaseDetail:
    """Hand the case back (退单) with the jurisdiction reason; a supervisor reassigns it."""
    return steps.return_case(case_id, user=user, version=body.version, reason=body.reason)


@router.post("/cases/{case_id}/send-reply")
def send_reply(case_id: str, body: SendReply, steps: StepsDep, user: CurrentUser) -> CaseDetail:
    """Record that the approved reply went out: through which channel, and when."""
    return steps.send_reply(case_id, user=user, version=body.version, channel=body.channel, at=body.at)


@router.post("/cases/{case_id}/follow-up")
def follow_up(case_id: str, body: FollowUp, steps: StepsDep, user: CurrentUser) -> CaseDetail:
    """The citizen's satisfaction (回访): 满意 or 基本满意 closes the case, 不满意 reopens it."""
    return steps.follow_up(
        case_id, user=user, version=body.version, satisfaction=body.satisfaction, note=body.note, at=body.at
    )


@router.post("/cases/{case_id}/supervise")
def supervise(case_id: str, body: Supervise, supervision: SupervisionDep, user: CurrentUser) -> CaseDetail:
    """Flag the case for supervision (督办) with a note and a new reply deadline (supervisors)."""
    return supervision.supervise(case_id, body, user=user)


@router.post("/cases/{case_id}/extension")
def request_extension(
    case_id: str, body: ExtensionRequest, supervision: SupervisionDep, user: CurrentUser
) -> CaseDetail:
    """Ask for more time for the reply (延期), before the deadline, with a reason."""
    return supervision.request_extension(case_id, body, user=user)


@router.post("/cases/{case_id}/appeal")
def appeal(case_id: str, body: AppealRequest, supervision: SupervisionDep, user: CurrentUser) -> CaseDetail:
    """Appeal the review as mistaken or malicious (申诉复核)."""
    return supervision.appeal(case_id, body, user=user)


@router.post("/cases/{case_id}/requests/{request_id}/decide")
def decide_request(
    case_id: str, request_id: int, body: RequestDecision, supervision: SupervisionDep, user: CurrentUser
) -> CaseDetail:
    """Grant or refuse an extension or an appeal (supervisors)."""
    return supervision.decide(case_id, request_id, body, user=user)
