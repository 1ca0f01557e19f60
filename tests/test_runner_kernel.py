"""The first notebook's kernel, started while the runner loads the week (``_WarmKernel``)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from meetinglib import runner
from meetinglib.core.errors import MeetingError, NotebookExecutionError
from tests.conftest import write_params

pytestmark = pytest.mark.slow


def notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(nb, path)
    return path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def ended(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not alive(pid)


def test_notebook_modules_are_its_imports_in_order(tmp_path):
    nb = notebook(
        tmp_path / "nb.ipynb",
        "import json, os.path as p\nfrom collections import abc",
        "%matplotlib inline\nimport never_seen",  # a magic: not Python, skipped
        "from . import sibling\nimport json\nx = 1",  # relative: skipped; json once
    )
    assert runner._notebook_modules(nb) == ["json", "os.path", "collections"]


@pytest.mark.skipif(
    importlib.util.find_spec("rfc3987_syntax") is None, reason="rfc3987_syntax not installed"
)
def test_the_cli_reads_notebooks_without_the_iri_grammar(tmp_path):
    # Imported, rfc3987_syntax compiles a Lark grammar (2 s of CPU before the run's load);
    # in the CLI's process nbformat reads and validates notebooks without it.
    nb = notebook(tmp_path / "nb.ipynb", "import json")
    code = (
        "import sys\n"
        "from meetinglib import cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "import nbformat\n"
        f"nbformat.validate(nbformat.read({str(nb)!r}, as_version=4))\n"
        "print('lark' in sys.modules, 'jsonschema' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.splitlines()[-1] == "False True"


def _run_warm(tmp_path: Path, nb: Path) -> tuple[runner._WarmKernel, int, runner.NotebookResult]:
    """``nb`` executed by the runner in a warm kernel started for it: the kernel, its
    process id and the result."""
    warm = runner._WarmKernel(nb)
    pid = warm.km.provisioner.pid
    staging = tmp_path / "staging"
    staging.mkdir()
    result = runner._execute(nb.stem, nb, staging, tmp_path, "t", {}, say=lambda _: None, warm=warm)
    return warm, pid, result


def test_the_notebook_runs_in_the_warm_kernel_which_ends_with_it(tmp_path):
    nb = notebook(
        tmp_path / "warm.ipynb",
        "import decimal",
        "import os, sys\nprint(os.getpid(), 'decimal' in sys.modules)",
    )
    warm, pid, result = _run_warm(tmp_path, nb)
    out = nbformat.read(result.notebook, as_version=4).cells[1].outputs[0]["text"].split()
    assert out == [str(pid), "True"]  # that kernel, its import done before the cells ran
    warm.close()  # as the run does at its end: waits for the kernel's shutdown under way
    assert not alive(pid)
    assert not warm.sockets.exists()


def test_the_run_goes_on_while_the_notebooks_kernel_ends(tmp_path):
    # A kernel that takes long to end (here its exit waits; a large week's memory takes
    # a second or more to give back) holds up neither the export nor what follows it.
    nb = notebook(
        tmp_path / "slow_exit.ipynb",
        "import atexit, time\natexit.register(time.sleep, 30)",
    )
    warm, pid, result = _run_warm(tmp_path, nb)
    assert result.html.is_file()
    assert alive(pid), "the handout was exported while the kernel was still ending"
    warm.close()
    assert not alive(pid)
    assert not warm.sockets.exists()


def test_what_follows_the_last_notebook_starts_before_its_export(tmp_path, monkeypatch):
    # The explorer's remaining part is hurried once the notebook has run, so that it goes
    # on beside the export (on_executed), not after it; a failed notebook hurries nothing.
    calls: list[str] = []
    export = runner.export_html
    monkeypatch.setattr(
        runner, "export_html", lambda *a, **k: (calls.append("export"), export(*a, **k))[1]
    )
    staging = tmp_path / "staging"
    staging.mkdir()
    nb = notebook(tmp_path / "ok.ipynb", "x = 1")
    runner._execute(
        "ok", nb, staging, tmp_path, "t", {}, say=lambda _: None,
        on_executed=lambda: calls.append("executed"),
    )  # fmt: skip
    assert calls == ["executed", "export"]
    calls.clear()
    bad = notebook(tmp_path / "bad.ipynb", "raise ValueError('bad cell')")
    with pytest.raises(NotebookExecutionError, match="bad cell"):
        runner._execute(
            "bad", bad, staging, tmp_path, "t", {}, say=lambda _: None,
            on_executed=lambda: calls.append("executed"),
        )  # fmt: skip
    assert calls == []


def test_the_warm_kernel_yields_to_the_load_until_the_notebook_takes_it(tmp_path):
    if runner._session_nice() is None:
        pytest.skip("no autogroups on this machine")
    warm = runner._WarmKernel(notebook(tmp_path / "warm.ipynb", "import decimal"))
    try:
        group = Path(f"/proc/{warm.km.provisioner.pid}/autogroup")
        # a session of its own (jupyter_client starts the kernel so), at the back
        assert group.read_text() != runner._AUTOGROUP.read_text()
        assert runner._session_nice(group) == runner.BACKGROUND_SESSION_NICE
        assert warm.take() is not None
        assert runner._session_nice(group) == 0
    finally:
        warm.close()


def test_a_notebook_failing_in_the_warm_kernel_ends_it(tmp_path):
    nb = notebook(tmp_path / "fails.ipynb", "import decimal", "raise ValueError('bad cell')")
    warm = runner._WarmKernel(nb)
    pid = warm.km.provisioner.pid
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(NotebookExecutionError, match="bad cell"):
        runner._execute("fails", nb, staging, tmp_path, "t", {}, say=lambda _: None, warm=warm)
    assert ended(pid)
    assert not warm.sockets.exists()


def test_a_handout_exported_with_the_exporter_made_beforehand_is_the_same(tmp_path):
    """The exporter made while the notebook runs (``_Exporter``) exports the handout a new
    one would; one made for another language is not used."""
    nb = notebook(tmp_path / "plain.ipynb", "print('hello')")
    nbformat.write(
        nbformat.v4.new_notebook(
            cells=[
                nbformat.v4.new_code_cell(
                    "print('x')",
                    outputs=[nbformat.v4.new_output("stream", name="stdout", text="hello\n")],
                )
            ],
            metadata={"papermill": {"parameters": {"week": "2026-W47"}}},
        ),
        nb,
    )
    made = runner._Exporter("en").get()
    assert made is not None
    fresh = runner.export_html(nb, "en").read_text(encoding="utf-8")
    assert runner.export_html(nb, "en", made).read_text(encoding="utf-8") == fresh
    assert "hello" in fresh and '<html lang="en">' in fresh
    chinese = runner.export_html(nb, "zh-CN", made).read_text(encoding="utf-8")
    assert '<html lang="zh-CN">' in chinese


def test_a_failed_warm_up_falls_back_to_the_usual_start_and_error(tmp_path):
    nb = notebook(tmp_path / "broken.ipynb", "import no_such_module_anywhere")
    warm = runner._WarmKernel(nb)
    pid = warm.km.provisioner.pid
    assert warm.take() is None  # its import failed: set aside
    assert ended(pid)
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(NotebookExecutionError, match="no_such_module_anywhere"):
        runner._execute("broken", nb, staging, tmp_path, "t", {}, say=lambda _: None, warm=warm)


def test_a_run_that_fails_while_loading_leaves_no_kernel(tmp_path, monkeypatch):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    notebook(notebooks / "data_report.ipynb", "import json")
    params = write_params(tmp_path, tmp_path / "no-such-folder", notebooks_dir=str(notebooks))
    started: list[runner._WarmKernel] = []

    class Recorded(runner._WarmKernel):
        def __init__(self, source: Path) -> None:
            super().__init__(source)
            started.append(self)

    monkeypatch.setattr(runner, "_WarmKernel", Recorded)
    with pytest.raises(MeetingError, match="no-such-folder"):
        runner.run_week([params], "2026-W47", notebooks=["data_report"])
    assert len(started) == 1 and started[0].km is None
    assert not started[0].sockets.exists()
    assert not [k for k in started if k._thread and k._thread.is_alive()]
