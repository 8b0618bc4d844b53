"""Time: the clock services read (injected, so tests fix it) and reading times given without an offset.

Times are stored in UTC. A time without an offset (a spreadsheet cell, `2019/2/28 11:25:05`, a query
parameter) is read in the deployment's time zone (`TRIAGE_TIMEZONE`, default Asia/Shanghai), in which
days, ISO weeks and working days are also counted.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, tzinfo
from typing import overload

from triage.errors import InputError

Clock = Callable[[], datetime]
Moment = datetime | date  # a deadline given as a day means the end of that day


def system_clock() -> datetime:
    return datetime.now(UTC)


@overload
def in_utc(value: datetime, tz: tzinfo) -> datetime: ...
@overload
def in_utc(value: None, tz: tzinfo) -> None: ...
def in_utc(value: datetime | None, tz: tzinfo) -> datetime | None:
    """`value` in UTC; a naive value is a wall-clock time in `tz`."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InputError(f"{value.isoformat()} is out of range") from None


def deadline_utc(value: Moment, tz: tzinfo) -> datetime:
    """A deadline in UTC: a day means its end (23:59:59) in `tz`; a time without an offset is in `tz`."""
    if not isinstance(value, datetime):
        value = datetime.combine(value, time(23, 59, 59))
    return in_utc(value, tz)
