"""Deadline rules: which case gets how long for first contact and for the reply.

Rules live in a YAML file (the built-in defaults are triage/data/deadlines.yaml, with the source of
each figure; TRIAGE_DEADLINE_RULES_FILE replaces them). The first rule whose `when` matches a case
applies. A step's time is either `working_days` (counted on the Chinese calendar after the day the
case was received, ending at the end of that working day in the deployment's time zone; 0 = the day
itself, or the next working day when it is not one) or `hours` (clock hours, for urgent matters).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from triage.deadlines.calendar import WorkCalendar, end_of_day
from triage.errors import InputError


class Span(BaseModel):
    """How long a step may take: working days or clock hours."""

    model_config = ConfigDict(extra="forbid")

    working_days: int | None = Field(None, ge=0, le=365)
    hours: float | None = Field(None, gt=0, le=24 * 60)

    @model_validator(mode="after")
    def _one_of(self) -> Span:
        if (self.working_days is None) == (self.hours is None):
            raise ValueError("give either working_days or hours")
        return self

    def due(self, start: datetime, *, calendar: WorkCalendar, tz: ZoneInfo) -> datetime:
        """The deadline, in UTC (as every time is stored)."""
        if self.hours is not None:
            return (start + timedelta(hours=self.hours)).astimezone(UTC)
        assert self.working_days is not None
        local = start.astimezone(tz).date()
        return end_of_day(calendar.add_working_days(local, self.working_days), tz).astimezone(UTC)


class When(BaseModel):
    """What a case must be for a rule to apply; every condition given must hold."""

    model_config = ConfigDict(extra="forbid")

    channel: list[str] | None = None
    rating_at_most: int | None = Field(None, ge=1, le=5)
    request_type: list[str] | None = None
    urgent: bool | None = None
    submitter_type: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _listify(cls, data: Any) -> Any:
        if isinstance(data, dict):  # one value or a list; 12345 unquoted in YAML is a number
            return {
                k: [str(x) for x in (v if isinstance(v, list) else [v])] if k in ("channel", "request_type") else v
                for k, v in data.items()
            }
        return data

    def matches(self, c: CaseFacts) -> bool:
        if self.channel is not None and c.channel not in self.channel:
            return False
        if self.rating_at_most is not None and (c.rating is None or c.rating > self.rating_at_most):
            return False
        if self.request_type is not None and c.request_type not in self.request_type:
            return False
        if self.urgent is not None and c.urgent != self.urgent:
            return False
        return self.submitter_type is None or c.submitter_type == self.submitter_type


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    when: When = Field(default_factory=When)
    contact: Span | None = None  # first contact with the citizen; None: no separate contact step
    reply: Span
    complex_reply: Span | None = None  # what a granted extension for a complex case moves the reply to
    source: str = ""


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = Field(min_length=1)

    @model_validator(mode="after")
    def _catch_all_last(self) -> RuleSet:
        if self.rules[-1].when != When():
            raise ValueError("the last rule must have an empty `when`, so every case gets a deadline")
        return self


@dataclass(frozen=True)
class CaseFacts:
    """What the rules look at."""

    channel: str
    rating: int | None = None
    request_type: str | None = None
    urgent: bool = False
    submitter_type: str | None = None


@dataclass(frozen=True)
class Due:
    rule: str
    contact: datetime | None
    reply: datetime
    complex_reply: datetime | None


class Deadlines:
    """The rules with the calendar and the time zone they count in."""

    def __init__(self, rules: RuleSet, calendar: WorkCalendar, tz: ZoneInfo) -> None:
        self.rules = rules
        self.calendar = calendar
        self.tz = tz

    @classmethod
    def load(cls, path: Path | None, calendar: WorkCalendar, tz: ZoneInfo) -> Deadlines:
        return cls(read_rules(path), calendar, tz)

    def rule_for(self, facts: CaseFacts) -> Rule:
        return next(r for r in self.rules.rules if r.when.matches(facts))

    def due(self, facts: CaseFacts, received: datetime) -> Due:
        rule = self.rule_for(facts)
        return Due(
            rule=rule.name,
            contact=self.after(rule.contact, received) if rule.contact else None,
            reply=self.after(rule.reply, received),
            complex_reply=self.after(rule.complex_reply, received) if rule.complex_reply else None,
        )

    def reply_span(self, facts: CaseFacts) -> Span:
        return self.rule_for(facts).reply

    def after(self, span: Span, start: datetime) -> datetime:
        return span.due(start, calendar=self.calendar, tz=self.tz)

    def working_days_late(self, due: datetime, now: datetime) -> int:
        """Working days from `due`'s day to `now`'s day (0 when not late or late the same day)."""
        return self.calendar.working_days_between(due.astimezone(self.tz).date(), now.astimezone(self.tz).date())


def read_rules(path: Path | None) -> RuleSet:
    """The rule file at `path`, or the built-in defaults; errors name the rule and field."""
    if path is None:
        text = (resources.files("triage") / "data" / "deadlines.yaml").read_text(encoding="utf-8")
        where = "built-in deadlines.yaml"
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot read the deadline rules {path}: {exc}", field="deadline_rules_file") from exc
        where = str(path)
    try:
        return RuleSet.model_validate(yaml.safe_load(text))
    except (yaml.YAMLError, ValidationError) as exc:
        raise InputError(f"{where}: {exc}", field="deadline_rules_file") from exc
