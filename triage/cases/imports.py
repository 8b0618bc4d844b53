"""Reading complaints to import as cases from JSONL, CSV or XLSX, with `--map field=column`.

Each row's `id` (or `external_id`) is kept as the case's external id, so importing a file twice adds
nothing. Complaint times are kept as given, so history can be replayed: the formats real exports use
are read (`2019/2/28 11:25:05`, `2019-02-28T11:25:05+08:00`, `2019年2月28日 11:25`, Excel dates and
serial numbers), and a time without an offset is read in the deployment's time zone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from triage.errors import InputError
from triage.intake import from_validation_error
from triage.models import Complaint
from triage.tabular import Format, Row, parse_mapping, read_table, resolve_columns

# field -> the column names it is found under without --map (the field's own name first)
COMPLAINT_FIELDS: dict[str, tuple[str, ...]] = {
    "text": ("留言详情", "内容", "投诉内容", "content"),
    "external_id": ("id", "留言编号", "编号", "工单编号"),
    "title": ("留言主题", "主题", "标题"),
    "channel": ("渠道", "来源"),
    "service_item": ("事项", "服务事项"),
    "rating": ("评分", "评价"),
    "region": ("区域", "所属区"),
    "created_at": ("留言时间", "时间", "time", "date"),
    "contact": ("联系方式", "联系电话"),
    "request_type": ("诉求类型", "类型"),
    "urgent": ("紧急",),
    "submitter_type": ("主体类型",),
    "enterprise_name": ("企业名称", "enterprise"),
    "likes": ("点赞数", "点赞"),
    "dislikes": ("反对数", "反对"),
}
EXCEL_EPOCH = date(1899, 12, 30)

_DATE = re.compile(
    r"^(?P<y>\d{4})[-/.年](?P<m>\d{1,2})[-/.月](?P<d>\d{1,2})日?"
    r"(?:[ T]+(?P<H>\d{1,2})[:时](?P<M>\d{1,2})(?:[:分](?P<S>\d{1,2})(?:\.(?P<f>\d+))?)?秒?)?"
    r"\s*(?P<tz>Z|[+-]\d{2}:?\d{2})?$"
)


@dataclass
class ComplaintBatch:
    complaints: list[tuple[int, Complaint]]  # (line, complaint)
    errors: list[InputError]
    rows: int


def parse_time(value: Any, tz: tzinfo) -> datetime:
    """A complaint time from a cell: aware values keep their offset, naive ones are read in `tz`."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time())
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not 1 <= value < 2_958_466:  # Excel's serial dates: 1900-01-01 .. 9999-12-31
            raise ValueError(f"{value} is not a date")
        moment = datetime.combine(EXCEL_EPOCH, time()) + timedelta(days=float(value))
    else:
        text = str(value).strip()
        match = _DATE.match(text)
        if match is None:
            raise ValueError(f"'{text}' is not a time (e.g. 2019/2/28 11:25:05 or 2019-02-28T11:25:05+08:00)")
        g = match.groupdict()
        fraction = int((g["f"] or "0")[:6].ljust(6, "0"))
        moment = datetime(
            int(g["y"]), int(g["m"]), int(g["d"]), int(g["H"] or 0), int(g["M"] or 0), int(g["S"] or 0), fraction
        )
        if g["tz"]:
            moment = datetime.fromisoformat(moment.isoformat() + ("+00:00" if g["tz"] == "Z" else _offset(g["tz"])))
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


def _offset(raw: str) -> str:
    return raw if ":" in raw else f"{raw[:3]}:{raw[3:]}"


def read_complaints(path: Path, *, tz: tzinfo, fmt: Format = "auto", mapping: Sequence[str] = ()) -> ComplaintBatch:
    """Validated complaints from a file; a bad row is a line-numbered error, the rest are read."""
    table = read_table(path, fmt)
    columns = resolve_columns(table, COMPLAINT_FIELDS, ["text"], parse_mapping(mapping, list(COMPLAINT_FIELDS)))
    errors = list(table.problems)
    complaints = []
    for row in table.rows:
        try:
            complaints.append((row.line, _complaint(row, columns, tz)))
        except InputError as exc:
            errors.append(exc)
    return ComplaintBatch(complaints, sorted(errors, key=lambda e: e.line or 0), len(table.rows) + len(table.problems))


def _complaint(row: Row, columns: dict[str, str], tz: tzinfo) -> Complaint:
    values: dict[str, Any] = {}
    for field, column in columns.items():
        value = row.values.get(column)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if field == "created_at":
            try:
                value = parse_time(value, tz)
            except ValueError as exc:
                raise InputError(str(exc), field="created_at", line=row.line) from None
        elif field in ("external_id", "text", "title", "contact", "region", "service_item", "enterprise_name"):
            value = str(value).strip()
        elif field == "urgent" and isinstance(value, str):
            value = value.strip().lower() in {"1", "true", "yes", "是", "紧急"}
        values[field] = value
    if "text" not in values:
        raise InputError("is empty", field="text", line=row.line)
    try:
        return Complaint.model_validate(values)
    except ValidationError as exc:
        raise from_validation_error(exc, line=row.line) from None
