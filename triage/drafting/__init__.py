"""Drafters: the LLM drafter (LangChain chat model) and the offline drafter; one Protocol for both."""

from triage.drafting.base import DraftContext, Drafter, DraftResult, ScoredCase, ScoredProblem
from triage.drafting.llm import LLMDrafter
from triage.drafting.offline import OfflineDrafter

__all__ = [
    "DraftContext",
    "DraftResult",
    "Drafter",
    "LLMDrafter",
    "OfflineDrafter",
    "ScoredCase",
    "ScoredProblem",
]
