"""Process mining on the query engine: the event log, the directly-follows graph, the
findings' cohort sums, stage statistics and the explorer's tables, as Ibis expressions.

This is the only definition of the graph's edges: DuckDB runs it on the report's event
log (``directly_follows``), and the same expression runs on Spark or on tables the
engine reads from files (``directly_follows_on``; the week's log straight from the
engine tables: ``week_log_expr``). ``cohort_sums_on`` and ``stage_summaries`` compute
the findings' sums and the chart's box statistics the same way; only aggregates come
back to pandas.

Per edge source -> target within a case: cases = distinct cases with the transition;
count = transitions (a loop counts each time); mean_h, median_h, p90_h = hours from the
source event to the target event. Within a case, events are ordered by time, events
with the same timestamp by the business rank of their activity (flow.activity_order:
known activities in business order, then other names alphabetically). Durations are
whole microseconds between the two times (the same integer on every engine), in hours.

Quantiles come from ranks, not from an engine's quantile function, so every engine
gives the same figure: the edge's n hours sorted, position ``q * (n - 1)``, linear
interpolation between the two values around it (numpy's and pandas' default).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import numpy as np
import pandas as pd
from ibis.backends import BaseBackend

from meetinglib.analysis import flow
from meetinglib.core.weeks import Window
from meetinglib.data.engine import (
    NATIVE_MICROS,
    US_PER_HOUR,
    frame_table,
    hours_between,
    out_of_memory,
    shared,
    unix_micros,
)

DFG_COLUMNS = ["source", "target", "cases", "count", "mean_h", "median_h", "p90_h"]
QUANTILES = {"median_h": 0.5, "p90_h": 0.9}


def instant(stamp: pd.Timestamp) -> ir.TimestampScalar:
    """A tz-aware instant as an engine literal in UTC, comparable with the tables' instants."""
    return ibis.literal(stamp.tz_convert("UTC"), type="timestamp('UTC')")


def _steps(table: ir.Table, columns: Mapping[str, str]) -> list[ir.Table]:
    """One log part per time column present: its non-empty cells as events of the order."""
    parts = []
    for col, activity in columns.items():
        if col in table.columns:
            rows = table.filter(table[col].notnull() & table.order_id.notnull())
            parts.append(
                rows.select(
                    case_id=rows.order_id.cast("string"),
                    activity=ibis.literal(activity, "string"),
                    timestamp=rows[col].cast(_INSTANT),
                )
            )
    return parts


# instants to the microsecond, as every engine keeps them (frames may bring nanoseconds)
_INSTANT = dt.Timestamp(timezone="UTC", scale=6)
_RETURN_COLUMNS = dict(zip(("requested_at", "closed_at"), flow.RETURN_STEPS, strict=True))


def event_log_expr(
    orders: ir.Table, events: ir.Table | None = None, after_sales: ir.Table | None = None
) -> ir.Table:
    """The event log as a table: case_id (text), activity (text), timestamp (instant).

    As flow.event_log, in no row order: the ``events`` table when there is one, else one
    event per non-empty milestone of ``orders``; ``after_sales`` adds return_requested
    at requested_at and return_closed at closed_at. Rows with an empty order number,
    activity or time are no event.
    """
    if events is not None:
        kept = events.filter(
            events.order_id.notnull() & events.activity.notnull() & events.timestamp.notnull()
        )
        parts = [
            kept.select(
                case_id=kept.order_id.cast("string"),
                activity=kept.activity.cast("string"),
                timestamp=kept.timestamp.cast(_INSTANT),
            )
        ]
    else:
        parts = _steps(orders, flow.MILESTONES)
    if after_sales is not None:
        parts += _steps(after_sales, _RETURN_COLUMNS)
    log = parts[0]
    for part in parts[1:]:
        log = log.union(part)
    return log


def week_log_expr(
    tables: Mapping[str, ir.Table],
    start: pd.Timestamp,
    end: pd.Timestamp,
    backend: str | None = None,
) -> ir.Table:
    """The event log of the cases with an event in ``[start, end)`` up to ``end``.

    ``tables``: orders, and events and after_sales when the source has them (see
    event_log_expr). A transition ending in the window needs the case's event before
    it, however early; events from ``end`` on belong to no such transition. Columns
    case_id, activity and timestamp; on DuckDB (``backend``, the engine's name) also
    case_no: a whole number per case (0, 1, ...), which the engine partitions and counts
    faster than the case's text. Other engines get no case_no: Spark would number the
    cases in a single partition.
    """
    orders, events, after_sales = tables["orders"], tables.get("events"), tables.get("after_sales")
    log = event_log_expr(orders, events, after_sales)
    # events from the window's end on neither end nor begin a transition ending in it
    log = log.filter(log.timestamp < instant(end))
    # The cases are found from the window's own events, read apart: were they taken from
    # ``log``, the engine would keep the whole log (tens of millions of events) in memory
    # to read it twice, where the window's events are a filter on the file's scan.
    if events is not None:
        events = events.filter(
            (events.timestamp >= instant(start)) & (events.timestamp < instant(end))
        )
    near = event_log_expr(orders, events, after_sales)
    inside = near.filter((near.timestamp >= instant(start)) & (near.timestamp < instant(end)))
    cases = inside.select("case_id").distinct()
    # The least case number is redundant as a filter but prunes the file's row groups:
    # when case numbers grow with time, the log's older groups hold none of the cases.
    log = log.filter(log.case_id >= cases.case_id.min())
    if backend != "duckdb":
        return log.filter(log.case_id.isin(cases.case_id))
    # The join that keeps the cases' events numbers them on the way (it hashes every
    # event's case either way); the numbers carry no order.
    numbered = cases.mutate(case_no=ibis.row_number().cast("int64"))
    # (the explicit select makes the joined log one relation, computed once for the
    # graph's two reads of it: the activities and the transitions)
    return log.join(numbered, "case_id").select("case_id", "activity", "timestamp", "case_no")


def activity_rank(activity: ir.StringValue) -> ir.IntegerValue:
    """Business rank of a known activity (flow.ACTIVITY_ORDER); any other name ranks after."""
    known = {name: i for i, name in enumerate(flow.ACTIVITY_ORDER)}
    return activity.substitute(known, else_=len(known))


def activity_codes(events: ir.Table) -> ir.Table:
    """The log's activity names numbered in business order: activity, code (0, 1, ...)."""
    names = events.select(activity=events.activity.cast("string")).distinct()
    in_order = ibis.window(order_by=[activity_rank(names.activity), names.activity])
    return names.mutate(code=ibis.row_number().over(in_order))


def transitions_expr(events: ir.Table, codes: ir.Table, backend: str | None = None) -> ir.Table:
    """Every event with the next one of its case: case_id, source, target, hours, first, at.

    case_id is the log's case_no where it has one (see week_log_expr), else its case_id
    as text. source and target are activity codes (``codes``, see activity_codes);
    target, hours and at (the target's time) are NULL on a case's last event; first
    marks a case's first event. ``at`` is UTC wall time, or whole microseconds since the epoch when
    ``backend`` (the engine's name) has native microseconds (engine.NATIVE_MICROS):
    sorting and subtracting integers skips the cast of every instant to a wall time, the
    costliest step of the log's scan after the sort itself.
    """
    native = backend in NATIVE_MICROS
    plain = events.select(
        case_id=events.case_no if "case_no" in events.columns else events.case_id.cast("string"),
        activity=events.activity.cast("string"),
        # otherwise instants as UTC wall time (every engine's session runs in UTC):
        # arithmetic on them is exact and skips the engines' time-zone machinery
        t=(
            unix_micros(events.timestamp.cast(_INSTANT), str(backend))
            if native
            else events.timestamp.cast("timestamp")
        ),
    )
    # integer codes: partitions and sorts on them are several times faster than on text
    coded = plain.join(codes, "activity").select("case_id", "t", "code")
    in_case = ibis.window(group_by=coded.case_id, order_by=[coded.t, coded.code])
    after = coded.t.lead().over(in_case)
    return coded.select(
        case_id=coded.case_id,
        source=coded.code,
        target=coded.code.lead().over(in_case),
        hours=(
            (after - coded.t).cast("float64") / US_PER_HOUR
            if native
            else hours_between(coded.t, after)
        ),
        first=ibis.row_number().over(in_case) == 0,
        at=after,
    )


def _rank_quantile(
    hours: ir.FloatingValue, first: Any, upto: Any, after: Any, n: Any, q: float
) -> Any:
    """The q-quantile's value on the row of distinct hours holding its lower position,
    NULL on every other row.

    A row stands for the ranks ``first`` to ``upto - 1`` of the edge's n sorted hours (all
    equal to ``hours``); ``after`` is the next distinct value. The value at the rank after
    the lower position is ``hours`` again when that rank is still in the row.
    """
    # The position q * (n - 1) in whole numbers, q as the fraction it is written as
    # (0.9 = 9/10): exact as the engines' decimals, without their costly arithmetic.
    num, den = Fraction(str(q)).as_integer_ratio()
    scaled = (n - 1) * num
    low = scaled // den
    rest = scaled % den
    above = ibis.ifelse(low + 1 < upto, hours, after)
    value = ibis.ifelse(rest == 0, hours, hours + (above - hours) * (rest / den))
    return ibis.ifelse((first <= low) & (low < upto), value, ibis.null("float64"))


def _edge_figures(edges: ir.Table) -> ir.Table:
    """Per edge of some transitions (case_id, source, target, hours): DFG_COLUMNS, the
    source and target as activity codes."""
    counts = edges.group_by(["source", "target"]).aggregate(
        cases=edges.case_id.nunique().cast("int64"),
        count=edges.count().cast("int64"),
        mean_h=edges.hours.mean().cast("float64"),
    )
    # Quantiles from ranks, over the edge's distinct hours with their counts: times in
    # whole seconds repeat, so the engine sorts several times fewer rows than transitions.
    values = edges.group_by(["source", "target", "hours"]).aggregate(k=edges.count())
    in_edge = {"group_by": [values.source, values.target], "order_by": values.hours}
    ranked = values.mutate(
        upto=values.k.sum().over(ibis.cumulative_window(**in_edge)).cast("int64"),
        after=values.hours.lead().over(ibis.window(**in_edge)),
    )
    sized = ranked.join(counts.select("source", "target", n="count"), ["source", "target"])
    first = sized.upto - sized.k
    picks = {
        name: _rank_quantile(sized.hours, first, sized.upto, sized.after, sized.n, q).max()
        for name, q in QUANTILES.items()
    }
    quantiles = sized.group_by(["source", "target"]).aggregate(**picks)
    graph = counts.join(quantiles, ["source", "target"])
    coded = graph.select(
        "source",
        "target",
        "cases",
        "count",
        "mean_h",
        median_h=graph.median_h.cast("float64"),
        p90_h=graph.p90_h.cast("float64"),
    )
    return coded


def _named(coded: ir.Table, codes: ir.Table) -> ir.Table:
    """Edges with activity codes as names (-1 and -2: START and END)."""
    ends_names = ibis.memtable({"activity": [flow.START, flow.END], "code": [-1, -2]})
    names = codes.select("activity", code=codes.code.cast("int64")).union(
        ends_names.select("activity", code=ends_names.code.cast("int64"))
    )
    src = names.select(source_name="activity", source="code")
    dst = names.select(target_name="activity", target="code")
    named = coded.join(src, "source").join(dst, "target")
    return named.select(
        named.source_name.name("source"), named.target_name.name("target"), *DFG_COLUMNS[2:]
    )


def edges_expr(steps: ir.Table, codes: ir.Table) -> ir.Table:
    """The directly-follows graph of some transitions (transitions_expr rows with a
    target: case_id, source, target, hours), columns DFG_COLUMNS, in no row order."""
    return _named(_edge_figures(steps), codes)


def directly_follows_expr(
    events: ir.Table,
    start_end: bool = False,
    ending_in: tuple[pd.Timestamp, pd.Timestamp] | None = None,
    backend: str | None = None,
) -> ir.Table:
    """The directly-follows graph of an event log table, as one expression.

    ``events`` has the columns case_id, activity and timestamp (no empty cells), and
    may have case_no (see week_log_expr). Columns
    as DFG_COLUMNS, in no particular row order. With ``start_end`` the artificial edges
    flow.START -> first activity and last activity -> flow.END are added (cases = count
    = cases starting or ending there; durations NULL). With ``ending_in`` = (start, end)
    only the transitions whose later event falls in ``[start, end)`` count (no start and
    end edges then). ``backend``: the engine's name (``con.name``); on engines with
    native microseconds the times are handled as integers (the same figures, faster).
    """
    if start_end and ending_in is not None:
        raise ValueError("start and end edges belong to whole cases, not to a window")
    codes = activity_codes(events)
    native = backend in NATIVE_MICROS
    steps = transitions_expr(events, codes, backend)
    edges = steps.filter(steps.target.notnull())
    if ending_in is not None:
        if native:
            low, high = (ibis.literal(_us(t), "int64") for t in ending_in)
        else:
            low, high = (instant(t).cast("timestamp") for t in ending_in)
        edges = edges.filter((edges.at >= low) & (edges.at < high))
    coded = _edge_figures(edges)
    if start_end:
        none = ibis.null("float64")
        firsts = steps.filter(steps.first).group_by("source").aggregate(n=ibis._.count())
        lasts = steps.filter(steps.target.isnull()).group_by("source").aggregate(n=ibis._.count())
        ends = [
            (ibis.literal(-1, "int64"), firsts.source, firsts.n, firsts),
            (lasts.source, ibis.literal(-2, "int64"), lasts.n, lasts),
        ]
        for source, target, n, table in ends:
            coded = coded.union(
                table.select(
                    source=source.cast("int64"),
                    target=target.cast("int64"),
                    cases=n.cast("int64"),
                    count=n.cast("int64"),
                    mean_h=none,
                    median_h=none,
                    p90_h=none,
                )
            )
    return _named(coded, codes)


def directly_follows_on(
    con: BaseBackend,
    events: pd.DataFrame | ir.Table,
    start_end: bool = False,
    ending_in: tuple[pd.Timestamp, pd.Timestamp] | None = None,
) -> pd.DataFrame:
    """directly_follows_expr run by ``con``: columns DFG_COLUMNS, sorted as flow sorts.

    Rows by count, descending; ties in business order of source, then target (START
    first, END last). A frame is checked (flow.check_log) and enters as a memtable.
    """
    if isinstance(events, pd.DataFrame):
        flow.check_log(events)
        events = frame_table(_plain_log(events))
    frame = con.to_pandas(directly_follows_expr(events, start_end, ending_in, con.name))
    return finish_edges(frame)


def _plain_log(log: pd.DataFrame) -> pd.DataFrame:
    """The log's three columns as every engine reads them: text, and times to the us."""
    ts = log["timestamp"]
    if getattr(ts.dtype, "unit", "us") == "ns":
        # engines keep microseconds; a frame's nanoseconds would be refused, not rounded
        ts = ts.dt.floor("us").dt.as_unit("us")
    return pd.DataFrame(
        {
            "case_id": log["case_id"].astype("str"),
            "activity": log["activity"].astype("str"),
            "timestamp": ts,
        }
    ).reset_index(drop=True)


def finish_edges(out: pd.DataFrame) -> pd.DataFrame:
    """An edge table with flow's dtypes and row order (count desc, then business order)."""
    out = out.astype({"cases": "int64", "count": "int64"})
    for col in ("mean_h", "median_h", "p90_h"):
        out[col] = out[col].astype("float64")
    out["source"] = out["source"].astype("str")
    out["target"] = out["target"].astype("str")
    names = [n for n in (*out["source"], *out["target"]) if n not in (flow.START, flow.END)]
    order = {name: i for i, name in enumerate(flow.activity_order(names))}
    order.update({flow.START: -1, flow.END: len(order)})
    out = out.assign(_s=out["source"].map(order), _t=out["target"].map(order))
    out = out.sort_values(["count", "_s", "_t"], ascending=[False, True, True])
    return out.reset_index(drop=True)[DFG_COLUMNS]


def directly_follows(log: pd.DataFrame, start_end: bool = False) -> pd.DataFrame:
    """The directly-follows graph of an event log frame, computed by embedded DuckDB.

    Columns DFG_COLUMNS (see the module docstring), sorted by count, descending; ties in
    business order of source, then target.
    """
    return directly_follows_on(shared(), log, start_end)


# --- per-order segments and stage times on the engine ------------------------------------

_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")
_US_PER_QUARTER = 15 * 60 * 1_000_000
# segment dimensions the engine reads straight from a column of orders
PLAIN_SEGMENTS = ("warehouse", "carrier", "region", "order_type", "channel")


def micros(con: BaseBackend, stamp: ir.TimestampValue) -> ir.IntegerValue:
    """Whole microseconds since 1970-01-01 UTC of an instant (engine.unix_micros for
    ``con``'s engine; NULL stays NULL)."""
    return unix_micros(stamp.cast(_INSTANT), con.name)


def hours_of(
    con: BaseBackend, start: ir.TimestampValue, end: ir.TimestampValue
) -> ir.FloatingValue:
    """Hours from ``start`` to ``end`` in whole microseconds (engine.hours_between)."""
    return hours_between(start.cast(_INSTANT), end.cast(_INSTANT), con.name)


def _us(stamp: pd.Timestamp) -> int:
    """Whole microseconds since 1970-01-01 UTC of a tz-aware instant."""
    return int((stamp - _EPOCH) // pd.Timedelta(microseconds=1))


def local_day_hour(con: BaseBackend, created: ir.Table, tz: str) -> ir.Table:
    """quarter (quarter-hours since the epoch), weekday (Mon..Sun) and hour of each
    quarter-hour of ``created.created_at``, local time in ``tz``.

    Time-zone rules run in pandas on the few thousand distinct quarter-hours (every zone's
    offset is a whole number of quarter-hours), the result joins back as a small table:
    the same local day and hour on every engine.
    """
    return _local_table(local_day_hour_frame(con, created, tz))


def local_day_hour_frame(con: BaseBackend, created: ir.Table, tz: str) -> pd.DataFrame:
    """local_day_hour's rows as a frame: quarter, weekday, hour (a row per quarter-hour
    of ``created.created_at`` that holds an order)."""
    quarters = con.to_pandas(
        created.select(quarter=micros(con, created.created_at) // _US_PER_QUARTER).distinct()
    )["quarter"].dropna()
    return _local_frame(quarters, tz)


def local_day_hour_span(con: BaseBackend, orders: ir.Table, tz: str) -> pd.DataFrame:
    """local_day_hour_frame's rows for every quarter-hour from the first to the last
    created_at of ``orders``: the quarters of any subset of them, for its with_segments.

    Found from the column's least and greatest value, which the engine reads from the
    file's statistics where it has them, instead of a pass over the orders.
    """
    found = con.execute(
        orders.aggregate(first=orders.created_at.min(), last=orders.created_at.max())
    )
    ends = [found[c].iloc[0] for c in ("first", "last")]
    if any(pd.isna(e) for e in ends):
        return _local_frame(pd.Series([], dtype="int64"), tz)
    low, high = (_us(_utc(pd.Timestamp(e))) // _US_PER_QUARTER for e in ends)
    return _local_frame(pd.Series(np.arange(low, high + 1, dtype=np.int64)), tz)


def _utc(stamp: pd.Timestamp) -> pd.Timestamp:
    """An engine's instant in UTC (engines without time zones give UTC wall time)."""
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _local_frame(quarters: pd.Series, tz: str) -> pd.DataFrame:
    """quarter, weekday (Mon..Sun) and hour in ``tz`` of some quarter-hours since the epoch."""
    stamps = pd.to_datetime(quarters.astype("int64") * _US_PER_QUARTER, unit="us", utc=True)
    local = stamps.dt.tz_convert(tz)
    return pd.DataFrame(
        {
            "quarter": quarters.astype("int64").to_numpy(),
            "weekday": [flow.WEEKDAY_NAMES[d] for d in local.dt.day_of_week],
            "hour": local.dt.hour.astype("int64").to_numpy(),
        }
    )


def _local_table(frame: pd.DataFrame) -> ir.Table:
    return ibis.memtable(frame, schema={"quarter": "int64", "weekday": "string", "hour": "int64"})


def with_segments(
    con: BaseBackend,
    orders: ir.Table,
    tz: str,
    dimensions: Sequence[str] = flow.SEGMENTS,
    local: pd.DataFrame | None = None,
) -> ir.Table:
    """``orders`` plus its segment columns as text (weekday Mon..Sun, hour 0-23 as integer).

    Segment columns the orders lack are left out; weekday and hour are those of creation
    in local time (``tz``); ``local``: local_day_hour_frame of these orders, when the
    caller has it already.
    """
    out = orders.mutate(
        **{
            f"seg_{d}": orders[d].cast("string")
            for d in dimensions
            if d in PLAIN_SEGMENTS and d in orders.columns
        }
    )
    if {"weekday", "hour"} & set(dimensions) and "created_at" in orders.columns:
        out = out.mutate(_quarter=micros(con, out.created_at) // _US_PER_QUARTER)
        local_table = local_day_hour(con, orders, tz) if local is None else _local_table(local)
        joined = out.left_join(local_table, out._quarter == local_table.quarter)
        extra = {}
        if "weekday" in dimensions:
            extra["seg_weekday"] = joined.weekday
        if "hour" in dimensions:
            extra["seg_hour"] = joined.hour
        out = joined.select(*[c for c in out.columns if c != "_quarter"], **extra)
    return out


_KEPT = itertools.count()


def keep(con: BaseBackend, expr: ir.Table) -> ir.Table:
    """On DuckDB, an expression's rows kept as a temporary table (computed once, read
    by several queries); on other engines the expression itself."""
    if con.name != "duckdb":
        return expr
    return con.create_table(f"_flow_{next(_KEPT)}", expr, temp=True)


def _local_values(local: pd.DataFrame | None, dimension: str) -> pd.Series:
    """The values of weekday or hour over the orders of a local_day_hour_frame."""
    return pd.Series([] if local is None else local[dimension], dtype=object)


def _in_order_of(dimension: str, values: pd.Series) -> list[Any]:
    """A dimension's values in the findings' order: weekdays Mon..Sun, else sorted."""
    if dimension == "weekday":
        return list(flow.WEEKDAY_NAMES)
    if dimension == "hour":
        return sorted(int(v) for v in values.dropna().unique())
    return sorted(str(v) for v in values.dropna().unique())


def cohort_sums_on(
    con: BaseBackend,
    orders: ir.Table,
    weeks: Sequence[Window],
    dimensions: Sequence[str] = flow.SEGMENTS,
    stages: Sequence[str] = tuple(flow.STAGES),
) -> flow.CohortSums:
    """flow.cohort_sums computed by the engine: only the sums per cell come back.

    The same definitions (cohort = week the stage started; hours up to the end of that
    week or the stage's end or a cancellation; expected hours and variance = mean and
    variance of the baseline orders that started in the same BUCKET_HOURS slot of their
    week), with every baseline order counted: the engine needs no sample.
    """
    bounds = [w.start for w in weeks] + [weeks[-1].end]
    b_us = [_us(b) for b in bounds]
    last = len(weeks) - 1
    present = [st for st in stages if all(c in orders.columns for c in flow.STAGES[st])]
    tz = str(weeks[-1].start.tz)
    starts_in = [
        (orders[flow.STAGES[st][0]] >= instant(bounds[0]))
        & (orders[flow.STAGES[st][0]] < instant(bounds[-1]))
        for st in present
    ]
    if not present:
        return _no_sums(len(weeks))
    needed = {"created_at", "cancelled_at", *dimensions}
    needed |= {c for st in present for c in flow.STAGES[st]}
    cohort = orders.filter(ibis.or_(*starts_in))
    cohort = cohort.select(*[c for c in cohort.columns if c in needed])
    local = None
    if {"weekday", "hour"} & set(dimensions) and "created_at" in cohort.columns:
        local = local_day_hour_frame(con, cohort, tz)
    segmented = with_segments(con, cohort, tz, dimensions, local=local)
    # Each dimension's values (few) come first: the plain ones as their few combinations,
    # weekday and hour from the local quarter-hours. The engine then keeps one integer
    # per cell and the milestones as integers, so that only small rows of numbers are
    # kept, read again and cross back.
    plain = [d for d in dimensions if d in PLAIN_SEGMENTS and f"seg_{d}" in segmented.columns]
    # (from the cohort itself: the engine would otherwise join every order to its local
    # hour for columns this query does not read)
    combos = (
        con.to_pandas(
            cohort.select(**{f"seg_{d}": cohort[d].cast("string") for d in plain}).distinct()
        )
        if plain
        else pd.DataFrame()
    )
    segs: dict[str, flow._Segments] = {}
    for d in dimensions:
        if f"seg_{d}" not in segmented.columns:
            continue
        found = combos[f"seg_{d}"] if d in plain else _local_values(local, d)
        if found.notna().any():
            segs[d] = flow._Segments(np.zeros(0, np.int64), _in_order_of(d, found))
    dims = list(segs)
    if not dims:
        return _no_sums(len(weeks))
    radix = [len(segs[d].values) + 1 for d in dims]
    cell_key: Any = ibis.literal(0, "int64")
    for d, r in zip(dims, radix, strict=True):
        number = {v: i + 1 for i, v in enumerate(segs[d].values)}
        code = segmented[f"seg_{d}"].substitute(number, else_=0).fill_null(0).cast("int64")
        cell_key = cell_key * r + code
    stamps = [c for c in ("created_at", "cancelled_at", *sorted(needed)) if c in segmented.columns]
    stamps = list(dict.fromkeys(c for c in stamps if c not in dimensions))
    segmented = keep(
        con,
        segmented.select(cell=cell_key, **{c: micros(con, segmented[c]) for c in stamps}),
    )
    seg_cols = ["cell"]
    slot = flow.BUCKET_HOURS * US_PER_HOUR
    slots = 7 * 24 // flow.BUCKET_HOURS
    spans = {b_us[i + 1] - b_us[i] for i in range(len(weeks))}
    per_stage = {}
    for stage in present:
        a, b = flow.STAGES[stage]
        # one step per select: each column is computed once, not repeated in every use
        times = segmented.select(
            *seg_cols,
            s=segmented[a],
            e=segmented[b],
            c=segmented.cancelled_at if "cancelled_at" in segmented.columns else ibis.null("int64"),
        )
        rows = times.filter((times.s >= b_us[0]) & (times.s < b_us[-1]))
        if len(spans) == 1:  # every week equally long (no clock change): arithmetic
            rows = rows.mutate(week=(rows.s - b_us[0]) // (b_us[1] - b_us[0]))
        else:
            rows = rows.mutate(
                week=ibis.cases(
                    *[((rows.s >= b_us[i]) & (rows.s < b_us[i + 1]), i) for i in range(len(weeks))]
                )
            )
        rows = rows.mutate(
            w_start=ibis.cases(*[(rows.week == i, b_us[i]) for i in range(len(weeks))]),
            w_end=ibis.cases(*[(rows.week == i, b_us[i + 1]) for i in range(len(weeks))]),
        )
        stop = ibis.least(rows.w_end, rows.e.fill_null(rows.w_end), rows.c.fill_null(rows.w_end))
        per_stage[stage] = rows.select(
            *seg_cols,
            base=rows.week < last,
            bucket=ibis.least((rows.s - rows.w_start) // slot, slots - 1).cast("int64"),
            hours=ibis.greatest(stop - rows.s, 0).cast("float64") / US_PER_HOUR,
        )
    # the baseline's mean and variance per start slot (few rows), as numpy computes them
    # (every stage's in one query: one round trip to the engine instead of one per stage)
    slot_parts = []
    for i, tab in enumerate(per_stage.values()):
        base = tab.filter(tab.base)
        slot_parts.append(
            base.group_by("bucket").aggregate(
                stage=ibis.literal(i, "int64"),
                n=base.count(),
                s=base.hours.sum(),
                sq=(base.hours * base.hours).sum(),
            )
        )
    slot_rows = con.to_pandas(ibis.union(*slot_parts) if len(slot_parts) > 1 else slot_parts[0])
    slot_stats = {}
    for i, stage in enumerate(per_stage):
        got = slot_rows[slot_rows["stage"] == i]
        n_b, sum_b, sq_b = (np.zeros(slots) for _ in range(3))
        idx = got["bucket"].to_numpy(dtype=np.int64)
        n_b[idx] = got["n"].to_numpy(dtype=np.float64)
        sum_b[idx] = got["s"].to_numpy(dtype=np.float64)
        sq_b[idx] = got["sq"].to_numpy(dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_b = np.where(n_b > 0, sum_b / n_b, 0.0)
            var_b = np.where(n_b > 1, (sq_b - n_b * mean_b**2) / np.maximum(n_b - 1, 1), 0.0)
        slot_stats[stage] = ibis.memtable(
            pd.DataFrame(
                {"bucket": np.arange(slots), "mean": mean_b, "var": np.maximum(var_b, 0.0)}
            ),
            schema={"bucket": "int64", "mean": "float64", "var": "float64"},
        )
    parts = []
    for i, (stage, tab) in enumerate(per_stage.items()):
        joined = tab.join(slot_stats[stage], "bucket")
        parts.append(
            joined.group_by([*seg_cols, "base"]).aggregate(
                stage=ibis.literal(i, "int64"),
                n=joined.count().cast("int64"),
                a=joined.hours.sum().cast("float64"),
                e=joined["mean"].sum().cast("float64"),
                v=joined["var"].sum().cast("float64"),
            )
        )
    union = parts[0]
    for part in parts[1:]:
        union = union.union(part)
    cells = con.to_pandas(union)
    return _assemble_sums(cells, segs, list(per_stage), len(weeks))


def _no_sums(weeks: int) -> flow.CohortSums:
    empty = np.zeros(0, dtype=np.int64)
    return flow.CohortSums([], {}, empty, {}, {}, {}, max(weeks - 1, 1), empty, {})


def _assemble_sums(
    cells: pd.DataFrame, segs: dict[str, flow._Segments], stages: list[str], weeks: int
) -> flow.CohortSums:
    """CohortSums from the engine's rows: cell key, base flag, stage, the four sums."""
    dims = list(segs)
    radix = [len(segs[d].values) + 1 for d in dims]
    cell, uniques = pd.factorize(cells["cell"].to_numpy(dtype=np.int64))
    cell_codes = {}
    rest = np.asarray(uniques, dtype=np.int64)
    for d, r in zip(reversed(dims), reversed(radix), strict=True):
        rest, cell_codes[d] = np.divmod(rest, r)
    n_cells = len(uniques)
    base = cells["base"].to_numpy(dtype=bool)
    stage_of = cells["stage"].to_numpy(dtype=np.int64)
    values = cells[["n", "a", "e", "v"]].to_numpy(dtype=np.float64)
    sums, totals = {}, {}
    for i, stage in enumerate(stages):
        table = np.zeros((n_cells, 8))
        for offset, rows in ((0, ~base), (4, base)):
            pick = rows & (stage_of == i)
            for j in range(4):
                table[:, offset + j] = np.bincount(
                    cell[pick], weights=values[pick, j], minlength=n_cells
                )
        sums[stage] = table
        totals[stage] = table.sum(axis=0)
    reduced, reduced_codes = flow._reduce_cells(segs, dims, cell_codes)
    return flow.CohortSums(
        dims,
        segs,
        np.zeros(0, dtype=np.int64),
        cell_codes,
        sums,
        totals,
        max(weeks - 1, 1),
        reduced,
        reduced_codes,
    )


STAGE_SUMMARY_COLUMNS = ["ask", "orders", "p10_h", "q1_h", "median_h", "q3_h", "p90_h"]
_SUMMARY_QUANTILES = {"p10_h": 0.1, "q1_h": 0.25, "median_h": 0.5, "q3_h": 0.75, "p90_h": 0.9}


def stage_summaries(
    con: BaseBackend,
    orders: ir.Table,
    tz: str,
    asks: Sequence[tuple[str, Mapping[str, Any], Window]],
    local: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Stage hours of some segments, as box statistics, in one query.

    Each ask is (stage, segment as {dimension: value}, window): the orders of the
    segment (weekday as Mon..Sun, hour as an integer; {} = every order) whose stage END
    falls in the window and that have its start; hours = end - start. Per ask (its
    position): orders, and the P10, quartiles and P90 of the hours (numpy's linear
    interpolation; NULL without orders). Columns STAGE_SUMMARY_COLUMNS, in ask order.
    ``local``: a local_day_hour_frame or local_day_hour_span holding the orders' quarters,
    when the caller has one (else the asked orders' quarters are found first).
    """
    if not asks:
        return pd.DataFrame(columns=STAGE_SUMMARY_COLUMNS)
    dims = sorted({d for _, segment, _ in asks for d in segment})
    # Only the orders some ask reads, with only the columns the asks read: the segments
    # are then computed (and kept by the engine for the asks' union) on those alone.
    # one condition per stage end and window, not per ask: the engine tests each
    # condition it is given on every order
    spans = {(flow.STAGES[stage][1], window.start, window.end) for stage, _, window in asks}
    ends = [
        (orders[col] >= instant(start)) & (orders[col] < instant(end))
        for col, start, end in sorted(spans)
    ]
    needed = {c for stage, _, _ in asks for c in flow.STAGES[stage]}
    needed |= {d for d in dims if d in PLAIN_SEGMENTS} | ({"created_at"} if dims else set())
    orders = orders.filter(ibis.or_(*ends)).select(*[c for c in orders.columns if c in needed])
    table = with_segments(con, orders, tz, dims, local=local) if dims else orders
    # One subset per stage and window, read by every ask on it: each ask then filters
    # the few orders of its stage and window, not every order some ask reads. An ask
    # made twice (the whole week of a stage, for several findings) is computed once.
    subsets: dict[tuple[str, pd.Timestamp, pd.Timestamp], ir.Table] = {}
    index_of: dict[tuple[Any, ...], int] = {}
    parts: list[ir.Table] = []
    first_of: list[int] = []
    for stage, segment, window in asks:
        key = (stage, window.start, window.end)
        if key not in subsets:
            a, b = flow.STAGES[stage]
            rows = table.filter(
                table[a].notnull()
                & (table[b] >= instant(window.start))
                & (table[b] < instant(window.end))
            )
            seg_cols = [c for c in rows.columns if c.startswith("seg_")]
            subsets[key] = rows.select(*seg_cols, hours=hours_of(con, rows[a], rows[b]))
        ask = (*key, *sorted((d, segment_literal(d, v)) for d, v in segment.items()))
        if ask in index_of:
            first_of.append(index_of[ask])
            continue
        rows = subsets[key]
        if segment:
            rows = rows.filter(
                *[rows[f"seg_{d}"] == segment_literal(d, v) for d, v in segment.items()]
            )
        i = index_of[ask] = len(parts)
        first_of.append(i)
        parts.append(
            rows.aggregate(
                ask=ibis.literal(i, "int64"),
                orders=rows.count().cast("int64"),
                **{
                    k: rows.hours.quantile(q).cast("float64") for k, q in _SUMMARY_QUANTILES.items()
                },
            )
        )
    union = ibis.union(*parts) if len(parts) > 1 else parts[0]
    try:
        found = con.to_pandas(union).set_index("ask")
    except Exception as exc:
        if not out_of_memory(exc):
            raise
        # On millions of orders a week the union keeps every asked order in memory at
        # once (a shared subquery); ask by ask, each keeps only its own orders' hours.
        found = pd.concat([con.to_pandas(part) for part in parts]).set_index("ask")
    out = found.reindex(first_of).reset_index(drop=True)
    out.insert(0, "ask", np.arange(len(asks), dtype=np.int64))
    out["orders"] = out["orders"].astype("int64")
    return out[STAGE_SUMMARY_COLUMNS]


def segment_literal(dimension: str, value: Any) -> Any:
    """A finding's segment value as the engine's segment columns hold it."""
    if dimension == "hour":
        return int(value)
    if dimension == "weekday":
        return flow.WEEKDAY_NAMES[flow.weekday_number(value)]
    return str(value)


def first_created(con: BaseBackend, orders: ir.Table) -> pd.Timestamp | None:
    """The earliest created_at of the orders (None without one), in UTC."""
    first = con.execute(orders.created_at.min())
    return None if first is None or pd.isna(first) else pd.Timestamp(first).tz_convert("UTC")


# --- the explorer's tables: one row per order, per case, per variant ----------------------

EXPLORER_STAGES = {**flow.STAGES, "created_delivered": ("created_at", "delivered_at")}
VARIANT_COLUMNS = ["variant", "events", "cases", "share", "cumulative_share", "median_h"]


def order_stages_expr(
    con: BaseBackend, orders: ir.Table, tz: str, as_of: pd.Timestamp | None
) -> ir.Table:
    """One row per order: order_id, created_at, cancelled, the segments and stage hours.

    Segments as with_segments (``seg_<dimension>``). Per stage (EXPLORER_STAGES):
    ``<stage>_h`` = end - start in hours where both milestones are there (else NULL);
    ``<stage>_open_h`` = as_of - start for an order still in the stage (started, not
    ended, not cancelled), else NULL.
    """
    table = with_segments(con, orders, tz)
    cancelled = table.cancelled_at.notnull() if "cancelled_at" in table.columns else False
    extra: dict[str, Any] = {
        "cancelled": ibis.literal(cancelled) if cancelled is False else cancelled
    }
    for stage, (a, b) in EXPLORER_STAGES.items():
        if a not in table.columns:
            extra[f"{stage}_h"] = ibis.null("float64")
            extra[f"{stage}_open_h"] = ibis.null("float64")
            continue
        ended = table[b] if b in table.columns else ibis.null("timestamp('UTC')")
        done = hours_of(con, table[a], ended)
        extra[f"{stage}_h"] = done
        if as_of is None:
            extra[f"{stage}_open_h"] = ibis.null("float64")
            continue
        still = table[a].notnull() & ended.isnull()
        if cancelled is not False:
            still &= ~cancelled
        extra[f"{stage}_open_h"] = ibis.ifelse(
            still, hours_of(con, table[a], instant(as_of)), ibis.null("float64")
        )
    segments = [c for c in table.columns if c.startswith("seg_")]
    keep = ["order_id", "created_at", *segments, *[c for c in ("_row",) if c in table.columns]]
    return table.select(
        order_id=table.order_id.cast("string"),
        **{c: table[c] for c in keep[1:]},
        **extra,
    )


def case_variants_expr(con: BaseBackend, events: ir.Table) -> ir.Table:
    """Per case of an event log: case_id, variant (activities joined by " > " in log
    order), events and through_h (hours from its first to its last event).

    Log order as everywhere: time, then the business rank of the activity. DuckDB only
    (Spark's string aggregation has no order).
    """
    codes = activity_codes(events)
    coded = events.select(
        case_id=events.case_id.cast("string"),
        activity=events.activity.cast("string"),
        us=micros(con, events.timestamp),
    ).join(codes, "activity")
    per_case = coded.group_by("case_id").aggregate(
        variant=coded.activity.group_concat(
            flow.VARIANT_SEPARATOR, order_by=[coded.us, coded.code]
        ),
        events=coded.count().cast("int64"),
        first=coded.us.min(),
        last=coded.us.max(),
    )
    return per_case.select(
        "case_id",
        "variant",
        "events",
        through_h=(per_case["last"] - per_case["first"]).cast("float64") / US_PER_HOUR,
    )


def variants_on(con: BaseBackend, cases: ir.Table, top: int | None = None) -> pd.DataFrame:
    """flow.variants (its ``top`` rows) from per-case variants (case_variants_expr).

    cases, share of all cases, cumulative share, median_h = median through_h; sorted by
    cases, descending, then variant.
    """
    per = cases.group_by("variant").aggregate(
        events=cases.events.max(),
        cases=cases.count().cast("int64"),
        median_h=cases.through_h.quantile(0.5).cast("float64"),
    )
    ranked = per.order_by([ibis.desc("cases"), "variant"])
    total = cases.count()
    frame = con.to_pandas(ranked.limit(top) if top is not None else ranked)
    return variant_frame(frame, int(con.execute(total)) if len(frame) else 0)


def variant_frame(ranked: pd.DataFrame, all_cases: int) -> pd.DataFrame:
    """flow.variants' columns from ``ranked`` (variant, events, cases, median_h; ranked):
    share = cases / all_cases, cumulative_share its running sum."""
    out = pd.DataFrame(
        {
            "variant": ranked["variant"].astype("str"),
            "events": ranked["events"].astype("int64"),
            "cases": ranked["cases"].astype("int64"),
        }
    )
    out["share"] = out["cases"] / max(all_cases, 1)
    out["cumulative_share"] = out["share"].cumsum()
    out["median_h"] = ranked["median_h"].astype("float64")
    return out[VARIANT_COLUMNS].reset_index(drop=True)


def finding_orders_on(
    con: BaseBackend, orders: ir.Table, finding: Any, window: Window, tz: str
) -> pd.DataFrame:
    """flow.finding_orders by the engine: the segment's orders whose stage started in
    ``window``, hours up to the window's end (open = still in the stage then), slowest
    first (ties by order number); columns order_id, the stage's start and end, hours,
    open."""
    stage = str(finding.stage)
    a, b = flow.STAGES[stage]
    segment = {finding.dimension: finding.value}
    if isinstance(finding.dimension_2, str):
        segment[finding.dimension_2] = finding.value_2
    table = with_segments(con, orders, tz, list(segment))
    rows = table.filter(
        (table[a] >= instant(window.start)) & (table[a] < instant(window.end)),
        *[table[f"seg_{d}"] == segment_literal(d, v) for d, v in segment.items()],
    )
    end = instant(window.end)
    leave = rows[b].fill_null(end)
    if "cancelled_at" in rows.columns:
        leave = ibis.least(leave, rows.cancelled_at.fill_null(end))
    hours = ibis.greatest(hours_of(con, rows[a], ibis.least(leave, end)), 0.0)
    out = rows.select(
        order_id=rows.order_id.cast("string"),
        **{a: rows[a], b: rows[b]},
        hours=hours,
        open=leave >= end,
    ).order_by([ibis.desc("hours"), "order_id"])
    frame = con.to_pandas(out)
    for col in (a, b):
        frame[col] = frame[col].dt.tz_convert(tz)
    return frame.reset_index(drop=True)
