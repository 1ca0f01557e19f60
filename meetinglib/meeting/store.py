"""The meeting store: everything the weekly meetings accumulate, in a real database.

Meetings, attendees and their attendance, the issues departments submit, decisions,
action items and feedback live in one SQL database reached through SQLAlchemy Core:
a SQLite file by default (``store.path`` in params, ``../data/meeting.db`` beside the
params file when unset), or any SQLAlchemy URL for a shared server (``store.url``, or
``store.url_env`` naming an environment variable when the URL holds a password).

The schema is versioned. ``schema_version`` records each migration applied; the
migrations are ordered functions in ``MIGRATIONS``, each run in its own transaction
together with its version row, so a database is created on first use and upgraded in
place, one step at a time, and a failed step leaves the previous version intact.
``METADATA`` describes the current schema for queries; ``tests/test_store.py`` checks
that the migrations produce exactly it.

Writes are transactional: ``add_issues`` inserts a whole import or nothing. Times
are stored in UTC without an offset (SQLite has no timezone type); dates are plain
calendar dates; weeks are ISO week text like ``2026-W47``.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from meetinglib.core.csvsafe import safe_row
from meetinglib.core.errors import InputDataError, MeetingError, ParamsError
from meetinglib.core.params import Params
from meetinglib.core.weeks import IsoWeek

SEVERITIES = ("low", "medium", "high", "critical")
ISSUE_STATUSES = ("open", "resolved", "dropped")
ACTION_STATUSES = ("open", "done", "dropped")
ATTENDANCE_ROLES = ("organizer", "required", "optional")
DEFAULT_SQLITE = Path("..") / "data" / "meeting.db"
EXPORT_FORMATS = ("csv", "json")


def _utcnow() -> dt.datetime:
    """Now in UTC, without offset: how the store keeps times."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _in_list(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


# --- the current schema -------------------------------------------------------------------

METADATA = sa.MetaData()

SCHEMA_VERSION = sa.Table(
    "schema_version",
    METADATA,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.DateTime, nullable=False),
)

ISSUES = sa.Table(
    "issues",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("department", sa.String(40), nullable=False),
    sa.Column("week", sa.String(8), nullable=False),  # the report week it was raised for
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("severity", sa.String(10), nullable=False),
    sa.Column("segment", sa.String(300), nullable=False, default=""),  # "carrier=X;region=Y"
    sa.Column("first_seen", sa.Date),
    sa.Column("submitter", sa.String(100), nullable=False, default=""),
    sa.Column("source", sa.String(300), nullable=False),  # file name, "cli" or "form"
    sa.Column("row_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("status", sa.String(10), nullable=False, default="open"),
    sa.Column("created_at", sa.DateTime, nullable=False),
    # version 2
    sa.Column("source_row", sa.Integer),  # row of the submitted file, for people
    sa.Column("resolved_week", sa.String(8)),
    sa.Column("updated_at", sa.DateTime),
    sa.CheckConstraint(_in_list("severity", SEVERITIES), name="ck_issues_severity"),
    sa.CheckConstraint(_in_list("status", ISSUE_STATUSES), name="ck_issues_status"),
)
sa.Index("ix_issues_week_department", ISSUES.c.week, ISSUES.c.department)

MEETINGS = sa.Table(
    "meetings",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("week", sa.String(8), nullable=False, unique=True),  # the report week discussed
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("starts_at", sa.DateTime, nullable=False),
    sa.Column("ends_at", sa.DateTime, nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("place", sa.String(300)),
    sa.Column("online_link", sa.String(500)),
    sa.Column("organizer_name", sa.String(100)),
    sa.Column("organizer_email", sa.String(200)),
    sa.Column("uid", sa.String(200), nullable=False, unique=True),  # iCalendar UID
    sa.Column("sequence", sa.Integer, nullable=False, default=0),  # iCalendar SEQUENCE
    sa.Column("invite_hash", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

ATTENDEES = sa.Table(
    "attendees",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("email", sa.String(200), nullable=False, unique=True),
    sa.Column("department", sa.String(40)),
)

ATTENDANCE = sa.Table(
    "attendance",
    METADATA,
    sa.Column("meeting_id", sa.Integer, sa.ForeignKey("meetings.id"), primary_key=True),
    sa.Column("attendee_id", sa.Integer, sa.ForeignKey("attendees.id"), primary_key=True),
    sa.Column("role", sa.String(10), nullable=False),
    sa.Column("present", sa.Boolean),  # NULL until recorded at the meeting
    sa.CheckConstraint(_in_list("role", ATTENDANCE_ROLES), name="ck_attendance_role"),
)

DECISIONS = sa.Table(
    "decisions",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("meeting_id", sa.Integer, sa.ForeignKey("meetings.id"), nullable=False),
    sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id")),
    sa.Column("department", sa.String(40)),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

ACTION_ITEMS = sa.Table(
    "action_items",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("meeting_id", sa.Integer, sa.ForeignKey("meetings.id"), nullable=False),
    sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id")),
    sa.Column("decision_id", sa.Integer, sa.ForeignKey("decisions.id")),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("owner", sa.String(100), nullable=False),
    sa.Column("department", sa.String(40), nullable=False),
    sa.Column("due_date", sa.Date, nullable=False),
    sa.Column("status", sa.String(10), nullable=False, default="open"),
    sa.Column("note", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("closed_at", sa.DateTime),
    sa.CheckConstraint(_in_list("status", ACTION_STATUSES), name="ck_action_items_status"),
)

FEEDBACK = sa.Table(
    "feedback",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("meeting_id", sa.Integer, sa.ForeignKey("meetings.id"), nullable=False),
    sa.Column("attendee_id", sa.Integer, sa.ForeignKey("attendees.id")),  # NULL: anonymous
    sa.Column("rating", sa.Integer),
    sa.Column("comment", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.CheckConstraint("rating IS NULL OR rating BETWEEN 1 AND 5", name="ck_feedback_rating"),
)

# version 3: the minutes of a meeting. New tables only, so that the version-2 tables keep
# their version-2 definition (see _migration_2).
ATTENDANCE_STATUSES = ("present", "absent", "delegate")

MINUTES = sa.Table(
    "minutes",
    METADATA,
    sa.Column("meeting_id", sa.Integer, sa.ForeignKey("meetings.id"), primary_key=True),
    sa.Column("summary", sa.Text, nullable=False, default=""),
    sa.Column("plan", sa.Text, nullable=False, default=""),  # next week's plan as decided
    sa.Column("source", sa.String(300), nullable=False),  # file name, "console" or "cli"
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("recorded_at", sa.DateTime, nullable=False),
    sa.Column("sent_at", sa.DateTime),  # when the minutes went out to the attendees
    sa.Column("sent_to", sa.Integer),  # recipients the server accepted
)

ATTENDANCE_RECORDS = sa.Table(
    "attendance_records",
    METADATA,
    sa.Column("meeting_id", sa.Integer, sa.ForeignKey("meetings.id"), primary_key=True),
    sa.Column("attendee_id", sa.Integer, sa.ForeignKey("attendees.id"), primary_key=True),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("delegate", sa.String(100), nullable=False, default=""),
    sa.CheckConstraint(
        _in_list("status", ATTENDANCE_STATUSES), name="ck_attendance_records_status"
    ),
)

SEGMENT_TIMES = sa.Table(
    "segment_times",
    METADATA,
    sa.Column("meeting_id", sa.Integer, sa.ForeignKey("meetings.id"), primary_key=True),
    sa.Column("segment", sa.String(60), primary_key=True),  # agenda key or department code
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("planned_minutes", sa.Integer, nullable=False),
    sa.Column("actual_minutes", sa.Integer),
)


# --- migrations ---------------------------------------------------------------------------
# Each migration declares the tables as they were at its version (never the current
# METADATA, which moves on), so that upgrading an old database replays history exactly.


def _migration_1(conn: Connection) -> None:
    """Issue intake: the version table and issues."""
    md = sa.MetaData()
    sa.Table(
        "schema_version",
        md,
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("description", sa.String(200), nullable=False),
        sa.Column("applied_at", sa.DateTime, nullable=False),
    )
    issues = sa.Table(
        "issues",
        md,
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
        sa.CheckConstraint(_in_list("severity", SEVERITIES), name="ck_issues_severity"),
        sa.CheckConstraint(_in_list("status", ISSUE_STATUSES), name="ck_issues_status"),
    )
    sa.Index("ix_issues_week_department", issues.c.week, issues.c.department)
    md.create_all(conn)


def _add_column(conn: Connection, table: str, column: sa.Column) -> None:
    kind = column.type.compile(dialect=conn.dialect)
    name = conn.dialect.identifier_preparer.quote(column.name)
    conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {name} {kind}"))


def _migration_2(conn: Connection) -> None:
    """Meetings and their follow-up: attendees, attendance, decisions, action items, feedback."""
    _add_column(conn, "issues", sa.Column("source_row", sa.Integer))
    _add_column(conn, "issues", sa.Column("resolved_week", sa.String(8)))
    _add_column(conn, "issues", sa.Column("updated_at", sa.DateTime))
    conn.execute(sa.text("UPDATE issues SET updated_at = created_at"))
    names = ("meetings", "attendees", "attendance", "decisions", "action_items", "feedback")
    # These tables are new in version 2 and unchanged since: their current definition is
    # their version-2 definition (copy them into a frozen MetaData before changing one).
    METADATA.create_all(conn, tables=[METADATA.tables[n] for n in names])


def _migration_3(conn: Connection) -> None:
    """Minutes: summary and distribution, attendance as recorded, minutes per segment."""
    names = ("minutes", "attendance_records", "segment_times")
    # New in version 3 and unchanged since (freeze a copy before changing one).
    METADATA.create_all(conn, tables=[METADATA.tables[n] for n in names])


Migration = tuple[int, str, Callable[[Connection], None]]
MIGRATIONS: tuple[Migration, ...] = (
    (1, "issue intake", _migration_1),
    (2, "meetings, attendance, decisions, action items, feedback", _migration_2),
    (3, "minutes, attendance records, minutes per agenda segment", _migration_3),
)
CURRENT_VERSION = MIGRATIONS[-1][0]


def schema_version(engine: Engine) -> int:
    """The version of the store's schema; 0 for an empty database."""
    inspector = sa.inspect(engine)
    if not inspector.has_table("schema_version"):
        # Other applications' tables may share the database; ours must not be there yet.
        known = sorted(set(inspector.get_table_names()) & set(METADATA.tables))
        if known:
            raise InputDataError(
                f"database {_safe_url(engine)} has meeting tables {known} but no schema_version "
                "table; it was not created by meetinglib. Point store.path or store.url at "
                "another database."
            )
        return 0
    with engine.connect() as conn:
        version = conn.execute(sa.select(sa.func.max(SCHEMA_VERSION.c.version))).scalar()
    return int(version or 0)


def upgrade(engine: Engine, target: int | None = None) -> int:
    """Apply the migrations after the store's version, up to ``target`` (default: all).

    Each step runs in its own transaction with its version row. Returns the version
    reached. A store newer than this meetinglib is an error, not silently used.
    """
    target = CURRENT_VERSION if target is None else target
    current = schema_version(engine)
    if current > CURRENT_VERSION:
        raise InputDataError(
            f"the store {_safe_url(engine)} has schema version {current}, newer than the "
            f"{CURRENT_VERSION} this meetinglib knows; upgrade meetinglib to use it."
        )
    for version, description, migrate in MIGRATIONS:
        if current < version <= target:
            with engine.begin() as conn:
                migrate(conn)
                conn.execute(
                    SCHEMA_VERSION.insert().values(
                        version=version, description=description, applied_at=_utcnow()
                    )
                )
            current = version
    return current


# --- connecting ---------------------------------------------------------------------------


def store_url(params: Params) -> str:
    """The store's SQLAlchemy URL: url_env, url, path, or ../data/meeting.db beside params."""
    cfg = params.store
    if cfg.url_env:
        url = os.environ.get(cfg.url_env)
        if not url:
            raise ParamsError(
                f"environment variable {cfg.url_env} (named by store.url_env) is not set; "
                "export it with the store's SQLAlchemy URL."
            )
        return url
    if cfg.url:
        return cfg.url
    if cfg.path is not None:
        path = Path(cfg.path)
    else:
        base = Path(params.files[0]).parent if params.files else Path.cwd()
        path = (base / DEFAULT_SQLITE).resolve()
    return f"sqlite:///{path}"


def _safe_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _sqlite_transactions(engine: Engine) -> None:
    """Let SQLAlchemy, not the sqlite3 module, begin transactions, so DDL is transactional.

    The sqlite3 module only opens a transaction before INSERT/UPDATE/DELETE and
    commits around CREATE/ALTER, which would leave a half-applied migration behind.
    """

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")


def connect(url: str) -> Engine:
    """An engine for ``url``; a SQLite file's folder is created, its transactions made real."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ParamsError(f"store URL is not a SQLAlchemy URL: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": 30})
        _sqlite_transactions(engine)
        return engine
    return sa.create_engine(parsed, pool_pre_ping=True)


# --- the store ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AddResult:
    """What ``add_issues`` did: ids of the rows added, hashes already present."""

    added: tuple[int, ...]
    skipped: tuple[str, ...]


@dataclass(frozen=True)
class MeetingRecord:
    """A meeting as the invite needs it: its id, iCalendar UID and SEQUENCE."""

    id: int
    uid: str
    sequence: int


class Store:
    """The meeting store; create with ``open_store(params)`` or ``Store.at(url)``."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @classmethod
    def at(cls, url: str, *, target: int | None = None) -> Store:
        """Open the store at ``url``, creating or upgrading its schema (to ``target``)."""
        engine = connect(url)
        try:
            upgrade(engine, target)
        except sa.exc.OperationalError as exc:
            engine.dispose()
            raise MeetingError(
                f"cannot open the store {sa.make_url(url).render_as_string(hide_password=True)}:"
                f" {exc.orig}. Check store.path / store.url and that the database is reachable."
            ) from None
        return cls(engine)

    @property
    def url(self) -> str:
        """The URL with any password hidden, for messages."""
        return _safe_url(self.engine)

    @property
    def version(self) -> int:
        return schema_version(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection in a transaction: committed on success, rolled back on any error."""
        with self.engine.begin() as conn:
            yield conn

    # --- issues -----------------------------------------------------------------------

    def add_issues(self, rows: Iterable[Mapping[str, Any]]) -> AddResult:
        """Insert issues in one transaction, skipping those whose row_hash is stored already.

        Each row needs department, week, title, severity, source and row_hash; the
        database checks severity and status. Any failing row rolls the whole batch back.
        """
        rows = [dict(r) for r in rows]
        try:
            return self._add_issues(rows)
        except sa.exc.IntegrityError as exc:
            raise InputDataError(
                f"the store {self.url} refused an issue ({exc.orig}); the whole batch of "
                f"{len(rows)} rows was rolled back and nothing was written. Check the values "
                f"(severity one of {SEVERITIES}, status one of {ISSUE_STATUSES})."
            ) from None

    def _add_issues(self, rows: list[dict[str, Any]]) -> AddResult:
        now = _utcnow()
        added: list[int] = []
        skipped: list[str] = []
        with self.transaction() as conn:
            hashes = [r["row_hash"] for r in rows]
            present: set[str] = set()
            for chunk in _chunks(hashes, 500):
                present |= set(
                    conn.execute(
                        sa.select(ISSUES.c.row_hash).where(ISSUES.c.row_hash.in_(chunk))
                    ).scalars()
                )
            for row in rows:
                if row["row_hash"] in present:
                    skipped.append(row["row_hash"])
                    continue
                values = {
                    "description": "",
                    "segment": "",
                    "submitter": "",
                    "status": "open",
                    **row,
                    "created_at": now,
                    "updated_at": now,
                }
                result = conn.execute(ISSUES.insert().values(**values))
                added.append(int(result.inserted_primary_key[0]))
                present.add(row["row_hash"])
        return AddResult(tuple(added), tuple(skipped))

    def issues(
        self,
        *,
        week: str | None = None,
        through_week: str | None = None,
        since_week: str | None = None,
        department: str | None = None,
        status: str | None = None,
    ) -> pd.DataFrame:
        """Issues as a frame (columns of the issues table), oldest first.

        ``week`` selects one week; ``since_week``/``through_week`` an inclusive range
        (ISO week text sorts chronologically).
        """
        query = sa.select(ISSUES).order_by(ISSUES.c.week, ISSUES.c.id)
        if week is not None:
            query = query.where(ISSUES.c.week == week)
        if through_week is not None:
            query = query.where(ISSUES.c.week <= through_week)
        if since_week is not None:
            query = query.where(ISSUES.c.week >= since_week)
        if department is not None:
            query = query.where(ISSUES.c.department == department)
        if status is not None:
            query = query.where(ISSUES.c.status == status)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return _frame(rows, [c.name for c in ISSUES.columns])

    def set_issue_status(self, issue_ids: Iterable[int], status: str, week: str | None) -> int:
        """Mark issues resolved/dropped (in ``week``) or open again; returns rows changed."""
        if status not in ISSUE_STATUSES:
            raise ParamsError(f"issue status {status!r} unknown; use one of {ISSUE_STATUSES}")
        ids = list(issue_ids)
        with self.transaction() as conn:
            result = conn.execute(
                ISSUES.update()
                .where(ISSUES.c.id.in_(ids))
                .values(
                    status=status,
                    resolved_week=None if status == "open" else week,
                    updated_at=_utcnow(),
                )
            )
        return int(result.rowcount)

    # --- meetings ---------------------------------------------------------------------

    def record_meeting(
        self,
        week: str,
        *,
        details: Mapping[str, Any],
        uid: str,
        invite_hash: str,
        people: Sequence[Mapping[str, Any]],
    ) -> MeetingRecord:
        """Create or update the meeting about ``week`` and who is invited to it.

        ``details``: title, starts_at, ends_at (UTC, no offset), timezone, place,
        online_link, organizer_name, organizer_email. The iCalendar SEQUENCE goes up by
        one whenever ``invite_hash`` (time, place, link) changes, so calendars update
        the event instead of adding a second one. ``people``: name, email, department,
        role; attendance already recorded is kept.
        """
        now = _utcnow()
        with self.transaction() as conn:
            row = conn.execute(sa.select(MEETINGS).where(MEETINGS.c.week == week)).mappings()
            found = row.first()
            if found is None:
                meeting_id = conn.execute(
                    MEETINGS.insert().values(
                        week=week,
                        uid=uid,
                        sequence=0,
                        invite_hash=invite_hash,
                        created_at=now,
                        updated_at=now,
                        **details,
                    )
                ).inserted_primary_key[0]
                sequence = 0
                uid_stored = uid
            else:
                meeting_id = found["id"]
                changed = found["invite_hash"] != invite_hash
                sequence = found["sequence"] + (1 if changed else 0)
                uid_stored = found["uid"]
                conn.execute(
                    MEETINGS.update()
                    .where(MEETINGS.c.id == meeting_id)
                    .values(sequence=sequence, invite_hash=invite_hash, updated_at=now, **details)
                )
            for person in people:
                attendee_id = self._attendee_id(conn, person)
                key = (ATTENDANCE.c.meeting_id == meeting_id) & (
                    ATTENDANCE.c.attendee_id == attendee_id
                )
                exists = conn.execute(sa.select(ATTENDANCE.c.role).where(key)).first()
                if exists is None:
                    conn.execute(
                        ATTENDANCE.insert().values(
                            meeting_id=meeting_id, attendee_id=attendee_id, role=person["role"]
                        )
                    )
                else:
                    conn.execute(ATTENDANCE.update().where(key).values(role=person["role"]))
        return MeetingRecord(int(meeting_id), uid_stored, int(sequence))

    @staticmethod
    def _attendee_id(conn: Connection, person: Mapping[str, Any]) -> int:
        email = str(person["email"]).strip().lower()
        found = conn.execute(sa.select(ATTENDEES.c.id).where(ATTENDEES.c.email == email)).first()
        values = {"name": person["name"], "department": person.get("department")}
        if found is None:
            result = conn.execute(ATTENDEES.insert().values(email=email, **values))
            return int(result.inserted_primary_key[0])
        conn.execute(ATTENDEES.update().where(ATTENDEES.c.id == found[0]).values(**values))
        return int(found[0])

    def action_items(
        self, *, status: str | None = None, department: str | None = None
    ) -> pd.DataFrame:
        """Action items (with the week of the meeting that set them), oldest first."""
        query = (
            sa.select(ACTION_ITEMS, MEETINGS.c.week.label("meeting_week"))
            .join(MEETINGS, MEETINGS.c.id == ACTION_ITEMS.c.meeting_id)
            .order_by(ACTION_ITEMS.c.due_date, ACTION_ITEMS.c.id)
        )
        if status is not None:
            query = query.where(ACTION_ITEMS.c.status == status)
        if department is not None:
            query = query.where(ACTION_ITEMS.c.department == department)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return _frame(rows, [*(c.name for c in ACTION_ITEMS.columns), "meeting_week"])

    # --- backup -----------------------------------------------------------------------

    def export(self, folder: str | os.PathLike[str], fmt: str = "csv") -> list[Path]:
        """Dump every table to ``folder``: one UTF-8 CSV per table, or one ``store.json``.

        Read in one transaction, so the files are a consistent snapshot. Returns the
        files written.
        """
        if fmt not in EXPORT_FORMATS:
            raise ParamsError(f"export format {fmt!r} unknown; use one of {EXPORT_FORMATS}")
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        tables: dict[str, tuple[list[str], list[Sequence[Any]]]] = {}
        with self.engine.connect() as conn, conn.begin():
            for table in METADATA.sorted_tables:
                columns = [c.name for c in table.columns]
                order = [table.c[c] for c in columns if table.c[c].primary_key]
                rows = conn.execute(sa.select(table).order_by(*order)).all()
                tables[table.name] = (columns, [tuple(r) for r in rows])
        written = []
        if fmt == "json":
            doc = {
                "schema_version": self.version,
                "exported_at": _utcnow().isoformat(timespec="seconds") + "Z",
                "tables": {
                    name: [dict(zip(cols, map(_json_value, row), strict=True)) for row in rows]
                    for name, (cols, rows) in tables.items()
                },
            }
            path = out / "store.json"
            path.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
            written.append(path)
            return written
        for name, (cols, rows) in tables.items():
            path = out / f"{name}.csv"
            with open(path, "w", encoding="utf-8", newline="") as fh:
                writer = csv.writer(fh)
                # Neutralised for spreadsheets; store.json keeps the exact values.
                writer.writerow(safe_row(cols))
                writer.writerows([safe_row(_csv_value(v) for v in row) for row in rows])
            written.append(path)
        return written


def open_store(params: Params) -> Store:
    """The store named by ``params.store``, created or upgraded to the current schema."""
    return Store.at(store_url(params))


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _frame(rows: Sequence[Mapping[str, Any]], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame([dict(r) for r in rows], columns=columns)
    if "id" in frame.columns:
        frame["id"] = frame["id"].astype("int64")
    return frame


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    return _json_value(value)


def meeting_id(store: Store, week: IsoWeek | str) -> int | None:
    """The id of the meeting about ``week``; None when it is not in the store."""
    with store.engine.connect() as conn:
        found = conn.execute(
            sa.select(MEETINGS.c.id).where(MEETINGS.c.week == str(IsoWeek.parse(week)))
        ).scalar()
    return None if found is None else int(found)
