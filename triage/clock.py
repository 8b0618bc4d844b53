"""Time: the clock services read (injected, so tests fix it) and reading times given without an offset.

Times are stored in UTC. A time without an offset (a spreadsheet cell, `2019/2/28 11:25:05`, a query
parameter) is read in the deployment's time zone (`TRIAGE_TIMEZONE`, default Asia/Shanghai), in which
days, ISO weeks and working days are also counted.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import overload

Clock = Callable[[], datetime]


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
    return value.astimezone(UTC)
