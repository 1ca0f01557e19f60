"""Time the data report's section tables on a snapshot: each section's call, and in total.

    python benchmarks/bench_sections.py PARAMS SNAPSHOT

The KPI table (the series, the anomaly scan) is computed first and timed apart: the
sections read a few of its rows, and its cost is the catalogue's, not theirs. The engine
reads the snapshot's tables where they lie, as the data report's kernel does.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from meetinglib.core.params import load_params
from meetinglib.data.dataset import WeekData
from meetinglib.report.data_report import DataReport

SECTION_CALLS = (
    ("volume_chart", ()),
    ("channel_chart", ()),
    ("cancellation_table", ()),
    ("stage_chart", ()),
    ("stage_table", ("order_type",)),
    ("stage_table", ("warehouse",)),
    ("on_time_ship_table", ()),
    ("backlog_chart", ()),
    ("backlog_table", ()),
    ("pareto_chart", ()),
    ("abnormal_trend_chart", ()),
    ("abnormal_by_type_table", ()),
    ("abnormal_examples_table", ()),
    ("carrier_table", ()),
    ("delivery_heatmap", ()),
    ("stockout_table", ()),
    ("service_table", ()),
    ("ticket_category_chart", ()),
    ("after_sales_table", ()),
    ("reasons_chart", ()),
    ("finance_table", ()),
    ("aging_chart", ()),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("params")
    parser.add_argument("snapshot")
    args = parser.parse_args()
    params = load_params(args.params)
    t0 = time.perf_counter()
    data = WeekData.load(Path(args.snapshot), params)
    t1 = time.perf_counter()
    report = DataReport(data, "en")
    report.kpi_result  # noqa: B018 (the KPI table, timed apart)
    t2 = time.perf_counter()
    print(f"load {t1 - t0:.1f} s, kpi table {t2 - t1:.1f} s")
    total, cpu = 0.0, time.process_time()
    for name, call_args in SECTION_CALLS:
        start = time.perf_counter()
        getattr(report, name)(*call_args)
        spent = time.perf_counter() - start
        total += spent
        print(f"  {name}{call_args or ''}: {spent:.2f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    cpu = time.process_time() - cpu
    print(f"sections: {total:.1f} s (this process's CPU {cpu:.1f} s); peak resident {peak:.2f} GiB")


if __name__ == "__main__":
    main()
