"""KPIs over a hand-made fixture of 23 orders in 2026-W10 and 2026-W11 (Asia/Shanghai).

Every expected value below is worked out by hand from tests/data/kpis/orders.csv; the
comment next to it shows the arithmetic. W10 = Mon 2026-03-02 .. Mon 03-09 00:00,
W11 = Mon 03-09 .. Mon 03-16 00:00, W12 follows and only holds O19's shipment.
Ship SLA is 48 h unless a test says otherwise.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from meetinglib import kpis
from meetinglib.i18n import LABELS
from meetinglib.weeks import IsoWeek, Window

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
    assert kpis.orders_created(orders, W10) == 9  # O01..O09
    assert kpis.orders_created(orders, W11) == 14  # O10..O23
    assert kpis.orders_created(orders, W12) == 0


def test_order_created_at_monday_midnight_belongs_to_the_new_week(orders):
    o10 = orders[orders["order_id"] == "O10"]  # created 2026-03-09 00:00:00
    assert kpis.orders_created(o10, W10) == 0
    assert kpis.orders_created(o10, W11) == 1


def test_window_in_another_timezone_counts_the_same_instants(orders):
    utc = Window(W11.start.tz_convert("UTC"), W11.end.tz_convert("UTC"))
    assert kpis.orders_created(orders, utc) == 14


def test_order_volume_by_day_lists_every_day_and_every_type(orders):
    table = kpis.order_volume_by_day(orders, W11)
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
    table = kpis.order_volume_by_day(no_after_sales, W10)
    assert list(table.columns) == ["normal", "special", "after_sales", "total"]
    # W10 without O04, O09 (Wed 03-04): Mon O01,O02 | Tue O03 s | Thu O05 | Fri O06 | Sat O07 s |
    # Sun O08 (23:30)
    assert table["normal"].tolist() == [2, 0, 0, 1, 1, 0, 1]
    assert table["special"].tolist() == [0, 1, 0, 0, 0, 1, 0]
    assert table["after_sales"].tolist() == [0] * 7


def test_order_volume_by_day_of_an_empty_week_is_seven_zero_rows(orders):
    table = kpis.order_volume_by_day(orders, W12)
    assert table.shape == (7, 4)
    assert int(table.to_numpy().sum()) == 0


def test_order_volume_by_lists_zero_categories_and_missing_values(orders):
    channel = kpis.order_volume_by(orders, W11, "channel")
    # app: O10,O12,O14,O15,O17,O19,O20,O23; web: O11,O13,O16,O18,O21,O22; mini_program only in W10
    assert channel.to_dict() == {"app": 8, "mini_program": 0, "web": 6}
    assert channel.index.name == "channel"

    by_type = kpis.order_volume_by(orders, W11, "order_type")
    assert list(by_type.items()) == [("normal", 11), ("special", 3), ("after_sales", 0)]

    region = kpis.order_volume_by(orders, W11, "region")
    # east: O10,O11,O13,O16,O17,O19,O21; south: O12,O14,O15,O18,O20,O23; O22 has no region
    assert region.to_dict() == {"east": 7, "south": 6, kpis.MISSING: 1}
    # W10: every order has a region (O03 south), so no "missing" row
    assert kpis.order_volume_by(orders, W10, "region").to_dict() == {"east": 8, "south": 1}


def test_order_volume_by_an_unknown_column_names_it(orders):
    with pytest.raises(KeyError, match="'chanel' is neither in the orders frame"):
        kpis.order_volume_by(orders, W11, "chanel")


def test_gmv_excludes_cancelled_orders(orders):
    # W11 kept: O10 90 + O11 60 + O12 400 + O14 110 + O15 250 + O16 40 + O17 75 + O19 130
    #   + O20 600 + O22 85 + O23 65 = 1905; cancelled O13 70, O18 95 (on 03-16), O21 55 left out
    assert kpis.gmv(orders, W11) == pytest.approx(1905.0)
    # W10: 100 + 200 + 300 + 50 + 120 + 500 + 80 = 1350; cancelled O05 150, O09 30 left out
    assert kpis.gmv(orders, W10) == pytest.approx(1350.0)
    assert kpis.gmv(orders, W12) == 0.0


def test_cancellation_rate_counts_cancellations_at_any_time(orders):
    # W11: O13, O21, and O18 cancelled at 03-16 00:00 (after the week) of 14 created
    assert kpis.cancellation_rate(orders, W11) == pytest.approx(3 / 14)
    assert kpis.cancellation_rate(orders, W10) == pytest.approx(2 / 9)  # O05, O09 of 9
    assert is_nan(kpis.cancellation_rate(orders, W12))  # nothing created


# --- stage durations -------------------------------------------------------------------


def test_stage_durations_of_the_week(orders):
    table = kpis.stage_durations(orders, W11)
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
    table = kpis.stage_durations(orders, W11, by="order_type")
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
    table = kpis.stage_durations(orders, W12)
    # only O19 (paid 03-15 23:30, shipped 03-16 00:00 exactly) ends a stage in W12: 0.5 h
    assert table["count"].tolist() == [0, 1, 0, 0]
    assert table.loc["paid_shipped"].tolist() == pytest.approx([1, 0.5, 0.5, 0.5])
    assert table.loc["shipped_delivered", ["median_h", "p90_h", "mean_h"]].isna().all()
    assert is_nan(kpis.cycle_time_p90_h(orders, W12))


def test_stage_durations_by_warehouse_reports_missing_values_only_when_present(orders):
    table = kpis.stage_durations(orders, W11, by="warehouse")
    assert list(table.index.get_level_values(0).unique()) == ["WH1", "WH2"]
    # WH2 shipped in W11: O07 46, O12 48, O20 20 -> 3 orders
    assert table.loc[("WH2", "paid_shipped"), "count"] == 3


def test_cycle_time_and_handling_scalars(orders):
    assert kpis.cycle_time_p90_h(orders, W11) == pytest.approx(114.8)  # see stage test
    # W10 created_delivered: O04 72, O01 73, O03 73, O02 121 -> 73 + .7*(121-73) = 106.6
    assert kpis.cycle_time_p90_h(orders, W10) == pytest.approx(106.6)
    assert kpis.handling_median_h(orders, W11) == pytest.approx(32.0)
    # W10 paid_shipped: O03 24, O01 24.5, O04 49, O02 72 -> (24.5+49)/2 = 36.75
    assert kpis.handling_median_h(orders, W10) == pytest.approx(36.75)


def test_stage_hours_rejects_an_unknown_stage(orders):
    with pytest.raises(KeyError, match="unknown stage 'paid_delivered'"):
        kpis.stage_hours(orders, W11, "paid_delivered")


# --- on-time shipping and backlog ------------------------------------------------------


def test_ship_deadline_falls_back_to_payment_plus_sla(orders):
    deadline = kpis.ship_deadline(orders, SLA).set_axis(orders["order_id"])
    assert deadline["O01"] == ts("2026-03-04 09:30")  # promised
    assert deadline["O02"] == ts("2026-03-04 15:00")  # paid 03-02 15:00 + 48 h
    assert deadline["O07"] == ts("2026-03-09 12:00")  # paid 03-07 12:00 + 48 h
    assert pd.isna(deadline["O16"])  # neither promised nor paid
    assert pd.isna(deadline["O23"])  # shipped unpaid, no promise
    shorter = kpis.ship_deadline(orders, 24).set_axis(orders["order_id"])
    assert shorter["O07"] == ts("2026-03-08 12:00")
    assert shorter["O01"] == ts("2026-03-04 09:30")  # a promise does not depend on the SLA


def test_on_time_ship_rate_counts_orders_by_their_shipment(orders):
    # shipped in W11 with a deadline: O06 (created W10, promised 03-08 10:00, shipped 03-09 12:00)
    # late; O07 (created W10, 03-09 12:00 by SLA, shipped 10:00) on time; O08 on time;
    # O10 late (promised 03-10 00:30, shipped 08:00); O11 on time; O12 shipped exactly at its
    # SLA deadline 03-11 12:00 -> on time; O20, O22 on time. O23 has no deadline: left out.
    # -> 6 on time of 8
    assert kpis.on_time_ship_rate(orders, W11, SLA) == pytest.approx(6 / 8)
    # W10: O01 on time, O02 late (SLA 03-04 15:00), O03 on time, O04 late (SLA 03-06 08:00,
    # shipped 09:00) -> 2/4
    assert kpis.on_time_ship_rate(orders, W10, SLA) == pytest.approx(2 / 4)
    assert kpis.on_time_ship_rate(orders, W12, SLA) == pytest.approx(1.0)  # O19, by 03-17 23:30
    assert is_nan(kpis.on_time_ship_rate(orders, W13, SLA))  # nothing shipped


def test_on_time_ship_rate_with_a_shorter_sla_changes_only_unpromised_orders(orders):
    # SLA 24 h: O07 due 03-08 12:00 late, O08 due 03-10 00:30 late, O12 due 03-10 12:00 late,
    # O22 due 03-16 10:00 on time; promised ones unchanged (O06, O10 late; O11, O20 on time)
    # -> on time O11, O20, O22 = 3 of 8
    assert kpis.on_time_ship_rate(orders, W11, 24) == pytest.approx(3 / 8)


def test_on_time_ship_rate_without_promise_column_uses_sla_only(orders):
    without = orders.drop(columns=["promised_ship_by"])
    # W11 all by paid + 48 h: only O06 late (due 03-08 10:00); O10 now due 03-11 00:30 -> 7/8
    assert kpis.on_time_ship_rate(without, W11, SLA) == pytest.approx(7 / 8)


def test_backlog_at_week_end(orders):
    # at 03-16 00:00: O14, O15, O17 paid and open; O18 cancelled exactly at 03-16 00:00 and O19
    # shipped exactly then still count (a milestone at `when` has not happened yet).
    # Cancelled before: O05, O13, O21 excluded; O16, O23 never paid.
    assert kpis.backlog_at(orders, W11.end) == 5
    # overdue: O14 (promised 03-12 15:00), O15 (paid 03-11 10:00 + 48 h); O17, O18, O19 not yet
    assert kpis.overdue_backlog_at(orders, W11.end, SLA) == 2
    # at 03-09 00:00: O06 (shipped 03-09 12:00), O07 (shipped 10:00); O08 paid only at 00:30
    assert kpis.backlog_at(orders, W10.end) == 2
    assert kpis.overdue_backlog_at(orders, W10.end, SLA) == 1  # O06 promised 03-08 10:00


def test_backlog_drops_an_order_once_cancelled(orders):
    # O13 paid 03-10 10:30, cancelled 12:00; O12 paid 03-09 12:00, shipped 03-11
    assert kpis.backlog_at(orders, ts("2026-03-10 11:00")) == 2  # O12, O13
    assert kpis.backlog_at(orders, ts("2026-03-10 12:00")) == 2  # cancelled at `when`: after
    assert kpis.backlog_at(orders, ts("2026-03-10 13:00")) == 1  # O12


def test_backlog_needs_a_timezone(orders):
    with pytest.raises(TypeError, match="has no timezone; localize it"):
        kpis.backlog_at(orders, pd.Timestamp("2026-03-16"))


def test_backlog_by_dimension(orders):
    by_wh = kpis.backlog_by(orders, W11.end, SLA, "warehouse")
    # WH1: O14 (overdue), O18, O19; WH2: O15 (overdue), O17
    assert by_wh.to_dict("index") == {
        "WH1": {"backlog": 3, "overdue": 1},
        "WH2": {"backlog": 2, "overdue": 1},
    }
    by_type = kpis.backlog_by(orders, W11.end, SLA, "order_type")
    assert by_type.to_dict("index") == {
        "normal": {"backlog": 4, "overdue": 1},  # O14*, O17, O18, O19
        "special": {"backlog": 1, "overdue": 1},  # O15*
        "after_sales": {"backlog": 0, "overdue": 0},
    }


# --- abnormal orders -------------------------------------------------------------------


def test_abnormal_orders_pareto(orders):
    pareto = kpis.abnormal_orders(orders, W11)
    assert list(pareto.columns) == ["count", "rate", "share", "cumulative_share"]
    # stockout O10, O14, O19; then ties of 1 in code order: address_error O13,
    # customs_hold O12, payment_failed O16 -> 6 abnormal of 14 created
    assert list(pareto.index) == ["stockout", "address_error", "customs_hold", "payment_failed"]
    assert pareto["count"].tolist() == [3, 1, 1, 1]
    assert pareto["rate"].tolist() == pytest.approx([3 / 14, 1 / 14, 1 / 14, 1 / 14])
    assert pareto["share"].tolist() == pytest.approx([3 / 6, 1 / 6, 1 / 6, 1 / 6])
    assert pareto["cumulative_share"].tolist() == pytest.approx([3 / 6, 4 / 6, 5 / 6, 1.0])


def test_abnormal_orders_of_an_exception_free_week_is_empty(orders):
    pareto = kpis.abnormal_orders(orders, W10)  # no exception_code in O01..O09
    assert pareto.empty
    assert list(pareto.columns) == ["count", "rate", "share", "cumulative_share"]
    assert kpis.abnormal_orders(orders, W12).empty


def test_abnormal_rate(orders):
    assert kpis.abnormal_rate(orders, W11) == pytest.approx(6 / 14)
    assert kpis.abnormal_rate(orders, W10) == 0.0
    assert is_nan(kpis.abnormal_rate(orders, W12))


# --- headline and series ---------------------------------------------------------------


def test_headline_this_week_against_last(orders):
    table = kpis.headline(orders, W11, W10, SLA)
    assert list(table.columns) == [
        "key",
        "this_week",
        "last_week",
        "change",
        "unit",
        "higher_is_better",
    ]
    rows = table.set_index("key")
    expected = {  # key: (this, last, unit, higher is better); values from the tests above
        "orders_created": (14, 9, "orders", True),
        "gmv": (1905.0, 1350.0, "currency", True),
        "cancellation_rate": (3 / 14, 2 / 9, "share", False),
        "on_time_ship_rate": (6 / 8, 2 / 4, "share", True),
        # only O11 (W11) and O01 (W10) have a delivery promise; both delivered before it
        "on_time_delivery_rate": (1.0, 1.0, "share", True),
        "cycle_time_p90_h": (114.8, 106.6, "hours", False),
        "handling_median_h": (32.0, 36.75, "hours", False),
        "backlog": (5, 2, "orders", False),
        "overdue_backlog": (2, 1, "orders", False),
        "abnormal_rate": (6 / 14, 0.0, "share", False),
    }
    assert list(rows.index) == list(expected)
    for key, (this, last, unit, higher) in expected.items():
        row = rows.loc[key]
        assert row["this_week"] == pytest.approx(this), key
        assert row["last_week"] == pytest.approx(last), key
        assert row["unit"] == unit, key
        assert bool(row["higher_is_better"]) is higher, key
    # change = this - last in the value's own unit, e.g. 3/14 - 2/9 = (27 - 28)/126
    assert rows.loc["cancellation_rate", "change"] == pytest.approx(-1 / 126)
    assert rows.loc["on_time_ship_rate", "change"] == pytest.approx(0.25)
    assert rows.loc["handling_median_h", "change"] == pytest.approx(-4.75)
    assert rows.loc["gmv", "change"] == pytest.approx(555.0)


def test_headline_by_order_type(orders):
    table = kpis.headline_by_order_type(orders, W11, W10, SLA)
    assert list(table.columns[:2]) == ["order_type", "key"]
    assert list(table["order_type"].unique()) == ["all", "normal", "special", "after_sales"]
    rows = table.set_index(["order_type", "key"])
    assert rows.loc[("all", "orders_created"), "this_week"] == 14
    assert rows.loc[("special", "orders_created"), "this_week"] == 3  # O12, O15, O20
    assert rows.loc[("special", "backlog"), "this_week"] == 1  # O15
    # after-sales: nothing in W11; in W10 O04 (50, shipped late) and O09 (cancelled)
    after = rows.loc["after_sales"]
    assert after.loc["orders_created", "this_week"] == 0
    assert after.loc["gmv", "this_week"] == 0.0
    assert math.isnan(after.loc["cancellation_rate", "this_week"])
    assert math.isnan(after.loc["on_time_ship_rate", "this_week"])
    assert after.loc["orders_created", "last_week"] == 2
    assert after.loc["gmv", "last_week"] == pytest.approx(50.0)
    assert after.loc["cancellation_rate", "last_week"] == pytest.approx(1 / 2)
    assert after.loc["on_time_ship_rate", "last_week"] == 0.0  # O04: 0 of 1
    assert math.isnan(after.loc["cancellation_rate", "change"])


def test_weekly_series_over_windows(orders):
    created = kpis.weekly_series(kpis.orders_created, orders, [W10, W11, W12])
    assert created.to_dict() == {"2026-W10": 9.0, "2026-W11": 14.0, "2026-W12": 0.0}
    assert created.index.name == "week"
    on_time = kpis.weekly_series(
        kpis.on_time_ship_rate, orders, [W10, W11, W12], ship_sla_hours=SLA
    )
    assert on_time.tolist() == pytest.approx([0.5, 0.75, 1.0])


def test_headline_series(orders):
    series = kpis.headline_series(orders, [W10, W11, W12], SLA)
    assert list(series.columns) == [spec.key for spec in kpis.HEADLINE]
    # at 03-23 00:00: O14, O15, O17 still open (O18 cancelled, O19 shipped at 03-16 00:00),
    # all past due (03-12 15:00, 03-13 10:00, 03-16 10:00)
    assert series["backlog"].tolist() == [2.0, 5.0, 3.0]
    assert series["overdue_backlog"].tolist() == [1.0, 2.0, 3.0]


def test_every_headline_key_has_a_label():
    for spec in kpis.HEADLINE:
        assert f"kpi.{spec.key}" in LABELS, spec.key


# --- robustness ------------------------------------------------------------------------


def run_all(orders: pd.DataFrame) -> None:
    for window in (W10, W11, W12):
        kpis.orders_created(orders, window)
        kpis.order_volume_by_day(orders, window)
        kpis.order_volume_by(orders, window, "channel")
        kpis.gmv(orders, window)
        kpis.cancellation_rate(orders, window)
        kpis.stage_durations(orders, window)
        kpis.stage_durations(orders, window, by="region")
        kpis.on_time_ship_rate(orders, window, SLA)
        kpis.backlog_at(orders, window.end)
        kpis.overdue_backlog_at(orders, window.end, SLA)
        kpis.backlog_by(orders, window.end, SLA, "carrier")
        kpis.abnormal_orders(orders, window)
        kpis.abnormal_rate(orders, window)
    kpis.ship_deadline(orders, SLA)
    kpis.headline_by_order_type(orders, W11, W10, SLA)
    kpis.headline_series(orders, [W10, W11, W12], SLA)


def test_inputs_are_not_modified(orders):
    before = orders.copy(deep=True)
    run_all(orders)
    pd.testing.assert_frame_equal(orders, before)


def test_an_empty_frame_gives_zeros_and_nans(orders):
    empty = orders.iloc[0:0]
    run_all(empty)
    assert kpis.orders_created(empty, W11) == 0
    assert int(kpis.order_volume_by_day(empty, W11).to_numpy().sum()) == 0
    assert kpis.stage_durations(empty, W11)["count"].tolist() == [0, 0, 0, 0]
    assert kpis.abnormal_orders(empty, W11).empty
    assert kpis.backlog_at(empty, W11.end) == 0


def test_absent_exception_column_means_no_abnormal_orders(orders):
    without = orders.drop(columns=["exception_code"])
    assert kpis.abnormal_orders(without, W11).empty
    assert kpis.abnormal_rate(without, W11) == 0.0


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
        got = kpis.on_time_ship_rate(orders, week, sla)
        if expected is None:
            assert is_nan(got)
        else:
            assert got == pytest.approx(expected)
    medians = kpis.stage_durations(orders, week)["median_h"]
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
    assert kpis.on_time_delivery_rate(_deliveries(), W11) == pytest.approx(0.5)
    # W10: E only, late -> 0/1.
    assert kpis.on_time_delivery_rate(_deliveries(), W10) == pytest.approx(0.0)


def test_late_delivery_by_region_and_carrier_by_hand():
    table = kpis.late_delivery_by(_deliveries(), W11, "region", "carrier")
    # (r1, X): A on time, B late -> 1/2; (r1, Y): G late -> 1/1; (r2, X): C on time -> 0/1;
    # (r2, Y): F falls in W12 -> no cell.
    assert table.to_dict("index") == {
        ("r1", "X"): {"delivered": 2, "late": 1, "late_rate": 0.5},
        ("r1", "Y"): {"delivered": 1, "late": 1, "late_rate": 1.0},
        ("r2", "X"): {"delivered": 1, "late": 0, "late_rate": 0.0},
    }
