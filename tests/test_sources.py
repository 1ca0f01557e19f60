"""Tests of meetinglib.data.sources: every format and encoding gives the same canonical table.

Expected values are built from the fixture CSV with the standard library (csv,
datetime), independently of pandas and of the code under test.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from meetinglib.core.errors import (
    DriverMissingError,
    InvalidParamError,
    MissingColumnError,
    SourceNotFoundError,
    SourceUnreachableError,
    UnreadableSourceError,
)
from meetinglib.core.params import load_params
from meetinglib.core.weeks import IsoWeek
from meetinglib.data import sources
from meetinglib.data.sources import available_tables, last_event_time, read_table
from meetinglib.data.validate import validate_table

DATA = Path(__file__).parent / "data" / "sources"
TZ = "Asia/Shanghai"
TIMESTAMPS = ("created_at", "paid_at", "shipped_at", "delivered_at")
COLUMNS = (
    "order_id",
    "order_type",
    *TIMESTAMPS,
    "warehouse",
    "carrier",
    "amount",
    "exception_code",
)
WEEK = IsoWeek(2026, 2)  # Monday 2026-01-05 00:00 to Monday 2026-01-12 00:00, Shanghai


def _expected_rows() -> list[dict[str, object]]:
    """The fixture orders as plain Python values: naive local datetimes, floats, None."""
    with (DATA / "orders.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for r in rows:
        row: dict[str, object] = {c: (r[c] or None) for c in COLUMNS}
        for c in TIMESTAMPS:
            row[c] = dt.datetime.strptime(r[c], "%Y-%m-%d %H:%M:%S") if r[c] else None
        row["amount"] = float(r["amount"])
        out.append(row)
    return out


EXPECTED = _expected_rows()
EXPECTED_IDS = [r["order_id"] for r in EXPECTED]


def _in_week(row: dict[str, object]) -> bool:
    return dt.datetime(2026, 1, 5) <= row["created_at"] < dt.datetime(2026, 1, 12)


WEEK_IDS = sorted(r["order_id"] for r in EXPECTED if _in_week(r))


def _params(*files: Path | str, folder: Path | None = None, **tables: dict):
    """Params over base.yaml (+ files), optionally another folder and per-table settings."""
    source: dict[str, object] = {}
    if folder is not None:
        source["path"] = str(folder)
    if tables:
        source["tables"] = tables
    return load_params(DATA / "base.yaml", *files, overrides={"source": source})


def _sql_params(db: Path, **tables: dict):
    return load_params(
        DATA / "base.yaml",
        overrides={"source": {"kind": "sql", "url": f"sqlite:///{db}", "tables": tables}},
    )


def _normalised(raw: sources.RawTable) -> list[dict[str, object]]:
    """The frame's rows as plain Python values, timestamps parsed to naive local time."""
    frame = raw.frame
    columns = {}
    for c in COLUMNS:
        s = frame[c]
        if c in TIMESTAMPS:
            if not pd.api.types.is_datetime64_any_dtype(s.dtype):
                s = pd.to_datetime(s, format=raw.timestamp_format or "ISO8601")
            if s.dt.tz is not None:
                s = s.dt.tz_convert(raw.timezone).dt.tz_localize(None)
            columns[c] = [None if pd.isna(v) else v.to_pydatetime() for v in s]
        elif c == "amount":
            columns[c] = [float(v) for v in s]
        else:
            columns[c] = [None if pd.isna(v) else str(v) for v in s]
    return [{c: columns[c][i] for c in COLUMNS} for i in range(len(frame))]


def _canonical_frame(aware: bool = False) -> pd.DataFrame:
    frame = pd.DataFrame(EXPECTED)
    for c in TIMESTAMPS:
        frame[c] = pd.to_datetime(frame[c])
        if aware:
            frame[c] = frame[c].dt.tz_localize(TZ)
    frame["remark"] = "x"
    return frame


def _write_parquet(folder: Path, frame: pd.DataFrame, name: str = "orders.parquet", **kw) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, **kw)
    return path


def _write_sqlite(path: Path, frame: pd.DataFrame, table: str = "orders") -> Path:
    engine = sa.create_engine(f"sqlite:///{path}")
    frame.to_sql(table, engine, index=False, if_exists="replace")
    engine.dispose()
    return path


# --- one canonical table from every format and encoding -----------------------------


def _read_variant(variant: str, tmp_path: Path) -> sources.RawTable:
    gbk = DATA / "mapping_gbk.yaml"
    if variant == "csv":
        return read_table(_params(), "orders")
    if variant == "csv_bom":
        return read_table(_params(orders={"file": "orders_bom.csv"}), "orders")
    if variant == "csv_bom_auto":
        return read_table(_params(orders={"file": "orders_bom.csv", "encoding": "auto"}), "orders")
    if variant == "gbk":
        return read_table(_params(gbk), "orders")
    if variant == "gbk_as_gb18030":
        return read_table(_params(gbk, orders={"encoding": "gb18030"}), "orders")
    if variant == "gbk_auto":
        return read_table(_params(gbk, orders={"encoding": "auto"}), "orders")
    if variant == "xlsx":
        return read_table(_params(orders={"file": "orders.xlsx", "sheet": "orders"}), "orders")
    if variant == "parquet":
        _write_parquet(tmp_path, _canonical_frame(aware=True))
        return read_table(_params(folder=tmp_path), "orders")
    if variant == "sql":
        db = _write_sqlite(tmp_path / "shop.db", _canonical_frame())
        return read_table(_sql_params(db), "orders")
    raise AssertionError(variant)


@pytest.mark.parametrize(
    "variant",
    [
        "csv",
        "csv_bom",
        "csv_bom_auto",
        "gbk",
        "gbk_as_gb18030",
        "gbk_auto",
        "xlsx",
        "parquet",
        "sql",
    ],
)
def test_every_format_and_encoding_gives_the_same_canonical_table(variant, tmp_path):
    raw = _read_variant(variant, tmp_path)
    assert raw.table == "orders"
    assert list(raw.frame.columns) == [*COLUMNS, "_source_row"]
    assert raw.frame["_source_row"].dtype == "Int64"
    assert _normalised(raw) == EXPECTED
    assert raw.info.rows == 8
    assert raw.timezone == TZ


def test_ids_stay_text_with_leading_zeros():
    frame = read_table(_params(), "orders").frame
    assert frame["order_id"].tolist() == EXPECTED_IDS
    assert frame["order_id"].iloc[0] == "00123"
    # Timestamps and numbers of a CSV are left as text for validation to parse.
    assert frame["created_at"].iloc[0] == "2026-01-04 23:59:00"
    assert frame["amount"].iloc[0] == "199.00"


def test_chinese_column_names_and_values_are_mapped():
    raw = read_table(_params(DATA / "mapping_gbk.yaml"), "orders")
    frame = raw.frame
    assert frame["order_type"].tolist() == [
        "normal", "special", "after_sales", "normal", "normal", "special", "normal", "after_sales",
    ]  # fmt: skip
    # 缺货 -> stockout; 无 -> "" -> NA, like the empty cells.
    assert frame["exception_code"].isna().tolist() == [
        True, False, True, True, True, False, True, True,
    ]  # fmt: skip
    assert set(frame["exception_code"].dropna()) == {"stockout"}
    assert frame["carrier"].tolist() == ["SF", "JD", "SF", "YTO", "SF", "JD", "ZTO", "SF"]
    assert raw.timestamp_format == "%Y/%m/%d %H:%M"
    assert frame["created_at"].iloc[0] == "2026/01/04 23:59"


def test_unknown_values_pass_through_and_blanks_become_na(tmp_path):
    (tmp_path / "orders.csv").write_text(
        "order_id,order_type,created_at,exception_code,region\n"
        "1,普通,2026-01-05 10:00,缺货,\n"
        "2,加急, 2026-01-05 11:00 ,丢件, NA\n",
        encoding="utf-8",
    )
    values = {"order_type": {"普通": "normal"}, "exception_code": {"缺货": "stockout"}}
    frame = read_table(_params(folder=tmp_path, orders={"values": values}), "orders").frame
    assert frame["order_type"].tolist() == ["normal", "加急"]
    assert frame["exception_code"].tolist() == ["stockout", "丢件"]
    # "NA" is a region code, not a missing value; only the empty cell is missing.
    assert frame["region"].isna().tolist() == [True, False]
    assert frame["region"].iloc[1] == "NA"
    # Text of non-category columns is passed on as written.
    assert frame["created_at"].iloc[1] == " 2026-01-05 11:00 "


# --- encodings ---------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "auto", "gbk"])
def test_a_bom_never_reaches_the_first_column_name(encoding):
    raw = read_table(_params(orders={"file": "orders_bom.csv", "encoding": encoding}), "orders")
    assert raw.frame.columns[0] == "order_id"
    assert not any("\ufeff" in c for c in raw.frame.columns)
    assert raw.frame["order_id"].tolist() == EXPECTED_IDS


def test_gbk_file_read_as_utf8_names_file_encoding_and_fix():
    params = _params(DATA / "mapping_gbk.yaml", orders={"encoding": "utf-8"})
    with pytest.raises(
        UnreadableSourceError,
        match=r"cannot decode orders_gbk\.csv \(.*orders_gbk\.csv\) as utf-8: .*"
        r"Set `encoding: gb18030` .* or `encoding: utf-8-sig`",
    ):
        read_table(params, "orders")


def test_unknown_encoding_is_a_params_error():
    with pytest.raises(InvalidParamError, match=r"source\.tables\.orders\.encoding.*'latin-9x'"):
        read_table(_params(orders={"encoding": "latin-9x"}), "orders")


# --- missing columns, tables and folders -------------------------------------------------


def test_missing_mapped_column_names_file_column_and_columns_found(tmp_path):
    text = (DATA / "orders_gbk.csv").read_bytes().decode("gbk")
    lines = [",".join(c for i, c in enumerate(line.split(",")) if i != 4) for line in text.split()]
    (tmp_path / "orders.csv").write_text("\n".join(lines), encoding="utf-8")
    params = _params(
        DATA / "mapping_gbk.yaml",
        folder=tmp_path,
        orders={"file": "orders.csv", "encoding": "utf-8"},
    )
    # The company's own header is named, with the params key to correct it under.
    with pytest.raises(
        MissingColumnError,
        match=r"column 'shipped_at' not in orders.csv: the params map '发货时间' onto it, and "
        r"the source has no column of that name; columns found: .*Correct the name under "
        r"source\.tables\.orders\.columns",
    ) as err:
        read_table(params, "orders")
    header = ["订单号", "订单类型", "下单时间", "支付时间", "签收时间", "仓库", "承运商", "金额"]
    assert err.value.found == [*header, "异常代码", "备注"]


def test_missing_required_column(tmp_path):
    (tmp_path / "orders.csv").write_text("order_id,order_type,created\n1,normal,x\n")
    with pytest.raises(
        MissingColumnError,
        match=r"column 'created_at' not in orders.csv; columns found: \['order_id', "
        r"'order_type', 'created'\]\. Map the company's column name",
    ):
        read_table(_params(folder=tmp_path), "orders")


def test_mapping_onto_an_unknown_canonical_column_is_a_params_error():
    with pytest.raises(
        InvalidParamError, match=r"'order_no' is not a column of the canonical table 'orders'"
    ):
        read_table(_params(orders={"columns": {"订单号": "order_no"}}), "orders")


def test_two_columns_of_an_export_mapped_onto_one_is_a_params_error(tmp_path):
    (tmp_path / "orders.csv").write_text(
        "订单号,下单时间,支付时间,订单类型\nA1,2026-11-17 10:00,2026-11-17 10:05,normal\n",
        encoding="utf-8",
    )
    columns = {"订单号": "order_id", "订单类型": "order_type", "下单时间": "created_at",
               "支付时间": "created_at"}  # fmt: skip
    with pytest.raises(
        InvalidParamError,
        match=r"source\.tables\.orders\.columns.*'下单时间' and '支付时间' of orders\.csv are "
        r"both mapped onto 'created_at'",
    ):
        read_table(_params(folder=tmp_path, orders={"columns": columns}), "orders")
    # names mapped onto one column are alternatives: one export has one of them
    (tmp_path / "orders.csv").write_text(
        "订单号,下单时间,订单类型\nA1,2026-11-17 10:00,normal\n", encoding="utf-8"
    )
    got = read_table(_params(folder=tmp_path, orders={"columns": columns}), "orders")
    assert got.frame["created_at"].tolist() == ["2026-11-17 10:00"]


def test_missing_orders_table_names_folder_and_files_looked_for(tmp_path):
    with pytest.raises(
        SourceNotFoundError,
        match=rf"table 'orders' not found in {tmp_path}: looked for orders\.parquet, "
        r"orders\.csv, orders\.xlsx",
    ):
        read_table(_params(folder=tmp_path), "orders")


def test_optional_table_absent_is_none_but_a_configured_missing_file_is_an_error():
    assert read_table(_params(), "tickets") is None
    params = _params(tickets={"file": "tickets_*.csv"})
    assert available_tables(params) == ["orders", "tickets"]
    with pytest.raises(SourceNotFoundError, match=r"no file matching 'tickets_\*\.csv' in "):
        read_table(params, "tickets")


def test_missing_folder_names_the_path(tmp_path):
    missing = tmp_path / "exports"
    with pytest.raises(SourceNotFoundError, match=rf"source folder {missing} does not exist"):
        read_table(_params(folder=missing), "orders")


def test_available_tables_of_a_folder(tmp_path):
    assert available_tables(_params()) == ["orders"]
    _write_parquet(tmp_path, _canonical_frame())
    (tmp_path / "settlements.csv").write_text("order_id,amount,status\n1,2,settled\n")
    assert available_tables(_params(folder=tmp_path)) == ["orders", "settlements"]


# --- only what is needed is read --------------------------------------------------------


def test_csv_reads_only_the_canonical_columns(monkeypatch):
    calls = []
    real = pacsv.read_csv

    def spy(*args, convert_options, **kwargs):
        calls.append(convert_options.include_columns)
        return real(*args, convert_options=convert_options, **kwargs)

    monkeypatch.setattr(pacsv, "read_csv", spy)
    frame = read_table(_params(), "orders").frame
    # Columns are addressed by position: the first ten, not "remark" (the eleventh).
    assert calls == [[f"c{i}" for i in range(10)]]
    assert "remark" not in frame.columns


def test_csv_rows_with_a_wrong_field_count_are_flagged_with_their_line(tmp_path):
    # A truncated last line (fewer cells) and a long row (an unquoted delimiter): neither is
    # read as if its cells were right; validation sets them aside under their rule.
    (tmp_path / "orders.csv").write_text(
        "order_id,order_type,created_at,carrier\n1,normal,2026-01-05,SF\n"
        "2,normal,2026-01-06,SF,extra\n\n3,normal,2026-01-0"
    )
    raw = read_table(_params(folder=tmp_path), "orders")
    assert raw.frame["_source_row"].tolist() == [2, 3, 5]
    assert raw.frame["_wrong_fields"].tolist() == [False, True, True]
    clean, entries, quarantined = validate_table(raw, "Asia/Shanghai", 1.0)
    assert clean["order_id"].tolist() == ["1"]
    assert [(e.rule, e.rows) for e in entries][0] == ("wrong field count", 2)
    assert quarantined["_source_row"].tolist() == [3, 5]
    assert set(quarantined["_rule"]) == {"wrong field count"}


def test_tab_separated_file_and_a_bad_delimiter(tmp_path):
    (tmp_path / "orders.tsv").write_text("order_id\torder_type\tcreated_at\n007\tnormal\tx\n")
    params = _params(folder=tmp_path, orders={"file": "orders.tsv", "delimiter": "\t"})
    assert read_table(params, "orders").frame["order_id"].tolist() == ["007"]
    with pytest.raises(InvalidParamError, match=r"delimiter must be one character"):
        read_table(_params(orders={"delimiter": ";;"}), "orders")


def test_parquet_reads_only_the_canonical_columns(tmp_path, monkeypatch):
    _write_parquet(tmp_path, _canonical_frame(aware=True))
    read_columns = []
    real = pq.ParquetFile.read_row_groups

    def spy(self, row_groups, columns=None, **kwargs):
        read_columns.append(list(columns))
        return real(self, row_groups, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", spy)
    raw = read_table(_params(folder=tmp_path), "orders")
    assert read_columns == [list(COLUMNS)]
    assert "remark" not in raw.frame.columns
    # Low-cardinality text arrives as categories.
    assert isinstance(raw.frame["order_type"].dtype, pd.CategoricalDtype)


def test_sql_selects_named_quoted_columns_with_bound_window(tmp_path):
    frame = _canonical_frame()
    renamed = {"order_id": "订单 号", "order_type": "Order Type", "created_at": "select"}
    _write_sqlite(tmp_path / "shop.db", frame.rename(columns=renamed), table="Order Export")
    params = _sql_params(
        tmp_path / "shop.db",
        orders={"table": "Order Export", "columns": {v: k for k, v in renamed.items()}},
    )
    statements = []

    def listen(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", listen)
    try:
        raw = read_table(params, "orders", WEEK.window(TZ))
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", listen)
    select, parameters = next((s, p) for s, p in statements if 'FROM "Order Export"' in s)
    assert '"订单 号" AS order_id' in select
    assert '"select" AS created_at' in select
    assert "remark" not in select and "*" not in select
    # Window bounds travel as bound parameters, never inside the SQL text.
    assert "2026-01-05" not in select
    assert "2026-01-05" in parameters
    assert sorted(raw.frame["order_id"]) == WEEK_IDS


# --- windows ----------------------------------------------------------------------------


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "UTC", None])
def test_parquet_window_is_pushed_down_to_row_groups(tmp_path, monkeypatch, zone):
    frame = _canonical_frame().sort_values("created_at", ignore_index=True)
    for c in TIMESTAMPS:
        if zone is not None:
            frame[c] = frame[c].dt.tz_localize(TZ).dt.tz_convert(zone)
    _write_parquet(tmp_path, frame, row_group_size=2)
    groups_read = []
    real = pq.ParquetFile.read_row_groups

    def spy(self, row_groups, columns=None, **kwargs):
        groups_read.append(list(row_groups))
        return real(self, row_groups, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", spy)
    raw = read_table(_params(folder=tmp_path), "orders", WEEK.window(TZ))
    assert sorted(raw.frame["order_id"]) == WEEK_IDS
    # Sorted by time, 4 groups of 2: the first (Dec 30, Jan 4 23:59) holds no row of the week.
    assert groups_read == [[1, 2, 3]]
    # _source_row: 1-based position in the file.
    positions = {oid: i + 1 for i, oid in enumerate(frame["order_id"])}
    assert raw.frame["_source_row"].tolist() == [positions[i] for i in raw.frame["order_id"]]


def test_parquet_text_timestamps_return_all_rows(tmp_path):
    frame = _canonical_frame()
    frame["created_at"] = frame["created_at"].dt.strftime("%Y-%m-%d %H:%M:%S")
    _write_parquet(tmp_path, frame)
    raw = read_table(_params(folder=tmp_path), "orders", WEEK.window(TZ))
    assert sorted(raw.frame["order_id"]) == sorted(EXPECTED_IDS)


def test_settlements_window_keeps_rows_pending_during_it(tmp_path):
    # a: settled before the window; b: in it; c: not settled; d: settled after it, so
    # pending throughout the window (its pending amount at the week's end counts it)
    frame = pd.DataFrame(
        {
            "order_id": ["a", "b", "c", "d"],
            "settled_at": pd.to_datetime(
                ["2026-01-04 23:00", "2026-01-06 10:00", None, "2026-01-12 00:00"]
            ).tz_localize(TZ),
            "amount": [1.0, 2.0, 3.0, 4.0],
            "status": ["settled", "settled", "pending", "settled"],
        }
    )
    _write_parquet(tmp_path, frame, name="settlements.parquet")
    _write_sqlite(
        tmp_path / "shop.db",
        frame.assign(settled_at=frame["settled_at"].dt.tz_localize(None)),
        "settlements",
    )
    folder = read_table(_params(folder=tmp_path), "settlements", WEEK.window(TZ))
    database = read_table(_sql_params(tmp_path / "shop.db"), "settlements", WEEK.window(TZ))
    assert folder.frame["order_id"].tolist() == ["b", "c", "d"]
    assert database.frame["order_id"].tolist() == ["b", "c", "d"]


def test_tables_without_time_column_return_all_rows(tmp_path):
    (tmp_path / "order_lines.csv").write_text("order_id,sku,qty\n1,A,2\n2,B,1\n")
    _write_parquet(tmp_path, _canonical_frame())
    raw = read_table(_params(folder=tmp_path), "order_lines", WEEK.window(TZ))
    assert raw.frame["sku"].tolist() == ["A", "B"]


def _text_stamps(frame: pd.DataFrame, fmt: str) -> pd.DataFrame:
    out = frame.copy()
    for c in TIMESTAMPS:
        out[c] = out[c].dt.strftime(fmt).astype(object).where(out[c].notna(), None)
    return out


@pytest.mark.parametrize(
    "layout",
    ["datetime", "iso_t", "minutes", "utc_text", "offset_text", "non_iso_text"],
)
def test_sql_window_on_text_and_datetime_columns(tmp_path, layout):
    frame = _canonical_frame()
    zone = None
    if layout == "iso_t":
        frame = _text_stamps(frame, "%Y-%m-%dT%H:%M:%S")
    elif layout == "minutes":
        frame = _text_stamps(frame, "%Y-%m-%d %H:%M")
    elif layout == "utc_text":
        # Stored in UTC, the table's timezone says so: Monday 00:00 Shanghai is Sunday 16:00.
        for c in TIMESTAMPS:
            frame[c] = frame[c].dt.tz_localize(TZ).dt.tz_convert("UTC").dt.tz_localize(None)
        frame = _text_stamps(frame, "%Y-%m-%d %H:%M")
        zone = "UTC"
    elif layout == "offset_text":
        frame = _text_stamps(frame, "%Y-%m-%dT%H:%M:%S+08:00")
    elif layout == "non_iso_text":
        frame = _text_stamps(frame, "%d/%m/%Y %H:%M")
    db = _write_sqlite(tmp_path / "shop.db", frame)
    orders = {"timezone": zone} if zone else {}
    raw = read_table(_sql_params(db, orders=orders), "orders", WEEK.window(TZ))
    ids = sorted(raw.frame["order_id"])
    if layout == "offset_text":
        # Offsets are matched by date widened by a day; the caller filters exactly.
        assert set(WEEK_IDS) <= set(ids) and "A0129" not in ids
    elif layout == "non_iso_text":
        assert ids == sorted(EXPECTED_IDS)
    else:
        assert ids == WEEK_IDS


def test_csv_and_xlsx_return_all_rows_with_a_window():
    window = WEEK.window(TZ)
    assert read_table(_params(), "orders", window).info.rows == 8
    xlsx = _params(orders={"file": "orders.xlsx", "sheet": "orders"})
    assert read_table(xlsx, "orders", window).info.rows == 8


# --- row numbers, several files, provenance ----------------------------------------------


def test_source_rows_are_the_line_and_sheet_row_numbers(tmp_path):
    assert read_table(_params(), "orders").frame["_source_row"].tolist() == list(range(2, 10))
    # The sheet has an empty row 6 between the data rows (see orders.xlsx).
    xlsx = read_table(_params(orders={"file": "orders.xlsx", "sheet": 1}), "orders")
    assert xlsx.frame["_source_row"].tolist() == [2, 3, 4, 5, 7, 8, 9, 10]
    (tmp_path / "orders.csv").write_text(
        "order_id,order_type,created_at\n1,normal,2026-01-05\n\n,,\n2,normal,2026-01-06\n"
    )
    frame = read_table(_params(folder=tmp_path), "orders").frame
    assert frame["_source_row"].tolist() == [2, 5]


# --- a title above the header (header_row) ------------------------------------------------


def _titled_gbk(folder: Path, title: list[str]) -> Path:
    """orders_gbk.csv with ``title`` lines above its header, as an OMS download has."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = b"".join(f"{line}\r\n".encode("gbk") for line in title)
    (folder / "orders_gbk.csv").write_bytes(lines + (DATA / "orders_gbk.csv").read_bytes())
    return folder


def _titled_xlsx(folder: Path) -> Path:
    """The sheet of orders.xlsx as an Excel report: a title merged across the header in
    row 1, row 2 empty, the header in row 3 (the data's empty row is now row 8)."""
    from openpyxl import load_workbook

    folder.mkdir(parents=True, exist_ok=True)
    book = load_workbook(DATA / "orders.xlsx")
    sheet = book["orders"]
    width = sheet.max_column
    sheet.insert_rows(1, amount=2)
    sheet.cell(row=1, column=1, value="订单报表 2026-01-04 至 2026-01-11")
    sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=width)
    path = folder / "orders.xlsx"
    book.save(path)
    return path


@pytest.mark.parametrize(
    "title",
    [["导出时间: 2026-01-12 09:00"], ["订单导出", "", "导出人: 运营部"]],
    ids=["one", "three"],
)
def test_a_csv_title_is_skipped_and_rows_keep_their_line_numbers(title, tmp_path):
    plain = read_table(_params(DATA / "mapping_gbk.yaml"), "orders")
    folder = _titled_gbk(tmp_path, title)
    params = _params(
        DATA / "mapping_gbk.yaml", folder=folder, orders={"header_row": len(title) + 1}
    )
    raw = read_table(params, "orders")
    assert _normalised(raw) == _normalised(plain)
    # The line a person finds in the file: the title lines count.
    shifted = (plain.frame["_source_row"] + len(title)).tolist()
    assert (
        raw.frame["_source_row"].tolist() == shifted == list(range(len(title) + 2, len(title) + 10))
    )
    assert last_event_time(params) == last_event_time(_params(DATA / "mapping_gbk.yaml"))


def test_a_csv_title_with_a_broken_row_points_at_the_real_line(tmp_path):
    """The record-by-record reader (a row with a wrong cell count) counts the title too,
    and so do the quarantined rows validation reports."""
    (tmp_path / "orders.csv").write_text(
        "Orders export\n\norder_id,order_type,created_at,carrier\n1,normal,2026-01-05,SF\n"
        "2,normal,2026-01-06,SF,extra\n\n3,normal,not a date,SF\n4,normal,2026-01-0"
    )
    raw = read_table(_params(folder=tmp_path, orders={"header_row": 3}), "orders")
    assert raw.frame["_source_row"].tolist() == [4, 5, 7, 8]
    clean, entries, quarantined = validate_table(raw, "Asia/Shanghai", 1.0)
    assert clean["order_id"].tolist() == ["1"]
    assert quarantined.set_index("_source_row")["_rule"].to_dict() == {
        5: "wrong field count",
        7: "unparseable timestamp",
        8: "wrong field count",
    }
    stamp = next(e for e in entries if e.rule == "unparseable timestamp")
    assert "row 7" in " ".join(x.text() for x in stamp.examples)


def test_an_xlsx_title_merged_across_the_header_is_skipped(tmp_path):
    path = _titled_xlsx(tmp_path)
    raw = read_table(
        _params(folder=tmp_path, orders={"file": path.name, "sheet": "orders", "header_row": 3}),
        "orders",
    )
    assert _normalised(raw) == EXPECTED
    assert raw.frame["_source_row"].tolist() == [4, 5, 6, 7, 9, 10, 11, 12]
    # Without header_row the title is the first row that is not empty: read as the header,
    # it maps nothing, and the message says which key reads the right row.
    with pytest.raises(
        MissingColumnError,
        match=r"column 'order_id' not in orders\.xlsx; columns found: \['订单报表 2026-01-04 至 "
        r"2026-01-11'.*None of these names is known: they were read from row 1 of the file; "
        r"if the column names stand on a later row, below a title, set "
        r"source\.tables\.orders\.header_row to its number\.",
    ):
        read_table(
            _params(folder=tmp_path, orders={"file": path.name, "sheet": "orders"}), "orders"
        )


def test_a_header_read_from_a_title_names_header_row_and_a_misspelt_mapping_does_not(tmp_path):
    folder = _titled_gbk(tmp_path / "titled", ["导出时间: 2026-01-12 09:00"])
    with pytest.raises(
        MissingColumnError,
        match=r"column 'order_id' not in orders_gbk\.csv: the params map '订单号' onto it.*"
        r"columns found: \['导出时间: 2026-01-12 09:00'\].*Correct the name under "
        r"source\.tables\.orders\.columns\. None of these names is known: they were read "
        r"from row 1 .*set source\.tables\.orders\.header_row to its number",
    ):
        read_table(_params(DATA / "mapping_gbk.yaml", folder=folder), "orders")
    # header_row on a data row: the names read are values, and the message says so again.
    with pytest.raises(MissingColumnError, match=r"read from row 4 of the file"):
        read_table(
            _params(DATA / "mapping_gbk.yaml", folder=folder, orders={"header_row": 4}), "orders"
        )
    # The right row, one column renamed in the export: the mapping is the fix, not header_row.
    path = folder / "orders_gbk.csv"
    path.write_bytes(
        path.read_bytes().replace("订单号,".encode("gbk"), "订单编号,".encode("gbk"), 1)
    )
    with pytest.raises(MissingColumnError) as err:
        read_table(
            _params(DATA / "mapping_gbk.yaml", folder=folder, orders={"header_row": 2}), "orders"
        )
    assert "the params map '订单号' onto it" in str(err.value)
    assert "header_row" not in str(err.value)


def test_a_header_row_past_the_end_or_on_an_empty_row_names_file_and_key(tmp_path):
    folder = _titled_gbk(tmp_path / "csv", ["订单导出", ""])
    with pytest.raises(
        UnreadableSourceError,
        match=r"line 2 of orders_gbk\.csv \(.*\), where source\.tables\.orders\.header_row "
        r"places the column names, is empty\. Set source\.tables\.orders\.header_row",
    ):
        read_table(
            _params(DATA / "mapping_gbk.yaml", folder=folder, orders={"header_row": 2}), "orders"
        )
    with pytest.raises(UnreadableSourceError, match=r"orders_gbk\.csv \(.*\) ends before line 40"):
        read_table(
            _params(DATA / "mapping_gbk.yaml", folder=folder, orders={"header_row": 40}), "orders"
        )
    path = _titled_xlsx(tmp_path / "xlsx")
    xlsx = {"file": path.name, "sheet": "orders"}
    with pytest.raises(
        UnreadableSourceError,
        match=r"row 2 of sheet 'orders' of orders\.xlsx \(.*\), where source\.tables\.orders\."
        r"header_row places the column names, is empty",
    ):
        read_table(_params(folder=path.parent, orders={**xlsx, "header_row": 2}), "orders")
    with pytest.raises(
        UnreadableSourceError, match=r"sheet 'orders' of orders\.xlsx .* ends before row 99"
    ):
        read_table(_params(folder=path.parent, orders={**xlsx, "header_row": 99}), "orders")


def test_header_row_on_a_parquet_or_database_source_is_a_params_error(tmp_path):
    """Their column names are part of the format: the key would be ignored unseen."""
    _write_parquet(tmp_path, _canonical_frame(aware=True))
    with pytest.raises(
        InvalidParamError,
        match=r"invalid value for 'source\.tables\.orders\.header_row' in .*base\.yaml: "
        r"orders\.parquet is a parquet file, .*header_row applies to CSV and XLSX files only",
    ):
        read_table(_params(folder=tmp_path, orders={"header_row": 2}), "orders")
    db = _write_sqlite(tmp_path / "shop.db", _canonical_frame())
    with pytest.raises(
        InvalidParamError,
        match=r"'source\.tables\.orders\.header_row' in .*base\.yaml: a database table's columns",
    ):
        read_table(_sql_params(db, orders={"header_row": 2}), "orders")


def test_amounts_from_a_titled_file(tmp_path):
    """amount_from reads its file with its own header_row (a payments report's title)."""
    (tmp_path / "orders.csv").write_text(
        "order_id,order_type,created_at\nA1,normal,2026-01-05\nA2,normal,2026-01-06\n"
    )
    (tmp_path / "pay.csv").write_text("支付明细\norder_id,value\nA1,10\nA1,5.5\nA2,3\n")
    spec = {"file": "pay.csv", "value": "value", "header_row": 2}
    raw = read_table(_params(folder=tmp_path, orders={"amount_from": spec}), "orders")
    assert raw.frame["amount"].tolist() == [15.5, 3.0]
    spec.pop("header_row")
    with pytest.raises(
        MissingColumnError, match=r"source\.tables\.orders\.amount_from\.header_row"
    ):
        read_table(_params(folder=tmp_path, orders={"amount_from": spec}), "orders")


def test_xlsx_unknown_sheet_lists_the_sheets():
    with pytest.raises(
        SourceNotFoundError, match=r"sheet 'Orders' not in orders.xlsx .*\['说明', 'orders'\]"
    ):
        read_table(_params(orders={"file": "orders.xlsx", "sheet": "Orders"}), "orders")


def test_monthly_files_are_concatenated_in_name_order(tmp_path):
    text = (DATA / "orders.csv").read_text(encoding="utf-8").splitlines()
    header, body = text[0], text[1:]
    december = [line for line in body if ",2025-12-" in line]
    january = [line for line in body if line not in december]
    (tmp_path / "orders_2026-01.csv").write_text("\n".join([header, *january]) + "\n")
    (tmp_path / "orders_2025-12.csv").write_text("\n".join([header, *december]) + "\n")
    (tmp_path / "~$orders_2026-02.csv").write_text("lock file of an open workbook")
    raw = read_table(_params(folder=tmp_path, orders={"file": "orders_*.csv"}), "orders")
    assert raw.frame["order_id"].tolist() == ["A0129", *[i for i in EXPECTED_IDS if i != "A0129"]]
    # Row numbers are each file's own line numbers.
    assert raw.frame["_source_row"].tolist() == [2, 2, 3, 4, 5, 6, 7, 8]
    files = [tmp_path / "orders_2025-12.csv", tmp_path / "orders_2026-01.csv"]
    assert raw.info.location == ", ".join(str(f) for f in files)
    digests = "".join(hashlib.sha256(f.read_bytes()).hexdigest() for f in files)
    assert raw.info.sha256 == hashlib.sha256(digests.encode()).hexdigest()
    assert raw.info.format == "csv" and raw.info.rows == 8


def test_monthly_parquet_files_with_a_window(tmp_path):
    frame = _canonical_frame(aware=True)
    december = frame["created_at"] < pd.Timestamp("2026-01-01", tz=TZ)
    _write_parquet(tmp_path, frame[december], name="orders_2025-12.parquet")
    _write_parquet(tmp_path, frame[~december], name="orders_2026-01.parquet")
    params = _params(folder=tmp_path, orders={"file": "orders_*.parquet"})
    raw = read_table(params, "orders", WEEK.window(TZ))
    assert sorted(raw.frame["order_id"]) == WEEK_IDS
    assert raw.info.format == "parquet"


def test_source_info_of_a_single_file():
    info = read_table(_params(), "orders").info
    assert info == sources.SourceInfo(
        table="orders",
        location=str(DATA / "orders.csv"),
        format="csv",
        rows=8,
        sha256=hashlib.sha256((DATA / "orders.csv").read_bytes()).hexdigest(),
    )


def test_sql_source_info(tmp_path):
    db = _write_sqlite(tmp_path / "shop.db", _canonical_frame())
    raw = read_table(_sql_params(db), "orders")
    assert raw.info == sources.SourceInfo("orders", "sql:orders", "sql", 8, None)
    assert available_tables(_sql_params(db)) == ["orders"]
    assert read_table(_sql_params(db), "tickets") is None


# --- last event time ----------------------------------------------------------------------

LAST = pd.Timestamp("2026-01-12 00:00", tz=TZ)  # latest created_at of the fixture


@pytest.mark.parametrize("variant", ["csv", "gbk", "xlsx", "parquet", "sql"])
def test_last_event_time(variant, tmp_path):
    if variant == "csv":
        params = _params()
    elif variant == "gbk":
        params = _params(DATA / "mapping_gbk.yaml")
    elif variant == "xlsx":
        params = _params(orders={"file": "orders.xlsx", "sheet": "orders"})
    elif variant == "parquet":
        _write_parquet(tmp_path, _canonical_frame(aware=True), row_group_size=3)
        params = _params(folder=tmp_path)
    else:
        params = _sql_params(_write_sqlite(tmp_path / "shop.db", _canonical_frame()))
    latest = last_event_time(params)
    assert latest == LAST
    assert str(latest.tz) == TZ


def test_last_event_time_in_the_tables_timezone(tmp_path):
    # Naive times of a UTC source: 2026-01-12 00:00 UTC is 08:00 in Shanghai.
    _write_parquet(tmp_path, _canonical_frame(aware=False))
    params = _params(folder=tmp_path, orders={"timezone": "UTC"})
    assert last_event_time(params) == pd.Timestamp("2026-01-12 08:00", tz=TZ)
    db = _write_sqlite(tmp_path / "shop.db", _text_stamps(_canonical_frame(), "%Y-%m-%dT%H:%M"))
    assert last_event_time(_sql_params(db, orders={"timezone": "UTC"})) == pd.Timestamp(
        "2026-01-12 08:00", tz=TZ
    )


def test_last_event_time_of_non_iso_sql_text(tmp_path):
    frame = _text_stamps(_canonical_frame(), "%d/%m/%Y %H:%M")
    db = _write_sqlite(tmp_path / "shop.db", frame)
    params = _sql_params(db, orders={"timestamp_format": "%d/%m/%Y %H:%M"})
    assert last_event_time(params) == LAST


# --- databases ---------------------------------------------------------------------------


def test_database_error_masks_the_password(monkeypatch):
    monkeypatch.setenv("SHOP_DB_URL", "postgresql://analyst:s3cr3t-pw@127.0.0.1:1/shop")
    params = load_params(
        DATA / "base.yaml", overrides={"source": {"kind": "sql", "url_env": "SHOP_DB_URL"}}
    )
    # Without the PostgreSQL driver installed the error is the missing driver (exit 5).
    with pytest.raises(
        (SourceUnreachableError, DriverMissingError),
        match=r"postgresql://analyst:\*\*\*@127\.0\.0\.1:1/shop",
    ) as err:
        read_table(params, "orders")
    assert "s3cr3t-pw" not in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_missing_sqlite_file_is_not_created(tmp_path, monkeypatch):
    db = tmp_path / "missing.db"
    monkeypatch.setenv("SHOP_DB_URL", f"sqlite://user:pa55word@/{db}")
    params = load_params(
        DATA / "base.yaml", overrides={"source": {"kind": "sql", "url_env": "SHOP_DB_URL"}}
    )
    with pytest.raises(SourceNotFoundError, match=rf"not found: no file {db}") as err:
        read_table(params, "orders")
    assert "pa55word" not in str(err.value)
    assert not db.exists()


def test_missing_sql_orders_table(tmp_path):
    db = _write_sqlite(tmp_path / "shop.db", _canonical_frame(), table="orders_2026")
    with pytest.raises(
        SourceNotFoundError, match=r"table 'orders' not found in database sqlite:///"
    ):
        read_table(_sql_params(db), "orders")


def test_failing_connection_masks_the_password_also_in_the_driver_text(monkeypatch):
    monkeypatch.setenv("SHOP_DB_URL", "postgresql://analyst:s3cr3t-pw@db.example:5432/shop")
    real_create_engine = sa.create_engine

    def refuse(self):
        reason = Exception("password authentication failed for analyst/s3cr3t-pw")
        raise sa.exc.OperationalError("connect", {}, reason)

    # An in-memory engine stands in for the server, whose connection is refused.
    monkeypatch.setattr(sa, "create_engine", lambda url: real_create_engine("sqlite://"))
    monkeypatch.setattr(sa.engine.Engine, "connect", refuse)
    params = load_params(
        DATA / "base.yaml", overrides={"source": {"kind": "sql", "url_env": "SHOP_DB_URL"}}
    )
    with pytest.raises(
        SourceUnreachableError,
        match=r"cannot connect to database postgresql://analyst:\*\*\*@db\.example:5432/shop: "
        r"password authentication failed for analyst/\*\*\*",
    ) as err:
        last_event_time(params)
    assert "s3cr3t-pw" not in str(err.value)
    assert err.value.exit_code == 5  # the machine's, as for the meeting store


def test_value_map_on_a_number_column_keeps_text(tmp_path):
    (tmp_path / "orders.csv").write_text(
        "order_id,order_type,created_at,amount\n1,normal,2026-01-05,12.5\n2,normal,2026-01-05,-\n"
    )
    params = _params(folder=tmp_path, orders={"values": {"amount": {"-": ""}}})
    amount = read_table(params, "orders").frame["amount"]
    assert amount.dtype == "str"
    assert amount.iloc[0] == "12.5" and pd.isna(amount.iloc[1])


def test_parquet_empty_strings_become_na(tmp_path):
    frame = _canonical_frame(aware=True)
    frame.loc[0, "warehouse"] = ""
    frame.loc[1, "order_id"] = ""
    _write_parquet(tmp_path, frame)
    out = read_table(_params(folder=tmp_path), "orders").frame
    assert out["warehouse"].isna().tolist() == [True] + [False] * 7
    assert out["order_id"].isna().tolist() == [False, True] + [False] * 6


def test_xlsx_column_mixing_date_cells_and_text_becomes_text_in_one_format(tmp_path):
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["order_id", "order_type", "created_at"])
    ws.append(["00001", "normal", dt.datetime(2026, 1, 5, 9, 30)])
    ws.append(["00002", "normal", "2026/01/06 10:00"])
    wb.save(tmp_path / "orders.xlsx")
    fmt = "%Y/%m/%d %H:%M"
    raw = read_table(_params(folder=tmp_path, orders={"timestamp_format": fmt}), "orders")
    assert raw.frame["created_at"].tolist() == ["2026/01/05 09:30", "2026/01/06 10:00"]
    assert raw.frame["order_id"].tolist() == ["00001", "00002"]


def test_sql_available_tables_lists_configured_tables(tmp_path):
    db = _write_sqlite(tmp_path / "shop.db", _canonical_frame(), table="dw_orders")
    params = _sql_params(db, orders={"table": "dw_orders"}, tickets={"table": "cs_tickets"})
    assert available_tables(params) == ["orders", "tickets"]
    assert read_table(params, "orders").frame["order_id"].tolist() == EXPECTED_IDS
    with pytest.raises(SourceNotFoundError, match=r"table 'cs_tickets' not found in database"):
        read_table(params, "tickets")


def test_utf8_file_declared_gbk_is_refused_not_read_as_mojibake(tmp_path):
    (tmp_path / "orders.csv").write_text(
        "order_id,order_type,created_at,region\n1,normal,2026-01-05,华东\n", encoding="utf-8"
    )
    with pytest.raises(UnreadableSourceError, match=r"declared gbk but its text is UTF-8"):
        read_table(_params(folder=tmp_path, orders={"encoding": "gbk"}), "orders")
    # The same text really in GBK reads right.
    (tmp_path / "orders.csv").write_text(
        "order_id,order_type,created_at,region\n1,normal,2026-01-05,华东\n", encoding="gbk"
    )
    frame = read_table(_params(folder=tmp_path, orders={"encoding": "gbk"}), "orders").frame
    assert frame["region"].tolist() == ["华东"]


def test_replacement_characters_are_set_aside_with_their_rule(tmp_path):
    (tmp_path / "orders.csv").write_text(
        "order_id,order_type,created_at,region\n1,normal,2026-01-05,华东\n"
        "2,normal,2026-01-05,\ufffd\ufffd\n",
        encoding="utf-8",
    )
    raw = read_table(_params(folder=tmp_path), "orders")
    clean, entries, quarantined = validate_table(raw, "Asia/Shanghai", 1.0)
    assert clean["order_id"].tolist() == ["1"]
    assert [(e.rule, e.column, e.rows) for e in entries] == [("replacement character", "region", 1)]


# --- a new format is one registered reader ------------------------------------------------


def _jsonl_columns(path, schema, ts, wanted):
    raw = pd.read_json(path, lines=True, dtype=str)
    selected = sources._select_columns(list(raw.columns), schema, ts, path.name, wanted)
    frame = raw[list(selected)].rename(columns=selected).astype("str")
    frame[sources.SOURCE_ROW] = range(1, len(frame) + 1)  # one record a line
    return frame


@pytest.fixture
def jsonl_reader():
    reader = sources.FileReader(
        "jsonl",
        (".jsonl",),
        sources._text_table(_jsonl_columns),
        _jsonl_columns,
        sources._text_last_event(_jsonl_columns),
        lambda path, _encoding, _delimiter: pd.read_json(path, lines=True, dtype=str),
    )
    sources.register_reader(reader)
    yield reader
    del sources.READERS["jsonl"]


def test_a_registered_reader_makes_a_new_format_readable(jsonl_reader, tmp_path):
    frame = _canonical_frame()
    for c in TIMESTAMPS:
        frame[c] = frame[c].dt.strftime("%Y-%m-%d %H:%M:%S").where(frame[c].notna(), None)
    frame.to_json(tmp_path / "orders.jsonl", orient="records", lines=True)
    params = _params(folder=tmp_path, orders={"file": "orders.jsonl"})
    raw = read_table(params, "orders")
    assert raw.info.format == "jsonl"
    assert _normalised(raw) == EXPECTED
    assert last_event_time(params) == max(r["created_at"] for r in EXPECTED).replace(
        tzinfo=last_event_time(params).tzinfo
    )


def test_an_unknown_suffix_names_the_formats_that_are_read(tmp_path):
    (tmp_path / "orders.json").write_text("[]", encoding="utf-8")
    with pytest.raises(InvalidParamError, match=r"unsupported format '\.json'.*\.parquet.*\.csv"):
        read_table(_params(folder=tmp_path, orders={"file": "orders.json"}), "orders")


def test_two_readers_cannot_claim_one_suffix():
    clash = dataclasses.replace(sources.READERS["csv"], name="csv2", suffixes=(".csv",))
    with pytest.raises(ValueError, match=r"suffixes \['\.csv'\] are already read"):
        sources.register_reader(clash)


def test_a_value_mapped_onto_no_canonical_value_is_a_params_error():
    # order_type has a closed set of values: 'regular' would make every order "unmapped".
    with pytest.raises(
        InvalidParamError,
        match=r"source\.tables\.orders\.values\.order_type\.普通订单.*'regular' is not a value of "
        r"orders\.order_type; map onto one of \['normal', 'special', 'after_sales'\]",
    ):
        read_table(_params(orders={"values": {"order_type": {"普通订单": "regular"}}}), "orders")
