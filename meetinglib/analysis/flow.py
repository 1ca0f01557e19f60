"""Process mining of the order flow: event log, directly-follows graph, variants, bottlenecks.

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
cores; benchmarks/bench_flow.py measures it against PM4Py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from meetinglib.core.errors import InputDataError, MissingColumnError
from meetinglib.core.i18n import label_or, t
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


def _arrays(log: pd.DataFrame) -> _Log:
    _require(log, "event log", LOG_COLUMNS)
    for col in LOG_COLUMNS:
        empty = int(log[col].isna().sum())
        if empty:
            raise _empty_rule(
                "event log", col, empty, "Drop those rows, or build the log with event_log()."
            )
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


# --- directly-follows graph -------------------------------------------------------------

DFG_COLUMNS = ["source", "target", "cases", "count", "mean_h", "median_h", "p90_h"]

# Up to this many distinct edges, each edge's durations are picked out with a mask (no
# sort); above it, one radix sort groups them.
_MASKED_EDGES = 24


def directly_follows(log: pd.DataFrame, start_end: bool = False) -> pd.DataFrame:
    """The directly-follows graph: one row per edge source -> target within a case.

    cases = distinct cases with the transition; count = transitions (a loop counts each
    time); mean_h, median_h, p90_h = hours from the source event to the target event
    (P90 by linear interpolation, as numpy and pandas). With ``start_end`` the artificial
    edges START -> first activity and last activity -> END are added (durations NaN).
    Sorted by count, descending; ties in business order of source, then target.
    """
    lg = _arrays(log)
    k = len(lg.names)
    same = lg.same_case()
    step = lg.act[:-1].astype(np.int32) * k + lg.act[1:]  # edge code of row -> next row
    edge = step[same]
    hours = np.diff(lg.ts)[same] / _NS_PER_HOUR
    stats = _edge_stats(edge, hours, k * k)
    # a case counts once per edge: subtract repeats, which only rework cases can have
    rows = lg.rows_of(lg.loop_cases(), but_last=True)  # rows that start a transition
    _, repeats = _repeats_in_loop_cases(lg, rows, step[rows], k * k)
    codes = stats["edge"].to_numpy(dtype=np.int64)
    stats["cases"] = stats["count"] - repeats[codes]
    stats.insert(0, "source", [lg.names[c // k] for c in codes])
    stats.insert(1, "target", [lg.names[c % k] for c in codes])
    out = stats.drop(columns="edge")
    if start_end and len(lg.starts):
        first = np.bincount(lg.act[lg.starts], minlength=k)
        last = np.bincount(lg.act[lg.ends - 1], minlength=k)
        extra = [(START, lg.names[a], int(first[a])) for a in np.flatnonzero(first)]
        extra += [(lg.names[a], END, int(last[a])) for a in np.flatnonzero(last)]
        ends_frame = pd.DataFrame(extra, columns=["source", "target", "cases"])
        ends_frame["count"] = ends_frame["cases"]
        out = pd.concat([out, ends_frame], ignore_index=True)
    return _finish_edges(out)


def _edge_stats(edge: np.ndarray, hours: np.ndarray, space: int) -> pd.DataFrame:
    """Per edge code present: count, mean, median and P90 of hours."""
    counts = np.bincount(edge, minlength=space)
    present = np.flatnonzero(counts)
    sums = np.bincount(edge, weights=hours, minlength=space)
    rows = []
    if len(present) <= _MASKED_EDGES:
        groups = ((code, hours[edge == code]) for code in present)
    else:
        grouped = hours[_group_order(edge, space)]
        bounds = np.cumsum(counts[present])
        groups = zip(present, np.split(grouped, bounds[:-1]), strict=True)
    for code, values in groups:
        q50, q90 = np.quantile(values, [0.5, 0.9])
        rows.append((int(code), int(counts[code]), sums[code] / counts[code], q50, q90))
    return pd.DataFrame(rows, columns=["edge", "count", "mean_h", "median_h", "p90_h"])


def _finish_edges(out: pd.DataFrame) -> pd.DataFrame:
    if "cases" not in out.columns:
        out["cases"] = pd.Series(dtype="int64")
    out = out.astype({"cases": "int64", "count": "int64"})
    for col in ("mean_h", "median_h", "p90_h"):
        out[col] = out[col].astype("float64")
    out["source"] = out["source"].astype("str")
    out["target"] = out["target"].astype("str")
    order = {name: i for i, name in enumerate(activity_order([*out["source"], *out["target"]]))}
    order.update({START: -1, END: len(order)})
    out = out.assign(_s=out["source"].map(order), _t=out["target"].map(order))
    out = out.sort_values(["count", "_s", "_t"], ascending=[False, True, True])
    return out.reset_index(drop=True)[DFG_COLUMNS]


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
    ``finding`` is a sentence in ``lang``. ``top`` = None lists all findings.
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
    found: list[tuple] = []
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
    out["finding"] = [_sentence(row, lang) for row in out.itertuples(index=False)]
    return out[_BOTTLENECK_COLUMNS]


@dataclass
class _Segments:
    codes: np.ndarray  # int64: 0 = empty, v + 1 = values[v]
    values: list


def _segment_codes(col: pd.Series) -> _Segments:
    codes, uniques = pd.factorize(col, sort=True)
    return _Segments(codes.astype(np.int64) + 1, list(uniques))


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
) -> list[tuple]:
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

    def row(d: str, i: int, d2: str | None, i2: int, stats: tuple, j: int) -> tuple:
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
            found.append(row(da, ia[j], db, ib[j], stats, j))
            dropped.update({(da, int(ia[j])), (db, int(ib[j]))})
    for d in dims:
        n, avoid = single[d][0], single[d][3]
        hit = (n >= min_orders) & (avoid > 0) & (avoid >= floor)
        hit[0] = False  # empty segment value
        found += [row(d, j, None, 0, single[d], j) for j in np.flatnonzero(hit)]
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
    frame: pd.DataFrame, segs: dict[str, _Segments], scopes: dict[str, np.ndarray], row
) -> float:
    """Median stage hours of the orders of one finding (few findings: a mask each)."""
    mask = scopes[row.stage] & (segs[row.dimension].codes == row.code)
    if isinstance(row.dimension_2, str):
        mask &= segs[row.dimension_2].codes == row.code_2
    return float(np.median(frame[f"{row.stage}_h"].to_numpy()[mask]))


def _fmt_hours(hours: float) -> str:
    """Hours for a sentence: one decimal below 10 h, whole hours with separators above."""
    return f"{hours:.1f}" if abs(hours) < 10 else f"{hours:,.0f}"


def segment_phrase(dimension: str, value: object, lang: str = "en") -> str:
    """The segment in words, e.g. 'via carrier EastPost' or 'for orders created on Fri'."""
    if dimension == "weekday":
        shown = t(f"weekday.{int(value)}", lang)
    elif dimension == "order_type":
        shown = label_or(f"order_type.{value}", lang, str(value))
    elif dimension == "hour":
        shown = f"{int(value):02d}"
    else:
        shown = str(value)
    return t(f"flow.segment.{dimension}", lang, value=shown)


def _sentence(row, lang: str) -> str:
    segment = segment_phrase(row.dimension, row.value, lang)
    if isinstance(row.dimension_2, str):
        second = segment_phrase(row.dimension_2, row.value_2, lang)
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
