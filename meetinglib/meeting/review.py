"""The review loop: last meetings' action items and decisions, against the numbers.

At the meeting about report week C (and in C's minutes and data report):

* every action item of an earlier meeting still open, and those closed since the last
  meeting, is listed with its due status, age, carry-over count and escalation flag
  (``meetinglib.meeting.actions``);
* the decisions of the last meeting before C (about week L) are listed with the figures
  of the linked issue's segment in week L and in week C: orders created, late delivery
  share (orders delivered in the week after promised_delivery_by / those delivered with
  a promise, ``sections.judged_late``) and the backlog at week end (paid, neither shipped
  nor cancelled, ``sections.open_at``), computed by the engine. A decision without a
  linked issue, or whose issue names no segment, is measured on all orders;
* whether the minutes of the last meeting went out within 24 hours of its end.

``send_minutes`` distributes a week's minutes handout and records when it went out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from pathlib import Path

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
from ibis.backends import BaseBackend

from meetinglib.analysis import sections
from meetinglib.core.errors import InputDataError, ParamsError
from meetinglib.core.handouts import handout_stem, html_lang
from meetinglib.core.i18n import t
from meetinglib.core.params import Params
from meetinglib.core.weeks import IsoWeek, Window
from meetinglib.data import engine
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
from meetinglib.meeting.triage import segment_condition, segment_dict
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


def review_figures_on(
    con: BaseBackend, orders: ir.Table, segments: Sequence[str], window: Window
) -> list[dict[str, float]]:
    """Per stored segment ("" = all orders), in one query: orders created in the window, late
    delivery share (0-1; NaN without judged deliveries) and backlog at the window's end."""
    judged, late = sections.judged_late(orders, window)
    created = sections.within(orders.created_at, window)
    backlog = sections.open_at(orders, sections.instant(window.end))

    def total(condition: ir.BooleanValue) -> ir.Value:
        return ibis.ifelse(condition, 1, 0).sum()

    sums: dict[str, ir.Value] = {}
    for i, segment in enumerate(segments):
        inside = segment_condition(orders, segment_dict(segment))
        sums[f"orders{i}"] = total(inside & created)
        sums[f"judged{i}"] = total(inside & judged)
        sums[f"late{i}"] = total(inside & late)
        sums[f"backlog{i}"] = total(inside & backlog)
    found = con.execute(orders.aggregate(**sums)).iloc[0].fillna(0)
    out = []
    for i in range(len(segments)):
        judged_n = float(found[f"judged{i}"])
        out.append(
            {
                "orders": float(found[f"orders{i}"]),
                "late_delivery_share": float(found[f"late{i}"]) / judged_n if judged_n else np.nan,
                "backlog": float(found[f"backlog{i}"]),
            }
        )
    return out


def decision_figures(
    orders: ir.Table | pd.DataFrame,
    decisions: pd.DataFrame,
    decided: IsoWeek | str,
    now: IsoWeek | str,
    tz: str,
    con: BaseBackend | None = None,
) -> pd.DataFrame:
    """Per decision and figure: the value in the decision's week, in week ``now``, change.

    Columns: decision_id, text, segment, figure, before, after, change. Weeks outside
    the loaded orders give NaN for their figures' events (no orders created). ``orders``:
    the week's engine table (a frame is handed to the engine as it is).
    """
    table = engine.frame_table(orders) if isinstance(orders, pd.DataFrame) else orders
    con = con or engine.shared()
    segments = [d if isinstance(d, str) else "" for d in decisions["segment"]]
    before_w = IsoWeek.parse(decided).window(tz)
    after_w = IsoWeek.parse(now).window(tz)
    before = review_figures_on(con, table, segments, before_w) if segments else []
    after = review_figures_on(con, table, segments, after_w) if segments else []
    rows = []
    for d, segment, then, later in zip(
        decisions.itertuples(), segments, before, after, strict=True
    ):
        for figure in REVIEW_FIGURES:
            rows.append(
                {
                    "decision_id": int(d.id),
                    "text": d.text,
                    "segment": segment,
                    "figure": figure,
                    "before": then[figure],
                    "after": later[figure],
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


def minutes_page(params: Params, week: IsoWeek, lang: str) -> Path:
    """The minutes handout of ``week`` in ``lang``, named as ``meeting run`` names it
    (``core.handouts.handout_stem``): the params' first language, or the one language a run
    with ``--lang`` renders, keeps the plain name (``minutes.html``); every further
    language of the params has its code as a suffix (``minutes.en.html``).

    InputDataError when that file is missing or holds the minutes in another language,
    naming the file and the command that renders it.
    """
    languages = params.handout_languages
    # a language the params do not list is rendered alone (--lang): the plain name
    stem = handout_stem("minutes", lang, languages if lang in languages else [lang])
    page = Path(params.output_dir) / str(week) / f"{stem}.html"
    run = f"meeting run --week {week} --notebook minutes"
    run += "".join(f" --params {f}" for f in params.files)
    run += "" if lang in languages else f" --lang {lang}"
    if not page.is_file():
        raise InputDataError(
            f"no minutes handout at {page} (the minutes in {lang}, the language of the "
            f"e-mail); render it first with `{run}`."
        )
    found = html_lang(page)
    if found and found != lang:
        raise InputDataError(
            f"{page} holds the minutes in {found}, not in {lang}, the language of "
            f"the e-mail; render them again with `{run}`."
        )
    return page


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
    suffix = page.name.removeprefix("minutes").removesuffix(".html")  # "" or ".en"
    msg.add_attachment(
        page.read_text(encoding="utf-8"),
        subtype="html",
        filename=f"minutes-{week}{suffix}.html",
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
    """E-mail the week's minutes handout to the attendees, record the time sent and
    whether that kept the 24-hour promise.

    The mail is in ``lang`` (default ``language`` of the params) and so is the handout
    it attaches: ``outputs/<week>/minutes.html`` or ``minutes.<lang>.html`` (see
    ``minutes_page``).
    """

    week = IsoWeek.parse(week)
    lang = lang or params.language
    folder = Path(params.output_dir) / str(week)
    page = minutes_page(params, week, lang)
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
        accepted = send(message, params.smtp, "minutes")
        sent_at = now or _utcnow()
        mark_sent(store, week, sent_at, len(accepted))
    hours = (sent_at - row["ends_at"]).total_seconds() / 3600
    return SendResult(
        week, len(accepted), sent_at, hours, bool(sent_within(row["ends_at"], sent_at)), eml
    )
