"""The meeting console, driven through its widgets' values and buttons, several at once."""

from __future__ import annotations

import datetime as dt

import pytest

from meetinglib.core.i18n import t
from meetinglib.core.params import load_params
from meetinglib.meeting.actions import add_action
from meetinglib.meeting.console import (
    MeetingConsole,
    console_week,
    issue_choices,
    label_width,
    latest_report_week,
)
from meetinglib.meeting.minutes import record_minutes
from meetinglib.meeting.store import Store, meeting_state
from tests.test_minutes import GOOD, minutes_params

pytest.importorskip("ipywidgets")

WEEK = "2026-W47"
CHEN, ZHANG, LI = "chen.jie@shop.example", "zhang.min@shop.example", "li.na@shop.example"


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


def _two(params, tmp_path):
    """Two consoles, each on its own connection to the same SQLite file."""
    url = f"sqlite:///{tmp_path / 'meeting.db'}"
    a_store, b_store = Store.at(url), Store.at(url)
    return MeetingConsole(params, a_store, WEEK, "en"), MeetingConsole(params, b_store, WEEK, "en")


def _decision(console, text, issue=None):
    console.decision_text.value = text
    console.decision_issue.value = issue
    console.decision_button.click()
    return console.decision_result.value


def _action(console, description, owner, department="logistics", due=dt.date(2026, 11, 27)):
    console.action_description.value = description
    console.action_owner.value = owner
    console.action_department.value = department
    console.action_due.value = due
    console.action_button.click()
    return console.action_result.value


def test_the_console_opens_on_its_week_with_everything_recorded(setup):
    params, store, earlier = setup
    record_minutes(params, store, GOOD, WEEK)
    console = MeetingConsole(params, store, WEEK, "en")

    assert "week 2026-W47" in console.title.value and "Weekly review" in console.title.value
    assert console.attendance[ZHANG][0].value == "delegate"
    assert console.attendance[ZHANG][1].value == "Sun Li"
    assert console.attendance["liu.yang@shop.example"][0].value == "absent"
    assert console.times["solutions"].value == 20 and console.times["logistics"].value == 9
    assert console.summary.value.startswith("EastPost's late deliveries")
    assert console.plan.value.splitlines()[0] == "Two extra pickers in WH-South from Tuesday"
    listed = " ".join(row.children[0].value for row in console.decision_list.children)
    assert "Move South parcels from EastPost to SwiftExpress" in listed
    assert len(console.action_list.children) == 2
    assert len(console.feedback_list.children) == 3
    # HTML typed by someone is shown as text, never as markup.
    rows = " ".join(row.children[0].value for row in console.feedback_list.children)
    assert "&lt;script&gt;" in rows and "<script>" not in rows
    (row,) = console.earlier_list.children
    assert f"#{earlier} Recount WH-South" in row.children[0].value


def test_two_consoles_on_one_store_lose_nothing(setup, tmp_path):
    params, store, _ = setup
    a, b = _two(params, tmp_path)

    assert "Decision recorded." in _decision(a, "Shift South parcels to SwiftExpress", issue=1)
    assert "Decision recorded." in _decision(b, "Two extra pickers in WH-South")
    assert "Action item recorded." in _action(a, "Agree pick-up times <today>", "Chen Jie")
    assert "Action item recorded." in _action(b, "Call late customers", "Zhang Min",
                                              "customer_service")  # fmt: skip
    a.attendance[CHEN][0].value = "present"
    a.times["opening"].value = 7
    b.attendance[ZHANG][0].value = "delegate"
    b.attendance[ZHANG][1].value = "Sun Li"
    b.times["logistics"].value = 12
    a.attendance_button.click()
    b.attendance_button.click()
    a.times_button.click()
    b.times_button.click()
    assert "Attendance saved (1 change(s))." in b.attendance_result.value
    a.feedback_person.value, a.feedback_rating.value = CHEN, 4
    b.feedback_person.value, b.feedback_comment.value = LI, "Quick & clear"
    a.feedback_button.click()
    b.feedback_button.click()
    a.summary.value = "South deliveries discussed."
    a.save_button.click()
    b.plan.value = "Two extra pickers\n\nSwiftExpress from Tuesday"
    b.save_button.click()
    assert "Minutes saved." in b.summary_result.value

    state = meeting_state(store, WEEK)
    assert sorted(d.text for d in state.decisions) == [
        "Shift South parcels to SwiftExpress", "Two extra pickers in WH-South"
    ]  # fmt: skip
    assert [d.issue_id for d in state.decisions if d.text.startswith("Shift")] == [1]
    assert sorted((x.description, x.owner) for x in state.actions) == [
        ("Agree pick-up times <today>", "Chen Jie"), ("Call late customers", "Zhang Min")
    ]  # fmt: skip
    people = {x.email: (x.status, x.delegate) for x in state.attendance}
    assert people[CHEN] == ("present", "") and people[ZHANG] == ("delegate", "Sun Li")
    assert people[LI] == (None, "")
    times = {x.segment: x.actual_minutes for x in state.segments}
    assert times["opening"] == 7 and times["logistics"] == 12
    assert sorted((f.email, f.rating, f.comment) for f in state.feedback) == [
        (CHEN, 4, ""), (LI, None, "Quick & clear")
    ]  # fmt: skip
    assert state.summary.summary == "South deliveries discussed."
    assert state.summary.plan == ("Two extra pickers", "SwiftExpress from Tuesday")

    # Each console sees the other's entries after Refresh; nothing typed here is lost.
    assert len(a.decision_list.children) == 2  # reloaded after its own last write
    assert b.refresh() and "2 decision(s), 2 action item(s)" in b.refresh_result.value
    assert b.summary.value == "South deliveries discussed."
    assert b.attendance[CHEN][0].value == "present" and b.times["opening"].value == 7


def test_the_same_item_edited_twice_is_shown_not_lost(setup, tmp_path):
    params, store, _ = setup
    a, b = _two(params, tmp_path)
    _decision(a, "Shift South parcels")
    b.refresh()
    (decision,) = meeting_state(store, WEEK).decisions

    a.edit_decision(decision.id)
    b.edit_decision(decision.id)
    assert a.decision_save.layout.display is None and a.decision_button.layout.display == "none"
    a.decision_text.value = "Shift South parcels to SwiftExpress"
    b.decision_text.value = "Shift South parcels to RapidRoute"
    a.decision_save.click()
    assert f"#{decision.id} saved." in a.decision_result.value
    b.decision_save.click()
    message = b.decision_result.value
    assert "Not saved: someone else changed this" in message
    assert "Shift South parcels to SwiftExpress" in message  # what the store holds now
    assert b.decision_text.value == "Shift South parcels to RapidRoute"  # kept in the form
    (stored,) = meeting_state(store, WEEK).decisions
    assert stored.text == "Shift South parcels to SwiftExpress"
    # Saving again replaces the other entry on purpose.
    b.decision_save.click()
    (stored,) = meeting_state(store, WEEK).decisions
    assert stored.text == "Shift South parcels to RapidRoute" and stored.version == 3

    # Form fields: a field changed in two consoles conflicts; untouched fields follow Refresh.
    a.summary.value = "Summary from A"
    b.summary.value = "Summary from B"
    assert a.save()
    assert not b.save() and "Summary from A" in b.summary_result.value
    assert b.summary.value == "Summary from B"
    a.attendance[CHEN][0].value = "present"
    b.attendance[CHEN][0].value = "absent"
    a.attendance_button.click()
    b.attendance_button.click()
    assert "Chen Jie: Present" in b.attendance_result.value
    assert [x.status for x in meeting_state(store, WEEK).attendance if x.email == CHEN] == [
        "present"
    ]


def test_closing_items_one_at_a_time(setup, tmp_path):
    params, store, earlier = setup
    a, b = _two(params, tmp_path)
    _action(a, "Agree pick-up times", "Chen Jie")
    b.refresh()
    (mine,) = meeting_state(store, WEEK).actions

    done = [c for c in a.earlier_list.children[0].children if "mc-done" in c._dom_classes]
    done[0].click()
    row = a.earlier_list.children[0]
    assert "Items closed." in row.children[-1].value and "done" in row.children[0].value
    # B loaded the earlier item open: A closed it meanwhile, which is what B wanted.
    assert b.close_item(earlier)
    row = b.earlier_list.children[0]
    assert "Already done: someone else marked it done meanwhile" in row.children[-1].value
    assert "What you typed" not in row.children[-1].value and "· done" in row.children[0].value
    # Closing this meeting's item keeps the rest.
    assert b.close_item(mine.id)
    items = store.action_items()
    assert dict(zip(items["id"], items["status"], strict=True)) == {
        earlier: "done", mine.id: "done"
    }  # fmt: skip


def test_a_bad_entry_writes_nothing_and_says_why(setup):
    params, store, _ = setup
    console = MeetingConsole(params, store, WEEK, "en")
    console.action_description.value = "Something"
    console.action_due.value = None
    assert not console.add_action()
    assert "pick a due date" in console.action_result.value
    console.action_due.value = dt.date(2026, 11, 25)
    console.action_owner.value = "  "
    assert not console.add_action()
    assert "owner is empty" in console.action_result.value
    console.attendance[LI][0].value = "delegate"  # without a name
    assert not console.save_attendance()
    assert "name the delegate" in console.attendance_result.value
    console.decision_text.value = "<b>bold</b>  "
    console.decision_text.value = " "
    assert not console.add_decision()
    assert "<b>" not in console.decision_result.value
    state = meeting_state(store, WEEK)
    assert (state.actions, state.decisions) == ((), ())
    assert all(x.status is None for x in state.attendance)


def test_every_control_is_labelled_in_both_languages(setup):
    params, store, _ = setup
    import ipywidgets as w

    for lang in ("en", "zh-CN"):
        console = MeetingConsole(params, store, WEEK, lang)
        stack, controls = [console.widget], []
        while stack:
            widget = stack.pop()
            stack.extend(getattr(widget, "children", ()))
            if isinstance(widget, w.ValueWidget | w.Button) and not isinstance(widget, w.HTML):
                controls.append(widget)
        unlabelled = [type(c).__name__ for c in controls if not c.description.strip()]
        assert len(controls) > 30 and unlabelled == []
        if lang == "zh-CN":
            assert console.refresh_button.description == "刷新"
            assert "第 2026-W47 周" in console.title.value
            assert console.times["opening"].description.startswith("开场")
    # The stored titles stay the handout's language whatever the consoles show.
    titles = {x.segment: x.title for x in meeting_state(store, WEEK).segments}
    assert titles["opening"] == t("agenda.opening", "en")


def test_the_issue_list_holds_open_issues_of_the_week_and_carried_over(setup):
    params, store, _ = setup
    rows = [
        ("2026-W46", "Carried over", "open"),
        ("2026-W46", "Solved before", "resolved"),
        ("2026-W47", "Closed this week", "resolved"),
        ("2026-W48", "Next week", "open"),
    ]
    added = store.add_issues(
        {"department": "logistics", "week": week, "title": title, "severity": "low",
         "source": "x", "row_hash": title} for week, title, _ in rows
    ).added  # fmt: skip
    for issue_id, (_, _, status) in zip(added, rows, strict=True):
        if status != "open":
            store.set_issue_status([issue_id], status, "2026-W47")
    labels = [label for label, _ in issue_choices(store, WEEK)]
    assert labels == [f"#{added[0]} Carried over", "#1 EastPost late"] or labels == [
        "#1 EastPost late",
        f"#{added[0]} Carried over",
    ]
    console = MeetingConsole(params, store, WEEK, "en")
    offered = [v for _, v in console.decision_issue.options]
    assert offered == [None, *(v for _, v in issue_choices(store, WEEK))]


def test_the_week_comes_from_the_latest_published_report(tmp_path):
    params = load_params(minutes_params(tmp_path))
    out = tmp_path / "out"
    assert latest_report_week(params) is None
    for name in ("2026-W45", "2026-W46", ".2026-W48.staging-1", "2026-W47.failed-2"):
        (out / name).mkdir(parents=True)
    (out / "2026-W45" / "index.html").write_text("x")
    (out / "2026-W46" / "index.html").write_text("x")
    (out / "2026-W47.failed-2" / "index.html").write_text("x")
    assert str(latest_report_week(params)) == "2026-W46"
    assert str(console_week(params)) == "2026-W46"
    assert str(console_week(params, "2026-W40")) == "2026-W40"


def test_label_widths_hold_the_longest_label():
    assert label_width(["Owner", "What is to be done"]) == "12.7em"
    assert label_width(["负责人"]) == "4.5em"


def test_every_notebook_names_the_kernel_make_install_sets_up():
    import json

    from tests.conftest import ROOT

    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "ipykernel install --sys-prefix --name meetinglib" in makefile
    assert "--allow-root" in makefile
    for path in sorted((ROOT / "meetinglib" / "notebooks").glob("*.ipynb")):
        spec = json.loads(path.read_text(encoding="utf-8"))["metadata"]["kernelspec"]
        assert spec["name"] == "meetinglib", path.name


@pytest.mark.slow
def test_the_console_notebook_builds_its_panel(tmp_path):
    import nbformat
    import papermill

    from tests.conftest import ROOT

    path = minutes_params(tmp_path)
    out = tmp_path / "console.ipynb"
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "meeting_console.ipynb"),
        str(out),
        parameters={"week": WEEK, "params_files": [str(path)], "lang": "en"},
        kernel_name="python3",
        progress_bar=False,
        cwd=str(ROOT / "notebooks"),
    )
    last = nbformat.read(out, as_version=4).cells[-1]
    (output,) = last.outputs
    assert "application/vnd.jupyter.widget-view+json" in output["data"]


def test_a_segment_time_conflict_names_the_segment_in_the_consoles_language(setup, tmp_path):
    # The store keeps the segment titles in the params' language (English here).
    params, _, _ = setup
    url = f"sqlite:///{tmp_path / 'meeting.db'}"
    a = MeetingConsole(params, Store.at(url), WEEK, "zh-CN")
    b = MeetingConsole(params, Store.at(url), WEEK, "zh-CN")
    a.times["opening"].value = 7
    b.times["opening"].value = 9
    assert a.save_times()
    assert not b.save_times()
    message = b.times_result.value
    assert f"{t('agenda.opening', 'zh-CN')}: 7" in message
    assert t("agenda.opening", "en") not in message
    assert b.times["logistics"].description.startswith("物流部：1 个问题")


def test_the_title_shows_the_meetings_title_in_the_consoles_language(setup, tmp_path):
    params, store, _ = setup
    layer = tmp_path / "both-languages.yaml"
    layer.write_text(
        "languages: [zh-CN, en]\n"
        "meeting:\n  title: {zh-CN: 每周订单处理例会, en: Weekly order-processing review}\n",
        encoding="utf-8",
    )
    params = load_params(*params.files, layer)
    for lang, title, other in [
        ("zh-CN", "每周订单处理例会", "Weekly order-processing review"),
        ("en", "Weekly order-processing review", "每周订单处理例会"),
    ]:
        heading = MeetingConsole(params, store, WEEK, lang).title.value
        assert title in heading and other not in heading and "{" not in heading


def test_a_row_button_on_an_item_changed_meanwhile_says_what_pressing_again_does(setup, tmp_path):
    from meetinglib.meeting.store import close_action_item, update_action_item, update_decision

    params, store, earlier = setup
    a, b = _two(params, tmp_path)
    _action(a, "Agree pick-up times", "Chen Jie")
    _action(a, "Call late customers", "Zhang Min", "customer_service")
    _decision(a, "Shift South parcels")
    b.refresh()
    state = meeting_state(store, WEEK)
    mine, other = state.actions
    (decision,) = state.decisions

    # Someone else adds a note: B's Mark done is refused, with what the store
    # holds now, and pressing it again closes the item as it is now.
    update_action_item(store, mine.id, expected_version=mine.version, note="moved")
    assert not b.close_item(mine.id)
    message = b.action_list.children[0].children[-1].value
    assert "Not marked done: someone else changed it" in message
    assert "Agree pick-up times" in message and "Press Mark done again" in message
    assert "What you typed" not in message
    assert b.close_item(mine.id)
    assert "Items closed." in b.action_list.children[0].children[-1].value
    # Dropped by someone else: not done, and no button to press again.
    close_action_item(store, other.id, expected_version=other.version, status="dropped")
    assert not b.close_item(other.id)
    row = b.action_list.children[1]
    assert "someone else closed it meanwhile" in row.children[-1].value
    assert not [c for c in row.children if "mc-done" in c._dom_classes]
    # Remove on a decision changed meanwhile: refused; pressed again, it removes it.
    update_decision(store, decision.id, expected_version=decision.version, text="Shift all")
    assert not b.remove_decision(decision.id)
    message = b.decision_list.children[0].children[-1].value
    assert "Not removed: someone else changed it" in message and "Shift all" in message
    assert "Press Remove again" in message and "What you typed" not in message
    assert b.remove_decision(decision.id)
    assert meeting_state(store, WEEK).decisions == ()
    items = store.action_items()
    assert dict(zip(items["id"], items["status"], strict=True)) == {
        earlier: "open", mine.id: "done", other.id: "dropped"
    }  # fmt: skip


def test_a_row_buttons_message_in_chinese(setup, tmp_path):
    params, store, earlier = setup
    url = f"sqlite:///{tmp_path / 'meeting.db'}"
    a = MeetingConsole(params, Store.at(url), WEEK, "zh-CN")
    b = MeetingConsole(params, Store.at(url), WEEK, "zh-CN")
    assert a.close_item(earlier)
    assert b.close_item(earlier)
    assert "已完成：其他人已在此期间将其标记为完成" in b.earlier_list.children[0].children[-1].value
