"""ISO weeks as half-open time windows in the platform's timezone.

A week runs from Monday 00:00 to the next Monday 00:00 local time. Windows are
half-open, ``start <= t < end``, so an event at Monday 00:00 belongs to the new week
and no event is ever counted twice.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import pandas as pd

from meetinglib.core.errors import WeekFormatError

_WEEK_RE = re.compile(r"^\s*(\d{4})-?W(\d{1,2})\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Window:
    """A half-open time window ``[start, end)`` of tz-aware timestamps."""

    start: pd.Timestamp
    end: pd.Timestamp

    def contains(self, ts: pd.Series) -> pd.Series:
        """Boolean mask: which timestamps fall inside the window (NaT is outside)."""
        return (ts >= self.start) & (ts < self.end)

    @property
    def days(self) -> pd.DatetimeIndex:
        """The local calendar days the window covers."""
        return pd.date_range(self.start, self.end, freq="D", inclusive="left")


@dataclass(frozen=True, order=True)
class IsoWeek:
    """An ISO 8601 week, for example ``IsoWeek(2026, 47)`` printed ``2026-W47``."""

    year: int
    week: int

    def __post_init__(self) -> None:
        try:
            dt.date.fromisocalendar(self.year, self.week, 1)
        except ValueError:
            raise WeekFormatError(f"{self.year}-W{self.week:02d}") from None

    @classmethod
    def parse(cls, text: str | IsoWeek) -> IsoWeek:
        """Parse ``2026-W47`` (also ``2026W47``, ``2026-w47``)."""
        if isinstance(text, IsoWeek):
            return text
        m = _WEEK_RE.match(str(text))
        if not m:
            raise WeekFormatError(text)
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def containing(cls, when: dt.date | dt.datetime | pd.Timestamp) -> IsoWeek:
        """The ISO week a local date or timestamp falls in."""
        if isinstance(when, dt.datetime):
            when = when.date()
        iso = when.isocalendar()
        return cls(iso[0], iso[1])

    def __str__(self) -> str:
        return f"{self.year}-W{self.week:02d}"

    @property
    def monday(self) -> dt.date:
        return dt.date.fromisocalendar(self.year, self.week, 1)

    def start(self, tz: str) -> pd.Timestamp:
        """Monday 00:00 of this week in ``tz``."""
        return pd.Timestamp(self.monday).tz_localize(tz)

    def end(self, tz: str) -> pd.Timestamp:
        """Monday 00:00 of the next week in ``tz`` (exclusive)."""
        return self.shift(1).start(tz)

    def window(self, tz: str) -> Window:
        return Window(self.start(tz), self.end(tz))

    def shift(self, weeks: int) -> IsoWeek:
        """The week ``weeks`` later (negative: earlier); crosses year boundaries."""
        return IsoWeek.containing(self.monday + dt.timedelta(weeks=weeks))

    def previous(self) -> IsoWeek:
        return self.shift(-1)

    def next(self) -> IsoWeek:
        return self.shift(1)


def weeks_ending(week: IsoWeek, count: int) -> list[IsoWeek]:
    """The ``count`` weeks up to and including ``week``, oldest first."""
    return [week.shift(-i) for i in range(count - 1, -1, -1)]


def history_window(week: IsoWeek, history_weeks: int, tz: str) -> Window:
    """From the start of the oldest history week to the end of ``week``."""
    return Window(week.shift(-history_weeks).start(tz), week.end(tz))


def latest_complete_week(last_event: pd.Timestamp, tz: str) -> IsoWeek:
    """The latest week the data covers to its end.

    The week of the last event counts as complete when the data reaches into its
    Sunday (exports usually run on Monday morning, so the last few hours belong to
    the new, incomplete week); otherwise the week before it.
    """
    local = pd.Timestamp(last_event)
    local = local.tz_localize(tz) if local.tzinfo is None else local.tz_convert(tz)
    week = IsoWeek.containing(local)
    sunday = week.start(tz) + pd.Timedelta(days=6)
    return week if local >= sunday else week.previous()
