"""Tables for re-triage jobs and their items."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, Session, mapped_column

from triage.cases.rows import utcnow
from triage.database import Base
from triage.errors import NotFoundError


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), default="retriage")
    status: Mapped[str] = mapped_column(String(20))  # a JobStatus value
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    filters: Mapped[dict[str, Any]] = mapped_column(JSON)
    include_decided: Mapped[bool] = mapped_column(default=False)
    total: Mapped[int] = mapped_column(Integer)


class JobItemRow(Base):
    __tablename__ = "job_items"
    __table_args__ = (
        UniqueConstraint("job_id", "case_id", name="uq_job_items_job_case"),
        Index("ix_job_items_job_state", "job_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"))
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"))
    state: Mapped[str] = mapped_column(String(20))  # an ItemState value
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)  # why skipped
    old_department: Mapped[str | None] = mapped_column(String(100))
    new_department: Mapped[str | None] = mapped_column(String(100))
    old_problem: Mapped[str | None] = mapped_column(String(100))
    new_problem: Mapped[str | None] = mapped_column(String(100))
    draft_no: Mapped[int | None] = mapped_column(Integer)
    drafted_by: Mapped[str | None] = mapped_column(String(100))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


def get_job(s: Session, job_id: str) -> JobRow:
    """The job, or NotFoundError."""
    job = s.get(JobRow, job_id)
    if job is None:
        raise NotFoundError(f"no job '{job_id}'")
    return job
