"""CSV and XLSX files converted once to Parquet, for the engine to read like Parquet.

A text file's cells are read as the folder source reads them (``sources``: the same
header row and mapping, delimiter, quoting, encodings, blank rows and row numbers as the
pandas path: title lines above the header are skipped and counted), and written as a
Parquet file of the canonical columns, text as text, with the row a person finds in the
file (``_source_row``). A CSV is streamed through Arrow's reader with
the pandas path's options, a block at a time, so a file larger than memory converts; a
file that reader refuses (a row with a wrong number of cells, bytes invalid in the
encoding) or whose quoted cells hold line breaks is read by the pandas path's reader
whole, which handles those. The engine then reads and validates that
file as it reads a Parquet source (``load_engine``); what it cannot parse itself goes to
validation's functions there.

The cache lies in ``$MEETINGLIB_CACHE_DIR`` (else ``$XDG_CACHE_HOME/meetinglib``, else
``~/.cache/meetinglib``), under ``sources/``. A file's entry is keyed by its path, size,
modification time and content digest, and by every setting that changes what is read,
so an edited or re-exported file is converted again. Two runs at once write to temporary
names and rename: each finds a whole file or writes its own.

The cache is kept to what is in use. An entry's name begins with a digest of the source
file's path, table and reader, and its modification time is set each time a run finds it.
Every conversion then removes the entries it supersedes (the same file as it was before
an edit or a new export) once unused for ``SUPERSEDED_AFTER``, the temporary files of
conversions cut short, and entries of any file unused for ``UNUSED_AFTER`` (exports named
by date, a source moved). A weekly export replaced in place thus keeps one entry, not one a
week; the grace period leaves a run that still reads the earlier entry undisturbed.
"""

from __future__ import annotations

import codecs
import contextlib
import datetime as dt
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from meetinglib.core.params import TableSource
from meetinglib.core.schema import WRONG_FIELDS_COL, TableSchema
from meetinglib.data import sources

# Bump when the layout of a cached file changes: older entries are then ignored.
CACHE_VERSION = 1
# How long an entry stays unused before a conversion removes it: one that a newer entry of
# the same source file supersedes, and any other one.
SUPERSEDED_AFTER = dt.timedelta(hours=1)
UNUSED_AFTER = dt.timedelta(days=30)
ROW_COLUMN = sources.SOURCE_ROW
# Parquet metadata key: rows whose cell count is not the header's (validation's rule
# "wrong field count", which the engine path does not check).
WRONG_ROWS_KEY = b"meetinglib.wrong_field_rows"


def cache_dir() -> Path:
    """Where converted source files are kept."""
    explicit = os.environ.get("MEETINGLIB_CACHE_DIR")
    if explicit:
        return Path(explicit) / "sources"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "meetinglib" / "sources"


def cache_key(path: Path, reader: str, schema: TableSchema, ts: TableSource, tz: str) -> str:
    """The entry of one source file read for one table with these settings."""
    stat = path.stat()
    settings = {
        "version": CACHE_VERSION,
        "path": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "sha256": sources._file_sha256(path),
        "reader": reader,
        "table": schema.name,
        "columns": ts.columns,
        "encoding": ts.encoding,
        "delimiter": ts.delimiter,
        "sheet": ts.sheet,
        "header_row": ts.header_row,
        "timestamp_format": ts.timestamp_format,
        "timezone": tz,
    }
    text = json.dumps(settings, sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def source_prefix(path: Path, reader: str, schema: TableSchema) -> str:
    """The start of the names of every entry of one source file read for one table: the
    entries a new conversion of it supersedes."""
    text = json.dumps([str(path.resolve()), reader, schema.name], ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:16] + "-"


def converted(
    path: Path, reader: sources.FileReader, schema: TableSchema, ts: TableSource, tz: str
) -> Path:
    """The cached Parquet file of ``path`` (converted now if missing or out of date)."""
    folder = cache_dir()
    prefix = source_prefix(path, reader.name, schema)
    target = folder / f"{prefix}{cache_key(path, reader.name, schema, ts, tz)}.parquet"
    if target.is_file():
        # in use: its modification time is when a run last found it (see prune)
        with contextlib.suppress(OSError):
            os.utime(target)
        return target
    folder.mkdir(parents=True, exist_ok=True)
    if not (reader.name == "csv" and _stream_csv(path, schema, ts, target)):
        frame = reader.read_table([path], schema, ts, None, tz)
        _write(frame, target)
    prune(folder, superseded=prefix, keep=target)
    return target


def prune(folder: Path, superseded: str | None = None, keep: Path | None = None) -> list[Path]:
    """Remove from the cache ``folder`` the entries named with the prefix ``superseded``
    unused for SUPERSEDED_AFTER, temporary files unchanged as long, and any entry unused
    for UNUSED_AFTER; never ``keep``. Returns what was removed.

    Unused means not found by a run (``converted`` sets the time on each find). A file
    another process removes first, or cannot be removed, is passed over.
    """
    now = dt.datetime.now().timestamp()
    removed = []
    for entry in folder.iterdir():
        if entry == keep or entry.suffix not in (".parquet", ".tmp"):
            continue
        try:
            idle = now - entry.stat().st_mtime
        except OSError:
            continue
        # a conversion in progress writes its temporary file often; one left unchanged
        # for as long was cut short
        mine = superseded is not None and entry.name.startswith(superseded)
        limit = SUPERSEDED_AFTER if mine or entry.suffix == ".tmp" else UNUSED_AFTER
        if idle > limit.total_seconds():
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry)
    return removed


def _stream_csv(path: Path, schema: TableSchema, ts: TableSource, target: Path) -> bool:
    """Convert a CSV a block at a time as ``sources._read_csv`` reads it; False when that
    needs the whole-file reader (see the module docstring)."""
    tried = sources._csv_encodings(path, ts.encoding)
    chinese = len(tried) == 1 and codecs.lookup(tried[0]).name in sources._CHINESE_CODECS
    if chinese and sources._is_utf8(path):
        return False  # the reader names the wrong declared encoding
    for encoding in tried:
        try:
            header = sources._csv_header(path, encoding, ts.delimiter, schema.name, ts.header_row)
        except UnicodeDecodeError:
            continue
        header_line = ts.header_row or 1
        selected = sources._select_columns(header, schema, ts, path.name, header=header_line)
        positions = {orig: header.index(orig) for orig in selected}
        try:
            return _stream_csv_as(
                path, encoding, ts.delimiter, len(header), positions, selected, target, header_line
            )
        except (pa.ArrowInvalid, UnicodeDecodeError):
            return False
    return False


def _stream_csv_as(
    path: Path,
    encoding: str,
    delimiter: str,
    width: int,
    positions: dict[str, int],
    selected: dict[str, str],
    target: Path,
    header_line: int = 1,
) -> bool:
    wanted = [f"c{i}" for i in positions.values()]
    canonical = [selected[orig] for orig in positions]
    options = sources.csv_text_options(
        encoding, delimiter, width, wanted, block_size=16 << 20, header_line=header_line
    )
    reader = pacsv.open_csv(path, **options)
    schema = pa.schema(
        [pa.field(c, pa.string()) for c in canonical] + [pa.field(ROW_COLUMN, pa.int64())],
        metadata={WRONG_ROWS_KEY: b"0"},
    )
    records = 0
    handle, temporary = tempfile.mkstemp(prefix=target.stem, suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        with pq.ParquetWriter(temporary, schema) as writer:
            for batch in reader:
                n = batch.num_rows
                # Record k (from 0) starts on line header_line + 1 + k (checked below): the
                # title lines above the header count, as in the file a person opens.
                first = header_line + 1 + records
                rows = pa.array(np.arange(first, first + n, dtype=np.int64))
                records += n
                columns = [batch.column(w) for w in wanted]
                table = pa.Table.from_arrays([*columns, rows], schema=schema)
                if columns:
                    # Rows with no value in any column read (blank lines) are no rows.
                    empty = columns[0].is_null()
                    for column in columns[1:]:
                        empty = pc.and_(empty, column.is_null())
                    table = table.filter(pc.invert(empty))
                writer.write_table(table, row_group_size=1 << 20)
        above = header_line - 1  # title lines
        if _newlines(path) not in (records + above, records + above + 1):
            Path(temporary).unlink(missing_ok=True)
            return False  # quoted cells with line breaks: records are not lines
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return True


def _newlines(path: Path) -> int:
    count = 0
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 24), b""):
            count += chunk.count(b"\n")
    return count


def wrong_field_rows(path: Path) -> int:
    """Rows of a cached file whose cell count was not the header's."""
    meta = pq.read_schema(path).metadata or {}
    return int(meta.get(WRONG_ROWS_KEY, b"0"))


def _write(frame: pd.DataFrame, target: Path) -> None:
    """Write ``frame`` under a temporary name and rename it: readers see it whole or not."""
    wrong = 0
    if WRONG_FIELDS_COL in frame.columns:
        wrong = int(frame[WRONG_FIELDS_COL].sum())
        frame = frame.drop(columns=[WRONG_FIELDS_COL])
    columns = {}
    for name in frame.columns:
        s = frame[name]
        if name == ROW_COLUMN:
            columns[name] = pa.array(s.to_numpy(dtype="int64"), pa.int64())
        elif pd.api.types.is_datetime64_any_dtype(s.dtype):
            columns[name] = pa.array(s.dt.as_unit("us"))
        else:
            values = s.astype(object).where(s.notna(), None)
            columns[name] = pa.array(values.tolist(), pa.string())
    table = pa.table(columns).replace_schema_metadata({WRONG_ROWS_KEY: str(wrong).encode()})
    handle, temporary = tempfile.mkstemp(prefix=target.stem, suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        pq.write_table(table, temporary, row_group_size=1 << 20)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
