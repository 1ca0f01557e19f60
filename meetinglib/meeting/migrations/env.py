"""Alembic's environment: migrate the connection that ``store.upgrade`` hands over."""

from __future__ import annotations

from alembic import context

from meetinglib.meeting.store import METADATA

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=METADATA, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
