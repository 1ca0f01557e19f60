"""Meetings and their follow-up: attendees, attendance, decisions, action items, feedback.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("issues", sa.Column("source_row", sa.Integer))
    op.add_column("issues", sa.Column("resolved_week", sa.String(8)))
    op.add_column("issues", sa.Column("updated_at", sa.DateTime))
    op.execute("UPDATE issues SET updated_at = created_at")
    op.create_table(
        "meetings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("week", sa.String(8), nullable=False, unique=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("starts_at", sa.DateTime, nullable=False),
        sa.Column("ends_at", sa.DateTime, nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("place", sa.String(300)),
        sa.Column("online_link", sa.String(500)),
        sa.Column("organizer_name", sa.String(100)),
        sa.Column("organizer_email", sa.String(200)),
        sa.Column("uid", sa.String(200), nullable=False, unique=True),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("invite_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "attendees",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("email", sa.String(200), nullable=False, unique=True),
        sa.Column("department", sa.String(40)),
    )
    op.create_table(
        "attendance",
        sa.Column("meeting_id", sa.Integer, sa.ForeignKey("meetings.id"), primary_key=True),
        sa.Column("attendee_id", sa.Integer, sa.ForeignKey("attendees.id"), primary_key=True),
        sa.Column("role", sa.String(10), nullable=False),
        sa.Column("present", sa.Boolean),
        sa.CheckConstraint(
            "role IN ('organizer', 'required', 'optional')", name="ck_attendance_role"
        ),
    )
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("meeting_id", sa.Integer, sa.ForeignKey("meetings.id"), nullable=False),
        sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id")),
        sa.Column("department", sa.String(40)),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "action_items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("meeting_id", sa.Integer, sa.ForeignKey("meetings.id"), nullable=False),
        sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id")),
        sa.Column("decision_id", sa.Integer, sa.ForeignKey("decisions.id")),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("department", sa.String(40), nullable=False),
        sa.Column("due_date", sa.Date, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("closed_at", sa.DateTime),
        sa.CheckConstraint("status IN ('open', 'done', 'dropped')", name="ck_action_items_status"),
    )
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("meeting_id", sa.Integer, sa.ForeignKey("meetings.id"), nullable=False),
        sa.Column("attendee_id", sa.Integer, sa.ForeignKey("attendees.id")),
        sa.Column("rating", sa.Integer),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.CheckConstraint("rating IS NULL OR rating BETWEEN 1 AND 5", name="ck_feedback_rating"),
    )


def downgrade() -> None:
    for table in ("feedback", "action_items", "decisions", "attendance", "attendees", "meetings"):
        op.drop_table(table)
    for column in ("updated_at", "resolved_week", "source_row"):
        op.drop_column("issues", column)
