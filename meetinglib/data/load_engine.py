"""Loading a table on the engine: read where it lies, validate by predicates, write Parquet.

For a table whose source the engine can read with the types validation expects (Parquet
files with text ids and codes, typed numbers and timezone-aware timestamps; see
``engine_reason``), the rows never pass through pandas: DuckDB reads the files, the
rules of ``checks`` are evaluated as predicates, and in one scan per table the rows
stream as Arrow batches, each with its checks' outcomes, while the clean rows of the
selection window are written to the week's snapshot by Arrow's Parquet writer. Of the
rows, only what the quality report lists is kept: counts per rule, the example rows (at
most five per rule) and the rows set aside, which are read again from the files and
described by validation's own functions, so entries, quarantine and messages read
exactly as on the pandas path.

A Parquet export whose columns are read as they are, and mostly rows of the window, is
not written again: its files are copied byte for byte into the snapshot, the copies are
validated by the same pass (only the columns the checks stream), and the snapshot keeps
the query giving the clean rows of the window (``source_copy``; ``copyable`` decides).

Every other table (CSV, XLSX, SQL, text timestamps, status mappings...) takes the pandas
path of ``validate``; ``dataset.load_week`` decides per table and records which path it
took.
"""

from __future__ import annotations

import dataclasses
import queue
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from ibis.backends import BaseBackend

from meetinglib.core.errors import MissingColumnError, TooManyQuarantinedError
from meetinglib.core.params import EngineParams, Params, TableSource
from meetinglib.core.schema import SCHEMAS, TableSchema, selection_of
from meetinglib.core.weeks import Window
from meetinglib.data import checks as ck
from meetinglib.data import engine, source_cache, source_copy, sources
from meetinglib.data import parse_engine as pe
from meetinglib.data.sources import RawTable, SourceInfo
from meetinglib.data.validate import (
    _LONGEST_TOKEN,
    _MIX,
    _NO_BYTES,
    _SPACE_FIRST,
    _SPACE_LAST,
    KEPT_RULES,
    MAX_EXAMPLES,
    MAX_FIELD_CHARS,
    SOURCE_ROW,
    QuarantineEntry,
    _coerce,
    _coerce_category,
    _Coerced,
    _failures,
    _fingerprint_block,
    _spread,
    coerce_table,
    example_of,
    latest_plausible,
    plausible_range,
    quarantine_frame,
    source_name,
    too_many_message,
)

ENGINE_PATH = "engine"
PANDAS_PATH = "pandas"
# Position of a row across a table's files: file index times this, plus the file's row.
_FILE_STRIDE = 1 << 40
# Tables whose rows belong to an order (see dataset.ORDER_TABLES).
ORDER_TABLES = ("settlements", "order_lines", "after_sales", "tickets")
_POS = "__pos"
_ROW = "__row"
_FIRST = "__first"
_FIRST_ROW = "__first_row"
_CHECK = "__check"


@dataclass
class Plan:
    """How the engine reads one table: files, the columns taken and how they are typed."""

    table: str
    files: list[Path]
    selected: dict[str, str]  # source column -> canonical column
    kinds: dict[str, ck.SourceKind]  # canonical column -> how the source types it
    ts: TableSource
    tz: str  # the table's timezone (naive times; here only for quarantine re-parsing)
    platform_tz: str  # the timezone every timestamp ends in
    groups: list[list[int]]  # per file, the row groups the pandas path would read
    bounds: tuple[pd.Timestamp, pd.Timestamp] | None  # window on the time column
    categories: dict[str, ck.CategoryMap] = field(default_factory=dict)
    # The files a person exported (``files`` are their cached Parquet conversions for CSV
    # and XLSX; see ``source_cache``), and their format.
    sources: list[Path] = field(default_factory=list)
    fmt: str = "parquet"
    # Columns the engine parses (text timestamps and numbers, naive times; ``parse_engine``).
    parsed: dict[str, Parsed] = field(default_factory=dict)
    # Whether the row groups of ``groups`` hold every row the engine reads (see
    # ``_groups_cover``): then the categories' values are all in ``categories``.
    covered: bool = False
    # The Parquet files exported, when ``files`` are their copies in the snapshot
    # (``source_copy``).
    copied_from: list[Path] = field(default_factory=list)

    @property
    def exported(self) -> list[Path]:
        """The files as exported (the source the quality report names)."""
        return self.sources or self.copied_from or self.files

    @property
    def cached(self) -> bool:
        """Whether ``files`` are conversions holding each row's ``_source_row``."""
        return bool(self.sources)


@dataclass
class Parsed:
    """How the engine parses one column the source holds as text (or as naive times)."""

    kind: str  # "timestamp", "naive", "int" or "float"
    patterns: list[pe.Pattern] = field(default_factory=list)
    zone: pe.Zone | None = None
    odd: dict[str, Any] = field(default_factory=dict)  # odd text -> validation's value


@dataclass
class Loaded:
    """One table validated on the engine and written to the snapshot."""

    info: SourceInfo
    loaded: int
    kept: int
    entries: list[QuarantineEntry]
    quarantined: pd.DataFrame
    in_window: int  # clean rows in the selection window
    written: int  # rows written (after leaving out rows of orders not loaded)
    in_week: int  # clean rows placed in the report week
    week_set_aside: int  # rows set aside placed in the report week
    provided: list[str]
    dtypes: dict[str, object]


def connection(params: Params) -> BaseBackend:
    """The DuckDB the loader reads files with (the params' own when the engine is DuckDB)."""
    return engine.shared(params.engine if params.engine.kind == "duckdb" else EngineParams())


def engine_reason(params: Params, table: str) -> str | None:
    """Why ``table`` cannot be loaded on the engine (None: it can)."""
    plan = plan_table(params, table, None)
    return plan if isinstance(plan, str) else None


def _kind_of(arrow_type: pa.DataType, kind: str) -> ck.SourceKind | None:
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
        if not sources._is_text(arrow_type):
            return None
    if sources._is_text(arrow_type):
        return "text" if kind in ("id", "category", "text") else None
    if pa.types.is_integer(arrow_type):
        return "int" if kind in ("id", "int", "float") else None
    if pa.types.is_floating(arrow_type) and not pa.types.is_float16(arrow_type):
        return "float" if kind in ("int", "float") else None
    if pa.types.is_timestamp(arrow_type):
        # Naive times need the table's zone (and its daylight-saving rule): pandas path.
        ok = kind == "timestamp" and arrow_type.tz is not None and arrow_type.unit != "ns"
        return "timestamp" if ok else None
    return None


def plan_table(params: Params, table: str, window: Window | None) -> Plan | str:
    """The engine's plan for ``table``, or why the pandas path must read it.

    CSV and XLSX files are converted once to Parquet (``source_cache``) and planned as
    Parquet files of text columns; text timestamps and numbers are parsed by the engine
    (``parse_engine``).
    """
    if params.source.kind != "folder":
        return f"{params.source.kind} source"
    schema = SCHEMAS[table]
    ts = sources._table_source(params, table)
    sources._check_mapping(params, table, ts)
    if ts.status is not None or ts.constants or ts.amount_from is not None:
        return "status mapping, constants or amounts from another table"
    if table == "orders" and params.sla.has_delivery_promise:
        return "delivery promise from the SLA"
    located = sources._locate(params, schema)
    if located is None:
        return "absent"
    files, reader = located
    exported: list[Path] = []
    tz = ts.timezone or params.timezone
    if reader.name in ("csv", "xlsx"):
        exported = files
        files = [source_cache.converted(f, reader, schema, ts, tz) for f in files]
        if any(source_cache.wrong_field_rows(f) for f in files):
            return "rows with a wrong number of cells"
    elif reader.name != "parquet":
        return f"{reader.name} files"
    arrow = [sources._parquet_schema(f) for f in files]
    selected = sources._select_columns(
        [n for n in arrow[0].names if not exported or n != source_cache.ROW_COLUMN],
        schema,
        ts,
        files[0].name,
    )
    kinds: dict[str, ck.SourceKind] = {}
    parsed: dict[str, Parsed] = {}
    for source, canonical in selected.items():
        col = schema.column(canonical)
        if canonical in ts.values and col.kind != "category":
            return f"value map on column '{canonical}'"
        types = {a.field(source).type for a in arrow if source in a.names}
        if len(types) != 1 or any(source not in a.names for a in arrow):
            return f"column '{source}' typed differently across files"
        arrow_type = types.pop()
        kind = _kind_of(arrow_type, col.kind)
        if kind is None and exported:
            how = _parsed_kind(arrow_type, col.kind)
            if how is not None:
                kinds[canonical] = "text" if how != "naive" else "timestamp"
                parsed[canonical] = Parsed(how)
                continue
        if kind is None or (col.kind == "category" and kind != "text"):
            return f"column '{source}' needs parsing"
        kinds[canonical] = kind
    for other in files[1:]:
        if (
            sources._select_columns(sources._parquet_schema(other).names, schema, ts, "")
            != selected
        ):
            return "files with different columns"
    bounds = None
    groups = [list(range(pq.ParquetFile(f).metadata.num_row_groups)) for f in files]
    time_col = sources._source_column(selected, schema.time_column)
    if window is not None and time_col is not None and not exported:
        window = selection_of(table, window)
        arrow_window = sources._arrow_window(time_col, arrow[0].field(time_col).type, window, tz)
        assert arrow_window is not None  # an aware timestamp (checked above)
        condition = arrow_window[0]
        bounds = (window.start, window.end)
        groups = [
            [
                rg.id
                for rg in next(iter(ds.dataset(f, format="parquet").get_fragments()))
                .subset(filter=condition)
                .row_groups
            ]
            for f in files
        ]
    plan = Plan(table, files, selected, kinds, ts, tz, params.timezone, groups, bounds)
    plan.sources, plan.fmt, plan.parsed = exported, reader.name, parsed
    plan.categories = _categories(connection(params), plan, schema)
    plan.covered = _groups_cover(plan, time_col)
    if parsed:
        why = _plan_parsing(params, plan, schema)
        if why is not None:
            return why
    return plan


def _groups_cover(plan: Plan, time_col: str | None) -> bool:
    """Whether the row groups ``plan.groups`` hold every row the engine reads.

    The engine reads the rows in the window or without a time (``_raw``); a row group
    left out by its statistics holds none when its time column has no null either.
    """
    if plan.bounds is None:
        return True
    if time_col is None:
        return False
    for path, groups in zip(plan.files, plan.groups, strict=True):
        metadata = pq.ParquetFile(path).metadata
        names = [metadata.schema.column(j).name for j in range(metadata.num_columns)]
        if time_col not in names:
            return False
        at = names.index(time_col)
        for g in set(range(metadata.num_row_groups)) - set(groups):
            stats = metadata.row_group(g).column(at).statistics
            if stats is None or stats.null_count is None or stats.null_count > 0:
                return False
    return True


def _parsed_kind(arrow_type: pa.DataType, kind: str) -> str | None:
    """How the engine parses a converted column validation would parse (None: it cannot)."""
    if sources._is_text(arrow_type) and kind in ("timestamp", "int", "float"):
        return kind
    if pa.types.is_timestamp(arrow_type) and arrow_type.tz is None and kind == "timestamp":
        return "naive"
    return None


def _plan_parsing(params: Params, plan: Plan, schema: TableSchema) -> str | None:
    """Fill in how each parsed column is parsed, or say why the pandas path must read it:
    the zone's offsets, and validation's values of the odd texts (``parse_engine``)."""
    earliest, latest = plausible_range(
        params.quality.earliest_date, params.quality.max_days_ahead, params.timezone
    )
    zone = None
    if any(p.kind in ("timestamp", "naive") for p in plan.parsed.values()):
        if earliest is None or latest is None:
            return "naive times without both plausible-date limits"
        margin = pd.Timedelta(days=2)
        # as far as the latest plausible time of a column parsed (later for a promise)
        last = max(latest_plausible(schema.column(name), latest) or latest for name in plan.parsed)
        zone = pe.zone_between(plan.tz, earliest - margin, last + margin)
        if not pe.agrees_with_pandas(zone):
            return f"daylight-saving changes of {plan.tz} pandas resolves its own way"
    con = connection(params)
    raw = _raw(con, plan, schema)
    location = ", ".join(str(f) for f in plan.exported)
    for name, how in plan.parsed.items():
        how.zone = zone
        if how.kind == "naive":
            continue
        text = ck.stripped_text(raw[ck.raw_name(name)])
        if how.kind == "timestamp":
            how.patterns = pe.plain_patterns(plan.ts.timestamp_format)
            plain = pe.is_plain_timestamp(text, how.patterns)
        else:
            plain = pe.is_plain_number(text)
        odd_rows = raw.mutate(__text=text).filter(text.notnull() & ~plain)
        odd = (
            con.to_pyarrow(
                odd_rows.group_by("__text")
                .aggregate(__first=odd_rows[_POS].min())
                .order_by("__first")
                .limit(pe.MAX_ODD + 1)
            )
            .column("__text")
            .to_pylist()
        )
        if len(odd) > pe.MAX_ODD:
            return f"column '{name}' has over {pe.MAX_ODD:,} values in no plain format"
        if odd:
            how.odd = _validation_values(plan, schema.column(name), odd, location)
    return None


def _validation_values(plan: Plan, col: Any, texts: list[str], location: str) -> dict[str, Any]:
    """Validation's value of each text (UTC microseconds or a float; None: unusable)."""
    frame = pd.DataFrame({col.name: pd.Series(texts, dtype="str")})
    raw = RawTable(
        plan.table,
        frame,
        SourceInfo(plan.table, location, plan.fmt, len(frame), None),
        plan.tz,
        plan.ts.timestamp_format,
    )
    coerced = _coerce(raw, col, frame[col.name], plan.platform_tz)
    out: dict[str, Any] = {}
    if col.kind == "timestamp":
        utc = coerced.values.dt.tz_convert("UTC").dt.as_unit("us").dt.tz_localize(None)
        micros = utc.to_numpy().astype("int64")
        for i, text in enumerate(texts):
            out[text] = None if coerced.bad[i] else int(micros[i])
        return out
    values = coerced.values.to_numpy(dtype="float64", na_value=np.nan)
    for i, text in enumerate(texts):
        out[text] = None if coerced.bad[i] else float(values[i])
    return out


def _categories(con: BaseBackend, plan: Plan, schema: TableSchema) -> dict[str, ck.CategoryMap]:
    """Each category column's distinct source values, mapped by validation's functions.

    The distinct values are the dictionaries of the row groups read, as the pandas path
    sees them (a dictionary may list a value no row of the window holds: it still becomes
    a category there). A column chunk whose data pages are all dictionary-encoded holds
    no value outside its dictionary page: of such chunks only the dictionary is read
    (``_dictionary_chunks``), not every row's index.
    """
    wanted = {s: c for s, c in plan.selected.items() if schema.column(c).kind == "category"}
    if not wanted:
        return {}
    values: dict[str, set[str]] = {c: set() for c in wanted.values()}
    for path, groups in zip(plan.files, plan.groups, strict=True):
        if not groups:
            continue
        encoded = _dictionary_chunks(con, path, list(wanted))
        whole = [g for g in groups if any((g, s) not in encoded for s in wanted)]
        with pq.ParquetFile(path, read_dictionary=list(wanted)) as pf:
            parts = [pf.read_row_groups(whole, columns=list(wanted))] if whole else []
            for g in groups:
                if g not in whole and pf.metadata.row_group(g).num_rows:
                    # The first row brings the row group's whole dictionary page along.
                    first = next(
                        pf.iter_batches(batch_size=1, row_groups=[g], columns=list(wanted))
                    )
                    parts.append(pa.Table.from_batches([first]))
        for part in parts:
            for source, canonical in wanted.items():
                for chunk in part.column(source).chunks:
                    values[canonical].update(chunk.dictionary.to_pylist())
    out = {}
    for canonical, found in values.items():
        uniques = sorted(found)
        raw = pd.Series(pd.Categorical(uniques, categories=uniques), dtype="category")
        mapped = sources._map_values(raw, plan.ts.values.get(canonical, {}), as_category=True)
        coerced = _coerce_category(mapped, schema.column(canonical).allowed)
        canon = coerced.values.astype(object).where(coerced.values.notna(), None)
        text = mapped.astype(object)
        out[canonical] = ck.CategoryMap(
            canonical=dict(zip(uniques, canon.tolist(), strict=True)),
            unknown=frozenset(u for u, b in zip(uniques, coerced.bad, strict=True) if b),
            categories=tuple(str(c) for c in coerced.values.cat.categories),
            nul=frozenset(u for u, t in zip(uniques, text, strict=True) if _has(t, "\x00")),
            long=frozenset(
                u
                for u, t in zip(uniques, text, strict=True)
                if isinstance(t, str) and len(t) > 1000
            ),
            garbled=frozenset(u for u, t in zip(uniques, text, strict=True) if _has(t, "\ufffd")),
        )
    return out


# Parquet's encodings of data pages whose values are indices into the dictionary page.
_DICTIONARY_ENCODINGS = frozenset({"RLE_DICTIONARY", "PLAIN_DICTIONARY"})


def _dictionary_chunks(con: BaseBackend, path: Path, columns: list[str]) -> set[tuple[int, str]]:
    """(row group, column) of the column chunks of ``columns`` in ``path`` whose data pages
    are all dictionary-encoded, as the footer's page encoding statistics record them.

    A writer whose dictionary outgrows its limit falls back to plain pages within a chunk
    (values outside the dictionary page); a footer without page statistics proves nothing.
    Either way the chunk is not listed, and is read whole.
    """
    literal = "'" + str(path).replace("'", "''") + "'"
    rows = con.raw_sql(
        f"SELECT row_group_id, path_in_schema, encoding_stats FROM parquet_metadata({literal})"
    ).fetchall()
    out = set()
    for group, column, stats in rows:
        if column not in columns or not stats:
            continue
        data = [s for s in stats if s["page_type"] in ("DATA_PAGE", "DATA_PAGE_V2")]
        if all(s["encoding"] in _DICTIONARY_ENCODINGS for s in data):
            out.add((int(group), str(column)))
    return out


def _has(value: object, char: str) -> bool:
    return isinstance(value, str) and char in value


# --- the table on the engine --------------------------------------------------------------


def _raw(
    con: BaseBackend, plan: Plan, schema: TableSchema, names: list[str] | None = None
) -> ir.Table:
    """The source rows the pandas path would read: the selected columns, position, row.

    ``names``: the engine's names of the files (``source_copy.placeholders``).
    """
    parts = []
    for i, path in enumerate(plan.files):
        named = {"table_name": names[i]} if names else {}
        t = con.read_parquet(path, file_row_number=True, **named)
        row = t[source_cache.ROW_COLUMN] if plan.cached else t.file_row_number + 1
        parts.append(
            t.select(
                **{ck.raw_name(c): t[s] for s, c in plan.selected.items()},
                **{
                    _POS: t.file_row_number + i * _FILE_STRIDE,
                    _ROW: row,
                },
            )
        )
    raw = parts[0] if len(parts) == 1 else ibis.union(*parts, distinct=False)
    time_col = schema.time_column
    if plan.bounds is not None and time_col is not None:
        when = raw[ck.raw_name(time_col)]
        lo, hi = (ck._instant(b) for b in plan.bounds)
        raw = raw.filter(((when >= lo) & (when < hi)) | when.isnull())
    return raw


def _base(raw: ir.Table, plan: Plan, schema: TableSchema, dirty: set[str]) -> ir.Table:
    """The raw rows with each column's canonical value and its missing and bad flags.

    Text columns not ``dirty`` are their own canonical value (see ``screen``).
    """
    staged, staging = _parsing_stages(raw, plan)
    columns: dict[str, ir.Value] = {}
    for col in schema.columns:
        kind = plan.kinds.get(col.name, "absent")
        source = staged[ck.raw_name(col.name)] if kind != "absent" else None
        how = plan.parsed.get(col.name)
        if how is not None and source is not None:
            value, missing, parsed_bad = _parse(staged, col.name, how)
            columns[ck.value_name(col.name)] = value
            columns[ck.missing_name(col.name)] = missing
            if parsed_bad is not None:
                columns[ck.bad_name(col.name)] = parsed_bad
            continue
        if source is not None and _as_read(plan, col.name):
            # Every value is its own canonical value: no CASE over the rows.
            columns[ck.value_name(col.name)] = source
            columns[ck.missing_name(col.name)] = source.isnull()
            continue
        value, missing, bad = ck.coerce(
            source if source is not None else ibis.literal(None),
            col,
            kind,
            plan.categories.get(col.name),
            clean=col.name not in dirty,
        )
        columns[ck.value_name(col.name)] = value
        columns[ck.missing_name(col.name)] = missing
        if bad is not None:
            columns[ck.bad_name(col.name)] = bad
    base = staged.mutate(**columns)
    return base.drop(*staging) if staging else base


def _as_read(plan: Plan, column: str) -> bool:
    """Whether a category column's canonical values are its source values, as read: each
    value the engine reads maps to itself and none is unknown."""
    category = plan.categories.get(column)
    return (
        category is not None
        and plan.covered
        and plan.kinds.get(column) == "text"
        and not category.unknown
        and all(k == v for k, v in category.canonical.items())
    )


# Columns of the parsing stages (see _parsing_stages), per parsed column.
_TEXT = "__text_"
_LOCAL = "__local{}_"
_PARSED = "__parsed_"


def _parsing_stages(raw: ir.Table, plan: Plan) -> tuple[ir.Table, list[str]]:
    """``raw`` with the parts of each parsed column's parse as columns, and their names.

    SQL is a tree: a parse written as one expression repeats its stripped text in each
    field it extracts, and its wall-clock microseconds in each daylight-saving change,
    and the whole parse in each check reading the value. One CSV table of orders made
    queries of half a megabyte of SQL, each taking seconds to plan whatever the rows.
    In stages (the stripped text; the microseconds per pattern; the UTC microseconds or
    the number) every part is written once and referred to by name.
    """
    parsed = {
        name: how for name, how in plan.parsed.items() if plan.kinds.get(name, "absent") != "absent"
    }
    if not parsed:
        return raw, []
    texts = {
        _TEXT + name: ck.stripped_text(raw[ck.raw_name(name)])
        for name, how in parsed.items()
        if how.kind != "naive"
    }
    staged = raw.mutate(**texts) if texts else raw
    local: dict[str, ir.Value] = {}
    for name, how in parsed.items():
        if how.kind == "timestamp":
            for i, pattern in enumerate(how.patterns):
                local[_LOCAL.format(i) + name] = pe.plain_micros(staged[_TEXT + name], pattern)
        elif how.kind == "naive":
            local[_LOCAL.format(0) + name] = pe.epoch_us(staged[ck.raw_name(name)])
    staged = staged.mutate(**local) if local else staged
    micros: dict[str, ir.Value] = {}
    for name, how in parsed.items():
        if how.kind == "timestamp":
            assert how.zone is not None
            micros[_PARSED + name] = pe.utc_micros(
                staged[_TEXT + name],
                [staged[_LOCAL.format(i) + name] for i in range(len(how.patterns))],
                how.patterns,
                how.zone,
                how.odd,
            )
        elif how.kind == "naive":
            assert how.zone is not None
            micros[_PARSED + name] = pe.local_to_utc(staged[_LOCAL.format(0) + name], how.zone)
        else:
            micros[_PARSED + name] = pe.parsed_number(staged[_TEXT + name], how.odd)
    staged = staged.mutate(**micros)
    return staged, [c for c in staged.columns if c not in raw.columns]


def _parse(
    staged: ir.Table, name: str, how: Parsed
) -> tuple[ir.Value, ir.BooleanValue, ir.BooleanValue | None]:
    """(value, missing, bad) of a column the engine parses (see ``parse_engine``), from
    its parsing stages in ``staged`` (``_parsing_stages``)."""
    parsed = staged[_PARSED + name]
    if how.kind == "naive":
        return pe.micros_to_instant(parsed), staged[ck.raw_name(name)].isnull(), None
    text = staged[_TEXT + name]
    if how.kind == "timestamp":
        return pe.instant_parts(text, parsed)
    return pe.number_parts(text, parsed, how.kind)


@dataclass
class Screen:
    """What a byte-level pass over the text columns found (see ``screen``)."""

    # Text columns holding a value the rules may flag or strip (placeholder, whitespace at
    # an edge, NUL, U+FFFD, more than MAX_FIELD_CHARS bytes): those get the full rules.
    dirty: set[str]
    # Positions of rows whose key fingerprint repeats (None: keys not screened).
    candidates: np.ndarray | None


def screen(plan: Plan, schema: TableSchema) -> Screen:
    """Screen the text columns of the row groups read, one row group at a time.

    Values are judged by their bytes (``validate._may_need_cleaning``), Arrow's substring
    search and byte lengths, a superset of what the rules flag: a column none of whose
    values is suspect is exactly its own canonical value, and needs no string predicate
    on the engine. Keys of text columns are fingerprinted as validation does; rows whose
    fingerprint repeats are the only candidates for a duplicate key.
    """
    text = [
        c.name
        for c in schema.columns
        if plan.kinds.get(c.name) == "text" and c.kind in ("id", "text")
    ]
    source_of = {c: s for s, c in plan.selected.items()}
    keyed = bool(schema.key) and all(k in text for k in schema.key)
    dirty: set[str] = set()
    prints: list[np.ndarray] = []
    starts: list[int] = []  # position of each fingerprinted row group's first row
    if not text:
        return Screen(dirty, None)
    for i, (path, groups) in enumerate(zip(plan.files, plan.groups, strict=True)):
        with pq.ParquetFile(path) as pf:
            sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)]
            offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
            for g in groups:
                part = pf.read_row_group(g, columns=[source_of[c] for c in text])
                combined = np.zeros(part.num_rows, dtype=np.uint64) if keyed else None
                for name in text:
                    column = part.column(source_of[name])
                    if name not in dirty and _suspect(column):
                        dirty.add(name)
                    if combined is not None and name in schema.key:
                        for chunk_at, chunk in _chunks(column):
                            fp = _fingerprint_block(chunk.cast(pa.large_string()))
                            span = slice(chunk_at, chunk_at + len(chunk))
                            combined[span] = _spread((combined[span] ^ fp) * _MIX)
                if combined is not None:
                    prints.append(combined)
                    starts.append(int(offsets[g]) + i * _FILE_STRIDE)
    if not keyed or any(k in dirty for k in schema.key):
        return Screen(dirty, None)
    if not prints:
        return Screen(dirty, np.zeros(0, dtype=np.int64))
    hashes = np.concatenate(prints)
    ordered = np.sort(hashes)
    repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    if not len(repeated):
        return Screen(dirty, np.zeros(0, dtype=np.int64))
    at = np.minimum(np.searchsorted(repeated, hashes), len(repeated) - 1)
    found = np.flatnonzero(repeated[at] == hashes)
    # Index in the fingerprints -> position: the row group it falls in, plus the offset.
    firsts = np.concatenate([[0], np.cumsum([len(p) for p in prints])])
    group = np.searchsorted(firsts, found, side="right") - 1
    return Screen(dirty, np.asarray(starts, dtype=np.int64)[group] + (found - firsts[group]))


def _chunks(column: pa.ChunkedArray) -> list[tuple[int, pa.Array]]:
    out, at = [], 0
    for chunk in column.chunks:
        out.append((at, chunk))
        at += len(chunk)
    return out


def _suspect(column: pa.ChunkedArray) -> bool:
    """Whether a value may be stripped, be a placeholder, or fail a text rule.

    The test of ``validate._may_need_cleaning`` (length, first and last byte), of
    ``MAX_FIELD_CHARS`` and of ``_has_bytes``, on the Arrow buffers as they come.
    """
    for chunk in column.chunks:
        if not len(chunk) or chunk.null_count == len(chunk):
            continue
        if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
            chunk = chunk.cast(pa.large_string())
        wide = pa.types.is_large_string(chunk.type)
        _, offsets_buf, data_buf = chunk.buffers()
        every = (
            np.frombuffer(offsets_buf, dtype=np.int64)
            if wide
            else np.frombuffer(offsets_buf, dtype=np.int32)
        )
        offsets = every[chunk.offset : chunk.offset + len(chunk) + 1]
        lengths = np.diff(offsets)
        if bool((lengths > MAX_FIELD_CHARS).any()):
            return True
        flag = lengths <= _LONGEST_TOKEN
        data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else _NO_BYTES
        if len(data):
            # take, not indexing: half the time of the gathers (0.6 s of CPU for 75M ids).
            flag |= _SPACE_FIRST.take(np.take(data, offsets[:-1], mode="clip"))
            # An empty value's last byte is its neighbour's: it is flagged by its length.
            flag |= _SPACE_LAST.take(np.take(data, offsets[1:] - 1, mode="clip"))
        if chunk.null_count:
            flag &= chunk.is_valid().to_numpy(zero_copy_only=False)
        if bool(flag.any()):
            return True
        if _has_bytes(data, offsets):
            return True
    return False


def _has_bytes(data: np.ndarray, offsets: np.ndarray) -> bool:
    """Whether the values' bytes hold a NUL or a U+FFFD (EF BF BD in UTF-8) anywhere.

    A byte scan of the whole data buffer: a superset (a sequence across two values counts
    too), far cheaper than a substring search per value.
    """
    data = data[int(offsets[0]) : int(offsets[-1])]
    if not len(data):
        return False
    if bool((data == 0).any()):
        return True
    lead = np.flatnonzero(data[:-2] == 0xEF)
    return bool(((data[lead + 1] == 0xBF) & (data[lead + 2] == 0xBD)).any())


def _with_duplicates(
    con: BaseBackend, base: ir.Table, schema: TableSchema, candidates: np.ndarray | None
) -> tuple[ir.Table, ir.BooleanValue | None]:
    """``base`` with the first position and row of each repeated key, and the duplicate flag.

    ``candidates``: the only positions that can hold a repeated key (None: any).
    """
    if not schema.key or (candidates is not None and not len(candidates)):
        return base, None
    keys = [ck.value_name(k) for k in schema.key]
    complete = ibis.and_(*[base[k].notnull() for k in keys])
    present = base.filter(complete)
    if candidates is not None:
        listed = ibis.memtable(pa.table({"p": pa.array(candidates, pa.int64())}))
        present = present.filter(present[_POS].isin(listed.p))
    repeated = (
        present.group_by([present[k].name(f"__key{i}") for i, k in enumerate(keys)])
        .aggregate(
            **{_FIRST: present[_POS].min(), _FIRST_ROW: present[_ROW].argmin(present[_POS])},
            __n=present.count(),
        )
        .filter(lambda t: t.__n > 1)
    )
    if int(con.execute(repeated.count())) == 0:
        return base, None
    joined = base.left_join(
        repeated, [base[k] == repeated[f"__key{i}"] for i, k in enumerate(keys)]
    ).select(*base.columns, _FIRST, _FIRST_ROW)
    flag = joined[_FIRST].notnull() & (joined[_POS] != joined[_FIRST])
    return joined, flag


@contextmanager
def _in_order(con: BaseBackend) -> Iterator[None]:
    """Rows written in the order they are read: the snapshot keeps the source's order.

    The shared DuckDB lets results come in any order (its aggregates are sorted later);
    a snapshot is read by code that may depend on the rows' order, as pandas kept it.
    The order is also the snapshot's layout: events exported in time order keep row
    groups whose min/max times let a query of one week skip the others (no sort needed).
    """
    raw_sql = getattr(con, "raw_sql", None)
    if raw_sql is None:
        yield
        return
    before = con.raw_sql("SELECT current_setting('preserve_insertion_order')").fetchone()
    raw_sql("SET preserve_insertion_order = true")
    try:
        yield
    finally:
        value = "true" if before is None or before[0] else "false"
        raw_sql(f"SET preserve_insertion_order = {value}")


def _first_failing(found: list[ck.Check]) -> ir.IntegerValue | None:
    """Index (in ``found``) of a row's first failing check that sets rows aside."""
    cases = [(c.flag, i) for i, c in enumerate(found) if c.rule not in KEPT_RULES]
    if not cases:
        return None
    return ibis.cases(*cases, else_=ibis.null("int64"))


# Rows per row group of a snapshot table: DuckDB's own, so kernels scan it as before.
ROW_GROUP_ROWS = 122_880


def _writer(out: Path, target: pa.Schema, schema: TableSchema) -> pq.ParquetWriter:
    """Arrow's Parquet writer of a snapshot table: snappy, as DuckDB writes, dictionary
    pages for the category columns only (ids are nearly all distinct)."""
    categories = [c.name for c in schema.columns if c.kind == "category"]
    return pq.ParquetWriter(out, target, compression="snappy", use_dictionary=categories)


class _Background:
    """Batches written to a Parquet writer by a second thread while the next are read.

    Arrow's writer releases the GIL while it encodes, so reading the next batch from the
    engine and encoding this one overlap; a few batches wait at most (bounded memory).
    """

    def __init__(self, writer: pq.ParquetWriter, depth: int = 4) -> None:
        self._writer = writer
        self._queue: queue.Queue[pa.RecordBatch | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="parquet-writer", daemon=True)

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._writer.write_batch(batch)
                except BaseException as exc:  # re-raised in the reading thread
                    self._error = exc

    def put(self, batch: pa.RecordBatch) -> None:
        """Queue ``batch`` (waits while the queue is full); raises the writer's error."""
        if self._error is not None:
            raise self._error
        self._queue.put(batch)

    def __enter__(self) -> _Background:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None and exc[0] is None:
            raise self._error


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _among(positions: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """Which ``positions`` (a batch's) are among ``excluded`` (sorted).

    Only the excluded positions within the batch's range are looked up: rows of orders
    not loaded are few and lie together (orders created before the selection), and a
    lookup of all of them in every batch cost more than the rest of the batch's checks.
    """
    if not len(positions):
        return np.zeros(0, dtype=bool)
    lo = np.searchsorted(excluded, positions.min(), side="left")
    hi = np.searchsorted(excluded, positions.max(), side="right")
    if lo == hi:
        return np.zeros(len(positions), dtype=bool)
    return np.isin(positions, excluded[lo:hi])


def _write_rows(
    con: BaseBackend,
    clean: ir.Table,
    schema: TableSchema,
    out: Path,
    excluded: np.ndarray | None,
) -> int:
    """Write the canonical columns of ``clean`` to ``out`` in the source's order, leaving
    out the rows at the positions ``excluded``; returns the rows written.

    The rows are sorted by position: the screened path's rows do not keep the source's
    order by themselves (the duplicate flag comes from a join, and even without one a
    table of small row groups came out of the engine in another order, with insertion
    order preserved). They stream from DuckDB as Arrow batches and are written by
    Arrow's Parquet writer, which takes about a third of the CPU of DuckDB's ``COPY``
    for the same file.
    """
    drop = np.sort(excluded) if excluded is not None and len(excluded) else None
    columns = {c.name: clean[ck.value_name(c.name)] for c in schema.columns}
    ordered = clean.order_by(_POS)
    expr = ordered.select(_POS, **columns) if drop is not None else ordered.select(**columns)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    # Ibis's to_pyarrow_batches fails on duckdb 2.0; its relation streams.
    reader = con._to_duckdb_relation(expr).to_arrow_reader(ROW_GROUP_ROWS)
    target = pa.schema([f for f in reader.schema if f.name != _POS])
    with _writer(out, target, schema) as w:
        for batch in reader:
            if drop is not None:
                keep = ~_among(batch.column(_POS).to_numpy(), drop)
                batch = pa.RecordBatch.from_arrays(
                    batch.filter(pa.array(keep)).columns[1:], schema=target
                )
            if batch.num_rows:
                w.write_batch(batch)
                written += batch.num_rows
    return written


# A source is copied into the snapshot (``source_copy``) when at least this share of its
# rows is kept: a copy of a file mostly outside the window would hold more than the week.
COPY_SHARE = 0.9


def copyable(
    con: BaseBackend, plan: Plan, schema: TableSchema, not_loaded: np.ndarray | None
) -> bool:
    """Whether the snapshot can keep ``plan``'s table as copies of its Parquet files and
    a view (``source_copy``) instead of writing its rows.

    When every column is read as it is (typed, aware timestamps, categories whose
    values are canonical, no parsing) the view costs a query nothing the written file
    would not; and when the rows in the window (counted on the engine), less those of
    orders not loaded (``not_loaded``), are most of the rows, the copy is not much
    larger than the table.
    """
    if plan.fmt != "parquet" or plan.cached or plan.parsed:
        return False
    if any(
        plan.kinds.get(c.name) is not None and not _as_read(plan, c.name)
        for c in schema.columns
        if c.kind == "category"
    ):
        return False
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in plan.files)
    # The rows in the window or without a time: what the pass reads (its row groups
    # skipped by their statistics, so only the few that straddle it are read).
    inside = int(con.execute(_raw(con, plan, schema).count())) if plan.bounds else total
    inside -= len(not_loaded) if not_loaded is not None else 0
    return total > 0 and inside >= COPY_SHARE * total


def load(
    con: BaseBackend,
    params: Params,
    plan: Plan,
    selection: Window,
    week_window: Window,
    out: Path,
    orders: Path | None,
    plausible: tuple[pd.Timestamp | None, pd.Timestamp | None],
    not_loaded: np.ndarray | None = None,
) -> Loaded:
    """Validate ``plan``'s table on the engine and write its clean rows in ``selection`` to
    ``out`` (rows of orders not in the Parquet file ``orders`` left out). Raises
    TooManyQuarantinedError as validation does.

    ``not_loaded``: the positions ``orders_not_loaded`` found for the table, if known.
    """
    table = plan.table
    schema = SCHEMAS[table]
    location = ", ".join(str(f) for f in plan.exported)
    source = source_name(location)
    missing_required = [c for c in schema.required if c not in plan.kinds]
    if missing_required:
        raise MissingColumnError(source, missing_required[0], list(plan.selected))
    copies = source_copy.folder_of(out)
    if copyable(con, plan, schema, not_loaded if orders is not None else None):
        # The rows are validated in the copies, and the snapshot keeps them: what the
        # run reads is what was validated, whatever becomes of the export.
        files = source_copy.copy_files(plan.files, copies)
        plan = dataclasses.replace(plan, files=files, copied_from=plan.files)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The copies when there are: the very bytes the snapshot keeps.
        digest = pool.submit(
            sources._files_sha256, plan.files if plan.copied_from else plan.exported
        )
        args = (con, params, plan, selection, week_window, out, orders, plausible, source)
        # One pass over the rows when every text value is its own canonical value and no
        # key repeats (what real exports are); else, or when that pass finds otherwise,
        # the screened path with its separate counting query.
        try:
            done = _one_pass(*args, not_loaded=not_loaded)
            if done is None:
                done = _screened(*args)
        finally:
            if plan.copied_from and not source_copy.is_view(out):
                # Written instead (or failed): the copies are of no further use.
                shutil.rmtree(copies, ignore_errors=True)
        info = SourceInfo(table, location, plan.fmt, done.n, digest.result())
    return Loaded(
        info=info,
        loaded=done.n,
        kept=done.n - done.n_bad,
        entries=done.entries,
        quarantined=done.quarantined,
        in_window=done.in_window,
        written=done.written,
        in_week=done.in_week,
        week_set_aside=done.week_bad,
        provided=[c for c in plan.selected.values() if c in schema.names],
        dtypes=ck.pandas_dtypes(schema, plan.categories, params.timezone),
    )


def snapshot_table(con: BaseBackend, path: Path) -> ir.Table:
    """The snapshot's table whose written file would be ``path``, as a table of ``con``:
    the file, or the view over its copies (``source_copy``)."""
    if source_copy.is_view(path):
        return source_copy.table(con, path)
    return con.read_parquet(path)


@dataclass
class _Done:
    """What validating and writing one table found."""

    n: int  # rows read
    n_bad: int  # rows set aside
    entries: list[QuarantineEntry]
    quarantined: pd.DataFrame
    in_window: int  # clean rows in the selection window
    written: int
    in_week: int  # clean rows in the report week
    week_bad: int  # rows set aside in the report week


def _orders_not_loaded(
    con: BaseBackend, rows: ir.Table, table: str, orders: Path | None
) -> np.ndarray | None:
    """Positions of ``rows`` whose order is not among the orders loaded (None: no check)."""
    if orders is None or table not in ORDER_TABLES:
        return None
    loaded_ids = snapshot_table(con, orders).select("order_id")
    ids = rows[ck.value_name("order_id")]
    member = ids.isin(loaded_ids.order_id)
    if table == "tickets":
        member = member | ids.isnull()
    # Only the few rows of orders not loaded come back, by position: they are left out of
    # the rows streamed to the snapshot, which keep the source's order without a join (a
    # join gives its rows in no particular order and would need a sort).
    return (
        con.to_pyarrow(rows.filter(~member.fill_null(False)).select(_POS)).column(_POS).to_numpy()
    )


def orders_not_loaded(
    con: BaseBackend, plans: list[Plan], selection: Window, orders: Path
) -> dict[str, np.ndarray]:
    """Per order table of ``plans``, the positions of its rows in ``selection`` whose order
    is not among the orders loaded (the Parquet file ``orders``), as ``_orders_not_loaded``
    finds them for the one pass (text values as they are).

    One anti-join for every table: the orders' ids are read and hashed once, not once
    per table; only the few positions come back.
    """
    parts = []
    tables = [plan.table for plan in plans if plan.table in ORDER_TABLES]
    for i, plan in enumerate(p for p in plans if p.table in ORDER_TABLES):
        schema = SCHEMAS[plan.table]
        base = _base(_raw(con, plan, schema), plan, schema, set())
        rows = base.filter(ck.in_selection(base, plan.table, selection))
        ids = rows[ck.value_name("order_id")]
        if plan.table == "tickets":
            # A ticket without an order belongs to no order: never left out.
            rows = rows.filter(ids.notnull())
            ids = rows[ck.value_name("order_id")]
        parts.append(
            rows.select(
                __table=ibis.literal(i, "int16"), **{_POS: rows[_POS]}, __id=ids.cast("string")
            )
        )
    if not parts:
        return {}
    every = parts[0] if len(parts) == 1 else ibis.union(*parts, distinct=False)
    loaded_ids = snapshot_table(con, orders).select("order_id")
    member = every.__id.isin(loaded_ids.order_id).fill_null(False)
    found = con.to_pyarrow(every.filter(~member).select("__table", _POS))
    which = found.column("__table").to_numpy()
    positions = found.column(_POS).to_numpy()
    return {table: np.sort(positions[which == i]) for i, table in enumerate(tables)}


# A row's check outcomes are the bits of one int64; more checks take the screened path.
_MASK_BITS = 62
_MASK = "__mask"
_SEL = "__sel"
_WEEK = "__week"
_KEY_HASH = "__key_hash"


class _Fingerprints:
    """The key fingerprints (the engine's 64-bit hashes) of the rows one pass streams,
    to tell whether one repeats.

    Kept in two halves by their lowest bit, as the batches come: equal fingerprints fall
    in the same half, so the halves are sorted apart, on two threads (numpy's sort lets
    go of the interpreter). On 24M order lines the sort took 2.3 s on one thread.
    """

    def __init__(self) -> None:
        self.halves: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])

    def add(self, prints: np.ndarray) -> None:
        # Copies, by the indexing: a view would keep the engine's whole batch alive.
        odd = (prints & 1).astype(bool)
        self.halves[0].append(prints[~odd])
        self.halves[1].append(prints[odd])

    def repeat(self) -> bool:
        """Whether a fingerprint occurs twice."""
        with ThreadPoolExecutor(2) as pool:
            return any(pool.map(_repeats, [np.concatenate(h) for h in self.halves if h]))


def _repeats(prints: np.ndarray) -> bool:
    prints.sort()  # in place: the half is this call's own
    return bool((prints[1:] == prints[:-1]).any())


def _in_week(base: ir.Table, schema: TableSchema, week_window: Window) -> ir.BooleanValue | None:
    """Rows placed in the report week (None: the table has no time)."""
    if schema.time_column is None:
        return None
    when = base[ck.value_name(schema.time_column)]
    inside = (when >= ck._instant(week_window.start)) & (when < ck._instant(week_window.end))
    return inside.fill_null(False)


# Runs of one first key value longer than this leave the duplicate test to the sort.
_MAX_RUN = 64


@dataclass(frozen=True)
class _Run:
    """Where the key test of the batches so far stands: the last first-column value, and
    the fingerprints of the rows of its run (which the next batch may continue)."""

    value: Any = None
    prints: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))


def _keys_in_runs(
    batch: pa.RecordBatch, key: tuple[str, ...], prints: np.ndarray, last: _Run | None
) -> _Run | None:
    """The test's state after ``batch`` while its keys are shown distinct without a sort;
    None once they are not (then the sort of every fingerprint decides).

    Keys are distinct when the first key column never decreases from row to row (text
    compares by its UTF-8 bytes, the order of its code points, as Python compares
    ``str``) and, within each run of one first value, no key fingerprint (``prints``,
    one per row) repeats: a key can only repeat inside its run. Ids as a system hands
    them out ascend (runs of one row); order lines come order by order (a run per order,
    its SKUs in any order). None as well for a missing key value or a run longer than
    _MAX_RUN. ``last``: the state after the previous batch (``_Run()`` before the first).
    """
    n = batch.num_rows
    if last is None or not n:
        return last
    columns = [batch.column(k) for k in key]
    if any(c.null_count for c in columns):
        return None
    first = columns[0]
    try:
        earlier, later = first.slice(0, n - 1), first.slice(1)
        if n > 1 and pc.all(pc.greater_equal(later, earlier)).as_py() is not True:
            return None
        head = first[0].as_py()
        if last.value is not None and head < last.value:
            return None
        starts = np.flatnonzero(pc.not_equal(later, earlier).to_numpy(zero_copy_only=False)) + 1
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return None
    # The previous batch's last run goes on when this batch starts with its value.
    carried = last.prints if last.value is not None and head == last.value else prints[:0]
    every = np.concatenate([carried, prints]) if len(carried) else prints
    starts = np.concatenate([[0], starts + len(carried)])
    lengths = np.diff(np.append(starts, len(every)))
    if int(lengths.max()) > _MAX_RUN:
        return None
    if int(lengths.max()) > 1:
        run = np.repeat(np.arange(len(starts)), lengths)
        # Each row against the rows 1, 2, ... before it: equal run and fingerprint.
        for d in range(1, int(lengths.max())):
            if bool(((run[d:] == run[:-d]) & (every[d:] == every[:-d])).any()):
                return None
    return _Run(first[n - 1].as_py(), every[starts[-1] :].copy())


def _one_pass(
    con: BaseBackend,
    params: Params,
    plan: Plan,
    selection: Window,
    week_window: Window,
    out: Path,
    orders: Path | None,
    plausible: tuple[pd.Timestamp | None, pd.Timestamp | None],
    source: str,
    not_loaded: np.ndarray | None = None,
) -> _Done | None:
    """Validate and write the table in one scan; None when the screened path must do it.

    Every check's outcome streams with the rows, as the bits of one mask per row, and
    the clean rows of the window are written as they pass. The pass assumes what the
    screen finds of real exports: each text value is its own canonical value, and no key
    repeats. It tests both on the rows as they stream by (the screen's own tests, on the
    same rows), and gives up, removing the file, at the first value that could fail a
    text rule or when a key's fingerprint repeats.
    """
    table = plan.table
    schema = SCHEMAS[table]
    text = [
        c.name
        for c in schema.columns
        if plan.kinds.get(c.name) == "text" and c.kind in ("id", "text")
    ]
    keyed = bool(schema.key) and all(k in text for k in schema.key)
    if schema.key and not keyed:
        return None
    # Copies in the snapshot: their rows are validated, not written (the view is).
    names = source_copy.placeholders(len(plan.files)) if plan.copied_from else None
    base = _base(_raw(con, plan, schema, names), plan, schema, set())
    all_checks = ck.checks(schema, base, plan.kinds, plan.categories, plausible, None, set())
    if len(all_checks) > _MASK_BITS:
        return None
    mask: ir.IntegerValue = ibis.literal(0, "int64")
    for i, c in enumerate(all_checks):
        mask = mask + c.flag.cast("int64") * ibis.literal(1 << i, "int64")
    aside = sum(1 << i for i, c in enumerate(all_checks) if c.rule not in KEPT_RULES)
    selected = ck.in_selection(base, table, selection)
    in_week = _in_week(base, schema, week_window)
    excluded = (
        not_loaded
        if not_loaded is not None and orders is not None
        else _orders_not_loaded(con, base.filter(selected), table, orders)
    )
    if excluded is not None:
        excluded = np.sort(excluded) if len(excluded) else None
    # Rows written stream whole; rows only validated (copies), just what the pass tests.
    columns = [c.name for c in schema.columns if names is None or c.name in text]
    expr = base.select(
        **{
            _POS: base[_POS],
            _MASK: mask,
            _SEL: selected,
            _WEEK: in_week if in_week is not None else ibis.literal(False),
        },
        **{name: base[ck.value_name(name)] for name in columns},
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    n = n_selected = n_week = written = 0
    failing: list[tuple[np.ndarray, ...]] = []  # (position, mask, selected, week) of rows
    prints = _Fingerprints()
    # Where the test of the keys without a sort stands (None: it cannot tell).
    runs: _Run | None = _Run()
    gave_up = False
    with _in_order(con):
        relation = con._to_duckdb_relation(expr)
        if keyed:
            # The key's fingerprint is the engine's hash, computed by its threads as the
            # rows stream (a repeat only sends the table to the screened path).
            keys = ", ".join(_quoted(k) for k in schema.key)
            relation = relation.project(f"*, hash({keys}) AS {_quoted(_KEY_HASH)}")
        # Ibis's to_pyarrow_batches fails on duckdb 2.0; its relation streams.
        reader = relation.to_arrow_reader(ROW_GROUP_ROWS)
        target = pa.schema([reader.schema.field(name) for name in columns])
        with (
            _writer(out, target, schema) if names is None else nullcontext() as w,
            _Background(w) if w is not None else nullcontext() as writing,
        ):
            for batch in reader:
                if any(_suspect(pa.chunked_array([batch.column(t)])) for t in text):
                    gave_up = True
                    break
                if keyed:
                    fingerprints = batch.column(_KEY_HASH).to_numpy()
                    prints.add(fingerprints)
                    runs = _keys_in_runs(batch, schema.key, fingerprints, runs)
                pos = batch.column(_POS).to_numpy()
                bits = batch.column(_MASK).to_numpy()
                sel = batch.column(_SEL).to_numpy(zero_copy_only=False)
                week = batch.column(_WEEK).to_numpy(zero_copy_only=False)
                n += len(pos)
                n_selected += int(sel.sum())
                n_week += int(week.sum())
                bad = bits != 0
                if bad.any():
                    failing.append((pos[bad], bits[bad], sel[bad], week[bad]))
                keep = sel & ((bits & aside) == 0)
                if excluded is not None:
                    keep &= ~_among(pos, excluded)
                kept = int(keep.sum())
                if kept and writing is not None:
                    # Most batches keep every row: no copy of their columns then.
                    rows = batch if kept == len(keep) else batch.filter(pa.array(keep))
                    writing.put(
                        pa.RecordBatch.from_arrays(
                            [rows.column(name) for name in columns], schema=target
                        )
                    )
                written += kept
        reader.close()
    if not gave_up and keyed and runs is None:
        # Keys shown distinct by their runs (_keys_in_runs) need no sort.
        gave_up = prints.repeat()
    if gave_up:
        out.unlink(missing_ok=True)
        return None

    pos_f, bits_f, sel_f, week_f = (
        tuple(np.concatenate(f) for f in zip(*failing, strict=True))
        if failing
        else (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0, bool))
    )
    per_check = [int(((bits_f >> i) & 1).sum()) for i in range(len(all_checks))]
    found_at = [i for i, count in enumerate(per_check) if count > 0]
    found = [all_checks[i] for i in found_at]
    found_rows = [per_check[i] for i in found_at]
    # A row is set aside under its first failing check that sets rows aside.
    hit = np.full(len(bits_f), -1, dtype=np.int64)
    for j, i in enumerate(found_at):
        if found[j].rule in KEPT_RULES:
            continue
        hit[(hit < 0) & (((bits_f >> i) & 1) == 1)] = j
    set_aside = hit >= 0
    n_bad = int(set_aside.sum())
    week_bad = int(week_f[set_aside].sum())
    entries = _entries(con, plan, schema, base, found, found_rows, source, plausible)
    if n and n_bad / n > params.quality.max_quarantine_share:
        out.unlink(missing_ok=True)
        raise TooManyQuarantinedError(
            too_many_message(source, n, n_bad, params.quality.max_quarantine_share, entries)
        )
    order = np.argsort(pos_f[set_aside], kind="stable")
    quarantined = _quarantine_at(plan, found, pos_f[set_aside][order], hit[set_aside][order])
    if names is not None:
        left_out = np.union1d(
            pos_f[set_aside & sel_f], excluded if excluded is not None else np.zeros(0, np.int64)
        )
        _save_view(con, plan, schema, selection, out, names, left_out, (n, n_selected))
    return _Done(
        n=n,
        n_bad=n_bad,
        entries=entries,
        quarantined=quarantined,
        in_window=n_selected - int(sel_f[set_aside].sum()),
        written=written,
        in_week=n_week - week_bad,
        week_bad=week_bad,
    )


# Rows left out of a view by position ranges at most this many; more by a join.
_MAX_RANGES = 64


def _save_view(
    con: BaseBackend,
    plan: Plan,
    schema: TableSchema,
    selection: Window,
    out: Path,
    names: list[str],
    left_out: np.ndarray,
    counts: tuple[int, int],
) -> None:
    """Record the view of a table kept as copies (``source_copy``): the rows the pass
    would have written, those selected less ``left_out`` (positions of the rows set aside
    and of orders not loaded).

    The view is read by every query of the run, so it asks no more than it must: no
    window when every row of the files lies in it (``counts``: the rows the pass read
    and those it found selected, both every row of the files), and the positions left
    out as a few ranges (they lie together: orders created before the window) rather
    than a join.
    """
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in plan.files)
    raw = _raw(con, dataclasses.replace(plan, bounds=None), schema, names)
    base = _base(raw, plan, schema, set())
    keep: list[ir.BooleanValue] = []
    joined = False  # positions left out by a join on excluded.parquet
    if not counts[0] == counts[1] == total:
        keep.append(ck.in_selection(base, plan.table, selection, as_filter=True))
    if len(left_out):
        breaks = np.flatnonzero(np.diff(left_out) != 1)
        firsts = np.concatenate([left_out[:1], left_out[breaks + 1]])
        lasts = np.concatenate([left_out[breaks], left_out[-1:]])
        pos = base[_POS]
        if len(firsts) <= _MAX_RANGES:
            keep.extend(~pos.between(int(a), int(b)) for a, b in zip(firsts, lasts, strict=True))
        else:
            folder = source_copy.folder_of(out)
            listed = source_copy.excluded_table(con, folder, left_out, names[-1])
            keep.append(~pos.isin(listed[source_copy.EXCLUDED_COLUMN]))
            joined = True
    kept = base.filter(*keep) if keep else base
    view = kept.select(**{c.name: kept[ck.value_name(c.name)] for c in schema.columns})
    source_copy.save_view(source_copy.folder_of(out), view, names, joined)


def _screened(
    con: BaseBackend,
    params: Params,
    plan: Plan,
    selection: Window,
    week_window: Window,
    out: Path,
    orders: Path | None,
    plausible: tuple[pd.Timestamp | None, pd.Timestamp | None],
    source: str,
) -> _Done:
    """Screen the text columns, count every check in one query, then write the rows."""
    table = plan.table
    schema = SCHEMAS[table]
    screened = screen(plan, schema)
    base = _base(_raw(con, plan, schema), plan, schema, screened.dirty)
    base, duplicate = _with_duplicates(con, base, schema, screened.candidates)
    all_checks = ck.checks(
        schema, base, plan.kinds, plan.categories, plausible, duplicate, screened.dirty
    )
    time_col = schema.time_column
    in_week = None
    if time_col is not None:
        when = base[ck.value_name(time_col)]
        in_week = (
            (when >= ck._instant(week_window.start)) & (when < ck._instant(week_window.end))
        ).fill_null(False)
    profile: dict[str, Any] = {
        f"c{i}": c.flag.cast("int64").sum() for i, c in enumerate(all_checks)
    }
    profile["n"] = base.count()
    selected = ck.in_selection(base, table, selection)
    profile["selected"] = selected.cast("int64").sum() if time_col is not None else base.count()
    if in_week is not None:
        profile["week"] = in_week.cast("int64").sum()
    counts = con.to_pyarrow(base.aggregate(**profile)).to_pylist()[0]
    n = int(counts["n"])
    found = [c for i, c in enumerate(all_checks) if (counts[f"c{i}"] or 0) > 0]
    found_rows = [
        int(counts[f"c{i}"]) for i, c in enumerate(all_checks) if (counts[f"c{i}"] or 0) > 0
    ]
    first = _first_failing(found)
    n_bad = week_bad = selected_bad = 0
    if first is not None:
        bad_counts = con.to_pyarrow(
            base.aggregate(
                bad=first.notnull().cast("int64").sum(),
                selected=(first.notnull() & selected).cast("int64").sum()
                if time_col is not None
                else first.notnull().cast("int64").sum(),
                week=(first.notnull() & in_week).cast("int64").sum()
                if in_week is not None
                else ibis.literal(0),
            )
        ).to_pylist()[0]
        n_bad, week_bad = int(bad_counts["bad"] or 0), int(bad_counts["week"] or 0)
        selected_bad = int(bad_counts["selected"] or 0)
    entries = _entries(con, plan, schema, base, found, found_rows, source, plausible)
    if n and n_bad / n > params.quality.max_quarantine_share:
        raise TooManyQuarantinedError(
            too_many_message(source, n, n_bad, params.quality.max_quarantine_share, entries)
        )
    quarantined = _quarantine(con, plan, base, found, first)

    clean = base if first is None else base.filter(first.isnull())
    if time_col is not None:
        clean = clean.filter(ck.in_selection(clean, table, selection))
    in_window = int(counts["selected"] or 0) - selected_bad
    excluded = _orders_not_loaded(con, clean, table, orders)
    written = _write_rows(con, clean, schema, out, excluded)
    return _Done(
        n=n,
        n_bad=n_bad,
        entries=entries,
        quarantined=quarantined,
        in_window=in_window,
        written=written,
        in_week=int(counts.get("week") or 0) - week_bad,
        week_bad=week_bad,
    )


# --- what comes back: examples and the rows set aside ---------------------------------------


def read_rows(plan: Plan, positions: np.ndarray) -> pd.DataFrame:
    """The source rows at ``positions`` (sorted) as the pandas path reads them."""
    schema = SCHEMAS[plan.table]
    frames = []
    for i, path in enumerate(plan.files):
        inside = positions[(positions >= i * _FILE_STRIDE) & (positions < (i + 1) * _FILE_STRIDE)]
        rows = inside - i * _FILE_STRIDE
        if not len(rows):
            continue
        dictionary = [s for s, c in plan.selected.items() if schema.column(c).kind == "category"]
        with pq.ParquetFile(path, read_dictionary=dictionary) as pf:
            sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)]
            offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
            groups = sorted(set(np.searchsorted(offsets, rows, side="right") - 1))
            columns = list(plan.selected) + ([source_cache.ROW_COLUMN] if plan.cached else [])
            part = pf.read_row_groups(groups, columns=columns)
        starts = np.concatenate([[0], np.cumsum([sizes[g] for g in groups])])
        local = np.array(
            [
                starts[groups.index(g)] + r - offsets[g]
                for r, g in zip(rows, np.searchsorted(offsets, rows, side="right") - 1, strict=True)
            ],
            dtype=np.int64,
        )
        part = part.take(pa.array(local))
        if not plan.cached:
            part = part.append_column(SOURCE_ROW, pa.array(rows + 1, pa.int64()))
        part = part.rename_columns([plan.selected.get(n, n) for n in part.column_names])
        frames.append(sources._arrow_to_pandas(part))
    if not frames:
        empty = pa.table(
            {
                c: pa.array([], pq.read_schema(plan.files[0]).field(s).type)
                for s, c in plan.selected.items()
            }
            | {SOURCE_ROW: pa.array([], pa.int64())}
        )
        frames.append(sources._arrow_to_pandas(empty))
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return sources._finish(frame, schema, plan.ts)


def _validated(
    plan: Plan,
    raw_frame: pd.DataFrame,
    location: str,
    parsed: dict[str, pd.Series] | None = None,
) -> tuple[RawTable, pd.DataFrame, pd.Series, dict[str, _Coerced]]:
    """A few source rows coerced as validation coerces them.

    ``parsed``: the engine's instants of text timestamp columns, in the rows' order.
    Validation parses such a column in the context of all its values (a guessed format,
    day before month), which a few rows do not carry; the rows keep their text.
    """
    info = SourceInfo(plan.table, location, plan.fmt, len(raw_frame), None)
    raw = RawTable(plan.table, raw_frame, info, plan.tz, plan.ts.timestamp_format)
    typed = raw
    if parsed:
        frame = raw_frame.copy()
        for name, values in parsed.items():
            frame[name] = values.dt.tz_convert(plan.platform_tz).to_numpy()
        typed = RawTable(plan.table, frame, info, plan.tz, plan.ts.timestamp_format)
    return raw, *coerce_table(typed, plan.platform_tz)


def _entries(
    con: BaseBackend,
    plan: Plan,
    schema: TableSchema,
    base: ir.Table,
    found: list[ck.Check],
    found_rows: list[int],
    source: str,
    plausible: tuple[pd.Timestamp | None, pd.Timestamp | None],
) -> list[QuarantineEntry]:
    """The quality entries of the failing checks, their examples described by validation."""
    if not found:
        return []
    # Every check's first rows in one query: each query of the screened table compiles
    # and binds its whole expression again (all checks and parsers), which took seconds
    # per check on a CSV of a thousand rows with a dozen failing rules.
    branches = [
        base.filter(c.flag)
        .order_by(_POS)
        .limit(MAX_EXAMPLES)
        .select(
            _POS,
            **{
                _CHECK: ibis.literal(i, "int64"),
                _FIRST_ROW: (
                    base[_FIRST_ROW].cast("int64")
                    if c.detail == "duplicate"
                    else ibis.null("int64")
                ),
            },
        )
        for i, c in enumerate(found)
    ]
    got = con.to_pyarrow(ibis.union(*branches) if len(branches) > 1 else branches[0])
    picks: list[dict[str, list[Any]]] = [{_POS: [], _FIRST_ROW: []} for _ in found]
    for check, pos, first_row in sorted(
        zip(*(got.column(name).to_pylist() for name in (_CHECK, _POS, _FIRST_ROW)), strict=True)
    ):
        picks[check][_POS].append(pos)
        picks[check][_FIRST_ROW].append(first_row)
    positions = np.unique(np.concatenate([np.asarray(p[_POS], dtype=np.int64) for p in picks]))
    raw_frame = read_rows(plan, positions)
    location = ", ".join(str(f) for f in plan.exported)
    texts = [name for name, how in plan.parsed.items() if how.kind == "timestamp"]
    parsed = None
    if texts:
        got = con.to_pyarrow(
            base.filter(base[_POS].isin([int(p) for p in positions])).select(
                _POS, **{name: base[ck.value_name(name)] for name in texts}
            )
        ).to_pandas()
        got = got.set_index(_POS).reindex(positions)
        parsed = {name: got[name].reset_index(drop=True) for name in texts}
    raw, frame, rows, coerced = _validated(plan, raw_frame, location, parsed)
    failures = {
        (f.rule, f.column): f for f in _failures(raw, schema, frame, rows, coerced, plausible)
    }
    at = {int(p): i for i, p in enumerate(positions)}
    entries = []
    for c, count, picked in zip(found, found_rows, picks, strict=True):
        examples = []
        for j, pos in enumerate(picked[_POS]):
            first = picked[_FIRST_ROW][j] if c.detail == "duplicate" else None
            failure = failures.get((c.rule, c.column))
            examples.append(example_of(schema, frame, rows, at[int(pos)], failure, first))
        entries.append(
            QuarantineEntry(
                plan.table, source, c.column, c.rule, count, tuple(examples), c.rule in KEPT_RULES
            )
        )
    return entries


def _quarantine(
    con: BaseBackend,
    plan: Plan,
    base: ir.Table,
    found: list[ck.Check],
    first: ir.IntegerValue | None,
) -> pd.DataFrame:
    """The rows set aside, as ``validate_table`` writes them."""
    if first is None:
        positions = np.zeros(0, dtype=np.int64)
        hit = np.zeros(0, dtype=np.int64)
    else:
        bad = con.to_pyarrow(base.filter(first.notnull()).select(_POS, __hit=first).order_by(_POS))
        positions = bad.column(_POS).to_numpy()
        hit = bad.column("__hit").to_numpy()
    return _quarantine_at(plan, found, positions, hit)


def _quarantine_at(
    plan: Plan, found: list[ck.Check], positions: np.ndarray, hit: np.ndarray
) -> pd.DataFrame:
    """The rows at ``positions`` (sorted), each set aside by check ``found[hit]``."""
    original = read_rows(plan, positions)
    return quarantine_frame(original, [(c.rule, c.column) for c in found], hit)
