"""The handouts as an attendee gets them: opened in Chromium, on a projector and on paper.

One demo-size run (12 weeks x 20,000 orders, the demo's issues and minutes, agenda and
notice) in both languages is made once per session, with a hostile-string corpus in
every field a person types (company, meeting title, code labels, issue titles and
texts, decisions, action items, the minutes' summary) and in data-derived fields
(region, carrier, ticket category, after-sales reason). Then, for every HTML file in
both languages: no request beyond the file itself and no console error; nothing of the
corpus runs (a probe on ``window``, with the page's Content-Security-Policy bypassed so
escaping alone is tested); printed to A4, no element is wider than the page and the page
budget holds; the data report's summary fits the first 1366x768 screen and page one.

Screenshots and PDFs are kept in ``build/browser/`` (git-ignored) for a person to look at.
Needs the ``playwright`` package (test extras) and Debian's Chromium at /usr/bin/chromium
(``make system-deps``); without them the tests skip saying what is missing, except on CI
(``CI=true``), where they fail.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ARTIFACTS = ROOT / "build" / "browser"
LANGUAGES = ("zh-CN", "en")
# Printed A4 pages at demo size.
BUDGET = {"data_report": 16, "issue_triage": 6, "minutes": 3}
OTHER_BUDGET = 3  # index, agenda, notice
# A4 at 96 px per inch, less the handouts' @page margins (10 mm each side, 11 + 12 mm).
PAGE_WIDTH_PX = round((210 - 20) / 25.4 * 96)
PAGE_HEIGHT_PX = round((297 - 23) / 25.4 * 96)
SCREEN = {"width": 1366, "height": 768}

# Each string would run if it reached the page unescaped; they all set window.__pwned.
# No colon-space or hash, so they stay plain scalars inside the YAML minutes.
CORPUS = (
    "<script>window.__pwned=1</script>",
    "<img src=x onerror=window.__pwned=2>",
    '"><svg onload=window.__pwned=3>',
    "'><body onload=window.__pwned=4>",
    "<iframe srcdoc='<script>parent.__pwned=5</script>'></iframe>",
    "{{7*7}}<details open ontoggle=window.__pwned=6>",
)
MARK = "window.__pwned"
DEMO_CARRIERS = {
    "SwiftExpress": {"daily_capacity": 1200},
    "EastPost": {"daily_capacity": 1000},
    "CloudLogistics": {"daily_capacity": 900},
    "RapidRoute": {"daily_capacity": [480, 480, 480, 480, 480, 400, 400]},
}


@pytest.fixture(scope="session")
def browser(chromium: Any) -> Any:
    return chromium


def _poison_data(sample: Path) -> None:
    """Corpus strings as region, carrier, ticket category and after-sales reason of some rows."""
    orders = pd.read_parquet(sample / "orders.parquet")
    for column in ("region", "carrier"):
        orders[column] = orders[column].astype(object)
    rows = orders.index[-600:]
    orders.loc[rows[:300], "region"] = CORPUS[1]
    orders.loc[rows[300:], "carrier"] = CORPUS[2]
    orders.to_parquet(sample / "orders.parquet", index=False)
    for table, column, value in (
        ("tickets", "category", CORPUS[3]),
        ("after_sales", "reason", CORPUS[4]),
    ):
        path = sample / f"{table}.parquet"
        if path.exists():
            frame = pd.read_parquet(path)
            frame[column] = frame[column].astype(object)
            frame.loc[frame.index[-200:], column] = value
            frame.to_parquet(path, index=False)


def _poison_issues(files: Any, minutes_text: str) -> None:
    """Corpus strings as the title and text of issues the minutes do not refer to."""
    for f in files:
        if f.path.suffix != ".csv":
            continue
        with open(f.path, encoding=f.encoding, newline="") as fh:
            rows = list(csv.reader(fh))
        for i, row in enumerate(rows[1:], start=1):
            if row[0] not in minutes_text:
                rows[i][0] = f"{CORPUS[0]} {CORPUS[5]}"
                rows[i][1] = f"{row[1]} {CORPUS[1]}"
                break
        with open(f.path, "w", encoding=f.encoding, errors="replace", newline="") as fh:
            csv.writer(fh).writerows(rows)


def _poison_minutes(paths: Any) -> None:
    """Corpus strings in an action item, a decision and the summary of the recorded minutes."""
    for path in paths:
        text = Path(path).read_text(encoding="utf-8")
        text = text.replace(
            "with an automatic retry", f"with an automatic retry {CORPUS[1]} {CORPUS[0]}", 1
        )
        text = text.replace("and retry it automatically", f"and retry it {CORPUS[2]}", 1)
        text = re.sub(r"(summary: \|\n  )", rf"\1{CORPUS[5]} ", text, count=1)
        Path(path).write_text(text, encoding="utf-8")


@pytest.fixture(scope="session")
def handouts(tmp_path_factory) -> Path:
    """The demo week's folder, made once: both languages, hostile strings everywhere."""
    from meetinglib import cli
    from meetinglib.data.sample import generate_sample

    root = tmp_path_factory.mktemp("browser")
    sample = root / "sample"
    generate_sample(sample, weeks=12, orders_per_week=20_000, seed=7, end_week=None)
    _poison_data(sample)
    labels = {
        "channel": {
            "app": {"en": f"App {CORPUS[3]}", "zh-CN": f"应用 {CORPUS[3]}"},
            "mini_program": {"en": "Mini program", "zh-CN": "小程序"},
            "web": {"en": "Web", "zh-CN": "网站"},
        }
    }
    layer = {
        "company": f"Demo Shop {CORPUS[0]}",
        "languages": list(LANGUAGES),
        "source": {"kind": "folder", "path": str(sample)},
        "output_dir": str(root / "outputs"),
        "store": {"path": str(root / "meeting.db")},
        "labels": labels,
        # The plan needs a capacity for every carrier of the recent weeks, hostile or not.
        "plan": {"carriers": {**DEMO_CARRIERS, CORPUS[2]: {"daily_capacity": 50}}},
        "meeting": {
            "title": {
                "en": f"Weekly review {CORPUS[1]}",
                "zh-CN": f"每周订单处理例会 {CORPUS[1]}",
            }
        },
    }
    params = root / "browser.yaml"
    params.write_text(json.dumps(layer, ensure_ascii=False), encoding="utf-8")
    demo = ROOT / "params" / "demo.yaml"

    real_issues, real_minutes = cli.write_sample_issues, cli.write_sample_minutes

    def issues(folder: Any, week: Any) -> Any:
        files = real_issues(folder, week)
        # The minutes refer to issues by title: those keep theirs.
        refs = real_minutes(root / "minutes-refs", week)
        _poison_issues(files, "".join(Path(p).read_text(encoding="utf-8") for p in refs))
        return files

    def minutes(folder: Any, week: Any) -> Any:
        paths = real_minutes(folder, week)
        _poison_minutes(paths)
        return paths

    # The demo writes the files, then imports them: the corpus goes in between, as a
    # person would have typed it.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli, "write_sample_issues", issues)
        mp.setattr(cli, "write_sample_minutes", minutes)
        code = cli.main(
            [
                "-q",
                "--debug",
                "demo",
                "--params",
                str(demo),
                "--params",
                str(params),
                "--data",
                str(sample),
            ]
        )
    assert code == 0
    weeks = sorted(p for p in (root / "outputs").iterdir() if p.is_dir() and "." not in p.name)
    folder = weeks[-1]
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    return folder


def _pages(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.html"))


def _kind(page: Path) -> str:
    return page.name.split(".")[0]


@pytest.fixture(scope="session")
def pages(handouts: Path) -> list[Path]:
    found = _pages(handouts)
    names = {p.name for p in found}
    for name in ("data_report", "issue_triage", "minutes"):
        assert f"{name}.html" in names and f"{name}.en.html" in names, sorted(names)
    assert {"index.html", "agenda.html", "notice.html"} <= names, sorted(names)
    assert {"agenda.en.html", "notice.en.html"} <= names, sorted(names)
    return found


def _open(browser: Any, page_file: Path, **context: Any) -> tuple[Any, Any, list[str], list[str]]:
    """A page loaded from disk; the requests it made and its console errors."""
    ctx = browser.new_context(**context)
    page = ctx.new_page()
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(page_file.resolve().as_uri(), wait_until="load")
    return ctx, page, requests, errors


def test_every_page_is_self_contained_and_quiet(browser, pages):
    for page_file in pages:
        ctx, page, requests, errors = _open(browser, page_file, viewport=SCREEN)
        outside = [u for u in requests if u != page_file.resolve().as_uri()]
        outside = [u for u in outside if not u.startswith("data:")]
        assert not outside, f"{page_file.name} requested {outside[:3]}"
        assert not errors, f"{page_file.name} console errors: {errors[:3]}"
        broken = page.evaluate(
            "() => [...document.images].filter(i => !i.complete || i.naturalWidth === 0)"
            ".map(i => i.alt.slice(0, 60))"
        )
        assert not broken, f"{page_file.name}: images that did not decode: {broken}"
        page.screenshot(path=str(ARTIFACTS / f"{page_file.name}.screen.png"))
        ctx.close()


def test_every_page_is_localised(pages):
    for page_file in pages:
        text = page_file.read_text(encoding="utf-8")
        # The first language's files keep the plain names; the others carry a suffix.
        lang = "en" if ".en." in page_file.name else "zh-CN"
        assert f'<html lang="{lang}"' in text, page_file.name
        title = re.search(r"<title>(.*?)</title>", text, re.S)
        assert title and title.group(1).strip(), f"{page_file.name} has no <title>"
        if lang == "zh-CN":
            assert re.search(r"[\u4e00-\u9fff]", title.group(1)), (page_file.name, title.group(1))


def test_the_index_links_both_languages(pages, handouts):
    index = (handouts / "index.html").read_text(encoding="utf-8")
    for name in ("data_report", "issue_triage", "minutes"):
        assert f'href="{name}.html"' in index and f'href="{name}.en.html"' in index


def test_hostile_strings_do_not_run(browser, pages):
    reached = []
    for page_file in pages:
        # The policy forbids script anyway; bypassing it tests the escaping on its own.
        ctx, page, _, _ = _open(browser, page_file, viewport=SCREEN, bypass_csp=True)
        page.wait_for_timeout(50)
        assert page.evaluate("() => window.__pwned") is None, f"{page_file.name} ran the corpus"
        assert page.evaluate("() => document.querySelectorAll('script').length") == 0, (
            page_file.name
        )
        if MARK in page.evaluate("() => document.body.innerText"):
            reached.append(page_file.name)
        ctx.close()
    # The corpus reached the handouts as text, so the check above was not vacuous.
    for name in ("data_report.html", "data_report.en.html", "issue_triage.html", "minutes.html"):
        assert name in reached, (name, reached)


def test_printed_pages_fit_the_paper_and_the_budget(browser, pages):
    measured = {}
    for page_file in pages:
        ctx, page, _, _ = _open(
            browser, page_file, viewport={"width": PAGE_WIDTH_PX, "height": PAGE_HEIGHT_PX}
        )
        page.emulate_media(media="print")
        wide = page.evaluate(
            """(w) => [...document.querySelectorAll('body *')]
                 .filter(e => e.getBoundingClientRect().right > w + 1)
                 .slice(0, 5).map(e => e.tagName + ' ' + (e.innerText || '').slice(0, 50))""",
            PAGE_WIDTH_PX,
        )
        assert not wide, f"{page_file.name}: wider than the A4 page: {wide}"
        pdf = page.pdf(format="A4", prefer_css_page_size=True, print_background=True)
        (ARTIFACTS / f"{page_file.name}.pdf").write_bytes(pdf)
        count = len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf))
        measured[page_file.name] = count
        budget = BUDGET.get(_kind(page_file), OTHER_BUDGET)
        assert 1 <= count <= budget, f"{page_file.name}: {count} A4 pages, budget {budget}"
        ctx.close()
    (ARTIFACTS / "pages.json").write_text(json.dumps(measured, indent=1), encoding="utf-8")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_summary_fits_the_first_screen_and_page_one(browser, handouts, lang):
    name = "data_report.html" if lang == LANGUAGES[0] else f"data_report.{lang}.html"
    ctx, page, _, _ = _open(browser, handouts / name, viewport=SCREEN)
    box = page.evaluate(
        "() => { const r = document.querySelector('.ml-summary').getBoundingClientRect();"
        " return [r.top, r.bottom]; }"
    )
    assert box[1] <= SCREEN["height"], f"{name}: summary ends at {box[1]:.0f} px on screen"
    page.screenshot(path=str(ARTIFACTS / f"{name}.first-screen.png"))
    # Before the summary come only the title and the subtitle; it links its sections.
    links = page.evaluate(
        "() => [...document.querySelectorAll('.ml-summary a')].map(a => a.getAttribute('href'))"
    )
    assert {"#changes", "#flow", "#actions"} <= set(links), links
    for anchor in links:
        assert page.evaluate(f"() => !!document.querySelector('{anchor}')"), anchor
    page.set_viewport_size({"width": PAGE_WIDTH_PX, "height": PAGE_HEIGHT_PX})
    page.emulate_media(media="print")
    bottom = page.evaluate(
        "() => document.querySelector('.ml-summary').getBoundingClientRect().bottom"
    )
    assert bottom <= PAGE_HEIGHT_PX, f"{name}: summary ends at {bottom:.0f} px of {PAGE_HEIGHT_PX}"
    ctx.close()


def test_cjk_glyphs_render_in_the_charts(handouts):
    """Matplotlib warns on stderr for every glyph its font lacks; the kept notebooks hold it."""
    for name in ("data_report.ipynb", "issue_triage.ipynb"):
        nb = json.loads((handouts / name).read_text(encoding="utf-8"))
        streams = [
            o.get("text", "")
            for c in nb["cells"]
            for o in c.get("outputs", [])
            if o.get("output_type") == "stream"
        ]
        missing = [s for s in streams if "missing from font" in str(s)]
        assert not missing, f"{name}: {str(missing[0])[:200]}"
        alts = re.findall(
            r'alt="([^"]*)"', (handouts / name.replace(".ipynb", ".html")).read_text()
        )
        assert any(re.search(r"[\u4e00-\u9fff]", a) for a in alts), name
