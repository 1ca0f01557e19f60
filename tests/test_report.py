"""The data report's pieces on the sample: findings name the injected incidents."""

from __future__ import annotations

import pandas as pd
import pytest
from IPython.display import HTML, Image

from meetinglib import kpis
from meetinglib.dataset import load_week
from meetinglib.params import load_params
from meetinglib.report import DataReport, fmt_change, fmt_value

from .conftest import SAMPLE_WEEK, write_params


def _report(tmp_path, sample, lang="en") -> DataReport:
    params = load_params(write_params(tmp_path, sample.folder))
    return DataReport(load_week(params, SAMPLE_WEEK), lang)


@pytest.fixture
def report(tmp_path, sample):
    return _report(tmp_path, sample)


def _late_share(orders, window, carrier, region):
    """Late share of one cell, computed directly from the columns (a second method)."""
    o = orders[(orders["carrier"] == carrier) & (orders["region"] == region)]
    judged = o[
        (o["delivered_at"] >= window.start)
        & (o["delivered_at"] < window.end)
        & o["promised_delivery_by"].notna()
    ]
    return (judged["delivered_at"] > judged["promised_delivery_by"]).mean()


def test_late_delivery_finding_names_the_carrier_incident(report):
    finding = report.late_delivery_finding()
    assert finding is not None
    carrier, region, rate, last = finding
    assert (carrier, region) == ("EastPost", "South")
    orders, data = report.orders, report.data
    assert rate == pytest.approx(_late_share(orders, data.window, carrier, region))
    assert last == pytest.approx(_late_share(orders, data.previous_window, carrier, region))
    assert rate > last + 0.2


def test_overdue_backlog_concentrates_in_the_stockout_warehouse(report):
    end = report.data.window.end
    o = report.orders
    # Independent count: paid before the week end, not shipped or cancelled before it,
    # and past its ship deadline (the promise, else paid + SLA).
    deadline = o["promised_ship_by"].fillna(o["paid_at"] + pd.Timedelta(hours=48))
    open_ = (
        (o["paid_at"] < end)
        & ~(o["shipped_at"] < end)
        & ~(o["cancelled_at"] < end)
        & (deadline < end)
    )
    by_wh = o[open_].groupby("warehouse", observed=True).size()
    assert by_wh.idxmax() == "WH-South"
    assert by_wh["WH-South"] > 3 * by_wh.drop("WH-South").max()
    table = kpis.backlog_by(o, end, 48, "warehouse")
    assert table.loc["WH-South", "overdue"] == by_wh["WH-South"]


def test_no_late_delivery_finding_without_incidents(tmp_path, quiet_sample):
    assert _report(tmp_path, quiet_sample).late_delivery_finding() is None


def test_every_piece_renders(report):
    assert "Weekly order-processing report" in report.title().data
    for piece in (
        report.headline_table(),
        report.stage_table(),
        report.quality_note(),
        report.quality_table(),
    ):
        assert isinstance(piece, HTML) and "<table" in piece.data or "<p" in piece.data
    for chart in (
        report.volume_chart(),
        report.stage_chart(),
        report.backlog_chart(),
        report.delivery_heatmap(),
        report.pareto_chart(),
    ):
        assert isinstance(chart, Image) and chart.data[:4] == b"\x89PNG"


def test_headline_table_in_chinese(tmp_path, sample):
    html = _report(tmp_path, sample, "zh-CN").headline_table().data
    assert "准时发货率" in html and "本周" in html


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (0.1234, "share", "12.3%"),
        (41.25, "hours", "41.2 h"),
        (1234567, "currency", "CNY 1,234,567"),
        (float("nan"), "orders", "–"),
        (20000, "orders", "20,000"),
    ],
)
def test_fmt_value(value, unit, text):
    assert fmt_value(value, unit) == text


def test_fmt_change():
    assert fmt_change(0.95, 0.90, "share") == "+5.0 pp"
    assert fmt_change(110, 100, "orders") == "+10 (+10.0%)"
    assert fmt_change(5, 0, "orders") == "+5"
    assert fmt_change(float("nan"), 1, "hours") == "–"
