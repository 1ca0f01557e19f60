"""The data report's breakdowns of one week, computed by the query engine.

Each function takes engine tables (``WeekData.engine_tables()``: Ibis tables, timestamps
as instants) and the engine ``con`` (``engine.shared(params.engine)``: embedded DuckDB by
default, Spark through params), and returns only the aggregate the report shows: a row
per day, per dimension value, per stage, per bucket... or, for the handout's list of
examples, the few orders it names, by id. No row table comes back to pandas.

Definitions (shared with the KPI catalogue, ``kpis``):

* a row is placed in a window by its event (created, shipped, delivered, opened,
  requested...) in the half-open window ``[start, end)``; a level (backlog, pending
  settlements) is taken at an instant, a milestone exactly at it not yet happened;
* durations are counted in whole microseconds between two instants
  (``engine.hours_between``); a duration whose end precedes its start is left out;
* medians and P90s interpolate linearly between the order statistics at q·(n−1)
  (numpy's default, DuckDB's ``quantile_cont``, Spark's ``percentile``);
* breakdowns by a dimension list every known value of it (the schema's values, the
  ``levels`` given, the values seen anywhere in the table), zeros included; an empty
  value is counted under ``MISSING``, shown only when there are some.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
from ibis.backends import BaseBackend

from meetinglib.core.schema import ORDER_TYPES, ORDERS, SETTLEMENTS, TICKET_CATEGORIES
from meetinglib.core.weeks import IsoWeek, Window
from meetinglib.data import engine

# stage id -> (start milestone, end milestone); the end milestone places an order in a week.
STAGES: dict[str, tuple[str, str]] = {
    "created_paid": ("created_at", "paid_at"),
    "paid_shipped": ("paid_at", "shipped_at"),
    "shipped_delivered": ("shipped_at", "delivered_at"),
    "created_delivered": ("created_at", "delivered_at"),
}
STAGE_COLUMNS = ("count", "median_h", "p90_h", "mean_h")
PARETO_COLUMNS = ("count", "rate", "share", "cumulative_share")
# Level for orders with an empty dimension value; handouts show the label "word.missing".
MISSING = "(missing)"
P90 = 0.9
SCORECARD_COLUMNS = (
    "shipped",
    "delivered",
    "on_time_delivery_rate",
    "transit_median_h",
    "transit_p90_h",
    "lost_damaged_rate",
)
EXAMPLE_COLUMNS = (
    "order_id",
    "order_type",
    "exception_code",
    "warehouse",
    "carrier",
    "created_at",
    "status",
    "hours_late",
    "amount",
)
EXAMPLE_STATUSES = ("not_shipped", "in_transit", "delivered", "cancelled")
AGING_BUCKETS = ("0_7", "8_14", "15_30", "over_30")
_AGING_UPPER = (7.0, 14.0, 30.0)
# Settlement statuses that close a row whether or not the export gives its time: settled
# (the money arrived) and refunded (nothing is due any more). Pending and disputed money
# is still to be settled; so is money under a status the mapping does not know.
CLOSED_STATUSES = ("settled", "refunded")
_TIMESTAMP = "timestamp('UTC')"


# --- helpers -------------------------------------------------------------------------------


def instant(when: pd.Timestamp | dt.datetime) -> ir.TimestampScalar:
    """A timezone-aware instant as an engine literal (UTC, as the engine's columns)."""
    stamp = pd.Timestamp(when)
    if stamp.tzinfo is None:
        raise TypeError(
            f"timestamp {stamp} has no timezone; localize it to the platform timezone "
            "(e.g. window.end) before taking a backlog."
        )
    return ibis.literal(stamp.tz_convert("UTC").to_pydatetime(), type=_TIMESTAMP)


def col(table: ir.Table, name: str) -> ir.Value:
    """A column of ``table``; an optional canonical orders column the source lacks reads as
    empty (NULL of its kind)."""
    if name in table.columns:
        return table[name]
    if name not in ORDERS.names:
        raise KeyError(
            f"column {name!r} is neither in the orders frame nor a canonical orders column; "
            f"use one of {ORDERS.names}."
        )
    kind = ORDERS.column(name).kind
    return ibis.null().cast({"timestamp": _TIMESTAMP, "float": "float64"}.get(kind, "string"))


def _optional(table: ir.Table, name: str, dtype: str) -> ir.Value:
    """A column of another table, NULL of ``dtype`` when the source lacks it."""
    return table[name] if name in table.columns else ibis.null().cast(dtype)


def within(when: ir.Value, window: Window) -> ir.BooleanValue:
    """Whether ``when`` falls in the half-open window (NULL: no)."""
    inside = (when >= instant(window.start)) & (when < instant(window.end))
    return inside.fill_null(False)


def before(when: ir.Value, instant_: ir.Value) -> ir.BooleanValue:
    """Whether ``when`` happened strictly before the instant (NULL: not yet)."""
    return (when < instant_).fill_null(False)


def _count(condition: ir.BooleanValue) -> ir.IntegerValue:
    return ibis.ifelse(condition, 1, 0).sum().fill_null(0)


def _value(table: ir.Table, by: str) -> ir.StringValue:
    """The values of dimension ``by`` as text, empty ones as MISSING."""
    return col(table, by).cast("string").fill_null(MISSING)


def dimension_levels(by: str, seen: Sequence[Any], levels: Sequence[str] = ()) -> list[str]:
    """Every known value of ``by`` in display order: the schema's, ``levels``, then the values
    seen (sorted), MISSING last."""
    known: list[str] = []
    if by in ORDERS.names and ORDERS.column(by).allowed:
        known += list(ORDERS.column(by).allowed or ())
    known += [str(v) for v in levels]
    known += sorted(str(v) for v in seen if v is not None and v != MISSING)
    return [*dict.fromkeys(known), MISSING]


def _without_empty_missing(frame: Any, count_column: str | None = None) -> Any:
    """Drop the MISSING level when nothing falls under it (an all-zero row is noise)."""
    at_missing = frame.index.get_level_values(0) == MISSING
    counts = frame if count_column is None else frame[count_column]
    return frame if np.asarray(counts)[at_missing].any() else frame[~at_missing]


def _per_value(
    con: BaseBackend,
    table: ir.Table,
    by: str,
    levels: Sequence[str],
    **sums: ir.BooleanValue,
) -> pd.DataFrame:
    """Per value of ``by`` over every row of ``table``: how many rows meet each condition
    (int64), every known value listed (zeros included)."""
    rows = table.select(_by=_value(table, by), **{k: ibis.ifelse(v, 1, 0) for k, v in sums.items()})
    grouped = rows.group_by("_by").aggregate(**{k: rows[k].sum() for k in sums})
    found = con.execute(grouped).set_index("_by")
    full = dimension_levels(by, found.index.tolist(), levels)
    table_ = found.reindex(full).fillna(0).astype("int64")
    table_.index.name = by
    return table_.loc[:, list(sums)]


def week_label(window: Window) -> str:
    """The ISO week (e.g. "2026-W11") of the window's start, in the window's timezone."""
    return str(IsoWeek.containing(window.start))


def _index_of(when: ir.Value, edges: Sequence[pd.Timestamp]) -> ir.IntegerValue:
    """The interval of ``edges`` holding ``when`` (0-based); NULL outside or when NULL."""
    index: ir.IntegerValue = ibis.literal(0)
    for edge in edges[1:-1]:
        index = index + ibis.ifelse(when >= instant(edge), 1, 0)
    inside = (when >= instant(edges[0])) & (when < instant(edges[-1]))
    return ibis.ifelse(inside.fill_null(False), index, ibis.null("int64"))


# --- the rows the week's breakdowns read ---------------------------------------------------


def kept(con: BaseBackend, table: ir.Table) -> ir.Table:
    """``table`` computed once and kept in the engine (a temporary table), for the queries
    that read it again; on other engines ``table`` itself (Spark plans each query anew).

    Ibis's own ``cache`` fails on DuckDB 2.0 (Ibis drops the table first with a statement
    DuckDB's parser refuses) and on Spark for in-memory tables (a two-part namespace), so
    on DuckDB the query Ibis compiled runs as ``CREATE TEMP TABLE ... AS``.
    """
    if con.name != "duckdb":
        return table
    con.execute(table.limit(0))  # registers the memtables the query reads
    name = ibis.util.gen_name("sections")
    con.raw_sql(f'CREATE TEMP TABLE "{name}" AS {con.compile(table)}')
    return con.table(name)


def report_orders(con: BaseBackend, orders: ir.Table, windows: Sequence[Window]) -> ir.Table:
    """The orders a report's breakdowns of ``windows`` read, kept in the engine: those with a
    milestone (created, paid, shipped, delivered) in the windows' span, or open (the
    backlog) at a window's end. A million orders a week means 13 million loaded orders
    and about 3 million of these: the breakdowns scan them, not the whole history."""
    span = Window(min(w.start for w in windows), max(w.end for w in windows))
    touched = within(orders.created_at, span)
    for milestone in ("paid_at", "shipped_at", "delivered_at"):
        touched |= within(col(orders, milestone), span)
    for window in windows:
        touched |= open_at(orders, instant(window.end))
    # The stage durations, computed once here: the breakdowns read them several times.
    hours = {_HOURS + stage: stage_hours(orders, stage, con.name) for stage in STAGES}
    return kept(con, orders.filter(touched).mutate(**hours))


def dimension_values(
    con: BaseBackend, orders: ir.Table, columns: Sequence[str]
) -> dict[str, list[str]]:
    """The values each of ``columns`` takes anywhere in ``orders`` (sorted), in one query;
    what a breakdown of fewer orders lists with zeros."""
    present = [c for c in columns if c in orders.columns]
    out: dict[str, list[str]] = {c: [] for c in columns}
    if not present:
        return out
    combos = con.execute(orders.select(*[orders[c].cast("string") for c in present]).distinct())
    for column in present:
        out[column] = sorted(str(v) for v in combos[column].dropna().unique())
    return out


# --- volume ------------------------------------------------------------------------------


def order_volume_by_day(con: BaseBackend, orders: ir.Table, window: Window) -> pd.DataFrame:
    """Orders created per local day of the window x order type, plus "total"; unit orders.

    Index: every calendar day of the window in the window's timezone (days without orders
    are 0); columns: the order types in schema order, then "total" (all orders created
    that day).
    """
    days = window.days.rename("day")
    day = _index_of(orders.created_at, [*days, window.end])
    rows = orders.select(day=day, order_type=col(orders, "order_type").cast("string"))
    rows = rows.filter(rows.day.notnull())
    found = con.execute(rows.group_by(["day", "order_type"]).aggregate(n=rows.count()))
    by_type = found.pivot_table(index="day", columns="order_type", values="n", aggfunc="sum")
    table = by_type.reindex(index=range(len(days)), columns=list(ORDER_TYPES)).fillna(0)
    table["total"] = found.groupby("day")["n"].sum().reindex(range(len(days))).fillna(0)
    table.index = days
    table.columns = pd.Index(table.columns, name="order_type")
    return table.astype("int64")


def order_volume_by(
    con: BaseBackend, orders: ir.Table, window: Window, by: str, levels: Sequence[str] = ()
) -> pd.Series:
    """Orders created in the window per value of ``by`` (channel, order_type...), unit orders."""
    counts = _per_value(con, orders, by, levels, orders=within(orders.created_at, window))
    series = counts["orders"]
    series.index.name, series.name = by, "orders"
    return _without_empty_missing(series)


def created_share_by(
    con: BaseBackend,
    orders: ir.Table,
    window: Window,
    by: str,
    name: str,
    flag: ir.BooleanValue,
    levels: Sequence[str] = (),
) -> pd.DataFrame:
    """Per value of ``by``: orders created in the window, those of them meeting ``flag``
    (``name``), rate = ratio (NaN for a value without orders). Event: created_at."""
    created = within(orders.created_at, window)
    table = _per_value(con, orders, by, levels, created=created, **{name: created & flag})
    table["rate"] = table[name] / table["created"].where(table["created"] > 0)
    return _without_empty_missing(table, "created")


def cancellations_by(
    con: BaseBackend, orders: ir.Table, window: Window, by: str, levels: Sequence[str] = ()
) -> pd.DataFrame:
    """Per value of ``by``: orders created in the window, cancelled (any time), rate."""
    flag = col(orders, "cancelled_at").notnull()
    return created_share_by(con, orders, window, by, "cancelled", flag, levels)


def abnormal_by(
    con: BaseBackend, orders: ir.Table, window: Window, by: str, levels: Sequence[str] = ()
) -> pd.DataFrame:
    """Per value of ``by``: orders created in the window, abnormal (exception_code set), rate."""
    flag = col(orders, "exception_code").notnull()
    return created_share_by(con, orders, window, by, "abnormal", flag, levels)


def stockouts_by(
    con: BaseBackend, orders: ir.Table, window: Window, by: str, levels: Sequence[str] = ()
) -> pd.DataFrame:
    """Per value of ``by``: orders created in the window, with exception stockout, rate."""
    flag = (col(orders, "exception_code") == "stockout").fill_null(False)
    return created_share_by(con, orders, window, by, "stockout", flag, levels)


# --- stage durations ---------------------------------------------------------------------

_HOURS = "_hours_"  # prefix of a stage's hours kept with the rows (``report_orders``)


def stage_hours(orders: ir.Table, stage: str, backend: str | None = None) -> ir.FloatingValue:
    """Hours from a stage's start to its end milestone (whole microseconds); NULL when either
    is missing or the end precedes the start. ``backend``: the engine's name, for its cheap
    native microseconds (engine.hours_between)."""
    if stage not in STAGES:
        raise KeyError(f"unknown stage {stage!r}; use one of {list(STAGES)}.")
    if _HOURS + stage in orders.columns:
        return orders[_HOURS + stage]
    start_col, end_col = STAGES[stage]
    hours = engine.hours_between(col(orders, start_col), col(orders, end_col), backend)
    return ibis.ifelse(hours >= 0, hours, ibis.null("float64"))


def stage_durations(
    con: BaseBackend,
    orders: ir.Table,
    window: Window,
    by: str | None = None,
    levels: Sequence[str] = (),
) -> pd.DataFrame:
    """Count, median, P90 and mean hours per stage, by END milestone in the window.

    One row per stage of ``STAGES`` (orders missing either milestone, or whose end precedes
    the start, excluded); with ``by`` a MultiIndex (by value, stage) listing every known
    value of ``by``. No order in a stage gives count 0 and NaN statistics.
    """
    parts = []
    for stage, (_, end_col) in STAGES.items():
        hours = stage_hours(orders, stage, con.name)
        ended = within(col(orders, end_col), window) & hours.notnull()
        keys = {"_by": _value(orders, by)} if by else {}
        part = orders.select(stage=ibis.literal(stage), hours=hours, _ended=ended, **keys)
        parts.append(part.filter(part._ended).drop("_ended"))
    rows = ibis.union(*parts)
    group = ["_by", "stage"] if by else ["stage"]
    stats = rows.group_by(group).aggregate(
        count=rows.count(),
        median_h=rows.hours.quantile(0.5),
        p90_h=rows.hours.quantile(P90),
        mean_h=rows.hours.mean(),
    )
    found = con.execute(stats)
    if by:
        seen = _seen(con, orders, by)
        full = pd.MultiIndex.from_product(
            [dimension_levels(by, seen, levels), list(STAGES)], names=[by, "stage"]
        )
        found = found.rename(columns={"_by": by}).set_index([by, "stage"])
    else:
        full = pd.Index(list(STAGES), name="stage")
        found = found.set_index("stage")
    table = found.reindex(full).loc[:, list(STAGE_COLUMNS)]
    table["count"] = table["count"].fillna(0).astype("int64")
    table = table.astype({c: "float64" for c in STAGE_COLUMNS[1:]})
    return _without_empty_missing(table, "count") if by else table


def _seen(con: BaseBackend, table: ir.Table, by: str) -> list[str]:
    """The values of ``by`` anywhere in ``table`` (MISSING for an empty one)."""
    values = table.select(_by=_value(table, by)).distinct()
    return [str(v) for v in con.execute(values)["_by"]]


# --- shipping deadline and backlog -------------------------------------------------------


def ship_deadline(orders: ir.Table, ship_sla_hours: float) -> ir.Value:
    """promised_ship_by where set, else paid_at + ship_sla_hours; NULL when neither."""
    by_sla = col(orders, "paid_at") + ibis.interval(seconds=int(round(ship_sla_hours * 3600)))
    return ibis.coalesce(col(orders, "promised_ship_by"), by_sla)


def open_at(orders: ir.Table, when: ir.Value) -> ir.BooleanValue:
    """Paid before ``when``, neither shipped nor cancelled before it (a milestone exactly at
    ``when`` has not happened yet, as in half-open windows)."""
    paid = before(col(orders, "paid_at"), when)
    return (
        paid & ~before(col(orders, "shipped_at"), when) & ~before(col(orders, "cancelled_at"), when)
    )


def backlog_by(
    con: BaseBackend,
    orders: ir.Table,
    when: pd.Timestamp,
    ship_sla_hours: float,
    by: str,
    levels: Sequence[str] = (),
) -> pd.DataFrame:
    """Backlog and overdue backlog (ship deadline before ``when``) at ``when`` per value of
    ``by``; unit orders."""
    at = instant(when)
    backlog = open_at(orders, at)
    overdue = backlog & before(ship_deadline(orders, ship_sla_hours), at)
    table = _per_value(con, orders, by, levels, backlog=backlog, overdue=overdue)
    return _without_empty_missing(table, "backlog")


# --- delivery ----------------------------------------------------------------------------


def judged_late(orders: ir.Table, window: Window) -> tuple[ir.BooleanValue, ir.BooleanValue]:
    """Delivered in the window with a promise; and of those, delivered after it."""
    delivered, promise = col(orders, "delivered_at"), col(orders, "promised_delivery_by")
    judged = within(delivered, window) & promise.notnull()
    return judged, judged & (delivered > promise).fill_null(False)


def late_delivery_by(
    con: BaseBackend, orders: ir.Table, window: Window, rows: str, cols: str
) -> pd.DataFrame:
    """Per (rows, cols) cell: delivered (with a promise), late, late_rate = late / delivered.

    Orders delivered in the window; only cells with deliveries, sorted; unit orders, share.
    """
    judged, late = judged_late(orders, window)
    cells = orders.filter(judged).select(
        _r=_value(orders, rows), _c=_value(orders, cols), _late=ibis.ifelse(late, 1, 0)
    )
    found = con.execute(
        cells.group_by(["_r", "_c"]).aggregate(delivered=cells.count(), late=cells._late.sum())
    )
    table = found.rename(columns={"_r": rows, "_c": cols}).set_index([rows, cols]).sort_index()
    table = table.astype({"delivered": "int64", "late": "int64"})
    table["late_rate"] = table["late"] / table["delivered"]
    return table


# --- abnormal orders -----------------------------------------------------------------------


def abnormal_orders(con: BaseBackend, orders: ir.Table, window: Window) -> pd.DataFrame:
    """Pareto of exception_code over orders created in the window: count, rate, share, cum.

    rate = count / orders created in the window; share = count / abnormal orders; rows by
    count descending then code; an empty frame with the same columns when none.
    """
    created = orders.filter(within(orders.created_at, window))
    code = col(created, "exception_code").cast("string")
    found = con.execute(
        created.group_by(code=code).aggregate(n=created.count()),
    )
    total = int(found["n"].sum())
    codes = found[found["code"].notna()]
    table = pd.DataFrame(
        {"count": codes["n"].to_numpy(dtype="int64")},
        index=pd.Index(codes["code"].astype(str), dtype="str", name="exception_code"),
    )
    table = table.sort_index().sort_values("count", ascending=False, kind="stable")
    table["rate"] = table["count"] / max(total, 1)
    table["share"] = table["count"] / max(int(table["count"].sum()), 1)
    table["cumulative_share"] = table["share"].cumsum()
    return table.astype({c: "float64" for c in PARETO_COLUMNS[1:]})


def _consecutive(windows: Sequence[Window]) -> list[pd.Timestamp]:
    """The week starts and the last end; the windows must be consecutive."""
    if not windows:
        raise ValueError("no windows given; pass at least one week.")
    for first, then in zip(windows, windows[1:], strict=False):
        if first.end != then.start:
            raise ValueError(
                f"windows must be consecutive: one ends {first.end}, the next starts "
                f"{then.start}; pass consecutive weeks (weeks.weeks_ending)."
            )
    return [w.start for w in windows] + [windows[-1].end]


def abnormal_by_week(con: BaseBackend, orders: ir.Table, windows: Sequence[Window]) -> pd.DataFrame:
    """Abnormal orders per week created x exception_code (codes by total, descending); orders.

    Index: week labels of ``windows`` (consecutive); weeks without abnormal orders are 0.
    """
    edges = _consecutive(windows)
    code = col(orders, "exception_code").cast("string")
    rows = orders.select(week=_index_of(orders.created_at, edges), code=code)
    rows = rows.filter(rows.week.notnull() & rows.code.notnull())
    found = con.execute(rows.group_by(["week", "code"]).aggregate(n=rows.count()))
    table = found.pivot_table(index="week", columns="code", values="n", aggfunc="sum")
    table = table.reindex(index=range(len(windows))).fillna(0)
    table = table.reindex(columns=sorted(table.columns, key=str))
    table = table[table.sum().sort_values(ascending=False, kind="stable").index]
    table.index = pd.Index([week_label(w) for w in windows], dtype="str", name="week")
    table.columns = pd.Index([str(c) for c in table.columns], dtype="str", name="exception_code")
    return table.astype("int64")


def abnormal_examples(
    con: BaseBackend,
    orders: ir.Table,
    window: Window,
    ship_sla_hours: float,
    limit: int = 10,
) -> pd.DataFrame:
    """Abnormal orders created in the window that most need follow-up, worst first; only
    those ``limit`` orders come back.

    Status at the window's end: not_shipped, in_transit, delivered or cancelled (milestones
    before the end). hours_late at the end: past the ship deadline (not shipped), past
    promised_delivery_by (in transit; delivered: when it arrived), 0 when not late, NaN when
    cancelled or without a promise. Open orders come first, then by hours_late and amount.
    """
    end = instant(window.end)
    o = orders.filter(within(orders.created_at, window) & col(orders, "exception_code").notnull())
    shipped = before(col(o, "shipped_at"), end)
    delivered_at = col(o, "delivered_at")
    delivered = before(delivered_at, end)
    cancelled = before(col(o, "cancelled_at"), end) & ~delivered
    status = ibis.cases(
        (cancelled, "cancelled"),
        (delivered, "delivered"),
        (shipped, "in_transit"),
        else_="not_shipped",
    )
    promise = col(o, "promised_delivery_by")
    deadline = ship_deadline(o, ship_sla_hours)
    late = ibis.cases(
        (status == "not_shipped", engine.hours_between(deadline, end, con.name)),
        (status == "in_transit", engine.hours_between(promise, end, con.name)),
        (status == "delivered", engine.hours_between(promise, delivered_at, con.name)),
        else_=ibis.null("float64"),
    )
    rows = o.select(
        order_id=o.order_id.cast("string"),
        order_type=col(o, "order_type").cast("string"),
        exception_code=col(o, "exception_code").cast("string"),
        warehouse=col(o, "warehouse").cast("string"),
        carrier=col(o, "carrier").cast("string"),
        created_at=o.created_at,
        status=status,
        hours_late=ibis.ifelse(late < 0, 0.0, late),
        amount=col(o, "amount").cast("float64"),
        _open=ibis.ifelse(status.isin(["not_shipped", "in_transit"]), 1, 0),
    )
    ranked = rows.order_by(
        ibis.desc(rows._open),
        ibis.desc(rows.hours_late),
        ibis.desc(rows.amount),
        rows.order_id,
    ).limit(limit)
    table = con.execute(ranked).drop(columns="_open")
    table["created_at"] = pd.to_datetime(table["created_at"], utc=True).dt.tz_convert(
        window.start.tz
    )
    for name in ("order_type", "exception_code", "warehouse", "carrier"):
        table[name] = table[name].astype(object).where(table[name].notna(), np.nan)
    table["order_id"] = table["order_id"].astype("str")
    table["hours_late"] = table["hours_late"].astype("float64")
    table["amount"] = table["amount"].astype("float64")
    return table.loc[:, list(EXAMPLE_COLUMNS)].reset_index(drop=True)


# --- logistics ---------------------------------------------------------------------------


def carrier_scorecard(con: BaseBackend, orders: ir.Table, window: Window) -> pd.DataFrame:
    """Per carrier: shipped, delivered, on-time delivery, transit median/P90, lost/damaged.

    shipped and lost_damaged_rate by shipped_at in the window; the rest by delivered_at
    (on-time among deliveries with a promise; transit hours shipped -> delivered, left out
    when out of order). Units orders, share, hours. One row per carrier with a shipment or
    a delivery in the window, a carrier new this week included; most shipments first.
    """
    shipped = within(col(orders, "shipped_at"), window)
    delivered = within(col(orders, "delivered_at"), window)
    judged, late = judged_late(orders, window)
    lost = shipped & col(orders, "exception_code").isin(["lost", "damaged"]).fill_null(False)
    transit = stage_hours(orders, "shipped_delivered", con.name)
    transit = ibis.ifelse(delivered, transit, ibis.null("float64"))
    rows = orders.filter(shipped | delivered).select(
        carrier=_value(orders, "carrier"),
        shipped=ibis.ifelse(shipped, 1, 0),
        delivered=ibis.ifelse(delivered, 1, 0),
        judged=ibis.ifelse(judged, 1, 0),
        on_time=ibis.ifelse(judged & ~late, 1, 0),
        lost=ibis.ifelse(lost, 1, 0),
        transit=transit.cast("float64"),
    )
    found = con.execute(
        rows.group_by("carrier").aggregate(
            shipped=rows.shipped.sum(),
            delivered=rows.delivered.sum(),
            judged=rows.judged.sum(),
            on_time=rows.on_time.sum(),
            lost=rows.lost.sum(),
            transit_median_h=rows.transit.quantile(0.5),
            transit_p90_h=rows.transit.quantile(P90),
        )
    )
    table = found.set_index("carrier").sort_index()
    table = table.astype(
        {c: "int64" for c in ("shipped", "delivered", "judged", "on_time", "lost")}
    )
    table["on_time_delivery_rate"] = table["on_time"] / table["judged"].where(table["judged"] > 0)
    table["lost_damaged_rate"] = table["lost"] / table["shipped"].where(table["shipped"] > 0)
    table = table.astype({"transit_median_h": "float64", "transit_p90_h": "float64"})
    table.index = pd.Index(table.index.astype(str), dtype="str", name="carrier")
    table = table.loc[:, list(SCORECARD_COLUMNS)]
    return table.sort_values("shipped", ascending=False, kind="stable")


# --- customer service, after-sales, finance ---------------------------------------------------


def tickets_opened(con: BaseBackend, tickets: ir.Table, window: Window) -> int:
    """Tickets opened in the window (opened_at in window); unit tickets."""
    return int(con.execute(tickets.filter(within(tickets.opened_at, window)).count()))


def ticket_categories(
    con: BaseBackend, tickets: ir.Table, window: Window, levels: Sequence[str] = ()
) -> pd.Series:
    """Tickets opened in the window per category (every known category listed); tickets."""
    values = tickets.category.cast("string")
    rows = tickets.select(
        _by=values.fill_null(MISSING), opened=ibis.ifelse(within(tickets.opened_at, window), 1, 0)
    )
    found = con.execute(rows.group_by("_by").aggregate(n=rows.opened.sum())).set_index("_by")
    known = [*TICKET_CATEGORIES, *levels, *sorted(str(v) for v in found.index if v != MISSING)]
    full = [*dict.fromkeys(known), MISSING]
    counts = found["n"].reindex(full).fillna(0).astype("int64")
    counts.index.name, counts.name = "category", "tickets"
    return _without_empty_missing(counts)


def after_sales_reasons(con: BaseBackend, cases: ir.Table, window: Window) -> pd.Series:
    """Cases requested in the window per reason, most frequent first; unit cases."""
    if "reason" not in cases.columns:
        return pd.Series(dtype="int64", name="cases")
    rows = cases.filter(within(cases.requested_at, window))
    found = con.execute(
        rows.group_by(reason=rows.reason.cast("string").fill_null(MISSING)).aggregate(
            n=rows.count()
        )
    )
    counts = pd.Series(found["n"].to_numpy(dtype="int64"), index=found["reason"].astype(str))
    counts = counts.sort_index().sort_values(ascending=False, kind="stable")
    counts.index = pd.Index(counts.index, dtype="str", name="reason")
    return counts.rename("cases")


def pending_until_settled(status: ir.Value, settled_at: ir.Value) -> ir.BooleanValue:
    """Whether a settlement row is pending from its order's delivery until its settled_at
    (for good when empty): every row with a settled_at, whatever its status, and a row
    without one whose status leaves the money due (pending, disputed); a settled or
    refunded row without a time is never pending.

    The definition of pending money, shared by the pending amount KPI and the pending
    aging (a row is pending at an instant when this holds, its order was delivered before
    the instant and its settled_at is not before it). A settled_at closes the row at that
    instant: a settlement or refund made after a week's end was money still due at it.
    Without a time, the status is all there is: "settled" says the money arrived (an
    export that lost the time; validation flags it, rule "status without time") and
    "refunded" that it is due no more, so neither is counted as money still to come;
    disputes are money not settled, what Finance discusses, and stay pending.
    """
    closed = status.cast("string").isin(CLOSED_STATUSES).fill_null(False)
    return settled_at.notnull() | ~closed


def pending_aging(
    con: BaseBackend, settlements: ir.Table, orders: ir.Table, when: pd.Timestamp
) -> pd.DataFrame:
    """Pending settlements at ``when`` by days since delivery: 0-7, 8-14, 15-30, over 30.

    Pending: the order delivered before ``when``, not settled or refunded before it, as
    ``pending_until_settled`` defines (a settled or refunded row without a time is not).
    Columns count (settlements) and amount (currency); every bucket listed. A bucket holds
    ages up to and including its upper bound (exactly 7.0 days is in 0_7).
    """
    at = instant(when)
    # Settled before ``when`` is most of them: left out before the orders are joined.
    unsettled = settlements.filter(
        ~before(settlements.settled_at, at)
        & pending_until_settled(settlements.status, settlements.settled_at)
    )
    delivered = orders.select(
        _oid=orders.order_id, _delivered_at=col(orders, "delivered_at").cast(_TIMESTAMP)
    )
    delivered = delivered.filter(before(delivered._delivered_at, at))
    rows = unsettled.join(delivered, unsettled.order_id == delivered._oid)
    age = engine.hours_between(rows._delivered_at, at, con.name) / 24.0
    bucket = ibis.cases(
        *[(age <= upper, i) for i, upper in enumerate(_AGING_UPPER)], else_=len(_AGING_UPPER)
    )
    rows = rows.select(bucket=bucket, amount=rows.amount.cast("float64"))
    found = con.execute(
        rows.group_by("bucket").aggregate(count=rows.count(), amount=rows.amount.sum())
    ).set_index("bucket")
    table = found.reindex(range(len(AGING_BUCKETS)))
    return pd.DataFrame(
        {
            "count": table["count"].fillna(0).to_numpy(dtype="int64"),
            "amount": table["amount"].fillna(0.0).to_numpy(dtype="float64"),
        },
        index=pd.Index(list(AGING_BUCKETS), dtype="str", name="age"),
    )


def settled_without_time(con: BaseBackend, settlements: ir.Table) -> tuple[int, float]:
    """Settlements with status settled and no settled_at: (count, amount in currency).

    Their time unknown, they are in no week's settled amount, and not pending either
    (``pending_until_settled``): the finance section names them so their money is seen.
    """
    # the contradiction the schema declares, which validation flags ("status without time")
    ((status, value, time),) = SETTLEMENTS.status_times
    rows = settlements.filter(
        (settlements[status].cast("string") == value) & settlements[time].isnull()
    )
    found = con.execute(rows.aggregate(n=rows.count(), amount=rows.amount.sum()))
    amount = found["amount"].iloc[0]
    return int(found["n"].iloc[0]), 0.0 if pd.isna(amount) else float(amount)


def disputes(con: BaseBackend, settlements: ir.Table) -> tuple[int, float]:
    """Settlements with status disputed at the data extraction: (count, amount).

    The table records no dispute date, so disputes are a state, not a weekly event.
    """
    rows = settlements.filter(settlements.status.cast("string") == "disputed")
    found = con.execute(rows.aggregate(n=rows.count(), amount=rows.amount.sum()))
    amount = found["amount"].iloc[0]
    return int(found["n"].iloc[0]), 0.0 if pd.isna(amount) else float(amount)
