"""Request bodies. Responses are the service's own models (triage.cases.models)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from triage.cases.models import Edits
from triage.models import Complaint


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


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


class UserUpdate(_Body):
    active: bool
