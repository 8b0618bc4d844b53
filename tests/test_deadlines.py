"""Working days on the Chinese calendar and the deadline rules (no database)."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from triage.cases.imports import parse_time
from triage.deadlines.calendar import WorkCalendar
from triage.deadlines.rules import CaseFacts, Deadlines, read_rules
from triage.errors import InputError

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def calendar() -> WorkCalendar:
    return WorkCalendar.chinese()


def test_holidays_and_the_weekend_days_worked_in_lieu(calendar: WorkCalendar) -> None:
    # National Day 2025: 1-8 October off; Sunday 28 September and Saturday 11 October worked instead.
    assert not calendar.is_workday(date(2025, 10, 1)) and not calendar.is_workday(date(2025, 10, 8))
    assert calendar.is_workday(date(2025, 9, 28)) and calendar.is_workday(date(2025, 10, 11))
    assert not calendar.is_workday(date(2025, 9, 27))  # an ordinary Saturday
    assert calendar.add_working_days(date(2025, 9, 26), 1) == date(2025, 9, 28)  # Friday + 1: the Sunday worked
    assert calendar.add_working_days(date(2025, 9, 30), 1) == date(2025, 10, 9)  # across the holiday
    # 5 working days from 30 September: 9, 10, 11 (Saturday worked), 13, 14 October
    assert calendar.add_working_days(date(2025, 9, 30), 5) == date(2025, 10, 14)
    assert calendar.add_working_days(date(2025, 10, 4), 0) == date(2025, 10, 9)  # 0: the next working day
    assert calendar.working_days_between(date(2025, 9, 30), date(2025, 10, 14)) == 5


def test_a_year_the_calendar_does_not_know_is_counted_by_weekends_with_a_warning(
    calendar: WorkCalendar, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="triage.deadlines.calendar"):
        assert calendar.add_working_days(date(2099, 1, 2), 1) == date(2099, 1, 5)  # Friday + 1: Monday
        calendar.add_working_days(date(2099, 3, 2), 3)
    warnings = [r.message for r in caplog.records if "2099" in r.getMessage()]
    assert len(warnings) == 1 and "TRIAGE_CALENDAR_FILE" in caplog.records[0].getMessage()  # once per year
    assert not calendar.known(date(2099, 1, 1)) and calendar.known(date(2025, 1, 1))


def test_a_calendar_file_adds_the_years_the_package_does_not_know(tmp_path: Path) -> None:
    path = tmp_path / "calendar.yaml"
    path.write_text("holidays: [2099-01-05, 2099-01-06]\nworkdays: [2099-01-10]\n", encoding="utf-8")
    extended = WorkCalendar.chinese(path)
    assert extended.known(date(2099, 6, 1))
    assert extended.add_working_days(date(2099, 1, 2), 1) == date(2099, 1, 7)  # Mon and Tue off
    assert extended.is_workday(date(2099, 1, 10))  # a Saturday worked in lieu
    path.write_text("holidays: [2099-13-01]\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"holidays\[0\] '2099-13-01' is not a date"):
        WorkCalendar.chinese(path)
    path.write_text("holiday: [2099-01-01]\n", encoding="utf-8")
    with pytest.raises(InputError, match="unknown keys"):
        WorkCalendar.chinese(path)


def test_the_built_in_rules_per_channel_rating_and_urgency(calendar: WorkCalendar) -> None:
    deadlines = Deadlines(read_rules(None), calendar, SHANGHAI)
    received = datetime(2025, 9, 30, 10, 0, tzinfo=SHANGHAI)
    bad_review = deadlines.due(CaseFacts(channel="好差评", rating=1), received)
    assert bad_review.rule == "好差评差评"
    assert bad_review.contact == datetime(2025, 10, 9, 23, 59, 59, tzinfo=SHANGHAI)  # same or next working day
    assert bad_review.reply == datetime(2025, 10, 14, 23, 59, 59, tzinfo=SHANGHAI)  # 5 working days
    assert bad_review.complex_reply == datetime(2025, 10, 28, 23, 59, 59, tzinfo=SHANGHAI)  # 15
    assert bad_review.reply.tzinfo == UTC  # stored as UTC
    enquiry = deadlines.due(CaseFacts(channel="12345", request_type="咨询"), received)
    assert enquiry.rule == "12345咨询" and enquiry.contact is None
    assert enquiry.reply == datetime(2025, 10, 11, 23, 59, 59, tzinfo=SHANGHAI)  # 3 working days
    complaint = deadlines.due(CaseFacts(channel="12345", request_type="投诉"), received)
    assert complaint.rule == "12345诉求" and complaint.reply.astimezone(SHANGHAI).date() == date(2025, 10, 24)
    urgent = deadlines.due(CaseFacts(channel="12345", urgent=True), received)
    assert urgent.rule == "紧急事项" and urgent.reply == datetime(2025, 10, 1, 10, 0, tzinfo=SHANGHAI)
    good_review = deadlines.due(CaseFacts(channel="好差评", rating=5), received)
    assert good_review.rule == "其他渠道"  # a good review is not a bad review


def test_a_rules_file_is_checked_and_names_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - name: only\n    when: {channel: 12345}\n    reply: {working_days: 3}\n", "utf-8")
    with pytest.raises(InputError, match="the last rule must have an empty `when`"):
        read_rules(path)
    path.write_text("rules:\n  - name: all\n    reply: {working_days: 3, hours: 4}\n", "utf-8")
    with pytest.raises(InputError, match="give either working_days or hours"):
        read_rules(path)
    path.write_text("rules:\n  - name: all\n    reply: {days: 3}\n", "utf-8")
    with pytest.raises(InputError, match=r"rules\.0\.reply\.days"):
        read_rules(path)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2019/2/28 11:25:05", datetime(2019, 2, 28, 11, 25, 5, tzinfo=SHANGHAI)),
        ("2019-02-28T11:25:05+08:00", datetime(2019, 2, 28, 11, 25, 5, tzinfo=SHANGHAI)),
        ("2019-02-28T03:25:05Z", datetime(2019, 2, 28, 11, 25, 5, tzinfo=SHANGHAI)),
        ("2019年2月28日 11:25", datetime(2019, 2, 28, 11, 25, tzinfo=SHANGHAI)),
        ("2019/2/28", datetime(2019, 2, 28, tzinfo=SHANGHAI)),
        (43524.475752314815, datetime(2019, 2, 28, 11, 25, 5, tzinfo=SHANGHAI)),  # an Excel serial date
        (datetime(2019, 2, 28, 11, 25, 5), datetime(2019, 2, 28, 11, 25, 5, tzinfo=SHANGHAI)),  # an XLSX cell
    ],
)
def test_complaint_times_in_the_formats_real_exports_use(value: object, expected: datetime) -> None:
    parsed = parse_time(value, SHANGHAI)
    assert parsed == expected and abs((parsed - expected).total_seconds()) < 1


@pytest.mark.parametrize("value", ["yesterday", "2019-02-30 10:00", "28/02/2019", -5])
def test_times_that_are_not_times_are_refused(value: object) -> None:
    with pytest.raises(ValueError):
        parse_time(value, SHANGHAI)
