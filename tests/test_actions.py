"""Action items: due status, age, carry-over and escalation; the CLI."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from meetinglib.cli import main
from meetinglib.core.params import load_params
from meetinglib.meeting.actions import (
    action_list,
    add_action,
    close_action,
    review_day,
    standing,
    weeks_between,
)
from meetinglib.meeting.store import Store
from tests.test_minutes import minutes_params


def test_weeks_across_a_year_with_53_weeks():
    # 2026 has a W53 (it starts on a Thursday): W52 -> W53 -> 2027-W01.
    assert weeks_between("2026-W52", "2027-W01") == 2
    assert weeks_between("2027-W01", "2026-W52") == -2


def test_overdue_across_the_year_boundary():
    items = pd.DataFrame(
        {
            "due_date": [dt.date(2026, 12, 30), dt.date(2027, 1, 18), dt.date(2027, 1, 17)],
            "status": ["open", "open", "open"],
            "meeting_week": ["2026-W52", "2026-W52", "2026-W53"],
        }
    )
    on = dt.date(2027, 1, 11)  # Monday of 2027-W02: the meeting about 2027-W01
    # Its week ends Sunday 2027-01-17: due then is due this week, a day later on track.
    out = standing(items, "2027-W01", on, held=["2026-W52", "2026-W53"])
    assert out["due_status"].tolist() == ["overdue", "on_track", "due_this_week"]
    assert out["overdue_days"].tolist() == [12, 0, 0]  # 2027-01-11 minus 2026-12-30
    assert out["age_weeks"].tolist() == [2, 2, 1]
    # Meetings after W52 up to W01: W53 and W01 -> carried twice; after W53: once.
    assert out["carried"].tolist() == [2, 2, 1]
    assert out["escalate"].tolist() == [True, True, False]


def test_carry_over_across_three_weeks_and_closing(tmp_path):
    params = load_params(minutes_params(tmp_path))
    assert review_day(params, "2026-W45") == dt.date(2026, 11, 9)
    with Store.at(f"sqlite:///{tmp_path / 'meeting.db'}") as store:
        item = add_action(
            params,
            store,
            "2026-W45",
            description="Fix the label printer in WH-South",
            owner="Chen Jie",
            department="logistics",
            due=dt.date(2026, 11, 20),
        )
        first = action_list(params, store, "2026-W45").set_index("id").loc[item]
        assert (first.due_status, first.age_weeks, first.carried, first.escalate) == (
            "on_track", 0, 0, False
        )  # fmt: skip
        from meetinglib.meeting.minutes import ensure_meeting

        ensure_meeting(params, store, "2026-W46")
        second = action_list(params, store, "2026-W46").set_index("id").loc[item]
        # Review day 2026-11-16; its week ends 11-22, so due 11-20 is due this week.
        assert (second.due_status, second.age_weeks, second.carried, second.escalate) == (
            "due_this_week", 1, 1, False
        )  # fmt: skip
        ensure_meeting(params, store, "2026-W47")
        third = action_list(params, store, "2026-W47").set_index("id").loc[item]
        assert (third.due_status, third.overdue_days, third.age_weeks, third.carried) == (
            "overdue", 3, 2, 2
        )  # fmt: skip
        assert third.escalate  # carried over twice
        assert action_list(params, store, "2026-W47", overdue=True)["id"].tolist() == [item]
        assert action_list(params, store, "2026-W47", owner="chen jie")["id"].tolist() == [item]
        assert action_list(params, store, "2026-W47", department="finance").empty

        close_action(store, item, "printer replaced")
        assert action_list(params, store, "2026-W47").empty
        closed = action_list(params, store, "2026-W47", include_closed=True).iloc[0]
        assert (closed.status, closed.due_status, closed.escalate) == ("done", "done", False)
        assert closed.note == "printer replaced" and closed.closed_at is not None


def test_actions_cli(tmp_path, capsys):
    path = str(minutes_params(tmp_path))
    base = ["--params", path]
    add = ["actions", "add", "--week", "2026-W46", "--description", "Refund backlog", "--owner",
           "Liu Yang", "--dept", "finance", "--due", "2026-11-13", *base]  # fmt: skip
    assert main(add) == 0
    assert "action item #1 added" in capsys.readouterr().out
    assert (
        main(["actions", "list", "--week", "2026-W47", "--overdue", "--format", "csv", *base]) == 0
    )
    out = capsys.readouterr().out
    # Review day of W47 is 2026-11-23: ten days past 2026-11-13, so escalated.
    assert "1,2026-W46,finance,Liu Yang,2026-11-13,open,overdue,1,1,True,Refund backlog" in out
    assert main(["actions", "update", "1", "--due", "2026-11-30", *base]) == 0
    assert main(["actions", "list", "--week", "2026-W47", "--overdue", *base]) == 0
    assert "no action items match" in capsys.readouterr().out
    assert main(["actions", "done", "1", *base]) == 0
    assert main(["actions", "update", "7", "--owner", "X", *base]) == 3
    assert "action item #7 is not in the store" in capsys.readouterr().err
    assert main(["actions", "add", *add[2:-2], "--due", "30.11.2026", *base]) == 2
    assert "write it as YYYY-MM-DD" in capsys.readouterr().err
