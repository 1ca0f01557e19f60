"""The review loop: earlier items, decisions against the numbers, sending the minutes."""

from __future__ import annotations

import datetime as dt
import email
from email import policy

import numpy as np
import pandas as pd
import pytest
from icalendar import Calendar

from meetinglib.cli import main
from meetinglib.core.params import load_params
from meetinglib.meeting.actions import add_action, close_action
from meetinglib.meeting.minutes import (
    ensure_meeting,
    minutes_row,
    record_minutes,
    write_action_items,
)
from meetinglib.meeting.review import (
    decision_figures,
    earlier_actions,
    last_decisions,
    promise,
    promise_text,
    send_minutes,
)
from meetinglib.meeting.store import Store
from tests.test_minutes import GOOD, minutes_params
from tests.test_notify import PASSWORD_ENV, smtp_server  # noqa: F401  (fixture)

TZ = "Asia/Shanghai"


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=TZ)


def test_decision_figures_by_hand():
    nat = pd.NaT
    orders = pd.DataFrame(
        {
            "carrier": ["EastPost", "EastPost", "EastPost", "SwiftExpress", "EastPost"],
            "region": ["South", "South", "South", "South", "North"],
            # W46 = 2026-11-09..15, W47 = 2026-11-16..22 (Shanghai)
            "created_at": [ts("2026-11-09 10:00"), ts("2026-11-10"), ts("2026-11-16"),
                           ts("2026-11-10"), ts("2026-11-10")],
            "paid_at": [ts("2026-11-09 11:00"), ts("2026-11-10 01:00"), ts("2026-11-16 01:00"),
                        ts("2026-11-10 01:00"), ts("2026-11-10 01:00")],
            "shipped_at": [ts("2026-11-10"), ts("2026-11-11"), nat, ts("2026-11-11"),
                           ts("2026-11-11")],
            "cancelled_at": pd.Series([nat] * 5, dtype=f"datetime64[ns, {TZ}]"),
            "delivered_at": [ts("2026-11-14"), ts("2026-11-17"), nat, ts("2026-11-13"),
                             ts("2026-11-13")],
            "promised_delivery_by": [ts("2026-11-13"), ts("2026-11-18"), ts("2026-11-20"),
                                     ts("2026-11-14"), ts("2026-11-12")],
        }
    )  # fmt: skip
    decisions = pd.DataFrame(
        {"id": [1], "text": ["Shift volume"], "segment": ["carrier=EastPost;region=South"]}
    )
    out = decision_figures(orders, decisions, "2026-W46", "2026-W47", TZ).set_index("figure")
    # W46: orders 1 and 2 created; order 1 delivered (late) -> 1 of 1 late. Backlog at
    # 2026-11-16 00:00: paid, unshipped: none (order 3 paid 01:00 on the 16th).
    # W47: order 3 created; order 2 delivered on time -> 0 of 1 late; order 3 in backlog.
    assert out.loc["orders", ["before", "after"]].tolist() == [2, 1]
    assert out.loc["late_delivery_share", ["before", "after", "change"]].tolist() == [1, 0, -1]
    assert out.loc["backlog", ["before", "after"]].tolist() == [0, 1]
    everyone = decision_figures(
        orders, decisions.assign(segment=[""]), "2026-W46", "2026-W47", TZ
    ).set_index("figure")
    # All orders in W46: delivered 1 (late), 4 (on time), 5 (late) -> 2 of 3.
    assert everyone.loc["late_delivery_share", "before"] == pytest.approx(2 / 3)
    assert np.isnan(
        decision_figures(orders, decisions, "2026-W40", "2026-W47", TZ)
        .set_index("figure")
        .loc["late_delivery_share", "before"]
    )


def test_earlier_items_open_or_closed_since_the_last_meeting(tmp_path):
    params = load_params(minutes_params(tmp_path))
    with Store.at(f"sqlite:///{tmp_path / 'meeting.db'}") as store:
        common = {"owner": "Chen Jie", "department": "logistics", "due": dt.date(2026, 11, 20)}
        old_done = add_action(params, store, "2026-W45", description="old", **common)
        close_action(store, old_done)  # closed now: after the W46 meeting started
        still = add_action(params, store, "2026-W46", description="still open", **common)
        ensure_meeting(params, store, "2026-W47")
        mine = add_action(params, store, "2026-W47", description="this week's own", **common)
        items = earlier_actions(params, store, "2026-W47")
        assert items["id"].tolist() == [still, old_done]  # overdue first, then closed ones
        assert mine not in items["id"].tolist()
        assert items.set_index("id").loc[still, "due_status"] == "overdue"  # 11-20 < 11-23
        week, decisions = last_decisions(store, "2026-W47")
        assert week == "2026-W46" and decisions.empty


def test_send_minutes_through_a_local_smtp_server(tmp_path, smtp_server, monkeypatch, capsys):  # noqa: F811
    inbox, port = smtp_server
    extra = (
        f"smtp: {{host: 127.0.0.1, port: {port}, user: ops, password_env: {PASSWORD_ENV}, "
        "sender: ops-reports@shop.example, starttls: false, timeout_seconds: 10}\n"
    )
    path = minutes_params(tmp_path, extra)
    params = load_params(path)
    monkeypatch.setenv(PASSWORD_ENV, "s3cret pw")
    folder = tmp_path / "out" / "2026-W47"
    assert main(["minutes", "send", "--week", "2026-W47", "--params", str(path)]) == 3
    assert "no minutes handout at" in capsys.readouterr().err
    with Store.at(f"sqlite:///{tmp_path / 'meeting.db'}") as store:
        record_minutes(params, store, GOOD, "2026-W47")
        row = minutes_row(store, "2026-W47")
        write_action_items(store, row["id"], params.company, folder, dt.datetime(2026, 11, 23))
        assert promise_text(promise(store, "2026-W47"), "en").startswith(
            "The minutes of week 2026-W47 have not been sent yet"
        )
    (folder / "minutes.html").write_text("<html><body>Minutes 纪要</body></html>", "utf-8")

    # Sent 20 hours after the meeting ended (2026-11-23 07:30 UTC): promise kept.
    sent = send_minutes(params, "2026-W47", now=dt.datetime(2026, 11, 24, 3, 30))
    assert (sent.recipients, sent.in_time, sent.hours_after) == (4, True, 20.0)
    (envelope,) = inbox.envelopes
    assert sorted(envelope.rcpt_tos) == sorted(
        ["li.na@shop.example", "chen.jie@shop.example", "zhang.min@shop.example",
         "liu.yang@shop.example"]
    )  # fmt: skip
    message = email.message_from_bytes(envelope.original_content, policy=policy.default)
    assert message["Subject"] == "Minutes: Weekly review · week 2026-W47"
    parts = {p.get_filename(): p for p in message.iter_attachments()}
    assert "Minutes 纪要" in parts["minutes-2026-W47.html"].get_content()
    ics = parts["action_items.ics"]
    assert ics.get_content_type() == "text/calendar"
    todos = Calendar.from_ical(ics.get_content()).walk("VTODO")
    assert sorted(str(td["SUMMARY"]) for td in todos) == [
        "Agree the temporary volume shift with SwiftExpress (Chen Jie)",
        "Call customers with parcels late by more than 3 days (Zhang Min)",
    ]
    assert sorted(td.decoded("DUE") for td in todos) == [
        dt.date(2026, 11, 25),
        dt.date(2026, 12, 2),
    ]
    with Store.at(f"sqlite:///{tmp_path / 'meeting.db'}") as store:
        kept = promise(store, "2026-W47")
        assert kept.kept and kept.sent_at == dt.datetime(2026, 11, 24, 3, 30)
        assert "the 24-hour promise was kept" in promise_text(kept, "en")

    # Through the command line, days later: sent, with a warning.
    assert main(["minutes", "send", "--week", "2026-W47", "--params", str(path)]) == 0
    captured = capsys.readouterr()
    assert "minutes of week 2026-W47 sent to 4 recipient(s)" in captured.out
    assert "later than the 24 hours promised" in captured.err
    assert len(inbox.envelopes) == 2
    with Store.at(f"sqlite:///{tmp_path / 'meeting.db'}") as store:
        assert promise(store, "2026-W47").kept is False


def test_the_demo_minutes_show_the_review_loop(tmp_path):
    from meetinglib.data.sample import write_sample_issues, write_sample_minutes
    from meetinglib.meeting.intake import import_issues
    from tests.conftest import ROOT

    params = load_params(
        ROOT / "params" / "demo.yaml", overrides={"store": {"path": str(tmp_path / "m.db")}}
    )
    with Store.at(f"sqlite:///{tmp_path / 'm.db'}") as store:
        for f in write_sample_issues(tmp_path / "issues", "2026-W47"):
            import_issues(
                store, f.path, f.department, f.week, departments=params.meeting.departments
            )
        before, week = write_sample_minutes(tmp_path / "minutes", "2026-W47")
        assert (before.name, week.name) == ("minutes-2026-W46.yaml", "minutes-2026-W47.yaml")
        record_minutes(params, store, before, "2026-W46")
        record_minutes(params, store, week, "2026-W47")
        items = earlier_actions(params, store, "2026-W47").set_index("owner")
        # W46's meeting was held 2026-11-16; W47's on 2026-11-23 (the review day).
        assert items.loc["Zhao Lei", ["due_status", "overdue_days", "carried"]].tolist() == [
            "overdue", 5, 1  # due 11-18
        ]  # fmt: skip
        assert items.loc["Wang Wei", "overdue_days"] == 4  # due 11-19
        assert items.loc["Zhang Min", "due_status"] == "done"
        assert items.loc["Zhao Lei", "note"] == "needs a release"
        last, decisions = last_decisions(store, "2026-W47")
        assert last == "2026-W46"
        assert decisions["issue_title"].tolist() == [
            "Order export job to the WMS fails on Monday mornings"
        ]


def test_the_minutes_mail_attaches_the_handout_in_its_own_language(
    tmp_path,
    smtp_server,  # noqa: F811
    monkeypatch,
    capsys,
):
    inbox, port = smtp_server
    extra = (
        "languages: [zh-CN, en]\n"
        f"smtp: {{host: 127.0.0.1, port: {port}, user: ops, password_env: {PASSWORD_ENV}, "
        "sender: ops-reports@shop.example, starttls: false, timeout_seconds: 10}\n"
    )
    path = minutes_params(tmp_path, extra)
    params = load_params(path)
    monkeypatch.setenv(PASSWORD_ENV, "s3cret pw")
    with Store.at(f"sqlite:///{tmp_path / 'meeting.db'}") as store:
        record_minutes(params, store, GOOD, "2026-W47")
    folder = tmp_path / "out" / "2026-W47"
    folder.mkdir(parents=True)
    page = '<!DOCTYPE html>\n<html lang="{}">\n<body>{}</body></html>'
    (folder / "minutes.html").write_text(page.format("zh-CN", "会议纪要正文"), "utf-8")

    # English asked for, only the Chinese handout there: refused, naming the file and
    # the command that renders it; nothing is sent.
    args = ["minutes", "send", "--week", "2026-W47", "--params", str(path)]
    assert main([*args, "--lang", "en"]) == 3
    err = capsys.readouterr().err
    assert str(folder / "minutes.en.html") in err
    assert f"meeting run --week 2026-W47 --notebook minutes --params {path}" in err
    assert inbox.envelopes == []

    (folder / "minutes.en.html").write_text(page.format("en", "English minutes"), "utf-8")

    def attachment(envelope) -> tuple[str, str, str]:
        message = email.message_from_bytes(envelope.original_content, policy=policy.default)
        (part,) = [p for p in message.iter_attachments() if p.get_content_type() == "text/html"]
        return message["Subject"], part.get_filename(), part.get_content()

    for lang_args, subject, name, text in [
        (["--lang", "en"], "Minutes: Weekly review", "minutes-2026-W47.en.html", "English"),
        # no `language` set: the first of `languages`
        ([], "会议纪要：Weekly review", "minutes-2026-W47.html", "会议纪要正文"),
        (["--lang", "zh-CN"], "会议纪要：Weekly review", "minutes-2026-W47.html", "会议纪要正文"),
    ]:
        assert main([*args, *lang_args]) == 0, capsys.readouterr().err
        got_subject, got_name, content = attachment(inbox.envelopes[-1])
        assert got_subject.startswith(subject) and got_name == name and text in content

    # A handout rendered in another language under the name of this one is refused too.
    (folder / "minutes.en.html").write_text(page.format("zh-CN", "会议纪要正文"), "utf-8")
    assert main([*args, "--lang", "en"]) == 3
    assert "holds the minutes in zh-CN, not in en" in capsys.readouterr().err
    assert len(inbox.envelopes) == 3
