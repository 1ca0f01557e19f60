"""The meeting console as a note-taker uses it: real JupyterLab, real Chromium, real store.

The test starts JupyterLab on 127.0.0.1 (a free port, a token) in a temporary folder
holding a params file over a small sample, a store and the console notebook; opens the
notebook in Debian's Chromium through Playwright, runs it, records an action item and
a decision through the widgets, and finds both in the store and in the minutes handout
rendered by the runner. It skips when Chromium or Playwright is missing, except in CI
(``CI=true``), where they must be there.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from tests.conftest import ROOT, SAMPLE_WEEK, write_params

KERNEL = "meetinglib"
MEETING = (
    "{title: Weekly review, organizer: {name: Li Na, email: li.na@shop.example, "
    "department: operations}, attendees: [{name: Chen Jie, email: chen.jie@shop.example, "
    "department: logistics}, {name: Zhang Min, email: zhang.min@shop.example, "
    "department: customer_service}]}"
)

ACTION = (
    "Agree pick-up times with SwiftExpress for the South parcels of EastPost, for two weeks "
    "from Tuesday, and report the volumes every day to Operations and Customer Service"
)

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kernel_env(folder: Path) -> dict[str, str]:
    """Jupyter's folders in ``folder``; the project kernel as `make install` sets it up."""
    from jupyter_client.kernelspec import KernelSpecManager

    env = dict(os.environ)
    for name in ("CONFIG", "RUNTIME", "DATA"):
        env[f"JUPYTER_{name}_DIR"] = str(folder / f"jupyter-{name.lower()}")
    env["JUPYTERLAB_SETTINGS_DIR"] = str(folder / "lab-settings")
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(folder / "lab-workspaces")
    if KERNEL not in KernelSpecManager().find_kernel_specs():
        # Not set up by `make install` (a bare pytest run): the same kernel, here only.
        prefix = folder / "kernel-prefix"
        subprocess.run(
            [sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix),
             "--name", KERNEL],
            check=True, capture_output=True,
        )  # fmt: skip
        env["JUPYTER_PATH"] = str(prefix / "share" / "jupyter")
    return env


@pytest.fixture
def lab(tmp_path, sample) -> Iterator[tuple[str, Path, Path]]:
    """JupyterLab serving ``tmp_path``: (the URL of a notebook in a workspace, to format with
    the workspace's and the notebook's names; params file; folder).

    ``meeting_console.ipynb`` records in English, ``meeting_console_zh.ipynb`` in Simplified
    Chinese, both on the same store.
    """
    params = write_params(tmp_path, sample.folder, meeting=MEETING)
    for name, lang in (("meeting_console", "None"), ("meeting_console_zh", '"zh-CN"')):
        nb = nbformat.read(ROOT / "meetinglib" / "notebooks" / "meeting_console.ipynb", 4)
        for cell in nb.cells:  # the parameters cell as a note-taker edits it
            if "parameters" in cell.metadata.get("tags", []):
                cell.source = cell.source.replace(
                    "params_files: list = []", f"params_files: list = [{str(params)!r}]"
                ).replace('lang: "Optional[str]" = None', f'lang: "Optional[str]" = {lang}')
        nbformat.write(nb, tmp_path / f"{name}.ipynb")
    port, token = _free_port(), secrets.token_hex(16)
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    if os.getuid() == 0:
        command.append("--allow-root")
    log = (tmp_path / "lab.log").open("wb")
    server = subprocess.Popen(
        command, env=_kernel_env(tmp_path), stdout=log, stderr=subprocess.STDOUT,
        cwd=tmp_path, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2
                )
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start:\n{(tmp_path / 'lab.log').read_text()}")
                time.sleep(0.5)
        yield (
            f"http://127.0.0.1:{port}/lab/workspaces/{{}}/tree/{{}}.ipynb?token={token}",
            params,
            tmp_path,
        )
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)  # the server's own group: its kernels
            server.wait(10)
        log.close()


def _cut_labels(page) -> list[str]:
    """Labels and buttons of the console whose text does not fit their box."""
    return page.evaluate(
        """() => [...document.querySelectorAll(
                '.mc-console .widget-label, .mc-console button, .mc-console .widget-html-content')]
            .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1)
            .map(e => e.textContent.trim())"""
    )


def _open_console(page, url: str):
    """Open a console notebook, run all its cells; the console's panel."""
    from playwright.sync_api import expect

    page.goto(url)
    page.locator(".jp-Notebook").wait_for(timeout=60_000)
    # The notebook's own kernel started by itself (no kernel picker) and is ready.
    expect(page.locator("#jp-main-statusbar")).to_contain_text(
        "Python (meetinglib) | Idle", timeout=60_000
    )
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    console = page.locator(".mc-console:visible")
    console.wait_for(timeout=120_000)
    # JupyterLab asked nothing: no kernel picker, no other dialog.
    assert page.locator(".jp-Dialog").count() == 0
    return console


def test_recording_the_meeting_in_jupyterlab(lab, chromium):
    from playwright.sync_api import expect

    from meetinglib.core.params import load_params
    from meetinglib.meeting.store import meeting_state, open_store
    from meetinglib.runner import run_week

    urls, params_file, folder = lab
    started = time.perf_counter()
    browser = chromium  # the test process's one Chromium (conftest)
    pages = []  # this test's own: the browser is shared
    with contextlib.ExitStack() as opened:
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        pages.append(page)
        opened.callback(page.context.close)
        try:
            console = _open_console(page, urls.format("en", "meeting_console"))
            expect(console.locator("h2")).to_contain_text(f"week {SAMPLE_WEEK}")
            page.screenshot(path=str(folder / "console.png"), full_page=True)
            assert _cut_labels(page) == []

            console.locator(".mc-action-description textarea").fill(ACTION)
            console.locator(".mc-action-owner input").fill("Chen Jie")
            console.locator(".mc-action-department select").select_option(label="Logistics")
            console.locator(".mc-action-due input").fill("2026-11-27")
            console.locator(".mc-add-action").click()
            expect(console.locator(".mc-action-result")).to_contain_text(
                "Action item recorded.", timeout=30_000
            )
            console.locator(".mc-decision-text textarea").fill("Move South parcels to SwiftExpress")
            console.locator(".mc-add-decision").click()
            expect(console.locator(".mc-decision-result")).to_contain_text(
                "Decision recorded.", timeout=30_000
            )
            expect(console.locator(".mc-decision-list")).to_contain_text(
                "Move South parcels to SwiftExpress"
            )
            # The form is cleared for the next entry, and stays so.
            expect(console.locator(".mc-decision-text textarea")).to_have_value("")
            expect(console.locator(".mc-action-description textarea")).to_have_value("")
            page.screenshot(path=str(folder / "console-recorded.png"), full_page=True)
            assert _cut_labels(page) == []  # a long entry wraps in its row

            # A second note-taker, in Chinese, on the same store: sees both entries, adds
            # feedback; the first console shows it after Refresh.
            other = browser.new_page(viewport={"width": 1366, "height": 900})
            pages.append(other)
            opened.callback(other.context.close)
            zh = _open_console(other, urls.format("zh", "meeting_console_zh"))
            expect(zh.locator("h2")).to_contain_text(f"第 {SAMPLE_WEEK} 周")
            assert _cut_labels(other) == []
            expect(zh.locator(".mc-decision-list")).to_contain_text("Move South parcels")
            expect(zh.locator(".mc-action-list")).to_contain_text("Agree pick-up times")
            zh.locator(".mc-feedback-comment input").fill("重点清楚")
            zh.locator(".mc-add-feedback").click()
            expect(zh.locator(".mc-feedback-result")).to_contain_text("反馈已记录", timeout=30_000)
            other.screenshot(path=str(folder / "console-zh.png"), full_page=True)
            console.locator(".mc-refresh").click()
            expect(console.locator(".mc-feedback-list")).to_contain_text("重点清楚", timeout=30_000)
            expect(console.locator(".mc-refresh-result")).to_contain_text("1 decision(s)")
        except Exception:
            for n, shot in enumerate(pages):
                shot.screenshot(path=str(folder / f"failure-{n}.png"), full_page=True)
            raise
    browser_seconds = time.perf_counter() - started

    params = load_params(params_file)
    with open_store(params) as store:
        state = meeting_state(store, SAMPLE_WEEK)
    assert [(a.description, a.owner, a.department, str(a.due_date)) for a in state.actions] == [
        (ACTION, "Chen Jie", "logistics", "2026-11-27")
    ]
    assert [d.text for d in state.decisions] == ["Move South parcels to SwiftExpress"]
    assert [f.comment for f in state.feedback] == ["重点清楚"]

    result = run_week([params_file], SAMPLE_WEEK, notebooks=["minutes"])
    handout = (result.folder / "minutes.html").read_text(encoding="utf-8")
    assert ACTION in handout
    assert "Move South parcels to SwiftExpress" in handout
    print(f"browser part {browser_seconds:.1f} s, total {time.perf_counter() - started:.1f} s")
