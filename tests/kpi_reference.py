"""The KPIs of one week computed the plain way, on pandas frames: the tests' second method.

The library defines every KPI once, as an engine expression (``meetinglib.analysis.kpis``)
and every breakdown once (``meetinglib.analysis.sections``). The tests check those against
hand-worked values, against SQLite, and against these functions: small per-window
computations written independently of the engine (numpy's linear-interpolation quantiles;
``weekly_series`` applies one per week). Functions named for a breakdown pass the frames to
the engine's definition (``_on_engine``), so that a test can call it on a fixture frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from meetinglib.analysis import sections
from meetinglib.analysis.kpis import TICKET_STAGES, week_label
from meetinglib.analysis.sections import P90, STAGES
from meetinglib.core.schema import ORDERS
from meetinglib.core.weeks import Window
from meetinglib.data import engine

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


def _is(values: pd.Series, *labels: str) -> np.ndarray:
    """Whether each value is one of ``labels`` (bool array); fast on categoricals."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        wanted = np.flatnonzero(values.cat.categories.isin(labels))
        return np.isin(np.asarray(values.cat.codes), wanted)
    return values.isin(labels).to_numpy(dtype=bool, na_value=False)


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


def _on_engine(frame: pd.DataFrame) -> ir.Table:
    """A frame as an engine table, for the breakdowns the engine computes (``sections``)."""
    return engine.frame_table(frame)


def _categories(frame: pd.DataFrame, column: str) -> list[str]:
    """The categories of a categorical column (values known though absent), else none."""
    if column in frame.columns and isinstance(frame[column].dtype, pd.CategoricalDtype):
        return [str(c) for c in frame[column].cat.categories]
    return []


# --- volume ----------------------------------------------------------------------------


def orders_created(orders: pd.DataFrame, window: Window) -> int:
    """Orders created in the window (count of created_at in window), unit orders."""
    return int(_created_in(orders, window).sum())


def order_volume_by_day(orders: pd.DataFrame, window: Window) -> pd.DataFrame:
    """Orders created per local day of the window x order type, plus "total"; unit orders.

    See ``sections.order_volume_by_day``, which the engine runs on ``orders``.
    """
    return sections.order_volume_by_day(engine.shared(), _on_engine(orders), window)


def order_volume_by(orders: pd.DataFrame, window: Window, by: str) -> pd.Series:
    """Orders created in the window per value of ``by`` (channel, order_type...), unit orders."""
    return sections.order_volume_by(
        engine.shared(), _on_engine(orders), window, by, _categories(orders, by)
    )


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
    """Count, median, P90 (linear) and mean hours per stage, by END milestone in window.

    See ``sections.stage_durations``, which the engine runs on ``orders``.
    """
    levels = _categories(orders, by) if by else []
    return sections.stage_durations(engine.shared(), _on_engine(orders), window, by, levels)


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
    table = _on_engine(orders)
    levels = _categories(orders, by)
    return sections.backlog_by(engine.shared(), table, when, ship_sla_hours, by, levels)


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
    return sections.late_delivery_by(engine.shared(), _on_engine(orders), window, rows, cols)


# --- abnormal orders -------------------------------------------------------------------


def abnormal_orders(orders: pd.DataFrame, window: Window) -> pd.DataFrame:
    """Pareto of exception_code over orders created in the window: count, rate, share, cum.

    See ``sections.abnormal_orders``, which the engine runs on ``orders``.
    """
    return sections.abnormal_orders(engine.shared(), _on_engine(orders), window)


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


def cancellations_by(orders: pd.DataFrame, window: Window, by: str) -> pd.DataFrame:
    """Per value of ``by``: orders created in the window, cancelled (any time), rate = ratio.

    Units orders and share (NaN for a value without orders). Event: created_at.
    """
    levels = _categories(orders, by)
    return sections.cancellations_by(engine.shared(), _on_engine(orders), window, by, levels)


def abnormal_by(orders: pd.DataFrame, window: Window, by: str) -> pd.DataFrame:
    """Per value of ``by``: orders created in the window, abnormal (exception_code set), rate."""
    levels = _categories(orders, by)
    return sections.abnormal_by(engine.shared(), _on_engine(orders), window, by, levels)


def stockouts_by(orders: pd.DataFrame, window: Window, by: str) -> pd.DataFrame:
    """Per value of ``by``: orders created in the window, with exception stockout, rate."""
    levels = _categories(orders, by)
    return sections.stockouts_by(engine.shared(), _on_engine(orders), window, by, levels)


def stockout_orders(orders: pd.DataFrame, window: Window) -> int:
    """Orders created in the window with exception_code stockout; unit orders."""
    codes = _col(orders, "exception_code").astype(object)
    return int((_created_in(orders, window) & (codes == "stockout")).sum())


def abnormal_examples(
    orders: pd.DataFrame, window: Window, ship_sla_hours: float, limit: int = 10
) -> pd.DataFrame:
    """Abnormal orders created in the window that most need follow-up, worst first.

    See ``sections.abnormal_examples``, which the engine runs on ``orders``.
    """
    table = _on_engine(orders)
    return sections.abnormal_examples(engine.shared(), table, window, ship_sla_hours, limit)


def abnormal_by_week(orders: pd.DataFrame, windows: list[Window]) -> pd.DataFrame:
    """Abnormal orders per week created x exception_code (codes by total, descending); orders.

    Index: week labels of ``windows`` (consecutive); weeks without abnormal orders are 0.
    """
    return sections.abnormal_by_week(engine.shared(), _on_engine(orders), windows)


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


def carrier_scorecard(orders: pd.DataFrame, window: Window) -> pd.DataFrame:
    """Per carrier: shipped, delivered, on-time delivery, transit median/P90, lost/damaged.

    See ``sections.carrier_scorecard``, which the engine runs on ``orders``.
    """
    return sections.carrier_scorecard(engine.shared(), _on_engine(orders), window)


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
    levels = _categories(tickets, "category")
    return sections.ticket_categories(engine.shared(), _on_engine(tickets), window, levels)


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
    return sections.after_sales_reasons(engine.shared(), _on_engine(after_sales), window)


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
    settled_at = settlements["settled_at"]
    timed = settled_at.notna()
    # Without a time, the status decides: settled (the time was lost) and refunded (nothing
    # due) are not money to come; pending, disputed and unknown statuses are.
    closed = pd.Series(_is(settlements["status"], "settled", "refunded"), index=settlements.index)
    open_at = (timed & (settled_at >= when)) | (~timed & ~closed)
    return (delivered < when) & open_at


def pending_amount_at(settlements: pd.DataFrame, orders: pd.DataFrame, when: pd.Timestamp) -> float:
    """Amount of orders delivered before ``when`` and not settled (or refunded) before it;
    rows without settled_at count only when their status is not settled or refunded."""
    return float(settlements.loc[_pending(settlements, orders, when), "amount"].sum())


def pending_aging(
    settlements: pd.DataFrame, orders: pd.DataFrame, when: pd.Timestamp
) -> pd.DataFrame:
    """Pending settlements at ``when`` by days since delivery: 0-7, 8-14, 15-30, over 30.

    See ``sections.pending_aging``, which the engine runs on the two tables.
    """
    con = engine.shared()
    return sections.pending_aging(con, _on_engine(settlements), _on_engine(orders), when)


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


def settled_without_time(settlements: pd.DataFrame) -> tuple[int, float]:
    """Settlements with status settled and no settled_at: (count, amount).

    See ``sections.settled_without_time``, which the engine runs on the table.
    """
    return sections.settled_without_time(engine.shared(), _on_engine(settlements))


def disputes(settlements: pd.DataFrame) -> tuple[int, float]:
    """Settlements with status disputed at the data extraction: (count, amount).

    The table records no dispute date, so disputes are a state, not a weekly event.
    """
    return sections.disputes(engine.shared(), _on_engine(settlements))


# --- series over weeks ---


def weekly_series(
    fn: Callable[..., float], orders: pd.DataFrame, windows: list[Window], *args: Any, **kwargs: Any
) -> pd.Series:
    """``fn(orders, window, *args, **kwargs)`` per window: float Series indexed by week label.

    One call per window: the plain way, used to check the vectorised ``weekly_kpis``.
    """
    values = [fn(orders, window, *args, **kwargs) for window in windows]
    index = pd.Index([week_label(w) for w in windows], dtype="str", name="week")
    return pd.Series(values, index=index, dtype="float64", name=getattr(fn, "__name__", None))


def _nanos(when: pd.Series) -> np.ndarray:
    """UTC nanoseconds of tz-aware timestamps; NaT becomes the smallest int64."""
    return pd.DatetimeIndex(when).as_unit("ns").asi8


def _week_of(when: pd.Series, bounds: np.ndarray) -> np.ndarray:
    """Index of the week holding each timestamp; -1 outside the weeks or NaT."""
    ns = _nanos(when)
    week = np.searchsorted(bounds, ns, side="right") - 1
    week[(ns < bounds[0]) | (ns >= bounds[-1])] = -1
    return week
