"""Tests of meetinglib.report.explorer: widgets are set as a user would, outputs checked against
independent pandas filters and against meetinglib.analysis.flow on the selected orders."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time

import nbformat
import numpy as np
import pandas as pd
import pytest

from meetinglib.analysis import flow, flow_engine
from meetinglib.core.errors import ExplorerEngineError
from meetinglib.core.params import load_params
from meetinglib.data.dataset import WeekData, load_week
from meetinglib.report import explorer as ex
from meetinglib.report.flow_section import FlowSection
from tests.conftest import ROOT, SAMPLE_WEEK, write_params

MONDAY, SUNDAY = dt.date(2026, 11, 16), dt.date(2026, 11, 22)  # the sample's report week


@pytest.fixture(scope="module")
def params_file(sample, tmp_path_factory):
    return write_params(tmp_path_factory.mktemp("explorer"), sample.folder)


@pytest.fixture(scope="module")
def week_data(params_file) -> WeekData:
    return load_week(load_params(params_file), SAMPLE_WEEK)


@pytest.fixture(scope="module")
def explorer(week_data, tmp_path_factory) -> ex.Explorer:
    return ex.Explorer(week_data, "en", folder=tmp_path_factory.mktemp("exports"))


@pytest.fixture
def fresh(explorer) -> ex.Explorer:
    """The module's explorer with every widget back at its default."""
    with explorer.hold():
        explorer.start.value, explorer.end.value = MONDAY, SUNDAY
        explorer.order_type.value = "all"
        explorer.dimension.value = "carrier"
        explorer.stage.value = "shipped_delivered"
        for box in explorer.filters.values():
            box.value = ()
    explorer.order.value = ""
    return explorer


def created_in(orders: pd.DataFrame, first: dt.date, last: dt.date) -> pd.Series:
    day = orders["created_at"].dt.date
    return (day >= first) & (day <= last)


def hours(end: pd.Series, start: pd.Series) -> pd.Series:
    return (end - start).dt.total_seconds() / 3600


# --- widgets -> outputs --------------------------------------------------------------------------


def test_default_view_is_the_report_week(fresh, week_data):
    orders = week_data.tables["orders"]
    assert (fresh.start.value, fresh.end.value) == (MONDAY, SUNDAY)
    assert fresh.view.orders == int(created_in(orders, MONDAY, SUNDAY).sum())
    assert "orders match" in fresh.summary.value


def test_order_type_special_keeps_only_special_orders(fresh, week_data):
    fresh.order_type.value = "special"
    view = fresh.view
    orders = week_data.tables["orders"]
    chosen = orders[created_in(orders, MONDAY, SUNDAY) & (orders["order_type"] == "special")]
    assert view.orders == len(chosen)
    assert set(view.slowest["order_type"]) == {"special"}
    done = chosen["shipped_at"].notna() & chosen["delivered_at"].notna()
    still = chosen["shipped_at"].notna() & chosen["delivered_at"].isna()
    still &= chosen["cancelled_at"].isna()
    assert view.completed == int(done.sum())
    assert view.in_stage == int(still.sum())
    # completed: delivered - shipped; still in transit: aged at the latest time in the data
    t = week_data.tables
    as_of = max(
        t["events"]["timestamp"].max(),
        t["after_sales"][["requested_at", "closed_at"]].max().max(),
        orders[["created_at", "paid_at", "shipped_at", "delivered_at", "cancelled_at"]].max().max(),
    )
    age = hours(chosen["delivered_at"].where(done, as_of), chosen["shipped_at"])
    expected = age[done | still].sort_values(ascending=False, kind="stable").head(ex.TOP_ORDERS)
    assert view.slowest["hours"].to_numpy() == pytest.approx(expected.to_numpy())
    assert view.slowest["order_id"].tolist() == chosen.loc[expected.index, "order_id"].tolist()
    assert view.slowest["open"].tolist() == still[expected.index].tolist()
    assert "Special" in fresh.slowest_table.value


def test_multi_select_filters_and_segment_medians(fresh, week_data):
    with fresh.hold():
        fresh.filters["carrier"].value = ("EastPost", "RapidRoute")
        fresh.filters["region"].value = ("South",)
        fresh.dimension.value = "warehouse"
        fresh.stage.value = "paid_shipped"
    orders = week_data.tables["orders"]
    chosen = orders[
        created_in(orders, MONDAY, SUNDAY)
        & orders["carrier"].isin(["EastPost", "RapidRoute"])
        & (orders["region"] == "South")
    ]
    view = fresh.view
    assert view.orders == len(chosen)
    took = hours(chosen["shipped_at"], chosen["paid_at"]).dropna()
    by_warehouse = took.groupby(chosen.loc[took.index, "warehouse"], observed=True)
    expected = by_warehouse.median().sort_values(ascending=False)
    dist = view.distribution.set_index("value")
    assert dist.index.tolist() == expected.index.tolist()
    assert dist["median_h"].to_numpy() == pytest.approx(expected.to_numpy())
    assert dist["orders"].tolist() == by_warehouse.size()[expected.index].tolist()
    assert dist["p90_h"].to_numpy() == pytest.approx(
        by_warehouse.quantile(0.9)[expected.index].to_numpy()
    )
    assert view.overall_median_h == pytest.approx(took.median())


def test_date_range_selects_by_creation_day(fresh, week_data):
    with fresh.hold():
        fresh.start.value = dt.date(2026, 11, 18)
        fresh.end.value = dt.date(2026, 11, 18)
    orders = week_data.tables["orders"]
    day = orders["created_at"].dt.date == dt.date(2026, 11, 18)
    assert fresh.view.orders == int(day.sum()) > 0


def test_no_matching_orders(fresh):
    with fresh.hold():
        fresh.start.value = dt.date(2030, 1, 1)
        fresh.end.value = dt.date(2030, 1, 7)
    assert fresh.view.orders == 0
    assert "No orders match these filters." in fresh.summary.value
    assert fresh.view.slowest.empty and fresh.view.edges.empty


def test_only_stage_or_dimension_changes_reuse_the_graph(fresh):
    before = fresh.view
    fresh.dimension.value = "region"
    assert fresh.view.edges is before.edges and fresh.view.variants is before.variants
    assert fresh.view.distribution is not before.distribution
    fresh.filters["warehouse"].value = ("WH-North",)
    assert fresh.view.edges is not before.edges


def test_hold_recomputes_once(fresh, monkeypatch):
    calls = []
    real = ex.compute_view
    monkeypatch.setattr(ex, "compute_view", lambda *a, **k: calls.append(1) or real(*a, **k))
    with fresh.hold():
        fresh.order_type.value = "normal"
        fresh.stage.value = "created_paid"
        fresh.filters["channel"].value = ("app",)
    assert len(calls) == 1
    fresh.order_type.value = "all"
    assert len(calls) == 2, "a single change recomputes at once"


def test_timeline_drill_down(fresh, week_data):
    order_id = fresh.view.slowest["order_id"].iloc[0]
    assert order_id in fresh.order.options, "the slowest orders are offered"
    fresh.order.value = order_id
    events = week_data.tables["events"]
    mine = events[events["order_id"] == order_id].copy()
    mine["rank"] = mine["activity"].astype(str).map(flow.ACTIVITY_ORDER.index)
    mine = mine.sort_values(["timestamp", "rank"])
    timeline = fresh.view.timeline
    assert timeline["activity"].tolist() == mine["activity"].astype(str).tolist()
    gaps = mine["timestamp"].diff().dt.total_seconds() / 3600
    assert timeline["gap_h"].to_numpy() == pytest.approx(gaps.to_numpy(), nan_ok=True)
    assert timeline["elapsed_h"].iloc[-1] == pytest.approx(gaps.sum())
    first = mine["timestamp"].iloc[0].strftime("%Y-%m-%d %H:%M")
    assert first in fresh.timeline_table.value


def test_unknown_order_is_said_so_and_escaped(fresh):
    fresh.order.value = "NO<script>1"
    assert "Order NO&lt;script&gt;1 is not in the loaded data." in fresh.timeline_table.value
    assert fresh.view.timeline is None


def test_export_buttons_write_the_current_view(fresh, tmp_path):
    fresh.folder.value = str(tmp_path / "exports")
    fresh.order_type.value = "special"
    fresh.order.value = fresh.view.slowest["order_id"].iloc[0]
    fresh.export_csv_button.click()
    written = sorted((tmp_path / "exports").glob("*.csv"))
    assert [p.name.split("-")[-1] for p in written] == [
        "flow_edges.csv",
        "selection.csv",
        "slowest_orders.csv",
        "stage_distribution.csv",
        "timeline.csv",
        "variants.csv",
    ]
    slowest = pd.read_csv(next(p for p in written if p.name.endswith("slowest_orders.csv")))
    assert slowest["order_id"].tolist() == fresh.view.slowest["order_id"].tolist()
    assert set(slowest["order_type"]) == {"special"}
    assert slowest["hours"].to_numpy() == pytest.approx(fresh.view.slowest["hours"].to_numpy())
    selection = pd.read_csv(next(p for p in written if p.name.endswith("selection.csv")))
    settings = dict(zip(selection["setting"], selection["value"], strict=True))
    assert settings["order_type"] == "special" and settings["start"] == "2026-11-16"
    edges = pd.read_csv(next(p for p in written if p.name.endswith("flow_edges.csv")))
    assert edges["cases"].tolist() == fresh.view.edges["cases"].tolist()
    fresh.export_png_button.click()
    pngs = sorted((tmp_path / "exports").glob("*.png"))
    assert len(pngs) == 2 and all(p.read_bytes().startswith(b"\x89PNG") for p in pngs)
    for path in pngs:
        assert str(path) in fresh.export_status.value
    assert "Written:" in fresh.export_status.value


def test_export_to_a_folder_that_cannot_take_it_says_so_instead_of_the_last_message(
    fresh, tmp_path
):
    from meetinglib.core.errors import EXIT_ENVIRONMENT, MeetingError

    fresh.folder.value = str(tmp_path / "good")
    fresh.export_csv_button.click()
    assert "Written:" in fresh.export_status.value

    fresh.folder.value = "/proc/nope"
    fresh.export_csv_button.click()  # no exception out of the button
    status = fresh.export_status.value
    assert "Written:" not in status and "good" not in status
    assert "Not written: cannot write into the folder /proc/nope (" in status
    assert "Choose a folder you can write to." in status

    fresh.folder.value = str(tmp_path / "good")
    fresh.export_png_button.click()
    assert "Written:" in fresh.export_status.value
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x", encoding="utf-8")
    fresh.folder.value = str(a_file)
    fresh.export_png_button.click()
    status = fresh.export_status.value
    assert "Written:" not in status
    assert f"Not written: {a_file} is a file, not a folder." in status
    assert not list(tmp_path.glob("notes.txt*/*")), "nothing written"

    # the API raises, with a clear error of the environment's family
    with pytest.raises(ex.ExportFolderError, match="the export folder is a file, not a folder"):
        fresh.export_csv()
    with pytest.raises(ex.ExportFolderError, match=r"into this folder \(.+\): /proc/nope\."):
        ex.export_png(fresh.view, "/proc/nope")
    try:
        ex.export_csv(fresh.view, a_file / "sub")
    except MeetingError as exc:
        assert exc.exit_code == EXIT_ENVIRONMENT and str(a_file / "sub") in str(exc)
    else:
        raise AssertionError("a folder below a file was written")


def test_the_export_error_reads_in_chinese(tmp_path):
    error = ex.ExportFolderError(tmp_path / "x", "Permission denied")
    assert error.text("zh-CN") == (
        f"未写入：无法写入文件夹 {tmp_path / 'x'}（Permission denied）。"
        "请选择一个可以写入的文件夹。"
    )
    assert ex.ExportFolderError(tmp_path).text("zh-CN").startswith(f"未写入：{tmp_path} 是文件")


# --- the fast paths equal meetinglib.analysis.flow on the selected orders ---


@pytest.fixture(scope="module")
def data(week_data) -> ex.ExplorerData:
    t = week_data.tables
    return ex.ExplorerData.build(t["orders"], t["events"], t["after_sales"])


SELECTIONS = [
    ex.Selection(start=MONDAY, end=SUNDAY),
    ex.Selection(order_type="special", carrier=("EastPost",)),
    ex.Selection(start=dt.date(2026, 11, 1), region=("South", "West"), channel=("app",)),
]


@pytest.mark.parametrize("selection", SELECTIONS)
def test_graph_and_variants_equal_flow_on_the_selected_orders(data, week_data, selection):
    mask = ex.order_mask(data, selection)
    t = week_data.tables
    ids = set(t["orders"]["order_id"][mask])
    log = flow.event_log(
        t["orders"][mask],
        t["events"][t["events"]["order_id"].isin(ids)],
        t["after_sales"][t["after_sales"]["order_id"].isin(ids)],
    )
    pd.testing.assert_frame_equal(
        ex.edges_of(data, mask), flow_engine.directly_follows(log), rtol=1e-12
    )
    expected = flow.variants(log).head(ex.TOP_VARIANTS).reset_index(drop=True)
    pd.testing.assert_frame_equal(ex.variants_of(data, mask), expected, rtol=1e-12)
    # a selection filters the prepared steps and orders on their own columns: the same
    expected_edges = flow_engine.directly_follows(log)
    pd.testing.assert_frame_equal(ex.edges_of(data, selection), expected_edges, rtol=1e-12)
    pd.testing.assert_frame_equal(ex.variants_of(data, selection), expected, rtol=1e-12)


def _log_rows(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    base = pd.Timestamp("2026-01-05 09:00", tz="Asia/Shanghai")
    return pd.DataFrame(
        {
            "order_id": pd.Series([r[0] for r in rows], dtype="str"),
            "activity": [r[1] for r in rows],
            "timestamp": [base + pd.Timedelta(hours=r[2]) for r in rows],
        }
    )


def test_rework_loops_and_long_cases(tmp_path):
    # L: picked/packed rework seven times: 1 + 1 + 14 + 2 = 18 events, too long to pack
    rows = [("L", "created", 0), ("L", "paid", 1)]
    rows += [("L", a, 2 + i) for i in range(7) for a in ("picked", "packed")][:14]
    rows += [("L", "shipped", 20), ("L", "delivered", 40)]
    rows += [("S", "created", 0), ("S", "paid", 2), ("S", "shipped", 5)]
    events = _log_rows(rows)
    orders = pd.DataFrame(
        {
            "order_id": pd.Series(["L", "S"], dtype="str"),
            "order_type": pd.Categorical(["normal", "special"]),
            "created_at": events.groupby("order_id")["timestamp"].min().loc[["L", "S"]].to_numpy(),
        }
    )
    data = ex.ExplorerData.build(orders, events)
    assert data.count == 2
    mask = np.ones(2, dtype=bool)
    log = flow.event_log(orders, events)
    edges = ex.edges_of(data, mask)
    pd.testing.assert_frame_equal(edges, flow_engine.directly_follows(log))
    loop = edges[(edges["source"] == "picked") & (edges["target"] == "packed")].iloc[0]
    assert (loop["cases"], loop["count"]) == (1, 7), "a loop counts each time, its case once"
    pd.testing.assert_frame_equal(ex.variants_of(data, mask), flow.variants(log).head(10))
    assert ex.variants_of(data, mask)["events"].max() == 18, "a long case keeps its variant"
    only_s = np.array([False, True])
    assert ex.variants_of(data, only_s)["variant"].tolist() == ["created > paid > shipped"]


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "pairs"])
def test_case_sequences_in_log_order_at_equal_times_and_before_1970(packed, monkeypatch):
    # Events are sorted as one integer each (time * width + code) while the codes fit,
    # else as (time, code) pairs: both give log order, ties in the activity's code order,
    # and times before 1970 (negative microseconds) decode to what they were.
    from meetinglib.data.engine import frame_table, shared

    if not packed:
        monkeypatch.setattr(ex, "_MAX_PACKED_WIDTH", 1)
    at = pd.Timestamp("1970-01-01", tz="UTC")
    us = pd.Timedelta(microseconds=1)
    rows = [  # case, activity, time; inserted out of order
        ("A", "shipped", at + 7 * us),
        ("A", "paid", at + 7 * us),  # the same microsecond as shipped: paid first
        ("A", "created", at - 5 * us),
        ("B", "delivered", at - 1 * us),
        ("B", "created", at - pd.Timedelta(days=400) - 3 * us),
        ("C", "created", at + pd.Timedelta(days=20000)),
    ]
    frame = pd.DataFrame(rows, columns=["case_id", "activity", "timestamp"])
    con = shared()
    log = ex._keep(con, frame_table(frame))
    codes = ex._keep(con, flow_engine.activity_codes(log))
    code = dict(con.to_pandas(codes)[["activity", "code"]].itertuples(index=False))
    got = con.to_pandas(ex._case_sequences(con, log, codes)).set_index("case_id").sort_index()
    frame["code"] = frame["activity"].map(code)
    frame["us"] = (frame["timestamp"] - at) // us
    for case, events in frame.sort_values(["us", "code"]).groupby("case_id"):
        row = got.loc[case]
        assert list(row["sequence"]) == events["code"].tolist()
        assert list(row["stamps"]) == events["us"].tolist()
        assert row["events"] == len(events)
        assert row["through_h"] == (events["us"].iloc[-1] - events["us"].iloc[0]) / 3.6e9
    assert list(got.loc["A", "sequence"]) == [code["created"], code["paid"], code["shipped"]]


# --- other sources and languages ----------------------------------------------------------------


def test_explorer_over_an_orders_frame_in_chinese(week_data):
    orders = week_data.tables["orders"].copy()
    orders["carrier"] = orders["carrier"].cat.rename_categories({"EastPost": "<i>East</i>"})
    zh = ex.Explorer(orders, "zh-CN")
    last = orders["created_at"].max().date()
    assert (zh.start.value, zh.end.value) == (last - dt.timedelta(days=6), last)
    assert "单符合条件" in zh.summary.value
    # charts are drawn once their panels are on display, then kept up to date
    assert zh.distribution_image.value == b""
    zh.distribution_panel(), zh.graph_panel()
    assert bytes(zh.distribution_image.value).startswith(b"\x89PNG")
    assert bytes(zh.graph_image.value).startswith(b"\x89PNG")
    graph = zh.view.graph_figure
    zh.stage.value = "paid_shipped"
    assert zh.view.graph_figure is graph, "the same orders: the graph is not drawn again"
    # without an events table the log comes from the milestones: no picking or packing
    assert not set(zh.view.edges["source"]) & {"picked", "packed"}
    with zh.hold():
        zh.start.value = MONDAY
        zh.filters["carrier"].value = ("<i>East</i>",)
    assert "&lt;i&gt;East&lt;/i&gt;" in zh.slowest_table.value
    assert "<i>East" not in zh.slowest_table.value
    assert str(zh.folder.value) == str(ex.DEFAULT_FOLDER)


def test_open_from_a_snapshot(week_data, params_file, tmp_path):
    week_data.save(tmp_path / "snap")
    opened = ex.Explorer.open([params_file], snapshot=tmp_path / "snap", lang="en")
    assert opened.data.count == len(week_data.tables["orders"])
    # exports default to the params' output folder
    assert opened.folder.value == str(params_file.parent / "outputs" / "explorer")


@pytest.mark.slow
def test_notebook_runs_top_to_bottom_under_papermill(params_file, tmp_path):
    import papermill

    out = tmp_path / "bottleneck_explorer.ipynb"
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "bottleneck_explorer.ipynb"),
        str(out),
        parameters={"params_files": [str(params_file)], "week": SAMPLE_WEEK},
        kernel_name="python3",
        cwd=str(ROOT / "notebooks"),
        progress_bar=False,
    )
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    widgets = [
        o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert len(widgets) == 7, "controls, the findings and five panels"


# --- findings: the two groups and the drill-down to orders ------------------------------------


def test_findings_panel_shows_both_groups_and_drills_to_the_orders(fresh, week_data):
    found = fresh.found
    section = FlowSection(week_data, "en")
    assert found.frame["id"].tolist() == section.bottlenecks["id"].tolist()
    listing = fresh.findings_list.value
    assert "New this week" in listing and "Usual bottlenecks" in listing
    labels = [label for label, _ in fresh.finding.options]
    assert any(label.startswith("New N1: ") for label in labels)
    transit = found.roots("new")
    transit = transit[transit["stage"] == "shipped_delivered"].iloc[0]
    fresh.finding.value = transit["id"]
    # the orders behind it: EastPost parcels to South shipped in the week, by hand
    orders = week_data.tables["orders"]
    shipped = week_data.window.contains(orders["shipped_at"]).fillna(False)
    cell = orders[shipped & (orders["carrier"] == "EastPost") & (orders["region"] == "South")]
    assert f"{len(cell):,} orders behind this finding" in fresh.finding_table.value
    offered = list(fresh.order.options)
    assert len(offered) == min(len(cell), ex.FINDING_ORDERS)
    assert set(offered) <= set(cell["order_id"].astype(str))
    rows = found.orders_of(orders, transit["id"])
    assert rows["hours"].is_monotonic_decreasing
    fresh.order.value = offered[0]
    assert offered[0] in fresh.timeline_table.value or "Shipped" in fresh.timeline_table.value
    assert fresh.findings_panel() is not None


LABELS = (
    "{carrier: {EastPost: {zh-CN: 东方邮政, en: East Post Co}},"
    " channel: {app: {zh-CN: 应用程序, en: Mobile app}}}"
)


@pytest.fixture(scope="module")
def labelled(sample, tmp_path_factory) -> ex.Explorer:
    folder = tmp_path_factory.mktemp("explorer_labels")
    data = load_week(load_params(write_params(folder, sample.folder, labels=LABELS)), SAMPLE_WEEK)
    return ex.Explorer(data, "zh-CN", folder=folder / "exports")


def test_the_explorer_shows_the_params_names_and_filters_on_the_codes(labelled, tmp_path):
    orders = labelled.week_data().tables["orders"]
    # the filters show the names and select the codes
    assert ("东方邮政", "EastPost") in labelled.filters["carrier"].options
    assert ("应用程序", "app") in labelled.filters["channel"].options
    with labelled.hold():
        labelled.filters["carrier"].value = ("EastPost",)
        labelled.filters["channel"].value = ("app",)
    chosen = created_in(orders, MONDAY, SUNDAY)
    chosen &= (orders["carrier"] == "EastPost") & (orders["channel"] == "app")
    assert labelled.view.orders == int(chosen.sum()) > 0
    assert set(labelled.view.slowest["carrier"]) == {"EastPost"}
    table = labelled.slowest_table.value
    assert "东方邮政" in table and "应用程序" in table and "EastPost" not in table
    # the chart by carrier names it (its title is the slowest carrier with enough orders)
    with labelled.hold():
        for box in labelled.filters.values():
            box.value = ()
        labelled.dimension.value = "carrier"
    names = [str(v) for v in labelled.view.distribution["value"]]
    assert "EastPost" in names, "the frames keep the codes"
    shown = ex.distribution_chart(
        labelled.view.distribution.assign(orders=1_000),
        labelled.view.selection,
        1.0,
        "zh-CN",
        labelled.label,
    )
    assert "东方邮政" in " ".join(t.get_text() for t in shown.axes[0].get_yticklabels())
    # findings: their sentences and the drop-down's options
    options = " ".join(label for label, _ in labelled.finding.options)
    assert "承运商 东方邮政" in options and "承运商 EastPost" not in options
    assert "承运商 东方邮政" in labelled.findings_list.value
    english = labelled.found.in_language("en")
    assert english.frame["finding"].str.contains("via carrier East Post Co").any()
    assert "via carrier East Post Co" in " ".join(label for label, _ in english.options("en"))
    # the exported tables keep the codes
    written = ex.export_csv(labelled.view, tmp_path, stamp="t")
    slowest = pd.read_csv(next(p for p in written if p.name.endswith("slowest_orders.csv")))
    assert "EastPost" in set(slowest["carrier"]) and "东方邮政" not in set(slowest["carrier"])


def test_saved_tables_reopen_with_the_params_names(labelled, tmp_path):
    folder = labelled.save(tmp_path / "explorer_data", "key-labels")
    opened = ex.open_prepared(folder, "key-labels")
    assert opened is not None
    data = labelled.week_data()
    for lang, name in (("zh-CN", "承运商 东方邮政"), ("en", "via carrier East Post Co")):
        again = ex.Explorer(ex.Saved(*opened, data.params, lambda: data), lang)
        assert ("东方邮政" if lang == "zh-CN" else "East Post Co", "EastPost") in (
            again.filters["carrier"].options
        )
        assert name in " ".join(label for label, _ in again.finding.options)
        assert name in again.findings_list.value


# --- the engine's statistics against pandas on the same orders ----------------------------------


@pytest.mark.parametrize(
    ("dimension", "stage"), [("weekday", "created_delivered"), ("hour", "paid_shipped")]
)
def test_stage_distribution_by_local_weekday_and_hour_equals_pandas(
    data, week_data, dimension, stage
):
    selection = ex.Selection(start=MONDAY, end=SUNDAY, dimension=dimension, stage=stage)
    got = ex.stage_distribution(data, selection, stage, dimension)
    orders = week_data.tables["orders"]
    chosen = orders[created_in(orders, MONDAY, SUNDAY)]
    start, end = ex.STAGE_MILESTONES[stage]
    took = hours(chosen[end], chosen[start]).dropna()
    local = chosen.loc[took.index, "created_at"]
    if dimension == "weekday":
        key = local.dt.day_of_week.map(lambda d: flow.WEEKDAY_NAMES[d])
    else:
        key = local.dt.hour
    groups = took.groupby(key.to_numpy())
    want = pd.DataFrame(
        {
            "orders": groups.size(),
            "p10_h": groups.quantile(0.1),
            "q1_h": groups.quantile(0.25),
            "median_h": groups.median(),
            "q3_h": groups.quantile(0.75),
            "p90_h": groups.quantile(0.9),
            "mean_h": groups.mean(),
        }
    )
    assert len(got) == len(want) > 3
    have = got.set_index("value").loc[list(want.index)]
    pd.testing.assert_frame_equal(
        have, want, check_dtype=False, check_names=False, check_index_type=False, rtol=1e-12
    )
    assert got["median_h"].is_monotonic_decreasing


def test_finding_orders_on_the_engine_equal_the_pandas_filter(fresh, week_data):
    orders = week_data.tables["orders"]
    roots = fresh.found.frame[fresh.found.frame["rank"] > 0]
    assert len(roots) >= 2
    for finding_id in roots["id"]:
        got = fresh.found.orders_of(
            week_data.engine_tables()["orders"], finding_id, fresh.data.con, week_data.tz
        )
        want = fresh.found.orders_of(orders, finding_id)
        assert len(got) == len(want) > 0
        assert sorted(got["order_id"]) == sorted(want["order_id"])
        assert got["hours"].to_numpy() == pytest.approx(want["hours"].to_numpy(), rel=1e-12)
        by_id = want.set_index("order_id")
        assert got["open"].tolist() == by_id.loc[got["order_id"], "open"].tolist()


# --- the prepared tables saved and opened again ------------------------------------------------

VIEW_FRAMES = ("distribution", "edges", "variants", "slowest")


def assert_same_view(got: ex.View, want: ex.View) -> None:
    assert (got.orders, got.completed, got.in_stage) == (want.orders, want.completed, want.in_stage)
    assert got.overall_median_h == pytest.approx(want.overall_median_h, rel=1e-12, nan_ok=True)
    for name in VIEW_FRAMES:
        pd.testing.assert_frame_equal(getattr(got, name), getattr(want, name), rtol=1e-12)


@pytest.fixture(scope="module")
def saved(week_data, tmp_path_factory):
    """An explorer built from the week (the reference), and its tables saved."""
    built = ex.Explorer(week_data, "en", folder=tmp_path_factory.mktemp("exports2"))
    folder = built.save(tmp_path_factory.mktemp("prepared") / "explorer_data", "key-1")
    return built, folder


def reopen(folder, week_data, lang="en") -> ex.Explorer:
    opened = ex.open_prepared(folder, "key-1")
    assert opened is not None
    loads = []

    def load():
        loads.append(1)
        return week_data

    explorer = ex.Explorer(ex.Saved(*opened, week_data.params, load), lang)
    explorer.loads = loads  # type: ignore[attr-defined]
    return explorer


def test_saved_tables_give_the_same_view_and_changes(saved, week_data):
    built, folder = saved
    assert {"orders.parquet", "steps.parquet", "variants.parquet", "log.parquet"} <= {
        p.name for p in folder.glob("*.parquet")
    }
    again = reopen(folder, week_data)
    reference = ex.Explorer(week_data, "en")
    assert_same_view(again.view, reference.view)
    assert again.data.count == reference.data.count == len(week_data.tables["orders"])
    assert again.data.values_of == reference.data.values_of
    changes = [
        {"order_type": "special"},
        {"stage": "paid_shipped", "dimension": "weekday"},
        {"carrier": ("EastPost",), "region": ("South", "West")},
        {"dimension": "hour", "channel": ("app",)},
        {"start": dt.date(2026, 11, 18), "end": dt.date(2026, 11, 19)},
    ]
    for change in changes:
        for explorer in (again, reference):
            with explorer.hold():
                for name, value in change.items():
                    box = explorer.filters.get(name) or getattr(explorer, name)
                    box.value = value
        assert_same_view(again.view, reference.view)
    assert again.loads == [], "selections inside the saved range read the saved tables only"
    # a range beyond the saved orders loads the whole week, then prepares it
    for explorer in (again, reference):
        with explorer.hold():
            explorer.start.value = MONDAY - dt.timedelta(days=7)
            explorer.end.value = SUNDAY
    assert again.loads == [1]
    assert_same_view(again.view, reference.view)


def test_saved_findings_list_their_slowest_orders_without_a_load(saved, week_data):
    built, folder = saved
    again = reopen(folder, week_data)
    pd.testing.assert_frame_equal(again.found.frame, built.found.frame)
    roots = built.found.frame[built.found.frame["rank"] > 0]
    wants = {
        finding_id: built.found.orders_of(week_data.engine_tables()["orders"], finding_id)
        for finding_id in roots["id"]
    }
    for finding_id, want in wants.items():
        assert len(want) > ex.FINDING_ORDERS or finding_id != roots["id"].iloc[0]
        shown, count = again.slowest_finding_orders(finding_id)
        assert count == len(want), "the number of orders behind it, not of those saved"
        pd.testing.assert_frame_equal(shown, want.head(ex.FINDING_ORDERS), rtol=1e-12)
    usual = roots[roots["group"] == "usual"]["id"].iloc[0]
    again.finding.value = usual
    count = len(wants[usual])
    assert f"{count:,} orders behind this finding" in again.finding_table.value
    # an order of the baseline weeks, created before the saved range: its events are saved
    order_id = again.order.options[0]
    again.order.value = order_id
    t = week_data.tables
    whole = ex.ExplorerData.build(t["orders"], t["events"], t["after_sales"])
    want = ex.order_timeline(whole, order_id)
    assert len(want) > 0
    pd.testing.assert_frame_equal(again.view.timeline, want)
    assert again.loads == []
    # only the orders the explorer lists are saved; all of them load the week
    saved_rows = pd.read_parquet(folder / "finding_orders.parquet")
    assert saved_rows.groupby("_finding").size().max() == ex.FINDING_ORDERS
    for finding_id, want in wants.items():
        pd.testing.assert_frame_equal(again.finding_orders(finding_id), want, rtol=1e-12)
    assert again.loads == [1]


def test_findings_in_another_language_equal_those_computed_in_it(saved, week_data):
    built, folder = saved
    zh = ex.Findings.of_week(week_data, "zh-CN")
    pd.testing.assert_frame_equal(built.found.in_language("zh-CN").frame, zh.frame)
    again = reopen(folder, week_data, lang="zh-CN")
    pd.testing.assert_frame_equal(again.found.frame, zh.frame)
    assert "新" in again.findings_list.value or "常见" in again.findings_list.value


def test_other_data_or_format_is_not_opened(saved, tmp_path):
    _built, folder = saved
    assert ex.open_prepared(folder, "another key") is None
    assert ex.open_prepared(tmp_path / "missing", "key-1") is None
    copy = tmp_path / "old"
    import shutil

    shutil.copytree(folder, copy)
    meta = copy / "meta.json"
    text = meta.read_text(encoding="utf-8")
    older = text.replace(f'"format": {ex.PREPARED_FORMAT}', f'"format": {ex.PREPARED_FORMAT - 1}')
    assert older != text
    meta.write_text(older, encoding="utf-8")
    assert ex.open_prepared(copy, "key-1") is None


def test_open_prepares_once_then_starts_from_the_saved_tables(sample, tmp_path, monkeypatch):
    import shutil

    source = tmp_path / "data"
    shutil.copytree(sample.folder, source)
    params_file = write_params(tmp_path, source)
    first = ex.Explorer.open([params_file], week=SAMPLE_WEEK, lang="en")
    folder = tmp_path / "outputs" / SAMPLE_WEEK / "explorer_data"
    assert (folder / "meta.json").is_file()

    def no_load(*_args, **_kwargs):
        raise AssertionError("the week was loaded")

    monkeypatch.setattr(ex, "open_week", no_load)
    second = ex.Explorer.open([params_file], week=SAMPLE_WEEK, lang="en")
    assert_same_view(second.view, first.view)
    monkeypatch.undo()
    # a source file changed: prepared again
    orders = next(source.glob("orders.*"))
    orders.touch()
    calls = []
    real = ex.open_week
    monkeypatch.setattr(ex, "open_week", lambda *a, **k: calls.append(1) or real(*a, **k))
    third = ex.Explorer.open([params_file], week=SAMPLE_WEEK, lang="en")
    assert calls == [1]
    assert_same_view(third.view, first.view)


def test_the_latest_week_is_found_once_per_data(sample, tmp_path, monkeypatch):
    import shutil

    source = tmp_path / "data"
    shutil.copytree(sample.folder, source)
    params = load_params(write_params(tmp_path, source))
    calls = []
    real = ex.resolve_week
    monkeypatch.setattr(ex, "resolve_week", lambda *a: calls.append(a) or real(*a))
    assert str(ex.latest_week(params)) == SAMPLE_WEEK
    assert str(ex.latest_week(params)) == SAMPLE_WEEK
    assert len(calls) == 1, "remembered for the same data and params"
    next(source.glob("orders.*")).touch()
    assert str(ex.latest_week(params)) == SAMPLE_WEEK
    assert len(calls) == 2, "found again once the data changed"


def test_outputs_inside_the_source_folder_are_no_input(sample, tmp_path):
    import shutil

    source = tmp_path / "data"
    shutil.copytree(sample.folder, source)
    params = load_params(write_params(source, source))  # outputs under the source folder
    before = ex.source_fingerprint(params, SAMPLE_WEEK)
    (source / "outputs" / SAMPLE_WEEK / "explorer_data").mkdir(parents=True)
    (source / "outputs" / SAMPLE_WEEK / "explorer_data" / "meta.json").write_text("{}")
    assert ex.source_fingerprint(params, SAMPLE_WEEK) == before
    next(source.glob("orders.*")).touch()
    assert ex.source_fingerprint(params, SAMPLE_WEEK) != before


def test_a_timeline_beyond_the_saved_orders_loads_the_week_once(saved, week_data):
    _built, folder = saved
    again = reopen(folder, week_data)
    orders = week_data.tables["orders"]
    early = orders[orders["created_at"].dt.date < MONDAY - dt.timedelta(days=7)]
    order_id = str(early["order_id"].iloc[0])
    again.order.value = order_id
    assert again.loads == [1]
    t = week_data.tables
    whole = ex.ExplorerData.build(t["orders"], t["events"], t["after_sales"])
    want = ex.order_timeline(whole, order_id)
    assert len(want) > 0
    pd.testing.assert_frame_equal(again.view.timeline, want)
    assert "Loading" not in again.summary.value and "orders match" in again.summary.value


def test_a_weekly_run_saves_the_tables_the_explorer_starts_from(sample, tmp_path, monkeypatch):
    import json

    from meetinglib import runner
    from meetinglib.data import dataset
    from meetinglib.runner import run_week

    def sequential(*_args, **_kwargs):
        raise AssertionError("saved after the notebooks, not beside them")

    # the tables are saved beside the notebook, from the findings the report wrote
    monkeypatch.setattr(runner, "save_week", sequential)
    monkeypatch.setattr(ex.Findings, "of_week", sequential)
    params_file = write_params(tmp_path, sample.folder, run="{explorer_data: true}")
    result = run_week([params_file], SAMPLE_WEEK, notebooks=["data_report"])
    monkeypatch.undo()
    folder = result.folder / "explorer_data"
    assert (folder / "meta.json").is_file()
    manifest = json.loads(result.manifest.read_text(encoding="utf-8"))
    assert manifest["explorer_data"] == "explorer_data"
    assert "explorer_data" in manifest["timings_seconds"]
    assert manifest["timings_seconds"]["explorer_data_background"] > 0

    def no_load(*_args, **_kwargs):
        raise AssertionError("the week was loaded")

    for where in (ex, dataset):
        monkeypatch.setattr(where, "open_week", no_load)
        monkeypatch.setattr(where, "load_week", no_load, raising=False)
    monkeypatch.setattr(dataset.WeekData, "load", no_load)
    opened = ex.Explorer.open([params_file], week=SAMPLE_WEEK, lang="en")
    monkeypatch.undo()
    # the reference: an explorer prepared now from a fresh load of the source
    reference = ex.Explorer(load_week(load_params(params_file), SAMPLE_WEEK), "en")
    assert_same_view(opened.view, reference.view)
    pd.testing.assert_frame_equal(opened.found.frame, reference.found.frame)
    roots = reference.found.frame[reference.found.frame["rank"] > 0]["id"]
    assert len(roots) > 0
    for finding_id in roots:
        want = reference.finding_orders(str(finding_id))
        pd.testing.assert_frame_equal(opened.finding_orders(str(finding_id)), want, rtol=1e-12)
    for explorer in (opened, reference):
        with explorer.hold():
            explorer.order_type.value = "special"
            explorer.filters["carrier"].value = ("EastPost",)
    assert_same_view(opened.view, reference.view)


def test_the_report_findings_read_back_equal_those_computed(week_data, tmp_path):
    section = FlowSection(week_data, "en")
    section.export(tmp_path)
    for lang in ("en", "zh-CN"):
        got = ex.report_findings(tmp_path / "bottlenecks.csv", week_data, lang)
        want = ex.Findings.of_week(week_data, lang)
        assert got is not None
        pd.testing.assert_frame_equal(got.frame, want.frame)
        assert (got.week, got.baseline, got.weeks) == (want.week, want.baseline, want.weeks)
    assert len(section.bottlenecks) > 0
    # a cell changed for spreadsheets is not the frame's value: computed again instead
    text = (tmp_path / "bottlenecks.csv").read_text(encoding="utf-8")
    (tmp_path / "bottlenecks.csv").write_text(text.replace(",WH-", ",'=WH-", 1), encoding="utf-8")
    assert ex.report_findings(tmp_path / "bottlenecks.csv", week_data, "en") is None
    assert ex.report_findings(tmp_path / "missing.csv", week_data, "en") is None


def test_save_week_with_the_report_findings_equals_a_fresh_explorer(
    saved, week_data, tmp_path, monkeypatch
):
    built, _folder = saved
    FlowSection(week_data, "en").export(tmp_path / "report")

    def recomputed(*_args, **_kwargs):
        raise AssertionError("the findings were computed again")

    monkeypatch.setattr(ex.Findings, "of_week", recomputed)
    folder = ex.save_week(
        week_data.params, week_data, tmp_path / "explorer_data", tmp_path / "report"
    )
    monkeypatch.undo()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary folder left"
    key = ex.source_fingerprint(week_data.params, week_data.week)
    opened = ex.open_prepared(folder, key)
    assert opened is not None
    again = ex.Explorer(ex.Saved(*opened, week_data.params, lambda: week_data), "en")
    reference = ex.Explorer(week_data, "en")
    assert_same_view(again.view, reference.view)
    pd.testing.assert_frame_equal(again.found.frame, built.found.frame)
    for finding_id in built.found.frame.loc[built.found.frame["rank"] > 0, "id"]:
        want = built.found.orders_of(week_data.engine_tables()["orders"], finding_id)
        pd.testing.assert_frame_equal(again.finding_orders(finding_id), want, rtol=1e-12)
    with again.hold(), reference.hold():
        for explorer in (again, reference):
            explorer.order_type.value = "special"
            explorer.filters["region"].value = ("South",)
    assert_same_view(again.view, reference.view)


def _on_engine(params, kind: str):
    return params.model_copy(update={"engine": params.engine.model_copy(update={"kind": kind})})


def test_with_spark_params_the_explorer_computes_on_duckdb(week_data, saved, tmp_path):
    """A company whose KPIs run on Spark explores the week's snapshot on DuckDB (Spark
    has no temporary tables through Ibis): the same view, no Spark session started."""
    built, _folder = saved
    spark = _on_engine(week_data.params, "spark")
    on_spark = dataclasses.replace(week_data, params=spark)
    explorer = ex.Explorer(on_spark, "en")
    assert explorer.data.con.name == "duckdb"
    assert_same_view(explorer.view, built.view)
    folder = ex.save_week(spark, on_spark, tmp_path / "explorer_data")
    assert folder is not None and (folder / "meta.json").is_file()


def test_with_engine_source_the_explorer_says_what_to_do(week_data, tmp_path):
    source = _on_engine(week_data.params, "source")
    assert ex.save_week(source, week_data, tmp_path / "explorer_data") is None
    assert not list(tmp_path.iterdir()), "nothing written"
    with pytest.raises(
        ExplorerEngineError,
        match=r"computes on DuckDB over the week's snapshot, and with engine 'source' the "
        r"week stays in the source database.*'engine: \{kind: duckdb\}'",
    ) as raised:
        ex.Explorer(dataclasses.replace(week_data, params=source), "en")
    assert raised.value.exit_code == 2


# --- the background engine's memory ------------------------------------------------------------


def _limit_gib(con) -> float:
    return ex.memory_limit_bytes(con) / 2**30


def test_the_background_engine_takes_half_of_what_the_week_asks_for(sample, tmp_path, monkeypatch):
    from meetinglib.data import engine

    monkeypatch.setattr(engine, "machine_memory", lambda: 64 << 30)
    params = load_params(write_params(tmp_path, sample.folder, engine="{threads: 2}"))
    # a small week: half the default of a GiB per thread
    assert _limit_gib(ex.background_engine(params)) == pytest.approx(1.0, rel=0.01)
    # a snapshot whose share is 8 GiB: half while the kernel computes, all after
    size = int(8.01 * (1 << 30) / engine.DATA_MEMORY_SHARE)
    con = ex.background_engine(params, size)
    assert _limit_gib(con) == pytest.approx(4.0, rel=0.01)
    ex.in_full(con, params, size)
    assert _limit_gib(con) == pytest.approx(8.0, rel=0.01)


def test_the_background_engine_keeps_to_the_params_limit(sample, tmp_path, monkeypatch):
    from meetinglib.data import engine

    monkeypatch.setattr(engine, "machine_memory", lambda: 64 << 30)
    params = load_params(write_params(tmp_path, sample.folder, engine="{memory_limit: 3GiB}"))
    con = ex.background_engine(params, 10 << 30)
    assert _limit_gib(con) == pytest.approx(1.5, rel=0.01)
    ex.in_full(con, params, 10 << 30)
    assert _limit_gib(con) == pytest.approx(3.0, rel=0.01)


def test_the_background_engine_gets_its_threads_while_a_query_runs(sample, tmp_path):
    params = load_params(write_params(tmp_path, sample.folder, engine="{threads: 2}"))
    con = ex.background_engine(params)

    def threads() -> int:
        return int(con.raw_sql("SELECT current_setting('threads')").fetchall()[0][0])

    assert threads() == 1
    started = threading.Event()

    def long_query() -> None:
        started.set()
        con.raw_sql("SELECT count(*) FROM range(2000000000) t(i) WHERE i % 7 = 3").fetchall()

    worker = threading.Thread(target=long_query)
    worker.start()
    started.wait()
    time.sleep(0.3)
    ex.in_full(con, params)
    running = worker.is_alive()
    worker.join()
    assert running, "in_full waited for the query the engine was running"
    assert threads() == 2


def test_a_findings_slowest_orders_all_open_keep_their_types():
    """The 20 slowest of a finding are often all still open (no end): the saved slice
    keeps instants and the order orders_of gives (hours descending, then order number)."""
    import ibis

    start = pd.Timestamp("2026-11-16 08:00", tz="Asia/Shanghai")
    rows = pd.DataFrame(
        {
            "_finding": ["U1"] * 25,
            "order_id": [f"O{i:02d}" for i in range(25)],
            "start_at": [start + pd.Timedelta(hours=i) for i in range(25)],
            "end_at": pd.Series([pd.NaT] * 25, dtype="datetime64[us, Asia/Shanghai]"),
            "hours": [float(100 - (i // 2)) for i in range(25)],  # pairs tied
            "open": [True] * 25,
        }
    )
    con = ex.shared()
    top, counts = ex._slowest_of_findings(con, ibis.memtable(rows))
    assert counts == {"U1": 25}
    want = rows.sort_values(["hours", "order_id"], ascending=[False, True]).head(ex.FINDING_ORDERS)
    assert top["order_id"].tolist() == want["order_id"].tolist()
    assert top["_at"].tolist() == list(range(ex.FINDING_ORDERS))
    assert str(top["end_at"].dtype).startswith("datetime64") and top["end_at"].isna().all()
    assert (top["start_at"] == want["start_at"].dt.tz_convert("UTC").to_numpy()).all()
