"""The data report's "Next week" section on the sample and on hand-made cases."""

from __future__ import annotations

import dataclasses
import html
import math

import numpy as np
import pandas as pd
import pytest
from IPython.display import HTML, Image
from markupsafe import escape

from meetinglib.analysis import plan as P
from meetinglib.core.errors import SectionError
from meetinglib.core.params import load_params
from meetinglib.data.dataset import WeekData, load_week
from meetinglib.data.validate import QualityReport
from meetinglib.report.plan_section import PLAN_FILE, PlanSection
from tests.conftest import ROOT, SAMPLE_WEEK, write_params
from tests.test_plan import PLAN, REPORT, UNLISTED_PROMOTION, _params, synthetic_orders

TZ = "Asia/Shanghai"
RED = '<span class="ml-status-off" style="color:#cf222e;font-weight:bold">'
DAYS_EN = ["Mon 11-23", "Tue 11-24", "Wed 11-25", "Thu 11-26", "Fri 11-27", "Sat 11-28"]
PIECES = (
    "summary",
    "forecast_chart",
    "forecast_table",
    "accuracy",
    "staffing_table",
    "agents_table",
    "carrier_table",
    "special_table",
    "special_list",
)


def _params_files(folder, sample):
    """demo.yaml (with its plan block) under the test's source and outputs."""
    return ROOT / "params" / "demo.yaml", write_params(folder, sample.folder)


@pytest.fixture(scope="module")
def week_data(tmp_path_factory, sample) -> WeekData:
    params = load_params(*_params_files(tmp_path_factory.mktemp("plan_section"), sample))
    return load_week(params, SAMPLE_WEEK)


@pytest.fixture(scope="module")
def sections(week_data) -> dict[str, PlanSection]:
    """The section on the sample per language, computed once for the module."""
    return {lang: PlanSection(week_data, lang) for lang in ("en", "zh-CN")}


def _with(data: WeekData, overrides: dict) -> WeekData:
    """The same data under params changed by ``overrides``."""
    params = load_params(*data.params.files, overrides=overrides)
    return dataclasses.replace(data, params=params)


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_section_renders_on_the_sample(sections, lang):
    section = sections[lang]
    plan = section.plan
    assert plan is not None and section.problem is None
    heading = section.heading()
    assert isinstance(heading, HTML) and '<h2 id="plan">' in heading.data
    assert "2026-W48" in heading.data and "2026-11-23 – 2026-11-29" in heading.data
    assert ("Next week" if lang == "en" else "下周") in heading.data
    assert '<h3 id="plan-forecast">' in section.subheading("forecast").data

    pieces = {name: getattr(section, name)() for name in PIECES}
    for name, piece in pieces.items():
        assert isinstance(piece, HTML | Image), name
    assert pieces["summary"].data.count("<li>") == len(plan.sentences(lang))

    chart = pieces["forecast_chart"]
    assert isinstance(chart, Image) and chart.data[:4] == b"\x89PNG"
    # The title states the week's total: the order types summed (a second way to the
    # "all" series) and the busiest day.
    types = plan.orders[plan.orders["order_type"] != "all"]
    total = types["forecast"].sum()
    busiest = types.groupby("day")["forecast"].sum().idxmax()
    alt = chart.metadata["alt"]
    assert "2026-W48" in alt and f"{total:,.0f}" in alt
    assert f"{busiest:%m-%d}" in alt

    table = pieces["forecast_table"].data
    assert f"{total:,.0f}" in table
    if lang == "en":
        assert all(day in table for day in DAYS_EN)
    accuracy = pieces["accuracy"].data
    assert str(escape(plan.backtest_summary.sentence(lang))) in accuracy
    for name in ("WH-North", "WH-East", "WH-South"):
        assert name in pieces["staffing_table"].data
    for name in ("SwiftExpress", "EastPost", "CloudLogistics", "RapidRoute"):
        assert name in pieces["carrier_table"].data


def test_same_day_last_week_counts_the_report_week(week_data, sections):
    orders = week_data.tables["orders"]
    local = orders["created_at"].dt.tz_convert(TZ)
    in_week = local[
        (local >= pd.Timestamp("2026-11-16", tz=TZ)) & (local < pd.Timestamp("2026-11-23", tz=TZ))
    ]
    by_hand = in_week.dt.strftime("%Y-%m-%d").value_counts().sort_index()
    shown = sections["en"]._last_week_actual()
    assert list(shown.index.strftime("%Y-%m-%d")) == list(by_hand.index)
    assert list(shown.to_numpy()) == list(by_hand.to_numpy())


def test_export_writes_the_plan_computed_directly(week_data, sections, tmp_path):
    section = sections["en"]
    assert section.export(tmp_path / "out") is None  # a notebook cell shows nothing
    written = pd.read_csv(tmp_path / "out" / PLAN_FILE, keep_default_na=False, na_values=[""])
    assert list(written.columns) == list(P.PLAN_COLUMNS)

    t = week_data.tables
    direct = P.plan_frame(P.next_week_plan(t["orders"], t["tickets"], REPORT, week_data.params))
    assert len(written) == len(direct)
    assert list(written["day"]) == list(direct["day"].dt.strftime("%Y-%m-%d"))
    for col in ("section", "item", "unit"):
        assert list(written[col].astype(str)) == list(direct[col].astype(str)), col
    assert list(written["flag"].fillna("")) == list(direct["flag"])
    numbers = ["forecast", "lower", "upper", "needed", "needed_upper", "available", "gap"]
    for col in [*numbers, "utilisation"]:
        np.testing.assert_array_equal(
            written[col].to_numpy(float), direct[col].to_numpy(float), err_msg=col
        )
    # The figures the handout shows are those of the file: the forecast week total.
    orders = written[(written["section"] == "orders") & (written["item"] == "all")]
    assert f"{orders['forecast'].sum():,.0f}" in section.forecast_table().data


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_gaps_are_marked_with_symbol_and_size(week_data, sections, lang):
    short = {
        "plan": {
            "warehouses": {"WH-South": {"orders_per_person_hour": 2, "staff": 1}},
            "carriers": {"RapidRoute": {"daily_capacity": 10}},
            "customer_service": {"tickets_per_agent_day": 5, "agents": 1},
        }
    }
    section = PlanSection(_with(week_data, short), lang)
    plan = section.plan
    word = "short" if lang == "en" else "缺"
    # WH-South on Monday: its share of the orders of the last 4 weeks (counted here) x
    # the Monday forecast / (2 orders per person-hour x 7.5 h), rounded up; 1 on shift.
    orders = week_data.tables["orders"]
    recent = orders[orders["created_at"] >= pd.Timestamp("2026-10-26", tz=TZ)]
    share = (recent["warehouse"] == "WH-South").sum() / recent["warehouse"].notna().sum()
    monday = plan.orders.query("order_type == 'all'")["forecast"].iloc[0]
    needed = math.ceil(monday * share / (2 * 7.5) - 1e-9)
    staffing = section.staffing_table().data
    assert f"{needed} / 1 {RED}▲ {word} {needed - 1}</span>" in staffing
    # Customer service: Monday's tickets / 5 per agent, rounded up; 1 on duty.
    tickets = plan.tickets["forecast"].iloc[0]
    agents = math.ceil(tickets / 5 - 1e-9)
    assert f"{agents} / 1 {RED}▲ {word} {agents - 1}</span>" in section.agents_table().data
    # RapidRoute: 10 parcels a day of capacity, over by its load - 10.
    rapid = plan.carriers.query("carrier == 'RapidRoute'")["parcels"].iloc[0]
    over = "over by" if lang == "en" else "超出"
    assert f"{RED}▲ {over} {rapid - 10:,.0f}</span>" in section.carrier_table().data
    # The unchanged plan has no shortfall on this small sample: nothing marked red.
    calm = sections[lang]
    assert RED not in calm.staffing_table().data + calm.agents_table().data


NAMES = {
    "warehouse": {
        "WH-North": {"en": "North DC", "zh-CN": "华北仓"},
        "WH-East": {"en": "East DC", "zh-CN": "华东仓"},
        "WH-South": {"en": "South DC", "zh-CN": "华南仓"},
    },
    "carrier": {
        "SwiftExpress": {"en": "Swift Express Co", "zh-CN": "迅捷快递"},
        "EastPost": {"en": "East Post Co", "zh-CN": "东方邮政"},
        "CloudLogistics": {"en": "Cloud Logistics Co", "zh-CN": "云端物流"},
        "RapidRoute": {"en": "Rapid Route Co", "zh-CN": "飞速快运"},
    },
}


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_tables_name_the_codes_as_the_params_do(week_data, tmp_path, lang):
    params = week_data.params.model_copy(update={"labels": NAMES})
    section = PlanSection(dataclasses.replace(week_data, params=params), lang)
    shown = {d: {code: n[lang] for code, n in codes.items()} for d, codes in NAMES.items()}
    staffing, carriers = section.staffing_table().data, section.carrier_table().data
    special, listed = section.special_table().data, section.special_list().data
    for code, name in shown["warehouse"].items():
        assert name in staffing and code not in staffing
        assert code not in special and code not in listed
    assert any(name in special for name in shown["warehouse"].values())
    assert any(name in listed for name in shown["warehouse"].values())
    for code, name in shown["carrier"].items():
        assert name in carriers and code not in carriers
    # the headline sentences name them too: the worst short warehouse, late carriers
    summary = section.summary().data
    named = [n for d in shown.values() for n in d.values() if n in summary]
    assert named and not [c for d in shown.values() for c in d if c in summary]
    # plan.csv keeps the codes in its item column, never the names
    section.export(tmp_path)
    written = pd.read_csv(tmp_path / PLAN_FILE, keep_default_na=False)
    items = set(written["item"])
    assert set(shown["warehouse"]) <= items and set(shown["carrier"]) <= items
    assert not items & {n for names in shown.values() for n in names.values()}


def test_user_data_in_cells_is_escaped(week_data, sections):
    orders = week_data.tables["orders"].copy()
    odd = "<b>WH&South</b>"
    orders["warehouse"] = orders["warehouse"].cat.rename_categories({"WH-South": odd})
    first = sections["en"].plan.special_orders["order_id"].iloc[0]  # listed first
    orders["order_id"] = orders["order_id"].where(orders["order_id"] != first, "<script>x</script>")
    params = {"plan": {"warehouses": {odd: {"orders_per_person_hour": 12, "staff": 10}}}}
    data = dataclasses.replace(
        _with(week_data, params), tables={**week_data.tables, "orders": orders}
    )
    section = PlanSection(data, "en")
    page = "".join(getattr(section, name)().data for name in PIECES if name != "forecast_chart")
    assert "&lt;b&gt;WH&amp;South&lt;/b&gt;" in page and odd not in page
    assert "&lt;script&gt;x&lt;/script&gt;" in section.special_list().data
    assert "<script>" not in page


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_missing_warehouse_in_params_gives_the_clear_message(week_data, tmp_path, sample, lang):
    # Warehouses listed, but not those the orders come from; the section is optional.
    listed = "{warehouses: {WH-North: {orders_per_person_hour: 10, staff: 5}}}"
    params = write_params(tmp_path, sample.folder, plan=listed, optional_sections="[plan]")
    bare = load_params(params)
    section = PlanSection(dataclasses.replace(week_data, params=bare), lang)
    assert section.plan is None
    note = section.summary().data
    lead = "No plan for 2026-W48" if lang == "en" else "无法生成第 2026-W48 周的计划"
    assert lead in note and "plan.warehouses.WH-East" in note and "add each" in note
    assert html.escape(str(tmp_path / "params.yaml")) in note, "names the params file"
    assert all(getattr(section, name)().data == "" for name in PIECES if name != "summary")
    section.export(tmp_path / "out")
    assert not (tmp_path / "out" / PLAN_FILE).exists()


def test_missing_warehouse_fails_the_section_unless_optional(week_data, tmp_path, sample):
    listed = "{warehouses: {WH-North: {orders_per_person_hour: 10, staff: 5}}}"
    params = load_params(write_params(tmp_path, sample.folder, plan=listed))
    section = PlanSection(dataclasses.replace(week_data, params=params), "en")
    with pytest.raises(
        SectionError, match=r"report section 'plan' cannot be computed: .*plan\.warehouses\.WH-East"
    ):
        section.summary()


def test_without_resources_in_params_the_plan_leaves_them_out(week_data, tmp_path, sample):
    bare = load_params(write_params(tmp_path, sample.folder))  # no plan block at all
    section = PlanSection(dataclasses.replace(week_data, params=bare), "en")
    assert section.plan is not None and section.plan.staffing is None
    assert "Warehouse staffing left out" in section.staffing_table().data
    assert "Carrier capacity left out" in section.carrier_table().data


def test_short_history_gives_a_message_not_a_crash(week_data, tmp_path):
    orders = week_data.tables["orders"]
    late = orders[orders["created_at"] >= pd.Timestamp("2026-11-18", tz=TZ)]  # from Wednesday
    optional = week_data.params.model_copy(update={"optional_sections": ["plan"]})
    data = dataclasses.replace(week_data, tables={"orders": late}, params=optional)
    section = PlanSection(data, "en")
    note = section.summary().data
    assert "No plan for 2026-W48" in note
    assert "no complete week of orders before 2026-W48" in note
    assert section.forecast_chart().data == "" and section.staffing_table().data == ""
    section.export(tmp_path)
    assert not (tmp_path / PLAN_FILE).exists()
    assert "历史数据" not in note  # the English page stays English
    assert "无法生成" in PlanSection(data, "zh-CN").summary().data


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_unlisted_promotion_is_named_beside_the_backtest(lang):
    orders = synthetic_orders(seed=4, day_factor=UNLISTED_PROMOTION, routed=True)
    data = WeekData(_params(PLAN), REPORT, {"orders": orders}, QualityReport(), [])
    section = PlanSection(data, lang)
    accuracy = section.accuracy().data
    lead = (
        "3 days of orders were far from their usual volume" if lang == "en" else "有 3 天的订单量"
    )
    assert lead in accuracy
    thursday = "Thu 10-15" if lang == "en" else "周四 10-15"
    assert thursday in accuracy and "plan.promotions" in accuracy
    assert "2026-W42 ※" in accuracy, "the backtest week with the promotion is marked"
    # Without tickets data the customer-service part says so instead of a table.
    no_tickets = "No tickets in the data" if lang == "en" else "数据中没有工单"
    assert no_tickets in section.agents_table().data
