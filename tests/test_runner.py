"""The pipeline end to end: real notebooks through papermill and nbconvert."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from meetinglib.cli import main
from meetinglib.core.weeks import IsoWeek
from tests import sparkutil
from tests.conftest import ROOT, SAMPLE_WEEK, cut_week, write_params

pytestmark = pytest.mark.slow


class _Page(HTMLParser):
    """Collects what a browser would fetch or show from a handout."""

    def __init__(self):
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []
        self.images: list[str] = []
        self.scripts_with_src: list[str] = []
        self.input_areas = 0
        self.text: list[str] = []
        self.lang = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        for key in ("src", "href", "data", "poster", "action"):
            if a.get(key):
                self.urls.append((tag, key, a[key]))
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "script" and a.get("src"):
            self.scripts_with_src.append(a["src"])
        if "jp-InputArea" in (a.get("class") or "").split():
            self.input_areas += 1

    def handle_data(self, data):
        self.text.append(data)


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def outside(url: str) -> bool:
    return url.startswith(("http:", "https:", "//", "ftp:")) or "://" in url


def test_run_publishes_self_contained_handouts(tmp_path, sample, sample_params, capsys):
    code = main(["run", "--params", str(sample_params), "--week", SAMPLE_WEEK])
    out, err = capsys.readouterr()
    assert code == 0, err
    week_dir = tmp_path / "outputs" / SAMPLE_WEEK
    index = week_dir / "index.html"
    assert str(index) in out, "the CLI prints where the handouts are"
    assert "data_report: executing" in err, "progress is shown"

    html_path = week_dir / "data_report.html"
    page = parse(html_path)
    assert page.input_areas == 0, "code cells are hidden"
    body = html_path.read_text(encoding="utf-8")
    assert "DataReport.open" not in body and "import " not in body
    assert page.scripts_with_src == []
    assert [u for u in page.urls if outside(u[2])] == []
    assert len(page.images) >= 3, "volume, stage and Pareto charts"
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    text = " ".join(page.text)
    for heading in (
        "Headline",
        "Order volume",
        "Processing efficiency",
        "Abnormal orders",
        "Data quality",
        "On-time ship rate",
        "Backlog at week end",
        "Last week's actions",
        "Where the time goes",
        "Next week",
        "What changed",
    ):
        assert heading in text
    assert page.lang == "en"
    # Machine-readable files beside the handout, and the index links them.
    for name in ("kpis.csv", "flow_edges.csv", "bottlenecks.csv"):
        assert (week_dir / name).stat().st_size > 0, name

    # The index links every handout; every link resolves to a file in the folder.
    links = [u[2] for u in parse(index).urls if u[1] == "href"]
    assert "data_report.html" in links
    assert all((week_dir / link).is_file() for link in links)
    assert [u for u in parse(index).urls if outside(u[2])] == []

    manifest = json.loads((week_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["week"] == SAMPLE_WEEK
    assert not (week_dir / "report_warnings.json").exists(), "relayed, not published"
    inputs = {i["table"]: i for i in manifest["inputs"]}
    orders_file = Path(sample.files["orders"])
    assert inputs["orders"]["sha256"] == hashlib.sha256(orders_file.read_bytes()).hexdigest()
    assert inputs["orders"]["rows"] > 0
    assert {"pandas", "papermill", "nbconvert"} <= set(manifest["versions"])
    assert manifest["handouts"][0]["name"] == "data_report"
    assert manifest["parameters"]["timezone"] == "Asia/Shanghai"
    # the explorer's tables are saved by default (params run.explorer_data)
    assert manifest["explorer_data"] == "explorer_data"
    assert (week_dir / "explorer_data" / "meta.json").is_file()

    # The executed notebook is kept beside the handout; no staging folder is left behind.
    assert (week_dir / "data_report.ipynb").is_file()
    assert not [p for p in (tmp_path / "outputs").iterdir() if p.name.startswith(".")]


def test_handout_in_simplified_chinese(tmp_path, sample, sample_params, capsys):
    assert (
        main(["run", "--params", str(sample_params), "--week", SAMPLE_WEEK, "--lang", "zh-CN"]) == 0
    )
    page = parse(tmp_path / "outputs" / SAMPLE_WEEK / "data_report.html")
    assert page.lang == "zh-CN"
    text = " ".join(page.text)
    assert "订单处理周报" in text and "准时发货率" in text
    assert "On-time ship rate" not in text
    # every progress line in the run's language: the load step's, the notebooks', the
    # explorer's tables'
    err = capsys.readouterr().err
    assert "正在加载并校验数据" in err and "orders：" in err and "loading" not in err
    assert "[1/1] data_report：执行中" in err and "正在导出 HTML" in err
    assert "正在保存瓶颈探索器的数据表" in err
    assert not {"executing", "exporting", "saving"} & set(re.findall(r"[a-z]+", err))


def _broken_notebook(folder: Path, cell: str = "1 / 0", name: str = "broken") -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(
        "week = None\nparams_files = []\nsnapshot = None\nlang = None\nout_dir = None"
    )
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(cell)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, folder / f"{name}.ipynb")


def test_failed_notebook_keeps_previous_handouts(tmp_path, sample, capsys):
    notebooks = tmp_path / "nb"
    notebooks.mkdir()
    shutil.copy(ROOT / "notebooks" / "data_report.ipynb", notebooks)
    _broken_notebook(notebooks)
    params = write_params(tmp_path, sample.folder, notebooks_dir=str(notebooks))
    week_dir = tmp_path / "outputs" / SAMPLE_WEEK

    assert main(["run", "--params", str(params), "--week", SAMPLE_WEEK]) == 0
    before = {p.name: p.read_bytes() for p in week_dir.iterdir() if p.is_file()}
    capsys.readouterr()

    code = main(
        [
            "run",
            "--params",
            str(params),
            "--week",
            SAMPLE_WEEK,
            "--notebook",
            "data_report",
            "--notebook",
            "broken",
        ]
    )
    _, err = capsys.readouterr()
    assert code == 4
    assert "notebook 'broken' failed in cell [3] ('1 / 0'): ZeroDivisionError" in err
    assert "Traceback" not in err
    after = {p.name: p.read_bytes() for p in week_dir.iterdir() if p.is_file()}
    assert after == before, "the published handouts are untouched"
    failed = [p for p in (tmp_path / "outputs").iterdir() if ".failed-" in p.name]
    assert len(failed) == 1 and (failed[0] / "broken.ipynb").is_file()
    assert str(failed[0] / "broken.ipynb") in err
    kept = nbformat.read(failed[0] / "broken.ipynb", as_version=4)
    assert any(
        o.get("ename") == "ZeroDivisionError" for c in kept.cells for o in c.get("outputs", [])
    )


# Warehouses listed, but not those the sample's orders come from: no plan can be made.
_UNLISTED = "{warehouses: {WH-North: {orders_per_person_hour: 10, staff: 5}}}"


def _plans_made_here(monkeypatch) -> list[object]:
    """Each plan this process computes (the kernel, another process, is not counted)."""
    from meetinglib.report import plan_section

    made: list[object] = []
    plain = plan_section.next_week_plan

    def counted(*args, **kwargs):
        made.append(args[2])
        return plain(*args, **kwargs)

    monkeypatch.setattr(plan_section, "next_week_plan", counted)
    return made


def test_a_plan_that_cannot_be_made_stops_the_data_report_at_its_start(
    tmp_path, sample, capsys, monkeypatch
):
    made = _plans_made_here(monkeypatch)
    params = write_params(tmp_path, sample.folder, plan=_UNLISTED)
    assert main(["-q", "run", "--params", str(params), "--week", SAMPLE_WEEK]) == 7
    err = capsys.readouterr().err
    assert "report section 'plan' cannot be computed" in err and "WH-East" in err
    assert not (tmp_path / "outputs" / SAMPLE_WEEK).exists()
    (failed,) = [p for p in (tmp_path / "outputs").iterdir() if ".failed-" in p.name]
    # stopped before the KPIs were computed: they would have been written
    assert not (failed / "kpis.csv").exists()
    assert made == [], "the plan is made once, in the data report, not by the run first"


def test_an_optional_plan_left_out_is_listed_by_the_run(tmp_path, sample, capsys, monkeypatch):
    made = _plans_made_here(monkeypatch)
    params = write_params(tmp_path, sample.folder, plan=_UNLISTED, optional_sections="[plan]")
    assert main(["run", "--params", str(params), "--week", SAMPLE_WEEK]) == 0
    out = capsys.readouterr().out
    week = tmp_path / "outputs" / SAMPLE_WEEK
    reason = json.loads((week / "manifest.json").read_text(encoding="utf-8"))["sections_left_out"]
    assert list(reason) == ["plan"] and "plan.warehouses.WH-East" in reason["plan"]
    assert f"section 'plan' left out (optional in params): {reason['plan']}" in out
    assert not (week / "sections_left_out.json").exists(), "the run takes the file out"
    assert not (week / "plan.csv").exists()
    assert made == []


def test_a_library_error_in_a_notebook_keeps_its_exit_code(tmp_path, sample, capsys):
    """The data changed under the run, found in the kernel: exit 3 (bad input) with the
    library's message, not 4 (a failing notebook)."""
    notebooks = tmp_path / "nb"
    notebooks.mkdir()
    _broken_notebook(
        notebooks,
        "from meetinglib.core.errors import InputDataError\n"
        "raise InputDataError('table orders changed since the week was loaded; run again.')",
        name="changed",
    )
    params = write_params(tmp_path, sample.folder, notebooks_dir=str(notebooks))
    code = main(["-q", "run", "--params", str(params), "--week", SAMPLE_WEEK, "--notebook",
                 "changed"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 3, err
    assert re.search(
        r"table orders changed since the week was loaded; run again \(InputDataError, in "
        r"notebook 'changed'\)\. The executed notebook is kept at \S+changed\.ipynb;",
        err,
    ), err
    assert "Traceback" not in err and ".." not in err


def test_spark_refusing_the_params_in_a_notebook_keeps_exit_2(tmp_path, sample, capsys):
    """Spark started in the kernel (the run's own engine is DuckDB) refuses a value of the
    params: their exit code and the library's message, not a failing notebook's."""
    sparkutil.require()
    notebooks = tmp_path / "nb"
    notebooks.mkdir()
    _broken_notebook(
        notebooks,
        "from meetinglib.data.engine import EngineSettings, spark_session\n"
        "spark_session(EngineSettings(kind='spark', spark_conf={'spark.driver.memory': 'lots'}))",
        name="spark",
    )
    params = write_params(tmp_path, sample.folder, notebooks_dir=str(notebooks))
    code = main(["-q", "run", "--params", str(params), "--week", SAMPLE_WEEK, "--notebook",
                 "spark"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert re.search(
        r"the query engine 'spark' cannot start: Invalid maximum heap size: -Xmxlots\. The "
        r"params set engine\.spark_conf \(spark\.driver\.memory\), .* or set 'engine: duckdb' "
        r"in params \(the default, embedded\) \(SparkParamsError, in notebook 'spark'\)\.",
        err,
    ), err
    assert "Traceback" not in err


def test_rerun_keeps_files_written_by_other_commands(tmp_path, sample, sample_params, capsys):
    args = ["run", "--params", str(sample_params), "--week", SAMPLE_WEEK]
    assert main(args) == 0
    week_dir = tmp_path / "outputs" / SAMPLE_WEEK
    (week_dir / "agenda.html").write_text("<p>agenda</p>", encoding="utf-8")
    (week_dir / "quarantine").mkdir()
    (week_dir / "quarantine" / "orders.csv").write_text("stale", encoding="utf-8")
    assert main(args) == 0
    assert (week_dir / "agenda.html").read_text(encoding="utf-8") == "<p>agenda</p>"
    assert not (week_dir / "quarantine").exists(), "the sample has nothing to set aside"
    links = [u[2] for u in parse(week_dir / "index.html").urls if u[1] == "href"]
    assert "agenda.html" in links


def test_bad_params_exit_2_before_any_work(tmp_path, sample, capsys):
    params = write_params(tmp_path, sample.folder, history_weeeks="3")
    assert main(["run", "--params", str(params)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'history_weeeks'" in err and str(params) in err
    assert not (tmp_path / "outputs").exists()


def test_unknown_notebook_is_a_params_error(tmp_path, sample, capsys):
    params = write_params(tmp_path, sample.folder, notebooks="[data_reprt]")
    assert main(["run", "--params", str(params), "--week", SAMPLE_WEEK]) == 2
    assert "notebook 'data_reprt' not found" in capsys.readouterr().err


def test_bad_input_exit_3_names_file_and_column(tmp_path, sample, capsys):
    import pandas as pd

    source = tmp_path / "export"
    source.mkdir()
    orders = pd.read_parquet(sample.files["orders"]).drop(columns=["created_at"])
    orders.to_csv(source / "orders.csv", index=False)
    params = write_params(tmp_path, source)
    assert main(["run", "--params", str(params), "--week", SAMPLE_WEEK]) == 3
    err = capsys.readouterr().err
    assert "column 'created_at' not in orders.csv; columns found: [" in err
    assert "Traceback" not in err


def test_manifest_warns_when_no_cjk_font_is_installed(monkeypatch):
    from meetinglib import runner

    monkeypatch.setattr(runner, "cjk_font", lambda: None)
    assert any("no CJK font installed" in w for w in runner.run_warnings())
    monkeypatch.setattr(runner, "cjk_font", lambda: "Noto Sans CJK SC")
    assert runner.run_warnings() == []


def _published_before(tmp_path: Path) -> dict[str, bytes]:
    """A week folder as an earlier run left it (its files and their bytes)."""
    week_dir = tmp_path / "outputs" / SAMPLE_WEEK
    week_dir.mkdir(parents=True)
    (week_dir / "data_report.html").write_text("<p>last run</p>", encoding="utf-8")
    (week_dir / "explorer_data").mkdir()
    (week_dir / "explorer_data" / "meta.json").write_text("{}", encoding="utf-8")
    return {str(p.relative_to(week_dir)): p.read_bytes() for p in week_dir.rglob("*.*")}


def _after(tmp_path: Path) -> dict[str, bytes]:
    week_dir = tmp_path / "outputs" / SAMPLE_WEEK
    return {str(p.relative_to(week_dir)): p.read_bytes() for p in week_dir.rglob("*.*")}


def test_a_failure_preparing_the_explorer_tables_is_the_runs_error(
    tmp_path, sample, monkeypatch, capsys
):
    """The explorer's tables are prepared in a thread beside the notebooks: its failure
    is the run's, with the message the step gives when it runs alone (a full disk: exit 5
    naming the folder), and the week's handouts stay as they were."""
    import errno

    from meetinglib import runner

    before = _published_before(tmp_path)
    calls = []

    def no_space(_params, _data, temp, _con):
        calls.append(temp)
        raise OSError(errno.ENOSPC, "No space left on device", str(temp / "steps.parquet"))

    def executed(name, _source, staging, *_args, **kwargs):
        notebook = staging / f"{kwargs.get('stem') or name}.ipynb"
        return runner.NotebookResult(name, notebook, notebook.with_suffix(".html"), 0.0)

    monkeypatch.setattr(runner, "prepare_week", no_space)
    monkeypatch.setattr(runner, "_execute", executed)
    params = write_params(tmp_path, sample.folder)
    code = main(["run", "--params", str(params), "--week", SAMPLE_WEEK])
    _, err = capsys.readouterr()
    assert len(calls) == 1, "prepared once, in the background"
    assert code == 5, err
    assert "No space left on device" in err or "no space" in err.lower()
    assert str(calls[0]) in err
    assert "Traceback" not in err
    assert _after(tmp_path) == before, "the published handouts are untouched"
    left = [p.name for p in (tmp_path / "outputs").iterdir() if p.name.startswith(".")]
    assert left == [], "no staging or background folder left"


def test_a_failed_notebook_stops_the_explorer_tables_under_way(
    tmp_path, sample, monkeypatch, capsys
):
    """A run whose notebook fails does not wait for the explorer's tables: the
    background engine's query is interrupted, its folder removed, the error is the
    notebook's."""
    import threading
    import time

    from meetinglib import runner
    from meetinglib.core.errors import NotebookExecutionError

    before = _published_before(tmp_path)
    started, ended = threading.Event(), threading.Event()

    def endless(_params, _data, temp, con):
        (temp / "steps.parquet").write_bytes(b"half")
        started.set()
        try:  # hours of work: only an interrupt ends it
            con.raw_sql("SELECT sum(i * 2) FROM range(10000000000000) AS r(i)").fetchall()
        finally:
            ended.set()

    def failing(name, *_args, **_kwargs):
        assert started.wait(60)
        raise NotebookExecutionError(name, "cell [3]", "ZeroDivisionError: x", "kept")

    monkeypatch.setattr(runner, "prepare_week", endless)
    monkeypatch.setattr(runner, "_execute", failing)
    params = write_params(tmp_path, sample.folder)
    t0 = time.monotonic()
    code = main(["run", "--params", str(params), "--week", SAMPLE_WEEK])
    _, err = capsys.readouterr()
    assert code == 4
    assert "ZeroDivisionError" in err and "Traceback" not in err
    assert ended.is_set(), "the background query was ended before the run returned"
    assert time.monotonic() - t0 < 120
    assert _after(tmp_path) == before
    left = [p.name for p in (tmp_path / "outputs").iterdir() if p.name.startswith(".")]
    assert left == [], "no staging or background folder left"


def test_findings_written_again_after_they_were_read_are_the_ones_saved(
    tmp_path, sample, monkeypatch
):
    """The explorer's tables are finished from the findings as soon as the data report
    writes them; a notebook writing them again afterwards gets its last findings saved."""
    import time

    from meetinglib import runner
    from meetinglib.analysis import flow
    from meetinglib.core.params import load_params
    from meetinglib.data.dataset import WeekData
    from meetinglib.report.flow_section import FlowSection

    again = []
    save_week = runner.save_week

    def counted(*args, **kwargs):
        again.append(1)
        return save_week(*args, **kwargs)

    def executed(name, _source, staging, *_args, parameters, on_cell=None, **_kwargs):
        # first no finding at all, then the week's own once the tables were saved
        header = ",".join(flow.FINDING_COLUMNS) + "\n"
        (staging / "bottlenecks.csv").write_text(header, encoding="utf-8")
        on_cell()
        done = staging.with_name(f"{staging.name}-explorer.done") / "meta.json"
        deadline = time.monotonic() + 120
        while not done.is_file():
            assert time.monotonic() < deadline, "the tables were not saved beside the notebook"
            time.sleep(0.05)
        params = load_params(*parameters["params_files"])
        FlowSection(WeekData.load(Path(parameters["snapshot"]), params), "en").export(staging)
        notebook = staging / f"{name}.ipynb"
        return runner.NotebookResult(name, notebook, notebook.with_suffix(".html"), 0.0)

    monkeypatch.setattr(runner, "save_week", counted)
    monkeypatch.setattr(runner, "_execute", executed)
    params = write_params(tmp_path, sample.folder)
    result = runner.run_week([params], SAMPLE_WEEK)
    assert again == [1], "saved anew after the notebooks"
    meta = json.loads((result.folder / "explorer_data" / "meta.json").read_text("utf-8"))
    report = [row[0] for row in _csv_rows(result.folder / "bottlenecks.csv")]
    assert len(report) > 0
    assert [r["id"] for r in meta["findings"]["rows"]] == report
    left = [p.name for p in (tmp_path / "outputs").iterdir() if p.name.startswith(".")]
    assert left == []


def _csv_rows(path: Path) -> list[list[str]]:
    import csv

    with open(path, encoding="utf-8-sig", newline="") as fh:
        return list(csv.reader(fh))[1:]


def _autogroup_files(tmp_path, monkeypatch, enabled: str, line: str):
    from meetinglib import runner

    group, switch = tmp_path / "autogroup", tmp_path / "enabled"
    group.write_text(line, encoding="ascii")
    switch.write_text(enabled, encoding="ascii")
    monkeypatch.setattr(runner, "_AUTOGROUP", group)
    monkeypatch.setattr(runner, "_AUTOGROUP_ENABLED", switch)
    return group


def test_the_runs_session_yields_to_the_kernels_while_the_background_part_works(
    tmp_path, monkeypatch
):
    from meetinglib import runner

    group = _autogroup_files(tmp_path, monkeypatch, "1\n", "/autogroup-42 nice 3\n")
    session = runner._SessionPriority()
    assert group.read_text() == str(runner.BACKGROUND_SESSION_NICE)
    session.restore()
    assert group.read_text() == "3"
    session.restore()  # once only
    assert group.read_text() == "3"


@pytest.mark.parametrize(
    ("enabled", "line"),
    [
        ("0\n", "/autogroup-42 nice 0\n"),
        ("1\n", "/autogroup-42 nice -5\n"),
        ("1\n", "/autogroup-42 nice 19\n"),
    ],
    ids=[
        "without-autogroups",
        "below-zero-needs-privileges-to-go-back",
        "another-run-of-the-session-yields-and-puts-it-back",
    ],
)
def test_the_runs_session_is_left_alone_where_it_could_not_go_back(
    tmp_path, monkeypatch, enabled, line
):
    from meetinglib import runner

    group = _autogroup_files(tmp_path, monkeypatch, enabled, line)
    runner._SessionPriority().restore()
    assert group.read_text() == line


def test_the_session_priority_on_this_machine_goes_back_to_what_it_was():
    from meetinglib import runner

    try:
        enabled = runner._AUTOGROUP_ENABLED.read_text().strip() == "1"
        before = runner._AUTOGROUP.read_text()
    except OSError:
        pytest.skip("no autogroups on this machine")
    # Some containers show the file empty: nothing there to change or put back.
    if not enabled or not re.search(r"\bnice\s+\d+", before):
        pytest.skip(f"autogroups off, or no session nice from 0 up: {before!r}")
    session = runner._SessionPriority()
    during = runner._AUTOGROUP.read_text()
    session.restore()
    assert f"nice {runner.BACKGROUND_SESSION_NICE}" in during
    assert runner._AUTOGROUP.read_text() == before


@pytest.mark.parametrize("first_over", ["first-run", "second-run"])
def test_two_runs_of_one_session_leave_it_as_it_was(tmp_path, monkeypatch, first_over):
    from meetinglib import runner

    group = _autogroup_files(tmp_path, monkeypatch, "1\n", "/autogroup-42 nice 0\n")
    first, second = runner._SessionPriority(), runner._SessionPriority()
    for run in (first, second) if first_over == "first-run" else (second, first):
        run.restore()
    assert group.read_text() == "0"


def test_a_run_of_an_incomplete_week_warns_on_the_terminal_and_in_the_manifest(
    tmp_path, long_quiet_sample, capsys
):
    """The week asked for holds its first six hours of orders: the run says so on the
    terminal, even with --quiet, and in the manifest, in the words of page one."""
    orders = cut_week(long_quiet_sample.folder, tmp_path / "cut", SAMPLE_WEEK, hours=6)
    params = write_params(tmp_path, tmp_path / "cut", history_weeks=8)
    code = main(["-q", "run", "--params", str(params), "--week", SAMPLE_WEEK, "--lang", "en"])
    out, err = capsys.readouterr()
    assert code == 0, err
    week = orders["created_at"].dt.tz_convert("Asia/Shanghai")
    start = IsoWeek.parse(SAMPLE_WEEK).start("Asia/Shanghai")
    this = int((week >= start).sum())
    warning = f"Incomplete week: {this:,} orders were created this week, "
    lines = [line for line in err.splitlines() if line.startswith("Warning: ")]
    assert len(lines) == 1 and lines[0].startswith("Warning: " + warning), err
    week_dir = tmp_path / "outputs" / SAMPLE_WEEK
    manifest = json.loads((week_dir / "manifest.json").read_text(encoding="utf-8"))
    assert [w[: len(warning)] for w in manifest["data_warnings"]] == [warning]
    assert lines[0] == "Warning: " + manifest["data_warnings"][0]
    assert str(week_dir / "index.html") in out


def test_the_index_keeps_the_handouts_a_partial_run_did_not_make(tmp_path):
    """`meeting run --notebook minutes` after the full run: the data report and the
    triage, carried over from the published week, are still listed as handouts."""
    from meetinglib.core.params import load_params
    from meetinglib.runner import NotebookResult, _write_index

    params = load_params(write_params(tmp_path, tmp_path / "data", languages="[zh-CN, en]"))
    folder = tmp_path / "week"
    folder.mkdir()
    for name, lang in (
        ("data_report.html", "zh-CN"),
        ("data_report.en.html", "en"),
        ("issue_triage.html", "zh-CN"),
        ("minutes.html", "zh-CN"),
        ("minutes.en.html", "en"),
    ):
        (folder / name).write_text(f'<!DOCTYPE html>\n<html lang="{lang}"><body></body></html>')
    (folder / "kpis.csv").write_text("kpi\n")
    (folder / "quarantine").mkdir()
    (folder / "quarantine" / "orders.csv").write_text("_rule\n")
    made = [
        NotebookResult("minutes", folder / "minutes.ipynb", folder / "minutes.html", 1.0, "zh-CN"),
        NotebookResult("minutes", folder / "m.ipynb", folder / "minutes.en.html", 1.0, "en"),
    ]
    index = _write_index(folder, IsoWeek.parse(SAMPLE_WEEK), params, made, ["zh-CN", "en"])
    html = index.read_text(encoding="utf-8")
    handouts = html.split('class="ml-handouts"')[1].split("</ul>")[0]
    links = re.findall(r'href="([^"]+)" hreflang="([^"]+)"', handouts)
    assert links == [
        ("data_report.html", "zh-CN"),
        ("data_report.en.html", "en"),
        ("issue_triage.html", "zh-CN"),
        ("minutes.html", "zh-CN"),
        ("minutes.en.html", "en"),
    ]
    files = html.split('class="ml-files"')[1]
    assert "kpis.csv" in files and "data_report.html" not in files
    assert 'href="quarantine/orders.csv"' in files, "the rows set aside are linked"


def test_quarantine_files_name_each_rule_in_the_runs_first_language(tmp_path):
    """quarantine/<table>.csv: the rule's identifier for scripts, its name for people in the
    run's first language, and no cell a spreadsheet would run."""
    import csv
    from types import SimpleNamespace

    import pandas as pd

    from meetinglib.data.sources import RawTable, SourceInfo
    from meetinglib.data.validate import QualityReport, validate_table
    from meetinglib.runner import _write_quarantine

    frame = pd.DataFrame(
        {
            "order_id": ["O-1", "O-2", "O-3"],
            "order_type": ["normal", "normal", "normal"],
            "created_at": ["2026-03-02 10:00", '=HYPERLINK("http://x")', "2026-03-02 11:00"],
            "amount": ["10", "10", "@SUM(1)"],
        },
        dtype="str",
    )
    frame["_source_row"] = pd.array([2, 3, 4], dtype="Int64")
    tz = "Asia/Shanghai"
    raw = RawTable("orders", frame, SourceInfo("orders", "orders.csv", "csv", 3, None), tz, None)
    _, _, quarantined = validate_table(raw, tz, 1.0)
    data = SimpleNamespace(quality=QualityReport(quarantined={"orders": quarantined}))
    for lang, header, names in (
        ("zh-CN", "_规则说明", ["时间无法解析", "不是数字"]),
        ("en", "_rule_description", ["Unparseable timestamp", "Not a number"]),
    ):
        folder = tmp_path / lang
        folder.mkdir()
        _write_quarantine(data, folder, lang)
        with open(folder / "quarantine" / "orders.csv", encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.reader(fh))
        assert rows[0][:4] == ["_source_row", "_rule", "_column", header]
        assert [r[1] for r in rows[1:]] == ["unparseable timestamp", "not a number"]
        assert [r[3] for r in rows[1:]] == names
        assert rows[1][rows[0].index("created_at")] == '\'=HYPERLINK("http://x")'
        assert rows[2][rows[0].index("amount")] == "'@SUM(1)"


def test_a_rerun_notebook_leaves_none_of_its_earlier_handouts(tmp_path):
    """The week ran in Chinese and English, then in Chinese only after a params change:
    the earlier English data report (earlier figures) is neither kept nor listed; the
    triage, which did not run, and the agenda's files stay."""
    from meetinglib.core.params import load_params
    from meetinglib.runner import NotebookResult, _carried_handouts, _carry_over

    final, staging = tmp_path / "published", tmp_path / "staging"
    final.mkdir()
    staging.mkdir()
    earlier = ("data_report.html", "data_report.en.html", "data_report.ipynb",
               "data_report.en.ipynb", "issue_triage.html", "issue_triage.en.html",
               "agenda.html", "meeting.ics", "kpis.csv")  # fmt: skip
    for name in earlier:
        lang = "en" if ".en." in name else "zh-CN"
        (final / name).write_text(f'<!DOCTYPE html>\n<html lang="{lang}"><body>old</body></html>')
    for name in ("data_report.html", "data_report.ipynb", "kpis.csv"):
        (staging / name).write_text('<!DOCTYPE html>\n<html lang="zh-CN"><body>new</body></html>')
    _carry_over(final, staging, {"data_report"})
    assert sorted(p.name for p in staging.iterdir()) == sorted(
        ["data_report.html", "data_report.ipynb", "kpis.csv", "issue_triage.html",
         "issue_triage.en.html", "agenda.html", "meeting.ics"]
    )  # fmt: skip
    assert "new" in (staging / "data_report.html").read_text()
    params = load_params(write_params(tmp_path, tmp_path / "data", languages="[zh-CN]"))
    made = [
        NotebookResult(
            "data_report", staging / "data_report.ipynb", staging / "data_report.html", 1.0, "zh-CN"
        )
    ]
    # what the index and the manifest list besides this run's handouts
    assert _carried_handouts(staging, params, made, ["zh-CN"]) == [
        ("issue_triage", "issue_triage.html", "zh-CN")
    ]
