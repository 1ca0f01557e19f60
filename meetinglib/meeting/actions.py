"""Action items: adding, updating and closing them, and where each stands.

An action item belongs to the meeting about a report week (``meeting_week``). It is
reviewed at every later meeting until it is done or dropped. At a review, as of the
day of the meeting about the current report week (the *review day*):

* due status: ``overdue`` when the due date is before the review day, ``due_this_week``
  when it falls in the review day's ISO week (from the review day on), else
  ``on_track``; closed items have status ``done`` or ``dropped``;
* age: whole weeks from the item's meeting week to the current report week (ISO weeks,
  so 2026-W52 -> 2027-W01 is two weeks: 2026 has a W53);
* carried over: how many later meetings it stayed open into (the stored meetings after
  its own, up to and including the current one);
* escalation: still open and overdue by more than ``ESCALATE_OVERDUE_DAYS`` days, or
  carried over at least ``ESCALATE_CARRIED`` times.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from meetinglib.core.errors import ParamsError
from meetinglib.core.params import Params
from meetinglib.core.weeks import IsoWeek
from meetinglib.meeting.agenda import meeting_start
from meetinglib.meeting.minutes import ensure_meeting
from meetinglib.meeting.store import (
    Store,
    add_action_item,
    check_action_item,
    close_action_item,
    meeting_weeks,
    update_action_item,
)

ESCALATE_OVERDUE_DAYS = 7
ESCALATE_CARRIED = 2
DUE_STATUSES = ("overdue", "due_this_week", "on_track", "done", "dropped")


# --- where an item stands (pure) --------------------------------------------------------------


def weeks_between(first: IsoWeek | str, last: IsoWeek | str) -> int:
    """ISO weeks from ``first`` to ``last`` (negative when ``last`` is earlier)."""
    a, b = IsoWeek.parse(first).monday, IsoWeek.parse(last).monday
    return (b - a).days // 7


def review_day(params: Params, week: IsoWeek | str) -> dt.date:
    """The local date of the meeting about report week ``week``: the day items are judged on."""
    return meeting_start(params, IsoWeek.parse(week)).date()


def due_status(due: pd.Series, status: pd.Series, on: dt.date) -> pd.Series:
    """Due status per item as of day ``on`` (see the module text); closed items keep theirs."""
    due_days = pd.to_datetime(due).dt.date
    week_end = on + dt.timedelta(days=6 - on.weekday())
    result = np.where(
        due_days < on, "overdue", np.where(due_days <= week_end, "due_this_week", "on_track")
    )
    closed = status.isin(["done", "dropped"]).to_numpy()
    return pd.Series(np.where(closed, status, result), index=due.index, dtype="str")


def overdue_days(due: pd.Series, on: dt.date) -> pd.Series:
    """Days past the due date as of ``on`` (0 when not yet due); days."""
    days = (pd.Timestamp(on) - pd.to_datetime(due)).dt.days
    return days.clip(lower=0).astype("int64")


def age_weeks(meeting_weeks: pd.Series, week: IsoWeek | str) -> pd.Series:
    """Weeks from each item's meeting week to ``week``; ISO weeks."""
    mondays = {w: IsoWeek.parse(w).monday for w in meeting_weeks.unique()}
    end = IsoWeek.parse(week).monday
    return meeting_weeks.map(lambda w: (end - mondays[w]).days // 7).astype("int64")


def times_carried(meeting_weeks: pd.Series, held: Iterable[str], week: IsoWeek | str) -> pd.Series:
    """Meetings after each item's own, up to and including ``week``'s: times carried over."""
    weeks = np.array(sorted({*held, str(week)}), dtype=object)
    weeks = weeks[weeks <= str(week)]
    after = np.searchsorted(weeks, meeting_weeks.to_numpy(dtype=object), side="right")
    return pd.Series(len(weeks) - after, index=meeting_weeks.index, dtype="int64")


def standing(
    items: pd.DataFrame, week: IsoWeek | str, on: dt.date, held: Iterable[str]
) -> pd.DataFrame:
    """Items with due_status, overdue_days, age_weeks, carried and escalate added.

    ``items``: columns due_date, status, meeting_week; ``on``: the review day;
    ``held``: report weeks of the stored meetings.
    """
    out = items.copy()
    open_ = out["status"].eq("open")
    out["due_status"] = due_status(out["due_date"], out["status"], on)
    out["overdue_days"] = overdue_days(out["due_date"], on).where(open_, 0)
    out["age_weeks"] = age_weeks(out["meeting_week"], week)
    out["carried"] = times_carried(out["meeting_week"], held, week).where(open_, 0)
    out["escalate"] = open_ & (
        (out["overdue_days"] > ESCALATE_OVERDUE_DAYS) | (out["carried"] >= ESCALATE_CARRIED)
    )
    return out


# --- the store ------------------------------------------------------------------------------


def add_action(
    params: Params,
    store: Store,
    week: IsoWeek | str,
    *,
    description: str,
    owner: str,
    department: str,
    due: dt.date,
    issue_id: int | None = None,
    note: str = "",
) -> int:
    """Add an action item to the meeting about ``week`` (created if missing); returns its id."""
    fields = {"description": description, "owner": owner, "department": department}
    check_action_item(fields, params.meeting.departments)  # before the meeting is created
    ensure_meeting(params, store, week)
    item = add_action_item(
        store,
        week,
        description=description,
        owner=owner,
        department=department,
        due_date=due,
        issue_id=issue_id,
        note=note,
        departments=params.meeting.departments,
        source="cli",
    )
    return item.id


def update_action(
    store: Store,
    item_id: int,
    *,
    departments: list[str] | None = None,
    expected_version: int | None = None,
    **changes: Any,
) -> None:
    """Change fields of action item ``item_id`` (description, owner, department, due_date,
    status, note, issue_id; None leaves a field as it is); closing sets closed_at,
    reopening clears it. ``expected_version`` refuses a change to an item changed since."""
    allowed = {"description", "owner", "department", "due_date", "status", "note", "issue_id"}
    unknown = set(changes) - allowed
    if unknown:
        raise ParamsError(f"cannot change {sorted(unknown)} of an action item; only {allowed}.")
    values = {k: v for k, v in changes.items() if v is not None}
    update_action_item(
        store, item_id, expected_version=expected_version, departments=departments, **values
    )


def close_action(store: Store, item_id: int, note: str | None = None) -> None:
    """Mark action item ``item_id`` done (closed now)."""
    close_action_item(store, item_id, expected_version=None, note=note)


def action_list(
    params: Params,
    store: Store,
    week: IsoWeek | str,
    *,
    owner: str | None = None,
    department: str | None = None,
    overdue: bool = False,
    include_closed: bool = False,
) -> pd.DataFrame:
    """Action items of meetings up to ``week``'s, with where each stands as of its review day.

    Open items only unless ``include_closed``; ``overdue`` keeps the overdue ones; ``owner``
    matches case-insensitively.
    """
    week = IsoWeek.parse(week)
    items = store.action_items(department=department)
    items = items[items["meeting_week"] <= str(week)]
    if not include_closed:
        items = items[items["status"].eq("open")]
    if owner:
        items = items[items["owner"].str.casefold().eq(owner.strip().casefold())]
    out = standing(items, week, review_day(params, week), meeting_weeks(store))
    if overdue:
        out = out[out["due_status"].eq("overdue")]
    return out.reset_index(drop=True)


def parse_due(text: str) -> dt.date:
    """A due date from ``YYYY-MM-DD`` text; ParamsError naming the format otherwise."""
    try:
        return dt.date.fromisoformat(str(text).strip())
    except ValueError:
        raise ParamsError(f"due date {text!r} is not a date; write it as YYYY-MM-DD.") from None
