"""The LLM drafter: a LangChain ChatOpenAI model with structured output into `LLMDraftOutput`.

Works with any OpenAI-compatible endpoint (OpenAI, DeepSeek, Qwen, vLLM, Ollama) through a base URL.
Transport failures (timeouts, 429 and 5xx after the client's retries) raise DraftingError at once;
an answer that is not valid JSON, misses a field or names an unknown department / problem id is
retried once with a repair message, then raises DraftingError. The pipeline turns every
DraftingError into an offline draft with the reason recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.utils.json import parse_json_markdown
from pydantic import BaseModel, Field, SecretStr, ValidationError

import prompts
from triage.drafting.base import DraftContext, DraftResult
from triage.errors import DraftingError
from triage.models import TokenUsage
from triage.tokens import TokenCounter


class LLMDraftOutput(BaseModel):
    """The JSON object the model must return."""

    department: str = Field(description="候选部门之一的规范简称")
    typical_problem_id: str | None = Field(None, description="相关典型问题编号，或 null")
    root_cause: str = Field(min_length=2, description="根本原因概括")
    reply: str = Field(min_length=10, description="给群众的答复初稿")
    confidence: float | None = Field(None, ge=0, le=1)


def _none(value: str | None) -> str:
    return value if value else "（无）"


class LLMDrafter:
    """Drafts with a chat model; never returns a draft it has not validated against the taxonomy."""

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None,
        api_key: str | None,
        timeout_s: float,
        max_retries: int,
        temperature: float,
        method: Literal["json_mode", "json_schema", "function_calling"],
        tokens: TokenCounter,
    ) -> None:
        from langchain_openai import ChatOpenAI

        self.model_name = model
        self.prompt = prompts.load("triage_draft")
        self.tokens = tokens
        chat = ChatOpenAI(
            model=model,
            base_url=base_url,
            api_key=SecretStr(api_key or "not-needed"),
            timeout=timeout_s,
            max_retries=max_retries,
            temperature=temperature,
        )
        # json_mode (the default) asks for a JSON object and parses it here: LangChain's structured-output
        # chain would rebuild the output model's JSON schema for its tracing metadata on every call, a
        # sixth of a re-triage worker's CPU at high concurrency. The other methods need LangChain's
        # schema plumbing.
        self._json = chat.bind(response_format={"type": "json_object"}) if method == "json_mode" else None
        self._chain = chat.with_structured_output(LLMDraftOutput, method=method, include_raw=True)

    def _invoke(self, messages: list[BaseMessage]) -> dict[str, Any]:
        """{"raw": AIMessage, "parsed": LLMDraftOutput | dict | None, "parsing_error": exception | None}."""
        if self._json is None:
            result: dict[str, Any] = self._chain.invoke(messages)
            return result
        raw = self._json.invoke(messages)
        content = raw.content if isinstance(raw.content, str) else str(raw.content)
        try:  # LangChain's lenient JSON reading: fences, text around the object, raw newlines in strings
            data = parse_json_markdown(content)
            return {"raw": raw, "parsed": LLMDraftOutput.model_validate(data), "parsing_error": None}
        except (ValueError, ValidationError) as exc:  # json.JSONDecodeError is a ValueError
            return {"raw": raw, "parsed": None, "parsing_error": exc}

    def _prompt_counter(self, messages: list[BaseMessage]) -> Callable[[], int]:
        return lambda: sum(self.tokens.count(str(m.content)) for m in messages)

    def messages(self, ctx: DraftContext) -> list[BaseMessage]:
        """The prompt for one complaint: system rules, then knowledge and the fenced complaint."""
        candidates = "\n".join(f"- {s.department}（得分 {s.score:.2f}）" for s in ctx.top_departments)
        problems = "\n".join(
            f"- [{p.problem.id}] {p.problem.title}（{p.problem.department}，相似度 {p.similarity:.2f}）"
            f"\n  描述：{p.problem.description}\n  根因：{p.problem.root_cause}\n  答复要点：{p.problem.reply_guidance}"
            + (f"\n  统一答复口径：{p.problem.unified_reply}" if p.problem.unified_reply else "")
            for p in ctx.problems
        )
        cases = "\n".join(
            f"- 案例（{c.case.department}，相似度 {c.similarity:.2f}）：{c.case.text[:200]}"
            + (f"\n  根因：{c.case.root_cause}" if c.case.root_cause else "")
            + (f"\n  答复：{c.case.reply[:300]}" if c.case.reply else "")
            for c in ctx.cases[:3]
        )
        c = ctx.complaint
        complaint = f"标题：{c.title}\n{ctx.text}" if c.title else ctx.text
        system = self.prompt.render("system", reply_days=str(ctx.reply_days))
        user = self.prompt.render(
            "user",
            candidates=candidates,
            all_departments="、".join(ctx.kb.department_names),
            problems=_none(problems),
            cases=_none(cases),
            channel=c.channel.value,
            service_item=_none(c.service_item),
            region=_none(c.region),
            complaint=complaint.replace("</complaint>", "< /complaint>"),
        )
        return [SystemMessage(system), HumanMessage(user)]

    def prompt_tokens(self, ctx: DraftContext) -> int:
        return self._prompt_counter(self.messages(ctx))()

    def _validate(self, out: LLMDraftOutput, ctx: DraftContext) -> LLMDraftOutput:
        department = ctx.kb.resolve_department(out.department)
        if department is None:
            raise ValueError(f"unknown department '{out.department}'")
        problem_id = out.typical_problem_id or None
        if problem_id in {"null", "None", ""}:
            problem_id = None
        if problem_id is not None and problem_id not in ctx.kb.problems_by_id:
            raise ValueError(f"unknown typical_problem_id '{problem_id}'")
        return out.model_copy(update={"department": department, "typical_problem_id": problem_id})

    def draft(self, ctx: DraftContext) -> DraftResult:
        messages = self.messages(ctx)
        usage = TokenUsage(estimated=self.tokens.estimated)
        last_error = ""
        for attempt in range(2):
            try:
                result = self._invoke(messages)
            except Exception as exc:  # openai transport errors after the client's own retries
                raise DraftingError(f"llm request failed: {type(exc).__name__}: {_short(exc)}") from exc
            raw = result.get("raw")
            usage = _add_usage(usage, raw, self._prompt_counter(messages))
            error = result.get("parsing_error")
            parsed = result.get("parsed")
            try:
                if error is not None or parsed is None:
                    raise ValueError(f"invalid structured output: {_short(error) if error else 'empty answer'}")
                if isinstance(parsed, dict):
                    parsed = LLMDraftOutput.model_validate(parsed)
                out = self._validate(parsed, ctx)
            except (ValueError, ValidationError) as exc:
                last_error = _short(exc)
                if attempt == 0:
                    content = raw.content if isinstance(raw, AIMessage) else ""
                    messages = [
                        *messages,
                        AIMessage(content if isinstance(content, str) else str(content)),
                        HumanMessage(self.prompt.render("repair", error=last_error)),
                    ]
                continue
            return DraftResult(
                department=out.department,
                typical_problem_id=out.typical_problem_id,
                root_cause=out.root_cause.strip(),
                reply=out.reply.strip(),
                drafted_by=f"llm:{self.model_name}",
                prompt_version=self.prompt.version,
                tokens=usage,
                confidence=out.confidence,
            )
        raise DraftingError(f"llm answer invalid after retry: {last_error}")


def _add_usage(usage: TokenUsage, raw: object, count_prompt: Callable[[], int]) -> TokenUsage:
    """Add the endpoint's reported usage; count the prompt ourselves only when it reports none."""
    meta = getattr(raw, "usage_metadata", None) or {}
    prompt = int(meta.get("input_tokens") or count_prompt())
    completion = int(meta.get("output_tokens") or 0)
    return usage.model_copy(update={"prompt": usage.prompt + prompt, "completion": usage.completion + completion})


def _short(exc: object, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "…"
