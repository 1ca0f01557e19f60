"""Whether two snapshot folders (``WeekData.save``) hold the same week, file by file.

Compares ``meta.json`` key by key (dtypes, quality figures and entries, sources...),
each Parquet file's Arrow schema, its row count and an order-sensitive checksum per
column (DuckDB's ``sum(hash(file_row_number, column))``), the quarantine frames, and
reports the row groups and whether every column chunk of the second carries min/max
statistics::

    python benchmarks/compare_snapshots.py /tmp/b1m/snapnew /tmp/me/snap

Exits 1 when they differ.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq


def _checksums(con: duckdb.DuckDBPyConnection, path: Path, columns: list[str]) -> tuple:
    sums = ", ".join(f'sum(hash(file_row_number, "{c}"))::VARCHAR' for c in columns)
    sql = f"SELECT count(*){', ' + sums if sums else ''} FROM read_parquet(?, file_row_number=true)"
    row = con.execute(sql, [str(path)]).fetchone()
    assert row is not None
    return tuple(row)


def _has_statistics(path: Path) -> bool:
    meta = pq.ParquetFile(path).metadata
    return meta.num_rows == 0 or all(
        (stats := meta.row_group(g).column(c).statistics) is not None and stats.has_min_max
        for g in range(meta.num_row_groups)
        for c in range(meta.num_columns)
    )


def compare(a: Path, b: Path) -> bool:
    """Print each comparison; True when every one is equal."""
    same = True

    def say(equal: bool, what: str) -> None:
        nonlocal same
        same &= equal
        print(("ok   " if equal else "DIFF ") + what)

    meta_a = json.loads((a / "meta.json").read_text(encoding="utf-8"))
    meta_b = json.loads((b / "meta.json").read_text(encoding="utf-8"))
    for key in sorted(set(meta_a) | set(meta_b)):
        say(meta_a.get(key) == meta_b.get(key), f"meta.json: {key}")
    con = duckdb.connect()
    for sub in ("tables", "quarantine"):
        names = sorted(
            {p.name for p in (a / sub).glob("*.parquet")}
            | {p.name for p in (b / sub).glob("*.parquet")}
        )
        for name in names:
            fa, fb = a / sub / name, b / sub / name
            if not (fa.is_file() and fb.is_file()):
                say(False, f"{sub}/{name}: in one folder only")
                continue
            schema = pq.read_schema(fa)
            say(schema.equals(pq.read_schema(fb)), f"{sub}/{name}: schema")
            ca, cb = _checksums(con, fa, schema.names), _checksums(con, fb, schema.names)
            differ = [c for c, x, y in zip(schema.names, ca[1:], cb[1:], strict=True) if x != y]
            say(ca == cb, f"{sub}/{name}: {ca[0]:,} vs {cb[0]:,} rows, columns differing {differ}")
            if sub == "quarantine":
                say(pd.read_parquet(fa).equals(pd.read_parquet(fb)), f"{sub}/{name}: frame")
            groups = (pq.ParquetFile(f).metadata.num_row_groups for f in (fa, fb))
            print(
                f"     row groups {' vs '.join(map(str, groups))}; "
                f"min/max in every chunk of the second: {_has_statistics(fb)}"
            )
    print("SAME" if same else "DIFFERENT")
    return same


if __name__ == "__main__":
    sys.exit(0 if compare(Path(sys.argv[1]), Path(sys.argv[2])) else 1)
