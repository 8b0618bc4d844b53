"""Counting by local day, ISO week and month, in the database.

Counts are grouped by the local day in SQL (one row a day, however many cases) and rolled up to
weeks and months here. PostgreSQL converts with the deployment's time zone itself; SQLite, which has
no time zones, shifts by the zone's offset from UTC now (exact for zones without daylight saving,
such as Asia/Shanghai).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, String, func, literal
from sqlalchemy.sql.expression import cast


def local_day(column: Any, *, dialect: str, tz: ZoneInfo) -> ColumnElement[str]:
    """`column` (a UTC timestamp) as the local date 'YYYY-MM-DD'."""
    if dialect == "postgresql":
        return func.to_char(func.timezone(literal(str(tz.key)), column), "YYYY-MM-DD")
    offset = datetime.now(tz).utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    return cast(func.strftime("%Y-%m-%d", column, f"{minutes:+d} minutes"), String)


def month_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def week_of(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year:04d}-W{week:02d}"


def roll_up(days: Mapping[str, int], key: str) -> list[tuple[str, int]]:
    """Day counts ('YYYY-MM-DD' -> n) as month ('YYYY-MM') or ISO week ('YYYY-Www') counts, in order."""
    bucket = month_of if key == "month" else week_of
    totals: Counter[str] = Counter()
    for day, n in days.items():
        totals[bucket(date.fromisoformat(day))] += n
    return sorted(totals.items())


def local_date(moment: datetime, tz: ZoneInfo) -> date:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(tz).date()


def month_start(year: int, month: int, tz: ZoneInfo) -> datetime:
    return datetime(year, month, 1, tzinfo=tz)


def add_months(year: int, month: int, n: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + n
    return index // 12, index % 12 + 1


def months_between(first: tuple[int, int], last: tuple[int, int]) -> int:
    """Whole months from the start of `first` to the start of `last`."""
    return (last[0] * 12 + last[1]) - (first[0] * 12 + first[1])


def counts(rows: Iterable[tuple[Any, int]]) -> list[tuple[str, int]]:
    """(key, n) rows as sorted pairs, largest first, a missing key shown as '(none)'."""
    out: Counter[str] = Counter()
    for key, n in rows:
        out[str(key) if key not in (None, "") else "(none)"] += int(n)
    return out.most_common()
