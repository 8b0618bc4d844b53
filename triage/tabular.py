"""Reading labelled rows from JSONL, CSV or XLSX, with column mapping and line-numbered errors.

Used by history import and evaluation. Columns are found by a field's own name (or its listed
alternatives) unless `--map field=column` says otherwise, so files in any language work.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from triage.errors import InputError

Format = Literal["auto", "jsonl", "csv", "xlsx"]


@dataclass(frozen=True)
class Row:
    line: int  # 1-based line (JSONL, CSV) or sheet row (XLSX)
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[Row]
    problems: list[InputError]  # lines that could not be read at all


def parse_mapping(items: Sequence[str], fields: Sequence[str]) -> dict[str, str]:
    """`field=column` pairs; an unknown field is an error listing the known ones."""
    mapping: dict[str, str] = {}
    for item in items:
        field, sep, column = item.partition("=")
        field, column = field.strip(), column.strip()
        if not sep or not field or not column:
            raise InputError(f"--map expects field=column, got '{item}'")
        if field not in fields:
            raise InputError(f"--map: unknown field '{field}'; fields are: {', '.join(fields)}")
        mapping[field] = column
    return mapping


def _detect(path: Path, fmt: Format) -> Format:
    if fmt != "auto":
        return fmt
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return "jsonl"
    if suffix in {".csv", ".tsv"}:
        return "csv"
    if suffix in {".xlsx", ".xlsm"}:
        return "xlsx"
    raise InputError(f"{path}: cannot tell the format from '{suffix}'; use --format jsonl|csv|xlsx")


def read_table(path: Path, fmt: Format = "auto") -> Table:
    fmt = _detect(path, fmt)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    if fmt == "xlsx":
        return _read_xlsx(path, raw)
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if fmt == "jsonl":
        return _read_jsonl(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        message = f"{path}: not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
        raise InputError(message, line=line) from None
    return _read_csv(text, delimiter="\t" if path.suffix == ".tsv" else ",")


def _read_jsonl(raw: bytes) -> Table:
    """Lines decode one by one, so a line in another encoding is reported, not the whole file."""
    rows, problems, columns = [], [], {}
    for number, chunk in enumerate(raw.split(b"\n"), start=1):
        try:
            line = chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            message = (
                f"not valid UTF-8 (byte 0x{chunk[exc.start]:02x} at column {exc.start + 1}); save the file as UTF-8"
            )
            problems.append(InputError(message, line=number))
            continue
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(InputError(f"malformed JSON: {exc.msg} at column {exc.colno}", line=number))
            continue
        if not isinstance(data, dict):
            problems.append(InputError(f"expected a JSON object, got {type(data).__name__}", line=number))
            continue
        columns.update(dict.fromkeys(data))
        rows.append(Row(number, data))
    return Table(list(columns), rows, problems)


def _read_csv(text: str, delimiter: str) -> Table:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = []
    try:
        for record in reader:
            rows.append(Row(reader.line_num, {k: v for k, v in record.items() if k is not None}))
    except csv.Error as exc:
        raise InputError(f"malformed CSV: {exc}", line=reader.line_num) from None
    return Table(list(reader.fieldnames or []), rows, [])


def _read_xlsx(path: Path, raw: bytes) -> Table:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile, KeyError, InvalidFileException...
        raise InputError(f"{path}: not a readable XLSX file ({type(exc).__name__}: {exc})") from None
    sheet = book.worksheets[0]
    rows_iter = sheet.iter_rows(values_only=True)
    header = next(rows_iter, None)
    if header is None:
        return Table([], [], [])
    columns = ["" if h is None else str(h).strip() for h in header]
    rows = []
    for number, values in enumerate(rows_iter, start=2):
        if all(v is None for v in values):
            continue
        rows.append(Row(number, {c: v for c, v in zip(columns, values, strict=False) if c}))
    book.close()
    return Table([c for c in columns if c], rows, [])


def resolve_columns(
    table: Table,
    fields: Mapping[str, Sequence[str]],
    required: Sequence[str],
    mapping: Mapping[str, str],
) -> dict[str, str]:
    """field -> column for every field found; a required field with no column is an error."""
    resolved: dict[str, str] = {}
    for field, candidates in fields.items():
        if field in mapping:
            if mapping[field] not in table.columns:
                listed = ", ".join(table.columns) or "(none)"
                raise InputError(f"--map {field}={mapping[field]}: no such column; columns found: {listed}")
            resolved[field] = mapping[field]
            continue
        found = next((c for c in (field, *candidates) if c in table.columns), None)
        if found is not None:
            resolved[field] = found
    missing = [f for f in required if f not in resolved]
    if missing:
        raise InputError(
            f"missing required field(s) {', '.join(missing)}; columns found: {', '.join(table.columns) or '(none)'}; "
            f"map them with --map {missing[0]}=COLUMN"
        )
    return resolved


def cell(row: Row, columns: Mapping[str, str], field: str) -> str | None:
    """A cell as stripped text; None when absent or blank."""
    column = columns.get(field)
    if column is None:
        return None
    value = row.values.get(column)
    if value is None:
        return None
    text = str(value).strip()
    return text or None
