"""Tests of meetinglib.data.engine: the backends the library's expressions run on."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from meetinglib.analysis import kpis
from meetinglib.core.errors import EngineUnavailableError, ParamsError
from meetinglib.core.params import Params, load_params
from meetinglib.data import engine
from meetinglib.data.dataset import load_week
from meetinglib.data.engine import connect
from tests.conftest import SAMPLE_WEEK, write_params


def test_duckdb_draws_no_progress_bar():
    # in a notebook the bar is a widget with a script, which the handouts' policy refuses
    con = connect()
    setting = con.con.sql("SELECT current_setting('enable_progress_bar')").fetchall()
    assert setting == [(False,)]


# --- engine kind "source": the expressions run inside the source database ------------------


def _params_with(tmp_path: Path, source: str, engine: str = "{kind: source}") -> Params:
    path = tmp_path / "params.yaml"
    path.write_text(
        f"company: Test Shop\ntimezone: Asia/Shanghai\nsource: {source}\nengine: {engine}\n",
        encoding="utf-8",
    )
    return load_params(path)


def test_source_engine_needs_a_sql_source(tmp_path):
    with pytest.raises(ParamsError, match=r"engine.kind 'source' .* needs source.kind 'sql'"):
        _params_with(tmp_path, f"{{kind: folder, path: '{tmp_path}'}}")


def test_source_engine_refuses_sqlite_naming_why(tmp_path):
    params = _params_with(tmp_path, f"{{kind: sql, url: 'sqlite:///{tmp_path / 'shop.db'}'}}")
    with pytest.raises(EngineUnavailableError, match="SQLite has no percentile function"):
        engine.connect(engine.settings_of(params.engine))


def _copy_into(url: str, tables: dict[str, pd.DataFrame]) -> None:
    """The canonical tables as PostgreSQL tables (typed by pandas' DDL, rows by COPY)."""
    import psycopg
    import sqlalchemy as sa

    db = sa.engine.make_url(url)
    sa_engine = sa.create_engine(url)
    for name, frame in tables.items():
        plain = frame.astype(
            {c: "str" for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)}
        )
        plain.head(0).to_sql(name, sa_engine, index=False)
    sa_engine.dispose()
    with (
        psycopg.connect(host=db.host, port=db.port, user=db.username, dbname=db.database) as conn,
        conn.cursor() as cur,
    ):
        for name, frame in tables.items():
            text = io.StringIO()
            frame.to_csv(text, index=False, header=False, date_format="%Y-%m-%dT%H:%M:%S.%f%z")
            with cur.copy(f'COPY "{name}" FROM STDIN WITH (FORMAT csv)') as copy:
                copy.write(text.getvalue())


@pytest.mark.slow
def test_catalogue_runs_inside_postgresql_equal_to_duckdb(tmp_path, sample, pg_server):
    # The same Ibis definitions compiled for PostgreSQL (percentile_cont) and run there,
    # against DuckDB over the same rows: exact counts, values to 1e-9.
    folder_params = load_params(write_params(tmp_path, sample.folder))
    data = load_week(folder_params, SAMPLE_WEEK)
    url = pg_server.new_database()
    _copy_into(url, data.tables)
    params = _params_with(tmp_path, f"{{kind: sql, url: '{url}'}}")
    con = engine.shared(params.engine)
    assert con.name == "postgres"
    on_pg = {name: con.table(name) for name in data.tables}
    windows = [w.window(data.tz) for w in data.history_weeks]
    ship = folder_params.sla.ship_hours
    pushed = kpis.weekly_kpis_on(con, on_pg, windows, ship)
    local = kpis.weekly_kpis(data.tables, windows, ship)
    keys = ["kpi", "dimension", "segment", "order_type", "week"]
    a = local.sort_values(keys).reset_index(drop=True)
    b = pushed.sort_values(keys).reset_index(drop=True)
    assert len(a) == len(b) > 100
    assert (a[keys].to_numpy() == b[keys].to_numpy()).all()
    assert np.array_equal(a["n"].to_numpy(), b["n"].to_numpy(), equal_nan=True)
    np.testing.assert_allclose(b["value"], a["value"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b["se"], a["se"], rtol=1e-9, atol=1e-12)
