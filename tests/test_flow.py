"""Tests of meetinglib.analysis.flow on hand-built logs whose answers are worked out in comments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from meetinglib.analysis import flow, flow_engine
from meetinglib.core.errors import InputDataError, MissingColumnError
from meetinglib.core.weeks import IsoWeek

TZ = "Asia/Shanghai"
BASE = pd.Timestamp("2026-01-05 09:00", tz=TZ)  # a Monday


def at(hours: float) -> pd.Timestamp:
    return BASE + pd.Timedelta(hours=hours)


def make_log(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    """A log from (case, activity, hours after BASE) in the given row order."""
    return pd.DataFrame(
        {
            "case_id": pd.Series([r[0] for r in rows], dtype="str"),
            "activity": pd.Series([r[1] for r in rows], dtype="str"),
            "timestamp": pd.Series([at(r[2]) for r in rows]),
        }
    )


# c1..c4 run the order flow; c5 has a single event (no edge)
FLOW_ROWS = [
    ("c1", "created", 0),
    ("c1", "paid", 1),
    ("c1", "shipped", 5),
    ("c1", "delivered", 29),
    ("c2", "created", 0),
    ("c2", "paid", 3),
    ("c2", "shipped", 13),
    ("c2", "delivered", 61),
    ("c3", "created", 0),
    ("c3", "paid", 2),
    ("c3", "shipped", 4),
    ("c4", "created", 0),
    ("c4", "cancelled", 6),
    ("c5", "created", 0),
]

# --- event log ---------------------------------------------------------------------------


def milestone_orders() -> pd.DataFrame:
    nat = pd.NaT
    return pd.DataFrame(
        {
            # listed out of id order on purpose
            "order_id": pd.Series(["B", "A", "C"], dtype="str"),
            "order_type": pd.Categorical(["normal", "normal", "special"]),
            "created_at": pd.Series([at(1), at(0), at(-1)]),
            # A is paid in the same second it is created: rank puts created first
            "paid_at": pd.Series([nat, at(0), nat], dtype=f"datetime64[us, {TZ}]"),
            "shipped_at": pd.Series([nat, at(5), nat], dtype=f"datetime64[us, {TZ}]"),
            "delivered_at": pd.Series([nat, at(29), nat], dtype=f"datetime64[us, {TZ}]"),
            "cancelled_at": pd.Series([at(2), nat, nat], dtype=f"datetime64[us, {TZ}]"),
        }
    )


def test_event_log_from_order_milestones_skips_empty_ones():
    orders = milestone_orders()
    log = flow.event_log(orders)
    expected = pd.DataFrame(
        {
            "case_id": ["A", "A", "A", "A", "B", "B", "C"],
            "activity": [
                "created",
                "paid",
                "shipped",
                "delivered",
                "created",
                "cancelled",
                "created",
            ],
            "timestamp": [at(0), at(0), at(5), at(29), at(1), at(2), at(-1)],
        }
    )
    assert log["case_id"].tolist() == expected["case_id"].tolist()
    assert log["activity"].astype(str).tolist() == expected["activity"].tolist()
    assert log["timestamp"].tolist() == expected["timestamp"].tolist()
    assert log.index.tolist() == list(range(7))
    assert str(log["case_id"].dtype) == "str"
    assert log["activity"].cat.ordered
    assert list(log["activity"].cat.categories[:7]) == [
        "created",
        "paid",
        "picked",
        "packed",
        "shipped",
        "delivered",
        "cancelled",
    ]
    assert str(log["timestamp"].dt.tz) == TZ


def test_event_log_adds_after_sales_steps_to_the_order_case():
    orders = milestone_orders()
    after_sales = pd.DataFrame(
        {
            "case_id": ["R1", "R2"],
            "order_id": ["A", "A"],
            "kind": ["return", "refund_only"],
            "requested_at": [at(40), at(30)],
            "closed_at": pd.Series([at(50), pd.NaT], dtype=f"datetime64[us, {TZ}]"),
        }
    )
    log = flow.event_log(orders, after_sales=after_sales)
    case_a = log[log["case_id"] == "A"]
    # the open case R2 has no closing event; steps interleave by time
    assert case_a["activity"].astype(str).tolist() == [
        "created",
        "paid",
        "shipped",
        "delivered",
        "return_requested",  # R2 at 30 h
        "return_requested",  # R1 at 40 h
        "return_closed",  # R1 at 50 h
    ]
    assert case_a["timestamp"].tolist() == [at(0), at(0), at(5), at(29), at(30), at(40), at(50)]
    assert len(log) == 7 + 3


def test_event_log_from_events_table_sorts_rows_and_breaks_ties_by_rank():
    events = pd.DataFrame(
        {
            "order_id": ["2", "1", "1", "1", "2", "1"],
            "activity": ["paid", "shipped", "paid", "created", "created", "delivered"],
            # order 1: created and paid in the same second, listed paid first
            "timestamp": [at(1), at(4), at(0), at(0), at(0), at(30)],
        }
    )
    log = flow.event_log(pd.DataFrame(), events)
    assert log["case_id"].tolist() == ["1", "1", "1", "1", "2", "2"]
    assert log["activity"].astype(str).tolist() == [
        "created",
        "paid",
        "shipped",
        "delivered",
        "created",
        "paid",
    ]
    assert log["timestamp"].tolist() == [at(0), at(0), at(4), at(30), at(0), at(1)]


def test_event_log_keeps_unknown_activities_after_the_known_ones():
    events = pd.DataFrame(
        {
            "order_id": ["1", "1", "1"],
            "activity": ["address_fixed", "created", "audit"],
            "timestamp": [at(1), at(0), at(1)],
        }
    )
    log = flow.event_log(pd.DataFrame(), events)
    # equal times: unknown names rank after the known ones, alphabetically
    assert log["activity"].astype(str).tolist() == ["created", "address_fixed", "audit"]
    assert list(log["activity"].cat.categories[-2:]) == ["address_fixed", "audit"]


def test_event_log_errors_name_table_column_and_count():
    with pytest.raises(MissingColumnError, match="column 'created_at' not in orders"):
        flow.event_log(pd.DataFrame({"order_id": ["1"]}))
    events = pd.DataFrame(
        {"order_id": ["1", "1"], "activity": ["created", "paid"], "timestamp": [at(0), pd.NaT]}
    )
    with pytest.raises(InputDataError, match=r"events: column 'timestamp' is empty in 1 row"):
        flow.event_log(pd.DataFrame(), events)


# r1 picks and packs twice (picked > packed > picked > packed); r3 scans three times
LOOP_ROWS = [
    ("r1", "created", 0),
    ("r1", "picked", 1),
    ("r1", "packed", 2),
    ("r1", "picked", 3),
    ("r1", "packed", 5),
    ("r1", "shipped", 6),
    ("r2", "created", 0),
    ("r2", "picked", 2),
    ("r2", "packed", 3),
    ("r2", "shipped", 4),
    ("r3", "created", 0),
    ("r3", "picked", 1),
    ("r3", "picked", 2),
    ("r3", "picked", 4),
]


def test_rework_with_many_activities():
    # 70 activity names (too many for one bit each): case m walks a00 .. a69 one hour
    # apart and repeats a00; case n does a00 > a01 in 2 h
    chain = [("m", f"a{i:02d}", i) for i in range(70)] + [("m", "a00", 70)]
    log = make_log([*chain, ("n", "a00", 0), ("n", "a01", 2)])
    again = flow.rework(log)
    # a00 twice in m; m and n both have a00
    assert again.values.tolist() == [["a00", 1, 1, 0.5]]


@pytest.mark.parametrize("builtin", [True, False])
def test_popcount_with_and_without_numpy_builtin(builtin, monkeypatch):
    if not builtin:
        monkeypatch.delattr(np, "bitwise_count", raising=False)
    values = np.array([0, 1, 3, 2**63, 2**63 + 5], dtype=np.uint64)
    assert flow._popcount(values).tolist() == [0, 1, 2, 1, 3]


# --- variants and rework -----------------------------------------------------------------


def test_variants_with_shares_and_throughput():
    result = flow.variants(make_log(FLOW_ROWS))
    # 5 cases; c1 and c2 share a sequence (throughput 29 h and 61 h: median 45);
    # ties in cases are listed alphabetically
    assert result["variant"].tolist() == [
        "created > paid > shipped > delivered",
        "created",
        "created > cancelled",
        "created > paid > shipped",
    ]
    assert result["events"].tolist() == [4, 1, 2, 3]
    assert result["cases"].tolist() == [2, 1, 1, 1]
    assert result["share"].tolist() == pytest.approx([0.4, 0.2, 0.2, 0.2])
    assert result["cumulative_share"].tolist() == pytest.approx([0.4, 0.6, 0.8, 1.0])
    assert result["median_h"].tolist() == pytest.approx([45.0, 0.0, 6.0, 4.0])


def test_variants_tell_prefixes_and_loops_apart():
    rows = [
        ("a", "created", 0),
        ("a", "paid", 1),
        ("b", "created", 0),
        ("b", "paid", 1),
        ("b", "paid", 2),
        ("c", "created", 0),
        ("c", "paid", 1),
        ("d", "paid", 0),
        ("d", "created", 1),
    ]
    result = flow.variants(make_log(rows), durations=False)
    assert dict(zip(result["variant"], result["cases"], strict=True)) == {
        "created > paid": 2,
        "created > paid > paid": 1,
        "paid > created": 1,
    }
    assert "median_h" not in result.columns


def test_rework_counts_repeated_activities():
    result = flow.rework(make_log(LOOP_ROWS))
    # picked: repeated in r1 (2x) and r3 (3x) -> 2 cases, 1 + 2 = 3 repeats, of 3 cases
    # with a pick; packed: repeated in r1 only -> 1 case, 1 repeat, of 2 cases packing
    assert result["activity"].tolist() == ["picked", "packed"]
    assert result["cases"].tolist() == [2, 1]
    assert result["repeats"].tolist() == [3, 1]
    assert result["share"].tolist() == pytest.approx([2 / 3, 1 / 2])
    assert flow.rework(make_log(FLOW_ROWS)).empty


# --- stages and bottlenecks --------------------------------------------------------------


def bottleneck_orders(transit: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    """Orders created Monday 09:00, paid after 1 h, shipped 10 h later, then ``transit``."""
    rows = [(c, r, h) for (c, r), hours in transit.items() for h in hours]
    n = len(rows)
    created = pd.Series([BASE] * n)
    shipped = created + pd.Timedelta(hours=11)
    return pd.DataFrame(
        {
            "order_id": pd.Series([f"O{i:03d}" for i in range(n)], dtype="str"),
            "order_type": pd.Categorical(["normal"] * n),
            "created_at": created,
            "paid_at": created + pd.Timedelta(hours=1),
            "shipped_at": shipped,
            "delivered_at": shipped + pd.to_timedelta([r[2] for r in rows], unit="h"),
            "channel": pd.Categorical(["app"] * n),
            "warehouse": pd.Categorical(["WH1"] * n),
            "carrier": pd.Categorical([r[0] for r in rows]),
            "region": pd.Categorical([r[1] for r in rows]),
        }
    )


ONE_CELL_SLOW = {
    ("X", "N"): [50, 60, 70],
    ("X", "S"): [10, 10, 10],
    ("Y", "N"): [10, 10, 10],
    ("Y", "S"): [10, 10, 10],
}


def test_stage_frame_durations_and_segments():
    orders = bottleneck_orders({("X", "N"): [50], ("Y", "S"): [10, 10]})
    orders.loc[[1, 2], "paid_at"] = pd.NaT
    orders.loc[0, "shipped_at"] = BASE + pd.Timedelta(hours=50)  # 49 h after payment
    orders.loc[0, "delivered_at"] = BASE + pd.Timedelta(hours=60)
    orders["promised_ship_by"] = pd.Series([pd.NaT, BASE + pd.Timedelta(hours=5), pd.NaT])
    frame = flow.stage_frame(orders, ship_sla_hours=48)
    assert frame["created_paid_h"].tolist()[0] == 1.0
    assert frame["created_paid_h"].isna().tolist() == [False, True, True]
    assert frame["paid_shipped_h"].tolist()[0] == 49.0  # 50 - 1
    assert frame["shipped_delivered_h"].tolist() == [10.0, 10.0, 10.0]  # 60 - 50; 21 - 11
    assert frame["created_delivered_h"].tolist() == [60.0, 21.0, 21.0]
    # order 0: 49 h after payment > 48 h SLA; order 1: shipped at 11 h, promised by 5 h;
    # order 2: neither a promise nor a payment, so no deadline
    assert frame["ship_late"].tolist()[:2] == [True, True]
    assert frame["ship_late"].isna().tolist() == [False, False, True]
    assert frame["weekday"].tolist() == [0, 0, 0]  # Monday
    assert frame["hour"].tolist() == [9, 9, 9]
    assert frame["carrier"].astype(str).tolist() == ["X", "Y", "Y"]
    assert frame["delivered_at"].tolist()[0] == BASE + pd.Timedelta(hours=60)


def test_bottleneck_one_carrier_in_one_region():
    orders = bottleneck_orders(ONE_CELL_SLOW)
    result = flow.bottlenecks(orders, min_orders=2)
    # transit hours: nine of 10 and 50, 60, 70 -> overall median (10 + 10) / 2 = 10;
    # excess: X/N 40 + 50 + 60 = 150, every other order 0; total 150.
    # Carrier X and region N each hold all 150 h, but their other orders (X/S, Y/N) run
    # at the baseline pace 0, so the cell X/N replaces them. Avoidable: 150 - 3 * 0.
    # The other stages take exactly 1 h and 10 h everywhere: no excess, no finding.
    assert len(result) == 1
    top = result.iloc[0]
    assert (top["stage"], top["dimension"], top["value"]) == ("shipped_delivered", "carrier", "X")
    assert (top["dimension_2"], top["value_2"]) == ("region", "N")
    assert top["orders"] == 3
    assert top["median_h"] == 60.0
    assert top["overall_median_h"] == 10.0
    assert top["excess_delay_h"] == pytest.approx(150.0)
    assert top["affected_orders"] == 3
    assert top["share"] == pytest.approx(1.0)
    assert top["avoidable_h"] == pytest.approx(150.0)
    assert top["finding"] == (
        "Shipped → delivered via carrier X to region N takes a median 60 h against 10 h "
        "overall: 150 excess delay-hours on 3 of its 3 orders, 150 more than at the pace "
        "of the other orders."
    )
    zh = flow.bottlenecks(orders, min_orders=2, lang="zh-CN").iloc[0]["finding"]
    assert zh == (
        "承运商 X、区域 N的发货→签收中位耗时 60 小时，整体为 10 小时：其 3 单中 3 单超过"
        "整体中位数，共超时 150 小时，比按其他订单的节奏多 150 小时。"
    )


def test_bottleneck_single_dimensions_when_cells_are_too_small():
    result = flow.bottlenecks(bottleneck_orders(ONE_CELL_SLOW), min_orders=4)
    # the X/N cell has 3 < 4 orders; carrier X (6 orders, 150 h excess, the other 6
    # orders at pace 0 -> avoidable 150) and region N (same) are listed; ties by name
    assert list(zip(result["dimension"], result["value"], strict=True)) == [
        ("carrier", "X"),
        ("region", "N"),
    ]
    assert result["avoidable_h"].tolist() == pytest.approx([150.0, 150.0])
    assert result["median_h"].tolist() == [30.0, 30.0]  # X: 10 10 10 50 60 70
    assert result["dimension_2"].tolist() == [None, None]
    assert result["value_2"].tolist() == [None, None]


def test_bottleneck_broad_carrier_problem_is_not_split_into_cells():
    transit = {
        ("X", "N"): [30, 30, 30],
        ("X", "S"): [30, 30, 30],
        ("Y", "N"): [10, 10, 10],
        ("Y", "S"): [10, 10, 10],
    }
    result = flow.bottlenecks(bottleneck_orders(transit), min_orders=2)
    # overall median (10 + 30) / 2 = 20; excess 10 on each X order -> 60 h in total.
    # Carrier X: 60 h, other orders (Y) at pace 0 -> avoidable 60. Region N: 30 h, other
    # orders (S) at 30 / 6 = 5 h each -> 30 - 6 * 5 = 0, no finding. Cell X/N: the rest
    # of X (X/S) is as slow as the cell, so the cell is not the problem.
    assert len(result) == 1
    top = result.iloc[0]
    assert (top["dimension"], top["value"], top["dimension_2"]) == ("carrier", "X", None)
    assert top["avoidable_h"] == pytest.approx(60.0)
    assert top["excess_delay_h"] == pytest.approx(60.0)
    assert top["affected_orders"] == 6
    assert (top["median_h"], top["overall_median_h"]) == (30.0, 20.0)


def test_bottleneck_window_takes_orders_by_stage_end_event():
    slow_last_week = bottleneck_orders({("Y", "S"): [200, 200, 200]})
    slow_last_week["created_at"] -= pd.Timedelta(days=7)
    slow_last_week["paid_at"] -= pd.Timedelta(days=7)
    slow_last_week["shipped_at"] -= pd.Timedelta(days=7)
    slow_last_week["delivered_at"] = slow_last_week["shipped_at"] + pd.Timedelta(hours=20)
    # delivered Monday 09:00 + 11 h + 20 h - 7 days: in the week before, so out of scope
    orders = pd.concat([bottleneck_orders(ONE_CELL_SLOW), slow_last_week], ignore_index=True)
    orders["order_id"] = [f"O{i:03d}" for i in range(len(orders))]
    week = IsoWeek(2026, 2).window(TZ)
    result = flow.bottlenecks(orders, window=week, min_orders=2)
    assert len(result) == 1
    top = result.iloc[0]
    assert (top["value"], top["value_2"], top["orders"]) == ("X", "N", 3)
    assert (top["overall_median_h"], top["excess_delay_h"]) == (10.0, pytest.approx(150.0))


def test_bottleneck_min_share_drops_small_findings():
    orders = bottleneck_orders(ONE_CELL_SLOW)
    # the only finding holds all of the stage's 150 excess hours: share 1.0
    assert len(flow.bottlenecks(orders, min_orders=2, min_share=1.0)) == 1
    assert flow.bottlenecks(orders, min_orders=2, min_share=1.01).empty


def test_bottleneck_rejects_unknown_dimension():
    with pytest.raises(ValueError, match="unknown dimension"):
        flow.bottlenecks(bottleneck_orders(ONE_CELL_SLOW), dimensions=["courier"])


@pytest.mark.parametrize(
    ("dimension", "value", "en", "zh"),
    [
        ("weekday", 4, "for orders created on Fri", "周五下单"),
        ("hour", 9, "for orders created at 09:00", "09 点下单"),
        ("order_type", "special", "for Special orders", "特殊订单"),
        ("warehouse", "WH1", "from warehouse WH1", "仓库 WH1"),
    ],
)
def test_segment_phrases(dimension, value, en, zh):
    assert flow.segment_phrase(dimension, value, "en") == en
    assert flow.segment_phrase(dimension, value, "zh-CN") == zh


def test_segment_phrases_name_the_codes_the_params_name():
    names = {("warehouse", "WH1"): {"en": "East hub", "zh-CN": "华东仓"}}

    def label(dimension: str, code: str, lang: str) -> str:
        return names.get((dimension, code), {}).get(lang, code)

    assert flow.segment_phrase("warehouse", "WH1", "en", label) == "from warehouse East hub"
    assert flow.segment_phrase("warehouse", "WH1", "zh-CN", label) == "仓库 华东仓"
    assert flow.segment_phrase("warehouse", "WH2", "en", label) == "from warehouse WH2"
    # the translated dimensions keep their own names
    assert flow.segment_phrase("weekday", 4, "en", label) == "for orders created on Fri"


def test_labelled_translates_names_and_headings():
    shown = flow.labelled(flow_engine.directly_follows(make_log(FLOW_ROWS)), "zh-CN")
    assert list(shown.columns[:4]) == ["前一环节", "后一环节", "订单数", "流转次数"]
    assert shown.iloc[0, :2].tolist() == ["下单", "支付"]


# --- inputs are left alone -----------------------------------------------------------------


def test_inputs_not_mutated():
    orders = bottleneck_orders(ONE_CELL_SLOW)
    log = make_log(LOOP_ROWS).sample(frac=1.0, random_state=4)
    events = log.rename(columns={"case_id": "order_id"})
    copies = [orders.copy(deep=True), log.copy(deep=True), events.copy(deep=True)]
    flow.event_log(orders)
    flow.event_log(orders, events)
    flow_engine.directly_follows(log, start_end=True)
    flow.variants(log)
    flow.rework(log)
    flow.stage_frame(orders, ship_sla_hours=24)
    flow.bottlenecks(orders, min_orders=2)
    for before, after in zip(copies, [orders, log, events], strict=True):
        pd.testing.assert_frame_equal(before, after)


# --- findings: new this week, usual bottlenecks, echoes, mix-shift traps ---------------------

from tests import incidents as inc  # noqa: E402


def _new_roots(found: pd.DataFrame) -> pd.DataFrame:
    return found[(found["group"] == "new") & (found["rank"] > 0)].reset_index(drop=True)


def _segment(row) -> dict:
    seg = {row.dimension: row.value}
    if isinstance(row.dimension_2, str):
        seg[row.dimension_2] = row.value_2
    return seg


def _rank_of(found: pd.DataFrame, stage: str, segment: dict) -> int | None:
    """Rank in "New this week" of the root finding of ``stage`` naming ``segment``."""
    for row in _new_roots(found).itertuples(index=False):
        if row.stage == stage and _segment(row) == segment:
            return int(row.rank)
    return None


@pytest.fixture(scope="module")
def warehouse_and_transit() -> pd.DataFrame:
    """WH-B handling x2.2 and C3 -> R2 transit x2.5 in the report week."""
    return inc.orders(inc.Incidents(warehouse_handling=("WH-B", 2.2), transit=("C3", "R2", 2.5)))


def test_warehouse_and_carrier_region_incidents_are_the_new_findings(warehouse_and_transit):
    found = flow.week_findings(warehouse_and_transit, inc.weeks())
    assert _rank_of(found, "paid_shipped", {"warehouse": "WH-B"}) in (1, 2)
    assert _rank_of(found, "shipped_delivered", {"carrier": "C3", "region": "R2"}) in (1, 2)
    # nothing else is new: the weekday, channel and order-type echoes of the slow
    # warehouse are folded into it, the carrier and the region into their cell
    assert len(_new_roots(found)) == 2
    folded = found[(found["group"] == "new") & (found["folded_into"] != "")]
    wh_id = _new_roots(found).set_index("stage").loc["paid_shipped", "id"]
    echoes = folded[folded["stage"] == "paid_shipped"]
    assert len(echoes) and (echoes["folded_into"] == wh_id).all()
    assert "from warehouse WH-B" in set(echoes["driven_by"])
    alone = echoes[echoes["dimension_2"].isna()]
    assert {"weekday", "order_type"} <= set(alone["dimension"])


def test_findings_name_the_segments_as_the_params_do(warehouse_and_transit):
    names = {"WH-B": "B 仓", "C3": "三号快递", "R2": "二区"}

    def label(dimension: str, code: str, lang: str) -> str:
        return names.get(code, code) if lang == "zh-CN" else code

    plain = flow.week_findings(warehouse_and_transit, inc.weeks(), lang="zh-CN")
    found = flow.week_findings(warehouse_and_transit, inc.weeks(), lang="zh-CN", label=label)
    # the same findings, their codes kept: only the words change
    columns = [c for c in flow.FINDING_COLUMNS if c not in ("finding", "driven_by")]
    pd.testing.assert_frame_equal(found[columns], plain[columns])
    assert {"WH-B", "C3"} <= set(found["value"])
    roots = _new_roots(found)
    assert any("仓库 B 仓" in f for f in roots["finding"]), roots["finding"].tolist()
    assert any("承运商 三号快递" in f and "区域 二区" in f for f in roots["finding"])
    assert not any("WH-B" in f or "C3" in f for f in found["finding"])
    assert "仓库 B 仓" in set(found["driven_by"])


def test_added_delay_is_the_injected_size(warehouse_and_transit):
    # handling x2.2: the report week's WH-B orders spend about 1.2 x their usual hours
    # more (less, where the week's end cuts the stage short)
    found = flow.week_findings(warehouse_and_transit, inc.weeks())
    row = _new_roots(found).set_index("stage").loc["paid_shipped"]
    assert 1.4 < row["hours_h"] / row["baseline_h"] < 2.2
    orders = warehouse_and_transit
    report = inc.weeks()[-1]
    paid = report.contains(orders["paid_at"]).fillna(False) & (orders["warehouse"] == "WH-B")
    assert row["orders"] == int(paid.sum())


def test_a_slow_upstream_stage_does_not_make_a_later_stage_look_slow():
    # WH-B ships at x3 in the report week: fewer of its orders ship, and the week's
    # deliveries lean on parcels shipped earlier. Ranked by the week the stage ENDED,
    # its transit looks slow for some creation weekdays; it is not (transit has no
    # warehouse effect), and no transit finding may name it.
    orders = inc.orders(inc.Incidents(warehouse_handling=("WH-B", 3.0)), seed=9)
    weeks = inc.weeks()
    by_end = flow.bottlenecks(orders, weeks[-1], top=None)
    trap = by_end[
        (by_end["stage"] == "shipped_delivered")
        & ((by_end["value"] == "WH-B") | (by_end["value_2"] == "WH-B"))
    ]
    assert len(trap), "the trap is set: by end week, WH-B's transit reads slow"
    found = flow.week_findings(orders, weeks)
    new = _new_roots(found)
    assert (new["stage"] == "paid_shipped").all(), new["finding"].tolist()
    assert _rank_of(found, "paid_shipped", {"warehouse": "WH-B"}) == 1
    named = found[(found["stage"] == "shipped_delivered") & (found["group"] == "new")]
    assert not ((named["value"] == "WH-B") | (named["value_2"] == "WH-B")).any()


def test_order_type_and_weekday_incidents_are_in_the_top_three():
    orders = inc.orders(
        inc.Incidents(type_handling=("special", 2.0), weekday_handling=(3, 2.0)), seed=7
    )
    found = flow.week_findings(orders, inc.weeks())
    assert _rank_of(found, "paid_shipped", {"order_type": "special"}) in (1, 2, 3)
    assert _rank_of(found, "paid_shipped", {"weekday": "Thu"}) in (1, 2, 3)
    # the special orders created on Thursday are an echo of either, not a third finding
    assert len(_new_roots(found)) == 2, _new_roots(found)["finding"].tolist()


def test_a_quiet_week_has_nothing_new_and_the_usual_bottleneck_stays_usual():
    orders = inc.orders(inc.Incidents(), seed=3)
    found = flow.week_findings(orders, inc.weeks())
    assert _new_roots(found).empty, _new_roots(found)["finding"].tolist()
    usual = found[(found["group"] == "usual") & (found["rank"] > 0)]
    # region R4 transit runs at 1.6 x: the first usual bottleneck
    first = usual.iloc[0]
    assert (first["stage"], first["dimension"], first["value"]) == (
        "shipped_delivered",
        "region",
        "R4",
    )
    assert first["hours_h"] > (1 + flow.FindingRules().margin) * first["overall_h"]


def test_materiality_keeps_small_slowdowns_out():
    # WH-B handling x1.05: real but within the 10 % margin of its own baseline
    orders = inc.orders(inc.Incidents(warehouse_handling=("WH-B", 1.05)), seed=4)
    found = flow.week_findings(orders, inc.weeks())
    assert _rank_of(found, "paid_shipped", {"warehouse": "WH-B"}) is None
    looser = flow.FindingRules(margin=0.0, min_hours=0.0, min_z=2.0, min_share=0.0)
    relaxed = flow.week_findings(orders, inc.weeks(), looser)
    assert _rank_of(relaxed, "paid_shipped", {"warehouse": "WH-B"}) is not None


def test_cohort_hours_by_hand():
    # two baseline weeks and a report week; one segment; handling starts at payment
    weeks = [IsoWeek.parse(w).window(TZ) for w in ("2026-W02", "2026-W03", "2026-W04")]
    mon = [w.start for w in weeks]
    h = pd.Timedelta(hours=1)
    rows = [
        # baseline: paid Monday 01:00, shipped after 10 h (both weeks)
        ("a", mon[0] + h, mon[0] + 11 * h),
        ("b", mon[1] + h, mon[1] + 11 * h),
        # report week: paid Monday 01:00, still unshipped at the export: counted up to
        # the week's end, 167 h
        ("c", mon[2] + h, None),
    ]
    orders = pd.DataFrame(
        {
            "order_id": pd.Series([r[0] for r in rows], dtype="str"),
            "created_at": pd.Series([r[1] for r in rows]),
            "paid_at": pd.Series([r[1] for r in rows]),
            "shipped_at": pd.Series([r[2] for r in rows], dtype=f"datetime64[ns, {TZ}]"),
            "warehouse": pd.Categorical(["W", "W", "W"]),
        }
    )
    data = flow.cohort_sums(orders, weeks, dimensions=("warehouse",), stages=("paid_shipped",))
    total = data.totals["paid_shipped"]
    # this week: 1 order, 167 h, expected 10 h (same start slot before); baseline 2 x 10 h
    assert total[:3].tolist() == [1.0, 167.0, 10.0]
    assert total[4:7].tolist() == [2.0, 20.0, 20.0]


def test_a_sampled_baseline_keeps_the_week_whole_and_the_baseline_close(warehouse_and_transit):
    orders, weeks = warehouse_and_transit, inc.weeks()
    full = flow.cohort_sums(orders, weeks, baseline_orders=None)
    sampled = flow.cohort_sums(orders, weeks, baseline_orders=5000)  # about every 4th
    for stage in full.totals:
        # the report week's cohort is never sampled (its expected hours come from the
        # sampled baseline's slot means)
        assert sampled.totals[stage][:2] == pytest.approx(full.totals[stage][:2])
        assert sampled.totals[stage][2] == pytest.approx(full.totals[stage][2], rel=0.05)
        # the baseline's counts and hours, scaled back, within a few per cent
        assert sampled.totals[stage][4:7] == pytest.approx(full.totals[stage][4:7], rel=0.05)
    found = flow.week_findings(orders, weeks, data=sampled)
    assert _rank_of(found, "paid_shipped", {"warehouse": "WH-B"}) in (1, 2)
    assert _rank_of(found, "shipped_delivered", {"carrier": "C3", "region": "R2"}) in (1, 2)
