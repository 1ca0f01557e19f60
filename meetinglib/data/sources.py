"""Reads a company's files or database into canonical column names.

Two kinds of source, chosen by ``source.kind`` in the params:

* ``folder``: a folder of CSV, Parquet or XLSX files. A table's file is
  ``source.tables.<table>.file`` (a name or a glob; several matches, e.g. monthly
  exports, are concatenated in name order), else the first of ``<table>.parquet``,
  ``<table>.csv``, ``<table>.xlsx`` that exists.
* ``sql``: any SQLAlchemy URL; the table is ``source.tables.<table>.table`` or the
  canonical name (``schema.table`` selects a schema).

The params map the company's column names and values onto the canonical ones, so
a new export needs no code change. This module only selects, renames and maps:
CSV/XLSX cells stay text (ids keep their leading zeros; timestamps and numbers are
parsed by validation), empty text becomes NA, and values missing from a value map
pass through unchanged for validation to report.

Only the canonical columns are read. With a window, Parquet (row groups pruned by
their statistics) and SQL (a WHERE clause with bound values) return only the rows
whose time column lies in the window, plus the rows where it is empty, so that
validation can report those; CSV/XLSX and text timestamps in Parquet return every
row. The caller filters again after validation either way.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import functools
import glob
import hashlib
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.sql import quoted_name

from meetinglib.core.errors import (
    DriverMissingError,
    InvalidParamError,
    MissingColumnError,
    NoDataError,
    SourceNotFoundError,
    SourceUnreachableError,
    UnreadableSourceError,
)
from meetinglib.core.i18n import t
from meetinglib.core.params import AmountSource, Params, TableSource
from meetinglib.core.schema import SCHEMAS, WRONG_FIELDS_COL, TableSchema, selection_of
from meetinglib.core.secrets import redact
from meetinglib.core.weeks import Window

SOURCE_ROW = "_source_row"
# The status column of a status mapping, read beside the canonical columns until derived.
STATUS_COLUMN = "_status"


@dataclass(frozen=True)
class FileReader:
    """How one file format of a folder source is read; see ``register_reader``.

    ``read_table`` reads a table's files (several: concatenated in order) into canonical
    columns plus ``_source_row``, with a window only its rows where the format allows;
    ``read_columns`` reads only the named canonical columns of one file;
    ``last_event`` gives the latest ``created_at`` of one file (None when empty);
    ``read_raw`` reads a whole file as text columns under their own names (the order
    amounts of ``amount_from``, the sample of ``meeting init``), given its encoding,
    delimiter and header row. ``header_rows``: whether the column names stand in a row
    of the file, below which a title may stand (``header_row`` in the params applies).
    """

    name: str
    suffixes: tuple[str, ...]  # lower case, with the dot; the first is the default name's
    read_table: Callable[[list[Path], TableSchema, TableSource, Window | None, str], pd.DataFrame]
    read_columns: Callable[[Path, TableSchema, TableSource, list[str]], pd.DataFrame]
    last_event: Callable[[Path, TableSchema, TableSource, str], pd.Timestamp | None]
    read_raw: Callable[[Path, str, str, int | None], pd.DataFrame]
    header_rows: bool = False


# Registered readers, by name, in the order default file names are tried
# (<table>.parquet, then <table>.csv, then <table>.xlsx).
READERS: dict[str, FileReader] = {}


def register_reader(reader: FileReader) -> FileReader:
    """Make a format readable in folder sources: a new format is one reader, registered here."""
    taken = {s: r.name for r in READERS.values() for s in r.suffixes if r.name != reader.name}
    clash = sorted(s for s in reader.suffixes if s in taken)
    if clash:
        raise ValueError(f"suffixes {clash} are already read by another reader")
    READERS[reader.name] = reader
    return reader


def reader_for(path: Path) -> FileReader | None:
    """The reader of a file, by its suffix; None for a format no reader knows."""
    suffix = path.suffix.lower()
    return next((r for r in READERS.values() if suffix in r.suffixes), None)


def known_suffixes() -> list[str]:
    """Every suffix a reader knows, for messages."""
    return [s for r in READERS.values() for s in r.suffixes]


_BOM = b"\xef\xbb\xbf"
_AUTO_ENCODINGS = ("utf-8-sig", "gb18030")
# SQL LIKE pattern of text that starts with an ISO date (YYYY-MM-DD).
_ISO_DATE_LIKE = "____-__-__%"
_ISO_FORMAT_PREFIX = "%Y-%m-%d"
# Text ending in a UTC offset: Z, +08:00 / -05:00, +0800.
_OFFSET_LIKES = ("%Z", "%+__:__", "%-__:__", "%+____")


@dataclass(frozen=True)
class SourceInfo:
    """Where a table was read from, for the report's data-provenance note."""

    table: str
    location: str  # file path(s) joined by ", " or "sql:<table name>"
    format: str  # "parquet" | "csv" | "xlsx" | "sql"
    rows: int  # rows read from the source
    sha256: str | None  # digest of the file bytes (several files: of their digests); None for SQL


@dataclass
class RawTable:
    """One table in canonical column names, before validation."""

    table: str  # canonical table name, e.g. "orders"
    # Canonical columns the source has (value maps applied) plus "_source_row" (Int64):
    # the row a person finds in the file (CSV line, counted from the file's first line,
    # title lines included; XLSX sheet row; Parquet/SQL 1-based position). Timestamps
    # and numbers may still be text.
    frame: pd.DataFrame
    info: SourceInfo
    timezone: str  # zone in which naive timestamps of this source are expressed
    timestamp_format: str | None  # strftime format of text timestamps, None = ISO-like


# --- public API -------------------------------------------------------------------


def available_tables(params: Params) -> list[str]:
    """Canonical tables the source has, in schema order.

    A table whose file or database table is set explicitly in the params is listed
    even when it is missing, so that ``read_table`` reports it instead of the table
    silently dropping out of the report.
    """
    if params.source.kind == "sql":
        with _connection(params) as conn:
            insp = sa.inspect(conn)
            found = []
            for table in SCHEMAS:
                ts = _table_source(params, table)
                schema, name = _sql_name(table, ts)
                if ts.table is not None or insp.has_table(name, schema=schema):
                    found.append(table)
            return found
    folder = _folder(params)
    return [
        table
        for table in SCHEMAS
        if _table_source(params, table).file is not None or _table_files(folder, table, params)[0]
    ]


def read_table(params: Params, table: str, window: Window | None = None) -> RawTable | None:
    """Read ``table`` from the source in canonical column names, or None when it is absent.

    With a window, Parquet and SQL sources return only rows whose time column lies in
    ``[window.start, window.end)`` or is empty; CSV/XLSX return all rows.
    """
    schema = _schema(table)
    ts = _table_source(params, table)
    _check_mapping(params, table, ts)
    tz = ts.timezone or params.timezone
    window = None if window is None else selection_of(table, window)
    result: tuple[pd.DataFrame, str, str, str | None] | None
    if params.source.kind == "sql":
        result = _read_sql_table(params, schema, ts, window, tz)
    else:
        result = _read_folder_table(params, schema, ts, window, tz)
    if result is None:
        return None
    frame, location, fmt, digest = result
    frame = _finish(frame, schema, ts)
    frame = derive_columns(frame, ts)
    if ts.amount_from is not None:
        frame["amount"] = _amounts(params, table, ts.amount_from, frame["order_id"])
    info = SourceInfo(table, location, fmt, len(frame), digest)
    return RawTable(table, frame, info, tz, ts.timestamp_format)


def last_event_time(params: Params) -> pd.Timestamp:
    """Latest ``orders.created_at`` in the source, tz-aware in ``params.timezone``."""
    schema = _schema("orders")
    ts = _table_source(params, "orders")
    _check_mapping(params, "orders", ts)
    tz = ts.timezone or params.timezone
    if params.source.kind == "sql":
        latest, location = _sql_last_event(params, schema, ts, tz)
    else:
        latest, location = _folder_last_event(params, schema, ts, tz)
    if latest is None or pd.isna(latest):
        raise NoDataError(
            f"no order in {location} has a readable created_at; check the column mapping "
            "and source.tables.orders.timestamp_format in the params."
        )
    return latest.tz_convert(params.timezone)


def created_values(params: Params) -> tuple[pd.Series, str | None, str, str]:
    """Every ``orders.created_at`` of the source as read (text or timestamps), with the
    timestamp format and zone of the orders' source, and where they were read (the
    files, or ``sql:<table>``); only that column is read."""
    schema = _schema("orders")
    ts = _table_source(params, "orders")
    _check_mapping(params, "orders", ts)
    tz = ts.timezone or params.timezone
    parts: list[pd.Series] = []
    if params.source.kind == "sql":
        with _connection(params) as conn:
            found = _sql_columns(params, conn, schema, ts)
            assert found is not None  # orders is required: _sql_columns raised already
            label, clause, types = found
            selected = _select_columns(list(types), schema, ts, f"sql:{label}", ["created_at"])
            column = clause.c[next(iter(selected))]
            parts.append(pd.Series(conn.execute(sa.select(column)).scalars().all(), dtype=object))
            location = f"sql:{label}"
    else:
        located = _locate(params, schema)
        assert located is not None  # orders is required: _locate raised already
        files, reader = located
        for path in files:
            parts.append(reader.read_columns(path, schema, ts, ["created_at"])["created_at"])
        location = ", ".join(str(f) for f in files)
    values = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    return values.reset_index(drop=True), ts.timestamp_format, tz, location


# --- params helpers -----------------------------------------------------------------


def _schema(table: str) -> TableSchema:
    if table not in SCHEMAS:
        raise ValueError(f"unknown table {table!r}; known tables: {sorted(SCHEMAS)}")
    return SCHEMAS[table]


def _table_source(params: Params, table: str) -> TableSource:
    return params.source.tables.get(table) or TableSource()


def _params_files(params: Params) -> str:
    return ", ".join(str(f) for f in params.files) or "the params"


def _check_mapping(params: Params, table: str, ts: TableSource) -> None:
    """Mapping targets and value maps must name canonical columns; encodings must exist."""
    names = SCHEMAS[table].names
    key = f"source.tables.{table}"
    for company, canonical in ts.columns.items():
        if canonical not in names:
            raise InvalidParamError(
                _params_files(params),
                f"{key}.columns.{company}",
                f"'{canonical}' is not a column of the canonical table '{table}'; "
                f"map onto one of {names}",
            )
    for section, keys in (("values", ts.values), ("constants", ts.constants)):
        for canonical in keys:
            if canonical not in names:
                raise InvalidParamError(
                    _params_files(params),
                    f"{key}.{section}.{canonical}",
                    f"'{canonical}' is not a column of the canonical table '{table}'; "
                    f"{'value maps' if section == 'values' else 'constants'} are keyed by "
                    f"canonical column names: {names}",
                )
    for canonical, mapping in ts.values.items():
        allowed = SCHEMAS[table].column(canonical).allowed
        if allowed is None:
            continue
        for company, target in mapping.items():
            # "" maps a value onto no value (an empty exception code: none)
            if target not in (None, "") and target not in allowed:
                raise InvalidParamError(
                    _params_files(params),
                    f"{key}.values.{canonical}.{company}",
                    f"'{target}' is not a value of {table}.{canonical}; map onto one of "
                    f'{list(allowed)} (or "" for none)',
                )
    if ts.status is not None:
        if table != "orders":
            raise InvalidParamError(
                _params_files(params),
                f"{key}.status",
                "a status mapping sets cancelled_at and delivered_at, columns of orders only",
            )
        for field, value in (
            ("cancelled_time", ts.status.cancelled_time),
            ("delivered_time", ts.status.delivered_time),
        ):
            if value is not None and value not in SCHEMAS["orders"].of_kind("timestamp"):
                raise InvalidParamError(
                    _params_files(params),
                    f"{key}.status.{field}",
                    f"'{value}' is not a timestamp column of orders; name one of "
                    f"{SCHEMAS['orders'].of_kind('timestamp')}",
                )
    if ts.amount_from is not None and table != "orders":
        raise InvalidParamError(
            _params_files(params),
            f"{key}.amount_from",
            "amount_from gives orders their amount; it belongs under source.tables.orders",
        )
    if ts.amount_from is not None and any(c == "amount" for c in ts.columns.values()):
        raise InvalidParamError(
            _params_files(params),
            f"{key}.amount_from",
            "the amount is mapped under columns too; keep one of the two",
        )
    if params.source.kind == "sql":
        # A database table's columns are named by its definition: no title to skip.
        for name, row in (
            ("header_row", ts.header_row),
            ("amount_from.header_row", ts.amount_from.header_row if ts.amount_from else None),
        ):
            if row is not None:
                raise InvalidParamError(
                    _params_files(params), f"{key}.{name}", t("source.header_row_sql", "en")
                )
    if len(ts.delimiter) != 1:
        raise InvalidParamError(
            _params_files(params),
            f"{key}.delimiter",
            f'the delimiter must be one character, not {ts.delimiter!r} (write a tab as "\\t")',
        )
    if ts.encoding != "auto":
        try:
            codecs.lookup(ts.encoding)
        except LookupError:
            raise InvalidParamError(
                _params_files(params),
                f"{key}.encoding",
                f"unknown encoding {ts.encoding!r}; use utf-8, utf-8-sig, gbk, gb18030 or auto",
            ) from None


# --- column selection and value mapping ---------------------------------------------


def _clean_header(name: object) -> str:
    return "" if name is None else str(name).replace("\ufeff", "").strip()


def _header_hint(found: list[str], known: set[str], header: int | None, key: str) -> str:
    """How to fix column names read from the wrong row, for a missing column's message.

    Said when ``header`` (the row the names were read from, None for formats without
    header rows) gave no name the params or the canonical table know: a title read as
    the header, or a data row, rather than a misspelt mapping.
    """
    if header is None or any(_clean_header(c) in known for c in found):
        return ""
    return t("source.header_row_hint", "en", row=header, key=key)


def _select_columns(
    found: list[str],
    schema: TableSchema,
    ts: TableSource,
    source: str,
    wanted: list[str] | None = None,
    header: int | None = None,
) -> dict[str, str]:
    """Map the source's original column names to canonical names, in schema order.

    A canonical column comes from the first of the company names mapped onto it that
    the source has, else from a column of the same name. A required column, or one
    the params map explicitly, that cannot be found raises MissingColumnError; with
    ``header``, the row of a file the names were read from, its message says how to
    name another row when none of the names is known.
    """
    known = {*schema.names, *(_clean_header(c) for c in ts.columns)}
    if ts.status is not None:
        known.add(_clean_header(ts.status.column))
    hint = _header_hint(found, known, header, f"source.tables.{schema.name}.header_row")
    clean: dict[str, str] = {}
    for original in found:
        clean.setdefault(_clean_header(original), original)
    mapped_away = {_clean_header(c) for c in ts.columns}
    selected: dict[str, str] = {}
    for name in wanted or schema.names:
        candidates = [c for c, canon in ts.columns.items() if canon == name]
        present = [clean[_clean_header(c)] for c in candidates if _clean_header(c) in clean]
        if len(present) > 1:
            # Names mapped onto one column are alternatives (exports that differ); two of
            # them in one export would have one read and the other silently ignored.
            raise InvalidParamError(
                "the params",
                f"source.tables.{schema.name}.columns",
                f"{' and '.join(repr(c) for c in present)} of {source} are both mapped onto "
                f"'{name}'; map each canonical column from one column of the export (remove "
                "one, or map it onto the column it holds)",
            )
        hit = present[0] if present else None
        if hit is None and name in clean and name not in mapped_away:
            hit = clean[name]
        if hit is None:
            if (schema.column(name).required and name not in ts.constants) or candidates:
                raise MissingColumnError(
                    source,
                    name,
                    list(found),
                    mapped=candidates,
                    key=f"source.tables.{schema.name}.columns",
                    hint=hint,
                )
            continue
        selected[hit] = name
    if ts.status is not None and wanted is None:
        hit = clean.get(_clean_header(ts.status.column))
        if hit is None:
            raise MissingColumnError(source, ts.status.column, list(found), hint=hint)
        if hit in selected:
            raise InvalidParamError(
                "the params",
                f"source.tables.{schema.name}.status.column",
                f"'{ts.status.column}' is also mapped onto '{selected[hit]}' under columns; "
                "a status column is read for its meaning only, remove it from columns",
            )
        selected[hit] = STATUS_COLUMN
    return selected


def _map_values(s: pd.Series, mapping: dict[str, str], as_category: bool) -> pd.Series:
    """Strip, map (unknown values pass through) and blank-to-NA on the distinct values only.

    Category columns come back as pandas categories, other columns as strings.
    """
    categorical = isinstance(s.dtype, pd.CategoricalDtype)
    if categorical:
        uniques = pd.Index(s.cat.categories)
    else:
        if not (pd.api.types.is_string_dtype(s.dtype) or s.dtype == object):
            s = s.astype("str")
        codes, uniques = pd.factorize(s)
    mapped = [mapping.get(v, v) for v in (str(u).strip() for u in uniques)]
    new_values = pd.Index([v if v != "" else None for v in mapped], dtype="str")
    if categorical and not new_values.hasnans and new_values.is_unique:
        # One-to-one: relabel the categories, the codes stay as they are.
        if new_values.equals(uniques):
            return s
        return s.cat.rename_categories(list(new_values))
    if categorical:
        codes = s.cat.codes.to_numpy()
    categories = new_values.dropna().unique()
    new_codes = categories.get_indexer(new_values)
    codes = np.where(codes >= 0, new_codes[np.maximum(codes, 0)], -1)
    if as_category:
        values = pd.Categorical.from_codes(codes, categories=categories, validate=False)
    else:
        values = pd.array(categories, dtype="str").take(codes, allow_fill=True)
    return pd.Series(values, index=s.index, name=s.name)


def _blank_to_na(s: pd.Series) -> pd.Series:
    if pd.api.types.is_string_dtype(s.dtype) or s.dtype == object:
        blank = s.eq("")
        if blank.any():
            return s.mask(blank)
    return s


def _finish(frame: pd.DataFrame, schema: TableSchema, ts: TableSource) -> pd.DataFrame:
    """Apply value maps, turn empty strings into NA, order columns, type ``_source_row``."""
    out = {}
    for name in frame.columns:
        if name in (SOURCE_ROW, WRONG_FIELDS_COL):
            continue
        s = frame[name]
        if name == STATUS_COLUMN:
            out[name] = _map_values(s, {}, as_category=False)
            continue
        mapping = ts.values.get(name, {})
        is_category = schema.column(name).kind == "category"
        if mapping or is_category:
            out[name] = _map_values(s, mapping, as_category=is_category)
        else:
            out[name] = _blank_to_na(s)
    result = pd.DataFrame(out, index=frame.index, copy=False)
    result[SOURCE_ROW] = frame[SOURCE_ROW].astype("Int64")
    if WRONG_FIELDS_COL in frame.columns and bool(frame[WRONG_FIELDS_COL].any()):
        result[WRONG_FIELDS_COL] = frame[WRONG_FIELDS_COL].to_numpy(dtype=bool)
    return result.reset_index(drop=True)


# --- derived columns: constants, status, amounts from another table --------------------------

# Where a status mapping takes a milestone's time when the row has none (documented in
# the README, "Bring your own data"): the first of these columns with a value.
STATUS_FALLBACK: dict[str, tuple[str, ...]] = {
    "cancelled": ("created_at",),
    "delivered": ("shipped_at", "created_at"),
}


def _fill(target: pd.Series | None, rows: pd.Series, sources: list[pd.Series]) -> pd.Series:
    """``target`` where it has a value, else the first of ``sources`` with one, on ``rows``."""
    value = sources[0]
    for more in sources[1:]:
        value = value.where(value.notna(), more)
    value = value.where(rows)
    if target is None:
        return value
    if target.dtype != value.dtype:
        target, value = target.astype(object), value.astype(object)
    return target.where(target.notna(), value)


def derive_columns(frame: pd.DataFrame, ts: TableSource) -> pd.DataFrame:
    """Apply ``constants`` and the ``status`` mapping of a table source to its frame.

    A constant fills a column the source lacks (or its empty cells). A status value listed
    under ``cancelled`` (``delivered``) sets ``cancelled_at`` (``delivered_at``) where it is
    empty, to the time of ``cancelled_time`` (``delivered_time``) or the fallback of
    ``STATUS_FALLBACK``. The status column itself is dropped.
    """
    for name, value in ts.constants.items():
        if name in frame.columns:
            frame[name] = frame[name].astype(object).where(frame[name].notna(), value)
        else:
            frame[name] = pd.Series(value, index=frame.index, dtype="str")
    if STATUS_COLUMN not in frame.columns:
        return frame
    status = frame.pop(STATUS_COLUMN).astype("str").str.strip().str.lower()
    spec = ts.status
    assert spec is not None  # the column is read only with a status mapping
    for event, values, named in (
        ("cancelled", spec.cancelled, spec.cancelled_time),
        ("delivered", spec.delivered, spec.delivered_time),
    ):
        if not values:
            continue
        rows = status.isin([v.strip().lower() for v in values]).fillna(False).astype(bool)
        order = [named] if named else []
        order += [c for c in STATUS_FALLBACK[event] if c not in order]
        times = [frame[c] for c in order if c in frame.columns]
        if not times:
            continue
        column = f"{event}_at"
        frame[column] = _fill(frame.get(column), rows, times)
    return frame


def _amounts(params: Params, table: str, spec: AmountSource, order_ids: pd.Series) -> pd.Series:
    """Per order of ``order_ids``, its amount aggregated from another file or SQL table."""
    key = f"source.tables.{table}.amount_from"
    header = None  # the row of the file its column names were read from
    if params.source.kind == "sql":
        with _connection(params) as conn:
            frame = pd.read_sql(
                sa.select(
                    sa.column(quoted_name(spec.order_id, True)),
                    sa.column(quoted_name(spec.value, True)),
                ).select_from(sa.table(quoted_name(spec.file, True))),
                conn,
            )
        where = f"sql:{spec.file}"
    else:
        path = _folder(params) / spec.file
        if not path.is_file():
            raise SourceNotFoundError(
                f"no file '{spec.file}' in {path.parent} for the order amounts; fix {key}.file "
                f"in {_params_files(params)} or add the file."
            )
        where = path.name
        reader = _format_of(path, table, params)
        _check_header_row(params, f"{key}.header_row", spec.header_row, path, reader)
        frame = reader.read_raw(path, spec.encoding, spec.delimiter, spec.header_row)
        frame.columns = [_clean_header(c) for c in frame.columns]
        header = (spec.header_row or 1) if reader.header_rows else None
    for column in (spec.order_id, spec.value):
        if column not in frame.columns:
            found = list(frame.columns)
            known = {spec.order_id, spec.value}
            hint = _header_hint(found, known, header, f"{key}.header_row")
            raise MissingColumnError(where, column, found, hint=hint)
    value_text = frame[spec.value].astype("str").str.strip().str.replace(",", "", regex=False)
    values = pd.to_numeric(value_text.where(value_text != ""), errors="coerce")
    bad = values.isna() & value_text.ne("") & frame[spec.value].notna()
    if bad.any():
        raise UnreadableSourceError(
            f"{where}: column '{spec.value}' holds {int(bad.sum()):,} value(s) that are not "
            f"numbers (e.g. {frame.loc[bad, spec.value].iloc[0]!r}); fix the file or {key}.value."
        )
    ids = frame[spec.order_id].astype("str").str.strip()
    grouped = values.groupby(ids)
    per_order = {"sum": grouped.sum, "max": grouped.max, "first": grouped.first}[spec.aggregate]()
    mapped = order_ids.astype("str").str.strip().map(per_order)
    return pd.Series(mapped.to_numpy(), index=order_ids.index, dtype="float64", name="amount")


# --- folder sources -------------------------------------------------------------------


def _folder(params: Params) -> Path:
    path = params.source.path
    if path is None:
        raise SourceNotFoundError(
            f"source.kind is 'folder' but source.path is not set in {_params_files(params)}; "
            "set it to the folder holding the exported files."
        )
    if not path.is_dir():
        raise SourceNotFoundError(
            f"source folder {path} does not exist; fix source.path in {_params_files(params)} "
            "or create the folder with the exported files."
        )
    return path


def _has_magic(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def _table_files(folder: Path, table: str, params: Params) -> tuple[list[Path], list[str]]:
    """The files of ``table`` in name order, and the names that were looked for."""
    ts = _table_source(params, table)
    if ts.file is not None:
        if _has_magic(ts.file):
            matches = glob.glob(str(folder / ts.file))
            # Excel's lock files (~$name.xlsx) and hidden files are never data.
            files = sorted(
                (Path(m) for m in matches if not Path(m).name.startswith(("~$", "."))),
                key=lambda p: str(p.relative_to(folder)) if p.is_relative_to(folder) else str(p),
            )
            return [f for f in files if f.is_file()], [ts.file]
        path = folder / ts.file
        return ([path] if path.is_file() else []), [ts.file]
    names = [f"{table}{reader.suffixes[0]}" for reader in READERS.values()]
    for name in names:
        if (folder / name).is_file():
            return [folder / name], names
    return [], names


def _format_of(path: Path, table: str, params: Params) -> FileReader:
    reader = reader_for(path)
    if reader is None:
        raise InvalidParamError(
            _params_files(params),
            f"source.tables.{table}.file",
            f"{path.name} has an unsupported format '{path.suffix}'; "
            f"save it as one of {', '.join(known_suffixes())}",
        )
    return reader


def _locate(params: Params, schema: TableSchema) -> tuple[list[Path], FileReader] | None:
    """The table's files and their common format; None when an optional table is absent."""
    folder = _folder(params)
    table = schema.name
    ts = _table_source(params, table)
    files, looked_for = _table_files(folder, table, params)
    if not files:
        if ts.file is not None:
            raise SourceNotFoundError(
                f"no file matching '{ts.file}' in {folder} for table '{table}'; "
                f"fix source.tables.{table}.file in {_params_files(params)} or add the file."
            )
        if schema.required_table:
            raise SourceNotFoundError(
                f"table '{table}' not found in {folder}: looked for {', '.join(looked_for)}. "
                f"Export it under one of these names or set source.tables.{table}.file."
            )
        return None
    readers = {r.name: r for r in (_format_of(f, table, params) for f in files)}
    if len(readers) > 1:
        raise InvalidParamError(
            _params_files(params),
            f"source.tables.{table}.file",
            f"'{ts.file}' matches files of different formats ({sorted(readers)}); "
            "narrow the pattern to one format",
        )
    reader = next(iter(readers.values()))
    _check_header_row(params, f"source.tables.{table}.header_row", ts.header_row, files[0], reader)
    return files, reader


def _check_header_row(
    params: Params, key: str, header_row: int | None, path: Path, reader: FileReader
) -> None:
    """``header_row`` only where a format's column names stand in a row of the file: set
    for any other (Parquet), it would be ignored unseen."""
    if header_row is not None and not reader.header_rows:
        raise InvalidParamError(
            _params_files(params),
            key,
            t("source.header_row_format", "en", file=path.name, format=reader.name),
        )


def _file_sha256(path: Path) -> str:
    stat = path.stat()
    return _sha256_of(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    # Keyed by size and modification time too: a re-exported file is hashed again, while
    # the several reads of one unchanged file (report week, history) hash it once.
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _files_sha256(files: list[Path]) -> str:
    digests = [_file_sha256(f) for f in files]
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256("".join(digests).encode("ascii")).hexdigest()


def _read_folder_table(
    params: Params, schema: TableSchema, ts: TableSource, window: Window | None, tz: str
) -> tuple[pd.DataFrame, str, str, str] | None:
    located = _locate(params, schema)
    if located is None:
        return None
    files, reader = located
    # Hashing releases the GIL: digest the files while they are being read.
    with ThreadPoolExecutor(max_workers=1) as pool:
        digest = pool.submit(_files_sha256, files)
        frame = reader.read_table(files, schema, ts, window, tz)
        return frame, ", ".join(str(f) for f in files), reader.name, digest.result()


# --- CSV --------------------------------------------------------------------------------


def _csv_encodings(path: Path, encoding: str) -> tuple[str, ...]:
    """Encodings to try in turn; a UTF-8 BOM always wins, so it never reaches a header."""
    with path.open("rb") as fh:
        has_bom = fh.read(3) == _BOM
    if has_bom:
        return ("utf-8-sig",)
    if encoding == "auto":
        return _AUTO_ENCODINGS
    if codecs.lookup(encoding).name == "utf-8":
        return ("utf-8-sig",)
    return (encoding,)


_CHINESE_CODECS = frozenset({"gbk", "gb18030", "gb2312", "big5"})
_SNIFF_BYTES = 1 << 20


def _is_utf8(path: Path) -> bool:
    """Whether the file's first megabyte is UTF-8 with some non-ASCII text in it."""
    with path.open("rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    if head.isascii():
        return False
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        # Not final: a character cut at the end of the sample is not an error.
        decoder.decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _read_csv(
    path: Path, schema: TableSchema, ts: TableSource, wanted: list[str] | None = None
) -> pd.DataFrame:
    """Read the selected columns of a CSV as text; ``_source_row`` is the line number."""
    tried = _csv_encodings(path, ts.encoding)
    if len(tried) == 1 and codecs.lookup(tried[0]).name in _CHINESE_CODECS and _is_utf8(path):
        # UTF-8 bytes decode as GBK too, into mojibake (华东 -> 鍗庝笢), without any error.
        raise UnreadableSourceError(
            f"{path.name} ({path}) is declared {ts.encoding} but its text is UTF-8: read as "
            f"{ts.encoding} it would turn into garbled characters. Set `encoding: utf-8` "
            f"(or `auto`) under source.tables.{schema.name} in the params."
        )
    for encoding in tried:
        try:
            return _read_csv_as(path, encoding, schema, ts, wanted)
        except UnicodeDecodeError:
            continue
    shown = ts.encoding if ts.encoding != "auto" else " or ".join(tried)
    raise UnreadableSourceError(
        f"cannot decode {path.name} ({path}) as {shown}: the file holds bytes that are not "
        f"valid {shown}. Set `encoding: gb18030` (GBK exports, e.g. from Excel on Chinese "
        f"Windows) or `encoding: utf-8-sig` (UTF-8 with BOM) under "
        f"source.tables.{schema.name} in the params, or `encoding: auto` to try both."
    )


def _read_csv_as(
    path: Path, encoding: str, schema: TableSchema, ts: TableSource, wanted: list[str] | None
) -> pd.DataFrame:
    header_line = ts.header_row or 1
    header = _csv_header(path, encoding, ts.delimiter, schema.name, ts.header_row)
    selected = _select_columns(header, schema, ts, path.name, wanted, header=header_line)
    positions = {orig: header.index(orig) for orig in selected}
    try:
        frame = _read_csv_arrow(path, encoding, ts.delimiter, len(header), positions, header_line)
    except pa.ArrowInvalid:
        # Rows with a missing or extra cell, or bytes invalid in the encoding: read record
        # by record, flagging wrong cell counts (or raising UnicodeDecodeError).
        frame = _read_csv_records(path, encoding, ts.delimiter, len(header), positions, header_line)
        frame = frame.rename(columns=selected)
        return _drop_empty_rows(frame[[*selected.values(), SOURCE_ROW, WRONG_FIELDS_COL]])
    frame = frame.rename(columns=selected)[list(selected.values())]
    # A quoted cell with line breaks makes its record span several lines.
    frame[SOURCE_ROW] = _record_lines(path, encoding, ts.delimiter, len(frame), header_line)
    return _drop_empty_rows(frame)


def _skip_title_lines(fh: IO[str], header_line: int) -> None:
    """Read past the lines above the header line (a title), so that the next line read is
    the header. Lines, not CSV records: the line numbers an editor shows, as Arrow's
    ``skip_rows`` counts them."""
    for _ in range(header_line - 1):
        if not fh.readline():
            return


def _read_csv_records(
    path: Path,
    encoding: str,
    delimiter: str,
    width: int,
    positions: dict[str, int],
    header_line: int = 1,
) -> pd.DataFrame:
    """The selected columns record by record, flagging records whose cell count is not the
    header's (a truncated last line, an unquoted delimiter inside a value): validation sets
    them aside under "wrong field count" instead of reading shifted or missing cells."""
    values: dict[str, list[str | None]] = {name: [] for name in positions}
    lines: list[int] = []
    wrong: list[bool] = []
    with path.open(encoding=encoding, newline="") as fh:
        _skip_title_lines(fh, header_line)
        reader = csv.reader(fh, delimiter=delimiter)
        next(reader, None)
        # reader.line_num counts from the header line: the title lines come on top.
        start = reader.line_num + header_line
        for record in reader:
            # The record's first line (a quoted cell may span several).
            lines.append(start)
            start = reader.line_num + header_line
            blank = not record or record == [""]
            wrong.append(not blank and len(record) != width)
            for name, at in positions.items():
                cell = record[at] if at < len(record) and not blank else ""
                values[name].append(cell if cell != "" else None)
    frame = pd.DataFrame({name: pd.Series(v, dtype="str") for name, v in values.items()})
    frame[SOURCE_ROW] = pd.array(lines, dtype="Int64")
    frame[WRONG_FIELDS_COL] = np.asarray(wrong, dtype=bool)
    return frame


def _record_lines(
    path: Path, encoding: str, delimiter: str, records: int, header_line: int = 1
) -> np.ndarray:
    """The line each record starts on (the file's first line = 1, title lines included),
    as a person counts in an editor."""
    simple = np.arange(header_line + 1, header_line + 1 + records)
    newlines = 0
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 24), b""):
            newlines += chunk.count(b"\n")
    above = header_line - 1  # title lines
    if newlines in (records + above, records + above + 1):
        return simple  # one line per record: no line breaks inside quoted cells
    starts = []
    with path.open(encoding=encoding, newline="") as fh:
        _skip_title_lines(fh, header_line)
        reader = csv.reader(fh, delimiter=delimiter)
        next(reader, None)
        line = reader.line_num
        for _ in reader:
            starts.append(line + header_line)
            line = reader.line_num
    return np.asarray(starts) if len(starts) == records else simple


def _csv_header(
    path: Path, encoding: str, delimiter: str, table: str, header_row: int | None = None
) -> list[str]:
    """The cells of the header line: the first, or the one ``header_row`` names."""
    with path.open(encoding=encoding, newline="") as fh:
        _skip_title_lines(fh, header_row or 1)
        header = next(csv.reader(fh, delimiter=delimiter), None)
    if header_row is not None and not any(c.strip() for c in header or []):
        # The line named holds no names: blank (or only delimiters), or past the end.
        why = "source.header_line_past_end" if header is None else "source.header_line_empty"
        key = f"source.tables.{table}.header_row"
        raise UnreadableSourceError(
            t(why, "en", file=path.name, path=path, row=header_row, key=key)
        )
    if header is None:  # a blank first line reads as no names: the missing column says so
        raise UnreadableSourceError(
            f"{path.name} ({path}) is empty: it has no header line. Export the {table} "
            "table again with its column names in the first line."
        )
    return header


def csv_text_options(
    encoding: str,
    delimiter: str,
    width: int,
    wanted: list[str],
    block_size: int | None = None,
    header_line: int = 1,
) -> dict[str, object]:
    """Arrow's CSV options that read the columns ``wanted`` (of ``c0`` .. ``c<width-1>``)
    as text, the lines up to the header line skipped, as ``read_csv``/``open_csv``
    keyword arguments."""
    read = pacsv.ReadOptions(
        # The header line and any title above it (with any BOM) are skipped; arrow decodes
        # UTF-8 natively.
        encoding="utf8" if encoding == "utf-8-sig" else encoding,
        # Columns are addressed by position: header names may repeat or carry a BOM.
        column_names=[f"c{i}" for i in range(width)],
        skip_rows=header_line,
    )
    if block_size is not None:
        read.block_size = block_size
    return {
        "read_options": read,
        # Blank lines stay rows (of nulls), so row positions stay line numbers.
        "parse_options": pacsv.ParseOptions(
            delimiter=delimiter, newlines_in_values=True, ignore_empty_lines=False
        ),
        "convert_options": pacsv.ConvertOptions(
            include_columns=wanted,
            column_types=dict.fromkeys(wanted, pa.string()),
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
            null_values=[""],
        ),
    }


def _read_csv_arrow(
    path: Path,
    encoding: str,
    delimiter: str,
    width: int,
    positions: dict[str, int],
    header_line: int = 1,
) -> pd.DataFrame:
    """The selected columns as text, parsed by pyarrow on all cores."""
    wanted = [f"c{i}" for i in positions.values()]
    options = csv_text_options(encoding, delimiter, width, wanted, header_line=header_line)
    table = pacsv.read_csv(path, **options)
    frame = table.to_pandas(split_blocks=True, self_destruct=True)
    frame.columns = list(positions)
    return frame


def _drop_empty_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows with no value in any column read (blank lines, Excel's trailing rows)."""
    data = frame.drop(columns=[SOURCE_ROW, WRONG_FIELDS_COL], errors="ignore")
    if data.columns.empty:
        return frame
    empty = data.isna().all(axis=1)
    return frame.loc[~empty] if empty.any() else frame


# --- XLSX -----------------------------------------------------------------------------


def _read_xlsx(
    path: Path, schema: TableSchema, ts: TableSource, wanted: list[str] | None = None
) -> pd.DataFrame:
    """Read the selected columns of a sheet; ``_source_row`` is the sheet row number."""
    import openpyxl  # only XLSX sources pay for importing it

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for damaged files
        raise UnreadableSourceError(
            f"cannot open {path.name} ({path}) as an Excel workbook: {exc}. "
            "Save it again from Excel as .xlsx, or export it as CSV."
        ) from None
    try:
        ws = _sheet(wb, path, schema.name, ts.sheet)
        # Some writers store a wrong sheet size; recompute it from the cells.
        ws.reset_dimensions()
        rows = ws.iter_rows(values_only=True)
        header_row, header, number = 0, None, 0
        # The rows above the header row are a title: the row header_row names, else the
        # first row that is not empty.
        for number, row in enumerate(rows, start=1):
            if ts.header_row is not None and number < ts.header_row:
                continue
            if any(_clean_header(v) for v in row):
                header_row, header = number, [_clean_header(v) for v in row]
            if header is not None or ts.header_row is not None:
                break
        if header is None and ts.header_row is not None:
            empty = number == ts.header_row  # the row is there, with no name in it
            why = "source.header_cells_empty" if empty else "source.header_cells_past_end"
            raise UnreadableSourceError(
                t(
                    why,
                    "en",
                    row=ts.header_row,
                    sheet=ws.title,
                    file=path.name,
                    path=path,
                    key=f"source.tables.{schema.name}.header_row",
                )
            )
        if header is None:
            raise UnreadableSourceError(
                f"sheet '{ws.title}' of {path.name} ({path}) is empty; "
                f"choose the sheet with the data under source.tables.{schema.name}.sheet."
            )
        selected = _select_columns(header, schema, ts, path.name, wanted, header=header_row)
        positions = {orig: header.index(orig) for orig in selected}
        records = list(rows)
    finally:
        wb.close()
    columns = {}
    for orig, canonical in selected.items():
        i = positions[orig]
        cells = [r[i] if i < len(r) else None for r in records]
        if schema.column(canonical).kind == "timestamp":
            columns[canonical] = _xlsx_timestamps(cells, ts.timestamp_format)
        else:
            columns[canonical] = pd.Series([_cell_text(v) for v in cells], dtype="str")
    frame = pd.DataFrame(columns, index=pd.RangeIndex(len(records)))
    frame[SOURCE_ROW] = np.arange(header_row + 1, header_row + 1 + len(records))
    return _drop_empty_rows(frame)


def _sheet(wb: Any, path: Path, table: str, sheet: str | int | None) -> Any:
    names = wb.sheetnames
    if sheet is None:
        return wb.worksheets[0]
    if isinstance(sheet, int) and 0 <= sheet < len(names):
        return wb.worksheets[sheet]
    if isinstance(sheet, str) and sheet in names:
        return wb[sheet]
    raise SourceNotFoundError(
        f"sheet {sheet!r} not in {path.name} ({path}); sheets found: {names}. "
        f"Fix source.tables.{table}.sheet (a sheet name, or its 0-based position)."
    )


def _cell_text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if text != "" else None


def _xlsx_timestamps(cells: list[object], fmt: str | None) -> pd.Series:
    """Real date cells stay datetimes; a column mixing them with text becomes all text."""
    present = [v for v in cells if v is not None and v != ""]
    if present and all(isinstance(v, dt.datetime | dt.date) for v in present):
        return pd.Series(pd.to_datetime(pd.Series(cells, dtype=object)))
    # Formatting date cells like the text cells keeps the column parseable with one format.
    out_format = fmt or "%Y-%m-%d %H:%M:%S"
    return pd.Series(
        [v.strftime(out_format) if isinstance(v, dt.date) else _cell_text(v) for v in cells],
        dtype="str",
    )


# --- Parquet --------------------------------------------------------------------------


def _read_parquet(
    path: Path, schema: TableSchema, ts: TableSource, window: Window | None, tz: str
) -> pa.Table:
    """Read the selected columns, and with a window only its rows, pruning row groups."""
    arrow_schema = _parquet_schema(path)
    selected = _select_columns(arrow_schema.names, schema, ts, path.name)
    # Low-cardinality text comes back dictionary-encoded: less memory, categories in pandas.
    dictionary = [
        orig
        for orig, canonical in selected.items()
        if schema.column(canonical).kind == "category" and _is_text(arrow_schema.field(orig).type)
    ]
    with pq.ParquetFile(path, read_dictionary=dictionary) as pf:
        return _read_parquet_rows(pf, path, selected, schema, window, tz)


def _read_parquet_rows(
    pf: pq.ParquetFile,
    path: Path,
    selected: dict[str, str],
    schema: TableSchema,
    window: Window | None,
    tz: str,
) -> pa.Table:
    arrow_schema = pf.schema_arrow
    meta = pf.metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
    time_col = _source_column(selected, schema.time_column)
    bounds: tuple[Any, Any, Any] | None = None
    if window is not None and time_col is not None:
        bounds = _arrow_window(time_col, arrow_schema.field(time_col).type, window, tz)
    if bounds is None:
        groups, partial = list(range(meta.num_row_groups)), set()
    else:
        condition, lo, hi = bounds
        fragment = next(iter(ds.dataset(path, format="parquet").get_fragments()))
        groups = [rg.id for rg in fragment.subset(filter=condition).row_groups]
        assert time_col is not None  # bounds exist only for a time column
        partial = {g for g in groups if not _group_inside(meta, g, time_col, lo, hi)}
    table = pf.read_row_groups(groups, columns=list(selected), use_threads=True)
    rows = [np.arange(offsets[g] + 1, offsets[g + 1] + 1) for g in groups]
    table = table.append_column(
        SOURCE_ROW, pa.array(np.concatenate(rows) if rows else np.empty(0, np.int64))
    )
    if partial and bounds is not None:
        # Files sorted by time have only a few groups straddling a window edge: filter
        # those and keep the others whole, instead of filtering (copying) every row.
        pieces, start = [], 0
        for g in groups:
            piece = table.slice(start, sizes[g])
            pieces.append(piece.filter(bounds[0]) if g in partial else piece)
            start += sizes[g]
        table = pa.concat_tables(pieces)
    return table.rename_columns([selected.get(n, n) for n in table.column_names])


def _parquet_schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise UnreadableSourceError(
            f"cannot read {path.name} ({path}) as Parquet: {exc}. Export the file again."
        ) from None


def _column_statistics(meta: pq.FileMetaData, group: int, column: str) -> Any:
    """Statistics of one column in one row group, or None when the file has none."""
    rg = meta.row_group(group)
    for j in range(rg.num_columns):
        chunk = rg.column(j)
        if chunk.path_in_schema == column:
            return chunk.statistics if chunk.is_stats_set else None
    return None


def _group_inside(meta: pq.FileMetaData, group: int, column: str, lo: Any, hi: Any) -> bool:
    """Whether the statistics of a row group place all its times in ``[lo, hi)``."""
    stats = _column_statistics(meta, group, column)
    if stats is None or not stats.has_min_max:
        return False
    try:
        return bool(stats.min >= lo and stats.max < hi)
    except TypeError:  # statistics in a type that does not compare: filter the rows
        return False


def _is_text(arrow_type: pa.DataType) -> bool:
    return (
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_string_view(arrow_type)
    )


def _source_column(selected: dict[str, str], canonical: str | None) -> str | None:
    return next((orig for orig, canon in selected.items() if canon == canonical), None)


def _local_naive(ts: pd.Timestamp, tz: str) -> dt.datetime:
    return ts.tz_convert(tz).tz_localize(None).to_pydatetime()


def _arrow_window(
    column: str, arrow_type: pa.DataType, window: Window, tz: str
) -> tuple[ds.Expression, Any, Any] | None:
    """(``lo <= column < hi`` or empty, lo, hi); None when the column's type allows no pushdown."""
    field = ds.field(column)
    lo: Any
    hi: Any
    if pa.types.is_timestamp(arrow_type):
        if arrow_type.tz is not None:
            lo, hi = window.start.to_pydatetime(), window.end.to_pydatetime()
        else:
            # Naive timestamps are wall-clock times of the table's timezone.
            lo, hi = _local_naive(window.start, tz), _local_naive(window.end, tz)
    elif pa.types.is_date(arrow_type):
        lo, hi = _date_bounds(window, tz, margin_days=0)
    else:
        # Text timestamps cannot be compared before parsing; read all rows.
        return None
    inside = (field >= pa.scalar(lo, type=arrow_type)) & (field < pa.scalar(hi, type=arrow_type))
    return inside | field.is_null(), lo, hi


def _date_bounds(window: Window, tz: str, margin_days: int) -> tuple[dt.date, dt.date]:
    """First local date of the window and the day after its last, widened by a margin."""
    first = window.start.tz_convert(tz).date()
    last = (window.end.tz_convert(tz) - pd.Timedelta(microseconds=1)).date()
    margin = dt.timedelta(days=margin_days)
    return first - margin, last + dt.timedelta(days=1) + margin


def _arrow_to_pandas(table: pa.Table) -> pd.DataFrame:
    # Int64 keeps integer columns with gaps integral; strings become pandas' arrow-backed
    # str dtype and dictionaries categories without another copy.
    return table.to_pandas(
        split_blocks=True,
        self_destruct=True,
        types_mapper={pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int64Dtype()}.get,
    )


# --- SQL ------------------------------------------------------------------------------


def _mask_url(url: str) -> str:
    """The URL with any password (user info or query parameter) replaced by ***."""
    try:
        return redact(sa.engine.make_url(url).render_as_string(hide_password=True))
    except Exception:  # unparseable URL: mask the userinfo part by hand
        return redact(re.sub(r"(//[^/@:]*:)[^@/]*@", r"\1***@", url))


def _scrub(text: str, url: str) -> str:
    """Remove the URL's password from a driver's error text."""
    try:
        password = sa.engine.make_url(url).password
    except Exception:
        password = None
    text = redact(text.replace(url, _mask_url(url)))
    if password:
        text = text.replace(str(password), "***")
    return text.strip().splitlines()[0] if text.strip() else text


def _error_text(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc)


def _missing_sqlite_file(url: sa.URL) -> str | None:
    """The path of a SQLite URL whose file does not exist (sqlite would create it empty)."""
    path = url.database
    if url.get_backend_name() != "sqlite" or path in (None, "", ":memory:"):
        return None
    if path.startswith("file:") or Path(path).is_file():
        return None
    return path


@contextmanager
def _connection(params: Params) -> Iterator[sa.Connection]:
    url = params.source.database_url()
    shown = _mask_url(url)
    try:
        missing = _missing_sqlite_file(sa.engine.make_url(url))
        if missing:
            where = (
                f"the environment variable {params.source.url_env} (source.url_env)"
                if params.source.url_env
                else "source.url"
            )
            raise SourceNotFoundError(
                f"database {shown} not found: no file {missing}. Fix the URL in {where}."
            )
        engine = sa.create_engine(url)
    except (sa.exc.NoSuchModuleError, ModuleNotFoundError) as exc:
        # The URL is fine; this environment lacks the dialect's driver (exit 5).
        driver = getattr(exc, "name", None) or sa.engine.make_url(url).get_backend_name()
        raise DriverMissingError(shown, str(driver)) from None
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise SourceNotFoundError(
            f"cannot use database {shown}: {_scrub(_error_text(exc), url)}. Check the URL and "
            "that the database driver is installed."
        ) from None
    try:
        try:
            conn = engine.connect()
        except sa.exc.SQLAlchemyError as exc:
            raise SourceUnreachableError(shown, _scrub(_error_text(exc), url)) from None
        with conn:
            try:
                yield conn
            except sa.exc.SQLAlchemyError as exc:
                raise UnreadableSourceError(
                    f"reading from database {shown} failed: {_scrub(_error_text(exc), url)}"
                ) from None
    finally:
        engine.dispose()


def _sql_name(table: str, ts: TableSource) -> tuple[str | None, str]:
    """(schema, table name) of a canonical table; ``schema.table`` names a schema."""
    name = ts.table or table
    if ts.table and "." in name:
        schema, name = name.split(".", 1)
        return schema, name
    return None, name


def _sql_columns(
    params: Params, conn: sa.Connection, schema: TableSchema, ts: TableSource
) -> tuple[str, sa.TableClause, dict[str, Any]] | None:
    """(label, table clause, {column: type}) of the database table; None when absent."""
    db_schema, name = _sql_name(schema.name, ts)
    label = f"{db_schema}.{name}" if db_schema else name
    insp = sa.inspect(conn)
    if not insp.has_table(name, schema=db_schema):
        if ts.table is not None or schema.required_table:
            key = f"source.tables.{schema.name}.table"
            raise SourceNotFoundError(
                f"table '{label}' not found in database {_mask_url(params.source.database_url())}"
                f"; set {key} to the table holding the {schema.name} data."
            )
        return None
    types = {c["name"]: c["type"] for c in insp.get_columns(name, schema=db_schema)}
    clause = sa.table(
        quoted_name(name, True),
        *[sa.column(quoted_name(c, True)) for c in types],
        schema=quoted_name(db_schema, True) if db_schema else None,
    )
    return label, clause, types


def _sql_window(
    column: sa.ColumnClause[Any], sql_type: Any, dialect: str, window: Window, tz: str
) -> sa.ColumnElement[bool] | None:
    """WHERE condition selecting the window's rows (and empty ones), with bound values."""
    if dialect == "sqlite" or isinstance(sql_type, sa.String):
        return _sql_text_window(column, window, tz)
    if isinstance(sql_type, sa.DateTime):
        aware = bool(getattr(sql_type, "timezone", False))
        if aware:
            lo, hi = window.start.to_pydatetime(), window.end.to_pydatetime()
        else:
            lo, hi = _local_naive(window.start, tz), _local_naive(window.end, tz)
        kind: sa.types.TypeEngine[Any] = sa.DateTime(timezone=aware)
    elif isinstance(sql_type, sa.Date):
        lo, hi = _date_bounds(window, tz, margin_days=0)
        kind = sa.Date()
    else:
        return None
    inside = sa.and_(
        column >= sa.bindparam("window_lo", lo, type_=kind),
        column < sa.bindparam("window_hi", hi, type_=kind),
    )
    return sa.or_(inside, column.is_(None))


def _iso_bound(stamp: pd.Timestamp, tz: str) -> str:
    """Shortest ISO text of a local time, so texts without seconds still compare right.

    "2026-01-05 00:00" must not sort before the bound of Monday 00:00, so that bound
    is "2026-01-05"; any text of a later instant sorts after it.
    """
    local = stamp.tz_convert(tz).tz_localize(None)
    if local == local.normalize():
        return local.strftime("%Y-%m-%d")
    if local.second == 0 and local.microsecond == 0:
        return local.strftime("%Y-%m-%d %H:%M")
    return local.isoformat(sep=" ")


def _sql_text_window(column: sa.ColumnElement[Any], window: Window, tz: str) -> Any:
    """Window condition on timestamps stored as text (always so in SQLite).

    Plain ISO text ("YYYY-MM-DD HH:MM[:SS[.f]]", "T" or space) compares exactly as
    text once "T" reads as a space. Text with a UTC offset is selected by its date
    widened by a day (the caller filters exactly after parsing); text that does not
    start with an ISO date, and empty values, are always returned for validation.
    """

    def text(name: str, value: str) -> sa.BindParameter[str]:
        return sa.bindparam(name, value, type_=sa.String())

    plain = sa.func.replace(column, text("iso_t", "T"), text("iso_space", " "))
    exact = sa.and_(
        plain >= text("window_lo", _iso_bound(window.start, tz)),
        plain < text("window_hi", _iso_bound(window.end, tz)),
    )
    first, after_last = _date_bounds(window, tz, margin_days=1)
    offset = sa.or_(*[column.like(text(f"offset_{i}", p)) for i, p in enumerate(_OFFSET_LIKES)])
    near = sa.and_(
        offset,
        column >= text("near_lo", first.isoformat()),
        column < text("near_hi", after_last.isoformat()),
    )
    not_iso = sa.not_(column.like(text("iso_like", _ISO_DATE_LIKE)))
    return sa.or_(exact, near, column.is_(None), not_iso)


def _read_sql_table(
    params: Params, schema: TableSchema, ts: TableSource, window: Window | None, tz: str
) -> tuple[pd.DataFrame, str, str, None] | None:
    with _connection(params) as conn:
        found = _sql_columns(params, conn, schema, ts)
        if found is None:
            return None
        label, clause, types = found
        selected = _select_columns(list(types), schema, ts, f"sql:{label}")
        stmt = sa.select(*[clause.c[orig].label(canon) for orig, canon in selected.items()])
        time_col = _source_column(selected, schema.time_column)
        if window is not None and time_col is not None:
            condition = _sql_window(
                clause.c[time_col], types[time_col], conn.dialect.name, window, tz
            )
            if condition is not None:
                stmt = stmt.where(condition)
        frame = pd.read_sql(stmt, conn)
    # A database has no row order a person could look up; number the rows read.
    frame[SOURCE_ROW] = np.arange(1, len(frame) + 1)
    return frame, f"sql:{label}", "sql", None


# --- last event ---------------------------------------------------------------------------


def _to_zone(value: object, tz: str) -> pd.Timestamp | None:
    """A timestamp as tz-aware; naive values are wall-clock times in ``tz``."""
    if value is None or pd.isna(value):
        return None
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        return stamp.tz_localize(tz, ambiguous=False, nonexistent="shift_forward")
    return stamp.tz_convert(tz)


def _max_timestamp(values: pd.Series, fmt: str | None, tz: str) -> pd.Timestamp | None:
    """Latest of a column of timestamps or timestamp texts (unparseable texts ignored)."""
    values = values.dropna()
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return _to_zone(values.max(), tz) if len(values) else None
    values = values.astype("str")
    values = values[values.str.strip() != ""]
    if values.empty:
        return None
    try:
        parsed = pd.to_datetime(values, format=fmt or "ISO8601", errors="coerce")
    except ValueError:
        # Texts with different UTC offsets only parse together as UTC.
        parsed = pd.to_datetime(values, format=fmt or "ISO8601", errors="coerce", utc=True)
    if fmt is None and parsed.isna().all():
        parsed = pd.to_datetime(values, format="mixed", errors="coerce", utc=True)
    if not pd.api.types.is_datetime64_any_dtype(parsed.dtype):
        parsed = pd.to_datetime(parsed, errors="coerce", utc=True)
    return _to_zone(parsed.max(), tz)


def _folder_last_event(
    params: Params, schema: TableSchema, ts: TableSource, tz: str
) -> tuple[pd.Timestamp | None, str]:
    located = _locate(params, schema)
    assert located is not None  # orders is required: _locate raised already
    files, reader = located
    latest = [reader.last_event(path, schema, ts, tz) for path in files]
    found = [t for t in latest if t is not None]
    return (max(found) if found else None), ", ".join(str(f) for f in files)


def _parquet_last_event(
    path: Path, schema: TableSchema, ts: TableSource, tz: str
) -> pd.Timestamp | None:
    """From the row-group statistics when present, else from that one column."""
    arrow_schema = _parquet_schema(path)
    selected = _select_columns(arrow_schema.names, schema, ts, path.name, ["created_at"])
    column = next(iter(selected))
    with pq.ParquetFile(path) as pf:
        meta = pf.metadata
        if pa.types.is_timestamp(arrow_schema.field(column).type):
            groups = [g for g in range(meta.num_row_groups) if meta.row_group(g).num_rows]
            stats = [_column_statistics(meta, g, column) for g in groups]
            if all(st is not None and st.has_min_max for st in stats):
                maxima = [_to_zone(st.max, tz) for st in stats]
                found = [m for m in maxima if m is not None]
                return max(found) if found else None
        values = pf.read(columns=[column]).column(0)
    if pa.types.is_timestamp(values.type):
        return _to_zone(pc.max(values).as_py(), tz)
    return _max_timestamp(values.to_pandas(), ts.timestamp_format, tz)


def _sql_last_event(
    params: Params, schema: TableSchema, ts: TableSource, tz: str
) -> tuple[pd.Timestamp | None, str]:
    fmt = ts.timestamp_format
    with _connection(params) as conn:
        found = _sql_columns(params, conn, schema, ts)
        assert found is not None  # orders is required: _sql_columns raised already
        label, clause, types = found
        selected = _select_columns(list(types), schema, ts, f"sql:{label}", ["created_at"])
        column = clause.c[next(iter(selected))]
        sql_type = types[column.name]
        is_text = conn.dialect.name == "sqlite" or isinstance(sql_type, sa.String)
        if not is_text:
            value = conn.execute(sa.select(sa.func.max(column))).scalar()
            if isinstance(value, str):
                return _max_timestamp(pd.Series([value]), fmt, tz), f"sql:{label}"
            return _to_zone(value, tz), f"sql:{label}"
        if fmt is not None and not fmt.startswith(_ISO_FORMAT_PREFIX):
            # Text in a non-ISO format does not sort by time: parse the whole column.
            values = conn.execute(sa.select(column)).scalars().all()
        else:
            # ISO text sorts by date: the latest date is the largest prefix; parse that day.
            pattern = sa.bindparam("iso_like", _ISO_DATE_LIKE, type_=sa.String())
            largest = conn.execute(
                sa.select(sa.func.max(column)).where(column.like(pattern))
            ).scalar()
            if largest is None:
                return None, f"sql:{label}"
            day = sa.bindparam("last_day", str(largest)[:10], type_=sa.String())
            values = conn.execute(sa.select(column).where(column >= day)).scalars().all()
    return _max_timestamp(pd.Series(values, dtype=object), fmt, tz), f"sql:{label}"


# --- the registered formats ----------------------------------------------------------


def _parquet_table(
    files: list[Path], schema: TableSchema, ts: TableSource, window: Window | None, tz: str
) -> pd.DataFrame:
    tables = [_read_parquet(f, schema, ts, window, tz) for f in files]
    if len(tables) > 1:
        tables = [pa.concat_tables(tables, promote_options="permissive")]
    return _arrow_to_pandas(tables[0])


def _parquet_columns(
    path: Path, schema: TableSchema, ts: TableSource, wanted: list[str]
) -> pd.DataFrame:
    selected = _select_columns(_parquet_schema(path).names, schema, ts, path.name, wanted)
    with pq.ParquetFile(path) as pf:
        table = pf.read(columns=list(selected))
    return pd.DataFrame(
        {canonical: table.column(source).to_pandas() for source, canonical in selected.items()}
    )


TextReader = Callable[[Path, TableSchema, TableSource, list[str] | None], pd.DataFrame]


def _text_table(read: TextReader) -> Callable[..., pd.DataFrame]:
    """Every row of each file (no pushdown for text formats), concatenated."""

    def read_table(
        files: list[Path], schema: TableSchema, ts: TableSource, window: Window | None, tz: str
    ) -> pd.DataFrame:
        frames = [read(f, schema, ts, None) for f in files]
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)

    return read_table


def _text_last_event(read: TextReader) -> Callable[..., pd.Timestamp | None]:
    def last_event(
        path: Path, schema: TableSchema, ts: TableSource, tz: str
    ) -> pd.Timestamp | None:
        frame = read(path, schema, ts, ["created_at"])
        return _max_timestamp(frame["created_at"], ts.timestamp_format, tz)

    return last_event


def _csv_raw(path: Path, encoding: str, delimiter: str, header_row: int | None) -> pd.DataFrame:
    # A BOM is never part of the first header: utf-8 reads as utf-8-sig.
    encoding = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
    with path.open(encoding=encoding, newline="") as fh:
        _skip_title_lines(fh, header_row or 1)
        return pd.read_csv(fh, sep=delimiter, dtype=str, keep_default_na=False)


def _xlsx_raw(path: Path, _encoding: str, _delimiter: str, header_row: int | None) -> pd.DataFrame:
    # pandas counts the rows it skips as the sheet numbers them, empty ones included.
    skip = (header_row or 1) - 1
    return pd.read_excel(path, dtype=str, keep_default_na=False, skiprows=skip)


register_reader(
    FileReader(
        "parquet",
        (".parquet", ".pq"),
        _parquet_table,
        _parquet_columns,
        _parquet_last_event,
        lambda path, _encoding, _delimiter, _header_row: pd.read_parquet(path),
    )
)
register_reader(
    FileReader(
        "csv",
        (".csv", ".txt", ".tsv"),
        _text_table(_read_csv),
        _read_csv,
        _text_last_event(_read_csv),
        _csv_raw,
        header_rows=True,
    )
)
register_reader(
    FileReader(
        "xlsx",
        (".xlsx", ".xlsm"),
        _text_table(_read_xlsx),
        _read_xlsx,
        _text_last_event(_read_xlsx),
        _xlsx_raw,
        header_rows=True,
    )
)
