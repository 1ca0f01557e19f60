"""The command line's own checks: options refused with a clear message and exit code."""

from __future__ import annotations

import argparse
import re
import shutil
import unicodedata
from pathlib import Path

import pytest

from meetinglib.cli import _demo_folder, _demo_issues, _demo_minutes, cmd_sample_data, main
from meetinglib.core.schema import SCHEMAS
from meetinglib.data.validate import RULES, rule_label
from tests.conftest import ROOT
from tests.test_minutes import GOOD, minutes_params
from tests.test_notify import PASSWORD_ENV, smtp_server  # noqa: F401  (fixture)

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


# --- meeting validate in the reader's language ---------------------------------------------------

WEEK_CSV = Path(__file__).parent / "data" / "validate" / "week_csv"
GOOD_ORDER = "{id},normal,2026-02-24 10:00:00,2026-02-24 10:05:00,,,,,20.00,"
# Orders of week 2026-W10 with every kind of defect one at a time (tests/test_dataset.py
# describes the fixture's own rows; its O-009 has the created_at 'not a date').
BAD_ORDERS = [
    "O-005,normal,2026-03-04 10:00:00,,,,,,20.00,",  # O-005 again: duplicate key
    "O-020,vip,2026-03-04 10:00:00,,,,,,20.00,",  # unknown order type, kept
    "O-021,normal,2026-03-04 10:00:00,,,,,,￥,",  # a currency mark and no number
    "O-022,normal,2026-03-04 10:00:00,,,,,,￥88.00,",  # a currency mark: read as 88
    "O-023,normal,2026-03-04 10:00:00,2026-03-04 09:00:00,,,,,20.00,",  # paid before created
    "O-024,normal,2026-03-04 10:00:00,,,,,,-5,",  # out of range
    "O-025,normal,,,,,,,20.00,",  # required value missing
    "O-026,normal,1999-03-04 10:00:00,,,,,,20.00,",  # implausible date
    "O-027,normal,2026-03-04 10:00:00,,,,,,20.00,weather",  # unknown exception code, kept
    "O-028,normal,2026-03-04 10:00:00,,,,,,=1+2,",  # a formula: not a number
    "O-029,normal,2026-03-04 10:00:00,,,,,,20.00,stock\x00out",  # NUL byte
    "O-030,normal,2026-03-04 10:00:00,,,,,,20.00," + "x" * 1001,  # field too long
    "O-031,norm\ufffdal,2026-03-04 10:00:00,,,,,,20.00,",  # undecodable bytes
]
BAD_TICKETS = [
    "T-6,00042,2026-03-04 12:00:00,,,other,9",  # CSAT out of range
    "T-7,O-021,2026-03-04 12:00:00,,,other,",  # its order is set aside
    "T-8,00042,2026-03-04 12:00:00,,,other,,extra",  # wrong field count
]
BAD_SETTLEMENTS = ["O-007,,30.00,0.30,settled"]  # said settled, without its time: kept
# Words that stay as typed in a Chinese line: the canonical tables and columns (a user
# names them in params) and the control character's name.
IDENTIFIERS = {*SCHEMAS, *(c.name for s in SCHEMAS.values() for c in s.columns), "NUL"}
# What a line may hold besides words: quoted values from the data, file names and
# dotted names (params keys, table.column), the elapsed time of a progress line.
NOT_WORDS = re.compile(r"“[^”]*”|'[^']*'|\b[\w-]+(?:\.[\w-]+)+\b|^\[\s*[\d.]+s\]")


def _defective_week(tmp_path: Path, language: str) -> Path:
    data = tmp_path / "data"
    shutil.copytree(WEEK_CSV, data)
    # Good orders of the week before keep the file's share set aside under the limit,
    # while the report week's share passes it (a warning line).
    good = [GOOD_ORDER.format(id=f"O-1{i:02}") for i in range(16)]
    bad = (
        ("orders", BAD_ORDERS + good),
        ("tickets", BAD_TICKETS),
        ("settlements", BAD_SETTLEMENTS),
    )
    for name, rows in bad:
        with (data / f"{name}.csv").open("a", encoding="utf-8") as fh:
            fh.write("".join(row + "\n" for row in rows))
    path = tmp_path / "params.yaml"
    path.write_text(
        f"company: Test\ntimezone: Asia/Shanghai\nlanguage: {language}\nhistory_weeks: 2\n"
        f"open_order_lookback_days: 14\nsource: {{kind: folder, path: '{data}'}}\n"
        "quality: {max_quarantine_share: 0.4}\n",
        encoding="utf-8",
    )
    return path


def _english_words(line: str) -> list[str]:
    """Words of three letters or more left in ``line`` once identifiers, quoted values,
    file names and params keys are taken out: English a Chinese reader would meet."""
    rest = NOT_WORDS.sub(" ", line)
    words = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", rest)
    return [w for w in words if re.search("[A-Za-z]{3}", w) and w not in IDENTIFIERS]


@pytest.mark.parametrize("chosen", ["params", "--lang"])
def test_validate_in_chinese_prints_no_english_sentence(chosen, tmp_path, capsys):
    """Every line `meeting validate` prints, the load's progress included, is Chinese
    when the language is zh-CN, in the params or by --lang: a defect of every kind."""
    params = _defective_week(tmp_path, "zh-CN" if chosen == "params" else "en")
    lang = ["--lang", "zh-CN"] if chosen == "--lang" else []
    assert main(["validate", "--params", str(params), "--week", "2026-W10", *lang]) == 0
    out, err = capsys.readouterr()
    lines = [line for line in (err + out).splitlines() if line.strip()]
    english = {line: words for line in lines if (words := _english_words(line))}
    assert english == {}
    # not a pass by saying little: every table loaded, every rule found, its examples
    assert len(err.splitlines()) == 6, err  # five tables and the rows left out
    for rule in RULES:
        assert rule_label(rule, "zh-CN") in out, rule
    assert "第 4 行（order_id 为 O-003）" not in out  # a good row is no example
    # the wording of a few lines, pinned
    assert "2026-W10 周及此前的历史周，使用的行数：orders 25，" in out
    assert (
        "] 因所属订单未载入而略去的行：settlements 2，order_lines 1，after_sales 1，tickets 3\n"
        in err
    )
    assert "第 13 行（order_id 为 O-021）：取值“￥”；" in out
    assert "第 11 行（order_id 为 O-005）：该键首次出现在第 6 行" in out
    # The examples are wrapped by terminal columns (a Chinese character takes two), so
    # they stay as narrow as English ones; only they start with two spaces.
    examples = [line for line in out.splitlines() if line.startswith("  ")]
    assert len(examples) > 14
    width = [sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in x) for x in examples]
    assert max(width) <= 100, examples


# --- the meeting's commands in the reader's language ---------------------------------------------

SMTP = (
    "smtp: {{host: 127.0.0.1, port: {port}, user: ops, password_env: {env}, "
    "sender: ops-reports@shop.example, starttls: false, timeout_seconds: 10}}\n"
)
# Values that stay as typed in a Chinese line, besides IDENTIFIERS: department codes,
# the sample's carrier, region and exception code, acronyms.
TYPED = {*KNOWN.strip("[]").replace("'", "").split(", "), "EastPost", "South", "stockout"}
TYPED |= {"SMTP", "UTC"}
# Paths and store URLs (ASCII here), time zones, encodings, options, a command line.
AS_TYPED = re.compile(
    r"(?:sqlite://)?/[A-Za-z0-9_./-]+|Asia/Shanghai|\butf-8\b|--[a-z-]+|\bmeeting (?:[a-z]+ )+.*$"
)


def _english_lines(text: str) -> dict[str, list[str]]:
    """The lines of ``text`` holding English words once what stays as typed is taken out."""
    found = {}
    for line in text.splitlines():
        words = [w for w in _english_words(AS_TYPED.sub(" ", line)) if w not in TYPED]
        if words:
            found[line] = words
    return found


def _run(argv: list[str], capsys) -> str:
    """stdout and stderr of a command that succeeds."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    return out + err


def test_the_meeting_commands_speak_the_handouts_first_language(
    tmp_path,
    smtp_server,  # noqa: F811
    monkeypatch,
    capsys,
):
    """Without --lang the issue, agenda, notice, minutes, action and store commands print
    in the params' first handout language (zh-CN before en here): every line Chinese, with
    ids, weeks, paths, codes and command lines as typed."""
    _, port = smtp_server
    monkeypatch.setenv(PASSWORD_ENV, "s3cret pw")
    smtp = SMTP.format(port=port, env=PASSWORD_ENV)
    params = ["--params", str(minutes_params(tmp_path, "languages: [zh-CN, en]\n" + smtp))]
    printed: list[str] = []

    def run(*argv: str) -> str:
        printed.append(_run([*argv, *params], capsys))
        return printed[-1]

    w47 = ["--week", WEEK]
    issues = tmp_path / "logistics.csv"
    issues.write_text("title,severity,extra\n扫描枪故障,high,x\n", encoding="utf-8")
    imported = ["issues", "import", str(issues), "--dept", "logistics", *w47]
    assert f"{issues}：logistics 第 2026-W47 周新增问题 1 个；0 个已在存储中，按 utf-8" in run(
        *imported
    )
    issues.write_text("title,severity\n扫描枪故障,critical\n", encoding="utf-8")
    assert "，更新 1 个；" in run(*imported)
    assert "问题 #2：文件中的这一行有改动，问题已改用新值" in printed[-1]
    add = ["issues", "add", "--dept", "it", *w47, "--title", "导出失败", "--severity", "high"]
    assert "已为 it 添加第 2026-W47 周的问题 #3" in run(*add)
    assert "存储中已有相同的问题，未添加" in run(*add)
    assert run("issues", "list", "--dept", "finance") == "没有符合条件的问题\n"
    assert (
        "问题 #1（logistics，2026-W47，“EastPost late”）：待处理 → 已解决（2026-W47）；"
        "2026-W47 之后的议程不再列入"
    ) in run("issues", "close", "1")
    assert "已于 2026-W47 标为已解决，未作更改" in run("issues", "close", "1")
    assert "已解决 → 待处理；2026-W47 之后的议程将重新列入" in run("issues", "reopen", "1")
    assert "状态已是待处理，未作更改" in run("issues", "reopen", "1")
    assert "（结构版本 " in run("store", "export", "--out", str(tmp_path / "backup"))

    assert "第 2026-W47 周议程：2026-11-23 14:00–" in run("agenda", *w47)
    assert "（未发送；加 --send 即通过 SMTP 发送）" in run("notice", *w47)
    assert "随通知重新写入的文件（zh-CN）：" in printed[-1]
    assert f"已通过 127.0.0.1:{port} 发给 3 位收件人" in run("notice", *w47, "--send")

    minutes = ["minutes", "record", str(GOOD), *w47]
    assert "新增决定 1 项，新增行动项 2 项、更新 0 项" in run(*minutes)
    assert "第 2026-W47 周的会议纪要已经记录，未作更改" in run(*minutes)
    folder = tmp_path / "out" / WEEK  # the mail is in `language`, unset: zh-CN, its handout
    (folder / "minutes.html").write_text('<html lang="zh-CN"><body>x</body></html>', "utf-8")
    sent = run("minutes", "send", *w47)
    assert "第 2026-W47 周会议纪要已于 " in sent and "发给 4 位收件人；副本在 " in sent
    assert "警告：发送时距会议结束已过 " in sent  # days after the meeting of 2026-11-23

    action = ["actions", "add", *w47, "--description", "致电客户", "--owner", "陈杰"]
    assert "行动项 #3 已加入第 2026-W47 周的会议" in run(
        *action, "--dept", "logistics", "--due", "2026-12-04"
    )
    assert run("actions", "update", "3", "--note", "已联系") == "行动项 #3 已更新\n"
    assert run("actions", "done", "1", "3") == "行动项 #1、#3 已完成\n"
    assert run("actions", "list", *w47, "--owner", "无人") == "没有符合条件的行动项\n"

    assert _english_lines("".join(printed)) == {}
    assert len("".join(printed).splitlines()) > 30  # not a pass by saying little

    # --lang en: the same team's command in English
    out = _run(["notice", *w47, "--lang", "en", *params], capsys)
    assert f"notice for week {WEEK} written to " in out and "written again with it (en):" in out
    assert not re.search(r"[\u4e00-\u9fff]", out)


def test_the_list_tables_speak_the_teams_language(tmp_path, capsys):
    """`issues list` and `actions list` show their headers, departments, severities and
    statuses in the team's language; --format csv and English keep the store's codes."""
    params = ["--params", str(minutes_params(tmp_path, "languages: [zh-CN, en]\n"))]
    w47 = ["--week", WEEK]
    add = ["issues", "add", "--dept", "logistics", *w47, "--title", "扫描枪故障"]
    _run([*add, "--severity", "high", *params], capsys)
    _run(["minutes", "record", str(GOOD), *w47, *params], capsys)

    issues = _run(["issues", "list", "--dept", "logistics", *params], capsys)
    header, *rows = issues.splitlines()
    assert header.split() == ["编号", "周", "部门", "严重程度", "状态", "标题", "涉及范围", "来源"]
    mine = next(row for row in rows if "扫描枪故障" in row)
    assert {"物流部", "高", "待处理"} <= set(mine.split())
    assert "logistics" not in issues and " high " not in issues

    actions = _run(["actions", "list", *w47, *params], capsys)
    header, *rows = actions.splitlines()
    names = ["编号", "会议周", "部门", "负责人", "截止日期", "状态", "到期情况"]
    assert header.split()[:7] == names
    assert rows and all(re.search(r"进行中|已完成|已取消", row) for row in rows), actions
    assert not re.search(r"\b(open|done|overdue|on_track|due_this_week|True|False)\b", actions)

    csv = _run(["issues", "list", "--dept", "logistics", "--format", "csv", *params], capsys)
    assert csv.startswith("id,week,department,severity,status,") and ",logistics,high,open," in csv
    (tmp_path / "en.yaml").write_text("languages: [en]\n", encoding="utf-8")
    in_english = [*params, "--params", str(tmp_path / "en.yaml")]
    english = _run(["actions", "list", *w47, *in_english], capsys)
    assert english.split()[:3] == ["id", "meeting_week", "department"]
    assert re.search(r"\b(open|done|dropped)\b", english)


def test_the_issue_template_speaks_its_own_language(tmp_path, capsys):
    """The template's lines name its columns, so they speak its language: --lang, else
    `language` (as its headers; set in no params file, the first of `languages`)."""
    params = ["--params", str(minutes_params(tmp_path, "languages: [zh-CN, en]\n"))]
    out = tmp_path / "issues-it.csv"
    template = ["issues", "template", "--dept", "it", "--format", "csv", "--out", str(out)]
    assert _run([*template, "--lang", "en", *params], capsys) == (
        f"issue template for it: {out}\n"
        "  one row per issue; columns title and severity are required. Import it with\n"
        f"  meeting issues import {out} --dept it --week <ISO week>\n"
    )
    chinese = _run([*template, *params], capsys)
    assert chinese == (
        f"it 的问题清单模板：{out}\n"
        "  每行一个问题；“标题”和“严重程度”两列必填。导入命令：\n"
        f"  meeting issues import {out} --dept it --week <ISO 周>\n"
    )
    assert out.read_text(encoding="utf-8-sig").startswith("标题,")


def test_the_demo_speaks_its_params_language(tmp_path, capsys):
    """The demo's own lines and the sample data's are in the demo params' language."""
    overlay = tmp_path / "here.yaml"
    overlay.write_text(
        f"store: {{path: '{tmp_path / 'demo.db'}'}}\noutput_dir: '{tmp_path / 'out'}'\n",
        encoding="utf-8",
    )
    layers = [ROOT / "params" / "demo.yaml", ROOT / "params" / "both-languages.yaml", overlay]
    args = argparse.Namespace(params=[str(p) for p in layers], week=WEEK, lang=None)
    sample = tmp_path / "data" / "sample"
    _demo_issues(args, sample)
    _demo_minutes(args, sample)
    lines = capsys.readouterr().out
    assert f"已向 sqlite:///{tmp_path / 'demo.db'} 导入新问题 " in lines
    assert f"已从 {sample / 'minutes'} 记录第 2026-W46 周和第 2026-W47 周的示例会议纪要" in lines
    # --dir: the params file copied into the demo's folder says so in its language (en)
    assert _demo_folder(args, tmp_path / "demo") == [str(tmp_path / "demo/params/demo.yaml")]
    assert capsys.readouterr().out.startswith("demo params written to ")
    _demo_folder(argparse.Namespace(lang="zh-CN"), tmp_path / "zh")
    assert capsys.readouterr().out.startswith("演示参数已写入 ")

    ns = argparse.Namespace(
        out=tmp_path / "small", weeks=1, orders_per_week=200, seed=7, end_week=WEEK,
        timezone="Asia/Shanghai", no_incidents=False, format="csv", quiet=False, lang="zh-CN",
    )  # fmt: skip
    cmd_sample_data(ns)  # as the demo runs it
    out, progress = capsys.readouterr()
    lines += out
    # its progress too, on stderr
    assert "正在生成截至 2026-W47 的 1 周订单" in progress
    assert "第 2026-W47 周（1/1）：已生成 " in progress and "已写入 orders.csv：" in progress
    assert _english_lines(re.sub(r"^\[ *[\d.]+s\] ", "", progress, flags=re.M)) == {}
    assert f"示例数据已写入 {tmp_path / 'small'}：共 1 周，截至第 2026-W47 周\n" in lines
    assert re.search(r"^  orders +[\d,]+ 行$", lines, re.M), lines
    assert "  注入的事件：自 2026-11-17（2026-W47 的星期二）起发出的包裹，EastPost" in lines
    assert _english_lines(lines) == {}

    # sample-data alone reads no params: English, the wording as before
    alone = tmp_path / "alone"
    argv = ["-q", "sample-data", "--out", str(alone), "--weeks", "1", "--end-week", WEEK]
    out = _run([*argv, "--orders-per-week", "200", "--format", "csv"], capsys)
    assert f"sample data for 1 weeks ending 2026-W47 in {alone}\n" in out
    assert re.search(r"^  orders +[\d,]+ rows$", out, re.M), out
    assert (
        "  incident: EastPost transit time in region South x2.5 for shipments from Tuesday "
        "2026-11-17 (2026-W47)\n"
    ) in out
