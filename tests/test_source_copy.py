"""Snapshot tables kept as copies of the source's Parquet files (data/source_copy.py).

Every table read through its copies is compared with the pandas path (``on_engine=False``),
which reads, validates and selects the rows by a second method.
"""

from __future__ import annotations

import filecmp
import gc
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from meetinglib.core.errors import EXIT_INPUT, DamagedSnapshotError
from meetinglib.core.params import load_params
from meetinglib.data import load_engine, source_copy
from meetinglib.data.dataset import SnapshotTables, WeekData, load_week
from meetinglib.data.sample import generate_sample
from tests.test_load_engine import END, TZ, WEEK, write_params


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sample")
    generate_sample(folder, weeks=4, orders_per_week=400, end_week=END, tz=TZ)
    return folder


def _copy_of(sample: Path, folder: Path) -> Path:
    folder.mkdir()
    for path in sample.glob("*.parquet"):
        shutil.copyfile(path, folder / path.name)
    return folder


def _same_tables(expected: WeekData, got: WeekData) -> None:
    assert list(expected.tables) == list(got.tables)
    for name in expected.tables:
        pd.testing.assert_frame_equal(expected.tables[name], got.tables[name], obj=name)


def _copied(data: WeekData) -> set[str]:
    tables = data.tables
    assert isinstance(tables, SnapshotTables)
    return {name for name in tables if source_copy.is_view(tables.path(name))}


def test_clean_parquet_is_kept_as_byte_copies_of_the_export(sample, tmp_path):
    params = load_params(write_params(tmp_path, sample, history=3))
    data = load_week(params, WEEK)
    assert _copied(data) == set(data.tables)
    for name in data.tables:
        folder = source_copy.folder_of(data.tables.path(name))
        assert filecmp.cmp(folder / "part-0.parquet", sample / f"{name}.parquet", shallow=False)
        # The query names its files by placeholder: the folder can move.
        sql = json.loads((folder / source_copy.VIEW_FILE).read_text(encoding="utf-8"))["sql"]
        assert str(folder) not in sql and str(sample) not in sql
    # The rows are those the pandas path selects and keeps, by a second method.
    _same_tables(load_week(params, WEEK, on_engine=False), data)


def test_the_snapshot_keeps_what_was_validated_when_the_export_changes(sample, tmp_path):
    source = _copy_of(sample, tmp_path / "export")
    params = load_params(write_params(tmp_path, source))
    data = load_week(params, WEEK)
    before = data.tables["orders"].copy()
    data.tables.clear()
    # The export is rewritten in place (the same file, truncated) after the run loaded it.
    pd.read_parquet(source / "orders.parquet").head(10).to_parquet(source / "orders.parquet")
    pd.testing.assert_frame_equal(data.tables["orders"], before)


def test_a_saved_snapshot_reads_its_copies_where_it_lies(sample, tmp_path):
    params = load_params(write_params(tmp_path, sample))
    data = load_week(params, WEEK)
    expected = {name: data.tables[name].copy() for name in data.tables}
    temporary = data.tables.folder
    data.save(tmp_path / "kept")
    del data
    gc.collect()
    assert not temporary.exists()
    again = WeekData.load(tmp_path / "kept", params)
    assert _copied(again) == set(expected)
    for name, frame in expected.items():
        pd.testing.assert_frame_equal(again.tables[name], frame, obj=name)
        on_engine = again.engine_tables()[name]
        assert int(on_engine.count().execute()) == len(frame)


def _with_bad_amounts(sample: Path, folder: Path, every: int) -> Path:
    source = _copy_of(sample, folder)
    frame = pd.read_parquet(source / "orders.parquet")
    # Scattered rows out of range (a negative amount), each set aside on its own.
    frame.loc[frame.index[::every], "amount"] = -1.0
    frame.to_parquet(source / "orders.parquet", index=False, row_group_size=150)
    return source


@pytest.mark.parametrize("ranges", [64, 0], ids=["as ranges", "as a join"])
def test_rows_set_aside_and_of_orders_not_loaded_are_left_out(
    sample, tmp_path, monkeypatch, ranges
):
    # Limit 0: the positions left out are read from excluded.parquet by a join.
    monkeypatch.setattr(load_engine, "_MAX_RANGES", ranges)
    source = _with_bad_amounts(sample, tmp_path / "export", every=97)
    params = load_params(write_params(tmp_path, source))
    data = load_week(params, WEEK)
    assert {"orders", "order_lines", "settlements"} <= _copied(data)
    set_aside = data.quality.quarantined["orders"]
    assert (set_aside["_rule"] == "out of range").sum() >= 5
    assert not (data.tables["orders"]["amount"] < 0).any()
    excluded = source_copy.folder_of(data.tables.path("orders")) / source_copy.EXCLUDED_FILE
    assert excluded.exists() == (ranges == 0)
    # Order lines of orders created before the window are left out too.
    loaded = set(data.tables["orders"]["order_id"])
    assert set(data.tables["order_lines"]["order_id"]) <= loaded
    _same_tables(load_week(params, WEEK, on_engine=False), data)


def test_a_file_mostly_outside_the_window_is_written(sample, tmp_path):
    # Two weeks of four (and a week back for open orders): under COPY_SHARE of each file.
    params = load_params(write_params(tmp_path, sample, history=1))
    data = load_week(params, WEEK)
    assert _copied(data) == set()
    assert data.tables.path("orders").is_file()
    assert not source_copy.folder_of(data.tables.path("orders")).exists()
    _same_tables(load_week(params, WEEK, on_engine=False), data)


def test_copy_share_counts_rows_of_orders_not_loaded(sample, tmp_path):
    params = load_params(write_params(tmp_path, sample, history=3))
    plan = load_engine.plan_table(params, "order_lines", None)
    assert isinstance(plan, load_engine.Plan)
    schema = load_engine.SCHEMAS["order_lines"]
    rows = sum(len(pd.read_parquet(f)) for f in plan.files)
    con = load_engine.connection(params)
    assert load_engine.copyable(con, plan, schema, np.arange(int(rows * 0.05)))
    assert not load_engine.copyable(con, plan, schema, np.arange(int(rows * 0.2)))


def test_a_full_disk_names_the_snapshot(tmp_path, monkeypatch):
    source = tmp_path / "a.parquet"
    source.write_bytes(b"PAR1")

    def full(*_args, **_kwargs):
        raise OSError(28, "No space left on device", str(source))

    monkeypatch.setattr(shutil, "copyfile", full)
    with pytest.raises(OSError, match="part-0.parquet"):
        source_copy.copy_files([source], tmp_path / "snapshot")


@pytest.fixture(scope="module")
def kept(sample, tmp_path_factory) -> tuple[Path, object]:
    """A saved snapshot whose tables are copies, and its params."""
    folder = tmp_path_factory.mktemp("kept")
    params = load_params(write_params(folder, sample, history=3))
    data = load_week(params, WEEK)
    assert "orders" in _copied(data)
    data.save(folder / "snapshot")
    return folder / "snapshot", params


def _tampered(kept, tmp_path: Path, change) -> tuple[WeekData, Path]:
    """A copy of the kept snapshot whose orders' view.json ``change`` rewrote."""
    folder, params = kept
    copy = tmp_path / "snapshot"
    shutil.copytree(folder, copy)
    view = copy / "tables" / "orders" / source_copy.VIEW_FILE
    meta = json.loads(view.read_text(encoding="utf-8"))
    change(meta)
    view.write_text(json.dumps(meta), encoding="utf-8")
    return WeekData.load(copy, params), view


def _attacks(tmp_path: Path) -> dict[str, tuple[object, str]]:
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cr3t", encoding="utf-8")
    written = tmp_path / "written.csv"

    def sql(wrap):
        return lambda meta: meta.update(sql=wrap(meta["sql"]))

    def outside(meta):
        meta["files"] = {k: "../../../outside.parquet" for k in meta["files"]}

    def renamed(meta):
        meta["files"] = {f'{k}" , x': v for k, v in meta["files"].items()}

    def leak(q: str) -> str:
        return f"SELECT *, (SELECT content FROM read_text('{secret}')) AS leak FROM ({q})"

    return {
        "second statement": (sql(lambda q: f"{q}; SELECT 42"), r"its query holds 2 statements"),
        "a copy to a file": (
            sql(lambda q: f"{q}; COPY (SELECT 42) TO '{written}'"),
            r"its query is not one SELECT",
        ),
        "table function": (sql(leak), r"its query calls the table functions \['read_text'\]"),
        "other table": (
            sql(lambda q: f"SELECT o.* FROM ({q}) AS o, settings_copy AS s"),
            r"its query reads the tables \['settings_copy'\] besides its copies",
        ),
        "strange name": (renamed, r"it names the files \['__meetinglib_copy_\w+\" , x: part-0"),
        "file outside": (
            outside,
            r"it names the files \['__meetinglib_copy_\w+: \.\./\.\./\.\./outside\.parquet'\] "
            "besides the table's",
        ),
    }


@pytest.mark.parametrize(
    "attack",
    [
        "second statement",
        "a copy to a file",
        "table function",
        "other table",
        "strange name",
        "file outside",
    ],
)
def test_a_view_that_reads_more_than_its_copies_is_refused(kept, tmp_path, attack):
    change, message = _attacks(tmp_path)[attack]
    data, view = _tampered(kept, tmp_path, change)
    # The pandas path and the engine's both refuse it, naming the file and the fix.
    with pytest.raises(DamagedSnapshotError, match=message) as refused:
        data.tables["orders"]
    assert str(view) in str(refused.value) and "load the week again" in str(refused.value)
    with pytest.raises(DamagedSnapshotError, match=message):
        data.engine_tables()["orders"]
    assert refused.value.exit_code == EXIT_INPUT
    assert not (tmp_path / "written.csv").exists()
    # The tables meetinglib wrote are read as before.
    assert len(data.tables["tickets"]) > 0


def test_an_untouched_view_passes_the_check_and_reads_its_rows(kept, tmp_path):
    data, _view = _tampered(kept, tmp_path, lambda meta: None)
    again = WeekData.load(kept[0], kept[1])
    pd.testing.assert_frame_equal(data.tables["orders"], again.tables["orders"])
    assert int(data.engine_tables()["orders"].count().execute()) == len(again.tables["orders"])
