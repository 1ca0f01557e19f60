"""meeting init's proposals: encodings, timestamp formats, synonyms, values, SQL tables."""

from __future__ import annotations

import dataclasses
import sqlite3

import pandas as pd
import pytest
import yaml

from meetinglib.cli import main
from meetinglib.core.errors import SourceNotFoundError
from meetinglib.data.propose import (
    URL_ENV,
    detect_encoding,
    header_row,
    propose,
    render,
    timestamp_format,
)
from tests.exports import OMS_HEADER, OMS_TITLE, write_oms, write_oms_xlsx


def test_encodings_are_detected_from_the_bytes():
    text = "订单编号,下单时间\n1,2026/11/16 08:30:00\n"
    assert detect_encoding(b"\xef\xbb\xbf" + text.encode("utf-8")) == "utf-8-sig"
    assert detect_encoding(text.encode("utf-8")) == "utf-8"
    assert detect_encoding(text.encode("gbk")) == "gb18030"


def test_day_month_order_from_the_values_and_no_guess_when_ambiguous():
    assert timestamp_format(pd.Series(["09/11/2026 08:30:00", "25/11/2026 10:00:00"])) == (
        "%d/%m/%Y %H:%M:%S",
        None,
    )
    assert timestamp_format(pd.Series(["11/25/2026 08:30"])) == ("%m/%d/%Y %H:%M", None)
    fmt, note = timestamp_format(pd.Series(["09/11/2026", "03/04/2026"]))
    assert fmt is None and note is not None and "set timestamp_format by hand" in note
    assert timestamp_format(pd.Series(["2026-11-16 08:30:00"])) == (None, None)
    assert timestamp_format(pd.Series(["2026/11/16 08:30:00"])) == ("%Y/%m/%d %H:%M:%S", None)


def test_ambiguous_dates_are_marked_check_in_the_file(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text("order_id,order_date\nA,09/11/2026\nB,03/04/2026\n", encoding="utf-8")
    p = propose(path)
    assert p.columns == {"order_id": "order_id", "order_date": "created_at"}
    assert p.timestamp_format is None
    out = tmp_path / "p.yaml"
    assert main(["-q", "init", str(path), "--out", str(out)]) == 0
    assert "# CHECK: order_date: dates like '09/11/2026' may be day-first or month-first" in (
        out.read_text(encoding="utf-8")
    )


def test_init_says_which_columns_it_set_to_a_constant(tmp_path, capsys):
    """An export without an order type: every order is taken as normal, and the summary
    says so beside the other points to check, not only the file's comments."""
    path = tmp_path / "orders.csv"
    path.write_text("order_id,order_date\nA,2026-11-16\nB,2026-11-17\n", encoding="utf-8")
    assert main(["init", str(path), "--out", str(tmp_path / "p.yaml")]) == 0
    out = capsys.readouterr().out
    assert "CHECK: no order_type column in the export: every order is taken as " in out
    assert "order_type = 'normal'" in out
    assert "init maps the orders only: tickets, after_sales, settlements" in out
    typed = tmp_path / "typed.csv"
    typed.write_text("order_id,order_type,order_date\nA,normal,2026-11-16\n", encoding="utf-8")
    assert main(["init", str(typed), "--out", str(tmp_path / "q.yaml")]) == 0
    assert "every order is taken as" not in capsys.readouterr().out


def test_init_reads_an_sql_table(tmp_path):
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE exports (order_no TEXT, order_type TEXT, create_time TEXT)")
        conn.execute("INSERT INTO exports VALUES ('A1', 'special', '2026-11-16 08:30:00')")
    out = tmp_path / "shop.yaml"
    url = f"sqlite:///{db}"
    assert main(["-q", "init", url, "--table", "exports", "--out", str(out)]) == 0
    data = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert data["source"] == {
        "kind": "sql",
        "url": url,
        "tables": {
            "orders": {
                "table": "exports",
                "columns": {
                    "order_no": "order_id",
                    "order_type": "order_type",
                    "create_time": "created_at",
                },
            }
        },
    }


def test_exception_codes_already_canonical_need_no_map(tmp_path):
    path = tmp_path / "orders.csv"
    rows = ["A,payment_failed", "B,Payment Failed", "C,缺货", "D,fraud_review", "E,odd-code", "F,"]
    path.write_text("order_id,exception_code\n" + "\n".join(rows) + "\n", encoding="utf-8")
    p = propose(path)
    assert p.values["exception_code"] == {"Payment Failed": "payment_failed", "缺货": "stockout"}
    assert p.unmatched_values == {"exception_code": ["odd-code"]}


SECRET = "S3cr3t-pw"


def _sqlite_shop(tmp_path, table: str = "exports"):
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute(f"CREATE TABLE {table} (order_no TEXT, order_type TEXT, create_time TEXT)")
        conn.execute(f"INSERT INTO {table} VALUES ('A1', 'special', '2026-11-16 08:30:00')")
    return db


def test_init_keeps_a_url_credential_out_of_the_file_and_the_output(tmp_path, capsys, monkeypatch):
    """A password as a query parameter: the file names url_env (a url with it would be
    refused by validate), the header and the hint show the URL masked."""
    db = _sqlite_shop(tmp_path)
    url = f"sqlite:///{db}?password={SECRET}"
    out = tmp_path / "shop.yaml"
    assert main(["init", url, "--table", "exports", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    text = out.read_text(encoding="utf-8")
    assert SECRET not in text and SECRET not in printed
    masked = f"sqlite:///{db}?password=***"
    assert text.splitlines()[0].endswith(f"proposed by `meeting init` from {masked}")
    source = yaml.safe_load(text)["source"]
    assert "url" not in source and source["url_env"] == URL_ENV
    assert f"# export {URL_ENV}='{masked}'" in text
    assert f"the file names the environment variable {URL_ENV} (source.url_env)" in printed
    assert f"export {URL_ENV}='{masked}' with the credential in place of ***" in printed
    # the file is one validate accepts, once the variable holds the URL
    monkeypatch.setenv(URL_ENV, url)
    assert main(["-q", "validate", "--params", str(out)]) == 0


def test_a_user_info_password_is_masked_and_moved_to_url_env(tmp_path):
    db = _sqlite_shop(tmp_path)
    proposal = propose(f"sqlite:///{db}", "exports")
    for url in (
        f"postgresql+psycopg://shop:{SECRET}@127.0.0.1:55432/shop",
        # SQLAlchemy reads a '/' in a password, which the user-info pattern does not
        "postgresql+psycopg://shop:S3cr/et@127.0.0.1:55432/shop",
    ):
        p = dataclasses.replace(proposal, source=url)
        text = render(p, tmp_path / "p.yaml", company="Acme", timezone="UTC", missing={})
        assert SECRET not in text and "S3cr/et" not in text
        assert p.url_env == URL_ENV
        assert "postgresql+psycopg://shop:***@127.0.0.1:55432/shop" in text.splitlines()[0]
        assert yaml.safe_load(text)["source"]["url_env"] == URL_ENV
    plain = dataclasses.replace(proposal, source="postgresql+psycopg://shop@127.0.0.1/shop")
    assert plain.url_env is None


def test_a_missing_table_is_bad_input_naming_the_tables_there(tmp_path, capsys):
    """Exit 3 with the table, the database and its tables, as validate says it; the
    default table (orders) alike."""
    db = _sqlite_shop(tmp_path)
    url = f"sqlite:///{db}"
    for args, table in ((["--table", "nosuch"], "nosuch"), ([], "orders")):
        assert main(["init", url, *args, "--out", str(tmp_path / "x.yaml")]) == 3
        err = capsys.readouterr().err
        assert err.startswith(
            f"error: table '{table}' not found in database {url}; tables in it: exports. "
            "Pass the table holding the orders with --table"
        )
        assert "bug" not in err
    assert not (tmp_path / "x.yaml").exists()


def test_a_missing_table_names_the_database_with_its_password_masked(tmp_path):
    db = _sqlite_shop(tmp_path)
    with pytest.raises(SourceNotFoundError, match=r"database sqlite:///.*\?password=\*\*\*;") as e:
        propose(f"sqlite:///{db}?password={SECRET}", "nosuch")
    assert SECRET not in str(e.value)


def test_a_missing_sqlite_file_is_not_created(tmp_path, capsys):
    db = tmp_path / "nofile.db"
    assert main(["init", f"sqlite:///{db}", "--out", str(tmp_path / "x.yaml")]) == 3
    assert f"no file {db}. Correct the path in the URL" in capsys.readouterr().err
    assert not db.exists()


def test_a_schema_qualified_table_is_read_as_schema_and_table(tmp_path, capsys):
    """--table schema.table as the params' table key reads it: SQLite's main schema here."""
    db = _sqlite_shop(tmp_path)
    url = f"sqlite:///{db}"
    out = tmp_path / "shop.yaml"
    assert main(["-q", "init", url, "--table", "main.exports", "--out", str(out)]) == 0
    orders = yaml.safe_load(out.read_text(encoding="utf-8"))["source"]["tables"]["orders"]
    assert orders["table"] == "main.exports"
    assert orders["columns"]["order_no"] == "order_id"
    with pytest.raises(SourceNotFoundError, match=r"no schema 'sales'; its schemas: main\. Pass"):
        propose(url, "sales.orders")
    with pytest.raises(SourceNotFoundError, match=r"tables in schema 'main': exports\. Pass"):
        propose(url, "main.nosuch")


def test_init_on_postgresql_with_a_password_and_a_schema(tmp_path, capsys, pg_server):
    """The reported command: a password in the user info and --table sales.orders."""
    import sqlalchemy as sa

    url = pg_server.new_database()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA sales"))
        conn.execute(sa.text("CREATE TABLE sales.orders (order_no text, create_time text)"))
        conn.execute(sa.text("INSERT INTO sales.orders VALUES ('A1', '2026-11-16 08:30:00')"))
    engine.dispose()
    # the test server trusts every login: the password is carried, not checked
    secret_url = url.replace("postgres@", f"postgres:{SECRET}@")
    out = tmp_path / "leak.yaml"
    args = ["init", secret_url, "--table", "sales.orders", "--out", str(out)]
    assert main(args) == 0
    text = out.read_text(encoding="utf-8")
    assert SECRET not in text and SECRET not in capsys.readouterr().out
    assert url.replace("postgres@", "postgres:***@") in text.splitlines()[0]
    source = yaml.safe_load(text)["source"]
    assert source["url_env"] == URL_ENV and "url" not in source
    assert source["tables"]["orders"]["table"] == "sales.orders"
    assert main(["init", secret_url, "--table", "orders", "--out", str(tmp_path / "x.yaml")]) == 3
    err = capsys.readouterr().err
    assert SECRET not in err and "table 'orders' not found in database" in err


def test_the_company_defaults_to_the_database_name_not_the_table(tmp_path, capsys):
    db = _sqlite_shop(tmp_path, table="orders")
    out = tmp_path / "acme.yaml"
    assert main(["init", f"sqlite:///{db}", "--out", str(out)]) == 0
    assert yaml.safe_load(out.read_text(encoding="utf-8"))["company"] == db.stem
    assert capsys.readouterr().out.startswith(f"params for {db.stem} written to {out}")
    sampled = propose(f"sqlite:///{db}", "orders")
    assert dataclasses.replace(sampled, source="postgresql://u@h/acme_cn").name == "acme_cn"


def test_orders_on_a_later_sheet_are_named_with_the_sheets_there(tmp_path, capsys):
    from openpyxl import Workbook

    book = Workbook()
    book.active.title = "说明"
    book.active.append(["客服工单导出说明"])
    orders = book.create_sheet("工单")
    orders.append(["订单号", "下单时间", "订单类型"])
    orders.append(["A1", "2026-11-17 14:03", "普通"])
    path = tmp_path / "export.xlsx"
    book.save(path)
    assert main(["init", str(path), "--out", str(tmp_path / "p.yaml")]) == 3
    err = capsys.readouterr().err
    assert "no column of" in err and "headers read: '客服工单导出说明'" in err
    assert "it read the first sheet, '说明', of ['说明', '工单']" in err
    assert "source.tables.orders.sheet" in err
    assert not (tmp_path / "p.yaml").exists()


def test_a_folder_or_an_unknown_timezone_is_refused_before_anything_is_written(tmp_path, capsys):
    export = tmp_path / "export"
    export.mkdir()
    assert main(["init", str(export), "--out", str(tmp_path / "p.yaml")]) == 3
    assert f"{export} is a folder; pass the orders export itself" in capsys.readouterr().err
    path = export / "orders.csv"
    path.write_text("order_id,order_date\nA,2026-11-16\n", encoding="utf-8")
    args = ["init", str(path), "--out", str(tmp_path / "p.yaml"), "--timezone", "Asia/Beijing"]
    assert main(args) == 2
    assert "--timezone: unknown timezone 'Asia/Beijing'" in capsys.readouterr().err
    assert not (tmp_path / "p.yaml").exists()


def test_an_exception_reason_column_is_mapped_to_exception_code(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text(
        "订单号,下单时间,异常原因\nA1,2026-11-16 10:00,缺货\nA2,2026-11-16 11:00,\n",
        encoding="utf-8",
    )
    assert propose(path).columns["异常原因"] == "exception_code"


# --- a title above the header ------------------------------------------------------------


def test_a_title_above_the_header_is_found_and_an_ordinary_header_is_left_alone():
    data = ["A1", "普通订单", "2026/11/16 08:30:00", "199.00"]
    names = ["订单编号", "订单类型", "下单时间", "订单金额"]
    # A title cell (merged or not), an empty row, the header: the header is row 3.
    assert header_row([[OMS_TITLE, "", "", ""], [], names, data, data]) == 3
    assert header_row([["导出时间: 2026-11-23 09:00"], names, data]) == 2
    # A label and a date in two cells are a title too, above a wide header.
    assert header_row([["导出时间:", "2026-11-23 09:00"], [], [*names, *"ABCD"], data]) == 3
    # Header on row 1: nothing to propose, whatever follows.
    assert header_row([names, data, data]) is None
    assert header_row([["order_id", "status"], ["A1", "delivered"], ["A2", "canceled"]]) is None
    # A first row of values is no title: no header is made up from a later row of text.
    assert header_row([["A1", "2026-11-16", "5"], ["A2", "normal", "web"]]) is None
    # One column only, or nothing: no header row found.
    assert header_row([["order_id"], ["A1"]]) is None
    assert header_row([]) is None


def test_init_proposes_the_header_row_of_a_titled_gbk_csv(tmp_path, capsys):
    path, _ = write_oms(tmp_path / "export", title=("导出时间: 2026-11-23 09:00",))
    out = tmp_path / "p.yaml"
    assert main(["init", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "header row: 2, below a title (source.tables.orders.header_row)" in printed
    orders = yaml.safe_load(out.read_text(encoding="utf-8"))["source"]["tables"]["orders"]
    assert orders["header_row"] == 2
    assert orders["encoding"] == "gb18030"
    assert set(orders["columns"]) == set(OMS_HEADER)
    assert orders["timestamp_format"] == "%Y/%m/%d %H:%M:%S"  # read from the data rows


def test_init_proposes_the_header_row_of_a_titled_xlsx(tmp_path, capsys):
    path, _ = write_oms_xlsx(tmp_path / "export")
    out = tmp_path / "p.yaml"
    assert main(["init", str(path), "--out", str(out)]) == 0
    assert "header row: 3, below a title" in capsys.readouterr().out
    orders = yaml.safe_load(out.read_text(encoding="utf-8"))["source"]["tables"]["orders"]
    assert orders["header_row"] == 3
    assert set(orders["columns"]) == set(OMS_HEADER)
    assert orders["values"]["order_type"]["特殊订单"] == "special"  # the data rows sampled


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_init_proposes_no_header_row_for_a_header_on_the_first_row(kind, tmp_path, capsys):
    if kind == "csv":
        path, _ = write_oms(tmp_path / "export")
    else:
        path, _ = write_oms_xlsx(tmp_path / "export", title=None)
    out = tmp_path / "p.yaml"
    assert main(["init", str(path), "--out", str(out)]) == 0
    assert "header row" not in capsys.readouterr().out
    text = out.read_text(encoding="utf-8")
    assert "header_row" not in text
    assert set(yaml.safe_load(text)["source"]["tables"]["orders"]["columns"]) == set(OMS_HEADER)


def test_no_column_found_says_which_row_was_read_and_names_header_row(tmp_path, capsys):
    """A title init does not recognise as one (two lines of text, as wide as the table):
    the message names the row read and the key that reads another."""
    path = tmp_path / "orders.csv"
    path.write_text("Shop,Weekly orders\nNorth,2026\nno,when\nA1,2026-11-16\n", encoding="utf-8")
    assert main(["init", str(path), "--out", str(tmp_path / "p.yaml")]) == 3
    err = capsys.readouterr().err
    assert "no column of" in err and "headers read: 'Shop', 'Weekly orders'" in err
    assert "they were read from row 1 of the file" in err
    assert "set source.tables.orders.header_row to its number" in err
