"""meeting notebooks: the package's notebooks in a folder of the user's, and their kernel."""

from __future__ import annotations

import json

import nbformat
import pytest

from meetinglib.cli import main
from meetinglib.core.errors import OutputExistsError
from meetinglib.lab import KERNEL, install_notebooks
from meetinglib.runner import PACKAGE_NOTEBOOKS


def test_notebooks_are_copied_and_their_kernel_registered(tmp_path):
    folder, prefix = tmp_path / "nb", tmp_path / "env"
    written = install_notebooks(folder, prefix=str(prefix))
    names = sorted(p.name for p in PACKAGE_NOTEBOOKS.glob("*.ipynb"))
    assert sorted(p.name for p in written) == names and "meeting_console.ipynb" in names
    spec = json.loads((prefix / "share/jupyter/kernels" / KERNEL / "kernel.json").read_text())
    # every notebook names the kernel registered, so JupyterLab opens it without asking
    for path in written:
        kernelspec = nbformat.read(path, as_version=4).metadata["kernelspec"]
        assert (kernelspec["name"], kernelspec["display_name"]) == (KERNEL, spec["display_name"])


def test_notebooks_already_there_are_kept_unless_forced(tmp_path, capsys):
    folder, prefix = tmp_path / "nb", str(tmp_path / "env")
    install_notebooks(folder, prefix=prefix)
    edited = folder / "minutes.ipynb"
    edited.write_text("{}", encoding="utf-8")
    with pytest.raises(OutputExistsError, match=r"minutes\.ipynb exist already; pass --force"):
        install_notebooks(folder, prefix=prefix)
    assert edited.read_text(encoding="utf-8") == "{}"
    install_notebooks(folder, force=True, prefix=prefix)
    assert edited.read_text(encoding="utf-8") != "{}"


def test_the_command_says_where_and_how_to_open_them(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.prefix", str(tmp_path / "env"))
    assert main(["notebooks", "--dir", str(tmp_path / "nb")]) == 0
    out = capsys.readouterr().out
    assert f"notebooks written to {tmp_path / 'nb'}" in out
    assert f"jupyter lab {tmp_path / 'nb'}" in out
    assert main(["notebooks", "--dir", str(tmp_path / "nb")]) == 2
