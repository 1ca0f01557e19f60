"""Benchmark of the bottleneck explorer and the flow section on the engine, from a snapshot.

Run:  python benchmarks/bench_explorer.py --params P --snapshot S [--week 2026-W47]
          [--repeats 3] [--out benchmarks/results/explorer.md] [--label 250k]
          [--prepared FOLDER] [--parts] [--no-section] [--as-the-run [--report DIR]]

The week's tables are the snapshot's Parquet files read by the engine (embedded DuckDB),
as the engine loader provides them: nothing is loaded into pandas. Timed, in one
process: the explorer's first start (the per-order table, the report week's transitions
and variants kept in the engine, the findings, the first view; its parts with
``--parts``), saving its tables into ``--prepared`` (with ``--as-the-run`` instead:
save_week, the weekly run's step, with the findings of the data report in ``--report``),
the start from those saved tables,
each kind of widget change on that explorer (median of ``--repeats``, each from the
default view, nothing kept from an earlier run of the same change), then the data
report's flow section (the week's graph, the findings, the chart's statistics; left out
with ``--no-section``). The process's
peak resident memory and the load average before and after are recorded. Results are
appended to ``--out`` as one section per run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from meetinglib.core.params import load_params  # noqa: E402
from meetinglib.core.weeks import IsoWeek  # noqa: E402
from meetinglib.data import engine  # noqa: E402
from meetinglib.data.dataset import WeekData  # noqa: E402
from meetinglib.report import explorer as ex  # noqa: E402
from meetinglib.report.flow_section import FlowSection  # noqa: E402


def week_on_parquet(params_file: str, snapshot: Path, week: str) -> WeekData:
    """The snapshot's WeekData: its engine tables read the snapshot's files (no pandas
    rows), the written Parquet or the view over the export's copies alike."""
    data = WeekData.load(snapshot, load_params(params_file))
    if str(data.week) != str(IsoWeek.parse(week)):
        raise SystemExit(f"{snapshot} holds {data.week}, not {week}")
    return data


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True)
    parser.add_argument("--snapshot", required=True, type=Path)
    parser.add_argument("--week", default="2026-W47")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--label", default="")
    parser.add_argument("--prepared", default="/tmp/explorer-bench-prepared")
    parser.add_argument("--parts", action="store_true", help="time the first start's parts")
    parser.add_argument("--no-section", action="store_true", help="skip the flow section")
    parser.add_argument(
        "--as-the-run",
        action="store_true",
        help="save the tables as `meeting run` does (save_week), not from a first start",
    )
    parser.add_argument(
        "--report", type=Path, default=None, help="with --as-the-run: the data report's folder"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/explorer.md")
    args = parser.parse_args()

    load_before = os.getloadavg()
    data = week_on_parquet(args.params, args.snapshot, args.week)
    con = engine.shared(data.params.engine)
    orders_in_week = int(
        con.execute(
            data.engine_tables()["orders"]
            .filter(
                (data.engine_tables()["orders"].created_at >= data.window.start)
                & (data.engine_tables()["orders"].created_at < data.window.end)
            )
            .count()
        )
    )
    rows: list[tuple[str, float, str]] = []

    saved_in = Path(args.prepared) / "explorer_data"
    key = "bench"
    if args.as_the_run:
        # what `meeting run` does after the data report: save_week with the report's findings
        t0, cpu0 = time.perf_counter(), time.process_time()
        ex.save_week(data.params, data, saved_in, report=args.report)
        save_s, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
        key = ex.source_fingerprint(data.params, data.week)
        size = sum(p.stat().st_size for p in saved_in.iterdir()) / 1024**2
        found = "the report's bottlenecks.csv" if args.report else "findings computed"
        rows.append(
            (
                f"the run's step: save_week ({found}; {size:,.0f} MiB in {saved_in})",
                save_s,
                f"{cpu_s:.2f} s CPU (all threads)",
            )
        )
    else:
        t0 = time.perf_counter()
        built = ex.Explorer(data, "en", folder="/tmp/explorer-bench")
        start_s = time.perf_counter() - t0
        rows.append(
            ("first start, tables not saved: Explorer(week) up to the first view", start_s, "")
        )
        save_s = timed(lambda: built.save(saved_in, key))
        size = sum(p.stat().st_size for p in saved_in.iterdir()) / 1024**2
        rows.append((f"  then saving its tables ({size:,.0f} MiB in {saved_in})", save_s, ""))
    t0 = time.perf_counter()
    opened = ex.open_prepared(saved_in, key, con)
    assert opened is not None
    explorer = ex.Explorer(ex.Saved(*opened, data.params, lambda: data), "en")
    start_s = time.perf_counter() - t0
    rows.append(
        (
            "start from the saved tables: open_prepared and Explorer up to the first view",
            start_s,
            "",
        )
    )
    first, last = explorer.start.value, explorer.end.value
    if args.parts:
        # the parts of the first start, again on a fresh build (the engine's caches are warm)
        tables = data.engine_tables()
        parts = {}
        t = time.perf_counter()
        fresh = ex.ExplorerData.build(
            tables["orders"], tables.get("events"), tables.get("after_sales"), con=con, tz=data.tz
        )
        parts["ExplorerData.build (latest time, segment values)"] = time.perf_counter() - t
        parts["the week's orders, transitions and variants kept"] = timed(
            lambda: fresh.prepare(first, last)
        )
        parts["findings (FlowSection.bottlenecks)"] = timed(lambda: ex.Findings.of_week(data, "en"))
        parts["first view (compute_view)"] = timed(
            lambda: ex.compute_view(fresh, explorer.selection)
        )
        for name, sec in parts.items():
            rows.append((f"  of which, rebuilt: {name}", sec, ""))

    def change(label: str, apply: Callable[[], None]) -> None:
        runs = []
        for _ in range(args.repeats):
            # every run computes: nothing kept from an earlier run of the same change
            explorer.data.views.clear()
            with explorer.hold():
                explorer.start.value, explorer.end.value = first, last
                explorer.order_type.value = "all"
                explorer.dimension.value = "carrier"
                explorer.stage.value = "shipped_delivered"
                for box in explorer.filters.values():
                    box.value = ()
            runs.append(timed(apply))
        shown = ", ".join(f"{r:.2f}" for r in runs)
        rows.append((f"change: {label}", statistics.median(runs), shown))

    carriers = explorer.data.values("carrier")
    regions = explorer.data.values("region")

    def set_value(widget, value) -> Callable[[], None]:
        return lambda: setattr(widget, "value", value)

    change("stage", set_value(explorer.stage, "paid_shipped"))
    change("segment dimension", set_value(explorer.dimension, "region"))
    change("order type", set_value(explorer.order_type, "special"))
    change("one carrier", set_value(explorer.filters["carrier"], (carriers[0],)))
    change("two regions", set_value(explorer.filters["region"], tuple(regions[:2])))
    change("one day of the week", lambda: _one_day(explorer, first))
    slow = explorer.view.slowest["order_id"].iloc[0] if len(explorer.view.slowest) else ""
    change("an order's timeline", set_value(explorer.order, str(slow)))
    before = first - dt.timedelta(days=7)
    change("date range a week earlier (prepares it)", lambda: _range(explorer, before, last))

    # back to the first view: kept from the start
    rows.append(
        ("change: back to the first view (kept)", timed(lambda: _range(explorer, first, last)), "")
    )
    if not args.no_section:
        section = FlowSection(data, "en")
        rows.append(
            ("section: the week's graph (flow_edges.csv)", timed(lambda: section.edges), "")
        )
        rows.append(("section: findings (bottlenecks.csv)", timed(lambda: section.bottlenecks), ""))
        rows.append(("section: chart statistics", timed(section.worst_segments_chart), ""))

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    load_after = os.getloadavg()
    write(args, rows, orders_in_week, peak, load_before, load_after)


def _one_day(explorer: ex.Explorer, day: dt.date) -> None:
    with explorer.hold():
        explorer.start.value = day + dt.timedelta(days=2)
        explorer.end.value = day + dt.timedelta(days=2)


def _range(explorer: ex.Explorer, first: dt.date, last: dt.date) -> None:
    with explorer.hold():
        explorer.start.value, explorer.end.value = first, last


def write(args, rows, orders, peak_gib, load_before, load_after) -> None:
    import duckdb
    import ibis

    lines = [
        f"## {args.label or args.snapshot} ({orders:,} orders created in {args.week})",
        "",
        f"`python benchmarks/bench_explorer.py {' '.join(sys.argv[1:])}` on "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores, "
        f"{platform.platform()}; duckdb {duckdb.__version__}, ibis {ibis.__version__}, "
        f"pandas {pd.__version__}.",
        f"1-minute load average before / after: {load_before[0]:.1f} / {load_after[0]:.1f}; "
        f"peak resident memory of the process: {peak_gib:.2f} GiB.",
        "",
        "| step | seconds | runs |",
        "|---|---:|---|",
    ]
    lines += [f"| {name} | {sec:.2f} | {runs} |" for name, sec, runs in rows]
    text = "\n".join(lines) + "\n\n"
    print(text)
    with open(args.out, "a", encoding="utf-8") as fh:
        fh.write(text)


if __name__ == "__main__":
    main()
