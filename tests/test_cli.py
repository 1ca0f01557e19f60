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
