"""What a re-triage job is asked to cover, and what it reports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from triage.cases.filters import CaseFilters


class JobStatus(StrEnum):
    """Where a job is; stored as its value in `jobs.status`."""

    RUNNING = "running"  # items are handed out to workers
    DONE = "done"  # no item is pending or running
    CANCELLED = "cancelled"  # no item is handed out any more; the running ones finish


class ItemState(StrEnum):
    """Where one case of a job is; stored as its value in `job_items.state`."""

    PENDING = "pending"  # waiting for a worker
    RUNNING = "running"  # claimed by a worker, under a lease
    DONE = "done"  # drafted and committed
    FAILED = "failed"  # failed MAX_ATTEMPTS times
    SKIPPED = "skipped"  # decided (and decided cases not included), or the job was cancelled


OPEN_STATES = (ItemState.PENDING, ItemState.RUNNING)


@dataclass(frozen=True)
class Prices:
    """LLM prices per 1,000 tokens, for costs and estimates."""

    input_per_1k: float = 0.0
    output_per_1k: float = 0.0

    def cost(self, prompt: int, completion: int) -> float:
        return prompt / 1000 * self.input_per_1k + completion / 1000 * self.output_per_1k


class JobFilters(CaseFilters):
    """Which cases to re-triage: the queue's case filters, a list of ids, or every undecided case."""

    model_config = ConfigDict(extra="forbid")

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
    status: JobStatus
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
