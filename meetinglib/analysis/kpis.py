"""Weekly KPIs of order processing, computed from validated canonical frames.

A KPI counts the events that happened in a half-open window ``[start, end)`` and its
docstring names the event that places a row in the week: *created* for volume, GMV,
cancellation and abnormal orders; *shipped* for on-time shipping; *delivered* for
delivery, cycle time and the perfect order; the *end milestone* of a stage for stage
durations; the other tables by their own time (tickets by ``opened_at``, after-sales
cases by ``requested_at``, settlements by ``settled_at``); backlogs are taken at an
instant (the week's end). A window without such events gives 0 for a count and NaN for a
rate or a duration, never an error.

Two layers:

* one small pure function per KPI and window (``on_time_ship_rate(orders, window,
  sla)``, ``complaint_rate(tickets, orders, window)``...): the definition, readable and
  tested by hand;
* ``CATALOGUE`` and ``weekly_kpis``: the same KPIs for many consecutive weeks and segments
  (order type, warehouse, carrier, carrier/region...) in one grouped pass per KPI, which
  the report, the anomaly rules and ``kpis.csv`` use. Tests check it against the first
  layer window by window.

Functions never read files and never modify their inputs. Conventions a caller must know:

* Percentiles (P90) are numpy's default, linear interpolation between order statistics.
* Durations are in hours (float), except after-sales case cycle and settlement lag, in
  days. Units: orders, currency, share (0-1), hours, days, per_1000 (per 1,000 orders
  created), score (CSAT 1-5).
* Cancellation means ``cancelled_at`` is set, whenever it happened up to the data
  extraction: GMV excludes such orders and the cancellation rate counts them.
* Multi-table KPIs count every row of the tables given; to split them by order type, pass
  the rows of orders of that type (``weekly_kpis`` does this through the order_id).
* Breakdowns by a dimension list every known value of it (schema values, categories of
  the column, values seen anywhere in ``orders``), zeros included; orders with an empty
  value are counted under ``MISSING``, shown only when there are some.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from meetinglib.core.errors import InvalidParamError
from meetinglib.core.schema import ORDER_TYPES, ORDERS, TICKET_CATEGORIES
from meetinglib.core.weeks import IsoWeek, Window

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

Unit = Literal["orders", "currency", "share", "hours", "days", "per_1000", "score"]


# --- helpers -------------------------------------------------------------------------


def _col(orders: pd.DataFrame, name: str) -> pd.Series:
    """A column of ``orders``; an optional canonical column the source lacks reads as empty."""
    if name in orders.columns:
        return orders[name]
    if name not in ORDERS.names:
        raise KeyError(
            f"column {name!r} is neither in the orders frame nor a canonical orders column; "
            f"use one of {ORDERS.names}."
        )
    kind = ORDERS.column(name).kind
    if kind == "timestamp":
        dtype = orders["created_at"].dtype
        return pd.Series(pd.NaT, index=orders.index, dtype=dtype, name=name)
    if kind == "float":
        return pd.Series(np.nan, index=orders.index, dtype="float64", name=name)
    return pd.Series(pd.NA, index=orders.index, dtype="category", name=name)


def _created_in(orders: pd.DataFrame, window: Window) -> pd.Series:
    return window.contains(orders["created_at"])


def _rate(numerator: int | float, denominator: int | float) -> float:
    return float(numerator) / float(denominator) if denominator else float("nan")


def _check_aware(when: pd.Timestamp) -> pd.Timestamp:
    when = pd.Timestamp(when)
    if when.tzinfo is None:
        raise TypeError(
            f"timestamp {when} has no timezone; localize it to the platform timezone "
            "(e.g. window.end) before taking a backlog."
        )
    return when


def _dimension(orders: pd.DataFrame, by: str) -> tuple[pd.Series, list[Any]]:
    """Values of ``by`` (empty -> MISSING) and every known level of it, in display order."""
    values = _col(orders, by)
    levels: list[Any] = []
    if by in ORDERS.names and ORDERS.column(by).allowed:
        levels += list(ORDERS.column(by).allowed or ())
    if isinstance(values.dtype, pd.CategoricalDtype):
        levels += list(values.cat.categories)
    levels += sorted(values.dropna().unique().tolist(), key=str)
    levels = list(dict.fromkeys(levels))
    filled = values.astype(object).where(values.notna(), MISSING)
    return filled, [*levels, MISSING]


def _without_empty_missing(frame: Any, count_column: str | None = None) -> Any:
    """Drop the MISSING level when no order falls under it (an all-zero row is noise)."""
    at_missing = frame.index.get_level_values(0) == MISSING
    counts = frame if count_column is None else frame[count_column]
    return frame if np.asarray(counts)[at_missing].any() else frame[~at_missing]


# --- volume ----------------------------------------------------------------------------


def orders_created(orders: pd.DataFrame, window: Window) -> int:
    """Orders created in the window (count of created_at in window), unit orders."""
    return int(_created_in(orders, window).sum())


def order_volume_by_day(orders: pd.DataFrame, window: Window) -> pd.DataFrame:
    """Orders created per local day of the window x order type, plus "total"; unit orders.

    Index: every calendar day of the window in the window's timezone (days without orders
    are 0); columns: the order types in schema order, then "total" (all orders created
    that day, equal to the sum of the type columns for validated data).
    """
    created = orders.loc[_created_in(orders, window), ["created_at", "order_type"]]
    day = created["created_at"].dt.tz_convert(window.start.tz).dt.normalize()
    order_type = created["order_type"].astype(object)
    by_type = pd.crosstab(day, order_type) if len(created) else pd.DataFrame(index=day)
    days = window.days.rename("day")
    table = by_type.reindex(index=days, columns=list(ORDER_TYPES), fill_value=0)
    table["total"] = day.value_counts().reindex(days, fill_value=0)
    table.columns = pd.Index(table.columns, name="order_type")
    return table.astype("int64")


def order_volume_by(orders: pd.DataFrame, window: Window, by: str) -> pd.Series:
    """Orders created in the window per value of ``by`` (channel, order_type...), unit orders."""
    values, levels = _dimension(orders, by)
    counts = values[_created_in(orders, window)].value_counts()
    counts = counts.reindex(levels, fill_value=0).astype("int64")
    counts.index.name, counts.name = by, "orders"
    return _without_empty_missing(counts)


def gmv(orders: pd.DataFrame, window: Window) -> float:
    """Sum of amount of orders created in the window, cancelled orders excluded; currency.

    An order counts as cancelled when cancelled_at is set (at any time up to the data
    extraction); a missing amount adds nothing.
    """
    kept = _created_in(orders, window) & _col(orders, "cancelled_at").isna()
    return float(_col(orders, "amount")[kept].sum())


def cancellation_rate(orders: pd.DataFrame, window: Window) -> float:
    """Orders created in the window and cancelled (any time) / orders created; share, NaN if 0."""
    created = _created_in(orders, window)
    cancelled = created & _col(orders, "cancelled_at").notna()
    return _rate(cancelled.sum(), created.sum())


# --- stage durations -------------------------------------------------------------------


def _stage_ended(orders: pd.DataFrame, window: Window, stage: str) -> tuple[np.ndarray, pd.Series]:
    if stage not in STAGES:
        raise KeyError(f"unknown stage {stage!r}; use one of {list(STAGES)}.")
    start_col, end_col = STAGES[stage]
    start, end = _col(orders, start_col), _col(orders, end_col)
    # A milestone out of order (end before start) leaves this duration out.
    ended = (window.contains(end) & start.notna() & ~(end < start)).to_numpy()
    hours = (end[ended] - start[ended]).dt.total_seconds() / 3600.0
    return ended, hours.astype("float64").rename(stage)


def stage_hours(orders: pd.DataFrame, window: Window, stage: str) -> pd.Series:
    """Hours from a stage's start to its end milestone, for orders whose END is in the window.

    Orders missing either milestone are left out. Index: the orders' index.
    """
    return _stage_ended(orders, window, stage)[1]


def stage_durations(orders: pd.DataFrame, window: Window, by: str | None = None) -> pd.DataFrame:
    """Count, median, P90 (numpy linear) and mean hours per stage, by END milestone in window.

    One row per stage of ``STAGES`` (orders missing either milestone excluded); with ``by``
    a MultiIndex (by value, stage) listing every known value of ``by``. No order in a
    stage gives count 0 and NaN statistics.
    """
    parts = []
    dim = _dimension(orders, by) if by else None
    for stage in STAGES:
        ended, hours = _stage_ended(orders, window, stage)
        part = pd.DataFrame({"stage": stage, "hours": hours.to_numpy()})
        if dim is not None:
            part[by] = dim[0].to_numpy()[ended]
        parts.append(part)
    long = pd.concat(parts, ignore_index=True)
    keys = [by, "stage"] if by else ["stage"]
    grouped = long.groupby(keys, sort=False)["hours"]
    stats = pd.DataFrame(
        {
            "count": grouped.count(),
            "median_h": grouped.median(),
            "p90_h": grouped.quantile(P90, interpolation="linear"),
            "mean_h": grouped.mean(),
        }
    )
    if by and dim is not None:
        full = pd.MultiIndex.from_product([dim[1], list(STAGES)], names=keys)
    else:
        full = pd.Index(list(STAGES), name="stage")
    stats = stats.reindex(full)
    stats["count"] = stats["count"].fillna(0).astype("int64")
    stats = stats.astype({c: "float64" for c in STAGE_COLUMNS[1:]})
    return _without_empty_missing(stats, "count") if by else stats


def _stage_quantile(orders: pd.DataFrame, window: Window, stage: str, q: float) -> float:
    hours = stage_hours(orders, window, stage)
    return float(np.percentile(hours, q * 100)) if len(hours) else float("nan")


def cycle_time_p90_h(orders: pd.DataFrame, window: Window) -> float:
    """P90 (numpy linear) of created -> delivered hours of orders delivered in the window."""
    return _stage_quantile(orders, window, "created_delivered", P90)


def handling_median_h(orders: pd.DataFrame, window: Window) -> float:
    """Median of paid -> shipped hours of orders shipped in the window; hours, NaN if none."""
    return _stage_quantile(orders, window, "paid_shipped", 0.5)


# --- shipping on time and backlog ------------------------------------------------------


def ship_deadline(orders: pd.DataFrame, ship_sla_hours: float) -> pd.Series:
    """promised_ship_by where set, else paid_at + ship_sla_hours; NaT when neither (timestamp)."""
    promised = _col(orders, "promised_ship_by")
    by_sla = _col(orders, "paid_at") + pd.Timedelta(hours=ship_sla_hours)
    if promised.dt.tz is not None and by_sla.dt.tz is not None:
        by_sla = by_sla.dt.tz_convert(promised.dt.tz)
    return promised.where(promised.notna(), by_sla).rename("ship_deadline")


def on_time_ship_rate(orders: pd.DataFrame, window: Window, ship_sla_hours: float) -> float:
    """Orders shipped in the window by their ship deadline / those shipped with one; share.

    Deadline: see ``ship_deadline``; shipped exactly at the deadline is on time. Orders
    without a deadline (no promise, not paid) are left out; NaN when none remain.
    """
    shipped_at = _col(orders, "shipped_at")
    deadline = ship_deadline(orders, ship_sla_hours)
    judged = window.contains(shipped_at) & deadline.notna()
    on_time = judged & (shipped_at <= deadline)
    return _rate(on_time.sum(), judged.sum())


def _backlog_mask(orders: pd.DataFrame, when: pd.Timestamp) -> pd.Series:
    # Strict "<": a milestone exactly at `when` has not happened yet, as in half-open windows.
    when = _check_aware(when)
    paid = _col(orders, "paid_at") < when
    shipped = _col(orders, "shipped_at") < when
    cancelled = _col(orders, "cancelled_at") < when
    return paid & ~shipped & ~cancelled


def _overdue_mask(orders: pd.DataFrame, when: pd.Timestamp, ship_sla_hours: float) -> pd.Series:
    return _backlog_mask(orders, when) & (ship_deadline(orders, ship_sla_hours) < when)


def backlog_at(orders: pd.DataFrame, when: pd.Timestamp) -> int:
    """Orders paid before ``when``, neither shipped nor cancelled before it; unit orders."""
    return int(_backlog_mask(orders, when).sum())


def overdue_backlog_at(orders: pd.DataFrame, when: pd.Timestamp, ship_sla_hours: float) -> int:
    """Backlog orders at ``when`` whose ship deadline is before ``when``; unit orders."""
    return int(_overdue_mask(orders, when, ship_sla_hours).sum())


def backlog_by(
    orders: pd.DataFrame, when: pd.Timestamp, ship_sla_hours: float, by: str
) -> pd.DataFrame:
    """Backlog and overdue backlog at ``when`` per value of ``by``; unit orders."""
    values, levels = _dimension(orders, by)
    flags = pd.DataFrame(
        {
            "backlog": _backlog_mask(orders, when),
            "overdue": _overdue_mask(orders, when, ship_sla_hours),
        }
    )
    table = flags.groupby(values).sum().reindex(levels, fill_value=0).astype("int64")
    table.index.name = by
    return _without_empty_missing(table, "backlog")


# --- delivery ---------------------------------------------------------------------------


def _delivered_judged(orders: pd.DataFrame, window: Window) -> tuple[pd.Series, pd.Series]:
    delivered_at = _col(orders, "delivered_at")
    promised = _col(orders, "promised_delivery_by")
    judged = window.contains(delivered_at) & promised.notna()
    return judged, judged & (delivered_at > promised)


def on_time_delivery_rate(orders: pd.DataFrame, window: Window) -> float:
    """Orders delivered in the window by promised_delivery_by / those delivered with a promise.

    Share; delivered exactly at the promise is on time; orders without a promised delivery
    date are left out; NaN when none remain. Event: delivered_at in the window.
    """
    judged, late = _delivered_judged(orders, window)
    return _rate(judged.sum() - late.sum(), judged.sum())


def late_delivery_by(orders: pd.DataFrame, window: Window, rows: str, cols: str) -> pd.DataFrame:
    """Per (rows, cols) cell: delivered (with a promise), late, late_rate = late / delivered.

    Orders delivered in the window; only cells with deliveries; unit orders and share.
    """
    judged, late = _delivered_judged(orders, window)
    row_values, _ = _dimension(orders, rows)
    col_values, _ = _dimension(orders, cols)
    flags = pd.DataFrame(
        {
            rows: row_values[judged].to_numpy(),
            cols: col_values[judged].to_numpy(),
            "delivered": 1,
            "late": late[judged].to_numpy().astype("int64"),
        }
    )
    table = flags.groupby([rows, cols], sort=True)[["delivered", "late"]].sum()
    table["late_rate"] = table["late"] / table["delivered"]
    return table


# --- abnormal orders -------------------------------------------------------------------


def abnormal_orders(orders: pd.DataFrame, window: Window) -> pd.DataFrame:
    """Pareto of exception_code over orders created in the window: count, rate, share, cum.

    rate = count / orders created in the window; share = count / abnormal orders; rows by
    count descending then code; an empty frame with the same columns when none.
    """
    created = _created_in(orders, window)
    codes = _col(orders, "exception_code")[created].dropna().astype(object)
    counts = codes.value_counts()
    table = pd.DataFrame(
        {"count": counts.to_numpy(dtype="int64")},
        index=pd.Index(counts.index.astype(str), dtype="str", name="exception_code"),
    )
    table = table.sort_index().sort_values("count", ascending=False, kind="stable")
    table["rate"] = table["count"] / max(int(created.sum()), 1)
    table["share"] = table["count"] / max(int(table["count"].sum()), 1)
    table["cumulative_share"] = table["share"].cumsum()
    return table.astype({c: "float64" for c in PARETO_COLUMNS[1:]})


def abnormal_rate(orders: pd.DataFrame, window: Window) -> float:
    """Orders created in the window with an exception_code / orders created; share, NaN if 0."""
    created = _created_in(orders, window)
    abnormal = created & _col(orders, "exception_code").notna()
    return _rate(abnormal.sum(), created.sum())


# --- more stage quantiles ----------------------------------------------------------------


def handling_p90_h(orders: pd.DataFrame, window: Window) -> float:
    """P90 (numpy linear) of paid -> shipped hours of orders shipped in the window; hours."""
    return _stage_quantile(orders, window, "paid_shipped", P90)


def transit_median_h(orders: pd.DataFrame, window: Window) -> float:
    """Median of shipped -> delivered hours of orders delivered in the window; hours."""
    return _stage_quantile(orders, window, "shipped_delivered", 0.5)


def transit_p90_h(orders: pd.DataFrame, window: Window) -> float:
    """P90 (numpy linear) of shipped -> delivered hours of orders delivered in the window."""
    return _stage_quantile(orders, window, "shipped_delivered", P90)


# --- shares of the orders created, by a dimension ---------------------------------------


def _created_share_by(
    orders: pd.DataFrame, window: Window, by: str, flag: pd.Series, name: str
) -> pd.DataFrame:
    values, levels = _dimension(orders, by)
    created = _created_in(orders, window)
    flags = pd.DataFrame({"created": created, name: created & flag})
    table = flags.groupby(values).sum().reindex(levels, fill_value=0).astype("int64")
    table["rate"] = table[name] / table["created"].where(table["created"] > 0)
    table.index.name = by
    return _without_empty_missing(table, "created")


def cancellations_by(orders: pd.DataFrame, window: Window, by: str) -> pd.DataFrame:
    """Per value of ``by``: orders created in the window, cancelled (any time), rate = ratio.

    Units orders and share (NaN for a value without orders). Event: created_at.
    """
    cancelled = _col(orders, "cancelled_at").notna()
    return _created_share_by(orders, window, by, cancelled, "cancelled")


def abnormal_by(orders: pd.DataFrame, window: Window, by: str) -> pd.DataFrame:
    """Per value of ``by``: orders created in the window, abnormal (exception_code set), rate."""
    abnormal = _col(orders, "exception_code").notna()
    return _created_share_by(orders, window, by, abnormal, "abnormal")


def stockouts_by(orders: pd.DataFrame, window: Window, by: str) -> pd.DataFrame:
    """Per value of ``by``: orders created in the window, with exception stockout, rate."""
    stockout = (_col(orders, "exception_code").astype(object) == "stockout").astype(bool)
    return _created_share_by(orders, window, by, stockout, "stockout")


def stockout_orders(orders: pd.DataFrame, window: Window) -> int:
    """Orders created in the window with exception_code stockout; unit orders."""
    codes = _col(orders, "exception_code").astype(object)
    return int((_created_in(orders, window) & (codes == "stockout")).sum())


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


def abnormal_examples(
    orders: pd.DataFrame, window: Window, ship_sla_hours: float, limit: int = 10
) -> pd.DataFrame:
    """Abnormal orders created in the window that most need follow-up, worst first.

    Status at the window's end: not_shipped, in_transit, delivered or cancelled (milestones
    before the end). hours_late at the end: past the ship deadline (not shipped), past
    promised_delivery_by (in transit; delivered: when it arrived), 0 when not late, NaN when
    cancelled or without a promise. Open orders come first, then by hours_late and amount.
    """
    end = window.end
    created = _created_in(orders, window) & _col(orders, "exception_code").notna()
    o = orders.loc[created]
    shipped = _col(o, "shipped_at") < end
    delivered = _col(o, "delivered_at") < end
    cancelled = (_col(o, "cancelled_at") < end) & ~delivered
    status = np.select(
        [cancelled, delivered, shipped], ["cancelled", "delivered", "in_transit"], "not_shipped"
    )
    ship_late = (end - ship_deadline(o, ship_sla_hours)).dt.total_seconds()
    promise = _col(o, "promised_delivery_by")
    transit_late = (end - promise).dt.total_seconds()
    arrival_late = (_col(o, "delivered_at") - promise).dt.total_seconds()
    late = np.select(
        [status == "not_shipped", status == "in_transit", status == "delivered"],
        [ship_late, transit_late, arrival_late],
        np.nan,
    )
    table = pd.DataFrame(
        {
            "order_id": o["order_id"].astype("str"),
            "order_type": _col(o, "order_type").astype(object),
            "exception_code": _col(o, "exception_code").astype(object),
            "warehouse": _col(o, "warehouse").astype(object),
            "carrier": _col(o, "carrier").astype(object),
            "created_at": o["created_at"],
            "status": status,
            "hours_late": np.clip(late / 3600.0, 0.0, None),
            "amount": _col(o, "amount").astype("float64"),
        }
    )
    table["_open"] = np.isin(status, ("not_shipped", "in_transit"))
    table = table.sort_values(
        ["_open", "hours_late", "amount", "order_id"],
        ascending=[False, False, False, True],
        na_position="last",
        kind="stable",
    )
    return table.drop(columns="_open").head(limit).reset_index(drop=True)


def abnormal_by_week(orders: pd.DataFrame, windows: list[Window]) -> pd.DataFrame:
    """Abnormal orders per week created x exception_code (codes by total, descending); orders.

    Index: week labels of ``windows`` (consecutive); weeks without abnormal orders are 0.
    """
    bounds = _week_bounds(windows)
    week = _week_of(orders["created_at"], bounds)
    codes = _col(orders, "exception_code").astype(object)
    keep = (week >= 0) & codes.notna().to_numpy()
    table = pd.crosstab(week[keep], codes[keep].to_numpy())
    table = table.reindex(index=range(len(windows)), fill_value=0)
    table = table[table.sum().sort_values(ascending=False, kind="stable").index]
    table.index = pd.Index([week_label(w) for w in windows], dtype="str", name="week")
    table.columns = pd.Index([str(c) for c in table.columns], dtype="str", name="exception_code")
    return table.astype("int64")


# --- perfect order ------------------------------------------------------------------------


def _short_lines(order_lines: pd.DataFrame) -> pd.Series:
    """Lines that shipped less than ordered; a line without qty_shipped is not judged."""
    if "qty_shipped" not in order_lines.columns:
        return pd.Series(False, index=order_lines.index)
    short = order_lines["qty_shipped"] < order_lines["qty"]
    return short.fillna(False).astype(bool)


def perfect_order_rate(
    orders: pd.DataFrame,
    window: Window,
    tickets: pd.DataFrame | None = None,
    after_sales: pd.DataFrame | None = None,
    order_lines: pd.DataFrame | None = None,
) -> float:
    """Perfect orders / orders delivered in the window with a delivery promise; share.

    Perfect (SCOR RL.1.1): delivered by promised_delivery_by, no exception_code, in full (no
    order line shipped short; not judged without order_lines), no complaint ticket and no
    after-sales case recorded before the window's end, so every week is judged at the same
    age. Event: delivered_at. NaN when nothing was delivered with a promise.
    """
    judged, late = _delivered_judged(orders, window)
    perfect = judged & ~late & _col(orders, "exception_code").isna()
    ids = orders["order_id"]
    if tickets is not None:
        complaint = (tickets["category"].astype(object) == "complaint") & (
            tickets["opened_at"] < window.end
        )
        perfect &= ~ids.isin(tickets.loc[complaint, "order_id"].dropna())
    if after_sales is not None:
        requested = after_sales["requested_at"] < window.end
        perfect &= ~ids.isin(after_sales.loc[requested, "order_id"])
    if order_lines is not None:
        perfect &= ~ids.isin(order_lines.loc[_short_lines(order_lines), "order_id"])
    return _rate(perfect.sum(), judged.sum())


# --- logistics ------------------------------------------------------------------------------


def orders_shipped(orders: pd.DataFrame, window: Window) -> int:
    """Orders shipped in the window (shipped_at in window); unit orders."""
    return int(window.contains(_col(orders, "shipped_at")).sum())


def orders_delivered(orders: pd.DataFrame, window: Window) -> int:
    """Orders delivered in the window (delivered_at in window); unit orders."""
    return int(window.contains(_col(orders, "delivered_at")).sum())


def lost_damaged_rate(orders: pd.DataFrame, window: Window) -> float:
    """Orders shipped in the window with exception lost or damaged / orders shipped; share.

    The exception as known at the data extraction (a parcel is declared lost days later).
    """
    shipped = window.contains(_col(orders, "shipped_at"))
    codes = _col(orders, "exception_code").astype(object)
    return _rate((shipped & codes.isin(("lost", "damaged"))).sum(), shipped.sum())


SCORECARD_COLUMNS = (
    "shipped",
    "delivered",
    "on_time_delivery_rate",
    "transit_median_h",
    "transit_p90_h",
    "lost_damaged_rate",
)


def carrier_scorecard(orders: pd.DataFrame, window: Window) -> pd.DataFrame:
    """Per carrier: shipped, delivered, on-time delivery, transit median/P90, lost/damaged.

    shipped and lost_damaged_rate by shipped_at in the window; the rest by delivered_at (see
    ``on_time_delivery_rate``, ``transit_median_h``). Units orders, share, hours. One row per
    carrier with a shipment or a delivery in the window, a carrier new this week included.
    """
    values, _ = _dimension(orders, "carrier")
    shipped = window.contains(_col(orders, "shipped_at"))
    delivered = window.contains(_col(orders, "delivered_at"))
    judged, late = _delivered_judged(orders, window)
    codes = _col(orders, "exception_code").astype(object)
    transit = (_col(orders, "delivered_at") - _col(orders, "shipped_at")).dt.total_seconds() / 3600
    flags = pd.DataFrame(
        {
            "shipped": shipped,
            "delivered": delivered,
            "judged": judged,
            "on_time": judged & ~late,
            "lost_damaged": shipped & codes.isin(("lost", "damaged")),
        }
    ).astype("int64")
    table = flags.groupby(values).sum()
    hours = transit.where(delivered).groupby(values)
    table["transit_median_h"] = hours.median()
    table["transit_p90_h"] = hours.quantile(P90)
    table["on_time_delivery_rate"] = table["on_time"] / table["judged"].where(table["judged"] > 0)
    table["lost_damaged_rate"] = table["lost_damaged"] / table["shipped"].where(
        table["shipped"] > 0
    )
    table = table[(table["shipped"] > 0) | (table["delivered"] > 0)]
    table.index = pd.Index(table.index.astype(str), dtype="str", name="carrier")
    return table.loc[:, list(SCORECARD_COLUMNS)].sort_values("shipped", ascending=False)


def _arrow_strings(ids: pd.Series) -> pa.Array:
    arr = pa.array(ids.array) if ids.dtype == "str" else pa.array(ids.astype("str").array)
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _order_positions(orders: pd.DataFrame, ids: pd.Series) -> np.ndarray:
    """Row position in ``orders`` of each id (-1 when not there); order_id is unique."""
    found = pc.index_in(_arrow_strings(ids), value_set=_arrow_strings(orders["order_id"]))
    return found.fill_null(-1).to_numpy(zero_copy_only=False).astype("int64")


def _order_values(orders: pd.DataFrame, ids: pd.Series, column: str) -> pd.Series:
    """``orders[column]`` looked up for each id; missing where the order is not in ``orders``."""
    taken = _col(orders, column).array.take(_order_positions(orders, ids), allow_fill=True)
    return pd.Series(taken, index=ids.index, name=column)


def fill_rate(order_lines: pd.DataFrame, orders: pd.DataFrame, window: Window) -> float:
    """Sum qty_shipped / sum qty over lines of orders shipped in the window; share.

    Only lines of orders in ``orders``; lines without qty_shipped are left out. Event:
    the order's shipped_at. NaN without such lines.
    """
    shipped_at = _order_values(orders, order_lines["order_id"], "shipped_at")
    judged = window.contains(shipped_at)
    if "qty_shipped" not in order_lines.columns:
        return float("nan")
    judged &= order_lines["qty_shipped"].notna()
    return _rate(order_lines.loc[judged, "qty_shipped"].sum(), order_lines.loc[judged, "qty"].sum())


# --- customer service -------------------------------------------------------------------------

TICKET_STAGES: dict[str, tuple[str, str]] = {
    "first_response": ("opened_at", "first_response_at"),
    "resolution": ("opened_at", "resolved_at"),
}


def tickets_opened(tickets: pd.DataFrame, window: Window) -> int:
    """Tickets opened in the window (opened_at in window); unit tickets."""
    return int(window.contains(tickets["opened_at"]).sum())


def tickets_per_1000(tickets: pd.DataFrame, orders: pd.DataFrame, window: Window) -> float:
    """Tickets opened in the window per 1,000 orders created in it; NaN without orders."""
    return _rate(1000 * tickets_opened(tickets, window), orders_created(orders, window))


def complaint_rate(tickets: pd.DataFrame, orders: pd.DataFrame, window: Window) -> float:
    """Complaint tickets opened in the window per 1,000 orders created in it; per 1,000."""
    complaints = window.contains(tickets["opened_at"]) & (
        tickets["category"].astype(object) == "complaint"
    )
    return _rate(1000 * int(complaints.sum()), orders_created(orders, window))


def ticket_categories(tickets: pd.DataFrame, window: Window) -> pd.Series:
    """Tickets opened in the window per category (every known category listed); tickets."""
    values = tickets["category"].astype(object)
    levels = list(TICKET_CATEGORIES)
    if isinstance(tickets["category"].dtype, pd.CategoricalDtype):
        levels += [str(c) for c in tickets["category"].cat.categories]
    levels += sorted(str(v) for v in values.dropna().unique())
    levels = [*dict.fromkeys(levels), MISSING]
    opened = values.where(values.notna(), MISSING)[window.contains(tickets["opened_at"])]
    counts = opened.value_counts().reindex(levels, fill_value=0).astype("int64")
    counts.index.name, counts.name = "category", "tickets"
    return _without_empty_missing(counts)


def ticket_hours(tickets: pd.DataFrame, window: Window, stage: str) -> pd.Series:
    """Hours opened -> first response (or -> resolved) of tickets whose END is in the window."""
    start_col, end_col = TICKET_STAGES[stage]
    if end_col not in tickets.columns:
        return pd.Series(dtype="float64", name=stage)
    start, end = tickets[start_col], tickets[end_col]
    ended = window.contains(end) & start.notna()
    return ((end[ended] - start[ended]).dt.total_seconds() / 3600.0).rename(stage)


def _quantile(values: pd.Series, q: float) -> float:
    values = values.dropna()
    return float(np.percentile(values, q * 100)) if len(values) else float("nan")


def first_response_median_h(tickets: pd.DataFrame, window: Window) -> float:
    """Median hours opened -> first response of tickets first answered in the window."""
    return _quantile(ticket_hours(tickets, window, "first_response"), 0.5)


def first_response_p90_h(tickets: pd.DataFrame, window: Window) -> float:
    """P90 hours opened -> first response of tickets first answered in the window."""
    return _quantile(ticket_hours(tickets, window, "first_response"), P90)


def resolution_median_h(tickets: pd.DataFrame, window: Window) -> float:
    """Median hours opened -> resolved of tickets resolved in the window."""
    return _quantile(ticket_hours(tickets, window, "resolution"), 0.5)


def resolution_p90_h(tickets: pd.DataFrame, window: Window) -> float:
    """P90 hours opened -> resolved of tickets resolved in the window."""
    return _quantile(ticket_hours(tickets, window, "resolution"), P90)


def csat(tickets: pd.DataFrame, window: Window) -> float:
    """Mean csat (1-5) of tickets resolved in the window and rated; score, NaN if none."""
    if "csat" not in tickets.columns or "resolved_at" not in tickets.columns:
        return float("nan")
    rated = window.contains(tickets["resolved_at"]) & tickets["csat"].notna()
    return float(tickets.loc[rated, "csat"].mean()) if rated.any() else float("nan")


# --- after-sales -------------------------------------------------------------------------------


def _requested_in(after_sales: pd.DataFrame, window: Window) -> pd.Series:
    return window.contains(after_sales["requested_at"])


def return_rate(after_sales: pd.DataFrame, orders: pd.DataFrame, window: Window) -> float:
    """Return cases (kind return) requested in the window / orders delivered in it; share."""
    returns = _requested_in(after_sales, window) & (after_sales["kind"].astype(object) == "return")
    return _rate(returns.sum(), orders_delivered(orders, window))


def refund_rate(after_sales: pd.DataFrame, orders: pd.DataFrame, window: Window) -> float:
    """Cases with refund_amount > 0 requested in the window / orders delivered in it; share."""
    refunds = _requested_in(after_sales, window) & (_refunds(after_sales) > 0)
    return _rate(refunds.sum(), orders_delivered(orders, window))


def _refunds(after_sales: pd.DataFrame) -> pd.Series:
    if "refund_amount" not in after_sales.columns:
        return pd.Series(0.0, index=after_sales.index)
    return after_sales["refund_amount"].fillna(0.0).astype("float64")


def refund_amount(after_sales: pd.DataFrame, window: Window) -> float:
    """Sum of refund_amount of cases requested in the window; currency."""
    return float(_refunds(after_sales)[_requested_in(after_sales, window)].sum())


def after_sales_reasons(after_sales: pd.DataFrame, window: Window) -> pd.Series:
    """Cases requested in the window per reason, most frequent first; unit cases."""
    if "reason" not in after_sales.columns:
        return pd.Series(dtype="int64", name="cases")
    values = after_sales["reason"].astype(object)
    values = values.where(values.notna(), MISSING)[_requested_in(after_sales, window)]
    counts = values.value_counts().astype("int64")
    counts = counts.sort_index(key=lambda i: i.astype(str)).sort_values(
        ascending=False, kind="stable"
    )
    counts.index = pd.Index(counts.index.astype(str), dtype="str", name="reason")
    return counts.rename("cases")


def case_cycle_days(after_sales: pd.DataFrame, window: Window) -> pd.Series:
    """Days requested -> closed of cases closed in the window."""
    if "closed_at" not in after_sales.columns:
        return pd.Series(dtype="float64")
    closed = window.contains(after_sales["closed_at"])
    days = after_sales.loc[closed, "closed_at"] - after_sales.loc[closed, "requested_at"]
    return (days.dt.total_seconds() / 86400.0).rename("case_cycle_days")


def case_cycle_median_d(after_sales: pd.DataFrame, window: Window) -> float:
    """Median days requested -> closed of cases closed in the window."""
    return _quantile(case_cycle_days(after_sales, window), 0.5)


def case_cycle_p90_d(after_sales: pd.DataFrame, window: Window) -> float:
    """P90 days requested -> closed of cases closed in the window."""
    return _quantile(case_cycle_days(after_sales, window), P90)


# --- finance ------------------------------------------------------------------------------------

AGING_BUCKETS = ("0_7", "8_14", "15_30", "over_30")
_AGING_EDGES = (0.0, 7.0, 14.0, 30.0, np.inf)


def net_revenue(orders: pd.DataFrame, after_sales: pd.DataFrame, window: Window) -> float:
    """GMV of the window minus refund_amount of cases requested in it; currency."""
    return gmv(orders, window) - refund_amount(after_sales, window)


def _settled(settlements: pd.DataFrame) -> pd.Series:
    return pd.Series(_is(settlements["status"], "settled"), index=settlements.index)


def settled_amount(settlements: pd.DataFrame, window: Window) -> float:
    """Sum of amount of settlements with status settled and settled_at in the window."""
    settled = _settled(settlements) & window.contains(settlements["settled_at"])
    return float(settlements.loc[settled, "amount"].sum())


def _pending(settlements: pd.DataFrame, orders: pd.DataFrame, when: pd.Timestamp) -> pd.Series:
    when = _check_aware(when)
    delivered = _order_values(orders, settlements["order_id"], "delivered_at")
    return (delivered < when) & ~(settlements["settled_at"] < when)


def pending_amount_at(settlements: pd.DataFrame, orders: pd.DataFrame, when: pd.Timestamp) -> float:
    """Amount of orders delivered before ``when`` and not settled (or refunded) before it."""
    return float(settlements.loc[_pending(settlements, orders, when), "amount"].sum())


def pending_aging(
    settlements: pd.DataFrame, orders: pd.DataFrame, when: pd.Timestamp
) -> pd.DataFrame:
    """Pending settlements at ``when`` by days since delivery: 0-7, 8-14, 15-30, over 30.

    Columns count (settlements) and amount (currency); every bucket listed. A bucket holds
    ages up to and including its upper bound (exactly 7.0 days is in 0_7).
    """
    pending = _pending(settlements, orders, when)
    delivered = _order_values(orders, settlements["order_id"], "delivered_at")[pending]
    age = (pd.Timestamp(when) - delivered).dt.total_seconds() / 86400.0
    bucket = pd.cut(age, _AGING_EDGES, labels=list(AGING_BUCKETS), include_lowest=True)
    frame = pd.DataFrame({"bucket": bucket, "amount": settlements.loc[pending, "amount"]})
    grouped = frame.groupby("bucket", observed=False)["amount"]
    table = pd.DataFrame({"count": grouped.size(), "amount": grouped.sum()})
    table.index = pd.Index(list(AGING_BUCKETS), dtype="str", name="age")
    return table.astype({"count": "int64", "amount": "float64"})


def settlement_lag_days(
    settlements: pd.DataFrame, orders: pd.DataFrame, window: Window
) -> pd.Series:
    """Days delivered -> settled of settlements with status settled, settled in the window."""
    settled = _settled(settlements) & window.contains(settlements["settled_at"])
    rows = settlements.loc[settled]
    delivered = _order_values(orders, rows["order_id"], "delivered_at")
    return ((rows["settled_at"] - delivered).dt.total_seconds() / 86400.0).rename("lag_days")


def settlement_lag_median_d(
    settlements: pd.DataFrame, orders: pd.DataFrame, window: Window
) -> float:
    """Median days delivered -> settled of settlements settled in the window."""
    return _quantile(settlement_lag_days(settlements, orders, window), 0.5)


def settlement_lag_p90_d(settlements: pd.DataFrame, orders: pd.DataFrame, window: Window) -> float:
    """P90 days delivered -> settled of settlements settled in the window."""
    return _quantile(settlement_lag_days(settlements, orders, window), P90)


def disputes(settlements: pd.DataFrame) -> tuple[int, float]:
    """Settlements with status disputed at the data extraction: (count, amount).

    The table records no dispute date, so disputes are a state, not a weekly event.
    """
    disputed = settlements["status"].astype(object) == "disputed"
    return int(disputed.sum()), float(settlements.loc[disputed, "amount"].sum())


# --- series over weeks ------------------------------------------------------------------------


def week_label(window: Window) -> str:
    """The ISO week (e.g. "2026-W11") of the window's start, in the window's timezone."""
    return str(IsoWeek.containing(window.start))


def weekly_series(
    fn: Callable[..., float], orders: pd.DataFrame, windows: list[Window], *args: Any, **kwargs: Any
) -> pd.Series:
    """``fn(orders, window, *args, **kwargs)`` per window: float Series indexed by week label.

    One call per window: the plain way, used to check the vectorised ``weekly_kpis``.
    """
    values = [fn(orders, window, *args, **kwargs) for window in windows]
    index = pd.Index([week_label(w) for w in windows], dtype="str", name="week")
    return pd.Series(values, index=index, dtype="float64", name=getattr(fn, "__name__", None))


def _week_bounds(windows: list[Window]) -> np.ndarray:
    """Nanosecond instants of the week starts and the last end; the windows must be consecutive."""
    if not windows:
        raise ValueError("no windows given; pass at least one week.")
    for before, after in zip(windows, windows[1:], strict=False):
        if before.end != after.start:
            raise ValueError(
                f"windows must be consecutive: one ends {before.end}, the next starts "
                f"{after.start}; pass consecutive weeks (weeks.weeks_ending)."
            )
    starts = [w.start.value for w in windows] + [windows[-1].end.value]
    return np.asarray(starts, dtype="int64")


def _nanos(when: pd.Series) -> np.ndarray:
    """UTC nanoseconds of tz-aware timestamps; NaT becomes the smallest int64."""
    return pd.DatetimeIndex(when).as_unit("ns").asi8


def _week_of(when: pd.Series, bounds: np.ndarray) -> np.ndarray:
    """Index of the week holding each timestamp; -1 outside the weeks or NaT."""
    ns = _nanos(when)
    week = np.searchsorted(bounds, ns, side="right") - 1
    week[(ns < bounds[0]) | (ns >= bounds[-1])] = -1
    return week


# --- the KPI catalogue: one weekly computation per KPI --------------------------------------

Kind = Literal["count", "sum", "mean", "median", "p90", "ratio", "level"]
SEGMENT_COLUMNS = ("order_type", "warehouse", "carrier", "region", "channel")
ALL = "all"
_NAT = np.iinfo("int64").min


@dataclass(frozen=True)
class _Obs:
    """Observations of a KPI: per row its week (-1: not counted), value, segment codes."""

    week: np.ndarray
    value: np.ndarray
    codes: dict[str, np.ndarray]

    def __add__(self, other: _Obs) -> _Obs:
        return _Obs(
            np.concatenate([self.week, other.week]),
            np.concatenate([self.value, other.value]),
            {c: np.concatenate([self.codes[c], other.codes[c]]) for c in self.codes},
        )

    def counted(self, kind: str, columns: set[str]) -> _Obs:
        """Only the rows that count and the segment ``columns``; for a mean or quantile
        without NaN values, and sorted by value for a quantile."""
        keep = self.week >= 0
        if kind not in ("count", "sum"):
            keep &= ~np.isnan(self.value)
        rows = np.flatnonzero(keep)
        if kind in ("median", "p90"):
            # Sorted once here; each segmentation then needs only a stable sort by group.
            rows = rows[np.argsort(self.value[rows], kind="stable")]
        codes = {c: v[rows] for c, v in self.codes.items() if c in columns}
        return _Obs(self.week[rows], self.value[rows], codes)


@dataclass(frozen=True)
class _Spans:
    """Rows counted at the end of weeks ``enter`` (included) to ``leave`` (excluded)."""

    enter: np.ndarray
    leave: np.ndarray
    value: np.ndarray
    codes: dict[str, np.ndarray]


class _Tables:
    """The canonical tables with their rows' weeks and order segments as integer codes."""

    def __init__(
        self,
        tables: dict[str, pd.DataFrame],
        bounds: np.ndarray,
        sla: float,
        lookback_days: float | None = None,
    ):
        self.tables, self.bounds, self.sla = tables, bounds, sla
        self.lookback_days = lookback_days
        self.orders = tables["orders"]
        self.levels: dict[str, list[str]] = {}
        self.codes: dict[str, np.ndarray] = {}
        for column in SEGMENT_COLUMNS:
            values = _col(self.orders, column)
            cat = values.array if isinstance(values.dtype, pd.CategoricalDtype) else None
            if cat is None:
                cat = pd.Categorical(values.astype(object))
            levels = [str(c) for c in cat.categories]
            codes = np.asarray(cat.codes, dtype="int64")
            if column == "order_type":
                # Every order type is a segment, in schema order, with or without orders.
                recode = np.append(pd.Index(ORDER_TYPES).get_indexer(levels), -1)
                levels, codes = list(ORDER_TYPES), recode[codes]
            self.levels[column], self.codes[column] = levels, codes
        self._positions: dict[str, np.ndarray] = {}
        self._row_codes: dict[str, dict[str, np.ndarray]] = {}

    def positions(self, table: str) -> np.ndarray:
        """Row position of each row's order in ``orders`` (-1 when not loaded), cached."""
        if table not in self._positions:
            self._positions[table] = _order_positions(self.orders, self.tables[table]["order_id"])
        return self._positions[table]

    def week(self, when: pd.Series) -> np.ndarray:
        return _week_of(when, self.bounds)

    def col(self, name: str) -> pd.Series:
        return _col(self.orders, name)

    def of_orders(self, when: pd.Series, value: Any) -> _Obs:
        return _Obs(self.week(when), _values(value, len(self.orders)), self.codes)

    def row_codes(self, table: str) -> dict[str, np.ndarray]:
        """The segment codes of each row's order (-1 when the order is not loaded), cached."""
        if table not in self._row_codes:
            pos = self.positions(table)
            self._row_codes[table] = {
                c: np.where(pos >= 0, codes[pos], -1) for c, codes in self.codes.items()
            }
        return self._row_codes[table]

    def has_order(self, table: str, mask: Any) -> np.ndarray:
        """Per order: whether a row of ``table`` selected by ``mask`` belongs to it."""
        out = np.zeros(len(self.orders), dtype=bool)
        positions = self.positions(table)[np.asarray(mask, dtype=bool)]
        out[positions[positions >= 0]] = True
        return out

    def of_rows(self, table: str, when: pd.Series, value: Any, mask: Any = None) -> _Obs:
        """Observations of another table's rows (``mask``: which rows count at all)."""
        week = self.week(when)
        if mask is not None:
            week = np.where(np.asarray(mask, dtype=bool), week, -1)
        return _Obs(week, _values(value, len(week)), self.row_codes(table))

    def order_value(self, table: str, column: str) -> pd.Series:
        rows = self.tables[table]
        taken = self.col(column).array.take(self.positions(table), allow_fill=True)
        return pd.Series(taken, index=rows.index, name=column)


def _values(value: Any, length: int) -> np.ndarray:
    """A scalar repeated, or a Series/array as float64 values (NA -> NaN), index dropped."""
    if np.isscalar(value):
        return np.full(length, float(value))  # type: ignore[arg-type]  # a numpy scalar
    return np.asarray(pd.Series(value).astype("float64"), dtype="float64")


def _hours(start: pd.Series, end: pd.Series) -> pd.Series:
    """Hours from start to end; NaN when end precedes start (a milestone out of order:
    validation flags the order, and only this duration leaves the duration KPIs)."""
    hours = (end - start).dt.total_seconds() / 3600.0
    return hours.where(~(hours < 0))


@dataclass(frozen=True)
class KpiDef:
    """A KPI of the weekly series: how each week's value is observed and aggregated.

    ``observe(tables)`` gives observations (a row per order, ticket, case... with the week
    of its ``event`` and a value); ``kind`` says how a week's observations become its
    value: count or sum of values, mean (of 0/1 values: a share), median, p90, ratio of two
    sums (times ``scale``), or level at the week's end. ``dims`` are the segmentations
    besides all orders ("order_type", "warehouse", "carrier/region"...).
    """

    key: str
    unit: Unit
    higher_is_better: bool
    event: str
    kind: Kind
    observe: Callable[[_Tables], Any]
    dims: tuple[str, ...] = ()
    tables: tuple[str, ...] = ("orders",)
    scale: float = 1.0


def _created(t: _Tables, value: Any) -> _Obs:
    return t.of_orders(t.col("created_at"), value)


def _is(values: pd.Series, *labels: str) -> np.ndarray:
    """Whether each value is one of ``labels`` (bool array); fast on categoricals."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        wanted = np.flatnonzero(values.cat.categories.isin(labels))
        return np.isin(np.asarray(values.cat.codes), wanted)
    return values.isin(labels).to_numpy(dtype=bool, na_value=False)


def _exception_is(t: _Tables, *codes: str) -> np.ndarray:
    return _is(t.col("exception_code"), *codes)


def _obs_created(t: _Tables) -> _Obs:
    return _created(t, 1.0)


def _obs_gmv(t: _Tables) -> _Obs:
    kept = t.col("cancelled_at").isna()
    return _created(t, t.col("amount").fillna(0.0).where(kept, 0.0))


def _obs_cancelled(t: _Tables) -> _Obs:
    return _created(t, t.col("cancelled_at").notna())


def _obs_abnormal(t: _Tables) -> _Obs:
    return _created(t, t.col("exception_code").notna())


def _obs_stockout(t: _Tables) -> _Obs:
    return _created(t, _exception_is(t, "stockout"))


def _obs_shipped(t: _Tables) -> _Obs:
    return t.of_orders(t.col("shipped_at"), 1.0)


def _obs_on_time_ship(t: _Tables) -> _Obs:
    shipped, deadline = t.col("shipped_at"), ship_deadline(t.orders, t.sla)
    return t.of_orders(shipped, (shipped <= deadline).astype(float).where(deadline.notna()))


def _obs_handling(t: _Tables) -> _Obs:
    return t.of_orders(t.col("shipped_at"), _hours(t.col("paid_at"), t.col("shipped_at")))


def _obs_lost_damaged(t: _Tables) -> _Obs:
    return t.of_orders(t.col("shipped_at"), _exception_is(t, "lost", "damaged"))


def _obs_fill(t: _Tables) -> tuple[_Obs, _Obs]:
    lines = t.tables["order_lines"]
    when = t.order_value("order_lines", "shipped_at")
    if "qty_shipped" not in lines.columns:
        return (t.of_rows("order_lines", when, 0.0, False),) * 2
    judged = lines["qty_shipped"].notna().to_numpy()
    shipped = t.of_rows("order_lines", when, lines["qty_shipped"].fillna(0), judged)
    return shipped, t.of_rows("order_lines", when, lines["qty"], judged)


def _obs_on_time_delivery(t: _Tables) -> _Obs:
    delivered, promise = t.col("delivered_at"), t.col("promised_delivery_by")
    return t.of_orders(delivered, (delivered <= promise).astype(float).where(promise.notna()))


def _obs_transit(t: _Tables) -> _Obs:
    return t.of_orders(t.col("delivered_at"), _hours(t.col("shipped_at"), t.col("delivered_at")))


def _obs_cycle(t: _Tables) -> _Obs:
    return t.of_orders(t.col("delivered_at"), _hours(t.col("created_at"), t.col("delivered_at")))


def _first_per_order(t: _Tables, table: str, when: pd.Series, mask: np.ndarray) -> np.ndarray:
    """Per order, the nanoseconds of its earliest ``when`` in ``table`` (int64 max if none)."""
    out = np.full(len(t.orders), np.iinfo("int64").max, dtype="int64")
    positions, ns = t.positions(table), _nanos(when)
    keep = mask & (positions >= 0) & (ns != _NAT)
    np.minimum.at(out, positions[keep], ns[keep])
    return out


def _obs_perfect(t: _Tables) -> _Obs:
    delivered, promise = t.col("delivered_at"), t.col("promised_delivery_by")
    week = t.week(delivered)
    # Complaints and cases count up to the end of the order's delivery week.
    cutoff = t.bounds[np.clip(week + 1, 0, len(t.bounds) - 1)]
    perfect = (delivered <= promise).to_numpy() & t.col("exception_code").isna().to_numpy()
    tickets = t.tables.get("tickets")
    if tickets is not None:
        complaint = _is(tickets["category"], "complaint")
        perfect &= ~(_first_per_order(t, "tickets", tickets["opened_at"], complaint) < cutoff)
    cases = t.tables.get("after_sales")
    if cases is not None:
        every = np.ones(len(cases), dtype=bool)
        perfect &= ~(_first_per_order(t, "after_sales", cases["requested_at"], every) < cutoff)
    lines = t.tables.get("order_lines")
    if lines is not None:
        perfect &= ~t.has_order("order_lines", _short_lines(lines))
    value = np.where(promise.notna().to_numpy(), perfect.astype(float), np.nan)
    return _Obs(week, value, t.codes)


def _delivered_orders(t: _Tables) -> _Obs:
    return t.of_orders(t.col("delivered_at"), 1.0)


def _obs_returns(t: _Tables) -> tuple[_Obs, _Obs]:
    cases = t.tables["after_sales"]
    is_return = _is(cases["kind"], "return")
    return t.of_rows("after_sales", cases["requested_at"], is_return), _delivered_orders(t)


def _obs_refunds(t: _Tables) -> tuple[_Obs, _Obs]:
    cases = t.tables["after_sales"]
    refunded = _refunds(cases) > 0
    return t.of_rows("after_sales", cases["requested_at"], refunded), _delivered_orders(t)


def _obs_tickets(t: _Tables, category: str | None) -> tuple[_Obs, _Obs]:
    tickets = t.tables["tickets"]
    value: Any = 1.0
    if category is not None:
        value = _is(tickets["category"], category)
    return t.of_rows("tickets", tickets["opened_at"], value), _created(t, 1.0)


def _obs_all_tickets(t: _Tables) -> tuple[_Obs, _Obs]:
    return _obs_tickets(t, None)


def _obs_complaints(t: _Tables) -> tuple[_Obs, _Obs]:
    return _obs_tickets(t, "complaint")


def _obs_ticket_hours(t: _Tables, stage: str) -> _Obs:
    tickets = t.tables["tickets"]
    start_col, end_col = TICKET_STAGES[stage]
    if end_col not in tickets.columns:
        return t.of_rows("tickets", tickets["opened_at"], np.nan, False)
    hours = _hours(tickets[start_col], tickets[end_col])
    return t.of_rows("tickets", tickets[end_col], hours)


def _obs_first_response(t: _Tables) -> _Obs:
    return _obs_ticket_hours(t, "first_response")


def _obs_resolution(t: _Tables) -> _Obs:
    return _obs_ticket_hours(t, "resolution")


def _obs_csat(t: _Tables) -> _Obs:
    tickets = t.tables["tickets"]
    if "csat" not in tickets.columns or "resolved_at" not in tickets.columns:
        return t.of_rows("tickets", tickets["opened_at"], np.nan, False)
    return t.of_rows("tickets", tickets["resolved_at"], tickets["csat"])


def _obs_refund_amount(t: _Tables) -> _Obs:
    cases = t.tables["after_sales"]
    return t.of_rows("after_sales", cases["requested_at"], _refunds(cases))


def _obs_case_cycle(t: _Tables) -> _Obs:
    cases = t.tables["after_sales"]
    if "closed_at" not in cases.columns:
        return t.of_rows("after_sales", cases["requested_at"], np.nan, False)
    days = _hours(cases["requested_at"], cases["closed_at"]) / 24.0
    return t.of_rows("after_sales", cases["closed_at"], days)


def _obs_net_revenue(t: _Tables) -> _Obs:
    refunds = _obs_refund_amount(t)
    return _obs_gmv(t) + _Obs(refunds.week, -refunds.value, refunds.codes)


def _obs_settled(t: _Tables) -> _Obs:
    rows = t.tables["settlements"]
    return t.of_rows("settlements", rows["settled_at"], rows["amount"], _settled(rows))


def _obs_settlement_lag(t: _Tables) -> _Obs:
    rows = t.tables["settlements"]
    lag = _hours(t.order_value("settlements", "delivered_at"), rows["settled_at"]) / 24.0
    return t.of_rows("settlements", rows["settled_at"], lag, _settled(rows))


def _spans(
    t: _Tables, codes: dict[str, np.ndarray], start: pd.Series, end: pd.Series, weight: Any
) -> _Spans:
    """Rows counted at a week's end e when start < e and not end < e (NaT end: never ends)."""
    ends = t.bounds[1:]
    start_ns, end_ns = _nanos(start), _nanos(end)
    stop_ns = np.where(end_ns == _NAT, _NAT, np.maximum(start_ns, end_ns))
    never = len(ends)
    enter = np.where(start_ns == _NAT, never, np.searchsorted(ends, start_ns, "right"))
    leave = np.where((start_ns == _NAT) | (stop_ns == _NAT), never, 0)
    leave = np.where(leave == 0, np.searchsorted(ends, stop_ns, "right"), leave)
    return _Spans(enter, leave, _values(weight, len(start_ns)), codes)


def _shipped_or_cancelled(t: _Tables) -> pd.Series:
    """The earlier of shipped_at and cancelled_at (NaT when neither happened)."""
    shipped, cancelled = t.col("shipped_at"), t.col("cancelled_at")
    return shipped.where(shipped.notna() & ~(cancelled < shipped), cancelled)


def _own_lookback(t: _Tables, spans: _Spans) -> _Spans:
    """Each week's end counts only orders created up to ``lookback_days`` before that week.

    The series then means the same in every week: an older history week is not short of
    the long-open orders the later weeks see only because the load reaches further back.
    """
    if t.lookback_days is None:
        return spans
    created = _nanos(t.col("created_at"))
    limit = np.where(created == _NAT, _NAT, created + int(t.lookback_days * 86400 * 1e9))
    last = np.searchsorted(t.bounds[:-1], limit, side="right")
    leave = np.maximum(np.minimum(spans.leave, last), spans.enter)
    return _Spans(spans.enter, leave, spans.value, spans.codes)


def _obs_backlog(t: _Tables) -> _Spans:
    return _own_lookback(t, _spans(t, t.codes, t.col("paid_at"), _shipped_or_cancelled(t), 1.0))


def _obs_overdue(t: _Tables) -> _Spans:
    paid, deadline = t.col("paid_at"), ship_deadline(t.orders, t.sla)
    due = deadline.where(deadline > paid, paid).where(paid.notna() & deadline.notna())
    return _own_lookback(t, _spans(t, t.codes, due, _shipped_or_cancelled(t), 1.0))


def _obs_pending(t: _Tables) -> _Spans:
    rows = t.tables["settlements"]
    delivered = t.order_value("settlements", "delivered_at")
    return _spans(t, t.row_codes("settlements"), delivered, rows["settled_at"], rows["amount"])


_T, _CS, _ST, _LN = ("tickets",), ("after_sales",), ("settlements",), ("order_lines",)
_TYPE, _WH, _TYPE_WH = ("order_type",), ("warehouse",), ("order_type", "warehouse")
_DELIVERY = ("order_type", "carrier", "carrier/region")

# Every KPI of the weekly series. Columns: key, unit, higher is better, event placing a row
# in a week, aggregation, observations, segmentations, tables needed besides orders, scale.
# fmt: off
CATALOGUE: dict[str, KpiDef] = {k.key: k for k in (
    KpiDef("orders_created", "orders", True, "created", "count", _obs_created,
           ("order_type", "channel", "warehouse")),
    KpiDef("gmv", "currency", True, "created", "sum", _obs_gmv, ("order_type", "channel")),
    KpiDef("cancellation_rate", "share", False, "created", "mean", _obs_cancelled,
           ("order_type", "channel")),
    KpiDef("orders_shipped", "orders", True, "shipped", "count", _obs_shipped,
           ("warehouse", "carrier")),
    KpiDef("on_time_ship_rate", "share", True, "shipped", "mean", _obs_on_time_ship, _TYPE_WH),
    KpiDef("handling_median_h", "hours", False, "shipped", "median", _obs_handling, _TYPE_WH),
    KpiDef("handling_p90_h", "hours", False, "shipped", "p90", _obs_handling, _TYPE_WH),
    KpiDef("cycle_time_p90_h", "hours", False, "delivered", "p90", _obs_cycle, _TYPE_WH),
    KpiDef("backlog", "orders", False, "week_end", "level", _obs_backlog, _TYPE_WH),
    KpiDef("overdue_backlog", "orders", False, "week_end", "level", _obs_overdue, _TYPE_WH),
    KpiDef("abnormal_rate", "share", False, "created", "mean", _obs_abnormal, _TYPE_WH),
    KpiDef("stockout_orders", "orders", False, "created", "sum", _obs_stockout, _WH),
    KpiDef("fill_rate", "share", True, "shipped", "ratio", _obs_fill, _WH, _LN),
    KpiDef("on_time_delivery_rate", "share", True, "delivered", "mean", _obs_on_time_delivery,
           _DELIVERY),
    KpiDef("transit_median_h", "hours", False, "delivered", "median", _obs_transit,
           ("carrier", "carrier/region")),
    KpiDef("transit_p90_h", "hours", False, "delivered", "p90", _obs_transit, ("carrier",)),
    KpiDef("lost_damaged_rate", "share", False, "shipped", "mean", _obs_lost_damaged,
           ("carrier",)),
    KpiDef("perfect_order_rate", "share", True, "delivered", "mean", _obs_perfect, _TYPE),
    KpiDef("tickets_per_1000", "per_1000", False, "opened", "ratio", _obs_all_tickets, _TYPE,
           _T, 1000.0),
    KpiDef("complaint_rate", "per_1000", False, "opened", "ratio", _obs_complaints, _TYPE, _T,
           1000.0),
    KpiDef("first_response_median_h", "hours", False, "first_response", "median",
           _obs_first_response, (), _T),
    KpiDef("first_response_p90_h", "hours", False, "first_response", "p90",
           _obs_first_response, (), _T),
    KpiDef("resolution_median_h", "hours", False, "resolved", "median", _obs_resolution, (),
           _T),
    KpiDef("resolution_p90_h", "hours", False, "resolved", "p90", _obs_resolution, (), _T),
    KpiDef("csat", "score", True, "resolved", "mean", _obs_csat, (), _T),
    KpiDef("return_rate", "share", False, "requested", "ratio", _obs_returns, _TYPE, _CS),
    KpiDef("refund_rate", "share", False, "requested", "ratio", _obs_refunds, _TYPE, _CS),
    KpiDef("refund_amount", "currency", False, "requested", "sum", _obs_refund_amount, _TYPE,
           _CS),
    KpiDef("case_cycle_median_d", "days", False, "closed", "median", _obs_case_cycle, (), _CS),
    KpiDef("case_cycle_p90_d", "days", False, "closed", "p90", _obs_case_cycle, (), _CS),
    KpiDef("net_revenue", "currency", True, "created_and_requested", "sum", _obs_net_revenue, (),
           _CS),
    KpiDef("settled_amount", "currency", True, "settled", "sum", _obs_settled, (), _ST),
    KpiDef("settlement_lag_median_d", "days", False, "settled", "median", _obs_settlement_lag,
           (), _ST),
    KpiDef("settlement_lag_p90_d", "days", False, "settled", "p90", _obs_settlement_lag, (),
           _ST),
    KpiDef("pending_amount", "currency", False, "week_end", "level", _obs_pending, (), _ST),
)}
# fmt: on

# Columns of orders each KPI needs besides the required ones; "a|b": either will do. A KPI
# whose source lacks one is "not available", never zero (``missing_columns``).
NEEDS: dict[str, tuple[str, ...]] = {
    "gmv": ("amount",),
    "cancellation_rate": ("cancelled_at",),
    "orders_shipped": ("shipped_at",),
    "on_time_ship_rate": ("shipped_at", "paid_at|promised_ship_by"),
    "handling_median_h": ("paid_at", "shipped_at"),
    "handling_p90_h": ("paid_at", "shipped_at"),
    "cycle_time_p90_h": ("delivered_at",),
    "backlog": ("paid_at", "shipped_at"),
    "overdue_backlog": ("paid_at", "shipped_at"),
    "abnormal_rate": ("exception_code",),
    "stockout_orders": ("exception_code",),
    "fill_rate": ("shipped_at",),
    "on_time_delivery_rate": ("delivered_at", "promised_delivery_by"),
    "transit_median_h": ("shipped_at", "delivered_at"),
    "transit_p90_h": ("shipped_at", "delivered_at"),
    "lost_damaged_rate": ("shipped_at", "exception_code"),
    "perfect_order_rate": ("delivered_at", "promised_delivery_by", "exception_code"),
    "return_rate": ("delivered_at",),
    "refund_rate": ("delivered_at",),
    "net_revenue": ("amount",),
    "settlement_lag_median_d": ("delivered_at",),
    "settlement_lag_p90_d": ("delivered_at",),
    "pending_amount": ("delivered_at",),
}


def missing_columns(
    key: str, has_table: Callable[[str], bool], has_column: Callable[[str], bool]
) -> list[str]:
    """What the source lacks for KPI ``key``: its tables ("tickets"), then orders columns.

    Empty when the KPI can be computed. ``has_column`` answers for columns of orders; an
    alternative "a|b" is missing only when both are (and is listed as "a|b").
    """
    spec = CATALOGUE[key]
    missing = [table for table in spec.tables if not has_table(table)]
    for need in NEEDS.get(key, ()):
        if not any(has_column(c) for c in need.split("|")):
            missing.append(need)
    return missing


# The headline of the report, in display order.
HEADLINE = (
    "orders_created",
    "gmv",
    "on_time_ship_rate",
    "cycle_time_p90_h",
    "abnormal_rate",
    "perfect_order_rate",
    "complaint_rate",
    "refund_rate",
)
SERIES_COLUMNS = ("kpi", "dimension", "segment", "order_type", "week", "value", "n", "se")


def _segments(
    codes: dict[str, np.ndarray], cols: list[str], levels: dict[str, list[str]], rows: int
) -> tuple[np.ndarray, list[str]]:
    """Each row's segment id over ``cols`` (-1 where a value is missing) and segment names."""
    seg = np.zeros(rows, dtype="int64")
    names = [""]
    for c in cols:
        size = len(levels[c])
        seg = np.where((seg < 0) | (codes[c] < 0), -1, seg * size + codes[c])
        names = [f"{a}/{b}" if a else b for a in names for b in levels[c]]
    return seg, (names if cols else [ALL])


def _group_quantile(
    group: np.ndarray, values: np.ndarray, groups: int, q: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per group, the q-quantile of ``values`` (sorted ascending) by numpy's linear method,
    and its standard error: the distribution-free 95% interval between order statistics
    (rank q*n -/+ 1.96 binomial SD) divided by 3.92. The wide interval keeps the estimate
    honest for clustered values, such as delivery times bunched by day.

    NaN for an empty group.
    """
    small = np.int16 if groups < np.iinfo(np.int16).max else np.int64
    order = np.argsort(group.astype(small), kind="stable")
    group, values = group[order], values[order]
    counts = np.bincount(group, minlength=groups)
    starts = np.cumsum(counts) - counts
    last = np.maximum(counts - 1, 0)
    position = q * last
    low = np.floor(position).astype("int64")
    high = np.minimum(low + 1, last)
    spread = 1.96 * np.sqrt(counts * q * (1 - q))
    below = np.clip(np.floor(position - spread), 0, last).astype("int64")
    above = np.clip(np.ceil(position + spread), 0, last).astype("int64")
    out, se = np.full(groups, np.nan), np.full(groups, np.nan)
    has = counts > 0
    a, b = values[(starts + low)[has]], values[(starts + high)[has]]
    out[has] = a + (b - a) * (position - low)[has]
    se[has] = (values[(starts + above)[has]] - values[(starts + below)[has]]) / 3.92
    return out, se


def _reduce(
    obs: _Obs, kind: str, cols: list[str], levels: dict[str, list[str]], weeks: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(value, n, se, names): arrays of segments x weeks for one segmentation.

    se is the sampling standard error of a week's value: Poisson for a count, compound
    Poisson for a sum, binomial-like for a mean, order statistics for a quantile.
    """
    seg, names = _segments(obs.codes, cols, levels, len(obs.week))
    groups = len(names) * weeks
    counted = (obs.week >= 0) & (seg >= 0)
    if kind not in ("count", "sum"):
        counted &= ~np.isnan(obs.value)
    group = (seg * weeks + obs.week)[counted]
    values = np.nan_to_num(obs.value[counted])
    n = np.bincount(group, minlength=groups).astype("float64")
    squares = np.bincount(group, weights=values * values, minlength=groups)
    if kind in ("count", "sum"):
        value = np.bincount(group, weights=values, minlength=groups)
        se = np.sqrt(squares)
    elif kind == "mean":
        total = np.bincount(group, weights=values, minlength=groups)
        value = np.divide(total, n, out=np.full(groups, np.nan), where=n > 0)
        mean_square = np.divide(squares, n, out=np.full(groups, np.nan), where=n > 0)
        variance = np.clip(mean_square - value * value, 0.0, None)
        se = np.sqrt(np.divide(variance, n, out=np.full(groups, np.nan), where=n > 0))
    else:
        value, se = _group_quantile(group, values, groups, 0.5 if kind == "median" else P90)
    shape = (len(names), weeks)
    return value.reshape(shape), n.reshape(shape), se.reshape(shape), names


def _reduce_spans(
    spans: _Spans, cols: list[str], levels: dict[str, list[str]], weeks: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Levels at each week's end: (value, count, se, names); se as for a compound Poisson."""
    seg, names = _segments(spans.codes, cols, levels, len(spans.enter))
    width = weeks + 1
    groups = len(names) * width
    keep = seg >= 0
    into = (seg * width + np.minimum(spans.enter, weeks))[keep]
    out = (seg * width + np.minimum(spans.leave, weeks))[keep]
    weight = spans.value[keep]
    result = []
    for w in (weight, np.ones(int(keep.sum())), weight * weight):
        moves = np.bincount(into, weights=w, minlength=groups)
        moves -= np.bincount(out, weights=w, minlength=groups)
        result.append(np.cumsum(moves.reshape(len(names), width), axis=1)[:, :weeks])
    value, count, squares = result
    return value, count, np.sqrt(np.clip(squares, 0.0, None)), names


def _reduce_kpi(
    kpi: KpiDef, observed: Any, cols: list[str], levels: dict[str, list[str]], weeks: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    if kpi.kind == "level":
        return _reduce_spans(observed, cols, levels, weeks)
    if kpi.kind == "ratio":
        num, den = observed
        num_v, _, num_se, names = _reduce(num, "sum", cols, levels, weeks)
        den_v, _, _, _ = _reduce(den, "sum", cols, levels, weeks)
        nan = np.full(den_v.shape, np.nan)
        value = np.divide(kpi.scale * num_v, den_v, out=nan.copy(), where=den_v > 0)
        se = np.divide(kpi.scale * num_se, den_v, out=nan.copy(), where=den_v > 0)
        return value, den_v, se, names
    return _reduce(observed, kpi.kind, cols, levels, weeks)


def weekly_kpis(
    tables: dict[str, pd.DataFrame],
    windows: list[Window],
    ship_sla_hours: float,
    keys: Sequence[str] | None = None,
    *,
    created_from: pd.Timestamp | None = None,
    complete_from: pd.Timestamp | None = None,
    lookback_days: float | None = None,
) -> pd.DataFrame:
    """Catalogue KPIs per consecutive week and segment, in one vectorised pass per KPI.

    Long frame with columns kpi, dimension ("all", "warehouse", "carrier/region"...),
    segment ("all", a value, or values joined by "/"), order_type ("all" or a type, with
    dimension "all"), week (label), value, n (observations behind the value: orders,
    tickets..., the denominator of a ratio, the count of a level), se (sampling standard
    error of the value: Poisson for counts and sums, binomial-like for means and ratios,
    order statistics for quantiles; what the anomaly rules floor sigma by). KPIs whose tables are
    absent are left out. Every order type is listed (none of a type: counts 0, rates NaN);
    a segment's weeks before its first observation are NaN (a carrier new this week has no
    history) and segments never observed are left out. Weeks starting before
    ``created_from`` (KPIs placed by creation) or ``complete_from`` (all others) are NaN:
    the data does not cover them fully. With ``lookback_days``, backlogs count at each
    week's end only orders created up to that many days before the week's start.
    """
    bounds = _week_bounds(windows)
    labels = np.array([week_label(w) for w in windows], dtype=object)
    weeks = len(windows)
    t = _Tables(tables, bounds, ship_sla_hours, lookback_days)
    parts = []
    for key in keys or CATALOGUE:
        kpi = CATALOGUE[key]
        if not all(name in tables for name in kpi.tables):
            continue
        observed = kpi.observe(t)
        columns = {c for dim in kpi.dims for c in dim.split("/")}
        if kpi.kind == "ratio":
            observed = tuple(o.counted("sum", columns) for o in observed)
        elif kpi.kind != "level":
            observed = observed.counted(kpi.kind, columns)
        cutoff = created_from if kpi.event == "created" else complete_from
        hidden = bounds[:-1] < (pd.Timestamp(cutoff).value if cutoff is not None else bounds[0])
        for dim in (ALL, *kpi.dims):
            cols = [] if dim == ALL else dim.split("/")
            value, n, se, names = _reduce_kpi(kpi, observed, cols, t.levels, weeks)
            value, n, se = (np.asarray(a, dtype="float64") for a in (value, n, se))
            if dim != ALL:
                # A segment has no history before it first appears.
                value = np.where(np.cumsum(n != 0, axis=1) > 0, value, np.nan)
                if dim != "order_type":
                    seen = (n != 0).any(axis=1)
                    value, n, se = value[seen], n[seen], se[seen]
                    names = [x for x, shown in zip(names, seen, strict=True) if shown]
            value[:, hidden] = np.nan
            parts.append(_long(kpi.key, dim, value, n, se, names, labels))
    if not parts:
        return pd.DataFrame(columns=list(SERIES_COLUMNS))
    return pd.concat(parts, ignore_index=True)


def _long(
    key: str,
    dim: str,
    value: np.ndarray,
    n: np.ndarray,
    se: np.ndarray,
    names: list[str],
    labels: Sequence[str] | np.ndarray,
) -> pd.DataFrame:
    segments = np.repeat(np.array(names, dtype=object), len(labels))
    by_type = dim == "order_type"
    rows = len(segments)
    return pd.DataFrame(
        {
            "kpi": np.full(rows, key, dtype=object),
            "dimension": np.full(rows, ALL if by_type else dim, dtype=object),
            "segment": np.full(rows, ALL, dtype=object) if by_type else segments,
            "order_type": segments if by_type else np.full(rows, ALL, dtype=object),
            "week": np.tile(labels, len(names)),
            "value": value.ravel(),
            "n": n.ravel(),
            "se": np.where(np.isnan(value), np.nan, se).ravel(),
        }
    )


# --- targets ------------------------------------------------------------------------------------

STATUSES = ("on_target", "at_risk", "off_target")


@dataclass(frozen=True)
class Target:
    """A KPI's target; ``at_risk`` (optional) marks where "at risk" turns into "off target"."""

    target: float
    at_risk: float | None = None


def resolve_targets(targets: Mapping[str, Any], where: str = "the params") -> dict[str, Target]:
    """The params' targets as ``Target`` per catalogue KPI; checks keys and the at-risk side.

    A value is a number (the target) or has ``target`` and ``at_risk`` attributes or keys.
    Raises InvalidParamError for an unknown KPI or an at_risk on the better side of target.
    """
    out = {}
    for key, spec in targets.items():
        if key not in CATALOGUE:
            raise InvalidParamError(
                where, f"targets.{key}", f"no KPI named {key!r}; use one of {list(CATALOGUE)}"
            )
        if isinstance(spec, Mapping):
            target, at_risk = spec.get("target"), spec.get("at_risk")
        else:
            target, at_risk = getattr(spec, "target", spec), getattr(spec, "at_risk", None)
        higher = CATALOGUE[key].higher_is_better
        if at_risk is not None and (at_risk > target if higher else at_risk < target):
            side = "below" if higher else "above"
            raise InvalidParamError(
                where,
                f"targets.{key}.at_risk",
                f"{at_risk} is on the better side of the target {target}; for this KPI "
                f"{'higher' if higher else 'lower'} is better, so at_risk must be {side} it",
            )
        if target is None:
            raise InvalidParamError(where, f"targets.{key}.target", "give the target value")
        out[key] = Target(float(target), None if at_risk is None else float(at_risk))
    return out


def target_status(value: float, target: Target | None, higher_is_better: bool) -> str | None:
    """on_target (target met), at_risk (short of it, not past at_risk), off_target; or None.

    None when there is no target or no value. Meeting the target exactly is on target.
    """
    if target is None or value is None or not np.isfinite(value):
        return None
    sign = 1.0 if higher_is_better else -1.0
    if sign * (value - target.target) >= 0:
        return "on_target"
    if target.at_risk is not None and sign * (value - target.at_risk) >= 0:
        return "at_risk"
    return "off_target"
