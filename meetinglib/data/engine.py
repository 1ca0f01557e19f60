"""The query engine under the data layer: an Ibis backend that runs the KPI definitions.

DuckDB, embedded, is the default: it reads source files where they are and keeps heavy
data out of pandas. The same Ibis expressions run on Spark (``engine: spark`` in params)
through Ibis's PySpark backend; pyspark and a Java runtime are then needed (the
``spark`` extra; Debian: openjdk-17-jre-headless). With ``engine: {kind: source}`` and a
``sql`` source, they run inside the source database itself (PostgreSQL and the other
databases Ibis compiles for; not SQLite, which has no percentile function): the
aggregations go to the rows, only their results come back.

Conventions every expression in the library follows, so that both engines agree:

* timestamps are compared as instants (timezone-aware on DuckDB, UTC on Spark: the
  Spark session runs in UTC);
* durations are differences of whole microseconds since the epoch (``unix_micros``:
  DuckDB's ``epoch_us``, Spark's ``unix_micros``), in float hours or days;
* quantiles are computed from ranks, numpy's default (linear interpolation between the
  order statistics at ``q * (n - 1)``), not with an engine's own quantile function;
* frames from pandas enter through ``ibis.memtable`` (DuckDB 2.0 breaks Ibis's
  ``create_table`` from a frame).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.util
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb
import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa
from ibis.backends import BaseBackend
from ibis.backends.duckdb.converter import DuckDBPandasData
from ibis.formats.pandas import PandasData

from meetinglib.core.errors import (
    EngineDatabaseError,
    EngineUnavailableError,
    MeetingError,
    SparkParamsError,
    SparkStartError,
)
from meetinglib.core.params import EngineParams
from meetinglib.core.processes import remove_orphans

EngineKind = Literal["duckdb", "spark", "source"]
ENGINES: tuple[EngineKind, ...] = ("duckdb", "spark", "source")
# SQLAlchemy dialect -> Ibis backend, for engine kind "source". SQLite is not among them:
# it has no percentile function, so the catalogue's medians and P90s cannot run in it.
DATABASE_BACKENDS = {
    "postgresql": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "mssql": "mssql",
    "oracle": "oracle",
    "trino": "trino",
    "clickhouse": "clickhouse",
    "snowflake": "snowflake",
    "databricks": "databricks",
}


@dataclass(frozen=True)
class EngineSettings:
    """How to reach the engine: its kind and the knobs that matter on a 2-core laptop."""

    kind: EngineKind = "duckdb"
    # DuckDB: memory the engine may use before spilling to disk ("3GB"); None: 1 GiB per
    # thread, at most half the machine (``default_memory_limit``); a week's engines may
    # raise it to what their data asks for (``fit_memory_limit``).
    memory_limit: str | None = None
    threads: int | None = None
    # Spark: the master URL and extra session configuration.
    spark_master: str = "local[2]"
    spark_conf: dict[str, str] = field(default_factory=dict)
    # Kind "source": the source database's URL (may hold a password: never shown).
    database_url: str | None = field(default=None, repr=False)


def connect(settings: EngineSettings | None = None) -> BaseBackend:
    """An Ibis backend of the configured kind, ready for the library's expressions."""
    settings = settings or EngineSettings()
    if settings.kind == "duckdb":
        return _duckdb(settings)
    if settings.kind == "spark":
        return _spark(settings)
    if settings.kind == "source":
        return _database(settings)
    raise EngineUnavailableError(
        str(settings.kind), f"no engine named {settings.kind!r}; use one of {list(ENGINES)}"
    )


_OPEN: dict[str, BaseBackend] = {}


def settings_of(params: EngineParams) -> EngineSettings:
    """The engine settings the params ask for."""
    return EngineSettings(
        kind=params.kind,
        memory_limit=params.memory_limit,
        threads=params.threads,
        spark_master=params.spark_master,
        spark_conf=dict(params.spark_conf),
        database_url=params.database_url(),
    )


def shared(params: EngineParams | None = None) -> BaseBackend:
    """The process's engine for ``params`` (default: embedded DuckDB), opened on first use.

    A Spark session takes seconds to start; a kernel or command reuses it.
    """
    settings = settings_of(params or EngineParams())
    key = repr(settings) + (settings.database_url or "")
    if key not in _OPEN:
        _OPEN[key] = connect(settings)
    return _OPEN[key]


def duckdb_config(settings: EngineSettings) -> dict[str, Any]:
    """DuckDB's settings for ``settings``: the params' memory limit and threads, and what
    the library's queries want whatever the params say."""
    config: dict[str, Any] = {
        # Every result is grouped and sorted after the engine: keeping the rows' order
        # through a query only costs memory and time.
        "preserve_insertion_order": False,
        # Past the memory limit, sorts, joins and quantiles spill here instead of failing.
        "temp_directory": os.path.join(tempfile.gettempdir(), f"meetinglib-duckdb-{os.getpid()}"),
    }
    # DuckDB's own default (80 % of the machine) holds per process: the runner and each
    # kernel would each claim most of the machine, and a large week ran out of memory.
    config["memory_limit"] = settings.memory_limit or default_memory_limit(settings.threads)
    if settings.threads:
        config["threads"] = settings.threads
    return config


# DuckDB's performance guide: aggregation-heavy work wants 1-2 GB per thread; past the
# limit it spills to ``temp_directory`` rather than failing.
MEMORY_PER_THREAD = 1 << 30
MIN_MEMORY = 512 << 20


def machine_memory() -> int:
    """Bytes of memory this process may use: the machine's, or its cgroup's limit if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        # A container's limit (cgroup v2): "max" when there is none.
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


def default_memory_limit(threads: int | None = None) -> str:
    """DuckDB's memory limit when params set none: 1 GiB per thread (threads: the params'
    or the CPU count), at most half the machine's memory, at least 512 MiB; as "<n>MiB"."""
    return f"{_default_memory_bytes(threads) >> 20}MiB"


def _default_memory_bytes(threads: int | None) -> int:
    n = threads or os.cpu_count() or 1
    return max(MIN_MEMORY, min(n * MEMORY_PER_THREAD, machine_memory() // 2))


# A week whose tables are large gets more: a quantile keeps every value it reads and
# cannot spill, so under a small limit the KPI table's quantile passes run in many small
# blocks of weeks, each a scan of the table. At 5M orders a week 4 GB for every engine
# instead of 2 GiB took the run from 963 to 887 CPU seconds (535 to 489 s;
# benchmarks/results/engine.md). The data's size is its decoded size (Parquet's own
# count of its column chunks, however compressed: a snapshot's copies of a zstd export
# are 0.9 GB at 1M orders a week where the same rows written with snappy were 1.5 GB,
# both about 4 GB decoded), and the share is 80 % of the size the snappy files had, as
# measured. Capped at a quarter of the machine: the runner's engine and the explorer's
# beside the kernel's stay within the rest.
DATA_MEMORY_SHARE = 0.28
DATA_MEMORY_MACHINE_SHARE = 4


def parquet_data_bytes(files: Iterable[Path]) -> int:
    """The decoded size of Parquet ``files``: the bytes of their column chunks before
    compression, as their footers record them (nothing else is read)."""
    total = 0
    for path in files:
        metadata = pq.ParquetFile(path).metadata
        total += sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    return total


def data_memory_limit(data_bytes: int, threads: int | None = None) -> int:
    """Bytes of DuckDB memory for computing on ``data_bytes`` of decoded Parquet
    (``parquet_data_bytes``): the default (``default_memory_limit``), or
    ``DATA_MEMORY_SHARE`` of the data's size when that is more, at most a quarter of the
    machine's memory."""
    default = _default_memory_bytes(threads)
    scaled = min(int(data_bytes * DATA_MEMORY_SHARE), machine_memory() // DATA_MEMORY_MACHINE_SHARE)
    return max(default, scaled)


def fit_memory_limit(con: BaseBackend, data_bytes: int, threads: int | None = None) -> None:
    """Raise ``con``'s memory limit (DuckDB) to ``data_memory_limit`` for ``data_bytes``
    when that is above the limit it has; never lowers it."""
    current = memory_limit_bytes(con)
    wanted = data_memory_limit(data_bytes, threads)
    if current is not None and wanted > current:
        con.raw_sql(f"SET memory_limit = '{wanted >> 20}MiB'")


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an engine's refusal to go past its memory limit, told by its
    type's name (DuckDB's OutOfMemoryException; the engines' error types differ, and
    DuckDB is not imported by every caller's engine)."""
    return "OutOfMemory" in type(exc).__name__


def memory_limit_bytes(con: BaseBackend) -> int | None:
    """The engine's memory limit in bytes (DuckDB's setting), None when not known."""
    if con.name != "duckdb":
        return None
    text = str(con.raw_sql("SELECT current_setting('memory_limit')").fetchall()[0][0])
    found = re.fullmatch(r"\s*([\d.]+)\s*([KMGTP]?i?B|bytes)\s*", text)
    if found is None:
        return None
    unit = found.group(2).replace("i", "").replace("bytes", "B")
    power = "BKMGTP".index(unit[0]) if unit != "B" else 0
    base = 1024 if "i" in found.group(2) else 1000
    return int(float(found.group(1)) * base**power)


# DuckDB optimizers the library's queries run without (see _duckdb).
DISABLED_OPTIMIZERS = "partitioned_execution"


def _duckdb(settings: EngineSettings) -> BaseBackend:
    con = ibis.duckdb.connect(**duckdb_config(settings))
    # No progress bar: in a notebook DuckDB draws it as a widget, whose script the
    # handouts' Content-Security-Policy refuses.
    con.raw_sql("SET enable_progress_bar = false")
    # instants cast to plain timestamps read as UTC wall time, on any machine
    con.raw_sql("SET TimeZone = 'UTC'")
    # DuckDB 2's partitioned execution splits an aggregate by a key the data is sorted on
    # (order_id) into ranges of the key, one branch each; here the ranges' filter does not
    # reach the Parquet scan, so every branch reads the whole table. At 5M orders a week
    # the delivered orders' pass read the 121M order lines 15 times (50 s; 33 s without),
    # and the data report's kernel took 340 s against 266 s. Versions without it ignore this.
    with contextlib.suppress(duckdb.Error):
        con.raw_sql(f"SET disabled_optimizers = '{DISABLED_OPTIMIZERS}'")
    return con


JAVA_PACKAGE = "Debian: openjdk-17-jre-headless"
NO_PYSPARK = "pyspark is not installed; pip install 'meetinglib[spark]'"


def check_spark() -> None:
    """Raise EngineUnavailableError naming what to install when Spark cannot start here
    (pyspark or the Java runtime missing).

    Cheap (nothing is imported or started): a run on Spark calls it before it loads the
    week, so that a missing Java stops it at once, not after a load of minutes.
    """
    if importlib.util.find_spec("pyspark") is None:
        raise EngineUnavailableError("spark", NO_PYSPARK)
    java_runtime()


def java_runtime() -> str:
    """The java program Spark's launch scripts will run: ``$JAVA_HOME/bin/java`` when
    JAVA_HOME is set (they take it without looking further), else the first on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home:
        java = os.path.join(home, "bin", "java")
        if not (os.path.isfile(java) and os.access(java, os.X_OK)):
            # spark-class would fail with shell errors and pyspark with JAVA_GATEWAY_EXITED
            raise EngineUnavailableError(
                "spark",
                f"JAVA_HOME is {home}, which holds no bin/java; point JAVA_HOME at a Java "
                "runtime's folder (the one holding bin/java), or unset it to use the java on "
                f"PATH; install one if there is none ({JAVA_PACKAGE})",
            )
        return java
    found = _which("java")
    if found is None:
        raise EngineUnavailableError(
            "spark", f"no Java runtime found; install one ({JAVA_PACKAGE})"
        )
    return found


# The Spark driver's logging (errors only, on stderr) from its start: Spark's default
# profile shows its warnings and prints a few lines of its own at every start.
LOG4J2_FILE = Path(__file__).resolve().parent.parent / "defaults" / "spark-log4j2.properties"
# What the JVM itself writes on stderr at every start whatever the logging: Spark's
# launcher always adds the incubator module jdk.incubator.vector, and Java warns about it.
_JVM_NOISE = re.compile(rb"WARNING: Using incubator modules: ")


def spark_session(settings: EngineSettings | None = None) -> Any:
    """A SparkSession in UTC for the library's expressions (pyspark and Java needed).

    When Spark does not start, a SparkParamsError (exit 2) or a SparkStartError (exit 5)
    says why in one line of Spark's reason (``start_failure``).
    """
    settings = settings or EngineSettings(kind="spark")
    check_spark()
    try:
        from py4j.protocol import Py4JError
        from pyspark import SparkConf
        from pyspark.errors import PySparkException
        from pyspark.sql import SparkSession
    except ImportError as exc:  # there, but not importable
        raise EngineUnavailableError("spark", NO_PYSPARK) from exc

    options = {
        "spark.master": settings.spark_master,
        "spark.app.name": "meetinglib",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "4",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Spark's progress bars would write over the run's own progress lines
        "spark.ui.showConsoleProgress": "false",
        # The params' spark.driver.extraJavaOptions come after these, and may name a
        # logging configuration of their own.
        "spark.driver.defaultJavaOptions": f'-Dlog4j2.configurationFile="{LOG4J2_FILE}"',
    }
    conf = SparkConf().setAll(list({**options, **settings.spark_conf}.items()))
    _JVM_STDERR.hold()
    failed = False
    try:
        _start_driver(conf)
        session = SparkSession.builder.config(conf=conf).getOrCreate()
    except (_DriverExited, PySparkException, Py4JError) as exc:
        # What the JVM wrote while failing stays held (the rest of a stack trace may still
        # be on its way): the error says it in one line, and a JVM that ended leaves the
        # whole of it as a note on the error, shown with its traceback (--debug, the
        # failed notebook kept).
        failed = True
        error = start_failure(settings, exc)
        if isinstance(exc, _DriverExited) and exc.lines:
            error.add_note("The JVM's output:\n" + "\n".join(exc.lines))
        raise error from exc
    finally:
        if not failed:
            _JVM_STDERR.release()
    # Set again in case the params' logging configuration says otherwise: Spark's warnings
    # (a hundred lines a run) are for whoever runs the cluster, who reads them in Spark's
    # own logs; errors still reach the terminal.
    session.sparkContext.setLogLevel("ERROR")
    return session


class _DriverExited(Exception):
    """The driver's JVM ended before it started (``cause``: pyspark's error, which only
    says so); ``lines``: what it wrote on stderr, Spark's or Java's reason among them."""

    def __init__(self, cause: BaseException, lines: list[str]):
        super().__init__(str(cause))
        self.cause, self.lines = cause, lines


def _start_driver(conf: Any) -> None:
    """Start the driver's JVM for ``conf`` (once per process; a session built next takes
    it), its stderr relayed by ``_relay_stderr``: errors reach stderr, the JVM's own
    start-up warning does not. A JVM that ends at its start raises _DriverExited."""
    from pyspark import SparkContext, java_gateway

    if SparkContext._gateway is not None:  # started before: pyspark reuses it
        return
    launch_gateway: Any = java_gateway.launch_gateway  # untyped
    read, write = os.pipe()
    relay = threading.Thread(
        target=_relay_stderr, args=(read, _JVM_STDERR), name="spark-stderr", daemon=True
    )
    relay.start()
    try:
        gateway = launch_gateway(conf, popen_kwargs={"stderr": write})
    except Exception as exc:
        # the JVM ended: once the relay has read its last words (a bad option...), they
        # are all held
        os.close(write)
        relay.join(5)
        raise _DriverExited(exc, _JVM_STDERR.held()) from exc
    os.close(write)  # the JVM holds its own end: the relay ends with it
    SparkContext._ensure_initialized(gateway=gateway, conf=conf)


# At most this many lines held: a failed start's stack traces are a few hundred at most.
HELD_LINES = 1000


class _HeldLines:
    """What the JVM writes on stderr while Spark starts: held back (Spark's or Java's
    reason for a failed start, with its stack trace, is said by the error in one line),
    and written out once the session has started."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: list[bytes] = []
        self._holding = False

    def hold(self) -> None:
        """Hold what comes from now on (a new start: what an earlier one held is dropped)."""
        with self._lock:
            self._lines, self._holding = [], True

    def take(self, line: bytes) -> bool:
        """Keep ``line`` if holding (True), else leave it to the caller to write (False).
        Past HELD_LINES lines, the rest of what is held is dropped."""
        with self._lock:
            if self._holding and len(self._lines) < HELD_LINES:
                self._lines.append(line)
            return self._holding

    def held(self) -> list[str]:
        """The lines held so far, as text."""
        with self._lock:
            return [line.decode("utf-8", "replace").rstrip("\r\n") for line in self._lines]

    def release(self) -> None:
        """Write what was held to stderr and relay the lines to come as they come."""
        with self._lock:
            lines, self._lines, self._holding = self._lines, [], False
            for line in lines:
                with contextlib.suppress(OSError):
                    os.write(2, line)


# The process's one driver JVM, its stderr (``_start_driver``).
_JVM_STDERR = _HeldLines()


def _relay_stderr(fd: int, held: _HeldLines | None = None) -> None:
    """Copy what the JVM writes on the pipe ``fd`` to this process's stderr (a kernel's
    is its notebook's), the JVM's own noise (``_JVM_NOISE``) left out, and what ``held``
    takes while Spark starts."""
    with os.fdopen(fd, "rb") as lines:
        for line in lines:
            if _JVM_NOISE.match(line) or (held is not None and held.take(line)):
                continue
            with contextlib.suppress(OSError):
                os.write(2, line)


# Lines of the JVM's stderr that say no more than that it failed: the reason is another.
_JVM_GENERIC = re.compile(
    r"Error: Could not create the Java Virtual Machine\."
    r"|Error: A fatal exception has occurred\. Program will exit\."
    r"|Error occurred during initialization of VM"
)
# A frame of a Java stack trace ("\tat org.apache...", "... 12 more"), or a blank line.
_JAVA_FRAME = re.compile(r"\s*(at\s|\.\.\.\s*\d+ more|$)")
# A Java exception as Java prints it: its class, then its message if it has one.
_JAVA_EXCEPTION = re.compile(
    r'(?:Exception in thread "[^"]*"\s+)?(?:[a-zA-Z_$][\w$]*\.)+([A-Z][\w$]*)(?::\s*(.*))?'
)
REASON_CHARS = 300


def start_failure(settings: EngineSettings, exc: BaseException) -> MeetingError:
    """The library's error for Spark failing to start with ``settings`` on ``exc``.

    Its exit code says where the fix lies. Spark's refusals do not tell a value it cannot
    use from a machine that cannot run it (a JVM that cannot reserve its heap may be given
    too much, or run where memory is short; a master that cannot be reached may be
    misspelt, or down), so the params are taken as the cause whenever they set something
    Spark starts with: engine.spark_master other than the default, or any key of
    engine.spark_conf. That is a SparkParamsError (exit 2) naming those keys, with Spark's
    reason beside them for the rare case where the machine is at fault after all. Without
    them Spark was given only the package's own settings, which start on a sound machine:
    a SparkStartError (exit 5).
    """
    reason = _start_reason(exc)
    default = EngineParams.model_fields["spark_master"].default
    master = settings.spark_master if settings.spark_master != default else None
    if master is None and not settings.spark_conf:
        return SparkStartError(reason, _java_or_name())
    return SparkParamsError(reason, master, sorted(settings.spark_conf))


def _java_or_name() -> str:
    """The java program Spark runs, for the message ("java" when there is none)."""
    try:
        return java_runtime()
    except EngineUnavailableError:
        return "java"


def _start_reason(exc: BaseException) -> str:
    """The first line that says why Spark did not start: the Java exception's message,
    or the first line the JVM wrote that is more than a stack frame or "could not create
    the Java Virtual Machine"; pyspark's own message when there is none."""
    java = getattr(exc, "java_exception", None)  # py4j's Py4JJavaError
    if java is not None:
        with contextlib.suppress(Exception):  # the JVM may be gone
            return _one_line(str(java.getMessage() or java.toString()))
    lines = exc.lines if isinstance(exc, _DriverExited) else []
    said = [line.strip() for line in lines if not _JAVA_FRAME.match(line)]
    meaningful = [line for line in said if not _JVM_GENERIC.fullmatch(line)]
    if meaningful or said:
        return _one_line((meaningful or said)[0])
    return _one_line(str(exc.cause if isinstance(exc, _DriverExited) else exc))


def _one_line(text: str) -> str:
    """The first line of ``text``; of a Java exception, its message (or its class's name
    when it has none)."""
    line = (text.strip().splitlines() or [""])[0].strip()
    found = _JAVA_EXCEPTION.fullmatch(line)
    if found is not None:
        line = found.group(2) or found.group(1)
    return line if len(line) <= REASON_CHARS else line[: REASON_CHARS - 3] + "..."


def _spark(settings: EngineSettings) -> BaseBackend:
    return spark_backend(spark_session(settings))


def spark_backend(session: Any) -> BaseBackend:
    """An Ibis backend on the SparkSession ``session`` that hands in-memory tables
    (``frame_table``) to Spark with their missing values kept (``_SparkTables``)."""
    return _spark_tables_backend()().connect(session)


def _sees_local_files(session: Any) -> bool:
    """Whether the SparkSession's executors read this machine's files (a local master)."""
    return str(session.sparkContext.master).startswith("local")


# Where a local Spark's in-memory tables go as Parquet files (``_spark_spill``): a folder
# per process, named meetinglib-spark-<pid>-..., in the folder this environment variable
# names (default: the temporary folder). They are the week's tables in full, and the
# process's atexit clean-up does not run when it is killed, nor in a notebook's kernel
# once papermill ends it. So the runner points each kernel at the kernel's private
# folder, which it removes after the notebook however the kernel ended (and a later run
# removes when the runner itself died); a folder of the temporary folder whose process
# is gone is removed by the next run (``remove_stale_spills``, under the week's lock).
SPILL_ENV = "MEETINGLIB_SPARK_SPILL"
SPILL_PREFIX = "meetinglib-spark-"


@functools.cache
def _spark_spill() -> Path:
    """This process's folder for the in-memory tables a local Spark reads as files."""
    parent = os.environ.get(SPILL_ENV) or None
    if parent is not None:
        Path(parent).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}{os.getpid()}-", dir=parent))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def remove_stale_spills(parent: Path | None = None) -> list[Path]:
    """Remove the spill folders (``_spark_spill``) in ``parent`` (default: the temporary
    folder) that this user's processes left when they died; returns those removed."""
    return remove_orphans(SPILL_PREFIX, parent)


@functools.cache
def _spark_tables_backend() -> type:
    # Loaded through ibis.pyspark first: that registers the backend's options, which its
    # compiler reads (ibis.options.pyspark).
    ibis.pyspark  # noqa: B018
    from ibis.backends.pyspark import Backend

    class _SparkTables(Backend):  # type: ignore[misc]
        """Ibis's PySpark backend with in-memory tables that keep their missing values.

        Ibis hands them to Spark as pandas frames. With pandas 3 a text column held in
        more than one Arrow chunk fails pyspark 4.0's Arrow conversion, and its fallback
        writes every missing value as the text "NaN": an order without an exception code
        counted as abnormal. A local Spark reads the table from a Parquet file instead
        (which also keeps the rows out of the driver's memory); a cluster, which cannot
        see this machine's files, gets the frame with its text as Python strings and None.
        """

        def _register_in_memory_table(self, op: Any) -> None:
            if _sees_local_files(self._session):
                path = _spark_spill() / f"{op.name}.parquet"
                pq.write_table(op.data.to_pyarrow(op.schema), path)
                self._session.read.parquet(str(path)).createOrReplaceTempView(op.name)
                return
            from ibis.backends.pyspark.datatypes import PySparkSchema

            frame = op.data.to_frame()
            for name in frame.columns:
                if pd.api.types.is_string_dtype(frame[name].dtype):
                    column = frame[name].astype(object)
                    frame[name] = column.where(column.notna(), None)
            schema = PySparkSchema.from_ibis(op.schema)
            self._session.createDataFrame(frame, schema=schema).createOrReplaceTempView(op.name)

        def _make_memtable_finalizer(self, name: str) -> Any:
            drop = super()._make_memtable_finalizer(name)
            path = _spark_spill() / f"{name}.parquet"

            def finalizer() -> None:
                try:
                    if drop is not None:
                        drop()
                finally:
                    path.unlink(missing_ok=True)

            return finalizer

    return _SparkTables


def _database(settings: EngineSettings) -> BaseBackend:
    """An Ibis backend inside the source database (engine kind ``source``)."""
    if not settings.database_url:
        raise EngineUnavailableError(
            "source", "engine.kind 'source' needs source.kind 'sql' with the database's URL"
        )
    url = sa.engine.make_url(settings.database_url)
    dialect = url.get_backend_name()
    shown = url.render_as_string(hide_password=True)
    backend = DATABASE_BACKENDS.get(dialect)
    if backend is None:
        # a choice in the params, not something to install (exit 2)
        why = "SQLite has no percentile function for the medians and P90s"
        raise EngineDatabaseError(
            dialect, shown, why if dialect == "sqlite" else "", sorted(DATABASE_BACKENDS)
        )
    try:
        module = getattr(ibis, backend)
        return module.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            database=url.database,
            **dict(url.query),
        )
    except (ImportError, ModuleNotFoundError) as exc:
        raise EngineUnavailableError(
            "source",
            f"Ibis's {backend} backend is not installed ({exc}); "
            f"pip install 'ibis-framework[{backend}]'",
        ) from None
    except Exception as exc:  # the driver's own error types differ per database
        raise EngineUnavailableError(
            "source",
            f"cannot connect to {shown}: {type(exc).__name__}: "
            + str(exc).replace(url.password or "\0", "***").splitlines()[0],
        ) from None


def _which(program: str) -> str | None:
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = os.path.join(folder, program)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


US_PER_HOUR = 3_600_000_000


def _unix_micros_signature(ts: Any) -> Any:
    """Microseconds since 1970-01-01 UTC (Spark's unix_micros, DuckDB's epoch_us)."""


# Ibis's builtin-function helper is untyped; its result is called as Any.
_BUILTIN: Any = ibis.udf.scalar.builtin
_UNIX_MICROS: Any = _BUILTIN(
    _unix_micros_signature, name="unix_micros", signature=((dt.timestamp,), dt.int64)
)
# Engines with a native microseconds-since-the-epoch function (unix_micros compiles to
# DuckDB's epoch_us and Spark's unix_micros); others count them as a difference.
NATIVE_MICROS = ("duckdb", "pyspark")
_EPOCH = ibis.literal(pd.Timestamp("1970-01-01", tz="UTC"))


def unix_micros(ts: ir.Value, backend: str | None = None) -> ir.IntegerValue:
    """Whole microseconds from 1970-01-01 UTC to the instant ``ts`` (NULL stays NULL), for
    the engine named ``backend`` (``con.name``; None: any engine).

    On DuckDB and Spark a native function: plain integer arithmetic, where DuckDB's
    date_diff and epoch of a timezone-aware timestamp go through its calendar library
    and cost ten times more. Elsewhere the difference from the epoch, the same integer.
    """
    if backend in NATIVE_MICROS:
        micros: ir.IntegerValue = _UNIX_MICROS(ts)
        return micros
    return ts.delta(_EPOCH, unit="microsecond")


def hours_between(
    start: ir.TimestampValue, end: ir.TimestampValue, backend: str | None = None
) -> ir.FloatingValue:
    """Hours from ``start`` to ``end``, counted in whole microseconds: the same figure on
    every engine (Spark's epoch seconds would drop the fractions of a second). With the
    engine's name (``backend``), as a difference of ``unix_micros``: far cheaper on DuckDB."""
    if backend in NATIVE_MICROS:
        micros = unix_micros(end, backend) - unix_micros(start, backend)
        return micros.cast("float64") / US_PER_HOUR
    return end.delta(start, unit="microsecond").cast("float64") / US_PER_HOUR


def frame_table(frame: pd.DataFrame) -> ir.Table:
    """``frame`` as an Ibis table any backend can run (a memtable; nothing is copied yet).

    Timezone-aware columns enter in UTC: the same instants, and Spark (whose session runs
    in UTC) would otherwise read their wall-clock time as UTC.
    """
    aware = [c for c in frame.columns if isinstance(frame[c].dtype, pd.DatetimeTZDtype)]
    if aware:
        frame = frame.assign(**{c: frame[c].dt.tz_convert("UTC") for c in aware})
    # Arrow, converted once: engines scan it natively, where a frame's Python string
    # objects would be converted again on every query. Categories become plain strings.
    table = pa.Table.from_pandas(frame, preserve_index=False)
    columns = [
        pc.cast(col, pa.string()) if pa.types.is_dictionary(col.type) else col
        for col in table.columns
    ]
    return ibis.memtable(pa.table(columns, names=table.column_names))


_PART = "__part"


def execute_together(con: BaseBackend, queries: list[ir.Table]) -> list[pd.DataFrame]:
    """The results of ``queries`` (tables), as ``con.execute`` gives each, from one query.

    Queries over one common table expression (the same Ibis table, named) share it: DuckDB
    computes a common table expression read twice once, where two queries would each
    compute it. The union pads each query with the others' columns (NULL) and tags its
    rows; the rows are then taken apart and converted per query, by its own schema.
    A column two queries name must have one type in both.
    """
    schemas = [q.schema() for q in queries]
    every: dict[str, dt.DataType] = {}
    for schema in schemas:
        for name, kind in schema.items():
            if every.setdefault(name, kind) != kind:
                raise ValueError(f"column {name!r} has two types: {every[name]} and {kind}")
    padded = [
        q.select(
            **{_PART: ibis.literal(i, "int16")},
            **{n: q[n] if n in schema else ibis.null(kind) for n, kind in every.items()},
        )
        for i, (q, schema) in enumerate(zip(queries, schemas, strict=True))
    ]
    found = con.to_pyarrow(padded[0] if len(padded) == 1 else ibis.union(*padded))
    part = found.column(_PART)
    converter = DuckDBPandasData if con.name == "duckdb" else PandasData
    out = []
    for i, (q, schema) in enumerate(zip(queries, schemas, strict=True)):
        mine = found.filter(pc.equal(part, i)).select(list(schema.names))
        # As the DuckDB backend's execute builds its frame: lists and columns with NULLs
        # as Python values, the rest through Arrow's conversion.
        frame = pd.DataFrame(
            {
                name: (
                    col.to_pylist()
                    if pa.types.is_nested(col.type)
                    or pa.types.is_dictionary(col.type)
                    or col.null_count
                    else col.to_pandas()
                )
                for name, col in zip(mine.column_names, mine.columns, strict=True)
            }
        )
        out.append(q.__pandas_result__(converter.convert_table(frame, schema)))
    return out
