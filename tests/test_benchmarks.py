"""The engine benchmark's floor computes the right aggregates; its sampler sees child processes."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from meetinglib.analysis import kpis

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
TZ = "Asia/Shanghai"
WEEK = "2026-W47"
MIB = 1024**2
GIB = 1024**3


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


floor = _load("floor")
bench_engine = _load("bench_engine")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """3 weeks x 2,000 orders ending 2026-W47, and the floor's (kpis, edges) on them."""
    from meetinglib.data.sample import generate_sample

    folder = tmp_path_factory.mktemp("floor_sample")
    generate_sample(folder, weeks=3, orders_per_week=2000, seed=5, end_week=WEEK)
    return folder, *floor.run_floor(folder, WEEK, timezone=TZ)


def _read(folder: Path, table: str) -> pd.DataFrame:
    frame = pd.read_parquet(folder / f"{table}.parquet")
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert(TZ)
    return frame


def _week_label(when: pd.Series) -> pd.Series:
    """ISO week label of each local timestamp, by pandas' calendar (not the library's)."""
    iso = when.dt.isocalendar()
    return iso["year"].astype(str) + "-W" + iso["week"].astype(str).str.zfill(2)


def _value(kpis_frame: pd.DataFrame, kpi: str, week: str, dimension="all", segment="all"):
    row = kpis_frame[
        (kpis_frame["kpi"] == kpi)
        & (kpis_frame["week"] == week)
        & (kpis_frame["dimension"] == dimension)
        & (kpis_frame["segment"] == segment)
    ]
    assert len(row) == 1, f"{kpi} {dimension}={segment} {week}: {len(row)} rows"
    return float(row["value"].iloc[0])


def test_floor_counts_orders_created_per_week(tiny):
    folder, result, _ = tiny
    orders = _read(folder, "orders")
    by_hand = _week_label(orders["created_at"]).value_counts()
    for week in ("2026-W45", "2026-W46", "2026-W47"):
        assert _value(result, "orders_created", week) == by_hand[week]
    per_channel = orders[_week_label(orders["created_at"]) == WEEK]["channel"].value_counts()
    for channel, count in per_channel.items():
        assert _value(result, "orders_created", WEEK, "channel", channel) == count


def test_floor_p90_handling_hours_is_numpys_linear_percentile(tiny):
    folder, result, _ = tiny
    orders = _read(folder, "orders")
    shipped = orders[_week_label(orders["shipped_at"]) == WEEK]
    hours = (shipped["shipped_at"] - shipped["paid_at"]).dt.total_seconds() / 3600.0
    hours = hours[hours >= 0].dropna()
    assert _value(result, "handling_p90_h", WEEK) == pytest.approx(
        np.percentile(hours, 90), rel=1e-9
    )
    in_wh = shipped["warehouse"] == "WH-North"
    north = hours[in_wh.reindex(hours.index)]
    assert _value(result, "handling_median_h", WEEK, "warehouse", "WH-North") == pytest.approx(
        np.percentile(north, 50), rel=1e-9
    )


def test_floor_backlog_at_the_weeks_end(tiny):
    folder, result, _ = tiny
    orders = _read(folder, "orders")
    end = pd.Timestamp("2026-11-23 00:00", tz=TZ)  # the Monday after 2026-W47
    start = end - pd.Timedelta(days=7)
    closed = orders[["shipped_at", "cancelled_at"]].min(axis=1)
    backlog = (
        (orders["paid_at"] < end)
        & ~(closed < end)
        & (orders["created_at"] >= start - pd.Timedelta(days=90))
    )
    assert backlog.sum() > 0
    assert _value(result, "backlog", WEEK) == backlog.sum()


def test_floor_flow_edge_of_the_report_week(tiny):
    folder, _, edges = tiny
    events = _read(folder, "events")
    rank = {"created": 0, "paid": 1, "picked": 2, "packed": 3, "shipped": 4, "delivered": 5}
    events = events.assign(rank=events["activity"].map(rank).fillna(9))
    events = events.sort_values(["order_id", "timestamp", "rank"], kind="stable")
    by_order = events.groupby("order_id")
    previous = by_order["activity"].shift()
    took = (events["timestamp"] - by_order["timestamp"].shift()).dt.total_seconds()
    edge = (
        (previous == "paid")
        & (events["activity"] == "picked")
        & (_week_label(events["timestamp"]) == WEEK)
    )
    row = edges[(edges["source"] == "paid") & (edges["target"] == "picked")].iloc[0]
    assert row["count"] == edge.sum()
    assert row["p90_h"] == pytest.approx(np.percentile(took[edge] / 3600.0, 90), rel=1e-9)


def test_floor_covers_every_catalogue_kpi_and_segmentation(tiny):
    _, result, _ = tiny
    assert set(result["kpi"]) == set(kpis.CATALOGUE)
    for key, spec in kpis.CATALOGUE.items():
        listed = set(result.loc[result["kpi"] == key, "dimension"])
        assert listed == {"all", *spec.dims}, key


def test_floor_equals_the_librarys_weekly_series(tiny):
    """Same KPIs, segments and weeks as kpis.weekly_kpis, values equal to 1e-9 (weeks where
    the floor has no row are those the library lists without data: 0 or NaN)."""
    from meetinglib.core.weeks import IsoWeek, weeks_ending

    folder, result, _ = tiny
    tables = {t: _read(folder, t) for t in floor.TABLES}
    windows = [w.window(TZ) for w in weeks_ending(IsoWeek.parse(WEEK), 13)]
    lib = kpis.weekly_kpis(tables, windows, 48.0, lookback_days=90)
    by_type = lib["order_type"] != "all"
    lib = lib.assign(
        dimension=lib["dimension"].where(~by_type, "order_type"),
        segment=lib["segment"].where(~by_type, lib["order_type"]),
    )
    keys = ["kpi", "dimension", "segment", "week"]
    both = lib.merge(result, on=keys, how="outer", suffixes=("_lib", "_floor"), indicator=True)
    assert (both["_merge"] != "right_only").all()
    only_lib = both[both["_merge"] == "left_only"]
    assert (only_lib["value_lib"].fillna(0) == 0).all()
    common = both[both["_merge"] == "both"]
    assert len(common) > 500  # 3 weeks of data: every KPI and segment of them
    np.testing.assert_allclose(common["value_floor"], common["value_lib"], rtol=1e-9)


def test_sampler_sums_the_memory_of_child_processes(tmp_path):
    own = tmp_path / "parent_rss"
    parent = textwrap.dedent(
        f"""
        import subprocess, sys, psutil
        child = "import time; block = b'x' * (200 * 2**20); time.sleep(1.5)"
        subprocess.run([sys.executable, "-c", child], check=True)
        open({str(own)!r}, "w").write(str(psutil.Process().memory_info().rss))
        """
    )
    step = bench_engine.measure("parent", [sys.executable, "-c", parent], interval=0.1)
    parent_rss = int(own.read_text())
    assert step.peak > parent_rss + 150 * MIB
    assert step.wall >= 1.5
    assert step.cpu > 0  # the child's CPU counts too, once its parent has waited for it


def test_measure_reports_a_failing_command():
    with pytest.raises(SystemExit, match="failed \\(3\\)"):
        bench_engine.measure("fails", [sys.executable, "-c", "import sys; sys.exit(3)"])


def test_floor_command_line_writes_its_tables(tiny, tmp_path):
    folder, result, edges = tiny
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "floor.py"), str(folder), "--week", WEEK,
         "--out", str(tmp_path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "flow edges" in done.stdout
    assert len(pd.read_csv(tmp_path / "floor_kpis.csv")) == len(result)
    assert len(pd.read_csv(tmp_path / "floor_edges.csv")) == len(edges)


def test_results_page_lists_each_size_with_its_ratio_to_the_floor():
    Step = bench_engine.Step
    measured = {
        "sample-data": Step("sample-data", wall=3.0, peak=GIB // 4, cpu=2.5, ran=True),
        "run": Step("run", wall=30.0, peak=GIB, cpu=40.0, ran=True),
        "floor": Step("floor", wall=2.0, peak=GIB // 5, cpu=3.2, ran=True),
    }
    floor_only = {**measured, "run": Step("run")}
    page = bench_engine.report([(20_000, measured), (1_000_000, floor_only)], 12, ["A note."])
    assert "1M orders a week: `meeting run` ≤ 90 s, ≤ 3 GiB peak" in page
    assert "| 20,000 | 3.0 s | 0.25 GiB | 30.0 s | 1.00 GiB | 2.0 s | 0.20 GiB " in page
    assert "| 15.00x (CPU 12.50x) |" in page
    assert "| 1,000,000 | 3.0 s | 0.25 GiB | not run | not run | 2.0 s | 0.20 GiB | — |" in page
    assert "| 20,000 | 2 s; 0.0 → 0.0 | 40 s; 0.0 → 0.0 | 3 s; 0.0 → 0.0 |" in page
    assert "A note." in page


def test_the_median_pair_of_runs_and_floors_is_kept_with_every_ratio_and_the_worst_peak():
    Step = bench_engine.Step

    def pair(run_wall: float, floor_wall: float, run_peak: int) -> tuple:
        return (
            Step("run", wall=run_wall, peak=run_peak, cpu=2 * run_wall, ran=True),
            Step("floor", wall=floor_wall, peak=GIB // 5, cpu=2 * floor_wall, ran=True),
        )

    # ratios 3.0, 2.4, 2.6 in turn: the middle one is the third pair's
    run, floor = bench_engine.median_pair(
        [pair(120.0, 40.0, GIB), pair(108.0, 45.0, 3 * GIB), pair(117.0, 45.0, 2 * GIB)]
    )
    assert (run.wall, floor.wall) == (117.0, 45.0)
    assert run.ratios == pytest.approx([3.0, 2.4, 2.6])
    assert run.peak == 3 * GIB and floor.peak == GIB // 5
    sample = Step("sample-data", wall=50.0, peak=GIB, cpu=50.0, ran=True)
    page = bench_engine.report(
        [(1_000_000, {"sample-data": sample, "run": run, "floor": floor})], 12, []
    )
    assert "| 2.60x (CPU 2.60x); pairs 3.00x, 2.40x, 2.60x |" in page
    # an even count keeps the higher middle pair
    run, _ = bench_engine.median_pair([pair(100.0, 50.0, GIB), pair(90.0, 30.0, GIB)])
    assert run.wall == 90.0


def test_results_page_shows_where_the_runs_time_goes_and_keeps_the_notes(tmp_path):
    Step = bench_engine.Step
    manifest = tmp_path / "manifest.json"
    manifest.write_text('{"timings_seconds": {"load": 25.4, "data_report": 58.61, "total": 88}}')
    run = Step("run", wall=90.0, peak=GIB, cpu=150.0, ran=True)
    run.timings = bench_engine.run_timings(manifest)
    steps = {"sample-data": Step("sample-data"), "run": run, "floor": Step("floor")}
    page = bench_engine.report([(1_000_000, steps)], 12, [])
    header = [line for line in page.splitlines() if line.startswith("| orders/week | load")]
    assert len(header) == 1
    cells = header[0].strip("|").split("|")
    row = [line for line in page.splitlines() if line.startswith("| 1,000,000 | 25.4 s")]
    assert len(row) == 1
    values = [c.strip() for c in row[0].strip("|").split("|")]
    by_step = dict(zip([c.strip() for c in cells], values, strict=True))
    assert by_step["data_report"] == "58.6 s" and by_step["total"] == "88.0 s"
    assert by_step["snapshot"] == ""  # not in this manifest
    # a missing manifest gives no step times, not an error
    assert bench_engine.run_timings(tmp_path / "none.json") == {}
    # the hand-written part of the previous page is kept below the new figures
    previous = tmp_path / "engine.md"
    previous.write_text("# old figures\n\n| 1 |\n\n## Notes and earlier runs\n\nA note by hand.\n")
    kept = bench_engine.kept_notes(previous)
    assert kept.startswith("\n## Notes and earlier runs") and "A note by hand." in kept
    assert "old figures" not in kept
    assert bench_engine.kept_notes(tmp_path / "missing.md") == ""


def test_report_benchmark_times_each_step_of_the_kernel(tmp_path, sample):
    """bench_report builds the data report from a run's snapshot as the notebook does."""
    from meetinglib.core.params import load_params
    from meetinglib.data.dataset import load_week
    from tests.conftest import SAMPLE_WEEK, write_params

    params = write_params(tmp_path, sample.folder)
    load_week(load_params(params), SAMPLE_WEEK).save(tmp_path / "snap")
    script = BENCHMARKS / "bench_report.py"
    only = "kpi_table,root_search,export"
    snap = str(tmp_path / "snap")
    run = [sys.executable, str(script), str(params), snap, "--only", only, "--calls", "3"]
    done = subprocess.run(run, capture_output=True, text=True, check=True, timeout=600)
    steps = [line.split()[0] for line in done.stdout.splitlines() if " s  cpu " in line]
    assert steps == ["open", "kpi_table", "root_search", "export"]
    assert "total wall" in done.stdout and "peak resident" in done.stdout
    # the costliest engine calls, named by the library functions that made them
    costliest = [line.strip() for line in done.stdout.split("the costliest:")[1].splitlines()]
    costliest = [line for line in costliest if line]
    assert len(costliest) == 3
    assert all(line.startswith("cpu ") and ".py:" in line for line in costliest)
    assert any("kpis.py:" in line for line in costliest)
