"""Weekly KPIs of order processing, computed from validated canonical frames.

A KPI counts the events that happened in a half-open window ``[start, end)`` and its
docstring names the event that places an order in the week: *created* for volume, GMV,
cancellation and abnormal orders; *shipped* for on-time shipping; the *end milestone*
of a stage for stage durations. A window without such events gives 0 for a count and
NaN for a rate or a duration, never an error.

Every function is pure: it takes the ``orders`` frame (canonical columns and dtypes,
see ``meetinglib.schema``; a missing milestone is NaT = not reached yet) and a
``weeks.Window``, never reads files and never modifies its inputs. Scalar KPIs share
the shape ``fn(orders, window, ...)`` so that ``weekly_series`` turns any of them into
a weekly trend, and the headline table is declared once in ``HEADLINE``.

Conventions a caller must know:

* Percentiles (P90) are numpy's default, linear interpolation between order statistics.
* Durations are in hours (float).
* Cancellation means ``cancelled_at`` is set, whenever it happened up to the data
  extraction: GMV excludes such orders and the cancellation rate counts them.
* Breakdowns by a dimension list every known value of it (schema values, categories of
  the column, values seen anywhere in ``orders``), zeros included; orders with an empty
  value are counted under ``MISSING``, shown only when there are some.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from .schema import ORDER_TYPES, ORDERS
from .weeks import IsoWeek, Window

# stage id -> (start milestone, end milestone); the end milestone places an order in a week.
STAGES: dict[str, tuple[str, str]] = {
    "created_paid": ("created_at", "paid_at"),
    "paid_shipped": ("paid_at", "shipped_at"),
    "shipped_delivered": ("shipped_at", "delivered_at"),
    "created_delivered": ("created_at", "delivered_at"),
}
STAGE_COLUMNS = ("count", "median_h", "p90_h", "mean_h")
PARETO_COLUMNS = ("count", "rate", "share", "cumulative_share")
HEADLINE_COLUMNS = ("key", "this_week", "last_week", "change", "unit", "higher_is_better")
# Level for orders with an empty dimension value; handouts show the label "word.missing".
MISSING = "(missing)"
P90 = 0.9

Unit = Literal["orders", "currency", "share", "hours"]


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
    ended = (window.contains(end) & start.notna()).to_numpy()
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
    if by:
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


# --- headline and series ---------------------------------------------------------------


@dataclass(frozen=True)
class KpiSpec:
    """A headline KPI: stable key, unit, direction, and how to compute it for a window."""

    key: str
    unit: Unit
    higher_is_better: bool
    compute: Callable[[pd.DataFrame, Window, float], float]  # (orders, window, ship_sla_hours)


# The headline table of the report, in display order. Backlogs are taken at window end.
HEADLINE: tuple[KpiSpec, ...] = (
    KpiSpec("orders_created", "orders", True, lambda o, w, sla: orders_created(o, w)),
    KpiSpec("gmv", "currency", True, lambda o, w, sla: gmv(o, w)),
    KpiSpec("cancellation_rate", "share", False, lambda o, w, sla: cancellation_rate(o, w)),
    KpiSpec("on_time_ship_rate", "share", True, on_time_ship_rate),
    KpiSpec("on_time_delivery_rate", "share", True, lambda o, w, sla: on_time_delivery_rate(o, w)),
    KpiSpec("cycle_time_p90_h", "hours", False, lambda o, w, sla: cycle_time_p90_h(o, w)),
    KpiSpec("handling_median_h", "hours", False, lambda o, w, sla: handling_median_h(o, w)),
    KpiSpec("backlog", "orders", False, lambda o, w, sla: backlog_at(o, w.end)),
    KpiSpec(
        "overdue_backlog", "orders", False, lambda o, w, sla: overdue_backlog_at(o, w.end, sla)
    ),
    KpiSpec("abnormal_rate", "share", False, lambda o, w, sla: abnormal_rate(o, w)),
)


def headline(
    orders: pd.DataFrame, window: Window, previous_window: Window, ship_sla_hours: float
) -> pd.DataFrame:
    """Headline KPIs this week vs last: change = this - last (rates: points as a fraction).

    One row per KPI of ``HEADLINE``, in order; columns key (stable id), this_week,
    last_week, change (float), unit ("orders" | "currency" | "share" | "hours"),
    higher_is_better (bool). Each KPI places orders in a week by its own event (see the
    function of the same name); backlogs are taken at each window's end.
    """
    this = [spec.compute(orders, window, ship_sla_hours) for spec in HEADLINE]
    last = [spec.compute(orders, previous_window, ship_sla_hours) for spec in HEADLINE]
    table = pd.DataFrame(
        {
            "key": pd.array([spec.key for spec in HEADLINE], dtype="str"),
            "this_week": np.asarray(this, dtype="float64"),
            "last_week": np.asarray(last, dtype="float64"),
            "unit": pd.array([spec.unit for spec in HEADLINE], dtype="str"),
            "higher_is_better": np.array([spec.higher_is_better for spec in HEADLINE]),
        }
    )
    table["change"] = table["this_week"] - table["last_week"]
    return table.loc[:, list(HEADLINE_COLUMNS)]


def headline_by_order_type(
    orders: pd.DataFrame, window: Window, previous_window: Window, ship_sla_hours: float
) -> pd.DataFrame:
    """``headline`` for all orders and for each order type, long: order_type, key, columns."""
    scopes = {"all": orders}
    for order_type in ORDER_TYPES:
        scopes[order_type] = orders[orders["order_type"] == order_type]
    parts = [
        headline(scope, window, previous_window, ship_sla_hours).assign(order_type=name)
        for name, scope in scopes.items()
    ]
    table = pd.concat(parts, ignore_index=True)
    return table.loc[:, ["order_type", *HEADLINE_COLUMNS]]


def week_label(window: Window) -> str:
    """The ISO week (e.g. "2026-W11") of the window's start, in the window's timezone."""
    return str(IsoWeek.containing(window.start))


def weekly_series(
    fn: Callable[..., float], orders: pd.DataFrame, windows: list[Window], *args: Any, **kwargs: Any
) -> pd.Series:
    """``fn(orders, window, *args, **kwargs)`` per window: float Series indexed by week label."""
    values = [fn(orders, window, *args, **kwargs) for window in windows]
    index = pd.Index([week_label(w) for w in windows], dtype="str", name="week")
    return pd.Series(values, index=index, dtype="float64", name=getattr(fn, "__name__", None))


def headline_series(
    orders: pd.DataFrame, windows: list[Window], ship_sla_hours: float
) -> pd.DataFrame:
    """Every headline KPI over a list of windows: index week, one column per key."""
    return pd.DataFrame(
        {
            spec.key: weekly_series(spec.compute, orders, windows, ship_sla_hours)
            for spec in HEADLINE
        }
    )
