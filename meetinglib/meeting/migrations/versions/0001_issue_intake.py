"""Issue intake: the departments' issues (schema version 1).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SEVERITIES = "'low', 'medium', 'high', 'critical'"
ISSUE_STATUSES = "'open', 'resolved', 'dropped'"


def upgrade() -> None:
    op.create_table(
        "issues",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("department", sa.String(40), nullable=False),
        sa.Column("week", sa.String(8), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("segment", sa.String(300), nullable=False),
        sa.Column("first_seen", sa.Date),
        sa.Column("submitter", sa.String(100), nullable=False),
        sa.Column("source", sa.String(300), nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.CheckConstraint(f"severity IN ({SEVERITIES})", name="ck_issues_severity"),
        sa.CheckConstraint(f"status IN ({ISSUE_STATUSES})", name="ck_issues_status"),
    )
    op.create_index("ix_issues_week_department", "issues", ["week", "department"])


def downgrade() -> None:
    op.drop_index("ix_issues_week_department", "issues")
    op.drop_table("issues")
