"""Domain models: the only shapes that cross module boundaries."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_TEXT_CHARS = 20_000


def no_nul(value: str) -> str:
    """Text a database can store: PostgreSQL refuses NUL characters in text."""
    if "\x00" in value:
        raise ValueError("contains a NUL character (\\x00)")
    return value


class Channel(StrEnum):
    """Where a complaint came in."""

    HAOCHAPING = "好差评"
    HOTLINE_12345 = "12345"
    XIAOHONGSHU = "小红书"
    DOUYIN = "抖音"
    BANBUCHENGSHI = "办不成事"
    OTHER = "other"


CHANNEL_VALUES = [c.value for c in Channel]


class Department(BaseModel):
    """A department that owns complaints; `name` is the canonical short name used everywhere."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1)
    full_name: str | None = None
    scope: str = ""
    aliases: list[str] = Field(default_factory=list)
    contact: str | None = None

    @property
    def display_name(self) -> str:
        return self.full_name or self.name


class ProblemStatus(StrEnum):
    """Where a typical problem is in its rectification (see triage.problems.states)."""

    CANDIDATE = "candidate"  # proposed (by hot-issue discovery or a person), not yet confirmed
    CONFIRMED = "confirmed"  # a known typical problem, no rectification plan yet
    RECTIFYING = "rectifying"  # a plan (measures, owner department, deadline) is being carried out
    RECTIFIED = "rectified"  # the owner department reported what was done
    VERIFIED = "verified"  # a supervisor checked the effect
    REOPENED = "reopened"  # complaints continue: it needs a new plan
    ARCHIVED = "archived"  # no longer tracked (or merged into another problem)


# Statuses of earlier knowledge-base files, read as their lifecycle equivalents.
LEGACY_PROBLEM_STATUS = {"open": ProblemStatus.CONFIRMED, "monitoring": ProblemStatus.VERIFIED}


class TypicalProblem(BaseModel):
    """A known typical problem (典型问题) with its root cause, rectification and reply guidance."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1)
    title: str = Field(min_length=1)
    description: str = ""
    department: str
    service_items: list[str] = Field(default_factory=list)
    root_cause: str = ""
    rectification: str = ""
    reply_guidance: str = ""
    unified_reply: str | None = None  # 统一答复口径: the reply every draft of this problem starts from
    status: ProblemStatus = ProblemStatus.CONFIRMED

    @field_validator("status", mode="before")
    @classmethod
    def _legacy_status(cls, value: object) -> object:
        return LEGACY_PROBLEM_STATUS.get(value, value) if isinstance(value, str) else value

    def search_text(self) -> str:
        """The text that represents this problem in retrieval."""
        items = "、".join(self.service_items)
        return f"{self.title}。{self.description} 事项：{items}"


class RequestType(StrEnum):
    """What the citizen asks for (the 12345 hotline's ticket types)."""

    COMPLAINT = "投诉"
    ENQUIRY = "咨询"
    REQUEST = "求助"
    SUGGESTION = "建议"
    REPORT = "举报"


class SubmitterType(StrEnum):
    INDIVIDUAL = "individual"
    ENTERPRISE = "enterprise"


class Complaint(BaseModel):
    """An incoming complaint or bad review. Only `text` is required."""

    model_config = ConfigDict(str_strip_whitespace=True)

    text: str
    title: str | None = None
    channel: Channel = Channel.OTHER
    service_item: str | None = None
    rating: int | None = Field(None, ge=1, le=5)
    region: str | None = Field(None, max_length=100)  # the lengths are the case table's columns
    created_at: datetime | None = None
    contact: str | None = Field(None, max_length=200)
    external_id: str | None = Field(None, max_length=200)
    request_type: RequestType | None = None  # 12345 distinguishes enquiries from complaints and requests
    urgent: bool = False  # a matter answered in hours (utilities cut off, danger to people or property)
    submitter_type: SubmitterType = SubmitterType.INDIVIDUAL
    enterprise_name: str | None = Field(None, max_length=200)
    likes: int | None = Field(None, ge=0)  # 点赞 on channels that show them
    dislikes: int | None = Field(None, ge=0)  # 反对

    @field_validator("created_at")
    @classmethod
    def _plausible_time(cls, value: datetime | None) -> datetime | None:
        if value is not None and not 1970 <= value.year <= 2100:
            raise ValueError(f"year {value.year} is not a plausible complaint time (1970-2100)")
        return value

    @field_validator("text")
    @classmethod
    def _text_present_and_bounded(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty or whitespace only")
        if len(value) > MAX_TEXT_CHARS:
            raise ValueError(f"is {len(value)} characters long; the limit is {MAX_TEXT_CHARS}")
        return value

    @field_validator("channel", mode="before")
    @classmethod
    def _known_channel(cls, value: object) -> object:
        if value is None:
            return Channel.OTHER
        if isinstance(value, str) and value.strip() not in CHANNEL_VALUES:
            raise ValueError(f"unknown channel '{value}'; expected one of: {', '.join(CHANNEL_VALUES)}")
        return value.strip() if isinstance(value, str) else value

    @field_validator(
        "title", "service_item", "region", "contact", "external_id", "enterprise_name", "request_type", mode="before"
    )
    @classmethod
    def _blank_to_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("text", "title", "service_item", "region", "contact", "external_id", "enterprise_name")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        return no_nul(value) if value is not None else None


class PastCase(BaseModel):
    """A resolved case from history (imported or approved by a caseworker)."""

    id: str
    text: str
    department: str
    title: str | None = None
    typical_problem_id: str | None = None
    root_cause: str | None = None
    reply: str | None = None
    channel: str | None = None
    created_at: str | None = None
    source: Literal["imported", "approved"] = "imported"


class DepartmentScore(BaseModel):
    department: str
    score: float = Field(ge=0, le=1)


class ProblemMatch(BaseModel):
    id: str
    title: str
    department: str
    similarity: float = Field(ge=0, le=1)


class Evidence(BaseModel):
    """One retrieved item a draft rests on."""

    kind: Literal["typical_problem", "past_case"]
    id: str
    similarity: float = Field(ge=0, le=1)
    department: str
    title: str | None = None


class TokenUsage(BaseModel):
    prompt: int = 0
    completion: int = 0
    complaint: int = 0
    estimated: bool = False  # True when tiktoken encodings were unavailable

    @property
    def total(self) -> int:
        return self.prompt + self.completion


class Draft(BaseModel):
    """What a caseworker reviews: routing, matched typical problem, root cause, reply, evidence."""

    department: str
    top_departments: list[DepartmentScore]
    typical_problem: ProblemMatch | None
    possible_new_problem: bool
    no_match_reason: str | None = None
    root_cause: str
    reply: str
    confidence: float = Field(ge=0, le=1)
    evidence: list[Evidence]
    drafted_by: str  # "offline" or "llm:<model>"
    prompt_version: str
    fallback_reason: str | None = None
    tokens: TokenUsage
    truncated: bool = False
    warnings: list[str] = Field(default_factory=list)
