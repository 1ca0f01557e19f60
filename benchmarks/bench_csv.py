"""A CSV source loaded on the pandas path and on the engine (converted once, then cached).

Writes the tables of a Parquet sample folder as CSV files (timestamps as naive local
times, as a company's export writes them), then times ``load_week`` + ``WeekData.save``
in a fresh process per path, and checks both snapshots are equal::

    python benchmarks/bench_csv.py --parquet /tmp/b250k/data --csv /tmp/csv250k \\
        --params /tmp/b250k/params.yaml

The engine is run twice: the first run converts the files into the cache
(``MEETINGLIB_CACHE_DIR``, here under the CSV folder), the second finds them there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import yaml

_CHILD = """
import json, resource, sys, time
from meetinglib.core.params import load_params
from meetinglib.data.dataset import load_week
params = load_params(sys.argv[1])
start = time.perf_counter()
data = load_week(params, sys.argv[2], on_engine=sys.argv[3] == "engine")
data.save(sys.argv[4])
wall = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
                  "rss_gib": usage.ru_maxrss / 2**20, "paths": data.load_paths}))
"""


def write_csv(parquet: Path, csv: Path, tz: str) -> None:
    """Each Parquet table as a CSV file; timestamps as naive wall-clock times in ``tz``."""
    csv.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"SET TimeZone = '{tz}'")
    con.execute("SET enable_progress_bar = false")
    for path in sorted(parquet.glob("*.parquet")):
        target = csv / f"{path.stem}.csv"
        if target.exists():
            continue
        described = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()
        columns = []
        for name, kind, *_ in described:
            if kind.startswith("TIMESTAMP"):
                columns.append(f'strftime("{name}", \'%Y-%m-%d %H:%M:%S\') AS "{name}"')
            else:
                columns.append(f'"{name}"')
        con.execute(
            f"COPY (SELECT {', '.join(columns)} FROM read_parquet('{path}')) "
            f"TO '{target}' (HEADER, DELIMITER ',')"
        )


def same_snapshots(left: Path, right: Path) -> bool:
    """Whether two snapshots hold the same rows in every table (as multisets)."""
    con = duckdb.connect()
    for path in sorted((left / "tables").glob("*.parquet")):
        a = f"read_parquet('{path}')"
        b = f"read_parquet('{right / 'tables' / path.name}')"
        for x, y in ((a, b), (b, a)):
            if con.execute(
                f"SELECT count(*) FROM (SELECT * FROM {x} EXCEPT ALL SELECT * FROM {y})"
            ).fetchone() != (0,):
                return False
    return True


def run(params: Path, week: str, path: str, out: Path, env: dict[str, str]) -> dict[str, object]:
    """One load in a fresh process: wall, CPU, peak memory, load average before/after."""
    before = os.getloadavg()[0]
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(params), week, path, str(out)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    result["load"] = f"{before:.1f} → {os.getloadavg()[0]:.1f}"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parquet", type=Path, required=True)
    parser.add_argument("--csv", type=Path, required=True)
    parser.add_argument("--params", type=Path, required=True)
    parser.add_argument("--week", default="2026-W47")
    args = parser.parse_args()
    settings = yaml.safe_load(args.params.read_text(encoding="utf-8"))
    write_csv(args.parquet, args.csv, settings["timezone"])
    settings["source"] = {"kind": "folder", "path": str(args.csv)}
    params = args.csv / "params.yaml"
    params.write_text(yaml.safe_dump(settings, allow_unicode=True), encoding="utf-8")
    env = dict(os.environ, MEETINGLIB_CACHE_DIR=str(args.csv / "cache"))
    rows = []
    for label, path in (
        ("pandas", "pandas"),
        ("engine, converting", "engine"),
        ("engine, cached", "engine"),
    ):
        start = time.perf_counter()
        result = run(params, args.week, path, args.csv / f"snap-{len(rows)}", env)
        result["process"] = time.perf_counter() - start
        rows.append((label, result))
        print(label, json.dumps(result), flush=True)
    snaps = [args.csv / f"snap-{i}" for i in range(len(rows))]
    print("snapshots equal:", same_snapshots(snaps[0], snaps[1]), flush=True)


if __name__ == "__main__":
    main()
