"""The note-taker's console, driven through its widgets' values and buttons."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from meetinglib.core.params import load_params
from meetinglib.meeting.actions import add_action
from meetinglib.meeting.console import MeetingConsole
from meetinglib.meeting.minutes import (
    attendance_frame,
    decision_frame,
    feedback_frame,
    minutes_row,
    record_minutes,
    segment_frame,
)
from meetinglib.meeting.store import Store
from tests.test_minutes import GOOD, minutes_params

pytest.importorskip("ipywidgets")


@pytest.fixture
def setup(tmp_path):
    params = load_params(minutes_params(tmp_path))
    store = Store.at(f"sqlite:///{tmp_path / 'meeting.db'}")
    earlier = add_action(
        params, store, "2026-W46", description="Recount WH-South",
        owner="Chen Jie", department="logistics", due=dt.date(2026, 11, 18),
    )  # fmt: skip
    yield params, store, earlier
    store.close()


def test_recording_the_meeting_through_the_widgets(setup):
    params, store, earlier = setup
    console = MeetingConsole(params, store, "2026-W47", "en")
    assert [v for _, v in console.earlier.options] == [earlier]

    console.attendance["chen.jie@shop.example"][0].value = "present"
    console.attendance["zhang.min@shop.example"][0].value = "delegate"
    console.attendance["zhang.min@shop.example"][1].value = "Sun Li"
    console.times["opening"].value = 7
    console.times["logistics"].value = 12

    console.decision_text.value = "Shift South parcels to SwiftExpress"
    console.decision_department.value = "logistics"
    console.decision_issue.value = 1
    console.decision_button.click()
    assert "Decision recorded." in console.message.value and console.decision_text.value == ""

    console.action_description.value = "Agree pick-up times <today>"
    console.action_owner.value = "Chen Jie"
    console.action_department.value = "logistics"
    console.action_due.value = dt.date(2026, 11, 25)
    console.action_button.click()
    assert "1 decision(s), 1 action item(s)" in console.message.value

    console.earlier.value = (earlier,)
    console.done_button.click()
    assert console.earlier.options == ()

    console.feedback_person.value = "chen.jie@shop.example"
    console.feedback_rating.value = 4
    console.feedback_comment.value = "Quick & clear"
    console.feedback_button.click()
    console.summary.value = "South deliveries discussed."
    console.plan.value = "Two extra pickers\n\nSwiftExpress from Tuesday"
    console.save_button.click()
    assert "Minutes saved." in console.message.value

    row = minutes_row(store, "2026-W47")
    assert (row["summary"], row["plan"], row["source"]) == (
        "South deliveries discussed.", "Two extra pickers\nSwiftExpress from Tuesday", "console"
    )  # fmt: skip
    people = attendance_frame(store, row["id"]).set_index("email")["status"]
    assert people["zhang.min@shop.example"] == "delegate" and people.isna().sum() == 2
    times = segment_frame(store, row["id"]).set_index("segment")["actual_minutes"]
    assert times["opening"] == 7 and times["logistics"] == 12
    assert decision_frame(store, row["id"])["issue_id"].tolist() == [1]
    items = store.action_items().set_index("id")
    assert items.loc[earlier, "status"] == "done"
    assert (items["description"] == "Agree pick-up times <today>").sum() == 1  # once, not twice
    assert feedback_frame(store, row["id"])["comment"].tolist() == ["Quick & clear"]


def test_a_bad_entry_writes_nothing_and_says_why(setup):
    params, store, _ = setup
    console = MeetingConsole(params, store, "2026-W47", "en")
    console.action_description.value = "Something"
    console.action_due.value = None
    assert not console.add_action()
    assert "pick a due date" in console.message.value
    console.action_due.value = dt.date(2026, 11, 25)
    console.action_owner.value = "  "
    assert not console.add_action()
    assert "Not recorded: owner:" in console.message.value
    console.action_owner.value = "<b>Chen</b>"
    console.action_department.value = "finance"
    console.action_issue.value = None
    console.attendance["li.na@shop.example"][0].value = "delegate"  # without a name
    assert not console.add_action()
    assert "attendance[1].delegate: name who came instead" in console.message.value
    assert "<b>" not in console.message.value
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM minutes")).scalar() == 0


def test_the_console_keeps_a_recorded_file_intact(setup):
    params, store, _ = setup
    record_minutes(params, store, GOOD, "2026-W47")
    console = MeetingConsole(params, store, "2026-W47", "zh-CN")
    console.feedback_rating.value = 2
    assert console.add_feedback()  # anonymous: added, the file's three are replaced by it
    row = minutes_row(store, "2026-W47")
    assert row["summary"].startswith("EastPost's late deliveries")  # no summary typed: kept
    assert attendance_frame(store, row["id"])["status"].notna().sum() == 4
    assert (
        segment_frame(store, row["id"]).set_index("segment").loc["solutions", "actual_minutes"]
        == 20
    )
    assert "反馈已记录" in console.message.value


@pytest.mark.slow
def test_the_console_notebook_builds_its_panel(tmp_path):
    import papermill

    from tests.conftest import ROOT

    path = minutes_params(tmp_path)
    out = tmp_path / "console.ipynb"
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "meeting_console.ipynb"),
        str(out),
        parameters={"week": "2026-W47", "params_files": [str(path)], "lang": "en"},
        kernel_name="python3",
        progress_bar=False,
        cwd=str(ROOT / "notebooks"),
    )
    import nbformat

    last = nbformat.read(out, as_version=4).cells[-1]
    (output,) = last.outputs
    assert "application/vnd.jupyter.widget-view+json" in output["data"]
