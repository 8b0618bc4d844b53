"""History store: past cases and the unlabelled corpus.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "past_cases",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("text_hash", sa.String(32), nullable=False),
        sa.Column("department", sa.String(100), nullable=False),
        sa.Column("title", sa.Text()),
        sa.Column("typical_problem_id", sa.String(100)),
        sa.Column("root_cause", sa.Text()),
        sa.Column("reply", sa.Text()),
        sa.Column("channel", sa.String(50)),
        sa.Column("created_at", sa.String(50)),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_past_cases_text_hash", "past_cases", ["text_hash"])
    op.create_index("ix_past_cases_department", "past_cases", ["department"])
    op.create_table(
        "corpus_texts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("text", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("corpus_texts")
    op.drop_index("ix_past_cases_department", table_name="past_cases")
    op.drop_index("ix_past_cases_text_hash", table_name="past_cases")
    op.drop_table("past_cases")
