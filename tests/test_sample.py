"""Tests of meetinglib.data.sample: every figure is recomputed here with plain pandas."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from meetinglib.core.errors import InvalidParamError, WeekFormatError
from meetinglib.core.schema import SCHEMAS
from meetinglib.core.weeks import IsoWeek, latest_complete_week
from meetinglib.data import sample
from meetinglib.data.sample import INCIDENTS, generate_sample

TZ = "Asia/Shanghai"
END = IsoWeek.parse("2026-W05")
MONDAY = END.start(TZ)
EXPORT = END.end(TZ) + pd.Timedelta(hours=6)
WEEKS = 8
PER_WEEK = 2_500
MILESTONES = {
    "orders": ["created_at", "paid_at", "shipped_at", "delivered_at", "cancelled_at"],
    "tickets": ["opened_at", "first_response_at", "resolved_at"],
    "after_sales": ["requested_at", "closed_at"],
    "settlements": ["settled_at"],
    "events": ["timestamp"],
}


def _assert_same(a: pd.DataFrame, b: pd.DataFrame, what: str) -> None:
    """assert_frame_equal, but only run (slow on categoricals) when the frames differ."""
    if not a.equals(b) or list(a.dtypes) != list(b.dtypes):
        pd.testing.assert_frame_equal(a, b, obj=what)


def _load(summary: sample.SampleSummary) -> dict[str, pd.DataFrame]:
    return {table: pd.read_parquet(path) for table, path in summary.files.items()}


@pytest.fixture(scope="module")
def with_incidents(tmp_path_factory):
    folder = tmp_path_factory.mktemp("with_incidents")
    summary = generate_sample(folder, weeks=WEEKS, orders_per_week=PER_WEEK, end_week=END)
    return summary, _load(summary)


@pytest.fixture(scope="module")
def without_incidents(tmp_path_factory):
    folder = tmp_path_factory.mktemp("without_incidents")
    summary = generate_sample(
        folder, weeks=WEEKS, orders_per_week=PER_WEEK, end_week=END, incidents=False
    )
    return summary, _load(summary)


# --- determinism ---------------------------------------------------------------------


def test_same_seed_gives_identical_data_and_another_seed_does_not(tmp_path):
    args = dict(weeks=2, orders_per_week=1_500, end_week="2026-W05")
    first = _load(generate_sample(tmp_path / "a", seed=3, **args))
    again = _load(generate_sample(tmp_path / "b", seed=3, **args))
    other = _load(generate_sample(tmp_path / "c", seed=4, **args))
    for table in SCHEMAS:
        _assert_same(first[table], again[table], table)
    assert not first["orders"].equals(other["orders"])
    assert not first["events"].equals(other["events"])


def _digests(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


_IN_A_FRESH_PROCESS = """
import hashlib, json, sys, tracemalloc
from pathlib import Path
import pyarrow as pa
from meetinglib.data import sample

args = json.loads(sys.argv[1])
sample.ROW_GROUP_ROWS = args.pop("row_group_rows", sample.ROW_GROUP_ROWS)
sample._CHUNK_ORDERS = args.pop("chunk_orders", sample._CHUNK_ORDERS)
tracemalloc.start()
summary = sample.generate_sample(**args)
numpy_peak = tracemalloc.get_traced_memory()[1]
files = {
    p.name: hashlib.sha256(p.read_bytes()).hexdigest()
    for p in sorted(Path(args["folder"]).iterdir())
}
print(json.dumps({"peak": numpy_peak + pa.default_memory_pool().max_memory(), "files": files,
                  "orders": summary.rows["orders"]}))
"""


def _generate_in_a_fresh_process(**args) -> dict:
    """generate_sample in a new interpreter: peak bytes (Python/NumPy + Arrow), file digests."""
    done = subprocess.run(
        [sys.executable, "-c", _IN_A_FRESH_PROCESS, json.dumps(args)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def test_files_are_byte_identical_across_runs_and_processes(tmp_path):
    args = dict(weeks=3, orders_per_week=2_000, end_week="2026-W05", seed=5)
    for fmt in ("parquet", "csv"):
        here = generate_sample(tmp_path / f"here-{fmt}", fmt=fmt, **args)
        again = generate_sample(tmp_path / f"again-{fmt}", fmt=fmt, **args)
        there = _generate_in_a_fresh_process(folder=str(tmp_path / f"there-{fmt}"), fmt=fmt, **args)
        assert len(here.files) == 6
        assert _digests(here.folder) == _digests(again.folder) == there["files"], fmt


def test_memory_holds_about_one_chunk_of_orders_whatever_the_number_of_weeks(tmp_path):
    # Every week of orders held at once (as a whole-span generator does) makes the peak
    # grow with the weeks: three times the weeks, about three times the peak. Written
    # chunk by chunk (here chunks of at most 2,000 orders, a day or two), the peak is
    # one chunk's orders plus rows held for later days (about two weeks of settlements):
    # nearly the same for 6 and 18 weeks. Small row groups, so the rows a file holds
    # until a row group is full stay small too.
    common = dict(
        orders_per_week=6_000, end_week="2026-W05", row_group_rows=2_000, chunk_orders=2_000
    )
    short = _generate_in_a_fresh_process(folder=str(tmp_path / "short"), weeks=6, **common)
    long = _generate_in_a_fresh_process(folder=str(tmp_path / "long"), weeks=18, **common)
    assert long["orders"] > 2.5 * short["orders"]  # both spans hold the promotion week
    assert long["peak"] < 1.4 * short["peak"], (short["peak"], long["peak"])


def test_busy_days_generated_in_pieces_keep_every_rule(tmp_path, monkeypatch):
    args = dict(weeks=2, orders_per_week=1_500, end_week=END, seed=9)
    whole = _load(generate_sample(tmp_path / "whole", **args))
    monkeypatch.setattr(sample, "_CHUNK_ORDERS", 150)  # days of about 200 orders: 2 pieces
    frames = _load(generate_sample(tmp_path / "pieces", **args))
    # Each day has the same number of orders (drawn first); the draws after that differ.
    days = [f["orders"]["created_at"].dt.floor("D") for f in (frames, whole)]
    assert days[0].value_counts().sort_index().equals(days[1].value_counts().sort_index())
    assert frames["orders"]["created_at"].is_monotonic_increasing
    assert not frames["orders"].equals(whole["orders"])
    ids = set(frames["orders"]["order_id"])
    for table, column in (
        ("tickets", "opened_at"),
        ("after_sales", "requested_at"),
        ("settlements", "settled_at"),
        ("events", "timestamp"),
    ):
        assert set(frames[table]["order_id"]) <= ids, table
        assert frames[table][column].dropna().is_monotonic_increasing, table
    assert set(frames["order_lines"]["order_id"]) == ids
    for table, key in (("tickets", "ticket_id"), ("after_sales", "case_id")):
        assert frames[table][key].is_unique and frames[table][key].is_monotonic_increasing, table


def test_writing_some_tables_gives_the_same_data(tmp_path, with_incidents):
    summary = generate_sample(
        tmp_path,
        weeks=WEEKS,
        orders_per_week=PER_WEEK,
        end_week=END,
        tables=["settlements", "tickets"],
    )
    assert sorted(summary.files) == ["settlements", "tickets"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settlements.parquet", "tickets.parquet"]
    _, full = with_incidents
    for table, frame in _load(summary).items():
        _assert_same(frame, full[table], table)


# --- the canonical schema ------------------------------------------------------------


def test_every_file_has_the_canonical_columns_values_and_keys(with_incidents):
    summary, frames = with_incidents
    assert sorted(summary.files) == sorted(SCHEMAS)
    for table, frame in frames.items():
        schema = SCHEMAS[table]
        assert list(frame.columns) == schema.names, table
        assert summary.rows[table] == len(frame) > 0, table
        for name in schema.of_kind("timestamp"):
            assert str(frame[name].dtype) == f"datetime64[us, {TZ}]", (table, name)
        for column in schema.columns:
            if column.allowed:
                values = set(frame[column.name].dropna().astype(str))
                assert values <= set(column.allowed), (table, column.name)
        for name in schema.required:
            assert frame[name].notna().all(), (table, name)
        if schema.key:
            assert not frame.duplicated(list(schema.key)).any(), table


def test_values_of_the_dimensions_and_id_formats(with_incidents):
    _, frames = with_incidents
    orders = frames["orders"]
    assert set(orders["channel"].astype(str)) == {"app", "web", "mini_program", "marketplace"}
    assert set(orders["warehouse"].dropna().astype(str)) == {"WH-North", "WH-East", "WH-South"}
    assert set(orders["carrier"].dropna().astype(str)) == {
        "SwiftExpress",
        "EastPost",
        "CloudLogistics",
        "RapidRoute",
    }
    assert set(orders["region"].astype(str)) == {
        "East",
        "North",
        "South",
        "Central",
        "West",
        "Northeast",
    }
    assert orders["order_id"].str.fullmatch(r"SO\d{9}").all()
    assert frames["tickets"]["ticket_id"].str.fullmatch(r"TK\d{9}").all()
    assert frames["after_sales"]["case_id"].str.fullmatch(r"AS\d{9}").all()
    skus = frames["order_lines"]["sku"]
    assert skus.str.fullmatch(r"SKU-\d{5}").all()
    assert skus.nunique() > 1_000
    # Skewed popularity: the ten most sold SKUs make a large share of all lines.
    assert skus.value_counts(normalize=True).head(10).sum() > 0.1


def test_rows_are_sorted_by_the_time_column(with_incidents):
    _, frames = with_incidents
    for table, frame in frames.items():
        column = SCHEMAS[table].time_column
        if column is None:
            continue
        present = frame[column].dropna()
        assert present.is_monotonic_increasing, table
        # Rows without a time (settlements not settled yet) come last.
        assert frame[column].notna().sum() == 0 or frame[column].iloc[: len(present)].notna().all()


def test_ids_link_to_orders(with_incidents):
    _, frames = with_incidents
    order_ids = set(frames["orders"]["order_id"])
    for table in ("tickets", "after_sales", "settlements", "order_lines", "events"):
        assert set(frames[table]["order_id"]) <= order_ids, table
    lines_per_order = frames["order_lines"].groupby("order_id").size()
    assert set(frames["order_lines"]["order_id"]) == order_ids
    assert lines_per_order.between(1, 4).all()


def test_ids_are_unique_and_every_row_belongs_to_an_order_created_before_it(with_incidents):
    _, frames = with_incidents
    orders = frames["orders"].set_index("order_id")
    assert orders.index.is_unique
    for table, key in (
        ("tickets", ["ticket_id"]),
        ("after_sales", ["case_id"]),
        ("settlements", ["order_id"]),
        ("order_lines", ["order_id", "sku"]),
    ):
        assert not frames[table].duplicated(key).any(), table
    for table, column in (
        ("tickets", "opened_at"),
        ("after_sales", "requested_at"),
        ("settlements", "settled_at"),
        ("events", "timestamp"),
    ):
        rows = frames[table]
        assert rows["order_id"].isin(orders.index).all(), table
        created = _of_orders(orders, rows["order_id"], "created_at")
        assert (rows[column].isna() | (rows[column] >= created)).all(), table
        # Milestones of a week's orders fall into later weeks too.
        later = _week_of(rows[column].dropna()) > _week_of(created[rows[column].notna()])
        assert later.mean() > 0.05, table
    # Ticket and case numbers count up in time order, without gaps.
    for table, key, prefix in (("tickets", "ticket_id", "TK"), ("after_sales", "case_id", "AS")):
        numbers = frames[table][key].str.removeprefix(prefix).astype(int)
        assert list(numbers) == list(range(1, len(numbers) + 1)), table
    numbers = orders.index.str.removeprefix("SO").astype(int)
    assert list(numbers) == list(range(100_000_001, 100_000_001 + len(orders)))


def test_milestones_are_in_order(with_incidents):
    _, frames = with_incidents
    for table, schema in SCHEMAS.items():
        frame = frames[table]
        for earlier, later in schema.milestone_order:
            both = frame[earlier].notna() & frame[later].notna()
            assert (frame.loc[both, earlier] <= frame.loc[both, later]).all(), (earlier, later)
    orders = frames["orders"]
    assert (orders["shipped_at"].isna() | orders["paid_at"].notna()).all()
    assert (orders["delivered_at"].isna() | orders["shipped_at"].notna()).all()
    # A delivered order is not cancelled; a lost one is never delivered.
    assert not (orders["delivered_at"].notna() & orders["cancelled_at"].notna()).any()
    assert orders.loc[orders["exception_code"] == "lost", "delivered_at"].isna().all()
    paid = orders["paid_at"].notna()
    sla = np.where(orders["order_type"] == "special", 72, 48)
    promised = orders["paid_at"] + pd.to_timedelta(sla, unit="h")
    assert (orders.loc[paid, "promised_ship_by"] == promised[paid]).all()
    assert (orders["promised_delivery_by"] >= orders["promised_ship_by"] + pd.Timedelta(days=1))[
        paid
    ].all()


def test_events_repeat_the_order_milestones(with_incidents):
    _, frames = with_incidents
    orders = frames["orders"].set_index("order_id")
    events = frames["events"]
    at = {
        activity: rows.set_index("order_id")["timestamp"]
        for activity, rows in events.groupby("activity", observed=True)
    }
    for activity in ("created", "paid", "shipped", "delivered", "cancelled"):
        assert at[activity].index.is_unique, activity
        from_events = at[activity].reindex(orders.index)
        if not from_events.equals(orders[f"{activity}_at"]):
            pd.testing.assert_series_equal(from_events, orders[f"{activity}_at"], check_names=False)
    shipped = orders.index[orders["shipped_at"].notna()]
    steps = pd.DataFrame(
        {a: at[a].reindex(shipped) for a in ("paid", "picked", "packed", "shipped")}
    )
    assert steps.notna().all().all()
    assert (steps["paid"] <= steps["picked"]).all()
    assert (steps["picked"] <= steps["packed"]).all()
    assert (steps["packed"] <= steps["shipped"]).all()
    assert 4.5 <= len(events) / len(orders) <= 6.5


def test_other_tables_follow_their_rules(with_incidents):
    _, frames = with_incidents
    orders = frames["orders"].set_index("order_id")
    settlements = frames["settlements"]
    paid_open = orders.index[orders["paid_at"].notna() & orders["cancelled_at"].isna()]
    assert set(settlements["order_id"]) == set(paid_open)
    assert len(settlements) == len(paid_open)
    assert (settlements["amount"] == _of_orders(orders, settlements["order_id"], "amount")).all()
    assert np.allclose(settlements["fee"], settlements["amount"] * 0.006, atol=0.006)
    assert (
        settlements["settled_at"].isna() == settlements["status"].isin(["pending", "disputed"])
    ).all()
    delivered = _of_orders(orders, settlements["order_id"], "delivered_at")
    settled = settlements["status"] == "settled"
    lag = (settlements["settled_at"] - delivered)[settled]
    assert lag.between(pd.Timedelta(days=3), pd.Timedelta(days=10)).all()

    cases = frames["after_sales"]
    assert (cases["refund_amount"] <= _of_orders(orders, cases["order_id"], "amount")).all()
    assert (cases["refund_amount"] >= 0).all()
    delivered = _of_orders(orders, cases["order_id"], "delivered_at")
    assert (cases["requested_at"] > delivered).all()
    assert set(cases["reason"].astype(str)) <= set(sample.AFTER_SALES_REASONS)

    tickets = frames["tickets"]
    assert tickets["csat"].dropna().isin([1.0, 2.0, 3.0, 4.0, 5.0]).all()
    assert tickets.loc[tickets["resolved_at"].isna(), "csat"].isna().all()
    assert 0.25 <= tickets["csat"].isna().mean() <= 0.55
    by_category = tickets.groupby("category", observed=True)["csat"].mean()
    assert by_category["complaint"] < by_category["inquiry"] - 0.5

    lines = frames["order_lines"]
    assert lines["qty"].between(1, 3).all()
    assert ((lines["qty_shipped"] >= 0) & (lines["qty_shipped"] <= lines["qty"])).all()
    shipped = _of_orders(orders, lines["order_id"], "shipped_at").notna()
    assert (lines.loc[~shipped, "qty_shipped"] == 0).all()
    stockout = _of_orders(orders, lines["order_id"], "exception_code") == "stockout"
    full = lines["qty_shipped"] == lines["qty"]
    assert full[shipped & ~stockout].all()
    assert (~full[shipped & stockout]).any()


# --- the snapshot ----------------------------------------------------------------


def test_nothing_happens_after_the_export_time(with_incidents):
    _, frames = with_incidents
    for table, columns in MILESTONES.items():
        for column in columns:
            assert (frames[table][column].dropna() < EXPORT).all(), (table, column)
    orders = frames["orders"]
    created = orders["created_at"]
    assert created.max() >= END.end(TZ)
    assert latest_complete_week(created.max(), TZ) == END
    # Deadlines are commitments, not milestones: some lie after the export.
    assert (orders["promised_delivery_by"] > EXPORT).any()
    # Orders of the last day are mostly still in the warehouse.
    sunday = orders[(created >= END.end(TZ) - pd.Timedelta(days=1)) & (created < END.end(TZ))]
    assert sunday["shipped_at"].isna().mean() > 0.3
    assert sunday["delivered_at"].isna().mean() > 0.9


def test_end_week_defaults_to_the_latest_complete_week(tmp_path):
    summary = generate_sample(tmp_path, weeks=1, orders_per_week=300, tables=["orders"])
    today = pd.Timestamp.now(TZ)
    assert summary.end_week == IsoWeek.containing(today).previous()
    created = pd.read_parquet(summary.files["orders"])["created_at"]
    assert created.min() >= summary.end_week.start(TZ)
    assert latest_complete_week(created.max(), TZ) == summary.end_week


# --- plausibility ------------------------------------------------------------------


def _of_orders(orders: pd.DataFrame, ids: pd.Series, column: str) -> pd.Series:
    """``column`` of the order each row of ``ids`` refers to, aligned with ``ids``."""
    return orders[column].reindex(ids).set_axis(ids.index)


def _week_of(stamps: pd.Series) -> pd.Series:
    return stamps.dt.tz_localize(None).dt.normalize() - pd.to_timedelta(stamps.dt.day_of_week, "D")


def test_mix_and_rates_are_plausible(without_incidents):
    _, frames = without_incidents
    orders = frames["orders"]
    mix = orders["order_type"].value_counts(normalize=True)
    assert mix["normal"] == pytest.approx(0.88, abs=0.02)
    assert mix["special"] == pytest.approx(0.07, abs=0.015)
    assert mix["after_sales"] == pytest.approx(0.05, abs=0.015)
    assert 0.025 <= orders["exception_code"].notna().mean() <= 0.05
    assert 0.015 <= orders["cancelled_at"].notna().mean() <= 0.04
    cancelled = orders["cancelled_at"].notna()
    assert orders.loc[cancelled, "shipped_at"].isna().mean() > 0.8
    assert 120 <= orders["amount"].median() <= 190
    by_type = orders.groupby("order_type", observed=True)["amount"].median()
    assert by_type["special"] > 1.5 * by_type["normal"]
    handling = (orders["shipped_at"] - orders["paid_at"]).dt.total_seconds() / 3600
    on_time = (orders["shipped_at"] <= orders["promised_ship_by"])[orders["shipped_at"].notna()]
    assert 4 <= handling.median() <= 36
    assert 0.9 <= on_time.mean() <= 0.99
    delivered = orders["delivered_at"].notna()
    transit = (orders["delivered_at"] - orders["shipped_at"]).dt.total_seconds() / 86400
    assert 1 <= transit[delivered].median() <= 3
    carriers = transit[delivered].groupby(orders.loc[delivered, "carrier"], observed=True).median()
    assert carriers.max() > 1.3 * carriers.min()

    assert 0.05 <= len(frames["tickets"]) / len(orders) <= 0.11
    assert 0.035 <= len(frames["after_sales"]) / delivered.sum() <= 0.065
    status = frames["settlements"]["status"].value_counts(normalize=True)
    assert 0.001 <= status["disputed"] <= 0.01


def test_volume_follows_weekday_hour_and_promotion(without_incidents):
    _, frames = without_incidents
    created = frames["orders"]["created_at"]
    created = created[created < END.end(TZ)]
    week = _week_of(created)
    weekly = created.groupby(week).size()
    promo_week = END.shift(-5).start(TZ).tz_localize(None)
    others = weekly.drop(promo_week)
    assert weekly[promo_week] > 1.5 * others.median()
    assert others.max() < 1.25 * others.min()
    # The promotion is three days of two to three times the usual volume.
    daily = created.groupby(created.dt.tz_localize(None).dt.normalize()).size()
    promo_days = daily[
        (daily.index >= promo_week) & (daily.index < promo_week + pd.Timedelta(7, "D"))
    ]
    assert (promo_days > 2 * others.median() / 7).sum() == 3
    normal = created[week != promo_week]
    per_weekday = normal.groupby(normal.dt.day_of_week).size()
    assert per_weekday.idxmax() == 0
    assert per_weekday[0] > 1.15 * per_weekday[[5, 6]].max()
    per_hour = normal.groupby(normal.dt.hour).size()
    assert per_hour[[20, 21, 22]].mean() > 5 * per_hour[[3, 4, 5]].mean()
    assert per_hour.idxmax() in (20, 21, 22)


# --- incidents ---------------------------------------------------------------------


def _transit_ratio(orders: pd.DataFrame, carrier: str, region: str | None) -> float:
    """Median transit of Tue-Wed shipments of END over that of earlier Tue-Wed shipments.

    Parcels not delivered by the export count as infinitely slow, so the median is not
    biased by the snapshot.
    """
    rows = orders["carrier"] == carrier
    if region:
        rows &= orders["region"] == region
    shipped = orders.loc[rows, "shipped_at"]
    days = (orders.loc[rows, "delivered_at"] - shipped).dt.total_seconds() / 86400
    days = days.fillna(math.inf)
    tue_wed = shipped.dt.day_of_week.isin([1, 2])
    now = tue_wed & (shipped >= MONDAY) & (shipped < MONDAY + pd.Timedelta(days=3))
    before = tue_wed & (shipped < MONDAY - pd.Timedelta(days=1))
    assert now.sum() > 20 and before.sum() > 100
    return float(days[now].median() / days[before].median())


def _backlog_per_order(orders: pd.DataFrame) -> pd.Series:
    """Paid, not shipped, not cancelled at the end of END, per order created in END."""
    end = END.end(TZ)
    open_ = (
        (orders["paid_at"] < end) & ~(orders["shipped_at"] < end) & ~(orders["cancelled_at"] < end)
    )
    created = (orders["created_at"] >= MONDAY) & (orders["created_at"] < end)
    backlog = orders[open_].groupby("warehouse", observed=True).size()
    volume = orders[created].groupby("warehouse", observed=True).size()
    return backlog / volume


def test_incidents_are_told_in_each_language(with_incidents):
    """The summary's incidents in English (their description) and in any language, with
    the days of this sample: Tuesday and Wednesday of its last week."""
    transit, stockout = with_incidents[0].incidents
    assert (
        transit.description
        == transit.text("en")
        == (
            "EastPost transit time in region South x2.5 for shipments from Tuesday 2026-01-27 "
            "(2026-W05)"
        )
    )
    assert stockout.description.startswith(
        "WH-South out of stock of its most popular SKUs from Wednesday 2026-01-28 (2026-W05): "
    )
    assert transit.text("zh-CN") == (
        "自 2026-01-27（2026-W05 的星期二）起发出的包裹，EastPost 在 South 区域的运输时间"
        "变为原来的 2.5 倍"
    )
    assert stockout.text("zh-CN").startswith(
        "WH-South 最畅销的几款商品自 2026-01-28（2026-W05 的星期三）"
    )


def test_incidents_are_visible_in_the_last_week(with_incidents):
    summary, frames = with_incidents
    orders = frames["orders"]
    assert [i.key for i in summary.incidents] == [i.key for i in INCIDENTS]
    assert "2026-W05" in summary.incidents[0].description
    assert summary.incidents[0].segment == {"carrier": "EastPost", "region": "South"}

    assert _transit_ratio(orders, "EastPost", "South") >= 2.0
    for carrier in ("SwiftExpress", "CloudLogistics", "RapidRoute"):
        assert 0.8 <= _transit_ratio(orders, carrier, None) <= 1.2, carrier
    east_south = orders[(orders["carrier"] == "EastPost") & (orders["region"] == "South")]
    shipped = east_south["shipped_at"]
    late = ~(east_south["delivered_at"] <= east_south["promised_delivery_by"])
    recent = (shipped >= MONDAY + pd.Timedelta(days=1)) & (shipped < MONDAY + pd.Timedelta(days=3))
    earlier = shipped < MONDAY
    assert late[recent].mean() > late[earlier].mean() + 0.3

    backlog = _backlog_per_order(orders)
    assert backlog["WH-South"] >= 2.5 * backlog[["WH-North", "WH-East"]].max()
    wednesday = MONDAY + pd.Timedelta(days=2)
    south = orders[(orders["warehouse"] == "WH-South") & (orders["paid_at"] >= wednesday)]
    assert 0.25 <= (south["exception_code"] == "stockout").mean() <= 0.45
    before = orders[(orders["warehouse"] == "WH-South") & (orders["paid_at"] < MONDAY)]
    assert (before["exception_code"] == "stockout").mean() < 0.03


def test_without_incidents_the_last_week_is_ordinary(without_incidents):
    summary, frames = without_incidents
    orders = frames["orders"]
    assert summary.incidents == ()
    assert 0.8 <= _transit_ratio(orders, "EastPost", "South") <= 1.25
    for carrier in ("SwiftExpress", "CloudLogistics", "RapidRoute"):
        assert 0.8 <= _transit_ratio(orders, carrier, None) <= 1.2, carrier
    backlog = _backlog_per_order(orders)
    assert backlog["WH-South"] <= 1.6 * backlog[["WH-North", "WH-East"]].min()


def test_history_is_the_same_with_and_without_incidents(with_incidents, without_incidents):
    _, loud = with_incidents
    _, quiet = without_incidents
    for table, column in (
        ("tickets", "opened_at"),
        ("after_sales", "requested_at"),
        ("settlements", "settled_at"),
        ("events", "timestamp"),
    ):
        a = loud[table][loud[table][column] < MONDAY].reset_index(drop=True)
        b = quiet[table][quiet[table][column] < MONDAY].reset_index(drop=True)
        _assert_same(a, b, table)

    a, b = loud["orders"], quiet["orders"]
    assert len(a) == len(b)
    # Only EastPost parcels to South shipped from Tuesday on change among older orders.
    touched = (
        (a["carrier"] == "EastPost")
        & (a["region"] == "South")
        & (a["shipped_at"] >= MONDAY + pd.Timedelta(days=1))
    )
    older = (a["created_at"] < MONDAY) & ~touched
    _assert_same(a[older], b[older], "orders")
    ids = set(a.loc[a["created_at"] < MONDAY, "order_id"])
    lines_a = loud["order_lines"][loud["order_lines"]["order_id"].isin(ids)]
    lines_b = quiet["order_lines"][quiet["order_lines"]["order_id"].isin(ids)]
    _assert_same(lines_a, lines_b, "order_lines")


# --- files -------------------------------------------------------------------------


def test_csv_output_reads_back_with_the_same_rows(tmp_path):
    args = dict(weeks=2, orders_per_week=1_500, end_week=END, seed=11)
    csv = generate_sample(tmp_path / "csv", fmt="csv", **args)
    parquet = _load(generate_sample(tmp_path / "parquet", **args))
    for table, path in csv.files.items():
        assert path.suffix == ".csv"
        text = path.read_text(encoding="utf-8")
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        assert len(frame) == csv.rows[table] == len(parquet[table]), table
        assert list(frame.columns) == SCHEMAS[table].names
        assert '"' not in text
        for name in SCHEMAS[table].of_kind("timestamp"):
            values = frame[name][frame[name] != ""]
            assert values.str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00").all()
            parsed = pd.to_datetime(frame[name].replace("", None), format="ISO8601")
            back = parsed.dt.tz_convert(TZ).dt.as_unit("us")
            pd.testing.assert_series_equal(back, parquet[table][name], check_names=False)
    orders = pd.read_csv(csv.files["orders"])
    assert (orders["amount"] == parquet["orders"]["amount"]).all()
    assert (orders["exception_code"].isna() == parquet["orders"]["exception_code"].isna()).all()


def test_parquet_row_groups_let_readers_skip_weeks(tmp_path, monkeypatch):
    monkeypatch.setattr(sample, "ROW_GROUP_ROWS", 1_000)
    summary = generate_sample(
        tmp_path, weeks=2, orders_per_week=1_500, end_week=END, tables=["orders"]
    )
    meta = pq.ParquetFile(summary.files["orders"]).metadata
    assert meta.num_row_groups == math.ceil(summary.rows["orders"] / 1_000)
    created = meta.schema.to_arrow_schema().get_field_index("created_at")
    stats = [meta.row_group(i).column(created).statistics for i in range(meta.num_row_groups)]
    assert all(s.has_min_max for s in stats)
    assert all(a.max <= b.min for a, b in zip(stats, stats[1:], strict=False))
    week = pd.read_parquet(summary.files["orders"], filters=[("created_at", ">=", MONDAY)])
    everything = pd.read_parquet(summary.files["orders"])
    expected = everything[everything["created_at"] >= MONDAY].reset_index(drop=True)
    _assert_same(week.reset_index(drop=True), expected, "orders")


def test_time_sorted_files_get_full_row_groups_across_days(tmp_path, monkeypatch):
    monkeypatch.setattr(sample, "ROW_GROUP_ROWS", 1_000)
    summary = generate_sample(
        tmp_path, weeks=2, orders_per_week=1_500, end_week=END, tables=["events", "settlements"]
    )
    for table, column in (("events", "timestamp"), ("settlements", "settled_at")):
        meta = pq.ParquetFile(summary.files[table]).metadata
        assert meta.num_row_groups == math.ceil(summary.rows[table] / 1_000), table
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        assert set(sizes[:-1]) == {1_000}, table
        at = meta.schema.to_arrow_schema().get_field_index(column)
        stats = [meta.row_group(i).column(at).statistics for i in range(meta.num_row_groups)]
        timed = [s for s in stats if s.has_min_max]
        assert all(a.max <= b.min for a, b in zip(timed, timed[1:], strict=False)), table


def test_progress_reports_each_week_and_table(tmp_path):
    messages: list[str] = []
    summary = generate_sample(
        tmp_path, weeks=2, orders_per_week=300, end_week=END, progress=messages.append
    )
    orders = pd.read_parquet(summary.files["orders"])["created_at"]
    for n, week in enumerate((END.previous(), END), start=1):
        count = orders.between(week.start(TZ), week.end(TZ), inclusive="left").sum()
        assert f"week {week} ({n}/2): {count:,} orders generated" in messages
    for table, path in summary.files.items():
        assert any(path.name in m and f"{summary.rows[table]:,} rows" in m for m in messages)
    assert summary.seconds > 0
    assert summary.folder == tmp_path


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fmt": "xlsx"}, r"'fmt'.*must be one of \['parquet', 'csv'\], got 'xlsx'"),
        ({"tables": ["orderz"]}, r"'tables'.*unknown table\(s\) \['orderz'\]"),
        ({"weeks": 0}, r"'weeks'.*must be a whole number >= 1, got 0"),
        ({"orders_per_week": 0}, r"'orders_per_week'.*>= 1, got 0"),
        ({"tz": "Mars/Olympus"}, r"'tz'.*unknown timezone 'Mars/Olympus'"),
    ],
)
def test_bad_arguments_are_named(tmp_path, kwargs, match):
    with pytest.raises(InvalidParamError, match=match):
        generate_sample(tmp_path, end_week=END, **kwargs)
    assert not any(tmp_path.iterdir())


def test_bad_end_week_is_refused(tmp_path):
    with pytest.raises(WeekFormatError, match="2026-47"):
        generate_sample(tmp_path, end_week="2026-47")
