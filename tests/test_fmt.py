"""Numbers, dates and units per language: one module, checked against hand-written text."""

from __future__ import annotations

import datetime as dt

import pytest

from meetinglib.core.fmt import (
    fmt_change,
    fmt_date,
    fmt_duration,
    fmt_number,
    fmt_percent,
    fmt_value,
    unit_word,
)


@pytest.mark.parametrize(
    ("value", "unit", "lang", "text"),
    [
        (12345.67, "hours", "en", "12,345.7 h"),
        (12345.67, "hours", "zh-CN", "12,345.7 小时"),
        (3.26, "days", "zh-CN", "3.3 天"),
        (0.1234, "share", "en", "12.3%"),
        (0.1234, "share", "zh-CN", "12.3%"),
        (1234567.4, "currency", "en", "CNY 1,234,567"),
        (4.123, "score", "en", "4.12"),
        (float("nan"), "orders", "en", "–"),
        (None, "share", "zh-CN", "–"),
    ],
)
def test_fmt_value_per_language(value, unit, lang, text):
    assert fmt_value(value, unit, "CNY", lang) == text


def test_fmt_change_uses_the_languages_units():
    assert fmt_change(0.95, 0.93, "share", "zh-CN") == "+2.0 个百分点"
    assert fmt_change(0.93, 0.95, "share", "en") == "-2.0 pp"
    assert fmt_change(100.0, 80.0, "hours", "zh-CN") == "+20.0 小时 (+25.0%)"
    assert fmt_change(1200, 1000, "orders", "en") == "+200 (+20.0%)"


def test_numbers_percent_duration_date():
    assert fmt_number(1234567.891, "en", 2) == "1,234,567.89"
    assert fmt_percent(0.5, "zh-CN", 0) == "50%"
    assert fmt_duration(30, "en") == "30.0 h"
    assert fmt_duration(72, "zh-CN") == "3.0 天"
    assert fmt_date(dt.date(2026, 11, 23), "zh-CN") == "2026-11-23"
    assert unit_word("pp", "en") == "pp"
