"""The agenda: time boxes in proportion to the issue load, and the iCalendar invitation."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from icalendar import Calendar

from meetinglib.cli import main
from meetinglib.core.errors import InvalidParamError
from meetinglib.core.params import AgendaParams, load_params
from meetinglib.core.weeks import IsoWeek
from meetinglib.meeting.agenda import (
    agenda_html,
    build_agenda,
    department_minutes,
    invite,
    meeting_start,
    prepare_meeting,
)
from meetinglib.meeting.store import Store

W47 = IsoWeek(2026, 47)
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")

PARAMS = """\
company: Demo <Shop>
timezone: Asia/Shanghai
source: {{kind: folder, path: data}}
store: {{path: '{db}'}}
output_dir: '{out}'
meeting:
  title: Weekly review
  weekday: tuesday
  time: 9:30
  duration_minutes: 90
  place: Room <3F>
  online_link: https://meet.example.com/ops
  organizer: {{name: Li Na, email: li.na@shop.example, department: operations}}
  attendees:
    - {{name: Chen Jie, email: chen.jie@shop.example, department: logistics}}
    - {{name: 张敏, email: zhang.min@shop.example, department: customer_service}}
    - {{name: Zhao Lei, email: zhao.lei@shop.example, department: it, optional: true}}
agenda: {{opening: 5, data_report: 15, minutes_per_issue: 4, min_department: 3,
          departments_cap: 30, solutions: 15, next_week_plan: 10, summary_feedback: 5}}
"""


@pytest.fixture
def params_file(tmp_path):
    path = tmp_path / "params.yaml"
    text = PARAMS.format(db=tmp_path / "meeting.db", out=tmp_path / "out")
    path.write_text(text, encoding="utf-8")
    return path


def boxes(**over) -> AgendaParams:
    values = {"minutes_per_issue": 4, "min_department": 3, "departments_cap": 40, **over}
    return AgendaParams(**values)


def test_department_minutes_under_the_cap_follow_the_issues():
    # 3, 2, 5 issues x 4 min = 12, 8, 20 = 40, within the cap; one issue gets the minimum.
    load = {"operations": 3, "customer_service": 2, "logistics": 5, "it": 0}
    assert department_minutes(load, boxes()) == {
        "operations": 12,
        "customer_service": 8,
        "logistics": 20,
    }
    assert department_minutes({"it": 1}, boxes(minutes_per_issue=2)) == {"it": 3}
    assert department_minutes({}, boxes()) == {}


def test_department_minutes_over_the_cap_are_shared_by_load():
    # cap 30: 3 each (9), the other 21 split 3:2:5 = 6.3, 4.2, 10.5 -> 6, 4, 10 and the
    # one minute left to the largest remainder (logistics, .5).
    load = {"operations": 3, "customer_service": 2, "logistics": 5}
    assert department_minutes(load, boxes(departments_cap=30)) == {
        "operations": 9,
        "customer_service": 7,
        "logistics": 14,
    }
    # Minimums alone over the cap: 10 minutes for 4 departments -> 2 each, 2 left, to the
    # larger loads.
    load = {"a": 1, "b": 4, "c": 2, "d": 3}
    minutes = department_minutes(load, boxes(departments_cap=10, min_department=5))
    assert minutes == {"a": 2, "b": 3, "c": 2, "d": 3}


def test_meeting_time_and_segments(params_file):
    params = load_params(params_file)
    assert meeting_start(params, W47) == dt.datetime(2026, 11, 24, 9, 30, tzinfo=SHANGHAI)
    agenda = build_agenda(params, W47, {"logistics": 2, "customer_service": 1, "finance": 0})
    items = [(i.key, i.department, i.minutes, i.start.strftime("%H:%M")) for i in agenda.items]
    assert items == [
        ("opening", None, 5, "09:30"),
        ("data_report", None, 15, "09:35"),
        # departments in the params order: customer_service before logistics
        ("department", "customer_service", 4, "09:50"),
        ("department", "logistics", 8, "09:54"),
        ("solutions", None, 15, "10:02"),
        ("next_week_plan", None, 10, "10:17"),
        ("summary_feedback", None, 5, "10:27"),
    ]
    assert agenda.planned_minutes == 62 and agenda.issues == 3
    assert agenda.end == dt.datetime(2026, 11, 24, 11, 0, tzinfo=SHANGHAI)
    assert agenda.items[3].title == "Logistics: 2 issues"
    zh = build_agenda(params, W47, {"logistics": 2}, lang="zh-CN")
    assert zh.items[2].title == "物流部：2 个问题"


def test_without_a_title_the_agenda_is_titled_in_its_language(tmp_path, params_file):
    """A company's params without meeting.title: a Chinese agenda is not titled in
    English (the catalogue's title, per language)."""
    text = params_file.read_text(encoding="utf-8").replace("  title: Weekly review\n", "")
    params_file.write_text(text, encoding="utf-8")
    params = load_params(params_file)
    assert params.meeting.title is None
    zh = build_agenda(params, W47, {"logistics": 2}, lang="zh-CN")
    en = build_agenda(params, W47, {"logistics": 2}, lang="en")
    assert (zh.title, en.title) == ("每周订单处理例会", "Weekly order-processing review")


def test_time_boxes_longer_than_the_meeting_are_a_params_error(tmp_path, params_file):
    text = params_file.read_text(encoding="utf-8").replace(
        "duration_minutes: 90", "duration_minutes: 60"
    )
    params_file.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidParamError, match="add up to 80 minutes at most .* = 60"):
        build_agenda(load_params(params_file), W47, {})


def test_invite_parses_and_names_everyone(params_file):
    params = load_params(params_file)
    agenda = build_agenda(params, W47, {"logistics": 2})
    stamp = dt.datetime(2026, 11, 23, 1, 0, tzinfo=dt.UTC)
    cal = Calendar.from_ical(invite(agenda, uid="u-1@x", sequence=3, stamp=stamp))
    assert str(cal["METHOD"]) == "REQUEST"
    (event,) = cal.walk("VEVENT")
    assert event.decoded("DTSTART") == dt.datetime(2026, 11, 24, 9, 30, tzinfo=SHANGHAI)
    assert event.decoded("DTEND") == dt.datetime(2026, 11, 24, 11, 0, tzinfo=SHANGHAI)
    assert event["DTSTART"].params["TZID"] == "Asia/Shanghai"
    assert [tz["TZID"] for tz in cal.walk("VTIMEZONE")] == ["Asia/Shanghai"]
    assert str(event["UID"]) == "u-1@x" and int(event["SEQUENCE"]) == 3
    assert str(event["LOCATION"]) == "Room <3F>"
    assert str(event["URL"]) == "https://meet.example.com/ops"
    assert str(event["ORGANIZER"]) == "mailto:li.na@shop.example"
    assert event["ORGANIZER"].params["CN"] == "Li Na"
    attendees = {str(a): (a.params["CN"], a.params["ROLE"]) for a in event["ATTENDEE"]}
    assert attendees == {
        "mailto:chen.jie@shop.example": ("Chen Jie", "REQ-PARTICIPANT"),
        "mailto:zhang.min@shop.example": ("张敏", "REQ-PARTICIPANT"),
        "mailto:zhao.lei@shop.example": ("Zhao Lei", "OPT-PARTICIPANT"),
    }
    description = str(event["DESCRIPTION"])
    assert "09:50–09:58  Logistics: 2 issues (8 min)" in description


def test_agenda_page_escapes_text(params_file):
    page = agenda_html(build_agenda(load_params(params_file), W47, {"logistics": 1}))
    assert "Demo &lt;Shop&gt;" in page and "Room &lt;3F&gt;" in page
    assert "<Shop>" not in page and "<3F>" not in page
    assert '<html lang="en">' in page


def test_meeting_is_recorded_and_sequence_rises_when_place_changes(params_file):
    params = load_params(params_file)
    with Store.at(f"sqlite:///{params.store.path}") as store:
        first = prepare_meeting(params, store, W47)
        again = prepare_meeting(params, store, W47)
        text = params_file.read_text(encoding="utf-8").replace("Room <3F>", "Room 5")
        params_file.write_text(text, encoding="utf-8")
        moved = prepare_meeting(load_params(params_file), store, W47)
    assert (first.sequence, again.sequence, moved.sequence) == (0, 0, 1)
    assert first.uid == moved.uid and first.uid.startswith("weekly-review-2026-W47-demo-shop-")
    event = Calendar.from_ical(moved.ics).walk("VEVENT")[0]
    assert int(event["SEQUENCE"]) == 1 and str(event["LOCATION"]) == "Room 5"


def test_cli_agenda_writes_the_files(params_file, tmp_path, capsys):
    with Store.at(f"sqlite:///{tmp_path / 'meeting.db'}") as store:
        store.add_issues(
            [
                {"department": d, "week": "2026-W47", "title": t, "severity": "high",
                 "source": "x", "row_hash": t}
                for d, t in [("logistics", "EastPost late"), ("logistics", "Scanner broken"),
                             ("it", "Export fails")]
            ]
        )  # fmt: skip
    assert main(["agenda", "--params", str(params_file), "--week", "2026-W47"]) == 0
    out = capsys.readouterr().out
    assert "3 issue(s) from 2 department(s), 62 of 90 minutes planned" in out
    folder = tmp_path / "out" / "2026-W47"
    names = {p.name for p in folder.iterdir()}
    assert {"agenda.html", "meeting.ics", "notice.txt", "notice.html"} <= names
    assert "Logistics: 2 issues" in (folder / "agenda.html").read_text(encoding="utf-8")
    assert "IT: 1 issue (4 min)" in (folder / "notice.txt").read_text(encoding="utf-8")
    Calendar.from_ical((folder / "meeting.ics").read_bytes())


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("  weekday: someday", r"'meeting.weekday' .*'someday' is not a weekday"),
        ("  organizer: {name: X, email: not-an-address}", r"'meeting.organizer.email'"),
        (
            "  attendees: [{name: X, email: x@shop.example, department: sales}]",
            r"attendee department\(s\) \['sales'\] not in meeting.departments",
        ),
        ("  time: 25:99", r"'meeting.time'"),
    ],
)
def test_meeting_params_errors_name_the_key(tmp_path, line, error):
    path = tmp_path / "p.yaml"
    path.write_text(
        "company: X\ntimezone: Asia/Shanghai\nsource: {kind: folder, path: d}\n"
        f"meeting:\n{line}\n",
        encoding="utf-8",
    )
    with pytest.raises(InvalidParamError, match=error):
        load_params(path)
