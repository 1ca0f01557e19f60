"""One week's validated data: what every notebook of a run reads.

``load_week`` reads each table the source has, validates it and keeps the rows of
the selection window: the report week, the ``history_weeks`` before it (for
trends), and ``open_order_lookback_days`` more days before that, so that an order
created long ago and still open counts in the backlog at week end.

Rows are placed in the window by the table's time column (``orders.created_at``,
``tickets.opened_at``...); settlements with no ``settled_at`` yet (pending) are
always kept. Tables that refer to orders (settlements, order_lines, after_sales,
and tickets that carry an order_id) keep only rows of the orders loaded: rows of
orders outside the selection belong to other periods and are not errors. Whether
an order_id exists anywhere in the orders source is not checked. Events are
selected by their timestamp only (process mining follows them as they are).

The quality report counts the rows read from the source and validated (CSV and
XLSX sources are read whole; Parquet and SQL only the window's rows), so
``loaded == kept + quarantined`` holds per table; the window is applied after.

``WeekData.save``/``WeekData.load`` hand one validated load to several notebooks:
Parquet per table and per quarantined table, plus ``meta.json``. ``load_week`` writes
those files as it validates (tables the engine validates never pass through pandas;
see ``load_engine``; a Parquet export the engine reads as it is, mostly rows of the
window, is kept as byte copies of its files and the query selecting its rows, see
``source_copy``), and ``WeekData.tables`` reads a table into pandas only when asked.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from meetinglib.core.errors import InputDataError, NoDataError, SourceNotFoundError
from meetinglib.core.i18n import t
from meetinglib.core.params import EngineParams, Params, SlaParams, load_params
from meetinglib.core.schema import SCHEMAS, selection_of
from meetinglib.core.weeks import IsoWeek, Window, latest_complete_week, weeks_ending
from meetinglib.data import engine, load_database, load_engine, source_copy, sources
from meetinglib.data.sources import SourceInfo
from meetinglib.data.validate import (
    Example,
    QualityReport,
    QuarantineEntry,
    parse_times,
    plausible_range,
    set_aside_in,
    validate_table,
)

if TYPE_CHECKING:
    import ibis.expr.types as ir
    from ibis.backends import BaseBackend

SNAPSHOT_FORMAT = 1
META_FILE = "meta.json"
# Tables whose rows belong to an order; their rows are kept only for loaded orders.
# Events are selected by their timestamp alone.
ORDER_TABLES = ("settlements", "order_lines", "after_sales", "tickets")


class SnapshotTables(Mapping[str, pd.DataFrame]):
    """The week's tables in a snapshot folder, each read into pandas only when asked for.

    Tables keep the dtypes the snapshot's meta records (categories included). ``clear``
    forgets the tables read so far; a temporary folder given as ``owner`` is removed
    when the last reference to these tables goes.
    """

    def __init__(
        self,
        folder: Path,
        dtypes: dict[str, dict[str, object]],
        frames: dict[str, pd.DataFrame] | None = None,
        owner: tempfile.TemporaryDirectory[str] | None = None,
    ):
        self.folder = Path(folder)
        self.dtypes = dtypes
        self._frames: dict[str, pd.DataFrame] = dict(frames or {})
        self._owner = owner
        self._engine: list[tuple[BaseBackend, dict[str, ir.Table]]] = []

    def path(self, name: str) -> Path:
        """The Parquet file of table ``name``."""
        return self.folder / "tables" / f"{name}.parquet"

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self.dtypes:
            raise KeyError(name)
        if name not in self._frames:
            self._frames[name] = _read(self.path(name), self.dtypes[name])
        return self._frames[name]

    def __contains__(self, name: object) -> bool:
        # Mapping's own test reads the table: asking whether a source has tickets must not
        # bring millions of rows into pandas.
        return name in self.dtypes

    def __iter__(self) -> Iterator[str]:
        return iter(self.dtypes)

    def __len__(self) -> int:
        return len(self.dtypes)

    def __repr__(self) -> str:
        return f"SnapshotTables({str(self.folder)!r}, {list(self.dtypes)})"

    def files(self, name: str) -> list[Path]:
        """The files table ``name`` is kept in: its Parquet file, or its copies of the
        source and their view (``source_copy``)."""
        path = self.path(name)
        return source_copy.files(path) if source_copy.is_view(path) else [path]

    def data_bytes(self) -> int:
        """The tables' decoded size (``engine.parquet_data_bytes`` of their Parquet files:
        written, or copies of the export), what the engine's memory is sized to."""
        data = (
            source_copy.parts(path) if source_copy.is_view(path) else [path]
            for path in map(self.path, self)
        )
        return engine.parquet_data_bytes(f for files in data for f in files if f.exists())

    def clear(self) -> None:
        """Forget the tables read into pandas (the files stay)."""
        self._frames.clear()

    def engine_tables(
        self, con: BaseBackend, params: EngineParams | None = None
    ) -> dict[str, ir.Table]:
        """The tables as tables of ``con`` over the snapshot's files, built once per engine.

        When ``params`` set no memory limit, a DuckDB engine's is raised to what the
        tables' size asks for (``engine.data_memory_limit``).
        """
        for known, tables in self._engine:
            if known is con:
                return tables
        if params is not None and params.memory_limit is None:
            engine.fit_memory_limit(con, self.data_bytes(), params.threads)
        if con.name == "duckdb":
            tables = {name: load_engine.snapshot_table(con, self.path(name)) for name in self}
        else:
            # Spark and databases: the frames go to them as memtables, as before (a view
            # registered in one Spark session is gone in the next).
            tables = {name: engine.frame_table(self[name]) for name in self}
        self._engine.append((con, tables))
        return tables


@dataclass
class WeekData:
    """The validated canonical tables of a report week and its history."""

    params: Params
    week: IsoWeek
    tables: Mapping[str, pd.DataFrame]
    quality: QualityReport
    sources: list[SourceInfo]
    # Canonical columns each table's source provides (mapped, constant or derived); a table
    # not listed provides all. KPIs needing a column not provided are "not available".
    columns: dict[str, list[str]] = field(default_factory=dict)
    # Per table, how it was loaded: "engine" (validated by predicates on the engine) or
    # "pandas" (read and validated as rows; see data/load_engine.py).
    load_paths: dict[str, str] = field(default_factory=dict)
    _engine_tables: dict[str, ir.Table] | None = field(default=None, repr=False, compare=False)

    def engine_tables(self, con: BaseBackend | None = None) -> dict[str, ir.Table]:
        """The canonical tables as tables of ``con`` (default: the params' engine).

        What the KPIs and sections compute on: expressions over them run on that engine
        and only their aggregates come back. On DuckDB a snapshot's tables are its Parquet
        files, read where they lie (no row reaches pandas); a sql source with engine kind
        ``source`` gives its database's tables; elsewhere (Spark) the frames go to the
        engine as in-memory tables.
        """
        tables = self.tables
        if isinstance(tables, load_database.DatabaseTables):
            # Inside the source database: expressions over its tables, no rows fetched.
            return tables.engine_tables()
        if isinstance(tables, SnapshotTables):
            if con is not None:
                # An engine of the caller's own (the explorer's beside the kernel's) keeps
                # the limit it was given.
                return tables.engine_tables(con)
            return tables.engine_tables(engine.shared(self.params.engine), self.params.engine)
        con = con or engine.shared(self.params.engine)
        if self._engine_tables is None:
            self._engine_tables = {
                name: engine.frame_table(frame) for name, frame in tables.items()
            }
        return self._engine_tables

    def snapshot_bytes(self) -> int:
        """The decoded size of the snapshot's tables (``SnapshotTables.data_bytes``; 0 when
        the tables are not a snapshot)."""
        return self.tables.data_bytes() if isinstance(self.tables, SnapshotTables) else 0

    def has_column(self, table: str, column: str) -> bool:
        """Whether the source provides ``column`` of ``table`` (absent tables provide none)."""
        if table not in self.tables:
            return False
        provided = self.columns.get(table)
        return provided is None or column in provided

    @property
    def tz(self) -> str:
        """The platform timezone."""
        return self.params.timezone

    @property
    def window(self) -> Window:
        """The report week, Monday 00:00 to next Monday 00:00."""
        return self.week.window(self.tz)

    @property
    def previous_window(self) -> Window:
        """The week before the report week."""
        return self.week.previous().window(self.tz)

    @property
    def history_weeks(self) -> list[IsoWeek]:
        """The ``history_weeks`` weeks before the report week and the week itself, oldest first."""
        return weeks_ending(self.week, self.params.history_weeks + 1)

    @property
    def selection_window(self) -> Window:
        """The time range the tables were selected from."""
        return selection_window(self.params, self.week)

    def save(self, folder: Path) -> None:
        """Write the tables and quarantined rows as Parquet, and ``meta.json``."""
        folder = Path(folder)
        (folder / "tables").mkdir(parents=True, exist_ok=True)
        (folder / "quarantine").mkdir(parents=True, exist_ok=True)
        tables_meta: dict[str, dict[str, object]] = {}
        tables = self.tables
        database = None
        if isinstance(tables, load_database.DatabaseTables):
            # The rows stay in the database: the meta says how to rebuild the expressions.
            tables_meta = dict(tables.dtypes)
            database = tables.record
        elif isinstance(tables, SnapshotTables):
            # The files are written already: link them (or copy across file systems).
            for name in tables:
                source = tables.path(name)
                target = folder / "tables" / f"{name}.parquet"
                if source.resolve() != target.resolve():
                    for file in tables.files(name):
                        # A table kept as copies is a folder of files beside the name.
                        into = target.parent / file.relative_to(source.parent)
                        into.parent.mkdir(parents=True, exist_ok=True)
                        _link(file, into)
                tables_meta[name] = tables.dtypes[name]
        else:
            for name, frame in tables.items():
                _write(frame, folder / "tables" / f"{name}.parquet")
                tables_meta[name] = _dtypes_of(frame)
        quarantine_meta = {}
        for name, frame in self.quality.quarantined.items():
            stored = _storable(frame)
            _write(stored, folder / "quarantine" / f"{name}.parquet")
            quarantine_meta[name] = _dtypes_of(stored)
        meta = {
            "format": SNAPSHOT_FORMAT,
            "week": str(self.week),
            "timezone": self.tz,
            "company": self.params.company,
            "tables": tables_meta,
            "quarantine": quarantine_meta,
            "quality": {
                "loaded": self.quality.loaded,
                "kept": self.quality.kept,
                "entries": [asdict(e) for e in self.quality.entries],
                "week": {k: list(v) for k, v in self.quality.week.items()},
                "max_share": self.quality.max_share,
                "used": self.quality.used,
                "no_order": self.quality.no_order,
            },
            "sources": [asdict(s) for s in self.sources],
            "columns": self.columns,
            "load_paths": self.load_paths,
        }
        if database is not None:
            meta["database"] = database
        (folder / META_FILE).write_text(
            json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8"
        )

    @classmethod
    def load(cls, folder: Path, params: Params) -> WeekData:
        """A snapshot written by ``save``; its tables are read only when asked for."""
        folder = Path(folder)
        path = folder / META_FILE
        if not path.is_file():
            raise SourceNotFoundError(
                f"no snapshot in {folder}: {META_FILE} is missing. "
                "Write one with WeekData.save, or load the week with load_week."
            )
        meta = json.loads(path.read_text(encoding="utf-8"))
        if meta.get("timezone") != params.timezone:
            raise InputDataError(
                f"snapshot {folder} holds week {meta.get('week')} in timezone "
                f"{meta.get('timezone')}, but the params say timezone {params.timezone}; "
                "load it with the params it was made with, or load the week again."
            )
        tables: Mapping[str, pd.DataFrame]
        if "database" in meta:
            con = load_database.connection(params)
            # The rows stay in the database: make sure they are the ones the run loaded.
            load_database.check_unchanged(con, meta["database"])
            tables = load_database.restore(con, meta["database"], meta["tables"])
        else:
            tables = SnapshotTables(folder, meta["tables"])
        quarantined = {
            name: _read(folder / "quarantine" / f"{name}.parquet", dtypes)
            for name, dtypes in meta["quarantine"].items()
        }
        q = meta["quality"]
        quality = QualityReport(
            loaded=dict(q["loaded"]),
            kept=dict(q["kept"]),
            entries=[
                QuarantineEntry(
                    **{**e, "examples": tuple(Example.from_dict(x) for x in e["examples"])}
                )
                for e in q["entries"]
            ],
            quarantined=quarantined,
            week={k: (int(v[0]), int(v[1])) for k, v in q.get("week", {}).items()},
            used={k: int(v) for k, v in q.get("used", {}).items()},
            no_order={k: int(v) for k, v in q.get("no_order", {}).items()},
            max_share=q.get("max_share"),
        )
        infos = [SourceInfo(**s) for s in meta["sources"]]
        columns = {k: list(v) for k, v in meta.get("columns", {}).items()}
        paths = dict(meta.get("load_paths", {}))
        return cls(params, IsoWeek.parse(meta["week"]), tables, quality, infos, columns, paths)


# --- snapshot helpers ---------------------------------------------------------------------


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        try:
            shutil.copyfile(source, target)
        except OSError as exc:
            # shutil names the file copied from; a full disk is the target's, so the
            # message must point there (where space has to be freed).
            raise OSError(exc.errno, exc.strerror, str(target)) from exc


def _dtypes_of(frame: pd.DataFrame) -> dict[str, object]:
    """Column dtypes as text; categories listed, since Parquet may drop unused ones."""
    out: dict[str, object] = {}
    for name, dtype in frame.dtypes.items():
        if isinstance(dtype, pd.CategoricalDtype):
            out[str(name)] = {"category": [str(c) for c in dtype.categories]}
        else:
            out[str(name)] = str(dtype)
    return out


def _storable(frame: pd.DataFrame) -> pd.DataFrame:
    """Quarantined rows hold the source's raw values; mixed-type columns are stored as text."""
    mixed = [c for c in frame.columns if frame[c].dtype == object]
    if not mixed:
        return frame
    return frame.assign(**{c: frame[c].astype("str") for c in mixed})


def _write(frame: pd.DataFrame, path: Path) -> None:
    # Dictionary pages only pay off for categories; statistics are not needed for a
    # snapshot that is always read whole.
    categories = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    frame.to_parquet(path, index=False, use_dictionary=categories, write_statistics=False)


def _read(path: Path, dtypes: dict[str, object]) -> pd.DataFrame:
    frame = _read_columns(path)
    for name, dtype in dtypes.items():
        column = frame[name]
        if isinstance(dtype, dict):
            wanted = pd.CategoricalDtype(pd.Index(dtype["category"], dtype="str"))
            if column.dtype == wanted:
                continue
            if isinstance(column.dtype, pd.CategoricalDtype):
                # Recoding through the categories is cheap; the values are not touched.
                as_text = column.cat.rename_categories(column.cat.categories.astype("str"))
                frame[name] = as_text.cat.set_categories(wanted.categories)
            else:
                frame[name] = column.astype(wanted)
        elif str(column.dtype) != dtype:
            frame[name] = column.astype(dtype)
    return frame


def _read_columns(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """A snapshot table's rows as pandas reads its Parquet file (a table kept as copies
    of the source: its view's rows, converted as pandas converts a file's)."""
    if source_copy.is_view(path):
        return source_copy.arrow(path, columns).to_pandas()
    return pd.read_parquet(path, columns=columns)


# --- loading --------------------------------------------------------------------------------


def selection_window(params: Params, week: IsoWeek) -> Window:
    """From ``history_weeks`` before ``week`` minus the open-order lookback, to the end of week."""
    tz = params.timezone
    first_day = week.shift(-params.history_weeks).monday - dt.timedelta(
        days=params.open_order_lookback_days
    )
    start = pd.Timestamp(first_day).tz_localize(tz, nonexistent="shift_forward")
    return Window(start, week.end(tz))


def weekly_order_counts(params: Params) -> pd.Series:
    """Orders created per ISO week over the whole source (plausible dates only), every week
    from the first to the last with data listed (0 for a week without orders)."""
    tz = params.timezone
    if load_database.wanted(params):
        # Counted in the database: no created_at comes back.
        counts, last_event = load_database.weekly_created(params)
        if counts.empty:
            return pd.Series(dtype="int64")
    else:
        values, fmt, zone, location = sources.created_values(params)
        created = parse_times(values, zone, fmt, tz, (location, "orders", "created_at")).dropna()
        low, high = plausible_range(params.quality.earliest_date, params.quality.max_days_ahead, tz)
        if low is not None:
            created = created[created >= low]
        if high is not None:
            created = created[created <= high]
        if created.empty:
            return pd.Series(dtype="int64")
        mondays = created.dt.tz_localize(None).dt.normalize() - pd.to_timedelta(
            created.dt.weekday, unit="D"
        )
        counts = mondays.value_counts()
        last_event = created.max()
    first, last = counts.index.min(), counts.index.max()
    full = pd.date_range(first, last, freq="7D")
    counts = counts.reindex(full, fill_value=0).astype("int64")
    counts.index = [IsoWeek.containing(d) for d in full]
    counts.attrs["last_event"] = last_event
    return counts


def complete_week(counts: pd.Series, params: Params) -> IsoWeek:
    """The latest complete week: the latest whose orders reach ``complete_week_share`` of the
    median of the ``complete_week_history`` weeks before it (a week of the extract's tail
    that has few or no orders is not it). The week of the last order counts only when the
    data reaches into its Sunday (``weeks.latest_complete_week``). Always a week with orders.
    """
    share, history = params.quality.complete_week_share, params.quality.complete_week_history
    weeks = list(counts.index)
    last_event = counts.attrs.get("last_event")
    newest = len(weeks) - 1
    if last_event is not None and latest_complete_week(last_event, params.timezone) != weeks[-1]:
        newest -= 1
    for i in range(max(newest, 0), -1, -1):
        if counts.iloc[i] == 0:
            continue
        if short_of(counts.iloc[i], counts.iloc[max(0, i - history) : i], share) is None:
            return weeks[i]
    return weeks[int(np.flatnonzero(counts.to_numpy() > 0)[-1])]


def short_of(orders: float, before: Sequence[float] | pd.Series, share: float) -> float | None:
    """The median of the orders of the weeks ``before`` a week when its ``orders`` fall
    short of ``share`` of it (quality.complete_week_share): the data likely ends inside
    the week. None when they do not, or when there is no week before to judge by."""
    known = [float(x) for x in before if pd.notna(x)]
    if not known:
        return None
    median = float(np.median(known))
    return median if orders < share * median else None


def resolve_week(params: Params, week: IsoWeek | str | None) -> IsoWeek:
    """The week asked for, or the latest complete week of the orders source (``complete_week``)."""
    if week is None:
        counts = weekly_order_counts(params)
        if counts.empty:
            sources.last_event_time(params)  # raises NoDataError naming the source
            raise NoDataError("no order of the source has a plausible created_at")
        return complete_week(counts, params)
    return IsoWeek.parse(week)


def _in_window(frame: pd.DataFrame, table: str, window: Window) -> pd.DataFrame:
    time_column = SCHEMAS[table].time_column
    if time_column is None:
        return frame
    when = frame[time_column]
    keep = selection_of(table, window).contains(when).to_numpy(dtype=bool, na_value=False)
    if SCHEMAS[table].open_until_time:
        keep = keep | when.isna().to_numpy()  # not closed yet: open in every window
    return frame if keep.all() else frame.loc[keep].reset_index(drop=True)


def _arrow_ids(ids: pd.Series) -> list[pa.Array]:
    arr = pa.array(ids.array) if ids.dtype == "str" else pa.array(ids.astype("str").array)
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    return [c.cast(pa.large_string()) for c in chunks]


def orders_loaded(frames: dict[str, pd.DataFrame], order_ids: pd.Series) -> dict[str, np.ndarray]:
    """Per table, which rows belong to a loaded order (tickets without an order_id do too).

    One membership test over all tables: building the set of ten million ids is the
    expensive part, so it is built once.
    """
    names = list(frames)
    probe = pa.chunked_array(
        [c for name in names for c in _arrow_ids(frames[name]["order_id"])], pa.large_string()
    )
    value_set = pa.concat_arrays(_arrow_ids(order_ids)) if len(order_ids) else None
    if value_set is None or len(probe) == 0:
        found = np.zeros(len(probe), dtype=bool)
    else:
        found = pc.is_in(probe, value_set=value_set).to_numpy(zero_copy_only=False)
    out = {}
    ends = np.cumsum([len(frames[name]) for name in names])
    for name, stop in zip(names, ends, strict=True):
        keep = found[stop - len(frames[name]) : stop]
        if name == "tickets":
            keep = keep | frames[name]["order_id"].isna().to_numpy()
        out[name] = keep
    return out


def _weeks_covered(params: Params) -> tuple[IsoWeek, IsoWeek, IsoWeek] | None:
    """First, last and latest complete week of the whole orders source (read without a window)."""
    counts = weekly_order_counts(params)
    if counts.empty:
        return None
    return counts.index[0], counts.index[-1], complete_week(counts, params)


def _no_data(params: Params, week: IsoWeek, location: str) -> NoDataError:
    tz = params.timezone
    window = week.window(tz)
    last_day = (window.end - pd.Timedelta(days=1)).date()
    covered = _weeks_covered(params)
    if covered is None:
        where = "the orders there have no readable created_at at all"
        hint = "Check the source path and the column mapping in the params."
    else:
        first, last, complete = covered
        where = f"the orders there cover weeks {first} to {last}"
        hint = f"Choose a week in that range with --week, e.g. --week {complete}."
    return NoDataError(
        f"no orders created in week {week} ({window.start.date()} to {last_day}, {tz}) "
        f"in {location}; {where}. {hint}"
    )


def open_week(
    params: Params, week: IsoWeek | str | None = None, snapshot: str | Path | None = None
) -> WeekData:
    """The week as every notebook loads it: the runner's snapshot if given, else the source."""
    return WeekData.load(Path(snapshot), params) if snapshot else load_week(params, week)


def notebook_week(
    params_files: Sequence[str | os.PathLike[str]],
    week: IsoWeek | str | None = None,
    snapshot: str | Path | None = None,
) -> WeekData:
    """What a notebook's ``open`` starts from: its params files loaded, then ``open_week``."""
    return open_week(load_params(*params_files), week, snapshot)


def load_week(
    params: Params,
    week: IsoWeek | str | None = None,
    progress: Callable[[str], None] | None = None,
    *,
    on_engine: bool = True,
    lang: str | None = None,
) -> WeekData:
    """Read, validate and select the report week's data and its history.

    ``week`` None means the latest complete week of the orders source. Raises
    NoDataError when the week has no orders, TooManyQuarantinedError when a table
    has more bad rows than ``quality.max_quarantine_share`` allows.

    Each table the engine can read as typed (``load_engine.plan_table``) is validated on
    the engine and written to a snapshot folder without passing through pandas; the
    others are read and validated as rows (``validate``) and written there too. The
    folder is temporary, owned by the returned WeekData; ``WeekData.save`` links it
    where a run keeps it. ``on_engine`` False reads every table the pandas way.
    ``lang``: the language of the ``progress`` lines (default: the handouts' first).
    """
    say = progress or (lambda _msg: None)
    lang = lang or params.handout_languages[0]
    if params.engine.kind == "spark":
        # Spark starts only once the week is loaded: a machine that cannot run it is
        # told so before the load, not after it.
        engine.check_spark()
    tz = params.timezone
    report_week = resolve_week(params, week)
    selection = selection_window(params, report_week)
    names = sources.available_tables(params)
    # Orders first: the other tables are filtered by the orders loaded.
    names = ["orders", *[n for n in names if n != "orders"]]
    if load_database.wanted(params):
        return _load_in_database(params, report_week, names, say, lang)

    owner = tempfile.TemporaryDirectory(prefix="meetinglib-week-")
    folder = Path(owner.name)
    (folder / "tables").mkdir()
    frames: dict[str, pd.DataFrame] = {}
    dtypes: dict[str, dict[str, object]] = {}
    paths: dict[str, str] = {}
    infos: list[SourceInfo] = []
    quality = QualityReport(max_share=params.quality.max_quarantine_share)
    plausible = plausible_range(params.quality.earliest_date, params.quality.max_days_ahead, tz)
    week_window = report_week.window(tz)
    columns: dict[str, list[str]] = {}
    dropped: dict[str, int] = {}
    orders_file = folder / "tables" / "orders.parquet"
    plans: dict[str, load_engine.Plan | str] = {}
    not_loaded: dict[str, np.ndarray] | None = None
    for name in names:
        if name not in plans:
            plans[name] = (
                load_engine.plan_table(params, name, selection) if on_engine else "not asked"
            )
        plan = plans[name]
        if isinstance(plan, load_engine.Plan):
            if name in ORDER_TABLES and not_loaded is None:
                # The orders are written: the rows of orders not loaded are found for
                # every order table the engine reads at once (the ids hashed once).
                for other in names:
                    if other in ORDER_TABLES and other not in plans:
                        plans[other] = load_engine.plan_table(params, other, selection)
                known = [p for p in plans.values() if isinstance(p, load_engine.Plan)]
                if params.engine.memory_limit is None:
                    # The lookup joins every order table to the orders: a large source
                    # gets the memory its size asks for (engine.data_memory_limit).
                    engine.fit_memory_limit(
                        load_engine.connection(params),
                        engine.parquet_data_bytes(f for p in known for f in p.files),
                        params.engine.threads,
                    )
                not_loaded = load_engine.orders_not_loaded(
                    load_engine.connection(params),
                    known,
                    selection,
                    orders_file,
                )
            loaded = load_engine.load(
                load_engine.connection(params),
                params,
                plan,
                selection,
                week_window,
                folder / "tables" / f"{name}.parquet",
                orders_file if name in ORDER_TABLES else None,
                plausible,
                (not_loaded or {}).get(name) if name in ORDER_TABLES else None,
            )
            _record(loaded, name, quality, params, report_week)
            columns[name] = loaded.provided
            dtypes[name] = loaded.dtypes
            paths[name] = load_engine.ENGINE_PATH
            infos.append(loaded.info)
            if loaded.written < loaded.in_window:
                dropped[name] = loaded.in_window - loaded.written
            quality.used[name] = loaded.written
            say(
                _progress_text(
                    name,
                    loaded.in_window,
                    loaded.kept,
                    loaded.loaded,
                    len(loaded.quarantined),
                    lang,
                )
            )
            continue
        raw = sources.read_table(params, name, selection)
        if raw is None:
            continue
        clean, entries, quarantined = validate_table(
            raw, tz, params.quality.max_quarantine_share, plausible
        )
        quality.add(name, len(raw.frame), len(clean), entries, quarantined)
        time_column = SCHEMAS[name].time_column
        if time_column is not None:
            # The share set aside is judged for the report week too: a file-wide share
            # under the limit can hide a week that lost a third of its rows.
            in_week = int(week_window.contains(clean[time_column]).sum())
            aside = set_aside_in(raw, quarantined, week_window, tz)
            quality.week[name] = (aside, in_week + aside)
        provided = [c for c in raw.frame.columns if c in SCHEMAS[name].names]
        if name == "orders" and params.sla.has_delivery_promise:
            clean["promised_delivery_by"] = delivery_promise(clean, params.sla)
            provided = list(dict.fromkeys([*provided, "promised_delivery_by"]))
        columns[name] = provided
        frame = _in_window(clean, name, selection)
        if name == "orders":
            in_week = report_week.window(tz).contains(frame["created_at"])
            if not bool(np.any(in_week.to_numpy(dtype=bool, na_value=False))):
                raise _no_data(params, report_week, raw.info.location)
            # Written at once: the engine reads the orders loaded to filter other tables.
            _write(frame, orders_file)
            dtypes[name] = _dtypes_of(frame)
        frames[name] = frame
        paths[name] = load_engine.PANDAS_PATH
        infos.append(raw.info)
        say(_progress_text(name, len(frame), len(clean), len(raw.frame), len(quarantined), lang))

    related = {name: frames[name] for name in ORDER_TABLES if name in frames}
    if related:
        order_ids = (
            frames["orders"]["order_id"]
            if "orders" in frames
            else _read_columns(orders_file, ["order_id"])["order_id"]
        )
        for name, keep in orders_loaded(related, order_ids).items():
            if not keep.all():
                frames[name] = frames[name].loc[keep].reset_index(drop=True)
                dropped[name] = int((~keep).sum())
    for name, frame in frames.items():
        quality.used[name] = len(frame)
        if name != "orders":
            _write(frame, folder / "tables" / f"{name}.parquet")
            dtypes[name] = _dtypes_of(frame)
    quality.no_order.update({name: dropped.get(name, 0) for name in quality.used})
    if dropped:
        # Outside the selection, set aside or missing from the orders: their order is not
        # among those loaded (`meeting validate` says so in the same words at the end).
        listed = [f"{name} {dropped[name]:,}" for name in ORDER_TABLES if name in dropped]
        say(t("load.no_order", lang, tables=t("load.separator", lang).join(listed)))
    # Tables in source order (orders first), as the pandas path always listed them.
    ordered = {name: dtypes[name] for name in names if name in dtypes}
    tables = SnapshotTables(folder, ordered, frames, owner)
    return WeekData(params, report_week, tables, quality, infos, columns, paths)


def _load_in_database(
    params: Params,
    report_week: IsoWeek,
    names: list[str],
    say: Callable[[str], None],
    lang: str,
) -> WeekData:
    """``load_week`` inside the source database (see ``load_database``): no row table."""
    tz = params.timezone
    selection = selection_window(params, report_week)
    week_window = report_week.window(tz)
    plausible = plausible_range(params.quality.earliest_date, params.quality.max_days_ahead, tz)
    con = load_database.connection(params)
    quality = QualityReport(max_share=params.quality.max_quarantine_share)
    plans, infos, columns, dtypes = [], [], {}, {}
    for plan in load_database.plans(params, names):
        name = plan.table
        loaded = load_database.load(con, params, plan, selection, week_window, plausible)
        _record(loaded, name, quality, params, report_week)
        plans.append(plan)
        infos.append(loaded.info)
        columns[name] = loaded.provided
        dtypes[name] = loaded.dtypes
        say(
            t(
                "load.progress.database",
                lang,
                table=name,
                kept=loaded.kept,
                set_aside=len(loaded.quarantined),
            )
        )
    tables = load_database.week_tables(con, plans, selection, plausible, dtypes)
    paths = {name: load_database.DATABASE_PATH for name in tables}
    return WeekData(params, report_week, tables, quality, infos, columns, paths)


def _record(
    loaded: load_engine.Loaded | load_database.Loaded,
    name: str,
    quality: QualityReport,
    params: Params,
    week: IsoWeek,
) -> None:
    """Add a table validated on an engine to the quality report (file-wide and report-week
    shares); raises NoDataError when the orders have none in the week."""
    quality.add(name, loaded.loaded, loaded.kept, loaded.entries, loaded.quarantined)
    if SCHEMAS[name].time_column is not None:
        aside = loaded.week_set_aside
        quality.week[name] = (aside, loaded.in_week + aside)
    if name == "orders" and loaded.in_week == 0:
        raise _no_data(params, week, loaded.info.location)


def delivery_promise(orders: pd.DataFrame, sla: SlaParams) -> pd.Series:
    """promised_delivery_by where set, else the SLA's days after shipped_at (or paid_at).

    Days per carrier where listed, else per region, else ``sla.delivery_days``; NaT where
    no SLA applies or the start milestone is missing. Timestamp in the orders' timezone.
    """
    promised = orders["promised_delivery_by"]
    if not sla.has_delivery_promise:
        return promised
    start = orders["shipped_at" if sla.delivery_from == "shipped" else "paid_at"]
    days = pd.Series(
        sla.delivery_days if sla.delivery_days else np.nan, index=orders.index, dtype="float64"
    )
    for column, per in (
        ("region", sla.delivery_days_by_region),
        ("carrier", sla.delivery_days_by_carrier),
    ):
        if per and column in orders.columns:
            listed = orders[column].astype(object).map(per).astype("float64")
            days = listed.where(listed.notna(), days)
    by_sla = start + pd.to_timedelta(days * 86400, unit="s")
    return promised.where(promised.notna(), by_sla).rename("promised_delivery_by")


def _progress_text(
    table: str, rows: int, kept: int, read: int, set_aside: int, lang: str = "en"
) -> str:
    """``orders: 240,118 rows (3 set aside)``, naming rows read when the window dropped some."""
    if rows == kept:
        return t("load.progress.table", lang, table=table, rows=rows, set_aside=set_aside)
    return t("load.progress.window", lang, table=table, rows=rows, read=read, set_aside=set_aside)
