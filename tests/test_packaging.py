"""The package as users install it: a wheel in a fresh virtual environment, run outside the
checkout. Slow (a virtual environment and a demo run, a few minutes): marked ``slow``."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    (path,) = out.glob("meetinglib-*.whl")
    return path


def test_the_wheel_carries_what_a_run_needs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "meetinglib/py.typed",
        "meetinglib/defaults/params.yaml",
        "meetinglib/defaults/demo.yaml",
        "meetinglib/defaults/spark-log4j2.properties",
        "meetinglib/notebooks/data_report.ipynb",
        "meetinglib/notebooks/minutes.ipynb",
        "meetinglib/locales/en/LC_MESSAGES/meetinglib.po",
        "meetinglib/locales/zh-CN/LC_MESSAGES/meetinglib.po",
    ):
        assert needed in names, needed
    assert any(n.startswith("meetinglib/templates/") for n in names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "params/", "outputs/")) for n in names)


@pytest.mark.slow
def test_installed_wheel_runs_the_demo_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", str(wheel)],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr[-3000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    demo = subprocess.run(
        [str(venv / "bin" / "meeting"), "demo", "--dir", str(work / "demo"),
         "--orders-per-week", "1500"],
        cwd=work, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr[-3000:]
    # the installed package ran, not the checkout
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import meetinglib; print(meetinglib.__file__)"],
        cwd=work, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert str(venv) in where.stdout
    (index,) = (work / "demo" / "outputs").glob("*/index.html")
    assert (index.parent / "data_report.html").stat().st_size > 50_000
    assert f"Handouts for {index.parent.name}: " in demo.stdout
    # everything the demo wrote is under its folder: params, sample data, store, handouts
    assert str(work / "demo" / "outputs") in demo.stdout
    assert (work / "demo" / "params" / "demo.yaml").is_file()
    assert (work / "demo" / "data" / "sample" / "orders.parquet").is_file()
    # the notebooks for JupyterLab, with the kernel they name registered in the venv
    notebooks = subprocess.run(
        [str(venv / "bin" / "meeting"), "notebooks", "--dir", str(work / "nb")],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert notebooks.returncode == 0, notebooks.stderr[-3000:]
    assert (work / "nb" / "meeting_console.ipynb").is_file()
    assert (venv / "share" / "jupyter" / "kernels" / "meetinglib" / "kernel.json").is_file()
