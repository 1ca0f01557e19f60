"""Tests of meetinglib.data.engine: the backends the library's expressions run on."""

from __future__ import annotations

from meetinglib.data.engine import connect


def test_duckdb_draws_no_progress_bar():
    # in a notebook the bar is a widget with a script, which the handouts' policy refuses
    con = connect()
    setting = con.con.sql("SELECT current_setting('enable_progress_bar')").fetchall()
    assert setting == [(False,)]
