"""Shapes the review service exchanges with the API and the CLI."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from triage.cases.filters import CaseFilters
from triage.cases.states import CaseStatus
from triage.models import Complaint, Draft


class CaseSummary(BaseModel):
    """A row of the queue."""

    id: str
    external_id: str | None
    status: CaseStatus
    department: str | None
    typical_problem_id: str | None
    channel: str
    title: str | None
    excerpt: str
    confidence: float | None
    draft_no: int
    draft_error: str | None
    version: int
    batch_id: str | None
    submitted_by: str
    received_at: datetime
    updated_at: datetime
    decided_at: datetime | None


class DraftVersion(BaseModel):
    number: int
    created_at: datetime
    created_by: str
    draft: Draft


class DecisionRecord(BaseModel):
    action: str
    actor: str
    at: datetime
    draft_no: int
    edited_fields: list[str]
    department: str | None
    typical_problem_id: str | None
    root_cause: str | None
    reply: str | None
    reason: str | None


class AuditEvent(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    changes: dict[str, Any]  # field -> [before, after]


class CaseDetail(CaseSummary):
    """One case: the complaint, the current draft with its evidence, every draft version and decision."""

    complaint: Complaint
    draft: Draft | None
    drafts: list[DraftVersion]
    decisions: list[DecisionRecord]
    allowed_actions: list[str]  # for the caller: what the state allows and their role may do


class Edits(BaseModel):
    """Changes a caseworker makes to the draft when approving; fields left out keep the draft's value."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    department: str | None = Field(None, min_length=1)
    typical_problem_id: str | None = None  # null: no typical problem applies
    root_cause: str | None = Field(None, min_length=1, max_length=5000)
    reply: str | None = Field(None, min_length=1, max_length=10000)


Sort = Literal["received_at", "-received_at", "updated_at", "-updated_at", "confidence", "-confidence"]


class CaseQuery(CaseFilters):
    """The queue: the case filters, text search, a batch, a sort and a page."""

    text: str | None = Field(None, max_length=200)
    batch_id: str | None = None
    sort: Sort = "-received_at"
    page: int = Field(1, ge=1)
    page_size: int = Field(50, ge=1, le=200)


class CasePage(BaseModel):
    items: list[CaseSummary]
    total: int
    page: int
    page_size: int


class IngestReceipt(BaseModel):
    """What a batch ingest accepted: new cases are drafted in the background."""

    batch_id: str
    total: int
    created: int
    existing: int  # external ids already known: those cases are returned, not duplicated
    case_ids: list[str]


class BatchStatus(BaseModel):
    id: str
    submitted_by: str
    created_at: datetime
    total: int
    by_status: dict[str, int]
    pending: int  # still waiting for a draft
    failed: int  # could not be drafted; the case says why
    done: bool


class QueueStats(BaseModel):
    """Numbers for supervisors, over the cases the caller may see."""

    total: int
    by_status: dict[str, int]
    by_department: dict[str, dict[str, int]]
    approved: int
    approved_unedited: int
    approved_unedited_share: float | None  # None until something is approved
    decided: int
    median_time_to_decision_s: float | None  # received -> first approve / reject
