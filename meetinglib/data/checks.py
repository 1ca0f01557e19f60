"""The validation rules as engine predicates: one Ibis boolean expression per check.

The same rules as ``validate`` (see its docstring for their meaning and order), written
over a source table the engine reads where it lies, for sources whose columns already
carry their types (Parquet): text ids and codes, typed timestamps, typed numbers. A
check is one (rule, column) pair; ``checks`` lists them in the fixed order validation
reports them (rule order, then column order), so the first failing check of a row is
the rule it is set aside under, exactly as in ``validate.validate_table``.

Values are coerced as validation coerces them: text is stripped of surrounding
whitespace (Python's definition of whitespace, spelled out below so every engine strips
the same characters) and the export placeholders of ``validate.MISSING_TOKENS`` become
empty; a category column is mapped value by value through a table computed by
validation's own functions on the column's distinct values; numbers that are NaN are
empty and infinite ones are not a number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pandas as pd

from meetinglib.core.schema import SCHEMAS, Column, TableSchema, selection_of
from meetinglib.core.weeks import Window
from meetinglib.data.validate import (
    DUPLICATE_KEY,
    FIELD_TOO_LONG,
    IMPLAUSIBLE_DATE,
    MAX_FIELD_CHARS,
    MILESTONE_ORDER,
    MISSING_TOKENS,
    NOT_A_NUMBER,
    NUL_BYTE,
    OUT_OF_RANGE,
    RANGES,
    REPLACEMENT_CHARACTER,
    REQUIRED_MISSING,
    RULES,
    STATUS_WITHOUT_TIME,
    UNKNOWN_VALUE,
    UNPARSEABLE_TIMESTAMP,
    latest_plausible,
)

# Every character Python's str.strip() removes (str.isspace), as a regular-expression
# class both RE2 (DuckDB) and Java (Spark) read the same way.
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
)
_EDGE = f"^[{WHITESPACE}]|[{WHITESPACE}]$"
_STRIP = f"^[{WHITESPACE}]+|[{WHITESPACE}]+$"
_LONGEST_TOKEN = max(len(token) for token in MISSING_TOKENS)
TS_UTC = dt.Timestamp(timezone="UTC", scale=6)

# How a source column is typed, as far as the rules care.
SourceKind = Literal["text", "int", "float", "timestamp", "absent"]
# How an example row of a check is described (see validate._failures).
Detail = Literal["value", "duplicate", "milestone", "status"] | None


@dataclass(frozen=True)
class Check:
    """One (rule, column) check: the rows failing it, and how an example is described."""

    rule: str
    column: str
    flag: ir.BooleanValue
    detail: Detail = None


@dataclass(frozen=True)
class CategoryMap:
    """A category column's distinct source values: canonical value (None: empty), unknown."""

    canonical: dict[str, str | None]
    unknown: frozenset[str]
    categories: tuple[str, ...]  # the categories of the column as validation types it
    nul: frozenset[str] = frozenset()
    long: frozenset[str] = frozenset()
    garbled: frozenset[str] = frozenset()


def stripped_text(x: ir.StringValue) -> ir.StringValue:
    """``x`` stripped of surrounding whitespace, placeholders and empty text as NULL."""
    # Only short values or values with whitespace at an edge can change: the regular
    # expressions run on those alone.
    suspect = (x.length() <= _LONGEST_TOKEN) | x.re_search(_EDGE)
    cleaned = suspect.ifelse(x.re_replace(_STRIP, ""), x)
    placeholder = cleaned.isin(list(MISSING_TOKENS))
    return placeholder.ifelse(ibis.null(dt.string), cleaned)


def coerce(
    raw: ir.Value,
    col: Column,
    kind: SourceKind,
    category: CategoryMap | None,
    clean: bool = False,
) -> tuple[ir.Value, ir.BooleanValue, ir.BooleanValue | None]:
    """(canonical value, missing, bad) of one column; ``bad`` None when nothing can be.

    ``clean``: the text column is known to hold no value stripping or placeholders change.
    """
    if kind == "absent":
        return _empty(col), ibis.literal(True), None
    if col.kind == "category":
        assert category is not None
        mapped: ir.Value = (
            raw.substitute(
                {k: v for k, v in category.canonical.items()}, else_=ibis.null(dt.string)
            )
            if category.canonical
            else ibis.null(dt.string)
        )
        unknown = raw.isin(sorted(category.unknown)) if category.unknown else None
        return mapped, mapped.isnull(), unknown
    if col.kind in ("id", "text"):
        if kind == "int":
            text = raw.cast("string")
        elif clean:
            text = raw
        else:
            text = stripped_text(raw)
        return text, text.isnull(), None
    if col.kind == "timestamp":
        value = raw.cast(TS_UTC)
        return value, value.isnull(), None
    # Numbers.
    if kind == "int":
        value = raw.cast("int64" if col.kind == "int" else "float64")
        return value, raw.isnull(), None
    number = raw.cast("float64")
    missing = number.isnull() | number.isnan()
    bad = ~missing & number.isinf()
    if col.kind == "int":
        bad = bad | (~missing & ~bad & ((number % 1) != 0))
    ok = ~missing & ~bad
    value = ok.ifelse(number, ibis.null(dt.float64))
    if col.kind == "int":
        value = value.cast("int64")
    return value, missing, bad


def pandas_dtypes(
    schema: TableSchema, categories: Mapping[str, CategoryMap], tz: str
) -> dict[str, object]:
    """The pandas dtypes the pandas path gives the table (a snapshot's meta), for a table
    validated on an engine: categories as mapped, else the schema's allowed values."""
    out: dict[str, object] = {}
    for col in schema.columns:
        if col.kind == "category":
            cat = categories.get(col.name)
            listed = cat.categories if cat is not None else tuple(col.allowed or ())
            out[col.name] = {"category": list(listed)}
        elif col.kind == "timestamp":
            out[col.name] = f"datetime64[us, {tz}]"
        elif col.kind == "float":
            out[col.name] = "float64"
        elif col.kind == "int":
            out[col.name] = "Int64"
        else:
            out[col.name] = "str"
    return out


def _empty(col: Column) -> ir.Value:
    if col.kind == "timestamp":
        return ibis.null(TS_UTC)
    if col.kind == "float":
        return ibis.null(dt.float64)
    if col.kind == "int":
        return ibis.null(dt.int64)
    return ibis.null(dt.string)


def _false(flag: ir.BooleanValue) -> ir.BooleanValue:
    return flag.fill_null(False)


def checks(
    schema: TableSchema,
    base: ir.Table,
    kinds: Mapping[str, SourceKind],
    categories: Mapping[str, CategoryMap],
    plausible: tuple[pd.Timestamp | None, pd.Timestamp | None],
    duplicate: ir.BooleanValue | None = None,
    dirty: set[str] | None = None,
) -> list[Check]:
    """Every (rule, column) check of ``validate._failures``, in its order, over ``base``.

    ``base`` holds the source columns under ``raw_name`` and the coerced ones under
    ``value_name``, ``missing_name`` and ``bad_name``; ``duplicate`` flags the second and
    later rows of a key (computed by the caller, which needs a join for it). Text
    columns of ids not in ``dirty`` (when given) are known to pass the text rules.
    """
    by_rule: dict[str, list[Check]] = {rule: [] for rule in RULES}
    earliest, latest = plausible
    for col in schema.columns:
        kind = kinds.get(col.name, "absent")
        raw = base[raw_name(col.name)] if kind != "absent" else None
        cat = categories.get(col.name)
        screened_clean = dirty is not None and col.kind in ("id", "text") and col.name not in dirty
        if raw is not None and kind == "text" and not screened_clean:
            if cat is not None:
                nul = raw.isin(sorted(cat.nul)) if cat.nul else None
                long = raw.isin(sorted(cat.long)) if cat.long else None
            else:
                nul = raw.contains("\x00")
                long = raw.length() > MAX_FIELD_CHARS
            if nul is not None:
                by_rule[NUL_BYTE].append(Check(NUL_BYTE, col.name, _false(nul), "value"))
            if long is not None:
                by_rule[FIELD_TOO_LONG].append(
                    Check(FIELD_TOO_LONG, col.name, _false(long), "value")
                )
        if (
            raw is not None
            and kind == "text"
            and col.kind in ("id", "category", "text")
            and not screened_clean
        ):
            if cat is not None:
                garbled = raw.isin(sorted(cat.garbled)) if cat.garbled else None
            else:
                garbled = raw.contains("\ufffd")
            if garbled is not None:
                by_rule[REPLACEMENT_CHARACTER].append(
                    Check(REPLACEMENT_CHARACTER, col.name, _false(garbled), "value")
                )
        value = base[value_name(col.name)]
        if col.kind == "timestamp" and (earliest is not None or latest is not None):
            outside = ibis.literal(False)
            if earliest is not None:
                outside = outside | (value < _instant(earliest))
            if (last := latest_plausible(col, latest)) is not None:
                outside = outside | (value > _instant(last))
            by_rule[IMPLAUSIBLE_DATE].append(
                Check(IMPLAUSIBLE_DATE, col.name, _false(outside), "value")
            )
        if col.required:
            by_rule[REQUIRED_MISSING].append(
                Check(REQUIRED_MISSING, col.name, _false(base[missing_name(col.name)]))
            )
        bad_col = bad_name(col.name)
        if bad_col in base.columns:
            rule = {"category": UNKNOWN_VALUE, "timestamp": UNPARSEABLE_TIMESTAMP}.get(
                col.kind, NOT_A_NUMBER
            )
            by_rule[rule].append(Check(rule, col.name, _false(base[bad_col]), "value"))
        bounds = RANGES.get((schema.name, col.name))
        if bounds is not None and kind != "absent":
            low, high = bounds
            outside = ibis.literal(False)
            if low is not None:
                outside = outside | (value < low)
            if high is not None:
                outside = outside | (value > high)
            by_rule[OUT_OF_RANGE].append(Check(OUT_OF_RANGE, col.name, _false(outside), "value"))
    if schema.key and duplicate is not None:
        by_rule[DUPLICATE_KEY].append(
            Check(DUPLICATE_KEY, ", ".join(schema.key), _false(duplicate), "duplicate")
        )
    for later in dict.fromkeys(later for _, later in schema.milestone_order):
        earlier_cols = [e for e, lat in schema.milestone_order if lat == later]
        after = base[value_name(later)]
        before = ibis.literal(False)
        for earlier in earlier_cols:
            before = before | _false(after < base[value_name(earlier)])
        by_rule[MILESTONE_ORDER].append(Check(MILESTONE_ORDER, later, before, "milestone"))
    for status, value, time in schema.status_times:
        if kinds.get(time, "absent") == "absent":
            continue  # a source without the time column says nothing about a row's time
        said = base[value_name(status)] == value
        flag = _false(said & base[missing_name(time)])
        by_rule[STATUS_WITHOUT_TIME].append(Check(STATUS_WITHOUT_TIME, time, flag, "status"))
    return [c for rule in RULES for c in by_rule[rule]]


def in_selection(
    base: ir.Table, table: str, selection: Window, as_filter: bool = False
) -> ir.BooleanValue:
    """Rows whose time lies in the selection window (all rows of a table without time).

    ``as_filter``: the condition of a filter, where a missing outcome keeps no row as
    false does; left plain, the engine can skip row groups by their statistics.
    """
    schema = SCHEMAS[table]
    if schema.time_column is None:
        return ibis.literal(True)
    when = base[value_name(schema.time_column)]
    selection = selection_of(table, selection)
    inside = (when >= _instant(selection.start)) & (when < _instant(selection.end))
    if schema.open_until_time:
        inside = inside | when.isnull()  # not closed yet: open in every window
    return inside if as_filter else inside.fill_null(False)


def _instant(stamp: pd.Timestamp) -> ir.TimestampScalar:
    return ibis.literal(stamp.tz_convert("UTC").to_pydatetime(), type=TS_UTC)


def raw_name(column: str) -> str:
    """The base table's column holding the source's value of ``column``."""
    return f"__raw_{column}"


def value_name(column: str) -> str:
    """The base table's column holding the canonical value of ``column``."""
    return f"__val_{column}"


def missing_name(column: str) -> str:
    """The base table's column flagging an empty ``column``."""
    return f"__missing_{column}"


def bad_name(column: str) -> str:
    """The base table's column flagging an unusable (or unknown) value of ``column``."""
    return f"__bad_{column}"
