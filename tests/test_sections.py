"""The report's breakdowns on the engine (``analysis.sections``) against a second method.

The second method is the pandas code these breakdowns were computed with before they moved
to the engine, kept below as it was (``# --- reference``): each engine table is compared
with it on the sample week and the week before, on DuckDB, and a few on a local Spark.
The hand-computed figures of the same breakdowns are in tests/test_kpis.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from meetinglib.analysis import kpis, sections
from meetinglib.core.params import load_params
from meetinglib.core.schema import ORDER_TYPES, ORDERS, TICKET_CATEGORIES
from meetinglib.core.weeks import Window
from meetinglib.data import engine
from meetinglib.data.dataset import WeekData, load_week
from tests import kpi_reference as ref
from tests.conftest import SAMPLE_WEEK, write_params

SLA = 48.0
AGING_EDGES = (0.0, 7.0, 14.0, 30.0, np.inf)


# --- reference: the pandas breakdowns as they were ---------------------------------------------


def _dimension(orders: pd.DataFrame, by: str) -> tuple[pd.Series, list[Any]]:
    """Values of ``by`` (empty -> kpis.MISSING) and every known level of it, in display order."""
    values = ref._col(orders, by)
    levels: list[Any] = []
    if by in ORDERS.names and ORDERS.column(by).allowed:
        levels += list(ORDERS.column(by).allowed or ())
    if isinstance(values.dtype, pd.CategoricalDtype):
        levels += list(values.cat.categories)
    levels += sorted(values.dropna().unique().tolist(), key=str)
    levels = list(dict.fromkeys(levels))
    filled = values.astype(object).where(values.notna(), kpis.MISSING)
    return filled, [*levels, kpis.MISSING]


def _without_empty_missing(frame: Any, count_column: str | None = None) -> Any:
    """Drop the kpis.MISSING level when no order falls under it (an all-zero row is noise)."""
    at_missing = frame.index.get_level_values(0) == kpis.MISSING
    counts = frame if count_column is None else frame[count_column]
    return frame if np.asarray(counts)[at_missing].any() else frame[~at_missing]


def order_volume_by_day(orders: pd.DataFrame, window: Window) -> pd.DataFrame:
    """Orders created per local day of the window x order type, plus "total"; unit orders.

    Index: every calendar day of the window in the window's timezone (days without orders
    are 0); columns: the order types in schema order, then "total" (all orders created
    that day, equal to the sum of the type columns for validated data).
    """
    created = orders.loc[ref._created_in(orders, window), ["created_at", "order_type"]]
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
    counts = values[ref._created_in(orders, window)].value_counts()
    counts = counts.reindex(levels, fill_value=0).astype("int64")
    counts.index.name, counts.name = by, "orders"
    return _without_empty_missing(counts)


def stage_durations(orders: pd.DataFrame, window: Window, by: str | None = None) -> pd.DataFrame:
    """Count, median, kpis.P90 (numpy linear) and mean hours per stage, by END milestone in window.

    One row per stage of ``sections.STAGES`` (orders missing either milestone excluded); with ``by``
    a MultiIndex (by value, stage) listing every known value of ``by``. No order in a
    stage gives count 0 and NaN statistics.
    """
    parts = []
    dim = _dimension(orders, by) if by else None
    for stage in sections.STAGES:
        ended, hours = ref._stage_ended(orders, window, stage)
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
            "p90_h": grouped.quantile(kpis.P90, interpolation="linear"),
            "mean_h": grouped.mean(),
        }
    )
    if by and dim is not None:
        full = pd.MultiIndex.from_product([dim[1], list(sections.STAGES)], names=keys)
    else:
        full = pd.Index(list(sections.STAGES), name="stage")
    stats = stats.reindex(full)
    stats["count"] = stats["count"].fillna(0).astype("int64")
    stats = stats.astype({c: "float64" for c in sections.STAGE_COLUMNS[1:]})
    return _without_empty_missing(stats, "count") if by else stats


def backlog_by(
    orders: pd.DataFrame, when: pd.Timestamp, ship_sla_hours: float, by: str
) -> pd.DataFrame:
    """Backlog and overdue backlog at ``when`` per value of ``by``; unit orders."""
    values, levels = _dimension(orders, by)
    flags = pd.DataFrame(
        {
            "backlog": ref._backlog_mask(orders, when),
            "overdue": ref._overdue_mask(orders, when, ship_sla_hours),
        }
    )
    table = flags.groupby(values).sum().reindex(levels, fill_value=0).astype("int64")
    table.index.name = by
    return _without_empty_missing(table, "backlog")


def late_delivery_by(orders: pd.DataFrame, window: Window, rows: str, cols: str) -> pd.DataFrame:
    """Per (rows, cols) cell: delivered (with a promise), late, late_rate = late / delivered.

    Orders delivered in the window; only cells with deliveries; unit orders and share.
    """
    judged, late = ref._delivered_judged(orders, window)
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


def abnormal_orders(orders: pd.DataFrame, window: Window) -> pd.DataFrame:
    """Pareto of exception_code over orders created in the window: count, rate, share, cum.

    rate = count / orders created in the window; share = count / abnormal orders; rows by
    count descending then code; an empty frame with the same columns when none.
    """
    created = ref._created_in(orders, window)
    codes = ref._col(orders, "exception_code")[created].dropna().astype(object)
    counts = codes.value_counts()
    table = pd.DataFrame(
        {"count": counts.to_numpy(dtype="int64")},
        index=pd.Index(counts.index.astype(str), dtype="str", name="exception_code"),
    )
    table = table.sort_index().sort_values("count", ascending=False, kind="stable")
    table["rate"] = table["count"] / max(int(created.sum()), 1)
    table["share"] = table["count"] / max(int(table["count"].sum()), 1)
    table["cumulative_share"] = table["share"].cumsum()
    return table.astype({c: "float64" for c in sections.PARETO_COLUMNS[1:]})


def _created_share_by(
    orders: pd.DataFrame, window: Window, by: str, flag: pd.Series, name: str
) -> pd.DataFrame:
    values, levels = _dimension(orders, by)
    created = ref._created_in(orders, window)
    flags = pd.DataFrame({"created": created, name: created & flag})
    table = flags.groupby(values).sum().reindex(levels, fill_value=0).astype("int64")
    table["rate"] = table[name] / table["created"].where(table["created"] > 0)
    table.index.name = by
    return _without_empty_missing(table, "created")


def cancellations_by(orders: pd.DataFrame, window: Window, by: str) -> pd.DataFrame:
    """Per value of ``by``: orders created in the window, cancelled (any time), rate = ratio.

    Units orders and share (NaN for a value without orders). Event: created_at.
    """
    cancelled = ref._col(orders, "cancelled_at").notna()
    return _created_share_by(orders, window, by, cancelled, "cancelled")


def abnormal_by(orders: pd.DataFrame, window: Window, by: str) -> pd.DataFrame:
    """Per value of ``by``: orders created in the window, abnormal (exception_code set), rate."""
    abnormal = ref._col(orders, "exception_code").notna()
    return _created_share_by(orders, window, by, abnormal, "abnormal")


def stockouts_by(orders: pd.DataFrame, window: Window, by: str) -> pd.DataFrame:
    """Per value of ``by``: orders created in the window, with exception stockout, rate."""
    stockout = (ref._col(orders, "exception_code").astype(object) == "stockout").astype(bool)
    return _created_share_by(orders, window, by, stockout, "stockout")


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
    created = ref._created_in(orders, window) & ref._col(orders, "exception_code").notna()
    o = orders.loc[created]
    shipped = ref._col(o, "shipped_at") < end
    delivered = ref._col(o, "delivered_at") < end
    cancelled = (ref._col(o, "cancelled_at") < end) & ~delivered
    status = np.select(
        [cancelled, delivered, shipped], ["cancelled", "delivered", "in_transit"], "not_shipped"
    )
    ship_late = (end - ref.ship_deadline(o, ship_sla_hours)).dt.total_seconds()
    promise = ref._col(o, "promised_delivery_by")
    transit_late = (end - promise).dt.total_seconds()
    arrival_late = (ref._col(o, "delivered_at") - promise).dt.total_seconds()
    late = np.select(
        [status == "not_shipped", status == "in_transit", status == "delivered"],
        [ship_late, transit_late, arrival_late],
        np.nan,
    )
    table = pd.DataFrame(
        {
            "order_id": o["order_id"].astype("str"),
            "order_type": ref._col(o, "order_type").astype(object),
            "exception_code": ref._col(o, "exception_code").astype(object),
            "warehouse": ref._col(o, "warehouse").astype(object),
            "carrier": ref._col(o, "carrier").astype(object),
            "created_at": o["created_at"],
            "status": status,
            "hours_late": np.clip(late / 3600.0, 0.0, None),
            "amount": ref._col(o, "amount").astype("float64"),
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
    bounds = kpis._week_bounds(windows)
    week = ref._week_of(orders["created_at"], bounds)
    codes = ref._col(orders, "exception_code").astype(object)
    keep = (week >= 0) & codes.notna().to_numpy()
    table = pd.crosstab(week[keep], codes[keep].to_numpy())
    table = table.reindex(index=range(len(windows)), fill_value=0)
    table = table[table.sum().sort_values(ascending=False, kind="stable").index]
    table.index = pd.Index([kpis.week_label(w) for w in windows], dtype="str", name="week")
    table.columns = pd.Index([str(c) for c in table.columns], dtype="str", name="exception_code")
    return table.astype("int64")


def carrier_scorecard(orders: pd.DataFrame, window: Window) -> pd.DataFrame:
    """Per carrier: shipped, delivered, on-time delivery, transit median/kpis.P90, lost/damaged.

    shipped and lost_damaged_rate by shipped_at in the window; the rest by delivered_at (see
    ``on_time_delivery_rate``, ``transit_median_h``). Units orders, share, hours. One row per
    carrier with a shipment or a delivery in the window, a carrier new this week included.
    """
    values, _ = _dimension(orders, "carrier")
    shipped = window.contains(ref._col(orders, "shipped_at"))
    delivered = window.contains(ref._col(orders, "delivered_at"))
    judged, late = ref._delivered_judged(orders, window)
    codes = ref._col(orders, "exception_code").astype(object)
    transit = (
        ref._col(orders, "delivered_at") - ref._col(orders, "shipped_at")
    ).dt.total_seconds() / 3600
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
    table["transit_p90_h"] = hours.quantile(kpis.P90)
    table["on_time_delivery_rate"] = table["on_time"] / table["judged"].where(table["judged"] > 0)
    table["lost_damaged_rate"] = table["lost_damaged"] / table["shipped"].where(
        table["shipped"] > 0
    )
    table = table[(table["shipped"] > 0) | (table["delivered"] > 0)]
    table.index = pd.Index(table.index.astype(str), dtype="str", name="carrier")
    return table.loc[:, list(sections.SCORECARD_COLUMNS)].sort_values("shipped", ascending=False)


def ticket_categories(tickets: pd.DataFrame, window: Window) -> pd.Series:
    """Tickets opened in the window per category (every known category listed); tickets."""
    values = tickets["category"].astype(object)
    levels = list(TICKET_CATEGORIES)
    if isinstance(tickets["category"].dtype, pd.CategoricalDtype):
        levels += [str(c) for c in tickets["category"].cat.categories]
    levels += sorted(str(v) for v in values.dropna().unique())
    levels = [*dict.fromkeys(levels), kpis.MISSING]
    opened = values.where(values.notna(), kpis.MISSING)[window.contains(tickets["opened_at"])]
    counts = opened.value_counts().reindex(levels, fill_value=0).astype("int64")
    counts.index.name, counts.name = "category", "tickets"
    return _without_empty_missing(counts)


def after_sales_reasons(after_sales: pd.DataFrame, window: Window) -> pd.Series:
    """Cases requested in the window per reason, most frequent first; unit cases."""
    if "reason" not in after_sales.columns:
        return pd.Series(dtype="int64", name="cases")
    values = after_sales["reason"].astype(object)
    values = values.where(values.notna(), kpis.MISSING)[ref._requested_in(after_sales, window)]
    counts = values.value_counts().astype("int64")
    counts = counts.sort_index(key=lambda i: i.astype(str)).sort_values(
        ascending=False, kind="stable"
    )
    counts.index = pd.Index(counts.index.astype(str), dtype="str", name="reason")
    return counts.rename("cases")


def pending_aging(
    settlements: pd.DataFrame, orders: pd.DataFrame, when: pd.Timestamp
) -> pd.DataFrame:
    """Pending settlements at ``when`` by days since delivery: 0-7, 8-14, 15-30, over 30.

    Columns count (settlements) and amount (currency); every bucket listed. A bucket holds
    ages up to and including its upper bound (exactly 7.0 days is in 0_7).
    """
    pending = ref._pending(settlements, orders, when)
    delivered = ref._order_values(orders, settlements["order_id"], "delivered_at")[pending]
    age = (pd.Timestamp(when) - delivered).dt.total_seconds() / 86400.0
    bucket = pd.cut(age, AGING_EDGES, labels=list(sections.AGING_BUCKETS), include_lowest=True)
    frame = pd.DataFrame({"bucket": bucket, "amount": settlements.loc[pending, "amount"]})
    grouped = frame.groupby("bucket", observed=False)["amount"]
    table = pd.DataFrame({"count": grouped.size(), "amount": grouped.sum()})
    table.index = pd.Index(list(sections.AGING_BUCKETS), dtype="str", name="age")
    return table.astype({"count": "int64", "amount": "float64"})


def settled_without_time(settlements: pd.DataFrame) -> tuple[int, float]:
    """Settlements with status settled and no settled_at: (count, amount)."""
    flagged = (settlements["status"].astype(object) == "settled") & settlements["settled_at"].isna()
    return int(flagged.sum()), float(settlements.loc[flagged, "amount"].sum())


def disputes(settlements: pd.DataFrame) -> tuple[int, float]:
    """Settlements with status disputed at the data extraction: (count, amount).

    The table records no dispute date, so disputes are a state, not a weekly event.
    """
    disputed = settlements["status"].astype(object) == "disputed"
    return int(disputed.sum()), float(settlements.loc[disputed, "amount"].sum())


# --- the engine against the reference ------------------------------------------------------------


@pytest.fixture(scope="module")
def week(tmp_path_factory, sample) -> WeekData:
    folder = tmp_path_factory.mktemp("sections")
    return load_week(load_params(write_params(folder, sample.folder)), SAMPLE_WEEK)


def _windows(data: WeekData) -> list[Window]:
    return [data.window, data.previous_window]


def _levels(frame: pd.DataFrame, by: str) -> list[str]:
    values = frame[by]
    if isinstance(values.dtype, pd.CategoricalDtype):
        return [str(c) for c in values.cat.categories]
    return []


def _without_some_times(settlements: pd.DataFrame, n: int = 25) -> pd.DataFrame:
    """The sample's settlements with the time of ``n`` settled and ``n`` refunded rows
    emptied, as an export that lost them reads (the sample writes every such time)."""
    out = settlements.copy()
    for status in ("settled", "refunded"):
        rows = out.index[(out["status"].astype(object) == status) & out["settled_at"].notna()]
        assert len(rows) >= n, status
        out.loc[rows[:n], "settled_at"] = pd.NaT
    return out


def _same(engine_result: Any, reference: Any) -> None:
    if isinstance(reference, pd.Series):
        pd.testing.assert_series_equal(
            engine_result, reference, check_dtype=False, check_index_type=False, rtol=1e-9
        )
    else:
        pd.testing.assert_frame_equal(
            engine_result,
            reference,
            check_dtype=False,
            check_index_type=False,
            check_column_type=False,
            check_names=True,
            rtol=1e-9,
        )


def test_volume_and_shares_by_dimension_equal_the_reference(week):
    con, tables, orders = engine.shared(), week.engine_tables(), week.tables["orders"]
    o = tables["orders"]
    for window in _windows(week):
        _same(sections.order_volume_by_day(con, o, window), order_volume_by_day(orders, window))
        for by in ("channel", "order_type", "warehouse", "region"):
            levels = _levels(orders, by)
            _same(
                sections.order_volume_by(con, o, window, by, levels),
                order_volume_by(orders, window, by),
            )
        for by in ("order_type", "warehouse"):
            levels = _levels(orders, by)
            _same(
                sections.cancellations_by(con, o, window, by, levels),
                cancellations_by(orders, window, by),
            )
            _same(sections.abnormal_by(con, o, window, by, levels), abnormal_by(orders, window, by))
            _same(
                sections.stockouts_by(con, o, window, by, levels),
                stockouts_by(orders, window, by),
            )


def test_stage_durations_and_backlog_equal_the_reference(week):
    con, o, orders = engine.shared(), week.engine_tables()["orders"], week.tables["orders"]
    for window in _windows(week):
        _same(sections.stage_durations(con, o, window), stage_durations(orders, window))
        for by in ("order_type", "warehouse"):
            _same(
                sections.stage_durations(con, o, window, by, _levels(orders, by)),
                stage_durations(orders, window, by),
            )
            _same(
                sections.backlog_by(con, o, window.end, SLA, by, _levels(orders, by)),
                backlog_by(orders, window.end, SLA, by),
            )
    # a week with a stage in every order type: the quantiles are real numbers, not NaN
    table = sections.stage_durations(con, o, week.window, "order_type")
    assert table["p90_h"].notna().sum() >= 10


def test_abnormal_orders_equal_the_reference(week):
    con, o, orders = engine.shared(), week.engine_tables()["orders"], week.tables["orders"]
    windows = [w.window(week.tz) for w in week.history_weeks]
    _same(sections.abnormal_by_week(con, o, windows), abnormal_by_week(orders, windows))
    for window in _windows(week):
        pareto = sections.abnormal_orders(con, o, window)
        assert len(pareto) >= 3
        _same(pareto, abnormal_orders(orders, window))
        examples = sections.abnormal_examples(con, o, window, SLA, 25)
        _same(examples, abnormal_examples(orders, window, SLA, 25))


def test_logistics_equal_the_reference(week):
    con, o, orders = engine.shared(), week.engine_tables()["orders"], week.tables["orders"]
    for window in _windows(week):
        card = sections.carrier_scorecard(con, o, window)
        assert len(card) >= 3
        _same(card, carrier_scorecard(orders, window))
        for rows, cols in (("carrier", "region"), ("region", "carrier")):
            _same(
                sections.late_delivery_by(con, o, window, rows, cols),
                late_delivery_by(orders, window, rows, cols),
            )


def test_service_after_sales_and_finance_equal_the_reference(week):
    con, tables = engine.shared(), week.engine_tables()
    tickets, cases = week.tables["tickets"], week.tables["after_sales"]
    settlements, orders = week.tables["settlements"], week.tables["orders"]
    for window in _windows(week):
        _same(
            sections.ticket_categories(
                con, tables["tickets"], window, _levels(tickets, "category")
            ),
            ticket_categories(tickets, window),
        )
        assert sections.tickets_opened(con, tables["tickets"], window) == int(
            window.contains(tickets["opened_at"]).sum()
        )
        _same(
            sections.after_sales_reasons(con, tables["after_sales"], window),
            after_sales_reasons(cases, window),
        )
        for when in (window.end, window.end - pd.Timedelta(days=3)):
            _same(
                sections.pending_aging(con, tables["settlements"], tables["orders"], when),
                pending_aging(settlements, orders, when),
            )
    count, amount = sections.disputes(con, tables["settlements"])
    assert count > 0
    assert (count, amount) == pytest.approx(disputes(settlements))
    # Settled and refunded rows whose time is missing are not pending: counted apart.
    lost = _without_some_times(settlements)
    for when in (week.window.end, week.previous_window.end):
        _same(
            sections.pending_aging(con, engine.frame_table(lost), tables["orders"], when),
            pending_aging(lost, orders, when),
        )
    assert sections.settled_without_time(con, tables["settlements"]) == (0, 0.0)
    count, amount = sections.settled_without_time(con, engine.frame_table(lost))
    assert count == 25
    assert (count, amount) == pytest.approx(settled_without_time(lost))


def test_the_breakdowns_on_spark_equal_duckdbs(week, spark_engine):
    # The same in-memory table on both engines (the week's engine tables are DuckDB's).
    duck, o = engine.shared(), engine.frame_table(week.tables["orders"])
    window = week.window
    for compute in (
        lambda con: sections.stage_durations(con, o, window, "order_type"),
        lambda con: sections.carrier_scorecard(con, o, window),
        lambda con: sections.order_volume_by_day(con, o, window),
        lambda con: sections.backlog_by(con, o, window.end, SLA, "warehouse"),
        lambda con: sections.abnormal_examples(con, o, window, SLA, 10),
    ):
        _same(compute(spark_engine), compute(duck))
    # pending money when settlements lack their time: the status decides on both engines
    lost = engine.frame_table(_without_some_times(week.tables["settlements"]))
    _same(
        sections.pending_aging(spark_engine, lost, o, window.end),
        sections.pending_aging(duck, lost, o, window.end),
    )
    assert sections.settled_without_time(spark_engine, lost) == pytest.approx(
        sections.settled_without_time(duck, lost)
    )
    # the rows a report keeps in the engine (a temporary table on DuckDB)
    windows = [week.previous_window, window]
    for con in (duck, spark_engine):
        kept = sections.report_orders(con, o, windows)
        _same(
            sections.stage_durations(con, kept, window, "warehouse"),
            sections.stage_durations(duck, o, window, "warehouse"),
        )


def test_the_rows_kept_for_a_report_are_the_rows_its_breakdowns_read(week):
    con, o, orders = engine.shared(), week.engine_tables()["orders"], week.tables["orders"]
    windows = [week.previous_window, week.window]
    kept = sections.report_orders(con, o, windows)
    assert 0 < int(con.execute(kept.count())) < len(orders)
    for window in windows:
        _same(sections.carrier_scorecard(con, kept, window), carrier_scorecard(orders, window))
        _same(
            sections.backlog_by(
                con, kept, window.end, SLA, "warehouse", _levels(orders, "warehouse")
            ),
            backlog_by(orders, window.end, SLA, "warehouse"),
        )
