"""Turning a table of resolved cases into past cases: validation, department resolution, identity."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from triage.errors import InputError
from triage.knowledge import KnowledgeBase
from triage.models import MAX_TEXT_CHARS, Department, PastCase
from triage.store import content_hash
from triage.tabular import Format, Row, cell, parse_mapping, read_table, resolve_columns

HISTORY_FIELDS: dict[str, tuple[str, ...]] = {
    "id": ("external_id",),
    "text": (),
    "department": ("gold_department",),
    "title": (),
    "typical_problem_id": ("gold_typical_problem_id",),
    "root_cause": (),
    "reply": ("reply_reference",),
    "channel": (),
    "created_at": (),
}
REQUIRED = ("text", "department")


@dataclass
class HistoryBatch:
    cases: list[PastCase]
    errors: list[InputError]
    new_departments: list[str] = field(default_factory=list)
    rows: int = 0


def read_history(
    path: Path,
    kb: KnowledgeBase,
    *,
    fmt: Format = "auto",
    mapping: Sequence[str] = (),
    add_departments: bool = False,
) -> HistoryBatch:
    """Validated past cases from a file; bad rows become line-numbered errors, not exceptions."""
    table = read_table(path, fmt)
    columns = resolve_columns(table, HISTORY_FIELDS, REQUIRED, parse_mapping(mapping, list(HISTORY_FIELDS)))
    return cases_from_rows(
        table.rows,
        columns,
        kb,
        add_departments=add_departments,
        errors=list(table.problems),
        n_rows=len(table.rows) + len(table.problems),
    )


def cases_from_rows(
    rows: Sequence[Row],
    columns: Mapping[str, str],
    kb: KnowledgeBase,
    *,
    add_departments: bool,
    errors: list[InputError],
    n_rows: int,
) -> HistoryBatch:
    cases: list[PastCase] = []
    new: dict[str, None] = {}
    for row in rows:
        text = cell(row, columns, "text")
        raw_department = cell(row, columns, "department")
        if text is None:
            errors.append(InputError("is empty", field="text", line=row.line))
            continue
        if len(text) > MAX_TEXT_CHARS:
            errors.append(InputError(f"is longer than {MAX_TEXT_CHARS} characters", field="text", line=row.line))
            continue
        if raw_department is None:
            errors.append(InputError("is empty", field="department", line=row.line))
            continue
        department = kb.resolve_department(raw_department)
        if department is None:
            if not add_departments:
                errors.append(
                    InputError(
                        f"unknown department '{raw_department}' (use --add-departments to add it)",
                        field="department",
                        line=row.line,
                    )
                )
                continue
            department = raw_department
            new[department] = None
        problem_id = cell(row, columns, "typical_problem_id")
        if problem_id is not None and problem_id not in kb.problems_by_id:
            problem_id = None  # another taxonomy's problem ids are kept out of ours
        case_id = cell(row, columns, "id") or f"h{content_hash(text)}"
        cases.append(
            PastCase(
                id=case_id,
                text=text,
                department=department,
                title=cell(row, columns, "title"),
                typical_problem_id=problem_id,
                root_cause=cell(row, columns, "root_cause"),
                reply=cell(row, columns, "reply"),
                channel=cell(row, columns, "channel"),
                created_at=cell(row, columns, "created_at"),
            )
        )
    return HistoryBatch(cases=cases, errors=errors, new_departments=list(new), rows=n_rows)


def with_departments(kb: KnowledgeBase, names: Sequence[str]) -> KnowledgeBase:
    """The knowledge base plus departments known only by name (from --add-departments)."""
    extra = [Department(name=n) for n in names if n not in kb.by_name]
    return KnowledgeBase(departments=[*kb.departments, *extra], problems=list(kb.problems), version=kb.version)
