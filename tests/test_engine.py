"""Tests of meetinglib.data.engine: the backends the library's expressions run on."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from meetinglib import runner
from meetinglib.analysis import kpis
from meetinglib.core.errors import (
    EngineDatabaseError,
    EngineUnavailableError,
    ParamsError,
    SparkParamsError,
    SparkStartError,
)
from meetinglib.core.params import EngineParams, Params, load_params
from meetinglib.data import engine
from meetinglib.data.dataset import load_week
from meetinglib.data.engine import connect
from tests import pgserver, sparkutil
from tests.conftest import SAMPLE_WEEK, write_params


def test_duckdb_draws_no_progress_bar():
    # in a notebook the bar is a widget with a script, which the handouts' policy refuses
    con = connect()
    setting = con.con.sql("SELECT current_setting('enable_progress_bar')").fetchall()
    assert setting == [(False,)]


def test_duckdb_honours_the_memory_limit_and_spills_to_a_temporary_folder():
    con = connect(engine.EngineSettings(memory_limit="1GB", threads=1))
    settings = dict(
        con.con.sql(
            "SELECT name, value FROM duckdb_settings() WHERE name IN "
            "('memory_limit', 'threads', 'preserve_insertion_order', 'temp_directory')"
        ).fetchall()
    )
    assert settings["memory_limit"] in ("953.6 MiB", "1.0 GB", "1000.0 MB")
    assert settings["threads"] == "1"
    assert settings["preserve_insertion_order"] == "false"
    assert settings["temp_directory"].startswith(engine.tempfile.gettempdir())


def test_duckdb_runs_without_partitioned_execution():
    # Its key-range branches each read the whole snapshot table (see engine._duckdb).
    setting = connect().con.sql("SELECT current_setting('disabled_optimizers')").fetchall()
    assert "partitioned_execution" in setting[0][0].split(",")


def _memory_limit(con) -> str:
    return con.con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0]


def test_duckdb_default_memory_limit_is_a_gib_per_thread_not_most_of_the_machine(monkeypatch):
    # DuckDB's own default (80 % of memory) is per process: the runner and a kernel
    # would each claim most of the machine
    monkeypatch.setattr(engine, "machine_memory", lambda: 24 << 30)
    assert _memory_limit(connect(engine.EngineSettings(threads=2))) == "2.0 GiB"
    assert _memory_limit(connect(engine.EngineSettings(threads=3))) == "3.0 GiB"
    # at most half the machine, at least 512 MiB
    assert _memory_limit(connect(engine.EngineSettings(threads=40))) == "12.0 GiB"
    monkeypatch.setattr(engine, "machine_memory", lambda: 600 << 20)
    assert _memory_limit(connect(engine.EngineSettings(threads=1))) == "512.0 MiB"
    # without threads in params: one GiB per CPU
    monkeypatch.setattr(engine, "machine_memory", lambda: 1 << 40)
    monkeypatch.setattr(engine.os, "cpu_count", lambda: 4)
    assert engine.default_memory_limit() == "4096MiB"


def test_a_large_week_gets_more_memory_up_to_a_quarter_of_the_machine(monkeypatch):
    monkeypatch.setattr(engine, "machine_memory", lambda: 24 << 30)
    share = engine.DATA_MEMORY_SHARE
    # little data: the default, a GiB per thread
    assert engine.data_memory_limit(100 << 20, threads=2) == 2 << 30
    # decoded data whose share is 4 GiB: that share
    assert engine.data_memory_limit(int((4 << 30) / share), threads=2) == pytest.approx(
        4 << 30, abs=1
    )
    # a share of 10 GiB: a quarter of the machine, 6 GiB
    assert engine.data_memory_limit(int((10 << 30) / share), threads=2) == 6 << 30
    # never under the default, even when a quarter of the machine is
    assert engine.data_memory_limit(int((10 << 30) / share), threads=8) == 8 << 30


def test_data_bytes_are_the_decoded_size_whatever_the_compression(tmp_path):
    table = pa.table({"id": [f"O{i:09d}" for i in range(20_000)], "n": list(range(20_000))})
    pq.write_table(table, tmp_path / "zstd.parquet", compression="zstd")
    pq.write_table(table, tmp_path / "none.parquet", compression="none")
    zstd, plain = tmp_path / "zstd.parquet", tmp_path / "none.parquet"
    assert zstd.stat().st_size < plain.stat().st_size
    decoded = engine.parquet_data_bytes([zstd])
    # the same values: the same decoded size, give or take a page header's varint
    assert engine.parquet_data_bytes([plain]) == pytest.approx(decoded, rel=1e-3)
    # about the values' own bytes: ten characters and an offset per id, eight per number
    assert 0.8 * 20_000 * (10 + 4 + 8) < decoded < 1.5 * 20_000 * (10 + 4 + 8)
    assert engine.parquet_data_bytes([zstd, zstd]) == 2 * decoded


def test_fitting_the_memory_limit_never_lowers_it(monkeypatch):
    monkeypatch.setattr(engine, "machine_memory", lambda: 24 << 30)
    con = connect(engine.EngineSettings(memory_limit="3GiB", threads=2))
    engine.fit_memory_limit(con, 100 << 20, threads=2)
    assert _memory_limit(con) == "3.0 GiB"
    engine.fit_memory_limit(con, int((4 << 30) / engine.DATA_MEMORY_SHARE) + 1, threads=2)
    assert _memory_limit(con) == "4.0 GiB"


def test_params_memory_limit_overrides_the_default():
    con = engine.shared(EngineParams(memory_limit="3GB"))
    assert _memory_limit(con) in ("2.7 GiB", "3.0 GB", "2.7 GB")


def test_machine_memory_is_at_most_the_physical_memory():
    physical = engine.os.sysconf("SC_PAGE_SIZE") * engine.os.sysconf("SC_PHYS_PAGES")
    assert 0 < engine.machine_memory() <= physical


def test_unix_micros_counts_whole_microseconds_on_every_path():
    # by hand: microseconds since 1970-01-01 UTC, before and after it, with fractions
    stamps = pd.Series(
        pd.to_datetime(
            [
                "1969-12-31 23:59:59.999999",
                "1970-01-01 00:00:00.000000",
                "2026-03-08 09:30:15.123456",
            ],
            utc=True,
        ).tz_convert("Asia/Shanghai"),
        name="at",
    )
    expected = [-1, 0, 1772962215123456]
    table = engine.frame_table(stamps.to_frame().assign(before=stamps - pd.Timedelta("1h")))
    con = connect()
    native = engine.unix_micros(table.at, con.name)  # DuckDB's epoch_us
    generic = engine.unix_micros(table.at)  # the difference from the epoch
    got = con.execute(table.select(native=native, generic=generic))
    assert got["native"].tolist() == expected
    assert got["generic"].tolist() == expected
    hours = con.execute(engine.hours_between(table.before, table.at, con.name))
    assert hours.tolist() == [1.0, 1.0, 1.0]


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
    with pytest.raises(
        EngineDatabaseError,
        match=r"cannot compute the KPIs inside sqlite \(sqlite:///\S+shop\.db\): SQLite has no "
        r"percentile function for the medians and P90s\. Set 'engine: \{kind: duckdb\}'",
    ) as raised:
        engine.connect(engine.settings_of(params.engine))
    assert raised.value.exit_code == 2  # a params choice: nothing to install


@pytest.mark.slow
def test_catalogue_runs_inside_postgresql_equal_to_duckdb(tmp_path, sample, pg_server):
    # The same Ibis definitions compiled for PostgreSQL (percentile_cont) and run there,
    # against DuckDB over the same rows: exact counts, values to 1e-9.
    folder_params = load_params(write_params(tmp_path, sample.folder))
    data = load_week(folder_params, SAMPLE_WEEK)
    url = pg_server.new_database()
    pgserver.copy_tables(url, data.tables)
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


def test_memory_limit_is_read_from_the_engine():
    import ibis

    con = ibis.duckdb.connect(memory_limit="300MiB")
    assert engine.memory_limit_bytes(con) == pytest.approx(300 * 2**20, rel=0.01)


def test_queries_run_together_give_what_each_gives_alone():
    """execute_together against con.execute, query by query: the same frames, dtypes
    included (integers, text with NULLs, lists, floats), though each column of one query
    is NULL on the other's rows in the union it runs."""
    import ibis

    con = engine.connect()
    rows = ibis.memtable(
        pd.DataFrame(
            {
                "shop": ["a", "a", "b", None, "c"],
                "week": [0, 1, 1, 0, 1],
                "hours": [1.5, 2.0, np.nan, 4.0, 8.0],
                "at": pd.date_range("2026-11-16", periods=5, freq="D", tz="Asia/Shanghai"),
            }
        )
    ).alias("rows")
    sums = rows.group_by(["week", "shop"]).aggregate(
        n=rows.count(),
        total=rows.hours.sum(),
        first=rows["at"].min(),
        longest=rows.hours.max(where=rows.hours > 3),  # NULL in most groups
    )
    quantiles = rows.group_by("week").aggregate(q=rows.hours.quantile([0.5, 0.9]))
    empty = rows.filter(rows.week > 5).select("shop", count=rows.week)
    together = engine.execute_together(con, [sums, quantiles, empty])
    for query, got in zip([sums, quantiles, empty], together, strict=True):
        alone = con.execute(query)
        key = [c for c in ("week", "shop") if c in alone.columns]
        alone = alone.sort_values(key, ignore_index=True) if key else alone
        got = got.sort_values(key, ignore_index=True) if key else got
        pd.testing.assert_frame_equal(got, alone)
    assert len(together[0]) == 5 and len(together[2]) == 0


def test_queries_run_together_must_agree_on_a_shared_columns_type():
    import ibis

    rows = ibis.memtable(pd.DataFrame({"week": [0, 1]}))
    as_text = rows.select(week=rows.week.cast("string"))
    with pytest.raises(ValueError, match="column 'week' has two types: int64 and string"):
        engine.execute_together(engine.connect(), [rows, as_text])


@pytest.mark.spark
@pytest.mark.parametrize("spark_reads", ["a file", "the frame"])
def test_spark_keeps_the_missing_values_of_a_frame_in_several_chunks(
    spark_engine, spark_reads, monkeypatch
):
    """A text column held in several Arrow chunks (as pandas 3 reads a large Parquet file)
    reaches Spark with its missing values missing, not as the text "NaN": read from a
    Parquet file by a local Spark, sent as a frame to a cluster (played here by telling
    the backend that the local Spark does not see this machine's files)."""
    if spark_reads == "the frame":
        monkeypatch.setattr(engine, "_sees_local_files", lambda session: False)
    chunks = [["SF", None, "JD"], [None, None, "SF"], ["YT", None]]
    times = pd.date_range("2026-11-16", periods=8, freq="h", tz="Asia/Shanghai")
    frame = pa.table(
        {
            "carrier": pa.chunked_array(chunks),
            "at": pa.array(times.tz_convert("UTC").as_unit("us")),
            "amount": [1.0, None, 2.5, 3.0, None, 4.0, 5.0, 6.0],
        }
    ).to_pandas()
    frame["at"] = frame["at"].dt.tz_convert("Asia/Shanghai")
    assert frame["carrier"].array._pa_array.num_chunks == 3  # the case that went wrong
    table = engine.frame_table(frame)
    got = spark_engine.to_pandas(
        table.group_by(carrier=table.carrier).aggregate(
            n=table.count(), amount=table.amount.sum(), first=table["at"].min()
        )
    )
    want = (
        frame.assign(carrier=frame["carrier"].astype(object))
        .groupby("carrier", dropna=False)
        .agg(n=("amount", "size"), amount=("amount", "sum"), first=("at", "min"))
        .reset_index()
    )
    key = lambda f: f["carrier"].fillna("(missing)")  # noqa: E731
    got = got.assign(k=key(got)).sort_values("k").reset_index(drop=True)
    want = want.assign(k=key(want)).sort_values("k").reset_index(drop=True)
    assert got["k"].tolist() == ["(missing)", "JD", "SF", "YT"]
    assert got["n"].tolist() == want["n"].tolist() == [4, 1, 2, 1]
    np.testing.assert_allclose(got["amount"].astype(float), want["amount"].astype(float))
    assert (pd.to_datetime(got["first"], utc=True) == want["first"].dt.tz_convert("UTC")).all()


# --- what Spark needs from the machine: checked before the week loads ----------------------


def test_spark_refuses_a_java_home_without_java_naming_it_and_the_remedy(tmp_path, monkeypatch):
    # spark-class would print shell errors and pyspark end with JAVA_GATEWAY_EXITED (exit 1)
    home = tmp_path / "no-such-jdk"
    monkeypatch.setenv("JAVA_HOME", str(home))
    with pytest.raises(
        EngineUnavailableError,
        match=rf"JAVA_HOME is {home}, which holds no bin/java; point JAVA_HOME at a Java "
        r"runtime's folder .* or unset it .*openjdk-17-jre-headless",
    ) as raised:
        engine.check_spark()
    assert raised.value.exit_code == 5


def test_spark_without_any_java_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(
        EngineUnavailableError, match=r"no Java runtime found; install one \(Debian: openjdk-17"
    ):
        engine.check_spark()


def test_a_week_on_spark_checks_java_before_reading_any_data(tmp_path, monkeypatch):
    # The source does not exist: the check must come first, not after a load of minutes.
    params = _params_with(
        tmp_path, f"{{kind: folder, path: '{tmp_path / 'nowhere'}'}}", "{kind: spark}"
    )
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-such-jdk"))
    with pytest.raises(EngineUnavailableError, match="JAVA_HOME is .* holds no bin/java"):
        load_week(params, SAMPLE_WEEK)


# --- Spark that does not start: what the params set, or the machine ------------------------


@pytest.mark.spark
@pytest.mark.parametrize(
    ("settings", "message"),
    [
        pytest.param(
            # the JVM ends at its start: Java's reason is the first line it writes
            engine.EngineSettings(kind="spark", spark_conf={"spark.driver.memory": "lots"}),
            r"^the query engine 'spark' cannot start: Invalid maximum heap size: -Xmxlots\. "
            r"The params set engine\.spark_conf \(spark\.driver\.memory\), the likely cause: "
            r"correct the value Spark refuses \(or remove the key\), or set 'engine: duckdb'",
            id="bad-conf",
        ),
        pytest.param(
            # the JVM starts and Spark refuses the master: the Java exception's message
            engine.EngineSettings(kind="spark", spark_master="local[x]"),
            r"^the query engine 'spark' cannot start: Could not parse Master URL: 'local\[x\]'\. "
            r"The params set engine\.spark_master 'local\[x\]', the likely cause: .* or set "
            r"'engine: duckdb' in params \(the default, embedded\)\.$",
            id="bad-master",
        ),
    ],
)
def test_spark_refusing_what_the_params_set_is_a_params_error_naming_the_keys(settings, message):
    with pytest.raises(SparkParamsError, match=message) as raised:
        sparkutil.start_alone(settings)
    assert raised.value.exit_code == 2
    assert "\tat " not in str(raised.value), "one line of the reason, not its stack trace"


@pytest.mark.spark
def test_spark_that_the_machine_stops_on_the_package_settings_is_the_environment(
    tmp_path, monkeypatch
):
    # A Java runtime that cannot start (here one that says so and ends, as a JVM without the
    # memory for its heap does): the params set nothing Spark starts with.
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text(
        "#!/bin/sh\n"
        "echo 'Error occurred during initialization of VM' >&2\n"
        "echo 'Could not reserve enough space for 1048576KB object heap' >&2\n"
        "exit 1\n"
    )
    java.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(home))
    with pytest.raises(
        SparkStartError,
        match=r"^the query engine 'spark' cannot start: Could not reserve enough space for "
        r"1048576KB object heap\. Spark was given only the package's own settings .* check "
        rf"that '{re.escape(str(java))} -version' runs and that memory is free, or set 'engine: "
        r"duckdb'",
    ) as raised:
        sparkutil.start_alone(engine.EngineSettings(kind="spark"))
    assert raised.value.exit_code == 5


# --- the week's tables a local Spark reads as files: gone with the run ---------------------


@pytest.mark.slow
def test_a_notebooks_spark_tables_are_gone_after_it_even_when_its_kernel_did_not_clean_up(
    tmp_path,
):
    # The notebook's kernel writes a table where a local Spark would (_spark_spill) and then
    # drops its own clean-up at exit, as a kernel papermill ends (or kills) never runs it.
    nb = tmp_path / "spill.ipynb"
    cell = (
        "import atexit, shutil\n"
        "from meetinglib.data import engine\n"
        "spill = engine._spark_spill()\n"
        "(spill / 'orders.parquet').write_bytes(b'rows')\n"
        "atexit.unregister(shutil.rmtree)\n"
        "print(spill)"
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(notebook, nb)
    staging = tmp_path / "staging"
    staging.mkdir()
    result = runner._execute("spill", nb, staging, tmp_path, "t", {}, say=lambda _: None)
    spill = Path(nbformat.read(result.notebook, as_version=4).cells[0].outputs[0]["text"].strip())
    assert spill.name.startswith(engine.SPILL_PREFIX)
    assert not spill.exists()


def test_spark_tables_of_a_process_that_is_gone_are_removed_by_the_next_run(tmp_path, monkeypatch):
    monkeypatch.setattr(engine.tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv(engine.SPILL_ENV, raising=False)
    engine._spark_spill.cache_clear()
    mine = engine._spark_spill()  # this process's, named after it
    engine._spark_spill.cache_clear()
    assert mine.parent == tmp_path and mine.name.startswith(f"meetinglib-spark-{os.getpid()}-")
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = tmp_path / f"meetinglib-spark-{gone.pid}-x1y2"
    dead.mkdir()
    (dead / "orders.parquet").write_bytes(b"rows")
    out_root = tmp_path / "outputs"
    out_root.mkdir()
    runner._remove_stale(out_root, SAMPLE_WEEK)  # as a run does, under the week's lock
    assert not dead.exists()
    assert mine.exists()


# --- Spark's start-up lines stay out of the run's output ----------------------------------


def test_the_jvms_stderr_reaches_ours_without_its_start_up_warning(capfd):
    read, write = os.pipe()
    os.write(write, b"WARNING: Using incubator modules: jdk.incubator.vector\n")
    os.write(write, b"26/11/23 09:00:00 ERROR Executor: Exception in task 0.0\n")
    os.close(write)
    engine._relay_stderr(read)
    assert capfd.readouterr().err == "26/11/23 09:00:00 ERROR Executor: Exception in task 0.0\n"


@pytest.mark.spark
def test_spark_driver_logs_errors_only_from_its_start(spark_engine):
    # Spark's default profile prints its name, the hostname and native-library warnings
    # and "Setting default log level" at every start, before setLogLevel can act.
    jvm = spark_engine._session.sparkContext._jvm
    assert jvm.System.getProperty("log4j2.configurationFile") == str(engine.LOG4J2_FILE)
    lines = engine.LOG4J2_FILE.read_text(encoding="utf-8").splitlines()
    config = dict(line.split(" = ", 1) for line in lines if " = " in line and line[0] != "#")
    assert config["rootLogger.level"] == "error"
    assert config["appender.console.target"] == "SYSTEM_ERR"  # errors still reach the user
    # PySpark's gateway starts as a shell would, whose level would be WARN, said in 2 lines
    assert config["logger.repl.name"] == "org.apache.spark.api.python.PythonGatewayServer"
    assert config["logger.repl.level"] == "error"
