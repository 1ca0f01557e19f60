"""Text parsed on the engine equals validation's parse (pandas), value by value."""

from __future__ import annotations

import ibis
import numpy as np
import pandas as pd
import pytest

from meetinglib.data import engine
from meetinglib.data import parse_engine as pe
from meetinglib.data.checks import stripped_text
from meetinglib.data.validate import _coerce_number, _coerce_timestamp


def _micros(values: pd.Series) -> list[int | None]:
    utc = values.dt.tz_convert("UTC").dt.as_unit("us").dt.tz_localize(None)
    return [None if pd.isna(v) else int(v.value // 1000) for v in utc]


@pytest.mark.parametrize("zone", ["Europe/Berlin", "Asia/Shanghai", "America/New_York"])
def test_plain_timestamps_equal_validation_across_daylight_saving(zone):
    wall = pd.date_range("2025-03-08", "2025-03-31", freq="17min").append(
        pd.date_range("2025-10-25", "2025-11-03", freq="13min")
    )
    texts = [w.strftime("%Y-%m-%d %H:%M:%S") for w in wall]
    texts += ["2025-03-30 02:30:00", "2025-10-26 02:30:00", "2025-03-09 02:30", "2025-11-02"]
    texts += ["2025-11-02T01:30:00.25", "2025-06-01 10:00:00+0200", "2025-06-01T08:00:00Z"]
    texts += ["2025-06-01 10:00:00-05:30", "2025-02-29 10:00:00", "2025-13-01", "  "]
    z = pe.zone_between(
        zone, pd.Timestamp("2024-12-01", tz="UTC"), pd.Timestamp("2026-01-01", tz="UTC")
    )
    assert pe.agrees_with_pandas(z)
    expected = _coerce_timestamp(pd.Series(texts, dtype="str"), zone, None, "UTC")
    con = engine.shared()
    t = ibis.memtable(pd.DataFrame({"x": pd.Series(texts, dtype=object)}))
    text = stripped_text(t.x)
    plain = pe.is_plain_timestamp(text, pe.iso_patterns())
    value, missing, bad = pe.timestamp_value(text, pe.iso_patterns(), z, {})
    got = con.to_pyarrow(t.select(p=plain, m=missing, v=pe.epoch_us(value), b=bad)).to_pandas()
    want = _micros(expected.values)
    for i, text_value in enumerate(texts):
        if got.p[i]:
            assert got.v[i] == want[i], text_value
        else:
            # Not plain: validation parses it (here the impossible dates and the blank).
            assert text_value.strip() in ("2025-02-29 10:00:00", "2025-13-01", "")
    assert got.m.tolist() == expected.missing.tolist()


def test_plain_numbers_equal_validation():
    rng = np.random.default_rng(5)
    values = [
        f"{v:.{d}f}"
        for v, d in zip(rng.normal(0, 1e5, 2000), rng.integers(0, 6, 2000), strict=True)
    ]
    values += ["1.", ".5", "+5", "-0", "007", "123456789012345", "0.00000000001"]
    expected = _coerce_number(pd.Series(values, dtype="str"), "float")
    con = engine.shared()
    t = ibis.memtable(pd.DataFrame({"x": pd.Series(values, dtype=object)}))
    value, missing, bad = pe.number_value(stripped_text(t.x), "float", {})
    got = con.to_pyarrow(t.select(v=value, b=bad)).to_pandas()
    assert not got.b.any()
    np.testing.assert_array_equal(got.v.to_numpy(), expected.values.to_numpy())


def test_formats_the_engine_parses():
    assert pe.format_pattern("%Y/%m/%d %H:%M:%S") is not None
    assert pe.format_pattern("%d.%m.%Y") is not None
    # Anything pandas reads more loosely than fixed digits stays with validation.
    assert pe.format_pattern("%Y-%m-%d %I:%M %p") is None
    assert pe.format_pattern("%b %d %Y") is None
