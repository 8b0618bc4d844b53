"""Tables for cases, drafts, decisions, the audit log, batches, users and API keys.

The audit table is append-only: the migration installs a trigger that refuses UPDATE and DELETE.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from triage.database import Base


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_utc(value: datetime | None) -> datetime | None:
    """Times are stored in UTC (SQLite keeps no offset); a naive time is taken to be UTC already."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC)


class CaseRow(Base):
    __tablename__ = "cases"
    __table_args__ = (
        # External ids are the sending system's own: unique per submitter, not across systems.
        UniqueConstraint("submitted_by", "external_id", name="uq_cases_submitter_external_id"),
        Index("ix_cases_status_received", "status", "received_at"),
        Index("ix_cases_department_status_received", "department", "status", "received_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(200))
    # the complaint
    text: Mapped[str] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(String(20), index=True)
    service_item: Mapped[str | None] = mapped_column(Text)
    rating: Mapped[int | None] = mapped_column(Integer)
    region: Mapped[str | None] = mapped_column(String(100))
    contact: Mapped[str | None] = mapped_column(String(200))
    complained_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # where it stands
    status: Mapped[str] = mapped_column(String(20))
    department: Mapped[str | None] = mapped_column(String(100))
    assigned_by: Mapped[str | None] = mapped_column(String(100))  # set when a person chose the department
    typical_problem_id: Mapped[str | None] = mapped_column(String(100), index=True)
    confidence: Mapped[float | None] = mapped_column(Float)
    draft_no: Mapped[int] = mapped_column(Integer, default=0)
    draft_error: Mapped[str | None] = mapped_column(Text)  # why the case has no draft yet
    version: Mapped[int] = mapped_column(Integer)  # optimistic concurrency: the ORM adds "AND version = :read"
    batch_id: Mapped[str | None] = mapped_column(String(36), index=True)
    submitted_by: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # who complained, and how (revision 0005)
    request_type: Mapped[str | None] = mapped_column(String(10))
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    submitter_type: Mapped[str] = mapped_column(String(20), default="individual")
    enterprise_name: Mapped[str | None] = mapped_column(String(200))
    likes: Mapped[int | None] = mapped_column(Integer)
    dislikes: Mapped[int | None] = mapped_column(Integer)
    # deadlines: `due_at` is the next step's (first contact, then the reply); None when nothing is due
    deadline_rule: Mapped[str | None] = mapped_column(String(100))
    contact_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reply_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    # the steps taken
    contacted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    approved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reply_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reply_sent_by: Mapped[str | None] = mapped_column(String(100))
    reply_channel: Mapped[str | None] = mapped_column(String(50))
    followed_up_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    satisfaction: Mapped[str | None] = mapped_column(String(10))
    follow_up_note: Mapped[str | None] = mapped_column(Text)
    follow_ups: Mapped[int] = mapped_column(Integer, default=0)  # every follow-up, not only the last
    dissatisfactions: Mapped[int] = mapped_column(Integer, default=0)  # follow-ups that were 不满意
    returns: Mapped[int] = mapped_column(Integer, default=0)  # times a department handed it back
    bounces: Mapped[int] = mapped_column(Integer, default=0)  # times it moved from one department to another
    # supervision and escalation
    supervised_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    supervised_by: Mapped[str | None] = mapped_column(String(100))
    supervision_note: Mapped[str | None] = mapped_column(Text)
    reminded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    notified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    appeal_upheld: Mapped[bool] = mapped_column(Boolean, default=False)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


# The queue by confidence: sort=-confidence walks it forwards, sort=confidence backwards. Revision 0004
# creates it; on PostgreSQL with NULLS LAST, which SQLite's descending order has anyway.
Index("ix_cases_department_status_confidence", CaseRow.department, CaseRow.status, CaseRow.confidence.desc())


Index("ix_cases_complained_at", CaseRow.complained_at)
Index("ix_cases_problem_complained", CaseRow.typical_problem_id, CaseRow.complained_at)


class RequestRow(Base):
    """A department's request on a case, decided by a supervisor: an extension (延期) or an appeal (申诉复核)."""

    __tablename__ = "case_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # extension | appeal
    status: Mapped[str] = mapped_column(String(20))  # pending | granted | refused
    reason: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(100))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    requested_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # an extension's new deadline
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decision_note: Mapped[str | None] = mapped_column(Text)


class DraftRow(Base):
    __tablename__ = "drafts"
    __table_args__ = (UniqueConstraint("case_id", "number", name="uq_drafts_case_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)  # a triage.models.Draft


class DecisionRow(Base):
    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    action: Mapped[str] = mapped_column(String(20), index=True)
    actor: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    draft_no: Mapped[int] = mapped_column(Integer)
    edited_fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    edited: Mapped[bool] = mapped_column(Boolean, default=False)  # any of edited_fields, for SQL counts
    department: Mapped[str | None] = mapped_column(String(100))
    typical_problem_id: Mapped[str | None] = mapped_column(String(100))
    root_cause: Mapped[str | None] = mapped_column(Text)
    reply: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)


class AuditRow(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(20))
    changes: Mapped[dict[str, Any]] = mapped_column(JSON)  # field -> [before, after]


class BatchRow(Base):
    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    submitted_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    total: Mapped[int] = mapped_column(Integer)
