"""Minutes: summary and distribution, attendance as recorded, minutes per agenda segment.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "minutes",
        sa.Column("meeting_id", sa.Integer, sa.ForeignKey("meetings.id"), primary_key=True),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("plan", sa.Text, nullable=False),
        sa.Column("source", sa.String(300), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
        sa.Column("sent_at", sa.DateTime),
        sa.Column("sent_to", sa.Integer),
    )
    op.create_table(
        "attendance_records",
        sa.Column("meeting_id", sa.Integer, sa.ForeignKey("meetings.id"), primary_key=True),
        sa.Column("attendee_id", sa.Integer, sa.ForeignKey("attendees.id"), primary_key=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("delegate", sa.String(100), nullable=False),
        sa.CheckConstraint(
            "status IN ('present', 'absent', 'delegate')", name="ck_attendance_records_status"
        ),
    )
    op.create_table(
        "segment_times",
        sa.Column("meeting_id", sa.Integer, sa.ForeignKey("meetings.id"), primary_key=True),
        sa.Column("segment", sa.String(60), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("planned_minutes", sa.Integer, nullable=False),
        sa.Column("actual_minutes", sa.Integer),
    )


def downgrade() -> None:
    for table in ("segment_times", "attendance_records", "minutes"):
        op.drop_table(table)
