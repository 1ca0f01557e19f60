"""Time the data report's kernel on a snapshot, step by step, as the notebook runs it.

    python benchmarks/bench_report.py PARAMS SNAPSHOT [--week 2026-W47] [--only kpi_table,roots]
        [--calls 30]

The steps of ``meetinglib/notebooks/data_report.ipynb`` in its order: opening the week,
the KPI table and the "What changed" root search (``report.export``), the actions and
flow sections (the bottleneck findings, their chart, the directly-follows graph), the
section tables and charts, next week's plan. Each step prints its wall time and this
process's CPU seconds (the engine's threads included): on a shared machine wall times
grow with the load, CPU seconds much less. The load average is printed before and after.
With ``--calls N`` the N costliest engine calls follow, each timed on its own and named by
the library functions that made it (file:function:line, innermost first): where a step's
time goes, query by query.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import ibis.backends.duckdb as duckdb_backend

from meetinglib.meeting.actions_section import ActionsSection
from meetinglib.report.data_report import DataReport
from meetinglib.report.flow_section import FlowSection
from meetinglib.report.plan_section import PlanSection

# The section calls are bench_sections' list: both time the same report.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_sections import SECTION_CALLS  # noqa: E402

# The Backend methods through which the library's queries reach DuckDB.
ENGINE_CALLS = ("execute", "to_pyarrow", "to_pyarrow_batches", "to_pandas", "raw_sql", "to_parquet")


def time_engine_calls() -> dict[str, list[float]]:
    """Wrap the DuckDB backend's query methods; returns, per calling place, [calls, wall s,
    CPU s], filled as the report runs (a call made inside another is counted once)."""
    calls: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    depth = [0]

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
            if depth[0]:
                return method(self, *args, **kwargs)
            depth[0] += 1
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return method(self, *args, **kwargs)
            finally:
                depth[0] -= 1
                frames = [f for f in traceback.extract_stack()[:-1] if "meetinglib" in f.filename]
                place = " < ".join(
                    f"{os.path.basename(f.filename)}:{f.name}:{f.lineno}"
                    for f in reversed(frames[-3:])
                )
                entry = calls[place or "(outside the library)"]
                entry[0] += 1
                entry[1] += time.perf_counter() - wall
                entry[2] += time.process_time() - cpu

        return timed

    for name in ENGINE_CALLS:
        if hasattr(duckdb_backend.Backend, name):
            setattr(duckdb_backend.Backend, name, wrap(getattr(duckdb_backend.Backend, name)))
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("params")
    parser.add_argument("snapshot")
    parser.add_argument("--week", default=None)
    parser.add_argument("--only", default="", help="comma-separated step names")
    parser.add_argument("--calls", type=int, default=0, help="list the N costliest engine calls")
    args = parser.parse_args()
    calls = time_engine_calls() if args.calls else {}
    only = set(filter(None, args.only.split(",")))
    out = tempfile.mkdtemp(prefix="bench-report-")
    totals = {"wall": 0.0, "cpu": 0.0}

    def step(name: str, call: Callable[[], Any]) -> Any:
        if only and name not in only and name != "open":
            return None
        wall, cpu = time.perf_counter(), time.process_time()
        result = call()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        totals["wall"] += wall
        totals["cpu"] += cpu
        print(f"{name:22s} wall {wall:7.2f} s  cpu {cpu:7.2f} s", flush=True)
        return result

    print(f"load before {os.getloadavg()[0]:.1f}", flush=True)
    report: DataReport = step(
        "open", lambda: DataReport.open([args.params], args.week, args.snapshot, "en")
    )
    step("kpi_table", lambda: report.kpi_result)
    step("root_search", lambda: report.roots)
    step("export", lambda: report.export(out))
    actions = ActionsSection(report.data, report.lang)
    flow = step("flow_start", lambda: FlowSection(report.data, report.lang))
    step("flow_findings", lambda: flow.bottlenecks if flow else None)
    step("summary", lambda: report.summary(flow=flow, actions=actions))
    step("headline_changes", lambda: (report.headline_table(), report.changes_list()))
    step("flow_chart", lambda: flow.worst_segments_chart() if flow else None)
    step("flow_graph", lambda: flow.graph_chart() if flow else None)
    step("flow_export", lambda: flow.export(out) if flow else None)

    def sections() -> None:
        for name, call_args in SECTION_CALLS:
            getattr(report, name)(*call_args)

    step("sections", sections)

    def plan() -> None:
        section = PlanSection(report.data, report.lang)
        section.summary()
        section.forecast_chart()
        section.export(out)

    step("plan", plan)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"total wall {totals['wall']:.1f} s, cpu {totals['cpu']:.1f} s; "
        f"peak resident {peak:.2f} GiB; load after {os.getloadavg()[0]:.1f}"
    )
    if calls:
        wall = sum(c[1] for c in calls.values())
        cpu = sum(c[2] for c in calls.values())
        count = int(sum(c[0] for c in calls.values()))
        print(f"engine calls: {count}, wall {wall:.1f} s, cpu {cpu:.1f} s; the costliest:")
        costliest = sorted(calls.items(), key=lambda item: -item[1][2])[: args.calls]
        for place, (n, wall, cpu) in costliest:
            print(f"  cpu {cpu:7.2f} s  wall {wall:7.2f} s  {int(n):4d}x  {place}")


if __name__ == "__main__":
    main()
