"""Templates with autoescaping and the one table helper."""

from __future__ import annotations

import pandas as pd
from markupsafe import Markup, escape

from meetinglib.report.render import CSP, frame_table, macro, page, render, table

HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=1">'


def test_table_escapes_text_and_aligns_columns():
    html = str(table(["Owner", "Hours"], [[HOSTILE, "12.5"]], numeric=[1]))
    assert "<script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;" in html
    assert '<th class="ml-text">Owner</th>' in html
    assert '<td class="ml-num">12.5</td>' in html


def test_markup_cells_pass_through_only_from_macros():
    status = macro("status", "ml-status-off", "✖", HOSTILE)
    assert isinstance(status, Markup)
    html = str(table(["Status"], [[status]]))
    assert '<span class="ml-status ml-status-off">' in html
    assert "<script>" not in html


def test_wide_tables_are_marked_for_print():
    assert "ml-wide" in str(table(list("abcdefgh"), [list("12345678")]))
    assert "ml-wide" not in str(table(list("abc"), [list("123")]))


def test_frame_table_has_one_header_row_and_numbers_right():
    frame = pd.DataFrame({"count": [3, 4]}, index=pd.Index(["app", "web"], name="channel"))
    html = str(frame_table(frame, index=True))
    assert html.count("<tr>") == 3  # one header row, two body rows
    assert '<th class="ml-text">channel</th><th class="ml-num">count</th>' in html


def test_page_carries_language_title_and_csp():
    html = page(
        "index.html.j2",
        lang="zh-CN",
        title=HOSTILE,
        company="Shop",
        handouts=[],
        extras=[],
        generated="",
    )
    assert '<html lang="zh-CN">' in html
    assert f'content="{escape(CSP)}"' in html
    assert "<title>&lt;script&gt;" in html


def test_render_autoescapes_every_template():
    assert "&lt;b&gt;" in str(render("common/macros.html.j2") + macro("note", "<b>"))
