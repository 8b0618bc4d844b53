"""Re-triage jobs and their items.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("finished_at", TZ),
        sa.Column("filters", sa.JSON(), nullable=False),
        sa.Column("include_decided", sa.Boolean(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
    )
    op.create_table(
        "job_items",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("case_id", sa.String(36), sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(100)),
        sa.Column("lease_until", TZ),
        sa.Column("error", sa.Text()),
        sa.Column("reason", sa.Text()),
        sa.Column("old_department", sa.String(100)),
        sa.Column("new_department", sa.String(100)),
        sa.Column("old_problem", sa.String(100)),
        sa.Column("new_problem", sa.String(100)),
        sa.Column("draft_no", sa.Integer()),
        sa.Column("drafted_by", sa.String(100)),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("finished_at", TZ),
        sa.UniqueConstraint("job_id", "case_id", name="uq_job_items_job_case"),
    )
    op.create_index("ix_job_items_job_state", "job_items", ["job_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_job_items_job_state", table_name="job_items")
    op.drop_table("job_items")
    op.drop_table("jobs")
