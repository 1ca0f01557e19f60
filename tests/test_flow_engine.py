"""Tests of meetinglib.analysis.flow_engine: the directly-follows graph as an engine expression.

Figures are worked out by hand in the comments, or computed by an independent plain
Python walk over the events (``reference_edges``); the same expression on Spark must
give DuckDB's figures (marked ``spark``; one local session for the whole run).
"""

from __future__ import annotations

import math
import random
import sys
from collections import defaultdict

import pandas as pd
import pytest

from meetinglib.analysis import flow, flow_engine
from meetinglib.core.errors import InputDataError
from meetinglib.data import engine
from tests.test_flow import FLOW_ROWS, LOOP_ROWS, make_log

# source, target, cases, count, mean_h, median_h, p90_h (P90 by linear interpolation:
# position 0.9 * (n - 1) in the sorted hours)
FLOW_EDGES = [
    # hours 1, 3, 2 -> mean 2; sorted 1 2 3: median 2; P90 at 1.8: 2 + 0.8 * (3 - 2) = 2.8
    ("created", "paid", 3, 3, 2.0, 2.0, 2.8),
    # hours 4, 10, 2 -> mean 16/3; sorted 2 4 10: median 4; P90 at 1.8: 4 + 0.8 * 6 = 8.8
    ("paid", "shipped", 3, 3, 16 / 3, 4.0, 8.8),
    # hours 24, 48 -> mean 36, median 36; P90 at 0.9: 24 + 0.9 * 24 = 45.6
    ("shipped", "delivered", 2, 2, 36.0, 36.0, 45.6),
    # hours 6
    ("created", "cancelled", 1, 1, 6.0, 6.0, 6.0),
]


def edges_frame(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=flow_engine.DFG_COLUMNS)
    frame["source"] = frame["source"].astype("str")
    frame["target"] = frame["target"].astype("str")
    return frame.astype({"cases": "int64", "count": "int64"})


# --- the hand-worked logs of test_flow ------------------------------------------------


def test_directly_follows_counts_and_hours():
    result = flow_engine.directly_follows(make_log(FLOW_ROWS))
    pd.testing.assert_frame_equal(result, edges_frame(FLOW_EDGES))


@pytest.mark.parametrize(("seed", "id_dtype"), [(1, "str"), (2, "str"), (3, "object")])
def test_directly_follows_sorts_out_of_order_rows_first(seed, id_dtype):
    shuffled = make_log(FLOW_ROWS).sample(frac=1.0, random_state=seed)
    shuffled["case_id"] = shuffled["case_id"].astype(id_dtype)
    result = flow_engine.directly_follows(shuffled)
    pd.testing.assert_frame_equal(result, edges_frame(FLOW_EDGES))


def test_directly_follows_sorts_rows_within_cases():
    # cases in order, but c2's rows listed last event first
    rows = [r for r in FLOW_ROWS if r[0] != "c2"]
    rows[4:4] = [r for r in FLOW_ROWS if r[0] == "c2"][::-1]
    result = flow_engine.directly_follows(make_log(rows))
    pd.testing.assert_frame_equal(result, edges_frame(FLOW_EDGES))


def test_directly_follows_start_and_end_edges():
    result = flow_engine.directly_follows(make_log(FLOW_ROWS), start_end=True)
    ends = result[(result["source"] == flow.START) | (result["target"] == flow.END)]
    got = {(s, t): (c, n) for s, t, c, n in ends[["source", "target", "cases", "count"]].values}
    # every case starts with created; last events: c1, c2 delivered; c3 shipped;
    # c4 cancelled; c5 (one event) created
    assert got == {
        (flow.START, "created"): (5, 5),
        ("delivered", flow.END): (2, 2),
        ("shipped", flow.END): (1, 1),
        ("cancelled", flow.END): (1, 1),
        ("created", flow.END): (1, 1),
    }
    assert ends[["mean_h", "median_h", "p90_h"]].isna().all().all()


def test_directly_follows_equal_timestamps_follow_rank():
    # shipped and delivered recorded in the same minute, delivered listed first
    log = make_log([("x", "created", 0), ("x", "delivered", 5), ("x", "shipped", 5)])
    result = flow_engine.directly_follows(log)
    pairs = list(zip(result["source"], result["target"], strict=True))
    assert pairs == [("created", "shipped"), ("shipped", "delivered")]
    assert result["mean_h"].tolist() == [5.0, 0.0]


def test_directly_follows_with_loops_counts_each_transition():
    # rows by count, ties in business order of source, then target
    result = flow_engine.directly_follows(make_log(LOOP_ROWS))
    expected = edges_frame(
        [
            # r1 0 -> 1, r2 0 -> 2, r3 0 -> 1: hours 1, 2, 1; sorted 1 1 2: median 1,
            # P90 at 1.8: 1 + 0.8 * 1 = 1.8
            ("created", "picked", 3, 3, 4 / 3, 1.0, 1.8),
            # r1 1 -> 2, r1 3 -> 5, r2 2 -> 3: hours 1, 2, 1 in 2 cases
            ("picked", "packed", 2, 3, 4 / 3, 1.0, 1.8),
            # r3 1 -> 2, 2 -> 4: hours 1, 2 in one case; P90 at 0.9: 1 + 0.9 = 1.9
            ("picked", "picked", 1, 2, 1.5, 1.5, 1.9),
            # r1 5 -> 6, r2 3 -> 4
            ("packed", "shipped", 2, 2, 1.0, 1.0, 1.0),
            # r1 2 -> 3
            ("packed", "picked", 1, 1, 1.0, 1.0, 1.0),
        ]
    )
    pd.testing.assert_frame_equal(result, expected)


def test_directly_follows_of_single_event_cases_is_empty():
    result = flow_engine.directly_follows(make_log([("a", "created", 0), ("b", "created", 1)]))
    assert result.empty
    assert list(result.columns) == flow_engine.DFG_COLUMNS


def test_many_unknown_activities_in_alphabetical_order():
    # 70 activity names unknown to the business order; case m walks a00 .. a69 one hour
    # apart and repeats a00; case n does a00 > a01 in 2 h
    chain = [("m", f"a{i:02d}", i) for i in range(70)] + [("m", "a00", 70)]
    log = make_log([*chain, ("n", "a00", 0), ("n", "a01", 2)])
    dfg = flow_engine.directly_follows(log)
    assert len(dfg) == 70  # a00>a01 .. a68>a69, a69>a00
    # a00 > a01 has count 2; the other edges (count 1) in name order of source
    assert dfg["source"].tolist() == ["a00", *[f"a{i:02d}" for i in range(1, 70)]]
    byedge = dfg.set_index(["source", "target"])
    # hours 1 and 2: mean 1.5, median 1.5, P90 at 0.9: 1 + 0.9 * 1 = 1.9
    assert byedge.loc[("a00", "a01")].tolist() == pytest.approx([2, 2, 1.5, 1.5, 1.9])
    assert byedge.loc[("a69", "a00")].tolist() == pytest.approx([1, 1, 1.0, 1.0, 1.0])


# --- more hand-worked logs ---------------------------------------------------------------


def test_one_edge_repeated_in_a_case_counts_the_case_once():
    # p: picked 0, packed 1, picked 3, packed 6 -> picked > packed twice (1 h, 3 h),
    # packed > picked once (2 h); q: picked 0, packed 2
    log = make_log(
        [
            ("p", "picked", 0),
            ("p", "packed", 1),
            ("p", "picked", 3),
            ("p", "packed", 6),
            ("q", "picked", 0),
            ("q", "packed", 2),
        ]
    )
    expected = edges_frame(
        [
            # hours 1, 3, 2: sorted 1 2 3, mean 2, median 2, P90 at 1.8: 2 + 0.8 = 2.8
            ("picked", "packed", 2, 3, 2.0, 2.0, 2.8),
            ("packed", "picked", 1, 1, 2.0, 2.0, 2.0),
        ]
    )
    pd.testing.assert_frame_equal(flow_engine.directly_follows(log), expected)


def test_ties_put_known_activities_first_then_other_names_alphabetically():
    # at hour 1 four events: paid (known) first, then alpha, zeta by name; listed backwards
    log = make_log(
        [
            ("u", "zeta", 1),
            ("u", "alpha", 1),
            ("u", "paid", 1),
            ("u", "created", 0),
            ("u", "shipped", 3),
        ]
    )
    dfg = flow_engine.directly_follows(log)
    pairs = list(zip(dfg["source"], dfg["target"], dfg["mean_h"], strict=True))
    # every edge once; ties by business order of source: created, paid, shipped... then
    # alpha, zeta
    assert pairs == [
        ("created", "paid", 1.0),
        ("paid", "alpha", 0.0),
        ("alpha", "zeta", 0.0),
        ("zeta", "shipped", 2.0),
    ]


def test_quantiles_interpolate_between_ranks():
    # ten cases created > paid after 10, 9, ..., 1 hours (listed in that order)
    log = make_log(
        [row for i in range(10) for row in ((f"c{i}", "created", 0), (f"c{i}", "paid", 10 - i))]
    )
    row = flow_engine.directly_follows(log).iloc[0]
    # sorted 1..10: mean 5.5; median at 4.5: 5 + 0.5 * 1 = 5.5; P90 at 8.1: 9 + 0.1 * 1 = 9.1
    assert row[["cases", "count"]].tolist() == [10, 10]
    assert row[["mean_h", "median_h", "p90_h"]].tolist() == pytest.approx(
        [5.5, 5.5, 9.1], rel=1e-12
    )


def test_single_event_cases_have_only_start_and_end_edges():
    log = make_log([("a", "created", 0), ("b", "created", 1), ("c", "paid", 2)])
    dfg = flow_engine.directly_follows(log, start_end=True)
    got = list(zip(dfg["source"], dfg["target"], dfg["cases"], dfg["count"], strict=True))
    # count descending, then START first, END last
    assert got == [
        (flow.START, "created", 2, 2),
        ("created", flow.END, 2, 2),
        (flow.START, "paid", 1, 1),
        ("paid", flow.END, 1, 1),
    ]


def test_durations_are_exact_to_the_microsecond_across_a_clock_change():
    # Berlin moves its clocks forward at 02:00 on 2026-03-29: 01:30 CET to 03:30 CEST is
    # one hour; 250 ms and 1 us later come the next events
    start = pd.Timestamp("2026-03-29 01:30", tz="Europe/Berlin")
    paid = pd.Timestamp("2026-03-29 03:30", tz="Europe/Berlin")
    log = pd.DataFrame(
        {
            "case_id": ["x", "x", "x"],
            "activity": ["created", "paid", "shipped"],
            "timestamp": pd.Series([start, paid, paid + pd.Timedelta(milliseconds=250)]).dt.as_unit(
                "us"
            ),
        }
    )
    log.loc[2, "timestamp"] += pd.Timedelta(microseconds=1)
    dfg = flow_engine.directly_follows(log).set_index(["source", "target"])
    assert dfg.loc[("created", "paid"), "mean_h"] == 1.0
    assert dfg.loc[("paid", "shipped"), "mean_h"] == 250_001 / 3_600_000_000


def test_nanoseconds_are_dropped_to_the_microsecond():
    # 1 h + 999 ns: the engines read times to the microsecond
    log = make_log([("n", "created", 0), ("n", "paid", 1)])
    log["timestamp"] = log["timestamp"].dt.as_unit("ns")
    log.loc[1, "timestamp"] += pd.Timedelta(nanoseconds=999)
    assert flow_engine.directly_follows(log)["mean_h"].tolist() == [1.0]


def test_empty_log_gives_an_empty_graph_with_the_columns():
    empty = make_log([])
    for start_end in (False, True):
        dfg = flow_engine.directly_follows(empty, start_end=start_end)
        assert dfg.empty
        assert list(dfg.columns) == flow_engine.DFG_COLUMNS


def test_an_empty_cell_is_refused_with_the_rule():
    log = make_log(FLOW_ROWS)
    log.loc[3, "activity"] = None
    with pytest.raises(InputDataError, match=r"event log: column 'activity' is empty in 1 row"):
        flow_engine.directly_follows(log)


# --- against an independent computation --------------------------------------------------


def _quantile(values: list[float], q: float) -> float:
    """Linear interpolation at q * (n - 1) of the sorted values."""
    pos = q * (len(values) - 1)
    low = math.floor(pos)
    if low + 1 >= len(values):
        return values[low]
    return values[low] + (values[low + 1] - values[low]) * (pos - low)


def reference_edges(log: pd.DataFrame, start_end: bool = False) -> pd.DataFrame:
    """The graph by a plain walk over each case's events, sorted in Python."""
    names = flow.activity_order(sorted(set(log["activity"].astype(str))))
    rank = {name: i for i, name in enumerate(names)}
    cases: dict[str, list[tuple[pd.Timestamp, int, str]]] = defaultdict(list)
    for case, activity, ts in zip(
        log["case_id"], log["activity"].astype(str), log["timestamp"], strict=True
    ):
        cases[str(case)].append((ts, rank[activity], activity))
    hours: dict[tuple[str, str], list[float]] = defaultdict(list)
    seen: dict[tuple[str, str], set[str]] = defaultdict(set)
    ends: dict[tuple[str, str], int] = defaultdict(int)
    for case, events in cases.items():
        events.sort()
        for (t1, _, a), (t2, _, b) in zip(events, events[1:], strict=False):
            hours[(a, b)].append((t2 - t1) / pd.Timedelta(hours=1))
            seen[(a, b)].add(case)
        ends[(flow.START, events[0][2])] += 1
        ends[(events[-1][2], flow.END)] += 1
    rows = []
    for (a, b), values in hours.items():
        values.sort()
        mean = sum(values) / len(values)
        median, p90 = _quantile(values, 0.5), _quantile(values, 0.9)
        rows.append((a, b, len(seen[(a, b)]), len(values), mean, median, p90))
    if start_end:
        nan = float("nan")
        rows += [(a, b, n, n, nan, nan, nan) for (a, b), n in ends.items()]
    return flow_engine.finish_edges(pd.DataFrame(rows, columns=flow_engine.DFG_COLUMNS))


def random_log(seed: int, cases: int = 300) -> pd.DataFrame:
    """Cases of 1-7 events: known and unknown activities, quarter hours (many ties), loops."""
    rng = random.Random(seed)
    names = ["created", "paid", "picked", "packed", "shipped", "delivered", "hold", "audit"]
    rows = []
    for c in range(cases):
        for _ in range(rng.randint(1, 7)):
            rows.append((f"k{c:04d}", rng.choice(names), rng.randint(0, 30) / 4))
    rng.shuffle(rows)
    return make_log(rows)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_logs_equal_the_independent_walk(seed):
    log = random_log(seed)
    got = flow_engine.directly_follows(log, start_end=True)
    pd.testing.assert_frame_equal(got, reference_edges(log, start_end=True), rtol=1e-12)


@pytest.fixture(scope="module")
def sample_log(sample) -> pd.DataFrame:
    """The event log of the shared 4-week sample (events table plus the return steps)."""
    tables = {name: pd.read_parquet(path) for name, path in sample.files.items()}
    return flow.event_log(tables["orders"], tables["events"], tables["after_sales"])


def test_sample_graph_equals_the_independent_walk(sample_log):
    got = flow_engine.directly_follows(sample_log, start_end=True)
    assert got["count"].sum() > len(sample_log)  # transitions plus start and end edges
    expected = reference_edges(sample_log, start_end=True)
    pd.testing.assert_frame_equal(got, expected, rtol=1e-12)


# --- the same expression on Spark ----------------------------------------------------------


@pytest.mark.spark
def test_spark_gives_the_hand_worked_figures(spark_engine):
    got = flow_engine.directly_follows_on(spark_engine, make_log(FLOW_ROWS))
    pd.testing.assert_frame_equal(got, edges_frame(FLOW_EDGES), rtol=1e-12)


@pytest.mark.spark
def test_spark_durations_are_exact_to_the_microsecond(spark_engine):
    # 1 h across Berlin's clock change, then 250 ms + 1 us (as on DuckDB above)
    paid = pd.Timestamp("2026-03-29 03:30", tz="Europe/Berlin")
    stamps = [paid - pd.Timedelta(hours=1), paid, paid + pd.Timedelta(microseconds=250_001)]
    log = pd.DataFrame(
        {
            "case_id": ["x", "x", "x"],
            "activity": ["created", "paid", "shipped"],
            "timestamp": pd.Series(stamps).dt.as_unit("us"),
        }
    )
    got = flow_engine.directly_follows_on(spark_engine, log).set_index(["source", "target"])
    assert got.loc[("created", "paid"), "mean_h"] == 1.0
    assert got.loc[("paid", "shipped"), "mean_h"] == 250_001 / 3_600_000_000


@pytest.mark.spark
def test_spark_equals_duckdb(spark_engine, sample_log):
    """The sample's graph on Spark: counts exact, hours within 1e-9 relative of DuckDB's."""
    duck = flow_engine.directly_follows_on(engine.shared(), sample_log, start_end=True)
    spark = flow_engine.directly_follows_on(spark_engine, sample_log, start_end=True)
    assert len(duck) > 10
    pd.testing.assert_frame_equal(
        spark[["source", "target", "cases", "count"]],
        duck[["source", "target", "cases", "count"]],
    )
    pd.testing.assert_frame_equal(spark, duck, rtol=1e-9, atol=0)


def test_without_pyspark_the_spark_tests_skip_saying_what_to_install(monkeypatch):
    from tests import sparkutil

    monkeypatch.setitem(sys.modules, "pyspark.sql", None)  # import fails
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"pyspark is not installed; pip install"):
        sparkutil.start()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"must run on CI: pyspark is not installed"):
        sparkutil.start()
