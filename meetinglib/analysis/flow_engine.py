"""The directly-follows graph as one Ibis expression, run by the query engine.

This is the only definition of the graph's edges: DuckDB runs it on the report's event
log (``directly_follows``), and the same expression runs on Spark or on tables the
engine reads from files (``directly_follows_on``).

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

from collections.abc import Mapping
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pandas as pd
from ibis.backends import BaseBackend

from meetinglib.analysis import flow
from meetinglib.data.engine import frame_table, hours_between, shared

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
    tables: Mapping[str, ir.Table], start: pd.Timestamp, end: pd.Timestamp
) -> ir.Table:
    """The whole event log of the cases with an event in ``[start, end)`` (see event_log_expr).

    ``tables``: orders, and events and after_sales when the source has them. A
    transition ending in the window needs the case's event before it, however early.
    """
    log = event_log_expr(tables["orders"], tables.get("events"), tables.get("after_sales"))
    inside = log.filter((log.timestamp >= instant(start)) & (log.timestamp < instant(end)))
    cases = inside.select("case_id").distinct()
    return log.filter(log.case_id.isin(cases.case_id))


def activity_rank(activity: ir.StringValue) -> ir.IntegerValue:
    """Business rank of a known activity (flow.ACTIVITY_ORDER); any other name ranks after."""
    known = {name: i for i, name in enumerate(flow.ACTIVITY_ORDER)}
    return activity.substitute(known, else_=len(known))


def activity_codes(events: ir.Table) -> ir.Table:
    """The log's activity names numbered in business order: activity, code (0, 1, ...)."""
    names = events.select(activity=events.activity.cast("string")).distinct()
    in_order = ibis.window(order_by=[activity_rank(names.activity), names.activity])
    return names.mutate(code=ibis.row_number().over(in_order))


def transitions_expr(events: ir.Table, codes: ir.Table) -> ir.Table:
    """Every event with the next one of its case: case_id, source, target, hours, first, at.

    source and target are activity codes (``codes``, see activity_codes); target, hours
    and at (the target's time, UTC wall time) are NULL on a case's last event; first
    marks a case's first event.
    """
    plain = events.select(
        case_id=events.case_id.cast("string"),
        activity=events.activity.cast("string"),
        # instants as UTC wall time (every engine's session runs in UTC): arithmetic on
        # them is exact and skips the engines' time-zone machinery
        timestamp=events.timestamp.cast("timestamp"),
    )
    # integer codes: partitions and sorts on them are several times faster than on text
    coded = plain.join(codes, "activity").select("case_id", "timestamp", "code")
    in_case = ibis.window(group_by=coded.case_id, order_by=[coded.timestamp, coded.code])
    after = coded.timestamp.lead().over(in_case)
    return coded.select(
        case_id=coded.case_id,
        source=coded.code,
        target=coded.code.lead().over(in_case),
        hours=hours_between(coded.timestamp, after),
        first=ibis.row_number().over(in_case) == 0,
        at=after,
    )


def _rank_quantile(hours: ir.FloatingValue, i: Any, n: Any, after: Any, q: float) -> Any:
    """The q-quantile's value on the row at its lower position, NULL on every other row."""
    pos = (n - 1) * q
    low = pos.floor()
    frac = pos - low
    value = ibis.ifelse(frac == 0, hours, hours + (after - hours) * frac)
    return ibis.ifelse(i == low, value, ibis.null("float64"))


def directly_follows_expr(
    events: ir.Table,
    start_end: bool = False,
    ending_in: tuple[pd.Timestamp, pd.Timestamp] | None = None,
) -> ir.Table:
    """The directly-follows graph of an event log table, as one expression.

    ``events`` has the columns case_id, activity and timestamp (no empty cells). Columns
    as DFG_COLUMNS, in no particular row order. With ``start_end`` the artificial edges
    flow.START -> first activity and last activity -> flow.END are added (cases = count
    = cases starting or ending there; durations NULL). With ``ending_in`` = (start, end)
    only the transitions whose later event falls in ``[start, end)`` count (no start and
    end edges then).
    """
    if start_end and ending_in is not None:
        raise ValueError("start and end edges belong to whole cases, not to a window")
    codes = activity_codes(events)
    steps = transitions_expr(events, codes)
    edges = steps.filter(steps.target.notnull())
    if ending_in is not None:
        low, high = (instant(t).cast("timestamp") for t in ending_in)
        edges = edges.filter((edges.at >= low) & (edges.at < high))
    counts = edges.group_by(["source", "target"]).aggregate(
        cases=edges.case_id.nunique().cast("int64"),
        count=edges.count().cast("int64"),
        mean_h=edges.hours.mean().cast("float64"),
    )
    # quantiles from ranks: the hours alone, numbered within their edge
    slim = edges.select("source", "target", "hours")
    by_edge = ibis.window(group_by=[slim.source, slim.target], order_by=slim.hours)
    whole_edge = ibis.window(group_by=[slim.source, slim.target])
    ranked = slim.mutate(
        i=ibis.row_number().over(by_edge),
        after=slim.hours.lead().over(by_edge),
        n=slim.hours.count().over(whole_edge),
    )
    picks = {
        name: _rank_quantile(ranked.hours, ranked.i, ranked.n, ranked.after, q).max()
        for name, q in QUANTILES.items()
    }
    quantiles = ranked.group_by(["source", "target"]).aggregate(**picks)
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
    # codes back to names; -1 and -2 stand for START and END
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
    frame = con.to_pandas(directly_follows_expr(events, start_end, ending_in))
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
