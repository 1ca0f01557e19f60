"""The data report on the sample: what changed names the injected incidents, and only them."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from IPython.display import HTML, Image

from meetinglib.analysis import anomalies, kpis
from meetinglib.analysis.kpi_table import complete_history_start, created_from
from meetinglib.core.errors import InvalidParamError
from meetinglib.core.fmt import fmt_change, fmt_value
from meetinglib.core.i18n import LABELS
from meetinglib.core.params import load_params
from meetinglib.core.weeks import IsoWeek
from meetinglib.data.dataset import WeekData, load_week
from meetinglib.report.data_report import (
    REPORT_WARNINGS,
    SECTION_TITLE_KEYS,
    SECTIONS,
    DataReport,
)
from tests import kpi_reference as ref
from tests.conftest import SAMPLE_WEEK, cut_week, write_params

TARGETS = {
    "on_time_ship_rate": {"target": 0.95, "at_risk": 0.92},
    "abnormal_rate": {"target": 0.03, "at_risk": 0.04},
    "gmv": 100.0,
}
TABLES = (
    "headline_table",
    "headline_note",
    "headline_by_order_type",
    "cancellation_table",
    "stage_table",
    "on_time_ship_table",
    "backlog_table",
    "abnormal_by_type_table",
    "abnormal_examples_table",
    "carrier_table",
    "stockout_table",
    "service_table",
    "after_sales_table",
    "finance_table",
    "changes_list",
    "quality_note",
    "quality_table",
    "definitions_table",
    "rules_note",
)


def _report(folder, sample, lang="en", **overrides) -> DataReport:
    params = load_params(write_params(folder, sample.folder), overrides=overrides or None)
    return DataReport(load_week(params, SAMPLE_WEEK), lang)


@pytest.fixture
def report(tmp_path, sample):
    return _report(tmp_path, sample)


@pytest.fixture(scope="module")
def long_report(tmp_path_factory, long_sample):
    folder = tmp_path_factory.mktemp("long_report")
    return _report(folder, long_sample, history_weeks=12, targets=TARGETS)


@pytest.fixture(scope="module")
def quiet_report(tmp_path_factory, long_quiet_sample):
    folder = tmp_path_factory.mktemp("quiet_report")
    return _report(folder, long_quiet_sample, history_weeks=12)


def _flagged(report: DataReport) -> set[tuple[str, str, str]]:
    changes = report.changes
    return set(zip(changes["kpi"], changes["dimension"], changes["segment"], strict=True))


# --- what changed ----------------------------------------------------------------------------


def test_what_changed_names_both_incidents(long_report):
    flagged = _flagged(long_report)
    segments = {segment for _, _, segment in flagged}
    # EastPost parcels to South arrive late; WH-South runs out of stock
    assert "EastPost/South" in segments
    assert "WH-South" in segments
    assert ("on_time_delivery_rate", "carrier/region", "EastPost/South") in flagged
    assert ("overdue_backlog", "warehouse", "WH-South") in flagged
    assert ("stockout_orders", "warehouse", "WH-South") in flagged
    text = long_report.changes_list().data
    assert "EastPost → South: " in text
    assert "Warehouse WH-South: " in text
    # one row per root finding: the two incidents lead, every other flag is driven by them
    roots = long_report.roots
    firsts = {(r.dimension, r.segment) for r in roots.head(2).itertuples(index=False)}
    assert firsts == {("warehouse", "WH-South"), ("carrier/region", "EastPost/South")}
    wh = roots[roots["segment"] == "WH-South"].iloc[0]
    assert {"overdue_backlog", "stockout_orders"} <= set(wh["kpis"])
    assert text.count("<tr>") - 1 == len(roots)
    # most severe first; only changes for the worse
    severity = long_report.changes["anomaly_severity"].map(anomalies.SEVERITIES.index)
    assert severity.is_monotonic_increasing and severity.iloc[0] == 0
    assert long_report.changes["anomaly_adverse"].all()


def test_what_changed_sentence_matches_the_numbers(long_report):
    row = long_report.changes.set_index(["kpi", "dimension", "segment"]).loc[
        ("on_time_delivery_rate", "carrier/region", "EastPost/South")
    ]
    o, window = long_report.data.tables["orders"], long_report.data.window
    cell = o[(o["carrier"] == "EastPost") & (o["region"] == "South")]
    judged = cell[window.contains(cell["delivered_at"]) & cell["promised_delivery_by"].notna()]
    on_time = (judged["delivered_at"] <= judged["promised_delivery_by"]).mean()
    assert row["this_week"] == pytest.approx(on_time)
    assert f"fell to {on_time:.1%}" in row["note"]


def test_a_sample_without_incidents_flags_nothing(quiet_report):
    assert quiet_report.changes.empty
    text = quiet_report.changes_list().data
    assert "No KPI changed for the worse beyond its usual range" in text


def test_too_little_history_is_said_not_hidden(report):
    # the 4-week sample: only one week before the report week has complete deliveries
    assert report.changes.empty
    assert "Too little history for the control-chart rules" in report.changes_list().data


def test_the_first_weeks_of_the_extract_stay_out_of_the_baseline(long_report):
    # the sample starts in W38: deliveries are complete from W40, orders from W38
    assert complete_history_start(long_report.data) == IsoWeek(2026, 40).start("Asia/Shanghai")
    assert created_from(long_report.data) == IsoWeek(2026, 38).start("Asia/Shanghai")
    values = long_report._wide[0]
    delivery = values.loc[("on_time_delivery_rate", "all", "all", "all")]
    assert delivery[:"2026-W39"].isna().all() and delivery["2026-W40":].notna().all()
    created = values.loc[("orders_created", "all", "all", "all")]
    assert created[:"2026-W37"].isna().all() and created["2026-W38":].notna().all()


def test_the_promotion_week_does_not_move_the_baseline(quiet_report):
    created = quiet_report._wide[0].loc[("orders_created", "all", "all", "all")].dropna()
    history = created.iloc[:-1]
    assert history.idxmax() == "2026-W42"  # the sample's promotion, 5 weeks before the end
    assert history.max() > 1.5 * history.median()
    # the rules' center is the median of the history: the promotion week leaves it near a
    # usual week (within 6% of the median of the other weeks), unlike a mean
    others = history.drop("2026-W42").median()
    baseline = anomalies.robust_baseline(history)
    assert baseline.center == pytest.approx(others, rel=0.06)
    assert history.mean() > baseline.center * 1.05
    # so a usual week is not read as a drop against the promotion
    table = quiet_report.kpi_table.set_index(["kpi", "dimension", "segment", "order_type"])
    assert not table.loc[("orders_created", "all", "all", "all"), "anomaly_adverse"]
    assert not table["anomaly_adverse"].any()


# --- kpis.csv and the headline come from one table --------------------------------------------


def test_export_writes_kpis_csv(long_report, tmp_path):
    long_report.export(tmp_path)
    csv = pd.read_csv(tmp_path / "kpis.csv", keep_default_na=False, na_values=[""])
    for column in (
        "kpi",
        "dimension",
        "segment",
        "order_type",
        "this_week",
        "last_week",
        "target",
        "unit",
        "anomaly",
    ):
        assert column in csv.columns, column
    assert len(csv) == len(long_report.kpi_table)
    assert set(csv["week"]) == {SAMPLE_WEEK}
    rows = csv.set_index(["kpi", "dimension", "segment", "order_type"])
    # independent counts from the orders frame
    o, window = long_report.data.tables["orders"], long_report.data.window
    created = window.contains(o["created_at"])
    assert rows.loc[("orders_created", "all", "all", "all"), "this_week"] == created.sum()
    special = created & (o["order_type"] == "special")
    assert rows.loc[("orders_created", "all", "all", "special"), "this_week"] == special.sum()
    south = o[o["warehouse"] == "WH-South"]
    shipped = window.contains(south["shipped_at"])
    deadline = south["promised_ship_by"].fillna(south["paid_at"] + pd.Timedelta(hours=48))
    on_time = (south["shipped_at"] <= deadline)[shipped & deadline.notna()].mean()
    assert rows.loc[("on_time_ship_rate", "warehouse", "WH-South", "all"), "this_week"] == (
        pytest.approx(on_time)
    )
    # targets and status from the params; units as in the catalogue
    target = rows.loc[("on_time_ship_rate", "all", "all", "all")]
    assert (target["target"], target["unit"]) == (0.95, "share")
    expected = "on_target" if target["this_week"] >= 0.95 else None
    expected = expected or ("at_risk" if target["this_week"] >= 0.92 else "off_target")
    assert target["status"] == expected
    assert rows.loc[("abnormal_rate", "all", "all", "all"), "status"] == "off_target"
    assert np.isnan(rows.loc[("gmv", "all", "all", "normal"), "target"])  # only all orders
    flagged = rows.loc[("on_time_delivery_rate", "carrier/region", "EastPost/South", "all")]
    assert flagged["anomaly"] == "beyond_limits" and flagged["anomaly_adverse"]


def test_export_without_a_folder_writes_nothing(long_report, tmp_path):
    assert long_report.export(None) is None
    assert not list(tmp_path.iterdir())


def test_headline_shows_the_kpi_table(long_report):
    page = long_report.headline_table().data
    table = long_report.kpi_table
    headline = table[(table["dimension"] == "all") & (table["order_type"] == "all")]
    for key in kpis.HEADLINE:
        row = headline[headline["kpi"] == key].iloc[0]
        assert LABELS[f"kpi.{key}"][0] in page
        assert fmt_value(row["this_week"], row["unit"], "CNY") in page
    sparklines = re.findall(r'<img src="data:image/png;base64,[^"]+" alt="([^"]+)"', page)
    assert len(sparklines) == len(kpis.HEADLINE)
    # 10 weeks of sample data: the trend draws those 10 (a longer history would draw 12)
    assert sparklines[0].startswith("Orders created: 10-week trend from ")
    # status as a symbol and a word, not colour alone
    text = re.sub(r"<[^>]+>", "", page).replace("&nbsp;", " ")
    assert "✖ Off target" in text  # abnormal rate: stockouts
    # the status word never breaks inside (CJK would break between any two characters)
    assert '<span class="ml-word">Off target</span>' in page
    assert "≥ 95.0%" in page


def test_a_kpi_given_a_target_is_judged_with_the_headline(tmp_path, sample):
    """Targets for KPIs outside the headline (a company's cancellation and on-time
    delivery goals) appear with their status on page one and in the headline table."""
    report = _report(
        tmp_path,
        sample,
        targets={"cancellation_rate": 0.05, "on_time_delivery_rate": {"target": 0.99}},
    )
    assert report.headline[: len(kpis.HEADLINE)] == kpis.HEADLINE
    assert report.headline[len(kpis.HEADLINE) :] == ("cancellation_rate", "on_time_delivery_rate")
    for page in (report.headline_table().data, str(report.summary_table())):
        text = re.sub(r"<[^>]+>", " ", page)
        for key, target in (("cancellation_rate", "≤ 5.0%"), ("on_time_delivery_rate", "≥ 99.0%")):
            assert LABELS[f"kpi.{key}"][0] in text
            assert target in text
    assert "Cancellation rate" in report.headline_by_order_type().data


def test_the_trend_spans_the_weeks_the_data_has(report, sample):
    """A 4-week sample: the trend column says 4 weeks (counted from the orders' own
    weeks), not the 12 a longer history would draw."""
    orders = pd.read_parquet(sample.folder / "orders.parquet", columns=["created_at"])
    local = orders["created_at"].dt.tz_convert("Asia/Shanghai")
    weeks = {w for d in local if (w := tuple(d.isocalendar())[:2]) <= (2026, 47)}
    assert len(weeks) == 4
    page = report.headline_table().data
    assert "4-week trend" in page and "12-week trend" not in page
    alts = re.findall(r'alt="([^"]+)"', page)
    assert alts and all(": 4-week trend from " in a for a in alts)


def test_unknown_target_is_an_error_naming_the_key(tmp_path, sample):
    with pytest.raises(InvalidParamError, match=r"'targets.otsr'.*no KPI named 'otsr'"):
        _report(tmp_path, sample, targets={"otsr": 0.9})


# --- every piece renders --------------------------------------------------------------------


def test_every_table_renders(long_report):
    # every chart runs in the notebook of tests/test_runner.py; the tables are checked here
    assert "Weekly order-processing report" in long_report.title().data
    for name in TABLES:
        piece = getattr(long_report, name)()
        assert isinstance(piece, HTML) and ("<table" in piece.data or "<p" in piece.data), name
    for key in SECTIONS:
        heading = long_report.section(key)
        assert isinstance(heading, HTML) and f'<h2 id="{key}">' in heading.data
        assert SECTION_TITLE_KEYS.get(key, f"report.{key}") in LABELS


def test_an_order_type_the_schema_does_not_know_is_shown_as_unmapped(tmp_path, sample):
    """An unknown order type is kept as ``unmapped`` (validation's rule): every table and
    chart reading order types names it, in both languages, rather than failing."""
    folder = tmp_path / "data"
    shutil.copytree(sample.folder, folder)
    path = folder / "orders.parquet"
    orders = pq.read_table(path).to_pandas()
    orders["order_type"] = orders["order_type"].astype(str)
    orders.loc[orders.index[::50], "order_type"] = "vip"  # 2 %: kept, flagged
    pq.write_table(pa.Table.from_pandas(orders, preserve_index=False), path)
    params = load_params(write_params(tmp_path, folder))
    data = load_week(params, SAMPLE_WEEK)
    for lang, name in (("en", "Other (unmapped type)"), ("zh-CN", "其他（未映射的类型）")):
        report = DataReport(data, lang)
        assert name in report.stage_table("order_type").data
        for table in TABLES:
            assert isinstance(getattr(report, table)(), HTML), table
        for chart in ("volume_chart", "stage_chart"):
            getattr(report, chart)()


def test_chart_titles_state_the_findings(long_report):
    charts = {
        name: getattr(long_report, name)()
        for name in ("backlog_chart", "delivery_heatmap", "abnormal_trend_chart")
    }
    for name, chart in charts.items():
        assert isinstance(chart, Image) and chart.data[:4] == b"\x89PNG", name
    assert charts["backlog_chart"].metadata["alt"].startswith("WH-South holds ")
    assert charts["delivery_heatmap"].metadata["alt"].startswith("EastPost → South: ")
    o, window = long_report.data.tables["orders"], long_report.data.window
    abnormal = (window.contains(o["created_at"]) & o["exception_code"].notna()).sum()
    assert (
        charts["abnormal_trend_chart"]
        .metadata["alt"]
        .startswith(f"{abnormal:,} abnormal orders this week")
    )


def test_pieces_in_chinese(long_report):
    report = DataReport(long_report.data, "zh-CN")
    assert "准时发货率" in report.headline_table().data
    changes = report.changes_list().data
    assert "EastPost → South：准时签收率降至" in changes
    assert "仓库 WH-South" in changes
    assert "公式" in report.definitions_table().data
    assert "On-time" not in report.service_table().data


NAMES = {
    "carrier": {"EastPost": {"zh-CN": "东方邮政", "en": "East Post Co"}},
    "region": {"South": {"zh-CN": "华南", "en": "Southern China"}},
    "warehouse": {"WH-South": {"zh-CN": "华南仓", "en": "South DC"}},
}


@pytest.mark.parametrize(
    ("lang", "carrier", "region", "warehouse"),
    [("zh-CN", "东方邮政", "华南", "华南仓"), ("en", "East Post Co", "Southern China", "South DC")],
)
def test_the_report_names_the_codes_as_the_params_do(
    long_report, tmp_path, lang, carrier, region, warehouse
):
    data = long_report.data
    params = data.params.model_copy(update={"labels": NAMES})
    report = DataReport(WeekData(params, data.week, data.tables, data.quality, data.sources), lang)
    changes = report.changes_list().data
    assert f"{carrier} → {region}" in changes and warehouse in changes
    assert "EastPost" not in changes and "WH-South" not in changes
    assert carrier in report.carrier_table().data
    assert warehouse in report.on_time_ship_table().data
    assert warehouse in report.stage_table("warehouse").data
    assert warehouse in report.stockout_table().data
    assert warehouse in report.backlog_chart().metadata["alt"]
    assert f"{carrier} → {region}" in report.delivery_heatmap().metadata["alt"]
    # kpis.csv keeps the codes in its segment column; the sentences use the names
    report.export(tmp_path)
    csv = pd.read_csv(tmp_path / "kpis.csv", keep_default_na=False)
    assert {"EastPost/South", "WH-South"} <= set(csv["segment"])
    assert not csv["segment"].str.contains(carrier).any()
    notes = " ".join(csv["note"])
    assert f"{carrier} → {region}" in notes and "EastPost" not in notes


def _shown(piece: object) -> str:
    """The text a piece of the report displays (HTML's markup; "" for an image)."""
    return getattr(piece, "data", "") if isinstance(piece, HTML) else ""


def test_pieces_without_optional_tables(report):
    data = report.data
    data = WeekData(
        data.params, data.week, {"orders": data.tables["orders"]}, data.quality, data.sources
    )
    bare = DataReport(data, "en")
    assert "no tickets table" in bare.service_table().data
    assert "no after_sales table" in bare.after_sales_table().data
    # The chart after each table says nothing more: the note stands once in the handout.
    assert "no tickets table" not in _shown(bare.ticket_category_chart())
    assert "no after_sales table" not in _shown(bare.reasons_chart())
    assert "Fill rate needs the order_lines table" in bare.stockout_table().data
    assert isinstance(bare.headline_table(), HTML)


# --- findings on the 4-week sample ------------------------------------------------------------


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
    orders, data = report.data.tables["orders"], report.data
    assert rate == pytest.approx(_late_share(orders, data.window, carrier, region))
    assert last == pytest.approx(_late_share(orders, data.previous_window, carrier, region))
    assert rate > last + 0.2


def test_overdue_backlog_concentrates_in_the_stockout_warehouse(report):
    end = report.data.window.end
    o = report.data.tables["orders"]
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
    table = ref.backlog_by(o, end, 48, "warehouse")
    assert table.loc["WH-South", "overdue"] == by_wh["WH-South"]


def test_no_late_delivery_finding_without_incidents(tmp_path, quiet_sample):
    assert _report(tmp_path, quiet_sample).late_delivery_finding() is None


# --- formatting ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (0.1234, "share", "12.3%"),
        (41.25, "hours", "41.2 h"),
        (3.25, "days", "3.2 d"),
        (34.48, "per_1000", "34.5 ‰"),
        (3.6412, "score", "3.64"),
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
    assert fmt_change(34.5, 20.5, "per_1000") == "+14.0 ‰"
    assert fmt_change(3.5, 3.75, "score") == "-0.25"
    assert fmt_change(4.0, 5.0, "days") == "-1.0 d (-20.0%)"


def test_a_week_whose_data_ends_early_says_so_on_page_one(tmp_path, long_quiet_sample):
    """The report week asked for holds the orders of its first six hours only: page one
    says the week is incomplete, with the counts worked out from the file here."""
    tz = "Asia/Shanghai"
    folder = tmp_path / "cut"
    orders = cut_week(long_quiet_sample.folder, folder, SAMPLE_WEEK, hours=6, tz=tz)
    params = load_params(write_params(tmp_path, folder, history_weeks=8))
    report = DataReport(load_week(params, SAMPLE_WEEK), "en")

    weeks = orders["created_at"].dt.tz_convert(tz).map(lambda t: str(IsoWeek.containing(t)))
    per_week = weeks.value_counts().sort_index()
    this = int(per_week[SAMPLE_WEEK])
    before = per_week[per_week.index < SAMPLE_WEEK].tail(params.quality.complete_week_history)
    median = float(np.median(before))
    assert this < params.quality.complete_week_share * median  # the case made here
    assert report.short_week() == (this, round(median))
    warning = report.quality_warning()
    assert warning.startswith(f"Incomplete week: {this:,} orders were created this week, ")
    assert f"({round(median):,})" in warning
    assert "Incomplete week" in str(report.headline_note().data)
    assert "本周数据不完整" in DataReport(report.data, "zh-CN").quality_warning()
    # written beside kpis.csv for the run to pass on, one text per warning
    report.export(tmp_path / "out")
    written = json.loads((tmp_path / "out" / REPORT_WARNINGS).read_text(encoding="utf-8"))
    assert written == [warning]


def test_amounts_missing_from_the_week_are_a_warning_on_page_one(tmp_path, long_quiet_sample):
    """Every other order of the report week loses its amount (an export's "N/A" is read
    as empty): page one says how many, counted here from the file, and that GMV reads
    low."""
    import shutil

    tz = "Asia/Shanghai"
    folder = tmp_path / "no-amounts"
    shutil.copytree(long_quiet_sample.folder, folder)
    orders = pd.read_parquet(folder / "orders.parquet")
    week = IsoWeek.parse(SAMPLE_WEEK)
    inside = (orders["created_at"] >= week.start(tz)) & (orders["created_at"] < week.end(tz))
    emptied = orders.index[inside][::2]
    orders.loc[emptied, "amount"] = np.nan
    orders.to_parquet(folder / "orders.parquet", index=False)
    params = load_params(write_params(tmp_path, folder, history_weeks=8))
    report = DataReport(load_week(params, SAMPLE_WEEK), "en")

    missing, created = int(orders.loc[inside, "amount"].isna().sum()), int(inside.sum())
    assert missing >= len(emptied) > 0
    assert report.empty_amounts() == (missing, created)
    warning = report.quality_warning()
    assert f"Amounts missing: {missing:,} of the {created:,} orders created this week" in warning
    assert "GMV counts them as 0" in warning
    assert "金额缺失" in DataReport(report.data, "zh-CN").quality_warning()


def test_a_complete_week_exports_no_warning(quiet_report, tmp_path):
    quiet_report.export(tmp_path)
    assert json.loads((tmp_path / REPORT_WARNINGS).read_text(encoding="utf-8")) == []


def test_a_complete_week_has_no_incomplete_week_warning(quiet_report):
    assert quiet_report.short_week() is None
    assert quiet_report.empty_amounts() is None
    assert "Incomplete week" not in quiet_report.quality_warning()


def test_kpis_of_a_table_the_source_lacks_read_not_available(tmp_path, quiet_sample):
    """No tickets and no after-sales table: complaint rate and refund rate stay in the
    headline and in kpis.csv, not available and why, instead of disappearing."""
    import shutil

    folder = tmp_path / "orders-only"
    shutil.copytree(quiet_sample.folder, folder)
    for table in ("tickets", "after_sales"):
        (folder / f"{table}.parquet").unlink()
    params = load_params(write_params(tmp_path, folder))
    report = DataReport(load_week(params, SAMPLE_WEEK), "en")
    for kpi, table in (("complaint_rate", "tickets"), ("refund_rate", "after_sales")):
        row = report.kpi_result.row(kpi)
        assert (row["status"], row["note"]) == (
            "not_available",
            f"not available — the source has no {table}",
        )
    page = report.headline_table().data
    assert "not available — the source has no tickets" in page
    assert "not available — the source has no after_sales" in page


def test_tables_of_kpis_the_source_cannot_support_say_not_available(tmp_path, quiet_sample):
    """Without paid_at the handling times and the backlog cannot be computed: their
    tables say "Not available" with the reason, as the headline does, not "–" (which
    reads as "no orders")."""
    import shutil

    folder = tmp_path / "no-paid"
    shutil.copytree(quiet_sample.folder, folder)
    orders = pd.read_parquet(folder / "orders.parquet").drop(columns=["paid_at"])
    orders.to_parquet(folder / "orders.parquet", index=False)
    params = load_params(write_params(tmp_path, folder))
    report = DataReport(load_week(params, SAMPLE_WEEK), "en")
    for kpi in ("handling_median_h", "backlog", "overdue_backlog"):
        assert report.kpi_result.row(kpi)["note"] == "not available — the source has no paid_at"

    def cells(table: HTML) -> list[list[str]]:
        """The body cells of every table, row by row (header rows left out)."""
        found = re.findall(r"<tr>(.*?)</tr>", str(table.data), flags=re.S)
        rows = [re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S) for row in found]
        return [row for row in rows if row]

    for table, columns in (
        (report.on_time_ship_table(), slice(3, 7)),  # handling median and P90, 2 columns each
        (report.backlog_table(), slice(1, 5)),  # backlog and overdue, 2 columns each
    ):
        body = cells(table)
        assert len(body) >= 5, str(table.data)  # all orders and three order types, at least
        assert {c.strip() for row in body for c in row[columns]} == {"Not available"}
        assert "–" not in {c.strip() for row in body for c in row[columns]}
        assert "not available — the source has no paid_at" in str(table.data)
    # the rate that has its own promise column stays computed
    ship = cells(report.on_time_ship_table())
    assert any("%" in c for row in ship for c in row[1:3])


def test_kpis_needing_an_optional_column_of_another_table_read_not_available(
    tmp_path, quiet_sample
):
    """An export of tickets without CSAT, after-sales without refund amounts or closing
    times, settlements without their time, order lines without shipped quantities: the
    KPIs built on those columns say what is missing instead of reading 0 (a refund rate of
    0 % reads as "no refunds"); the KPIs the tables still support stay computed."""
    folder = tmp_path / "thin-tables"
    shutil.copytree(quiet_sample.folder, folder)
    dropped = {
        "tickets": ["csat", "first_response_at"],
        "after_sales": ["refund_amount", "closed_at"],
        "settlements": ["settled_at"],
        "order_lines": ["qty_shipped"],
    }
    for table, columns in dropped.items():
        path = folder / f"{table}.parquet"
        pd.read_parquet(path).drop(columns=columns).to_parquet(path, index=False)
    params = load_params(write_params(tmp_path, folder))
    report = DataReport(load_week(params, SAMPLE_WEEK), "en")
    expected = {
        "csat": "tickets.csat",
        "first_response_median_h": "tickets.first_response_at",
        "refund_rate": "after_sales.refund_amount",
        "refund_amount": "after_sales.refund_amount",
        "net_revenue": "after_sales.refund_amount",
        "case_cycle_median_d": "after_sales.closed_at",
        "settled_amount": "settlements.settled_at",
        "settlement_lag_p90_d": "settlements.settled_at",
        "fill_rate": "order_lines.qty_shipped",
    }
    for kpi, column in expected.items():
        row = report.kpi_result.row(kpi)
        assert (row["status"], row["note"]) == (
            "not_available",
            f"not available — the source has no {column}",
        ), kpi
    for kpi in ("return_rate", "resolution_median_h", "tickets_per_1000", "pending_amount"):
        row = report.kpi_result.row(kpi)
        assert row["status"] != "not_available" and np.isfinite(row["this_week"]), kpi
    service, finance = str(report.service_table().data), str(report.finance_table().data)
    assert "not available — the source has no tickets.csat" in service
    assert "not available — the source has no after_sales.refund_amount" in finance
    assert "not available — the source has no settlements.settled_at" in finance
    # every settled row lacks a time because the column is absent: no contradiction to name
    assert "have no settlement time" not in finance
