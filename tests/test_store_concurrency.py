"""The store under parallel writers, through the real command line, on SQLite and PostgreSQL.

16 processes at once on one new store: 8 ``meeting issues import`` of 50 rows each and
8 ``meeting actions add``. Every row must arrive exactly once; importing the same files
again at once adds nothing. A SQLite store another process keeps locked ends in a clear
message and exit code 5, not a traceback or SQL.
"""

from __future__ import annotations

import csv
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from meetinglib.core.errors import EXIT_ENVIRONMENT

WEEK = "2026-W47"
DEPARTMENTS = ["operations", "customer_service", "logistics", "finance", "it"]
URL_ENV = "MEETING_STORE_URL"


def write_params(folder: Path, url: str, busy_timeout: float = 60) -> Path:
    store = (
        f"{{path: '{url.removeprefix('sqlite:///')}', busy_timeout: {busy_timeout}}}"
        if url.startswith("sqlite:///")
        else f"{{url_env: {URL_ENV}, busy_timeout: {busy_timeout}}}"
    )
    path = folder / "params.yaml"
    path.write_text(
        f"""\
company: Demo Shop
timezone: Asia/Shanghai
source: {{kind: folder, path: data}}
store: {store}
output_dir: '{folder / "out"}'
meeting:
  title: Weekly review
  time: "14:00"
  organizer: {{name: Li Na, email: li.na@shop.example, department: operations}}
""",
        encoding="utf-8",
    )
    return path


def issue_file(folder: Path, n: int) -> Path:
    path = folder / f"issues-{n}.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["title", "description", "severity", "segment", "first_seen", "submitter"])
        for row in range(50):
            writer.writerow([f"Import {n} issue {row}", "", "medium", "", "", f"Writer {n}"])
    return path


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "meetinglib.cli", *args]


def run_all(commands: list[list[str]], env: dict[str, str], cwd: Path) -> list[tuple]:
    """Start every command at once; (exit code, stderr, seconds) of each."""
    started = time.monotonic()
    procs = [
        subprocess.Popen(c, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for c in commands
    ]
    results = []
    for p in procs:
        _, err = p.communicate(timeout=600)
        results.append((p.returncode, err.decode("utf-8", "replace"), time.monotonic() - started))
    return results


def counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        found = {
            t: int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {t}")).scalar() or 0)
            for t in ("issues", "action_items", "meetings")
        }
        found["distinct_titles"] = int(
            conn.execute(sa.text("SELECT COUNT(DISTINCT title) FROM issues")).scalar() or 0
        )
    engine.dispose()
    return found


def test_sixteen_writers_lose_nothing(store_db, tmp_path):
    params = write_params(tmp_path, store_db)
    env = {**os.environ, URL_ENV: store_db}
    imports = [
        cli("issues", "import", str(issue_file(tmp_path, n)), "--dept", DEPARTMENTS[n % 5],
            "--week", WEEK, "--params", str(params))
        for n in range(8)
    ]  # fmt: skip
    actions = [
        cli("actions", "add", "--week", WEEK, "--description", f"Action {n}", "--owner",
            f"Owner {n}", "--dept", DEPARTMENTS[n % 5], "--due", "2026-12-01",
            "--params", str(params))
        for n in range(8)
    ]  # fmt: skip
    interleaved = [c for pair in zip(imports, actions, strict=True) for c in pair]
    results = run_all(interleaved, env, tmp_path)
    failed = [(rc, err) for rc, err, _ in results if rc != 0]
    assert failed == []
    assert counts(store_db) == {
        "issues": 8 * 50,
        "distinct_titles": 8 * 50,
        "action_items": 8,
        "meetings": 1,
    }
    slowest = max(seconds for *_, seconds in results)
    print(f"\n16 writers on {store_db.split(':')[0]}: all done in {slowest:.1f} s")

    # The same imports again, all at once: every row is known, nothing is added.
    again = run_all(imports, env, tmp_path)
    assert [(rc, err) for rc, err, _ in again if rc != 0] == []
    assert counts(store_db)["issues"] == 8 * 50


def test_a_store_that_stays_locked_is_an_environment_failure(tmp_path):
    url = f"sqlite:///{tmp_path / 'meeting.db'}"
    params = write_params(tmp_path, url, busy_timeout=1)
    first = subprocess.run(
        cli("actions", "add", "--week", WEEK, "--description", "First", "--owner", "Li Na",
            "--dept", "it", "--due", "2026-12-01", "--params", str(params)),
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    holder = sqlite3.connect(tmp_path / "meeting.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing, and never finishing
    try:
        started = time.monotonic()
        locked = subprocess.run(
            cli("actions", "add", "--week", WEEK, "--description", "Second <script>",
                "--owner", "Li Na", "--dept", "it", "--due", "2026-12-01",
                "--params", str(params)),
            capture_output=True, text=True, cwd=tmp_path, check=False,
        )  # fmt: skip
        waited = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert locked.returncode == EXIT_ENVIRONMENT == 5
    assert "the meeting store stayed locked by another process for 1 s" in locked.stderr
    assert str(tmp_path / "meeting.db") in locked.stderr
    assert "store.busy_timeout" in locked.stderr
    for leak in ("This is a bug", "INSERT", "SELECT", "Traceback", "Second <script>"):
        assert leak not in locked.stderr
    assert waited < 30
    assert counts(url)["action_items"] == 1
