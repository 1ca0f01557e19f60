"""The "Last week's actions" section, and the minutes handout rendered through the runner."""

from __future__ import annotations

import datetime as dt
import re
from types import SimpleNamespace

import pandas as pd
import pytest

from meetinglib.cli import main
from meetinglib.core.params import load_params
from meetinglib.core.weeks import IsoWeek
from meetinglib.meeting.actions import add_action
from meetinglib.meeting.actions_section import ActionsSection
from meetinglib.meeting.minutes import ensure_meeting, record_minutes
from meetinglib.meeting.store import Store
from tests.conftest import SAMPLE_WEEK, write_params
from tests.test_minutes import GOOD, minutes_params

PEOPLE = (
    "{organizer: {name: Li Na, email: li.na@shop.example, department: operations}, "
    "attendees: [{name: Chen Jie, email: chen.jie@shop.example, department: logistics}, "
    "{name: Zhang Min, email: zhang.min@shop.example, department: customer_service}, "
    "{name: Liu Yang, email: liu.yang@shop.example, department: finance}]}"
)

W46 = """\
week: 2026-W46
summary: South deliveries are slipping.
attendance:
  - {email: li.na@shop.example, status: present}
  - {email: chen.jie@shop.example, status: present}
time: {opening: 5, data_report: 20}
decisions:
  - {ref: D1, text: Ask EastPost for a recovery plan for the South, department: logistics, issue: 1}
actions:
  - {description: Recovery plan from EastPost, owner: Chen Jie, department: logistics,
     due: 2026-11-18, decision: D1}
  - {description: Check refund queue <urgent>, owner: Liu Yang, department: finance,
     due: 2026-12-10}
feedback:
  - {email: li.na@shop.example, rating: 3}
"""


def _stand_in(params, week: str, orders: pd.DataFrame | None = None) -> SimpleNamespace:
    """What ActionsSection reads of a WeekData: params, week, tables, tz."""
    tables = {} if orders is None else {"orders": orders}
    return SimpleNamespace(
        params=params, week=IsoWeek.parse(week), tables=tables, tz=params.timezone
    )


def test_section_without_earlier_meetings_says_so(tmp_path):
    params = load_params(minutes_params(tmp_path))
    section = ActionsSection(_stand_in(params, "2026-W47"), "en")
    assert section.summary().data == (
        '<p class="ml-note">No earlier meeting is recorded yet; there are no action items to '
        "review.</p>"
    )
    assert section.table().data == "" and section.decisions_table().data == ""


def test_section_lists_escalated_items_escaped(tmp_path):
    params = load_params(minutes_params(tmp_path))
    with Store.at(f"sqlite:///{tmp_path / 'meeting.db'}") as store:
        add_action(params, store, "2026-W45", description="Relabel <b>bins</b>",
                   owner="Chen Jie", department="logistics", due=dt.date(2026, 11, 12))  # fmt: skip
        ensure_meeting(params, store, "2026-W46")
        section = ActionsSection(_stand_in(params, "2026-W47"), "zh-CN", store=store)
        page = section.table().data
        summary = section.summary().data
    # As of 2026-11-23: 11 days overdue, carried into W46 and W47 -> escalated.
    assert "逾期 11 天" in page and "需升级" in page
    assert "Relabel &lt;b&gt;bins&lt;/b&gt;" in page and "<b>bins" not in page
    assert "1 项未完成，1 项逾期，1 项需升级" in summary


@pytest.mark.slow
def test_minutes_handout_through_the_runner(tmp_path, sample, capsys):
    db = tmp_path / "meeting.db"
    params_path = write_params(tmp_path, sample.folder, store=f"{{path: '{db}'}}", meeting=PEOPLE)
    params = load_params(params_path)
    with Store.at(f"sqlite:///{db}") as store:
        store.add_issues(
            [{"department": "logistics", "week": "2026-W46", "title": "EastPost late South",
              "severity": "high", "source": "t", "row_hash": "a",
              "segment": "carrier=EastPost;region=South"}]
        )  # fmt: skip
        add_action(
            params, store, "2026-W45", description="Audit WH-South stock counts",
            owner="Wang Wei", department="operations", due=dt.date(2026, 11, 12),
        )  # fmt: skip
        w46 = tmp_path / "w46.yaml"
        w46.write_text(W46, encoding="utf-8")
        record_minutes(params, store, w46, "2026-W46")
        record_minutes(params, store, GOOD, SAMPLE_WEEK)
    code = main(["run", "--week", SAMPLE_WEEK, "--params", str(params_path),
                 "--notebook", "minutes"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    folder = tmp_path / "outputs" / SAMPLE_WEEK
    page = (folder / "minutes.html").read_text(encoding="utf-8")
    text = re.sub(r"<[^>]+>", " ", page)
    for part in (
        "Minutes: Weekly order-processing review, week 2026-W47",
        "Sun Li (for Zhang Min)",
        "Last week's actions",
        "Audit WH-South stock counts",  # from W45, carried twice: escalated
        "Overdue by 11 d",
        "Escalate",
        "Recovery plan from EastPost",  # from W46, overdue 5 days
        "Overdue by 5 d",
        "Decisions of the meeting about week 2026-W46, against the numbers",
        "Ask EastPost for a recovery plan for the South",
        "Time control",
        "Mean rating 4.0 of 5 from 3 attendee(s).",
        "Mean rating by meeting",
        "have not been sent yet",
    ):
        assert part in text, part
    assert "Check refund queue &lt;urgent&gt;" in page
    assert "&lt;script&gt;" in page and '<script>"' not in page
    items = pd.read_csv(folder / "action_items.csv")
    assert items["owner"].tolist() == ["Zhang Min", "Chen Jie"]  # customer_service < logistics
    assert (folder / "action_items.ics").read_bytes().count(b"BEGIN:VTODO") == 2
