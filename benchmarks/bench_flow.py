"""Benchmark of meetinglib.analysis.flow against PM4Py on a synthetic log of one million orders.

Run:  python benchmarks/bench_flow.py [--orders 1000000] [--repeats 3] [--no-pm4py]

PM4Py is not a dependency of meetinglib; install it for this comparison with
``pip install -e '.[bench]'``. Without it the script times meetinglib alone.

The log is generated with a fixed seed, vectorised: order milestones with realistic
stage durations by warehouse and carrier, cancellations before and after payment,
orders still open, picking/packing rework loops (picked > packed > picked > packed),
and one planted incident (carrier EastPost in region North is slow to deliver), which
the bottleneck ranking must find. Timings are the median of ``--repeats`` runs on the
same in-memory frames; building the frames (our event log, PM4Py's column names) is
excluded on both sides. Results go to benchmarks/results/flow.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from meetinglib.analysis import flow, flow_engine  # noqa: E402
from meetinglib.core.weeks import Window  # noqa: E402

TZ = "Asia/Shanghai"
SEED = 20260101
HOUR = np.timedelta64(3_600_000_000, "us")
WAREHOUSES = np.array(["WH-North", "WH-South", "WH-East", "WH-West"])
WAREHOUSE_HANDLING_H = np.array([5.0, 7.0, 6.0, 8.0])  # median paid -> picked
CARRIERS = np.array(["EastPost", "SwiftExpress", "CloudLogistics", "RedArrow", "QuickShip"])
CARRIER_SHARE = np.array([0.30, 0.25, 0.20, 0.15, 0.10])
CARRIER_TRANSIT_H = np.array([40.0, 36.0, 44.0, 48.0, 30.0])  # median shipped -> delivered
REGIONS = np.array(["North", "South", "East", "West", "Central", "Northeast", "Northwest", "SW"])
CHANNELS = np.array(["app", "web", "mini_program", "marketplace"])
ORDER_TYPES = np.array(["normal", "special", "after_sales"])


def lognormal_hours(rng: np.random.Generator, median: np.ndarray | float, n: int) -> np.ndarray:
    """Durations in hours, log-normal with the given median and a realistic right tail."""
    return np.asarray(median) * rng.lognormal(0.0, 0.6, n)


def synthetic_orders(
    n: int, seed: int = SEED, weeks: int = 12, with_events: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(orders, events) for ``n`` orders: canonical columns, tz-aware timestamps."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2026-01-05T00:00:00", "us") - np.timedelta64(8, "h")  # local 00:00
    # creation over the weeks, busier in the evening
    day = rng.integers(0, 7 * weeks, n)
    hour = rng.choice(24, n, p=_hour_profile())
    created = start + day * 24 * HOUR + (hour + rng.random(n)) * HOUR
    warehouse = rng.integers(0, len(WAREHOUSES), n)
    carrier = rng.choice(len(CARRIERS), n, p=CARRIER_SHARE)
    region = rng.integers(0, len(REGIONS), n)
    channel = rng.choice(len(CHANNELS), n, p=[0.5, 0.2, 0.2, 0.1])
    otype = rng.choice(len(ORDER_TYPES), n, p=[0.85, 0.10, 0.05])

    u = rng.random(n)
    paid_ok = u >= 0.05  # 4 % cancelled unpaid, 1 % still unpaid
    cancel_unpaid = u < 0.04
    paid = created + lognormal_hours(rng, 0.2, n) * HOUR
    picked = paid + lognormal_hours(rng, WAREHOUSE_HANDLING_H[warehouse], n) * HOUR
    packed = picked + lognormal_hours(rng, 1.0, n) * HOUR
    # 3 % are picked and packed twice (a wrong item found at packing)
    redo = rng.random(n) < 0.03
    picked2 = packed + lognormal_hours(rng, 2.0, n) * HOUR
    packed2 = picked2 + lognormal_hours(rng, 1.0, n) * HOUR
    last_pack = np.where(redo, packed2, packed)
    shipped = last_pack + lognormal_hours(rng, 3.0, n) * HOUR
    transit = CARRIER_TRANSIT_H[carrier] * np.where(
        (CARRIERS[carrier] == "EastPost") & (REGIONS[region] == "North"), 2.5, 1.0
    )
    delivered = shipped + lognormal_hours(rng, transit, n) * HOUR

    v = rng.random(n)
    cancel_paid = paid_ok & (v < 0.02)  # cancelled after payment, before picking
    open_paid = paid_ok & (v >= 0.02) & (v < 0.03)  # paid, not yet picked
    in_transit = paid_ok & (v >= 0.03) & (v < 0.08)  # shipped, not yet delivered
    cancelled = np.where(
        cancel_unpaid,
        created + lognormal_hours(rng, 2.0, n) * HOUR,
        paid + lognormal_hours(rng, 1.0, n) * HOUR,
    )
    nat = np.datetime64("NaT", "us")
    has_cancel = cancel_unpaid | cancel_paid
    reached_pick = paid_ok & ~cancel_paid & ~open_paid
    paid = np.where(paid_ok, paid, nat)
    picked = np.where(reached_pick, picked, nat)
    packed = np.where(reached_pick, packed, nat)
    picked2 = np.where(reached_pick & redo, picked2, nat)
    packed2 = np.where(reached_pick & redo, packed2, nat)
    shipped = np.where(reached_pick, shipped, nat)
    delivered = np.where(reached_pick & ~in_transit, delivered, nat)
    cancelled = np.where(has_cancel, cancelled, nat)

    order_id = "SO" + pd.Series(np.arange(n) + 10_000_000).astype("str")

    def local(a: np.ndarray) -> pd.Series:
        return pd.Series(a).dt.tz_localize("UTC").dt.tz_convert(TZ)

    orders = pd.DataFrame(
        {
            "order_id": order_id.astype("str"),
            "order_type": pd.Categorical.from_codes(otype, ORDER_TYPES),
            "created_at": local(created),
            "paid_at": local(paid),
            "shipped_at": local(shipped),
            "delivered_at": local(delivered),
            "cancelled_at": local(cancelled),
            "channel": pd.Categorical.from_codes(channel, CHANNELS),
            "warehouse": pd.Categorical.from_codes(warehouse, WAREHOUSES),
            "carrier": pd.Categorical.from_codes(carrier, CARRIERS),
            "region": pd.Categorical.from_codes(region, REGIONS),
        }
    )
    if not with_events:
        return orders, None
    steps = [
        ("created", created),
        ("paid", paid),
        ("picked", picked),
        ("packed", packed),
        ("picked", picked2),
        ("packed", packed2),
        ("shipped", shipped),
        ("delivered", delivered),
        ("cancelled", cancelled),
    ]
    stamps = np.concatenate([s for _, s in steps])
    acts = np.repeat(np.arange(len(steps)), n)
    rows = np.tile(np.arange(n), len(steps))
    keep = ~np.isnat(stamps)
    names = [a for a, _ in steps]
    activity_codes = np.asarray([flow.ACTIVITY_ORDER.index(a) for a in names])[acts[keep]]
    events = pd.DataFrame(
        {
            "order_id": order_id.take(rows[keep]).reset_index(drop=True).astype("str"),
            "activity": pd.Categorical.from_codes(activity_codes, list(flow.ACTIVITY_ORDER)),
            "timestamp": local(stamps[keep]),
        }
    )
    return orders, events


def _hour_profile() -> np.ndarray:
    w = np.array([2, 1, 1, 1, 1, 1, 2, 3, 5, 6, 7, 7, 8, 7, 6, 6, 6, 7, 8, 9, 10, 10, 8, 4.0])
    return w / w.sum()


def _runs(times: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in times)


def timed(fn, repeats: int) -> tuple[float, list[float], object]:
    """Median seconds over ``repeats`` calls, all timings, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, result


def pm4py_frame(log: pd.DataFrame) -> pd.DataFrame:
    """The same log in PM4Py's column names (activity as plain strings)."""
    return pd.DataFrame(
        {
            "case:concept:name": log["case_id"],
            "concept:name": log["activity"].astype("str"),
            "time:timestamp": log["timestamp"],
        }
    )


def cross_check(ours: pd.DataFrame, perf: dict, freq: dict) -> dict[str, object]:
    """Compare our edges with PM4Py's: edge set, counts, mean and median seconds."""
    mine = ours[~ours["source"].isin([flow.START]) & ~ours["target"].isin([flow.END])]
    mine = mine.set_index(["source", "target"])
    theirs = pd.DataFrame(
        {
            "pm_count": pd.Series(freq),
            "mean_s": pd.Series({k: v["mean"] for k, v in perf.items()}),
            "median_s": pd.Series({k: v["median"] for k, v in perf.items()}),
        }
    )
    theirs.index.names = ["source", "target"]
    joined = mine.join(theirs, how="inner")
    return {
        "edges (meetinglib / PM4Py)": f"{len(mine)} / {len(theirs)}",
        "same edge set": set(mine.index) == set(theirs.index),
        "same transition count on every edge": bool((joined["count"] == joined["pm_count"]).all()),
        "largest difference in mean time (s)": float(
            (joined["mean_h"] * 3600 - joined["mean_s"]).abs().max()
        ),
        "largest difference in median time (s)": float(
            (joined["median_h"] * 3600 - joined["median_s"]).abs().max()
        ),
    }


def machine() -> dict[str, str]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "os": platform.platform(),
        "python": platform.python_version(),
        "pandas": pd.__version__,
        "numpy": np.__version__,
    }


STEPS = {
    "dfg": "flow_engine.directly_follows(log, start_end=True), DuckDB",
    "variants": "variants(log)",
    "bottlenecks": "bottlenecks(orders), with two-dimension cells",
    "bottlenecks_1d": "bottlenecks(orders, pairs=False)",
    "rework": "rework(log)",
    "dfg_shuffled": "the same, rows shuffled",
    "pm4py": "pm4py.discover_performance_dfg(same log)",
}


def findings_run(weekly: int, weeks: int, repeats: int, out: Path) -> int:
    """Time flow.week_findings on ``weeks`` weeks of ``weekly`` orders (the last = report week)."""
    load_before = os.getloadavg()[0]
    print(f"generating {weekly * weeks:,} orders over {weeks} weeks ...", flush=True)
    t0 = time.perf_counter()
    orders, _ = synthetic_orders(weekly * weeks, weeks=weeks, with_events=False)
    generate = time.perf_counter() - t0
    first = pd.Timestamp("2026-01-05", tz=TZ)
    windows = [
        Window(first + pd.Timedelta(days=7 * i), first + pd.Timedelta(days=7 * (i + 1)))
        for i in range(weeks)
    ]
    # planted, new in the report week: WH-East handles its orders 2.2 times slower
    report = windows[-1]
    hit = (orders["warehouse"] == "WH-East") & report.contains(orders["paid_at"]).fillna(False)
    extra = (orders.loc[hit, "shipped_at"] - orders.loc[hit, "paid_at"]) * 1.2
    for col in ("shipped_at", "delivered_at"):
        orders.loc[hit, col] = orders.loc[hit, col] + extra
    rules = flow.FindingRules(baseline_weeks=weeks - 1)
    sums, sums_times, data = timed(lambda: flow.cohort_sums(orders, windows), repeats)
    rank, rank_times, found = timed(
        lambda: flow.week_findings(orders, windows, rules, data=data), repeats
    )
    total, total_times, _ = timed(lambda: flow.week_findings(orders, windows, rules), repeats)
    load = (load_before, os.getloadavg()[0])
    roots = found[(found["group"] == "new") & (found["rank"] > 0)]
    lines = [
        '# Benchmark: findings of "Where the time goes" at a million orders a week',
        "",
        f"Written by `benchmarks/bench_flow.py --findings {weekly} --findings-weeks {weeks} "
        f"--repeats {repeats}` on {time.strftime('%Y-%m-%d %H:%M')}; data seed {SEED}.",
        "",
        *[f"- {k}: {v}" for k, v in machine().items()],
        f"- 1-minute load average before / after the run: {load[0]:.1f} / {load[1]:.1f}",
        f"- {weekly * weeks:,} orders: {weeks - 1} baseline weeks and the report week of "
        f"{weekly:,} orders each (generated in {generate:.0f} s, not timed); planted: "
        "carrier EastPost in region North, transit x2.5, in every week (a usual bottleneck); "
        "WH-East handling x2.2 in the report week only (new)",
        "",
        f"| step (median of {repeats}) | seconds | runs |",
        "|---|---:|---|",
        f"| cohort_sums: per-order hours, summed per cell | {sums:.2f} | {_runs(sums_times)} |",
        f"| ranking and echo folding on those sums | {rank:.2f} | {_runs(rank_times)} |",
        f"| week_findings from the orders (both) | **{total:.2f}** | {_runs(total_times)} |",
        "",
        "Budget: 5 s for the ranking at a million orders a week.",
        "",
        "New this week (planted: WH-East handling x2.2 in the report week):",
        "",
        *[f"- {s}" for s in roots["finding"][:3]],
        "",
        "Usual bottlenecks, first three:",
        "",
        *[
            f"- {s}"
            for s in found[(found["group"] == "usual") & (found["rank"] > 0)]["finding"][:3]
        ],
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    print(f"written {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=1_000_000)
    ap.add_argument(
        "--findings",
        type=int,
        default=0,
        metavar="WEEKLY",
        help="time flow.week_findings at WEEKLY orders a week instead (e.g. 1000000)",
    )
    ap.add_argument("--findings-weeks", type=int, default=7, help="baseline weeks + report week")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-pm4py", action="store_true", help="time meetinglib only")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "flow.md")
    args = ap.parse_args(argv)
    if args.findings:
        out = ROOT / "benchmarks" / "results" / "findings.md"
        return findings_run(args.findings, args.findings_weeks, args.repeats, out)
    load_before = os.getloadavg()[0]

    print(f"generating {args.orders:,} orders ...", flush=True)
    t0 = time.perf_counter()
    orders, events = synthetic_orders(args.orders)
    prep = {"generate": time.perf_counter() - t0}
    prep["event_log_events"], _, log = timed(lambda: flow.event_log(orders, events), 1)
    prep["event_log_orders"], _, _ = timed(lambda: flow.event_log(orders), 1)
    print(f"{len(events):,} events; event_log {prep['event_log_events']:.2f} s", flush=True)
    shuffled = log.sample(frac=1.0, random_state=SEED).reset_index(drop=True)

    timings: dict[str, tuple[float, list[float]]] = {}

    def run(key: str, fn) -> object:
        med, times, result = timed(fn, args.repeats)
        timings[key] = (med, times)
        print(f"{STEPS[key]:<60} {med:7.2f} s  ({_runs(times)})", flush=True)
        return result

    dfg = run("dfg", lambda: flow_engine.directly_follows(log, start_end=True))
    run("variants", lambda: flow.variants(log))
    found = run("bottlenecks", lambda: flow.bottlenecks(orders))
    run("bottlenecks_1d", lambda: flow.bottlenecks(orders, pairs=False))
    run("rework", lambda: flow.rework(log))
    run("dfg_shuffled", lambda: flow_engine.directly_follows(shuffled, start_end=True))

    pm_version, check = None, {}
    if not args.no_pm4py:
        try:
            import pm4py
        except ImportError:
            print("PM4Py is not installed (pip install -e '.[bench]'); timing meetinglib only.")
        else:
            pm_version = pm4py.__version__
            frame = pm4py_frame(log)
            perf, starts, ends = run("pm4py", lambda: pm4py.discover_performance_dfg(frame))
            check = cross_check(dfg, perf, pm4py.discover_dfg(frame)[0])
            check["same start activities and counts"] = _ends_equal(dfg, starts, start=True)
            check["same end activities and counts"] = _ends_equal(dfg, ends, start=False)
            print(check)

    report = render(
        args,
        len(events),
        prep,
        timings,
        pm_version,
        check,
        found,
        (load_before, os.getloadavg()[0]),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    print(f"written {args.out}")
    return 0


def _ends_equal(dfg: pd.DataFrame, theirs: dict, start: bool) -> bool:
    col, node, other = ("source", flow.START, "target") if start else ("target", flow.END, "source")
    mine = dfg[dfg[col] == node].set_index(other)["count"].to_dict()
    return mine == {k: int(v) for k, v in theirs.items()}


def render(args, n_events, prep, timings, pm_version, check, found, load) -> str:
    m = machine()
    total = sum(timings[k][0] for k in ("dfg", "variants", "bottlenecks"))
    lines = [
        "# Benchmark: process mining (meetinglib.analysis.flow vs PM4Py)",
        "",
        f"Written by `benchmarks/bench_flow.py --orders {args.orders} --repeats "
        f"{args.repeats}` on {time.strftime('%Y-%m-%d %H:%M')}; data seed {SEED}.",
        "",
        "## Machine and versions",
        "",
        *[f"- {k}: {v}" for k, v in m.items()],
        f"- pm4py: {pm_version or 'not installed'}",
        f"- 1-minute load average before / after the run: {load[0]:.1f} / {load[1]:.1f} "
        "(above the core count means other work shared the CPU and the timings are high)",
        "",
        "## Data",
        "",
        f"- {args.orders:,} orders, {n_events:,} events: cancellations before and after "
        "payment, open orders, 3 % pick/pack rework loops, one planted slow carrier x region",
        f"- not timed: generating the data {prep['generate']:.1f} s; "
        f"`event_log(orders, events)` {prep['event_log_events']:.2f} s (checks and sorts "
        f"the events table); `event_log(orders)` from the milestone columns "
        f"{prep['event_log_orders']:.2f} s",
        "",
        f"## Timings (seconds, median of {args.repeats})",
        "",
        "Both libraries get the same in-memory log; building it is excluded on both sides "
        "(for PM4Py: renaming the columns to case:concept:name / concept:name / "
        "time:timestamp and casting the activity to str, which PM4Py requires).",
        "",
        "| step | median | runs |",
        "|---|---:|---|",
        *[f"| {STEPS[k]} | {med:.2f} | {_runs(ts)} |" for k, (med, ts) in timings.items()],
        "",
        f"directly_follows + variants + bottlenecks: **{total:.2f} s** (budget: 10 s).",
    ]
    if "pm4py" in timings:
        pm, ours, shuffled = (timings[k][0] for k in ("pm4py", "dfg", "dfg_shuffled"))
        lines += [
            "",
            f"PM4Py / meetinglib for the performance directly-follows graph: "
            f"**{pm / ours:.1f}x** on the log as `event_log` returns it (sorted; PM4Py "
            f"sorts it again regardless); **{pm / shuffled:.1f}x** on shuffled rows, "
            "which meetinglib has to sort too.",
            "",
            "## Cross-check against PM4Py on the same log",
            "",
            *[f"- {k}: {v}" for k, v in check.items()],
        ]
    if len(found):
        lines += [
            "",
            "## Top bottleneck found (planted: carrier EastPost in region North, transit x2.5)",
            "",
            f"- {found.iloc[0]['finding']}",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
