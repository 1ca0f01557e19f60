"""Recording minutes from a YAML file: checks, the transaction, idempotence, the CLI."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from meetinglib.cli import main
from meetinglib.core.errors import InputDataError
from meetinglib.core.params import load_params
from meetinglib.meeting.minutes import (
    attendance_frame,
    decision_frame,
    feedback_frame,
    feedback_trend,
    has_minutes,
    key_path,
    minutes_row,
    record_minutes,
    segment_frame,
    sent_within,
)
from meetinglib.meeting.store import Store

DATA = Path(__file__).parent / "data" / "minutes"
GOOD = DATA / "2026-W47.yaml"
BAD = DATA / "bad.yaml"


def minutes_params(folder: Path, extra: str = "") -> Path:
    """Params with four people to invite and a store in ``folder``; one issue stored."""
    path = folder / "params.yaml"
    path.write_text(
        f"""\
company: Demo Shop
timezone: Asia/Shanghai
source: {{kind: folder, path: data}}
store: {{path: '{folder / "meeting.db"}'}}
output_dir: '{folder / "out"}'
meeting:
  title: Weekly review
  time: "14:00"
  organizer: {{name: Li Na, email: li.na@shop.example, department: operations}}
  attendees:
    - {{name: Chen Jie, email: chen.jie@shop.example, department: logistics}}
    - {{name: Zhang Min, email: zhang.min@shop.example, department: customer_service}}
    - {{name: Liu Yang, email: liu.yang@shop.example, department: finance}}
{extra}""",
        encoding="utf-8",
    )
    with Store.at(f"sqlite:///{folder / 'meeting.db'}") as store:
        store.add_issues(
            [
                {"department": "logistics", "week": "2026-W47", "title": "EastPost late",
                 "severity": "high", "source": "x", "row_hash": "1",
                 "segment": "carrier=EastPost;region=South"},
            ]
        )  # fmt: skip
    return path


def counts(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {
            t: conn.execute(sa.text(f"SELECT COUNT(*) FROM {t}")).scalar()
            for t in ("meetings", "minutes", "decisions", "action_items", "feedback",
                      "attendance_records", "segment_times")
        }  # fmt: skip


def test_key_paths_count_items_from_one():
    assert key_path(("actions", 1, "due")) == "actions[2].due"
    assert key_path(("time", "opening")) == "time.opening"
    assert key_path(()) == "(top level)"


def test_record_a_minutes_file(tmp_path):
    params = load_params(minutes_params(tmp_path))
    with Store.at(f"sqlite:///{tmp_path / 'meeting.db'}") as store:
        result = record_minutes(params, store, GOOD, "2026-W47")
        assert (result.decisions_added, result.actions_added, result.unchanged) == (1, 2, False)
        row = minutes_row(store, "2026-W47")
        assert row["summary"].startswith("EastPost's late deliveries")
        # The meeting about W47 is held Mon 2026-11-23 14:00-15:30 Shanghai = 06:00-07:30 UTC.
        assert row["ends_at"] == dt.datetime(2026, 11, 23, 7, 30)
        people = attendance_frame(store, row["id"]).set_index("email")
        assert people.loc["zhang.min@shop.example", "status"] == "delegate"
        assert people.loc["zhang.min@shop.example", "delegate"] == "Sun Li"
        assert people.loc["liu.yang@shop.example", "status"] == "absent"
        segments = segment_frame(store, row["id"]).set_index("segment")
        # Planned from the agenda: one logistics issue x 4 min; fixed boxes from the defaults.
        assert segments.loc["logistics", "planned_minutes"] == 4
        assert segments.loc["logistics", "actual_minutes"] == 9
        assert segments["planned_minutes"].sum() == 5 + 15 + 4 + 15 + 10 + 5
        assert segments["actual_minutes"].sum() == 6 + 18 + 9 + 20 + 10 + 5
        (decision,) = decision_frame(store, row["id"]).itertuples()
        assert decision.segment == "carrier=EastPost;region=South"
        items = store.action_items()
        assert (
            items["description"].tolist()[0] == "Agree the temporary volume shift with SwiftExpress"
        )
        assert items["decision_id"].tolist()[0] == decision.id
        feedback = feedback_frame(store, row["id"])
        assert feedback["name"].tolist() == ["Chen Jie", "Li Na", ""]
        trend = feedback_trend(store, "2026-W47")
        assert trend["mean_rating"].tolist() == [pytest.approx(4.0)]  # (4 + 5 + 3) / 3
    assert has_minutes(params, "2026-W47") and not has_minutes(params, "2026-W46")


def test_recording_the_same_file_again_changes_nothing(tmp_path):
    params = load_params(minutes_params(tmp_path))
    with Store.at(f"sqlite:///{tmp_path / 'meeting.db'}") as store:
        record_minutes(params, store, GOOD, "2026-W47")
        before = counts(store)
        assert record_minutes(params, store, GOOD, "2026-W47").unchanged
        # An edited copy (new hash) matches the stored items instead of adding them again.
        copy = tmp_path / "copy.yaml"
        copy.write_text(GOOD.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
        again = record_minutes(params, store, copy, "2026-W47")
        assert (again.decisions_added, again.actions_added, again.actions_updated) == (0, 0, 2)
        assert counts(store) == before


def test_a_malformed_file_is_rejected_with_nothing_written(tmp_path, capsys):
    path = minutes_params(tmp_path)
    params = load_params(path)
    with Store.at(f"sqlite:///{tmp_path / 'meeting.db'}") as store:
        before = counts(store)
        with pytest.raises(
            InputDataError, match=r"bad\.yaml: 4 problem\(s\); nothing was recorded"
        ):
            record_minutes(params, store, BAD, "2026-W47")
        assert counts(store) == before
    assert main(["minutes", "record", str(BAD), "--week", "2026-W47", "--params", str(path)]) == 3
    err = capsys.readouterr().err
    assert "attendance[1].status: Input should be 'present', 'absent' or 'delegate'" in err
    assert "actions[1].due:" in err and "'2026-13-40'" in err
    assert "actions[2].owner: Field required" in err
    assert "feedback[1].rating: Input should be less than or equal to 5" in err
    assert "Traceback" not in err


def test_content_problems_name_the_key(tmp_path):
    params = load_params(minutes_params(tmp_path))
    bad = tmp_path / "content.yaml"
    bad.write_text(
        "week: 2026-W46\n"
        "attendance: [{email: nobody@shop.example, status: present}]\n"
        "time: {lunch: 30}\n"
        "actions: [{description: X, owner: Y, department: warehouse, due: 2026-12-01,"
        " issue: 99, decision: D9}]\n"
        "decisions: [{text: Y, issue: No such issue}]\n"
        "updates: [{id: 42, status: done}, {description: never set}, {status: done}]\n",
        encoding="utf-8",
    )
    with Store.at(f"sqlite:///{tmp_path / 'meeting.db'}") as store:
        with pytest.raises(InputDataError) as info:
            record_minutes(params, store, bad, "2026-W47")
        assert counts(store)["meetings"] == 0
    text = str(info.value)
    for part in (
        "week: the file says 2026-W46 but --week is 2026-W47",
        "attendance[1].email: 'nobody@shop.example' is not the organizer or an attendee",
        "time.lunch: not an agenda segment",
        "actions[1].department: 'warehouse' not in",
        "actions[1].decision: no decision with ref 'D9' above",
        "actions[1].issue: issue #99 is not in the store",
        "updates[1].id: action item #42 is not in the store",
        "decisions[1].issue: no issue titled 'No such issue' in the store up to week 2026-W47",
        "updates[2].description: no action item of an earlier meeting reads 'never set'",
        "updates[3]: give either id or description of the action item",
    ):
        assert part in text


def test_cli_record_twice(tmp_path, capsys):
    path = str(minutes_params(tmp_path))
    args = ["minutes", "record", str(GOOD), "--week", "2026-W47", "--params", path]
    assert main(args) == 0
    assert "1 new decision(s), 2 new and 0 updated action item(s)" in capsys.readouterr().out
    assert main(args) == 0
    assert "already recorded for week 2026-W47; nothing changed" in capsys.readouterr().out


def test_the_24_hour_promise():
    ended = dt.datetime(2026, 11, 23, 7, 30)
    assert sent_within(ended, ended + dt.timedelta(hours=24)) is True
    assert sent_within(ended, ended + dt.timedelta(hours=24, seconds=1)) is False
    assert sent_within(ended, None) is None


def test_time_control_totals(tmp_path):
    from meetinglib.core.weeks import IsoWeek
    from meetinglib.meeting.minutes_report import MinutesReport

    params = load_params(minutes_params(tmp_path))
    with Store.at(f"sqlite:///{tmp_path / 'meeting.db'}") as store:
        record_minutes(params, store, GOOD, "2026-W47")
        report = MinutesReport(params, store, IsoWeek.parse("2026-W47"), None, "en")
        total = report.time_frame().iloc[-1]
        assert (total.planned_minutes, total.actual_minutes, total.over) == (54, 68, 14)
        # (5 + 15 + 4 + 15 + 10 + 5 planned, 6 + 18 + 9 + 20 + 10 + 5 actual.) One segment
        # without its actual minutes: the total would understate the meeting.
        with store.transaction() as conn:
            conn.execute(sa.text("UPDATE segment_times SET actual_minutes = NULL "
                                 "WHERE segment = 'solutions'"))  # fmt: skip
        total = report.time_frame().iloc[-1]
        assert total.planned_minutes == 54
        assert pd.isna(total.actual_minutes) and pd.isna(total.over)


def test_recording_a_file_merges_item_by_item(tmp_path):
    from meetinglib.meeting import store as records

    params = load_params(minutes_params(tmp_path))
    with Store.at(f"sqlite:///{tmp_path / 'meeting.db'}") as store:
        record_minutes(params, store, GOOD, "2026-W47")
        before = records.meeting_state(store, "2026-W47")
        # Another note-taker adds a decision and edits an action item meanwhile.
        records.add_decision(store, "2026-W47", "Review carriers monthly")
        item = before.actions[0]
        records.update_action_item(store, item.id, expected_version=item.version, note="call")
        # A second file names only one person's attendance and one new action.
        other = tmp_path / "other.yaml"
        other.write_text(
            "attendance: [{email: liu.yang@shop.example, status: present}]\n"
            "actions: [{description: Check refunds, owner: Liu Yang, department: finance,"
            " due: 2026-12-01}]\n"
            "feedback: [{email: chen.jie@shop.example, rating: 5}]\n",
            encoding="utf-8",
        )
        result = record_minutes(params, store, other, "2026-W47")
        assert (result.decisions_added, result.actions_added) == (0, 1)
        after = records.meeting_state(store, "2026-W47")
    status = {a.email: (a.status, a.version) for a in after.attendance}
    assert status == {
        "li.na@shop.example": ("present", 1),
        "chen.jie@shop.example": ("present", 1),
        "zhang.min@shop.example": ("delegate", 1),
        "liu.yang@shop.example": ("present", 2),  # absent in the first file
    }
    assert [d.text for d in after.decisions] == [
        "Move South parcels from EastPost to SwiftExpress for two weeks",
        "Review carriers monthly",
    ]
    notes = {i.description: (i.note, i.version) for i in after.actions}
    assert notes[item.description] == ("call", 2)
    assert len(after.actions) == 3
    # Chen's feedback changed in place; the other two stayed.
    assert [(f.email, f.rating, f.version) for f in after.feedback] == [
        ("chen.jie@shop.example", 5, 2),
        ("li.na@shop.example", 5, 1),
        (None, 3, 1),
    ]
    assert after.summary.summary == before.summary.summary and after.summary.version == 1
    assert [s.version for s in after.segments] == [s.version for s in before.segments]


def _edited(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


@pytest.fixture
def recorded(tmp_path):
    """(params, a copy of the good minutes file, the store): the file recorded once."""
    params = load_params(minutes_params(tmp_path))
    minutes = tmp_path / "2026-W47.yaml"
    minutes.write_text(GOOD.read_text(encoding="utf-8"), encoding="utf-8")
    with Store.at(f"sqlite:///{tmp_path / 'meeting.db'}") as store:
        record_minutes(params, store, minutes, "2026-W47")
        yield params, minutes, store


def test_recording_a_corrected_file_keeps_what_others_changed_since(recorded):
    from meetinglib.meeting import store as records

    params, minutes, store = recorded
    first = records.meeting_state(store, "2026-W47")
    shift, calls = first.actions
    # Meanwhile: a new due date and a new owner (the command line), attendance and a
    # segment's minutes (the console).
    records.update_action_item(
        store, shift.id, expected_version=None, due_date=dt.date(2026, 12, 1)
    )
    records.update_action_item(store, calls.id, expected_version=None, owner="Li Na")
    records.set_attendance(store, "2026-W47", "liu.yang@shop.example", "present")
    records.set_segment_time(store, "2026-W47", "opening", 7)
    # The note-taker fixes a typo in the summary and records the file again.
    _edited(minutes, "main problem", "main issue")
    result = record_minutes(params, store, minutes, "2026-W47")
    after = records.meeting_state(store, "2026-W47")
    assert not result.unchanged and (result.actions_added, result.actions_updated) == (0, 0)
    assert after.summary.summary.startswith(
        "EastPost's late deliveries to the South are the week's main issue"
    )
    by_id = {i.id: i for i in after.actions}
    assert len(after.actions) == 2  # the reassigned item is not recorded a second time
    assert by_id[shift.id].due_date == dt.date(2026, 12, 1)
    assert by_id[calls.id].owner == "Li Na"
    assert {a.email: a.status for a in after.attendance}["liu.yang@shop.example"] == "present"
    assert {x.segment: x.actual_minutes for x in after.segments}["opening"] == 7


def test_what_the_file_changes_since_its_last_recording_is_written(recorded):
    from meetinglib.meeting import store as records

    params, minutes, store = recorded
    records.set_segment_time(store, "2026-W47", "opening", 7)  # someone else's edit
    _edited(minutes, "owner: Zhang Min", "owner: Li Na")
    _edited(minutes, "due: 2026-11-25", "due: 2026-11-26")
    _edited(minutes, "data_report: 18", "data_report: 21")
    result = record_minutes(params, store, minutes, "2026-W47")
    after = records.meeting_state(store, "2026-W47")
    assert (result.actions_added, result.actions_updated) == (0, 2)
    assert [(i.description[:10], i.owner, i.due_date) for i in after.actions] == [
        ("Agree the ", "Chen Jie", dt.date(2026, 11, 26)),
        ("Call custo", "Li Na", dt.date(2026, 12, 2)),
    ]
    minutes_of = {x.segment: x.actual_minutes for x in after.segments}
    assert (minutes_of["opening"], minutes_of["data_report"]) == (7, 21)


def test_a_file_changing_what_someone_else_changed_since_is_refused(recorded):
    from meetinglib.meeting import store as records
    from meetinglib.meeting.minutes import MinutesConflictError

    params, minutes, store = recorded
    shift = records.meeting_state(store, "2026-W47").actions[0]
    records.update_action_item(
        store, shift.id, expected_version=None, due_date=dt.date(2026, 12, 1)
    )
    _edited(minutes, "due: 2026-11-25", "due: 2026-11-27")
    _edited(minutes, "main problem", "main issue")
    with pytest.raises(
        MinutesConflictError,
        match=(
            rf"(?s)action item #{shift.id} "
            r"\(Agree the temporary volume shift with SwiftExpress\), "
            r"due: the file changes '2026-11-25' to '2026-11-27', but the store holds "
            r"'2026-12-01'.*Nothing was recorded"
        ),
    ) as refused:
        record_minutes(params, store, minutes, "2026-W47")
    after = records.meeting_state(store, "2026-W47")
    # the command line: exit code 3, the message, nothing written
    code = main(
        [
            "minutes",
            "record",
            str(minutes),
            "--week",
            "2026-W47",
            "--params",
            str(params.files[0]),
        ]
    )
    assert refused.value.exit_code == 3 and code == 3
    assert after.actions[0].due_date == dt.date(2026, 12, 1)
    assert "main problem" in after.summary.summary  # the whole file refused


def test_recording_an_edited_copy_keeps_every_version(tmp_path):
    from meetinglib.meeting import store as records

    params = load_params(minutes_params(tmp_path))
    with Store.at(f"sqlite:///{tmp_path / 'meeting.db'}") as store:
        record_minutes(params, store, GOOD, "2026-W47")
        before = records.meeting_state(store, "2026-W47")
        copy = tmp_path / "copy.yaml"
        copy.write_text(GOOD.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
        assert not record_minutes(params, store, copy, "2026-W47").unchanged
        after = records.meeting_state(store, "2026-W47")

    def without_time(state):
        return replace(state, summary=replace(state.summary, recorded_at=None, source=""))

    assert without_time(after) == without_time(before)
    assert after.summary.version == 1 and {i.version for i in after.actions} == {1}
