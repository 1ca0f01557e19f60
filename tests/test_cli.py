"""The command line's own checks: options refused with a clear message and exit code."""

from __future__ import annotations

from pathlib import Path

import pytest

from meetinglib.cli import main

WEEK = "2026-W47"
KNOWN = "['operations', 'customer_service', 'logistics', 'finance', 'it']"


def _params(tmp_path: Path) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(
        "company: Test\ntimezone: Asia/Shanghai\nsource: {kind: folder, path: data}\n"
        f"store: {{path: '{tmp_path / 'meeting.db'}'}}\noutput_dir: '{tmp_path / 'out'}'\n",
        encoding="utf-8",
    )
    return str(path)


@pytest.fixture
def params(tmp_path) -> str:
    path = _params(tmp_path)
    add = ["issues", "add", "--dept", "logistics", "--week", WEEK, "--params", path]
    assert main([*add, "--title", "EastPost late", "--severity", "high"]) == 0
    action = ["actions", "add", "--week", WEEK, "--description", "Call EastPost"]
    who = ["--owner", "Chen Jie", "--dept", "logistics", "--due", "2026-12-04"]
    assert main([*action, *who, "--params", path]) == 0
    return path


@pytest.mark.parametrize(
    "argv",
    [
        ["issues", "list", "--dept", "shipping"],
        ["issues", "list", "--dept", "logistic"],
        ["actions", "list", "--week", WEEK, "--dept", "shipping"],
        ["actions", "list", "--week", WEEK, "--dept", "logistic"],
    ],
)
def test_a_list_filter_on_an_unknown_department_is_refused(argv, params, capsys):
    capsys.readouterr()
    assert main([*argv, "--params", params]) == 2
    out, err = capsys.readouterr()
    dept = argv[argv.index("--dept") + 1]
    assert f"error: department '{dept}' is not in meeting.departments {KNOWN}" in err
    assert "match" not in out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["issues", "list", "--dept", "Logistics"], "EastPost late"),
        (["actions", "list", "--week", WEEK, "--dept", " LOGISTICS "], "Call EastPost"),
    ],
)
def test_a_list_filter_takes_the_department_as_import_does(argv, expected, params, capsys):
    capsys.readouterr()
    assert main([*argv, "--params", params]) == 0
    assert expected in capsys.readouterr().out


def test_actions_take_the_department_as_issues_do(params, capsys):
    assert main(["actions", "update", "1", "--dept", "Finance", "--params", params]) == 0
    assert main(["actions", "list", "--week", WEEK, "--dept", "finance", "--params", params]) == 0
    assert "Call EastPost" in capsys.readouterr().out
    assert main(["actions", "update", "1", "--dept", "shipping", "--params", params]) == 2
    assert "department 'shipping' is not in meeting.departments" in capsys.readouterr().err


# --- --out is checked before any work ------------------------------------------------------------


def test_kpis_out_naming_a_file_is_a_bad_option_before_the_week_loads(tmp_path, capsys):
    params = _params(tmp_path)  # its data folder does not exist: loading would give exit 3
    taken = tmp_path / "kpis.csv"
    taken.write_text("x", encoding="utf-8")
    assert main(["kpis", "--week", WEEK, "--out", str(taken), "--params", params]) == 2
    err = capsys.readouterr().err
    assert f"error: --out {taken} is a file, not a folder" in err and "bug" not in err
    assert taken.read_text(encoding="utf-8") == "x"
    # a good --out is checked and left as it was: nothing made when the load then fails
    new = tmp_path / "new" / "kpis"
    assert main(["kpis", "--week", WEEK, "--out", str(new), "--params", params]) == 3
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (
            ["store", "export", "--out", "/etc/passwd"],
            2,
            "--out /etc/passwd is a file, not a folder",
        ),
        (
            ["store", "export", "--out", "/etc/passwd/backup"],
            5,
            "cannot write to --out (Not a directory: /etc/passwd/backup): /etc/passwd/backup. "
            "Give --out a place this user can write to",
        ),
        (
            ["issues", "template", "--dept", "logistics", "--out", "/proc/x/t.xlsx"],
            5,
            "cannot write to --out (No such file or directory: /proc/x): /proc/x/t.xlsx.",
        ),
        (["agenda", "--out", "/etc/passwd"], 2, "--out /etc/passwd is a file, not a folder"),
        (["notice", "--out", "/etc/passwd"], 2, "--out /etc/passwd is a file, not a folder"),
        (["init", "orders.csv", "--out", "/proc/x/p.yaml"], 5, "cannot write to --out"),
    ],
)
def test_out_mistakes_get_their_exit_code_and_a_remedy(argv, code, message, tmp_path, capsys):
    # agenda and notice without --week would look the week up in the data (missing here)
    params = [] if argv[0] == "init" else ["--params", _params(tmp_path)]
    assert main([*argv, *params]) == code
    err = capsys.readouterr().err
    assert message in err and "This is a bug" not in err


def test_template_out_naming_a_folder_says_what_to_give(tmp_path, capsys):
    params = _params(tmp_path)
    folder = ["issues", "template", "--dept", "it", "--out", str(tmp_path)]
    assert main([*folder, "--params", params]) == 2
    err = capsys.readouterr().err
    assert f"--out {tmp_path} is a folder: the command writes one file" in err
    assert f"e.g. {tmp_path / 'issues-it.xlsx'}." in err
    out = tmp_path / "a" / "b" / "issues-it.csv"
    assert main(["issues", "template", "--dept", "it", "--out", str(out), "--params", params]) == 0
    assert out.is_file()


def test_tables_with_chinese_text_stay_aligned(params, capsys):
    """A Chinese character takes two columns of a terminal: the columns after a Chinese
    title line up with those after an English one."""
    import unicodedata

    add = ["issues", "add", "--dept", "logistics", "--week", WEEK, "--params", params]
    assert main([*add, "--title", "华南派送延误严重", "--severity", "high"]) == 0
    assert main([*add, "--title", "Label printer jams", "--severity", "low"]) == 0
    capsys.readouterr()
    assert main(["issues", "list", "--params", params]) == 0
    lines = capsys.readouterr().out.rstrip("\n").splitlines()

    def width(text: str) -> int:
        return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)

    assert len(lines) == 4 and any("华南" in line for line in lines)
    assert len({width(line) for line in lines}) == 1, lines
