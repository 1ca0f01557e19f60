"""Per-item records: a version on every item the minutes hold.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

VERSIONED = (
    "decisions",
    "action_items",
    "feedback",
    "minutes",
    "attendance_records",
    "segment_times",
)


def upgrade() -> None:
    for table in VERSIONED:
        # Items stored before count as added once: version 1.
        op.add_column(table, sa.Column("version", sa.Integer, nullable=False, server_default="1"))


def downgrade() -> None:
    for table in VERSIONED:
        op.drop_column(table, "version")
