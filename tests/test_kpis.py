"""KPIs over a hand-made fixture of 23 orders in 2026-W10 and 2026-W11 (Asia/Shanghai).

Every expected value below is worked out by hand from tests/data/kpis/orders.csv (and the
tickets, after_sales, settlements and order_lines files beside it); the comment next to it
shows the arithmetic. The vectorised weekly series are checked against those values and,
as a second method, against the per-window functions on the fixture and on the sample.
W10 = Mon 2026-03-02 .. Mon 03-09 00:00,
W11 = Mon 03-09 .. Mon 03-16 00:00, W12 follows and only holds O19's shipment.
Ship SLA is 48 h unless a test says otherwise.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import duckdb
import ibis
import ibis.backends.duckdb as duckdb_backend
import numpy as np
import pandas as pd
import pytest

from meetinglib.analysis import kpis, sections
from meetinglib.core.errors import InvalidParamError
from meetinglib.core.i18n import LABELS
from meetinglib.core.weeks import IsoWeek, Window
from meetinglib.data import engine
from tests import kpi_reference as ref

TZ = "Asia/Shanghai"
FIXTURE = Path(__file__).parent / "data" / "kpis" / "orders.csv"
TIMESTAMPS = [
    "created_at",
    "paid_at",
    "shipped_at",
    "delivered_at",
    "cancelled_at",
    "promised_ship_by",
    "promised_delivery_by",
]
CATEGORIES = ["order_type", "channel", "warehouse", "carrier", "region", "exception_code"]
SLA = 48.0

W10 = IsoWeek(2026, 10).window(TZ)
W11 = IsoWeek(2026, 11).window(TZ)
W12 = IsoWeek(2026, 12).window(TZ)
W13 = IsoWeek(2026, 13).window(TZ)


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=TZ)


def load_orders() -> pd.DataFrame:
    """The fixture with canonical dtypes (as validation leaves them)."""
    frame = pd.read_csv(FIXTURE, dtype=str, keep_default_na=False, na_values=[""])
    for col in TIMESTAMPS:
        parsed = pd.to_datetime(frame[col], format="%Y-%m-%d %H:%M:%S")
        frame[col] = parsed.dt.tz_localize(TZ)
    for col in CATEGORIES:
        frame[col] = frame[col].astype("category")
    frame["amount"] = frame["amount"].astype("float64")
    return frame


@pytest.fixture
def orders() -> pd.DataFrame:
    return load_orders()


def is_nan(value: float) -> bool:
    return isinstance(value, float) and math.isnan(value)


def test_fixture_is_as_described(orders):
    assert len(orders) == 23
    assert orders["order_id"].is_unique
    assert str(orders["created_at"].dt.tz) == TZ


# --- volume ----------------------------------------------------------------------------


def test_orders_created_counts_creation_in_the_half_open_week(orders):
    assert ref.orders_created(orders, W10) == 9  # O01..O09
    assert ref.orders_created(orders, W11) == 14  # O10..O23
    assert ref.orders_created(orders, W12) == 0


def test_order_created_at_monday_midnight_belongs_to_the_new_week(orders):
    o10 = orders[orders["order_id"] == "O10"]  # created 2026-03-09 00:00:00
    assert ref.orders_created(o10, W10) == 0
    assert ref.orders_created(o10, W11) == 1


def test_window_in_another_timezone_counts_the_same_instants(orders):
    utc = Window(W11.start.tz_convert("UTC"), W11.end.tz_convert("UTC"))
    assert ref.orders_created(orders, utc) == 14


def test_order_volume_by_day_lists_every_day_and_every_type(orders):
    table = ref.order_volume_by_day(orders, W11)
    assert list(table.index.strftime("%Y-%m-%d")) == [
        "2026-03-09",
        "2026-03-10",
        "2026-03-11",
        "2026-03-12",
        "2026-03-13",
        "2026-03-14",
        "2026-03-15",
    ]
    assert str(table.index.tz) == TZ
    assert list(table.columns) == ["normal", "special", "after_sales", "total"]
    assert (table.dtypes == "int64").all()
    # Mon: O10 n, O11 n, O12 s | Tue: O13 n, O14 n | Wed: O15 s, O16 n, O23 n
    # Thu: none | Fri: O17 n, O20 s | Sat: O18 n, O21 n | Sun: O19 n, O22 n
    assert table.to_dict("list") == {
        "normal": [2, 2, 2, 0, 1, 2, 2],
        "special": [1, 0, 1, 0, 1, 0, 0],
        "after_sales": [0, 0, 0, 0, 0, 0, 0],  # no after-sales order in W11
        "total": [3, 2, 3, 0, 2, 2, 2],  # sums to 14 = orders_created
    }


def test_order_volume_by_day_keeps_a_type_the_frame_does_not_have(orders):
    no_after_sales = orders[orders["order_type"] != "after_sales"].copy()
    no_after_sales["order_type"] = no_after_sales["order_type"].cat.remove_unused_categories()
    table = ref.order_volume_by_day(no_after_sales, W10)
    assert list(table.columns) == ["normal", "special", "after_sales", "total"]
    # W10 without O04, O09 (Wed 03-04): Mon O01,O02 | Tue O03 s | Thu O05 | Fri O06 | Sat O07 s |
    # Sun O08 (23:30)
    assert table["normal"].tolist() == [2, 0, 0, 1, 1, 0, 1]
    assert table["special"].tolist() == [0, 1, 0, 0, 0, 1, 0]
    assert table["after_sales"].tolist() == [0] * 7


def test_order_volume_by_day_of_an_empty_week_is_seven_zero_rows(orders):
    table = ref.order_volume_by_day(orders, W12)
    assert table.shape == (7, 4)
    assert int(table.to_numpy().sum()) == 0


def test_order_volume_by_lists_zero_categories_and_missing_values(orders):
    channel = ref.order_volume_by(orders, W11, "channel")
    # app: O10,O12,O14,O15,O17,O19,O20,O23; web: O11,O13,O16,O18,O21,O22; mini_program only in W10
    assert channel.to_dict() == {"app": 8, "mini_program": 0, "web": 6}
    assert channel.index.name == "channel"

    by_type = ref.order_volume_by(orders, W11, "order_type")
    assert list(by_type.items()) == [("normal", 11), ("special", 3), ("after_sales", 0)]

    region = ref.order_volume_by(orders, W11, "region")
    # east: O10,O11,O13,O16,O17,O19,O21; south: O12,O14,O15,O18,O20,O23; O22 has no region
    assert region.to_dict() == {"east": 7, "south": 6, kpis.MISSING: 1}
    # W10: every order has a region (O03 south), so no "missing" row
    assert ref.order_volume_by(orders, W10, "region").to_dict() == {"east": 8, "south": 1}


def test_order_volume_by_an_unknown_column_names_it(orders):
    with pytest.raises(KeyError, match="'chanel' is neither in the orders frame"):
        ref.order_volume_by(orders, W11, "chanel")


def test_gmv_excludes_cancelled_orders(orders):
    # W11 kept: O10 90 + O11 60 + O12 400 + O14 110 + O15 250 + O16 40 + O17 75 + O19 130
    #   + O20 600 + O22 85 + O23 65 = 1905; cancelled O13 70, O18 95 (on 03-16), O21 55 left out
    assert ref.gmv(orders, W11) == pytest.approx(1905.0)
    # W10: 100 + 200 + 300 + 50 + 120 + 500 + 80 = 1350; cancelled O05 150, O09 30 left out
    assert ref.gmv(orders, W10) == pytest.approx(1350.0)
    assert ref.gmv(orders, W12) == 0.0


def test_cancellation_rate_counts_cancellations_at_any_time(orders):
    # W11: O13, O21, and O18 cancelled at 03-16 00:00 (after the week) of 14 created
    assert ref.cancellation_rate(orders, W11) == pytest.approx(3 / 14)
    assert ref.cancellation_rate(orders, W10) == pytest.approx(2 / 9)  # O05, O09 of 9
    assert is_nan(ref.cancellation_rate(orders, W12))  # nothing created


# --- stage durations -------------------------------------------------------------------


def test_stage_durations_of_the_week(orders):
    table = ref.stage_durations(orders, W11)
    assert list(table.index) == [
        "created_paid",
        "paid_shipped",
        "shipped_delivered",
        "created_delivered",
    ]
    assert list(table.columns) == ["count", "median_h", "p90_h", "mean_h"]
    assert table["count"].dtype == "int64"
    # created_paid, paid in W11 (O08 created in W10 counts by its payment), hours sorted:
    #   O14 0, O20 0, O22 0, O10 .5, O11 .5, O13 .5, O18 .5, O19 .5, O21 .5, O08 1, O12 1,
    #   O15 1, O17 25 -> n 13, median 7th = 0.5, P90 at 12*0.9 = 10.8 -> 1 + .8*(1-1) = 1,
    #   mean (0*3 + .5*6 + 1*3 + 25)/13 = 31/13
    assert table.loc["created_paid"].tolist() == pytest.approx([13, 0.5, 1.0, 31 / 13])
    # paid_shipped, shipped in W11 with a payment (O06, O07 paid in W10 count; O23 unpaid left
    # out; O19 shipped at 03-16 00:00 belongs to W12): O22 6, O11 8.5, O20 20, O10 31.5,
    #   O08 32.5, O07 46, O12 48, O06 74 -> median (31.5+32.5)/2 = 32,
    #   P90 at 7*0.9 = 6.3 -> 48 + .3*(74-48) = 55.8, mean 266.5/8 = 33.3125
    assert table.loc["paid_shipped"].tolist() == pytest.approx([8, 32.0, 55.8, 33.3125])
    # shipped_delivered, delivered in W11: O11 36, O06 48, O10 54 -> median 48,
    #   P90 at 2*0.9 = 1.8 -> 48 + .8*(54-48) = 52.8, mean 138/3 = 46
    assert table.loc["shipped_delivered"].tolist() == pytest.approx([3, 48.0, 52.8, 46.0])
    # created_delivered: O11 45, O10 86, O06 122 (created in W10, delivered 03-11 12:00)
    #   -> median 86, P90 86 + .8*(122-86) = 114.8, mean 253/3
    assert table.loc["created_delivered"].tolist() == pytest.approx([3, 86.0, 114.8, 253 / 3])


def test_stage_durations_by_order_type_include_types_without_orders(orders):
    table = ref.stage_durations(orders, W11, by="order_type")
    assert table.index.names == ["order_type", "stage"]
    assert len(table) == 12  # 3 types x 4 stages
    # normal created_paid: 0,0,.5,.5,.5,.5,.5,.5,1,25 (O14,O22,O10,O11,O13,O18,O19,O21,O08,O17)
    #   -> median .5, P90 at 9*0.9 = 8.1 -> 1 + .1*(25-1) = 3.4, mean 29/10
    assert table.loc[("normal", "created_paid")].tolist() == pytest.approx([10, 0.5, 3.4, 2.9])
    # normal paid_shipped: O22 6, O11 8.5, O10 31.5, O08 32.5, O06 74 -> median 31.5,
    #   P90 at 4*0.9 = 3.6 -> 32.5 + .6*(74-32.5) = 57.4, mean 152.5/5 = 30.5
    assert table.loc[("normal", "paid_shipped")].tolist() == pytest.approx([5, 31.5, 57.4, 30.5])
    # special paid_shipped: O20 20, O07 46, O12 48 -> P90 46 + .8*2 = 47.6, mean 114/3 = 38
    assert table.loc[("special", "paid_shipped")].tolist() == pytest.approx([3, 46.0, 47.6, 38.0])
    # no special order delivered yet in W11: count 0, statistics NaN
    special_transit = table.loc[("special", "shipped_delivered")]
    assert special_transit["count"] == 0
    assert special_transit[["median_h", "p90_h", "mean_h"]].isna().all()
    # no after-sales order at all in W11
    after_sales = table.loc["after_sales"]
    assert after_sales["count"].tolist() == [0, 0, 0, 0]
    assert after_sales["p90_h"].isna().all()


def test_stage_durations_of_a_week_without_deliveries(orders):
    table = ref.stage_durations(orders, W12)
    # only O19 (paid 03-15 23:30, shipped 03-16 00:00 exactly) ends a stage in W12: 0.5 h
    assert table["count"].tolist() == [0, 1, 0, 0]
    assert table.loc["paid_shipped"].tolist() == pytest.approx([1, 0.5, 0.5, 0.5])
    assert table.loc["shipped_delivered", ["median_h", "p90_h", "mean_h"]].isna().all()
    assert is_nan(ref.cycle_time_p90_h(orders, W12))


def test_stage_durations_by_warehouse_reports_missing_values_only_when_present(orders):
    table = ref.stage_durations(orders, W11, by="warehouse")
    assert list(table.index.get_level_values(0).unique()) == ["WH1", "WH2"]
    # WH2 shipped in W11: O07 46, O12 48, O20 20 -> 3 orders
    assert table.loc[("WH2", "paid_shipped"), "count"] == 3


def test_cycle_time_and_handling_scalars(orders):
    assert ref.cycle_time_p90_h(orders, W11) == pytest.approx(114.8)  # see stage test
    # W10 created_delivered: O04 72, O01 73, O03 73, O02 121 -> 73 + .7*(121-73) = 106.6
    assert ref.cycle_time_p90_h(orders, W10) == pytest.approx(106.6)
    assert ref.handling_median_h(orders, W11) == pytest.approx(32.0)
    # W10 paid_shipped: O03 24, O01 24.5, O04 49, O02 72 -> (24.5+49)/2 = 36.75
    assert ref.handling_median_h(orders, W10) == pytest.approx(36.75)


def test_stage_hours_rejects_an_unknown_stage(orders):
    with pytest.raises(KeyError, match="unknown stage 'paid_delivered'"):
        ref.stage_hours(orders, W11, "paid_delivered")


# --- on-time shipping and backlog ------------------------------------------------------


def test_ship_deadline_falls_back_to_payment_plus_sla(orders):
    deadline = ref.ship_deadline(orders, SLA).set_axis(orders["order_id"])
    assert deadline["O01"] == ts("2026-03-04 09:30")  # promised
    assert deadline["O02"] == ts("2026-03-04 15:00")  # paid 03-02 15:00 + 48 h
    assert deadline["O07"] == ts("2026-03-09 12:00")  # paid 03-07 12:00 + 48 h
    assert pd.isna(deadline["O16"])  # neither promised nor paid
    assert pd.isna(deadline["O23"])  # shipped unpaid, no promise
    shorter = ref.ship_deadline(orders, 24).set_axis(orders["order_id"])
    assert shorter["O07"] == ts("2026-03-08 12:00")
    assert shorter["O01"] == ts("2026-03-04 09:30")  # a promise does not depend on the SLA


def test_on_time_ship_rate_counts_orders_by_their_shipment(orders):
    # shipped in W11 with a deadline: O06 (created W10, promised 03-08 10:00, shipped 03-09 12:00)
    # late; O07 (created W10, 03-09 12:00 by SLA, shipped 10:00) on time; O08 on time;
    # O10 late (promised 03-10 00:30, shipped 08:00); O11 on time; O12 shipped exactly at its
    # SLA deadline 03-11 12:00 -> on time; O20, O22 on time. O23 has no deadline: left out.
    # -> 6 on time of 8
    assert ref.on_time_ship_rate(orders, W11, SLA) == pytest.approx(6 / 8)
    # W10: O01 on time, O02 late (SLA 03-04 15:00), O03 on time, O04 late (SLA 03-06 08:00,
    # shipped 09:00) -> 2/4
    assert ref.on_time_ship_rate(orders, W10, SLA) == pytest.approx(2 / 4)
    assert ref.on_time_ship_rate(orders, W12, SLA) == pytest.approx(1.0)  # O19, by 03-17 23:30
    assert is_nan(ref.on_time_ship_rate(orders, W13, SLA))  # nothing shipped


def test_on_time_ship_rate_with_a_shorter_sla_changes_only_unpromised_orders(orders):
    # SLA 24 h: O07 due 03-08 12:00 late, O08 due 03-10 00:30 late, O12 due 03-10 12:00 late,
    # O22 due 03-16 10:00 on time; promised ones unchanged (O06, O10 late; O11, O20 on time)
    # -> on time O11, O20, O22 = 3 of 8
    assert ref.on_time_ship_rate(orders, W11, 24) == pytest.approx(3 / 8)


def test_on_time_ship_rate_without_promise_column_uses_sla_only(orders):
    without = orders.drop(columns=["promised_ship_by"])
    # W11 all by paid + 48 h: only O06 late (due 03-08 10:00); O10 now due 03-11 00:30 -> 7/8
    assert ref.on_time_ship_rate(without, W11, SLA) == pytest.approx(7 / 8)


def test_backlog_at_week_end(orders):
    # at 03-16 00:00: O14, O15, O17 paid and open; O18 cancelled exactly at 03-16 00:00 and O19
    # shipped exactly then still count (a milestone at `when` has not happened yet).
    # Cancelled before: O05, O13, O21 excluded; O16, O23 never paid.
    assert ref.backlog_at(orders, W11.end) == 5
    # overdue: O14 (promised 03-12 15:00), O15 (paid 03-11 10:00 + 48 h); O17, O18, O19 not yet
    assert ref.overdue_backlog_at(orders, W11.end, SLA) == 2
    # at 03-09 00:00: O06 (shipped 03-09 12:00), O07 (shipped 10:00); O08 paid only at 00:30
    assert ref.backlog_at(orders, W10.end) == 2
    assert ref.overdue_backlog_at(orders, W10.end, SLA) == 1  # O06 promised 03-08 10:00


def test_backlog_drops_an_order_once_cancelled(orders):
    # O13 paid 03-10 10:30, cancelled 12:00; O12 paid 03-09 12:00, shipped 03-11
    assert ref.backlog_at(orders, ts("2026-03-10 11:00")) == 2  # O12, O13
    assert ref.backlog_at(orders, ts("2026-03-10 12:00")) == 2  # cancelled at `when`: after
    assert ref.backlog_at(orders, ts("2026-03-10 13:00")) == 1  # O12


def test_backlog_needs_a_timezone(orders):
    with pytest.raises(TypeError, match="has no timezone; localize it"):
        ref.backlog_at(orders, pd.Timestamp("2026-03-16"))


def test_backlog_by_dimension(orders):
    by_wh = ref.backlog_by(orders, W11.end, SLA, "warehouse")
    # WH1: O14 (overdue), O18, O19; WH2: O15 (overdue), O17
    assert by_wh.to_dict("index") == {
        "WH1": {"backlog": 3, "overdue": 1},
        "WH2": {"backlog": 2, "overdue": 1},
    }
    by_type = ref.backlog_by(orders, W11.end, SLA, "order_type")
    assert by_type.to_dict("index") == {
        "normal": {"backlog": 4, "overdue": 1},  # O14*, O17, O18, O19
        "special": {"backlog": 1, "overdue": 1},  # O15*
        "after_sales": {"backlog": 0, "overdue": 0},
    }


# --- abnormal orders -------------------------------------------------------------------


def test_abnormal_orders_pareto(orders):
    pareto = ref.abnormal_orders(orders, W11)
    assert list(pareto.columns) == ["count", "rate", "share", "cumulative_share"]
    # stockout O10, O14, O19; then ties of 1 in code order: address_error O13,
    # customs_hold O12, payment_failed O16 -> 6 abnormal of 14 created
    assert list(pareto.index) == ["stockout", "address_error", "customs_hold", "payment_failed"]
    assert pareto["count"].tolist() == [3, 1, 1, 1]
    assert pareto["rate"].tolist() == pytest.approx([3 / 14, 1 / 14, 1 / 14, 1 / 14])
    assert pareto["share"].tolist() == pytest.approx([3 / 6, 1 / 6, 1 / 6, 1 / 6])
    assert pareto["cumulative_share"].tolist() == pytest.approx([3 / 6, 4 / 6, 5 / 6, 1.0])


def test_abnormal_orders_of_an_exception_free_week_is_empty(orders):
    pareto = ref.abnormal_orders(orders, W10)  # no exception_code in O01..O09
    assert pareto.empty
    assert list(pareto.columns) == ["count", "rate", "share", "cumulative_share"]
    assert ref.abnormal_orders(orders, W12).empty


def test_abnormal_rate(orders):
    assert ref.abnormal_rate(orders, W11) == pytest.approx(6 / 14)
    assert ref.abnormal_rate(orders, W10) == 0.0
    assert is_nan(ref.abnormal_rate(orders, W12))


# --- the other tables: tickets, after-sales, settlements, order lines --------------------
# tests/data/kpis/{tickets,after_sales,settlements,order_lines}.csv refer to the orders above;
# the comments next to each expectation show the arithmetic.


def _read(name: str, timestamps: tuple[str, ...], categories: tuple[str, ...] = ()):
    frame = pd.read_csv(FIXTURE.with_name(f"{name}.csv"), dtype=str, keep_default_na=False)
    frame = frame.replace("", np.nan)
    for col in timestamps:
        frame[col] = pd.to_datetime(frame[col], format="%Y-%m-%d %H:%M:%S").dt.tz_localize(TZ)
    for col in categories:
        frame[col] = frame[col].astype("category")
    for col in frame.columns:
        if col.endswith("_id") or col == "sku":
            frame[col] = frame[col].astype("str")
    return frame


def load_tables() -> dict[str, pd.DataFrame]:
    """All five fixture tables with canonical dtypes."""
    tickets = _read("tickets", ("opened_at", "first_response_at", "resolved_at"), ("category",))
    tickets["csat"] = tickets["csat"].astype("float64")
    cases = _read("after_sales", ("requested_at", "closed_at"), ("kind", "reason"))
    cases["refund_amount"] = cases["refund_amount"].astype("float64")
    settlements = _read("settlements", ("settled_at",), ("status",))
    settlements[["amount", "fee"]] = settlements[["amount", "fee"]].astype("float64")
    lines = _read("order_lines", ())
    lines[["qty", "qty_shipped"]] = lines[["qty", "qty_shipped"]].astype("float64").astype("Int64")
    return {
        "orders": load_orders(),
        "tickets": tickets,
        "after_sales": cases,
        "settlements": settlements,
        "order_lines": lines,
    }


@pytest.fixture
def tables() -> dict[str, pd.DataFrame]:
    return load_tables()


def test_ticket_kpis_by_hand(tables):
    tk, o = tables["tickets"], tables["orders"]
    # opened W10: T01, T02, T03 (no order) of 9 orders; complaints T01
    assert ref.tickets_opened(tk, W10) == 3
    assert ref.tickets_per_1000(tk, o, W10) == pytest.approx(3000 / 9)
    assert ref.complaint_rate(tk, o, W10) == pytest.approx(1000 / 9)
    # opened W11: T04..T09 (T09 at Monday 00:00) of 14 orders; complaints T04, T06, T08
    assert ref.tickets_per_1000(tk, o, W11) == pytest.approx(6000 / 14)
    assert ref.complaint_rate(tk, o, W11) == pytest.approx(3000 / 14)
    assert is_nan(ref.complaint_rate(tk, o, W12))  # no orders created
    categories = ref.ticket_categories(tk, W11)
    assert categories.to_dict() == {
        "complaint": 3,
        "inquiry": 1,
        "delivery": 1,
        "return_request": 1,
        "payment": 0,
        "other": 0,
    }


def test_ticket_times_are_placed_by_their_end(tables):
    tk = tables["tickets"]
    # first answered in W11: T03 3 h (opened in W10), T04 2, T05 .25, T06 4, T07 .5, T09 .5
    #   sorted .25 .5 .5 2 3 4 -> median 1.25, P90 at 4.5 -> 3 + .5 * 1 = 3.5
    assert ref.first_response_median_h(tk, W11) == pytest.approx(1.25)
    assert ref.first_response_p90_h(tk, W11) == pytest.approx(3.5)
    # T08 answered exactly at 03-16 00:00 belongs to W12
    assert ref.first_response_median_h(tk, W12) == pytest.approx(1.0)
    # resolved in W11: T03 12 h, T04 24, T06 24, T09 2 -> median 18, P90 at 2.7 -> 24
    assert ref.resolution_median_h(tk, W11) == pytest.approx(18.0)
    assert ref.resolution_p90_h(tk, W11) == pytest.approx(24.0)
    # W10: T01 24, T02 12 -> P90 at .9 -> 12 + .9 * 12 = 22.8
    assert ref.resolution_p90_h(tk, W10) == pytest.approx(22.8)
    # CSAT of tickets resolved in W11 and rated: T04 1, T06 3, T09 4 (T03 unrated)
    assert ref.csat(tk, W11) == pytest.approx(8 / 3)
    assert ref.csat(tk, W12) == pytest.approx(4.0)  # T07, resolved 03-16 10:00
    assert is_nan(ref.csat(tk, W13))


def test_after_sales_kpis_by_hand(tables):
    cases, o = tables["after_sales"], tables["orders"]
    # delivered W10: O01, O02, O03, O04; requested W10: A01 return 100, A02 refund_only 40
    assert ref.return_rate(cases, o, W10) == pytest.approx(1 / 4)
    assert ref.refund_rate(cases, o, W10) == pytest.approx(2 / 4)
    assert ref.refund_amount(cases, W10) == pytest.approx(140.0)
    # delivered W11: O06, O10, O11; requested W11: A03 exchange (no refund), A04 return 120,
    # A05 refund 30, A06 return 50 (at Monday 00:00)
    assert ref.return_rate(cases, o, W11) == pytest.approx(2 / 3)
    assert ref.refund_rate(cases, o, W11) == pytest.approx(3 / 3)
    assert ref.refund_amount(cases, W11) == pytest.approx(200.0)
    # no delivery yet in W12: rates NaN, amount 0
    assert is_nan(ref.return_rate(cases, o, W12))
    assert ref.refund_amount(cases, W12) == 0.0
    reasons = ref.after_sales_reasons(cases, W11)
    assert list(reasons.items()) == [
        ("damaged", 1),
        ("late_delivery", 1),
        ("not_as_described", 1),
        ("wrong_item", 1),
    ]
    # closed in W11: A01 4 d, A02 1 d, A03 2.5 d, A06 2 d -> median 2.25, P90 2.5 + .7*1.5
    assert ref.case_cycle_median_d(cases, W11) == pytest.approx(2.25)
    assert ref.case_cycle_p90_d(cases, W11) == pytest.approx(3.55)
    assert ref.case_cycle_median_d(cases, W12) == pytest.approx(0.5)  # A05
    assert ref.net_revenue(o, cases, W11) == pytest.approx(1905.0 - 200.0)


def test_finance_kpis_by_hand(tables):
    st, o = tables["settlements"], tables["orders"]
    # settled W11: O02 200 (lag 3.0 d), O03 300 (6.0 d); O04 was refunded, not settled
    assert ref.settled_amount(st, W11) == pytest.approx(500.0)
    assert ref.settlement_lag_median_d(st, o, W11) == pytest.approx(4.5)
    assert ref.settlement_lag_p90_d(st, o, W11) == pytest.approx(5.7)  # 3 + .9 * 3
    assert ref.settled_amount(st, W12) == pytest.approx(60.0)  # O11 at 03-16 06:00
    # at W11's end: delivered and not settled before it: O06 120, O10 90 (disputed), O11 60
    assert ref.pending_amount_at(st, o, W11.end) == pytest.approx(270.0)
    # at W10's end: O02 200, O03 300, O04 50 (settled or refunded later); O01 settled 03-08
    assert ref.pending_amount_at(st, o, W10.end) == pytest.approx(550.0)
    assert ref.disputes(st) == (1, 90.0)


def test_pending_aging_buckets_include_their_upper_bound(tables):
    st, o = tables["settlements"], tables["orders"]
    # at 03-18 12:00: O06 delivered 03-11 12:00 -> exactly 7.0 days (0-7); O10 delivered
    # 03-12 14:00 -> 5.9 days; O11 settled 03-16 06:00, no longer pending
    aging = ref.pending_aging(st, o, ts("2026-03-18 12:00"))
    assert list(aging.index) == ["0_7", "8_14", "15_30", "over_30"]
    assert aging["count"].tolist() == [2, 0, 0, 0]
    assert aging["amount"].tolist() == pytest.approx([210.0, 0, 0, 0])
    later = ref.pending_aging(st, o, ts("2026-03-19 12:00"))  # O06 now 8 days
    assert later["count"].tolist() == [1, 1, 0, 0]
    months = ref.pending_aging(st, o, ts("2026-04-20 00:00"))  # 39.5 and 38.4 days
    assert months["amount"].tolist() == pytest.approx([0, 0, 0, 210.0])


# tests/data/kpis/settlement_statuses.csv: the delivered orders' settlements as exports
# write them when status and time disagree or the time is missing, with what each is
# (pending: counted at a week's end after the delivery, until its settled_at if any):
#   O01 settled, no time        the time was not exported: not pending, flagged
#   O02 refunded, no time       a refund of money never settled: nothing due, not pending
#   O03 disputed, no time       money not settled: pending for good
#   O04 refunded 03-10 08:00    pending until its refund
#   O06 pending, no time        pending for good
#   O10 disputed 03-20 10:00    the time closes it, whatever the status
#   O11 settled 03-16 06:00     settled after W11's end: pending at it
#   O07 pending, not delivered  not pending


def _with_statuses(tables):
    settlements = _read("settlement_statuses", ("settled_at",), ("status",))
    settlements[["amount", "fee"]] = settlements[["amount", "fee"]].astype("float64")
    return {**tables, "settlements": settlements}


def test_pending_amount_follows_the_status_of_a_settlement_without_a_time(tables):
    tables = _with_statuses(tables)
    st, o = tables["settlements"], tables["orders"]
    # W10's end (03-09 00:00), delivered before it: O01, O02 (no time: settled, refunded;
    # not pending), O03 300, O04 50 (refunded after) -> 350
    # W11's end (03-16 00:00): O03 300, O06 120, O10 90 (closed 03-20), O11 60 (settled
    # 03-16 06:00); O04 refunded 03-10 -> 570
    # W12's and W13's end: O03 300, O06 120 -> 420
    expected = [350.0, 570.0, 420.0, 420.0]
    frame = kpis.weekly_kpis(tables, WEEKS, SLA, ["pending_amount", "settled_amount"])
    assert series_of(frame, "pending_amount") == pytest.approx(expected)
    assert [ref.pending_amount_at(st, o, w.end) for w in WEEKS] == pytest.approx(expected)
    # settled with a time: O11 in W12 only; O01 has no week to be settled in
    assert series_of(frame, "settled_amount") == pytest.approx([0, 0, 60.0, 0])
    # at W11's end: O06 4.5 days, O10 3.4, O11 4.75 (0-7); O03 9.5 days (8-14)
    aging = ref.pending_aging(st, o, W11.end)
    assert aging["count"].tolist() == [3, 1, 0, 0]
    assert aging["amount"].tolist() == pytest.approx([270.0, 300.0, 0, 0])
    assert ref.settled_without_time(st) == (1, 100.0)
    assert ref.disputes(st) == (2, 390.0)


def test_fill_rate_and_stockouts_by_hand(tables):
    lines, o = tables["order_lines"], tables["orders"]
    # lines of orders shipped in W11: O06 2/2 + 1/1, O07 1/1, O08 2/3, O10 1/1, O11 2/2,
    # O12 0/1, O20 4/4 (O22's line has no qty_shipped; O23 has no lines) -> 13/15
    assert ref.fill_rate(lines, o, W11) == pytest.approx(13 / 15)
    assert ref.fill_rate(lines, o, W10) == pytest.approx(2 / 3)  # O01 1/1, O02 1/2
    assert is_nan(ref.fill_rate(lines, o, W12))  # O19 shipped, no lines
    assert ref.fill_rate(lines, o[o["warehouse"] == "WH2"], W11) == pytest.approx(5 / 6)
    assert ref.stockout_orders(o, W11) == 3  # O10, O14, O19
    table = ref.stockouts_by(o, W11, "warehouse")
    assert table.to_dict("index") == {  # WH2 created W11: O12, O15, O17, O20
        "WH1": {"created": 10, "stockout": 3, "rate": pytest.approx(0.3)},
        "WH2": {"created": 4, "stockout": 0, "rate": 0.0},
    }


def test_carrier_scorecard_by_hand(orders):
    card = ref.carrier_scorecard(orders, W11)
    # shipped W11 with a carrier: SF O06, O07, O10, O12, O20; ZTO O08, O11, O22, O23
    # delivered W11: SF O06 (48 h), O10 (54 h); ZTO O11 (36 h, the only promise: on time)
    assert card.loc["SF", "shipped"] == 5 and card.loc["ZTO", "shipped"] == 4
    assert card.loc["SF", "delivered"] == 2 and card.loc["ZTO", "delivered"] == 1
    assert card.loc["SF", "transit_median_h"] == pytest.approx(51.0)
    assert is_nan(card.loc["SF", "on_time_delivery_rate"])  # no promise among SF deliveries
    assert card.loc["ZTO", "on_time_delivery_rate"] == 1.0
    assert card["lost_damaged_rate"].tolist() == [0.0, 0.0]


def test_a_carrier_new_this_week_has_a_row_but_no_history(orders):
    new = orders.copy()
    new["carrier"] = new["carrier"].cat.add_categories(["JD"])
    new.loc[new["order_id"].isin(["O10", "O11"]), "carrier"] = "JD"
    card = ref.carrier_scorecard(new, W11)
    assert card.loc["JD", "delivered"] == 2  # O10, O11
    assert card.loc["JD", "on_time_delivery_rate"] == 1.0  # O11 judged, on time
    assert "JD" not in ref.carrier_scorecard(new, W10).index
    series = kpis.weekly_kpis({"orders": new}, [W10, W11], SLA, ["on_time_delivery_rate"])
    jd = series[(series["dimension"] == "carrier") & (series["segment"] == "JD")]
    assert jd["value"].isna().tolist() == [True, False]  # no history before it appears


def test_cancellations_and_abnormal_by_order_type(orders):
    cancels = ref.cancellations_by(orders, W11, "order_type")
    assert cancels.loc["normal"].tolist() == pytest.approx([11, 3, 3 / 11])  # O13, O18, O21
    assert cancels.loc["after_sales", "created"] == 0
    assert is_nan(cancels.loc["after_sales", "rate"])  # no orders of this type
    abnormal = ref.abnormal_by(orders, W11, "order_type")
    assert abnormal.loc["special"].tolist() == pytest.approx([3, 1, 1 / 3])  # O12 customs


def test_abnormal_examples_open_and_late_first(orders):
    examples = ref.abnormal_examples(orders, W11, SLA, limit=3)
    assert list(examples.columns) == list(sections.EXAMPLE_COLUMNS)
    assert set(ref.abnormal_examples(orders, W11, SLA)["status"]) == set(sections.EXAMPLE_STATUSES)
    # at 03-16 00:00, abnormal orders created in W11: O14 not shipped, 81 h past its promise
    # (03-12 15:00 + 3 d 9 h); O19 not shipped, due 03-17 23:30 (0 h late); O12 in transit,
    # no delivery promise (NaN, amount 400); O16 not paid (no deadline, NaN, amount 40);
    # O10 delivered; O13 cancelled
    assert examples["order_id"].tolist() == ["O14", "O19", "O12"]
    assert examples["hours_late"].tolist()[:2] == pytest.approx([81.0, 0.0])
    assert examples["status"].tolist() == ["not_shipped", "not_shipped", "in_transit"]
    assert is_nan(examples["hours_late"].iloc[2])


def test_abnormal_by_week(orders):
    table = ref.abnormal_by_week(orders, [W10, W11, W12])
    assert table.index.tolist() == ["2026-W10", "2026-W11", "2026-W12"]
    assert table.loc["2026-W11"].to_dict() == {
        "stockout": 3,
        "address_error": 1,
        "customs_hold": 1,
        "payment_failed": 1,
    }
    assert int(table.loc[["2026-W10", "2026-W12"]].to_numpy().sum()) == 0


# --- perfect order: a separate hand-made frame, one reason per order -------------------------


def _perfect_case() -> dict[str, pd.DataFrame]:
    rows = [  # id, delivered_at, promised_delivery_by, exception
        ("P1", "2026-03-10 10:00", "2026-03-11 10:00", None),  # perfect
        ("P2", "2026-03-10 10:00", "2026-03-09 10:00", None),  # late
        ("P3", "2026-03-10 10:00", "2026-03-11 10:00", "damaged"),  # exception
        ("P4", "2026-03-11 10:00", "2026-03-12 10:00", None),  # complaint in the week
        ("P5", "2026-03-11 10:00", "2026-03-12 10:00", None),  # complaint after the week
        ("P6", "2026-03-12 10:00", "2026-03-13 10:00", None),  # after-sales case
        ("P7", "2026-03-12 10:00", "2026-03-13 10:00", None),  # a line shipped short
        ("P8", "2026-03-12 10:00", None, None),  # no promise: not judged
        ("P9", "2026-03-13 10:00", "2026-03-13 10:00", None),  # exactly at promise, inquiry
    ]
    orders = pd.DataFrame(rows, columns=["order_id", "delivered_at", "promised_delivery_by", "x"])
    for col in ("delivered_at", "promised_delivery_by"):
        orders[col] = pd.to_datetime(orders[col]).dt.tz_localize(TZ)
    orders["created_at"] = orders["delivered_at"] - pd.Timedelta(days=3)
    orders["exception_code"] = orders.pop("x").astype("category")
    orders["order_id"] = orders["order_id"].astype("str")
    tickets = pd.DataFrame(
        {
            "ticket_id": pd.array(["K1", "K2", "K3"], dtype="str"),
            "order_id": pd.array(["P4", "P5", "P9"], dtype="str"),
            "opened_at": pd.to_datetime(
                ["2026-03-14 10:00", "2026-03-17 10:00", "2026-03-14 10:00"]
            ).tz_localize(TZ),
            "category": pd.Categorical(["complaint", "complaint", "inquiry"]),
        }
    )
    cases = pd.DataFrame(
        {
            "case_id": pd.array(["C1"], dtype="str"),
            "order_id": pd.array(["P6"], dtype="str"),
            "kind": pd.Categorical(["return"]),
            "requested_at": pd.to_datetime(["2026-03-15 10:00"]).tz_localize(TZ),
        }
    )
    lines = pd.DataFrame(
        {
            "order_id": pd.array(["P1", "P7", "P7"], dtype="str"),
            "sku": pd.array(["a", "a", "b"], dtype="str"),
            "qty": pd.array([1, 2, 1], dtype="Int64"),
            "qty_shipped": pd.array([1, 1, 1], dtype="Int64"),
        }
    )
    return {"orders": orders, "tickets": tickets, "after_sales": cases, "order_lines": lines}


def test_perfect_order_rate_by_hand():
    t = _perfect_case()
    o = t["orders"]
    # judged: P1..P7, P9 (8); perfect: P1, P5 (its complaint came after the week), P9 -> 3/8
    assert ref.perfect_order_rate(o, W11, t["tickets"], t["after_sales"], t["order_lines"]) == (
        pytest.approx(3 / 8)
    )
    # without the other tables only lateness and exceptions count: P2, P3 fail -> 6/8
    assert ref.perfect_order_rate(o, W11) == pytest.approx(6 / 8)
    assert is_nan(ref.perfect_order_rate(o, W12, t["tickets"]))  # nothing delivered
    series = kpis.weekly_kpis(t, [W10, W11, W12], SLA, ["perfect_order_rate"])
    overall = series[series["order_type"] == "all"].set_index("week")["value"]
    assert overall["2026-W11"] == pytest.approx(3 / 8)
    assert overall[["2026-W10", "2026-W12"]].isna().all()


# --- the weekly series: by hand ---------------------------------------------------------------

WEEKS = [W10, W11, W12, W13]
NAN = float("nan")


def series_of(frame, kpi, dimension="all", segment="all", order_type="all") -> list[float]:
    rows = frame[
        (frame["kpi"] == kpi)
        & (frame["dimension"] == dimension)
        & (frame["segment"] == segment)
        & (frame["order_type"] == order_type)
    ]
    return rows["value"].tolist()


def test_weekly_kpis_shape(tables):
    frame = kpis.weekly_kpis(tables, WEEKS, SLA)
    assert list(frame.columns) == list(kpis.SERIES_COLUMNS)
    assert set(frame["kpi"]) == set(kpis.CATALOGUE)
    first = frame[frame["kpi"] == "orders_created"]
    assert first["week"].tolist()[:4] == ["2026-W10", "2026-W11", "2026-W12", "2026-W13"]
    # every order type is listed, even one without orders
    by_type = frame[(frame["kpi"] == "gmv") & (frame["order_type"] != "all")]
    assert set(by_type["order_type"]) == {"normal", "special", "after_sales"}


def test_weekly_kpis_without_optional_tables_leave_their_kpis_out(orders):
    frame = kpis.weekly_kpis({"orders": orders}, WEEKS, SLA)
    assert "complaint_rate" not in set(frame["kpi"])
    assert "fill_rate" not in set(frame["kpi"])
    assert "on_time_ship_rate" in set(frame["kpi"])


# kpi: values for W10, W11, W12, W13, each worked out in the tests above
BY_HAND = {
    "orders_created": [9, 14, 0, 0],
    "gmv": [1350.0, 1905.0, 0, 0],
    "cancellation_rate": [2 / 9, 3 / 14, NAN, NAN],
    "orders_shipped": [4, 9, 1, 0],  # W11: O06 O07 O08 O10 O11 O12 O20 O22 O23; W12: O19
    "on_time_ship_rate": [2 / 4, 6 / 8, 1.0, NAN],
    "handling_median_h": [36.75, 32.0, 0.5, NAN],
    # W10 paid -> shipped: 24, 24.5, 49, 72 -> 49 + .7 * 23 = 65.1; W11 see the stage test
    "handling_p90_h": [65.1, 55.8, 0.5, NAN],
    "cycle_time_p90_h": [106.6, 114.8, NAN, NAN],
    # at 03-23 and 03-30 00:00: O14, O15, O17 still open and past due
    "backlog": [2, 5, 3, 3],
    "overdue_backlog": [1, 2, 3, 3],
    "abnormal_rate": [0.0, 6 / 14, NAN, NAN],
    "stockout_orders": [0, 3, 0, 0],
    "fill_rate": [2 / 3, 13 / 15, NAN, NAN],
    "on_time_delivery_rate": [1.0, 1.0, NAN, NAN],  # O01 and O11, the only promises
    # W10 transit: O04 23 h, O01/O02/O03 48 h; W11: O11 36, O06 48, O10 54
    "transit_median_h": [48.0, 48.0, NAN, NAN],
    "transit_p90_h": [48.0, 52.8, NAN, NAN],
    "lost_damaged_rate": [0.0, 0.0, 0.0, NAN],
    # O01 (W10) and O11 (W11) have complaints before their week's end
    "perfect_order_rate": [0.0, 0.0, NAN, NAN],
    "tickets_per_1000": [3000 / 9, 6000 / 14, NAN, NAN],
    "complaint_rate": [1000 / 9, 3000 / 14, NAN, NAN],
    "first_response_median_h": [0.75, 1.25, 1.0, NAN],
    "first_response_p90_h": [0.95, 3.5, 1.0, NAN],
    "resolution_median_h": [18.0, 18.0, 48.0, NAN],
    "resolution_p90_h": [22.8, 24.0, 48.0, NAN],
    "csat": [3.5, 8 / 3, 4.0, NAN],
    "return_rate": [1 / 4, 2 / 3, NAN, NAN],
    "refund_rate": [2 / 4, 1.0, NAN, NAN],
    "refund_amount": [140.0, 200.0, 0, 0],
    "case_cycle_median_d": [NAN, 2.25, 0.5, NAN],
    "case_cycle_p90_d": [NAN, 3.55, 0.5, NAN],
    "net_revenue": [1210.0, 1705.0, 0, 0],
    "settled_amount": [100.0, 500.0, 60.0, 0],
    "settlement_lag_median_d": [3.0, 4.5, 5.0, NAN],
    "settlement_lag_p90_d": [3.0, 5.7, 5.0, NAN],
    # W12 end: O06 120 and O10 90 (O11 settled 03-16 06:00)
    "pending_amount": [550.0, 270.0, 210.0, 210.0],
}


def test_every_kpi_of_the_catalogue_has_a_hand_computed_series():
    assert set(BY_HAND) == set(kpis.CATALOGUE)


@pytest.mark.parametrize("key", list(BY_HAND))
def test_weekly_kpis_by_hand(tables, key):
    frame = kpis.weekly_kpis(tables, WEEKS, SLA, [key])
    assert series_of(frame, key) == pytest.approx(BY_HAND[key], nan_ok=True), key


def test_weekly_kpis_by_segment_by_hand(tables):
    frame = kpis.weekly_kpis(tables, [W10, W11], SLA)
    # W11 shipped with a deadline, WH1: O06 late, O08, O10 late, O11, O22 -> 3/5; WH2 3/3
    assert series_of(frame, "on_time_ship_rate", "warehouse", "WH1")[1] == pytest.approx(3 / 5)
    assert series_of(frame, "on_time_ship_rate", "warehouse", "WH2")[1] == 1.0
    # tickets of W11 per type: normal T04, T08 of 11 orders; special T05, T06, T07, T09 of 3;
    # T03 has no order and counts only for all orders
    assert series_of(frame, "tickets_per_1000", order_type="normal")[1] == pytest.approx(2000 / 11)
    assert series_of(frame, "tickets_per_1000", order_type="special")[1] == pytest.approx(4000 / 3)
    assert is_nan(series_of(frame, "tickets_per_1000", order_type="after_sales")[1])
    assert series_of(frame, "fill_rate", "warehouse", "WH1")[1] == pytest.approx(8 / 9)
    # normal backlog: O06 at W10's end (O07 is special); O14, O17, O18, O19 at W11's end
    assert series_of(frame, "backlog", order_type="normal") == [1.0, 4.0]
    # no after-sales order created in W11: count 0, GMV 0, rates NaN
    assert series_of(frame, "orders_created", order_type="after_sales") == [2.0, 0.0]
    assert is_nan(series_of(frame, "cancellation_rate", order_type="after_sales")[1])
    cell = series_of(frame, "on_time_delivery_rate", "carrier/region", "SF/east")
    assert cell[0] == 1.0  # O01, judged and on time


def test_weekly_kpis_hide_weeks_the_data_does_not_cover(tables):
    frame = kpis.weekly_kpis(tables, WEEKS, SLA, created_from=W11.start, complete_from=W12.start)
    # placed by creation: hidden before W11; everything else: before W12
    assert series_of(frame, "orders_created") == pytest.approx([NAN, 14, 0, 0], nan_ok=True)
    assert series_of(frame, "backlog") == pytest.approx([NAN, NAN, 3, 3], nan_ok=True)
    assert series_of(frame, "complaint_rate", order_type="normal")[:2] == pytest.approx(
        [NAN, NAN], nan_ok=True
    )


def test_weekly_kpis_need_consecutive_weeks(tables):
    with pytest.raises(ValueError, match="windows must be consecutive"):
        kpis.weekly_kpis(tables, [W10, W12], SLA)


def test_weekly_kpis_standard_errors(tables):
    frame = kpis.weekly_kpis(tables, [W10, W11], SLA, ["orders_created", "on_time_ship_rate"])
    rows = frame[(frame["dimension"] == "all") & (frame["order_type"] == "all")]
    created = rows[rows["kpi"] == "orders_created"]["se"].tolist()
    assert created == pytest.approx([3.0, math.sqrt(14)])  # Poisson: sqrt(count)
    rate = rows[rows["kpi"] == "on_time_ship_rate"]["se"].tolist()
    assert rate[1] == pytest.approx(math.sqrt(0.75 * 0.25 / 8))  # binomial, 6 of 8


def test_weekly_series_over_windows(orders):
    created = ref.weekly_series(ref.orders_created, orders, [W10, W11, W12])
    assert created.to_dict() == {"2026-W10": 9.0, "2026-W11": 14.0, "2026-W12": 0.0}
    assert created.index.name == "week"
    on_time = ref.weekly_series(ref.on_time_ship_rate, orders, [W10, W11, W12], ship_sla_hours=SLA)
    assert on_time.tolist() == pytest.approx([0.5, 0.75, 1.0])


# --- the weekly series: against the per-window functions (a second method) ------------------

# kpi -> the per-window function applied to (orders, tickets, after_sales, settlements, lines)
PER_WINDOW = {
    "orders_created": lambda o, t, a, s, ln, w: ref.orders_created(o, w),
    "gmv": lambda o, t, a, s, ln, w: ref.gmv(o, w),
    "cancellation_rate": lambda o, t, a, s, ln, w: ref.cancellation_rate(o, w),
    "orders_shipped": lambda o, t, a, s, ln, w: ref.orders_shipped(o, w),
    "on_time_ship_rate": lambda o, t, a, s, ln, w: ref.on_time_ship_rate(o, w, SLA),
    "handling_median_h": lambda o, t, a, s, ln, w: ref.handling_median_h(o, w),
    "handling_p90_h": lambda o, t, a, s, ln, w: ref.handling_p90_h(o, w),
    "cycle_time_p90_h": lambda o, t, a, s, ln, w: ref.cycle_time_p90_h(o, w),
    "backlog": lambda o, t, a, s, ln, w: ref.backlog_at(o, w.end),
    "overdue_backlog": lambda o, t, a, s, ln, w: ref.overdue_backlog_at(o, w.end, SLA),
    "abnormal_rate": lambda o, t, a, s, ln, w: ref.abnormal_rate(o, w),
    "stockout_orders": lambda o, t, a, s, ln, w: ref.stockout_orders(o, w),
    "fill_rate": lambda o, t, a, s, ln, w: ref.fill_rate(ln, o, w),
    "on_time_delivery_rate": lambda o, t, a, s, ln, w: ref.on_time_delivery_rate(o, w),
    "transit_median_h": lambda o, t, a, s, ln, w: ref.transit_median_h(o, w),
    "transit_p90_h": lambda o, t, a, s, ln, w: ref.transit_p90_h(o, w),
    "lost_damaged_rate": lambda o, t, a, s, ln, w: ref.lost_damaged_rate(o, w),
    "perfect_order_rate": lambda o, t, a, s, ln, w: ref.perfect_order_rate(o, w, t, a, ln),
    "tickets_per_1000": lambda o, t, a, s, ln, w: ref.tickets_per_1000(t, o, w),
    "complaint_rate": lambda o, t, a, s, ln, w: ref.complaint_rate(t, o, w),
    "first_response_median_h": lambda o, t, a, s, ln, w: ref.first_response_median_h(t, w),
    "first_response_p90_h": lambda o, t, a, s, ln, w: ref.first_response_p90_h(t, w),
    "resolution_median_h": lambda o, t, a, s, ln, w: ref.resolution_median_h(t, w),
    "resolution_p90_h": lambda o, t, a, s, ln, w: ref.resolution_p90_h(t, w),
    "csat": lambda o, t, a, s, ln, w: ref.csat(t, w),
    "return_rate": lambda o, t, a, s, ln, w: ref.return_rate(a, o, w),
    "refund_rate": lambda o, t, a, s, ln, w: ref.refund_rate(a, o, w),
    "refund_amount": lambda o, t, a, s, ln, w: ref.refund_amount(a, w),
    "case_cycle_median_d": lambda o, t, a, s, ln, w: ref.case_cycle_median_d(a, w),
    "case_cycle_p90_d": lambda o, t, a, s, ln, w: ref.case_cycle_p90_d(a, w),
    "net_revenue": lambda o, t, a, s, ln, w: ref.net_revenue(o, a, w),
    "settled_amount": lambda o, t, a, s, ln, w: ref.settled_amount(s, w),
    "settlement_lag_median_d": lambda o, t, a, s, ln, w: ref.settlement_lag_median_d(s, o, w),
    "settlement_lag_p90_d": lambda o, t, a, s, ln, w: ref.settlement_lag_p90_d(s, o, w),
    "pending_amount": lambda o, t, a, s, ln, w: ref.pending_amount_at(s, o, w.end),
}


def _segment_tables(tables, dimension, segment, order_type):
    """The tables restricted to one segment's orders (tickets without an order drop out)."""
    o = tables["orders"]
    if order_type != "all":
        keep = o["order_type"] == order_type
    elif dimension == "all":
        return tables
    else:
        keep = pd.Series(True, index=o.index)
        for column, value in zip(dimension.split("/"), segment.split("/"), strict=True):
            keep &= o[column].astype(object) == value
    ids = o.loc[keep, "order_id"]
    return {
        name: frame if name == "orders" else frame[frame["order_id"].isin(ids)]
        for name, frame in {**tables, "orders": o[keep]}.items()
    }


def _compare_with_per_window(tables, windows, segments):
    frame = kpis.weekly_kpis(tables, windows, SLA)
    checked = 0
    for dimension, segment, order_type in segments:
        part = _segment_tables(tables, dimension, segment, order_type)
        names = ("orders", "tickets", "after_sales", "settlements", "order_lines")
        args = [part.get(name) for name in names]
        for key, fn in PER_WINDOW.items():
            values = series_of(frame, key, dimension, segment, order_type)
            if not values:
                continue  # a segmentation this KPI does not have
            for window, value in zip(windows, values, strict=True):
                if is_nan(value) and (dimension, order_type) != ("all", "all"):
                    continue  # a segment's weeks before it first appears
                expected = fn(*args, window)
                assert value == pytest.approx(expected, nan_ok=True, rel=1e-9, abs=1e-9), (
                    key,
                    dimension,
                    segment,
                    order_type,
                    kpis.week_label(window),
                )
                checked += 1
    return checked


def test_weekly_kpis_agree_with_the_per_window_functions_on_the_fixture(tables):
    segments = [
        ("all", "all", "all"),
        ("all", "all", "normal"),
        ("all", "all", "special"),
        ("all", "all", "after_sales"),
        ("warehouse", "WH1", "all"),
        ("warehouse", "WH2", "all"),
        ("carrier", "SF", "all"),
        ("carrier/region", "ZTO/east", "all"),
        ("channel", "web", "all"),
    ]
    assert _compare_with_per_window(tables, WEEKS, segments) > 300


def test_pending_amount_agrees_with_the_per_window_functions_whatever_the_status(tables):
    segments = [("all", "all", "all"), ("all", "all", "normal"), ("all", "all", "special")]
    assert _compare_with_per_window(_with_statuses(tables), WEEKS, segments) > 100


def test_weekly_kpis_agree_with_the_per_window_functions_on_the_sample(tmp_path, sample):
    from meetinglib.core.params import load_params
    from meetinglib.data.dataset import load_week
    from tests.conftest import SAMPLE_WEEK, write_params

    data = load_week(load_params(write_params(tmp_path, sample.folder)), SAMPLE_WEEK)
    windows = [w.window(data.tz) for w in data.history_weeks][-2:]
    segments = [
        ("all", "all", "all"),
        ("all", "all", "special"),
        ("warehouse", "WH-South", "all"),
        ("carrier", "EastPost", "all"),
        ("carrier/region", "EastPost/South", "all"),
    ]
    assert _compare_with_per_window(data.tables, windows, segments) > 100


# --- catalogue, labels and targets -------------------------------------------------------------


def test_every_catalogue_kpi_has_labels():
    for key, spec in kpis.CATALOGUE.items():
        for label in (f"kpi.{key}", f"formula.{key}", f"event.{spec.event}"):
            assert label in LABELS, label
        assert f"unit_name.{spec.unit}" in LABELS, spec.unit
    assert set(kpis.HEADLINE) <= set(kpis.CATALOGUE)


def test_target_status():
    higher = kpis.Target(0.95, at_risk=0.92)
    assert kpis.target_status(0.95, higher, True) == "on_target"  # meeting it exactly
    assert kpis.target_status(0.93, higher, True) == "at_risk"
    assert kpis.target_status(0.92, higher, True) == "at_risk"
    assert kpis.target_status(0.91, higher, True) == "off_target"
    lower = kpis.Target(96.0, at_risk=120.0)
    assert kpis.target_status(90.0, lower, False) == "on_target"
    assert kpis.target_status(100.0, lower, False) == "at_risk"
    assert kpis.target_status(130.0, lower, False) == "off_target"
    assert kpis.target_status(99.0, kpis.Target(96.0), False) == "off_target"  # no band
    assert kpis.target_status(float("nan"), higher, True) is None
    assert kpis.target_status(0.9, None, True) is None


def test_resolve_targets_accepts_numbers_and_mappings():
    targets = kpis.resolve_targets({"gmv": 1000, "complaint_rate": {"target": 20, "at_risk": 25}})
    assert targets == {
        "gmv": kpis.Target(1000.0),
        "complaint_rate": kpis.Target(20.0, 25.0),
    }


def test_resolve_targets_names_an_unknown_kpi():
    with pytest.raises(InvalidParamError, match=r"'targets.on_time_rate' in p.yaml.*no KPI"):
        kpis.resolve_targets({"on_time_rate": 0.9}, "p.yaml")


def test_resolve_targets_rejects_at_risk_on_the_better_side():
    with pytest.raises(InvalidParamError, match=r"targets.on_time_ship_rate.at_risk.*below it"):
        kpis.resolve_targets({"on_time_ship_rate": {"target": 0.95, "at_risk": 0.97}}, "p.yaml")
    with pytest.raises(InvalidParamError, match=r"lower is better, so at_risk must be above"):
        kpis.resolve_targets({"cycle_time_p90_h": {"target": 96, "at_risk": 80}}, "p.yaml")


# --- robustness ------------------------------------------------------------------------


def run_all(tables: dict[str, pd.DataFrame]) -> None:
    o = tables["orders"]
    tk, cases = tables["tickets"], tables["after_sales"]
    st, lines = tables["settlements"], tables["order_lines"]
    for window in (W10, W11, W12):
        ref.orders_created(o, window)
        ref.order_volume_by_day(o, window)
        ref.order_volume_by(o, window, "channel")
        ref.gmv(o, window)
        ref.cancellation_rate(o, window)
        ref.cancellations_by(o, window, "order_type")
        ref.stage_durations(o, window)
        ref.stage_durations(o, window, by="region")
        ref.on_time_ship_rate(o, window, SLA)
        ref.backlog_at(o, window.end)
        ref.overdue_backlog_at(o, window.end, SLA)
        ref.backlog_by(o, window.end, SLA, "carrier")
        ref.abnormal_orders(o, window)
        ref.abnormal_rate(o, window)
        ref.abnormal_by(o, window, "order_type")
        ref.abnormal_examples(o, window, SLA)
        ref.carrier_scorecard(o, window)
        ref.stockouts_by(o, window, "warehouse")
        ref.fill_rate(lines, o, window)
        ref.perfect_order_rate(o, window, tk, cases, lines)
        ref.ticket_categories(tk, window)
        ref.after_sales_reasons(cases, window)
        ref.pending_aging(st, o, window.end)
        for fn in PER_WINDOW.values():
            fn(o, tk, cases, st, lines, window)
    ref.ship_deadline(o, SLA)
    ref.abnormal_by_week(o, [W10, W11, W12])
    kpis.weekly_kpis(tables, [W10, W11, W12], SLA)


def test_inputs_are_not_modified(tables):
    before = {name: frame.copy(deep=True) for name, frame in tables.items()}
    run_all(tables)
    for name, frame in tables.items():
        pd.testing.assert_frame_equal(frame, before[name])


def test_empty_frames_give_zeros_and_nans(tables):
    empty = {name: frame.iloc[0:0] for name, frame in tables.items()}
    run_all(empty)
    o = empty["orders"]
    assert ref.orders_created(o, W11) == 0
    assert int(ref.order_volume_by_day(o, W11).to_numpy().sum()) == 0
    assert ref.stage_durations(o, W11)["count"].tolist() == [0, 0, 0, 0]
    assert ref.abnormal_orders(o, W11).empty
    assert ref.backlog_at(o, W11.end) == 0
    assert ref.carrier_scorecard(o, W11).empty
    assert is_nan(ref.complaint_rate(empty["tickets"], o, W11))
    frame = kpis.weekly_kpis(empty, [W10, W11], SLA)
    assert series_of(frame, "orders_created") == [0.0, 0.0]
    assert all(is_nan(v) for v in series_of(frame, "on_time_ship_rate"))


def test_absent_exception_column_means_no_abnormal_orders(orders):
    without = orders.drop(columns=["exception_code"])
    assert ref.abnormal_orders(without, W11).empty
    assert ref.abnormal_rate(without, W11) == 0.0


# --- cross-check with SQLite -----------------------------------------------------------

STAGE_SQL = {
    "created_paid": ("created_at", "paid_at"),
    "paid_shipped": ("paid_at", "shipped_at"),
    "shipped_delivered": ("shipped_at", "delivered_at"),
    "created_delivered": ("created_at", "delivered_at"),
}


@pytest.fixture
def sqlite_orders():
    """The same fixture rows as local-time text in an in-memory SQLite table."""
    raw = pd.read_csv(FIXTURE, dtype=str, keep_default_na=False, na_values=[""])
    con = sqlite3.connect(":memory:")
    raw.to_sql("orders", con, index=False)
    yield con
    con.close()


def bounds(window: Window) -> dict[str, str]:
    fmt = "%Y-%m-%d %H:%M:%S"
    return {"start": window.start.strftime(fmt), "end": window.end.strftime(fmt)}


def sql_on_time_rate(con: sqlite3.Connection, window: Window, sla_hours: float) -> float | None:
    query = f"""
        WITH shipped AS (
            SELECT shipped_at,
                   COALESCE(promised_ship_by, datetime(paid_at, '+{sla_hours:g} hours')) AS due
            FROM orders
            WHERE julianday(shipped_at) >= julianday(:start)
              AND julianday(shipped_at) < julianday(:end)
        )
        SELECT AVG(julianday(shipped_at) <= julianday(due)) FROM shipped WHERE due IS NOT NULL
    """
    return con.execute(query, bounds(window)).fetchone()[0]


def sql_stage_median(con: sqlite3.Connection, window: Window, start: str, end: str):
    query = f"""
        WITH d AS (
            SELECT (julianday({end}) - julianday({start})) * 24.0 AS h FROM orders
            WHERE {start} IS NOT NULL
              AND julianday({end}) >= julianday(:start) AND julianday({end}) < julianday(:end)
        ),
        r AS (SELECT h, ROW_NUMBER() OVER (ORDER BY h) AS rn, COUNT(*) OVER () AS n FROM d)
        SELECT AVG(h) FROM r WHERE rn IN ((n + 1) / 2, (n + 2) / 2)
    """
    return con.execute(query, bounds(window)).fetchone()[0]


@pytest.mark.parametrize("week", [W10, W11, W12, W13], ids=["W10", "W11", "W12", "W13"])
def test_on_time_and_stage_medians_agree_with_sqlite(orders, sqlite_orders, week):
    for sla in (SLA, 24.0):
        expected = sql_on_time_rate(sqlite_orders, week, sla)
        got = ref.on_time_ship_rate(orders, week, sla)
        if expected is None:
            assert is_nan(got)
        else:
            assert got == pytest.approx(expected)
    medians = ref.stage_durations(orders, week)["median_h"]
    for stage, (start, end) in STAGE_SQL.items():
        expected = sql_stage_median(sqlite_orders, week, start, end)
        if expected is None:
            assert np.isnan(medians[stage]), stage
        else:
            # julianday is a float of days: agree to well under a second
            assert medians[stage] == pytest.approx(expected, abs=1e-4), stage


# --- delivery: a separate hand-made frame, since the fixture has few delivery promises ---


def _deliveries() -> pd.DataFrame:
    rows = [
        # id, carrier, region, delivered_at, promised_delivery_by
        ("A", "X", "r1", "2026-03-10 10:00", "2026-03-10 12:00"),  # on time
        ("B", "X", "r1", "2026-03-11 10:00", "2026-03-10 12:00"),  # late
        ("C", "X", "r2", "2026-03-12 12:00", "2026-03-12 12:00"),  # exactly at promise: on time
        ("D", "Y", "r1", "2026-03-13 12:00", None),  # no promise: not judged
        ("E", "Y", "r1", "2026-03-08 12:00", "2026-03-07 12:00"),  # delivered in W10
        ("F", "Y", "r2", "2026-03-16 00:00", "2026-03-15 00:00"),  # Monday 00:00: W12
        ("G", "Y", "r1", "2026-03-14 09:00", "2026-03-14 08:00"),  # late
    ]
    frame = pd.DataFrame(
        rows, columns=["order_id", "carrier", "region", "delivered_at", "promised_delivery_by"]
    )
    for col in ("delivered_at", "promised_delivery_by"):
        frame[col] = pd.to_datetime(frame[col]).dt.tz_localize(TZ)
    frame["created_at"] = frame["delivered_at"] - pd.Timedelta(days=3)
    frame["order_id"] = frame["order_id"].astype("str")
    for col in ("carrier", "region"):
        frame[col] = frame[col].astype("category")
    return frame


def test_on_time_delivery_rate_by_hand():
    # Judged in W11: A, B, C, G (D has no promise, E is W10, F is W12); late: B, G -> 2/4.
    assert ref.on_time_delivery_rate(_deliveries(), W11) == pytest.approx(0.5)
    # W10: E only, late -> 0/1.
    assert ref.on_time_delivery_rate(_deliveries(), W10) == pytest.approx(0.0)


def test_late_delivery_by_region_and_carrier_by_hand():
    table = ref.late_delivery_by(_deliveries(), W11, "region", "carrier")
    # (r1, X): A on time, B late -> 1/2; (r1, Y): G late -> 1/1; (r2, X): C on time -> 0/1;
    # (r2, Y): F falls in W12 -> no cell.
    assert table.to_dict("index") == {
        ("r1", "X"): {"delivered": 2, "late": 1, "late_rate": 0.5},
        ("r1", "Y"): {"delivered": 1, "late": 1, "late_rate": 1.0},
        ("r2", "X"): {"delivered": 1, "late": 0, "late_rate": 0.0},
    }


# --- each week its own lookback; milestones out of order; availability --------------------------


def _open_orders() -> pd.DataFrame:
    """Paid, never shipped orders created every 10 days over 200 days, plus one shipped."""
    created = pd.date_range("2026-05-04", periods=21, freq="10D", tz=TZ)
    frame = pd.DataFrame(
        {
            "order_id": [f"B{i}" for i in range(len(created))],
            "order_type": "normal",
            "created_at": created,
            "paid_at": created + pd.Timedelta(hours=1),
            "shipped_at": pd.Series(
                pd.NaT, index=range(len(created)), dtype=f"datetime64[us, {TZ}]"
            ),
            "cancelled_at": pd.Series(
                pd.NaT, index=range(len(created)), dtype=f"datetime64[us, {TZ}]"
            ),
        }
    )
    return frame


def test_backlog_series_uses_each_weeks_own_lookback():
    orders = _open_orders()
    windows = [IsoWeek(2026, w).window(TZ) for w in range(40, 48)]
    got = kpis.weekly_kpis({"orders": orders}, windows, 48.0, ["backlog"], lookback_days=30)
    got = got[(got["dimension"] == "all") & (got["order_type"] == "all")]["value"].tolist()
    # By hand: at each week's end, open orders created no earlier than 30 days before the
    # week's Monday (and paid before the end).
    expected = []
    for w in windows:
        since = w.start - pd.Timedelta(days=30)
        mine = orders[(orders["created_at"] >= since)]
        expected.append(sum(1 for paid in mine["paid_at"] if paid < w.end))
    assert got == expected
    # Without the lookback every open order counts, whatever its age: a rising series.
    plain = kpis.weekly_kpis({"orders": orders}, windows, 48.0, ["backlog"])
    overall = (plain["dimension"] == "all") & (plain["order_type"] == "all")
    assert plain[overall]["value"].tolist() == [
        float(ref.backlog_at(orders, w.end)) for w in windows
    ]


def test_milestone_out_of_order_leaves_only_that_duration():
    window = IsoWeek(2026, 47).window(TZ)
    t0 = window.start + pd.Timedelta(days=1)
    orders = pd.DataFrame(
        {
            "order_id": ["A", "B", "C"],
            "order_type": "normal",
            "created_at": [t0, t0, t0],
            "paid_at": [t0 + pd.Timedelta(hours=2)] * 3,
            # B was handed to the carrier 1 h before its payment was approved.
            "shipped_at": [
                t0 + pd.Timedelta(hours=12),
                t0 + pd.Timedelta(hours=1),
                t0 + pd.Timedelta(hours=26),
            ],
            "delivered_at": [t0 + pd.Timedelta(hours=48)] * 3,
        }
    )
    assert ref.orders_created(orders, window) == 3
    # Paid -> shipped: A 10 h, C 24 h; B's negative duration is left out.
    assert ref.handling_median_h(orders, window) == 17.0
    # B's other durations are fine and count: created -> delivered 48 h for all three.
    assert ref.stage_hours(orders, window, "created_delivered").tolist() == [48.0] * 3
    series = kpis.weekly_kpis(
        {"orders": orders}, [window], 48.0, ["handling_median_h", "orders_created"]
    )
    overall = (series["dimension"] == "all") & (series["order_type"] == "all")
    values = series[overall].set_index("kpi")["value"]
    assert values["handling_median_h"] == 17.0 and values["orders_created"] == 3


def test_missing_columns_says_what_a_kpi_needs():
    def has(table, column):
        return table == "orders" and column in {"created_at", "paid_at", "shipped_at"}

    tables = {"orders"}.__contains__
    assert kpis.missing_columns("gmv", tables, has) == ["amount"]
    assert kpis.missing_columns("orders_created", tables, has) == []
    assert kpis.missing_columns("on_time_delivery_rate", tables, has) == [
        "delivered_at",
        "promised_delivery_by",
    ]
    assert kpis.missing_columns("complaint_rate", tables, has) == ["tickets"]
    assert kpis.missing_columns("on_time_ship_rate", tables, has) == []

    def no_paid(table, column):
        return column in {"created_at", "shipped_at"}

    assert kpis.missing_columns("on_time_ship_rate", tables, no_paid) == [
        "paid_at|promised_ship_by"
    ]


def test_missing_columns_names_a_column_of_another_table_by_its_table():
    """A KPI of tickets, after-sales or settlements needs that table's optional columns too;
    a column of a table the source lacks is not listed again (the table is)."""
    provided = {
        "orders": {"created_at", "delivered_at", "amount"},
        "tickets": {"ticket_id", "opened_at", "resolved_at"},
        "after_sales": {"case_id", "requested_at"},
    }

    def has(table, column):
        return column in provided.get(table, set())

    tables = provided.__contains__
    assert kpis.missing_columns("csat", tables, has) == ["tickets.csat"]
    assert kpis.missing_columns("resolution_median_h", tables, has) == []
    assert kpis.missing_columns("first_response_p90_h", tables, has) == [
        "tickets.first_response_at"
    ]
    assert kpis.missing_columns("refund_rate", tables, has) == ["after_sales.refund_amount"]
    assert kpis.missing_columns("net_revenue", tables, has) == ["after_sales.refund_amount"]
    assert kpis.missing_columns("case_cycle_p90_d", tables, has) == ["after_sales.closed_at"]
    assert kpis.missing_columns("return_rate", tables, has) == []
    assert kpis.missing_columns("settled_amount", tables, has) == ["settlements"]
    assert kpis.missing_columns("fill_rate", tables, has) == ["order_lines", "shipped_at"]


def test_setting_a_segment_aside_removes_its_orders_and_the_rows_pointing_at_them():
    day = pd.Timestamp("2026-03-03 10:00", tz=TZ)
    orders = pd.DataFrame(
        {
            "order_id": ["a", "b", "c", "d"],
            "order_type": ["normal", "special", "normal", "normal"],
            "created_at": [day] * 4,
            "warehouse": ["W1", "W1", "W2", None],
        }
    )
    tickets = pd.DataFrame(
        {
            "ticket_id": ["t1", "t2", "t3", "t4", "t5"],
            "order_id": ["a", "b", "b", "c", "zz"],  # zz: an order not loaded
            "opened_at": [day] * 5,
            "category": ["inquiry"] * 5,
        }
    )
    tables = {"orders": orders, "tickets": tickets}
    segments = [{"order_type": "special"}, {"warehouse": "W1"}, {"warehouse": kpis.MISSING}]
    without = kpis.weekly_kpis_without(
        tables, [W10], SLA, ["orders_created", "tickets_per_1000"], segments
    )

    def overall(frame, key):
        rows = frame[(frame["kpi"] == key) & (frame["dimension"] == "all")]
        return rows[rows["order_type"] == "all"]["value"].item()

    # without b: orders a, c, d; tickets t1, t4 and zz's (its order is in no segment)
    assert overall(without[0], "orders_created") == 3
    assert overall(without[0], "tickets_per_1000") == pytest.approx(3 / 3 * 1000)
    # without W1 (a, b): orders c, d; tickets t4, t5
    assert overall(without[1], "orders_created") == 2
    assert overall(without[1], "tickets_per_1000") == pytest.approx(2 / 2 * 1000)
    # without the orders that have no warehouse (d): all tickets stay
    assert overall(without[2], "orders_created") == 3
    assert overall(without[2], "tickets_per_1000") == pytest.approx(5 / 3 * 1000)


def test_every_segment_set_aside_equals_the_series_of_the_rows_left(tmp_path, sample):
    """weekly_kpis_without (one query, sums by subtraction, quantiles over the rows left)
    against weekly_kpis on tables from which the segment's orders were removed by hand."""
    from meetinglib.core.params import load_params
    from meetinglib.data.dataset import load_week
    from tests.conftest import SAMPLE_WEEK, write_params

    data = load_week(load_params(write_params(tmp_path, sample.folder)), SAMPLE_WEEK)
    windows = [w.window(data.tz) for w in data.history_weeks]
    segments = [
        {"order_type": "special"},
        {"warehouse": "WH-South"},
        {"carrier": "EastPost", "region": "South"},
        {"carrier": kpis.MISSING},
    ]
    without = kpis.weekly_kpis_without(data.tables, windows, SLA, list(kpis.CATALOGUE), segments)
    orders = data.tables["orders"]
    for segment, got in zip(segments, without, strict=True):
        inside = pd.Series(True, index=orders.index)
        for column, value in segment.items():
            values = orders[column].astype(object)
            inside &= values.isna() if value == kpis.MISSING else values.eq(value).fillna(False)
        assert 0 < inside.sum() < len(orders), segment
        gone = set(orders.loc[inside, "order_id"])
        left = {name: frame[~frame["order_id"].isin(gone)] for name, frame in data.tables.items()}
        want = kpis.weekly_kpis(left, windows, SLA)
        keys = ["kpi", "dimension", "segment", "order_type", "week"]
        merged = want.merge(got, on=keys, how="outer", suffixes=("_want", "_got"))
        assert len(merged) == len(want) == len(got), segment
        np.testing.assert_array_equal(merged["n_want"], merged["n_got"])
        np.testing.assert_allclose(merged["value_got"], merged["value_want"], rtol=1e-9)


def _rolled_by_frames(fine, dims, values, scenarios):
    """The roll-up of fine sums as it was first written, a grouping of frames per scenario
    and dim: the second method for ``kpis._rolled``."""

    def roll_up(rows, dim):
        if dim == kpis.ALL:
            summed = rows.groupby("week", sort=False)[list(values)].sum(min_count=1)
            return summed.reset_index().assign(dimension=kpis.ALL, segment=kpis.ALL)
        columns = ["seg_" + c for c in dim.split("/")]
        summed = (
            rows.dropna(subset=columns)
            .groupby([*columns, "week"], sort=False, observed=True)[list(values)]
            .sum(min_count=1)
            .reset_index()
        )
        segment = summed[columns[0]].astype(str)
        for column in columns[1:]:
            segment = segment + "/" + summed[column].astype(str)
        return summed.drop(columns=columns).assign(dimension=dim, segment=segment.to_numpy())

    totals = {dim: roll_up(fine, dim) for dim in dims}
    for scenario, segment in enumerate(scenarios):
        inside = fine[kpis._inside(fine, segment)]
        for dim in dims:
            total = totals[dim].set_index(["segment", "week"])[list(values)]
            if inside.empty:
                yield scenario, dim, total
                continue
            mine = roll_up(inside, dim).set_index(["segment", "week"])[list(values)]
            yield scenario, dim, total - mine.reindex(total.index, fill_value=0.0)


def test_segments_set_aside_from_fine_sums_equal_the_frames_grouping(tmp_path, sample):
    """kpis._rolled (array sums per group number) against the grouping of frames it
    replaced, on the sample's own fine sums and on a frame with empty values and NaN sums."""
    from meetinglib.core.params import load_params
    from meetinglib.data import engine
    from meetinglib.data.dataset import load_week
    from tests.conftest import SAMPLE_WEEK, write_params

    data = load_week(load_params(write_params(tmp_path, sample.folder)), SAMPLE_WEEK)
    windows = [w.window(data.tz) for w in data.history_weeks]
    store: dict = {}
    tables = kpis.kpi_tables(data.engine_tables())
    kpis.weekly_kpis_on(engine.shared(), tables, windows, SLA, store=store)
    scenarios = [
        {"order_type": "special"},
        {"warehouse": "WH-South"},
        {"carrier": "EastPost", "region": "South"},
        {"carrier": kpis.MISSING},
        {"warehouse": "no such warehouse"},
    ]
    dims = ["all", "order_type", "warehouse", "carrier", "carrier/region"]
    synthetic = pd.DataFrame(
        {
            "week": [0, 0, 1, 1, 1, 2],
            "seg_order_type": ["normal", "special", "normal", "special", "normal", "normal"],
            "seg_warehouse": ["WH-South", None, "WH-South", "WH-North", "WH-North", None],
            "seg_carrier": ["EastPost", "EastPost", None, "EastPost", "SwiftExpress", None],
            "seg_region": ["South", "South", "North", None, "South", "South"],
            "seg_channel": ["app"] * 6,
            "seg_loaded": [True, True, True, True, False, True],
            "n": [3.0, 1.0, 2.0, 5.0, 1.0, 4.0],
            "s1": [np.nan, 2.5, 1.25, np.nan, 7.0, 0.5],
            "s2": [np.nan, 6.25, 1.5625, np.nan, 49.0, 0.25],
        }
    )
    frames = [(synthetic, ["n", "s1", "s2"])]
    for key, fine in store.items():
        if key[0] == "sums":
            frames.append((fine, [c for c in fine.columns if c[0] in "nab" and c[1:].isdigit()]))
        elif key[0] == "levels":
            frames.append((fine[fine["part"] == "enter"], ["n", "s1", "s2"]))
    compared = 0
    for fine, values in frames:
        new = kpis._rolled(fine, dims, values, scenarios)
        old = _rolled_by_frames(fine, dims, values, scenarios)
        for (s_new, d_new, got), (s_old, d_old, want) in zip(new, old, strict=True):
            assert (s_new, d_new) == (s_old, d_old)
            got = got.set_index(["segment", "week"])[list(values)]
            assert got.index.equals(want.index)
            np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-12, atol=1e-9)
            compared += len(got)
    assert compared > 1000
    # without scenarios: the totals, equal to the frames' grouping too
    (_, _, total), *_ = kpis._rolled(synthetic, ["carrier/region"], ["s1"], [])
    assert dict(zip(total["segment"], total["s1"], strict=True)) == {
        "EastPost/South": 2.5,
        "SwiftExpress/South": 7.0,
    }


QUANTILE_KPIS = [k for k, spec in kpis.CATALOGUE.items() if spec.kind in ("median", "p90")]


def _split_per_week(monkeypatch) -> list[list[tuple[int, int]]]:
    """Make every quantile pass run week by week (as with little engine memory); the runs
    each pass took are recorded in the list returned."""
    runs: list[list[tuple[int, int]]] = []
    chunks = kpis._week_chunks

    def recorded(*args):
        found = chunks(*args)
        runs.append(found)
        return found

    monkeypatch.setattr(kpis, "_QUANTILE_MEMORY_SHARE", 1e-12)
    monkeypatch.setattr(kpis, "_week_chunks", recorded)
    return runs


def test_quantile_passes_run_week_by_week_give_the_hand_computed_series(tables, monkeypatch):
    whole = kpis.weekly_kpis(tables, WEEKS, SLA, QUANTILE_KPIS)
    runs = _split_per_week(monkeypatch)
    split = kpis.weekly_kpis(tables, WEEKS, SLA, QUANTILE_KPIS)
    assert runs and all(r == [(i, i + 1) for i in range(len(WEEKS))] for r in runs)
    for key in QUANTILE_KPIS:
        assert series_of(split, key) == pytest.approx(BY_HAND[key], nan_ok=True), key
    pd.testing.assert_frame_equal(split, whole)


def test_quantile_passes_run_week_by_week_set_segments_aside_the_same(tables, monkeypatch):
    segments = [{"warehouse": "WH1"}, {"order_type": "special"}]
    whole = kpis.weekly_kpis_without(tables, WEEKS, SLA, QUANTILE_KPIS, segments)
    runs = _split_per_week(monkeypatch)
    split = kpis.weekly_kpis_without(tables, WEEKS, SLA, QUANTILE_KPIS, segments)
    assert runs and all(len(r) == len(WEEKS) for r in runs)
    for left, right in zip(split, whole, strict=True):
        pd.testing.assert_frame_equal(left, right)
    # WH1 set aside: the median of the other orders' handling times, the pandas way
    orders = tables["orders"]
    left = orders[orders["warehouse"].astype(object) != "WH1"]
    expected = ref.stage_hours(left, W11, "paid_shipped").median()
    assert series_of(split[0], "handling_median_h")[1] == pytest.approx(expected)


def test_cell_shares_size_the_quantile_queries_not_their_results(tables, monkeypatch):
    """With the share of the orders in each cell known, a quantile pass over a few cells
    is sized by the rows those cells hold; the series are the same either way."""
    segments = [{"warehouse": "WH1"}, {"order_type": "special"}]
    cells = [{"handling_median_h": {("warehouse", "WH2")}}] * 2
    bounds = [w.start for w in WEEKS] + [WEEKS[-1].end]
    frames = kpis.Frames(kpis._engine_frames(tables), bounds, SLA, scenarios=segments)
    frames.cells = [dict(c) for c in cells]
    passes, _, _ = kpis._observe(frames, ["handling_median_h"], None)
    (members,) = [[m for m in ms if m.q is not None] for ms in passes.values()]

    def row_bytes(share: float | None) -> int:
        frames.shares = None if share is None else {("warehouse", "WH2"): share}
        return kpis._quantile_pass(frames, members).row_bytes

    # two aggregates (one per segment set aside) of 16 bytes a row; a quarter of the rows
    assert row_bytes(None) - row_bytes(0.0) == 32
    assert row_bytes(0.25) - row_bytes(0.0) == 8
    # the runs of weeks are sized on the smaller rows (_week_chunks)
    sized: list[int] = []
    chunks = kpis._week_chunks
    monkeypatch.setattr(
        kpis, "_week_chunks", lambda con, f, t, rb: (sized.append(rb), chunks(con, f, t, rb))[1]
    )
    plain = kpis.weekly_kpis_without_on(
        engine.shared(), kpis._engine_frames(tables), WEEKS, SLA, ["handling_median_h"],
        segments, cells=cells,
    )  # fmt: skip
    shared = kpis.weekly_kpis_without_on(
        engine.shared(), kpis._engine_frames(tables), WEEKS, SLA, ["handling_median_h"],
        segments, cells=cells, shares={("warehouse", "WH2"): 0.0},
    )  # fmt: skip
    assert sized == [row_bytes(None), row_bytes(0.0)]
    for left, right in zip(plain, shared, strict=True):
        pd.testing.assert_frame_equal(left, right)


def _refuse_quantile_runs(monkeypatch, longest: int) -> list[int]:
    """Make the engine refuse, as out of memory, every quantile pass over more than
    ``longest`` weeks; the lengths refused are recorded in the list returned."""
    spans: dict[int, tuple[object, int]] = {}
    build = kpis._quantile_pass

    def recorded(f, members, weeks=None, rows=None):
        found = build(f, members, weeks, rows)
        lo, hi = weeks or (0, f.weeks)
        spans[id(found.table)] = (found.table, hi - lo)  # the table kept: its id stays its own
        return found

    refused: list[int] = []
    execute = duckdb_backend.Backend.execute

    def limited(self, expr, *args, **kwargs):
        _table, span = spans.get(id(expr), (None, 0))
        if span > longest:
            refused.append(span)
            raise duckdb.OutOfMemoryException("Out of Memory Error: could not allocate")
        return execute(self, expr, *args, **kwargs)

    monkeypatch.setattr(kpis, "_quantile_pass", recorded)
    monkeypatch.setattr(duckdb_backend.Backend, "execute", limited)
    return refused


def test_a_quantile_run_refused_for_memory_is_split_until_it_fits(tables, monkeypatch):
    whole = kpis.weekly_kpis(tables, WEEKS, SLA, QUANTILE_KPIS)
    refused = _refuse_quantile_runs(monkeypatch, longest=1)
    split = kpis.weekly_kpis(tables, WEEKS, SLA, QUANTILE_KPIS)
    # every pass first tried over its 4 weeks, then over 2 and 2, then week by week
    assert refused and set(refused) == {4, 2}
    for key in QUANTILE_KPIS:
        assert series_of(split, key) == pytest.approx(BY_HAND[key], nan_ok=True), key
    pd.testing.assert_frame_equal(split, whole)


def test_a_single_week_refused_for_memory_raises_the_engines_error(tables, monkeypatch):
    _refuse_quantile_runs(monkeypatch, longest=0)
    with pytest.raises(duckdb.OutOfMemoryException, match="Out of Memory"):
        kpis.weekly_kpis(tables, WEEKS, SLA, ["handling_median_h"])


def _engine_queries(monkeypatch) -> list[str]:
    """Record the queries the DuckDB backend runs (by the method that ran each)."""
    ran: list[str] = []
    for name in ("execute", "to_pyarrow"):
        method = getattr(duckdb_backend.Backend, name)

        def recorded(self, *args, _method=method, _name=name, **kwargs):
            ran.append(_name)
            return _method(self, *args, **kwargs)

        monkeypatch.setattr(duckdb_backend.Backend, name, recorded)
    return ran


def test_a_pass_with_sums_and_quantiles_reads_its_rows_in_one_query(tables, monkeypatch):
    """A pass whose KPIs are sums and quantiles (shipped orders and their handling times;
    settlements, joined to their orders, and the settlement lag) gives both from one query,
    the series equal to those of the two queries run apart."""
    ran = _engine_queries(monkeypatch)
    together = kpis.weekly_kpis(tables, WEEKS, SLA)
    queries_together = len(ran)
    ran.clear()
    monkeypatch.setattr(kpis, "_sums_and_quantiles", lambda *args: None)
    apart = kpis.weekly_kpis(tables, WEEKS, SLA)
    pd.testing.assert_frame_equal(together, apart)
    # shipped, delivered, tickets resolved, settlements: each one query instead of two
    assert queries_together == len(ran) - 4
    for key in ("settled_amount", "settlement_lag_median_d", "handling_p90_h"):
        assert series_of(together, key) == pytest.approx(BY_HAND[key], nan_ok=True), key


def test_sums_and_quantiles_refused_together_for_memory_run_apart(tables, monkeypatch):
    """A pass whose one query the engine refuses for its memory limit runs as two queries,
    with the same series; another error of the engine is not hidden."""
    whole = kpis.weekly_kpis(tables, WEEKS, SLA)
    refused: list[int] = []

    def out_of_memory(con, queries):
        refused.append(len(queries))
        raise duckdb.OutOfMemoryException("Out of Memory Error: could not allocate")

    monkeypatch.setattr(engine, "execute_together", out_of_memory)
    pd.testing.assert_frame_equal(kpis.weekly_kpis(tables, WEEKS, SLA), whole)
    assert refused == [2, 2, 2, 2]

    def broken(con, queries):
        raise duckdb.BinderException("Binder Error: no such column")

    monkeypatch.setattr(engine, "execute_together", broken)
    with pytest.raises(duckdb.BinderException, match="no such column"):
        kpis.weekly_kpis(tables, WEEKS, SLA)


def test_quantiles_of_every_row_read_the_rows_without_joining_orders(tables):
    """A quantile pass reads tickets and cases without segments as they are (the join to
    orders only adds columns), and delivered orders without their first complaint, case
    and short lines (read by the perfect order rate only); one needing a column the join
    adds still joins. The values themselves are the BY_HAND series' (tests above)."""
    frames = kpis.Frames(
        kpis._engine_frames(tables), [w.start for w in WEEKS] + [WEEKS[-1].end], SLA
    )
    passes, _, _ = kpis._observe(frames, QUANTILE_KPIS, None)
    joins = {}
    for members in passes.values():
        quantiles = [m for m in members if m.q is not None]
        if quantiles:
            sql = ibis.to_sql(kpis._quantile_pass(frames, quantiles).table, dialect="duckdb")
            joins[quantiles[0].key] = "JOIN" in sql.upper()
    assert joins["cycle_time_p90_h"] is False  # orders, not orders with their complaints
    assert joins["first_response_median_h"] is False
    assert joins["resolution_median_h"] is False
    assert joins["case_cycle_median_d"] is False
    assert joins["settlement_lag_median_d"] is True  # the lag starts at the order's delivery


def test_segment_codes_read_back_as_each_orders_own_values(tables):
    """The code the engine computes per order (the grouping key of the sums passes over
    order lines and settlements) decodes to that order's segment values, empty ones as
    missing; a row whose order is not loaded (NULL code) to no segment."""
    con = engine.shared()
    raw = tables["orders"].copy()
    raw.loc[raw["order_id"] == "O02", "region"] = None  # an empty value
    orders = kpis._engine_frames({"orders": raw})["orders"]
    codes = kpis.SegmentCodes.of(con, orders)
    coded = con.execute(orders.select("order_id", seg_code=codes.code(orders)))
    missing = pd.DataFrame({"order_id": ["none"], "seg_code": [None]})
    decoded = codes.decode(pd.concat([coded, missing], ignore_index=True)).set_index("order_id")
    raw = raw.set_index("order_id")

    def values(column: pd.Series) -> list:
        return [None if pd.isna(v) else str(v) for v in column]

    for column in kpis.SEGMENT_COLUMNS:
        assert values(decoded.loc[raw.index, f"seg_{column}"]) == values(raw[column]), column
        assert pd.isna(decoded.loc["none", f"seg_{column}"])
    assert values(decoded.loc[["O01", "O02"], "seg_region"]) == [raw.loc["O01", "region"], None]
    assert decoded["seg_loaded"].tolist() == [True] * len(raw) + [False]
