"""Loading a ``sql`` source inside its database: the rows stay where they are.

With ``source: {kind: sql}`` and ``engine: {kind: source}``, ``load_week`` fetches no row
table. Per canonical table it builds an Ibis expression over the database table (the
params' column mapping, category value maps and constants; canonical types; naive
timestamps read as wall-clock times in the source's timezone; the selection window),
evaluates the validation rules of ``checks`` in the database (one aggregate query for
the counts of every check) and fetches only what the quality report lists: the example
rows (at most five per check) and the rows set aside, described by validation's own
functions. ``WeekData.engine_tables()`` then returns the clean rows as expressions
(window, rules, rows of loaded orders), so the KPIs, sections, flow graph and plan run
in the database and only their aggregates come back.

Row numbers: a database table has no row order, so rows are numbered in the order of
their source columns (the mapped columns, in the table's column order, ascending, as
the database sorts them); of rows sharing a key, the first in that order is kept and
the later ones are set aside as duplicates. Row numbers of the quality report's
examples refer to that order.

What cannot be expressed in the database is refused with ``NotPushableError`` (exit 2),
naming the table, the column and the way out (``engine: {kind: duckdb}``, which reads the
rows): timestamps stored as text, numbers stored as text, value maps on columns that
are not categories, status mappings, amounts from another table and delivery promises
from the SLA. PostgreSQL text cannot hold NUL bytes, so the NUL-byte rule never fires
there and is not evaluated.

A notebook kernel given the runner's snapshot rebuilds the same expressions from the
snapshot's ``meta.json`` (``describe``/``restore``: the mapping, the category maps and
the checks that found rows), without validating again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import sqlalchemy as sa
from ibis.backends import BaseBackend

from meetinglib.core.errors import (
    MissingColumnError,
    ParamsError,
    SourceChangedError,
    TooManyQuarantinedError,
)
from meetinglib.core.params import Params, TableSource
from meetinglib.core.schema import SCHEMAS, TableSchema, selection_of
from meetinglib.core.weeks import Window
from meetinglib.data import checks as ck
from meetinglib.data import engine, sources
from meetinglib.data.sources import RawTable, SourceInfo
from meetinglib.data.validate import (
    DUPLICATE_KEY,
    KEPT_RULES,
    MAX_EXAMPLES,
    MAX_FIELD_CHARS,
    NUL_BYTE,
    SOURCE_ROW,
    QuarantineEntry,
    _coerce_category,
    _Coerced,
    _failures,
    coerce_table,
    example_of,
    plausible_range,
    quarantine_frame,
    source_name,
    too_many_message,
)

DATABASE_PATH = "database"
ORDER_TABLES = ("settlements", "order_lines", "after_sales", "tickets")
_ROW = "__row"
_FIRST_ROW = "__first_row"
_SRC = "__src_"
_DUP = "__dup"


class NotPushableError(ParamsError):
    """A table of a sql source cannot be validated and computed inside its database."""


def wanted(params: Params) -> bool:
    """Whether ``load_week`` loads inside the source database (sql source, engine source)."""
    return params.source.kind == "sql" and params.engine.kind == "source"


@dataclass
class Plan:
    """How one canonical table is read inside the database."""

    table: str
    db_schema: str | None
    name: str
    label: str
    selected: dict[str, str]  # source column -> canonical column, in the table's order
    kinds: dict[str, ck.SourceKind]  # canonical column -> how the database types it
    naive: list[str]  # canonical timestamp columns stored without a zone (or as dates)
    constants: dict[str, str]
    tz: str  # the zone naive times are read in
    platform_tz: str  # the zone every timestamp ends in
    values: dict[str, dict[str, str]] = field(default_factory=dict)  # category value maps
    categories: dict[str, ck.CategoryMap] = field(default_factory=dict)
    found: list[tuple[str, str]] = field(default_factory=list)  # (rule, column) with rows
    duplicates: bool = False  # whether some key repeats (the duplicate rule is evaluated)
    # What the load saw of the rows (see ``fingerprint``), to tell later whether they changed.
    fingerprint: dict[str, int | None] = field(default_factory=dict)


def _refuse(table: str, column: str, what: str) -> NotPushableError:
    return NotPushableError(
        f"table {table}, column {column}: {what}, which cannot be computed inside the "
        "database (engine kind 'source'). Use engine: {kind: duckdb} in the params, which "
        "reads the rows and validates them, or store the column typed in the database."
    )


def _kind_of(sql_type: Any, kind: str) -> tuple[ck.SourceKind, bool] | None:
    """(how the rules see a database column, whether a time is naive); None: unusable."""
    if isinstance(sql_type, sa.DateTime):
        naive = not bool(getattr(sql_type, "timezone", False))
        return ("timestamp", naive) if kind == "timestamp" else None
    if isinstance(sql_type, sa.Date):
        return ("timestamp", True) if kind == "timestamp" else None
    if isinstance(sql_type, sa.Integer):
        return ("int", False) if kind in ("id", "int", "float") else None
    if isinstance(sql_type, sa.Float | sa.Numeric):
        return ("float", False) if kind in ("int", "float") else None
    if isinstance(sql_type, sa.String | sa.Enum):
        return ("text", False) if kind in ("id", "category", "text") else None
    return None


def plan_table(params: Params, conn: sa.Connection, table: str) -> Plan | None:
    """How ``table`` is read in the database; None when the database has no such table."""
    schema = SCHEMAS[table]
    ts = sources._table_source(params, table)
    sources._check_mapping(params, table, ts)
    found = sources._sql_columns(params, conn, schema, ts)
    if found is None:
        return None
    label, _clause, types = found
    db_schema, name = sources._sql_name(table, ts)
    if ts.status is not None:
        raise _refuse(table, ts.status.column, "a status mapping")
    if ts.amount_from is not None:
        raise _refuse(table, "amount", "amounts from another table")
    if table == "orders" and params.sla.has_delivery_promise:
        raise _refuse(table, "promised_delivery_by", "a delivery promise from the SLA")
    selected = sources._select_columns(list(types), schema, ts, f"sql:{label}")
    order = {c: i for i, c in enumerate(types)}
    selected = dict(sorted(selected.items(), key=lambda kv: order[kv[0]]))
    kinds: dict[str, ck.SourceKind] = {}
    naive: list[str] = []
    for source, canonical in selected.items():
        col = schema.column(canonical)
        if canonical in ts.values and col.kind != "category":
            raise _refuse(table, canonical, "a value map on a column that is not a category")
        typed = _kind_of(types[source], col.kind)
        if typed is None:
            what = (
                "timestamps stored as text (their format would have to be guessed)"
                if col.kind == "timestamp"
                else f"{col.kind} values stored as {types[source]}"
            )
            raise _refuse(table, source, what)
        kinds[canonical] = typed[0]
        if typed[1]:
            if conn.dialect.name != "postgresql":
                raise _refuse(table, source, "times without a zone (read in PostgreSQL only)")
            naive.append(canonical)
    constants = {c: v for c, v in ts.constants.items() if c not in kinds}
    for canonical in constants:
        if schema.column(canonical).kind not in ("id", "category", "text"):
            raise _refuse(table, canonical, "a constant for a column that is not text")
        kinds[canonical] = "text"
    tz = ts.timezone or params.timezone
    return Plan(
        table,
        db_schema,
        name,
        f"sql:{label}",
        selected,
        kinds,
        naive,
        constants,
        tz,
        params.timezone,
        {c: dict(m) for c, m in ts.values.items()},
    )


# --- the table as an expression ---------------------------------------------------------------


def _timezone(zone: str, value: Any) -> Any:
    """PostgreSQL's ``timezone(zone, naive)``: the instant of a wall-clock time in ``zone``."""


_pg_timezone: Any = ibis.udf.scalar.builtin(
    _timezone,
    name="timezone",
    signature=((dt.string, dt.timestamp), dt.Timestamp(timezone="UTC")),
)


def _instant(value: ir.Value, tz: str) -> ir.Value:
    """A naive time (or date) as the instant it is in ``tz``."""
    return _pg_timezone(tz, value.cast(dt.timestamp))


def _raw(con: BaseBackend, plan: Plan, window: Window | None) -> ir.Table:
    """The source rows read: each canonical column's source value (naive times as instants)
    under ``checks.raw_name``, and the source values as stored under ``__src_``."""
    t = con.table(plan.name, database=plan.db_schema)
    columns: dict[str, ir.Value] = {}
    for source, canonical in plan.selected.items():
        value = t[source]
        columns[_SRC + canonical] = value
        columns[ck.raw_name(canonical)] = (
            _instant(value, plan.tz) if canonical in plan.naive else value
        )
    for canonical, constant in plan.constants.items():
        columns[ck.raw_name(canonical)] = ibis.literal(constant, type=dt.string)
    raw = t.select(**columns)
    time_col = SCHEMAS[plan.table].time_column
    if window is not None and time_col is not None and time_col in plan.selected.values():
        window = selection_of(plan.table, window)
        when = raw[ck.raw_name(time_col)]
        raw = raw.filter(
            ((when >= ck._instant(window.start)) & (when < ck._instant(window.end))) | when.isnull()
        )
    return raw


def _base(raw: ir.Table, plan: Plan) -> ir.Table:
    """The rows with each column's canonical value and its missing and bad flags."""
    columns: dict[str, ir.Value] = {}
    for col in SCHEMAS[plan.table].columns:
        kind = plan.kinds.get(col.name, "absent")
        source = raw[ck.raw_name(col.name)] if kind != "absent" else ibis.literal(None)
        value, missing, bad = ck.coerce(source, col, kind, plan.categories.get(col.name))
        columns[ck.value_name(col.name)] = value
        columns[ck.missing_name(col.name)] = missing
        if bad is not None:
            columns[ck.bad_name(col.name)] = bad
    base = raw.mutate(**columns)
    if plan.duplicates:
        # A column of its own: no database aggregates or filters over a window function.
        base = base.mutate(**{_DUP: _duplicate(plan, base)})
    return base


def _order(plan: Plan, table: ir.Table) -> list[ir.Value]:
    """The documented row order: the source columns in the table's order."""
    return [table[_SRC + c] for c in plan.selected.values()]


def _key_complete(base: ir.Table, schema: TableSchema) -> ir.BooleanValue:
    return ibis.and_(*[base[ck.value_name(k)].notnull() for k in schema.key])


def _duplicate(plan: Plan, base: ir.Table) -> ir.BooleanValue:
    """Rows whose complete key an earlier row (in the documented order) holds already."""
    schema = SCHEMAS[plan.table]
    keys = [base[ck.value_name(k)] for k in schema.key]
    rank = ibis.row_number().over(group_by=keys, order_by=_order(plan, base))
    return _key_complete(base, schema) & (rank > 0)


def _has_duplicates(con: BaseBackend, plan: Plan, base: ir.Table) -> bool:
    schema = SCHEMAS[plan.table]
    if not schema.key:
        return False
    present = base.filter(_key_complete(base, schema))
    keys = [ck.value_name(k) for k in schema.key]
    repeated = present.group_by(keys).aggregate(__n=present.count()).filter(lambda t: t.__n > 1)
    return int(con.execute(repeated.count())) > 0


def _checks(
    con: BaseBackend,
    plan: Plan,
    base: ir.Table,
    plausible: tuple[pd.Timestamp | None, pd.Timestamp | None],
) -> list[ck.Check]:
    """The checks of ``checks.checks`` over ``base`` that the database can evaluate."""
    schema = SCHEMAS[plan.table]
    duplicate = base[_DUP] if plan.duplicates else None
    found = ck.checks(schema, base, plan.kinds, plan.categories, plausible, duplicate)
    if con.name == "postgres":
        # PostgreSQL text holds no NUL byte; the literal could not even be sent.
        found = [c for c in found if c.rule != NUL_BYTE]
    return found


def _categories(con: BaseBackend, plan: Plan, raw: ir.Table) -> dict[str, ck.CategoryMap]:
    """Each category column's distinct values read, mapped by validation's own functions."""
    schema = SCHEMAS[plan.table]
    out = {}
    for col in schema.columns:
        if col.kind != "category" or col.name not in plan.kinds:
            continue
        values = con.to_pyarrow(raw.select(v=raw[ck.raw_name(col.name)]).distinct())
        uniques = sorted(v for v in values.column("v").to_pylist() if v is not None)
        out[col.name] = category_map(uniques, plan, col.name)
    return out


def category_map(uniques: list[str], plan: Plan, column: str) -> ck.CategoryMap:
    """How validation maps the distinct source values ``uniques`` of a category column."""
    schema = SCHEMAS[plan.table]
    ts_values = plan.values.get(column, {})
    raw = pd.Series(pd.Categorical(uniques, categories=uniques), dtype="category")
    mapped = sources._map_values(raw, ts_values, as_category=True)
    coerced = _coerce_category(mapped, schema.column(column).allowed)
    canon = coerced.values.astype(object).where(coerced.values.notna(), None)
    text = mapped.astype(object)

    def having(test: Any) -> frozenset[str]:
        return frozenset(u for u, x in zip(uniques, text, strict=True) if test(x))

    return ck.CategoryMap(
        canonical=dict(zip(uniques, canon.tolist(), strict=True)),
        unknown=frozenset(u for u, b in zip(uniques, coerced.bad, strict=True) if b),
        categories=tuple(str(c) for c in coerced.values.cat.categories),
        nul=having(lambda x: isinstance(x, str) and "\x00" in x),
        long=having(lambda x: isinstance(x, str) and len(x) > MAX_FIELD_CHARS),
        garbled=having(lambda x: isinstance(x, str) and "\ufffd" in x),
    )


def clean_table(
    con: BaseBackend,
    plan: Plan,
    selection: Window,
    plausible: tuple[pd.Timestamp | None, pd.Timestamp | None],
    orders: ir.Table | None,
) -> ir.Table:
    """The clean canonical rows of ``plan``'s table in ``selection``, as an expression.

    Only the checks that found rows (``plan.found``) that set rows aside are evaluated;
    rows of a table referring to orders are kept for the ``orders`` given.
    """
    base = _base(_raw(con, plan, selection), plan)
    found = set(plan.found)
    flags = [
        c.flag
        for c in _checks(con, plan, base, plausible)
        if (c.rule, c.column) in found and c.rule not in KEPT_RULES
    ]
    clean = base.filter(~ibis.or_(*flags)) if flags else base
    clean = clean.filter(ck.in_selection(clean, plan.table, selection))
    if orders is not None and plan.table in ORDER_TABLES:
        ids = clean[ck.value_name("order_id")]
        member = ids.isin(orders.order_id)
        if plan.table == "tickets":
            member = member | ids.isnull()
        clean = clean.filter(member)
    schema = SCHEMAS[plan.table]
    return clean.select(**{c.name: clean[ck.value_name(c.name)] for c in schema.columns})


# --- loading: counts, examples and the rows set aside --------------------------------------------


@dataclass
class Loaded:
    """One table validated inside the database."""

    plan: Plan
    info: SourceInfo
    loaded: int
    kept: int
    entries: list[QuarantineEntry]
    quarantined: pd.DataFrame
    in_week: int
    week_set_aside: int
    provided: list[str]
    dtypes: dict[str, object]


def load(
    con: BaseBackend,
    params: Params,
    plan: Plan,
    selection: Window,
    week_window: Window,
    plausible: tuple[pd.Timestamp | None, pd.Timestamp | None],
) -> Loaded:
    """Validate ``plan``'s table inside the database; only counts and few rows come back.

    Sets ``plan.categories``, ``plan.duplicates`` and ``plan.found``. Raises
    TooManyQuarantinedError as validation does.
    """
    table = plan.table
    schema = SCHEMAS[table]
    source = source_name(plan.label)
    missing_required = [c for c in schema.required if c not in plan.kinds]
    if missing_required:
        raise MissingColumnError(source, missing_required[0], list(plan.selected))
    raw = _raw(con, plan, selection)
    plan.categories = _categories(con, plan, raw)
    base = _base(raw, plan)
    plan.duplicates = _has_duplicates(con, plan, base)
    if plan.duplicates:
        base = _base(raw, plan)
    all_checks = _checks(con, plan, base, plausible)
    time_col = schema.time_column
    in_week: ir.BooleanValue | None = None
    if time_col is not None:
        when = base[ck.value_name(time_col)]
        in_week = (
            (when >= ck._instant(week_window.start)) & (when < ck._instant(week_window.end))
        ).fill_null(False)
    profile: dict[str, Any] = {f"c{i}": c.flag.ifelse(1, 0).sum() for i, c in enumerate(all_checks)}
    profile["n"] = base.count()
    marks = fingerprint(base, plan, con.name)
    profile.update({f"fp{i}": value for i, value in enumerate(marks.values())})
    if in_week is not None:
        profile["week"] = in_week.ifelse(1, 0).sum()
    counts = con.to_pyarrow(base.aggregate(**profile)).to_pylist()[0]
    n = int(counts["n"])
    plan.fingerprint = {name: _int(counts[f"fp{i}"]) for i, name in enumerate(marks)}
    hits = [(c, int(counts[f"c{i}"] or 0)) for i, c in enumerate(all_checks)]
    found = [(c, k) for c, k in hits if k > 0]
    plan.found = [(c.rule, c.column) for c, _ in found]
    aside = [c for c, _ in found if c.rule not in KEPT_RULES]
    first = ibis.cases(*[(c.flag, i) for i, c in enumerate(aside)]) if aside else None
    n_bad = week_bad = 0
    if first is not None:
        bad = con.to_pyarrow(
            base.aggregate(
                bad=first.notnull().ifelse(1, 0).sum(),
                week=(first.notnull() & in_week).ifelse(1, 0).sum()
                if in_week is not None
                else ibis.literal(0),
            )
        ).to_pylist()[0]
        n_bad, week_bad = int(bad["bad"] or 0), int(bad["week"] or 0)
    numbered = base.mutate(**{_ROW: ibis.row_number().over(order_by=_order(plan, base)) + 1})
    entries = _entries(con, plan, numbered, found, source, plausible)
    if n and n_bad / n > params.quality.max_quarantine_share:
        raise TooManyQuarantinedError(
            too_many_message(source, n, n_bad, params.quality.max_quarantine_share, entries)
        )
    quarantined = _quarantine(con, plan, numbered, aside)
    info = SourceInfo(table, plan.label, "sql", n, None)
    provided = [c for c in plan.kinds if c in schema.names]
    provided = [c.name for c in schema.columns if c.name in provided]
    return Loaded(
        plan=plan,
        info=info,
        loaded=n,
        kept=n - n_bad,
        entries=entries,
        quarantined=quarantined,
        in_week=int(counts.get("week") or 0) - week_bad,
        week_set_aside=week_bad,
        provided=provided,
        dtypes=ck.pandas_dtypes(SCHEMAS[plan.table], plan.categories, params.timezone),
    )


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def fingerprint(raw: ir.Table, plan: Plan, backend: str | None) -> dict[str, ir.Scalar]:
    """What a load sees of ``plan``'s rows in the selection, as aggregates of ``raw`` (the
    rows as ``_raw`` reads them): their count, the filled values of each source column and
    the latest instant of each time column.

    Kernels query the database after the load: when these differ, rows were added, removed
    or moved on (an order shipped), and the handouts would mix two states of the data. An
    edit that keeps every count and latest time (a corrected amount) goes unnoticed.
    """
    marks: dict[str, ir.Scalar] = {"rows": raw.count()}
    for canonical in plan.selected.values():
        marks[f"filled {canonical}"] = raw[_SRC + canonical].count()
        if plan.kinds.get(canonical) == "timestamp":
            when = engine.unix_micros(raw[ck.raw_name(canonical)], backend)
            marks[f"latest {canonical}"] = when.max()
    return marks


def check_unchanged(con: BaseBackend, record: dict[str, Any]) -> None:
    """Raise SourceChangedError when a table of ``record`` (a snapshot's meta) no longer
    gives the fingerprint its load saw; one aggregate query per table."""
    start, end = (pd.Timestamp(t) for t in record["selection"])
    for described in record["plans"]:
        then = described.get("fingerprint")
        if not then:
            continue
        plan = _plan_of(described)
        raw = _raw(con, plan, Window(start, end))
        marks = fingerprint(raw, plan, con.name)
        named = {f"fp{i}": value for i, value in enumerate(marks.values())}
        now_row = con.to_pyarrow(raw.aggregate(**named)).to_pylist()[0]
        now = {name: _int(now_row[f"fp{i}"]) for i, name in enumerate(marks)}
        changed = [k for k in then if then[k] != now.get(k)]
        if changed:
            shown = "; ".join(f"{k}: {then[k]} then, {now.get(k)} now" for k in changed[:3])
            raise SourceChangedError(
                f"table {plan.label} changed in the database since the week was loaded "
                f"({shown}): the handouts would mix two states of the data. Run "
                "`meeting run` again once the database is quiet, or use engine: "
                "{kind: duckdb}, which keeps a copy of the rows for the whole run."
            )


def _fetch_rows(con: BaseBackend, plan: Plan, rows: ir.Table) -> pd.DataFrame:
    """Source rows (``rows``: a filter of the numbered base) as the pandas path reads them."""
    columns = {c: rows[_SRC + c] for c in plan.selected.values()}
    frame = con.to_pandas(rows.select(**columns, **{SOURCE_ROW: rows[_ROW]}).order_by(SOURCE_ROW))
    for col in SCHEMAS[plan.table].columns:
        if col.kind == "category" and col.name in frame.columns:
            # As categories: the same mapping as text, and a column of only empty values
            # (few rows fetched) maps to no category.
            frame[col.name] = frame[col.name].astype(object).astype("category")
    frame = sources._finish(frame, SCHEMAS[plan.table], sources_ts(plan))
    return sources.derive_columns(frame, sources_ts(plan))


def sources_ts(plan: Plan) -> TableSource:
    """The table source of ``plan`` as far as reading rows goes (value maps, constants)."""
    return TableSource(values=plan.values, constants=dict(plan.constants), timezone=plan.tz)


def _validated(
    plan: Plan, raw_frame: pd.DataFrame, tz: str
) -> tuple[RawTable, pd.DataFrame, pd.Series, dict[str, _Coerced]]:
    """A few source rows coerced as validation coerces them."""
    raw = RawTable(
        plan.table,
        raw_frame,
        SourceInfo(plan.table, plan.label, "sql", len(raw_frame), None),
        plan.tz,
        None,
    )
    return raw, *coerce_table(raw, tz)


def _entries(
    con: BaseBackend,
    plan: Plan,
    numbered: ir.Table,
    found: list[tuple[ck.Check, int]],
    source: str,
    plausible: tuple[pd.Timestamp | None, pd.Timestamp | None],
) -> list[QuarantineEntry]:
    """The quality entries of the failing checks, their examples described by validation."""
    if not found:
        return []
    schema = SCHEMAS[plan.table]
    tz = plan.platform_tz
    if any(c.rule == DUPLICATE_KEY for c, _ in found):
        keys = [numbered[ck.value_name(k)] for k in schema.key]
        numbered = numbered.mutate(**{_FIRST_ROW: numbered[_ROW].min().over(group_by=keys)})
    flags = {(c.rule, c.column): c.flag for c in _checks(con, plan, numbered, plausible)}
    entries = []
    for check, count in found:
        flag = flags[(check.rule, check.column)]
        picked = numbered.filter(flag).order_by(_ROW).limit(MAX_EXAMPLES)
        raw_frame = _fetch_rows(con, plan, picked)
        firsts: list[Any] = []
        if check.detail == "duplicate":
            firsts = [
                int(v)
                for v in con.to_pandas(
                    picked.select(r=picked[_ROW], f=picked[_FIRST_ROW]).order_by("r")
                )["f"]
            ]
        raw, frame, rows, coerced = _validated(plan, raw_frame, tz)
        failures = {
            (f.rule, f.column): f for f in _failures(raw, schema, frame, rows, coerced, plausible)
        }
        examples = []
        failure = failures.get((check.rule, check.column))
        for i in range(len(frame)):
            first = firsts[i] if check.detail == "duplicate" else None
            examples.append(example_of(schema, frame, rows, i, failure, first))
        entries.append(
            QuarantineEntry(
                plan.table,
                source,
                check.column,
                check.rule,
                count,
                tuple(examples),
                check.rule in KEPT_RULES,
            )
        )
    return entries


def _quarantine(
    con: BaseBackend, plan: Plan, numbered: ir.Table, aside: list[ck.Check]
) -> pd.DataFrame:
    """The rows set aside, as ``validate_table`` writes them: row, rule, column, values."""
    if aside:
        first = ibis.cases(*[(c.flag, i) for i, c in enumerate(aside)])
        picked = numbered.filter(first.notnull()).mutate(__hit=first)
        original = _fetch_rows(con, plan, picked)
        hit = con.to_pandas(picked.select(r=picked[_ROW], h=picked.__hit).order_by("r"))[
            "h"
        ].to_numpy()
    else:
        empty = numbered.filter(ibis.literal(False))
        original = _fetch_rows(con, plan, empty)
        hit = np.zeros(0, dtype=np.int64)
    return quarantine_frame(original, [(c.rule, c.column) for c in aside], hit)


# --- the week's tables in the database ----------------------------------------------------------


class DatabaseTables(Mapping[str, pd.DataFrame]):
    """The week's clean tables as expressions inside the source database.

    ``engine_tables`` gives the expressions (what the library computes on). Reading a
    table into pandas (``tables["orders"]``) fetches its rows: only code that has not
    moved to the engine does, and it pays for it.
    """

    def __init__(
        self,
        con: BaseBackend,
        expressions: dict[str, ir.Table],
        dtypes: dict[str, dict[str, object]],
        record: dict[str, Any],
    ):
        self.con = con
        self.expressions = expressions
        self.dtypes = dtypes
        self.record = record  # what ``restore`` needs to build the expressions again
        self._frames: dict[str, pd.DataFrame] = {}

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self.expressions:
            raise KeyError(name)
        if name not in self._frames:
            frame = self.con.to_pandas(self.expressions[name])
            self._frames[name] = typed(frame, self.dtypes[name])
        return self._frames[name]

    def __contains__(self, name: object) -> bool:
        # Mapping's own would fetch the table to answer.
        return name in self.expressions

    def __iter__(self) -> Iterator[str]:
        return iter(self.expressions)

    def __len__(self) -> int:
        return len(self.expressions)

    def __repr__(self) -> str:
        return f"DatabaseTables({list(self.expressions)})"

    def clear(self) -> None:
        """Forget the tables read into pandas."""
        self._frames.clear()

    def engine_tables(self) -> dict[str, ir.Table]:
        """The clean tables as expressions of the database's backend."""
        return dict(self.expressions)


def typed(frame: pd.DataFrame, dtypes: Mapping[str, object]) -> pd.DataFrame:
    """``frame`` with the dtypes the pandas path gives (categories, zone, nullable ints)."""
    out = {}
    for name, dtype in dtypes.items():
        column = frame[name]
        if isinstance(dtype, dict):
            wanted = pd.CategoricalDtype(pd.Index(dtype["category"], dtype="str"))
            out[name] = column.astype(object).astype(wanted)
        elif str(dtype).startswith("datetime64"):
            zone = str(dtype).split(", ", 1)[1].rstrip("]")
            when = pd.to_datetime(column, utc=True)
            out[name] = when.dt.tz_convert(zone).astype(f"datetime64[us, {zone}]")
        elif dtype == "str":
            out[name] = column.astype(object).where(column.notna(), None).astype("str")
        else:
            out[name] = column.astype(str(dtype))
    return pd.DataFrame(out, index=frame.index)


def describe(plan: Plan) -> dict[str, Any]:
    """What ``restore`` needs to rebuild ``plan`` (JSON; no rows)."""
    return {
        "table": plan.table,
        "db_schema": plan.db_schema,
        "name": plan.name,
        "label": plan.label,
        "selected": plan.selected,
        "kinds": plan.kinds,
        "naive": plan.naive,
        "constants": plan.constants,
        "tz": plan.tz,
        "platform_tz": plan.platform_tz,
        "values": plan.values,
        "categories": {
            name: {
                "canonical": cat.canonical,
                "unknown": sorted(cat.unknown),
                "categories": list(cat.categories),
                "nul": sorted(cat.nul),
                "long": sorted(cat.long),
                "garbled": sorted(cat.garbled),
            }
            for name, cat in plan.categories.items()
        },
        "found": [list(f) for f in plan.found],
        "duplicates": plan.duplicates,
        "fingerprint": plan.fingerprint,
    }


def _plan_of(record: dict[str, Any]) -> Plan:
    plan = Plan(
        table=record["table"],
        db_schema=record["db_schema"],
        name=record["name"],
        label=record["label"],
        selected=dict(record["selected"]),
        kinds=dict(record["kinds"]),
        naive=list(record["naive"]),
        constants=dict(record["constants"]),
        tz=record["tz"],
        platform_tz=record["platform_tz"],
        values={c: dict(m) for c, m in record["values"].items()},
    )
    plan.categories = {
        name: ck.CategoryMap(
            canonical=dict(cat["canonical"]),
            unknown=frozenset(cat["unknown"]),
            categories=tuple(cat["categories"]),
            nul=frozenset(cat["nul"]),
            long=frozenset(cat["long"]),
            garbled=frozenset(cat["garbled"]),
        )
        for name, cat in record["categories"].items()
    }
    plan.found = [(rule, column) for rule, column in record["found"]]
    plan.duplicates = bool(record["duplicates"])
    plan.fingerprint = dict(record.get("fingerprint", {}))
    return plan


def week_tables(
    con: BaseBackend,
    plans: list[Plan],
    selection: Window,
    plausible: tuple[pd.Timestamp | None, pd.Timestamp | None],
    dtypes: dict[str, dict[str, object]],
) -> DatabaseTables:
    """The clean tables of validated ``plans`` (orders first) as expressions."""
    expressions: dict[str, ir.Table] = {}
    for plan in plans:
        expressions[plan.table] = clean_table(
            con, plan, selection, plausible, expressions.get("orders")
        )
    record = {
        "selection": [selection.start.isoformat(), selection.end.isoformat()],
        "plausible": [None if p is None else p.isoformat() for p in plausible],
        "plans": [describe(p) for p in plans],
    }
    return DatabaseTables(con, expressions, dtypes, record)


def restore(
    con: BaseBackend, record: dict[str, Any], dtypes: dict[str, dict[str, object]]
) -> DatabaseTables:
    """The tables ``week_tables`` built, from its ``record`` (a snapshot's meta): no query."""
    start, end = (pd.Timestamp(t) for t in record["selection"])
    plausible = (
        None if record["plausible"][0] is None else pd.Timestamp(record["plausible"][0]),
        None if record["plausible"][1] is None else pd.Timestamp(record["plausible"][1]),
    )
    plans = [_plan_of(p) for p in record["plans"]]
    return week_tables(con, plans, Window(start, end), plausible, dtypes)


def connection(params: Params) -> BaseBackend:
    """The backend inside the source database (``engine.shared`` for engine kind source)."""
    return engine.shared(params.engine)


def plans(params: Params, tables: list[str]) -> list[Plan]:
    """The plans of ``tables`` the database has (orders first), or NotPushableError."""
    out = []
    with sources._connection(params) as conn:
        for name in tables:
            plan = plan_table(params, conn, name)
            if plan is not None:
                out.append(plan)
    return out


def _local(value: ir.Value, tz: str) -> ir.Value:
    """An instant as the wall-clock time it is in ``tz`` (PostgreSQL's ``timezone``)."""
    return _pg_local(tz, value)


def _wall_clock(zone: str, value: Any) -> Any:
    """PostgreSQL's ``timezone(zone, instant)``: the wall-clock time of an instant in ``zone``."""


_pg_local: Any = ibis.udf.scalar.builtin(
    _wall_clock,
    name="timezone",
    signature=((dt.string, dt.Timestamp(timezone="UTC")), dt.timestamp),
)


def weekly_created(params: Params) -> tuple[pd.Series, pd.Timestamp | None]:
    """Orders created per week (Monday, local; plausible dates only) counted in the database,
    and the latest plausible ``created_at``: what ``dataset.weekly_order_counts`` needs."""
    con = connection(params)
    plan = plans(params, ["orders"])[0]
    raw = _raw(con, plan, None)
    created = raw[ck.raw_name("created_at")].cast(ck.TS_UTC)
    low, high = plausible_range(
        params.quality.earliest_date, params.quality.max_days_ahead, params.timezone
    )
    rows = raw.select(created=created).filter(lambda t: t.created.notnull())
    if low is not None:
        rows = rows.filter(rows.created >= ck._instant(low))
    if high is not None:
        rows = rows.filter(rows.created <= ck._instant(high))
    local = _local(rows.created, params.timezone)
    counts = con.to_pandas(
        rows.group_by(monday=local.truncate("W")).aggregate(n=rows.count(), last=rows.created.max())
    )
    if counts.empty:
        return pd.Series(dtype="int64"), None
    series = pd.Series(
        counts["n"].to_numpy(dtype="int64"), index=pd.to_datetime(counts["monday"])
    ).sort_index()
    last = pd.Timestamp(counts["last"].max())
    last = (last.tz_localize("UTC") if last.tzinfo is None else last).tz_convert(params.timezone)
    return series, last
