"""CSV and XLSX sources on the engine equal the pandas path; their conversion is cached.

The engine path (``load_engine`` over ``source_cache``'s Parquet conversion, text parsed
by ``parse_engine``) is compared with the pandas path (``sources`` + ``validate``), an
independent implementation, on real CSV (UTF-8 and GBK) and XLSX files written from the
sample, clean and with bad rows of every rule planted as text.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from meetinglib.core.params import load_params
from meetinglib.data import source_cache
from meetinglib.data.dataset import load_week
from tests.test_load_engine import END, TZ, WEEK, assert_same, write_params

pytest.importorskip("openpyxl")


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    from meetinglib.data.sample import generate_sample

    folder = tmp_path_factory.mktemp("sample")
    generate_sample(folder, weeks=4, orders_per_week=300, end_week=END, tz=TZ)
    return folder


def _planted_orders(sample: Path) -> pd.DataFrame:
    frame = pd.read_parquet(sample / "orders.parquet")
    text = frame.astype(object)
    for column in ("created_at", "paid_at", "shipped_at", "delivered_at", "cancelled_at"):
        if column in text:
            values = frame[column].dt.strftime("%Y-%m-%d %H:%M:%S%z")
            text[column] = values.where(frame[column].notna(), None)
    rows = {
        0: {"order_id": "O\x00BAD"},
        1: {"order_id": "X" * 1001},
        2: {"order_id": "O-\ufffd-1"},
        3: {"order_type": "NULL"},
        4: {"paid_at": "1990-01-01 08:00:00"},  # naive: the table's zone
        5: {"amount": "1,234.50"},  # thousands: validation's own parse
        6: {"amount": "abc"},
        7: {"order_type": " Weird "},
        8: {"amount": "-5"},
        9: {"order_id": text["order_id"].iloc[30]},
        10: {"paid_at": "garbage"},
        11: {"shipped_at": "2026/02/25 10:00:00"},  # a guessed format
        12: {"created_at": "2026-02-25T10:00:00Z"},
        13: {"amount": " 12.5 "},
        14: {"delivered_at": "2031-01-01 00:00:00"},
        15: {"amount": "inf"},
        16: {"paid_at": "2026-02-30 10:00:00"},  # no such day
        17: {"amount": "1e3"},
        18: {"created_at": "2026-02-25 10:00"},
        19: {"amount": "N/A"},
        # Day-first dates: told by the column's 25th, not by the example row's own value.
        20: {"promised_delivery_by": "25/02/2026 10:00:00"},
        21: {"promised_delivery_by": "05/02/2026 10:00:00", "amount": "abc"},
    }
    for i, values in rows.items():
        for column, value in values.items():
            text.at[i, column] = value
    return text


@pytest.fixture(scope="module")
def dirty_csv(sample, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("dirty_csv")
    _planted_orders(sample).to_csv(folder / "orders.csv", index=False)
    for path in sample.glob("*.parquet"):
        if path.stem != "orders":
            pd.read_parquet(path).to_csv(folder / f"{path.stem}.csv", index=False)
    return folder


def _both(params_path: Path):
    params = load_params(params_path)
    return load_week(params, WEEK, on_engine=False), load_week(params, WEEK)


def test_csv_with_bad_rows_of_every_rule_equals_the_pandas_path(dirty_csv, tmp_path):
    pandas_week, engine_week = _both(write_params(tmp_path, dirty_csv))
    assert set(engine_week.load_paths.values()) == {"engine"}
    assert_same(pandas_week, engine_week)
    rules = {e.rule for e in engine_week.quality.entries if e.table == "orders"}
    for rule in (
        "nul byte",
        "field too long",
        "replacement character",
        "required value missing",
        "unparseable timestamp",
        "implausible date",
        "not a number",
        "unknown value",
        "out of range",
        "duplicate key",
    ):
        assert rule in rules, rule
    assert {i.format for i in engine_week.sources} == {"csv"}


def test_a_parsed_csv_cleans_each_columns_text_once_per_query(dirty_csv, tmp_path, monkeypatch):
    """A parse written as one expression repeats its column's cleaning in every field it
    reads and every check that reads the value: SQL is a tree. The load's queries of this
    CSV were then half a megabyte each (over a thousand regular-expression replacements),
    seconds of planning per query whatever the rows. Staged, a column's text is cleaned
    in one place of each query."""
    import ibis.backends.duckdb as duckdb_backend

    compiled: list[str] = []
    compile_ = duckdb_backend.Backend.compile

    def recording(self, *args, **kwargs):
        sql = compile_(self, *args, **kwargs)
        compiled.append(sql)
        return sql

    monkeypatch.setattr(duckdb_backend.Backend, "compile", recording)
    week = load_week(load_params(write_params(tmp_path, dirty_csv)), WEEK)
    assert week.load_paths["orders"] == "engine"
    columns = len(pd.read_csv(dirty_csv / "orders.csv", nrows=0).columns)
    longest = max(compiled, key=len)
    # stripped_text: one replacement per column, read twice (placeholder test, value)
    assert longest.count("REGEXP_REPLACE(") <= 2 * columns


def test_naive_csv_times_of_a_zone_with_daylight_saving_equal_the_pandas_path(sample, tmp_path):
    """Wall-clock texts of a zone whose offset changes: every parsed value goes through
    the changes of the whole plausible span, in the staged parse of each column; the
    times in the spring gap and in the autumn's repeated hour are among them."""
    zone = "Europe/Berlin"
    folder = tmp_path / "berlin"
    folder.mkdir()
    frame = pd.read_parquet(sample / "orders.parquet")
    text = frame.astype(object)
    for column in ("created_at", "paid_at", "shipped_at", "delivered_at", "cancelled_at"):
        local = frame[column].dt.tz_convert(zone).dt.strftime("%Y-%m-%d %H:%M:%S")
        text[column] = local.where(frame[column].notna(), None)
    # Orders of the report week (2026-W10): their rows are in the week's tables.
    created = frame["created_at"].dt.tz_convert(TZ)
    week = frame.index[(created >= "2026-03-02") & (created < "2026-03-09")][-3:]
    for i, (paid, shipped) in zip(
        week,
        [
            ("2026-03-29 02:30:00", "2026-03-29 03:00:00"),  # the gap, and just after it
            ("2025-10-26 02:30:00", "2025-10-26 02:59:59"),  # the hour that occurs twice
            ("2025-03-30 01:59:59", "2025-10-26 03:00:00"),
        ],
        strict=True,
    ):
        text.at[i, "paid_at"], text.at[i, "shipped_at"] = paid, shipped
    text.to_csv(folder / "orders.csv", index=False)
    path = tmp_path / "params.yaml"
    path.write_text(
        f"company: Test Shop\ntimezone: {TZ}\nhistory_weeks: 2\nopen_order_lookback_days: 7\n"
        "quality: {max_quarantine_share: 0.2, earliest_date: 2024-01-01}\n"
        f"source:\n  kind: folder\n  path: '{folder}'\n  tables:\n"
        f"    orders: {{timezone: {zone}}}\n",
        encoding="utf-8",
    )
    pandas_week, engine_week = _both(path)
    assert engine_week.load_paths == {"orders": "engine"}
    assert_same(pandas_week, engine_week)
    orders = engine_week.tables["orders"].set_index("order_id")
    planted = orders.loc[frame.loc[week, "order_id"].astype(str), "paid_at"]
    assert planted.notna().all()


def test_gbk_csv_with_a_delimiter_and_value_maps(sample, tmp_path):
    folder = tmp_path / "gbk"
    folder.mkdir()
    orders = pd.read_parquet(sample / "orders.parquet").rename(
        columns={"order_id": "订单号", "channel": "渠道"}
    )
    orders["渠道"] = orders["渠道"].astype("str").map({"app": "手机端"}).fillna("网页")
    orders.to_csv(folder / "orders.csv", index=False, sep=";", encoding="gbk")
    extra = (
        "source:\n  kind: folder\n  path: '" + str(folder) + "'\n  tables:\n"
        "    orders: {encoding: gbk, delimiter: ';', columns: {订单号: order_id, 渠道: channel},"
        " values: {channel: {手机端: app, 网页: web}}}\n"
    )
    path = tmp_path / "params.yaml"
    path.write_text(
        f"company: Test Shop\ntimezone: {TZ}\nhistory_weeks: 2\nopen_order_lookback_days: 7\n"
        "quality: {max_quarantine_share: 0.2}\n" + extra,
        encoding="utf-8",
    )
    pandas_week, engine_week = _both(path)
    assert engine_week.load_paths == {"orders": "engine"}
    assert_same(pandas_week, engine_week)
    assert set(engine_week.tables["orders"]["channel"].dropna()) == {"app", "web"}


def _xlsx_folder(sample: Path, folder: Path) -> Path:
    folder.mkdir()
    orders = pd.read_parquet(sample / "orders.parquet")
    for column in orders.columns:
        if isinstance(orders[column].dtype, pd.DatetimeTZDtype):
            # Excel has no zones: wall-clock times of the table's zone, as date cells.
            orders[column] = orders[column].dt.tz_convert(TZ).dt.tz_localize(None)
    orders = orders.astype({c: object for c in orders.columns})
    orders.at[0, "amount"] = "12,5x"
    orders.at[1, "paid_at"] = pd.NaT
    orders.to_excel(folder / "orders.xlsx", index=False)
    return folder


def test_xlsx_equals_the_pandas_path_and_is_converted_once(sample, tmp_path):
    folder = _xlsx_folder(sample, tmp_path / "xlsx")
    params_path = write_params(tmp_path, folder)
    pandas_week, engine_week = _both(params_path)
    assert engine_week.load_paths == {"orders": "engine"}
    assert_same(pandas_week, engine_week)
    cached = sorted(source_cache.cache_dir().glob("*.parquet"))
    # A second load finds the conversion: no new file, the same one not written again (a
    # conversion replaces the file: another inode).
    before = {p: p.stat().st_ino for p in cached}
    again = load_week(load_params(params_path), WEEK)
    assert_same(pandas_week, again)
    assert {p: p.stat().st_ino for p in source_cache.cache_dir().glob("*.parquet")} == before
    # An edited workbook is converted again, and read as edited.
    workbook = folder / "orders.xlsx"
    frame = pd.read_excel(workbook, dtype=str)
    frame.loc[2, "order_type"] = "weird"
    time.sleep(0.01)
    frame.to_excel(workbook, index=False)
    edited_pandas, edited_engine = _both(params_path)
    assert_same(edited_pandas, edited_engine)
    after = set(source_cache.cache_dir().glob("*.parquet"))
    assert len(after - set(before)) == 1
    assert any(e.rule == "unknown value" for e in edited_engine.quality.entries)


def _titled(pandas_week, engine_week, untitled, above: int) -> None:
    """A titled export read with header_row: the engine path equals the pandas path, and
    both equal the untitled export's week but for the rows a person finds, ``above``
    lower in the file."""
    assert engine_week.load_paths["orders"] == "engine"
    assert_same(pandas_week, engine_week)
    for name, frame in untitled.tables.items():
        pd.testing.assert_frame_equal(engine_week.tables[name], frame)
    shown = [(e.table, e.column, e.rule, e.rows) for e in engine_week.quality.entries]
    assert shown == [(e.table, e.column, e.rule, e.rows) for e in untitled.quality.entries]
    aside = engine_week.quality.quarantined["orders"]
    before = untitled.quality.quarantined["orders"]
    assert len(aside) == len(before) > 0
    assert aside["_source_row"].tolist() == (before["_source_row"] + above).tolist()


def test_a_csv_title_is_skipped_on_both_paths_and_rows_keep_their_lines(dirty_csv, tmp_path):
    folder = tmp_path / "titled"
    folder.mkdir()
    for path in dirty_csv.glob("*.csv"):
        (folder / path.name).write_bytes(path.read_bytes())
    orders = folder / "orders.csv"
    orders.write_bytes("订单报表 2026-W10\n\n".encode() + orders.read_bytes())
    titled = write_params(tmp_path, folder, tables="{orders: {header_row: 3}}")
    (tmp_path / "untitled").mkdir()
    untitled = load_week(load_params(write_params(tmp_path / "untitled", dirty_csv)), WEEK)
    _titled(*_both(titled), untitled, above=2)


def test_an_xlsx_title_is_skipped_on_both_paths_and_rows_keep_their_sheet_rows(sample, tmp_path):
    from openpyxl import load_workbook

    plain = _xlsx_folder(sample, tmp_path / "plain")
    (tmp_path / "untitled").mkdir()
    untitled = load_week(load_params(write_params(tmp_path / "untitled", plain)), WEEK)
    folder = tmp_path / "titled"
    folder.mkdir()
    book = load_workbook(plain / "orders.xlsx")
    sheet = book.active
    width = sheet.max_column
    sheet.insert_rows(1, amount=2)  # a title merged across the header, an empty row
    sheet.cell(row=1, column=1, value="订单报表 2026-W07 至 2026-W10")
    sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=width)
    book.save(folder / "orders.xlsx")
    titled = write_params(tmp_path, folder, tables="{orders: {header_row: 3}}")
    _titled(*_both(titled), untitled, above=2)


def test_cache_key_follows_content_and_settings(sample, tmp_path):
    from meetinglib.core.params import TableSource
    from meetinglib.core.schema import SCHEMAS
    from meetinglib.data import sources

    path = tmp_path / "orders.csv"
    pd.read_parquet(sample / "orders.parquet").to_csv(path, index=False)
    schema = SCHEMAS["orders"]
    key = source_cache.cache_key(path, "csv", schema, TableSource(), TZ)
    assert key == source_cache.cache_key(path, "csv", schema, TableSource(), TZ)
    assert key != source_cache.cache_key(path, "csv", schema, TableSource(delimiter=";"), TZ)
    # Another header row reads other rows: a conversion of its own.
    assert key != source_cache.cache_key(path, "csv", schema, TableSource(header_row=2), TZ)
    stat = path.stat()
    data = path.read_bytes()
    path.write_bytes(data.replace(b"app", b"APP", 1))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and time
    sources._sha256_of.cache_clear()  # as in the next run: the digest is taken again
    assert source_cache.cache_key(path, "csv", schema, TableSource(), TZ) != key


def test_a_conversion_is_written_whole_under_its_name(sample, tmp_path):
    from meetinglib.core.params import TableSource
    from meetinglib.core.schema import SCHEMAS
    from meetinglib.data import sources

    path = tmp_path / "orders.csv"
    pd.read_parquet(sample / "orders.parquet").to_csv(path, index=False)
    reader = sources.READERS["csv"]
    first = source_cache.converted(path, reader, SCHEMAS["orders"], TableSource(), TZ)
    second = source_cache.converted(path, reader, SCHEMAS["orders"], TableSource(), TZ)
    assert first == second
    assert not list(first.parent.glob(f"{first.stem}*.tmp"))
    rows = pd.read_parquet(first)["_source_row"].to_numpy()
    np.testing.assert_array_equal(rows, np.arange(2, len(rows) + 2))


@pytest.mark.parametrize(
    ("name", "text", "encoding"),
    [
        ("plain", 'order_id,sku,qty\nA1,S1,1.5\n\nA2,"S, 2",\nA3,,\n', "utf-8"),
        ("bom", "\ufefforder_id,sku,qty\r\nA1,S1,1\r\nA2,S2,2\r\n", "utf-8"),
        ("gbk", "order_id,sku,qty\nA1,手机,1\nA2,网页,2\n", "gbk"),
        ("line break", 'order_id,sku,qty\nA1,"two\nlines",1\nA2,S2,2\n', "utf-8"),
        ("short row", "order_id,sku,qty\nA1,S1,1\nA2\n", "utf-8"),
    ],
)
def test_a_streamed_csv_reads_as_the_pandas_reader_reads_it(name, text, encoding, tmp_path):
    from meetinglib.core.params import TableSource
    from meetinglib.core.schema import SCHEMAS, WRONG_FIELDS_COL
    from meetinglib.data import sources

    path = tmp_path / "order_lines.csv"
    path.write_bytes(text.encode(encoding))
    ts = TableSource(encoding=encoding if encoding != "utf-8" else "auto")
    schema = SCHEMAS["order_lines"]
    expected = sources.READERS["csv"].read_table([path], schema, ts, None, TZ)
    cached = pd.read_parquet(source_cache.converted(path, sources.READERS["csv"], schema, ts, TZ))
    # Plain files stream a block at a time; the others are read whole, as the pandas path.
    trial = tmp_path / "trial.parquet"
    assert source_cache._stream_csv(path, schema, ts, trial) is (name in ("plain", "bom", "gbk"))
    wrong = int(expected.pop(WRONG_FIELDS_COL).sum()) if WRONG_FIELDS_COL in expected else 0
    assert (
        source_cache.wrong_field_rows(
            source_cache.converted(path, sources.READERS["csv"], schema, ts, TZ)
        )
        == wrong
    )
    assert list(cached.columns) == list(expected.columns)
    for column in expected.columns:
        left = expected[column].astype(object).where(expected[column].notna(), None).tolist()
        right = cached[column].astype(object).where(cached[column].notna(), None).tolist()
        assert [None if v is None else str(v) for v in left] == [
            None if v is None else str(v) for v in right
        ], column


def _csv_source(sample: Path, path: Path) -> Path:
    pd.read_parquet(sample / "orders.parquet").head(50).to_csv(path, index=False)
    return path


def _convert(path: Path) -> Path:
    from meetinglib.core.params import TableSource
    from meetinglib.core.schema import SCHEMAS
    from meetinglib.data import sources

    return source_cache.converted(
        path, sources.READERS["csv"], SCHEMAS["orders"], TableSource(), TZ
    )


def _unused_for(path: Path, delta) -> None:
    then = time.time() - delta.total_seconds()
    os.utime(path, (then, then))


@pytest.fixture
def own_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MEETINGLIB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "sources"


def test_an_export_replaced_each_week_keeps_one_entry(sample, tmp_path, own_cache):
    from meetinglib.data import sources

    path = _csv_source(sample, tmp_path / "orders.csv")

    def export(rows: int) -> Path:
        pd.read_parquet(sample / "orders.parquet").head(rows).to_csv(path, index=False)
        sources._sha256_of.cache_clear()  # as in the next run: the digest is taken again
        return _convert(path)

    first = _convert(path)
    # The next export in the same place supersedes the first entry, which a run of the
    # hour may still be reading: it stays until unused for SUPERSEDED_AFTER.
    second = export(60)
    assert sorted(own_cache.iterdir()) == sorted([first, second])
    # A week later, the next export: both earlier entries go.
    for entry in (first, second):
        _unused_for(entry, dt.timedelta(days=7))
    third = export(70)
    assert sorted(own_cache.iterdir()) == [third]
    assert len(pd.read_parquet(third)) == 70


def test_entries_unused_for_long_go_and_entries_in_use_stay(sample, tmp_path, own_cache):
    other = _convert(_csv_source(sample, tmp_path / "orders_2026-W40.csv"))
    used = _convert(_csv_source(sample, tmp_path / "orders_2026-W41.csv"))
    # Both untouched for longer than UNUSED_AFTER; a run then finds the second again,
    # which marks it in use.
    for entry in (other, used):
        _unused_for(entry, source_cache.UNUSED_AFTER * 1.1)
    assert _convert(tmp_path / "orders_2026-W41.csv") == used
    left = own_cache / f"{used.stem}.abc.tmp"  # a conversion cut short, a day ago
    left.write_bytes(b"partial")
    _unused_for(left, dt.timedelta(days=1))
    young = own_cache / f"{used.stem}.def.tmp"  # one being written now
    young.write_bytes(b"partial")
    newest = _convert(_csv_source(sample, tmp_path / "orders_2026-W42.csv"))
    assert sorted(own_cache.iterdir()) == sorted([used, newest, young])


def test_prune_passes_over_what_it_cannot_remove(tmp_path, monkeypatch):
    folder = tmp_path / "sources"
    folder.mkdir()
    old = folder / "0123456789abcdef-aa.parquet"
    old.write_bytes(b"x")
    _unused_for(old, source_cache.UNUSED_AFTER * 2)
    other = folder / "notes.txt"  # not the cache's: never touched
    other.write_text("mine")
    _unused_for(other, source_cache.UNUSED_AFTER * 2)

    def refuse(self, missing_ok=False):
        raise PermissionError(f"read-only: {self}")

    monkeypatch.setattr(Path, "unlink", refuse)
    assert source_cache.prune(folder) == []
    monkeypatch.undo()
    assert source_cache.prune(folder) == [old]
    assert sorted(folder.iterdir()) == [other]
