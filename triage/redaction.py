"""PII masking and neutralising of instruction-like text, applied before text leaves the process.

Only redacted text is sent to an LLM or embeddings endpoint and stored in the vector store; the
stored complaint keeps the original.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"

# Order matters: longer digit patterns are masked before shorter ones can eat them.
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("[邮箱]", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")),
    (
        "[身份证号]",
        re.compile(r"(?<![0-9])[1-9]\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[0-9Xx](?![0-9])"),
    ),
    ("[银行卡号]", re.compile(r"(?<![0-9])(?:\d{4}[ -]?){3}\d{4}(?:[ -]?\d{1,3})?(?![0-9])")),
    ("[手机号]", re.compile(r"(?<![0-9])(?:\+?86[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?![0-9])")),
    ("[电话]", re.compile(r"(?<![0-9])(?:\(?0\d{2,3}\)?[ -]?)\d{7,8}(?![0-9])")),
    # A bare 8-digit local number only when a phone word stands right before it.
    ("[电话]", re.compile(r"(?<=电话|座机|致电|拨打|号码|联系)(?:[:：是为]?\s*)[2-9]\d{7}(?![0-9])")),
    ("[车牌号]", re.compile(rf"[{_PROVINCES}][A-Za-z][·•. ]?[A-Za-z0-9]{{5,6}}(?![A-Za-z0-9])")),
]

_INSTRUCTION = re.compile(
    r"(忽略|无视|忘记|不要理会|请无视)(以上|上面|之前|前面|先前|所有)?的?(所有)?(指令|指示|提示|规则|设定|要求)"
    r"|ignore\s+(all\s+)?(the\s+)?(previous|above|prior)\s+(instructions|prompts?)"
    r"|system\s*prompt|系统提示|你现在是|作为(一个)?(AI|人工智能|语言模型)"
    r"|(分派|派给|派发|转给|转交|分配|交给|指派)(给)?[^，。,.；;！!\n]{0,12}(部门|局|委|中心|办)[^。.!！\n]*?(处理|办理)?"
    r"(并)?(回复|答复)?",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"[^。！？!?\n;；]*[。！？!?\n;；]?")

INSTRUCTION_PLACEHOLDER = "[已移除疑似指令内容]"


@dataclass(frozen=True)
class Redacted:
    text: str
    pii_found: tuple[str, ...]  # placeholder kinds masked, e.g. ("[手机号]",)
    instructions_removed: int


def mask_pii(text: str) -> tuple[str, tuple[str, ...]]:
    """Replace phone numbers, ID and bank card numbers, e-mails and licence plates with placeholders."""
    found: list[str] = []
    for placeholder, pattern in _PATTERNS:
        text, n = pattern.subn(placeholder, text)
        if n:
            found.append(placeholder)
    return text, tuple(dict.fromkeys(found))


def remove_instructions(text: str) -> tuple[str, int]:
    """Drop sentences that try to instruct the system (prompt injection); complaint text is data."""
    removed = 0
    kept: list[str] = []
    for sentence in _SENTENCE.findall(text):
        if sentence and _is_instruction(sentence):
            removed += 1
            kept.append(INSTRUCTION_PLACEHOLDER)
        else:
            kept.append(sentence)
    return "".join(kept), removed


def _is_instruction(sentence: str) -> bool:
    match = _INSTRUCTION.search(sentence)
    if match is None:
        return False
    # "转给X部门处理" in an ordinary account ("窗口让我转给社保中心") is not an injection unless it
    # is phrased as an order to the system; orders start the sentence or follow an ignore-phrase.
    head = match.group(0)
    if head.startswith(("分派", "派给", "派发", "转给", "转交", "分配", "交给", "指派")):
        before = sentence[: match.start()]
        return before.strip(" ，,：:") in {
            "",
            "请",
            "请将",
            "请把",
            "把本工单",
            "请把本工单",
            "请直接",
            "直接",
        } or ("工单" in sentence or "本投诉" in sentence)
    return True


def redact(text: str) -> Redacted:
    """PII masked and instruction-like sentences replaced: what may leave the process."""
    masked, found = mask_pii(text)
    cleaned, removed = remove_instructions(masked)
    return Redacted(text=cleaned, pii_found=found, instructions_removed=removed)


def find_pii(text: str) -> list[tuple[str, str]]:
    """(placeholder kind, matched text) for every piece of personal data in a text."""
    found = []
    for placeholder, pattern in _PATTERNS:
        for match in pattern.finditer(text):
            found.append((placeholder, match.group(0)))
            text = text.replace(match.group(0), placeholder)
    return found


def contains_pii(text: str) -> bool:
    return any(pattern.search(text) for _, pattern in _PATTERNS)
