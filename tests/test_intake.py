"""Issue intake: real CSV (UTF-8, GBK) and XLSX files, checks by row, idempotent imports."""

from __future__ import annotations

import csv
import datetime as dt
import shutil
from pathlib import Path

import pytest

from meetinglib.cli import main
from meetinglib.core.errors import InputDataError, ParamsError, UnreadableSourceError
from meetinglib.meeting.intake import (
    IssueForm,
    add_issue,
    close_issues,
    import_issues,
    parse_segment,
    parse_severity,
    read_issue_file,
    reopen_issues,
    template_severities,
    write_template,
)
from meetinglib.meeting.store import CURRENT_VERSION, SEVERITIES, Store

DATA = Path(__file__).parent / "data" / "issues"
DEPTS = ["operations", "customer_service", "logistics", "finance", "it"]
WEEK = "2026-W47"


@pytest.fixture
def store(tmp_path):
    with Store.at(f"sqlite:///{tmp_path / 'meeting.db'}") as s:
        yield s


def test_utf8_csv_with_chinese_titles_imports_once(store):
    first = import_issues(store, DATA / "logistics_utf8.csv", "logistics", WEEK, departments=DEPTS)
    assert first.encoding == "utf-8" and first.rows == 3 and len(first.added) == 3
    again = import_issues(store, DATA / "logistics_utf8.csv", "logistics", WEEK, departments=DEPTS)
    assert again.added == () and again.skipped == 3
    issues = store.issues()
    assert len(issues) == 3
    assert issues["title"].tolist() == [
        "EastPost deliveries to the South region are late",
        "华南地区东邮派送延误",
        "RapidRoute weekend pick-ups missed",
    ]
    # Chinese keys and full-width separators are stored in the canonical form.
    assert issues["segment"].tolist() == [
        "carrier=EastPost;region=South",
        "carrier=EastPost;region=South",
        "carrier=RapidRoute",
    ]
    assert issues["first_seen"].tolist() == [dt.date(2026, 11, 17), dt.date(2026, 11, 18), None]
    assert issues["source_row"].tolist() == [2, 3, 4]
    assert set(issues["department"]) == {"logistics"} and set(issues["week"]) == {WEEK}


def test_gbk_csv_with_chinese_headers_is_detected(store):
    raw = (DATA / "customer_service_gbk.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # the fixture really is GBK
    result = import_issues(
        store, DATA / "customer_service_gbk.csv", "customer_service", WEEK, departments=DEPTS
    )
    assert result.encoding == "gbk" and len(result.added) == 3
    issues = store.issues()
    assert issues["title"].tolist() == [
        "华南地区客户投诉快递延误",
        "退款审核时间过长",
        "缺货订单迟迟未发货",
    ]
    assert issues["severity"].tolist() == ["high", "medium", "high"]  # 高, 中, 3
    assert issues["segment"].tolist() == [
        "region=South",
        "",
        "warehouse=WH-South;exception_code=stockout",  # 仓库=…；异常=缺货
    ]
    again = import_issues(
        store,
        DATA / "customer_service_gbk.csv",
        "customer_service",
        WEEK,
        departments=DEPTS,
        encoding="gb18030",
    )
    assert again.added == () and again.skipped == 3


def test_wrong_explicit_encoding_is_reported(store):
    with pytest.raises(UnreadableSourceError, match="cannot be read as utf-8.*--encoding"):
        import_issues(
            store,
            DATA / "customer_service_gbk.csv",
            "customer_service",
            WEEK,
            departments=DEPTS,
            encoding="utf-8",
        )
    assert store.issues().empty


def test_xlsx_and_the_same_rows_as_csv_add_nothing_twice(store):
    xlsx = import_issues(store, DATA / "operations.xlsx", "operations", WEEK, departments=DEPTS)
    assert xlsx.encoding is None and len(xlsx.added) == 2
    assert xlsx.ignored_columns == ("notes",)
    issues = store.issues()
    assert issues["title"].tolist() == [
        "Stockouts at WH-South block shipping",
        "华南仓缺货，大量订单无法发货",
    ]
    assert issues["source_row"].tolist() == [2, 4]  # sheet rows; the blank row 3 is skipped
    assert issues["first_seen"].tolist() == [dt.date(2026, 11, 18), dt.date(2026, 11, 19)]
    # Same content, other spelling (Critical, spaces around '='), UTF-8 with BOM.
    csv_copy = import_issues(
        store, DATA / "operations_same_as_xlsx.csv", "operations", WEEK, departments=DEPTS
    )
    assert csv_copy.encoding == "utf-8-sig" and csv_copy.added == () and csv_copy.skipped == 2
    # Another week: the same problem raised again is a new submission.
    later = import_issues(
        store, DATA / "operations.xlsx", "operations", "2026-W48", departments=DEPTS
    )
    assert len(later.added) == 2 and len(store.issues()) == 4


MALFORMED = [
    "{path}: 6 problem(s) in 5 of 6 row(s); nothing was imported. "
    "Fix them in the file and import it again:",
    "  row 4, severity: 'urgent' is not a severity; "
    "use low, medium, high or critical (or 1-4, 低, 中, 高, 紧急)",
    "  row 5, title: empty; every issue needs one",
    "  row 6, segment: unknown segment key 'courier'; "
    "use one of carrier, region, warehouse, channel, order_type, exception_code",
    "  row 7, first_seen: '17.11.2026' is not a date; write it as YYYY-MM-DD, e.g. 2026-11-18",
    "  row 8, segment: unknown exception_code 'teleported'; use one of stockout, "
    "address_error, payment_failed, customs_hold, lost, damaged, fraud_review",
    "  row 8, first_seen: 2026-11-30 is after the end of week 2026-W47 (2026-11-22); "
    "check the date",
]


def test_malformed_file_lists_problems_by_row_and_writes_nothing(store):
    path = DATA / "malformed.csv"
    with pytest.raises(InputDataError) as caught:
        import_issues(store, path, "logistics", WEEK, departments=DEPTS)
    # Row numbers are the file's lines: the first record spans lines 2-3.
    assert str(caught.value).splitlines() == [MALFORMED[0].format(path=path), *MALFORMED[1:]]
    assert store.issues().empty


def test_missing_column_names_what_was_found(store):
    with pytest.raises(
        InputDataError,
        match=r"column\(s\) \['severity'\] missing in the header \(row 1\); columns found: "
        r"\['title', 'description', 'priority_level'\]",
    ):
        import_issues(store, DATA / "missing_severity.csv", "it", WEEK, departments=DEPTS)


def test_unknown_department_is_a_params_error(store):
    with pytest.raises(ParamsError, match=r"department 'shipping' is not in meeting.departments"):
        import_issues(store, DATA / "logistics_utf8.csv", "shipping", WEEK, departments=DEPTS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("carrier=EastPost; region=South", {"carrier": "EastPost", "region": "South"}),
        ("region = South , carrier : EastPost", {"carrier": "EastPost", "region": "South"}),
        ("承运商＝EastPost；地区＝South", {"carrier": "EastPost", "region": "South"}),
        ("仓库=WH-South、异常=缺货", {"warehouse": "WH-South", "exception_code": "stockout"}),
        ("exception_code=Lost in transit", {"exception_code": "lost"}),
        ("order_type=special", {"order_type": "special"}),
        ("", {}),
    ],
)
def test_segments(text, expected):
    assert parse_segment(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("carrier", r"'carrier' is not key=value"),
        ("carrier=A; carrier=B", r"segment key 'carrier' given twice"),
        ("order_type=vip", r"unknown order_type 'vip'; use one of normal, special, after_sales"),
    ],
)
def test_bad_segments(text, message):
    with pytest.raises(ValueError, match=message):
        parse_segment(text)


def test_severities():
    assert [parse_severity(x) for x in ("LOW", "2", "高", "紧急", " Critical ")] == [
        "low",
        "medium",
        "high",
        "critical",
        "critical",
    ]


def test_templates_round_trip(store, tmp_path):
    xlsx = write_template(tmp_path / "logistics.xlsx", "logistics", "zh-CN")
    csv_path = write_template(tmp_path / "logistics.csv", "logistics")
    assert csv_path.read_bytes().startswith(b"\xef\xbb\xbftitle,description,severity,segment,")

    from openpyxl import load_workbook

    book = load_workbook(xlsx)
    assert book.sheetnames == ["问题清单", "说明"]  # the template's language, as its headers
    sheet = book["问题清单"]
    assert [c.value for c in sheet[1]] == [
        "标题",
        "描述",
        "严重程度",
        "涉及范围",
        "首次发现",
        "提交人",
    ]
    (choices,) = sheet.data_validations.dataValidation
    assert choices.formula1 == '"低,中,高,紧急"'
    sheet.append(["分拣线故障", "", "高", "仓库=WH-North", "2026-11-20", "王伟"])
    book.save(xlsx)
    result = import_issues(store, xlsx, "logistics", WEEK, departments=DEPTS)
    assert len(result.added) == 1
    assert store.issues()[["title", "severity", "segment"]].values.tolist() == [
        ["分拣线故障", "high", "warehouse=WH-North"]
    ]
    with open(csv_path, "a", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerow(["Conveyor stops", "", "low", "", "", ""])
    assert len(import_issues(store, csv_path, "logistics", WEEK, departments=DEPTS).added) == 1


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_every_severity_choice_of_a_template_imports_as_its_severity(lang):
    assert [parse_severity(w) for w in template_severities(lang)] == list(SEVERITIES)


def test_add_one_issue(store):
    result = add_issue(
        store,
        "it",
        WEEK,
        departments=DEPTS,
        title="Label printer times out",
        severity="medium",
        segment="warehouse=WH-East",
        first_seen="2026-11-19",
    )
    assert len(result.added) == 1
    repeated = add_issue(
        store,
        "it",
        WEEK,
        departments=DEPTS,
        title="label printer  TIMES out",
        severity="2",
        segment="warehouse = WH-East",
        first_seen=dt.date(2026, 11, 19),
    )
    assert repeated.added == () and repeated.skipped == 1
    # options of the command line: a ParamsError (exit code 2)
    with pytest.raises(ParamsError, match=r"issue not added \(cli\): severity: 'soon' is not"):
        add_issue(store, "it", WEEK, departments=DEPTS, title="x", severity="soon")
    assert len(store.issues()) == 1


def test_form_adds_an_issue_with_the_same_checks(store):
    form = IssueForm(store, WEEK, DEPTS, lang="en", department="logistics")
    form.title.value = "<b>EastPost</b> South delays"
    form.severity.value = "high"
    form.segment.value = "carrier=EastPost; region=Sooth; courier=x"
    form.button.click()
    assert store.issues().empty
    assert "unknown segment key &#x27;courier&#x27;" in form.message.value
    assert "<b>" not in form.message.value

    form.segment.value = "carrier=EastPost; region=South"
    form.first_seen.value = dt.date(2026, 11, 18)
    form.submitter.value = "Chen Jie"
    form.button.click()
    issues = store.issues()
    assert issues[["department", "title", "severity", "segment", "source"]].values.tolist() == [
        [
            "logistics",
            "<b>EastPost</b> South delays",
            "high",
            "carrier=EastPost;region=South",
            "form",
        ]
    ]
    assert issues["first_seen"].tolist() == [dt.date(2026, 11, 18)]
    assert "Saved as issue #1" in form.message.value
    assert form.title.value == "", "the fields are cleared for the next issue"


def _params(tmp_path: Path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(
        "company: Test\ntimezone: Asia/Shanghai\nsource: {kind: folder, path: data}\n"
        f"store: {{path: '{tmp_path / 'meeting.db'}'}}\noutput_dir: '{tmp_path / 'out'}'\n",
        encoding="utf-8",
    )
    return path


def test_a_corrected_row_imported_again_updates_its_issue(store, tmp_path):
    """A department fixes a severity in its file and imports it again: the issue takes the
    new values (its id and status stay), no second copy is stored."""
    path = tmp_path / "logistics.csv"
    with open(DATA / "logistics_utf8.csv", encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))

    def write(table: list[list[str]]) -> None:
        with open(path, "w", encoding="utf-8", newline="") as fh:
            csv.writer(fh).writerows(table)

    write(rows)
    first = import_issues(store, path, "logistics", WEEK, departments=DEPTS)
    close_issues(store, [first.added[2]], week=WEEK)
    before = store.issues().set_index("id")
    severity, description = rows[0].index("severity"), rows[0].index("description")
    assert rows[1][severity] == "high"
    rows[1][severity] = "critical"
    rows[3][description] = "Saturday too"
    write(rows)
    again = import_issues(store, path, "logistics", WEEK, departments=DEPTS)
    after = store.issues().set_index("id")
    assert again.added == () and again.updated == (first.added[0], first.added[2])
    assert again.skipped == 1
    assert list(after.index) == list(before.index)  # no second copy
    assert after.loc[first.added[0], "severity"] == "critical"
    assert after.loc[first.added[2], "description"] == "Saturday too"
    assert after.loc[first.added[2], "status"] == "resolved"  # the status stays
    # the same file once more: nothing changes
    assert import_issues(store, path, "logistics", WEEK, departments=DEPTS).updated == ()
    # another title is another issue; the same title in another week too
    rows[2][0] = "华南地区东邮派送严重延误"
    write(rows)
    assert len(import_issues(store, path, "logistics", WEEK, departments=DEPTS).added) == 1
    assert len(import_issues(store, path, "logistics", "2026-W48", departments=DEPTS).added) == 3


def test_cli_import_list_add_template_and_export(tmp_path, capsys):
    params = str(_params(tmp_path))
    bad = ["issues", "import", str(DATA / "malformed.csv"), "--dept", "logistics", "--week", WEEK]
    assert main([*bad, "--params", params]) == 3
    err = capsys.readouterr().err
    assert "row 4, severity: 'urgent' is not a severity" in err and "Traceback" not in err

    good = ["issues", "import", str(DATA / "customer_service_gbk.csv"), "--week", WEEK]
    assert main([*good, "--dept", "customer_service", "--params", params]) == 0
    out = capsys.readouterr().out
    assert (
        "3 new issue(s) for customer_service, week 2026-W47; 0 already in the store, read as gbk"
        in out
    )
    assert main([*good, "--dept", "customer_service", "--params", params]) == 0
    assert "0 new issue(s)" in capsys.readouterr().out

    assert main([*good, "--dept", "sales", "--params", params]) == 2
    assert "department 'sales' is not in meeting.departments" in capsys.readouterr().err

    add = ["issues", "add", "--dept", "it", "--week", WEEK, "--title", "Export fails"]
    assert main([*add, "--severity", "urgent", "--params", params]) == 2  # a bad option
    assert main([*add, "--severity", "high", "--params", params]) == 0
    assert "issue #4 added for it, week 2026-W47" in capsys.readouterr().out

    assert main(["issues", "list", "--dept", "it", "--params", params]) == 0
    listed = capsys.readouterr().out
    assert "Export fails" in listed and "华南" not in listed
    assert main(["issues", "list", "--format", "csv", "--params", params]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert [r["id"] for r in rows] == ["1", "2", "3", "4"]

    template = tmp_path / "t" / "issues-finance.csv"
    cmd = ["issues", "template", "--dept", "finance", "--format", "csv", "--out", str(template)]
    assert main([*cmd, "--params", params]) == 0
    assert template.is_file() and f"meeting issues import {template}" in capsys.readouterr().out

    out_dir = tmp_path / "backup"
    export = ["store", "export", "--out", str(out_dir), "--format", "json", "--params", params]
    assert main(export) == 0
    assert f"(schema version {CURRENT_VERSION}) exported to" in capsys.readouterr().out
    assert (out_dir / "store.json").is_file()


def test_copy_of_a_file_elsewhere_is_still_the_same_rows(store, tmp_path):
    copy = tmp_path / "renamed.csv"
    shutil.copy(DATA / "logistics_utf8.csv", copy)
    import_issues(store, DATA / "logistics_utf8.csv", "logistics", WEEK, departments=DEPTS)
    assert import_issues(store, copy, "logistics", WEEK, departments=DEPTS).added == ()


def test_read_keeps_row_numbers_of_the_file():
    frame = read_issue_file(DATA / "malformed.csv").frame
    assert frame["_row"].tolist() == [2, 4, 5, 6, 7, 8]
    assert frame.loc[0, "description"] == "a description\nover two lines"


def test_the_demo_issue_files_import_cleanly(store, tmp_path):
    from meetinglib.data.sample import write_sample_issues

    files = write_sample_issues(tmp_path / "issues", WEEK)
    kinds = {(f.path.suffix, f.encoding) for f in files}
    assert {(".csv", "utf-8"), (".csv", "gbk"), (".csv", "utf-8-sig"), (".xlsx", None)} <= kinds
    assert {str(f.week) for f in files} == {"2026-W46", WEEK}
    results = [import_issues(store, f.path, f.department, f.week, departments=DEPTS) for f in files]
    assert [r.encoding for r in results] == [f.encoding for f in files]
    issues = store.issues(week=WEEK)
    assert len(issues) == sum(len(r.added) for r in results if str(r.week) == WEEK) == 13
    incidents = set(issues["segment"])
    assert "carrier=EastPost;region=South" in incidents
    assert "warehouse=WH-South;exception_code=stockout" in incidents
    assert issues["title"].str.contains("[\u4e00-\u9fff]").sum() >= 4
    again = [import_issues(store, f.path, f.department, f.week, departments=DEPTS) for f in files]
    assert all(r.added == () for r in again)


# --- closing and reopening -------------------------------------------------------------------


def _raise(store, week: str, title: str, department: str = "operations") -> int:
    result = add_issue(store, department, week, departments=DEPTS, title=title, severity="high")
    return result.added[0]


def test_a_closed_issue_leaves_the_agendas_of_later_weeks(store):
    from meetinglib.meeting.agenda import issue_load
    from meetinglib.meeting.triage import agenda_issues, triage

    scanner = _raise(store, "2026-W46", "Scanner broken")
    label = _raise(store, "2026-W46", "Label printer jams", "logistics")
    # open, it comes back on every later agenda
    carried = triage(store.issues(through_week="2026-W48"), "2026-W48")
    assert set(carried["issue_id"]) == {scanner, label}
    assert set(carried["status"]) == {"carried_over"}
    assert issue_load(store, "2026-W47") == {"operations": 1, "logistics": 1}

    changes = close_issues(store, [scanner], note="replaced the scanner")
    assert [(c.id, c.before, c.after, c.resolved_week) for c in changes] == [
        (scanner, "open", "resolved", "2026-W46")
    ]
    for week in ("2026-W47", "2026-W48"):
        assert set(agenda_issues(store.issues(through_week=week), week)["id"]) == {label}
        assert set(triage(store.issues(through_week=week), week)["issue_id"]) == {label}
        assert issue_load(store, week) == {"logistics": 1}
    # the week it was raised for still shows it, as that meeting discussed it
    assert set(triage(store.issues(through_week="2026-W46"), "2026-W46")["issue_id"]) == {
        scanner,
        label,
    }
    stored = store.issues(status="resolved")
    assert stored["id"].tolist() == [scanner]
    assert stored["description"].tolist() == ["[resolved 2026-W46] replaced the scanner"]

    dropped = close_issues(store, [label], "dropped", week="2026-W47")
    assert dropped[0].after == "dropped" and dropped[0].resolved_week == "2026-W47"
    assert issue_load(store, "2026-W48") == {}

    reopened = reopen_issues(store, [scanner], note="broke again")
    assert reopened[0].before == "resolved" and reopened[0].after == "open"
    assert reopened[0].resolved_week is None
    assert issue_load(store, "2026-W48") == {"operations": 1}
    assert store.issues(status="open")["description"].tolist() == [
        "[resolved 2026-W46] replaced the scanner\n[open] broke again"
    ]


def test_closing_settles_in_the_latest_meeting_week_and_not_before_the_issue(store):
    issue = _raise(store, "2026-W45", "Scanner broken")
    store.record_meeting(
        "2026-W47",
        details={
            "title": "Weekly review",
            "starts_at": dt.datetime(2026, 11, 30, 6),
            "ends_at": dt.datetime(2026, 11, 30, 7),
            "timezone": "Asia/Shanghai",
        },
        uid="review-2026-W47",
        invite_hash="x",
        people=[],
    )
    assert close_issues(store, [issue])[0].resolved_week == "2026-W47"
    again = close_issues(store, [issue], note="ignored")
    assert not again[0].changed and again[0].resolved_week == "2026-W47"
    assert store.issues()["description"].tolist() == [""], "nothing changed, no note added"
    later = _raise(store, "2026-W49", "Returns desk short-staffed")
    assert close_issues(store, [later])[0].resolved_week == "2026-W49"
    with pytest.raises(ParamsError, match=r"raised for 2026-W45; it cannot be settled in 2026-W44"):
        close_issues(store, [issue], "dropped", week="2026-W44")
    with pytest.raises(ParamsError, match="closes as resolved or dropped, not 'open'"):
        close_issues(store, [issue], "open")


def test_closing_an_unknown_issue_changes_nothing(store):
    issue = _raise(store, "2026-W46", "Scanner broken")
    unknown = r"issue\(s\) #7, #9 not in the store .*nothing changed"
    with pytest.raises(InputDataError, match=unknown):
        close_issues(store, [issue, 7, 9])
    assert store.issues()["status"].tolist() == ["open"]


def test_cli_closes_and_reopens_issues(tmp_path, capsys):
    params = str(_params(tmp_path))
    add = ["issues", "add", "--dept", "operations", "--week", "2026-W46", "--params", params]
    assert main([*add, "--title", "Scanner broken", "--severity", "high"]) == 0
    assert main([*add, "--title", "Label printer jams", "--severity", "low"]) == 0
    capsys.readouterr()

    assert main(["issues", "close", "1", "2", "--note", "fixed", "--params", params]) == 0
    out = capsys.readouterr().out
    assert (
        "issue #1 (operations, 2026-W46, 'Scanner broken'): open -> resolved in 2026-W46; "
        "no longer on the agendas after 2026-W46"
    ) in out
    assert "issue #2 (operations, 2026-W46, 'Label printer jams'): open -> resolved" in out

    close = ["issues", "close", "1", "--status", "dropped", "--week", "2026-W47"]
    assert main([*close, "--params", params]) == 0
    assert "resolved -> dropped in 2026-W47" in capsys.readouterr().out
    assert main([*close, "--params", params]) == 0
    assert "already dropped in 2026-W47; nothing changed" in capsys.readouterr().out

    assert main(["issues", "close", "5", "--params", params]) == 3  # as `actions done 5`
    err = capsys.readouterr().err
    assert "issue(s) #5 not in the store" in err and "This is a bug" not in err

    assert main(["issues", "reopen", "2", "--params", params]) == 0
    assert "resolved -> open; it comes back on the agendas after 2026-W46" in (
        capsys.readouterr().out
    )
    assert main(["issues", "list", "--status", "open", "--format", "csv", "--params", params]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert [(r["id"], r["status"]) for r in rows] == [("2", "open")]
