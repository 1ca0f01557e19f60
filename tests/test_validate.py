"""Validation: canonical dtypes, every rule with hand-counted rows, the error, timezones."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd
import pytest

from meetinglib.core.errors import TooManyQuarantinedError
from meetinglib.data.sources import RawTable, SourceInfo
from meetinglib.data.validate import (
    Example,
    QualityReport,
    QuarantineEntry,
    duplicated_rows,
    fingerprint,
    quarantine_file,
    validate_table,
)

TZ = "Asia/Shanghai"


def raw_table(
    table: str,
    columns: dict[str, list[object]],
    *,
    location: str = "/exports/orders.csv",
    timezone: str = TZ,
    timestamp_format: str | None = None,
    first_row: int = 2,
) -> RawTable:
    """A raw table as a CSV source delivers it: text cells, NA for empty ones."""
    n = len(next(iter(columns.values())))
    frame = pd.DataFrame({name: pd.Series(values, dtype="str") for name, values in columns.items()})
    frame["_source_row"] = pd.array(range(first_row, first_row + n), dtype="Int64")
    fmt = location.rsplit(".", 1)[-1]
    return RawTable(
        table, frame, SourceInfo(table, location, fmt, n, None), timezone, timestamp_format
    )


def stamp(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=TZ)


# --- every rule on one small orders table ------------------------------------------------
# CSV line numbers (header = line 1) and what is wrong with each row:
#  2 O-1      valid
#  3 O-2      order_type 'vip'                      -> unknown value
#  4 O-3      created_at 2026-02-30 (no such day)   -> unparseable timestamp
#  5 O-4      amount 'abc'                          -> not a number
#  6 O-5      amount -5                             -> out of range
#  7 O-1      second O-1                            -> duplicate key
#  8 O-6      delivered before shipped              -> milestone order (delivered_at)
#  9 O-7      created_at empty                      -> required value missing
# 10 (none)   order_id empty AND order_type 'vip'   -> required (first), also unknown value
# 11 O-2      created_at 'yesterday' AND second O-2 -> unparseable (first), also duplicate key
# 12 O-8      shipped before paid and created       -> milestone order (shipped_at), once
# 13 O-9      paid before created                   -> milestone order (paid_at)
# 14 O-00042  valid, id with leading zeros
# 15 O-10     ' Special ', 'STOCKOUT'               -> valid (case and spaces ignored)
# 16 O-11     exception_code 'weather'              -> unknown value
RULES_ORDERS = {
    "order_id": [
        "O-1", "O-2", "O-3", "O-4", "O-5", "O-1", "O-6", "O-7", None,
        "O-2", "O-8", "O-9", "O-00042", "O-10", "O-11",
    ],
    "order_type": [
        "normal", "vip", "normal", "normal", "normal", "normal", "normal", "normal", "vip",
        "normal", "normal", "normal", "normal", " Special ", "normal",
    ],
    "created_at": [
        "2026-03-02 10:00:00", "2026-03-02 10:00:00", "2026-02-30 10:00", "2026-03-02 10:00:00",
        "2026-03-02 10:00:00", "2026-03-02 10:00:00", "2026-03-02 10:00:00", None,
        "2026-03-02 10:00:00", "yesterday", "2026-03-02 10:00:00", "2026-03-02 10:00:00",
        "2026-03-02 10:00:00", "2026-03-02 10:00:00", "2026-03-02 10:00:00",
    ],
    "paid_at": [
        "2026-03-02 10:05:00", None, None, None, None, None, "2026-03-02 10:05:00", None, None,
        None, "2026-03-02 10:05:00", "2026-03-02 09:00:00", None, None, None,
    ],
    "shipped_at": [
        "2026-03-03 09:00:00", None, None, None, None, None, "2026-03-03 09:00:00", None, None,
        None, "2026-03-02 09:00:00", "2026-03-03 09:00:00", None, None, None,
    ],
    "delivered_at": [
        "2026-03-05 15:00:00", None, None, None, None, None, "2026-03-03 08:00:00", None, None,
        None, None, None, None, None, None,
    ],
    "amount": [
        "99.5", "10", "10", "abc", "-5", "10", "10", "10", "10",
        "10", "10", "10", "1,234.50", "10", "10",
    ],
    "exception_code": [
        None, None, None, None, None, None, None, None, None,
        None, None, None, None, "STOCKOUT", "weather",
    ],
}  # fmt: skip

EXPECTED_ENTRIES = [
    ("order_id", "required value missing", 1, ("row 10",)),
    ("created_at", "required value missing", 1, ("row 9 (order_id O-7)",)),
    (
        "created_at",
        "unparseable timestamp",
        2,
        ("row 4 (order_id O-3): '2026-02-30 10:00'", "row 11 (order_id O-2): 'yesterday'"),
    ),
    ("amount", "not a number", 1, ("row 5 (order_id O-4): 'abc'",)),
    ("order_type", "unknown value", 2, ("row 3 (order_id O-2): 'vip'", "row 10: 'vip'")),
    ("exception_code", "unknown value", 1, ("row 16 (order_id O-11): 'weather'",)),
    ("amount", "out of range", 1, ("row 6 (order_id O-5): '-5'",)),
    (
        "order_id",
        "duplicate key",
        2,
        ("row 7 (order_id O-1): first at row 2", "row 11 (order_id O-2): first at row 3"),
    ),
    (
        "paid_at",
        "milestone order",
        1,
        (
            "row 13 (order_id O-9): paid_at 2026-03-02 09:00:00 "
            "before created_at 2026-03-02 10:00:00",
        ),
    ),
    (
        "shipped_at",
        "milestone order",
        1,
        (
            "row 12 (order_id O-8): shipped_at 2026-03-02 09:00:00 "
            "before paid_at 2026-03-02 10:05:00",
        ),
    ),
    (
        "delivered_at",
        "milestone order",
        1,
        (
            "row 8 (order_id O-6): delivered_at 2026-03-03 08:00:00 "
            "before shipped_at 2026-03-03 09:00:00",
        ),
    ),
]

# (line, first rule failed, its column), in source order. Unknown values (lines 3, 16) and
# milestones out of order (8, 12, 13) are kept and flagged, not set aside.
EXPECTED_QUARANTINE = [
    (4, "unparseable timestamp", "created_at"),
    (5, "not a number", "amount"),
    (6, "out of range", "amount"),
    (7, "duplicate key", "order_id"),
    (9, "required value missing", "created_at"),
    (10, "required value missing", "order_id"),
    (11, "unparseable timestamp", "created_at"),
]
KEPT_FLAGGED = {3, 8, 12, 13, 16}


@pytest.fixture
def rules_result():
    raw = raw_table("orders", RULES_ORDERS)
    return raw, validate_table(raw, TZ, max_share=1.0)


def test_every_rule_counted_by_hand(rules_result):
    _, (clean, entries, _) = rules_result
    got = [(e.column, e.rule, e.rows, e.example_texts()) for e in entries]
    assert got == EXPECTED_ENTRIES
    assert {e.table for e in entries} == {"orders"}
    assert {e.source for e in entries} == {"orders.csv"}


def test_each_row_quarantined_once_and_counts_add_up(rules_result):
    raw, (clean, entries, quarantined) = rules_result
    assert len(raw.frame) == 15
    assert len(quarantined) == 7
    assert len(clean) == 3 + len(KEPT_FLAGGED)
    assert len(raw.frame) == len(clean) + len(quarantined)
    # Rows 10 and 11 fail two rules each: counted in both entries, set aside once.
    assert sum(e.rows for e in entries) == 12 + 2
    assert [e.kept for e in entries] == [
        e[1] in ("unknown value", "milestone order") for e in EXPECTED_ENTRIES
    ]
    got = list(
        zip(
            quarantined["_source_row"].tolist(),
            quarantined["_rule"].tolist(),
            quarantined["_column"].tolist(),
            strict=True,
        )
    )
    assert got == EXPECTED_QUARANTINE


def test_quarantine_keeps_original_values(rules_result):
    _, (_, _, quarantined) = rules_result
    assert list(quarantined.columns[:3]) == ["_source_row", "_rule", "_column"]
    row4 = quarantined.loc[quarantined["_source_row"] == 4].iloc[0]
    assert row4["created_at"] == "2026-02-30 10:00"
    row6 = quarantined.loc[quarantined["_source_row"] == 6].iloc[0]
    assert row6["amount"] == "-5"
    row10 = quarantined.loc[quarantined["_source_row"] == 10].iloc[0]
    assert pd.isna(row10["order_id"]) and row10["order_type"] == "vip"


def test_kept_rows_and_normalised_values(rules_result):
    _, (clean, _, _) = rules_result
    ids = ["O-1", "O-2", "O-6", "O-8", "O-9", "O-00042", "O-10", "O-11"]
    assert clean["order_id"].tolist() == ids
    assert clean["order_type"].tolist() == ["normal", "unmapped", *["normal"] * 4, "special"] + [
        "normal"
    ]
    assert clean["amount"].tolist() == [99.5, 10.0, 10.0, 10.0, 10.0, 1234.5, 10.0, 10.0]
    assert clean["exception_code"].isna().tolist() == [True] * 6 + [False, False]
    # An unknown exception code is still an exception: kept as "unmapped".
    assert clean["exception_code"].tolist()[-2:] == ["stockout", "unmapped"]
    assert clean["created_at"].iloc[0] == stamp("2026-03-02 10:00")
    assert clean["delivered_at"].iloc[0] == stamp("2026-03-05 15:00")
    # The milestone out of order stays as the source says; durations leave it out.
    assert clean["delivered_at"].iloc[2] == stamp("2026-03-03 08:00")
    assert clean["cancelled_at"].isna().all()


def test_canonical_dtypes_and_columns(rules_result):
    _, (clean, _, _) = rules_result
    from meetinglib.core.schema import ORDER_TYPES, ORDERS

    assert list(clean.columns) == ORDERS.names
    assert "_source_row" not in clean.columns
    assert clean["order_id"].dtype == "str"
    assert isinstance(clean["order_type"].dtype, pd.CategoricalDtype)
    assert list(clean["order_type"].cat.categories) == [*ORDER_TYPES, "unmapped"]
    for name in ("created_at", "paid_at", "promised_ship_by"):
        assert str(clean[name].dtype) == f"datetime64[us, {TZ}]"
    assert clean["amount"].dtype == "float64"
    # Absent optional category: all empty, still categorical.
    assert isinstance(clean["carrier"].dtype, pd.CategoricalDtype)
    assert clean["carrier"].isna().all()


def test_ids_keep_leading_zeros_and_extra_columns_are_dropped():
    raw = raw_table(
        "order_lines",
        {
            "order_id": ["007", "0070", "7"],
            "sku": ["0001", "0001", "0001"],
            "qty": ["1", "2", "3"],
            "internal_note": ["a", "b", "c"],
        },
    )
    clean, entries, _ = validate_table(raw, TZ, 0.0)
    assert entries == []
    assert clean["order_id"].tolist() == ["007", "0070", "7"]
    assert clean["sku"].tolist() == ["0001"] * 3
    assert list(clean.columns) == ["order_id", "sku", "qty", "qty_shipped"]
    assert clean["qty"].dtype == "Int64"
    assert clean["qty_shipped"].isna().all()


def test_numeric_ids_from_parquet_become_text():
    frame = pd.DataFrame(
        {
            "order_id": pd.array([12, 13], dtype="Int64"),
            "order_type": ["normal", "normal"],
            "created_at": pd.to_datetime(["2026-03-02 10:00", "2026-03-02 11:00"]),
            "_source_row": pd.array([1, 2], dtype="Int64"),
        }
    )
    raw = RawTable(
        "orders", frame, SourceInfo("orders", "/x/orders.parquet", "parquet", 2, "ab"), TZ, None
    )
    clean, _, _ = validate_table(raw, TZ, 0.0)
    assert clean["order_id"].tolist() == ["12", "13"]
    assert clean["order_id"].dtype == "str"


# --- number and range rules on other tables --------------------------------------------


def test_whole_numbers_and_quantity_ranges():
    raw = raw_table(
        "order_lines",
        {
            "order_id": ["A", "A", "B", "C", "D", "A"],
            "sku": ["S1", "S2", "S1", "S1", "S1", "S1"],
            "qty": ["2", "2.0", "1.5", "-1", "3", "1"],
            "qty_shipped": [None, "2", "1", "1", "-2", "1"],
        },
    )
    clean, entries, quarantined = validate_table(raw, TZ, 1.0)
    got = [(e.column, e.rule, e.rows) for e in entries]
    # Row 4 (1.5) is not a whole number; rows 5 and 6 are negative; row 7 repeats (A, S1).
    assert got == [
        ("qty", "not a number", 1),
        ("qty", "out of range", 1),
        ("qty_shipped", "out of range", 1),
        ("order_id, sku", "duplicate key", 1),
    ]
    assert entries[3].example_texts() == ("row 7 (order_id A, sku S1): first at row 2",)
    assert clean["qty"].tolist() == [2, 2]
    assert clean["qty_shipped"].isna().tolist() == [True, False]
    assert quarantined["_source_row"].tolist() == [4, 5, 6, 7]


def test_csat_outside_one_to_five():
    raw = raw_table(
        "tickets",
        {
            "ticket_id": ["T1", "T2", "T3", "T4", "T5", "T6"],
            "order_id": ["O1", None, "O3", "O4", "O5", "O6"],
            "opened_at": ["2026-03-02 10:00:00"] * 6,
            "category": ["complaint", "inquiry", "delivery", "other", "payment", "complaint"],
            "csat": ["0", "6", "5", "1", None, "4.5"],
        },
        location="/exports/tickets.xlsx",
    )
    clean, entries, _ = validate_table(raw, TZ, 1.0)
    assert [(e.column, e.rule, e.rows, e.source) for e in entries] == [
        ("csat", "out of range", 2, "tickets.xlsx")
    ]
    assert entries[0].example_texts() == ("row 2 (ticket_id T1): '0'", "row 3 (ticket_id T2): '6'")
    assert clean["ticket_id"].tolist() == ["T3", "T4", "T5", "T6"]
    assert clean["csat"].tolist()[:2] == [5.0, 1.0]
    assert np.isnan(clean["csat"].iloc[2])
    assert clean["order_id"].notna().all()


def test_at_most_five_examples():
    n = 8
    raw = raw_table(
        "orders",
        {
            "order_id": [f"O{i}" for i in range(n)],
            "order_type": ["normal"] * n,
            "created_at": ["2026-03-02 10:00:00"] * n,
            "amount": ["x"] * n,
        },
    )
    _, entries, _ = validate_table(raw, TZ, 1.0)
    assert len(entries) == 1 and entries[0].rows == 8
    assert entries[0].example_texts() == tuple(
        f"row {i + 2} (order_id O{i}): 'x'" for i in range(5)
    )


# --- a status without its time -------------------------------------------------------------
# Settlements, by CSV line: a status that says a time happened needs that time.
#  2 S-1  settled 2026-03-10       valid
#  3 S-2  settled, empty time      -> status without time
#  4 S-3  ' Settled ', 'NULL'      -> status without time (a placeholder is no time)
#  5 S-4  refunded, empty time     valid: a refund of money never settled has no time
#  6 S-5  disputed, empty time     valid: not settled yet
#  7 S-6  pending, empty time      valid
#  8 S-7  settled, 'soon'          unparseable timestamp (set aside), not this rule
SETTLEMENT_STATUSES = {
    "order_id": ["S-1", "S-2", "S-3", "S-4", "S-5", "S-6", "S-7"],
    "settled_at": ["2026-03-10 09:00:00", None, "NULL", None, None, None, "soon"],
    "amount": ["10", "20", "30", "40", "50", "60", "70"],
    "status": ["settled", "settled", " Settled ", "refunded", "disputed", "pending", "settled"],
}


def settlements_raw() -> RawTable:
    return raw_table("settlements", SETTLEMENT_STATUSES, location="/exports/settlements.csv")


def test_settled_without_a_time_is_kept_and_flagged():
    clean, entries, quarantined = validate_table(settlements_raw(), TZ, 1.0)
    assert [
        (e.column, e.rule, e.rows, e.kept, tuple(x.text() for x in e.examples)) for e in entries
    ] == [
        ("settled_at", "unparseable timestamp", 1, False, ("row 8 (order_id S-7): 'soon'",)),
        (
            "settled_at",
            "status without time",
            2,
            True,
            (
                "row 3 (order_id S-2): status 'settled', settled_at empty",
                "row 4 (order_id S-3): status ' Settled ', settled_at empty",
            ),
        ),
    ]
    # Kept, amounts and all: only the unparseable time is set aside.
    assert clean["order_id"].tolist() == ["S-1", "S-2", "S-3", "S-4", "S-5", "S-6"]
    assert clean["amount"].tolist() == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    assert quarantined["_rule"].tolist() == ["unparseable timestamp"]


def test_settled_without_a_time_does_not_count_towards_the_share_set_aside():
    # 6 of 7 rows kept: the two flagged ones stop no run, and the message names them apart.
    expected = (
        "settlements.csv: 1 of 7 rows (14.3%) fail validation, more than "
        "quality.max_quarantine_share (10.0%): "
        "column 'settled_at' unparseable timestamp: 1 row (row 8 (order_id S-7): 'soon'); "
        "flagged but kept: column 'settled_at' status without time: 2 rows "
        "(row 3 (order_id S-2): status 'settled', settled_at empty, "
        "row 4 (order_id S-3): status ' Settled ', settled_at empty). "
        "Fix the source or the mapping, or raise quality.max_quarantine_share."
    )
    with pytest.raises(TooManyQuarantinedError, match=f"^{re.escape(expected)}$"):
        validate_table(settlements_raw(), TZ, 0.1)
    clean, _, _ = validate_table(settlements_raw(), TZ, 1 / 7)
    assert len(clean) == 6


def test_settlements_without_a_time_column_are_not_flagged():
    columns = {k: v for k, v in SETTLEMENT_STATUSES.items() if k != "settled_at"}
    clean, entries, _ = validate_table(
        raw_table("settlements", columns, location="/exports/settlements.csv"), TZ, 0.0
    )
    assert entries == [] and len(clean) == 7


def test_status_without_time_in_both_languages():
    raw = settlements_raw()
    clean, entries, quarantined = validate_table(raw, TZ, 1.0)
    report = QualityReport()
    report.add("settlements", len(raw.frame), len(clean), entries, quarantined)
    en = report.to_frame("en").iloc[-1]
    assert (en["Table"], en["Source"], en["Column"], en["Rule"], en["Rows"], en["Outcome"]) == (
        "settlements",
        "settlements.csv",
        "settled_at",
        "Status without its time",
        2,
        "kept, flagged",
    )
    zh = report.to_frame("zh-CN").iloc[-1]
    assert (zh["规则"], zh["处理"]) == ("状态缺少对应时间", "保留并标记")


# --- the threshold ------------------------------------------------------------------------


def ten_orders(bad_created: dict[int, str], bad_type: dict[int, str]) -> RawTable:
    created = ["2026-03-02 10:00:00"] * 10
    types = ["normal"] * 10
    for i, v in bad_created.items():
        created[i] = v
    for i, v in bad_type.items():
        types[i] = v
    return raw_table(
        "orders",
        {"order_id": [f"A{i}" for i in range(1, 11)], "order_type": types, "created_at": created},
    )


def test_too_many_quarantined_message():
    # The unknown order type is kept (not counted in the share) but named in the message,
    # apart from the rows that fail.
    raw = ten_orders({1: "2026-13-01 10:00", 3: "soon"}, {5: "vip"})
    expected = (
        "orders.csv: 2 of 10 rows (20.0%) fail validation, more than "
        "quality.max_quarantine_share (2.0%): "
        "column 'created_at' unparseable timestamp: 2 rows "
        "(row 3 (order_id A2): '2026-13-01 10:00', row 5 (order_id A4): 'soon'); "
        "flagged but kept: column 'order_type' unknown value: 1 row (row 7 (order_id A6): 'vip') - "
        "allowed values: normal, special, after_sales; map other values onto them under "
        "source.tables.orders.values.order_type. "
        "Fix the source or the mapping, or raise quality.max_quarantine_share."
    )
    with pytest.raises(TooManyQuarantinedError, match=f"^{re.escape(expected)}$"):
        validate_table(raw, TZ, 0.02)


def test_share_at_the_threshold_passes():
    raw = ten_orders({1: "soon"}, {})
    clean, entries, quarantined = validate_table(raw, TZ, 0.1)
    assert (len(clean), len(quarantined), entries[0].rows) == (9, 1, 1)
    with pytest.raises(TooManyQuarantinedError, match=r"1 of 10 rows \(10\.0%\)"):
        validate_table(raw, TZ, 0.09)


def test_empty_table():
    raw = raw_table("orders", {"order_id": [], "order_type": [], "created_at": []})
    clean, entries, quarantined = validate_table(raw, TZ, 0.0)
    assert (len(clean), entries, len(quarantined)) == (0, [], 0)
    assert str(clean["created_at"].dtype) == f"datetime64[us, {TZ}]"


# --- timestamps and timezones ----------------------------------------------------------------


def created(values: list[str], **kwargs) -> pd.Series:
    raw = raw_table(
        "orders",
        {
            "order_id": [f"O{i}" for i in range(len(values))],
            "order_type": ["normal"] * len(values),
            "created_at": values,
        },
        **kwargs,
    )
    clean, entries, _ = validate_table(raw, TZ, 0.0)
    assert entries == []
    return clean["created_at"]


def test_naive_text_is_local_time_of_the_source():
    got = created(["2026-03-02 08:00:00", "2026-03-02T08:00", "2026-03-02"])
    assert got.tolist() == [
        stamp("2026-03-02 08:00"),
        stamp("2026-03-02 08:00"),
        stamp("2026-03-02"),
    ]


def test_utc_text_is_converted():
    # 00:00 UTC is 08:00 in Shanghai.
    got = created(
        ["2026-03-02T00:00:00Z", "2026-03-02 00:00:00+00:00", "2026-03-02T09:00:00+09:00"]
    )
    assert got.tolist() == [stamp("2026-03-02 08:00")] * 3


def test_mixed_naive_and_offset_text_in_one_column():
    got = created(["2026-03-02 08:00:00", "2026-03-02T00:00:00Z"])
    assert got.tolist() == [stamp("2026-03-02 08:00")] * 2


def test_source_timezone_differs_from_platform():
    got = created(["2026-03-02 00:00:00"], timezone="UTC")
    assert got.iloc[0] == stamp("2026-03-02 08:00")
    assert str(got.dtype) == f"datetime64[us, {TZ}]"


def test_dst_gap_shifts_forward_and_repeated_hour_is_first_occurrence():
    # Berlin: 2026-03-29 02:30 does not exist (clocks jump 02:00 -> 03:00 CEST);
    # 2026-10-25 02:30 occurs twice, the first time in CEST (UTC+2).
    got = created(["2026-03-29 02:30:00", "2026-10-25 02:30:00"], timezone="Europe/Berlin")
    assert got.iloc[0] == pd.Timestamp("2026-03-29 01:00", tz="UTC")
    assert got.iloc[1] == pd.Timestamp("2026-10-25 00:30", tz="UTC")
    assert got.notna().all()


def test_timestamp_format_from_params():
    got = created(["02/03/2026 08:00", "13/03/2026 17:30"], timestamp_format="%d/%m/%Y %H:%M")
    assert got.tolist() == [stamp("2026-03-02 08:00"), stamp("2026-03-13 17:30")]


def test_non_iso_text_without_format_is_still_read():
    got = created(["2026/03/02 08:00", "2026/03/13 17:30"])
    assert got.tolist() == [stamp("2026-03-02 08:00"), stamp("2026-03-13 17:30")]


def test_datetime_columns_from_parquet_naive_and_aware():
    frame = pd.DataFrame(
        {
            "order_id": ["A", "B"],
            "order_type": pd.Categorical(["normal", "special"]),
            "created_at": pd.to_datetime(["2026-03-02 08:00", "2026-03-02 09:00"]),
            "paid_at": pd.to_datetime(["2026-03-02 00:30", None]).tz_localize("UTC"),
            "_source_row": pd.array([1, 2], dtype="Int64"),
        }
    )
    info = SourceInfo("orders", "/x/orders.parquet", "parquet", 2, "ab")
    clean, entries, _ = validate_table(RawTable("orders", frame, info, TZ, None), TZ, 0.0)
    assert entries == []
    assert clean["created_at"].tolist() == [stamp("2026-03-02 08:00"), stamp("2026-03-02 09:00")]
    assert clean["paid_at"].iloc[0] == stamp("2026-03-02 08:30")
    assert pd.isna(clean["paid_at"].iloc[1])
    assert str(clean["paid_at"].dtype) == f"datetime64[us, {TZ}]"


def test_placeholders_mean_no_value():
    raw = raw_table(
        "orders",
        {
            "order_id": ["A", "B", "C"],
            "order_type": ["normal"] * 3,
            "created_at": ["2026-03-02 10:00:00"] * 3,
            "shipped_at": ["NULL", " ", "N/A"],
            "amount": ["nan", "NULL", "12"],
            "exception_code": ["none", "", "lost"],
        },
    )
    clean, entries, _ = validate_table(raw, TZ, 0.0)
    assert entries == []
    assert clean["shipped_at"].isna().all()
    assert clean["amount"].isna().tolist() == [True, True, False]
    assert clean["exception_code"].isna().tolist() == [True, True, False]


# --- the report --------------------------------------------------------------------------------


def test_quality_report_frame_in_both_languages(rules_result):
    raw, (clean, entries, quarantined) = rules_result
    report = QualityReport()
    report.add("orders", len(raw.frame), len(clean), entries, quarantined)
    assert report.total_quarantined == 7
    assert (report.loaded, report.kept) == ({"orders": 15}, {"orders": 8})
    en = report.to_frame("en")
    assert list(en.columns) == [
        "Table", "Source", "Column", "Rule", "Rows", "Outcome", "Examples"
    ]  # fmt: skip
    assert en["Outcome"].tolist()[-1] == "kept, flagged"
    assert en["Outcome"].tolist()[0] == "set aside"
    assert en["Rows"].tolist() == [e[2] for e in EXPECTED_ENTRIES]
    assert en["Rule"].iloc[0] == "Required value missing"
    assert en["Examples"].iloc[2] == (
        "row 4 (order_id O-3): '2026-02-30 10:00'; row 11 (order_id O-2): 'yesterday'"
    )
    zh = report.to_frame("zh-CN")
    assert list(zh.columns) == ["数据表", "来源", "字段", "规则", "行数", "处理", "示例"]
    assert zh["规则"].iloc[0] == "必填值缺失"
    assert zh["规则"].iloc[-1] == "时间节点顺序颠倒"
    # the examples too: the appendix of a Chinese handout has no English sentence
    assert zh["示例"].iloc[2] == (
        "第 4 行（order_id 为 O-3）：取值“2026-02-30 10:00”；"
        "第 11 行（order_id 为 O-2）：取值“yesterday”"
    )


def test_examples_in_both_languages(rules_result):
    """Each form of example (a row alone, with its key, a value, a repeated key, milestones
    out of order) in both languages, from the one entry validation keeps."""
    _, (_, entries, _) = rules_result
    by = {(e.column, e.rule): e for e in entries}
    forms = [
        (("order_id", "required value missing"), "row 10", "第 10 行"),
        (
            ("created_at", "required value missing"),
            "row 9 (order_id O-7)",
            "第 9 行（order_id 为 O-7）",
        ),
        (
            ("amount", "not a number"),
            "row 5 (order_id O-4): 'abc'",
            "第 5 行（order_id 为 O-4）：取值“abc”",
        ),
        (
            ("order_id", "duplicate key"),
            "row 7 (order_id O-1): first at row 2",
            "第 7 行（order_id 为 O-1）：该键首次出现在第 2 行",
        ),
        (
            ("paid_at", "milestone order"),
            "row 13 (order_id O-9): paid_at 2026-03-02 09:00:00 "
            "before created_at 2026-03-02 10:00:00",
            "第 13 行（order_id 为 O-9）：paid_at（2026-03-02 09:00:00）"
            "早于 created_at（2026-03-02 10:00:00）",
        ),
    ]
    for key, en, zh in forms:
        example = by[key].examples[0]
        assert (example.text("en"), example.text("zh-CN")) == (en, zh)
    two_part = Example("7", (("order_id", "A"), ("sku", "S1")), "first_row", ("2",))
    assert two_part.text("zh-CN") == "第 7 行（order_id 为 A，sku 为 S1）：该键首次出现在第 2 行"


def test_quarantine_file_names_the_rule_in_the_runs_language(rules_result):
    """The rule's identifier stays for scripts; the rule's name in the run's language
    follows the three columns the file always had, its header in that language too."""
    _, (_, _, quarantined) = rules_result
    for lang, header, names in (
        ("en", "_rule_description", ["Unparseable timestamp", "Not a number"]),
        ("zh-CN", "_规则说明", ["时间无法解析", "不是数字"]),
    ):
        out = quarantine_file(quarantined, lang)
        assert list(out.columns[:4]) == ["_source_row", "_rule", "_column", header]
        assert list(out.columns[4:]) == list(quarantined.columns[3:])
        assert out[header].tolist()[:2] == names
        assert out["_rule"].tolist() == quarantined["_rule"].tolist()
    assert list(quarantined.columns[:4]) == ["_source_row", "_rule", "_column", "order_id"]


def test_empty_report_frame():
    frame = QualityReport().to_frame()
    assert frame.empty and "Rule" in frame.columns
    assert QualityReport().total_quarantined == 0


def test_entry_is_immutable():
    entry = QuarantineEntry("orders", "orders.csv", "amount", "not a number", 1, (Example("2"),))
    with pytest.raises(AttributeError):
        entry.rows = 2  # type: ignore[misc]


# --- duplicate detection by fingerprints, checked against pandas ------------------------------


def test_duplicated_rows_matches_pandas():
    rng = np.random.default_rng(3)
    n = 20_000
    a = pd.Series(rng.integers(0, 5_000, n).astype(str), dtype="str")
    # Long values and values that share their first 8 bytes exercise every word of the hash.
    b = pd.Series(np.char.add("SKU-LONG-PREFIX-", rng.integers(0, 3, n).astype(str)), dtype="str")
    keys = pd.DataFrame({"a": a, "b": b})
    complete = np.ones(n, bool)
    assert (duplicated_rows(keys, complete) == keys.duplicated().to_numpy()).all()
    single = keys[["a"]]
    assert (duplicated_rows(single, complete) == a.duplicated().to_numpy()).all()


def test_fingerprint_equal_for_equal_texts_only():
    texts = pd.Series(["abc", "abc", "abd", "", "abcdefgh", "abcdefghi", "abcdefgh"], dtype="str")
    prints = fingerprint(texts)
    assert prints[0] == prints[1] and prints[4] == prints[6]
    assert len({int(p) for p in prints}) == 5


def test_surrounding_whitespace_is_stripped():
    # Only a few values need cleaning: the fast path cleans just those.
    ids = [f"ORDER-{i:05d}" for i in range(20)]
    ids[3], ids[7], ids[11] = " ORDER-A ", "\u3000ORDER-B", "ORDER-C\t"
    ids[15] = "NULL"
    raw = raw_table(
        "tickets",
        {
            "ticket_id": [f"T{i}" for i in range(20)],
            "order_id": ids,
            "opened_at": [" 2026-03-02 10:00:00 "] * 20,
            "category": ["inquiry"] * 20,
        },
    )
    clean, entries, _ = validate_table(raw, TZ, 0.0)
    assert entries == []
    got = clean["order_id"]
    assert got.iloc[[3, 7, 11]].tolist() == ["ORDER-A", "ORDER-B", "ORDER-C"]
    assert pd.isna(got.iloc[15])
    assert got.iloc[0] == "ORDER-00000"
    assert (clean["opened_at"] == stamp("2026-03-02 10:00")).all()


def test_categorical_input_as_the_source_delivers_it():
    frame = pd.DataFrame(
        {
            "case_id": pd.Series([1.0, 2.0, 3.0]),  # ids through a float column
            "order_id": ["O1", "O2", "O3"],
            "kind": pd.Categorical(["return", "Exchange", "swap"]),
            "requested_at": ["2026-03-02 10:00:00"] * 3,
            "_source_row": pd.array([2, 3, 4], dtype="Int64"),
        }
    )
    info = SourceInfo("after_sales", "/x/cases.xlsx", "xlsx", 3, "ab")
    raw = RawTable("after_sales", frame, info, TZ, None)
    clean, entries, _ = validate_table(raw, TZ, 1.0)
    assert [(e.column, e.rule, e.example_texts()) for e in entries] == [
        ("kind", "unknown value", ("row 4 (case_id 3): 'swap'",))
    ]
    assert clean["case_id"].tolist() == ["1", "2", "3"]
    assert clean["kind"].tolist() == ["return", "exchange", "unmapped"]


# --- dates: day first, ambiguous, implausible ------------------------------------------------


def test_day_first_dates_are_read_in_the_order_their_values_show():
    got = created(["09/11/2026 08:30:00", "25/11/2026 09:00:00", "01/12/2026 10:00:00"])
    assert got.tolist() == [
        stamp("2026-11-09 08:30"),
        stamp("2026-11-25 09:00"),
        stamp("2026-12-01 10:00"),
    ]
    month_first = created(["11/09/2026 08:30:00", "11/25/2026 09:00:00"])
    assert month_first.tolist() == [stamp("2026-11-09 08:30"), stamp("2026-11-25 09:00")]


def test_ambiguous_day_month_dates_are_refused_not_guessed():
    from meetinglib.core.errors import AmbiguousDatesError

    raw = raw_table(
        "orders",
        {
            "order_id": ["A", "B"],
            "order_type": ["normal"] * 2,
            "created_at": ["09/11/2026", "03/04/2026"],
        },
    )
    with pytest.raises(
        AmbiguousDatesError,
        match=r"orders\.csv: column 'created_at' holds dates like '09/11/2026'.*timestamp_format",
    ):
        validate_table(raw, TZ, 1.0)


def test_implausible_dates_are_set_aside_with_their_rule():
    from meetinglib.data.validate import plausible_range

    raw = raw_table(
        "orders",
        {
            "order_id": ["A", "B", "C", "D"],
            "order_type": ["normal"] * 4,
            "created_at": [
                "2026-11-16 08:00",
                "2031-02-27 08:00",
                "1900-01-01 00:00",
                "2026-11-17",
            ],
            "paid_at": [None, None, None, "2031-01-01 00:00"],
        },
    )
    plausible = plausible_range(dt.date(2000, 1, 1), 2, TZ, today=dt.date(2026, 11, 30))
    clean, entries, quarantined = validate_table(raw, TZ, 1.0, plausible)
    assert clean["order_id"].tolist() == ["A"]
    assert [(e.column, e.rule, e.rows) for e in entries] == [
        ("created_at", "implausible date", 2),
        ("paid_at", "implausible date", 1),
    ]
    assert quarantined["_rule"].tolist() == ["implausible date"] * 3
