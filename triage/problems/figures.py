"""What a typical problem's cases say: counts by period, channel, service item and region; open and
overdue cases; and the effect of its rectification.

A problem's cases are those whose current typical problem it is (the draft's match, or the one a
person chose), except cases rejected as not actionable. The effect compares the monthly number of
complaints before the rectification was reported with the months after it:

- before: up to 6 whole months before the month of `rectified_at`, from the day of its first case when
  that is later (a partial first month counts as the part of a month it is);
- after: up to 6 whole months after that month, only those already over;
- the change is judged with an exact test: given the cases of both windows, how likely is a split at
  least this uneven between them if the monthly rate had stayed the same (binomial, the windows'
  lengths as weights). Below 10 cases in all there is too little to tell, and under half a month of
  complaints before it nothing to compare with.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from scipy.stats import binomtest
from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.orm import Session

from triage.cases.rows import CaseRow
from triage.cases.states import OPEN, CaseStatus
from triage.periods import add_months, counts, local_date, local_day, month_start, months_between, roll_up
from triage.problems.models import Count, Effect

WINDOW_MONTHS = 6
MIN_CASES = 10
MIN_MONTHS_BEFORE = 0.5  # of complaints before the rectification, to have a rate to compare with
MONTH_DAYS = 30.4375
SIGNIFICANCE = 0.05
OPEN_VALUES = [s.value for s in OPEN]


def counted(problem_ids: ColumnElement[bool] | None = None) -> ColumnElement[bool]:
    """The cases that count for problems (rejected ones aside)."""
    base = and_(CaseRow.typical_problem_id.is_not(None), CaseRow.status != CaseStatus.REJECTED.value)
    return base if problem_ids is None else and_(base, problem_ids)


def case_counts(s: Session, *, now: datetime, ids: Sequence[str] | None = None) -> dict[str, tuple[int, int, int]]:
    """problem id -> (cases, open cases, overdue cases), in one grouped query."""
    is_open = CaseRow.status.in_(OPEN_VALUES)
    where = counted(CaseRow.typical_problem_id.in_(ids) if ids is not None else None)
    rows = s.execute(
        select(
            CaseRow.typical_problem_id,
            func.count(),
            func.sum(case((is_open, 1), else_=0)),
            func.sum(case((and_(is_open, CaseRow.due_at < now), 1), else_=0)),
        )
        .where(where)
        .group_by(CaseRow.typical_problem_id)
    )
    return {str(pid): (int(n), int(o or 0), int(d or 0)) for pid, n, o, d in rows}


def by_column(s: Session, pid: str, column: Any) -> list[Count]:
    rows = s.execute(select(column, func.count()).where(counted(CaseRow.typical_problem_id == pid)).group_by(column))
    return [Count(key=k, count=n) for k, n in counts(rows)]


def by_day(s: Session, pid: str, *, dialect: str, tz: ZoneInfo) -> dict[str, int]:
    day = local_day(CaseRow.complained_at, dialect=dialect, tz=tz)
    rows = s.execute(select(day, func.count()).where(counted(CaseRow.typical_problem_id == pid)).group_by(day))
    return {str(d): int(n) for d, n in rows if d}


def periods(days: dict[str, int]) -> tuple[list[Count], list[Count]]:
    """(by month, by ISO week)"""
    return (
        [Count(key=k, count=n) for k, n in roll_up(days, "month")],
        [Count(key=k, count=n) for k, n in roll_up(days, "week")],
    )


def effect(days: dict[str, int], rectified_at: datetime | None, *, now: datetime, tz: ZoneInfo) -> Effect:
    """The monthly rate before the rectification against after it (see the module docstring)."""
    if rectified_at is None:
        return _plain(None, "not rectified yet", "尚未整改完成，暂无整改成效可比。")
    done = local_date(rectified_at, tz)
    r_month = (done.year, done.month)
    today = local_date(now, tz)
    months_after = min(WINDOW_MONTHS, max(0, months_between(r_month, (today.year, today.month)) - 1))
    r_start = month_start(*r_month, tz)
    after_start = month_start(*add_months(*r_month, 1), tz)
    after_end = month_start(*add_months(*r_month, 1 + months_after), tz)
    # Before: up to WINDOW_MONTHS whole months, from the day of the first case if that is later (a
    # first case in mid-month counts the part of the month after it, not the whole month).
    window_start = month_start(*add_months(*r_month, -WINDOW_MONTHS), tz)
    first = min((_day_start(d, tz) for d in days), default=None)
    before_start = max(window_start, first) if first is not None else r_start
    months_before = round(max(0.0, (r_start - before_start).days / MONTH_DAYS), 2)
    cases_before = sum(n for d, n in days.items() if before_start <= _day_start(d, tz) < r_start)
    cases_after = sum(n for d, n in days.items() if after_start <= _day_start(d, tz) < after_end)
    base: dict[str, Any] = {
        "rectified_at": rectified_at,
        "months_before": months_before,
        "months_after": months_after,
        "cases_before": cases_before,
        "cases_after": cases_after,
        "rate_before": round(cases_before / months_before, 2) if months_before else None,
        "rate_after": round(cases_after / months_after, 2) if months_after else None,
    }
    if months_after == 0:
        statement = "整改完成不足一个完整月，暂无法判断成效。"
        return Effect(**base, change=None, p_value=None, verdict="too early to tell", statement=statement)
    if months_before < MIN_MONTHS_BEFORE:
        statement = "整改前的投诉时间不足半个月，无从比较。"
        return Effect(**base, change=None, p_value=None, verdict="nothing before to compare", statement=statement)
    if cases_before + cases_after < MIN_CASES:
        statement = f"整改前后共{cases_before + cases_after}件，案例太少，无法判断成效。"
        return Effect(**base, change=None, p_value=None, verdict="too few cases to tell", statement=statement)
    rate_before, rate_after = cases_before / months_before, cases_after / months_after
    change = (rate_after - rate_before) / rate_before if rate_before else None
    share = months_after / (months_before + months_after)
    p = float(binomtest(cases_after, cases_before + cases_after, share).pvalue)
    if p >= SIGNIFICANCE:
        verdict, word = "no clear change", "无明显变化"
    else:
        verdict, word = ("fell", "下降") if rate_after < rate_before else ("rose", "上升")
    pct = f"，{'下降' if (change or 0) < 0 else '上升'}{abs(change or 0):.0%}" if change is not None else ""
    statement = (
        f"整改前{months_before:g}个月平均每月{rate_before:.1f}件，整改后{months_after}个月平均每月{rate_after:.1f}件"
        f"{pct}；{word}（p={p:.3g}）。"
    )
    rounded = round(change, 4) if change is not None else None
    return Effect(**base, change=rounded, p_value=round(p, 6), verdict=verdict, statement=statement)


def _plain(rectified_at: datetime | None, verdict: str, statement: str) -> Effect:
    return Effect(
        rectified_at=rectified_at,
        months_before=0,
        months_after=0,
        cases_before=0,
        cases_after=0,
        rate_before=None,
        rate_after=None,
        change=None,
        p_value=None,
        verdict=verdict,
        statement=statement,
    )


def _day_start(day: str, tz: ZoneInfo) -> datetime:
    return datetime(int(day[:4]), int(day[5:7]), int(day[8:10]), tzinfo=tz)


def aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value
