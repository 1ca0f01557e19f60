"""A company's own export, end to end: `meeting init`, then `meeting run`, figures by hand.

Two exports (tests/exports.py): an Olist-shaped English marketplace export and a GBK
Chinese OMS download with Chinese headers. Every figure checked here is recomputed from
the generated rows with plain Python, not with the library.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import pytest
import yaml

from meetinglib.cli import main
from tests.exports import Order, oms_orders, write_olist, write_oms, write_oms_xlsx

WEEK = "2026-W47"
MONDAY = dt.datetime(2026, 11, 16)
END = MONDAY + dt.timedelta(days=7)
LOOKBACK = dt.timedelta(days=90)


def _in_week(when: dt.datetime | None, monday: dt.datetime = MONDAY) -> bool:
    return when is not None and monday <= when < monday + dt.timedelta(days=7)


def _kpis(folder: Path) -> dict[str, dict[str, str]]:
    """kpis.csv rows of all orders, by KPI."""
    with (folder / "kpis.csv").open(encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    return {
        r["kpi"]: r
        for r in rows
        if (r["dimension"], r["segment"], r["order_type"]) == ("all", "all", "all")
    }


def _init(source: Path, out: Path, *extra: str) -> None:
    assert main(["-q", "init", str(source), "--out", str(out), *extra]) == 0


def _set(params: Path, **keys: object) -> None:
    """Set top-level keys of a params file, as a person editing it would."""
    data = yaml.safe_load(params.read_text(encoding="utf-8"))
    for key, value in keys.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    params.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


# --- the Olist-shaped export ---------------------------------------------------------------


@pytest.fixture(scope="module")
def olist(tmp_path_factory):
    folder = tmp_path_factory.mktemp("olist")
    path, payments, orders = write_olist(folder / "export")
    params = folder / "olist.yaml"
    _init(path, params, "--timezone", "America/Sao_Paulo", "--company", "Olist shop")
    (folder / "proposed.yaml").write_text(params.read_text(encoding="utf-8"), encoding="utf-8")
    _set(params, output_dir=str(folder / "outputs"), store={"path": str(folder / "m.db")})
    assert main(["-q", "run", "--params", str(params)]) == 0
    return folder, params, payments, orders


def test_olist_init_proposes_status_constant_and_columns(olist):
    folder, _, _, _ = olist
    text = (folder / "proposed.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    orders = data["source"]["tables"]["orders"]
    assert orders["constants"] == {"order_type": "normal"}
    assert orders["status"]["column"] == "order_status"
    assert orders["status"]["cancelled"] == ["canceled", "unavailable"]
    assert orders["columns"]["order_approved_at"] == "paid_at"
    assert orders["columns"]["order_delivered_carrier_date"] == "shipped_at"
    assert "gmv: needs amount" in text  # what the mapping cannot support, and why
    assert data["timezone"] == "America/Sao_Paulo"
    # Standalone: nothing of the demo.
    assert "WH-North" not in text and "targets: {}" in text


def test_olist_orders_per_week_equal_the_raw_count(olist):
    folder, params, _, orders = olist
    from meetinglib.analysis.kpi_table import kpi_table
    from meetinglib.core.params import load_params
    from meetinglib.data.dataset import load_week

    data = load_week(load_params(params), WEEK)
    weekly = kpi_table(data).weekly("orders_created").dropna()
    by_hand = {}
    for o in orders:
        label = f"{o.week.isocalendar()[0]}-W{o.week.isocalendar()[1]:02d}"
        by_hand[label] = by_hand.get(label, 0) + 1
    assert weekly.to_dict() == {k: float(v) for k, v in by_hand.items()}
    # The orders handed to the carrier before approval are flagged, not dropped.
    flagged = sum(1 for o in orders if o.shipped and o.paid and o.shipped < o.paid)
    entry = next(e for e in data.quality.entries if e.rule == "milestone order")
    assert (entry.rows, entry.kept) == (flagged, True)
    assert data.quality.kept["orders"] == len(orders)


def test_olist_report_figures_by_hand(olist):
    folder, _, _, orders = olist
    week = folder / "outputs" / WEEK
    got = _kpis(week)
    mine = [o for o in orders if _in_week(o.created)]
    cancelled = [o for o in mine if o.status in ("canceled", "unavailable")]
    assert float(got["orders_created"]["this_week"]) == len(mine) == 50
    # Cancellations come from the status: 6 of 50, not 0 %.
    assert float(got["cancellation_rate"]["this_week"]) == pytest.approx(len(cancelled) / 50)
    assert len(cancelled) == 6
    delivered = [o for o in orders if _in_week(o.delivered)]
    on_time = [o for o in delivered if o.delivered <= o.estimated]
    assert float(got["on_time_delivery_rate"]["this_week"]) == pytest.approx(
        len(on_time) / len(delivered)
    )
    # Backlog at week end: paid, neither shipped nor cancelled (status: at creation) before
    # the end, created within the lookback before the week.
    backlog = [
        o
        for o in orders
        if o.created >= MONDAY - LOOKBACK
        and o.paid is not None
        and o.paid < END
        and not (o.shipped is not None and o.shipped < END)
        and o.status not in ("canceled", "unavailable")
    ]
    assert float(got["backlog"]["this_week"]) == len(backlog)
    # No amount in the export: not available, never zero or judged against a target.
    assert got["gmv"]["status"] == "not_available"
    assert got["gmv"]["this_week"] == ""
    assert got["gmv"]["note"] == "not available — the source has no amount"
    assert got["abnormal_rate"]["status"] == "not_available"
    page = (week / "data_report.html").read_text(encoding="utf-8")
    assert "not available — the source has no amount" in page
    assert "Off target" not in page
    # The sections say so too, instead of "no abnormal orders" or zeros.
    assert "Abnormal-order rate: not available — the source has no exception_code" in page


def test_olist_gmv_from_the_payments_table(olist, tmp_path):
    folder, params, payments, orders = olist
    with_payments = tmp_path / "with-payments.yaml"
    with_payments.write_text(params.read_text(encoding="utf-8"), encoding="utf-8")
    data = yaml.safe_load(with_payments.read_text(encoding="utf-8"))
    data["source"]["path"] = str(payments.parent)
    data["source"]["tables"]["orders"]["amount_from"] = {
        "file": payments.name,
        "order_id": "order_id",
        "value": "payment_value",
    }
    with_payments.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    out = tmp_path / "kpis"
    assert (
        main(["-q", "kpis", "--params", str(with_payments), "--week", WEEK, "--out", str(out)]) == 0
    )
    got = _kpis(out)
    # By hand: payments summed per order, orders created in the week, cancelled ones out.
    gmv = sum(
        sum(o.payments)
        for o in orders
        if _in_week(o.created) and o.status not in ("canceled", "unavailable")
    )
    assert float(got["gmv"]["this_week"]) == pytest.approx(gmv)
    assert got["gmv"]["status"] == ""


# --- the Chinese OMS export (GBK, Chinese headers) ----------------------------------------------


@pytest.fixture(scope="module")
def oms(tmp_path_factory):
    folder = tmp_path_factory.mktemp("oms")
    path, orders = write_oms(folder / "export")
    params = folder / "oms.yaml"
    _init(path, params, "--company", "华东电商")
    # The export has no promised delivery time: a delivery SLA, 2 days for 顺丰.
    _set(
        params,
        sla={"delivery_days": 3, "delivery_days_by_carrier": {"顺丰": 2}},
        output_dir=str(folder / "outputs"),
        store={"path": str(folder / "m.db")},
    )
    assert main(["-q", "run", "--params", str(params)]) == 0
    return folder, params, orders


def test_oms_init_detects_gbk_chinese_headers_values_and_format(oms):
    _, params, _ = oms
    data = yaml.safe_load(params.read_text(encoding="utf-8"))
    orders = data["source"]["tables"]["orders"]
    assert orders["encoding"] == "gb18030"
    assert orders["timestamp_format"] == "%Y/%m/%d %H:%M:%S"
    assert orders["columns"]["下单时间"] == "created_at"
    assert orders["columns"]["快递公司"] == "carrier"
    assert orders["values"]["order_type"] == {
        "普通订单": "normal",
        "特殊订单": "special",
        "售后订单": "after_sales",
    }
    assert orders["values"]["exception_code"]["缺货"] == "stockout"
    assert data["language"] == "zh-CN" and data["timezone"] == "Asia/Shanghai"


def test_oms_report_figures_by_hand(oms):
    folder, _, orders = oms
    week = folder / "outputs" / WEEK
    got = _kpis(week)
    mine = [o for o in orders if _in_week(o.created)]
    assert float(got["orders_created"]["this_week"]) == len(mine) == 50
    assert float(got["gmv"]["this_week"]) == pytest.approx(sum(o.amount for o in mine))
    # 其他 is no known code: kept as "unmapped", still an abnormal order.
    abnormal = [o for o in mine if o.exception != "无"]
    assert float(got["abnormal_rate"]["this_week"]) == pytest.approx(len(abnormal) / 50)
    # On time against the SLA: 2 days after shipping for 顺丰, 3 days for the others.
    delivered = [o for o in orders if _in_week(o.delivered)]
    promise = {
        o.order_id: o.shipped + dt.timedelta(days=2 if o.carrier == "顺丰" else 3)
        for o in delivered
    }
    on_time = [o for o in delivered if o.delivered <= promise[o.order_id]]
    assert 0 < len(on_time) < len(delivered)
    assert float(got["on_time_delivery_rate"]["this_week"]) == pytest.approx(
        len(on_time) / len(delivered)
    )
    # No cancellation information: not available, in Chinese.
    assert got["cancellation_rate"]["status"] == "not_available"
    assert got["cancellation_rate"]["note"] == "不可用——数据源没有 cancelled_at"
    manifest = json.loads((week / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["sections_left_out"] == {}
    page = (week / "data_report.html").read_text(encoding="utf-8")
    assert "成交总额" in page
    assert "取消率: 不可用——数据源没有 cancelled_at" in page
    # The plan leaves out what the params cannot support (no warehouses listed).
    assert "未计算仓库人力" in page


def test_oms_unknown_exception_is_listed_as_kept(oms):
    _, params, _ = oms
    from meetinglib.core.params import load_params
    from meetinglib.data.dataset import load_week

    data = load_week(load_params(params), WEEK)
    entry = next(e for e in data.quality.entries if e.rule == "unknown value")
    other = sum(1 for o in write_oms_orders() if o.exception == "其他")
    assert (entry.column, entry.rows, entry.kept) == ("exception_code", other, True)


def write_oms_orders() -> list[Order]:
    return oms_orders()


# --- the same export under a title ------------------------------------------------------------

# Order 3 of the report week, created on Monday at 10:00: the only cell holding that text
# (times of the other orders fall on other minutes), its row the 254th order of the file.
BROKEN = "2026/11/16 10:00:00"
BROKEN_ORDER = next(o for o in oms_orders() if o.created == dt.datetime(2026, 11, 16, 10))
BROKEN_INDEX = oms_orders().index(BROKEN_ORDER)


def _break_one_time(path: Path) -> None:
    """Write an hour that does not exist into the created time of BROKEN_ORDER."""
    if path.suffix == ".csv":
        data = path.read_bytes()
        assert data.count(BROKEN.encode("gbk")) == 1
        path.write_bytes(data.replace(BROKEN.encode("gbk"), b"2026/11/16 25:00:00"))
        return
    from openpyxl import load_workbook

    book = load_workbook(path)
    cells = [c for row in book.active.iter_rows() for c in row if c.value == BROKEN]
    assert len(cells) == 1
    cells[0].value = "2026/11/16 25:00:00"
    book.save(path)


@pytest.mark.parametrize("kind", ["gbk_csv", "xlsx"])
def test_a_titled_export_gives_the_figures_of_the_same_export_without_its_title(
    kind, tmp_path, capsys
):
    """A GBK download with a title line, an Excel report with a merged title and an empty
    row: `meeting init` proposes header_row, the week's KPIs are those of the export
    without a title, and the row set aside is named by its row in the file."""
    if kind == "gbk_csv":
        plain, _ = write_oms(tmp_path / "plain")
        titled, _ = write_oms(tmp_path / "titled", title=("导出时间: 2026-11-23 09:00",))
        header = 2
    else:
        plain, _ = write_oms_xlsx(tmp_path / "plain", title=None)
        titled, _ = write_oms_xlsx(tmp_path / "titled")
        header = 3
    figures, examples = {}, {}
    for name, path in (("plain", plain), ("titled", titled)):
        _break_one_time(path)
        params = tmp_path / f"{name}.yaml"
        _init(path, params, "--company", "华东电商")
        _set(params, store={"path": str(tmp_path / f"{name}.db")})
        out = tmp_path / f"{name}-kpis"
        assert main(["-q", "kpis", "--params", str(params), "--week", WEEK, "--out", str(out)]) == 0
        with (out / "kpis.csv").open(encoding="utf-8-sig") as fh:
            figures[name] = list(csv.DictReader(fh))
        capsys.readouterr()
        assert main(["-q", "validate", "--params", str(params), "--week", WEEK]) == 0
        examples[name] = capsys.readouterr().out
    orders = yaml.safe_load((tmp_path / "titled.yaml").read_text(encoding="utf-8"))
    assert orders["source"]["tables"]["orders"]["header_row"] == header
    assert "header_row" not in (tmp_path / "plain.yaml").read_text(encoding="utf-8")
    assert figures["titled"] == figures["plain"]
    assert float(_kpis(tmp_path / "titled-kpis")["orders_created"]["this_week"]) == 49
    # The row set aside, as a person finds it: below the header row, the title counted
    # (validate speaks the params' language, Chinese here; its lines are wrapped).
    for name, first in (("plain", 2), ("titled", header + 1)):
        row = first + BROKEN_INDEX
        said = " ".join(examples[name].split())
        assert f"第 {row} 行（order_id 为 {BROKEN_ORDER.order_id}）" in said, examples[name]


# --- a section that cannot be computed ------------------------------------------------------------


def test_section_that_cannot_be_computed_fails_validate_and_run_unless_optional(
    oms, tmp_path, capsys
):
    folder, params, _ = oms
    broken = folder / "broken.yaml"  # beside it: the source path is relative
    broken.write_text(params.read_text(encoding="utf-8"), encoding="utf-8")
    # Warehouses listed, but not the ones the orders come from.
    _set(
        broken,
        plan={"warehouses": {"Other": {"orders_per_person_hour": 10, "staff": 5}}},
        output_dir=str(tmp_path / "outputs"),
    )
    assert main(["-q", "validate", "--params", str(broken), "--week", WEEK]) == 7
    assert "report section 'plan' cannot be computed" in capsys.readouterr().err
    assert main(["-q", "run", "--params", str(broken), "--week", WEEK]) == 7
    assert not (tmp_path / "outputs" / WEEK).exists()
    _set(broken, optional_sections=["plan"])
    assert main(["-q", "validate", "--params", str(broken), "--week", WEEK]) == 0
    # in the params' language, as every line of validate (the company's is Chinese)
    assert "章节 'plan' 将被略去（参数 optional_sections 中列为可选）" in capsys.readouterr().out


def test_init_never_overwrites_without_force(tmp_path):
    path, _ = write_oms(tmp_path / "export")
    out = tmp_path / "p.yaml"
    out.write_text("keep me\n", encoding="utf-8")
    assert main(["-q", "init", str(path), "--out", str(out)]) == 2
    assert out.read_text(encoding="utf-8") == "keep me\n"
    assert main(["-q", "init", str(path), "--out", str(out), "--force"]) == 0
    assert "订单编号" in out.read_text(encoding="utf-8")
