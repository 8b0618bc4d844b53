"""Request bodies. Responses are the service's own models (triage.cases.models)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from triage.cases.models import Edits
from triage.cases.steps import Satisfaction
from triage.models import Complaint, no_nul


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _storable(cls, value: object) -> object:
        return no_nul(value) if isinstance(value, str) else value


class BatchIngest(_Body):
    complaints: list[Complaint] = Field(min_length=1)


class Versioned(_Body):
    version: int = Field(ge=1, description="The case version you read; a stale one gets 409.")


class Approve(Versioned):
    edits: Edits | None = None


class Reject(Versioned):
    reason: str = Field(min_length=1, max_length=2000)


class Reassign(Versioned):
    department: str = Field(min_length=1)
    reason: str | None = Field(None, max_length=2000)


class Close(Versioned):
    note: str | None = Field(None, max_length=2000)


class Contact(Versioned):
    at: datetime | None = None  # when the citizen was reached; default now


class Return(Versioned):
    reason: str = Field(min_length=1, max_length=2000, description="Whose matter it is, and why (退单理由).")


class SendReply(Versioned):
    channel: str = Field(min_length=1, max_length=50, description="How it went out: 短信, 电话, 平台, 书面 ...")
    at: datetime | None = None


class FollowUp(Versioned):
    satisfaction: Satisfaction
    note: str | None = Field(None, max_length=2000)
    at: datetime | None = None


class UserUpdate(_Body):
    active: bool
