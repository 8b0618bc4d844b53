"""Labelled evaluation data from JSONL, CSV or XLSX, mapped to the fields an evaluation needs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from triage.errors import InputError
from triage.intake import complaint_from_mapping
from triage.knowledge import KnowledgeBase
from triage.models import CHANNEL_VALUES, Complaint
from triage.tabular import Format, cell, parse_mapping, read_table, resolve_columns

EVAL_FIELDS: dict[str, tuple[str, ...]] = {
    "id": ("external_id",),
    "text": (),
    "department": ("gold_department",),
    "typical_problem_id": ("gold_typical_problem_id",),
    "reply": ("reply_reference", "reference_reply"),
    "title": (),
    "channel": (),
    "service_item": (),
    "region": (),
}
REQUIRED = ("text", "department")


@dataclass(frozen=True)
class EvalItem:
    id: str
    line: int
    complaint: Complaint
    gold_department: str
    gold_problem: str | None
    has_gold_problem: bool
    reference_reply: str | None


@dataclass
class EvalData:
    items: list[EvalItem]
    invalid: list[dict[str, object]] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)
    problem_labelled: bool = False  # the dataset has a typical-problem column


def load_dataset(path: Path, kb: KnowledgeBase, *, fmt: Format = "auto", mapping: Sequence[str] = ()) -> EvalData:
    """Items with a text and a known gold department; the rest are listed in `invalid`, not fatal."""
    table = read_table(path, fmt)
    columns = resolve_columns(table, EVAL_FIELDS, REQUIRED, parse_mapping(mapping, list(EVAL_FIELDS)))
    data = EvalData(items=[], columns=columns, problem_labelled="typical_problem_id" in columns)
    for problem in table.problems:
        data.invalid.append({"line": problem.line, "reason": problem.detail})
    seen: set[str] = set()
    for row in table.rows:
        raw_gold = cell(row, columns, "department")
        item_id = cell(row, columns, "id") or f"line-{row.line}"
        gold = kb.resolve_department(raw_gold) if raw_gold else None
        if raw_gold is None:
            data.invalid.append({"line": row.line, "id": item_id, "reason": "empty gold department"})
            continue
        if gold is None:
            data.invalid.append({"line": row.line, "id": item_id, "reason": f"unknown gold department '{raw_gold}'"})
            continue
        fields = {f: cell(row, columns, f) for f in ("text", "title", "channel", "service_item", "region")}
        if fields["text"] is None:
            data.invalid.append({"line": row.line, "id": item_id, "reason": "empty text: must not be empty"})
            continue
        if fields["channel"] is not None and fields["channel"] not in CHANNEL_VALUES:
            fields["channel"] = "other"  # a dataset's own channel names are not an error here
        try:
            complaint = complaint_from_mapping({**fields, "external_id": item_id}, line=row.line)
        except InputError as exc:
            data.invalid.append({"line": row.line, "id": item_id, "reason": str(exc)})
            continue
        if item_id in seen:
            data.invalid.append({"line": row.line, "id": item_id, "reason": "duplicate id"})
            continue
        seen.add(item_id)
        data.items.append(
            EvalItem(
                id=item_id,
                line=row.line,
                complaint=complaint,
                gold_department=gold,
                gold_problem=cell(row, columns, "typical_problem_id"),
                has_gold_problem=data.problem_labelled,
                reference_reply=cell(row, columns, "reply"),
            )
        )
    return data
