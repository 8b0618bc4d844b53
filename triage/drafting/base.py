"""What a drafter is given and what it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from triage.knowledge import KnowledgeBase
from triage.models import Complaint, DepartmentScore, PastCase, TokenUsage, TypicalProblem


@dataclass(frozen=True)
class ScoredProblem:
    problem: TypicalProblem
    similarity: float


@dataclass(frozen=True)
class ScoredCase:
    case: PastCase
    similarity: float


@dataclass(frozen=True)
class DraftContext:
    """Everything retrieval and routing found; `text` is the redacted, budgeted complaint text."""

    complaint: Complaint
    text: str
    issue: str  # a one-line restatement of the complaint, redacted
    top_departments: list[DepartmentScore]
    problems: list[ScoredProblem]
    matched_problem: ScoredProblem | None  # the offline choice, among `problems`
    cases: list[ScoredCase]
    kb: KnowledgeBase
    reply_days: int


@dataclass
class DraftResult:
    department: str
    typical_problem_id: str | None
    root_cause: str
    reply: str
    drafted_by: str
    prompt_version: str
    tokens: TokenUsage = field(default_factory=TokenUsage)
    confidence: float | None = None


class Drafter(Protocol):
    """Drafts department, typical problem, root cause and reply; raises DraftingError on failure."""

    def prompt_tokens(self, ctx: DraftContext) -> int:
        """Tokens the prompt for `ctx` will take (0 for a drafter that calls no model); rate limits use it."""
        ...

    def draft(self, ctx: DraftContext) -> DraftResult: ...
