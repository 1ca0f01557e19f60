"""Tests of meetinglib.analysis.kpi_table: the KPI table without any presentation class."""

from __future__ import annotations

import pandas as pd

from meetinglib.analysis.kpi_table import KPI_TABLE_COLUMNS, kpi_table
from meetinglib.cli import main
from meetinglib.core.params import load_params
from meetinglib.core.weeks import IsoWeek
from meetinglib.data.dataset import load_week
from tests.conftest import SAMPLE_WEEK, write_params


def test_the_table_counts_the_week_by_hand(tmp_path, sample):
    data = load_week(load_params(write_params(tmp_path, sample.folder)), SAMPLE_WEEK)
    result = kpi_table(data, "en")
    assert tuple(result.table.columns) == KPI_TABLE_COLUMNS
    # by hand, from the sample's own file: orders created in the report week
    raw = pd.read_parquet(sample.folder / "orders.parquet", columns=["created_at"])
    created = pd.to_datetime(raw["created_at"], utc=True).dt.tz_convert("Asia/Shanghai")
    window = IsoWeek.parse(SAMPLE_WEEK).window("Asia/Shanghai")
    expected = int(((created >= window.start) & (created < window.end)).sum())
    assert result.row("orders_created")["this_week"] == expected
    assert result.weekly("orders_created").iloc[-1] == expected


def test_meeting_kpis_writes_the_csv_without_notebooks(tmp_path, sample, capsys):
    params = write_params(tmp_path, sample.folder, notebooks_dir=str(tmp_path / "none"))
    out = tmp_path / "kpis"
    assert main(["kpis", "--params", str(params), "--week", SAMPLE_WEEK, "--out", str(out)]) == 0
    assert f"KPIs: {out / 'kpis.csv'}" in capsys.readouterr().out
    csv = pd.read_csv(out / "kpis.csv")
    data = load_week(load_params(params), SAMPLE_WEEK)
    table = kpi_table(data, "en").table
    assert len(csv) == len(table)
    assert list(csv.columns) == list(KPI_TABLE_COLUMNS)
    assert not (tmp_path / "outputs").exists()
