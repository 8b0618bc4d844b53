"""Reading complaints from arguments and JSONL files, with errors that name the field and line."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from triage.errors import InputError
from triage.models import Complaint


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


def read_jsonl(path: Path) -> Iterator[tuple[int, Complaint | InputError]]:
    """Yield (line number, complaint or the error for that line); blank lines are skipped."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    for number, chunk in enumerate(raw.split(b"\n"), start=1):
        try:
            text = chunk.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            yield (
                number,
                InputError(
                    f"not valid UTF-8 (byte 0x{chunk[exc.start]:02x} at column {exc.start + 1}); "
                    "save the file as UTF-8",
                    line=number,
                ),
            )
            continue
        if not text:
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            yield number, InputError(f"malformed JSON: {exc.msg} at column {exc.colno}", line=number)
            continue
        try:
            yield number, complaint_from_mapping(data, line=number)
        except InputError as exc:
            yield number, exc
