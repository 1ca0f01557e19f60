"""Loading a week: week choice, selection window, order filtering, snapshots.

The fixture folder ``tests/data/validate/week_csv`` (timezone Asia/Shanghai) is
read with history_weeks 2 and open_order_lookback_days 14, report week 2026-W10
(2026-03-02 to 2026-03-08), so the selection runs from 2026-02-02 00:00 (W08
Monday 2026-02-16 minus 14 days) to 2026-03-09 00:00. Orders, by CSV line:

  2 O-001  created 2026-01-20           before the selection
  3 O-002  created 2026-02-05, paid, never shipped: open, in the lookback days
  4 O-003  created 2026-02-17           history week W08
  5 00042  created 2026-03-02 00:00     first instant of W10
  6 O-005  created 2026-03-08 23:59:59  last second of W10
  7 O-006  created 2026-03-09 00:00     next week (windows are half-open)
  8 O-007  created 2026-03-05, cancelled
  9 O-008  created 2026-03-09 06:00     the export's last event (Monday morning)
 10 O-009  created 'not a date'         set aside
"""

from __future__ import annotations

import re
import shutil
from html import unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from meetinglib.cli import main
from meetinglib.core.errors import NoDataError, TooManyQuarantinedError
from meetinglib.core.params import load_params
from meetinglib.core.weeks import IsoWeek
from meetinglib.data import engine
from meetinglib.data.dataset import WeekData, load_week, orders_loaded, selection_window
from meetinglib.report.data_report import DataReport

FIXTURE = Path(__file__).parent / "data" / "validate" / "week_csv"
TZ = "Asia/Shanghai"


def make_params(folder: Path, source: Path, **overrides: object):
    lines = {
        "company": "Test Shop",
        "timezone": TZ,
        "history_weeks": 2,
        "open_order_lookback_days": 14,
        "source": f"{{kind: folder, path: '{source}'}}",
        "quality": "{max_quarantine_share: 0.2}",
        **overrides,
    }
    path = folder / "params.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in lines.items()), encoding="utf-8")
    return load_params(path)


@pytest.fixture
def params(tmp_path):
    return make_params(tmp_path, FIXTURE)


@pytest.fixture
def week_data(params):
    return load_week(params, "2026-W10")


def local(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=TZ)


# --- week and selection window -------------------------------------------------------------


def test_selection_window(params):
    window = selection_window(params, IsoWeek(2026, 10))
    assert window.start == local("2026-02-02 00:00")
    assert window.end == local("2026-03-09 00:00")


def test_explicit_week_and_its_windows(week_data):
    assert week_data.week == IsoWeek(2026, 10)
    assert week_data.tz == TZ
    assert (week_data.window.start, week_data.window.end) == (
        local("2026-03-02"),
        local("2026-03-09"),
    )
    assert week_data.previous_window.start == local("2026-02-23")
    assert week_data.history_weeks == [IsoWeek(2026, 8), IsoWeek(2026, 9), IsoWeek(2026, 10)]


def test_default_week_is_latest_complete_week(params):
    # The last order was created Monday 2026-03-09 06:00, in the new week W11.
    data = load_week(params)
    assert data.week == IsoWeek(2026, 10)


def test_week_given_as_iso_week(params):
    assert load_week(params, IsoWeek(2026, 8)).week == IsoWeek(2026, 8)


# --- rows selected -------------------------------------------------------------------------


def test_orders_filtered_to_the_selection_window(week_data):
    orders = week_data.tables["orders"]
    assert orders["order_id"].tolist() == ["O-002", "O-003", "00042", "O-005", "O-007"]
    in_week = week_data.window.contains(orders["created_at"])
    assert orders.loc[in_week, "order_id"].tolist() == ["00042", "O-005", "O-007"]
    assert isinstance(orders.index, pd.RangeIndex)


def backlog_at_week_end(data: WeekData) -> list[str]:
    orders = data.tables["orders"]
    end = data.window.end
    open_ = (
        (orders["paid_at"] < end) & ~(orders["shipped_at"] < end) & ~(orders["cancelled_at"] < end)
    )
    return orders.loc[open_, "order_id"].tolist()


def test_open_order_created_before_history_counts_in_backlog(tmp_path, week_data):
    # O-002 was created 11 days before the history's first week and never shipped.
    assert backlog_at_week_end(week_data) == ["O-002"]
    without = load_week(make_params(tmp_path, FIXTURE, open_order_lookback_days=0), "2026-W10")
    assert "O-002" not in without.tables["orders"]["order_id"].tolist()
    assert backlog_at_week_end(without) == []


def test_tables_keep_rows_of_loaded_orders_only(week_data):
    t = week_data.tables
    # T-2 and C-2 belong to O-001 (not loaded), T-5 to an unknown order, T-4 is too old;
    # T-3 has no order and stays.
    assert t["tickets"]["ticket_id"].tolist() == ["T-1", "T-3"]
    assert t["tickets"]["order_id"].isna().tolist() == [False, True]
    assert t["after_sales"]["case_id"].tolist() == ["C-1"]
    # A pending settlement (no settled_at) belongs to every window.
    assert t["settlements"]["order_id"].tolist() == ["O-003", "00042"]
    assert t["settlements"]["status"].tolist() == ["settled", "pending"]
    assert t["order_lines"]["order_id"].tolist() == ["O-003", "00042", "O-007"]
    assert "events" not in t


def _with_settlements(tmp_path: Path, rows: str) -> Path:
    folder = tmp_path / "source"
    shutil.copytree(FIXTURE, folder)
    (folder / "settlements.csv").write_text(
        "order_id,settled_at,amount,fee,status\n" + rows, encoding="utf-8"
    )
    return folder


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_settlement_made_after_the_week_was_pending_at_its_end(tmp_path, fmt):
    # O-003 was delivered 2026-02-20 and settled on the Tuesday after the report week
    # (W10 ends Monday 2026-03-09 00:00): pending at the end of W10 and of W9, settled in
    # neither. 00042 is pending but not delivered; O-002's settlement came before the
    # history (2026-02-01, before the selection), so it plays no part.
    folder = _with_settlements(
        tmp_path,
        "O-003,2026-03-10 09:00:00,80.50,0.80,settled\n"
        "00042,,45.00,,pending\n"
        "O-002,2026-01-01 09:00:00,300.00,3.00,settled\n",
    )
    if fmt == "parquet":
        _as_parquet(folder, ("orders", "settlements"))
    params = make_params(tmp_path, folder)
    data = load_week(params, "2026-W10")
    assert sorted(data.tables["settlements"]["order_id"]) == ["00042", "O-003"]
    overall = _overall_kpis(tmp_path)
    pending = overall[overall["kpi"] == "pending_amount"].iloc[0]
    assert [float(pending[w]) for w in ("this_week", "last_week")] == [80.50, 80.50]
    settled = overall[overall["kpi"] == "settled_amount"].iloc[0]
    assert [float(settled[w]) for w in ("this_week", "last_week")] == [0.0, 0.0]


def _as_parquet(folder: Path, tables: tuple[str, ...]) -> None:
    """The CSV files of ``tables`` in ``folder`` replaced by Parquet, times typed."""
    for table in tables:
        frame = pd.read_csv(folder / f"{table}.csv", dtype={"order_id": str})
        for column in frame.columns:
            if column.endswith(("_at", "_by")):
                frame[column] = pd.to_datetime(frame[column], errors="coerce")
        frame.to_parquet(folder / f"{table}.parquet", index=False)
        (folder / f"{table}.csv").unlink()


def _overall_kpis(tmp_path: Path) -> pd.DataFrame:
    """kpis.csv of W10 by ``meeting kpis`` over tmp_path/params.yaml: all orders' rows."""
    out = tmp_path / "kpis"
    assert main(["-q", "kpis", "--params", str(tmp_path / "params.yaml"), "--week", "2026-W10",
                 "--out", str(out)]) == 0  # fmt: skip
    kpis = pd.read_csv(out / "kpis.csv", encoding="utf-8-sig", keep_default_na=False)
    return kpis[(kpis["dimension"] == "all") & (kpis["order_type"] == "all")]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_settlement_said_settled_without_its_time_is_flagged_and_not_pending(
    tmp_path, fmt, capsys
):
    # Two more orders delivered in W08 (O-010 2026-02-21, O-011 2026-02-22), and no row
    # set aside (O-009's unparseable date removed): only flagged rows are left to show.
    # O-003 says settled and has no time (the export defect the rule flags); O-010 was
    # refunded and O-011 is disputed, neither with a time; 00042 is not delivered.
    folder = _with_settlements(
        tmp_path,
        "O-003,,80.50,0.80,settled\n"
        "O-010,,200.00,2.00,refunded\n"
        "O-011,,300.00,3.00,disputed\n"
        "00042,,45.00,,pending\n",
    )
    orders = (folder / "orders.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    orders = [line for line in orders if not line.startswith("O-009,")] + [
        "O-010,normal,2026-02-17 09:00:00,2026-02-17 09:10:00,2026-02-18 12:00:00,"
        "2026-02-21 10:00:00,,,200.00,\n",
        "O-011,normal,2026-02-18 09:00:00,2026-02-18 09:10:00,2026-02-19 12:00:00,"
        "2026-02-22 10:00:00,,,300.00,\n",
    ]
    (folder / "orders.csv").write_text("".join(orders), encoding="utf-8")
    if fmt == "parquet":
        _as_parquet(folder, ("orders", "settlements"))
    params = make_params(tmp_path, folder)
    data = load_week(params, "2026-W10")
    (entry,) = data.quality.entries
    row = 2 if fmt == "csv" else 1  # a CSV's line (after its header), a Parquet file's row
    example = f"row {row} (order_id O-003): status 'settled', settled_at empty"
    assert (entry.table, entry.source, entry.column, entry.rule, entry.rows, entry.kept) == (
        "settlements", f"settlements.{fmt}", "settled_at", "status without time", 1, True
    )  # fmt: skip
    assert tuple(x.text() for x in entry.examples) == (example,)
    assert data.quality.total_quarantined == 0
    assert sorted(data.tables["settlements"]["order_id"]) == ["00042", "O-003", "O-010", "O-011"]

    # At the end of W10 and W09: only O-011's 300.00, disputed, is money to come.
    overall = _overall_kpis(tmp_path)
    pending = overall[overall["kpi"] == "pending_amount"].iloc[0]
    assert [float(pending[w]) for w in ("this_week", "last_week")] == [300.0, 300.0]

    assert main(["-q", "validate", "--params", str(params.files[0]), "--week", "2026-W10"]) == 0
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if line.startswith("settlements ")]
    assert line.split() == [
        "settlements", f"settlements.{fmt}", "settled_at", "Status", "without", "its", "time",
        "1", "kept,", "flagged",
    ]  # fmt: skip
    # the examples, wrapped below the table
    assert f"settlements.settled_at, Status without its time: {example}" in " ".join(out.split())

    report = DataReport.open([params.files[0]], week="2026-W10", lang="en")
    note = unescape(report.quality_note().data)
    assert "rows loaded were kept; nothing was set aside." in note
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", note)
    assert cells[:6] == [
        "settlements", f"settlements.{fmt}", "settled_at", "Status without its time", "1",
        "kept, flagged",
    ]  # fmt: skip
    assert example in note
    finance = report.finance_table().data
    assert "1 settlements say settled but have no settlement time (" in finance
    assert "they are in neither the settled nor the pending amount" in finance
    zh = DataReport(report.data, "zh-CN")
    assert "状态缺少对应时间" in zh.quality_note().data
    assert "1 笔结算状态为已结算但缺少结算时间" in zh.finance_table().data


@pytest.mark.parametrize("on_engine", [True, False])
def test_amounts_with_a_currency_mark_are_read(tmp_path, on_engine):
    folder = tmp_path / "source"
    shutil.copytree(FIXTURE, folder)
    orders = (folder / "orders.csv").read_text(encoding="utf-8")
    orders = orders.replace(",80.50,", ',"￥80.50",').replace(",45.00,", ',"RMB 1,045.00",')
    orders = orders.replace(",99.90,", ",99.90 元,").replace(",15.00,", ",￥,")
    (folder / "orders.csv").write_text(orders, encoding="utf-8")
    params = make_params(tmp_path, folder, quality="{max_quarantine_share: 0.3}")
    data = load_week(params, "2026-W10", on_engine=on_engine)
    orders = data.tables["orders"]
    amount = dict(zip(orders["order_id"], orders["amount"], strict=True))
    assert (amount["O-003"], amount["00042"], amount["O-007"]) == (80.50, 1045.00, 99.90)
    # a mark without a number is still not a number: its order is set aside
    (entry,) = [e for e in data.quality.entries if e.column == "amount"]
    assert (entry.rule, entry.rows, entry.example_texts()) == (
        "not a number",
        1,
        ("row 9 (order_id O-008): '￥'",),
    )


def test_ids_keep_leading_zeros(week_data):
    assert "00042" in week_data.tables["orders"]["order_id"].tolist()
    assert week_data.tables["tickets"]["order_id"].iloc[0] == "00042"


def test_quality_counts_rows_read_and_set_aside(week_data):
    q = week_data.quality
    assert q.loaded == {
        "orders": 9,
        "tickets": 5,
        "after_sales": 2,
        "settlements": 4,
        "order_lines": 4,
    }
    assert q.kept == {**q.loaded, "orders": 8}
    got = [(e.table, e.source, e.column, e.rule, e.rows, e.example_texts()) for e in q.entries]
    assert got == [
        (
            "orders",
            "orders.csv",
            "created_at",
            "unparseable timestamp",
            1,
            ("row 10 (order_id O-009): 'not a date'",),
        )
    ]
    assert q.total_quarantined == 1
    assert q.quarantined["orders"]["_source_row"].tolist() == [10]
    assert [s.table for s in week_data.sources] == list(q.loaded)
    assert {s.format for s in week_data.sources} == {"csv"}


def test_quality_says_where_every_row_read_went(week_data, params, capsys):
    """Read = set aside + outside the weeks read + order not loaded + used, per table,
    by hand from the fixture (W10 with two weeks of history and 14 days' lookback)."""
    q = week_data.quality
    # tickets: T-4 too old; T-2 (O-001, created before the lookback) and T-5 (no such
    # order) left out; T-1 and T-3 (no order) used. after_sales: C-2 of O-001.
    # settlements: O-001's and O-099's. order_lines: one line of O-001.
    assert q.no_order == {"orders": 0, "tickets": 2, "after_sales": 1, "settlements": 2,
                          "order_lines": 1}  # fmt: skip
    assert q.used == {"orders": 5, "tickets": 2, "after_sales": 1, "settlements": 2,
                      "order_lines": 3}  # fmt: skip
    for table in q.loaded:
        assert q.kept[table] >= q.used[table] + q.no_order[table]
    report = DataReport.open([params.files[0]], week="2026-W10", lang="en")
    note = report.quality_note().data
    assert (
        "6 rows of other tables belong to orders that were not loaded (set aside, created "
        "before the weeks read, or missing from the orders) and are left out of every "
        "figure: tickets 2; after_sales 1; settlements 2; order_lines 1." in note
    )
    table = report.quality_table().data
    assert "Order not loaded" in table and "Outside the weeks read" in table
    assert main(["-q", "validate", "--params", str(params.files[0]), "--week", "2026-W10"]) == 0
    out = capsys.readouterr().out
    assert "left out, their order not loaded: tickets 2, after_sales 1, settlements 2, " in out


def test_progress_per_table(params):
    said: list[str] = []
    load_week(params, "2026-W10", progress=said.append)
    # Windows: orders drop lines 2, 7, 9 (and 10 set aside); tickets drop T-4.
    assert said == [
        "orders: 5 rows in the window (9 read, 1 set aside)",
        "tickets: 4 rows in the window (5 read, 0 set aside)",
        "after_sales: 2 rows (0 set aside)",
        "settlements: 4 rows (0 set aside)",
        "order_lines: 4 rows (0 set aside)",
        "left out, their order not loaded: settlements 2, order_lines 1, after_sales 1, tickets 2",
    ]


def test_progress_in_the_language_asked_for(params):
    """`meeting validate --lang zh-CN` and a Chinese run: the load's lines in Chinese, the
    tables named as the params name them."""
    said: list[str] = []
    load_week(params, "2026-W10", progress=said.append, lang="zh-CN")
    assert said == [
        "orders：所选时间范围内 5 行（共读取 9 行，剔除 1 行）",
        "tickets：所选时间范围内 4 行（共读取 5 行，剔除 0 行）",
        "after_sales：2 行（剔除 0 行）",
        "settlements：4 行（剔除 0 行）",
        "order_lines：4 行（剔除 0 行）",
        "因所属订单未载入而略去的行：settlements 2，order_lines 1，after_sales 1，tickets 2",
    ]


# --- errors ------------------------------------------------------------------------------------


def test_week_without_orders(params):
    expected = (
        "no orders created in week 2026-W20 (2026-05-11 to 2026-05-17, Asia/Shanghai) in "
        f"{FIXTURE / 'orders.csv'}; the orders there cover weeks 2026-W04 to 2026-W11. "
        "Choose a week in that range with --week, e.g. --week 2026-W10."
    )
    with pytest.raises(NoDataError, match=f"^{re.escape(expected)}$"):
        load_week(params, "2026-W20")


def test_too_many_bad_rows_stop_the_load(tmp_path):
    params = make_params(tmp_path, FIXTURE, quality="{max_quarantine_share: 0.1}")
    with pytest.raises(TooManyQuarantinedError, match=r"^orders\.csv: 1 of 9 rows \(11\.1%\)"):
        load_week(params, "2026-W10")


# --- Parquet gives the same tables as CSV ----------------------------------------------------


def parquet_copy(folder: Path) -> Path:
    """The fixture's orders and tickets as Parquet with real (naive, local) timestamps."""
    out = folder / "parquet"
    out.mkdir()
    orders = pd.read_csv(FIXTURE / "orders.csv", dtype=str, keep_default_na=False)
    orders = orders[orders["order_id"] != "O-009"]
    for c in ("created_at", "paid_at", "shipped_at", "delivered_at", "cancelled_at"):
        orders[c] = pd.to_datetime(orders[c].replace("", None))
    orders["promised_ship_by"] = pd.to_datetime(orders["promised_ship_by"].replace("", None))
    orders["amount"] = orders["amount"].astype(float)
    orders["exception_code"] = orders["exception_code"].replace("", None)
    orders.to_parquet(out / "orders.parquet", index=False)
    tickets = pd.read_csv(FIXTURE / "tickets.csv", dtype=str)
    for c in ("opened_at", "first_response_at", "resolved_at"):
        tickets[c] = pd.to_datetime(tickets[c])
    tickets["csat"] = tickets["csat"].astype(float)
    tickets.to_parquet(out / "tickets.parquet", index=False)
    return out


def test_parquet_source_gives_the_same_tables(tmp_path, week_data):
    params = make_params(tmp_path, parquet_copy(tmp_path))
    data = load_week(params)
    assert data.week == IsoWeek(2026, 10)
    pd.testing.assert_frame_equal(data.tables["orders"], week_data.tables["orders"])
    pd.testing.assert_frame_equal(data.tables["tickets"], week_data.tables["tickets"])
    assert data.quality.total_quarantined == 0


# --- snapshot round trip -----------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path, params, week_data):
    folder = tmp_path / "snapshot"
    week_data.save(folder)
    back = WeekData.load(folder, params)
    assert back.week == week_data.week
    assert list(back.tables) == list(week_data.tables)
    for name, frame in week_data.tables.items():
        pd.testing.assert_frame_equal(back.tables[name], frame)
    for name, frame in week_data.quality.quarantined.items():
        pd.testing.assert_frame_equal(back.quality.quarantined[name], frame)
    assert back.quality.entries == week_data.quality.entries
    assert (back.quality.loaded, back.quality.kept) == (
        week_data.quality.loaded,
        week_data.quality.kept,
    )
    assert back.sources == week_data.sources
    orders = back.tables["orders"]
    assert orders["order_id"].dtype == "str"
    assert str(orders["created_at"].dtype) == f"datetime64[us, {TZ}]"
    assert list(orders["order_type"].cat.categories) == ["normal", "special", "after_sales"]


def _as_if_large(monkeypatch, folder: Path, gib: int) -> None:
    """Make the snapshot in ``folder`` count as ``gib`` GiB of data (a 64 GiB machine, a
    new shared engine)."""
    size = engine.parquet_data_bytes((folder / "tables").rglob("*.parquet"))
    monkeypatch.setattr(engine, "_OPEN", {})
    monkeypatch.setattr(engine, "machine_memory", lambda: 64 << 30)
    monkeypatch.setattr(engine, "DATA_MEMORY_SHARE", (gib << 30) / size)


def test_a_large_snapshot_raises_the_shared_engines_memory_limit(
    tmp_path, params, week_data, monkeypatch
):
    week_data.save(tmp_path / "snap")
    _as_if_large(monkeypatch, tmp_path / "snap", 10)
    back = WeekData.load(tmp_path / "snap", params)
    own = engine.connect(engine.EngineSettings(memory_limit="1GiB", threads=1))
    back.engine_tables(own)
    back.engine_tables()
    # the kernel's engine: the data's share (10 GiB, under a quarter of the machine)
    assert engine.memory_limit_bytes(engine.shared(params.engine)) == pytest.approx(
        10 << 30, rel=0.01
    )
    # an engine of the caller's own (the explorer's) keeps its limit
    assert engine.memory_limit_bytes(own) == pytest.approx(1 << 30, rel=0.01)


def test_a_memory_limit_in_params_is_kept_whatever_the_data(tmp_path, week_data, monkeypatch):
    week_data.save(tmp_path / "snap")
    _as_if_large(monkeypatch, tmp_path / "snap", 10)
    limited = make_params(tmp_path, FIXTURE, engine="{memory_limit: 1GiB}")
    WeekData.load(tmp_path / "snap", limited).engine_tables()
    assert engine.memory_limit_bytes(engine.shared(limited.engine)) == pytest.approx(
        1 << 30, rel=0.01
    )


def test_a_large_source_raises_the_loaders_memory_limit(params, monkeypatch):
    monkeypatch.setattr(engine, "_OPEN", {})
    monkeypatch.setattr(engine, "machine_memory", lambda: 64 << 30)
    # any source counts as huge: the limit goes to its cap, a quarter of the machine
    monkeypatch.setattr(engine, "DATA_MEMORY_SHARE", 1e9)
    load_week(params, "2026-W10")
    limit = engine.memory_limit_bytes(engine.shared(params.engine))
    assert limit == pytest.approx(16 << 30, rel=0.01)


def test_load_with_other_timezone_is_refused(tmp_path, week_data):
    week_data.save(tmp_path / "snap")
    other = make_params(tmp_path, FIXTURE, timezone="UTC")
    with pytest.raises(Exception, match="timezone Asia/Shanghai, but the params say timezone UTC"):
        WeekData.load(tmp_path / "snap", other)


def test_load_without_snapshot(tmp_path, params):
    with pytest.raises(Exception, match="meta.json is missing"):
        WeekData.load(tmp_path / "nothing", params)


# --- membership in the loaded orders, checked against pandas -------------------------------


def test_orders_loaded_matches_isin():
    rng = np.random.default_rng(5)
    ids = pd.Series(np.char.add("ORD-0000-", rng.permutation(5_000).astype(str)), dtype="str")

    def probe(n: int) -> pd.Series:
        values = np.char.add("ORD-0000-", rng.integers(0, 8_000, n).astype(str))
        return pd.Series(values, dtype="str").mask(rng.random(n) < 0.05)

    frames = {
        "settlements": pd.DataFrame({"order_id": probe(3_000)}),
        "tickets": pd.DataFrame({"order_id": probe(2_000)}),
        "after_sales": pd.DataFrame({"order_id": probe(0)}),
    }
    got = orders_loaded(frames, ids)
    s, t = frames["settlements"]["order_id"], frames["tickets"]["order_id"]
    assert (got["settlements"] == s.isin(ids).to_numpy()).all()
    assert (got["tickets"] == (t.isin(ids) | t.isna()).to_numpy()).all()
    assert len(got["after_sales"]) == 0
    assert not orders_loaded(frames, ids.iloc[:0])["settlements"].any()


# --- the latest complete week ----------------------------------------------------------------


def _counts_params(tmp_path, rows: list[str]):
    from meetinglib.core.params import load_params

    folder = tmp_path / "src"
    folder.mkdir()
    lines = ["order_id,order_type,created_at"] + [
        f"O{i},normal,{when}" for i, when in enumerate(rows)
    ]
    (folder / "orders.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    path = tmp_path / "p.yaml"
    path.write_text(
        f"company: T\ntimezone: Asia/Shanghai\nsource: {{path: '{folder}'}}\n", encoding="utf-8"
    )
    return load_params(path)


def _week_of_orders(monday: str, n: int) -> list[str]:
    start = pd.Timestamp(monday)
    return [str(start + pd.Timedelta(hours=(i * 160) // max(n, 1))) for i in range(n)]


def test_latest_complete_week_skips_a_tailing_off_extract_and_a_far_future_date(tmp_path):
    from meetinglib.data.dataset import resolve_week

    rows = []
    for monday in ("2026-10-26", "2026-11-02", "2026-11-09", "2026-11-16"):
        rows += _week_of_orders(monday, 20)
    rows += _week_of_orders("2026-11-23", 3)  # the extract tails off: 3 orders, to Sunday
    rows += ["2026-11-29 23:00:00"]
    rows += ["2031-02-27 10:00:00"]  # one order dated 2031
    params = _counts_params(tmp_path, rows)
    # By hand: W48 has 4 orders < 0.5 x median 20 of the weeks before; W47 has 20.
    assert str(resolve_week(params, None)) == "2026-W47"


def test_no_data_hint_names_a_week_that_has_orders(tmp_path):
    from meetinglib.core.errors import NoDataError
    from meetinglib.data.dataset import load_week

    rows = _week_of_orders("2026-11-02", 10) + _week_of_orders("2026-11-16", 10)
    params = _counts_params(tmp_path, rows)
    with pytest.raises(NoDataError, match=r"weeks 2026-W45 to 2026-W47.*--week 2026-W47"):
        load_week(params, "2026-W46")


def test_report_week_past_the_limit_warns_in_the_headline(tmp_path):
    from meetinglib.data.dataset import load_week
    from meetinglib.report.data_report import DataReport

    rows = []
    for monday in pd.date_range("2026-09-07", periods=10, freq="7D"):
        rows += _week_of_orders(str(monday.date()), 100)
    # 14 of the report week's 100 rows have an unparseable payment time: 1.4 % of the file
    # (under the 2 % limit), 14 % of the week.
    params = _counts_params(tmp_path, rows)
    path = params.source.path / "orders.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[0] += ",paid_at"
    for i in range(1, len(lines)):
        lines[i] += ",soon" if i > len(lines) - 1 - 100 and i % 7 == 0 else ","
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    bad = sum(1 for line in lines[-100:] if line.endswith(",soon"))
    data = load_week(params, "2026-W46")
    assert data.quality.week_warnings == [("orders", bad, 100)]
    assert bad == 14  # lines 903..1001 with a number divisible by 7
    note = DataReport(data, "en").headline_note().data
    assert f"Data quality warning: {bad} of 100 orders rows of this week (14.0%)" in note


def test_engine_tables_hold_the_loaded_rows(week_data):
    # Counted by the engine, against the pandas frames the same load produced.
    con = engine.shared(week_data.params.engine)
    tables = week_data.engine_tables()
    assert set(tables) == set(week_data.tables)
    for name, frame in week_data.tables.items():
        assert con.execute(tables[name].count()) == len(frame), name
    ids = con.execute(tables["orders"].select("order_id"))["order_id"]
    assert sorted(ids) == sorted(week_data.tables["orders"]["order_id"].astype(str))
