"""A rule-based rubric for reply drafts: a score in 0..1 and the reasons behind it.

Each criterion is a yes/no check that a reviewer of government replies would make; the score is
the share passed. Calibrated against public annotations of real government replies
(`triage eval rubric`); the figures are in docs/evaluation.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from triage.redaction import find_pii

_POLITE = re.compile(r"^.{0,30}?(您好|你好|尊敬的|感谢|谢谢)|(感谢您|谢谢您|感谢你)")
_DEPARTMENT = re.compile(r"(局|委员会|委|中心|办公室|办|厅|街道|政府|所|站|处|部门|窗口|平台)")
_TIME_FRAME = re.compile(
    r"(\d+|[一二两三四五六七八九十]+)\s*个?\s*(工作日|日|天|周|小时|个月)内|(\d+|[一二两三四五六七八九十]+)\s*个?工作日"
    r"|(\d{1,2}月\d{1,2}日|年底|月底|本周|下周)(前|之前|内)"
)
_NEXT_STEP = re.compile(r"(将|会|已|正在|安排|督促|核实|处理|联系|回复|反馈|办理|整改|协调|请您|建议您|您可)")
_CONTACT = re.compile(r"(12345|123\d\d|热线|电话|联系|咨询|一网通办|随申办|窗口|网站|平台|信箱|App|APP|小程序)")
_PLACEHOLDER = re.compile(r"\[[^\]]{0,12}\]|【[^】]{0,12}】|\{[^}]{0,20}\}|XXX|xxx|某某|待填|TODO|＿＿|__")
_CJK_BIGRAM = re.compile(r"(?=([\u4e00-\u9fff]{2}))")
_STOP = set("您好感谢反映问题我们你们的了是在有和就都而及与或工作相关情况处理回复答复市民网友")

CRITERIA = (
    "polite",
    "restates_issue",
    "names_department",
    "next_step_with_time",
    "contact_channel",
    "no_pii",
    "no_placeholder",
    "sensible_length",
)
MIN_CHARS, MAX_CHARS = 60, 1500


@dataclass(frozen=True)
class ReplyScore:
    score: float
    passed: dict[str, bool]
    reasons: list[str]  # one per failed criterion


def _bigrams(text: str) -> set[str]:
    return {b for b in _CJK_BIGRAM.findall(text) if not (b[0] in _STOP and b[1] in _STOP)}


def restatement_overlap(reply: str, complaint: str) -> float:
    """Share of the complaint's content bigrams that the reply repeats."""
    wanted = _bigrams(complaint)
    return len(wanted & _bigrams(reply)) / len(wanted) if wanted else 0.0


def _echoes_pii(reply: str, complaint: str) -> bool:
    """Personal data of the complainant in the reply: anything repeated from the complaint, and any
    ID or bank-card number. An office's own phone number in a reply is a contact channel, not PII."""
    return any(kind in {"[身份证号]", "[银行卡号]"} or value in complaint for kind, value in find_pii(reply))


def score_reply(reply: str, complaint: str, departments: Iterable[str] = ()) -> ReplyScore:
    """Score one reply to one complaint; `departments` are names that count as naming the owner."""
    reply = reply.strip()
    names = [d for d in departments if d]
    checks = {
        "polite": (bool(_POLITE.search(reply)), "no polite address or thanks"),
        "restates_issue": (restatement_overlap(reply, complaint) >= 0.08, "does not restate the specific issue"),
        "names_department": (
            any(n in reply for n in names) or bool(_DEPARTMENT.search(reply)),
            "names no responsible department",
        ),
        "next_step_with_time": (
            bool(_TIME_FRAME.search(reply)) and bool(_NEXT_STEP.search(reply)),
            "no concrete next step with a time frame",
        ),
        "contact_channel": (bool(_CONTACT.search(reply)), "gives no contact channel"),
        "no_pii": (not _echoes_pii(reply, complaint), "echoes personal data"),
        "no_placeholder": (not _PLACEHOLDER.search(reply), "contains placeholder text"),
        "sensible_length": (
            MIN_CHARS <= len(reply) <= MAX_CHARS,
            f"length {len(reply)} outside {MIN_CHARS}-{MAX_CHARS}",
        ),
    }
    passed = {name: ok for name, (ok, _) in checks.items()}
    reasons = [reason for ok, reason in checks.values() if not ok]
    return ReplyScore(score=round(sum(passed.values()) / len(passed), 4), passed=passed, reasons=reasons)
