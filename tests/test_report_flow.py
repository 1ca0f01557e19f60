"""Tests of meetinglib.report.flow_section: the week's events, trends, findings, charts, files."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest
from IPython.display import HTML, Image

from meetinglib.analysis import flow, flow_engine
from meetinglib.core.params import load_params
from meetinglib.core.weeks import IsoWeek, Window
from meetinglib.data import engine
from meetinglib.data.dataset import WeekData, load_week
from meetinglib.data.validate import QualityReport
from meetinglib.report.flow_section import (
    FlowSection,
    complete_history,
    segment_label,
    transitions_into,
    week_event_log,
    with_history,
)
from tests.conftest import SAMPLE_WEEK, write_params

TZ = "Asia/Shanghai"
WEEK = IsoWeek.parse("2026-W02")  # Monday 2026-01-05 to Monday 2026-01-12
WINDOW = WEEK.window(TZ)


def at(day: int, hour: float = 9) -> pd.Timestamp:
    """January ``day`` 2026, local time."""
    return pd.Timestamp(2026, 1, day, tz=TZ) + pd.Timedelta(hours=hour)


@pytest.fixture(scope="module")
def week_data(sample, tmp_path_factory) -> WeekData:
    folder = tmp_path_factory.mktemp("flow_section")
    return load_week(load_params(write_params(folder, sample.folder)), SAMPLE_WEEK)


@pytest.fixture(scope="module")
def section(week_data) -> FlowSection:
    return FlowSection(week_data, "en")


# --- which transitions belong to the week ------------------------------------------------


def test_transitions_into_keeps_the_event_before_the_first_one_in_the_week():
    rows = [
        # A: paid last week, shipped and delivered this week
        ("A", "created", at(1)),
        ("A", "paid", at(2)),
        ("A", "shipped", at(6)),
        ("A", "delivered", at(8)),
        # B: all before the week
        ("B", "created", at(1)),
        ("B", "paid", at(1, 10)),
        # C: created this week, paid after it
        ("C", "created", at(11, 23)),
        ("C", "paid", at(12, 1)),
        # D: created before, paid after: spans the week without an event in it
        ("D", "created", at(4)),
        ("D", "paid", at(13)),
    ]
    log = flow.event_log(
        pd.DataFrame(columns=["order_id", "created_at"]),
        pd.DataFrame(rows, columns=["order_id", "activity", "timestamp"]),
    )
    kept = transitions_into(log, WINDOW)
    assert list(zip(kept["case_id"], kept["activity"].astype(str), strict=True)) == [
        ("A", "paid"),
        ("A", "shipped"),
        ("A", "delivered"),
        ("C", "created"),
    ]
    edges = flow_engine.directly_follows(kept)
    # paid (Jan 2) -> shipped (Jan 6): 96 h; shipped -> delivered: 48 h
    assert edges[["source", "target", "cases", "median_h"]].values.tolist() == [
        ["paid", "shipped", 1, 96.0],
        ["shipped", "delivered", 1, 48.0],
    ]


def test_week_event_log_from_milestones_and_returns_when_no_events_table():
    nat = pd.NaT
    orders = pd.DataFrame(
        {
            "order_id": pd.Series(["O1", "O2", "O3"], dtype="str"),
            "created_at": [at(2), at(5), at(1)],
            "paid_at": pd.Series([at(2, 10), at(5, 9.5), at(1, 10)]),
            "shipped_at": pd.Series([at(5, 12), nat, at(2)], dtype=f"datetime64[ns, {TZ}]"),
            "delivered_at": pd.Series([nat, nat, at(3)], dtype=f"datetime64[ns, {TZ}]"),
        }
    )
    # O3 was delivered before the week; only its return request falls in it
    after_sales = pd.DataFrame(
        {
            "case_id": ["R1"],
            "order_id": ["O3"],
            "requested_at": [at(7)],
            "closed_at": pd.Series([nat], dtype=f"datetime64[ns, {TZ}]"),
        }
    )
    log = week_event_log({"orders": orders, "after_sales": after_sales}, WINDOW)
    got = [(c, str(a)) for c, a in zip(log["case_id"], log["activity"], strict=True)]
    assert got == [
        ("O1", "paid"),
        ("O1", "shipped"),
        ("O2", "created"),
        ("O2", "paid"),
        ("O3", "delivered"),
        ("O3", "return_requested"),
    ]


# --- trend against the previous weeks ------------------------------------------------------


def test_with_history_compares_each_segment_with_its_own_past():
    history = Window(at(1, -24 * 20), WINDOW.start)  # twenty days before the week
    day = at(1)
    carriers, hours = [], []
    for carrier, n, h in (("X", 40, 10.0), ("Y", 40, 10.0), ("Z", 10, 10.0), ("W", 40, 20.0)):
        carriers += [carrier] * n
        hours += [h] * n
    frame = pd.DataFrame(
        {
            "carrier": carriers,
            "region": "R",
            "shipped_delivered_h": hours,
            "delivered_at": [day] * len(hours),
        }
    )
    # a week's row of carrier X must not count as history
    frame.loc[len(frame)] = ["X", "R", 1000.0, at(6)]
    findings = pd.DataFrame(
        {
            "stage": "shipped_delivered",
            "dimension": "carrier",
            "value": ["X", "Y", "Z", "W"],
            "dimension_2": None,
            "value_2": None,
            # X: 12 / 10 = +20 % -> worse; Y: +5 % -> as before; W: 10 / 20 -> better
            "median_h": [12.0, 10.5, 30.0, 10.0],
        }
    )
    out = with_history(findings, frame, history)
    assert out["previous_orders"].tolist() == [40, 40, 10, 40]
    assert out["previous_median_h"].tolist() == [10.0, 10.0, 10.0, 20.0]
    assert out["trend"].tolist() == ["worse", "as_before", "no_history", "better"]
    assert "trend" not in findings.columns, "input not mutated"


# --- the section on the demo data ------------------------------------------------------------


def _has(found: pd.DataFrame, stage: str, segment: dict[str, str]) -> pd.DataFrame:
    """Findings of ``stage`` whose segment includes every dimension=value of ``segment``."""

    def holds(row) -> bool:
        seg = {row.dimension: row.value}
        if isinstance(row.dimension_2, str):
            seg[row.dimension_2] = row.value_2
        return all(seg.get(k) == v for k, v in segment.items())

    mask = [row.stage == stage and holds(row) for row in found.itertuples(index=False)]
    return found[mask]


def _roots(found: pd.DataFrame, group: str) -> pd.DataFrame:
    return found[(found["group"] == group) & (found["rank"] > 0)].reset_index(drop=True)


def test_injected_incidents_lead_new_this_week(section):
    new = _roots(section.bottlenecks, "new")
    assert len(new) <= section.top
    firsts = [
        (row.stage, {row.dimension: row.value, row.dimension_2: row.value_2})
        for row in new.head(2).itertuples(index=False)
    ]
    stages = {stage for stage, _ in firsts}
    assert stages == {"paid_shipped", "shipped_delivered"}
    for stage, segment in firsts:
        if stage == "paid_shipped":
            assert segment.get("warehouse") == "WH-South"
        else:
            assert segment.get("carrier") == "EastPost" and segment.get("region") == "South"
    # the injected transit is x2.5 from Tuesday: well above its own usual pace
    transit = new[new["stage"] == "shipped_delivered"].iloc[0]
    assert transit["hours_h"] > 1.3 * transit["baseline_h"]
    assert transit["added_delay_h"] > 0


def test_echoes_are_folded_into_their_root(section):
    found = section.bottlenecks
    folded = found[found["folded_into"] != ""]
    assert (folded["rank"] == 0).all()
    assert set(folded["folded_into"]) <= set(found.loc[found["rank"] > 0, "id"])
    assert (folded["driven_by"] != "").all()


def test_echo_examples_are_told_apart_in_both_languages(week_data, section):
    """A two-part segment joins its parts with 、 in Chinese: the examples themselves are
    separated by ；, so three examples read as three, not as six."""
    roots = section.bottlenecks[section.bottlenecks["rank"] > 0]
    shown = [min(len(section.echoes(str(i))), 3) for i in roots["id"]]
    assert max(shown) >= 2  # the sample's roots have several echoes to list
    for lang, sep, pattern in (
        ("en", "; ", r"e\.g\. (.*)\.</"),
        ("zh-CN", "；", r"例如：(.*)。</"),
    ):
        html = FlowSection(week_data, lang).findings().data
        listed = [m.split(sep) for m in re.findall(pattern, html)]
        assert sorted(len(x) for x in listed) == sorted(n for n in shown if n)


def test_quiet_weeks_find_nothing_new_in_the_incident_segments(quiet_sample, tmp_path_factory):
    folder = tmp_path_factory.mktemp("quiet_flow")
    data = load_week(load_params(write_params(folder, quiet_sample.folder)), SAMPLE_WEEK)
    new = _roots(FlowSection(data, "en").bottlenecks, "new")
    assert _has(new, "shipped_delivered", {"carrier": "EastPost", "region": "South"}).empty
    assert _has(new, "paid_shipped", {"warehouse": "WH-South"}).empty


def test_new_finding_hours_match_a_pandas_filter(section, week_data):
    orders = week_data.tables["orders"]
    row = _has(_roots(section.bottlenecks, "new"), "shipped_delivered", {"carrier": "EastPost"})
    # hours in transit of the cell's parcels shipped in the week, up to the week's end
    shipped = week_data.window.contains(orders["shipped_at"]).fillna(False)
    cell = orders[shipped & (orders["carrier"] == "EastPost") & (orders["region"] == "South")]
    left = cell["delivered_at"].where(cell["delivered_at"].notna(), week_data.window.end)
    if "cancelled_at" in cell:
        left = left.where(~(cell["cancelled_at"] < left), cell["cancelled_at"])
    left = left.where(left < week_data.window.end, week_data.window.end)
    hours = (left - cell["shipped_at"]).dt.total_seconds() / 3600
    assert row["hours_h"].iloc[0] == pytest.approx(hours.mean())
    assert row["orders"].iloc[0] == len(cell)


def _week_edges_by_pandas(data: WeekData) -> pd.DataFrame:
    """Transitions ending in the week, straight from the events and after-sales tables."""
    events = data.tables["events"][["order_id", "activity", "timestamp"]].astype({"activity": str})
    returns = data.tables["after_sales"]
    steps = [
        returns[["order_id", col]].rename(columns={col: "timestamp"}).assign(activity=name)
        for col, name in (("requested_at", "return_requested"), ("closed_at", "return_closed"))
    ]
    log = pd.concat([events, *steps], ignore_index=True).dropna(subset=["timestamp"])
    log["rank"] = log["activity"].map({a: i for i, a in enumerate(flow.ACTIVITY_ORDER)})
    log = log.sort_values(["order_id", "timestamp", "rank"])
    by_order = log.groupby("order_id")
    log["source"] = by_order["activity"].shift()
    log["since"] = by_order["timestamp"].shift()
    inside = log["timestamp"].ge(data.window.start) & log["timestamp"].lt(data.window.end)
    moves = log[inside & log["source"].notna()].copy()
    moves["hours"] = (moves["timestamp"] - moves["since"]).dt.total_seconds() / 3600
    out = moves.groupby(["source", "activity"]).agg(
        cases=("order_id", "nunique"),
        count=("hours", "size"),
        mean_h=("hours", "mean"),
        median_h=("hours", "median"),
        p90_h=("hours", lambda h: h.quantile(0.9)),
    )
    return out.reset_index().rename(columns={"activity": "target"})


def test_export_writes_the_edges_and_findings_of_the_same_computation(section, week_data, tmp_path):
    assert section.export(tmp_path) is None, "nothing to display in the handout"
    edges = pd.read_csv(tmp_path / "flow_edges.csv")
    assert list(edges.columns) == [
        "source",
        "target",
        "cases",
        "count",
        "mean_h",
        "median_h",
        "p90_h",
    ]
    expected = _week_edges_by_pandas(week_data)
    key = ["source", "target"]
    got = edges.sort_values(key).reset_index(drop=True)
    want = expected.sort_values(key).reset_index(drop=True)[got.columns]
    pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-9)
    found = pd.read_csv(tmp_path / "bottlenecks.csv", keep_default_na=False)
    assert found["finding"].tolist() == section.bottlenecks["finding"].tolist()
    for column in ("group", "baseline_h", "added_delay_h", "folded_into"):
        assert column in found.columns
    assert found["added_delay_h"].to_numpy() == pytest.approx(section.bottlenecks["added_delay_h"])
    weekdays = found.loc[found["dimension"] == "weekday", "value"].tolist()
    weekdays += found.loc[found["dimension_2"] == "weekday", "value_2"].tolist()
    assert weekdays and set(weekdays) <= {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}


def test_findings_written_first_are_not_written_again_by_export(week_data, tmp_path):
    section = FlowSection(week_data, "en")
    assert section.export_findings(tmp_path) is None
    path = tmp_path / "bottlenecks.csv"
    first = (path.stat().st_ino, path.read_bytes())
    assert not (tmp_path / "flow_edges.csv").exists(), "the findings alone, before the graph"
    section.export(tmp_path)
    # the file a reader may already be reading stays the one written whole at first
    assert (path.stat().st_ino, path.read_bytes()) == first
    assert (tmp_path / "flow_edges.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bottlenecks.csv", "flow_edges.csv"]
    # another folder, or another section, writes its own
    section.export(tmp_path / "other")
    assert (tmp_path / "other" / "bottlenecks.csv").read_bytes() == first[1]


# People's names for two of the sample's codes (params ``labels``).
LABELS = (
    "{carrier: {EastPost: {zh-CN: 东方邮政, en: East Post Co}},"
    " channel: {app: {zh-CN: 应用程序, en: Mobile app}}}"
)


@pytest.fixture(scope="module")
def labelled_data(sample, tmp_path_factory) -> WeekData:
    folder = tmp_path_factory.mktemp("flow_section_labels")
    return load_week(load_params(write_params(folder, sample.folder, labels=LABELS)), SAMPLE_WEEK)


@pytest.mark.parametrize(
    ("lang", "carrier", "channel", "code"),
    [
        ("zh-CN", "承运商 东方邮政", "渠道 应用程序", "承运商 EastPost"),
        ("en", "via carrier East Post Co", "in channel Mobile app", "via carrier EastPost"),
    ],
)
def test_findings_name_the_codes_as_the_params_do(
    labelled_data, tmp_path, lang, carrier, channel, code
):
    section = FlowSection(labelled_data, lang)
    shown = section.findings().data
    # the sentences and their echo examples
    assert carrier in shown and channel in shown
    assert code not in shown and " app" not in shown.replace("Mobile app", "")
    assert any(carrier in f for f in section.summary_findings(5))
    # the charts' rows name them too
    roots = section.bottlenecks[section.bottlenecks["rank"] > 0]
    east = next(r for r in roots.itertuples(index=False) if "EastPost" in (r.value, r.value_2))
    assert ("东方邮政" if lang == "zh-CN" else "East Post Co") in segment_label(
        east, lang, section.label
    )
    # bottlenecks.csv: codes in the value columns, the words in the sentences
    section.export(tmp_path)
    found = pd.read_csv(tmp_path / "bottlenecks.csv", keep_default_na=False)
    values = set(found["value"]) | set(found["value_2"])
    assert {"EastPost", "app"} <= values
    assert not values & {"东方邮政", "East Post Co", "应用程序", "Mobile app"}
    assert found["finding"].tolist() == section.bottlenecks["finding"].tolist()
    assert found["finding"].str.contains(carrier).any()
    assert not found["finding"].str.contains(code).any()
    assert found["driven_by"].str.contains(carrier).any()  # the echoes of its root


def test_display_pieces(section):
    assert isinstance(section.heading(), HTML)
    assert section.heading().data == '<h2 id="flow">Where the time goes</h2>'
    findings = section.findings()
    assert isinstance(findings, HTML)
    roots = section.bottlenecks[section.bottlenecks["rank"] > 0]
    assert findings.data.count("<li>") == len(roots)
    # the sample's extract starts three weeks before the report week; the first is partial
    assert section.previous_weeks == 1
    assert "New this week: slower than their own pace in the previous week" in findings.data
    assert "Usual bottlenecks" in findings.data
    worst, dfg = section.worst_segments_chart(), section.graph_chart()
    assert isinstance(worst, Image) and worst.data.startswith(b"\x89PNG")
    assert worst.metadata["alt"].startswith("Most delay added this week: ")
    assert dfg.metadata["alt"].startswith(f"Order flow in {SAMPLE_WEEK}: most time spent in ")
    assert "Shipped → Delivered" in dfg.metadata["alt"]


def test_section_in_simplified_chinese(week_data):
    zh = FlowSection(week_data, "zh-CN")
    assert zh.heading().data == '<h2 id="flow">时间花在哪里</h2>'
    assert "上一周" in zh.findings().data
    assert zh.graph_chart().metadata["alt"].startswith(f"{SAMPLE_WEEK} 订单流转")


def test_data_text_is_escaped_in_the_findings(week_data):
    orders = week_data.tables["orders"].copy()
    orders["carrier"] = orders["carrier"].cat.rename_categories({"EastPost": "<b>East&Post</b>"})
    tables = {**week_data.tables, "orders": orders}
    html = FlowSection(dataclasses.replace(week_data, tables=tables), "en").findings().data
    assert "&lt;b&gt;East&amp;Post&lt;/b&gt;" in html
    assert "<b>East" not in html


def _tiny_week(tmp_path, orders: pd.DataFrame) -> WeekData:
    params = load_params(write_params(tmp_path, tmp_path))
    return WeekData(params, WEEK, {"orders": orders}, QualityReport(), [])


def test_a_week_without_findings_or_transitions(tmp_path):
    n = 60
    created = [at(6)] * n
    orders = pd.DataFrame(
        {
            "order_id": pd.Series([f"O{i}" for i in range(n)], dtype="str"),
            "order_type": pd.Categorical(["normal"] * n),
            "created_at": created,
            "paid_at": [at(6, 10)] * n,  # every order equally fast: nothing stands out
            "carrier": pd.Categorical(np.where(np.arange(n) % 2, "A", "B")),
        }
    )
    calm = FlowSection(_tiny_week(tmp_path, orders), "en")
    assert "No complete earlier week" in calm.findings().data
    assert calm.worst_segments_chart().metadata["alt"] == "No slow segment to chart this week."
    assert calm.graph_chart().metadata["alt"].startswith("Order flow in 2026-W02")

    later = orders.assign(created_at=[at(20)] * n, paid_at=[at(20, 1)] * n)
    empty = FlowSection(_tiny_week(tmp_path, later), "en")
    assert empty.edges.empty
    assert empty.graph_chart().metadata["alt"] == (
        "No order moved from one step to the next in 2026-W02."
    )
    empty.export(tmp_path / "out")
    assert pd.read_csv(tmp_path / "out" / "flow_edges.csv").empty


def test_summary_names_root_findings_only(section):
    top = section.summary_findings(3)
    roots = section.bottlenecks[section.bottlenecks["rank"] > 0]
    assert top and set(top) <= set(roots["finding"])
    assert top[0] == section.group("new")["finding"].iloc[0]


def test_both_injected_incidents_lead_new_this_week_on_a_longer_sample(long_sample, tmp_path):
    data = load_week(load_params(write_params(tmp_path, long_sample.folder)), SAMPLE_WEEK)
    new = FlowSection(data, "en").group("new")
    firsts = {
        (r.stage, r.dimension, r.value, r.dimension_2 if isinstance(r.dimension_2, str) else None)
        for r in new.head(2).itertuples()
    }
    assert firsts == {
        ("paid_shipped", "warehouse", "WH-South", None),
        ("shipped_delivered", "carrier", "EastPost", "region"),
    }


# --- the graph on the engine ---------------------------------------------------------------


def _milestone_edges_by_pandas(orders: pd.DataFrame, returns: pd.DataFrame, window) -> pd.DataFrame:
    """Transitions ending in the week from the milestone columns and the return steps."""
    steps = [
        orders[["order_id", col]].rename(columns={col: "timestamp"}).assign(activity=name)
        for col, name in flow.MILESTONES.items()
    ]
    steps += [
        returns[["order_id", col]].rename(columns={col: "timestamp"}).assign(activity=name)
        for col, name in (("requested_at", "return_requested"), ("closed_at", "return_closed"))
    ]
    log = pd.concat(steps, ignore_index=True).dropna(subset=["timestamp"])
    log["order_id"] = log["order_id"].astype(str)
    log["rank"] = log["activity"].map({a: i for i, a in enumerate(flow.ACTIVITY_ORDER)})
    log = log.sort_values(["order_id", "timestamp", "rank"])
    by_order = log.groupby("order_id")
    log["source"] = by_order["activity"].shift()
    log["since"] = by_order["timestamp"].shift()
    inside = log["timestamp"].ge(window.start) & log["timestamp"].lt(window.end)
    moves = log[inside & log["source"].notna()].copy()
    moves["hours"] = (moves["timestamp"] - moves["since"]).dt.total_seconds() / 3600
    out = moves.groupby(["source", "activity"]).agg(
        cases=("order_id", "nunique"),
        count=("hours", "size"),
        mean_h=("hours", "mean"),
        median_h=("hours", "median"),
        p90_h=("hours", lambda h: h.quantile(0.9)),
    )
    return out.reset_index().rename(columns={"activity": "target"})


def test_week_graph_from_milestones_on_the_engine_equals_a_pandas_walk(week_data):
    tables = {name: week_data.tables[name] for name in ("orders", "after_sales")}
    data = WeekData(week_data.params, week_data.week, tables, QualityReport(), [])
    got = FlowSection(data, "en").edges
    want = _milestone_edges_by_pandas(tables["orders"], tables["after_sales"], data.window)
    assert len(got) >= 5 and got["count"].sum() > 1000
    key = ["source", "target"]
    got = got.sort_values(key).reset_index(drop=True)
    want = want.sort_values(key).reset_index(drop=True)[got.columns]
    pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-9)


def test_week_event_log_takes_engine_tables(week_data):
    from_frames = week_event_log(week_data.tables, week_data.window)
    from_engine = week_event_log(week_data.engine_tables(), week_data.window)
    pd.testing.assert_frame_equal(from_engine, from_frames)
    # the graph of that log is the section's graph
    edges = flow_engine.directly_follows(from_engine)
    pd.testing.assert_frame_equal(edges, FlowSection(week_data, "en").edges, rtol=1e-12)


def test_week_log_on_duckdb_numbers_each_case_once(week_data):
    start, end = week_data.window.start, week_data.window.end
    tables = week_data.engine_tables()
    numbered = engine.shared().to_pandas(flow_engine.week_log_expr(tables, start, end, "duckdb"))
    plain = engine.shared().to_pandas(flow_engine.week_log_expr(tables, start, end))
    assert "case_no" not in plain.columns
    # the same events, each case with one number of its own
    key = ["case_id", "activity", "timestamp"]
    pd.testing.assert_frame_equal(
        numbered[key].sort_values(key).reset_index(drop=True),
        plain[key].sort_values(key).reset_index(drop=True),
    )
    per_case = numbered.groupby("case_id")["case_no"].nunique()
    assert (per_case == 1).all()
    assert numbered.groupby("case_no")["case_id"].nunique().max() == 1
    assert len(per_case) > 100


@pytest.mark.spark
def test_week_graph_on_spark_equals_duckdb(spark_engine, section, week_data):
    """flow_edges.csv's figures on Spark: counts exact, hours within 1e-9 relative."""
    start, end = week_data.window.start, week_data.window.end
    log = flow_engine.week_log_expr(week_data.engine_tables(spark_engine), start, end)
    spark = flow_engine.directly_follows_on(spark_engine, log, ending_in=(start, end))
    duck = section.edges
    assert len(duck) > 5
    pd.testing.assert_frame_equal(
        spark[["source", "target", "cases", "count"]], duck[["source", "target", "cases", "count"]]
    )
    pd.testing.assert_frame_equal(spark, duck, rtol=1e-9, atol=0)


# --- the findings and the chart's statistics on the engine -----------------------------------


def _numpy_findings(data: WeekData, section: FlowSection) -> pd.DataFrame:
    """flow.week_findings from the orders frame (numpy cohort sums): the second method."""
    orders = data.tables["orders"]
    weeks = [*section.baseline_weeks, section.window]
    starts = [orders[c] for c in ("created_at", "paid_at", "shipped_at")]
    span = Window(weeks[0].start, section.window.end)
    taking_part = np.logical_or.reduce([span.contains(s).fillna(False).to_numpy() for s in starts])
    return flow.week_findings(orders[taking_part], weeks, section.rules, lang="en")


@pytest.mark.parametrize("fixture", ["sample", "quiet_sample", "long_sample"])
def test_findings_on_the_engine_equal_the_numpy_cohort_sums(fixture, request, tmp_path):
    sample = request.getfixturevalue(fixture)
    data = load_week(load_params(write_params(tmp_path, sample.folder)), SAMPLE_WEEK)
    section = FlowSection(data, "en")
    want = _numpy_findings(data, section)
    assert len(want) > 5
    pd.testing.assert_frame_equal(section.bottlenecks, want, rtol=1e-9)


def test_cohort_sums_on_the_engine_equal_numpy_per_segment(section, week_data):
    weeks = [*section.baseline_weeks, section.window]
    orders = week_data.tables["orders"]
    numpy_sums = flow.cohort_sums(orders, weeks)
    engine_sums = flow_engine.cohort_sums_on(section.engine, section.orders, weeks)
    assert engine_sums.dims == numpy_sums.dims
    for stage in flow.STAGES:
        np.testing.assert_allclose(engine_sums.totals[stage], numpy_sums.totals[stage], rtol=1e-9)
        for dim in numpy_sums.dims:
            # per value of the dimension, by name: the eight sums
            for i, value in enumerate(engine_sums.segs[dim].values):
                mine = engine_sums.sums[stage][engine_sums.cell_codes[dim] == i + 1].sum(axis=0)
                j = list(numpy_sums.segs[dim].values).index(value)
                theirs = numpy_sums.sums[stage][numpy_sums.cell_codes[dim] == j + 1].sum(axis=0)
                np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-9)


def test_stage_summaries_equal_numpy_quantiles_of_a_pandas_filter(section, week_data):
    orders = week_data.tables["orders"]
    window = week_data.window
    local = orders["created_at"].dt.tz_convert(week_data.tz)
    asks = [
        ("shipped_delivered", {"carrier": "EastPost", "region": "South"}, window),
        ("paid_shipped", {"weekday": "Tue", "hour": 10}, window),
        ("created_paid", {}, section.history),
        ("paid_shipped", {"warehouse": "nowhere"}, window),
    ]
    masks = [
        (orders["carrier"] == "EastPost") & (orders["region"] == "South"),
        (local.dt.day_of_week == 1) & (local.dt.hour == 10),
        pd.Series(True, index=orders.index),
        pd.Series(False, index=orders.index),
    ]
    got = flow_engine.stage_summaries(section.engine, section.orders, week_data.tz, asks)
    assert got["ask"].tolist() == [0, 1, 2, 3]
    # the section's shared local hours give the same figures as the asked orders' own
    shared = flow_engine.stage_summaries(
        section.engine, section.orders, week_data.tz, asks, local=section.local_span
    )
    pd.testing.assert_frame_equal(shared, got, check_exact=True)
    for (stage, _, win), mask, row in zip(asks, masks, got.itertuples(), strict=True):
        start, end = flow.STAGES[stage]
        rows = orders[mask & win.contains(orders[end]).fillna(False) & orders[start].notna()]
        hours = ((rows[end] - rows[start]).dt.total_seconds() / 3600).to_numpy()
        assert row.orders == len(hours)
        if len(hours) == 0:
            assert pd.isna(row.median_h)
            continue
        want = np.quantile(hours, [0.1, 0.25, 0.5, 0.75, 0.9])
        have = [row.p10_h, row.q1_h, row.median_h, row.q3_h, row.p90_h]
        np.testing.assert_allclose(have, want, rtol=1e-12)
    assert got["orders"].iloc[0] > 20 and got["orders"].iloc[1] > 5


def test_local_span_holds_every_quarter_hour_from_the_first_order_to_the_last(section, week_data):
    created = week_data.tables["orders"]["created_at"]
    span = section.local_span
    quarters = span["quarter"].to_numpy()
    assert (np.diff(quarters) == 1).all()  # no gap
    starts = created.dt.floor("15min")
    assert len(span) == (starts.max() - starts.min()) // pd.Timedelta(minutes=15) + 1
    # each order's quarter-hour is there, with the order's own local weekday and hour
    local = created.dt.tz_convert(week_data.tz)
    first = starts.min().tz_convert("UTC")
    row = ((starts.dt.tz_convert("UTC") - first) // pd.Timedelta(minutes=15)).to_numpy()
    names = np.array(flow.WEEKDAY_NAMES)
    assert (span["weekday"].to_numpy()[row] == names[local.dt.day_of_week.to_numpy()]).all()
    assert (span["hour"].to_numpy()[row] == local.dt.hour.to_numpy()).all()


def test_history_starts_as_from_the_orders_frame(section, week_data):
    earliest = week_data.history_weeks[0].start(week_data.tz)
    history = Window(earliest, week_data.window.start)
    assert section.history == complete_history(week_data.tables["orders"], history)
    assert section.history.start > earliest  # the sample's first week is partial


@pytest.mark.spark
def test_findings_on_spark_equal_duckdb(spark_engine, section):
    """bottlenecks.csv's figures on Spark: the same findings, sums within 1e-9 relative."""
    weeks = [*section.baseline_weeks, section.window]
    orders = section.data.engine_tables(spark_engine)["orders"]
    sums = flow_engine.cohort_sums_on(spark_engine, orders, weeks)
    spark = flow.week_findings(None, weeks, section.rules, lang="en", data=sums)
    assert len(spark) > 5
    pd.testing.assert_frame_equal(spark, section.bottlenecks, rtol=1e-9)
