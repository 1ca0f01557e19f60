"""CSV cells a spreadsheet would evaluate as a formula, neutralised (OWASP's rule).

A text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is
written with a leading single quote, so Excel, LibreOffice and Google Sheets show it
as text instead of running it (``=HYPERLINK(...)``, ``@SUM(...)``). Numbers stay
numbers: only text cells are touched, so ``-3.5`` in a float column is kept as is.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
# CSV files start with a UTF-8 byte-order mark: Excel reads a file without one in the
# machine's ANSI code page, and Chinese text then shows garbled; pandas, DuckDB and
# Python's "utf-8-sig" read it as plain UTF-8. Text for a terminal or a pipe gets none.
FILE_ENCODING = "utf-8-sig"
# A plain signed number written as text ("-3.5", "+2e3") is a value, not a formula.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def safe_cell(value: Any) -> Any:
    """The value, with a leading ' when it is text a spreadsheet would evaluate."""
    if isinstance(value, str) and value.startswith(TRIGGERS) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of the frame whose text cells (and column names) are neutralised."""
    out = frame.copy()
    for col in out.columns:
        s = out[col]
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_datetime64_any_dtype(s):
            continue
        if isinstance(s.dtype, pd.CategoricalDtype):
            s = s.astype(object)
        out[col] = s.map(safe_cell).astype(object) if len(s) else s
    out.columns = [safe_cell(c) if isinstance(c, str) else c for c in out.columns]
    return out


def to_csv(frame: pd.DataFrame, path: Any = None, **kwargs: Any) -> str | None:
    """``frame.to_csv`` with formula cells neutralised; returns the text when path is None.

    ``path`` is a file name or an open text stream (``sys.stdout``).
    """
    kwargs.setdefault("index", False)
    columns = kwargs.pop("columns", None)
    safe = safe_frame(frame if columns is None else frame.loc[:, list(columns)])
    if path is None:
        return str(safe.to_csv(**kwargs))
    if isinstance(path, str | os.PathLike):
        kwargs.setdefault("encoding", FILE_ENCODING)
        path = Path(path)
    safe.to_csv(path, **kwargs)
    return None


def safe_row(row: Iterable[Any]) -> list[Any]:
    """One row for csv.writer with every text cell neutralised."""
    return [safe_cell(v) for v in row]


def safe_rows(rows: Iterable[Sequence[Any]]) -> list[list[Any]]:
    """Rows for csv.writer with every text cell neutralised."""
    return [[safe_cell(v) for v in row] for row in rows]


def write_rows(
    path: str | os.PathLike[str] | None,
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    encoding: str = FILE_ENCODING,
) -> str | None:
    """Write header and rows as CSV with formula cells neutralised (text if path is None)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([safe_cell(h) for h in header])
    writer.writerows(safe_rows(rows))
    if path is None:
        return buf.getvalue()
    Path(path).write_text(buf.getvalue(), encoding=encoding, newline="")
    return None
