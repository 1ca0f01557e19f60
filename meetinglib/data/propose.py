"""Proposes a params file for a company's own export (``meeting init``).

Reads a sample of a file (CSV, XLSX, Parquet) or an SQL table and proposes how it maps
onto the canonical ``orders`` table: the encoding (a UTF-8 BOM, UTF-8, else GB18030,
which reads GBK), the delimiter, the row of the column names when a title stands above
them (``header_row``), the timestamp format (day-first or month-first judged
from the values; when no value tells, no guess is made and the file says so), the
columns (from header names, by the English and Chinese synonyms of ``SYNONYMS``), the
canonical values of the categorical columns (from their distinct values), a status
column whose values mean cancelled or delivered, and constants for required columns
the export lacks (``order_type: normal``). ``render`` writes it as a standalone,
commented params file.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from meetinglib.core.errors import SourceNotFoundError, UnreadableSourceError
from meetinglib.core.i18n import t
from meetinglib.core.params import Params, SourceParams, TableSource
from meetinglib.core.schema import ORDERS
from meetinglib.core.secrets import url_secrets
from meetinglib.data import sources
from meetinglib.data.sources import known_suffixes, reader_for
from meetinglib.data.validate import MISSING_TOKENS, day_first

SAMPLE_ROWS = 5000
# The first rows looked at for a title above the column names.
HEADER_SCAN_ROWS = 30
STATUS = "status"  # the key of the status column among the proposals
# The variable a proposed file names (source.url_env) for a URL holding a credential.
URL_ENV = "MEETING_SOURCE_URL"

# Header names (compared without case, spaces, "_" and "-") per canonical column.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "order_id": ("order_id", "order_no", "order_number", "orderid", "订单编号", "订单号", "订单id"),
    "order_type": ("order_type", "type", "订单类型"),
    "created_at": (
        "created_at", "order_purchase_timestamp", "order_date", "created", "create_time",
        "order_time", "下单时间", "创建时间", "订单创建时间",
    ),
    "paid_at": ("paid_at", "order_approved_at", "payment_time", "pay_time", "付款时间", "支付时间"),
    "shipped_at": (
        "shipped_at", "order_delivered_carrier_date", "ship_time", "shipping_time", "发货时间",
    ),
    "delivered_at": (
        "delivered_at", "order_delivered_customer_date", "delivery_time", "received_at",
        "签收时间", "收货时间",
    ),
    "cancelled_at": ("cancelled_at", "canceled_at", "cancel_time", "取消时间"),
    "promised_ship_by": (
        "promised_ship_by", "ship_by", "ship_deadline", "承诺发货时间", "最晚发货时间",
    ),
    "promised_delivery_by": (
        "promised_delivery_by", "order_estimated_delivery_date", "estimated_delivery_date",
        "预计送达时间", "承诺送达时间",
    ),
    "channel": ("channel", "sales_channel", "渠道", "销售渠道", "店铺"),
    "warehouse": ("warehouse", "warehouse_id", "仓库", "发货仓"),
    "carrier": ("carrier", "courier", "shipping_company", "快递公司", "物流公司", "承运商"),
    "region": ("region", "province", "state", "customer_state", "收货省份", "省份", "地区"),
    "amount": (
        "amount", "order_amount", "total", "order_total", "payment_value", "订单金额",
        "实付金额", "金额",
    ),
    "exception_code": ("exception_code", "exception", "abnormal_type", "异常类型", "异常",
                       "异常原因", "异常情况", "异常码"),
    STATUS: ("order_status", "status", "订单状态"),
}  # fmt: skip

# Distinct values (compared without case and spaces) -> canonical value, per column.
VALUE_SYNONYMS: dict[str, dict[str, str]] = {
    "order_type": {
        "normal": "normal", "普通": "normal", "普通订单": "normal", "常规": "normal",
        "special": "special", "特殊": "special", "特殊订单": "special", "预售": "special",
        "定制": "special", "after_sales": "after_sales", "aftersales": "after_sales",
        "售后": "after_sales", "售后订单": "after_sales", "换货": "after_sales",
    },
    "exception_code": {
        "stockout": "stockout", "缺货": "stockout", "address_error": "address_error",
        "地址错误": "address_error", "地址异常": "address_error",
        "payment_failed": "payment_failed", "支付失败": "payment_failed",
        "customs_hold": "customs_hold", "清关": "customs_hold", "海关扣留": "customs_hold",
        "lost": "lost", "丢件": "lost", "丢失": "lost", "damaged": "damaged", "破损": "damaged",
        "fraud_review": "fraud_review", "风控": "fraud_review", "风控审核": "fraud_review",
        "无": "", "正常": "", "none": "",
    },
}  # fmt: skip
STATUS_CANCELLED = ("canceled", "cancelled", "unavailable", "已取消", "取消", "已关闭", "关闭")
STATUS_DELIVERED = ("delivered", "已签收", "已完成", "完成", "签收")

_YMD = re.compile(r"^\s*\d{4}([/.\-])\d{1,2}\1\d{1,2}(?:[ T](\d{1,2}:\d{2}(:\d{2})?))?")
_DMY = re.compile(r"^\s*\d{1,2}([/.\-])\d{1,2}\1\d{4}(?:\s+(\d{1,2}:\d{2}(:\d{2})?))?")
_CJK = re.compile(r"[\u4e00-\u9fff]")
# Cells that are values, not column names: numbers (1,299.00, -5, 12%), and dates or
# times (2026-11-16, 2026/11/16, 2026年11月, 08:30).
_NUMBER = re.compile(r"^[-+]?[\d,]*\.?\d+%?$")
_DATE_OR_TIME = re.compile(r"\d{1,4}[-/.年]\d{1,2}|\d{1,2}:\d{2}")


@dataclass
class Proposal:
    """What ``meeting init`` proposes for one table of a company's export."""

    source: str  # the file or the SQL URL read
    kind: str  # "folder" | "sql"
    table: str  # canonical table ("orders")
    file: str | None  # file name in its folder, for kind folder
    sql_table: str | None  # table name, for kind sql
    encoding: str | None
    delimiter: str
    header_row: int | None  # the row of the column names, below a title; None: the first
    headers: list[str]
    columns: dict[str, str]  # company header -> canonical column
    status_column: str | None
    status_cancelled: list[str]
    status_delivered: list[str]
    values: dict[str, dict[str, str]]  # canonical column -> {company value: canonical}
    unmatched_values: dict[str, list[str]]  # canonical column -> values with no proposal
    constants: dict[str, str]
    timestamp_format: str | None
    date_notes: list[str] = field(default_factory=list)  # e.g. ambiguous day/month order
    rows_sampled: int = 0
    chinese: bool = False

    @property
    def canonical(self) -> list[str]:
        """Canonical orders columns the mapping provides (mapped, constant or derived)."""
        out = set(self.columns.values()) | set(self.constants)
        if self.status_cancelled:
            out.add("cancelled_at")
        if self.status_delivered:
            out.add("delivered_at")
        return [c for c in ORDERS.names if c in out]

    @property
    def url_env(self) -> str | None:
        """The environment variable the file names instead of the URL when the URL holds
        a credential (params refuse such a URL); None for a file or a URL without one."""
        if self.kind != "sql" or not _holds_credential(self.source):
            return None
        return URL_ENV

    @property
    def name(self) -> str:
        """The export's name, the default company name: the file's stem, or the database's
        name (a SQLite file's stem); the table's when the URL names no database."""
        if self.kind != "sql":
            return Path(self.source).stem
        try:
            url = sa.engine.make_url(self.source)
        except sa.exc.ArgumentError:
            return self.sql_table or self.table
        database = url.database
        if not database or database == ":memory:":
            return self.sql_table or self.table
        return Path(database).stem if url.get_backend_name() == "sqlite" else database

    @property
    def shown_source(self) -> str:
        """The file, or the URL with its credentials masked: what may be printed or written
        (masked as the reader's messages mask it)."""
        return sources._mask_url(self.source) if self.kind == "sql" else self.source


def _holds_credential(url: str) -> bool:
    """Whether params would refuse the URL; SQLAlchemy's parse is asked too, as it reads
    a password the pattern of url_secrets does not (one holding a '/')."""
    if url_secrets(url):
        return True
    try:
        return bool(sa.engine.make_url(url).password)
    except sa.exc.ArgumentError:
        return False


def _norm(text: object) -> str:
    return re.sub(r"[\s_\-]+", "", str(text).replace("\ufeff", "")).lower()


def detect_encoding(head: bytes) -> str:
    """utf-8-sig (BOM), utf-8, or gb18030 (a superset of GBK) for a file's first bytes."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        codecs.getincrementaldecoder("gb18030")().decode(head, final=False)
        return "gb18030"
    except UnicodeDecodeError:
        raise UnreadableSourceError(
            "the file is neither UTF-8 nor GB18030/GBK text; save it as UTF-8 CSV and run "
            "meeting init again."
        ) from None


def timestamp_format(values: pd.Series) -> tuple[str | None, str | None]:
    """(strftime format, note) proposed for timestamp texts; (None, None) for ISO text.

    Day/month order comes from the values; when no value has a day above 12 the format
    is None and the note says the order is ambiguous.
    """
    texts = values.dropna().astype("str").str.strip()
    texts = texts[texts != ""]
    if texts.empty:
        return None, None
    first = texts.iloc[0]
    ymd, dmy = _YMD.match(first), _DMY.match(first)
    if ymd:
        sep = ymd.group(1)
        if sep == "-":
            return None, None  # ISO-like: parsed without a format
        fmt = f"%Y{sep}%m{sep}%d"
        time = ymd.group(2)
        return fmt + (_time_format(time, ymd.group(3)) if time else ""), None
    if dmy:
        sep = dmy.group(1)
        order = day_first(texts)
        if order is None:
            return None, (
                f"dates like '{first}' may be day-first or month-first and no value has a "
                "day above 12; set timestamp_format by hand"
            )
        date = f"%d{sep}%m{sep}%Y" if order else f"%m{sep}%d{sep}%Y"
        time = dmy.group(2)
        return date + (_time_format(time, dmy.group(3)) if time else ""), None
    return None, None


def _time_format(time: str, seconds: str | None) -> str:
    return " %H:%M:%S" if seconds else " %H:%M"


def _looks_like_name(cell: str) -> bool:
    return not _NUMBER.match(cell) and not _DATE_OR_TIME.search(cell)


def header_row(rows: list[list[str]]) -> int | None:
    """The 1-based row of the column names when a title stands above them, else None.

    ``rows`` are a file's first rows as cell texts. The column names are the first row
    of names, no number, date or time among them, that spans at least half the widest row
    (the table); the rows above it must be empty or far narrower than it, as a title is
    ("订单报表 2026-11-16 至 2026-11-22" in one cell, perhaps merged across the table).
    A file whose first row is its header, or whose first rows do not look like a title
    above a header, gets None: the readers' default.
    """
    filled = [[c.strip() for c in row if c is not None and c.strip()] for row in rows]
    widest = max((len(cells) for cells in filled), default=0)
    at = next(
        (
            i
            for i, cells in enumerate(filled)
            if len(cells) >= max(2, (widest + 1) // 2) and all(map(_looks_like_name, cells))
        ),
        None,
    )
    if not at:  # none, or the first row: no title
        return None
    # A title is a cell or two (a label and a date, say); a row as wide as a third of the
    # header is a part of the table the names do not head (the header is elsewhere).
    narrow = max(1, len(filled[at]) // 3)
    if any(len(cells) > narrow for cells in filled[:at]):
        return None
    return at + 1


def _csv_rows(text: str, delimiter: str) -> list[list[str]]:
    """The first lines of a CSV's text split into cells, one line per row (a quoted cell
    with a line break is cut there: each row stays the line a person counts)."""
    lines = text.splitlines()[:HEADER_SCAN_ROWS]
    return [next(csv.reader([line], delimiter=delimiter), []) for line in lines]


def _sniff(line: str) -> str | None:
    try:
        return csv.Sniffer().sniff(line, delimiters=",;\t|").delimiter
    except csv.Error:
        return None


def _xlsx_rows(path: Path) -> list[list[str]]:
    """The first rows of a workbook's first sheet as cell texts, empty rows included (row
    numbers stay the sheet's)."""
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception:  # a damaged workbook: the sample's reader says what is wrong
        return []
    try:
        sheet = book.worksheets[0]
        sheet.reset_dimensions()
        return [
            ["" if v is None else str(v) for v in row]
            for row in sheet.iter_rows(max_row=HEADER_SCAN_ROWS, values_only=True)
        ]
    finally:
        book.close()


def _read_sample(source: str, table: str | None) -> tuple[pd.DataFrame, dict[str, object]]:
    """The first SAMPLE_ROWS rows as text, and how the source was read."""
    if "://" in source:
        if not table:
            raise SourceNotFoundError(
                f"{sources._mask_url(source)} is a database URL; name the table to read with "
                "--table."
            )
        frame = _read_sql_sample(source, table)
        return frame, {"kind": "sql"}
    path = Path(source)
    if not path.is_file():
        if path.is_dir():
            raise SourceNotFoundError(
                f"{path} is a folder; pass the orders export itself (a CSV, XLSX or Parquet "
                "file in it); the params then read the other tables from its folder."
            )
        raise SourceNotFoundError(f"{path} does not exist; pass the exported file.")
    reader = reader_for(path)
    if reader is None:
        raise UnreadableSourceError(
            f"{path.name} has an unsupported format '{path.suffix}'; "
            f"use one of {', '.join(known_suffixes())}"
        )
    if reader.name != "csv":  # text formats need their encoding and delimiter found first
        row = header_row(_xlsx_rows(path)) if reader.header_rows else None
        frame = reader.read_raw(path, "utf-8", ",", row).head(SAMPLE_ROWS)
        return frame, {"kind": "folder", "encoding": None, "delimiter": ",", "header_row": row}
    with path.open("rb") as fh:
        head = fh.read(1 << 20)
    encoding = detect_encoding(head)
    text = head.decode(encoding, errors="ignore")
    lines = text.splitlines()[:HEADER_SCAN_ROWS]
    # A title line ("导出时间: 2026-11-23 09:00") may hold no delimiter: the first line
    # that shows one splits the rows looked at for a title ...
    guess = next((d for d in map(_sniff, lines) if d), ",")
    row = header_row(_csv_rows(text, guess))
    # ... and the header line itself gives the delimiter, as the first line does when
    # there is no title.
    header_line = lines[row - 1] if row else (lines[0] if lines else "")
    delimiter = _sniff(header_line) or (guess if row else ",")
    with path.open(encoding=encoding, newline="") as fh:
        sources._skip_title_lines(fh, row or 1)
        frame = pd.read_csv(
            fh,
            sep=delimiter,
            dtype=str,
            nrows=SAMPLE_ROWS,
            keep_default_na=False,
            on_bad_lines="skip",
            index_col=False,
        )
    how: dict[str, object] = {
        "kind": "folder",
        "encoding": encoding,
        "delimiter": delimiter,
        "header_row": row,
    }
    return frame, how


def _read_sql_sample(url: str, table: str) -> pd.DataFrame:
    """The first SAMPLE_ROWS rows of a database table, read through the reader's
    connection: its messages (a missing driver, a refused login) mask the URL."""
    shown = sources._mask_url(url)
    try:
        missing = sources._missing_sqlite_file(sa.engine.make_url(url))
    except sa.exc.ArgumentError:
        missing = None  # the connection below says what is wrong with the URL
    if missing:
        # sqlite would create the file empty, and the table would then be missing
        raise SourceNotFoundError(
            f"database {shown} not found: no file {missing}. Correct the path in the URL "
            "(sqlite:////absolute/path/shop.db, or sqlite:///relative/path/shop.db)."
        )
    params = _url_params(url)
    ts = TableSource(table=table)  # the key the file writes, read as the reader reads it
    with sources._connection(params) as conn:
        # "sales.orders" is schema sales, table orders, as in params
        db_schema, name = sources._sql_name(ORDERS.name, ts)
        insp = sa.inspect(conn)
        if not insp.has_table(name, schema=db_schema):
            raise SourceNotFoundError(_no_table(shown, table, insp, db_schema))
        found = sources._sql_columns(params, conn, ORDERS, ts)
        assert found is not None  # the table exists: looked up above
        _, clause, _ = found
        # executed on the connection, not by pandas: pandas wraps the database's
        # errors in its own class, which the connection's masked messages miss
        result = conn.execute(sa.select(clause).limit(SAMPLE_ROWS))
        frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    return frame.astype(object).where(frame.notna(), None)


def _url_params(url: str) -> Params:
    """Params naming only a database URL, for the reader's connection.

    Built without validation: the URL is given on the command line, where it may hold
    its password (the file written never does), and validation refuses that in params.
    The connection reads nothing else of them (company and timezone are required only).
    """
    source = SourceParams.model_construct(kind="sql", url=url)
    return Params.model_construct(company="", timezone="UTC", source=source)


def _no_table(shown: str, label: str, insp: sa.Inspector, db_schema: str | None) -> str:
    """Why a table is missing: the schema's (database's) tables, and how to name the
    right one."""
    schemas = insp.get_schema_names()
    if db_schema is not None and db_schema not in schemas:
        there = f"it has no schema '{db_schema}'; its schemas: {_listed(sorted(schemas))}"
    else:
        names = sorted(
            {*insp.get_table_names(schema=db_schema), *insp.get_view_names(schema=db_schema)}
        )
        where = f"schema '{db_schema}'" if db_schema else "it"
        there = f"tables in {where}: {_listed(names)}" if names else f"{where} has no tables"
    return (
        f"table '{label}' not found in database {shown}; {there}. Pass the table holding "
        "the orders with --table (schema.table for a table of another schema)."
    )


def _listed(names: list[str], limit: int = 20) -> str:
    more = len(names) - limit
    return ", ".join(names[:limit]) + (f" and {more} more" if more > 0 else "")


def _nothing_mapped(source: str, headers: list[str], row: int | None) -> str:
    """Why no column was proposed: the headers read, a workbook's other sheets (the
    orders are often on a sheet after a cover or notes sheet), and for a file, the row
    the names were read from (a title above them may have gone unnoticed)."""
    found = ", ".join(repr(h) for h in headers[:12]) + (" ..." if len(headers) > 12 else "")
    text = f"no column of {source} looks like an orders column (headers read: {found})"
    reader = None if "://" in source else reader_for(Path(source))
    hint = ""
    if reader is not None and reader.header_rows:
        key = "source.tables.orders.header_row"
        hint = " " + t("source.header_row_hint", "en", row=row or 1, key=key)
    if Path(source).suffix.lower() in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        book = load_workbook(source, read_only=True)
        try:
            sheets = book.sheetnames
        finally:
            book.close()
        if len(sheets) > 1:
            return (
                f"{text}; it read the first sheet, '{sheets[0]}', of {sheets}. Move the "
                "orders to the first sheet, or write the params by hand with "
                "source.tables.orders.sheet naming theirs (README, Bring your own data)." + hint
            )
    return f"{text}. Pass the orders export, or write the params' columns mapping by hand.{hint}"


def propose(source: str | os.PathLike[str], table: str | None = None) -> Proposal:
    """The proposed mapping of the orders table of ``source`` (file or SQL URL)."""
    frame, how = _read_sample(str(source), table)
    headers = [str(h).replace("\ufeff", "").strip() for h in frame.columns]
    frame.columns = headers
    by_norm = {_norm(h): h for h in headers}
    columns: dict[str, str] = {}
    status_column = None
    for canonical, names in SYNONYMS.items():
        hit = next((by_norm[_norm(n)] for n in names if _norm(n) in by_norm), None)
        if hit is None or hit in columns:
            continue
        if canonical == STATUS:
            status_column = hit
        else:
            columns[hit] = canonical
    if not columns:
        row = how.get("header_row")
        raise UnreadableSourceError(
            _nothing_mapped(str(source), headers, row if isinstance(row, int) else None)
        )
    values: dict[str, dict[str, str]] = {}
    unmatched: dict[str, list[str]] = {}
    for header, canonical in columns.items():
        if canonical not in VALUE_SYNONYMS:
            continue
        distinct = _distinct(frame[header])
        # Looked up as _norm writes them, the synonyms' own spelling included: a value
        # like "payment_failed", already canonical, was not found under "paymentfailed".
        known = {_norm(k): v for k, v in VALUE_SYNONYMS[canonical].items()}
        mapping = {
            v: known[_norm(v)] for v in distinct if _norm(v) in known and v != known[_norm(v)]
        }
        missing = [v for v in distinct if _norm(v) not in known]
        if mapping:
            values[canonical] = mapping
        if missing:
            unmatched[canonical] = missing
    cancelled: list[str] = []
    delivered: list[str] = []
    if status_column is not None:
        distinct = _distinct(frame[status_column])
        cancelled = [v for v in distinct if _norm(v) in {_norm(s) for s in STATUS_CANCELLED}]
        delivered = [v for v in distinct if _norm(v) in {_norm(s) for s in STATUS_DELIVERED}]
    constants = {}
    if "order_type" not in columns.values():
        constants["order_type"] = "normal"
    fmt, notes = _timestamp_format(frame, columns)
    path = Path(str(source))
    is_sql = how["kind"] == "sql"
    return Proposal(
        source=str(source),
        kind=str(how["kind"]),
        table="orders",
        file=None if is_sql else path.name,
        sql_table=table if is_sql else None,
        encoding=how.get("encoding"),  # type: ignore[arg-type]
        delimiter=str(how.get("delimiter", ",")),
        header_row=how.get("header_row"),  # type: ignore[arg-type]
        headers=headers,
        columns=columns,
        status_column=status_column,
        status_cancelled=cancelled,
        status_delivered=delivered,
        values=values,
        unmatched_values=unmatched,
        constants=constants,
        timestamp_format=fmt,
        date_notes=notes,
        rows_sampled=len(frame),
        chinese=any(_CJK.search(h) for h in headers),
    )


def _distinct(values: pd.Series, limit: int = 50) -> list[str]:
    texts = values.dropna().astype("str").str.strip()
    texts = texts[~texts.isin(MISSING_TOKENS)]
    return [str(v) for v in texts.value_counts().index[:limit]]


def _timestamp_format(frame: pd.DataFrame, columns: dict[str, str]) -> tuple[str | None, list[str]]:
    """One format for the table (from created_at, checked on the other timestamp columns)."""
    stamps = [h for h, c in columns.items() if ORDERS.column(c).kind == "timestamp"]
    stamps.sort(key=lambda h: columns[h] != "created_at")
    chosen: str | None = None
    notes = []
    seen = False
    for header in stamps:
        fmt, note = timestamp_format(frame[header])
        if note:
            notes.append(f"{header}: {note}")
        if frame[header].dropna().astype("str").str.strip().ne("").any():
            if not seen:
                chosen, seen = fmt, True
            elif fmt != chosen and not note:
                notes.append(f"{header}: written as {fmt or 'ISO'}, unlike {chosen or 'ISO'}")
    return chosen, notes


def _q(value: object) -> str:
    """A YAML scalar (JSON strings are valid YAML), Chinese kept readable."""
    return json.dumps(value, ensure_ascii=False)


def render(
    p: Proposal, out: Path, *, company: str, timezone: str, missing: dict[str, list[str]]
) -> str:
    """The standalone, commented params file of a proposal written to ``out``."""
    lines = [
        f"# Params for {company}, proposed by `meeting init` from {p.shown_source}",
        f"# ({p.rows_sampled:,} rows sampled). Check every line marked CHECK, then run:",
        f"#   meeting validate --params {out.name}",
        f"#   meeting run --params {out.name}",
        "# Layered on the package defaults (meetinglib/defaults/params.yaml: every key",
        "# documented there);",
        "# nothing of the demo is included.",
        f"company: {_q(company)}",
        f"timezone: {timezone}              # CHECK: the zone the export's times are written in",
        "language: " + ("zh-CN" if p.chinese else "en") + "                  # en | zh-CN",
        "",
        "source:",
    ]
    if p.kind == "sql" and p.url_env:
        # Secrets never go in params files: the file names the variable holding the URL.
        lines += [
            "  kind: sql",
            "  # CHECK: the URL holds a password or other credential, kept out of this file:",
            f"  # export {p.url_env}='{p.shown_source}'",
            "  # with the credential in place of ***",
            f"  url_env: {p.url_env}",
        ]
    elif p.kind == "sql":
        lines += ["  kind: sql", f"  url: {_q(p.source)}"]
    else:
        folder = Path(p.source).resolve().parent
        rel = os.path.relpath(folder, out.resolve().parent)
        lines += ["  kind: folder", f"  path: {_q(rel)}"]
    lines += ["  tables:", "    orders:"]
    if p.kind == "sql":
        lines.append(f"      table: {_q(p.sql_table)}")
    else:
        lines.append(f"      file: {_q(p.file)}")
        if p.encoding:
            lines.append(f"      encoding: {p.encoding}        # detected")
        if p.delimiter != ",":
            lines.append(f"      delimiter: {_q(p.delimiter)}")
        if p.header_row:
            note = t("init.header_row_comment", "en")
            lines.append(f"      header_row: {p.header_row}               # {note}")
    if p.timestamp_format:
        lines.append(
            f"      timestamp_format: {_q(p.timestamp_format)}   # detected from the values"
        )
    for note in p.date_notes:
        lines.append(f"      # CHECK: {note}")
    lines.append("      columns:                     # export header: canonical column")
    for header, canonical in p.columns.items():
        lines.append(f"        {_q(header)}: {canonical}")
    unused = [h for h in p.headers if h not in p.columns and h != p.status_column]
    if unused:
        lines.append(f"      # not used: {', '.join(unused)}")
    if p.values or p.unmatched_values:
        lines.append("      values:                      # export value: canonical value")
        for canonical in dict.fromkeys([*p.values, *p.unmatched_values]):
            lines.append(f"        {canonical}:")
            for value, target in p.values.get(canonical, {}).items():
                lines.append(f"          {_q(value)}: {_q(target)}")
            allowed = ORDERS.column(canonical).allowed or ()
            for value in p.unmatched_values.get(canonical, []):
                lines.append(
                    f"          # CHECK: {_q(value)} has no proposal; map it onto one of "
                    f"{', '.join(allowed)} (unmapped values are kept as 'unmapped')"
                )
    if p.constants:
        lines.append("      constants:                   # the export has no such column")
        for canonical, value in p.constants.items():
            lines.append(f"        {canonical}: {value}")
    if p.status_column:
        lines += [
            "      status:                      # a status column: which values mean what",
            f"        column: {_q(p.status_column)}",
            f"        cancelled: {_q(p.status_cancelled)}   # CHECK; time: created_at",
            f"        delivered: {_q(p.status_delivered)}   # used where delivered_at is empty",
        ]
    lines += [
        "      # The amount from another file, e.g. payments summed per order:",
        "      # amount_from: {file: payments.csv, order_id: order_id, value: payment_value}",
        "",
        "sla:",
        "  ship_hours: 48                  # CHECK: ship deadline after payment",
    ]
    if "promised_delivery_by" not in p.canonical:
        lines += [
            "  # No promised delivery time in the export: a delivery SLA gives one.",
            "  # delivery_days: 3             # days after shipping (delivery_from: shipped|paid)",
            "  # delivery_days_by_carrier: {}  # per carrier, e.g. {SF: 2}",
        ]
    lines += [
        "",
        "# KPI targets (see the README); none yet:",
        "targets: {}",
    ]
    if missing:
        lines += ["", "# KPIs this mapping cannot support (shown as 'not available'):"]
        for kpi, needs in missing.items():
            lines.append(f"#   {kpi}: needs {', '.join(needs)}")
    return "\n".join(lines) + "\n"
