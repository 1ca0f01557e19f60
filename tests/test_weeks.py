import datetime as dt

import pandas as pd
import pytest

from meetinglib.core.errors import WeekFormatError
from meetinglib.core.weeks import IsoWeek, history_window, latest_complete_week, weeks_ending

TZ = "Asia/Shanghai"


@pytest.mark.parametrize("text", ["2026-W47", "2026W47", "2026-w47", " 2026-W47 "])
def test_parse_accepts_iso_spellings(text):
    assert IsoWeek.parse(text) == IsoWeek(2026, 47)
    assert str(IsoWeek.parse(text)) == "2026-W47"


@pytest.mark.parametrize("text", ["2026-47", "W47", "2026-W54", "2025-W53", "next week", ""])
def test_parse_rejects_with_a_hint(text):
    with pytest.raises(WeekFormatError, match="write it as YYYY-Www, for example 2026-W47"):
        IsoWeek.parse(text)


def test_window_is_monday_to_monday_in_platform_timezone():
    w = IsoWeek(2026, 47).window(TZ)
    # 2026-11-16 is the Monday of ISO week 47 of 2026 (checked against a calendar).
    assert w.start == pd.Timestamp("2026-11-16 00:00", tz=TZ)
    assert w.end == pd.Timestamp("2026-11-23 00:00", tz=TZ)
    assert len(w.days) == 7


def test_window_is_half_open():
    w = IsoWeek(2026, 47).window(TZ)
    ts = pd.Series(
        pd.to_datetime(
            [
                "2026-11-15 23:59:59",
                "2026-11-16 00:00:00",
                "2026-11-22 23:59:59",
                "2026-11-23 00:00:00",
            ]
        ).tz_localize(TZ)
    )
    assert w.contains(ts).tolist() == [False, True, True, False]


def test_utc_event_lands_in_local_week():
    # Sunday 2026-11-22 17:00 UTC is Monday 01:00 in Shanghai: the next local week.
    event = pd.Timestamp("2026-11-22 17:00", tz="UTC")
    assert IsoWeek.containing(event.tz_convert(TZ)) == IsoWeek(2026, 48)


def test_shift_crosses_year_boundaries():
    # 2026 has 53 ISO weeks (1 Jan 2026 is a Thursday).
    assert IsoWeek(2026, 52).next() == IsoWeek(2026, 53)
    assert IsoWeek(2026, 53).next() == IsoWeek(2027, 1)
    assert IsoWeek(2027, 1).previous() == IsoWeek(2026, 53)
    assert IsoWeek(2026, 1).shift(-1) == IsoWeek(2025, 52)
    assert IsoWeek(2026, 1).start(TZ) == pd.Timestamp("2025-12-29", tz=TZ)


def test_weeks_ending_oldest_first():
    assert [str(w) for w in weeks_ending(IsoWeek(2027, 2), 4)] == [
        "2026-W52",
        "2026-W53",
        "2027-W01",
        "2027-W02",
    ]


def test_history_window_spans_history_and_week():
    w = history_window(IsoWeek(2026, 47), 2, TZ)
    assert w.start == pd.Timestamp("2026-11-02", tz=TZ)
    assert w.end == pd.Timestamp("2026-11-23", tz=TZ)


@pytest.mark.parametrize(
    ("last_event", "expected"),
    [
        ("2026-11-23 05:59", "2026-W47"),  # export on Monday morning: last week complete
        ("2026-11-22 12:00", "2026-W47"),  # data reaches into Sunday
        ("2026-11-21 12:00", "2026-W46"),  # data stops on Saturday: week 47 incomplete
    ],
)
def test_latest_complete_week(last_event, expected):
    assert str(latest_complete_week(pd.Timestamp(last_event, tz=TZ), TZ)) == expected


def test_latest_complete_week_converts_timezones():
    # 2026-11-21 18:00 UTC = Sunday 02:00 in Shanghai.
    assert latest_complete_week(pd.Timestamp("2026-11-21 18:00", tz="UTC"), TZ) == IsoWeek(2026, 47)


def test_containing_a_date():
    assert IsoWeek.containing(dt.date(2027, 1, 3)) == IsoWeek(2026, 53)
