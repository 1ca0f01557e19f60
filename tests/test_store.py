"""The meeting store: schema versions, migrations, transactions, export."""

from __future__ import annotations

import csv
import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from meetinglib.core.errors import (
    ConcurrentEditError,
    InputDataError,
    InvalidParamError,
    ParamsError,
)
from meetinglib.core.params import load_params
from meetinglib.meeting import store as store_module
from meetinglib.meeting.store import CURRENT_VERSION, METADATA, Store, open_store, store_url

RELEASE_0_1 = Path(__file__).parent / "data" / "store" / "release-0.1.0.sql"


def issue(n: int, **over):
    row = {
        "department": "logistics",
        "week": "2026-W47",
        "title": f"issue {n}",
        "severity": "high",
        "source": "test",
        "row_hash": f"hash-{n}",
    }
    return {**row, **over}


@pytest.fixture
def db(store_db):
    """An empty store database, SQLite and PostgreSQL in turn (tests/conftest.py)."""
    return store_db


def schema_differences(engine) -> list:
    """What Alembic's comparison finds between the database and METADATA (types too)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, METADATA)


def test_created_on_first_use_with_the_current_schema(db):
    with Store.at(db) as s:
        assert s.version == CURRENT_VERSION == 6
        tables = set(sa.inspect(s.engine).get_table_names())
        assert tables == set(METADATA.tables) | {"alembic_version"}
        assert schema_differences(s.engine) == []


def test_the_metadata_comparison_can_fail(db):
    with Store.at(db) as s, s.transaction() as conn:
        conn.execute(sa.text("ALTER TABLE decisions ADD COLUMN extra INTEGER"))
    engine = sa.create_engine(db)
    assert [d[0] for d in schema_differences(engine)] == ["remove_column"]
    engine.dispose()


def test_upgrade_from_version_1_keeps_the_data(db):
    with Store.at(db, target=1) as old:
        assert old.version == 1
        assert set(sa.inspect(old.engine).get_table_names()) == {"alembic_version", "issues"}
        created = dt.datetime(2026, 11, 17, 2, 30)
        with old.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO issues (department, week, title, description, severity, "
                    "segment, first_seen, submitter, source, row_hash, status, created_at) "
                    "VALUES ('it', '2026-W46', 'Export fails', '', 'high', '', NULL, 'Zhao', "
                    "'it.csv', 'abc', 'open', :created)"
                ),
                {"created": created},
            )
    with Store.at(db) as new:
        assert new.version == CURRENT_VERSION
        issues = new.issues()
        assert issues["title"].tolist() == ["Export fails"]
        # Revision 0002 added updated_at and fills it from created_at for existing rows.
        assert issues["updated_at"].iloc[0] == created
        assert issues["source_row"].isna().all()
        assert schema_differences(new.engine) == []


def test_a_store_of_the_previous_release_upgrades_with_its_data(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(RELEASE_0_1.read_text(encoding="utf-8"))
    url = f"sqlite:///{path}"
    assert store_module.schema_version(sa.create_engine(url)) == 3
    with Store.at(url) as s:
        assert s.version == CURRENT_VERSION
        tables = set(sa.inspect(s.engine).get_table_names())
        assert "schema_version" not in tables and "alembic_version" in tables
        assert schema_differences(s.engine) == []
        state = store_module.meeting_state(s, "2026-W47")
        # Everything stored before is there, each item at version 1.
        assert [(d.text, d.version) for d in state.decisions] == [
            ("Move South parcels to SwiftExpress", 1)
        ]
        assert [(i.description, i.status, i.decision_id, i.version) for i in state.actions] == [
            ("Agree the volume shift", "open", 1, 1),
            ("Recount WH-South", "done", None, 1),
        ]
        assert [(a.email, a.status, a.version) for a in state.attendance] == [
            ("li.na@shop.example", "present", 1),
            ("chen.jie@shop.example", "absent", 1),
        ]
        assert (state.summary.summary, state.summary.plan, state.summary.version) == (
            "EastPost is late in the South.", ("Two extra pickers",), 1
        )  # fmt: skip
        assert [(f.name, f.rating) for f in state.feedback] == [("Chen Jie", 4)]
        assert [(x.segment, x.actual_minutes) for x in state.segments] == [("opening", 6)]
        assert s.issues()["segment"].tolist() == ["carrier=EastPost;region=South"]
        # ... and it takes per-item edits at once.
        edited = store_module.close_action_item(s, 1, expected_version=1)
        assert (edited.status, edited.version) == ("done", 2)


def test_a_failing_upgrade_leaves_the_store_as_it_was(db, monkeypatch):
    Store.at(db, target=3).close()
    real = store_module.alembic_command.upgrade

    def upgrade_then_fail(config, revision):
        real(config, revision)
        raise RuntimeError("step failed")

    monkeypatch.setattr(store_module.alembic_command, "upgrade", upgrade_then_fail)
    with pytest.raises(RuntimeError, match="step failed"):
        Store.at(db)
    engine = sa.create_engine(db)
    assert store_module.schema_version(engine) == 3
    columns = {c["name"] for c in sa.inspect(engine).get_columns("decisions")}
    assert "version" not in columns  # revision 0004's column was rolled back with it
    engine.dispose()


def test_a_newer_store_is_refused(db, monkeypatch):
    Store.at(db).close()
    engine = sa.create_engine(db)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    with pytest.raises(InputDataError, match="schema revision '0099', which this meetinglib"):
        Store.at(db)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0005'"))
    engine.dispose()
    monkeypatch.setattr(store_module, "CURRENT_VERSION", 1)  # as an older meetinglib
    with pytest.raises(InputDataError, match="schema version 5, newer than the 1"):
        Store.at(db)


def test_tables_of_another_program_are_not_taken_over(tmp_path):
    url = f"sqlite:///{tmp_path / 'other.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE issues (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    with pytest.raises(InputDataError, match=r"has meeting tables \['issues'\] but no schema"):
        Store.at(url)


def test_a_bad_row_rolls_back_the_whole_batch(db):
    with Store.at(db) as s:
        with pytest.raises(InputDataError, match="rolled back and nothing was written"):
            s.add_issues([issue(1), issue(2, severity="urgent"), issue(3)])
        assert s.issues().empty


def test_same_hash_is_added_once(db):
    with Store.at(db) as s:
        first = s.add_issues([issue(1), issue(2)])
        again = s.add_issues([issue(2), issue(3), issue(3)])
        assert first.added == (1, 2) and first.skipped == ()
        assert again.added == (3,) and again.skipped == ("hash-2", "hash-3")
        assert s.issues()["title"].tolist() == ["issue 1", "issue 2", "issue 3"]


def test_issue_filters_and_status(db):
    with Store.at(db) as s:
        s.add_issues([issue(1, week="2026-W45"), issue(2, department="it"), issue(3)])
        assert s.issues(week="2026-W47")["id"].tolist() == [2, 3]
        assert s.issues(through_week="2026-W46")["id"].tolist() == [1]
        assert s.issues(department="it")["id"].tolist() == [2]
        assert s.set_issue_status([1, 3], "resolved", "2026-W47") == 2
        open_ = s.issues(status="open")
        assert open_["id"].tolist() == [2]
        assert s.issues(status="resolved")["resolved_week"].tolist() == ["2026-W47"] * 2
        with pytest.raises(ParamsError, match="issue status 'closed' unknown"):
            s.set_issue_status([1], "closed", None)


def _meeting(s: Store, place: str, people):
    return s.record_meeting(
        "2026-W47",
        details={
            "title": "Review",
            "starts_at": dt.datetime(2026, 11, 23, 6),
            "ends_at": dt.datetime(2026, 11, 23, 7, 30),
            "timezone": "Asia/Shanghai",
            "place": place,
            "online_link": None,
            "organizer_name": "Li Na",
            "organizer_email": "li.na@x.example",
        },
        uid="uid-1@x",
        invite_hash=place,
        people=people,
    )


def test_meeting_sequence_rises_only_when_the_invite_changes(db):
    people = [
        {
            "name": "Li Na",
            "email": "Li.Na@x.example",
            "department": "operations",
            "role": "organizer",
        },
        {"name": "Chen", "email": "chen@x.example", "department": "logistics", "role": "required"},
    ]
    with Store.at(db) as s:
        first = _meeting(s, "Room 1", people)
        same = _meeting(s, "Room 1", people)
        moved = _meeting(s, "Room 2", people[:1])
        assert (first.sequence, same.sequence, moved.sequence) == (0, 0, 1)
        assert first.id == same.id == moved.id and moved.uid == "uid-1@x"
        with s.engine.connect() as conn:
            roles = conn.execute(
                sa.text(
                    "SELECT a.email, t.role FROM attendance t JOIN attendees a "
                    "ON a.id = t.attendee_id ORDER BY a.email"
                )
            ).all()
        # Addresses are stored lower-case; attendance already recorded is kept.
        assert roles == [("chen@x.example", "required"), ("li.na@x.example", "organizer")]


def test_action_items_query_joins_the_meeting_week(db):
    with Store.at(db) as s:
        record = _meeting(s, "Room 1", [])
        with s.transaction() as conn:
            conn.execute(
                store_module.ACTION_ITEMS.insert().values(
                    meeting_id=record.id,
                    description="Call EastPost",
                    owner="Chen Jie",
                    department="logistics",
                    due_date=dt.date(2026, 11, 27),
                    status="open",
                    note="",
                    created_at=dt.datetime(2026, 11, 23, 8),
                )
            )
        items = s.action_items(status="open", department="logistics")
        assert items[["description", "meeting_week"]].values.tolist() == [
            ["Call EastPost", "2026-W47"]
        ]
        assert s.action_items(status="done").empty


def test_export_csv_and_json(db, tmp_path):
    with Store.at(db) as s:
        s.add_issues([issue(1, title="华南延误", first_seen=dt.date(2026, 11, 17)), issue(2)])
        csv_files = s.export(tmp_path / "csv")
        json_files = s.export(tmp_path / "json", "json")
        with pytest.raises(ParamsError, match="export format 'xml' unknown"):
            s.export(tmp_path / "x", "xml")
    assert sorted(p.name for p in csv_files) == sorted(f"{t}.csv" for t in METADATA.tables)
    with open(tmp_path / "csv" / "issues.csv", encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["title"] for r in rows] == ["华南延误", "issue 2"]
    assert rows[0]["first_seen"] == "2026-11-17" and rows[1]["first_seen"] == ""
    doc = json.loads(json_files[0].read_text(encoding="utf-8"))
    assert doc["schema_version"] == 6
    assert [r["title"] for r in doc["tables"]["issues"]] == ["华南延误", "issue 2"]
    assert doc["tables"]["meetings"] == []


def test_store_location_from_params(tmp_path, monkeypatch):
    folder = tmp_path / "company" / "params"
    folder.mkdir(parents=True)
    base = "company: X\ntimezone: Asia/Shanghai\nsource: {kind: folder, path: data}\n"
    plain = folder / "plain.yaml"
    plain.write_text(base, encoding="utf-8")
    assert (
        store_url(load_params(plain)) == f"sqlite:///{tmp_path / 'company' / 'data' / 'meeting.db'}"
    )

    relative = folder / "relative.yaml"
    relative.write_text(base + "store: {path: db/m.db}\n", encoding="utf-8")
    assert store_url(load_params(relative)) == f"sqlite:///{folder / 'db' / 'm.db'}"
    with open_store(load_params(relative)) as s:
        assert (folder / "db" / "m.db").is_file() and s.version == CURRENT_VERSION

    env = folder / "env.yaml"
    env.write_text(base + "store: {url_env: MEETING_STORE_URL}\n", encoding="utf-8")
    monkeypatch.delenv("MEETING_STORE_URL", raising=False)
    with pytest.raises(ParamsError, match="MEETING_STORE_URL .* is not set"):
        store_url(load_params(env))
    monkeypatch.setenv("MEETING_STORE_URL", "postgresql://u:secret@db/meetings")
    assert store_url(load_params(env)) == "postgresql://u:secret@db/meetings"

    secret = folder / "secret.yaml"
    secret.write_text(base + "store: {url: 'postgresql://u:pw@db/m'}\n", encoding="utf-8")
    with pytest.raises(InvalidParamError, match="name that variable in 'store.url_env'"):
        load_params(secret)


# --- per-item records -------------------------------------------------------------------


@pytest.fixture
def two(db):
    """Two stores on one database, as two note-takers' consoles; a meeting about W47."""
    first, second = Store.at(db), Store.at(db)
    _meeting(first, "Room 1", [
        {"name": "Li Na", "email": "li.na@x.example", "department": "operations",
         "role": "organizer"},
        {"name": "Chen", "email": "chen@x.example", "department": "logistics", "role": "required"},
    ])  # fmt: skip
    yield first, second
    first.close()
    second.close()


def test_items_added_by_two_writers_are_all_kept(two):
    a, b = two
    due = dt.date(2026, 11, 27)
    store_module.add_decision(a, "2026-W47", "Shift South parcels", department="logistics")
    store_module.add_action_item(
        b, "2026-W47", description="Call EastPost", owner="Chen", department="logistics",
        due_date=due,
    )  # fmt: skip
    store_module.add_decision(b, "2026-W47", "Extra pickers")
    store_module.set_attendance(a, "2026-W47", "li.na@x.example", "present")
    store_module.set_attendance(b, "2026-W47", "chen@x.example", "delegate", delegate="Sun Li")
    store_module.add_feedback(a, "2026-W47", email="chen@x.example", rating=4)
    store_module.add_feedback(b, "2026-W47", rating=2, comment="long")
    state = store_module.meeting_state(a, "2026-W47")
    assert [d.text for d in state.decisions] == ["Shift South parcels", "Extra pickers"]
    assert [(i.description, i.version, i.meeting_week) for i in state.actions] == [
        ("Call EastPost", 1, "2026-W47")
    ]
    assert {(p.email, p.status, p.delegate, p.version) for p in state.attendance} == {
        ("li.na@x.example", "present", "", 1),
        ("chen@x.example", "delegate", "Sun Li", 1),
    }
    assert [(f.email, f.rating, f.comment) for f in state.feedback] == [
        ("chen@x.example", 4, ""),
        (None, 2, "long"),
    ]
    # Adding items makes the minutes exist, with no summary recorded yet.
    assert (state.summary.summary, state.summary.version) == ("", 0)


def test_an_edit_on_a_stale_version_is_refused(two):
    a, b = two
    item = store_module.add_action_item(
        a, "2026-W47", description="Call EastPost", owner="Chen", department="logistics",
        due_date=dt.date(2026, 11, 27),
    )  # fmt: skip
    seen_by_b = store_module.meeting_state(b, "2026-W47").actions[0]
    changed = store_module.update_action_item(
        a, item.id, expected_version=item.version, owner="Chen Jie"
    )
    assert (changed.owner, changed.version) == ("Chen Jie", 2)
    with pytest.raises(
        ConcurrentEditError,
        match=rf"action item #{item.id} was changed by someone else: the edit expected "
        r"version 1 but the store holds version 2",
    ) as info:
        store_module.close_action_item(b, item.id, expected_version=seen_by_b.version)
    assert (info.value.expected, info.value.stored, info.value.exit_code) == (1, 2, 3)
    (now,) = store_module.meeting_state(b, "2026-W47").actions
    assert (now.owner, now.status, now.version) == ("Chen Jie", "open", 2)  # nothing lost
    closed = store_module.close_action_item(b, item.id, expected_version=2, note="agreed")
    assert (closed.status, closed.note, closed.version) == ("done", "agreed", 3)
    assert closed.closed_at is not None


def test_writing_the_same_values_keeps_the_version(two):
    a, _ = two
    d = store_module.add_decision(a, "2026-W47", "Shift South parcels")
    same = store_module.update_decision(a, d.id, expected_version=None, text="Shift South parcels")
    assert same.version == 1
    again = store_module.update_decision(a, d.id, expected_version=1, department="logistics")
    assert (again.department, again.version) == ("logistics", 2)


def test_attendance_summary_and_times_carry_versions(two):
    a, b = two
    store_module.set_attendance(a, "2026-W47", "chen@x.example", "present", expected_version=0)
    with pytest.raises(
        ConcurrentEditError, match="expected version 0 but the store holds version 1"
    ):
        store_module.set_attendance(b, "2026-W47", "chen@x.example", "absent", expected_version=0)
    first = store_module.set_summary(a, "2026-W47", summary="South late", expected_version=0)
    assert (first.summary, first.plan, first.version) == ("South late", (), 1)
    plan = store_module.set_summary(b, "2026-W47", plan=["Two pickers", " ", "Swift"],
                                    expected_version=1)  # fmt: skip
    assert (plan.summary, plan.plan, plan.version) == ("South late", ("Two pickers", "Swift"), 2)
    with pytest.raises(ConcurrentEditError, match="summary and plan .* expected version 1"):
        store_module.set_summary(a, "2026-W47", summary="Overwritten", expected_version=1)
    store_module.plan_segments(a, "2026-W47", [("opening", "Opening", 5), ("it", "IT", 4)])
    spent = store_module.set_segment_time(b, "2026-W47", "it", 6, expected_version=0)
    assert (spent.planned_minutes, spent.actual_minutes, spent.version) == (4, 6, 1)
    # The agenda laid out again (one more segment) keeps what was spent, and its version.
    store_module.plan_segments(
        a, "2026-W47", [("opening", "Opening", 5), ("logistics", "Logistics", 8), ("it", "IT", 4)]
    )
    segments = store_module.meeting_state(a, "2026-W47").segments
    assert [(s.segment, s.position, s.actual_minutes, s.version) for s in segments] == [
        ("opening", 1, None, 0), ("logistics", 2, None, 0), ("it", 3, 6, 1),
    ]  # fmt: skip


def test_per_item_writes_need_the_meeting(db):
    with Store.at(db) as s:
        with pytest.raises(InputDataError, match="no meeting about week 2026-W48 in the store"):
            store_module.add_decision(s, "2026-W48", "X")
        assert store_module.meeting_state(s, "2026-W48").meeting_id is None


def test_a_batch_commits_all_or_nothing(two):
    a, _ = two
    with pytest.raises(ParamsError, match="action status 'later' unknown"), a.batch() as batch:
        store_module.add_decision(batch, "2026-W47", "Kept only if all goes well")
        store_module.add_action_item(
            batch, "2026-W47", description="X", owner="Y", department="it",
            due_date=dt.date(2026, 12, 1), status="later",
        )  # fmt: skip
    assert store_module.meeting_state(a, "2026-W47").decisions == ()


def test_a_missing_database_driver_is_an_environment_failure():
    from meetinglib.core.errors import DriverMissingError

    url = "postgresql+nosuchdriver://u:secret@db.example/meetings"
    with pytest.raises(DriverMissingError, match=r"nosuchdriver.*\*\*\*@db.example") as info:
        Store.at(url)
    assert info.value.exit_code == 5 and "secret" not in str(info.value)
