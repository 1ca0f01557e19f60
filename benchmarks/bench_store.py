"""Parallel writers on one meeting store: 8 issue imports of 50 rows and 8 action items.

    python benchmarks/bench_store.py                 # a new SQLite file
    python benchmarks/bench_store.py --url postgresql+psycopg://user@host/db   # empty db

16 processes start together on a new store (they create it, the upgrade runs once),
each opening the store and writing through the library (no command line, so Python's
start-up is not timed). Reports the wall time until the last one finished, each
writer's own time (median, slowest), and checks the counts: 400 issues, 8 action
items, 1 meeting. Writes ``results/store.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from meetinglib.meeting.store import Store, add_action_item

WEEK = "2026-W47"
MEETING = {
    "title": "Weekly review",
    "starts_at": dt.datetime(2026, 11, 23, 6),
    "ends_at": dt.datetime(2026, 11, 23, 7, 30),
    "timezone": "Asia/Shanghai",
    "place": None,
    "online_link": None,
    "organizer_name": None,
    "organizer_email": None,
}


def writer(url: str, n: int, start: float, out: mp.Queue) -> None:
    while time.time() < start:  # all writers begin at the same instant
        time.sleep(0.001)
    began = time.perf_counter()
    with Store.at(url) as store:
        if n % 2 == 0:
            rows = [
                {"department": "logistics", "week": WEEK, "title": f"Import {n} issue {i}",
                 "severity": "medium", "source": f"bench-{n}", "row_hash": f"{n}-{i}"}
                for i in range(50)
            ]  # fmt: skip
            store.add_issues(rows)
        else:
            store.record_meeting(WEEK, details=MEETING, uid="bench@x", invite_hash="h", people=[])
            add_action_item(
                store, WEEK, description=f"Action {n}", owner="Li Na", department="it",
                due_date=dt.date(2026, 12, 1), source="cli",
            )  # fmt: skip
    out.put(time.perf_counter() - began)


def run(url: str, writers: int = 16) -> dict[str, float]:
    ctx = mp.get_context("fork")
    queue: mp.Queue = ctx.Queue()
    start = time.time() + 1.0
    procs = [ctx.Process(target=writer, args=(url, n, start, queue)) for n in range(writers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    wall = time.time() - start
    times = sorted(queue.get() for _ in procs)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        found = {
            t: conn.execute(sa.text(f"SELECT COUNT(*) FROM {t}")).scalar()
            for t in ("issues", "action_items", "meetings")
        }
    engine.dispose()
    expected = {"issues": writers // 2 * 50, "action_items": writers // 2, "meetings": 1}
    assert found == expected, found
    return {"wall": wall, "median": statistics.median(times), "slowest": times[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an empty database (default: a new SQLite file)")
    args = parser.parse_args()
    url = args.url or f"sqlite:///{Path(tempfile.mkdtemp()) / 'meeting.db'}"
    result = run(url)
    backend = sa.make_url(url).get_backend_name()
    line = (
        f"| {backend} | 16 | {result['wall']:.2f} | {result['median']:.2f} | "
        f"{result['slowest']:.2f} | 400 / 8 / 1 | {os.getloadavg()[0]:.1f} |"
    )
    print(line)
    out = Path(__file__).parent / "results" / "store.md"
    if not out.exists():
        out.write_text(
            "# Parallel writers on one store (benchmarks/bench_store.py)\n\n"
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}.\n\n"
            "| backend | writers | wall s | writer median s | slowest s | issues / actions / "
            "meetings | load |\n|---|---|---|---|---|---|---|\n",
            encoding="utf-8",
        )
    with open(out, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


if __name__ == "__main__":
    main()
