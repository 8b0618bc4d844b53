"""Shapes of supervision: requests on cases, the escalation sweep, and the figures supervisors follow."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from triage.models import no_nul


class RequestKind(StrEnum):
    EXTENSION = "extension"  # 延期: more time for the reply
    APPEAL = "appeal"  # 申诉复核: the review was mistaken or malicious


class RequestStatus(StrEnum):
    PENDING = "pending"
    GRANTED = "granted"
    REFUSED = "refused"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*")
    @classmethod
    def _storable(cls, value: object) -> object:
        return no_nul(value) if isinstance(value, str) else value


class _OnCase(_Body):
    version: int = Field(ge=1, description="The case version you read; a stale one gets 409.")


class Supervise(_OnCase):
    """A supervisor's flag (督办) with a note and a new deadline for the reply."""

    note: str = Field(min_length=1, max_length=2000)
    due: date | datetime  # a day: its end; a time without an offset: the deployment's time zone


class ExtensionRequest(_OnCase):
    reason: str = Field(min_length=1, max_length=2000)
    until: date | datetime | None = None  # unset: the deadline the case's rule gives complex cases


class AppealRequest(_OnCase):
    reason: str = Field(min_length=1, max_length=2000)


class RequestDecision(_OnCase):
    grant: bool
    note: str | None = Field(None, max_length=2000)


class Escalation(BaseModel):
    """What one sweep did."""

    as_of: datetime
    reminded: list[str]  # case ids reminded (催办) now
    notified: list[str]  # case ids noticed (通报) now


class DepartmentFigures(BaseModel):
    """One department's figures; rates are None when there is nothing to divide by."""

    cases: int
    open_cases: int
    overdue_cases: int
    supervised_cases: int
    reminded_cases: int
    notified_cases: int
    returns: int
    bounces: int
    replies_due: int  # cases whose reply was due by now, or that were answered
    replied: int
    replied_on_time: int
    response_rate: float | None  # replied / replies_due
    on_time_rate: float | None  # replied_on_time / replied
    followed_up: int  # follow-ups (a case followed up twice counts twice)
    satisfied: int  # follow-ups with 满意 or 基本满意
    satisfaction_rate: float | None
    reopened: int  # follow-ups with 不满意 (each reopened its case)
    bad_reviews: int  # 好差评 ratings of 1-2, appeals upheld aside
    appeals_upheld: int
    problems_due: int  # problems owned whose rectification deadline has passed
    problems_done_on_time: int
    overdue_problems: int
    rectification_completion_rate: float | None


class Supervision(DepartmentFigures):
    """The whole city (or what the caller may see), and each department; `ranking` orders the
    departments from the most overdue cases, then the lowest on-time rate."""

    as_of: datetime
    period_from: datetime | None
    period_to: datetime | None
    by_department: dict[str, DepartmentFigures]
    ranking: list[str]
