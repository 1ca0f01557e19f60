"""Tests of meetinglib.analysis.kpi_table: the KPI table without any presentation class."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from meetinglib.analysis import kpis
from meetinglib.analysis.kpi_table import (
    KPI_TABLE_COLUMNS,
    first_order,
    kpi_table,
    root_changes,
    segment_counts,
    segment_label,
    segment_orders,
    week_windows,
    with_roots,
    write_kpis_csv,
)
from meetinglib.analysis.kpis import MISSING
from meetinglib.cli import main
from meetinglib.core.i18n import t
from meetinglib.core.params import load_params
from meetinglib.core.weeks import IsoWeek
from meetinglib.data import engine
from meetinglib.data.dataset import SnapshotTables, WeekData, load_week
from meetinglib.data.validate import QualityReport
from tests import incidents as inc
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


def test_meeting_kpis_writes_the_csv_without_notebooks(tmp_path, sample, capsys, monkeypatch):
    params = write_params(tmp_path, sample.folder, notebooks_dir=str(tmp_path / "none"))
    out = tmp_path / "kpis"
    monkeypatch.chdir(tmp_path)  # a relative --out: the path printed is absolute
    assert main(["kpis", "--params", str(params), "--week", SAMPLE_WEEK, "--out", "kpis"]) == 0
    assert f"KPIs: {out / 'kpis.csv'}\n" in capsys.readouterr().out
    csv = pd.read_csv(out / "kpis.csv")
    data = load_week(load_params(params), SAMPLE_WEEK)
    table = kpi_table(data, "en").table
    assert len(csv) == len(table)
    assert list(csv.columns) == [*KPI_TABLE_COLUMNS, "finding", "driven_by"]
    assert not (tmp_path / "outputs").exists()


def test_meeting_kpis_speaks_and_writes_the_language_of_the_handouts(tmp_path, sample, capsys):
    """Without --lang, `meeting kpis` writes kpis.csv in the handouts' first language, as
    `meeting run` writes it beside them, and says so in that language."""
    params = write_params(
        tmp_path, sample.folder, notebooks_dir=str(tmp_path / "none"), languages="[zh-CN, en]"
    )
    out = tmp_path / "kpis"
    assert main(["kpis", "--params", str(params), "--week", SAMPLE_WEEK, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"KPI 文件：{out / 'kpis.csv'}\n" in printed
    assert f"{SAMPLE_WEEK}：" in printed and "KPI rows" not in printed
    csv = pd.read_csv(out / "kpis.csv")
    label = csv.loc[csv["kpi"] == "on_time_ship_rate", "label"].iloc[0]
    assert label == t("kpi.on_time_ship_rate", "zh-CN") != t("kpi.on_time_ship_rate", "en")


def test_the_table_of_a_snapshot_reads_no_table_into_pandas(tmp_path, sample):
    """What the data report's kernel does: the KPI table and its root search on the run's
    snapshot are computed by the engine from the Parquet files; asking which tables the
    source has must not read them (millions of rows at a million orders a week)."""
    data = load_week(load_params(write_params(tmp_path, sample.folder)), SAMPLE_WEEK)
    data.save(tmp_path / "snap")
    again = WeekData.load(tmp_path / "snap", data.params)
    assert isinstance(again.tables, SnapshotTables)
    assert "tickets" in again.tables and "nothing" not in again.tables
    result = kpi_table(again, "en")
    root_changes(again, result)
    assert again.tables._frames == {}
    assert result.row("orders_created")["this_week"] > 0


# --- aggregates of the engine against the rows (a second method) ---------------------------------


def test_first_order_and_segment_counts_agree_with_the_rows(tmp_path, sample):
    data = load_week(load_params(write_params(tmp_path, sample.folder)), SAMPLE_WEEK)
    orders = data.tables["orders"]
    assert first_order(data) == orders["created_at"].min()
    counts = segment_counts(data)
    assert counts["orders"].sum() == len(orders)
    # by the rows: orders per warehouse, and per carrier and region (empty values apart)
    for dimension, segment in [("warehouse", "WH-South"), ("carrier/region", "EastPost/South")]:
        columns, values = dimension.split("/"), segment.split("/")
        mask = np.ones(len(orders), dtype=bool)
        for column, value in zip(columns, values, strict=True):
            mask &= (orders[column].astype(object) == value).to_numpy(dtype=bool)
        inside = segment_orders(counts, (dimension, segment, "all"))
        assert counts.loc[inside, "orders"].sum() == mask.sum() > 0
    missing = segment_orders(counts, ("carrier", MISSING, "all"))
    assert counts.loc[missing, "orders"].sum() == orders["carrier"].isna().sum()


def test_a_segment_set_aside_from_the_tables_own_sums_equals_the_rows_left(tmp_path, sample):
    """weekly_kpis_without_on with the series' stored sums and only some cells computed,
    against weekly_kpis on frames from which the segment's orders were removed by hand."""
    data = load_week(load_params(write_params(tmp_path, sample.folder)), SAMPLE_WEEK)
    con = engine.shared(data.params.engine)
    tables = kpis.kpi_tables(data.engine_tables())
    windows, sla = week_windows(data), data.params.sla.ship_hours
    store: dict = {}
    kpis.weekly_kpis_on(con, tables, windows, sla, store=store)
    kept = len(store)
    assert kept > 5  # a grouping per pass, and the levels
    keys = ["handling_p90_h", "transit_median_h", "orders_created", "fill_rate", "backlog"]
    cells = [
        {
            "handling_p90_h": {("all", "all"), ("warehouse", "WH-North")},
            "transit_median_h": {("carrier/region", "SwiftExpress/South")},
            "orders_created": {("all", "all")},
            "fill_rate": {("warehouse", "WH-East")},
            "backlog": {("order_type", "special")},
        }
    ]
    segment = {"warehouse": "WH-South"}
    got = kpis.weekly_kpis_without_on(
        con, tables, windows, sla, keys, [segment], store=store, cells=cells
    )[0]
    assert len(store) == kept  # every sum came from the series' own grouping
    orders = data.tables["orders"]
    gone = set(orders.loc[orders["warehouse"].astype(object) == "WH-South", "order_id"])
    left = {name: frame[~frame["order_id"].isin(gone)] for name, frame in data.tables.items()}
    want = kpis.weekly_kpis(left, windows, sla, keys)
    index = ["kpi", "dimension", "segment", "order_type", "week"]
    got, want = got.set_index(index), want.set_index(index)
    checked = 0
    for kpi, wanted in cells[0].items():
        for dimension, value in wanted:
            if dimension == "order_type":
                rows = (kpi, "all", "all", value)
            else:
                rows = (kpi, dimension, value, "all")
            mine = got.loc[rows]
            theirs = want.loc[rows]
            np.testing.assert_array_equal(mine["n"], theirs["n"])
            np.testing.assert_allclose(mine["value"], theirs["value"], rtol=1e-9)
            checked += len(mine)
    assert checked == 6 * len(windows)


# --- root findings of "What changed" ------------------------------------------------------------


def _incident_week(tmp_path, incidents) -> WeekData:
    path = write_params(tmp_path, tmp_path)
    path.write_text(path.read_text().replace("history_weeks: 3", "history_weeks: 8"))
    params = load_params(path)
    orders = inc.orders(incidents, per_week=5000, seed=21, count=9)
    return WeekData(params, inc.REPORT_WEEK, {"orders": orders}, QualityReport(), [])


@pytest.fixture(scope="module")
def three_incidents(tmp_path_factory):
    """Special orders' handling x2, channel web cancelling 15 %, carrier C2 losing 6 %."""
    incidents = inc.Incidents(
        type_handling=("special", 2.0),
        channel_cancel=("web", 0.15),
        carrier_lost=("C2", 0.06),
    )
    data = _incident_week(tmp_path_factory.mktemp("three"), incidents)
    result = kpi_table(data, "en")
    return data, result, root_changes(data, result, "en")


LABELS = {
    "carrier": {"C2": {"zh-CN": "二号快递", "en": "Second Express"}},
    "channel": {"web": {"zh-CN": "网站", "en": "Website"}},
}


@pytest.mark.parametrize(
    ("lang", "carrier", "channel"),
    [
        ("zh-CN", "承运商 二号快递", "渠道 网站"),
        ("en", "Carrier Second Express", "Channel Website"),
    ],
)
def test_the_sentences_name_the_codes_as_the_params_do(
    three_incidents, tmp_path, lang, carrier, channel
):
    data, _, _ = three_incidents
    params = data.params.model_copy(update={"labels": LABELS})
    named = WeekData(params, data.week, data.tables, QualityReport(), [])
    result = kpi_table(named, lang)
    roots = root_changes(named, result, lang)
    # the codes stay the segments; the words name them
    assert {"C2", "web"} <= set(roots["segment"])
    assert {carrier, channel} <= set(roots["segment_label"])
    notes = " ".join(result.changes["note"])
    assert carrier in notes and channel in notes
    assert "C2" not in notes and " web" not in notes
    path = write_kpis_csv(with_roots(result.table, roots, lang), tmp_path)
    csv = pd.read_csv(path, keep_default_na=False)
    assert {"C2", "web"} <= set(csv["segment"])
    assert not set(csv["segment"]) & {"二号快递", "Second Express", "网站", "Website"}
    assert carrier in set(csv["driven_by"])
    assert not csv["driven_by"].str.contains("C2").any()


def test_segment_labels_name_a_carrier_region_cell():
    names = {("carrier", "C2"): "二号快递", ("region", "R1"): "一区"}

    def label(dimension: str, code: str, lang: str) -> str:
        return names.get((dimension, code), code)

    assert segment_label("carrier/region", "C2/R1", "all", "zh-CN", label) == "二号快递 → 一区"
    assert segment_label("carrier/region", "C2/R1", "all", "zh-CN") == "C2 → R1"
    assert segment_label("warehouse", "WH9", "all", "en", label) == "Warehouse WH9"
    assert segment_label("all", "all", "special", "en", label) == "Special orders"


def test_each_incident_leads_its_own_row(three_incidents):
    _, result, roots = three_incidents
    firsts = [(r.dimension, r.segment, r.order_type) for r in roots.head(3).itertuples()]
    assert set(firsts) == {
        ("all", "all", "special"),
        ("channel", "web", "all"),
        ("carrier", "C2", "all"),
    }, roots[["dimension", "segment", "order_type", "kpis"]].to_string()
    special = roots[roots["order_type"] == "special"].iloc[0]
    # the slowdown moved handling, the backlog and on-time shipping together, in that order
    moved = list(special["kpis"])
    assert "handling_median_h" in moved or "handling_p90_h" in moved
    assert "on_time_ship_rate" in moved
    handling = min(moved.index(k) for k in moved if k.startswith("handling"))
    assert handling < moved.index("on_time_ship_rate")
    # no warehouse is a root of its own: their flags vanish without the special orders
    assert "warehouse" not in set(roots["dimension"])
    assert len(result.changes) > len(roots)


def test_kpis_csv_says_which_root_drives_each_flag(three_incidents):
    _, result, roots = three_incidents
    table = with_roots(result.table, roots, "en")
    adverse = table[table["anomaly_adverse"]]
    assert (adverse["finding"] != "").all()
    assert (table.loc[~table["anomaly_adverse"], "finding"] == "").all()
    driven = adverse[adverse["driven_by"] != ""]
    assert len(driven)
    warehouses = driven[driven["dimension"] == "warehouse"]
    # the warehouses' handling flags come from the special orders, their abnormal-order
    # rate from the lost parcels
    assert "Special orders" in set(warehouses["driven_by"])
    assert set(warehouses["driven_by"]) <= {"Special orders", "Carrier C2"}
    own = adverse[adverse["driven_by"] == ""]
    pairs = set(zip(own["dimension"], own["segment"], own["order_type"], strict=True))
    assert pairs == {(r.dimension, r.segment, r.order_type) for r in roots.itertuples()}


# --- the same definitions on Spark ----------------------------------------------------------


@pytest.mark.spark
def test_kpis_csv_on_spark_equals_duckdb(tmp_path, sample, spark_engine):
    """kpis.csv of the sample week computed by a local Spark equals DuckDB's: counts and
    sums exactly, means, ratios and quantiles (linear interpolation on both) to 1e-9."""
    params = write_params(tmp_path, sample.folder, history_weeks="4")
    (tmp_path / "spark").mkdir()
    spark_params = write_params(
        tmp_path / "spark", sample.folder, history_weeks="4", engine="{kind: spark}"
    )
    duck = kpi_table(load_week(load_params(params), SAMPLE_WEEK), "en").table
    spark_data = load_week(load_params(spark_params), SAMPLE_WEEK)
    assert engine.shared(spark_data.params.engine).name == "pyspark"
    spark = kpi_table(spark_data, "en").table
    assert len(duck) > 100
    keys = ["kpi", "dimension", "segment", "order_type"]
    duck, spark = duck.sort_values(keys).reset_index(drop=True), spark.sort_values(keys)
    spark = spark.reset_index(drop=True)
    pd.testing.assert_frame_equal(duck[keys], spark[keys])
    numbers = [c for c in duck.columns if pd.api.types.is_float_dtype(duck[c])]
    assert {"this_week", "last_week", "n_this_week"} <= set(numbers)
    for column in numbers:
        np.testing.assert_allclose(
            spark[column].to_numpy(float),
            duck[column].to_numpy(float),
            rtol=1e-9,
            atol=0,
            err_msg=column,
        )
    others = [c for c in duck.columns if c not in numbers]
    pd.testing.assert_frame_equal(duck[others], spark[others])


def test_kpis_csv_writes_figures_without_binary_noise(tmp_path):
    table = pd.DataFrame({"kpi": ["pending_amount", "orders_created"],
                          "this_week": [154189.77000000002, 1034011.0],
                          "change": [0.1 + 0.2, -3.5]})  # fmt: skip
    text = write_kpis_csv(table, tmp_path).read_text(encoding="utf-8-sig")
    assert "154189.77," in text and "154189.77000000002" not in text
    assert ",0.3\n" in text and "1034011," in text and ",-3.5" in text
    back = pd.read_csv(tmp_path / "kpis.csv", encoding="utf-8-sig")
    assert back["this_week"].tolist() == pytest.approx(table["this_week"].tolist(), rel=1e-14)
