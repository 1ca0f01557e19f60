"""Process mining of the order flow: event log, variants, rework, bottlenecks.

The event log has one row per event with the standard columns ``case_id`` (the order
number, ``str``), ``activity`` (ordered ``category``) and ``timestamp`` (tz-aware). It
comes from the optional ``events`` table or, when that is absent, from the milestone
columns of ``orders`` (plus return steps from ``after_sales``).

Within a case, events are ordered by time; events with the same timestamp are ordered by
the business rank of their activity (created < paid < picked < packed < shipped <
delivered < cancelled < return_requested < return_closed, unknown activities after these,
alphabetically), so "paid" and "shipped" recorded in the same second never appear as
"shipped > paid".

Everything is computed on sorted numpy arrays (no per-case Python loops): on a log of
a million orders (5.7 million events) each analysis takes well under two seconds on two
cores; benchmarks/bench_flow.py measures it against PM4Py. The directly-follows graph
is defined once, as an engine expression, in flow_engine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from meetinglib.core.errors import InputDataError, MissingColumnError
from meetinglib.core.i18n import CodeLabel, code_name, label_or, t
from meetinglib.core.schema import ACTIVITIES
from meetinglib.core.weeks import Window

# --- vocabulary -----------------------------------------------------------------------

RETURN_STEPS = ("return_requested", "return_closed")
ACTIVITY_ORDER: tuple[str, ...] = (*ACTIVITIES, *RETURN_STEPS)
LOG_COLUMNS = ("case_id", "activity", "timestamp")

# orders milestone column -> activity, in business order
MILESTONES: dict[str, str] = {
    "created_at": "created",
    "paid_at": "paid",
    "shipped_at": "shipped",
    "delivered_at": "delivered",
    "cancelled_at": "cancelled",
}

# Artificial nodes of the graph, for start/end edges (brackets keep them apart from
# any real activity name).
START = "[start]"
END = "[end]"

# stage name -> (start milestone, end milestone); names match the kpi.stage.* labels
STAGES: dict[str, tuple[str, str]] = {
    "created_paid": ("created_at", "paid_at"),
    "paid_shipped": ("paid_at", "shipped_at"),
    "shipped_delivered": ("shipped_at", "delivered_at"),
}
SEGMENTS = ("warehouse", "carrier", "region", "order_type", "channel", "weekday", "hour")

# A two-dimension cell (e.g. one carrier in one region) replaces its one-dimension
# parents when the rest of each parent runs at most this fraction as far above the
# baseline as the cell does: the delay lies in the cell, not in the carrier or region
# as a whole. Otherwise the cell is a slice of a broader problem and is not listed.
REST_OF_PARENT_PACE = 0.25

_NS_PER_HOUR = 3_600_000_000_000
_NAT = np.iinfo(np.int64).min
_LATEST = np.iinfo(np.int64).max


# --- event log ------------------------------------------------------------------------


def activity_order(names: Sequence[str]) -> list[str]:
    """Known activities in business order, then any other names alphabetically."""
    extra = sorted(set(names) - set(ACTIVITY_ORDER))
    return [*ACTIVITY_ORDER, *extra]


def event_log(
    orders: pd.DataFrame,
    events: pd.DataFrame | None = None,
    after_sales: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The event log: one row per event, columns case_id, activity, timestamp, sorted.

    With ``events`` (canonical columns order_id, activity, timestamp) the log is that
    table and ``orders`` is not read; without it, each non-empty milestone of ``orders``
    (created_at, paid_at, shipped_at, delivered_at, cancelled_at) is one event and an
    empty one (NaT) is no event. ``after_sales`` adds ``return_requested`` at
    requested_at and ``return_closed`` at closed_at to the order's case. Rows are sorted
    by case_id, timestamp and activity rank; the index is 0..n-1.
    """
    parts: list[_Events] = []
    if events is not None:
        parts.append(_events_from_table(events))
    else:
        parts.append(_events_from_orders(orders))
    if after_sales is not None:
        parts.append(_events_from_after_sales(after_sales))
    return _assemble(parts)


@dataclass
class _Events:
    """Events of one source as arrays; ``row`` points into ``ids`` (one id per source row)."""

    ids: pd.Series  # str, the order number of each source row
    row: np.ndarray  # int, source row of each event
    codes: np.ndarray  # int, index into names
    names: list[str]
    ts: np.ndarray  # int64 ns since epoch, UTC
    tz: object
    unit: str


def _require(frame: pd.DataFrame, table: str, columns: Sequence[str]) -> None:
    for col in columns:
        if col not in frame.columns:
            raise MissingColumnError(table, col, [str(c) for c in frame.columns])


def _ns(ts: pd.Series) -> np.ndarray:
    """Nanoseconds since the epoch (UTC) of a datetime column; NaT becomes int64 min."""
    if not isinstance(ts.dtype, pd.DatetimeTZDtype) and ts.dtype.kind != "M":
        ts = pd.to_datetime(ts)
    stamps = ts.array
    values = np.asarray(stamps.asi8, dtype=np.int64)
    per_tick = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[stamps.unit]
    if per_tick == 1:
        return values
    return np.where(values == _NAT, _NAT, values * per_tick)


def _tz_unit(ts: pd.Series) -> tuple[object, str]:
    tz = getattr(ts.dtype, "tz", None)
    unit = getattr(ts.dtype, "unit", "ns")
    return tz, unit


def _empty_rule(table: str, column: str, rows: int, fix: str) -> InputDataError:
    return InputDataError(
        f"{table}: column '{column}' is empty in {rows:,} row(s) (rule: required for the "
        f"event log). {fix}"
    )


def _events_from_table(events: pd.DataFrame) -> _Events:
    _require(events, "events", ("order_id", "activity", "timestamp"))
    case = events["order_id"]
    bad_case = int(case.isna().sum())
    if bad_case:
        raise _empty_rule("events", "order_id", bad_case, "Every event needs its order number.")
    ts = _ns(events["timestamp"])
    bad_ts = int((ts == _NAT).sum())
    if bad_ts:
        raise _empty_rule("events", "timestamp", bad_ts, "Every event needs its time.")
    act = events["activity"]
    bad_act = int(act.isna().sum())
    if bad_act:
        raise _empty_rule("events", "activity", bad_act, "Every event needs its activity.")
    if isinstance(act.dtype, pd.CategoricalDtype):
        codes, uniques = act.cat.codes.to_numpy(), list(act.cat.categories)
    else:
        codes, uniques = pd.factorize(act.astype("str"))
    tz, unit = _tz_unit(events["timestamp"])
    case = case.astype("str").reset_index(drop=True)
    return _Events(case, np.arange(len(case)), codes, [str(u) for u in uniques], ts, tz, unit)


def _events_from_orders(orders: pd.DataFrame) -> _Events:
    _require(orders, "orders", ("order_id", "created_at"))
    bad = int(orders["order_id"].isna().sum())
    if bad:
        raise _empty_rule("orders", "order_id", bad, "Every order needs its order number.")
    cols = [c for c in MILESTONES if c in orders.columns]
    n, k = len(orders), len(cols)
    # Wide (orders x milestones) matrix: a stable sort along each row orders the events
    # of one order by time, ties keeping the business order of the columns.
    wide = np.column_stack([_ns(orders[c]) for c in cols]) if n else np.empty((0, k), np.int64)
    wide = np.where(wide == _NAT, _LATEST, wide)
    within = np.argsort(wide, axis=1, kind="stable")
    ts = np.take_along_axis(wide, within, axis=1).ravel()
    codes = within.ravel()
    row = np.repeat(np.arange(n), k)
    keep = ts != _LATEST
    tz, unit = _tz_unit(orders["created_at"])
    return _Events(
        orders["order_id"].astype("str").reset_index(drop=True),
        row[keep],
        codes[keep],
        [MILESTONES[c] for c in cols],
        ts[keep],
        tz,
        unit,
    )


def _events_from_after_sales(after_sales: pd.DataFrame) -> _Events:
    _require(after_sales, "after_sales", ("order_id", "requested_at"))
    bad = int(after_sales["order_id"].isna().sum())
    if bad:
        raise _empty_rule(
            "after_sales", "order_id", bad, "Every after-sales case needs its order number."
        )
    cols = [c for c in ("requested_at", "closed_at") if c in after_sales.columns]
    ts = np.concatenate([_ns(after_sales[c]) for c in cols])
    codes = np.repeat(np.arange(len(cols)), len(after_sales))
    row = np.tile(np.arange(len(after_sales)), len(cols))
    keep = ts != _NAT
    tz, unit = _tz_unit(after_sales["requested_at"])
    return _Events(
        after_sales["order_id"].astype("str").reset_index(drop=True),
        row[keep],
        codes[keep],
        list(RETURN_STEPS[: len(cols)]),
        ts[keep],
        tz,
        unit,
    )


def _assemble(parts: list[_Events]) -> pd.DataFrame:
    names = activity_order([n for p in parts for n in p.names])
    rank = {name: i for i, name in enumerate(names)}
    act = np.concatenate(
        [np.asarray([rank[n] for n in p.names], dtype=np.int16)[p.codes] for p in parts]
    )
    ts = np.concatenate([p.ts for p in parts])
    # number the source rows' ids in id order, then look each event's row up
    id_codes, case_ids = pd.factorize(pd.concat([p.ids for p in parts]), sort=True)
    offsets = np.cumsum([0] + [len(p.ids) for p in parts])
    case_codes = np.concatenate(
        [id_codes[o + p.row] for o, p in zip(offsets, parts, strict=False)]
    ).astype(np.int64)
    order = _sort_order(case_codes, ts, act)
    if order is not None:
        case_codes, ts, act = case_codes[order], ts[order], act[order]
    tz, unit = parts[0].tz, parts[0].unit
    stamps = pd.Series(ts.view("datetime64[ns]")).dt.tz_localize("UTC")
    stamps = stamps.dt.tz_convert(tz) if tz is not None else stamps.dt.tz_localize(None)
    return pd.DataFrame(
        {
            "case_id": pd.Series(case_ids.take(case_codes), dtype="str"),
            "activity": pd.Categorical.from_codes(act, categories=names, ordered=True),
            "timestamp": stamps.dt.as_unit(unit),
        }
    )


def _is_sorted(case: np.ndarray, ts: np.ndarray, act: np.ndarray) -> bool:
    """Whether rows already run case by case, by time, then activity rank."""
    if len(case) < 2:
        return True
    same = case[1:] == case[:-1]
    if not (same | (case[1:] > case[:-1])).all():
        return False
    later = (ts[1:] > ts[:-1]) | ((ts[1:] == ts[:-1]) & (act[1:] >= act[:-1]))
    return bool((later | ~same).all())


def _sort_order(case: np.ndarray, ts: np.ndarray, act: np.ndarray) -> np.ndarray | None:
    """Row order by (case, timestamp, activity rank); None when already in that order.

    Rows are first grouped by case with a stable radix sort, which keeps each case's
    rows in input order; exports list a case's events mostly in time order already, so
    only the cases still out of order afterwards go through a full three-key sort.
    """
    if _is_sorted(case, ts, act):
        return None
    if np.count_nonzero(case[1:] < case[:-1]) > len(case) // 8:
        return _full_sort(case, ts, act)  # rows shuffled, not in blocks of a case
    order = _stable_group(case, int(case.max()) + 1)
    c, t, a = case[order], ts[order], act[order]
    same = c[1:] == c[:-1]
    later = (t[1:] > t[:-1]) | ((t[1:] == t[:-1]) & (a[1:] >= a[:-1]))
    bad = same & ~later
    if bad.any():
        flagged = np.zeros(int(case.max()) + 1, dtype=bool)
        flagged[c[1:][bad]] = True
        rows = np.flatnonzero(flagged[c])  # whole blocks of the flagged cases
        if len(rows) > len(case) // 4:
            return _full_sort(case, ts, act)
        sub = order[rows]
        order[rows] = sub[np.lexsort((act[sub], ts[sub], case[sub]))]
    return order


def _full_sort(case: np.ndarray, ts: np.ndarray, act: np.ndarray) -> np.ndarray:
    """Row order by (case, timestamp, activity rank) for rows in no useful order."""
    ranks = int(act.max()) + 1
    span = int(ts.max()) - int(ts.min()) + 1
    if span >= (1 << 62) // ranks:
        return np.lexsort((act, ts, case))
    # time and rank fit one int64 key: one quicksort, then a stable radix pass on the case
    by_time = np.argsort((ts - ts.min()) * ranks + act)
    return by_time[_stable_group(case[by_time], int(case.max()) + 1)]


def _stable_group(codes: np.ndarray, groups: int) -> np.ndarray:
    """Stable row order by non-negative integer codes (LSD radix sort, a byte per pass)."""
    if groups <= 65536:
        return _group_order(codes, groups)
    order = np.arange(len(codes))
    shift = 0
    while (groups - 1) >> shift:
        digit = ((codes[order] >> shift) & 0xFF).astype(np.uint8)
        order = order[np.argsort(digit, kind="stable")]
        shift += 8
    return order


# --- arrays behind every analysis --------------------------------------------------------


@dataclass
class _Log:
    """A sorted log as arrays: first row of each case, activity ranks, ns timestamps."""

    starts: np.ndarray  # row where each case begins; cases are contiguous
    act: np.ndarray
    ts: np.ndarray
    names: list[str]

    @property
    def ends(self) -> np.ndarray:
        """Row after the last of each case."""
        return np.append(self.starts[1:], len(self.act))

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(np.append(self.starts, len(self.act)))

    def same_case(self) -> np.ndarray:
        """For each row but the last: whether the next row belongs to the same case."""
        same = np.ones(max(len(self.act) - 1, 0), dtype=bool)
        same[self.starts[1:] - 1] = False
        return same

    def case_of(self, rows: np.ndarray) -> np.ndarray:
        """The case number of some rows."""
        return np.searchsorted(self.starts, rows, side="right") - 1

    def loop_cases(self) -> np.ndarray:
        """Cases in which some activity occurs more than once (rework)."""
        k = len(self.names)
        if k > 64 or len(self.starts) == 0:  # no bit per activity: every case a candidate
            return np.ones(len(self.starts), dtype=bool)
        word = np.uint16 if k <= 16 else np.uint32 if k <= 32 else np.uint64
        bits = np.left_shift(word(1), self.act.astype(word))
        seen = np.bitwise_or.reduceat(bits, self.starts)
        return _popcount(seen) < self.lengths

    def rows_of(self, cases: np.ndarray, but_last: bool = False) -> np.ndarray:
        """The rows of the given cases (a mask over cases), without each last one if asked."""
        starts, lengths = self.starts[cases], self.lengths[cases] - int(but_last)
        if len(starts) == 0:
            return np.zeros(0, np.int64)
        offsets = np.cumsum(lengths) - lengths
        return np.repeat(starts - offsets, lengths) + np.arange(int(lengths.sum()))


def _popcount(values: np.ndarray) -> np.ndarray:
    """Number of set bits of each unsigned integer (numpy >= 2 has it built in)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)
    return table[values.view(np.uint8).reshape(len(values), -1)].sum(axis=1)


def check_log(log: pd.DataFrame) -> None:
    """Raise unless ``log`` has the event log's columns, none of them with an empty cell."""
    _require(log, "event log", LOG_COLUMNS)
    for col in LOG_COLUMNS:
        empty = int(log[col].isna().sum())
        if empty:
            raise _empty_rule(
                "event log", col, empty, "Drop those rows, or build the log with event_log()."
            )


def _arrays(log: pd.DataFrame) -> _Log:
    check_log(log)
    ts = _ns(log["timestamp"])
    act_col = log["activity"]
    if isinstance(act_col.dtype, pd.CategoricalDtype):
        cats = [str(c) for c in act_col.cat.categories]
        raw = act_col.cat.codes.to_numpy()
    else:
        raw, uniq = pd.factorize(act_col.astype("str"))
        cats = [str(u) for u in uniq]
    names = activity_order(cats)
    remap = np.asarray([names.index(c) for c in cats], dtype=np.int16)
    act = remap[raw] if len(cats) else np.zeros(0, np.int16)
    if len(act) == 0:
        return _Log(np.zeros(0, np.int64), act, ts, names)
    new = _new_case_rows(log["case_id"])
    if new is not None:
        starts = np.flatnonzero(new)
        if _ordered_within_cases(starts, ts, act):
            return _Log(starts, act, ts, names)  # as event_log returns it: nothing to do
        codes = np.cumsum(new, dtype=np.int64) - 1
    else:
        # numbered by first appearance, so a sort by code keeps each case together
        codes = pd.factorize(log["case_id"])[0].astype(np.int64)
    order = _sort_order(codes, ts, act)
    if order is not None:
        codes, ts, act = codes[order], ts[order], act[order]
    starts = np.flatnonzero(np.concatenate(([True], codes[1:] != codes[:-1])))
    return _Log(starts, act, ts, names)


def _new_case_rows(case: pd.Series) -> np.ndarray | None:
    """Rows where a new case begins, if the log runs case by case with ids ascending.

    Comparing neighbours is several times faster than hashing every id; any other row
    order gives None.
    """
    new = case.ne(case.shift()).to_numpy(dtype=bool, na_value=True)
    heads = case[new].reset_index(drop=True)
    try:
        ascending = heads.iloc[1:].reset_index(drop=True) > heads.iloc[:-1].reset_index(drop=True)
    except TypeError:  # ids of mixed types do not compare; fall back to hashing
        return None
    return new if ascending.all() else None


def _ordered_within_cases(starts: np.ndarray, ts: np.ndarray, act: np.ndarray) -> bool:
    later = (ts[1:] > ts[:-1]) | ((ts[1:] == ts[:-1]) & (act[1:] >= act[:-1]))
    later[starts[1:] - 1] = True  # across a case boundary anything goes
    return bool(later.all())


def _group_order(codes: np.ndarray, groups: int) -> np.ndarray:
    """Stable row order grouping equal codes; small code ranges sort by radix."""
    if groups <= 256:
        return np.argsort(codes.astype(np.uint8), kind="stable")
    if groups <= 65536:
        return np.argsort(codes.astype(np.uint16), kind="stable")
    return np.argsort(codes, kind="stable")


def _repeats_in_loop_cases(
    lg: _Log, rows: np.ndarray, key: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """For rows of rework cases: per key value, distinct cases and rows beyond the first.

    Only cases with a repeated activity can repeat an edge or an activity, so the exact
    (case, key) counting runs on those few rows alone.
    """
    if len(rows) == 0:
        return np.zeros(size, np.int64), np.zeros(size, np.int64)
    pairs = np.sort(lg.case_of(rows).astype(np.int64) * size + key)
    distinct = pairs[np.concatenate(([True], pairs[1:] != pairs[:-1]))] % size
    per_key_cases = np.bincount(distinct, minlength=size)
    per_key_rows = np.bincount(key, minlength=size)
    return per_key_cases, per_key_rows - per_key_cases


# --- variants and rework -----------------------------------------------------------------

VARIANT_SEPARATOR = " > "


def variants(log: pd.DataFrame, durations: bool = True) -> pd.DataFrame:
    """Process variants: distinct activity sequences, with cases and share of cases.

    variant = activities joined by " > "; events = its length; share = cases / all cases;
    cumulative_share down the list; median_h = median hours from a case's first to its
    last event (with ``durations``). Sorted by cases, descending, then variant.
    """
    lg = _arrays(log)
    cols = ["variant", "events", "cases", "share", "cumulative_share"]
    cols += ["median_h"] if durations else []
    if len(lg.starts) == 0:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in cols})
    starts, ends, lengths = lg.starts, lg.ends, lg.lengths
    vid = _variant_ids(lg.act, starts, lengths, len(lg.names))
    vid, _ = pd.factorize(vid)
    counts = np.bincount(vid)
    # factorize numbers by first appearance: a variant's first case is where the running
    # maximum of the ids steps up
    seen = np.maximum.accumulate(np.concatenate(([-1], vid[:-1])))
    first_case = np.flatnonzero(vid > seen)
    names = lg.names
    labels = [
        VARIANT_SEPARATOR.join(names[a] for a in lg.act[starts[c] : ends[c]]) for c in first_case
    ]
    out = pd.DataFrame(
        {
            "variant": pd.Series(labels, dtype="str"),
            "events": lengths[first_case].astype("int64"),
            "cases": counts.astype("int64"),
        }
    )
    if durations:
        through = (lg.ts[ends - 1] - lg.ts[starts]) / _NS_PER_HOUR
        out["median_h"] = pd.Series(through).groupby(vid).median().to_numpy()
    out = out.sort_values(["cases", "variant"], ascending=[False, True]).reset_index(drop=True)
    out["share"] = out["cases"] / len(starts)
    out["cumulative_share"] = out["share"].cumsum()
    return out[cols]


def _variant_ids(act: np.ndarray, starts: np.ndarray, lengths: np.ndarray, k: int) -> np.ndarray:
    """An id per case, equal exactly when the activity sequences are equal.

    Prefixes are numbered position by position: the id after position j is a dense
    number of (id after j-1, activity at j) among the cases that are that long; each
    position numbers above all earlier ones, so a case that ended keeps an id no longer
    case can carry. Work is proportional to the number of events, plus one short step
    per position of the longest case.
    """
    by_length = np.argsort(-lengths, kind="stable")
    sorted_len = lengths[by_length]
    ids = np.zeros(len(starts), dtype=np.int64)
    base, top = 0, 1  # ids of the previous position lie in [base, top)
    for j in range(int(sorted_len[0]) if len(sorted_len) else 0):
        alive = by_length[: int(np.searchsorted(-sorted_len, -j, side="left"))]
        key = (ids[alive] - base) * k + act[starts[alive] + j]
        dense, distinct = _dense(key, (top - base) * k)
        ids[alive] = dense + top
        base, top = top, top + distinct
    return ids


def _dense(key: np.ndarray, space: int) -> tuple[np.ndarray, int]:
    """Renumber non-negative keys below ``space`` as 0..m-1 (same key, same number)."""
    if space <= 4 * len(key) + 1024:
        present = np.zeros(space, dtype=bool)
        present[key] = True
        lookup = np.cumsum(present) - 1
        return lookup[key], int(present.sum())
    codes, uniques = pd.factorize(key)
    return codes, len(uniques)


def rework(log: pd.DataFrame) -> pd.DataFrame:
    """Activities that occur more than once in a case.

    cases = cases with the activity repeated; repeats = occurrences beyond the first in
    those cases; share = cases / cases with the activity at all. Sorted by cases, desc.
    """
    lg = _arrays(log)
    cols = ["activity", "cases", "repeats", "share"]
    k = len(lg.names)
    rows = lg.rows_of(lg.loop_cases())
    act = lg.act.astype(np.int64)
    loop_cases, repeats = _repeats_in_loop_cases(lg, rows, act[rows], k)
    # outside rework cases each row is its case's only row with that activity
    having = np.bincount(act, minlength=k) - np.bincount(act[rows], minlength=k) + loop_cases
    repeated_in = np.zeros(k, dtype=np.int64)
    if len(rows):
        pairs = np.sort(lg.case_of(rows) * k + act[rows])
        # a pair (case, activity) seen again right after itself in sorted order repeats;
        # count each repeated pair once, at its second occurrence
        again = pairs[1:] == pairs[:-1]
        second = again & np.concatenate(([True], ~again[:-1]))
        repeated_in = np.bincount(pairs[1:][second] % k, minlength=k)
    hit = np.flatnonzero(repeated_in)
    out = pd.DataFrame(
        {
            "activity": pd.Series([lg.names[a] for a in hit], dtype="str"),
            "cases": repeated_in[hit].astype("int64"),
            "repeats": repeats[hit].astype("int64"),
            "share": repeated_in[hit] / having[hit],
        },
        columns=cols,
    )
    return out.sort_values(["cases", "activity"], ascending=[False, True]).reset_index(drop=True)


# --- stage durations by segment -----------------------------------------------------------


def stage_frame(orders: pd.DataFrame, ship_sla_hours: float | None = None) -> pd.DataFrame:
    """Per order: stage durations in hours, their end times, and the segment columns.

    Columns: order_id; created_at, paid_at, shipped_at, delivered_at; hours of
    created_paid, paid_shipped, shipped_delivered, created_delivered (end - start, NaN
    when a milestone is missing); ship_late (shipped after promised_ship_by, or after
    paid + ``ship_sla_hours`` where no promise is given; NA when not shipped or no
    deadline); the segments warehouse, carrier, region, order_type, channel present in
    ``orders``, plus weekday (0 = Monday) and hour (0-23) of creation, local time.
    Rows are in the order of ``orders``.
    """
    _require(orders, "orders", ("order_id", "created_at"))
    out = pd.DataFrame({"order_id": orders["order_id"].astype("str").reset_index(drop=True)})
    stamps = {c: orders[c] for c in MILESTONES if c in orders.columns}
    for col in ("created_at", "paid_at", "shipped_at", "delivered_at"):
        if col in stamps:
            out[col] = stamps[col].reset_index(drop=True)
    ns = {c: _ns(s) for c, s in stamps.items()}
    pairs = {**STAGES, "created_delivered": ("created_at", "delivered_at")}
    for stage, (a, b) in pairs.items():
        out[f"{stage}_h"] = _hours_between(ns.get(a), ns.get(b), len(orders))
    if "shipped_at" in ns:
        out["ship_late"] = _ship_late(orders, ns, ship_sla_hours)
    for col in SEGMENTS[:5]:
        if col in orders.columns:
            out[col] = orders[col].reset_index(drop=True)
    created = orders["created_at"].reset_index(drop=True)
    out["weekday"] = created.dt.day_of_week.astype("Int8")
    out["hour"] = created.dt.hour.astype("Int8")
    return out


def _hours_between(a: np.ndarray | None, b: np.ndarray | None, n: int) -> np.ndarray:
    if a is None or b is None:
        return np.full(n, np.nan)
    both = (a != _NAT) & (b != _NAT)
    return np.where(both, (b - a) / _NS_PER_HOUR, np.nan)


def _ship_late(
    orders: pd.DataFrame, ns: dict[str, np.ndarray], ship_sla_hours: float | None
) -> pd.Series:
    n = len(orders)
    due = _ns(orders["promised_ship_by"]) if "promised_ship_by" in orders else np.full(n, _NAT)
    if ship_sla_hours is not None and "paid_at" in ns:
        from_sla = np.where(
            ns["paid_at"] != _NAT, ns["paid_at"] + int(ship_sla_hours * _NS_PER_HOUR), _NAT
        )
        due = np.where(due == _NAT, from_sla, due)
    shipped = ns["shipped_at"]
    known = (shipped != _NAT) & (due != _NAT)
    late = pd.array(shipped > due, dtype="boolean")
    late[~known] = pd.NA
    return pd.Series(late)


# --- bottlenecks ---------------------------------------------------------------------------

_BOTTLENECK_COLUMNS = [
    "stage",
    "dimension",
    "value",
    "dimension_2",
    "value_2",
    "orders",
    "median_h",
    "overall_median_h",
    "excess_delay_h",
    "affected_orders",
    "share",
    "avoidable_h",
    "finding",
]


def bottlenecks(
    orders: pd.DataFrame,
    window: Window | None = None,
    dimensions: Sequence[str] = SEGMENTS,
    min_orders: int = 30,
    min_share: float = 0.01,
    top: int | None = 10,
    lang: str = "en",
    pairs: bool | Sequence[tuple[str, str]] = True,
    stages: Sequence[str] = tuple(STAGES),
    label: CodeLabel | None = None,
) -> pd.DataFrame:
    """Which stage in which segment causes the most delay beyond the stage's median.

    For each stage (created_paid, paid_shipped, shipped_delivered) the orders are those
    whose stage END event falls in ``window`` (all orders when None) and that reached
    both milestones. overall_median_h = the stage median over those orders. Per segment
    (one dimension value, or with ``pairs`` a cell of two dimensions, e.g. carrier x
    region): excess_delay_h = sum of max(0, hours - overall median); affected_orders =
    orders slower than the overall median; share = excess / the stage's total excess;
    avoidable_h = excess - orders x (excess per order of all OTHER orders of the stage),
    the delay-hours that would disappear if the segment ran at the pace of the rest.

    Ranked by avoidable_h, not raw excess: a big, normal segment always holds much of
    the excess simply by volume; avoidable_h is zero for it. Findings are segments with
    at least ``min_orders`` orders whose avoidable_h is positive and at least
    ``min_share`` of the stage's total excess (1 %: below that it is noise, not worth
    the meeting's time); orders with an empty
    segment value count only as "other orders". A two-dimension cell is listed only
    where the delay lies in the cell rather than in either dimension value as a whole
    (the rest of each parent runs near the baseline, see REST_OF_PARENT_PACE), and then
    replaces those two one-dimension findings.
    value / value_2 hold the segment values as in ``orders`` (weekday 0 = Monday and
    hour as integers); dimension_2 / value_2 are None for one-dimension findings.
    ``finding`` is a sentence in ``lang``, its segment values named by ``label`` (see
    segment_phrase). ``top`` = None lists all findings.
    """
    frame = stage_frame(orders)
    unknown = [d for d in dimensions if d not in SEGMENTS]
    if unknown:
        raise ValueError(f"unknown dimension(s) {unknown}; choose from {list(SEGMENTS)}")
    bad_stages = [s for s in stages if s not in STAGES]
    if bad_stages:
        raise ValueError(f"unknown stage(s) {bad_stages}; choose from {list(STAGES)}")
    dims = [d for d in dimensions if d in frame.columns and frame[d].notna().any()]
    if pairs is True:
        cells = list(combinations(dims, 2))
    elif pairs is False:
        cells = []
    else:
        cells = [(a, b) for a, b in pairs if a in dims and b in dims]
    segs = {d: _segment_codes(frame[d]) for d in dims}
    sizes = {d: len(segs[d].values) for d in dims}

    # Orders are first summed per cell (one combination of all segment values); every
    # one- and two-dimension segment is then a sum over cells, which are fewer than
    # orders, so the 28 segmentations of the default dimensions stay cheap.
    cell, cell_codes = _cells(segs, dims, len(frame))
    found: list[tuple[Any, ...]] = []
    scopes: dict[str, np.ndarray] = {}
    for stage in stages:
        end = STAGES[stage][1]
        if end not in frame.columns:
            continue
        hours = frame[f"{stage}_h"].to_numpy()
        scope = ~np.isnan(hours)
        if window is not None:
            scope &= window.contains(frame[end]).to_numpy(dtype=bool, na_value=False)
        if not scope.any():
            continue
        scopes[stage] = scope
        found += _stage_findings(
            stage, hours[scope], cell[scope], cell_codes, sizes, dims, cells, min_orders, min_share
        )
    out = pd.DataFrame(
        found,
        columns=[
            "stage",
            "dimension",
            "code",
            "dimension_2",
            "code_2",
            "orders",
            "excess_delay_h",
            "affected_orders",
            "avoidable_h",
            "overall_median_h",
            "share",
        ],
    )
    out["stage_rank"] = [list(STAGES).index(s) for s in out["stage"]]
    out = out.sort_values(
        ["avoidable_h", "stage_rank", "dimension", "code"], ascending=[False, True, True, True]
    )
    out = (out.head(top) if top is not None else out).reset_index(drop=True)
    out["value"] = pd.Series(
        [segs[d].values[c - 1] for d, c in zip(out["dimension"], out["code"], strict=True)],
        dtype=object,
    )
    out["value_2"] = pd.Series(
        [
            segs[d].values[c - 1] if isinstance(d, str) else None
            for d, c in zip(out["dimension_2"], out["code_2"], strict=True)
        ],
        dtype=object,
    )
    out["dimension_2"] = pd.Series(
        [d if isinstance(d, str) else None for d in out["dimension_2"]], dtype=object
    )
    out["median_h"] = [
        _segment_median(frame, segs, scopes, row) for row in out.itertuples(index=False)
    ]
    out["finding"] = [_sentence(row, lang, label) for row in out.itertuples(index=False)]
    return out[_BOTTLENECK_COLUMNS]


@dataclass
class _Segments:
    codes: np.ndarray  # int64: 0 = empty, v + 1 = values[v]
    values: list[Any]


def _segment_codes(col: pd.Series) -> _Segments:
    codes, uniques = pd.factorize(col, sort=True)
    return _Segments(codes.astype(np.int64) + 1, list(uniques))


def _category_codes(col: pd.Series) -> _Segments:
    """Like _segment_codes, from a categorical's own codes (no hashing of the values)."""
    if _is_categorical(col):
        return _Segments(col.cat.codes.to_numpy().astype(np.int64) + 1, list(col.cat.categories))
    return _segment_codes(col)


def _cells(
    segs: dict[str, _Segments], dims: list[str], n: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Each order's cell number, and each cell's code in every dimension."""
    radix = [len(segs[d].values) + 1 for d in dims]
    if not dims or float(np.prod(radix, dtype=float)) >= 2.0**62:
        return np.arange(n), {d: segs[d].codes for d in dims}
    key = np.zeros(n, dtype=np.int64)
    for d, r in zip(dims, radix, strict=True):
        key = key * r + segs[d].codes
    cell, uniques = pd.factorize(key)
    codes = {}
    rest = np.asarray(uniques, dtype=np.int64)
    for d, r in zip(reversed(dims), reversed(radix), strict=True):
        rest, codes[d] = np.divmod(rest, r)
    return cell.astype(np.int64), codes


def _stage_findings(
    stage: str,
    hours: np.ndarray,
    cell: np.ndarray,
    cell_codes: dict[str, np.ndarray],
    sizes: dict[str, int],
    dims: list[str],
    pairs: list[tuple[str, str]],
    min_orders: int,
    min_share: float,
) -> list[tuple[Any, ...]]:
    """Findings of one stage as tuples in the column order bottlenecks() builds."""
    overall = float(np.median(hours))
    excess = np.maximum(hours - overall, 0.0)
    total, n_all = float(excess.sum()), len(hours)
    n_cells = len(next(iter(cell_codes.values()))) if cell_codes else 0
    per_cell = (
        np.bincount(cell, minlength=n_cells).astype(np.float64),
        np.bincount(cell, weights=excess, minlength=n_cells),
        np.bincount(cell, weights=(hours > overall).astype(np.float64), minlength=n_cells),
    )

    def tally(group: np.ndarray, size: int) -> tuple[np.ndarray, ...]:
        n, x, a = (np.bincount(group, weights=w, minlength=size) for w in per_cell)
        rest = n_all - n
        avoid = np.where(rest > 0, x - n * (total - x) / np.maximum(rest, 1), 0.0)
        return n, x, a, avoid

    def row(
        d: str, i: int, d2: str | None, i2: int, stats: tuple[Any, ...], j: int
    ) -> tuple[Any, ...]:
        n, x, a, avoid = (s[j] for s in stats)
        share = x / total if total > 0 else 0.0
        return (stage, d, int(i), d2, int(i2), round(n), x, round(a), avoid, overall, share)

    floor = min_share * total  # avoidable hours a finding needs at least
    single = {d: tally(cell_codes[d], sizes[d] + 1) for d in dims}
    found, dropped = [], set()
    for da, db in pairs:
        width = sizes[db] + 1
        stats = tally(cell_codes[da] * width + cell_codes[db], (sizes[da] + 1) * width)
        n, x, avoid = stats[0], stats[1], stats[3]
        ia, ib = np.divmod(np.arange(len(n)), width)
        hit = (ia > 0) & (ib > 0) & (n >= min_orders) & (avoid > 0) & (avoid >= floor)
        hit &= _is_the_problem(n, x, single[da][0][ia], single[da][1][ia], total, n_all, min_orders)
        hit &= _is_the_problem(n, x, single[db][0][ib], single[db][1][ib], total, n_all, min_orders)
        for j in np.flatnonzero(hit):
            found.append(row(da, int(ia[j]), db, int(ib[j]), stats, int(j)))
            dropped.update({(da, int(ia[j])), (db, int(ib[j]))})
    for d in dims:
        n, avoid = single[d][0], single[d][3]
        hit = (n >= min_orders) & (avoid > 0) & (avoid >= floor)
        hit[0] = False  # empty segment value
        found += [row(d, int(j), None, 0, single[d], int(j)) for j in np.flatnonzero(hit)]
    return [f for f in found if f[3] is not None or (f[1], f[2]) not in dropped]


def _is_the_problem(
    n: np.ndarray,
    x: np.ndarray,
    parent_n: np.ndarray,
    parent_x: np.ndarray,
    total: float,
    n_all: int,
    min_orders: int,
) -> np.ndarray:
    """Whether a cell, not its parent segment as a whole, is where the delay lies.

    Paces are excess hours per order. The cell qualifies when the parent's other orders
    (at least ``min_orders``) run at most REST_OF_PARENT_PACE as far above the pace of
    the orders outside the parent as the cell itself does.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        outside = (total - parent_x) / (n_all - parent_n)  # NaN when the parent is all
        cell = x / n
        rest = (parent_x - x) / (parent_n - n)
        return (
            (parent_n - n >= min_orders)
            & (cell > outside)
            & (rest - outside <= REST_OF_PARENT_PACE * (cell - outside))
        )


def _segment_median(
    frame: pd.DataFrame, segs: dict[str, _Segments], scopes: dict[str, np.ndarray], row: Any
) -> float:
    """Median stage hours of the orders of one finding (few findings: a mask each)."""
    mask = scopes[row.stage] & (segs[row.dimension].codes == row.code)
    if isinstance(row.dimension_2, str):
        mask &= segs[row.dimension_2].codes == row.code_2
    return float(np.median(frame[f"{row.stage}_h"].to_numpy()[mask]))


def _fmt_hours(hours: float) -> str:
    """Hours for a sentence: one decimal below 10 h, whole hours with separators above."""
    return f"{hours:.1f}" if abs(hours) < 10 else f"{hours:,.0f}"


def weekday_number(value: object) -> int:
    """0 (Monday) to 6 from a weekday number or name (Mon..Sun, as in bottlenecks.csv)."""
    if isinstance(value, str) and value in WEEKDAY_NAMES:
        return WEEKDAY_NAMES.index(value)
    return int(value)  # type: ignore[call-overload]


def segment_phrase(
    dimension: str, value: Any, lang: str = "en", label: CodeLabel | None = None
) -> str:
    """The segment in words, e.g. 'via carrier EastPost' or 'for orders created on Fri'.

    ``label`` names the codes of the data's own dimensions (warehouse, carrier, region,
    channel) for people, e.g. ``Params.label``; without it they are shown as they are.
    """
    if dimension == "weekday":
        shown = t(f"weekday.{weekday_number(value)}", lang)
    elif dimension == "order_type":
        shown = label_or(f"order_type.{value}", lang, str(value))
    elif dimension == "hour":
        shown = f"{int(value):02d}"
    else:
        shown = code_name(label, dimension, value, lang)
    return t(f"flow.segment.{dimension}", lang, value=shown)


def _sentence(row: Any, lang: str, label: CodeLabel | None = None) -> str:
    segment = segment_phrase(row.dimension, row.value, lang, label)
    if isinstance(row.dimension_2, str):
        second = segment_phrase(row.dimension_2, row.value_2, lang, label)
        segment = t("flow.segment.pair", lang, first=segment, second=second)
    return t(
        "flow.finding",
        lang,
        stage=t(f"flow.stage.{row.stage}", lang),
        segment=segment,
        median=_fmt_hours(row.median_h),
        overall=_fmt_hours(row.overall_median_h),
        excess=_fmt_hours(row.excess_delay_h),
        affected=int(row.affected_orders),
        orders=int(row.orders),
        avoidable=_fmt_hours(row.avoidable_h),
    )


def activity_label(activity: str, lang: str = "en") -> str:
    """An activity name for display ('shipped' -> 'Shipped' / '发货'); unknown names as is."""
    key = {START: "flow.node.start", END: "flow.node.end"}.get(activity, f"flow.act.{activity}")
    return label_or(key, lang, activity)


def labelled(frame: pd.DataFrame, lang: str = "en") -> pd.DataFrame:
    """A copy for display: activity, stage and dimension names and column headings in ``lang``."""
    out = frame.copy()
    for col in ("source", "target", "activity"):
        if col in out.columns:
            out[col] = [activity_label(str(a), lang) for a in out[col]]
    if "stage" in out.columns:
        out["stage"] = [t(f"flow.stage.{s}", lang) for s in out["stage"]]
    for col in ("dimension", "dimension_2"):
        if col in out.columns:
            out[col] = [t(f"flow.dim.{d}", lang) if isinstance(d, str) else "" for d in out[col]]
    if "value_2" in out.columns:
        out["value_2"] = ["" if v is None else v for v in out["value_2"]]
    return out.rename(columns={c: label_or(f"flow.col.{c}", lang, c) for c in out.columns})


# --- findings: new this week, usual bottlenecks, echoes ------------------------------------
#
# A stage's time is compared on like cohorts: an order counts in the week its stage
# STARTED, and its time in the stage is counted up to the end of that week (or until it
# left the stage: the end milestone or a cancellation). Every week's cohort is cut off
# the same way, so a slow upstream stage that changes WHICH orders finish a later stage
# this week cannot read as a slowdown of the later stage. The time left before the cut
# still depends on when in the week a stage started; each order's expected time is
# therefore the baseline mean of orders that started in the same part of the week
# (BUCKET_HOURS slots from Monday 00:00), and a segment's own baseline is that
# expectation scaled by the segment's ratio to it in the previous weeks (indirect
# standardisation: the mix of start times is held fixed).

WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
BUCKET_HOURS = 6
# Baseline orders beyond this many are sampled (every k-th stands for k): a segment's
# usual pace needs thousands of orders, not millions, and the per-order pass dominates
# the time at a million orders a week.
BASELINE_ORDERS = 1_500_000
FINDING_GROUPS = ("new", "usual")
FINDING_COLUMNS = [
    "id",
    "group",
    "rank",
    "stage",
    "dimension",
    "value",
    "dimension_2",
    "value_2",
    "orders",
    "hours_h",
    "baseline_h",
    "overall_h",
    "added_delay_h",
    "z",
    "folded_into",
    "driven_by",
    "finding",
]
# sums per cell, in this order: this week's cohort (orders, actual hours, expected hours at
# the overall pace, variance), then the baseline weeks' cohorts (the same four)
_WN, _WA, _WE, _WV, _BN, _BA, _BE, _BV = range(8)


@dataclass(frozen=True)
class FindingRules:
    """Materiality and echo rules of the findings (params ``findings``)."""

    min_orders: int = 30
    margin: float = 0.10
    min_hours: float = 1.0
    min_z: float = 4.0
    min_share: float = 0.01
    echo_left: float = 0.3
    baseline_weeks: int = 6
    top_new: int = 8
    top_usual: int = 5


@dataclass
class CohortSums:
    """Per stage, the eight cohort sums of every cell (a combination of segment values)."""

    dims: list[str]
    segs: dict[str, _Segments]
    cell: np.ndarray  # per order: its cell
    cell_codes: dict[str, np.ndarray]  # per dimension: each cell's value code (0 = empty)
    sums: dict[str, np.ndarray]  # stage -> (cells x 8)
    totals: dict[str, np.ndarray]  # stage -> the eight sums over all orders
    weeks: int  # baseline weeks
    reduced: np.ndarray  # per cell: its cell with the dimension of most values summed out
    reduced_codes: dict[str, np.ndarray]  # per dimension: each reduced cell's value code


def segment_columns(orders: pd.DataFrame, dimensions: Sequence[str] = SEGMENTS) -> pd.DataFrame:
    """The segment columns of ``orders``: the five given ones, weekday (Mon..Sun) and hour.

    Weekday and hour are those of creation in local time; weekday as a name.
    """
    out: dict[str, object] = {}
    if "weekday" in dimensions or "hour" in dimensions:
        day, hour = _local_day_hour(orders["created_at"])
        if "weekday" in dimensions:
            out["weekday"] = pd.Categorical.from_codes(day, categories=list(WEEKDAY_NAMES))
        if "hour" in dimensions:
            out["hour"] = pd.array(np.where(hour < 0, 0, hour), dtype="Int8")
            out["hour"][hour < 0] = pd.NA  # type: ignore[index]
    for d in dimensions:
        if d in ("weekday", "hour"):
            continue
        if d in orders.columns:
            out[d] = orders[d].to_numpy() if not _is_categorical(orders[d]) else orders[d].array
    return pd.DataFrame(out, index=orders.index)


def _local_day_hour(created: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Local weekday (0 = Monday) and hour of each timestamp; -1 for NaT.

    Computed once per distinct UTC hour (a few thousand) rather than per order: the
    time-zone conversion is the slow part and is the same within an hour in every zone
    whose offsets are whole hours.
    """
    ns = _ns(created)
    hour_ns = np.where(ns == _NAT, _NAT, ns - ns % _NS_PER_HOUR)
    codes, uniques = pd.factorize(hour_ns)
    tz = getattr(created.dtype, "tz", None)
    stamps = pd.DatetimeIndex(np.asarray(uniques, dtype=np.int64).view("datetime64[ns]"))
    stamps = stamps.tz_localize("UTC").tz_convert(tz) if tz is not None else stamps
    # zones with half-hour offsets: fall back to converting every order
    if tz is not None and (stamps.minute != 0).any():
        local = created.dt
        day = local.day_of_week.fillna(-1).astype("int64").to_numpy()
        return day, local.hour.fillna(-1).astype("int64").to_numpy()
    day_u = np.asarray(stamps.day_of_week, dtype=np.int64)
    hour_u = np.asarray(stamps.hour, dtype=np.int64)
    nat = np.asarray(uniques, dtype=np.int64) == _NAT
    day_u[nat], hour_u[nat] = -1, -1
    return day_u[codes], hour_u[codes]


def _is_categorical(col: pd.Series) -> bool:
    return isinstance(col.dtype, pd.CategoricalDtype)


def cohort_sums(
    orders: pd.DataFrame,
    weeks: Sequence[Window],
    dimensions: Sequence[str] = SEGMENTS,
    stages: Sequence[str] = tuple(STAGES),
    baseline_orders: int | None = BASELINE_ORDERS,
) -> CohortSums:
    """The cohort sums behind the findings; ``weeks``: baseline weeks, then the report week.

    Per stage, an order belongs to the cohort of the week its start milestone falls in;
    its hours = (min(end, cancelled, end of that week) - start), at least 0. Its expected
    hours = the mean hours of the baseline weeks' orders that started in the same
    BUCKET_HOURS slot of their week; its variance = their variance.

    Every order with a stage starting in the report week counts. For the baseline, with
    more than ``baseline_orders`` other orders (None: no limit), every k-th order (by row)
    stands for k: counts and hours are multiplied by k, variances by k squared, so the
    standard errors include the sampling.
    """
    _require(orders, "orders", ("order_id", "created_at"))
    bounds = np.array(
        [_ns(pd.Series([w.start]))[0] for w in weeks] + [_ns(pd.Series([weeks[-1].end]))[0]]
    )
    present = [st for st in stages if all(c in orders.columns for c in STAGES[st])]
    starts = {st: _ns(orders[STAGES[st][0]]) for st in present}
    in_report = np.zeros(len(orders), dtype=bool)
    for start in starts.values():
        in_report |= (start >= bounds[-2]) & (start < bounds[-1])
    every = 1
    if baseline_orders is not None:
        every = max(1, -(-(len(orders) - int(in_report.sum())) // baseline_orders))
    sampled = np.ones(len(orders), dtype=bool)
    if every > 1:
        sampled = np.arange(len(orders)) % every == 0
        keep = np.flatnonzero(in_report | sampled)
        needed = {"created_at", "cancelled_at", *dimensions}
        needed |= {c for st in present for c in STAGES[st]}
        orders = orders[[c for c in orders.columns if c in needed]].take(keep)
        starts = {st: v[keep] for st, v in starts.items()}
        sampled = sampled[keep]
    segments = segment_columns(orders, dimensions)
    dims = [d for d in dimensions if d in segments.columns and segments[d].notna().any()]
    segs = {d: _category_codes(segments[d]) for d in dims}
    cell, cell_codes = _cells(segs, dims, len(orders))
    n_cells = len(next(iter(cell_codes.values()))) if cell_codes else len(orders)
    cancel = _ns(orders["cancelled_at"]) if "cancelled_at" in orders.columns else None
    if cancel is not None:
        cancel = np.where(cancel == _NAT, _LATEST, cancel)
    last = len(weeks) - 1
    uniform = len(set(np.diff(bounds).tolist())) == 1
    sums, totals = {}, {}
    for stage in present:
        a, b = STAGES[stage]
        start = starts[stage]
        # NaT is int64 min; a baseline order counts when sampled
        baseline = (start >= bounds[0]) & (start < bounds[-2])
        rows = np.flatnonzero((baseline & sampled) | ((start >= bounds[-2]) & (start < bounds[-1])))
        s = start[rows]
        leave = _ns(orders[b])[rows]
        leave[leave == _NAT] = _LATEST
        if cancel is not None:
            leave = np.minimum(leave, cancel[rows])
        slot = BUCKET_HOURS * _NS_PER_HOUR
        slots = 7 * 24 // BUCKET_HOURS
        if uniform:  # every week equally long (no DST change): arithmetic, no search
            span = bounds[1] - bounds[0]
            week, within = np.divmod(s - bounds[0], span)
            left_in_week = span - within
        else:
            week = np.searchsorted(bounds, s, side="right") - 1
            within = s - bounds[week]
            left_in_week = bounds[week + 1] - s
        hours = np.clip(np.minimum(leave - s, left_in_week), 0, None) / _NS_PER_HOUR
        bucket = np.minimum(within // slot, slots - 1)
        base = week < last
        # per slot: even = this week's cohort, odd = the baseline's
        pair = bucket * 2 + base
        n_b = np.bincount(pair, minlength=2 * slots)[1::2].astype(np.float64)
        sum_b = np.bincount(pair, weights=hours, minlength=2 * slots)[1::2]
        sq_b = np.bincount(pair, weights=hours * hours, minlength=2 * slots)[1::2]
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_b = np.where(n_b > 0, sum_b / n_b, 0.0)
            var_b = np.where(n_b > 1, (sq_b - n_b * mean_b**2) / np.maximum(n_b - 1, 1), 0.0)
        expected, variance = mean_b[bucket], np.maximum(var_b, 0.0)[bucket]
        # one pass per sum: even slots this week's cohort, odd slots the baseline's
        key = cell[rows] * 2 + base
        size = 2 * n_cells
        parts = [
            np.bincount(key, minlength=size).astype(np.float64),
            np.bincount(key, weights=hours, minlength=size),
            np.bincount(key, weights=expected, minlength=size),
            np.bincount(key, weights=variance, minlength=size),
        ]
        table = np.column_stack([p[0::2] for p in parts] + [p[1::2] for p in parts])
        table[:, _BN:_BV] *= every
        table[:, _BV] *= every * every
        sums[stage] = table
        totals[stage] = table.sum(axis=0)
    reduced, reduced_codes = _reduce_cells(segs, dims, cell_codes)
    return CohortSums(
        dims, segs, cell, cell_codes, sums, totals, max(len(weeks) - 1, 1), reduced, reduced_codes
    )


def _reduce_cells(
    segs: dict[str, _Segments], dims: list[str], cell_codes: dict[str, np.ndarray]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Each cell's cell without the dimension of most values, and those cells' codes."""
    if not dims:
        return np.zeros(0, dtype=np.int64), {}
    big = max(dims, key=lambda d: len(segs[d].values))
    rest = [d for d in dims if d != big]
    key = np.zeros(len(cell_codes[dims[0]]), dtype=np.int64)
    for d in rest:
        key = key * (len(segs[d].values) + 1) + cell_codes[d]
    first, reduced = np.unique(key, return_index=True, return_inverse=True)[1:]
    codes = {d: cell_codes[d][first] for d in rest}
    codes[big] = np.zeros(len(first), dtype=np.int64)
    return reduced.astype(np.int64), codes


@dataclass(frozen=True)
class _Candidate:
    stage: str
    keys: tuple[tuple[str, int], ...]  # (dimension, value code), one or two
    stats: np.ndarray  # the eight sums


_Found = tuple[_Candidate, float, float]  # candidate, added delay-hours, z


def _judge_new(
    stats: np.ndarray, total: np.ndarray, rules: FindingRules
) -> tuple[float, float, bool]:
    """(added delay-hours, z, material) of a segment's cohort against its own baseline."""
    wn, wa, we, wv, bn, ba, be, bv = (float(x) for x in stats)
    if be <= 0 or wn <= 0:
        return 0.0, 0.0, False
    ratio = ba / be
    baseline = ratio * we
    added = wa - baseline
    var = ratio**2 * wv + (we / be) ** 2 * ratio**2 * bv
    z = added / math.sqrt(var) if var > 0 else (math.inf if added > 0 else 0.0)
    per_order = added / wn
    material = (
        wn >= rules.min_orders
        and bn >= rules.min_orders
        and added > 0
        and wa >= (1 + rules.margin) * baseline
        and per_order >= rules.min_hours
        and z >= rules.min_z
        and added >= rules.min_share * float(total[_WE])
    )
    return added, z, material


def _judge_usual(
    stats: np.ndarray, total: np.ndarray, rules: FindingRules, weeks: int
) -> tuple[float, float, bool]:
    """(excess delay-hours a week, z, material) of a segment's baseline against the overall."""
    bn, ba, be, bv = (float(x) for x in stats[_BN:])
    if be <= 0:
        return 0.0, 0.0, False
    excess = ba - be
    z = excess / math.sqrt(bv) if bv > 0 else 0.0
    material = (
        bn >= rules.min_orders
        and excess > 0
        and ba >= (1 + rules.margin) * be
        and excess / bn >= rules.min_hours
        and z >= rules.min_z
        and excess >= rules.min_share * float(total[_BE])
    )
    return excess / weeks, z, material


def _groupings(
    data: CohortSums, pairs: Sequence[tuple[str, str]]
) -> list[tuple[tuple[str, ...], list[int]]]:
    """(dimensions, sizes) of every segmentation searched: each dimension, each pair."""
    out: list[tuple[tuple[str, ...], list[int]]] = []
    for d in data.dims:
        out.append(((d,), [len(data.segs[d].values) + 1]))
    for da, db in pairs:
        out.append(((da, db), [len(data.segs[da].values) + 1, len(data.segs[db].values) + 1]))
    return out


class _Sums:
    """Segment sums of one stage by every segmentation, over all cells or some.

    Segmentations without the dimension of most values (usually the hour) are summed
    from the cells with that dimension summed out first, which are far fewer.
    """

    def __init__(
        self,
        data: CohortSums,
        table: np.ndarray,
        groupings: list[tuple[tuple[str, ...], list[int]]],
        cells: np.ndarray | None = None,
    ):
        big = max(data.dims, key=lambda d: len(data.segs[d].values))
        rows = table if cells is None else table[cells]
        reduced = data.reduced if cells is None else data.reduced[cells]
        n_small = len(data.reduced_codes[big])
        small = np.column_stack(
            [np.bincount(reduced, weights=rows[:, j], minlength=n_small) for j in range(8)]
        )
        self.by: dict[tuple[str, ...], np.ndarray] = {}
        self.sizes: dict[tuple[str, ...], list[int]] = {}
        for names, sizes in groupings:
            if big in names:
                codes, source = data.cell_codes, rows
                pick = cells
            else:
                codes, source, pick = data.reduced_codes, small, None
            key = codes[names[0]] if pick is None else codes[names[0]][pick]
            if len(names) > 1:
                second = codes[names[1]] if pick is None else codes[names[1]][pick]
                key = key * sizes[1] + second
            width = int(np.prod(sizes))
            self.by[names] = np.column_stack(
                [np.bincount(key, weights=source[:, j], minlength=width) for j in range(8)]
            )
            self.sizes[names] = sizes

    def of(self, keys: tuple[tuple[str, int], ...]) -> np.ndarray:
        """The eight sums of one segment."""
        names = tuple(d for d, _ in keys)
        codes = tuple(c for _, c in keys)
        j = int(np.ravel_multi_index(codes, self.sizes[names])) if len(codes) > 1 else codes[0]
        return self.by[names][j]


def _mask(data: CohortSums, keys: tuple[tuple[str, int], ...]) -> np.ndarray:
    """Cells of a segment (all its dimension values)."""
    mask = np.ones(len(data.cell_codes[data.dims[0]]), dtype=bool)
    for d, code in keys:
        mask &= data.cell_codes[d] == code
    return mask


def _judge(
    group: str, stats: np.ndarray, total: np.ndarray, rules: FindingRules, weeks: int
) -> tuple[float, float, bool]:
    if group == "new":
        return _judge_new(stats, total, rules)
    return _judge_usual(stats, total, rules, weeks)


def _candidates(
    data: CohortSums,
    group: str,
    rules: FindingRules,
    groupings: list[tuple[tuple[str, ...], list[int]]],
    full: dict[str, _Sums],
) -> list[tuple[_Candidate, float, float]]:
    """Material segments (one dimension, and the given pairs) of every stage, unfolded."""
    found = []
    for stage in data.sums:
        total = data.totals[stage]
        for names, sizes in full[stage].sizes.items():
            agg = full[stage].by[names]
            enough = np.flatnonzero(agg[:, _WN if group == "new" else _BN] >= rules.min_orders)
            for j in enough:
                codes = np.unravel_index(j, sizes) if len(sizes) > 1 else (j,)
                if any(int(c) == 0 for c in codes):
                    continue  # empty segment value
                added, z, ok = _judge(group, agg[j], total, rules, data.weeks)
                if ok:
                    keys = tuple((n, int(c)) for n, c in zip(names, codes, strict=True))
                    found.append((_Candidate(stage, keys, agg[j]), added, z))
    found.sort(key=lambda f: (-f[1], list(STAGES).index(f[0].stage), f[0].keys))
    return found


def _fold(
    data: CohortSums,
    found: list[tuple[_Candidate, float, float]],
    group: str,
    rules: FindingRules,
    groupings: list[tuple[tuple[str, ...], list[int]]],
    top: int,
) -> list[tuple[_Candidate, float, float, int | None]]:
    """Roots and echoes: each candidate with the index (in the result) of its root or None.

    A candidate is an echo of another of the same stage when, without that one's
    orders, its delay is no longer material or keeps less than ``echo_left`` of itself.
    Strongest first; before the strongest becomes a root, a candidate it is an echo of
    takes its place, unless that one is in turn an echo of it and no slower per order
    (two segments sharing most orders: the slower, narrower one is the root); a narrower
    cell inside it takes its place only when the rest of it is immaterial and runs at
    most ``echo_left`` of the cell's pace. Every later candidate that is an echo of the
    roots so far is folded into the root whose orders alone take away most of its
    delay. Stops after ``top`` roots; what is left is neither a root nor folded.
    """

    def judge(stats: np.ndarray, stage: str) -> tuple[float, float, bool]:
        return _judge(group, stats, data.totals[stage], rules, data.weeks)

    inside: dict[tuple[str, tuple[tuple[str, int], ...]], _Sums] = {}

    def within(stage: str, keys: tuple[tuple[str, int], ...]) -> _Sums:
        """Sums of every segment restricted to the orders of one segment (cached)."""
        if (stage, keys) not in inside:
            cells = np.flatnonzero(_mask(data, keys))
            inside[(stage, keys)] = _Sums(data, data.sums[stage], groupings, cells)
        return inside[(stage, keys)]

    def left(c: tuple[_Candidate, float, float], shared: np.ndarray) -> float:
        """Added delay of ``c`` without the orders it shares; 0 when not material."""
        added, _, ok = judge(c[0].stats - shared, c[0].stage)
        return added if ok else 0.0

    def pace(c: tuple[_Candidate, float, float]) -> float:
        return c[1] / max(float(c[0].stats[_WN if group == "new" else _BN]), 1.0)

    def takes_over(
        f: tuple[_Candidate, float, float], head: tuple[_Candidate, float, float]
    ) -> bool:
        """Whether ``f`` rather than ``head`` is the root of what they share."""
        if f is head or f[0].stage != head[0].stage:
            return False
        narrower, broader = set(f[0].keys), set(head[0].keys)
        if narrower > broader:  # a cell inside head
            rest = head[0].stats - f[0].stats
            n = float(rest[_WN if group == "new" else _BN])
            added, _, ok = judge(rest, head[0].stage)
            return not ok and (n < 1 or added / n <= rules.echo_left * pace(f))
        if narrower < broader:
            return False
        shared = within(head[0].stage, head[0].keys).of(f[0].keys)
        head_echo = left(head, shared) < rules.echo_left * head[1]
        f_echo = left(f, shared) < rules.echo_left * f[1]
        return head_echo and (not f_echo or pace(f) > pace(head))

    remaining = list(found)
    out: list[tuple[_Candidate, float, float, int | None]] = []
    roots: list[tuple[int, _Candidate]] = []  # position in out, candidate
    gone: dict[str, np.ndarray] = {}  # per stage: the cells of its roots so far
    while remaining and len(roots) < top:
        head = remaining[0]
        for _ in range(len(remaining)):
            better = next((f for f in remaining if takes_over(f, head)), None)
            if better is None:
                break
            head = better
        remaining.remove(head)
        out.append((*head, None))
        roots.append((len(out) - 1, head[0]))
        stage = head[0].stage
        gone[stage] = gone.get(stage, np.zeros(len(data.sums[stage]), dtype=bool))
        gone[stage] |= _mask(data, head[0].keys)
        union = _Sums(data, data.sums[stage], groupings, np.flatnonzero(gone[stage]))
        keep = []
        for f in remaining:
            if f[0].stage != stage or left(f, union.of(f[0].keys)) >= rules.echo_left * f[1]:
                keep.append(f)
                continue
            # the root whose orders alone take away most of this one's delay
            same = [r for r in roots if r[1].stage == stage]
            best = min(same, key=lambda r: left(f, within(stage, r[1].keys).of(f[0].keys)))
            out.append((*f, best[0]))
        remaining = keep
    return out


def week_findings(
    orders: pd.DataFrame | None,
    weeks: Sequence[Window],
    rules: FindingRules | None = None,
    dimensions: Sequence[str] = SEGMENTS,
    pairs: bool | Sequence[tuple[str, str]] = True,
    stages: Sequence[str] = tuple(STAGES),
    lang: str = "en",
    data: CohortSums | None = None,
    label: CodeLabel | None = None,
) -> pd.DataFrame:
    """ "Where the time goes" as findings in two groups, echoes folded into their roots.

    ``weeks``: the baseline weeks, oldest first, then the report week. For every stage
    and segment (one dimension value, or a cell of two with ``pairs``), on the cohort
    sums of ``cohort_sums``:

    - group "new": added_delay_h = this week's hours - baseline, where baseline = the
      hours its orders would have taken at the segment's own pace of the baseline weeks
      (same start slots); material when the segment has ``min_orders`` orders this week
      and before, hours_h >= (1 + margin) x baseline_h, the gap is >= min_hours per order
      and >= min_z standard errors, and added delay >= min_share of the stage's hours;
    - group "usual": the baseline weeks alone; added_delay_h = excess hours a week over
      the overall pace (same start slots); material by the same rules against the
      overall; segments of the "new" group are left out.

    hours_h / baseline_h / overall_h are means per order (hours in the stage up to the
    end of its start week). Within a group a finding whose delay is no longer material
    without a stronger finding's orders is folded into it: ``folded_into`` holds that
    root's id, ``driven_by`` its segment in words; roots have rank 1, 2... by
    added_delay_h, folded rows rank 0. Weekday values are names (Mon..Sun). ``value`` and
    ``value_2`` hold the codes; the words (``finding``, ``driven_by``) name them with
    ``label`` (see segment_phrase).
    """
    rules = rules or FindingRules()
    weeks = list(weeks)
    if data is None:
        if orders is None:
            raise ValueError("week_findings needs the orders or their cohort sums")
        data = cohort_sums(orders, weeks, dimensions, stages)
    if not data.dims:
        return pd.DataFrame(columns=FINDING_COLUMNS)
    if pairs is True:
        cells = list(combinations(data.dims, 2))
    elif pairs is False:
        cells = []
    else:
        cells = [(a, b) for a, b in pairs if a in data.dims and b in data.dims]
    rows: list[dict[str, object]] = []
    taken: set[tuple[str, tuple[tuple[str, int], ...]]] = set()
    groupings = _groupings(data, cells)
    full = {stage: _Sums(data, table, groupings) for stage, table in data.sums.items()}
    for group, prefix, top in (("new", "N", rules.top_new), ("usual", "U", rules.top_usual)):
        found = _candidates(data, group, rules, groupings, full)
        found = [f for f in found if (f[0].stage, f[0].keys) not in taken]
        folded = _fold(data, found, group, rules, groupings, top)
        taken |= {(c.stage, c.keys) for c, *_ in folded}
        root_ids: dict[int, str] = {}
        for i, item in enumerate(folded):
            if item[3] is None:
                root_ids[i] = f"{prefix}{len(root_ids) + 1}"
        for i, (c, added, z, root) in enumerate(folded):
            own = root_ids.get(i, "")
            parent = root_ids.get(root, "") if root is not None else ""
            rows.append(
                _finding_row(data, group, c, added, z, own, parent, folded, root, lang, label)
            )
    out = pd.DataFrame(rows, columns=FINDING_COLUMNS)
    out["orders"] = out["orders"].astype("int64")
    out["rank"] = out["rank"].astype("int64")
    return out.sort_values(["group", "rank"], key=_by_group, kind="stable").reset_index(drop=True)


def _by_group(col: pd.Series) -> pd.Series:
    if col.name == "group":
        return col.map({g: i for i, g in enumerate(FINDING_GROUPS)})
    return col.where(col > 0, 10**9)  # folded rows after the roots


def _finding_row(
    data: CohortSums,
    group: str,
    c: _Candidate,
    added: float,
    z: float,
    own_id: str,
    root_id: str,
    folded: list[tuple[_Candidate, float, float, int | None]],
    root: int | None,
    lang: str,
    label: CodeLabel | None = None,
) -> dict[str, object]:
    s = c.stats
    if group == "new":
        n, hours = s[_WN], s[_WA] / s[_WN]
        overall = s[_WE] / s[_WN]
        baseline = s[_BA] / s[_BE] * overall
    else:
        n, hours = s[_BN] / data.weeks, s[_BA] / s[_BN]
        overall = baseline = s[_BE] / s[_BN]
    (d1, c1), *second = c.keys
    value = data.segs[d1].values[c1 - 1]
    d2, value2 = (
        (second[0][0], data.segs[second[0][0]].values[second[0][1] - 1]) if second else (None, None)
    )
    driven_by = ""
    if root is not None:
        driven_by = _segment_words(data, folded[root][0].keys, lang, label)
    row: dict[str, object] = {
        "id": own_id,
        "group": group,
        "rank": int(own_id[1:]) if own_id else 0,
        "stage": c.stage,
        "dimension": d1,
        "value": _plain(value),
        "dimension_2": d2,
        "value_2": _plain(value2) if d2 else None,
        "orders": int(round(n)),
        "hours_h": float(hours),
        "baseline_h": float(baseline),
        "overall_h": float(overall),
        "added_delay_h": float(added),
        "z": float(z),
        "folded_into": root_id,
        "driven_by": driven_by,
    }
    row["finding"] = finding_sentence(row, data.weeks, lang, label)
    return row


def _plain(value: object) -> object:
    """numpy scalars as Python values, for CSV and comparisons."""
    return value.item() if isinstance(value, np.generic) else value


def _segment_words(
    data: CohortSums,
    keys: tuple[tuple[str, int], ...],
    lang: str,
    label: CodeLabel | None = None,
) -> str:
    parts = [segment_phrase(d, _plain(data.segs[d].values[c - 1]), lang, label) for d, c in keys]
    if len(parts) == 1:
        return parts[0]
    return t("flow.segment.pair", lang, first=parts[0], second=parts[1])


def finding_segment(row: Any, lang: str = "en", label: CodeLabel | None = None) -> str:
    """A finding's segment in words ('via carrier EastPost to region South')."""
    first = segment_phrase(str(row.dimension), row.value, lang, label)
    d2 = row.dimension_2
    if not isinstance(d2, str):
        return first
    second = segment_phrase(d2, row.value_2, lang, label)
    return t("flow.segment.pair", lang, first=first, second=second)


def finding_sentence(
    row: dict[str, object], weeks: int, lang: str = "en", label: CodeLabel | None = None
) -> str:
    """A finding as a sentence in ``lang``, by group (segment values named by ``label``)."""
    segment = finding_segment(pd.Series(row), lang, label)
    fields = {
        "stage": t(f"flow.stage.{row['stage']}", lang),
        "segment": segment,
        "hours": _fmt_hours(float(row["hours_h"])),  # type: ignore[arg-type]
        "baseline": _fmt_hours(float(row["baseline_h"])),  # type: ignore[arg-type]
        "overall": _fmt_hours(float(row["overall_h"])),  # type: ignore[arg-type]
        "added": _fmt_hours(float(row["added_delay_h"])),  # type: ignore[arg-type]
        "orders": int(row["orders"]),  # type: ignore[call-overload]
        "weeks": weeks,
    }
    return t(f"flow.finding.{row['group']}", lang, **fields)


def finding_mask(orders: pd.DataFrame, finding: Any) -> np.ndarray:
    """Which rows of ``orders`` belong to a finding's segment."""
    segments = segment_columns(
        orders, [d for d in (finding.dimension, finding.dimension_2) if isinstance(d, str)]
    )
    mask = np.ones(len(orders), dtype=bool)
    for dim_attr, value_attr in (("dimension", "value"), ("dimension_2", "value_2")):
        d = getattr(finding, dim_attr)
        if isinstance(d, str):
            col = segments[d]
            mask &= (col.astype("str") == str(getattr(finding, value_attr))).to_numpy(
                dtype=bool, na_value=False
            )
    return mask


def finding_orders(orders: pd.DataFrame, finding: Any, window: Window) -> pd.DataFrame:
    """The orders behind a finding: its segment's orders whose stage started in ``window``.

    Columns order_id, the stage's start and end, hours (up to the window's end when
    still in the stage), open (still in the stage at the window's end); slowest first.
    """
    stage = str(finding.stage)
    a, b = STAGES[stage]
    start = orders[a]
    mask = finding_mask(orders, finding) & window.contains(start).to_numpy(
        dtype=bool, na_value=False
    )
    rows = orders[mask]
    s, e = _ns(rows[a]), _ns(rows[b])
    leave = np.where(e == _NAT, _LATEST, e)
    if "cancelled_at" in rows.columns:
        cancel = _ns(rows["cancelled_at"])
        leave = np.minimum(leave, np.where(cancel == _NAT, _LATEST, cancel))
    end = _ns(pd.Series([window.end]))[0]
    hours = np.maximum(np.minimum(leave, end) - s, 0) / _NS_PER_HOUR
    out = pd.DataFrame(
        {
            "order_id": rows["order_id"].astype("str").to_numpy(),
            a: rows[a].to_numpy(),
            b: rows[b].to_numpy(),
            "hours": hours,
            "open": leave >= end,
        }
    )
    return out.sort_values("hours", ascending=False, kind="stable").reset_index(drop=True)
