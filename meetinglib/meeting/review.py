"""The review loop: last meetings' action items and decisions, against the numbers.

At the meeting about report week C (and in C's minutes and data report):

* every action item of an earlier meeting still open, and those closed since the last
  meeting, is listed with its due status, age, carry-over count and escalation flag
  (``meetinglib.meeting.actions``);
* the decisions of the last meeting before C (about week L) are listed with the figures
  of the linked issue's segment in week L and in week C: orders created, late delivery
  share (1 - on-time delivery rate of the orders delivered in the week,
  ``kpis.on_time_delivery_rate``) and the backlog at week end (paid, not shipped,
  ``kpis.backlog_at``). A decision without a linked issue, or whose issue names no
  segment, is measured on all orders;
* whether the minutes of the last meeting went out within 24 hours of its end.

``send_minutes`` distributes a week's minutes handout and records when it went out.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from pathlib import Path

import numpy as np
import pandas as pd

from meetinglib.analysis import kpis
from meetinglib.core.errors import InputDataError, ParamsError
from meetinglib.core.i18n import t
from meetinglib.core.params import Params
from meetinglib.core.weeks import IsoWeek, Window
from meetinglib.meeting.actions import meeting_weeks, review_day, standing
from meetinglib.meeting.minutes import mark_sent, sent_within
from meetinglib.meeting.notify import send, write_eml
from meetinglib.meeting.store import (
    Store,
    _utcnow,
    decision_frame,
    meeting_id,
    meeting_start,
    minutes_row,
    open_store,
)
from meetinglib.meeting.triage import segment_dict, segment_mask
from meetinglib.report.render import render

REVIEW_FIGURES = ("orders", "late_delivery_share", "backlog")


def previous_meeting_week(store: Store, week: IsoWeek | str) -> str | None:
    """The report week of the last stored meeting before ``week``'s; None when there is none."""
    earlier = [w for w in meeting_weeks(store) if w < str(IsoWeek.parse(week))]
    return earlier[-1] if earlier else None


def earlier_actions(params: Params, store: Store, week: IsoWeek | str) -> pd.DataFrame:
    """Action items of meetings before ``week``'s: open ones, and those closed since the last
    meeting, with due status, age, carry-over and escalation as of ``week``'s meeting."""
    week = IsoWeek.parse(week)
    items = store.action_items()
    items = items[items["meeting_week"] < str(week)]
    last = previous_meeting_week(store, week)
    since = _meeting_start_utc(store, last) if last else None
    closed_since = items["closed_at"].notna()
    if since is not None:
        closed_since &= pd.to_datetime(items["closed_at"]) >= pd.Timestamp(since)
    items = items[items["status"].eq("open") | closed_since]
    out = standing(items, week, review_day(params, week), meeting_weeks(store))
    order = out["due_status"].map({s: i for i, s in enumerate(_STATUS_ORDER)})
    return (
        out.assign(_order=order)
        .sort_values(["_order", "due_date", "id"])
        .drop(columns="_order")
        .reset_index(drop=True)
    )


_STATUS_ORDER = ("overdue", "due_this_week", "on_track", "done", "dropped")


def _meeting_start_utc(store: Store, week: str) -> dt.datetime | None:
    return meeting_start(store, week)


def last_decisions(store: Store, week: IsoWeek | str) -> tuple[str | None, pd.DataFrame]:
    """The last meeting before ``week``'s (its report week) and its decisions."""

    last = previous_meeting_week(store, week)
    if last is None:
        return None, decision_frame(store, -1)
    return last, decision_frame(store, meeting_id(store, last) or -1)


def segment_review_figures(orders: pd.DataFrame, segment: str, window: Window) -> dict[str, float]:
    """Orders created, late delivery share (0-1) and backlog at window end, for a segment."""

    inside = orders[segment_mask(orders, segment_dict(segment))] if segment else orders
    on_time = kpis.on_time_delivery_rate(inside, window)
    return {
        "orders": float(kpis.orders_created(inside, window)),
        "late_delivery_share": float(1 - on_time) if pd.notna(on_time) else np.nan,
        "backlog": float(kpis.backlog_at(inside, window.end)),
    }


def decision_figures(
    orders: pd.DataFrame,
    decisions: pd.DataFrame,
    decided: IsoWeek | str,
    now: IsoWeek | str,
    tz: str,
) -> pd.DataFrame:
    """Per decision and figure: the value in the decision's week, in week ``now``, change.

    Columns: decision_id, text, segment, figure, before, after, change. Weeks outside
    the loaded orders give NaN for their figures' events (no orders created).
    """
    before_w = IsoWeek.parse(decided).window(tz)
    after_w = IsoWeek.parse(now).window(tz)
    rows = []
    for d in decisions.itertuples():
        segment = d.segment if isinstance(d.segment, str) else ""
        before = segment_review_figures(orders, segment, before_w)
        after = segment_review_figures(orders, segment, after_w)
        for figure in REVIEW_FIGURES:
            rows.append(
                {
                    "decision_id": int(d.id),
                    "text": d.text,
                    "segment": segment,
                    "figure": figure,
                    "before": before[figure],
                    "after": after[figure],
                }
            )
    frame = pd.DataFrame(
        rows, columns=["decision_id", "text", "segment", "figure", "before", "after"]
    )
    frame["change"] = frame["after"] - frame["before"]
    return frame


@dataclass(frozen=True)
class Promise:
    """Whether a meeting's minutes went out within 24 hours of its end."""

    week: str
    ended_at: dt.datetime  # UTC, naive
    sent_at: dt.datetime | None  # UTC, naive; None: not sent (yet)
    kept: bool | None  # None: not sent

    @property
    def hours_after(self) -> float | None:
        if self.sent_at is None:
            return None
        return (self.sent_at - self.ended_at).total_seconds() / 3600


def promise(store: Store, week: IsoWeek | str) -> Promise | None:
    """The 24-hour promise of the minutes of ``week``'s meeting; None when none are recorded."""
    row = minutes_row(store, week)
    if row is None:
        return None
    return Promise(
        str(IsoWeek.parse(week)),
        row["ends_at"],
        row["sent_at"],
        sent_within(row["ends_at"], row["sent_at"]),
    )


def promise_text(p: Promise | None, lang: str) -> str:
    """One sentence on the 24-hour promise (labels review.promise.*)."""
    if p is None:
        return t("review.promise.none", lang)
    if p.sent_at is None:
        return t("review.promise.not_sent", lang, week=p.week)
    key = "review.promise.kept" if p.kept else "review.promise.late"
    return t(key, lang, week=p.week, hours=p.hours_after)


# --- distribution ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendResult:
    week: IsoWeek
    recipients: int
    sent_at: dt.datetime  # UTC, naive
    hours_after: float
    in_time: bool
    eml: Path


def minutes_message(
    params: Params, week: IsoWeek, page: Path, ics: Path | None, sender: str, lang: str
) -> EmailMessage:
    """The minutes e-mail: a short text and HTML body, the handout and the to-dos attached."""
    m = params.meeting
    people = [*([m.organizer] if m.organizer else []), *m.attendees]
    if not people:
        raise ParamsError("meeting.attendees is empty; list the people to send the minutes to.")
    subject = t("review.mail.subject", lang, title=m.title_in(lang), week=week)
    body = t("review.mail.body", lang, title=m.title_in(lang), week=week)
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = ", ".join(formataddr((p.name, p.email)) for p in people)
    msg["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].strip(">") or None)
    msg.set_content(body + "\n")
    msg.add_alternative(
        str(render("pages/mail.html.j2", lang=lang, title=subject, body=body)),
        subtype="html",
    )
    msg.add_attachment(
        page.read_text(encoding="utf-8"),
        subtype="html",
        filename=f"minutes-{week}.html",
        cte="base64",
    )
    if ics is not None and ics.is_file():
        msg.add_attachment(
            ics.read_bytes().decode("utf-8"),
            subtype="calendar",
            filename=ics.name,
            cte="base64",
            params={"method": "PUBLISH"},
        )
    return msg


def send_minutes(
    params: Params,
    week: IsoWeek | str,
    *,
    lang: str | None = None,
    now: dt.datetime | None = None,
) -> SendResult:
    """E-mail the week's minutes handout (outputs/<week>/minutes.html) to the attendees,
    record the time sent and whether that kept the 24-hour promise."""

    week = IsoWeek.parse(week)
    lang = lang or params.language
    folder = Path(params.output_dir) / str(week)
    page = folder / "minutes.html"
    if not page.is_file():
        raise InputDataError(
            f"no minutes handout at {page}; render it first with "
            f"`meeting run --week {week} --notebook minutes`."
        )
    if params.smtp is None:
        raise ParamsError("sending the minutes needs an 'smtp' block in the params.")
    with open_store(params) as store:
        row = minutes_row(store, week)
        if row is None:
            raise InputDataError(
                f"no minutes recorded for week {week}; record them with "
                f"`meeting minutes record FILE --week {week}` first."
            )
        message = minutes_message(
            params, week, page, folder / "action_items.ics", params.smtp.sender, lang
        )
        eml = write_eml(message, folder / "minutes.eml")
        accepted = send(message, params.smtp)
        sent_at = now or _utcnow()
        mark_sent(store, week, sent_at, len(accepted))
    hours = (sent_at - row["ends_at"]).total_seconds() / 3600
    return SendResult(
        week, len(accepted), sent_at, hours, bool(sent_within(row["ends_at"], sent_at)), eml
    )
