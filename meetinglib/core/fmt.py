"""Numbers, dates, durations and units for people, per language: the one place that
writes a figure into a handout.

Separators and decimal marks come from Babel's locale data (``en``: ``12,345.6``;
``zh-CN``: ``12,345.6`` too, but units read ``小时``, ``天``, ``个百分点``). Every unit word
is a catalogue text (``unit.*``), so a third language needs no code here. ``lang``
defaults to English so callers that have no language yet keep working.
"""

from __future__ import annotations

import datetime as dt
import math
from functools import cache

from babel import Locale
from babel.numbers import format_decimal, format_percent

from meetinglib.core.i18n import t

DASH = "–"


@cache
def _locale(lang: str) -> Locale:
    return Locale.parse(lang.replace("-", "_"))


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt_number(value: float | None, lang: str = "en", decimals: int = 0) -> str:
    """A number with the language's group separator and ``decimals`` fixed decimals."""
    if _missing(value):
        return DASH
    pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
    return format_decimal(float(value), format=pattern, locale=_locale(lang))  # type: ignore[arg-type]


def fmt_percent(value: float | None, lang: str = "en", decimals: int = 1) -> str:
    """A share (0.123) as a percentage ("12.3%")."""
    if _missing(value):
        return DASH
    pattern = "#,##0" + ("." + "0" * decimals if decimals else "") + "%"
    return format_percent(float(value), format=pattern, locale=_locale(lang))  # type: ignore[arg-type]


def unit_word(unit: str, lang: str = "en") -> str:
    """The short word for a unit in ``lang`` ("h" / "小时"), from the catalogues."""
    return t(f"unit.short.{unit}", lang)


def fmt_value(value: float | None, unit: str, currency: str = "CNY", lang: str = "en") -> str:
    """A KPI value for people: shares as %, hours with one decimal, counts with separators."""
    if _missing(value):
        return DASH
    assert value is not None
    if unit == "share":
        return fmt_percent(value, lang)
    if unit in ("hours", "days"):
        return f"{fmt_number(value, lang, 1)} {unit_word(unit, lang)}"
    if unit == "per_1000":
        return f"{fmt_number(value, lang, 1)} ‰"
    if unit == "score":
        return fmt_number(value, lang, 2)
    if unit == "currency":
        return f"{currency} {fmt_number(value, lang)}"
    return fmt_number(value, lang)


def _signed(value: float, lang: str, decimals: int) -> str:
    text = fmt_number(abs(value), lang, decimals)
    return ("+" if value >= 0 else "-") + text


def fmt_change(
    this: float | None, last: float | None, unit: str, lang: str = "en", currency: str = "CNY"
) -> str:
    """Change from last week: points for shares, absolute plus relative otherwise."""
    if _missing(this) or _missing(last):
        return DASH
    assert this is not None and last is not None
    diff = this - last
    if unit == "share":
        return f"{_signed(diff * 100, lang, 1)} {unit_word('pp', lang)}"
    if unit == "score":
        return _signed(diff, lang, 2)
    if unit == "per_1000":
        return f"{_signed(diff, lang, 1)} ‰"
    rel = f" ({'+' if diff >= 0 else '-'}{fmt_percent(abs(diff / last), lang)})" if last else ""
    if unit in ("hours", "days"):
        return f"{_signed(diff, lang, 1)} {unit_word(unit, lang)}{rel}"
    return f"{_signed(diff, lang, 0)}{rel}"


def fmt_duration(hours: float | None, lang: str = "en") -> str:
    """A duration in hours, shown in hours below two days and in days from there."""
    if _missing(hours):
        return DASH
    assert hours is not None
    if abs(hours) < 48:
        return f"{fmt_number(hours, lang, 1)} {unit_word('hours', lang)}"
    return f"{fmt_number(hours / 24, lang, 1)} {unit_word('days', lang)}"


def fmt_date(day: dt.date | dt.datetime | None, lang: str = "en") -> str:
    """A calendar day: ISO in both languages (2026-11-23), unambiguous on any desk."""
    if day is None:
        return DASH
    return day.strftime("%Y-%m-%d")


def fmt_datetime(moment: dt.datetime | None, lang: str = "en") -> str:
    """A moment to the minute with its zone abbreviation when it has one."""
    if moment is None:
        return DASH
    zone = moment.strftime("%Z")
    return moment.strftime("%Y-%m-%d %H:%M") + (f" {zone}" if zone else "")
