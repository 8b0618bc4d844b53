"""The rectification loop: typical problems as tracked records, case deadlines, supervision, follow-up.

- `problems` and `problem_events`: typical problems with their lifecycle and history (seeded from the
  knowledge base by the next build).
- `cases` gains the complaint's new fields (request type, urgency, submitter type, votes), its
  deadlines (`due_at` is the next step's), the steps taken (contact, approval, reply sent, follow-up),
  returns and bounces, supervision and escalation, and whether an appeal was upheld.
- `case_requests`: extension (延期) and appeal (申诉复核) requests and their decisions.
- Every case gets a complaint time (`complained_at`, the receipt time where none was given), so
  counts by week and month and deadlines need no fallback.

Revision ID: 0005
Revises: 0004
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)

CASE_COLUMNS: list[sa.Column[Any]] = [
    sa.Column("request_type", sa.String(10)),
    sa.Column("urgent", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("submitter_type", sa.String(20), nullable=False, server_default="individual"),
    sa.Column("enterprise_name", sa.String(200)),
    sa.Column("likes", sa.Integer()),
    sa.Column("dislikes", sa.Integer()),
    sa.Column("deadline_rule", sa.String(100)),
    sa.Column("contact_due_at", TZ),
    sa.Column("reply_due_at", TZ),
    sa.Column("due_at", TZ),
    sa.Column("contacted_at", TZ),
    sa.Column("approved_at", TZ),
    sa.Column("reply_sent_at", TZ),
    sa.Column("reply_sent_by", sa.String(100)),
    sa.Column("reply_channel", sa.String(50)),
    sa.Column("followed_up_at", TZ),
    sa.Column("satisfaction", sa.String(10)),
    sa.Column("follow_up_note", sa.Text()),
    sa.Column("follow_ups", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("dissatisfactions", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("returns", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("bounces", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("supervised_at", TZ),
    sa.Column("supervised_by", sa.String(100)),
    sa.Column("supervision_note", sa.Text()),
    sa.Column("reminded_at", TZ),
    sa.Column("notified_at", TZ),
    sa.Column("appeal_upheld", sa.Boolean(), nullable=False, server_default=sa.false()),
]


def upgrade() -> None:
    op.create_table(
        "problems",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("department", sa.String(100), nullable=False, index=True),
        sa.Column("service_items", sa.JSON(), nullable=False),
        sa.Column("root_cause", sa.Text(), nullable=False),
        sa.Column("rectification", sa.Text(), nullable=False),
        sa.Column("reply_guidance", sa.Text(), nullable=False),
        sa.Column("unified_reply", sa.Text()),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("plan_measures", sa.Text()),
        sa.Column("owner_department", sa.String(100)),
        sa.Column("deadline", TZ),
        sa.Column("rectified_at", TZ),
        sa.Column("rectified_summary", sa.Text()),
        sa.Column("verified_at", TZ),
        sa.Column("merged_into", sa.String(100)),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "problem_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("problem_id", sa.String(100), sa.ForeignKey("problems.id"), nullable=False, index=True),
        sa.Column("at", TZ, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("note", sa.Text()),
        sa.Column("changes", sa.JSON(), nullable=False),
    )
    with op.batch_alter_table("cases") as batch:
        for column in CASE_COLUMNS:
            batch.add_column(column)
    op.execute("UPDATE cases SET complained_at = received_at WHERE complained_at IS NULL")
    op.execute(
        "UPDATE cases SET approved_at = (SELECT min(d.at) FROM decisions d WHERE d.case_id = cases.id "
        "AND d.action = 'approve') WHERE approved_at IS NULL"
    )
    op.create_index("ix_cases_due_at", "cases", ["due_at"])
    op.create_index("ix_cases_complained_at", "cases", ["complained_at"])
    op.create_index("ix_cases_problem_complained", "cases", ["typical_problem_id", "complained_at"])
    op.create_table(
        "case_requests",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(36), sa.ForeignKey("cases.id"), nullable=False, index=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(100), nullable=False),
        sa.Column("requested_at", TZ, nullable=False),
        sa.Column("requested_until", TZ),
        sa.Column("decided_by", sa.String(100)),
        sa.Column("decided_at", TZ),
        sa.Column("decision_note", sa.Text()),
    )


def downgrade() -> None:
    op.drop_table("case_requests")
    op.drop_index("ix_cases_problem_complained", table_name="cases")
    op.drop_index("ix_cases_complained_at", table_name="cases")
    op.drop_index("ix_cases_due_at", table_name="cases")
    with op.batch_alter_table("cases") as batch:
        for column in reversed(CASE_COLUMNS):
            batch.drop_column(column.name)
    op.drop_table("problem_events")
    op.drop_table("problems")
