"""Reading complaints from arguments and JSONL files, with errors that name the field and line."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from triage.errors import InputError
from triage.models import Complaint
from triage.tabular import read_table


def complaint_from_mapping(data: Mapping[str, Any], *, line: int | None = None) -> Complaint:
    """Validate one complaint; `id` is accepted for `external_id`."""
    if not isinstance(data, Mapping):
        raise InputError(f"expected a JSON object, got {type(data).__name__}", line=line)
    fields = dict(data)
    if "external_id" not in fields and "id" in fields:
        fields["external_id"] = None if fields["id"] is None else str(fields.pop("id"))
    if "text" not in fields:
        raise InputError("is required", field="text", line=line)
    try:
        return Complaint.model_validate(fields)
    except ValidationError as exc:
        raise from_validation_error(exc, line=line) from None


def from_validation_error(exc: ValidationError, *, line: int | None = None) -> InputError:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or None
    message = str(err["msg"]).removeprefix("Value error, ")
    return InputError(message, field=field, line=line)


def read_jsonl(path: Path) -> list[tuple[int, Complaint | InputError]]:
    """(line number, complaint or the error for that line) in line order; blank lines are skipped.

    Raises InputError at once when the file cannot be read at all.
    """
    table = read_table(path, "jsonl")
    entries: list[tuple[int, Complaint | InputError]] = [(p.line or 0, p) for p in table.problems]
    for row in table.rows:
        try:
            entries.append((row.line, complaint_from_mapping(row.values, line=row.line)))
        except InputError as exc:
            entries.append((row.line, exc))
    return sorted(entries, key=lambda entry: entry[0])
