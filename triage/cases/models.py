"""Shapes the review service exchanges with the API and the CLI."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from triage.cases.filters import CaseFilters
from triage.cases.states import CaseStatus
from triage.models import Complaint, Draft, no_nul


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
    complained_at: datetime | None
    due_at: datetime | None  # the next step's deadline: first contact, then the reply
    overdue: bool  # due_at has passed
    supervised: bool  # a supervisor flagged it (督办): shown at the top of the department's queue
    submitter_type: str
    bounces: int  # times it moved from one department to another


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


class CaseRequest(BaseModel):
    """An extension (延期) or appeal (申诉复核) a department asked for, and the supervisor's decision."""

    id: int
    kind: str  # extension | appeal
    status: str  # pending | granted | refused
    reason: str
    requested_by: str
    requested_at: datetime
    requested_until: datetime | None
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str | None


class Handling(BaseModel):
    """Deadlines, the steps taken towards the citizen, and supervision."""

    deadline_rule: str | None
    contact_due_at: datetime | None
    reply_due_at: datetime | None
    contacted_at: datetime | None
    approved_at: datetime | None
    reply_sent_at: datetime | None
    reply_sent_by: str | None
    reply_channel: str | None
    followed_up_at: datetime | None
    satisfaction: str | None
    follow_up_note: str | None
    returns: int
    supervised_at: datetime | None
    supervised_by: str | None
    supervision_note: str | None
    reminded_at: datetime | None
    notified_at: datetime | None
    appeal_upheld: bool
    requests: list[CaseRequest]


class CaseDetail(CaseSummary):
    """One case: the complaint, the current draft with its evidence, every draft version and decision."""

    complaint: Complaint
    draft: Draft | None
    drafts: list[DraftVersion]
    decisions: list[DecisionRecord]
    handling: Handling
    allowed_actions: list[str]  # for the caller: what the state allows and their role may do


class Edits(BaseModel):
    """Changes a caseworker makes to the draft when approving; fields left out keep the draft's value."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    department: str | None = Field(None, min_length=1)
    typical_problem_id: str | None = None  # null: no typical problem applies
    root_cause: str | None = Field(None, min_length=1, max_length=5000)
    reply: str | None = Field(None, min_length=1, max_length=10000)

    @field_validator("*")
    @classmethod
    def _storable(cls, value: object) -> object:
        return no_nul(value) if isinstance(value, str) else value


Sort = Literal[
    "received_at", "-received_at", "updated_at", "-updated_at", "confidence", "-confidence", "due_at", "-due_at"
]


class CaseQuery(CaseFilters):
    """The queue: the case filters, text search, a batch, overdue or supervised cases, a sort and a page."""

    text: str | None = Field(None, max_length=200)
    overdue: bool | None = None  # true: only cases past their next deadline; false: only those within it
    supervised: bool | None = None
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
