"""The offline drafter: a draft built from the matched typical problem and the nearest past cases.

The default when no LLM is configured and the fallback on any LLM failure. It cannot fail on a
valid complaint: every value it needs has a default.
"""

from __future__ import annotations

import re

import prompts
from triage.drafting.base import DraftContext, DraftResult
from triage.models import Channel

_CHANNEL_WORDS = {
    Channel.HAOCHAPING: "“好差评”渠道",
    Channel.HOTLINE_12345: "12345市民服务热线",
    Channel.XIAOHONGSHU: "小红书",
    Channel.DOUYIN: "抖音",
    Channel.BANBUCHENGSHI: "“办不成事”反映窗口",
    Channel.OTHER: "政务服务渠道",
}
DEFAULT_CONTACT = "12345市民服务热线"


def _contact(ctx: DraftContext, department: str) -> str:
    dep = ctx.kb.by_name.get(department)
    if dep is not None and dep.contact:
        # The first channel listed is the department's own; keep replies short.
        return dep.contact.split("；")[0].split(";")[0]
    return DEFAULT_CONTACT


_INSTRUCTING = re.compile(r"^(?:告知|提示|引导|建议)(?P<who>[^，。：:可]{0,8}?)(?P<can>可以|可|：|:|，)")


_SUBJECT = re.compile(
    r"^(?P<verb>告知|提示|引导|建议)(?:市民|群众|企业|居民|申请人|家长|家属|职工|参保人|业主|老人|车主|购房人|纳税人|当事人|用户|消费者|创业者|乘客|司机)"
)
_ACTION_STARTS = set("在先到向通携登按及尽联查持")


def _guidance(text: str) -> str:
    """Reply guidance is written to caseworkers ("告知市民可…"); address the citizen instead ("您可…")."""
    text = text.strip()
    if not text:
        return ""
    match = _INSTRUCTING.match(text)
    subject = _SUBJECT.match(text)
    if match:
        rest = text[match.end() :].lstrip("：:，, ")
        text = "您可" + rest if match.group("can") in {"可", "可以"} else rest
    elif subject:
        rest = text[subject.end() :]
        verb = "建议您" if subject.group("verb") == "建议" else ("请您" if rest[:1] in _ACTION_STARTS else "")
        text = verb + rest
    return text if text.endswith(("。", "！", "？")) else text + "。"


def _sentence(text: str) -> str:
    """A text ending with sentence punctuation, so the template's next sentence follows cleanly."""
    text = text.strip()
    return text if text.endswith(("。", "！", "？", ".", "!", "?")) else text + "。"


class OfflineDrafter:
    """Template drafts grounded in the knowledge base; no network, deterministic."""

    def __init__(self) -> None:
        self.prompt = prompts.load("offline_reply")

    def prompt_tokens(self, ctx: DraftContext) -> int:
        return 0  # no model is called

    def draft(self, ctx: DraftContext) -> DraftResult:
        department = ctx.top_departments[0].department
        dep = ctx.kb.by_name.get(department)
        dep_name = dep.display_name if dep else department
        values = {
            "channel": _CHANNEL_WORDS.get(ctx.complaint.channel, "政务服务渠道"),
            "issue": ctx.issue,
            "department": dep_name,
            "reply_days": str(ctx.reply_days),
            "contact": _contact(ctx, department),
        }
        match = ctx.matched_problem
        if match is not None:
            problem = match.problem
            if problem.unified_reply:  # 统一答复口径: one answer for the whole class of complaints
                reply = self.prompt.render("reply_unified", unified_reply=_sentence(problem.unified_reply), **values)
            else:
                reply = self.prompt.render("reply_matched", guidance=_guidance(problem.reply_guidance), **values)
            root = self.prompt.render(
                "root_cause_matched",
                problem_title=problem.title,
                root_cause=problem.root_cause or problem.description,
            )
            problem_id: str | None = problem.id
        else:
            reply = self.prompt.render("reply_unmatched", **values)
            similar = next((c for c in ctx.cases if c.case.department == department and c.case.root_cause), None)
            if similar is not None and similar.case.root_cause:
                root = self.prompt.render("root_cause_case", case_root_cause=similar.case.root_cause)
            else:
                root = self.prompt.render("root_cause_unmatched", department=dep_name, issue=ctx.issue)
            problem_id = None
        return DraftResult(
            department=department,
            typical_problem_id=problem_id,
            root_cause=root,
            reply=reply,
            drafted_by="offline",
            prompt_version=self.prompt.version,
        )
