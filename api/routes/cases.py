"""Ingest, the queue, one case, decisions, audit and supervisor numbers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from api.deps import CasesDep, CurrentUser, DecisionsDep, IntakeDep, RuntimeDep
from api.responses import json_response
from api.schemas import Approve, BatchIngest, Close, Reassign, Reject, Versioned
from triage.cases.models import AuditEvent, BatchStatus, CaseDetail, CasePage, CaseQuery, IngestReceipt, QueueStats
from triage.errors import InputError
from triage.models import Complaint

router = APIRouter(tags=["cases"])


@router.post(
    "/cases",
    status_code=status.HTTP_201_CREATED,
    response_model=CaseDetail,
    responses={200: {"model": CaseDetail, "description": "The external_id was seen before: that case"}},
)
def ingest(complaint: Complaint, intake: IntakeDep, user: CurrentUser) -> Response:
    """Store and draft one complaint; an external_id seen before returns that case (200)."""
    case, created = intake.ingest(complaint, user=user)
    response = json_response(case, status.HTTP_201_CREATED if created else status.HTTP_200_OK)
    response.headers["Location"] = f"/cases/{case.id}"
    return response


@router.post("/cases/batch", status_code=status.HTTP_202_ACCEPTED)
def ingest_batch(body: BatchIngest, runtime: RuntimeDep, user: CurrentUser) -> IngestReceipt:
    """Store a batch now and draft it in the background; follow progress at /batches/{id}."""
    limit = runtime.services.settings.api_max_batch
    if len(body.complaints) > limit:
        raise InputError(f"{len(body.complaints)} complaints in one batch; the limit is {limit}", field="complaints")
    receipt = runtime.services.intake.ingest_batch(body.complaints, user=user)
    runtime.drafter.wake()
    return receipt


@router.get("/batches/{batch_id}")
def batch(batch_id: str, cases: CasesDep, user: CurrentUser) -> BatchStatus:
    """Progress of a batch: cases by status, how many await a draft, how many failed."""
    return cases.batch(batch_id, user=user)


@router.get("/cases", response_model=CasePage)
def list_cases(query: Annotated[CaseQuery, Query()], cases: CasesDep, user: CurrentUser) -> Response:
    """The queue, filtered, sorted and paginated; only cases the caller may see."""
    return json_response(cases.queue(query, user=user))


@router.get("/cases/{case_id}", response_model=CaseDetail)
def get_case(case_id: str, cases: CasesDep, user: CurrentUser) -> Response:
    """The complaint, its current draft and evidence, every draft version and decision."""
    return json_response(cases.get(case_id, user=user))


@router.get("/cases/{case_id}/audit")
def audit(case_id: str, cases: CasesDep, user: CurrentUser) -> list[AuditEvent]:
    """Every action on the case, oldest first, with the before/after of what it changed."""
    return cases.audit(case_id, user=user)


@router.post("/cases/{case_id}/approve")
def approve(case_id: str, body: Approve, decisions: DecisionsDep, user: CurrentUser) -> CaseDetail:
    """Approve the draft as is, or with edits to department, typical problem, root cause or reply."""
    return decisions.approve(case_id, user=user, version=body.version, edits=body.edits)


@router.post("/cases/{case_id}/reject")
def reject(case_id: str, body: Reject, decisions: DecisionsDep, user: CurrentUser) -> CaseDetail:
    """Reject the draft with a reason."""
    return decisions.reject(case_id, user=user, version=body.version, reason=body.reason)


@router.post("/cases/{case_id}/reassign")
def reassign(case_id: str, body: Reassign, decisions: DecisionsDep, user: CurrentUser) -> CaseDetail:
    """Send the case to another department's queue."""
    return decisions.reassign(case_id, user=user, version=body.version, department=body.department, reason=body.reason)


@router.post("/cases/{case_id}/retriage")
def retriage(case_id: str, body: Versioned, decisions: DecisionsDep, user: CurrentUser) -> CaseDetail:
    """Draft again with the current knowledge and models; earlier drafts are kept."""
    return decisions.retriage(case_id, user=user, version=body.version)


@router.post("/cases/{case_id}/close")
def close(case_id: str, body: Close, decisions: DecisionsDep, user: CurrentUser) -> CaseDetail:
    """Close an approved or rejected case."""
    return decisions.close(case_id, user=user, version=body.version, note=body.note)


@router.get("/stats")
def stats(
    cases: CasesDep,
    user: CurrentUser,
    since: Annotated[datetime | None, Query(description="Cases received at or after.")] = None,
    until: Annotated[datetime | None, Query(description="Cases received before.")] = None,
) -> QueueStats:
    """Counts by status and department, share approved without edits, median time to decision."""
    return cases.stats(user=user, since=since, until=until)
