"""Working days on the Chinese calendar: weekends, public holidays and the weekend days worked in lieu.

The State Council publishes each year's holidays and the weekend days that replace them (调休) late
in the year before. The `chinesecalendar` package carries every published year; a deployment adds
years the installed package does not know yet (or local changes) with a file:

    # calendar.yaml (TRIAGE_CALENDAR_FILE)
    holidays: [2027-01-01, 2027-02-05, ...]   # days off that would be working days
    workdays: [2027-02-14, ...]               # weekend days worked in lieu

A date outside every known year is counted by weekends alone and reported once as a warning: a
deadline is still computed (a holiday may then be counted as a working day), never refused.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from triage.errors import InputError

log = logging.getLogger(__name__)


class WorkCalendar:
    """Which days are working days; immutable once built, safe to share between threads."""

    def __init__(self, holidays: Iterable[date] = (), workdays: Iterable[date] = (), years: Iterable[int] = ()) -> None:
        self.holidays = frozenset(holidays)
        self.workdays = frozenset(workdays)
        self.years = frozenset(years) | {d.year for d in self.holidays | self.workdays}
        self._warned: set[int] = set()
        self._lock = threading.Lock()

    @classmethod
    def chinese(cls, override: Path | None = None) -> WorkCalendar:
        """The published Chinese calendar (from `chinesecalendar`), extended by `override` if given."""
        from chinese_calendar import constants  # the package's tables; its functions raise outside them

        holidays = set(constants.holidays)
        workdays = set(constants.workdays)
        years = set(range(min(d.year for d in holidays), max(d.year for d in holidays) + 1))
        if override is not None:
            extra_holidays, extra_workdays = read_override(override)
            holidays = (holidays - extra_workdays) | extra_holidays
            workdays = (workdays - extra_holidays) | extra_workdays
            years |= {d.year for d in extra_holidays | extra_workdays}
        return cls(holidays, workdays, years)

    def known(self, day: date) -> bool:
        return day.year in self.years

    def is_workday(self, day: date) -> bool:
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        if not self.known(day):
            self._warn(day.year)
        return day.weekday() < 5

    def _warn(self, year: int) -> None:
        with self._lock:
            if year in self._warned:
                return
            self._warned.add(year)
        log.warning(
            "the working-day calendar has no holidays for %d: counting weekends only; add the year's holidays "
            "and in-lieu working days with TRIAGE_CALENDAR_FILE (or upgrade chinesecalendar)",
            year,
        )

    def add_working_days(self, start: date, n: int) -> date:
        """The n-th working day after `start` (n = 0: `start` if it is a working day, else the next one)."""
        day = start
        if n == 0:
            while not self.is_workday(day):
                day += timedelta(days=1)
            return day
        counted = 0
        while counted < n:
            day += timedelta(days=1)
            if self.is_workday(day):
                counted += 1
        return day

    def working_days_between(self, start: date, end: date) -> int:
        """Working days after `start` up to and including `end` (0 when end <= start)."""
        count, day = 0, start
        while day < end:
            day += timedelta(days=1)
            if self.is_workday(day):
                count += 1
        return count


def read_override(path: Path) -> tuple[set[date], set[date]]:
    """(holidays, workdays) from a calendar file; a bad entry is an InputError naming it."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader) or {}  # dates as text
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read the calendar file {path}: {exc}", field="calendar_file") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected keys 'holidays' and 'workdays'", field="calendar_file")
    unknown = set(data) - {"holidays", "workdays"}
    if unknown:
        raise InputError(f"{path}: unknown keys {sorted(unknown)}; expected holidays, workdays", field="calendar_file")
    out: list[set[date]] = []
    for key in ("holidays", "workdays"):
        days: set[date] = set()
        for i, value in enumerate(data.get(key) or []):
            try:
                days.add(value if isinstance(value, date) else date.fromisoformat(str(value)))
            except ValueError as exc:
                raise InputError(
                    f"{path}: {key}[{i}] '{value}' is not a date (YYYY-MM-DD)", field="calendar_file"
                ) from exc
        out.append(days)
    return out[0], out[1]


def end_of_day(day: date, tz: ZoneInfo) -> datetime:
    """The last moment of `day` in the deployment's time zone, as an aware time."""
    return datetime.combine(day, time(23, 59, 59), tzinfo=tz)
