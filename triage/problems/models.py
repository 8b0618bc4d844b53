"""Shapes the typical-problem service exchanges with the API and the CLI."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from triage.models import ProblemStatus, no_nul


class ProblemSummary(BaseModel):
    """A row of the problem list."""

    id: str
    title: str
    department: str
    status: ProblemStatus
    source: str  # kb | person | hot_issue
    owner_department: str | None
    deadline: datetime | None  # the rectification deadline
    overdue: bool  # the deadline has passed and the rectification is not reported
    case_count: int  # cases whose typical problem it is (the draft's, or a person's choice), rejected ones aside
    open_case_count: int  # of those, still being handled
    overdue_case_count: int  # of those, past their next deadline
    version: int
    updated_at: datetime


class Count(BaseModel):
    key: str
    count: int


class ProblemEvent(BaseModel):
    at: datetime
    actor: str
    action: str
    note: str | None
    changes: dict[str, Any]


class Effect(BaseModel):
    """Complaints a month before the rectification was reported against the months after it."""

    rectified_at: datetime | None
    months_before: float  # months of complaints before (a first case in mid-month counts part of it)
    months_after: int
    cases_before: int
    cases_after: int
    rate_before: float | None  # cases a month
    rate_after: float | None
    change: float | None  # (after - before) / before
    p_value: float | None  # the chance of a split at least this uneven if the rate had not changed
    # fell | rose | no clear change | too few cases to tell | nothing before to compare | not rectified yet
    # | too early to tell
    verdict: str
    statement: str  # the verdict in a sentence, with the figures


class ProblemDetail(ProblemSummary):
    description: str
    service_items: list[str]
    root_cause: str
    rectification: str
    reply_guidance: str
    unified_reply: str | None
    plan_measures: str | None
    rectified_at: datetime | None
    rectified_summary: str | None
    verified_at: datetime | None
    merged_into: str | None
    confirmed_case_count: int  # cases a person approved with this problem
    dissatisfied_count: int  # follow-ups of its cases with 不满意 (each one, even if a later one satisfied)
    cases_by_month: list[Count]
    cases_by_week: list[Count]
    by_channel: list[Count]
    by_service_item: list[Count]
    by_region: list[Count]
    open_cases: list[str]  # case ids, oldest first (at most 200)
    overdue_cases: list[str]
    history: list[ProblemEvent]
    effect: Effect
    allowed_actions: list[str]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*")
    @classmethod
    def _storable(cls, value: object) -> object:
        return no_nul(value) if isinstance(value, str) else value


class NewProblem(_Body):
    """A candidate typical problem proposed by a person (hot-issue discovery proposes them too)."""

    id: str | None = Field(None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")
    title: str = Field(min_length=1, max_length=200)
    department: str = Field(min_length=1)
    description: str = Field("", max_length=5000)
    service_items: list[str] = Field(default_factory=list)
    note: str | None = Field(None, max_length=2000)


class Transition(_Body):
    version: int = Field(ge=1, description="The problem version you read; a stale one gets 409.")
    note: str | None = Field(None, max_length=2000)


class Plan(Transition):
    """A rectification plan: what will be done, by whom, by when."""

    measures: str = Field(min_length=1, max_length=5000)
    deadline: date | datetime  # a day: its end; a time without an offset: the deployment's time zone
    owner_department: str | None = None  # default: the problem's department


class Report(Transition):
    """What was done, and when (default: now)."""

    summary: str = Field(min_length=1, max_length=5000)
    rectified_at: datetime | None = None


class Merge(Transition):
    into: str = Field(min_length=1)


class ProblemEdit(Transition):
    """Fields left out keep their value; `unified_reply` null clears it."""

    title: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=5000)
    root_cause: str | None = Field(None, max_length=5000)
    reply_guidance: str | None = Field(None, max_length=5000)
    unified_reply: str | None = Field(None, max_length=10000)
    service_items: list[str] | None = None

    @model_validator(mode="after")
    def _only_the_unified_reply_may_be_cleared(self) -> ProblemEdit:
        for name in ("title", "description", "root_cause", "reply_guidance", "service_items"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null; give a value (only unified_reply may be cleared)")
        return self
