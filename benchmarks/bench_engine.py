"""Wall time and peak memory of sample-data, the weekly run and the floor, per size, in one run.

    python benchmarks/bench_engine.py                       # 20k, 1M and 5M orders a week
    python benchmarks/bench_engine.py --sizes 20000 200000
    python benchmarks/bench_engine.py --sizes 20000 1000000 --skip-run-above 20000

For each size it generates 12 ISO weeks with ``meeting sample-data``, writes a params file
for that folder, runs ``meeting run`` on the last week, then the floor (``floor.py``:
plain DuckDB SQL computing the same aggregates straight off the Parquet files), each as
its own process; up to ``--pairs-up-to`` orders a week (1M) the run and the floor are
measured ``--pairs`` times (3) in turn and the pair with the median ratio is kept. Per
step: wall time and peak memory of ALL the step's processes (the sum of resident memory
over the process tree, notebook kernels and Spark JVMs included, sampled every 0.2 s),
and the load average before and after. The generated data is
deleted after each size. Results go to ``benchmarks/results/engine.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil  # a dependency of ipykernel, which meetinglib requires

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "engine.md"
END_WEEK = "2026-W47"
TIMEZONE = "Asia/Shanghai"
GIB = 1024**3
SIZES = (20_000, 1_000_000, 5_000_000)
STEPS = ("sample-data", "run", "floor")
# The run's own steps, as its manifest names them.
RUN_STEPS = (
    "load",
    "snapshot",
    "data_report",
    "explorer_data_background",
    "explorer_data",
    "total",
)
# A results page keeps everything from this heading on: notes and earlier runs, by hand.
NOTES_HEADING = "## Notes and earlier runs"
# The targets: the bar every recorded figure is read against.
TARGETS = (
    "1M orders a week: `meeting run` ≤ 90 s, ≤ 3 GiB peak, ≤ 2.5x the floor in the same run",
    "5M orders a week: `meeting run` completes in ≤ 8 min within 12 GiB",
    "20k orders a week (the demo): `meeting run` not slower than about 27 s",
)


# --- measuring -------------------------------------------------------------------------------


def tree_rss(pid: int) -> int:
    """Bytes of resident memory of process ``pid`` and all its descendants (0 if gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue  # ended between listing and reading: its memory is gone
    return total


class PeakSampler:
    """Samples ``tree_rss(pid)`` every ``interval`` seconds in a thread; ``peak`` in bytes.

    A spike shorter than the interval can be missed; shared pages (libraries, copy-on-write
    after fork) count once per process, as in the sum of RSS that ``top`` users add up.
    """

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Step:
    """One measured command: wall seconds, peak bytes of its process tree, load averages."""

    name: str
    wall: float = float("nan")
    peak: int = 0
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    cpu: float = float("nan")
    ran: bool = False
    output: str = field(default="", repr=False)
    # The run's own step times (manifest.json's timings_seconds), when it wrote them.
    timings: dict[str, float] = field(default_factory=dict)
    # Of a run measured in several run/floor pairs: each pair's wall-time ratio, in order.
    ratios: list[float] = field(default_factory=list)


def _children_cpu() -> float:
    """CPU seconds (user + system) of every reaped descendant of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _stop_tree(proc: subprocess.Popen[str]) -> None:
    """Terminate ``proc`` and its descendants (a kernel must not outlive an aborted step)."""
    try:
        tree = [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]
    except psutil.NoSuchProcess:
        return
    for member in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.terminate()
    psutil.wait_procs(tree, timeout=10)


def measure(name: str, cmd: Sequence[str], interval: float = 0.2, nice: int = 0) -> Step:
    """Run ``cmd`` to the end; its wall time, the peak of its tree's summed RSS, its CPU
    seconds (every descendant its parent waited for) and the load average around it.

    Raises SystemExit with the command's output tail when it fails.
    """
    step = Step(name, load_before=os.getloadavg())
    prefix = ["nice", "-n", str(nice)] if nice else []
    cpu_before = _children_cpu()
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as log:
        proc = subprocess.Popen([*prefix, *cmd], stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            with PeakSampler(proc.pid, interval) as sampler:
                code = proc.wait()
        except BaseException:
            _stop_tree(proc)
            raise
        step.wall = time.perf_counter() - started
        log.seek(0)
        step.output = log.read()
    step.cpu = _children_cpu() - cpu_before
    step.peak, step.load_after, step.ran = sampler.peak, os.getloadavg(), True
    if code:
        raise SystemExit(f"{name}: {' '.join(cmd)} failed ({code}):\n{step.output[-4000:]}")
    return step


# --- the benchmark ---------------------------------------------------------------------------


def write_params(path: Path, data: Path, output: Path) -> None:
    """A params file for the sample in ``data``: company, timezone, folder source; the
    outputs and the meeting store under ``output`` (deleted with it)."""
    path.write_text(
        "company: Bench Shop\n"
        f"timezone: {TIMEZONE}\n"
        f"source: {{kind: folder, path: '{data}'}}\n"
        f"output_dir: '{output}'\n"
        f"store: {{path: '{output / 'meeting.db'}'}}\n",
        encoding="utf-8",
    )


def run_timings(manifest: Path) -> dict[str, float]:
    """The run's step times in seconds, from its ``manifest.json`` ({} when unreadable)."""
    try:
        found = json.loads(manifest.read_text(encoding="utf-8")).get("timings_seconds", {})
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in found.items() if isinstance(v, (int, float))}


def median_pair(pairs: Sequence[tuple[Step, Step]]) -> tuple[Step, Step]:
    """Of (run, floor) pairs measured in turn, the pair with the median wall-time ratio (the
    higher middle one of an even count), its ``ratios`` every pair's in order and its peaks
    the highest of any pair (memory is read against a bar: the worst one counts)."""
    ratios = [run.wall / floor.wall for run, floor in pairs]
    middle = sorted(range(len(pairs)), key=lambda i: ratios[i])[len(pairs) // 2]
    run, floor = pairs[middle]
    run.ratios = ratios
    run.peak = max(r.peak for r, _ in pairs)
    floor.peak = max(f.peak for _, f in pairs)
    return run, floor


def bench_size(
    size: int,
    weeks: int,
    work: Path,
    run_pipeline: bool,
    nice: int,
    threads: int | None,
    pairs: int = 1,
) -> dict[str, Step]:
    """The three steps at ``size`` orders a week; the run is skipped (not ran) when asked.

    ``pairs``: how many times the run and the floor are measured, in turn (run, floor, run,
    floor...); the pair with the median ratio is kept (``median_pair``). On a shared machine
    one pair's ratio moved by a tenth from one pair to the next."""
    meeting = str(Path(sys.executable).with_name("meeting"))
    data, out = work / f"sample-{size}", work / f"out-{size}"
    params = work / f"params-{size}.yaml"
    steps: dict[str, Step] = {}

    def say(text: str) -> None:
        print(f"{size:,} orders/week: {text}", flush=True)

    try:
        say("sample-data ...")
        steps["sample-data"] = measure(
            "sample-data",
            [meeting, "-q", "sample-data", "--out", str(data), "--weeks", str(weeks),
             "--orders-per-week", str(size), "--end-week", END_WEEK],
            nice=nice,
        )  # fmt: skip
        out.mkdir(parents=True, exist_ok=True)
        write_params(params, data, out)
        floor = [sys.executable, str(HERE / "floor.py"), str(data), "--week", END_WEEK,
                 "--timezone", TIMEZONE]  # fmt: skip
        if threads:
            floor += ["--threads", str(threads)]
        if not run_pipeline:
            steps["run"] = Step("run")
            say("floor ...")
            steps["floor"] = measure("floor", floor, nice=nice)
        else:
            measured = []
            for i in range(1, pairs + 1):
                turn = f" ({i}/{pairs})" if pairs > 1 else ""
                say(f"run{turn} ...")
                run = measure(
                    "run",
                    [meeting, "-q", "run", "--params", str(params), "--week", END_WEEK],
                    nice=nice,
                )
                run.timings = run_timings(out / END_WEEK / "manifest.json")
                say(f"floor{turn} ...")
                measured.append((run, measure("floor", floor, nice=nice)))
                if pairs > 1:
                    say(f"pair {i}: run / floor {measured[-1][0].wall / measured[-1][1].wall:.2f}x")
            steps["run"], steps["floor"] = median_pair(measured)
    finally:
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    for step in steps.values():
        if step.ran:
            say(f"{step.name} {step.wall:.1f} s, {step.peak / GIB:.2f} GiB")
    return steps


def versions() -> str:
    """The versions that decide the figures, as one line."""
    names = ("meetinglib", "duckdb", "ibis-framework", "pyspark", "pandas", "pyarrow", "numpy")
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} not installed")
    return f"Python {platform.python_version()}, " + ", ".join(found)


def machine() -> str:
    """Cores, memory, CPU model and platform, as one line."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = psutil.virtual_memory().total / GIB
    return (
        f"{os.cpu_count()} cores{f' ({model})' if model else ''}, {memory:.1f} GiB memory, "
        f"{platform.platform()}"
    )


def _fmt(step: Step) -> tuple[str, str]:
    if not step.ran:
        return "not run", "not run"
    return f"{step.wall:.1f} s", f"{step.peak / GIB:.2f} GiB"


def _ratio(steps: dict[str, Step]) -> str:
    run, floor = steps["run"], steps["floor"]
    if not (run.ran and floor.ran and floor.wall > 0):
        return "—"
    ratio = f"{run.wall / floor.wall:.2f}x"
    ratio += f" (CPU {run.cpu / floor.cpu:.2f}x)" if floor.cpu > 0 else ""
    if len(run.ratios) > 1:
        ratio += "; pairs " + ", ".join(f"{r:.2f}x" for r in run.ratios)
    return ratio


def _load(step: Step) -> str:
    if not step.ran:
        return "not run"
    return f"{step.cpu:.0f} s; {step.load_before[0]:.1f} → {step.load_after[0]:.1f}"


def report(rows: list[tuple[int, dict[str, Step]]], weeks: int, notes: Sequence[str]) -> str:
    """The results page: the bar, the machine, a table of figures, and the load per step."""
    lines = [
        "# Engine: sample-data, the weekly run and the floor",
        "",
        "The bar (targets; figures are read against them):",
        "",
        *[f"- {target}" for target in TARGETS],
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {machine()}.",
        f"{versions()}.",
        f"{weeks} ISO weeks of sample data ending {END_WEEK} ({TIMEZONE}); `meeting run "
        f"--week {END_WEEK}` with the default 12 history weeks; the floor is "
        "`benchmarks/floor.sql` (plain DuckDB SQL, the same aggregates over the same rows).",
        "Peak memory: the sum of resident memory over ALL processes of the step (kernels and "
        "JVMs included), sampled every 0.2 s. Ratio: run wall time / floor wall time, "
        "measured in the same benchmark run (in brackets: the same for CPU seconds).",
        *notes,
        "",
        "| orders/week | sample-data wall | sample-data peak | run wall | run peak "
        "| floor wall | floor peak | run / floor |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, steps in rows:
        cells = [cell for name in STEPS for cell in _fmt(steps[name])]
        lines.append(f"| {size:,} | {' | '.join(cells)} | {_ratio(steps)} |")
    lines += [
        "",
        "CPU seconds (user + system, all the step's processes) and the load average (1 min) "
        "before → after each step. A load above the core count means other work competed "
        "for the CPU: wall times are then high, CPU seconds much less so.",
        "",
        "| orders/week | sample-data | run | floor |",
        "|---:|---:|---:|---:|",
    ]
    for size, steps in rows:
        lines.append(f"| {size:,} | {' | '.join(_load(steps[name]) for name in STEPS)} |")
    timed = [(size, steps["run"].timings) for size, steps in rows if steps["run"].timings]
    if timed:
        lines += [
            "",
            "Where the run's time goes (its own step times, `manifest.json`; the explorer's "
            "tables are prepared in the background while the data report runs, and "
            "`explorer_data` is what remained after it):",
            "",
            "| orders/week | " + " | ".join(RUN_STEPS) + " |",
            "|---:|" + "---:|" * len(RUN_STEPS),
        ]
        for size, timings in timed:
            cells = [f"{timings[k]:.1f} s" if k in timings else "" for k in RUN_STEPS]
            lines.append(f"| {size:,} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def kept_notes(path: Path) -> str:
    """The hand-written part of an earlier results page (from ``NOTES_HEADING`` on), which
    a new run keeps below its figures; "" when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return ""
    at = text.find(NOTES_HEADING)
    return "" if at < 0 else "\n" + text[at:].rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--weeks", type=int, default=12)
    parser.add_argument(
        "--skip-run-above",
        type=int,
        default=None,
        metavar="N",
        help="sizes above N: sample-data and the floor only, no `meeting run`",
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=3,
        metavar="N",
        help="run/floor pairs measured in turn at sizes up to --pairs-up-to; the median kept",
    )
    parser.add_argument("--pairs-up-to", type=int, default=1_000_000, metavar="SIZE")
    parser.add_argument("--nice", type=int, default=0, help="run each step under nice -n N")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads of the floor")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--work", type=Path, default=None, help="folder for the generated data")
    args = parser.parse_args()
    # A terminated benchmark still stops its step's processes and deletes its data.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    work = Path(tempfile.mkdtemp(prefix="meetinglib-bench-", dir=args.work))
    rows = []
    try:
        for size in args.sizes:
            run_it = args.skip_run_above is None or size <= args.skip_run_above
            pairs = args.pairs if size <= args.pairs_up_to else 1
            rows.append(
                (size, bench_size(size, args.weeks, work, run_it, args.nice, args.threads, pairs))
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    notes = []
    if args.pairs > 1 and any(s <= args.pairs_up_to for s in args.sizes):
        notes.append(
            f"Up to {args.pairs_up_to:,} orders a week the run and the floor were measured "
            f"{args.pairs} times, in turn; the pair with the median ratio is shown (every "
            "pair's ratio after it), and the highest peak of any pair."
        )
    if args.nice:
        notes.append(f"Every step ran under `nice -n {args.nice}`.")
    if args.skip_run_above is not None and any(s > args.skip_run_above for s in args.sizes):
        notes.append(f"`meeting run` was not run above {args.skip_run_above:,} orders a week.")
    text = report(rows, args.weeks, notes) + kept_notes(args.results)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
