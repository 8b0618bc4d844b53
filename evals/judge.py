"""Optional LLM judge: five 1-5 ratings of a reply (relevance, logic, resolution, timeliness, attitude)."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field, SecretStr

import prompts
from triage.redaction import redact
from triage.settings import Settings

DIMENSIONS = ("relevance", "logic", "resolution", "timeliness", "attitude")


class JudgeScores(BaseModel):
    relevance: int = Field(ge=1, le=5)
    logic: int = Field(ge=1, le=5)
    resolution: int = Field(ge=1, le=5)
    timeliness: int = Field(ge=1, le=5)
    attitude: int = Field(ge=1, le=5)
    comment: str = ""


class ReplyJudge:
    """Scores replies with the configured chat model; a failed call yields None, never an exception."""

    def __init__(self, settings: Settings) -> None:
        from langchain_openai import ChatOpenAI

        self.prompt = prompts.load("reply_judge")
        chat = ChatOpenAI(
            model=settings.llm_model or "",
            base_url=settings.llm_base_url,
            api_key=SecretStr(settings.llm_api_key.get_secret_value() if settings.llm_api_key else "not-needed"),
            timeout=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
            temperature=0,
        )
        self._chain = chat.with_structured_output(JudgeScores, method=settings.llm_structured_method)

    def score(self, complaint: str, reply: str) -> dict[str, Any] | None:
        messages = [
            SystemMessage(self.prompt.render("system")),
            HumanMessage(self.prompt.render("user", complaint=redact(complaint).text, reply=redact(reply).text)),
        ]
        try:
            result = self._chain.invoke(messages)
        except Exception:  # the judge is advisory: a failure leaves the item unjudged
            return None
        scores = result if isinstance(result, JudgeScores) else JudgeScores.model_validate(result)
        out: dict[str, Any] = {d: round((getattr(scores, d) - 1) / 4, 3) for d in DIMENSIONS}
        out["comment"] = scores.comment
        return out
