"""Text timestamps, naive times and text numbers parsed on the engine as validation parses them.

Validation parses text with pandas (``validate._coerce_timestamp``, ``_coerce_number``),
whose rules (ISO 8601, then guessed formats, then value by value) cannot be written as
engine expressions in general. They need not be: most values of an export have one plain
shape, on which both agree exactly, and the few others are parsed by validation itself.

* A **plain** value matches a strict pattern: ISO ``YYYY-MM-DD[ HH:MM[:SS[.ffffff]]]``
  (``T`` or a space; with ``Z``, ``+HH:MM`` or ``+HHMM`` after a time), or the digits of the
  source's ``timestamp_format`` when it uses only ``%Y %m %d %H %M %S %f``; a number of
  at most 15 characters of digits, one dot and a sign. The engine parses those (an
  impossible date such as 30 February is not plain: it goes with the others).
* Every other non-empty value is **odd**: the distinct odd values of a column, in the
  order they first appear, are parsed by validation's own functions, and the engine
  looks each one up. Validation parses a column value by value once the plain values
  are set apart (its ISO pass, guessed formats and day/month judgement only ever see the
  values that fail ISO, in source order), so the result is the same.
* Naive times are wall-clock times of the source's zone. Where the zone's UTC offset
  changes (daylight saving), the engine applies validation's rule: a time in the
  spring-forward gap becomes the first instant after it, a time that occurs twice is read
  as the first occurrence. The offsets come from pandas' own zone data for the span of
  plausible dates; a time outside that span is set aside as implausible whatever its
  exact offset.

Numbers of 15 digits or fewer parse to the same double on every correct parser (the
value and its power of ten are exact doubles). A zero keeps no sign.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from meetinglib.data import checks as ck
from meetinglib.data import engine
from meetinglib.data.validate import _localize

# Odd values parsed by validation per column at most; a column with more of them (a whole
# column in a format of its own) is read on the pandas path.
MAX_ODD = 1000
US = 1_000_000

_YEAR = "([1-9][0-9]{3})"
_MONTH = "(0[1-9]|1[0-2])"
_DAY = "(0[1-9]|[12][0-9]|3[01])"
_HOUR = "([01][0-9]|2[0-3])"
_MINUTE = "([0-5][0-9])"
_SECOND = "([0-5][0-9])"
_FRACTION = "([0-9]{1,6})"
_OFFSET = "(?:Z|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])"
# The offset at the end of a text matching an aware pattern: sign, hours, minutes.
_OFFSET_PARTS = "([+-])([0-9]{2}):?([0-9]{2})$"
_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)$"
_MAX_NUMBER_CHARS = 15
# strftime directive -> (pattern, field)
_DIRECTIVES = {
    "Y": (_YEAR, "Y"),
    "m": (_MONTH, "m"),
    "d": (_DAY, "d"),
    "H": (_HOUR, "H"),
    "M": (_MINUTE, "M"),
    "S": (_SECOND, "S"),
    "f": (_FRACTION, "f"),
}


@dataclass(frozen=True)
class Pattern:
    """A strict text shape: the regular expression and where each field's group is."""

    regex: str
    groups: dict[str, int]  # field (Y m d H M S f z) -> group number
    aware: bool  # the text carries its UTC offset
    iso_naive: bool = False  # ISO without an offset: read by the engine's cast


def iso_patterns() -> list[Pattern]:
    """The plain ISO shapes: naive (date, minutes, seconds, fraction) and with an offset."""
    time = f"[ T]{_HOUR}:{_MINUTE}(?::{_SECOND}(?:\\.{_FRACTION})?)?"
    naive = Pattern(
        f"^{_YEAR}-{_MONTH}-{_DAY}(?:{time})?$",
        {"Y": 1, "m": 2, "d": 3, "H": 4, "M": 5, "S": 6, "f": 7},
        aware=False,
        iso_naive=True,
    )
    aware = Pattern(
        f"^{_YEAR}-{_MONTH}-{_DAY}{time}{_OFFSET}$",
        {
            "Y": 1,
            "m": 2,
            "d": 3,
            "H": 4,
            "M": 5,
            "S": 6,
            "f": 7,
        },
        aware=True,
    )
    return [naive, aware]


def format_pattern(fmt: str) -> Pattern | None:
    """The strict shape of a ``timestamp_format`` (fixed-width fields), None when it uses
    anything but ``%Y %m %d %H %M %S %f`` and literal text, or lacks the date."""
    parts, groups, at = [], {}, 0
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "%":
            if i + 1 >= len(fmt):
                return None
            directive = fmt[i + 1]
            if directive == "%":
                parts.append(re.escape("%"))
            elif directive in _DIRECTIVES and directive not in groups:
                pattern, field = _DIRECTIVES[directive]
                at += 1
                groups[field] = at
                parts.append(pattern)
            else:
                return None
            i += 2
            continue
        if ch.isspace() or ch.isalnum():
            # pandas reads a space as any run of spaces and letters case-insensitively
            # ("%m" after "T"): keep to separators both read alike.
            if ch != " " and not ch.isalpha():
                return None
            if ch.isalpha() and ch not in "T":
                return None
        parts.append(re.escape(ch))
        i += 1
    if not {"Y", "m", "d"} <= set(groups) or ("f" in groups and "S" not in groups):
        return None
    if "S" in groups and "M" not in groups or "M" in groups and "H" not in groups:
        return None
    return Pattern("^" + "".join(parts) + "$", groups, aware=False)


def plain_patterns(fmt: str | None) -> list[Pattern]:
    """The shapes the engine parses for a column read with ``fmt`` (None: ISO)."""
    if fmt is None:
        return iso_patterns()
    found = format_pattern(fmt)
    return [found] if found is not None else []


def _field(text: ir.StringValue, pattern: Pattern, field: str, default: str) -> ir.StringValue:
    group = pattern.groups.get(field)
    if group is None:
        return ibis.literal(default)
    value = text.re_extract(pattern.regex, group)
    return (value == "").ifelse(ibis.literal(default), value)


def plain_micros(text: ir.StringValue, pattern: Pattern) -> ir.IntegerValue:
    """Microseconds since the epoch of a plain text, read as UTC wall time (NULL: not plain
    or no such date); an aware text's offset is taken off."""
    if pattern.iso_naive:
        # The engine's own cast reads exactly these shapes: one cast, no field extraction.
        cast = text.replace("T", " ").try_cast(dt.Timestamp(scale=6))
        return text.re_search(pattern.regex).ifelse(epoch_us(cast), ibis.null(dt.int64))
    fraction = _field(text, pattern, "f", "0")
    iso = (
        _field(text, pattern, "Y", "")
        + "-"
        + _field(text, pattern, "m", "")
        + "-"
        + _field(text, pattern, "d", "")
        + " "
        + _field(text, pattern, "H", "00")
        + ":"
        + _field(text, pattern, "M", "00")
        + ":"
        + _field(text, pattern, "S", "00")
        + "."
        + fraction.rpad(6, "0")
    )
    stamp = iso.try_cast(dt.Timestamp(scale=6))
    micros = epoch_us(stamp)
    if pattern.aware:
        sign = (text.re_extract(_OFFSET_PARTS, 1) == "-").ifelse(-1, 1)
        minutes = text.endswith("Z").ifelse(
            0,
            text.re_extract(_OFFSET_PARTS, 2).cast("int64") * 60
            + text.re_extract(_OFFSET_PARTS, 3).cast("int64"),
        )
        micros = micros - sign * minutes * 60 * US
    return text.re_search(pattern.regex).ifelse(micros, ibis.null(dt.int64))


def epoch_us(stamp: ir.TimestampValue) -> ir.IntegerValue:
    """Microseconds since the epoch of a (naive) timestamp, on DuckDB."""
    return engine.unix_micros(stamp, "duckdb")


@dataclass(frozen=True)
class Zone:
    """How a zone's wall-clock times become instants in a span of time (see ``local``).

    ``changes``: (instant of the change in UTC microseconds, offset before, offset after),
    offsets in microseconds; ``first``: the offset before the first change.
    """

    name: str
    first: int
    changes: tuple[tuple[int, int, int], ...]


def zone_between(name: str, start: pd.Timestamp, end: pd.Timestamp) -> Zone:
    """``name``'s UTC offsets and their changes from ``start`` to ``end`` (pandas' zone data).

    Changes are found on an hourly grid and placed to the second.
    """
    lo = start.tz_convert("UTC").floor("h")
    hi = end.tz_convert("UTC").ceil("h")
    grid = pd.date_range(lo, hi, freq="h")
    offsets = _offsets(grid, name)
    changes = []
    for i in np.flatnonzero(offsets[1:] != offsets[:-1]) + 1:
        before, after = grid[i - 1], grid[i]
        for step in ("min", "s"):
            fine = pd.date_range(before, after, freq=step)
            changed = np.flatnonzero(_offsets(fine, name) != offsets[i - 1])
            before, after = fine[changed[0] - 1], fine[changed[0]]
        changes.append((int(after.value) // 1000, int(offsets[i - 1]), int(offsets[i])))
    return Zone(name, int(offsets[0]), tuple(changes))


def agrees_with_pandas(zone: Zone) -> bool:
    """Whether ``local_micros_to_utc`` equals validation's localization around every change
    (each minute from three hours before to three hours after, and the seconds at the
    edges): pandas resolves some changes (half-hour ones) its own way."""
    if not zone.changes:
        return True
    probes = []
    hour = 3600 * US
    for instant, before, after in zone.changes:
        low, high = instant + min(before, after), instant + max(before, after)
        probes.append(np.arange(low - 3 * hour, high + 3 * hour, 60 * US))
        for edge in (low, high):
            probes.append(np.arange(edge - 2 * US, edge + 3 * US, US))
    local = np.concatenate(probes)
    wall = pd.Series(pd.to_datetime(local, unit="us"))
    expected = _localize(wall, zone.name, "UTC").dt.as_unit("us").dt.tz_localize(None)
    return bool((expected.to_numpy().astype(np.int64) == local_micros_to_utc(local, zone)).all())


def _offsets(grid: pd.DatetimeIndex, name: str) -> np.ndarray:
    """UTC offsets in microseconds at each instant of ``grid``."""
    wall = grid.tz_convert(name).tz_localize(None)
    return np.asarray((wall - grid.tz_localize(None)).as_unit("us").asi8, dtype=np.int64)


def local_micros_to_utc(local: np.ndarray, zone: Zone) -> np.ndarray:
    """``local`` wall-clock microseconds as UTC microseconds, by validation's rule (numpy)."""
    out = local - zone.first
    done = np.zeros(len(local), bool)
    previous = zone.first
    for instant, before, after in zone.changes:
        low, high = instant + min(before, after), instant + max(before, after)
        normal = ~done & (local < low)
        out[normal] = local[normal] - previous
        done |= normal
        edge = ~done & (local < high)
        # A gap (after > before): the first instant after it; twice: the first occurrence.
        out[edge] = instant if after > before else local[edge] - before
        done |= edge
        previous = after
    out[~done] = local[~done] - previous
    return out


def local_to_utc(local: ir.IntegerValue, zone: Zone) -> ir.IntegerValue:
    """``local_micros_to_utc`` as an engine expression."""
    if not zone.changes:
        return local - zone.first
    cases: list[tuple[ir.BooleanValue, ir.IntegerValue]] = []
    previous = zone.first
    for instant, before, after in zone.changes:
        low, high = instant + min(before, after), instant + max(before, after)
        cases.append((local < low, local - previous))
        edge = ibis.literal(instant, dt.int64) if after > before else local - before
        cases.append((local < high, edge))
        previous = after
    return ibis.cases(*cases, else_=local - previous)


def micros_to_instant(micros: ir.IntegerValue) -> ir.TimestampValue:
    """UTC microseconds as the engine's instant type."""
    epoch = ibis.literal(pd.Timestamp(0, tz="UTC").to_pydatetime(), type=ck.TS_UTC)
    return epoch + micros.as_interval("us")


def timestamp_value(
    text: ir.StringValue, patterns: list[Pattern], zone: Zone, odd: dict[str, int | None]
) -> tuple[ir.TimestampValue, ir.BooleanValue, ir.BooleanValue]:
    """(instant, missing, bad) of a stripped text column: plain values parsed here, odd
    ones looked up in ``odd`` (validation's result in UTC microseconds; None: unparseable).

    As one expression; ``load_engine`` builds the same from its parts in stages
    (``plain_micros``, ``utc_micros``, ``instant_parts``), each a column of its own."""
    local = [plain_micros(text, pattern) for pattern in patterns]
    return instant_parts(text, utc_micros(text, local, patterns, zone, odd))


def utc_micros(
    text: ir.StringValue,
    local: list[ir.IntegerValue],
    patterns: list[Pattern],
    zone: Zone,
    odd: dict[str, int | None],
) -> ir.IntegerValue:
    """UTC microseconds of a stripped text column (NULL: unparseable), from ``local``,
    ``plain_micros`` of each of ``patterns``: the first pattern that reads a value wins;
    an odd value is looked up in ``odd``."""
    micros: ir.IntegerValue = ibis.null(dt.int64)
    for parsed, pattern in zip(local, patterns, strict=True):
        micros = micros.coalesce(parsed if pattern.aware else local_to_utc(parsed, zone))
    if odd:
        micros = micros.coalesce(_looked_up(text, odd, dt.int64))
    return micros


def instant_parts(
    text: ir.StringValue, micros: ir.IntegerValue
) -> tuple[ir.TimestampValue, ir.BooleanValue, ir.BooleanValue]:
    """(instant, missing, bad) of a stripped text column and its ``utc_micros``."""
    missing = text.isnull()
    return micros_to_instant(micros), missing, ~missing & micros.isnull()


def _looked_up(text: ir.StringValue, odd: dict[str, Any], type_: dt.DataType) -> ir.Value:
    """Validation's value of each odd text (None: unparseable), NULL for any other text."""
    values = {
        k: ibis.literal(v, type_) if v is not None else ibis.null(type_) for k, v in odd.items()
    }
    return text.substitute(values, else_=ibis.null(type_))


def is_plain_timestamp(text: ir.StringValue, patterns: list[Pattern]) -> ir.BooleanValue:
    """Whether the engine parses ``text`` itself (see ``timestamp_value``)."""
    micros: ir.IntegerValue = ibis.null(dt.int64)
    for pattern in patterns:
        micros = micros.coalesce(plain_micros(text, pattern))
    return micros.notnull()


def _plain_number(text: ir.StringValue) -> ir.FloatingValue:
    shaped = text.re_search(_NUMBER) & (text.length() <= _MAX_NUMBER_CHARS)
    return shaped.ifelse(text.try_cast(dt.float64), ibis.null(dt.float64))


def is_plain_number(text: ir.StringValue) -> ir.BooleanValue:
    """Whether the engine parses ``text`` itself (see ``number_value``)."""
    return _plain_number(text).notnull()


def number_value(
    text: ir.StringValue, kind: str, odd: dict[str, float | None]
) -> tuple[ir.Value, ir.BooleanValue, ir.BooleanValue]:
    """(value, missing, bad) of a stripped text column of numbers (``kind`` int or float):
    plain values parsed here, odd ones looked up in ``odd`` (None: not a number).

    As one expression; ``load_engine`` builds the same in stages (``parsed_number``, then
    ``number_parts``)."""
    return number_parts(text, parsed_number(text, odd), kind)


def parsed_number(text: ir.StringValue, odd: dict[str, float | None]) -> ir.FloatingValue:
    """The number of a stripped text (NULL: none), an odd value looked up in ``odd``."""
    number = _plain_number(text) + 0.0  # a zero keeps no sign
    if odd:
        number = number.coalesce(_looked_up(text, odd, dt.float64))
    return number


def number_parts(
    text: ir.StringValue, number: ir.FloatingValue, kind: str
) -> tuple[ir.Value, ir.BooleanValue, ir.BooleanValue]:
    """(value, missing, bad) of a stripped text column and its ``parsed_number``."""
    missing = text.isnull()
    bad = ~missing & number.isnull()
    if kind == "int":
        bad = bad | (~missing & ((number % 1) != 0)).fill_null(False)
    value = bad.ifelse(ibis.null(dt.float64), number)
    if kind == "int":
        return value.cast("int64"), missing, bad
    return value, missing, bad
