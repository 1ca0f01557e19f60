"""Bad input, faults and parallel runs: each gets its exit code and a message that helps.

The table below is the contract of docs/bad-input.md: for each bad input the command,
the exit code, a fragment of the message, and that the published handouts of the week
are unchanged by the failure. The fault-injection tests kill a run in the middle of a
notebook, stop it with SIGTERM, fill the disk, make the outputs read-only, time out a
cell and start two runs of the same week at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest
import yaml

from meetinglib.cli import main
from tests import sparkutil
from tests.conftest import SAMPLE_WEEK

pytestmark = pytest.mark.slow

WEEK = SAMPLE_WEEK
MEETING = str(Path(sys.executable).with_name("meeting"))
IN_CI = os.environ.get("CI", "").lower() == "true"


def _need(condition: bool, reason: str) -> None:
    """Skip when a system piece is missing, but fail under CI=true (CI must have it)."""
    if not condition:
        if IN_CI:
            pytest.fail(f"CI must be able to run this test: {reason}")
        pytest.skip(reason)


# --- the shared sample and the published week -----------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """A small CSV sample, a params file over it and one published week."""
    from meetinglib.data.sample import generate_sample

    root = tmp_path_factory.mktemp("reliability")
    sample = generate_sample(
        root / "data", weeks=3, orders_per_week=400, seed=5, end_week=WEEK, fmt="csv"
    )
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(base_params(root, Path(sample.folder))), encoding="utf-8")
    code = main(["-q", "run", "--params", str(params), "--week", WEEK, "--notebook", "data_report"])
    assert code == 0
    return {"root": root, "data": Path(sample.folder), "params": params}


def base_params(root: Path, data: Path, **over: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "company": "Test Shop",
        "timezone": "Asia/Shanghai",
        "history_weeks": 1,
        "source": {"kind": "folder", "path": str(data)},
        "output_dir": str(root / "outputs"),
        "store": {"path": str(root / "meeting.db")},
        "notebooks": ["data_report"],
    }
    doc.update(over)
    return doc


def snapshot(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under the folder, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# --- the table -------------------------------------------------------------------------


@dataclass
class Case:
    """One bad input: how to make it, the command, the exit code, a message fragment."""

    id: str
    argv: list[str]
    code: int
    fragment: str
    params: dict[str, object] = field(default_factory=dict)  # merged over the base params
    raw_params: str | None = None  # the params file's text, as is
    data: Callable[[Path], None] | None = None  # changes a copy of the sample data
    files: dict[str, str] = field(default_factory=dict)  # extra files (name -> text)
    out: str = "stderr"  # where the fragment is expected
    # Starts Spark: run in a process of its own (one driver JVM a process, and this one's
    # may be up, which the command would reuse whatever its params say); needs Java.
    spark: bool = False


def _csv_edit(table: str, edit: Callable[[list[str]], list[str]]) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        path = folder / f"{table}.csv"
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        path.write_text("".join(edit(lines)), encoding="utf-8")

    return apply


def _cell(lines: list[str], row: int, column: str, value: str) -> list[str]:
    """Set one cell (row 1 = first data row) of a simple CSV (no quotes in the sample)."""
    header = lines[0].rstrip("\r\n").split(",")
    cells = lines[row].rstrip("\r\n").split(",")
    cells[header.index(column)] = value
    lines[row] = ",".join(cells) + "\n"
    return lines


def _first(lines: list[str], column: str, value: str) -> int:
    """The first data row (1 = the first) of a simple CSV whose ``column`` holds ``value``."""
    at = lines[0].rstrip("\r\n").split(",").index(column)
    return next(i for i in range(1, len(lines)) if lines[i].rstrip("\r\n").split(",")[at] == value)


def _drop_column(column: str) -> Callable[[list[str]], list[str]]:
    def edit(lines: list[str]) -> list[str]:
        header = lines[0].rstrip("\n").split(",")
        i = header.index(column)
        return [
            ",".join(c for j, c in enumerate(line.rstrip("\n").split(",")) if j != i) + "\n"
            for line in lines
        ]

    return edit


def _every_other_row(column: str, value: str) -> Callable[[list[str]], list[str]]:
    def edit(lines: list[str]) -> list[str]:
        for row in range(1, len(lines), 2):
            _cell(lines, row, column, value)
        return lines

    return edit


def _all_rows(column: str, value: str) -> Callable[[list[str]], list[str]]:
    def edit(lines: list[str]) -> list[str]:
        for row in range(1, len(lines)):
            _cell(lines, row, column, value)
        return lines

    return edit


RUN = ["run", "--week", WEEK]
VALIDATE = ["validate", "--week", WEEK]
DEFAULT_MEETING = {
    "title": "Weekly review",
    "organizer": {"name": "Li Na", "email": "li.na@shop.example", "department": "it"},
}


def _meeting(**over: object) -> dict[str, object]:
    return {"meeting": {**DEFAULT_MEETING, **over}}


CASES = [
    # --- params files (exit 2) ---
    Case("unknown key", RUN, 2, "unknown key 'histroy_weeks'", params={"histroy_weeks": 2}),
    Case(
        "duplicate top-level key",
        RUN,
        2,
        "found the key 'company' twice",
        raw_params="company: A\ncompany: B\n",
    ),
    Case(
        "duplicate nested key",
        RUN,
        2,
        "found the key 'kind' twice",
        raw_params="company: A\ntimezone: UTC\nsource:\n  kind: folder\n  kind: sql\n",
    ),
    Case("yaml syntax error", RUN, 2, "is not valid YAML", raw_params="company: [A\n"),
    Case("top level is a list", RUN, 2, "must hold a mapping", raw_params="- a\n- b\n"),
    Case("params file missing", ["run", "--params", "/nonexistent/p.yaml"], 2, "does not exist"),
    Case("missing company", RUN, 2, "missing key 'company'", raw_params="timezone: UTC\n"),
    Case("bad timezone", RUN, 2, "unknown timezone", params={"timezone": "Mars/Olympus"}),
    Case("history_weeks zero", RUN, 2, "history_weeks", params={"history_weeks": 0}),
    Case("unknown language", RUN, 2, "language", params={"language": "fr"}),
    Case(
        "unknown source table",
        RUN,
        2,
        "unknown table",
        params={"source": {"kind": "folder", "path": "/tmp", "tables": {"oders": {}}}},
    ),
    Case(
        "header_row zero",
        RUN,
        2,
        "invalid value for 'source.tables.orders.header_row'",
        params={"source": {"tables": {"orders": {"header_row": 0}}}},
    ),
    Case("week not ISO", ["run", "--week", "2026-47x"], 2, "is not an ISO week"),
    Case("week with a path", ["run", "--week", "../../x"], 2, "is not an ISO week"),
    Case("week 54", ["run", "--week", "2026-W54"], 2, "2026-W54"),
    Case(
        "at_risk on the better side",
        RUN,
        2,
        "on the better side of the target",
        params={"targets": {"on_time_ship_rate": {"target": 0.95, "at_risk": 0.97}}},
    ),
    Case(
        "at_risk on the better side, lower is better",
        RUN,
        2,
        "lower is better",
        params={"targets": {"abnormal_rate": {"target": 0.03, "at_risk": 0.02}}},
    ),
    Case(
        "target of an unknown KPI",
        RUN,
        2,
        "no KPI named 'on_time'",
        params={"targets": {"on_time": 0.9}},
    ),
    Case(
        "password in the URL's user info",
        RUN,
        2,
        "a password in the user info",
        params={"source": {"kind": "sql", "url": "postgresql://bob:hunter2@db/shop"}},
    ),
    Case(
        "password in the URL's query",
        RUN,
        2,
        "the query parameter 'password'",
        params={"source": {"kind": "sql", "url": "sqlite:////data/shop.db?password=hunter2"}},
    ),
    Case(
        "token in the URL's query",
        RUN,
        2,
        "the query parameter 'token'",
        params={"source": {"kind": "sql", "url": "postgresql://db/shop?sslmode=require&token=x1"}},
    ),
    Case(
        "pwd in the store URL",
        ["actions", "list"],
        2,
        "the query parameter 'pwd'",
        params={"store": {"url": "postgresql://db/meetings?pwd=hunter2"}},
    ),
    Case(
        "secret in the store URL",
        ["actions", "list"],
        2,
        "'secret'",
        params={"store": {"url": "postgresql://db/meetings?secret=hunter2"}},
    ),
    Case(
        "api key in the URL",
        RUN,
        2,
        "'api_key'",
        params={"source": {"kind": "sql", "url": "https://db.example/x?api_key=k1"}},
    ),
    Case(
        "line break in the meeting title",
        ["agenda", "--week", WEEK],
        2,
        "holds a line break",
        params=_meeting(title="Review\r\nBcc: all@example.com"),
    ),
    Case(
        "line break in a per-language title",
        ["agenda", "--week", WEEK],
        2,
        "line break",
        params=_meeting(title={"en": "Review\nX-Evil: 1"}),
    ),
    Case(
        "line break in the company",
        RUN,
        2,
        "holds a line break",
        params={"company": "Shop\nBcc: x@example.com"},
    ),
    Case(
        "line break in the place",
        ["agenda", "--week", WEEK],
        2,
        "line break",
        params=_meeting(place="Room 1\r\nX: y"),
    ),
    Case(
        "line break in an attendee's name",
        ["agenda", "--week", WEEK],
        2,
        "line break",
        params=_meeting(attendees=[{"name": "Wang\nBcc: x@y.example", "email": "w@shop.example"}]),
    ),
    Case(
        "line break in the smtp sender",
        ["notice", "--week", WEEK],
        2,
        "line break",
        params={"smtp": {"host": "mail.example", "sender": "a@b.example\r\nBcc: c@d.example"}},
    ),
    Case(
        "javascript: meeting link",
        ["agenda", "--week", WEEK],
        2,
        "is not a web address",
        params=_meeting(online_link="javascript:alert(1)"),
    ),
    Case(
        "department with a path",
        ["actions", "list"],
        2,
        "they become file names",
        params=_meeting(departments=["ops", "../../../x"]),
    ),
    Case(
        "department with a slash",
        ["actions", "list"],
        2,
        "they become file names",
        params=_meeting(departments=["ops", "a/b"]),
    ),
    Case(
        "template for an unknown department",
        ["issues", "template", "--dept", "../../../x"],
        2,
        "is not in meeting.departments",
    ),
    Case(
        "import for a department with a path",
        ["issues", "import", "issues.csv", "--dept", "../x", "--week", WEEK],
        2,
        "is not in meeting.departments",
        files={"issues.csv": "title,severity\nA,high\n"},
    ),
    Case(
        "notebook name with a path",
        ["run", "--week", WEEK, "--notebook", "../../etc/x"],
        2,
        "cannot be used as a file name",
    ),
    Case(
        "notebook in params with a path",
        RUN,
        2,
        "cannot be used as a file name",
        params={"notebooks": ["../x"]},
    ),
    Case("unknown notebook", ["run", "--week", WEEK, "--notebook", "nosuch"], 2, "not found"),
    Case(
        "cell timeout zero",
        RUN,
        2,
        "cell_timeout_seconds",
        params={"run": {"cell_timeout_seconds": 0}},
    ),
    Case(
        "negative lock wait", RUN, 2, "lock_wait_seconds", params={"run": {"lock_wait_seconds": -1}}
    ),
    Case(
        "sql without url",
        RUN,
        2,
        "neither source.url nor source.url_env",
        params={"source": {"kind": "sql"}},
    ),
    Case(
        "url_env not set",
        RUN,
        2,
        "is not set",
        params={"source": {"kind": "sql", "url_env": "MEETINGLIB_TEST_UNSET_URL"}},
    ),
    Case(
        "minutes for a bad week",
        ["minutes", "record", "m.yaml", "--week", "W47"],
        2,
        "is not an ISO week",
        files={"m.yaml": "week: 2026-W47\n"},
    ),
    Case(
        "kpis --out naming a file",
        ["kpis", "--week", WEEK, "--out", "kpis.csv"],
        2,
        "is a file, not a folder",
        files={"kpis.csv": "kpi\n"},
    ),
    Case(
        "store export --out naming a file",
        ["store", "export", "--out", "/etc/passwd"],
        2,
        "--out /etc/passwd is a file, not a folder",
    ),
    Case(
        "template --out naming a folder",
        ["issues", "template", "--dept", "it", "--out", "."],
        2,
        "is a folder: the command writes one file",
    ),
    # --- input data (exit 3) ---
    Case(
        "source folder missing",
        RUN,
        3,
        "/nonexistent-data",
        params={"source": {"kind": "folder", "path": "/nonexistent-data"}},
    ),
    Case(
        "orders without order_id",
        RUN,
        3,
        "column 'order_id'",
        data=_csv_edit("orders", _drop_column("order_id")),
    ),
    Case(
        "orders without created_at",
        RUN,
        3,
        "column 'created_at'",
        data=_csv_edit("orders", _drop_column("created_at")),
    ),
    Case(
        "orders file empty",
        RUN,
        3,
        "it has no header line",
        data=lambda d: (d / "orders.csv").write_text("", encoding="utf-8"),
    ),
    Case(
        "orders under a title line",
        RUN,
        3,
        "set source.tables.orders.header_row to its number",
        data=_csv_edit("orders", lambda lines: ["订单报表 2026-W47\n", *lines]),
    ),
    Case(
        "header_row past the end of the orders",
        RUN,
        3,
        "ends before line 100000",
        params={"source": {"tables": {"orders": {"header_row": 100000}}}},
    ),
    Case(
        "half the timestamps broken",
        RUN,
        3,
        "more than quality.max_quarantine_share",
        data=_csv_edit("orders", _every_other_row("created_at", "not-a-date")),
    ),
    Case(
        "half the amounts not numbers",
        RUN,
        3,
        "not a number",
        data=_csv_edit("orders", _every_other_row("amount", "twelve")),
    ),
    Case(
        # The week is found from the dates (no --week): the same message as the load's,
        # with both readings in the shape of the values (no seconds here).
        "ambiguous day/month dates, no week given",
        ["validate"],
        3,
        '"%d/%m/%Y %H:%M" (day first) or "%m/%d/%Y %H:%M" (month first)',
        data=_csv_edit("orders", _all_rows("created_at", "03/04/2026 10:00")),
    ),
    Case("no data for the week", ["run", "--week", "2020-W01"], 3, "2020-W01"),
    Case(
        "orders not UTF-8",
        RUN,
        3,
        "cannot decode",
        data=lambda d: (d / "orders.csv").write_bytes(
            (d / "orders.csv").read_bytes().replace(b"app", b"\xff\xfe", 3)
        ),
    ),
    Case(
        "minutes file missing",
        ["minutes", "record", "nosuch.yaml", "--week", WEEK],
        3,
        "does not exist",
    ),
    Case(
        "minutes with a repeated key",
        ["minutes", "record", "m.yaml", "--week", WEEK],
        3,
        "twice",
        files={"m.yaml": f"week: {WEEK}\nsummary: a\nsummary: b\n"},
    ),
    Case(
        "issue file missing",
        ["issues", "import", "nosuch.csv", "--dept", "it", "--week", WEEK],
        3,
        "nosuch.csv",
    ),
    # --- rows set aside, the run goes on (exit 0; `meeting validate` lists them) ---
    Case(
        "NUL byte in a carrier",
        VALIDATE,
        0,
        "NUL byte",
        data=_csv_edit("orders", lambda ls: _cell(ls, 3, "carrier", "Swift\x00Express")),
        out="stdout",
    ),
    Case(
        "NUL byte in an order id",
        VALIDATE,
        0,
        "NUL byte",
        data=_csv_edit("orders", lambda ls: _cell(ls, 4, "order_id", "O\x001")),
        out="stdout",
    ),
    Case(
        "a 1 MB field",
        VALIDATE,
        0,
        "longer than 1,000 characters",
        data=_csv_edit("orders", lambda ls: _cell(ls, 5, "region", "x" * 1_000_000)),
        out="stdout",
    ),
    Case(
        "quoted line breaks keep line numbers exact",
        VALIDATE,
        0,
        "row 8 (order_id SO100000005)",
        data=_csv_edit(
            "orders",
            lambda ls: _cell(
                _cell(ls, 2, "region", '"North\nEast\nWing"'), 5, "order_type", "mystery"
            ),
        ),
        out="stdout",
    ),
    Case(
        "an unknown order type in one row",
        VALIDATE,
        0,
        "Unknown value",
        data=_csv_edit("orders", lambda ls: _cell(ls, 3, "order_type", "mystery")),
        out="stdout",
    ),
    Case(
        "a settled payment without its time",
        VALIDATE,
        0,
        "Status without its time",
        data=_csv_edit(
            "settlements", lambda ls: _cell(ls, _first(ls, "status", "settled"), "settled_at", "")
        ),
        out="stdout",
    ),
    Case(
        "two columns mapped onto one",
        RUN,
        2,
        "are both mapped onto 'warehouse'",
        params={
            "source": {
                "tables": {"orders": {"columns": {"channel": "warehouse", "carrier": "warehouse"}}}
            }
        },
    ),  # fmt: skip
    Case(
        "driver memory the engine refuses",
        RUN,
        2,
        "cannot start: Invalid maximum heap size: -Xmxlots. The params set engine.spark_conf "
        "(spark.driver.memory), the likely cause",
        params={"engine": {"kind": "spark", "spark_conf": {"spark.driver.memory": "lots"}}},
        spark=True,
    ),
    Case(
        "engine source on SQLite",
        RUN,
        2,
        "cannot compute the KPIs inside sqlite",
        params={
            "source": {"kind": "sql", "url": "sqlite:///shop.db"},
            "engine": {"kind": "source"},
        },
        files={"shop.db": ""},  # an empty file is an empty SQLite database
    ),
    # --- the environment (exit 5) ---
    Case(
        "source database unreachable",
        RUN,
        5,
        "cannot connect to database postgresql+psycopg://u@127.0.0.1:1/shop",
        params={"source": {"kind": "sql", "url": "postgresql+psycopg://u@127.0.0.1:1/shop"}},
    ),
    Case(
        "database driver missing",
        RUN,
        5,
        "database driver",
        params={"source": {"kind": "sql", "url_env": "MEETINGLIB_TEST_MYSQL_URL"}},
    ),
    Case(
        "store driver missing",
        ["issues", "list"],
        5,
        "the database driver 'MySQLdb' is not installed",
        params={"store": {"url_env": "MEETINGLIB_TEST_MYSQL_URL"}},
    ),
    Case(
        "outputs under a file",
        RUN,
        5,
        "cannot write here",
        params={"output_dir": "/dev/null/outputs"},
    ),
    Case(
        "template --out where no folder can be made",
        ["issues", "template", "--dept", "logistics", "--out", "/proc/x/t.xlsx"],
        5,
        "cannot write to --out (No such file or directory: /proc/x)",
    ),
    Case(
        "store export --out under a file",
        ["store", "export", "--out", "/etc/passwd/backup"],
        5,
        "cannot write to --out (Not a directory",
    ),
]


def _ids(cases: list[Case]) -> list[str]:
    return [c.id.replace(" ", "-") for c in cases]


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


def test_docs_list_every_case_with_its_exit_code() -> None:
    page = (Path(__file__).parents[1] / "docs" / "bad-input.md").read_text(encoding="utf-8")
    missing = [c.id for c in CASES if f"| {c.id} | `meeting " not in page]
    assert missing == []
    for c in CASES:
        line = next(x for x in page.splitlines() if x.startswith(f"| {c.id} | "))
        assert f"| {c.code} |" in line, line


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_bad_input(case: Case, world, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEETINGLIB_TEST_MYSQL_URL", "mysql+mysqldb://u@db.example/shop")
    data = world["data"]
    if case.data is not None:
        data = tmp_path / "data"
        shutil.copytree(world["data"], data)
        case.data(data)
    for name, text in case.files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    params = tmp_path / "params.yaml"
    if case.raw_params is not None:
        params.write_text(case.raw_params, encoding="utf-8")
    else:
        doc = base_params(world["root"], data)
        for key, value in case.params.items():
            if isinstance(value, dict) and isinstance(doc.get(key), dict):
                doc[key] = {**doc[key], **value}  # type: ignore[dict-item]
            else:
                doc[key] = value
        params.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    argv = case.argv if "--params" in case.argv else [*case.argv, "--params", str(params)]
    published = world["root"] / "outputs" / WEEK
    before = snapshot(published)

    if case.spark:
        sparkutil.require()
        done = subprocess.run(
            [MEETING, "-q", *argv], capture_output=True, text=True, timeout=300, check=False
        )
        code, out, err = done.returncode, done.stdout, done.stderr
    else:
        try:
            code = main(["-q", *argv])
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
        out, err = capsys.readouterr()

    assert code == case.code, f"exit {code}; stderr: {err[-1500:]}"
    text = out if case.out == "stdout" else err
    assert case.fragment in text, text[-1500:]
    if code:
        assert "This is a bug" not in err or case.code == 1
        assert "hunter2" not in err, "a credential was echoed"
    if case.spark:  # the error alone: no traceback, nor the JVM's own lines above it
        assert "Traceback" not in err and "Java Virtual Machine" not in err, err
    assert snapshot(published) == before, "the published handouts changed"


# --- fault injection -----------------------------------------------------------------------


def _many_cells(folder: Path, cells: list[str]) -> Path:
    """A notebooks folder whose data_report runs ``cells`` after its parameters."""
    folder.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(
        "week = None\nparams_files = []\nsnapshot = None\nlang = 'en'\nout_dir = None"
    )
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *(nbformat.v4.new_code_cell(c) for c in cells)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, folder / "data_report.ipynb")
    return folder


def _notebooks(folder: Path, sleep: float) -> Path:
    """A notebooks folder whose data_report sleeps ``sleep`` seconds in one cell."""
    return _many_cells(folder, [f"import time\ntime.sleep({sleep})", "print('report for', week)"])


def _params_file(root: Path, data: Path, name: str = "params.yaml", **over: object) -> Path:
    path = root / name
    path.write_text(yaml.safe_dump(base_params(root, data, **over)), encoding="utf-8")
    return path


def _start(params: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [MEETING, "run", "--params", str(params), "--week", WEEK, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate: Callable[[], object], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _kernel_dirs(pid: int) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"meetinglib-kernel-{pid}-*"))


def _stagings(out: Path) -> list[Path]:
    return list(out.glob(f".{WEEK}.staging-*"))


def test_kill_9_during_a_notebook_then_rerun(world, tmp_path) -> None:
    slow = _params_file(
        tmp_path, world["data"], notebooks_dir=str(_notebooks(tmp_path / "nb", 120))
    )
    out = tmp_path / "outputs"
    proc = _start(slow)
    try:
        _wait_for(lambda: _kernel_dirs(proc.pid) and _stagings(out), 240, "the notebook to start")
        time.sleep(2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # What kill -9 leaves: the staging folder with its data snapshot (beside it, in any
    # order, the explorer's tables in the making), the kernel folder.
    left = _stagings(out)
    assert any((folder / "_snapshot").is_dir() for folder in left), left
    assert _kernel_dirs(proc.pid)
    assert not (out / WEEK).exists(), "nothing was published"
    assert not (out / f".{WEEK}.lock").exists() or True  # the OS released the lock itself

    quick = _params_file(
        tmp_path, world["data"], "quick.yaml", notebooks_dir=str(_notebooks(tmp_path / "nb2", 0))
    )
    rerun = subprocess.run(
        [MEETING, "-q", "run", "--params", str(quick), "--week", WEEK],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert (out / WEEK / "data_report.html").is_file()
    assert _stagings(out) == [], "the dead run's staging folder (and its snapshot) is gone"
    assert _kernel_dirs(proc.pid) == [], "the dead run's kernel folder (with its key) is gone"
    runtime = Path.home() / ".local/share/jupyter/runtime"
    assert not [p for p in runtime.glob("kernel-*.json") if p.stat().st_mtime > time.time() - 600]


def test_sigterm_removes_staging_and_kernel_files(world, tmp_path) -> None:
    slow = _params_file(
        tmp_path, world["data"], notebooks_dir=str(_notebooks(tmp_path / "nb", 120))
    )
    out = tmp_path / "outputs"
    proc = _start(slow)
    try:
        _wait_for(lambda: _kernel_dirs(proc.pid) and _stagings(out), 240, "the notebook to start")
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert _stagings(out) == []
    assert _kernel_dirs(proc.pid) == []
    assert not (out / WEEK).exists()


def test_a_hung_cell_times_out(world, tmp_path, capsys) -> None:
    params = _params_file(
        tmp_path,
        world["data"],
        notebooks_dir=str(_notebooks(tmp_path / "nb", 600)),
        run={"cell_timeout_seconds": 3},
    )
    started = time.monotonic()
    code = main(["-q", "run", "--params", str(params), "--week", WEEK])
    err = capsys.readouterr().err
    assert code == 4, err
    assert "no result after 3 s (run.cell_timeout_seconds" in err
    assert time.monotonic() - started < 300


def _counting_notebook_writes(monkeypatch) -> list[str]:
    """The paths papermill writes executed notebooks to, call by call, in this process."""
    import papermill.engines
    import papermill.execute

    written: list[str] = []
    for module in (papermill.engines, papermill.execute):
        plain = module.write_ipynb

        def counted(nb, path, *args, _plain=plain, **kwargs):
            written.append(str(path))
            return _plain(nb, path, *args, **kwargs)

        monkeypatch.setattr(module, "write_ipynb", counted)
    return written


def test_the_executed_notebook_is_written_at_its_end_not_around_every_cell(
    world, tmp_path, monkeypatch, capsys
) -> None:
    cells = [f"print('cell', {i})" for i in range(12)]
    params = _params_file(
        tmp_path,
        world["data"],
        output_dir=str(tmp_path / "outputs"),
        notebooks_dir=str(_many_cells(tmp_path / "nb", cells)),
    )
    written = _counting_notebook_writes(monkeypatch)
    code = main(["-q", "run", "--params", str(params), "--week", WEEK])
    assert code == 0, capsys.readouterr().err
    # papermill wrote it before and after each of the 14 cells (31 writes); quick cells
    # now leave it to the end
    assert 1 <= len(written) <= 3, written
    nb = nbformat.read(tmp_path / "outputs" / WEEK / "data_report.ipynb", as_version=4)
    printed = [o["text"] for c in nb.cells for o in c.get("outputs", []) if "text" in o]
    assert printed == [f"cell {i}\n" for i in range(12)]


def test_a_timed_out_notebook_is_kept_with_the_cells_before_it(world, tmp_path, capsys) -> None:
    params = _params_file(
        tmp_path,
        world["data"],
        output_dir=str(tmp_path / "outputs"),
        notebooks_dir=str(
            _many_cells(tmp_path / "nb", ["print('before')", "import time\ntime.sleep(600)"])
        ),
        run={"cell_timeout_seconds": 3},
    )
    code = main(["-q", "run", "--params", str(params), "--week", WEEK])
    err = capsys.readouterr().err
    assert code == 4, err
    kept = list((tmp_path / "outputs").glob(f"{WEEK}.failed-*/data_report.ipynb"))
    assert len(kept) == 1 and str(kept[0]) in err.replace("\n", ""), err
    nb = nbformat.read(kept[0], as_version=4)
    printed = [o.get("text") for c in nb.cells for o in c.get("outputs", [])]
    assert printed == ["before\n"]


def test_two_runs_of_one_week_at_once_both_publish(world, tmp_path) -> None:
    params = _params_file(
        tmp_path, world["data"], notebooks_dir=str(_notebooks(tmp_path / "nb", 3))
    )
    procs = [_start(params) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in results]
    out = tmp_path / "outputs"
    assert (out / WEEK / "data_report.html").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no staging, old or lock left"


def test_a_held_lock_gives_exit_6(world, tmp_path, capsys) -> None:
    params = _params_file(tmp_path, world["data"], run={"lock_wait_seconds": 1})
    out = tmp_path / "outputs"
    out.mkdir()
    with open(out / f".{WEEK}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write("pid 1 since earlier")
        fh.flush()
        code = main(["-q", "run", "--params", str(params), "--week", WEEK])
    err = capsys.readouterr().err
    assert code == 6, err
    assert f"another run of {WEEK} is in progress (pid 1 since earlier)" in err
    assert "run.lock_wait" in err


@contextlib.contextmanager
def _tmpfs(folder: Path, options: str) -> Iterator[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    _need(os.geteuid() == 0, "mounting a small tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    _need(done.returncode == 0, f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_disk_full_is_the_environment(world, tmp_path, capsys) -> None:
    with _tmpfs(tmp_path / "small", "size=192k") as small:
        params = _params_file(tmp_path, world["data"], output_dir=str(small / "outputs"))
        code = main(["-q", "run", "--params", str(params), "--week", WEEK])
        err = capsys.readouterr().err
        assert code == 5, err
        assert "no space left on the device" in err and str(small) in err
        assert "Free some space" in err
        assert not (small / "outputs" / WEEK).exists()
        assert not list((small / "outputs").glob(".*staging*"))


def test_read_only_outputs_are_the_environment(world, tmp_path, capsys) -> None:
    with _tmpfs(tmp_path / "ro", "ro,size=64k") as ro:
        params = _params_file(tmp_path, world["data"], output_dir=str(ro / "outputs"))
        code = main(["-q", "run", "--params", str(params), "--week", WEEK])
        err = capsys.readouterr().err
        assert code == 5, err
        assert "cannot write here (read-only" in err and str(ro / "outputs") in err
        assert "This is a bug" not in err


def test_progress_and_manifest_mask_a_url_credential(world, tmp_path, capsys, monkeypatch):
    """A credential reaching a run through the environment never shows: not in progress
    lines, not in manifest.json, not in the error when the database lacks a table."""
    import pandas as pd
    import sqlalchemy as sa

    db = tmp_path / "shop.db"
    url = f"sqlite:///{db}?password=hunter2"
    engine = sa.create_engine(f"sqlite:///{db}")
    for csv_file in sorted(world["data"].glob("*.csv")):
        pd.read_csv(csv_file, dtype=str).to_sql(csv_file.stem, engine, index=False)
    engine.dispose()
    monkeypatch.setenv("MEETINGLIB_TEST_SHOP_URL", url)
    params = _params_file(
        tmp_path,
        world["data"],
        source={"kind": "sql", "url_env": "MEETINGLIB_TEST_SHOP_URL"},
        notebooks_dir=str(_notebooks(tmp_path / "nb", 0)),
    )
    code = main(["run", "--params", str(params), "--week", WEEK])
    out, err = capsys.readouterr()
    assert code == 0, err
    manifest = (tmp_path / "outputs" / WEEK / "manifest.json").read_text(encoding="utf-8")
    assert "hunter2" not in out + err + manifest

    with sa.create_engine(f"sqlite:///{db}").begin() as conn:
        conn.execute(sa.text("DROP TABLE orders"))
    code = main(["validate", "--params", str(params), "--week", WEEK])
    out, err = capsys.readouterr()
    assert code == 3, err
    assert "orders" in err and "password=***" in err
    assert "hunter2" not in out + err


def test_a_mistyped_week_is_refused_before_anything_starts(tmp_path, capsys, monkeypatch):
    """No kernel started, no "loading" line: the week's spelling is the first thing judged."""
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--week", "2026-47"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "error: week '2026-47' is not an ISO week; write it as YYYY-Www, for example 2026-W47."
    ]


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path) -> None:
    # `meeting ... | head -1`: the reading end is closed before the command writes.
    read, write = os.pipe()
    os.close(read)
    argv = ["issues", "template", "--dept", "it", "--out", str(tmp_path / "it.csv")]
    try:
        done = subprocess.run(
            [MEETING, *argv], stdout=write, stderr=subprocess.PIPE, timeout=120, check=False
        )
    finally:
        os.close(write)
    assert done.stderr.decode() == ""
    assert done.returncode == 141  # 128 + SIGPIPE, as a shell reports it


def test_validate_prints_the_rows_used_per_table_and_short_lines(world, tmp_path, capsys):
    """Scattered bad amounts: the table of what was set aside stays narrow, its examples
    wrapped below it; the rows used are given per table, as the snapshot counts them."""
    data = tmp_path / "data"
    shutil.copytree(world["data"], data)
    _csv_edit("orders", lambda lines: [_cell(lines, r, "amount", "twelve") for r in (3, 9)][-1])(
        data
    )
    params = _params_file(tmp_path, data)
    assert main(["-q", "validate", "--params", str(params), "--week", WEEK]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    kept = lines[0]
    assert kept.startswith(f"week {WEEK} and the history before it, rows used: orders ")
    assert "tickets " in kept and "events " in kept
    assert "Not a number" in out and "'twelve'" in out
    assert max(len(line) for line in lines[1:]) <= 110, out


def test_a_broken_pipe_in_process_ends_quietly_too(tmp_path, monkeypatch) -> None:
    """main called by a program whose output object has no file descriptor."""

    class Gone:
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Gone())
    argv = ["issues", "template", "--dept", "it", "--out", str(tmp_path / "it.csv")]
    assert main(argv) == 141
