"""Coerces a raw table to the canonical dtypes and sets bad rows aside.

Every row read is either kept or quarantined, never silently dropped:
``loaded == kept + quarantined`` for every table. A quarantined row keeps its
original values and says which rule it failed first (``_rule``, ``_column``) and
where a person finds it (``_source_row``).

Rules, checked in this fixed order (a row failing several is quarantined once,
under the first, but counted in the entry of every rule it fails):

0. ``nul byte``: a cell holds a NUL character (a damaged export; it would end up in ids
   and labels); ``field too long``: a cell longer than ``MAX_FIELD_CHARS`` characters
   (no canonical value is that long; such a cell is a broken quote or an attack, and
   would slow every step after it).
1. ``required value missing``: a required column is empty.
2. ``unparseable timestamp``: a non-empty timestamp that does not parse.
3. ``not a number``: a non-empty number that does not parse (or, for whole-number
   columns such as ``qty``, has a fraction).
4. ``unknown value``: a value outside the schema's allowed values (matched
   ignoring case and surrounding spaces). The row is *kept*, the value read as
   ``unmapped`` (an unknown exception code is still an exception), and the entry
   listed in the quality table.
5. ``out of range``: see ``RANGES`` (csat 1-5; order amounts, refunds and
   quantities not negative). Settlement amounts and fees may be negative
   (chargebacks, refund reversals), so they are not range-checked.
6. ``duplicate key``: second and later rows with the same table key; the first
   occurrence in the source is kept (rows without a key are rule 1's).
7. ``milestone order``: a later milestone before its predecessor (e.g.
   ``delivered_at`` before ``shipped_at``), compared exactly, after conversion
   to one timezone. The row is *kept* and flagged: the order still counts for
   volume, GMV and cancellations, and only the durations it makes negative leave
   the duration KPIs.
8. ``status without time``: a status that says a time happened, without that time
   (``TableSchema.status_times``: a settlement whose status is ``settled`` and whose
   ``settled_at`` is empty, an export whose status column was updated and whose time
   column was not). Checked only when the source has the time column. The row is
   *kept* and flagged, not set aside: its amount is real money a finance reader must
   not lose without a word, and a company whose export lacks some settlement times
   must still get its report (rows set aside count towards
   ``quality.max_quarantine_share``, which stops the run). Without a time the row
   cannot be placed in a week: it is in neither the settled amount nor the pending
   amount (see ``sections.pending_until_settled``), and the finance section says how
   many such rows there are and their amount.

Before them, rows that cannot be trusted at all are set aside: ``wrong field
count`` (a CSV line with more or fewer cells than the header, such as a truncated
last line), ``replacement character`` (text holding U+FFFD, bytes the declared
encoding could not decode) and, after rule 2, ``implausible date`` (a timestamp
before ``quality.earliest_date`` or more than ``quality.max_days_ahead`` days in
the future, such as 0001-01-01 or 2031).

Kept rules (4, 7 and 8) are counted in the quality report but not in the share of
rows set aside that ``quality.max_quarantine_share`` limits.

Empty values: an empty cell and the export placeholders in ``MISSING_TOKENS``
(``NULL``, ``N/A``, ``nan``...) mean "no value", so an empty optional milestone
means "not reached yet" and an empty ``exception_code`` means "no exception".

Timestamps: text parses with the source's ``timestamp_format`` when given, else as
ISO 8601, then with a format guessed from the first value that is not ISO, then
value by value (``format="mixed"``). Naive times are wall-clock times of the
source's timezone; times with an offset (``Z``, ``+08:00``) are converted. All end
as ``datetime64[us, <platform timezone>]``. Daylight-saving edges are resolved
deterministically rather than set aside: a wall-clock time that falls in a
spring-forward gap is shifted forward to the first valid instant; one that occurs
twice at fall-back is read as the first occurrence (daylight time).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.tseries.api import guess_datetime_format

from meetinglib.core.errors import (
    AmbiguousDatesError,
    MissingColumnError,
    TooManyQuarantinedError,
)
from meetinglib.core.i18n import t
from meetinglib.core.schema import SCHEMAS, WRONG_FIELDS_COL, Column, TableSchema

if TYPE_CHECKING:
    from meetinglib.core.weeks import Window
    from meetinglib.data.sources import RawTable

SOURCE_ROW = "_source_row"
RULE_COL = "_rule"
COLUMN_COL = "_column"

REQUIRED_MISSING = "required value missing"
UNPARSEABLE_TIMESTAMP = "unparseable timestamp"
NOT_A_NUMBER = "not a number"
UNKNOWN_VALUE = "unknown value"
OUT_OF_RANGE = "out of range"
DUPLICATE_KEY = "duplicate key"
MILESTONE_ORDER = "milestone order"
NUL_BYTE = "nul byte"
FIELD_TOO_LONG = "field too long"
# Longest cell kept: ids, codes and names are far shorter; notes are not read.
MAX_FIELD_CHARS = 1000
WRONG_FIELD_COUNT = "wrong field count"
REPLACEMENT_CHARACTER = "replacement character"
IMPLAUSIBLE_DATE = "implausible date"
STATUS_WITHOUT_TIME = "status without time"
RULES = (
    NUL_BYTE,
    FIELD_TOO_LONG,
    WRONG_FIELD_COUNT,
    REPLACEMENT_CHARACTER,
    REQUIRED_MISSING,
    UNPARSEABLE_TIMESTAMP,
    IMPLAUSIBLE_DATE,
    NOT_A_NUMBER,
    UNKNOWN_VALUE,
    OUT_OF_RANGE,
    DUPLICATE_KEY,
    MILESTONE_ORDER,
    STATUS_WITHOUT_TIME,
)
# Rules whose rows are kept (flagged, counted in the quality report), not set aside.
KEPT_RULES = frozenset({UNKNOWN_VALUE, MILESTONE_ORDER, STATUS_WITHOUT_TIME})
# The value an unknown category value is kept as.
UNMAPPED = "unmapped"

# (table, column): inclusive (low, high) bounds; None leaves that side open.
RANGES: dict[tuple[str, str], tuple[float | None, float | None]] = {
    ("orders", "amount"): (0, None),
    ("tickets", "csat"): (1, 5),
    ("after_sales", "refund_amount"): (0, None),
    ("order_lines", "qty"): (0, None),
    ("order_lines", "qty_shipped"): (0, None),
}

# Placeholders that exports write for "no value" ("NA" is not one: it is a region code).
MISSING_TOKENS: tuple[str, ...] = ("", "nan", "NaN", "NAN", "NULL", "null", "Null", "None")
MISSING_TOKENS += ("none", "NaT", "N/A", "n/a", "#N/A", "-", "--")

_LONGEST_TOKEN = max(len(token.encode()) for token in MISSING_TOKENS)
_NO_BYTES = np.zeros(0, dtype=np.uint8)
# Bytes a value may start or end with when it has surrounding whitespace: ASCII
# whitespace, lead bytes of Unicode spaces (U+00A0, U+2000..., U+3000) and, at the end,
# any non-ASCII byte.
_ASCII_SPACE = [*range(0x09, 0x0E), *range(0x1C, 0x21)]
_SPACE_FIRST = np.zeros(256, dtype=bool)
_SPACE_FIRST[[*_ASCII_SPACE, 0xC2, 0xE1, 0xE2, 0xE3]] = True
_SPACE_LAST = np.zeros(256, dtype=bool)
_SPACE_LAST[[*_ASCII_SPACE, *range(0x80, 0x100)]] = True

TIMESTAMP_UNIT = "us"
_NAT = np.iinfo(np.int64).min
MAX_EXAMPLES = 5
_SHOWN_CHARS = 40

# A time of day followed by a UTC offset or zone letter: the text carries its own zone.
_HAS_OFFSET = r"\d:\d\d(?::\d\d(?:[.,]\d+)?)?\s*(?:[zZ]|UTC|GMT|[+-]\d\d(?::?\d\d)?)$"
# Digits, something else, digits: worth a value-by-value parse (bare numbers are not).
_DATE_LIKE = r"\d+\D+\d+"
_THOUSANDS = r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?"
# A currency mark exports write before or after an amount ("￥88.00", "-$5", "12.50 元",
# "RMB 1,299.00"): the report's currency is the params' (currency), so the mark is
# dropped rather than the row set aside; any other text stays "not a number".
_CURRENCY = r"(?:US\$|HK\$|RMB|CNY|USD|EUR|GBP|[¥￥$€£元])"
_MARKED = (
    rf"[+-]?\s*{_CURRENCY}\s*[+-]?[\d.,]+|{_CURRENCY}\s*[+-]?\s*[\d.,]+|[+-]?[\d.,]+\s*{_CURRENCY}"
)
# A numeric date with the year last: day and month in an order only the values can tell.
_DAY_MONTH = r"^\s*(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4})\b"


# What an example row shows beside its row and key (``Example.detail``), and its values.
_VALUE = "value"  # the offending cell, as shown
_FIRST_ROW = "first_row"  # a repeated key: the row holding it first
_MILESTONE = "milestone"  # the later column, its time, the earlier column, its time
_STATUS = "status"  # the status column, its value as shown, the empty time column


@dataclass(frozen=True)
class Example:
    """One example row of a quality entry, in no language: the row a person finds in the
    file, its key, and what is wrong with it. ``text`` words it in a language.

    A run writes one snapshot for the handouts of every language it renders, so the
    example is kept as its parts and worded where it is shown (the terminal, the data
    report's appendix), never as English text translated afterwards.
    """

    row: str
    key: tuple[tuple[str, str], ...] = ()  # (key column, its value as shown)
    detail: str = ""  # "" (the row and key say it all), _VALUE, _FIRST_ROW or _MILESTONE
    values: tuple[str, ...] = ()

    def text(self, lang: str = "en") -> str:
        """``row 7 (order_id O-1003): 'abc'`` in ``lang``."""
        where = t("quality.example.row", lang, row=self.row)
        if self.key:
            key = t("quality.example.key_separator", lang).join(
                t("quality.example.key", lang, column=column, value=value)
                for column, value in self.key
            )
            where = t("quality.example.keyed", lang, where=where, key=key)
        if self.detail == _VALUE:
            return t("quality.example.value", lang, where=where, value=self.values[0])
        if self.detail == _FIRST_ROW:
            return t("quality.example.first_row", lang, where=where, first=self.values[0])
        if self.detail == _MILESTONE:
            later, later_at, earlier, earlier_at = self.values
            return t(
                "quality.example.milestone",
                lang,
                where=where,
                later=later,
                later_at=later_at,
                earlier=earlier,
                earlier_at=earlier_at,
            )
        if self.detail == _STATUS:
            status, value, time = self.values
            return t(
                "quality.example.status", lang, where=where, status=status, value=value, time=time
            )
        return where

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Example:
        """An example from its ``dataclasses.asdict`` form read back from JSON (lists)."""
        return cls(
            str(d["row"]),
            tuple((str(c), str(v)) for c, v in d.get("key") or ()),
            str(d.get("detail") or ""),
            tuple(str(v) for v in d.get("values") or ()),
        )


@dataclass(frozen=True)
class QuarantineEntry:
    """How many rows of one table failed one rule on one column, with examples."""

    table: str
    source: str
    column: str
    rule: str
    rows: int
    examples: tuple[Example, ...]
    kept: bool = False  # the rows are kept (flagged), not set aside

    def example_texts(self, lang: str = "en") -> tuple[str, ...]:
        """The examples worded in ``lang``."""
        return tuple(example.text(lang) for example in self.examples)


@dataclass
class QualityReport:
    """Rows loaded, kept and set aside per table, and why."""

    loaded: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)
    entries: list[QuarantineEntry] = field(default_factory=list)
    quarantined: dict[str, pd.DataFrame] = field(default_factory=dict)
    # Per table: (rows set aside, rows) placed in the report week by the table's time.
    week: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Per table, of the rows kept: those the report reads (in the weeks it reads, of an
    # order loaded), and those of the weeks read left out because their order is not
    # among the orders loaded (set aside, created before the weeks read, or unknown).
    # Unknown for a table validated inside its database.
    used: dict[str, int] = field(default_factory=dict)
    no_order: dict[str, int] = field(default_factory=dict)
    max_share: float | None = None  # quality.max_quarantine_share the week is judged by

    def week_share(self, table: str) -> float:
        """Share of the report week's rows of ``table`` set aside (0 when it has none)."""
        set_aside, rows = self.week.get(table, (0, 0))
        return set_aside / rows if rows else 0.0

    @property
    def week_warnings(self) -> list[tuple[str, int, int]]:
        """(table, set aside, rows) of tables whose report week is past ``max_share``."""
        if self.max_share is None:
            return []
        return [
            (table, aside, rows)
            for table, (aside, rows) in self.week.items()
            if rows and aside / rows > self.max_share
        ]

    @property
    def total_quarantined(self) -> int:
        """Rows set aside over all tables."""
        return sum(len(f) for f in self.quarantined.values())

    @property
    def total_loaded(self) -> int:
        """Rows read over all tables."""
        return sum(self.loaded.values())

    def add(
        self,
        table: str,
        loaded: int,
        kept: int,
        entries: list[QuarantineEntry],
        quarantined: pd.DataFrame,
    ) -> None:
        """Record the validation result of one table."""
        self.loaded[table] = loaded
        self.kept[table] = kept
        self.entries.extend(entries)
        self.quarantined[table] = quarantined

    def to_frame(self, lang: str = "en") -> pd.DataFrame:
        """One row per entry, with labelled columns and rule names in ``lang``."""
        columns = {
            "table": t("quality.table", lang),
            "source": t("quality.source", lang),
            "column": t("quality.column", lang),
            "rule": t("quality.rule", lang),
            "rows": t("quality.rows", lang),
            "outcome": t("quality.outcome", lang),
            "examples": t("quality.examples", lang),
        }
        separator = t("quality.separator", lang)
        frame = pd.DataFrame(
            {
                "table": pd.Series([e.table for e in self.entries], dtype="str"),
                "source": pd.Series([e.source for e in self.entries], dtype="str"),
                "column": pd.Series([e.column for e in self.entries], dtype="str"),
                "rule": pd.Series([rule_label(e.rule, lang) for e in self.entries], dtype="str"),
                "rows": pd.Series([e.rows for e in self.entries], dtype="int64"),
                "outcome": pd.Series(
                    [
                        t(f"quality.outcome.{'kept' if e.kept else 'set_aside'}", lang)
                        for e in self.entries
                    ],
                    dtype="str",
                ),
                "examples": pd.Series(
                    [separator.join(e.example_texts(lang)) for e in self.entries], dtype="str"
                ),
            }
        )
        return frame.rename(columns=columns)


def rule_label(rule: str, lang: str = "en") -> str:
    """The translated name of a validation rule."""
    return t("rule." + rule.replace(" ", "_"), lang)


def source_name(location: str) -> str:
    """File name(s) of a source location, or ``sql:<table>`` as is."""
    if location.startswith("sql:"):
        return location
    return ", ".join(part.replace("\\", "/").rsplit("/", 1)[-1] for part in location.split(", "))


# --- coercion ---------------------------------------------------------------------------


@dataclass
class _Coerced:
    """A column in its canonical dtype, and which raw values were empty or unusable."""

    values: pd.Series
    missing: np.ndarray
    bad: np.ndarray
    out_of_range: np.ndarray | None = None


def _as_text(s: pd.Series) -> pd.Series:
    """Values as stripped ``str``, with empty cells and placeholders as NA."""
    if pd.api.types.is_float_dtype(s.dtype):
        finite = s.dropna()
        if len(finite) and bool((finite % 1 == 0).all()):
            # Whole-number ids that went through a float column (a gap made them float).
            s = s.astype("Int64")
    if s.dtype != "str" or isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype("str")
    suspect = _may_need_cleaning(s)
    if not suspect.any():
        return s
    if suspect.mean() > 0.5:
        s = s.str.strip()
        return s.mask(s.isin(MISSING_TOKENS))
    # Most values are clean already (e.g. ids): clean only the suspect ones.
    rows = np.flatnonzero(suspect)
    cleaned = s.iloc[rows].str.strip()
    cleaned = cleaned.mask(cleaned.isin(MISSING_TOKENS))
    out = s.copy()
    out.iloc[rows] = cleaned.to_numpy()
    return out


def _may_need_cleaning(s: pd.Series) -> np.ndarray:
    """Values that may be a placeholder or have surrounding whitespace (a superset).

    Looks only at each value's length and first and last byte, which is much
    cheaper than stripping tens of millions of values that are clean.
    """
    arr = pa.array(s.array)
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    out = np.empty(len(s), dtype=bool)
    at = 0
    for chunk in chunks:
        if not pa.types.is_large_string(chunk.type):
            chunk = chunk.cast(pa.large_string())
        n = len(chunk)
        _, offsets_buf, data_buf = chunk.buffers()
        offsets = np.frombuffer(offsets_buf, dtype=np.int64)[chunk.offset : chunk.offset + n + 1]
        data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else _NO_BYTES
        lengths = np.diff(offsets)
        # Empty values are flagged by their length, so their (meaningless) bytes do not matter.
        flag = lengths <= _LONGEST_TOKEN
        if len(data):
            flag |= _SPACE_FIRST[data[np.minimum(offsets[:-1], len(data) - 1)]]
            flag |= _SPACE_LAST[data[offsets[1:] - 1]]
        if chunk.null_count:
            flag &= chunk.is_valid().to_numpy(zero_copy_only=False)
        out[at : at + n] = flag
        at += n
    return out


def _coerce_id(s: pd.Series) -> _Coerced:
    values = _as_text(s)
    missing = values.isna().to_numpy()
    return _Coerced(values, missing, np.zeros(len(s), bool))


def _coerce_category(s: pd.Series, allowed: tuple[str, ...] | None) -> _Coerced:
    # Work on the distinct values only: a 12M-row column has a handful of them.
    if isinstance(s.dtype, pd.CategoricalDtype):
        codes = s.cat.codes.to_numpy()
        uniques = pd.Index(s.cat.categories).astype("str")
    else:
        codes, uniques = pd.factorize(s if s.dtype == "str" else s.astype("str"))
        uniques = pd.Index(uniques).astype("str")
    texts = pd.Series(uniques, dtype="str").str.strip()
    texts = texts.mask(texts.isin(MISSING_TOKENS))
    if allowed is None:
        categories = pd.Index(sorted(texts.dropna().unique()), dtype="str")
        target = categories.get_indexer(texts)
        unknown = np.zeros(len(texts), bool)
    else:
        categories = pd.Index(list(allowed), dtype="str")
        lowered = pd.Index([a.lower() for a in allowed], dtype="str")
        target = lowered.get_indexer(texts.str.lower())
        unknown = (target < 0) & texts.notna().to_numpy()
        if unknown.any():
            # Kept as "unmapped" (rule 4): the row still counts, the value is listed.
            categories = pd.Index([*allowed, UNMAPPED], dtype="str")
            target = np.where(unknown, len(allowed), target)
    dtype = pd.CategoricalDtype(categories)
    target = np.asarray(target, dtype=np.int64)
    if (
        s.dtype == dtype
        and len(target) == len(categories)
        and (target == np.arange(len(target))).all()
    ):
        # Already canonical (a Parquet dictionary, or the values mapped by the source).
        return _Coerced(s, codes < 0, np.zeros(len(s), bool))
    # Code -1 (empty cell) picks the appended -1 at the end of the lookup table.
    code_type = np.int8 if len(categories) < 127 else np.int32
    new_codes = np.append(target, -1).astype(code_type)[codes]
    missing = new_codes < 0
    bad = np.append(unknown, False)[codes] if unknown.any() else np.zeros(len(s), bool)
    values = pd.Series(
        pd.Categorical.from_codes(new_codes, dtype=dtype, validate=False), index=s.index
    )
    return _Coerced(values, missing, bad)


def _localize(naive: pd.Series, zone: str, tz: str) -> pd.Series:
    """Naive wall-clock times in ``zone`` as tz-aware times in ``tz`` (DST rule: see module)."""
    try:
        # Fast path: most data has no time that occurs twice.
        aware = naive.dt.tz_localize(zone, ambiguous="raise", nonexistent="shift_forward")
    except ValueError:
        first_occurrence = np.ones(len(naive), dtype=bool)
        aware = naive.dt.tz_localize(zone, ambiguous=first_occurrence, nonexistent="shift_forward")
    return aware.dt.tz_convert(tz)


def _to_zone(parsed: pd.Series, zone: str, tz: str) -> pd.Series:
    if getattr(parsed.dtype, "tz", None) is None:
        parsed = _localize(parsed, zone, tz)
    else:
        parsed = parsed.dt.tz_convert(tz)
    return parsed if parsed.dt.unit == TIMESTAMP_UNIT else parsed.dt.as_unit(TIMESTAMP_UNIT)


class _AmbiguousDates(ValueError):
    """Day/month dates (09/11/2026) where no value has a day above 12 in either place."""

    def __init__(self, example: str):
        super().__init__(example)
        self.example = example


def ambiguous_dates(location: str, table: str, column: str, example: str) -> AmbiguousDatesError:
    """The error for numeric dates whose day and month no value tells apart, with both
    readings as formats of the example's own shape (with seconds or not, with a time or
    not), ready to be copied into the params."""
    day = guess_datetime_format(example, dayfirst=True)
    month = guess_datetime_format(example, dayfirst=False)
    if not day or not month or day == month:
        day, month = "%d/%m/%Y %H:%M:%S", "%m/%d/%Y %H:%M:%S"
    return AmbiguousDatesError(
        f"{source_name(location)}: column '{column}' holds dates like '{example}' whose day "
        "and month may be either way round, and no value has a day above 12 to tell. Set "
        f'source.tables.{table}.timestamp_format, e.g. "{day}" (day first) or "{month}" '
        "(month first)."
    )


def day_first(texts: pd.Series) -> bool | None:
    """Whether numeric dates like 09/11/2026 put the day first, judged from the values.

    True when some value's first number exceeds 12 (and none's second), False the other way
    round; None when no value tells (or they disagree), or no value is such a date.
    """
    parts = texts.str.extract(_DAY_MONTH, expand=True).dropna()
    if parts.empty:
        return None
    first, second = parts[0].astype(int), parts[1].astype(int)
    if (first > 12).any() and not (second > 12).any():
        return True
    if (second > 12).any() and not (first > 12).any():
        return False
    return None


def _parse_texts(texts: pd.Series, fmt: str | None, utc: bool) -> pd.Series:
    """Parse non-empty texts; NaT where a text does not parse.

    Numeric day/month dates are read in the order their values show (a day above 12);
    when no value shows it, _AmbiguousDates is raised rather than guessing month-first.
    """
    if fmt:
        return pd.to_datetime(texts, format=fmt, errors="coerce", utc=utc)
    parsed = pd.to_datetime(texts, format="ISO8601", errors="coerce", utc=utc)
    failed = parsed.isna()
    if not failed.any():
        return parsed
    rest = texts[failed]
    # match, not contains: the pattern is anchored, and contains warns of its groups
    numeric = rest[rest.str.match(_DAY_MONTH)]
    if len(numeric):
        order = day_first(numeric)
        if order is None:
            raise _AmbiguousDates(str(numeric.iloc[0]))
        sample = str(numeric.iloc[0])
        guessed_numeric = guess_datetime_format(sample, dayfirst=order)
        if guessed_numeric:
            parsed = parsed.fillna(
                pd.to_datetime(rest, format=guessed_numeric, errors="coerce", utc=utc)
            )
            rest = texts[parsed.isna()]
            if rest.empty:
                return parsed
    guessed = guess_datetime_format(rest.iloc[0])
    if guessed:
        parsed = parsed.fillna(pd.to_datetime(rest, format=guessed, errors="coerce", utc=utc))
        rest = texts[parsed.isna()]
    rest = rest[rest.str.contains(_DATE_LIKE, regex=True)]
    if len(rest):
        try:
            again = pd.to_datetime(rest, format="mixed", errors="coerce", utc=utc)
        except (ValueError, TypeError, OverflowError):
            # e.g. texts with different zone names in one batch: they stay unparsed.
            return parsed
        if utc or getattr(again.dtype, "tz", None) is None:
            parsed = parsed.fillna(again)
    return parsed


def _coerce_timestamp(s: pd.Series, zone: str, fmt: str | None, tz: str) -> _Coerced:
    n = len(s)
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        values = _to_zone(s, zone, tz)
        return _Coerced(values, values.isna().to_numpy(), np.zeros(n, bool))
    texts = _as_text(s)
    missing = texts.isna().to_numpy()
    present = texts.dropna()
    if fmt:
        has_zone = "%z" in fmt or "%Z" in fmt
        aware = np.full(len(present), has_zone)
    else:
        aware = present.str.contains(_HAS_OFFSET, regex=True).to_numpy(dtype=bool)
    values = pd.Series(pd.NaT, index=s.index, dtype=f"datetime64[{TIMESTAMP_UNIT}, {tz}]")
    parts = [(present[~aware], False), (present[aware], True)]
    for part, utc in parts:
        if part.empty:
            continue
        parsed = _to_zone(_parse_texts(part, fmt, utc), zone, tz)
        if len(part) == n:
            values = parsed
        else:
            values.loc[part.index] = parsed
    bad = ~missing & values.isna().to_numpy()
    return _Coerced(values, missing, bad)


def parse_times(
    values: pd.Series,
    zone: str,
    fmt: str | None,
    tz: str,
    where: tuple[str, str, str] = ("the source", "orders", "created_at"),
) -> pd.Series:
    """Timestamps (or timestamp texts) as tz-aware times in ``tz``; NaT where unparseable.

    Day/month dates no value tells apart raise AmbiguousDatesError naming ``where``: the
    source's location, the table and the column."""
    try:
        return _coerce_timestamp(values.reset_index(drop=True), zone, fmt, tz).values
    except _AmbiguousDates as exc:
        raise ambiguous_dates(*where, exc.example) from None


def _coerce_number(s: pd.Series, kind: str) -> _Coerced:
    if pd.api.types.is_integer_dtype(s.dtype):
        # Already whole numbers (Parquet, SQL): nothing can be unparseable.
        values = s.astype("Int64") if kind == "int" else s.astype("float64")
        missing = s.isna().to_numpy()
        return _Coerced(values, missing, np.zeros(len(s), bool))
    if pd.api.types.is_bool_dtype(s.dtype) or not pd.api.types.is_numeric_dtype(s.dtype):
        texts = _as_text(s)
        missing = texts.isna().to_numpy()
        marked = texts.str.fullmatch(_MARKED, na=False)
        if marked.any():
            bare = texts.str.replace(_CURRENCY, "", regex=True).str.replace(r"\s+", "", regex=True)
            texts = texts.mask(marked, bare)
        grouped = texts.str.fullmatch(_THOUSANDS, na=False)
        if grouped.any():
            texts = texts.mask(grouped, texts.str.replace(",", "", regex=False))
        numbers = pd.to_numeric(texts, errors="coerce").astype("float64")
    else:
        numbers = s.astype("float64")
        missing = numbers.isna().to_numpy()
    arr = numbers.to_numpy(dtype="float64", na_value=np.nan)
    bad = ~missing & ~np.isfinite(arr)
    if kind == "int":
        with np.errstate(invalid="ignore"):
            bad |= ~missing & ~bad & (np.mod(arr, 1) != 0)
    arr = np.where(bad, np.nan, arr)
    if kind == "int":
        values = pd.Series(pd.array(arr, dtype="Int64"), index=s.index)
    else:
        values = pd.Series(arr, index=s.index, dtype="float64")
    return _Coerced(values, np.asarray(missing, bool), np.asarray(bad, bool))


def _coerce(raw: RawTable, col: Column, s: pd.Series, tz: str) -> _Coerced:
    if col.kind == "timestamp":
        try:
            return _coerce_timestamp(s, raw.timezone, raw.timestamp_format, tz)
        except _AmbiguousDates as exc:
            raise ambiguous_dates(raw.info.location, raw.table, col.name, exc.example) from None
    if col.kind in ("float", "int"):
        out = _coerce_number(s, col.kind)
        bounds = RANGES.get((raw.table, col.name))
        if bounds is not None:
            arr = out.values.to_numpy(dtype="float64", na_value=np.nan)
            low, high = bounds
            with np.errstate(invalid="ignore"):
                outside = np.zeros(len(arr), bool)
                if low is not None:
                    outside |= arr < low
                if high is not None:
                    outside |= arr > high
            out.out_of_range = outside
        return out
    if col.kind == "category":
        return _coerce_category(s, col.allowed)
    return _coerce_id(s)


def _empty_column(col: Column, n: int, tz: str) -> pd.Series:
    """An all-empty column of the canonical dtype, for an optional column the source lacks."""
    if col.kind == "timestamp":
        return pd.Series(pd.NaT, index=range(n), dtype=f"datetime64[{TIMESTAMP_UNIT}, {tz}]")
    if col.kind == "float":
        return pd.Series(np.nan, index=range(n), dtype="float64")
    if col.kind == "int":
        return pd.Series(pd.NA, index=range(n), dtype="Int64")
    if col.kind == "category":
        categories = pd.Index(list(col.allowed or ()), dtype="str")
        return pd.Series(
            pd.Categorical.from_codes(np.full(n, -1), dtype=pd.CategoricalDtype(categories))
        )
    return pd.Series(np.nan, index=range(n), dtype="str")


# --- rules ------------------------------------------------------------------------------


@dataclass
class _Failure:
    """Rows failing one rule on one column, and how to describe an example row."""

    rule: str
    column: str
    mask: np.ndarray
    # an example row's detail by position: (Example.detail, Example.values)
    detail: Callable[[int], tuple[str, tuple[str, ...]]] | None = None


def _shown(value: object) -> str:
    text = str(value).replace("\x00", "\\0")
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


def _stamp(value: pd.Timestamp) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


_REPLACEMENT = "\ufffd"


def _replacement_chars(s: pd.Series) -> np.ndarray:
    """Text values holding U+FFFD: bytes the declared encoding could not decode."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        # Look at the distinct values only.
        bad = np.asarray([_REPLACEMENT in str(c) for c in s.cat.categories] + [False])
        return bad[np.asarray(s.cat.codes)]
    if not (pd.api.types.is_string_dtype(s.dtype) or s.dtype == object):
        return np.zeros(len(s), bool)
    # Arrow's substring search: one pass over the bytes, fast on tens of millions of ids.
    found = pc.match_substring(pa.array(s.astype("str").array), _REPLACEMENT)
    return np.asarray(pc.fill_null(found, False).to_numpy(zero_copy_only=False), dtype=bool)


def _failures(
    raw: RawTable,
    schema: TableSchema,
    frame: pd.DataFrame,
    rows: pd.Series,
    coerced: dict[str, _Coerced],
    plausible: tuple[pd.Timestamp | None, pd.Timestamp | None] = (None, None),
) -> list[_Failure]:
    """Every (rule, column) check, in the fixed rule order, then column order."""
    original = raw.frame
    by_rule: dict[str, list[_Failure]] = {rule: [] for rule in RULES}

    def value_of(name: str) -> Callable[[int], tuple[str, tuple[str, ...]]] | None:
        if name not in original.columns:
            return None
        column = original[name]
        return lambda i: (_VALUE, (_shown(column.iloc[i]),))

    if WRONG_FIELDS_COL in original.columns:
        wrong = original[WRONG_FIELDS_COL].to_numpy(dtype=bool, na_value=False)
        by_rule[WRONG_FIELD_COUNT].append(_Failure(WRONG_FIELD_COUNT, "*", wrong))
    earliest, latest = plausible
    for col in schema.columns:
        raw_text = original[col.name] if col.name in original.columns else None
        typed = raw_text is not None and (
            pd.api.types.is_numeric_dtype(raw_text)
            or pd.api.types.is_datetime64_any_dtype(raw_text)
        )
        if raw_text is not None and not typed:
            text = raw_text.astype("str") if raw_text.dtype == object else raw_text
            text = text.reset_index(drop=True)
            nul = text.str.contains("\x00", regex=False).fillna(False).to_numpy(dtype=bool)
            long = (text.str.len() > MAX_FIELD_CHARS).fillna(False).to_numpy(dtype=bool)
            by_rule[NUL_BYTE].append(_Failure(NUL_BYTE, col.name, nul, value_of(col.name)))
            by_rule[FIELD_TOO_LONG].append(
                _Failure(FIELD_TOO_LONG, col.name, long, value_of(col.name))
            )
        c = coerced[col.name]
        if col.name in original.columns and col.kind in ("id", "category", "text"):
            garbled = _replacement_chars(original[col.name].reset_index(drop=True))
            by_rule[REPLACEMENT_CHARACTER].append(
                _Failure(REPLACEMENT_CHARACTER, col.name, garbled, value_of(col.name))
            )
        if col.kind == "timestamp" and (earliest is not None or latest is not None):
            when = c.values
            outside = np.zeros(len(when), bool)
            if earliest is not None:
                outside |= (when < earliest).to_numpy(dtype=bool, na_value=False)
            if (last := latest_plausible(col, latest)) is not None:
                outside |= (when > last).to_numpy(dtype=bool, na_value=False)
            by_rule[IMPLAUSIBLE_DATE].append(
                _Failure(IMPLAUSIBLE_DATE, col.name, outside, value_of(col.name))
            )
        if col.required:
            by_rule[REQUIRED_MISSING].append(_Failure(REQUIRED_MISSING, col.name, c.missing))
        rule = {
            "timestamp": UNPARSEABLE_TIMESTAMP,
            "float": NOT_A_NUMBER,
            "int": NOT_A_NUMBER,
            "category": UNKNOWN_VALUE,
        }.get(col.kind)
        if rule is not None:
            by_rule[rule].append(_Failure(rule, col.name, c.bad, value_of(col.name)))
        if c.out_of_range is not None:
            by_rule[OUT_OF_RANGE].append(
                _Failure(OUT_OF_RANGE, col.name, c.out_of_range, value_of(col.name))
            )

    if schema.key:
        by_rule[DUPLICATE_KEY].append(_duplicate_failure(schema, frame, rows))
    for later in dict.fromkeys(later for _, later in schema.milestone_order):
        by_rule[MILESTONE_ORDER].append(_milestone_failure(schema, frame, later))
    for status, value, time in schema.status_times:
        # A source without the time column says nothing about a row's time.
        if time in original.columns:
            by_rule[STATUS_WITHOUT_TIME].append(
                _status_failure(frame, coerced, (status, value, time), value_of(status))
            )
    return [f for rule in RULES for f in by_rule[rule]]


def _status_failure(
    frame: pd.DataFrame,
    coerced: dict[str, _Coerced],
    declared: tuple[str, str, str],
    shown: Callable[[int], tuple[str, tuple[str, ...]]] | None,
) -> _Failure:
    """Rows whose ``status`` column says ``value`` while their ``time`` is empty."""
    status, value, time = declared
    said = (frame[status] == value).to_numpy(dtype=bool, na_value=False)
    mask = said & coerced[time].missing

    def detail(i: int) -> tuple[str, tuple[str, ...]]:
        # the status as the file has it (a company's own code), else its canonical value
        cell = shown(i)[1][0] if shown is not None else value
        return _STATUS, (status, cell, time)

    return _Failure(STATUS_WITHOUT_TIME, time, mask, detail)


# --- duplicate keys --------------------------------------------------------------------

# Multiplier of the fingerprint (odd, so multiplying never loses information).
_MIX = np.uint64(0x9E3779B97F4A7C15)
# Index i keeps the lowest i bytes of a little-endian word.
_BYTE_MASKS = np.array([(1 << (8 * i)) - 1 for i in range(8)] + [2**64 - 1], dtype=np.uint64)
# Index 0 (no byte of the value left): leave the hash as it is.
_MULTIPLIERS = np.array([1] + [int(_MIX)] * 8, dtype=np.uint64)
# Offsets up to this are read for all rows at once, beyond it only for the longer values.
_FULL_PASS_BYTES = 32
# Rows per block: a block's arrays stay in the CPU cache.
_BLOCK_ROWS = 1 << 16


def fingerprint(texts: pd.Series) -> np.ndarray:
    """A uint64 hash per text value, computed 8 bytes at a time (NA hashes like "").

    Equal texts always get equal fingerprints; unequal ones rarely do. Sorting
    fingerprints finds possible duplicates much faster than a hash table of tens
    of millions of strings; the candidates are then compared exactly.
    """
    arr = pa.array(texts.array) if texts.dtype == "str" else pa.array(texts.astype("str").array)
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    out = np.empty(len(texts), dtype=np.uint64)
    at = 0
    for chunk in chunks:
        if not pa.types.is_large_string(chunk.type):
            chunk = chunk.cast(pa.large_string())
        for begin in range(0, len(chunk), _BLOCK_ROWS):
            block = chunk.slice(begin, _BLOCK_ROWS)
            out[at : at + len(block)] = _fingerprint_block(block)
            at += len(block)
    return out


def _fingerprint_block(block: pa.LargeStringArray) -> np.ndarray:
    _, offsets_buf, data_buf = block.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[
        block.offset : block.offset + len(block) + 1
    ]
    first, last = int(offsets[0]), int(offsets[-1])
    # Padding keeps every 8-byte read inside the buffer, also reads past a value's end.
    padded = np.zeros(last - first + _FULL_PASS_BYTES + 8, dtype=np.uint8)
    if last > first:
        padded[: last - first] = np.frombuffer(data_buf, dtype=np.uint8)[first:last]
    words = np.ndarray(shape=(len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))
    starts = offsets[:-1] - first
    lengths = np.diff(offsets)
    hashes = lengths.astype(np.uint64) * _MIX
    longest = int(lengths.max()) if len(lengths) else 0
    for k in range(0, longest, 8):
        # Bytes of the value in this word, 0-8; past the end the word is masked to 0
        # and the hash left alone, so a value's hash never depends on its neighbours.
        if k < _FULL_PASS_BYTES:
            left = np.minimum(np.maximum(lengths - k, 0), 8)
            word = words[starts + k] & _BYTE_MASKS[left]
            hashes ^= word
            hashes *= _MULTIPLIERS[left]
        else:
            rows = np.flatnonzero(lengths > k)
            left = np.minimum(lengths[rows] - k, 8)
            word = words[starts[rows] + k] & _BYTE_MASKS[left]
            hashes[rows] = (hashes[rows] ^ word) * _MIX
    return _spread(hashes)


def _spread(x: np.ndarray) -> np.ndarray:
    """Mix the high bits into the low ones (in place), so similar ids hash far apart."""
    x ^= x >> np.uint64(32)
    x *= np.uint64(0xD6E8FEB86659FD93)
    x ^= x >> np.uint64(32)
    return x


def duplicated_rows(keys: pd.DataFrame, complete: np.ndarray) -> np.ndarray:
    """Second and later rows with the same key, among rows with a complete key."""
    n = len(keys)
    combined = np.zeros(n, dtype=np.uint64)
    for name in keys.columns:
        combined = _spread((combined ^ fingerprint(keys[name])) * _MIX)
    candidates_of = np.arange(n) if complete.all() else np.flatnonzero(complete)
    hashes = combined if len(candidates_of) == n else combined[candidates_of]
    ordered = np.sort(hashes)
    repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    dup = np.zeros(n, dtype=bool)
    if len(repeated) == 0:
        return dup
    at = np.minimum(np.searchsorted(repeated, hashes), len(repeated) - 1)
    candidates = candidates_of[repeated[at] == hashes]
    # Equal fingerprints are checked on the values themselves, in source order.
    exact = keys.iloc[candidates].duplicated(keep="first").to_numpy()
    dup[candidates[exact]] = True
    return dup


def _duplicate_failure(schema: TableSchema, frame: pd.DataFrame, rows: pd.Series) -> _Failure:
    key = list(schema.key)
    keys = frame[key]
    complete = keys.notna().all(axis=1).to_numpy()
    # Rows without a full key are rule 1's; they take no part in the comparison.
    dup = duplicated_rows(keys, complete)

    def detail(i: int) -> tuple[str, tuple[str, ...]]:
        same = complete.copy()
        for k in key:
            same &= (frame[k] == frame[k].iloc[i]).to_numpy(dtype=bool, na_value=False)
        first = int(np.flatnonzero(same)[0])
        return _FIRST_ROW, (str(rows.iloc[first]),)

    return _Failure(DUPLICATE_KEY, ", ".join(key), dup, detail)


# --- milestones and examples -------------------------------------------------------------


def _epoch(stamps: pd.Series) -> np.ndarray:
    """Timestamps as int64 in one unit, NaT as the smallest int64."""
    if stamps.dt.unit != TIMESTAMP_UNIT:
        stamps = stamps.dt.as_unit(TIMESTAMP_UNIT)
    return stamps.array.asi8


def _milestone_failure(schema: TableSchema, frame: pd.DataFrame, later: str) -> _Failure:
    earlier_cols = [e for e, lat in schema.milestone_order if lat == later]
    after = frame[later]
    after_ns = _epoch(after)
    # Index of the first predecessor the later milestone precedes, -1 when in order.
    which = np.full(len(frame), -1, dtype=np.int8)
    for j in range(len(earlier_cols) - 1, -1, -1):
        earlier_ns = _epoch(frame[earlier_cols[j]])
        # NaT is the smallest int64: a missing earlier milestone never follows the later one.
        before = (after_ns < earlier_ns) & (after_ns != _NAT)
        which = np.where(before, j, which)

    def detail(i: int) -> tuple[str, tuple[str, ...]]:
        earlier = earlier_cols[int(which[i])]
        shown = _stamp(frame[earlier].iloc[i])
        return _MILESTONE, (later, _stamp(after.iloc[i]), earlier, shown)

    return _Failure(MILESTONE_ORDER, later, which >= 0, detail)


def _examples(
    schema: TableSchema, frame: pd.DataFrame, rows: pd.Series, failure: _Failure
) -> tuple[Example, ...]:
    return tuple(
        example_of(schema, frame, rows, int(i), failure)
        for i in np.flatnonzero(failure.mask)[:MAX_EXAMPLES]
    )


def example_of(
    schema: TableSchema,
    frame: pd.DataFrame,
    rows: pd.Series,
    i: int,
    failure: _Failure | None,
    first_row: object = None,
) -> Example:
    """Row ``i`` failing a check, as the quality table shows it: the row a person sees in
    the file, its key (``order_id O-1003``) and what is wrong (the row holding a repeated
    key first, when ``first_row`` is given)."""
    key = list(schema.key) or (["order_id"] if "order_id" in frame.columns else [])
    parts = tuple((k, _shown(frame[k].iloc[i])) for k in key if pd.notna(frame[k].iloc[i]))
    row = str(rows.iloc[i])
    if first_row is not None:
        return Example(row, parts, _FIRST_ROW, (str(first_row),))
    if failure is not None and failure.detail is not None:
        detail, values = failure.detail(i)
        return Example(row, parts, detail, values)
    return Example(row, parts)


def coerce_table(raw: RawTable, tz: str) -> tuple[pd.DataFrame, pd.Series, dict[str, _Coerced]]:
    """(canonical frame, source row numbers, each column's coercion) of ``raw``, as
    validation reads it; the engine loaders describe the rows they fetch with it too."""
    original = raw.frame
    n = len(original)
    coerced: dict[str, _Coerced] = {}
    for col in SCHEMAS[raw.table].columns:
        if col.name in original.columns:
            coerced[col.name] = _coerce(raw, col, original[col.name].reset_index(drop=True), tz)
        else:
            coerced[col.name] = _Coerced(
                _empty_column(col, n, tz), np.ones(n, bool), np.zeros(n, bool)
            )
    frame = pd.DataFrame({name: c.values for name, c in coerced.items()}, copy=False)
    if SOURCE_ROW in original.columns:
        rows = original[SOURCE_ROW].reset_index(drop=True)
    else:
        rows = pd.Series(np.arange(1, n + 1), dtype="Int64")
    return frame, rows, coerced


# --- validation -------------------------------------------------------------------------


def _pct(share: float) -> str:
    text = f"{share:.1%}"
    return f"{share:.2g}%" if text == "0.0%" and share > 0 else text


def _entry_text(entry: QuarantineEntry) -> str:
    unit = "row" if entry.rows == 1 else "rows"
    examples = ", ".join(entry.example_texts())
    text = f"column '{entry.column}' {entry.rule}: {entry.rows:,} {unit} ({examples})"
    if entry.rule == UNKNOWN_VALUE:
        allowed = SCHEMAS[entry.table].column(entry.column).allowed or ()
        text += (
            f" - allowed values: {', '.join(allowed)}; map other values onto them under "
            f"source.tables.{entry.table}.values.{entry.column}"
        )
    return text


def too_many_message(
    source: str, loaded: int, quarantined: int, max_share: float, entries: list[QuarantineEntry]
) -> str:
    """The message of TooManyQuarantinedError: file, totals, threshold, each rule and examples."""
    share = quarantined / loaded if loaded else 0.0
    return (
        f"{source}: {quarantined:,} of {loaded:,} rows ({_pct(share)}) fail validation, "
        f"more than quality.max_quarantine_share ({_pct(max_share)}): "
        + "; ".join(_entry_text(e) for e in entries if not e.kept)
        # rules whose rows are kept (flagged only) count for nothing in the share, but
        # their mapping is often what the same fix touches: named apart
        + "".join(f"; flagged but kept: {_entry_text(e)}" for e in entries if e.kept)
        + ". Fix the source or the mapping, or raise quality.max_quarantine_share."
    )


# A promised time (a delivery promise of an order created today) may lie this many days
# past the plausible-date limit of the times that happened: an order placed on the report
# week's last day may be promised for days later, and a run on Monday morning must not
# set it aside; a promise a year out is a typo still.
PROMISE_DAYS_AHEAD = 366


def latest_plausible(column: Column, latest: pd.Timestamp | None) -> pd.Timestamp | None:
    """The latest plausible instant of ``column``: ``latest``, later for a promise."""
    if latest is None or not column.promise:
        return latest
    return latest + pd.Timedelta(days=PROMISE_DAYS_AHEAD)


def plausible_range(
    earliest: object, max_days_ahead: int | None, tz: str, today: object = None
) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """(earliest, latest) plausible instants: ``earliest`` (a date) at 00:00 in ``tz``, and
    the end of ``today`` (default: the current date) plus ``max_days_ahead`` days."""
    low = None if earliest is None else pd.Timestamp(earliest).tz_localize(tz)
    high = None
    if max_days_ahead is not None:
        day = pd.Timestamp(today if today is not None else pd.Timestamp.now(tz).date())
        high = (day + pd.Timedelta(days=max_days_ahead + 1)).tz_localize(tz)
    return low, high


def validate_table(
    raw: RawTable,
    tz: str,
    max_share: float,
    plausible: tuple[pd.Timestamp | None, pd.Timestamp | None] = (None, None),
) -> tuple[pd.DataFrame, list[QuarantineEntry], pd.DataFrame]:
    """(clean canonical frame, entries, quarantined rows) of a raw table.

    ``plausible``: (earliest, latest) instants; timestamps outside are set aside. Raises
    TooManyQuarantinedError when the share of rows set aside exceeds ``max_share``.
    """
    schema = SCHEMAS[raw.table]
    original = raw.frame
    source = source_name(raw.info.location)
    n = len(original)
    missing_required = [c for c in schema.required if c not in original.columns]
    if missing_required:
        raise MissingColumnError(source, missing_required[0], list(original.columns))

    frame, rows, coerced = coerce_table(raw, tz)

    checks = _failures(raw, schema, frame, rows, coerced, plausible)
    failures = [f for f in checks if f.mask.any()]
    entries = [
        QuarantineEntry(
            raw.table,
            source,
            f.column,
            f.rule,
            int(f.mask.sum()),
            _examples(schema, frame, rows, f),
            f.rule in KEPT_RULES,
        )
        for f in failures
    ]
    # First failing check per row (-1: none), in the fixed order; kept rules set nothing aside.
    first = np.full(n, -1, dtype=np.int16)
    for i, failure in enumerate(failures):
        if failure.rule not in KEPT_RULES:
            first[(first < 0) & failure.mask] = i
    bad = first >= 0
    n_bad = int(bad.sum())
    if n and n_bad / n > max_share:
        raise TooManyQuarantinedError(too_many_message(source, n, n_bad, max_share, entries))

    at = np.flatnonzero(bad)
    hit = first[at]
    meta = pd.DataFrame(
        {
            SOURCE_ROW: rows.iloc[at].astype("Int64").reset_index(drop=True),
            RULE_COL: _quarantine_column(failures, hit, lambda f: f.rule),
            COLUMN_COL: _quarantine_column(failures, hit, lambda f: f.column),
        }
    )
    rest = original.iloc[at].reset_index(drop=True)
    rest = rest.drop(columns=[SOURCE_ROW, WRONG_FIELDS_COL], errors="ignore")
    quarantined = pd.concat([meta, rest], axis=1)

    clean = frame.loc[~bad].reset_index(drop=True) if n_bad else frame
    return clean, entries, quarantined


def quarantine_frame(
    original: pd.DataFrame, checks: list[tuple[str, str]], hit: np.ndarray
) -> pd.DataFrame:
    """Rows set aside as the quarantine files hold them: ``_source_row``, the (rule, column)
    of ``checks[hit[i]]`` that set row i aside, then the source's values."""
    names = np.array([rule for rule, _ in checks] or [""], dtype=object)
    cols = np.array([column for _, column in checks] or [""], dtype=object)
    meta = pd.DataFrame(
        {
            SOURCE_ROW: original[SOURCE_ROW].astype("Int64").reset_index(drop=True),
            RULE_COL: pd.Series(names[hit] if len(hit) else [], dtype="str"),
            COLUMN_COL: pd.Series(cols[hit] if len(hit) else [], dtype="str"),
        }
    )
    rest = original.drop(columns=[SOURCE_ROW]).reset_index(drop=True)
    return pd.concat([meta, rest], axis=1)


def quarantine_file(quarantined: pd.DataFrame, lang: str = "en") -> pd.DataFrame:
    """The rows set aside as ``quarantine/<table>.csv`` holds them: ``_source_row``,
    ``_rule``, ``_column``, the rule's name in ``lang``, then the source's values.

    ``_rule`` stays the rule's identifier, the same in every language: scripts select rows
    by it. The rule's name is for the analyst opening the file in a spreadsheet, so its
    header is in ``lang`` too (``_规则说明``, ``_rule_description``): a header half in a
    language the reader does not read helps no one, and no script needs this column's
    name. Its leading underscore marks it as added by validation, apart from the source's
    own columns (an export may name those in Chinese too); it comes after the three
    columns the file always had, so a script reading those by position finds them still.
    """
    out = quarantined.copy()
    names = {rule: rule_label(rule, lang) for rule in RULES}
    text = out[RULE_COL].astype(object).map(names).fillna(out[RULE_COL].astype(object))
    at = list(out.columns).index(COLUMN_COL) + 1 if COLUMN_COL in out.columns else len(out.columns)
    out.insert(at, t("quarantine.rule_description", lang), text.astype("str"))
    return out


def set_aside_in(raw: RawTable, quarantined: pd.DataFrame, window: Window, tz: str) -> int:
    """Rows set aside whose time column (as far as it parses) lies in ``window``."""
    column = SCHEMAS[raw.table].time_column
    if column is None or column not in quarantined.columns or not len(quarantined):
        return 0
    when = _coerce_timestamp(
        quarantined[column].reset_index(drop=True), raw.timezone, raw.timestamp_format, tz
    ).values
    return int(window.contains(when).to_numpy(dtype=bool, na_value=False).sum())


def _quarantine_column(
    failures: list[_Failure], hit: np.ndarray, part: Callable[[_Failure], str]
) -> pd.Series:
    names = np.array([part(f) for f in failures] or [""], dtype=object)
    return pd.Series(names[hit] if len(hit) else [], dtype="str")
