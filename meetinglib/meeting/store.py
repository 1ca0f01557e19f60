"""The meeting store: everything the weekly meetings accumulate, in a real database.

Meetings, attendees and their attendance, the issues departments submit, decisions,
action items and feedback live in one SQL database reached through SQLAlchemy Core:
a SQLite file by default (``store.path`` in params, ``../data/meeting.db`` beside the
params file when unset), or any SQLAlchemy URL for a shared server (``store.url``, or
``store.url_env`` naming an environment variable when the URL holds a password).

The schema is defined once, in ``METADATA``. Its history is a chain of Alembic
revisions inside the package (``meetinglib/meeting/migrations/versions``), applied by
``upgrade`` whenever a store is opened: a database is created on first use and
upgraded in place. The whole upgrade is one transaction (DDL is transactional on
SQLite and PostgreSQL), taken under a lock so that several processes opening a new
store at once create it once; a failing step leaves the store as it was. Stores made
before Alembic kept their version in a ``schema_version`` table: ``upgrade`` stamps
the matching revision (schema version N is revision ``000N``), then revision 0005
drops that table. ``tests/test_store.py`` checks that the revisions produce exactly
``METADATA`` (Alembic's comparison finds no difference) and that a store built from
the previous release's DDL upgrades with its data.

Several processes may write at once. Each write is one short transaction run by
``Store.write``: on SQLite (in WAL mode, so readers never wait) it begins IMMEDIATE,
taking the write lock first and waiting for it up to ``store.busy_timeout`` seconds; a
lock error (SQLite's "database is locked", PostgreSQL's serialization failure,
deadlock or lock timeout) rolls the transaction back and runs it again after a
growing, jittered pause, until the busy timeout; then ``StoreLockedError`` (exit code
5) names the store and the remedy. Writes are idempotent where a retry or a second
writer could repeat them: an issue's ``row_hash`` is inserted once (ON CONFLICT DO
NOTHING), and writing values an item already holds changes nothing.

Writes are transactional: ``add_issues`` inserts a whole import or nothing. Times
are stored in UTC without an offset (SQLite has no timezone type); dates are plain
calendar dates; weeks are ISO week text like ``2026-W47``.

Per-item records
----------------
What a meeting records is stored item by item, so that several people (the
note-taker, each department's lead, on one store) can record the meeting at once:

=====================  ===================================  ==========================
item                   identified by                        operations
=====================  ===================================  ==========================
attendance             meeting week + the person's e-mail   ``set_attendance``
minutes per segment    meeting week + segment key           ``plan_segments``,
                                                            ``set_segment_time``
decision               id                                   ``add_decision``,
                                                            ``update_decision``,
                                                            ``delete_decision``
action item            id                                   ``add_action_item``,
                                                            ``update_action_item``,
                                                            ``close_action_item``
feedback               id                                   ``add_feedback``,
                                                            ``update_feedback``,
                                                            ``delete_feedback``
summary and plan       meeting week                         ``set_summary``
=====================  ===================================  ==========================

``meeting_state(store, week)`` returns everything recorded for a week (a
``MeetingState``: attendance, segments, decisions, action items set at the meeting and
the earlier ones still open, feedback, summary and plan), each item with its
``version``. An item is at version 1 when added and one more at every change; an
attendance, a segment's actual minutes or a summary not yet recorded is at version 0.

Every change names the version it was made on (``expected_version``). The store
applies it only if the item is still at that version (the UPDATE itself checks it, so
this holds on SQLite and PostgreSQL alike); otherwise it raises
``ConcurrentEditError`` (exit code 3) naming the item, the version expected and the one
stored, and changes nothing: the other person's edit is never overwritten unseen.
``expected_version=None`` applies a change whatever the version (the command line, a
minutes file). Writing values an item already holds changes nothing, not even its
version, so recording the same thing twice is harmless. Adding, editing or closing one
item never touches another. Each operation is one short transaction; inside
``with store.batch() as batch`` operations given ``batch`` instead of the store commit
together or not at all (a minutes file is recorded so). Each returns the item as
stored afterwards.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import sqlalchemy as sa
from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine

from meetinglib.core.csvsafe import FILE_ENCODING, safe_row
from meetinglib.core.errors import (
    ConcurrentEditError,
    DriverMissingError,
    EnvironmentProblem,
    InputDataError,
    ParamsError,
    StoreLockedError,
)
from meetinglib.core.params import Params
from meetinglib.core.secrets import redact
from meetinglib.core.weeks import IsoWeek

T = TypeVar("T")

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


def _version() -> sa.Column[int]:
    """The item's version: 1 when added, one more at every change (see "Per-item records")."""
    return sa.Column("version", sa.Integer, nullable=False, default=1, server_default="1")


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
    _version(),  # version 4
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
    _version(),  # version 4
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
    _version(),  # version 4
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
    _version(),  # version 4: of the summary and plan
)

ATTENDANCE_RECORDS = sa.Table(
    "attendance_records",
    METADATA,
    sa.Column("meeting_id", sa.Integer, sa.ForeignKey("meetings.id"), primary_key=True),
    sa.Column("attendee_id", sa.Integer, sa.ForeignKey("attendees.id"), primary_key=True),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("delegate", sa.String(100), nullable=False, default=""),
    _version(),  # version 4
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
    _version(),  # version 4: of the actual minutes
)

# What each minutes file recorded last (version 6): a file recorded again is merged
# against it, so that only what the file changed since is written (record_document).
MINUTES_FILES = sa.Table(
    "minutes_files",
    METADATA,
    sa.Column("meeting_id", sa.Integer, sa.ForeignKey("meetings.id"), primary_key=True),
    sa.Column("source", sa.String(300), primary_key=True),  # the file's name
    sa.Column("document", sa.Text, nullable=False),  # JSON: the entries and the item ids
    sa.Column("recorded_at", sa.DateTime, nullable=False),
)


# --- migrations ---------------------------------------------------------------------------

MIGRATIONS = Path(__file__).with_name("migrations")
REVISIONS = ("0001", "0002", "0003", "0004", "0005", "0006")  # schema version N is revision N
CURRENT_VERSION = len(REVISIONS)
_LEGACY_TABLE = "schema_version"  # where stores before Alembic kept their version


def _alembic(conn: Connection) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def _version_on(conn: Connection, url: str) -> int:
    inspector = sa.inspect(conn)
    if inspector.has_table("alembic_version"):
        revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        if revision is None:
            return 0
        if revision not in REVISIONS:
            raise InputDataError(
                f"the store {url} is at schema revision {revision!r}, which this meetinglib "
                f"(revisions up to {REVISIONS[-1]}) does not know; upgrade meetinglib to use it."
            )
        return REVISIONS.index(revision) + 1
    if inspector.has_table(_LEGACY_TABLE):
        found = conn.execute(sa.text(f"SELECT MAX(version) FROM {_LEGACY_TABLE}")).scalar()
        return int(found or 0)
    # Other applications' tables may share the database; ours must not be there yet.
    known = sorted(set(inspector.get_table_names()) & set(METADATA.tables))
    if known:
        raise InputDataError(
            f"database {url} has meeting tables {known} but no schema version; it was not "
            "created by meetinglib. Point store.path or store.url at another database."
        )
    return 0


def schema_version(engine: Engine) -> int:
    """The version of the store's schema (N for revision 000N); 0 for an empty database."""
    with engine.connect() as conn:
        return _version_on(conn, _safe_url(engine))


def _refuse_newer(current: int, url: str) -> None:
    if current > CURRENT_VERSION:
        raise InputDataError(
            f"the store {url} has schema version {current}, newer than the "
            f"{CURRENT_VERSION} this meetinglib knows; upgrade meetinglib to use it."
        )


def upgrade(engine: Engine, target: int | None = None) -> int:
    """Bring the store's schema to version ``target`` (default: the current); the version.

    One transaction under a lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory
    lock), so concurrent openers wait and the last ones find nothing to do. A store
    newer than this meetinglib is an error, not silently used.
    """
    target = CURRENT_VERSION if target is None else target
    url = _safe_url(engine)
    try:
        current = schema_version(engine)
    except InputDataError:
        # Read without the lock, statement by statement, the catalogue can change under
        # us: another opener's upgrade may commit between "no alembic_version yet" and
        # "meeting tables exist". Judge again under the lock, where it cannot.
        current = -1
    _refuse_newer(current, url)
    if current >= target:
        return current  # the common case: no lock taken
    with _begin_write(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK})
        current = _version_on(conn, url)
        _refuse_newer(current, url)
        if current >= target:
            return current
        config = _alembic(conn)
        if current and not sa.inspect(conn).has_table("alembic_version"):
            alembic_command.stamp(config, REVISIONS[current - 1])
        alembic_command.upgrade(config, REVISIONS[target - 1])
    return target


_UPGRADE_LOCK = 0x6D656574  # any constant, the same for every meetinglib process


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


_WRITE = "meetinglib_write"  # execution option: this transaction will write
DEFAULT_BUSY_TIMEOUT = 30.0  # seconds; store.busy_timeout in params


def _sqlite_transactions(engine: Engine, busy_timeout: float) -> None:
    """SQLite for several writers: WAL, a busy timeout, transactions begun by SQLAlchemy.

    WAL lets readers go on while one process writes. The sqlite3 module would only
    open a transaction before INSERT/UPDATE/DELETE and commit around CREATE/ALTER
    (leaving a half-applied migration behind); here SQLAlchemy begins every
    transaction, and one that will write begins IMMEDIATE: it takes the write lock
    first (waiting up to the busy timeout) instead of failing when it upgrades a read.
    """

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        _retry_locked(lambda: cursor.execute("PRAGMA journal_mode = WAL"), busy_timeout)
        cursor.execute("PRAGMA synchronous = NORMAL")  # durable at every checkpoint in WAL
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        writing = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")


def _retry_locked(work: Callable[[], T], seconds: float) -> T:
    """``work()``, again after a growing pause while it meets a lock, up to ``seconds``."""
    deadline = time.monotonic() + seconds
    pause = 0.02
    races = 0
    while True:
        try:
            return work()
        except Exception as exc:
            if _is_race(exc) and races < 3:
                races += 1  # another writer inserted the same key first: look again
            elif not _is_lock_error(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause * (0.5 + random.random()))  # jitter: writers do not retry in step
        pause = min(pause * 2, 1.0)


_LOCK_SQLSTATES = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock timeout


def _is_lock_error(exc: BaseException) -> bool:
    """Whether ``exc`` says another writer holds a lock (worth waiting and retrying)."""
    orig = getattr(exc, "orig", exc)
    if getattr(orig, "sqlstate", None) in _LOCK_SQLSTATES:
        return True
    text = str(orig).lower()
    return "database is locked" in text or "database table is locked" in text


def _is_race(exc: BaseException) -> bool:
    """Whether ``exc`` is PostgreSQL's unique violation, which a concurrent insert of the
    same key causes (re-reading finds that row); SQLite writers never race so."""
    return getattr(getattr(exc, "orig", exc), "sqlstate", None) == "23505"


@contextmanager
def _begin_write(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that will write (on SQLite: BEGIN IMMEDIATE)."""
    with engine.connect() as conn:
        conn.execution_options(**{_WRITE: True})
        with conn.begin():
            yield conn


def connect(url: str, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> Engine:
    """An engine for ``url``; a SQLite file's folder is created, its transactions made real."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ParamsError(f"store URL is not a SQLAlchemy URL: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": busy_timeout})
        _sqlite_transactions(engine, busy_timeout)
        return engine
    # A PostgreSQL writer waits at most the busy timeout for a row another one locked.
    options = {"options": f"-c lock_timeout={int(busy_timeout * 1000)}"}
    if parsed.get_backend_name() != "postgresql":
        options = {}
    try:
        return sa.create_engine(parsed, pool_pre_ping=True, connect_args=options)
    except (sa.exc.NoSuchModuleError, ModuleNotFoundError) as exc:
        # The URL is fine; this environment lacks the dialect's driver (exit 5).
        driver = getattr(exc, "name", None) or parsed.get_backend_name()
        shown = parsed.render_as_string(hide_password=True)
        raise DriverMissingError(redact(shown), str(driver)) from None


# --- the store ----------------------------------------------------------------------------


# What a corrected row of an issue file changes of the stored issue (not its status).
_CORRECTABLE = frozenset(
    {"description", "severity", "segment", "first_seen", "submitter", "source_row"}
)


@dataclass(frozen=True)
class AddResult:
    """What ``add_issues`` did: ids of the rows added, hashes already present, ids of the
    issues a corrected row updated."""

    added: tuple[int, ...]
    skipped: tuple[str, ...]
    updated: tuple[int, ...] = ()


@dataclass(frozen=True)
class MeetingRecord:
    """A meeting as the invite needs it: its id, iCalendar UID and SEQUENCE."""

    id: int
    uid: str
    sequence: int


class Store:
    """The meeting store; create with ``open_store(params)`` or ``Store.at(url)``."""

    def __init__(self, engine: Engine, busy_timeout: float = DEFAULT_BUSY_TIMEOUT):
        self.engine, self.busy_timeout = engine, busy_timeout

    @classmethod
    def at(
        cls, url: str, *, target: int | None = None, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    ) -> Store:
        """Open the store at ``url``, creating or upgrading its schema (to ``target``).

        ``busy_timeout``: seconds a write waits for other writers before it gives up.
        """
        engine = connect(url, busy_timeout)
        store = cls(engine, busy_timeout)
        try:
            store._locked(lambda: upgrade(engine, target))
        except sa.exc.OperationalError as exc:
            engine.dispose()
            raise EnvironmentProblem(
                store.url,
                f"cannot open the meeting store ({_first_line(exc.orig)})",
                "Check store.path / store.url, that the database is reachable and the file "
                "and its folder writable.",
            ) from None
        except BaseException:
            engine.dispose()
            raise
        return store

    def _locked(self, work: Callable[[], T]) -> T:
        """``work()`` retried with backoff while another writer holds the lock; then
        StoreLockedError (exit code 5) naming the store, never the raw SQL."""
        try:
            return _retry_locked(work, self.busy_timeout)
        except sa.exc.DBAPIError as exc:
            if _is_lock_error(exc):
                raise StoreLockedError(self.location, self.busy_timeout) from None
            raise

    @property
    def location(self) -> str:
        """The SQLite file, or the URL with any password hidden."""
        if self.engine.dialect.name == "sqlite" and self.engine.url.database:
            return self.engine.url.database
        return self.url

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
        """A connection in a write transaction: committed on success, rolled back on error.

        It waits for other writers up to the busy timeout, but cannot be retried: prefer
        ``write``, which can.
        """
        try:
            with _begin_write(self.engine) as conn:
                yield conn
        except sa.exc.DBAPIError as exc:
            if _is_lock_error(exc):
                raise StoreLockedError(self.location, self.busy_timeout) from None
            raise

    def write(self, work: Callable[[Connection], T]) -> T:
        """``work(conn)`` in one short write transaction; returns what it returns.

        When another writer holds the lock the transaction is rolled back and ``work``
        runs again after a growing pause, up to ``busy_timeout`` seconds: ``work``
        must only touch the database.
        """

        def once() -> T:
            with _begin_write(self.engine) as conn:
                return work(conn)

        return self._locked(once)

    def read(self, work: Callable[[Connection], T]) -> T:
        """``work(conn)`` on a connection that only reads; returns what it returns."""

        def once() -> T:
            with self.engine.connect() as conn:
                return work(conn)

        return self._locked(once)

    @contextmanager
    def batch(self) -> Iterator[Batch]:
        """Per-item operations on a ``Batch`` all commit together, or none does."""
        with self.transaction() as conn:
            yield Batch(self, conn)

    # --- issues -----------------------------------------------------------------------

    def add_issues(self, rows: Iterable[Mapping[str, Any]]) -> AddResult:
        """Insert issues in one transaction, skipping those whose row_hash is stored already.

        Each row needs department, week, title, severity, source and row_hash; the
        database checks severity and status. Any failing row rolls the whole batch back.
        A row whose content is new but whose department, week, title and source name an
        issue stored already is that issue corrected (a file imported again after an
        edit): the issue takes the row's values, its status and id stay.
        """
        batch = [dict(r) for r in rows]
        try:
            return self._add_issues(batch)
        except sa.exc.IntegrityError as exc:
            raise InputDataError(
                f"the store {self.url} refused an issue ({exc.orig}); the whole batch of "
                f"{len(batch)} rows was rolled back and nothing was written. Check the values "
                f"(severity one of {SEVERITIES}, status one of {ISSUE_STATUSES})."
            ) from None

    def _add_issues(self, rows: list[dict[str, Any]]) -> AddResult:
        now = _utcnow()

        def work(conn: Connection) -> AddResult:
            added: list[int] = []
            skipped: list[str] = []
            # Hashes stored already are skipped without an INSERT (on PostgreSQL a
            # refused INSERT would still use up an id).
            hashes = [r["row_hash"] for r in rows]
            present: set[str] = set()
            for start in range(0, len(hashes), 500):
                chunk = hashes[start : start + 500]
                query = sa.select(ISSUES.c.row_hash).where(ISSUES.c.row_hash.in_(chunk))
                present |= set(conn.execute(query).scalars())
            updated: list[int] = []
            for row in rows:
                if row["row_hash"] in present:
                    skipped.append(row["row_hash"])
                    continue
                present.add(row["row_hash"])
                same = conn.execute(
                    sa.select(ISSUES.c.id)
                    .where(
                        ISSUES.c.department == row["department"],
                        ISSUES.c.week == row["week"],
                        ISSUES.c.title == row["title"],
                        ISSUES.c.source == row["source"],
                    )
                    .order_by(ISSUES.c.id)
                ).scalar()
                if same is not None:
                    fields = {k: v for k, v in row.items() if k in _CORRECTABLE}
                    conn.execute(
                        ISSUES.update()
                        .where(ISSUES.c.id == same)
                        .values(**fields, row_hash=row["row_hash"], updated_at=now)
                    )
                    updated.append(int(same))
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
                # The row_hash decides: an issue stored already (by an earlier import,
                # an import running at the same moment, or earlier in this batch) is
                # skipped, never duplicated.
                new = _insert_new(conn, ISSUES, values, "row_hash")
                if new is None:
                    skipped.append(row["row_hash"])
                else:
                    added.append(new)
            return AddResult(tuple(added), tuple(skipped), tuple(dict.fromkeys(updated)))

        return self.write(work)

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
        rows = self.read(lambda conn: conn.execute(query).mappings().all())
        return _frame(rows, [c.name for c in ISSUES.columns])

    def set_issue_status(self, issue_ids: Iterable[int], status: str, week: str | None) -> int:
        """Mark issues resolved/dropped (in ``week``) or open again; returns rows changed."""
        changed = self.change_issue_status(issue_ids, status, week)
        return sum(1 for row in changed if row["status"] != status)

    def change_issue_status(
        self, issue_ids: Iterable[int], status: str, week: str | None, note: str = ""
    ) -> list[dict[str, Any]]:
        """Set the issues' status in one transaction; each issue's row as it was before.

        ``week``: the report week that settled them; None: the latest stored meeting, never
        before the week an issue was raised for (reopening clears it). ``note`` is added to
        the description of each issue it changes, marked with the status and week. An
        issue already in ``status`` is left as it is. Unknown ids: InputDataError, nothing
        changed; a week before an issue's own: ParamsError.
        """
        if status not in ISSUE_STATUSES:
            raise ParamsError(f"issue status {status!r} unknown; use one of {ISSUE_STATUSES}")
        ids = list(dict.fromkeys(int(i) for i in issue_ids))

        def work(conn: Connection) -> list[dict[str, Any]]:
            found = {
                int(r["id"]): dict(r)
                for r in conn.execute(sa.select(ISSUES).where(ISSUES.c.id.in_(ids))).mappings()
            }
            if unknown := [i for i in ids if i not in found]:
                raise InputDataError(
                    f"issue(s) {', '.join(f'#{i}' for i in unknown)} not in the store "
                    f"{self.url}; nothing changed. List them with `meeting issues list`."
                )
            latest = ""
            if status != "open" and week is None:
                latest = conn.execute(sa.select(sa.func.max(MEETINGS.c.week))).scalar() or ""
            now = _utcnow()
            before = []
            for issue_id in ids:
                row = found[issue_id]
                when = None if status == "open" else (week or max(latest, row["week"]))
                if when is not None and when < row["week"]:
                    raise ParamsError(
                        f"issue #{issue_id} was raised for {row['week']}; it cannot be settled "
                        f"in {when}, before that. Give --week {row['week']} or later."
                    )
                before.append({**row, "resolved_week_after": when})
                if row["status"] == status:
                    continue
                values: dict[str, Any] = {
                    "status": status,
                    "resolved_week": when,
                    "updated_at": now,
                }
                if note:
                    mark = f"[{status} {when}]" if when else f"[{status}]"
                    text = (row["description"] or "").rstrip()
                    values["description"] = f"{text}\n{mark} {note}" if text else f"{mark} {note}"
                conn.execute(ISSUES.update().where(ISSUES.c.id == issue_id).values(**values))
            return before

        return self.write(work)

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

        def work(conn: Connection) -> MeetingRecord:
            row = conn.execute(sa.select(MEETINGS).where(MEETINGS.c.week == week)).mappings()
            found = row.first()
            if found is None:
                inserted = conn.execute(
                    MEETINGS.insert().values(
                        week=week,
                        uid=uid,
                        sequence=0,
                        invite_hash=invite_hash,
                        created_at=now,
                        updated_at=now,
                        **details,
                    )
                )
                meeting_id = _new_id(inserted)
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

        return self.write(work)

    @staticmethod
    def _attendee_id(conn: Connection, person: Mapping[str, Any]) -> int:
        email = str(person["email"]).strip().lower()
        found = conn.execute(sa.select(ATTENDEES.c.id).where(ATTENDEES.c.email == email)).first()
        values = {"name": person["name"], "department": person.get("department")}
        if found is None:
            result = conn.execute(ATTENDEES.insert().values(email=email, **values))
            return int(_new_id(result))
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
        rows = self.read(lambda conn: conn.execute(query).mappings().all())
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
                found = conn.execute(sa.select(table).order_by(*order)).all()
                tables[table.name] = (columns, [tuple(r) for r in found])
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
            with open(path, "w", encoding=FILE_ENCODING, newline="") as fh:
                writer = csv.writer(fh)
                # Neutralised for spreadsheets; store.json keeps the exact values.
                writer.writerow(safe_row(cols))
                writer.writerows([safe_row(_csv_value(v) for v in row) for row in rows])
            written.append(path)
        return written


class Batch:
    """The store inside one transaction: what ``write``/``read`` do joins that transaction."""

    def __init__(self, store: Store, conn: Connection):
        self.store, self.conn = store, conn

    @property
    def url(self) -> str:
        return self.store.url

    def write(self, work: Callable[[Connection], T]) -> T:
        return work(self.conn)

    def read(self, work: Callable[[Connection], T]) -> T:
        return work(self.conn)


def _insert_new(
    conn: Connection, table: sa.Table, values: Mapping[str, Any], key: str
) -> int | None:
    """Insert the row unless one with the same ``key`` exists; its new id, or None.

    On SQLite and PostgreSQL one statement (INSERT ... ON CONFLICT DO NOTHING), so two
    writers adding the same row at once store it once.
    """
    name = conn.dialect.name
    if name in ("sqlite", "postgresql"):
        dialect = sqlite_dialect if name == "sqlite" else postgresql_dialect
        statement = (
            dialect.insert(table)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[key])
            .returning(table.c.id)
        )
        found = conn.execute(statement).scalar()
        return None if found is None else int(found)
    if conn.execute(sa.select(table.c.id).where(table.c[key] == values[key])).first():
        return None
    return int(_new_id(conn.execute(table.insert().values(**values))))


def open_store(params: Params) -> Store:
    """The store named by ``params.store``, created or upgraded to the current schema."""
    return Store.at(store_url(params), busy_timeout=params.store.busy_timeout)


def _first_line(exc: object) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _new_id(result: sa.CursorResult[Any]) -> int:
    """The id an INSERT of one row gave it."""
    key = result.inserted_primary_key
    assert key is not None  # an INSERT of one row always has one
    return int(key[0])


def _frame(rows: Sequence[Any], columns: list[str]) -> pd.DataFrame:
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
    query = sa.select(MEETINGS.c.id).where(MEETINGS.c.week == str(IsoWeek.parse(week)))
    found = store.read(lambda conn: conn.execute(query).scalar())
    return None if found is None else int(found)


# --- per-item records ---------------------------------------------------------------------
# What a meeting records is kept item by item, each with a version (see the module text):
# several note-takers can add, edit and close items at once without overwriting each
# other, and an edit made on a stale copy is refused instead of silently winning.

Writer = Store | Batch


@dataclass(frozen=True)
class AttendanceItem:
    """An invited person and what was recorded of them; version 0 when nothing is yet."""

    email: str
    name: str
    department: str | None
    role: str  # organizer | required | optional
    status: str | None  # present | absent | delegate; None until recorded
    delegate: str
    version: int


@dataclass(frozen=True)
class SegmentItem:
    """An agenda segment: planned and actual minutes; version of the actual minutes."""

    segment: str
    position: int
    title: str
    planned_minutes: int
    actual_minutes: int | None
    version: int


@dataclass(frozen=True)
class DecisionItem:
    """A decision of a meeting."""

    id: int
    text: str
    department: str | None
    issue_id: int | None
    version: int


@dataclass(frozen=True)
class ActionItem:
    """An action item, with the week of the meeting that set it."""

    id: int
    meeting_week: str
    description: str
    owner: str
    department: str
    due_date: dt.date
    status: str
    note: str
    issue_id: int | None
    decision_id: int | None
    closed_at: dt.datetime | None
    version: int


@dataclass(frozen=True)
class FeedbackItem:
    """One rating and comment; ``email`` and ``name`` None when anonymous."""

    id: int
    email: str | None
    name: str | None
    rating: int | None
    comment: str
    version: int


@dataclass(frozen=True)
class SummaryItem:
    """The summary and next week's plan (one line per step); version 0 until recorded."""

    summary: str
    plan: tuple[str, ...]
    source: str
    recorded_at: dt.datetime | None
    version: int


@dataclass(frozen=True)
class MeetingState:
    """Everything recorded for the meeting about ``week``; ``meeting_id`` None if unknown.

    ``actions`` are the items set at this meeting; ``earlier_actions`` the still open
    items of earlier meetings, which this meeting reviews.
    """

    week: str
    meeting_id: int | None
    title: str | None
    starts_at: dt.datetime | None
    attendance: tuple[AttendanceItem, ...]
    segments: tuple[SegmentItem, ...]
    decisions: tuple[DecisionItem, ...]
    actions: tuple[ActionItem, ...]
    earlier_actions: tuple[ActionItem, ...]
    feedback: tuple[FeedbackItem, ...]
    summary: SummaryItem


_NO_SUMMARY = SummaryItem("", (), "", None, 0)


def meeting_state(store: Writer, week: IsoWeek | str) -> MeetingState:
    """Everything recorded for the meeting about ``week``, each item with its version."""
    week = str(IsoWeek.parse(week))
    return store.read(lambda conn: _state(conn, week))


def _state(conn: Connection, week: str) -> MeetingState:
    meeting = conn.execute(sa.select(MEETINGS).where(MEETINGS.c.week == week)).mappings().first()
    earlier = _actions(conn, (MEETINGS.c.week < week) & (ACTION_ITEMS.c.status == "open"))
    if meeting is None:
        return MeetingState(week, None, None, None, (), (), (), (), earlier, (), _NO_SUMMARY)
    mid = int(meeting["id"])
    return MeetingState(
        week=week,
        meeting_id=mid,
        title=meeting["title"],
        starts_at=meeting["starts_at"],
        attendance=_attendance(conn, mid),
        segments=_segments(conn, mid),
        decisions=_decisions(conn, DECISIONS.c.meeting_id == mid),
        actions=_actions(conn, ACTION_ITEMS.c.meeting_id == mid),
        earlier_actions=earlier,
        feedback=_feedback(conn, FEEDBACK.c.meeting_id == mid),
        summary=_summary(conn, mid),
    )


def _attendance(conn: Connection, mid: int) -> tuple[AttendanceItem, ...]:
    """Invited people, and anyone whose attendance was recorded, in order of first sight."""
    rec = ATTENDANCE_RECORDS
    recorded = {
        r.attendee_id: r for r in conn.execute(sa.select(rec).where(rec.c.meeting_id == mid)).all()
    }
    roles = dict(
        conn.execute(
            sa.select(ATTENDANCE.c.attendee_id, ATTENDANCE.c.role).where(
                ATTENDANCE.c.meeting_id == mid
            )
        ).all()
    )
    ids = sorted(set(roles) | set(recorded))
    people = conn.execute(sa.select(ATTENDEES).where(ATTENDEES.c.id.in_(ids))).all()
    by_id = {p.id: p for p in people}
    items = []
    for aid in ids:
        person, r = by_id[aid], recorded.get(aid)
        items.append(
            AttendanceItem(
                email=person.email,
                name=person.name,
                department=person.department,
                role=roles.get(aid, "optional"),
                status=None if r is None else r.status,
                delegate="" if r is None else r.delegate,
                version=0 if r is None else int(r.version),
            )
        )
    return tuple(items)


def _segments(conn: Connection, mid: int) -> tuple[SegmentItem, ...]:
    rows = conn.execute(
        sa.select(SEGMENT_TIMES)
        .where(SEGMENT_TIMES.c.meeting_id == mid)
        .order_by(SEGMENT_TIMES.c.position)
    ).all()
    return tuple(
        SegmentItem(
            r.segment, r.position, r.title, r.planned_minutes, r.actual_minutes, int(r.version)
        )
        for r in rows
    )


def _decisions(conn: Connection, where: Any) -> tuple[DecisionItem, ...]:
    rows = conn.execute(sa.select(DECISIONS).where(where).order_by(DECISIONS.c.id)).all()
    return tuple(DecisionItem(r.id, r.text, r.department, r.issue_id, int(r.version)) for r in rows)


def _actions(conn: Connection, where: Any) -> tuple[ActionItem, ...]:
    rows = conn.execute(
        sa.select(ACTION_ITEMS, MEETINGS.c.week)
        .join(MEETINGS, MEETINGS.c.id == ACTION_ITEMS.c.meeting_id)
        .where(where)
        .order_by(ACTION_ITEMS.c.id)
    ).all()
    return tuple(
        ActionItem(
            id=r.id,
            meeting_week=r.week,
            description=r.description,
            owner=r.owner,
            department=r.department,
            due_date=r.due_date,
            status=r.status,
            note=r.note,
            issue_id=r.issue_id,
            decision_id=r.decision_id,
            closed_at=r.closed_at,
            version=int(r.version),
        )
        for r in rows
    )


def _feedback(conn: Connection, where: Any) -> tuple[FeedbackItem, ...]:
    rows = conn.execute(
        sa.select(FEEDBACK, ATTENDEES.c.email, ATTENDEES.c.name)
        .outerjoin(ATTENDEES, ATTENDEES.c.id == FEEDBACK.c.attendee_id)
        .where(where)
        .order_by(FEEDBACK.c.id)
    ).all()
    return tuple(
        FeedbackItem(r.id, r.email, r.name, r.rating, r.comment, int(r.version)) for r in rows
    )


def _summary(conn: Connection, mid: int) -> SummaryItem:
    r = conn.execute(sa.select(MINUTES).where(MINUTES.c.meeting_id == mid)).first()
    if r is None:
        return _NO_SUMMARY
    plan = tuple(line for line in r.plan.splitlines() if line.strip())
    return SummaryItem(r.summary, plan, r.source, r.recorded_at, int(r.version))


# --- changing one item ----------------------------------------------------------------


class _Missing:
    """Marks an argument left out (None is a value: it clears a field)."""


MISSING: Any = _Missing()


def _meeting_of(conn: Connection, week: str, url: str) -> int:
    found = conn.execute(sa.select(MEETINGS.c.id).where(MEETINGS.c.week == week)).scalar()
    if found is None:
        raise InputDataError(
            f"no meeting about week {week} in the store {url}; prepare it first with "
            f"`meeting agenda --week {week}` (or record its minutes)."
        )
    return int(found)


def _change(
    conn: Connection,
    table: sa.Table,
    key: Any,
    item: str,
    expected: int | None,
    changes: Mapping[str, Any],
) -> Any:
    """Apply ``changes`` to the row at ``key`` if it is at version ``expected``; the new row.

    ``expected`` None applies them whatever the version. Nothing changes, and the version
    stays, when the row already holds the values, so recording the same thing twice is a
    no-op. The UPDATE itself checks the version, so a change committed in between by
    another writer is caught even on a database that does not lock the row read.
    """
    row = conn.execute(sa.select(table).where(key)).first()
    if row is None:
        raise InputDataError(f"{item} is not in the store; reload the meeting's records.")
    stored = int(row.version)
    if expected is not None and expected != stored:
        raise ConcurrentEditError(item, expected, stored)
    values = {k: v for k, v in changes.items() if getattr(row, k) != v}
    if not values:
        return row
    result = conn.execute(
        table.update().where(key & (table.c.version == stored)).values(version=stored + 1, **values)
    )
    if result.rowcount != 1:
        now = conn.execute(sa.select(table.c.version).where(key)).scalar()
        raise ConcurrentEditError(item, stored if expected is None else expected, int(now or 0))
    return conn.execute(sa.select(table).where(key)).first()


def _delete(conn: Connection, table: sa.Table, key: Any, item: str, expected: int | None) -> None:
    row = conn.execute(sa.select(table.c.version).where(key)).first()
    if row is None:
        return  # already gone: deleting is idempotent
    if expected is not None and expected != row.version:
        raise ConcurrentEditError(item, expected, int(row.version))
    conn.execute(table.delete().where(key & (table.c.version == row.version)))


def _touch_minutes(conn: Connection, mid: int, source: str) -> None:
    """Create the meeting's minutes row on its first recorded item (its summary empty)."""
    if conn.execute(sa.select(MINUTES.c.meeting_id).where(MINUTES.c.meeting_id == mid)).first():
        return
    conn.execute(
        MINUTES.insert().values(
            meeting_id=mid,
            summary="",
            plan="",
            source=source,
            content_hash="",
            recorded_at=_utcnow(),
            version=0,  # no summary recorded yet: the first one expects version 0
        )
    )


def _attendee(conn: Connection, email: str, name: str | None, department: str | None) -> int:
    email = email.strip().lower()
    found = conn.execute(sa.select(ATTENDEES.c.id).where(ATTENDEES.c.email == email)).scalar()
    if found is not None:
        return int(found)
    if not name:
        raise InputDataError(
            f"{email} is not invited to any meeting in the store; add the person to "
            "meeting.attendees in the params and prepare the meeting again."
        )
    result = conn.execute(ATTENDEES.insert().values(name=name, email=email, department=department))
    return int(_new_id(result))


def set_attendance(
    store: Writer,
    week: IsoWeek | str,
    email: str,
    status: str | None,
    *,
    delegate: str = "",
    expected_version: int | None = None,
    name: str | None = None,
    department: str | None = None,
    source: str = "console",
) -> AttendanceItem:
    """Record whether ``email`` attended (present/absent/delegate; None clears it).

    ``expected_version`` 0 means "nothing recorded yet". ``name``/``department`` add a
    person the store does not know. Returns the person's entry as stored now.
    """
    if status is not None and status not in ATTENDANCE_STATUSES:
        raise ParamsError(f"attendance {status!r} unknown; use one of {ATTENDANCE_STATUSES}.")
    if status == "delegate" and not delegate.strip():
        raise ParamsError(f"attendance of {email}: name the delegate who came instead.")
    week = str(IsoWeek.parse(week))

    def work(conn: Connection) -> AttendanceItem:
        mid = _meeting_of(conn, week, store.url)
        aid = _attendee(conn, email, name, department)
        item = f"the attendance of {email.strip().lower()} at the meeting about {week}"
        rec = ATTENDANCE_RECORDS
        key = (rec.c.meeting_id == mid) & (rec.c.attendee_id == aid)
        stored = conn.execute(sa.select(rec.c.version).where(key)).scalar()
        if status is None:
            if stored is not None:
                _delete(conn, rec, key, item, expected_version)
        elif stored is None:
            if expected_version not in (None, 0):
                raise ConcurrentEditError(item, expected_version, 0)
            values = {"status": status, "delegate": delegate.strip(), "version": 1}
            conn.execute(rec.insert().values(meeting_id=mid, attendee_id=aid, **values))
        else:
            changes = {"status": status, "delegate": delegate.strip()}
            _change(conn, rec, key, item, expected_version, changes)
        invited = (ATTENDANCE.c.meeting_id == mid) & (ATTENDANCE.c.attendee_id == aid)
        present = None if status is None else status == "present"
        if conn.execute(sa.select(ATTENDANCE.c.role).where(invited)).first() is None:
            conn.execute(
                ATTENDANCE.insert().values(
                    meeting_id=mid, attendee_id=aid, role="optional", present=present
                )
            )
        else:
            conn.execute(ATTENDANCE.update().where(invited).values(present=present))
        _touch_minutes(conn, mid, source)
        email_key = email.strip().lower()
        return next(a for a in _attendance(conn, mid) if a.email == email_key)

    return store.write(work)


def plan_segments(
    store: Writer, week: IsoWeek | str, planned: Sequence[tuple[str, str, int]]
) -> tuple[SegmentItem, ...]:
    """Lay out the agenda's segments (key, title, planned minutes) in this order.

    Actual minutes and their versions are kept; a stored segment no longer planned
    keeps its row, after the planned ones. Returns the segments as stored now.
    """
    week = str(IsoWeek.parse(week))

    def work(conn: Connection) -> tuple[SegmentItem, ...]:
        mid = _meeting_of(conn, week, store.url)
        stored = {s.segment: s for s in _segments(conn, mid)}
        order = [key for key, _, _ in planned]
        order += [k for k in sorted(stored, key=lambda k: stored[k].position) if k not in order]
        titles = {key: (title, minutes) for key, title, minutes in planned}
        for position, key in enumerate(order, 1):
            old = stored.get(key)
            title, minutes = titles.get(key, (old.title, old.planned_minutes) if old else (key, 0))
            values = {"position": position, "title": title, "planned_minutes": minutes}
            where = (SEGMENT_TIMES.c.meeting_id == mid) & (SEGMENT_TIMES.c.segment == key)
            if old is None:
                conn.execute(
                    SEGMENT_TIMES.insert().values(meeting_id=mid, segment=key, version=0, **values)
                )
            elif (old.position, old.title, old.planned_minutes) != (position, title, minutes):
                # The plan is the agenda's, not an edit: the version stays.
                conn.execute(SEGMENT_TIMES.update().where(where).values(**values))
        return _segments(conn, mid)

    return store.write(work)


def set_segment_time(
    store: Writer,
    week: IsoWeek | str,
    segment: str,
    minutes: int | None,
    *,
    expected_version: int | None = None,
    source: str = "console",
) -> SegmentItem:
    """Record the minutes actually spent on ``segment`` (None clears them); the segment now.

    A segment not laid out by ``plan_segments`` is added at the end with 0 planned.
    """
    if minutes is not None and minutes < 0:
        raise ParamsError(f"minutes spent on {segment!r} cannot be negative (got {minutes}).")
    week = str(IsoWeek.parse(week))

    def work(conn: Connection) -> SegmentItem:
        mid = _meeting_of(conn, week, store.url)
        key = (SEGMENT_TIMES.c.meeting_id == mid) & (SEGMENT_TIMES.c.segment == segment)
        item = f"the minutes spent on {segment!r} at the meeting about {week}"
        if conn.execute(sa.select(SEGMENT_TIMES.c.version).where(key)).first() is None:
            last = conn.execute(
                sa.select(sa.func.max(SEGMENT_TIMES.c.position)).where(
                    SEGMENT_TIMES.c.meeting_id == mid
                )
            ).scalar()
            conn.execute(
                SEGMENT_TIMES.insert().values(
                    meeting_id=mid,
                    segment=segment,
                    position=int(last or 0) + 1,
                    title=segment,
                    planned_minutes=0,
                    version=0,
                )
            )
        _change(conn, SEGMENT_TIMES, key, item, expected_version, {"actual_minutes": minutes})
        _touch_minutes(conn, mid, source)
        return next(s for s in _segments(conn, mid) if s.segment == segment)

    return store.write(work)


def add_decision(
    store: Writer,
    week: IsoWeek | str,
    text: str,
    *,
    department: str | None = None,
    issue_id: int | None = None,
    source: str = "console",
) -> DecisionItem:
    """Add a decision to the meeting about ``week``; the decision as stored (version 1)."""
    if not text.strip():
        raise ParamsError("the decision's text is empty; say what was decided.")
    week = str(IsoWeek.parse(week))

    def work(conn: Connection) -> DecisionItem:
        mid = _meeting_of(conn, week, store.url)
        _check_issue_id(conn, issue_id, store.url)
        result = conn.execute(
            DECISIONS.insert().values(
                meeting_id=mid,
                text=text.strip(),
                department=department,
                issue_id=issue_id,
                created_at=_utcnow(),
                version=1,
            )
        )
        _touch_minutes(conn, mid, source)
        (decision,) = _decisions(conn, DECISIONS.c.id == _new_id(result))
        return decision

    return store.write(work)


def update_decision(
    store: Writer,
    decision_id: int,
    *,
    expected_version: int | None,
    text: str = MISSING,
    department: str | None = MISSING,
    issue_id: int | None = MISSING,
) -> DecisionItem:
    """Change the fields given of decision ``decision_id``; the decision as stored now."""
    changes = _given(text=text, department=department, issue_id=issue_id)
    if "text" in changes:
        if not str(changes["text"]).strip():
            raise ParamsError("the decision's text is empty; say what was decided.")
        changes["text"] = str(changes["text"]).strip()

    def work(conn: Connection) -> DecisionItem:
        _check_issue_id(conn, changes.get("issue_id"), store.url)
        key = DECISIONS.c.id == decision_id
        _change(conn, DECISIONS, key, f"decision #{decision_id}", expected_version, changes)
        (decision,) = _decisions(conn, key)
        return decision

    return store.write(work)


def delete_decision(store: Writer, decision_id: int, *, expected_version: int | None) -> None:
    """Remove decision ``decision_id``; action items that followed from it keep, unlinked."""

    def work(conn: Connection) -> None:
        key = DECISIONS.c.id == decision_id
        if conn.execute(sa.select(DECISIONS.c.id).where(key)).first() is None:
            return
        version = conn.execute(sa.select(DECISIONS.c.version).where(key)).scalar()
        if expected_version is not None and expected_version != version:
            raise ConcurrentEditError(
                f"decision #{decision_id}", expected_version, int(version or 0)
            )
        linked = ACTION_ITEMS.c.decision_id == decision_id
        conn.execute(
            ACTION_ITEMS.update()
            .where(linked)
            .values(decision_id=None, version=ACTION_ITEMS.c.version + 1)
        )
        _delete(conn, DECISIONS, key, f"decision #{decision_id}", expected_version)

    store.write(work)


def _check_issue_id(conn: Connection, issue_id: int | None, url: str) -> None:
    if issue_id is None:
        return
    if conn.execute(sa.select(ISSUES.c.id).where(ISSUES.c.id == issue_id)).first() is None:
        raise InputDataError(
            f"issue #{issue_id} is not in the store {url}; list them with `meeting issues list`."
        )


def _given(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not MISSING}


def check_action_item(values: Mapping[str, Any], departments: Sequence[str] | None) -> None:
    """ParamsError when a field of an action item is empty or out of its allowed values."""
    for name, what in (("description", "say what is to be done"), ("owner", "name the person")):
        if name in values and not str(values[name]).strip():
            raise ParamsError(f"the action item's {name} is empty; {what}.")
    department = values.get("department")
    if "department" in values and departments is not None and department not in departments:
        raise ParamsError(
            f"department {department!r} is not in meeting.departments {list(departments)}; "
            "use one of those."
        )
    if "status" in values and values["status"] not in ACTION_STATUSES:
        raise ParamsError(
            f"action status {values['status']!r} unknown; use one of {ACTION_STATUSES}."
        )


def add_action_item(
    store: Writer,
    week: IsoWeek | str,
    *,
    description: str,
    owner: str,
    department: str,
    due_date: dt.date,
    issue_id: int | None = None,
    decision_id: int | None = None,
    note: str = "",
    status: str = "open",
    departments: Sequence[str] | None = None,
    source: str = "console",
) -> ActionItem:
    """Add an action item to the meeting about ``week``; the item as stored (version 1).

    ``departments``, when given, are the department codes allowed (meeting.departments).
    ``source`` "cli" is an item added between meetings: it does not start the minutes.
    """
    values = {
        "description": description.strip(),
        "owner": owner.strip(),
        "department": department,
        "status": status,
    }
    check_action_item(values, departments)
    week = str(IsoWeek.parse(week))

    def work(conn: Connection) -> ActionItem:
        mid = _meeting_of(conn, week, store.url)
        _check_issue_id(conn, issue_id, store.url)
        now = _utcnow()
        result = conn.execute(
            ACTION_ITEMS.insert().values(
                meeting_id=mid,
                issue_id=issue_id,
                decision_id=decision_id,
                due_date=due_date,
                note=note,
                created_at=now,
                closed_at=None if status == "open" else now,
                version=1,
                **values,
            )
        )
        if source != "cli":  # an item added between meetings does not start the minutes
            _touch_minutes(conn, mid, source)
        (item,) = _actions(conn, ACTION_ITEMS.c.id == _new_id(result))
        return item

    return store.write(work)


def update_action_item(
    store: Writer,
    item_id: int,
    *,
    expected_version: int | None,
    departments: Sequence[str] | None = None,
    description: str = MISSING,
    owner: str = MISSING,
    department: str = MISSING,
    due_date: dt.date = MISSING,
    status: str = MISSING,
    note: str = MISSING,
    issue_id: int | None = MISSING,
    decision_id: int | None = MISSING,
) -> ActionItem:
    """Change the fields given of action item ``item_id``; the item as stored now.

    Closing (done/dropped) sets closed_at, closing again keeps the first closing time,
    reopening clears it.
    """
    changes = _given(
        description=description,
        owner=owner,
        department=department,
        due_date=due_date,
        status=status,
        note=note,
        issue_id=issue_id,
        decision_id=decision_id,
    )
    for name in ("description", "owner"):
        if name in changes:
            changes[name] = str(changes[name]).strip()
    check_action_item(changes, departments)

    def work(conn: Connection) -> ActionItem:
        key = ACTION_ITEMS.c.id == item_id
        row = conn.execute(sa.select(ACTION_ITEMS.c.status).where(key)).first()
        if row is None:
            raise InputDataError(
                f"action item #{item_id} is not in the store {store.url}; list them with "
                "`meeting actions list`."
            )
        _check_issue_id(conn, changes.get("issue_id"), store.url)
        values = dict(changes)
        if "status" in values and values["status"] != row.status:
            values["closed_at"] = None if values["status"] == "open" else _utcnow()
        _change(conn, ACTION_ITEMS, key, f"action item #{item_id}", expected_version, values)
        (item,) = _actions(conn, key)
        return item

    return store.write(work)


def close_action_item(
    store: Writer,
    item_id: int,
    *,
    expected_version: int | None,
    status: str = "done",
    note: str | None = None,
) -> ActionItem:
    """Close action item ``item_id`` as done (or dropped), noting why; the item now."""
    if status not in ("done", "dropped"):
        raise ParamsError(f"an action item closes as done or dropped, not {status!r}.")
    return update_action_item(
        store,
        item_id,
        expected_version=expected_version,
        status=status,
        note=MISSING if note is None else note,
    )


def add_feedback(
    store: Writer,
    week: IsoWeek | str,
    *,
    email: str | None = None,
    rating: int | None = None,
    comment: str = "",
    source: str = "console",
) -> FeedbackItem:
    """Add feedback on the meeting about ``week`` (anonymous without ``email``); as stored."""
    _check_feedback(rating, comment)
    week = str(IsoWeek.parse(week))

    def work(conn: Connection) -> FeedbackItem:
        mid = _meeting_of(conn, week, store.url)
        aid = None if email is None else _attendee(conn, email, None, None)
        result = conn.execute(
            FEEDBACK.insert().values(
                meeting_id=mid,
                attendee_id=aid,
                rating=rating,
                comment=comment.strip(),
                created_at=_utcnow(),
                version=1,
            )
        )
        _touch_minutes(conn, mid, source)
        (item,) = _feedback(conn, FEEDBACK.c.id == _new_id(result))
        return item

    return store.write(work)


def _check_feedback(rating: int | None, comment: str) -> None:
    if rating is not None and not 1 <= rating <= 5:
        raise ParamsError(f"a rating is 1 to 5 (got {rating}).")
    if rating is None and not comment.strip():
        raise ParamsError("feedback needs a rating (1-5) or a comment.")


def update_feedback(
    store: Writer,
    feedback_id: int,
    *,
    expected_version: int | None,
    rating: int | None = MISSING,
    comment: str = MISSING,
) -> FeedbackItem:
    """Change the rating and/or comment of feedback ``feedback_id``; as stored now."""
    changes = _given(rating=rating, comment=comment)
    if "comment" in changes:
        changes["comment"] = str(changes["comment"]).strip()

    def work(conn: Connection) -> FeedbackItem:
        key = FEEDBACK.c.id == feedback_id
        item = f"feedback #{feedback_id}"
        row = _change(conn, FEEDBACK, key, item, expected_version, changes)
        _check_feedback(row.rating, row.comment)
        (stored,) = _feedback(conn, key)
        return stored

    return store.write(work)


def delete_feedback(store: Writer, feedback_id: int, *, expected_version: int | None) -> None:
    """Remove feedback ``feedback_id`` (nothing happens when it is gone already)."""
    key = FEEDBACK.c.id == feedback_id
    store.write(
        lambda conn: _delete(conn, FEEDBACK, key, f"feedback #{feedback_id}", expected_version)
    )


def set_summary(
    store: Writer,
    week: IsoWeek | str,
    *,
    summary: str | None = None,
    plan: Sequence[str] | None = None,
    expected_version: int | None = None,
    source: str = "console",
) -> SummaryItem:
    """Record the summary and/or next week's plan (None keeps what is stored); as stored.

    ``expected_version`` 0 means "no summary recorded yet".
    """
    week = str(IsoWeek.parse(week))
    changes: dict[str, Any] = {}
    if summary is not None:
        changes["summary"] = summary.strip()
    if plan is not None:
        changes["plan"] = "\n".join(line.strip() for line in plan if line.strip())

    def work(conn: Connection) -> SummaryItem:
        mid = _meeting_of(conn, week, store.url)
        _touch_minutes(conn, mid, source)
        item = f"the summary and plan of the meeting about {week}"
        key = MINUTES.c.meeting_id == mid
        before = conn.execute(sa.select(MINUTES.c.version).where(key)).scalar()
        row = _change(conn, MINUTES, key, item, expected_version, changes)
        if row.version != before:
            conn.execute(MINUTES.update().where(key).values(source=source, recorded_at=_utcnow()))
        return _summary(conn, mid)

    return store.write(work)


# --- the minutes as a whole -----------------------------------------------------------


def minutes_digest(store: Writer, week: IsoWeek | str) -> str | None:
    """The content hash of the minutes file last recorded for ``week``; None if none."""
    week = str(IsoWeek.parse(week))
    query = (
        sa.select(MINUTES.c.content_hash)
        .join(MEETINGS, MEETINGS.c.id == MINUTES.c.meeting_id)
        .where(MEETINGS.c.week == week)
    )
    return store.read(lambda conn: conn.execute(query).scalar())


def mark_recorded(store: Writer, week: IsoWeek | str, *, source: str, digest: str) -> None:
    """Note that a minutes document (its hash) was recorded for ``week`` just now."""
    week = str(IsoWeek.parse(week))

    def work(conn: Connection) -> None:
        mid = _meeting_of(conn, week, store.url)
        _touch_minutes(conn, mid, source)
        conn.execute(
            MINUTES.update()
            .where(MINUTES.c.meeting_id == mid)
            .values(source=source, content_hash=digest, recorded_at=_utcnow())
        )

    store.write(work)


def recorded_file(store: Writer, week: IsoWeek | str, source: str) -> dict[str, Any] | None:
    """What the minutes file ``source`` recorded last for ``week`` (save_recorded_file's
    document); None when that file was never recorded for it."""
    week = str(IsoWeek.parse(week))
    query = (
        sa.select(MINUTES_FILES.c.document)
        .join(MEETINGS, MEETINGS.c.id == MINUTES_FILES.c.meeting_id)
        .where(MEETINGS.c.week == week, MINUTES_FILES.c.source == source)
    )
    found = store.read(lambda conn: conn.execute(query).scalar())
    return None if found is None else dict(json.loads(found))


def save_recorded_file(
    store: Writer, week: IsoWeek | str, source: str, document: dict[str, Any]
) -> None:
    """Keep ``document`` (JSON-able) as what the minutes file ``source`` recorded for
    ``week``, replacing what it recorded before."""
    week = str(IsoWeek.parse(week))
    text = json.dumps(document, ensure_ascii=False, sort_keys=True, default=str)

    def work(conn: Connection) -> None:
        mid = _meeting_of(conn, week, store.url)
        key = (MINUTES_FILES.c.meeting_id == mid) & (MINUTES_FILES.c.source == source)
        conn.execute(MINUTES_FILES.delete().where(key))
        conn.execute(
            MINUTES_FILES.insert().values(
                meeting_id=mid, source=source, document=text, recorded_at=_utcnow()
            )
        )

    store.write(work)


def mark_sent(store: Writer, week: IsoWeek | str, when: dt.datetime, recipients: int) -> None:
    """Note that the minutes of ``week`` went out at ``when`` (UTC, naive) to n people."""
    week = str(IsoWeek.parse(week))

    def work(conn: Connection) -> None:
        mid = _meeting_of(conn, week, store.url)
        result = conn.execute(
            MINUTES.update()
            .where(MINUTES.c.meeting_id == mid)
            .values(sent_at=when, sent_to=recipients)
        )
        if result.rowcount != 1:
            raise InputDataError(
                f"no minutes recorded for week {week}; record them with "
                f"`meeting minutes record FILE --week {week}` first."
            )

    store.write(work)


# --- reading the minutes back -------------------------------------------------------------


def minutes_row(store: Writer, week: IsoWeek | str) -> dict[str, Any] | None:
    """The meeting about ``week`` with its minutes (summary, sent_at ...); None if unrecorded."""
    query = (
        sa.select(MEETINGS, MINUTES)
        .join(MINUTES, MINUTES.c.meeting_id == MEETINGS.c.id)
        .where(MEETINGS.c.week == str(IsoWeek.parse(week)))
    )
    row = store.read(lambda conn: conn.execute(query).mappings().first())
    return None if row is None else dict(row)


def _query_frame(store: Writer, query: sa.Select[Any]) -> pd.DataFrame:
    def work(conn: Connection) -> pd.DataFrame:
        result = conn.execute(query)
        return pd.DataFrame(result.mappings().all(), columns=list(result.keys()))

    return store.read(work)


def attendance_frame(store: Writer, meeting: int) -> pd.DataFrame:
    """Invited people and recorded attendance: name, email, department, role, status, delegate."""
    query = (
        sa.select(
            ATTENDEES.c.name,
            ATTENDEES.c.email,
            ATTENDEES.c.department,
            ATTENDANCE.c.role,
            ATTENDANCE_RECORDS.c.status,
            ATTENDANCE_RECORDS.c.delegate,
        )
        .select_from(ATTENDANCE)
        .join(ATTENDEES, ATTENDEES.c.id == ATTENDANCE.c.attendee_id)
        .outerjoin(
            ATTENDANCE_RECORDS,
            (ATTENDANCE_RECORDS.c.meeting_id == ATTENDANCE.c.meeting_id)
            & (ATTENDANCE_RECORDS.c.attendee_id == ATTENDANCE.c.attendee_id),
        )
        .where(ATTENDANCE.c.meeting_id == meeting)
        .order_by(ATTENDEES.c.id)
    )
    return _query_frame(store, query)


def segment_frame(store: Writer, meeting: int) -> pd.DataFrame:
    """Planned and actual minutes per agenda segment, in agenda order."""
    query = (
        sa.select(
            SEGMENT_TIMES.c.segment,
            SEGMENT_TIMES.c.title,
            SEGMENT_TIMES.c.planned_minutes,
            SEGMENT_TIMES.c.actual_minutes,
        )
        .where(SEGMENT_TIMES.c.meeting_id == meeting)
        .order_by(SEGMENT_TIMES.c.position)
    )
    return _query_frame(store, query)


def decision_frame(store: Writer, meeting: int) -> pd.DataFrame:
    """Decisions of a meeting with the segment of their linked issue."""
    query = (
        sa.select(
            DECISIONS.c.id,
            DECISIONS.c.text,
            DECISIONS.c.department,
            DECISIONS.c.issue_id,
            ISSUES.c.title.label("issue_title"),
            ISSUES.c.segment,
        )
        .outerjoin(ISSUES, ISSUES.c.id == DECISIONS.c.issue_id)
        .where(DECISIONS.c.meeting_id == meeting)
        .order_by(DECISIONS.c.id)
    )
    return _query_frame(store, query)


def feedback_trend(store: Writer, through_week: IsoWeek | str) -> pd.DataFrame:
    """Mean rating and number of ratings per meeting week up to ``through_week``; 1-5."""
    query = (
        sa.select(
            MEETINGS.c.week,
            sa.func.avg(FEEDBACK.c.rating).label("mean_rating"),
            sa.func.count(FEEDBACK.c.rating).label("ratings"),
        )
        .join(FEEDBACK, FEEDBACK.c.meeting_id == MEETINGS.c.id)
        .where(MEETINGS.c.week <= str(IsoWeek.parse(through_week)))
        .group_by(MEETINGS.c.week)
        .order_by(MEETINGS.c.week)
    )
    return _query_frame(store, query)


def feedback_frame(store: Writer, meeting: int) -> pd.DataFrame:
    """Feedback of a meeting: name (empty when anonymous), rating, comment."""
    query = (
        sa.select(ATTENDEES.c.name, FEEDBACK.c.rating, FEEDBACK.c.comment)
        .select_from(FEEDBACK)
        .outerjoin(ATTENDEES, ATTENDEES.c.id == FEEDBACK.c.attendee_id)
        .where(FEEDBACK.c.meeting_id == meeting)
        .order_by(FEEDBACK.c.id)
    )
    frame = _query_frame(store, query)
    frame["name"] = frame["name"].fillna("")
    return frame


def meeting_weeks(store: Writer) -> list[str]:
    """Report weeks of the stored meetings, oldest first."""
    query = sa.select(MEETINGS.c.week).order_by(MEETINGS.c.week)
    return store.read(lambda conn: list(conn.execute(query).scalars()))


def meeting_start(store: Writer, week: IsoWeek | str) -> dt.datetime | None:
    """When the meeting about ``week`` starts (UTC, naive); None when not stored."""
    query = sa.select(MEETINGS.c.starts_at).where(MEETINGS.c.week == str(IsoWeek.parse(week)))
    return store.read(lambda conn: conn.execute(query).scalar())
