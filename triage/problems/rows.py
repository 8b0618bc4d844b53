"""Tables for typical problems as tracked records and their history (revision 0005)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, Session, mapped_column

from triage.cases.rows import utcnow
from triage.database import Base
from triage.errors import NotFoundError


class ProblemRow(Base):
    __tablename__ = "problems"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    # what the knowledge-base files carry (kb load upserts these)
    title: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    department: Mapped[str] = mapped_column(String(100), index=True)
    service_items: Mapped[list[str]] = mapped_column(JSON, default=list)
    root_cause: Mapped[str] = mapped_column(Text, default="")
    rectification: Mapped[str] = mapped_column(Text, default="")
    reply_guidance: Mapped[str] = mapped_column(Text, default="")
    unified_reply: Mapped[str | None] = mapped_column(Text)
    # where it stands
    status: Mapped[str] = mapped_column(String(20), index=True)  # a ProblemStatus value
    source: Mapped[str] = mapped_column(String(20), default="kb")  # kb | person | hot_issue
    version: Mapped[int] = mapped_column(Integer)
    plan_measures: Mapped[str | None] = mapped_column(Text)
    owner_department: Mapped[str | None] = mapped_column(String(100))
    deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rectified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rectified_summary: Mapped[str | None] = mapped_column(Text)
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    merged_into: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class ProblemEventRow(Base):
    """The problem's history: every transition and edit, with who, when and what changed."""

    __tablename__ = "problem_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    problem_id: Mapped[str] = mapped_column(ForeignKey("problems.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)
    changes: Mapped[dict[str, Any]] = mapped_column(JSON)  # field -> [before, after]


def get_problem(s: Session, problem_id: str) -> ProblemRow:
    row = s.get(ProblemRow, problem_id)
    if row is None:
        raise NotFoundError(f"no typical problem '{problem_id}'")
    return row
