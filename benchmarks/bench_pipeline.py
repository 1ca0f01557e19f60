"""Wall time and peak memory of the weekly pipeline at two sizes, in one run.

    python benchmarks/bench_pipeline.py                 # 20,000 and 1,000,000 orders a week
    python benchmarks/bench_pipeline.py --sizes 20000 200000

For each size it runs, as separate processes, ``meeting sample-data`` (12 weeks) and
``meeting run`` on that sample, and records wall time and peak resident memory (the
largest process of the step, the notebook kernel included). The ratio of each size to
the smallest shows how the pipeline scales; absolute times drift with the machine's
load, which the result file records. Results go to ``benchmarks/results/pipeline.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "pipeline.md"


def _measure(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd``; return (wall seconds, peak RSS in GiB of the largest process).

    Each step runs in its own short-lived Python parent so that RUSAGE_CHILDREN
    reports this step alone (it is a high-water mark over all reaped children).
    """
    probe = (
        "import resource, subprocess, sys, time\n"
        "t0 = time.perf_counter()\n"
        "rc = subprocess.run(sys.argv[1:]).returncode\n"
        "wall = time.perf_counter() - t0\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(f'{wall} {peak}', file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, *cmd],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    last = proc.stderr.strip().splitlines()[-1]
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    wall, peak_kib = last.split()
    return float(wall), int(peak_kib) / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 1_000_000])
    parser.add_argument("--weeks", type=int, default=12)
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    args = parser.parse_args()

    meeting = str(Path(sys.executable).with_name("meeting"))
    load_before = os.getloadavg()
    rows = []
    work = Path(tempfile.mkdtemp(prefix="meetinglib-bench-"))
    try:
        for size in args.sizes:
            data = work / f"sample-{size}"
            print(f"{size:,} orders/week: sample-data ...", flush=True)
            gen = _measure(
                [
                    meeting,
                    "-q",
                    "sample-data",
                    "--out",
                    str(data),
                    "--weeks",
                    str(args.weeks),
                    "--orders-per-week",
                    str(size),
                    "--end-week",
                    "2026-W47",
                ]
            )
            params = work / f"params-{size}.yaml"
            params.write_text(
                "company: Bench Shop\ntimezone: Asia/Shanghai\n"
                f"history_weeks: {args.weeks - 1}\n"
                f"source: {{kind: folder, path: '{data}'}}\n"
                f"notebooks_dir: '{ROOT / 'notebooks'}'\noutput_dir: '{work / 'out'}'\n",
                encoding="utf-8",
            )
            print(f"{size:,} orders/week: run ...", flush=True)
            run = _measure([meeting, "-q", "run", "--params", str(params)])
            rows.append((size, gen, run))
            print(
                f"  sample-data {gen[0]:.1f} s, {gen[1]:.2f} GiB; run {run[0]:.1f} s, "
                f"{run[1]:.2f} GiB",
                flush=True,
            )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    base = rows[0]
    lines = [
        "# Pipeline: wall time and peak memory",
        "",
        f"Run {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} on {platform.platform()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; load average before "
        f"{load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}.",
        f"{args.weeks} weeks of sample data; `meeting run` on the latest week with "
        f"{args.weeks - 1} weeks of history. Peak memory is the largest single process.",
        "",
        "| orders/week | sample-data wall | sample-data peak | run wall | run peak "
        "| run time vs smallest |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for size, gen, run in rows:
        lines.append(
            f"| {size:,} | {gen[0]:.1f} s | {gen[1]:.2f} GiB | {run[0]:.1f} s | "
            f"{run[1]:.2f} GiB | {run[0] / base[2][0]:.1f}x |"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
