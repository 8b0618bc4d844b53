"""Review cases: cases, draft versions, decisions, append-only audit events, batches, users, API keys.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)

_PG_APPEND_ONLY = """
CREATE FUNCTION audit_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
"""


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("departments", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("revoked_at", TZ),
    )
    op.create_table(
        "batches",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("submitted_by", sa.String(100), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
    )
    op.create_table(
        "cases",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("external_id", sa.String(200)),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("title", sa.Text()),
        sa.Column("channel", sa.String(20), nullable=False, index=True),
        sa.Column("service_item", sa.Text()),
        sa.Column("rating", sa.Integer()),
        sa.Column("region", sa.String(100)),
        sa.Column("contact", sa.String(200)),
        sa.Column("complained_at", TZ),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("department", sa.String(100)),
        sa.Column("assigned_by", sa.String(100)),
        sa.Column("typical_problem_id", sa.String(100), index=True),
        sa.Column("confidence", sa.Float()),
        sa.Column("draft_no", sa.Integer(), nullable=False),
        sa.Column("draft_error", sa.Text()),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.String(36), index=True),
        sa.Column("submitted_by", sa.String(100), nullable=False),
        sa.Column("received_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("decided_at", TZ),
        sa.UniqueConstraint("submitted_by", "external_id", name="uq_cases_submitter_external_id"),
    )
    op.create_index("ix_cases_status_received", "cases", ["status", "received_at"])
    op.create_index("ix_cases_department_status_received", "cases", ["department", "status", "received_at"])
    op.create_table(
        "drafts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(36), sa.ForeignKey("cases.id"), nullable=False, index=True),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.UniqueConstraint("case_id", "number", name="uq_drafts_case_number"),
    )
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(36), sa.ForeignKey("cases.id"), nullable=False, index=True),
        sa.Column("action", sa.String(20), nullable=False, index=True),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("draft_no", sa.Integer(), nullable=False),
        sa.Column("edited_fields", sa.JSON(), nullable=False),
        sa.Column("edited", sa.Boolean(), nullable=False),
        sa.Column("department", sa.String(100)),
        sa.Column("typical_problem_id", sa.String(100)),
        sa.Column("root_cause", sa.Text()),
        sa.Column("reply", sa.Text()),
        sa.Column("reason", sa.Text()),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(36), sa.ForeignKey("cases.id"), nullable=False, index=True),
        sa.Column("at", TZ, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_APPEND_ONLY)
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_events_no_{event.lower()} BEFORE {event} ON audit_events "
                "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS audit_events_append_only()")
    for table in ("audit_events", "decisions", "drafts", "cases", "batches", "api_keys", "users"):
        op.drop_table(table)
