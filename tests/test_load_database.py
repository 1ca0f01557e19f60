"""Tests of meetinglib.data.load_database: a sql source validated and computed in PostgreSQL.

The same raw tables (orders with the company's own column names, a coded order type and
naive wall-clock times; the other tables typed with zones) are read two ways: the default
path fetches the rows and validates them in pandas, engine kind ``source`` keeps them in
the database. Everything the library reports must be the same.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from meetinglib.analysis import kpis, sections
from meetinglib.core.errors import SourceChangedError
from meetinglib.core.params import Params, load_params
from meetinglib.data import engine, load_database
from meetinglib.data.dataset import WeekData, load_week, weekly_order_counts
from tests import pgserver
from tests.conftest import SAMPLE_WEEK, write_params

TABLES = ("orders", "tickets", "after_sales", "settlements", "order_lines", "events")
ORDER_TYPE_CODES = {"normal": "N", "special": "S", "after_sales": "A"}


def _raw_tables(folder: Path) -> dict[str, pd.DataFrame]:
    """The sample's tables as a company stores them: orders renamed, coded, naive local."""
    out = {}
    for name in TABLES:
        frame = pd.read_parquet(folder / f"{name}.parquet")
        for c in frame.columns:
            if isinstance(frame[c].dtype, pd.CategoricalDtype):
                frame[c] = frame[c].astype(object)
            if name == "orders" and isinstance(frame[c].dtype, pd.DatetimeTZDtype):
                frame[c] = frame[c].dt.tz_convert("Asia/Shanghai").dt.tz_localize(None)
        if name == "orders":
            frame = frame.rename(columns={"order_id": "order_no", "order_type": "kind"})
            frame["kind"] = frame["kind"].map(ORDER_TYPE_CODES)
        out[name] = frame
    return out


def _execute(url: str, *statements: str) -> None:
    import sqlalchemy as sa

    sa_engine = sa.create_engine(url)
    with sa_engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    sa_engine.dispose()


def _params(folder: Path, url: str, kind: str, sample_folder: Path) -> Params:
    """Params over the database: orders mapped, the engine of ``kind``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = write_params(folder, sample_folder)
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"source: .*\n", "", text)
    text += (
        "source:\n"
        "  kind: sql\n"
        f"  url: '{url}'\n"
        "  tables:\n"
        "    orders:\n"
        "      columns: {order_no: order_id, kind: order_type}\n"
        "      values: {order_type: {N: normal, S: special, A: after_sales}}\n"
        f"engine: {{kind: {kind}}}\n"
    )
    path.write_text(text, encoding="utf-8")
    return load_params(path)


BAD_ROWS = (
    # a duplicate order, two orders without created_at, negative amounts, unknown types,
    # padded carriers and placeholders (cleaned, kept), shipped before paid, CSAT 9
    """INSERT INTO orders (order_no, kind, created_at, amount, carrier)
       SELECT order_no, kind, created_at, amount, carrier FROM orders
       WHERE created_at >= '2026-11-17' ORDER BY order_no LIMIT 3""",
    """UPDATE orders SET created_at = NULL WHERE order_no IN
       (SELECT order_no FROM orders WHERE created_at >= '2026-11-18' ORDER BY order_no LIMIT 2)""",
    """UPDATE orders SET amount = -5 WHERE order_no IN
       (SELECT order_no FROM orders WHERE created_at >= '2026-11-19' ORDER BY order_no LIMIT 2)""",
    """UPDATE orders SET kind = 'Z' WHERE order_no IN
       (SELECT order_no FROM orders WHERE created_at >= '2026-11-20' ORDER BY order_no LIMIT 2)""",
    """UPDATE orders SET carrier = '  ' || carrier || ' ' WHERE order_no IN
       (SELECT order_no FROM orders WHERE created_at >= '2026-11-16' ORDER BY order_no LIMIT 5)""",
    """UPDATE orders SET channel = 'N/A' WHERE order_no IN (SELECT order_no FROM orders
       WHERE created_at >= '2026-11-16' ORDER BY order_no DESC LIMIT 5)""",
    """UPDATE orders SET shipped_at = created_at - interval '1 day' WHERE order_no IN
       (SELECT order_no FROM orders WHERE shipped_at IS NOT NULL ORDER BY order_no DESC LIMIT 3)""",
    """UPDATE tickets SET csat = 9 WHERE ticket_id IN
       (SELECT ticket_id FROM tickets WHERE csat IS NOT NULL ORDER BY ticket_id LIMIT 2)""",
)


@pytest.fixture(scope="module")
def both(pg_server, sample, tmp_path_factory) -> tuple[WeekData, WeekData]:
    """The week with bad rows loaded by the default path and inside PostgreSQL."""
    url = pg_server.new_database()
    pgserver.copy_tables(url, _raw_tables(sample.folder))
    _execute(url, *BAD_ROWS)
    root = tmp_path_factory.mktemp("pushdown")
    default = load_week(_params(root / "a", url, "duckdb", sample.folder), SAMPLE_WEEK)
    pushed = load_week(_params(root / "b", url, "source", sample.folder), SAMPLE_WEEK)
    return default, pushed


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    plain = frame.astype(
        {c: "str" for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)}
    )
    return plain.sort_values(list(plain.columns), na_position="last").reset_index(drop=True)


def test_the_clean_tables_equal_the_default_paths(both):
    default, pushed = both
    assert set(pushed.load_paths.values()) == {"database"}
    assert set(default.load_paths.values()) == {"pandas"}
    assert list(pushed.tables) == list(default.tables)
    for name in default.tables:
        a, b = default.tables[name], pushed.tables[name]
        assert len(a) > 100
        pd.testing.assert_frame_equal(_sorted(b), _sorted(a))
        for column in a.columns:  # the same dtypes, categories listed in the same order
            assert b[column].dtype == a[column].dtype, (name, column)


def _examples(entry) -> tuple[str, ...]:
    # Row numbers differ by design (a database has no row order; see load_database), and so
    # may which duplicates are listed first.
    return tuple(sorted(re.sub(r"row \d+", "row N", t) for t in entry.example_texts()))


def test_quality_entries_and_quarantine_equal_the_default_paths(both):
    default, pushed = both
    qa, qb = default.quality, pushed.quality
    assert qb.loaded == qa.loaded
    assert qb.kept == qa.kept
    assert qb.week == qa.week
    rules = {(e.table, e.column, e.rule) for e in qa.entries}
    assert {
        ("orders", "order_id", "duplicate key"),
        ("orders", "created_at", "required value missing"),
        ("orders", "amount", "out of range"),
        ("orders", "order_type", "unknown value"),
        ("orders", "shipped_at", "milestone order"),
        ("tickets", "csat", "out of range"),
    } <= rules
    key = [(e.table, e.column, e.rule, e.rows, e.kept, _examples(e)) for e in qa.entries]
    assert [(e.table, e.column, e.rule, e.rows, e.kept, _examples(e)) for e in qb.entries] == key
    for name, a in qa.quarantined.items():
        b = qb.quarantined[name]
        assert list(b.columns) == list(a.columns)
        drop = ["_source_row"]
        pd.testing.assert_frame_equal(
            _sorted(b.drop(columns=drop)), _sorted(a.drop(columns=drop)), check_dtype=False
        )


def test_kpis_and_section_figures_computed_in_postgresql_equal_the_default(both):
    default, pushed = both
    con = engine.shared(pushed.params.engine)
    assert con.name == "postgres"
    windows = [w.window(default.tz) for w in default.history_weeks]
    ship = default.params.sla.ship_hours
    local = kpis.weekly_kpis(default.tables, windows, ship)
    inside = kpis.weekly_kpis_on(con, pushed.engine_tables(), windows, ship)
    keys = ["kpi", "dimension", "segment", "order_type", "week"]
    a = local.sort_values(keys).reset_index(drop=True)
    b = inside.sort_values(keys).reset_index(drop=True)
    assert len(a) == len(b) > 100
    assert (a[keys].to_numpy() == b[keys].to_numpy()).all()
    assert np.array_equal(a["n"].to_numpy(), b["n"].to_numpy(), equal_nan=True)
    np.testing.assert_allclose(b["value"], a["value"], rtol=1e-9, atol=1e-12)
    # Section figures: the default path's tables on DuckDB against the database's.
    duck = engine.shared()
    mine = {n: engine.frame_table(f) for n, f in default.tables.items()}
    theirs = pushed.engine_tables()
    week = default.window
    pd.testing.assert_frame_equal(
        sections.order_volume_by_day(con, theirs["orders"], week),
        sections.order_volume_by_day(duck, mine["orders"], week),
    )
    for by in ("carrier", "warehouse"):
        pd.testing.assert_frame_equal(
            sections.stage_durations(con, theirs["orders"], week, by),
            sections.stage_durations(duck, mine["orders"], week, by),
            rtol=1e-9,
        )
        pd.testing.assert_frame_equal(
            sections.abnormal_by(con, theirs["orders"], week, by),
            sections.abnormal_by(duck, mine["orders"], week, by),
        )


class _Counting:
    """Wraps a backend's result methods and records the rows of every result returned."""

    def __init__(self, con, monkeypatch):
        self.rows: list[int] = []
        for method in ("execute", "to_pyarrow", "to_pandas"):
            original = getattr(con, method)

            def wrapped(*args, _original=original, **kwargs):
                result = _original(*args, **kwargs)
                self.rows.append(len(result) if hasattr(result, "__len__") else 1)
                return result

            monkeypatch.setattr(con, method, wrapped)


def test_no_row_table_comes_back_from_the_database(both, pg_server, sample, tmp_path, monkeypatch):
    default, _ = both
    url = pg_server.new_database()
    pgserver.copy_tables(url, _raw_tables(sample.folder))
    _execute(url, *BAD_ROWS)
    params = _params(tmp_path, url, "source", sample.folder)
    counting = _Counting(engine.shared(params.engine), monkeypatch)
    data = load_week(params)  # the week found by counts in the database, too
    assert str(data.week) == SAMPLE_WEEK
    windows = [w.window(data.tz) for w in data.history_weeks]
    con = engine.shared(params.engine)
    kpis.weekly_kpis_on(con, data.engine_tables(), windows, params.sla.ship_hours)
    sections.stage_durations(con, data.engine_tables()["orders"], data.window, "carrier")
    assert len(counting.rows) > 10
    # Aggregates, examples and the rows set aside: no result is as long as a table; the
    # longest (the KPIs' sums per fine segment cell and week) about half the orders of
    # this small sample, a small share at scale (a cell holds many orders there).
    sizes = {len(frame) for frame in default.tables.values()}
    assert not sizes & set(counting.rows)
    assert max(counting.rows) < len(default.tables["orders"]) * 0.6
    assert sum(counting.rows) < sum(sizes) / 2


def test_weekly_order_counts_in_the_database_equal_the_default(both):
    default, pushed = both
    a = weekly_order_counts(default.params)
    b = weekly_order_counts(pushed.params)
    pd.testing.assert_series_equal(b, a, check_names=False)
    assert b.attrs["last_event"] == a.attrs["last_event"]


def test_a_snapshot_rebuilds_the_expressions_from_its_meta(both, tmp_path):
    _, pushed = both
    pushed.save(tmp_path / "snap")
    meta = json.loads((tmp_path / "snap" / "meta.json").read_text(encoding="utf-8"))
    assert "database" in meta
    assert not list((tmp_path / "snap" / "tables").iterdir())  # no rows written
    again = WeekData.load(tmp_path / "snap", pushed.params)
    con = engine.shared(pushed.params.engine)
    for name, table in pushed.engine_tables().items():
        assert con.execute(again.engine_tables()[name].count()) == con.execute(table.count())
    assert again.quality.entries == pushed.quality.entries


def test_a_snapshot_refuses_a_database_that_changed_since_the_load(pg_server, sample, tmp_path):
    url = pg_server.new_database()
    pgserver.copy_tables(url, _raw_tables(sample.folder))
    params = _params(tmp_path, url, "source", sample.folder)
    load_week(params, SAMPLE_WEEK).save(tmp_path / "snap")
    WeekData.load(tmp_path / "snap", params)  # unchanged: the kernels go on
    # an open order of the week ships: the rows the run loaded are not the rows now
    _execute(
        url,
        """UPDATE orders SET shipped_at = created_at + interval '3 hours' WHERE order_no =
           (SELECT order_no FROM orders WHERE shipped_at IS NULL AND cancelled_at IS NULL
            AND created_at >= '2026-11-17' ORDER BY order_no LIMIT 1)""",
    )
    with pytest.raises(
        SourceChangedError,
        match=r"table \S*orders changed in the database since the week was loaded "
        r"\(filled shipped_at: (\d+) then, (?!\1)\d+ now\).* Run `meeting run` again",
    ):
        WeekData.load(tmp_path / "snap", params)
    assert SourceChangedError.exit_code == 3


def test_text_timestamps_are_refused_naming_table_and_column(pg_server, sample, tmp_path):
    url = pg_server.new_database()
    raw = _raw_tables(sample.folder)
    raw["orders"]["created_at"] = raw["orders"]["created_at"].dt.strftime("%Y/%m/%d %H:%M")
    pgserver.copy_tables(url, {"orders": raw["orders"]})
    params = _params(tmp_path, url, "source", sample.folder)
    with pytest.raises(
        load_database.NotPushableError,
        match=r"table orders, column created_at: timestamps stored as text .* engine: "
        r"\{kind: duckdb\}",
    ):
        load_week(params, SAMPLE_WEEK)


@pytest.mark.slow
def test_a_run_on_postgresql_writes_the_handout_and_the_same_kpis_csv(pg_server, sample, tmp_path):
    from meetinglib.runner import run_week

    url = pg_server.new_database()
    pgserver.copy_tables(url, _raw_tables(sample.folder))
    written = {}
    for kind in ("source", "duckdb"):
        params = _params(tmp_path / kind, url, kind, sample.folder)
        result = run_week(params.files, SAMPLE_WEEK, notebooks=["data_report"])
        assert (result.folder / "data_report.html").stat().st_size > 10_000
        manifest = json.loads(result.manifest.read_text(encoding="utf-8"))
        inputs = {s["table"]: s["validated_on"] for s in manifest["inputs"]}
        assert inputs["orders"] == ("database" if kind == "source" else "pandas")
        written[kind] = pd.read_csv(result.folder / "kpis.csv")
    a, b = written["duckdb"], written["source"]
    assert len(a) == len(b) > 50
    numbers = [c for c in a.columns if pd.api.types.is_float_dtype(a[c])]
    pd.testing.assert_frame_equal(
        b.drop(columns=numbers), a.drop(columns=numbers), check_dtype=False
    )
    for column in numbers:
        np.testing.assert_allclose(b[column], a[column], rtol=1e-9, atol=1e-12, err_msg=column)
