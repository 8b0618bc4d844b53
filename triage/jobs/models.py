"""What a re-triage job is asked to cover, and what it reports."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from triage.cases.states import CaseStatus


class JobFilters(BaseModel):
    """Which cases to re-triage; filters combine with AND, values within one filter with OR."""

    model_config = ConfigDict(extra="forbid")

    status: list[CaseStatus] = Field(default_factory=list)
    department: list[str] = Field(default_factory=list)
    channel: list[str] = Field(default_factory=list)
    typical_problem_id: list[str] = Field(default_factory=list)
    received_from: datetime | None = None
    received_to: datetime | None = None
    ids: list[str] = Field(default_factory=list)
    undecided: bool = False  # every case still new, drafted or reassigned

    def is_empty(self) -> bool:
        return not (
            self.status
            or self.department
            or self.channel
            or self.typical_problem_id
            or self.received_from
            or self.received_to
            or self.ids
            or self.undecided
        )


class NewJob(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filters: JobFilters
    include_decided: bool = False  # approved, rejected and closed cases get a new draft beside the decision


class JobProgress(BaseModel):
    id: str
    status: str  # running | done | cancelled
    created_by: str
    created_at: datetime
    finished_at: datetime | None
    filters: JobFilters
    include_decided: bool
    total: int
    pending: int
    running: int
    done: int
    failed: int
    skipped: int


class JobSummary(JobProgress):
    """Progress plus what changed: departments old -> new, typical problems, tokens and cost."""

    department_changes: dict[str, dict[str, int]]  # old -> new -> count, for done items
    departments_changed: int
    problems_changed: int
    problem_changes: dict[str, int]  # "old -> new" -> count, most frequent first
    skipped_reasons: dict[str, int]
    errors: dict[str, str]  # case id -> error, for failed items
    prompt_tokens: int
    completion_tokens: int
    cost: float


class Estimate(BaseModel):
    """A dry run: what a job with these filters would do, with no LLM called."""

    cases: int
    to_retriage: int
    skipped_decided: int
    complaint_tokens: int
    estimated_prompt_tokens: int
    estimated_completion_tokens: int
    estimated_cost: float
    drafter: str
    tokens_estimated: bool  # True when tiktoken encodings were unavailable and counts are estimates
