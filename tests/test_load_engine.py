"""Loading on the engine equals loading with pandas: same rows, quarantine and entries.

The engine path (``data/load_engine``) is checked against the pandas path
(``validate.validate_table``), an independent implementation of the same rules, on
Parquet sample data with bad rows of every rule planted in it, on clean sample data, and
on the company-export fixtures. Tables the engine cannot read exactly fall back to
pandas; which path each table took is recorded.
"""

from __future__ import annotations

import gc
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from meetinglib.core.errors import TooManyQuarantinedError
from meetinglib.core.params import load_params
from meetinglib.core.schema import SCHEMAS
from meetinglib.core.weeks import IsoWeek
from meetinglib.data import checks, engine, load_engine
from meetinglib.data.dataset import SnapshotTables, WeekData, load_week, selection_window
from meetinglib.data.sample import generate_sample
from meetinglib.data.validate import DUPLICATE_KEY, MISSING_TOKENS

TZ = "Asia/Shanghai"
END = IsoWeek(2026, 10)
WEEK = "2026-W10"


def write_params(
    folder: Path, source: Path, extra: str = "", history: int = 2, tables: str = ""
) -> Path:
    """Params over the folder ``source``; ``tables``: its source.tables, in YAML's flow style."""
    path = folder / "params.yaml"
    mapped = f", tables: {tables}" if tables else ""
    path.write_text(
        f"company: Test Shop\ntimezone: {TZ}\nhistory_weeks: {history}\n"
        "open_order_lookback_days: 7\n"
        f"source: {{kind: folder, path: '{source}'{mapped}}}\n"
        "quality: {max_quarantine_share: 0.2}\n" + extra,
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sample")
    generate_sample(folder, weeks=4, orders_per_week=400, end_week=END, tz=TZ)
    return folder


def _copy_of(sample: Path, folder: Path) -> Path:
    """``folder`` (created) holding a copy of the sample's Parquet files, to edit."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in sample.glob("*.parquet"):
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


def _edit(path: Path, edit) -> None:
    frame = pd.read_parquet(path)
    frame = edit(frame)
    # Small row groups: the window's row-group pruning and partial groups take part.
    frame.to_parquet(path, index=False, row_group_size=150)


def _plant(frame: pd.DataFrame, rows: dict[int, dict[str, object]]) -> pd.DataFrame:
    frame = frame.astype({c: object for c in {c for r in rows.values() for c in r}})
    for i, values in rows.items():
        for column, value in values.items():
            frame.at[i, column] = value
    return frame


def _retype(frame: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame:
    out = {}
    for name in like.columns:
        dtype = like[name].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            out[name] = frame[name].astype("str").where(frame[name].notna(), None)
            out[name] = out[name].astype("category")
        elif str(dtype) in ("str", "string", "object"):
            out[name] = frame[name].astype(object).where(frame[name].notna(), None)
        else:
            out[name] = frame[name].astype(dtype)
    return pd.DataFrame(out)


def _a_settled_row(frame: pd.DataFrame, k: int) -> int:
    """The index of the ``k``-th settlement whose status is settled and has its time."""
    settled = (frame["status"].astype("str") == "settled") & frame["settled_at"].notna()
    return int(frame.index[settled][k])


@pytest.fixture(scope="module")
def dirty(sample, tmp_path_factory) -> Path:
    """The sample with bad rows of every rule the engine path validates."""
    folder = _copy_of(sample, tmp_path_factory.mktemp("dirty"))
    inside = pd.Timestamp("2026-02-25 10:00", tz=TZ)

    def orders(frame: pd.DataFrame) -> pd.DataFrame:
        like = frame.copy()
        first = frame["order_id"].iloc[5]
        planted = _plant(
            frame,
            {
                0: {"order_id": "O\x00BAD"},
                1: {"order_id": "X" * 1001},
                2: {"order_id": "O-\ufffd-1"},
                3: {"order_type": None},
                4: {"paid_at": pd.Timestamp("1990-01-01", tz=TZ)},
                6: {"amount": np.inf},
                7: {"order_type": " Weird "},
                8: {"amount": -5.0},
                9: {"order_id": first},
                10: {"delivered_at": frame["shipped_at"].dropna().iloc[0] - pd.Timedelta("1h")},
                11: {"order_id": "  " + str(frame["order_id"].iloc[11]) + "\u3000"},
                12: {"order_id": "NULL"},
                13: {"exception_code": " STOCKOUT "},
                14: {"channel": "  app"},
                15: {"delivered_at": pd.Timestamp("2031-01-01", tz=TZ)},
                16: {"order_type": "weird", "amount": -1.0},
            },
        )
        planted.loc[len(planted)] = planted.iloc[20]  # an exact copy: a duplicate key
        planted.loc[17, "created_at"] = inside
        return _retype(planted, like)

    def tickets(frame: pd.DataFrame) -> pd.DataFrame:
        like = frame.copy()
        planted = _plant(
            frame,
            {
                0: {"csat": 7.0},
                1: {"order_id": "n/a"},
                2: {"category": "COMPLAINT"},
                3: {"ticket_id": None},
                4: {"csat": np.nan},
                5: {"resolved_at": frame["opened_at"].iloc[5] - pd.Timedelta("2h")},
            },
        )
        return _retype(planted, like)

    def lines(frame: pd.DataFrame) -> pd.DataFrame:
        like = frame.copy()
        planted = pd.concat([frame, frame.iloc[[3]]], ignore_index=True)
        planted = _plant(planted, {0: {"qty": -2}, 1: {"sku": " "}})
        return _retype(planted, like)

    def settlements(frame: pd.DataFrame) -> pd.DataFrame:
        like = frame.copy()
        settled = _a_settled_row(frame, 0)
        # an id to strip sends the table to the screened path, with a settlement whose
        # status says settled and whose time is empty
        planted = {settled: {"settled_at": pd.NaT}, 4: {"order_id": f"{frame.at[4, 'order_id']} "}}
        return _retype(_plant(frame, planted), like)

    _edit(folder / "orders.parquet", orders)
    _edit(folder / "tickets.parquet", tickets)
    _edit(folder / "order_lines.parquet", lines)
    _edit(folder / "settlements.parquet", settlements)
    return folder


@pytest.fixture(scope="module")
def flagged(sample, tmp_path_factory) -> Path:
    """The sample with bad values of every rule but the text ones and duplicate keys:
    what the one-pass load validates without the screened path."""
    folder = _copy_of(sample, tmp_path_factory.mktemp("flagged"))

    def orders(frame: pd.DataFrame) -> pd.DataFrame:
        like = frame.copy()
        planted = _plant(
            frame,
            {
                3: {"order_type": None},
                4: {"paid_at": pd.Timestamp("1990-01-01", tz=TZ)},
                6: {"amount": np.inf},
                7: {"order_type": " Weird "},
                8: {"amount": -5.0},
                10: {"delivered_at": frame["shipped_at"].dropna().iloc[0] - pd.Timedelta("1h")},
                13: {"exception_code": " STOCKOUT "},
                15: {"delivered_at": pd.Timestamp("2031-01-01", tz=TZ)},
                16: {"order_type": "weird", "amount": -1.0},
                17: {"amount": np.nan},
            },
        )
        return _retype(planted, like)

    def tickets(frame: pd.DataFrame) -> pd.DataFrame:
        like = frame.copy()
        planted = _plant(
            frame,
            {
                0: {"csat": 7.0},
                2: {"category": "COMPLAINT"},
                4: {"csat": np.nan},
                5: {"resolved_at": frame["opened_at"].iloc[5] - pd.Timedelta("2h")},
            },
        )
        return _retype(planted, like)

    def settlements(frame: pd.DataFrame) -> pd.DataFrame:
        like = frame.copy()
        planted = {1: {"amount": np.nan}, 2: {"status": "lost"}}
        planted[_a_settled_row(frame, 3)] = {"settled_at": pd.NaT}
        return _retype(_plant(frame, planted), like)

    _edit(folder / "orders.parquet", orders)
    _edit(folder / "tickets.parquet", tickets)
    _edit(folder / "settlements.parquet", settlements)
    return folder


def _screened_tables(monkeypatch) -> set[str]:
    """Tables the screened path validates from now on (the others took one pass)."""
    seen: set[str] = set()
    screened = load_engine._screened

    def spy(*args, **kwargs):
        seen.add(args[2].table)
        return screened(*args, **kwargs)

    monkeypatch.setattr(load_engine, "_screened", spy)
    return seen


def _both(params_path: Path, week: str = WEEK) -> tuple[WeekData, WeekData]:
    params = load_params(params_path)
    return load_week(params, week, on_engine=False), load_week(params, week)


def _same_quarantine(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b)
    for name in a.columns:
        left = a[name].astype(object).where(a[name].notna(), None).map(str).tolist()
        right = b[name].astype(object).where(b[name].notna(), None).map(str).tolist()
        assert left == right, name


def assert_same(pandas_week: WeekData, engine_week: WeekData) -> None:
    """Every table, quality figure, entry, quarantine row and source note equal."""
    assert list(pandas_week.tables) == list(engine_week.tables)
    for name in pandas_week.tables:
        pd.testing.assert_frame_equal(pandas_week.tables[name], engine_week.tables[name])
    pq_, eq = pandas_week.quality, engine_week.quality
    assert eq.loaded == pq_.loaded
    assert eq.kept == pq_.kept
    assert eq.week == pq_.week
    assert eq.entries == pq_.entries
    assert list(eq.quarantined) == list(pq_.quarantined)
    for name in pq_.quarantined:
        _same_quarantine(pq_.quarantined[name], eq.quarantined[name])
    assert engine_week.sources == pandas_week.sources
    assert engine_week.columns == pandas_week.columns


def _assert_one_settled_without_time(week: WeekData) -> None:
    """The planted settlement that says settled without a time: flagged, kept, counted."""
    (entry,) = [e for e in week.quality.entries if e.rule == "status without time"]
    assert (entry.table, entry.source, entry.column, entry.rows, entry.kept) == (
        "settlements",
        "settlements.parquet",
        "settled_at",
        1,
        True,
    )
    assert re.fullmatch(
        r"row \d+ \(order_id \S+\): status 'settled', settled_at empty", entry.examples[0].text()
    )
    assert not (week.quality.quarantined["settlements"]["_rule"] == "status without time").any()


def test_clean_sample_equals_the_pandas_path(sample, tmp_path):
    pandas_week, engine_week = _both(write_params(tmp_path, sample))
    assert set(engine_week.load_paths.values()) == {"engine"}
    assert set(pandas_week.load_paths.values()) == {"pandas"}
    assert_same(pandas_week, engine_week)


def test_bad_rows_of_every_rule_equal_the_pandas_path(dirty, tmp_path):
    pandas_week, engine_week = _both(write_params(tmp_path, dirty))
    assert engine_week.load_paths["orders"] == "engine"
    assert_same(pandas_week, engine_week)
    rules = {(e.table, e.rule) for e in engine_week.quality.entries}
    # The planted rows reach every rule the engine path checks.
    for rule in (
        "nul byte",
        "field too long",
        "replacement character",
        "required value missing",
        "implausible date",
        "not a number",
        "unknown value",
        "out of range",
        "duplicate key",
        "milestone order",
    ):
        assert ("orders", rule) in rules, rule
    assert ("order_lines", "duplicate key") in rules
    assert ("tickets", "out of range") in rules
    _assert_one_settled_without_time(engine_week)
    q = engine_week.quality.quarantined["orders"]
    assert q.loc[q["_rule"] == "duplicate key", "_column"].tolist() == ["order_id"] * 2
    # Stripped ids and case-insensitive codes are kept, as canonical values.
    orders = engine_week.tables["orders"]
    assert (orders["exception_code"] == "stockout").sum() >= 1
    assert not orders["order_id"].str.contains("\u3000").any()


def test_one_pass_counts_every_rule_as_the_pandas_path(flagged, tmp_path, monkeypatch):
    screened = _screened_tables(monkeypatch)
    pandas_week, engine_week = _both(write_params(tmp_path, flagged))
    assert set(engine_week.load_paths.values()) == {"engine"}
    assert screened == set()
    assert_same(pandas_week, engine_week)
    rules = {(e.table, e.rule) for e in engine_week.quality.entries}
    for rule in (
        "required value missing",
        "implausible date",
        "not a number",
        "unknown value",
        "out of range",
        "milestone order",
    ):
        assert ("orders", rule) in rules, rule
    assert {("tickets", "out of range"), ("tickets", "milestone order")} <= rules
    assert ("settlements", "unknown value") in rules
    _assert_one_settled_without_time(engine_week)
    # Two failing checks: the row is set aside under the first, counted under both.
    q = engine_week.quality.quarantined["orders"]
    assert len(q) == len(pandas_week.quality.quarantined["orders"]) >= 5
    # Rows of orders outside the selection were left out of the order tables.
    loaded = set(engine_week.tables["orders"]["order_id"])
    assert set(engine_week.tables["settlements"]["order_id"]) <= loaded


def test_one_pass_too_many_set_aside_raises_the_same_message(flagged, tmp_path, monkeypatch):
    path = write_params(tmp_path, flagged)
    path.write_text(
        path.read_text().replace("max_quarantine_share: 0.2", "max_quarantine_share: 0.001")
    )
    params = load_params(path)
    with pytest.raises(TooManyQuarantinedError) as on_pandas:
        load_week(params, WEEK, on_engine=False)
    screened = _screened_tables(monkeypatch)
    with pytest.raises(TooManyQuarantinedError) as on_engine:
        load_week(params, WEEK)
    assert screened == set()
    assert str(on_engine.value) == str(on_pandas.value)


def test_one_pass_over_a_table_in_several_files(flagged, tmp_path, monkeypatch):
    folder = tmp_path / "parts"
    folder.mkdir()
    for path in flagged.glob("*.parquet"):
        if path.stem in ("orders", "settlements"):
            frame = pd.read_parquet(path)
            half = len(frame) // 2
            # Positions count across files: a bad row in each part, examples by row.
            frame.iloc[:half].to_parquet(folder / f"{path.stem}_1.parquet", row_group_size=150)
            frame.iloc[half:].to_parquet(folder / f"{path.stem}_2.parquet", row_group_size=150)
        else:
            (folder / path.name).write_bytes(path.read_bytes())
    extra = (
        "  tables:\n    orders: {file: 'orders_*.parquet'}\n"
        "    settlements: {file: 'settlements_*.parquet'}\n"
    )
    path = write_params(tmp_path, folder)
    text = path.read_text().replace(f"source: {{kind: folder, path: '{folder}'}}\n", "")
    path.write_text(text + f"source:\n  kind: folder\n  path: '{folder}'\n" + extra)
    screened = _screened_tables(monkeypatch)
    pandas_week, engine_week = _both(path)
    assert screened == set()
    assert set(engine_week.load_paths.values()) == {"engine"}
    assert_same(pandas_week, engine_week)
    assert engine_week.quality.quarantined["orders"]["_source_row"].notna().all()
    orders = next(info for info in engine_week.sources if info.table == "orders")
    assert "orders_1.parquet" in orders.location and "orders_2.parquet" in orders.location


def test_text_to_clean_or_repeated_keys_take_the_screened_path(dirty, tmp_path, monkeypatch):
    screened = _screened_tables(monkeypatch)
    load_week(load_params(write_params(tmp_path, dirty)), WEEK)
    # Orders, tickets and settlements hold text to strip or flag; order lines a repeated key.
    assert screened == {"orders", "tickets", "order_lines", "settlements"}


@pytest.mark.parametrize(
    "dirt", [" {}", "\u3000{}", "{}\t", "{}\u00a0"], ids=["space", "u3000", "tab", "nbsp"]
)
def test_an_id_to_strip_alone_sends_its_table_to_the_screened_path(
    sample, tmp_path, monkeypatch, dirt
):
    # One order number with whitespace before or after it, nothing else amiss: the one
    # pass must see it by its first or last byte and leave the table to the screened path.
    source = _copy_of(sample, tmp_path / "source")
    _edit(
        source / "orders.parquet",
        lambda f: f.assign(
            order_id=f["order_id"].where(f.index != 5, dirt.format(f.at[5, "order_id"]))
        ),
    )
    screened = _screened_tables(monkeypatch)
    pandas_week, engine_week = _both(write_params(tmp_path, source))
    assert screened == {"orders"}
    assert_same(pandas_week, engine_week)


def test_duplicate_example_names_the_first_row(dirty, tmp_path):
    _, engine_week = _both(write_params(tmp_path, dirty))
    entry = next(
        e for e in engine_week.quality.entries if e.table == "orders" and e.rule == "duplicate key"
    )
    assert entry.rows == 2
    assert all(re.search(r": first at row \d+$", text) for text in entry.example_texts())


def test_too_many_set_aside_raises_the_same_message(dirty, tmp_path):
    path = write_params(tmp_path, dirty)
    path.write_text(
        path.read_text().replace("max_quarantine_share: 0.2", "max_quarantine_share: 0.001")
    )
    params = load_params(path)
    with pytest.raises(TooManyQuarantinedError) as on_pandas:
        load_week(params, WEEK, on_engine=False)
    with pytest.raises(TooManyQuarantinedError, match=r"orders\.parquet: \d+ of [\d,]+ rows"):
        load_week(params, WEEK)
    with pytest.raises(TooManyQuarantinedError) as on_engine:
        load_week(params, WEEK)
    assert str(on_engine.value) == str(on_pandas.value)


def test_value_maps_and_renamed_columns(sample, tmp_path):
    folder = tmp_path / "renamed"
    folder.mkdir()
    orders = pd.read_parquet(sample / "orders.parquet").rename(
        columns={"order_id": "订单号", "channel": "渠道"}
    )
    orders["渠道"] = orders["渠道"].astype("str").map({"app": "APP端"}).fillna("网页")
    orders.to_parquet(folder / "orders.parquet", index=False)
    extra = (
        "source:\n  kind: folder\n  path: '" + str(folder) + "'\n  tables:\n"
        "    orders: {columns: {订单号: order_id, 渠道: channel}, "
        "values: {channel: {APP端: app, 网页: web}}}\n"
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


def test_tables_the_engine_cannot_read_exactly_fall_back(sample, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    orders = pd.read_parquet(sample / "orders.parquet")
    # Text timestamps need a parsed (maybe guessed) format: the pandas path reads them.
    orders["created_at"] = orders["created_at"].dt.strftime("%Y/%m/%d %H:%M:%S")
    orders.to_parquet(folder / "orders.parquet", index=False)
    events = pd.read_parquet(sample / "events.parquet")
    # Naive times need the table's zone and its daylight-saving rule.
    events["timestamp"] = events["timestamp"].dt.tz_localize(None)
    events.to_parquet(folder / "events.parquet", index=False)
    pd.read_parquet(sample / "tickets.parquet").to_csv(folder / "tickets.csv", index=False)
    with (folder / "tickets.csv").open("a", encoding="utf-8") as fh:
        # A line with a cell too many: the rule "wrong field count" is the pandas path's.
        fh.write("T-EXTRA,,,,,,,,,,,,,,,,,,,,,\n")
    for name in ("settlements", "order_lines", "after_sales"):
        (folder / f"{name}.parquet").write_bytes((sample / f"{name}.parquet").read_bytes())
    params = load_params(write_params(tmp_path, folder))
    reasons = {n: load_engine.engine_reason(params, n) for n in ("orders", "events", "tickets")}
    assert reasons == {
        "orders": "column 'created_at' needs parsing",
        "events": "column 'timestamp' needs parsing",
        "tickets": "rows with a wrong number of cells",
    }
    pandas_week, engine_week = _both(write_params(tmp_path, folder))
    assert engine_week.load_paths == {
        "orders": "pandas",
        "tickets": "pandas",
        "after_sales": "engine",
        "settlements": "engine",
        "order_lines": "engine",
        "events": "pandas",
    }
    assert_same(pandas_week, engine_week)


# --- the snapshot the engine wrote ----------------------------------------------------------


def test_snapshot_tables_are_read_only_when_asked(sample, tmp_path):
    data = load_week(load_params(write_params(tmp_path, sample)), WEEK)
    data.save(tmp_path / "snap")
    again = WeekData.load(tmp_path / "snap", data.params)
    assert isinstance(again.tables, SnapshotTables)
    assert again.tables._frames == {}
    assert again.load_paths == data.load_paths
    # asking whether the week has a table reads none (the KPI table asks for each)
    assert "orders" in again.tables and "refunds" not in again.tables
    assert again.tables._frames == {}
    orders = again.tables["orders"]
    assert list(again.tables._frames) == ["orders"]
    pd.testing.assert_frame_equal(orders, data.tables["orders"])
    again.tables.clear()
    assert again.tables._frames == {}


def test_snapshot_files_have_the_frames_engine_types(sample, tmp_path):
    data = load_week(load_params(write_params(tmp_path, sample)), WEEK)
    assert isinstance(data.tables, SnapshotTables)
    con = engine.shared(data.params.engine)
    on_files = data.tables.engine_tables(con)
    assert data.tables._frames == {}
    for name, table in on_files.items():
        from_frame = engine.frame_table(data.tables[name])
        assert table.schema() == from_frame.schema(), name
        assert int(con.execute(table.count())) == len(data.tables[name])


def test_the_temporary_snapshot_goes_with_the_week(sample, tmp_path):
    data = load_week(load_params(write_params(tmp_path, sample)), WEEK)
    assert isinstance(data.tables, SnapshotTables)
    folder = data.tables.folder
    assert all(f.is_file() for f in data.tables.files("orders"))
    assert all(folder in f.parents for f in data.tables.files("orders"))
    del data
    gc.collect()
    assert not folder.exists()


# --- the predicates ----------------------------------------------------------------------


def test_whitespace_class_is_pythons():
    spaces = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())
    listed = re.sub(
        r"(.)-(.)", lambda m: "".join(map(chr, range(ord(m[1]), ord(m[2]) + 1))), checks.WHITESPACE
    )
    assert sorted(listed) == sorted(spaces)


def test_stripped_text_equals_python_strip_and_placeholders():
    values = [" a ", "\u3000b\u00a0", "NULL", " n/a ", "", "-", "x-y", None, "\x1cz\x1f", "NA"]
    table = pa.table({"v": pa.array(values, pa.string())})
    import ibis

    t = ibis.memtable(table)
    got = engine.shared().execute(t.select(s=checks.stripped_text(t.v)))["s"].tolist()
    expected = [None if v is None or v.strip() in MISSING_TOKENS else v.strip() for v in values]
    assert [None if pd.isna(g) else g for g in got] == expected


def test_parquet_row_groups_of_the_window(dirty):
    # The planted file has several row groups; the pandas path prunes by statistics.
    assert pq.ParquetFile(dirty / "orders.parquet").metadata.num_row_groups > 3


def test_rows_of_orders_not_loaded_found_for_every_order_table_at_once(sample, tmp_path):
    params = load_params(write_params(tmp_path, sample))
    selection = selection_window(params, IsoWeek.parse(WEEK))
    orders = pd.read_parquet(sample / "orders.parquet", columns=["order_id"])
    # The orders "loaded": every third one left out, so each order table loses rows.
    loaded = tmp_path / "loaded.parquet"
    orders.iloc[::3].to_parquet(loaded, index=False)
    kept = set(orders["order_id"].iloc[::3])
    plans = [load_engine.plan_table(params, name, selection) for name in load_engine.ORDER_TABLES]
    assert all(isinstance(p, load_engine.Plan) for p in plans)
    found = load_engine.orders_not_loaded(engine.shared(), plans, selection, loaded)
    start, end = selection.start, selection.end
    for name in load_engine.ORDER_TABLES:
        # Expected by hand: rows in the selection whose order is not among those kept
        # (a ticket without an order is never left out; settlements pending during the
        # selection count: not settled, or settled after its end).
        frame = pd.read_parquet(sample / f"{name}.parquet")
        time_column = SCHEMAS[name].time_column
        inside = np.ones(len(frame), dtype=bool)
        if time_column is not None:
            when = frame[time_column]
            if name == "settlements":
                inside = np.array(((when >= start) | when.isna()).fillna(True), dtype=bool)
            else:
                inside = np.array(((when >= start) & (when < end)).fillna(False), dtype=bool)
        ids = frame["order_id"]
        outside = ~np.array(ids.isin(kept), dtype=bool)
        if name == "tickets":
            outside &= ids.notna().to_numpy()
        expected = np.flatnonzero(inside & outside)
        assert len(expected) > 0, name
        np.testing.assert_array_equal(found[name], expected, err_msg=name)


def test_background_writer_raises_the_writers_error(tmp_path):
    class Failing:
        def write_batch(self, batch):
            raise OSError(28, "No space left on device", str(tmp_path / "t.parquet"))

    batch = pa.record_batch({"a": pa.array([1, 2])})
    with (
        pytest.raises(OSError, match="No space left"),
        load_engine._Background(Failing()) as writing,
    ):
        for _ in range(10):
            writing.put(batch)


def test_categories_read_from_dictionary_pages_equal_a_whole_read(sample, tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for f in sample.glob("*.parquet"):
        if f.stem != "tickets":
            (source / f.name).write_bytes(f.read_bytes())
    tickets = pq.read_table(sample / "tickets.parquet")
    at = tickets.schema.get_field_index("category")
    tickets = tickets.set_column(at, "category", pc.cast(tickets.column("category"), pa.string()))
    half = tickets.num_rows // 2
    # First file: a dictionary listing a value no row holds ("unused"), written as is.
    dictionary = pa.array([*pc.unique(tickets.column("category")).to_pylist(), "unused"])
    codes = pc.cast(pc.index_in(tickets.column("category"), value_set=dictionary), pa.int32())
    first = tickets.slice(0, half).set_column(
        at, "category", pa.DictionaryArray.from_arrays(codes.slice(0, half), dictionary)
    )
    # Second file: a distinct odd value every tenth row, written with a tiny dictionary
    # page limit: the writer falls back to plain pages inside the chunks.
    rest = tickets.slice(half)
    odd = [f"odd {i}" if i % 10 == 0 else None for i in range(rest.num_rows)]
    rest = rest.set_column(
        at, "category", pc.coalesce(pa.array(odd, pa.string()), rest.column("category"))
    )
    small = {"dictionary_pagesize_limit": 64, "data_page_size": 64, "write_batch_size": 10}
    paths = [source / "tickets_1.parquet", source / "tickets_2.parquet"]
    # Without Arrow's schema both files read as text (the first as a dictionary type else).
    pq.write_table(first, paths[0], row_group_size=40, store_schema=False)
    pq.write_table(rest, paths[1], row_group_size=40, store_schema=False, **small)
    con = engine.shared()
    whole: dict[Path, set[str]] = {}
    for path in paths:
        groups = list(range(pq.ParquetFile(path).metadata.num_row_groups))
        encoded = load_engine._dictionary_chunks(con, path, ["category"])
        # The footer's page statistics tell the two kinds of chunk apart.
        assert encoded == ({(g, "category") for g in groups} if path == paths[0] else set())
        # Expected by hand: every row group read whole, the union of its dictionaries.
        with pq.ParquetFile(path, read_dictionary=["category"]) as pf:
            chunks = pf.read_row_groups(groups, columns=["category"]).column("category").chunks
        whole[path] = {v for chunk in chunks for v in chunk.dictionary.to_pylist()}
    assert "unused" in whole[paths[0]] and "odd 30" in whole[paths[1]]
    path = write_params(tmp_path, source)
    text = path.read_text().replace(f"source: {{kind: folder, path: '{source}'}}\n", "")
    tables = "  tables:\n    tickets: {file: 'tickets_*.parquet'}\n"
    path.write_text(text + f"source:\n  kind: folder\n  path: '{source}'\n" + tables)
    params = load_params(path)
    plan = load_engine.plan_table(params, "tickets", None)
    assert isinstance(plan, load_engine.Plan)
    assert set(plan.categories["category"].canonical) == whole[paths[0]] | whole[paths[1]]
    # Within a window only its row groups' dictionaries count, as on the pandas path.
    pandas_week, engine_week = _both(path)
    assert engine_week.load_paths["tickets"] == "engine"
    pandas_tickets, engine_tickets = pandas_week.tables["tickets"], engine_week.tables["tickets"]
    assert engine_tickets["category"].dtype == pandas_tickets["category"].dtype
    assert engine_week.quality.entries == pandas_week.quality.entries
    assert any(e.table == "tickets" and e.column == "category" for e in engine_week.quality.entries)
    assert sorted(engine_tickets["ticket_id"]) == sorted(pandas_tickets["ticket_id"])


def _batch(**columns: list) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({k: pa.array(v, pa.string()) for k, v in columns.items()})


def _runs(batch: pa.RecordBatch, key: tuple[str, ...], last):
    """_keys_in_runs with each row's fingerprint made of its key values."""
    rows = zip(*(batch.column(k).to_pylist() for k in key), strict=True)
    prints = np.array([hash(r) % 2**63 for r in rows], dtype=np.uint64)
    return load_engine._keys_in_runs(batch, key, prints, last)


def test_keys_shown_distinct_by_their_runs_without_a_sort():
    start = load_engine._Run()
    key = ("order_id",)
    first = _runs(_batch(order_id=["A1", "A2", "B"]), key, start)
    assert first is not None and first.value == "B"
    after = _runs(_batch(order_id=["C", "D"]), key, first)
    assert after is not None and after.value == "D"
    assert _runs(_batch(order_id=[]), key, first) == first
    # A repeat next to its first, a step back, a missing key, across batches too.
    assert _runs(_batch(order_id=["A1", "A1", "B"]), key, start) is None
    assert _runs(_batch(order_id=["A2", "A1"]), key, start) is None
    assert _runs(_batch(order_id=["A1", None, "B"]), key, start) is None
    assert _runs(_batch(order_id=["B", "C"]), key, first) is None
    assert _runs(_batch(order_id=["A", "C"]), key, first) is None
    assert _runs(_batch(order_id=["C"]), key, None) is None, "once unknown, the sort decides"
    # Code point order: "é" (U+00E9) after "z", "𝒜" (U+1D49C) after "\uffff".
    assert _runs(_batch(order_id=["z", "é", "\uffff", "𝒜"]), key, start) is not None
    assert _runs(_batch(order_id=["é", "z"]), key, start) is None
    # Order lines order by order, their SKUs in any order: a repeat only within its order.
    two = ("order_id", "sku")
    lines = _runs(_batch(order_id=["A", "A", "B", "B"], sku=["s2", "s1", "s3", "s1"]), two, start)
    assert lines is not None and lines.value == "B" and len(lines.prints) == 2
    assert _runs(_batch(order_id=["A", "A", "A"], sku=["s1", "s2", "s1"]), two, start) is None
    assert _runs(_batch(order_id=["B", "A"], sku=["s1", "s1"]), two, start) is None
    # The last order's run goes on in the next batch: its SKUs are compared across them.
    assert _runs(_batch(order_id=["B", "C"], sku=["s3", "s1"]), two, lines) is None
    nxt = _runs(_batch(order_id=["B", "C"], sku=["s4", "s1"]), two, lines)
    assert nxt is not None and nxt.value == "C" and len(nxt.prints) == 1
    # A run longer than the limit leaves the test to the sort.
    many = load_engine._MAX_RUN + 1
    long_run = _batch(order_id=["A"] * many, sku=[f"s{i}" for i in range(many)])
    assert _runs(long_run, two, start) is None


def test_repeated_key_next_to_its_first_is_found(sample, tmp_path, monkeypatch):
    source = _copy_of(sample, tmp_path / "source")
    frame = pd.read_parquet(source / "orders.parquet")
    ids = frame["order_id"].astype(str)
    assert (ids.iloc[1:].to_numpy() > ids.iloc[:-1].to_numpy()).all()  # ascending ids
    # Row 40 again right after itself: every key but that one exceeds the one before.
    repeated = pd.concat([frame.iloc[:41], frame.iloc[40:]], ignore_index=True)
    repeated.to_parquet(source / "orders.parquet", index=False, row_group_size=150)
    screened = _screened_tables(monkeypatch)
    pandas_week, engine_week = _both(write_params(tmp_path, source))
    assert "orders" in screened
    assert_same(pandas_week, engine_week)
    assert any(e.table == "orders" and e.rule == DUPLICATE_KEY for e in engine_week.quality.entries)


def test_repeated_line_within_its_order_is_found(sample, tmp_path, monkeypatch):
    source = _copy_of(sample, tmp_path / "source")
    lines = pd.read_parquet(source / "order_lines.parquet")
    ids = lines["order_id"].astype(str).to_numpy()
    assert (ids[1:] >= ids[:-1]).all(), "the sample's lines come order by order"
    # An order's first line again after its second: one key twice, not side by side.
    multi = lines["order_id"].duplicated(keep=False).to_numpy()
    first = int(np.flatnonzero(multi)[0])
    repeated = pd.concat(
        [lines.iloc[: first + 2], lines.iloc[[first]], lines.iloc[first + 2 :]], ignore_index=True
    )
    repeated.to_parquet(source / "order_lines.parquet", index=False, row_group_size=150)
    screened = _screened_tables(monkeypatch)
    pandas_week, engine_week = _both(write_params(tmp_path, source))
    assert "order_lines" in screened
    assert_same(pandas_week, engine_week)
    assert any(
        e.table == "order_lines" and e.rule == DUPLICATE_KEY for e in engine_week.quality.entries
    )
    # The sample's own lines are shown distinct by their runs: no sort of their prints.
    states = []
    in_runs = load_engine._keys_in_runs

    def spy(batch, key, prints, last):
        state = in_runs(batch, key, prints, last)
        if key == ("order_id", "sku"):
            states.append(state)
        return state

    monkeypatch.setattr(load_engine, "_keys_in_runs", spy)
    (source / "order_lines.parquet").write_bytes((sample / "order_lines.parquet").read_bytes())
    screened.clear()
    load_week(load_params(write_params(tmp_path, source)), WEEK)
    assert "order_lines" not in screened
    assert states and all(state is not None for state in states)


def test_positions_among_the_excluded_as_a_lookup_of_all_of_them():
    rng = np.random.default_rng(7)
    excluded = np.sort(rng.choice(10_000, 300, replace=False)).astype(np.int64)
    batches = [
        rng.permutation(np.arange(2_000, 2_500, dtype=np.int64)),  # unordered
        np.arange(0, 1_000, dtype=np.int64),
        excluded[[0, -1]],  # the range's own ends
        np.array([excluded[5] - 1, excluded[5] + 1], dtype=np.int64),
        np.arange(20_000, 20_100, dtype=np.int64),  # past every excluded one
        np.zeros(0, dtype=np.int64),
    ]
    for positions in batches:
        expected = np.array([p in set(excluded.tolist()) for p in positions], dtype=bool)
        np.testing.assert_array_equal(load_engine._among(positions, excluded), expected)


def test_a_promise_ahead_of_today_is_kept_where_an_event_is_not(tmp_path):
    # An order of the week that just ended may be promised for days after today (a run on
    # Monday morning); a delivery said to have happened then is implausible, and so is a
    # promise years out. Both paths agree.
    tz = "Asia/Shanghai"
    now = pd.Timestamp.now(tz).floor("s")
    created = now - pd.Timedelta(days=1)
    ahead = now + pd.Timedelta(days=10)
    kept = [f"P{i}" for i in range(10)]  # promised ten days ahead
    orders = pd.DataFrame(
        {
            "order_id": [*kept, "Q", "R"],
            "order_type": ["normal"] * 12,
            "created_at": [created] * 12,
            "promised_delivery_by": [ahead] * 10 + [now + pd.Timedelta(days=800), None],
            "delivered_at": [None] * 10 + [None, ahead],
        }
    )
    folder = tmp_path / "export"
    folder.mkdir()
    orders.to_parquet(folder / "orders.parquet", index=False)
    week = str(IsoWeek.containing(created))
    pandas_week, engine_week = _both(write_params(tmp_path, folder), week)
    assert_same(pandas_week, engine_week)
    assert sorted(engine_week.tables["orders"]["order_id"]) == kept
    assert [(e.column, e.rule, e.rows) for e in engine_week.quality.entries] == [
        ("delivered_at", "implausible date", 1),
        ("promised_delivery_by", "implausible date", 1),
    ]
