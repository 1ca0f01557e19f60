"""The interactive bottleneck explorer: ipywidgets over the process-mining functions.

Underneath are pure functions: ``ExplorerData.build`` prepares the loaded tables once
(per-order stage hours and segments, the event log with integer case numbers, each
transition's edge and hours, each case's variant); ``compute_view(data, selection,
lang)`` turns a ``Selection`` (the widget values) into a ``View`` of frames and
figures; ``export_csv`` / ``export_png`` write a view. ``Explorer`` builds the widgets
and recomputes the view whenever one changes.

Which orders a selection holds: those created in the date range (local calendar
days, both ends included), of the chosen order type, and whose warehouse, carrier,
region and channel are among the selected values (no value selected = all). Their
whole event logs are used, events before or after the range included, so the graph
and the variants show complete paths.

Stage durations: the box plots count the selected orders that completed the stage.
The slowest-orders table also lists orders still in the stage (started, not ended,
not cancelled), aged at the latest time stamp in the data (about when it was
exported), because a stuck order is often the slowest of all.

Speed: the graph and the variants of a selection equal flow_engine.directly_follows and
flow.variants of the selected orders' events (the tests check this), but are summed
from per-transition and per-case arrays prepared once, because rebuilding the
event log for every widget change took seconds on a million orders. A change of the
stage or the segment dimension alone reuses the previous graph and variants. Drawing
a chart takes longer than any computation, so charts are drawn only for the panels
on display.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from meetinglib.analysis import flow
from meetinglib.core.csvsafe import to_csv as write_csv
from meetinglib.core.i18n import t
from meetinglib.core.weeks import IsoWeek, Window
from meetinglib.data.dataset import WeekData, notebook_week
from meetinglib.report import charts as plots
from meetinglib.report import flow_graph as graph
from meetinglib.report.flow_section import FlowSection, segment_value

STAGES = (*flow.STAGES, "created_delivered")
STAGE_MILESTONES = {**flow.STAGES, "created_delivered": ("created_at", "delivered_at")}
DIMENSIONS = ("carrier", "warehouse", "region", "channel", "order_type", "weekday", "hour")
FILTER_DIMENSIONS = ("warehouse", "carrier", "region", "channel")
# Widget values that decide which orders are selected (the others only change the view).
ORDER_FILTERS = ("start", "end", "order_type", *FILTER_DIMENSIONS)
TOP_ORDERS = 20
TOP_VARIANTS = 10
# A segment value needs this many orders to be named slowest in the chart's title.
MIN_TITLE_ORDERS = 20
# Transitions of fewer orders than this share of the selection are not drawn.
MIN_DRAWN_SHARE = 0.002
DEFAULT_FOLDER = Path("outputs") / "explorer"

SLOWEST_COLUMNS = [
    "order_id",
    "order_type",
    "warehouse",
    "carrier",
    "region",
    "channel",
    "created_at",
    "hours",
    "open",
]
DISTRIBUTION_COLUMNS = ["value", "orders", "p10_h", "q1_h", "median_h", "q3_h", "p90_h", "mean_h"]
VARIANT_COLUMNS = ["variant", "events", "cases", "share", "cumulative_share", "median_h"]

_NAT = np.iinfo(np.int64).min
_NS_PER_HOUR = 3_600_000_000_000
# Variant keys pack (activity number + 1) into 4 bits per event: up to 15 events of up
# to 15 activities fit one int64. Longer cases fall back to flow.variants.
_KEY_BITS = 4
_KEY_EVENTS = 15


def _nanoseconds(stamps: pd.Series) -> np.ndarray:
    """Nanoseconds since the epoch of a datetime column; NaT becomes int64 min."""
    return np.asarray(stamps.array.as_unit("ns").asi8, dtype=np.int64)


# --- the data, prepared once -----------------------------------------------------------------


@dataclass
class Transitions:
    """Every transition of the log (a row to the next row of the same case), as arrays."""

    edge: np.ndarray  # source activity number x len(names) + target activity number
    hours: np.ndarray  # float64
    case: np.ndarray  # case number
    first: np.ndarray  # bool: the case's first transition along this edge


@dataclass
class Variants:
    """Each case's variant number, and per variant its label, length and label rank."""

    of_case: np.ndarray  # per case: variant number
    labels: list[str]  # activities joined by flow.VARIANT_SEPARATOR
    events: np.ndarray  # per variant: number of events
    label_rank: np.ndarray  # per variant: position of its label in sorted order
    through_h: np.ndarray  # per case: hours from the first to the last event


@dataclass
class ExplorerData:
    """The loaded tables arranged for fast filtering; build with ``ExplorerData.build``."""

    stages: pd.DataFrame  # flow.stage_frame of every order, row i = order i
    segments: dict[str, pd.Categorical]  # segment columns as categoricals (codes filter fast)
    created_ns: np.ndarray  # created_at, ns since the epoch
    cancelled: np.ndarray  # bool per order
    log: pd.DataFrame  # event log; case_id = case number, ascending
    names: list[str]  # activity names in business order (the log's categories)
    case_ids: pd.Index  # case number -> order id
    case_order: np.ndarray  # case number -> order row, -1 when the order is not loaded
    transitions: Transitions
    variants: Variants | None  # None when some case is too long to pack its variant
    tz: object
    as_of: pd.Timestamp  # the latest time in the data: age of orders still in a stage
    _open: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def build(
        cls,
        orders: pd.DataFrame,
        events: pd.DataFrame | None = None,
        after_sales: pd.DataFrame | None = None,
    ) -> ExplorerData:
        """Stage hours per order and the event log (events table, else milestones)."""
        stages = flow.stage_frame(orders)
        segments = {}
        for dim in DIMENSIONS:
            if dim in stages.columns and stages[dim].notna().any():
                col = stages[dim]
                is_cat = isinstance(col.dtype, pd.CategoricalDtype)
                segments[dim] = col.array if is_cat else pd.Categorical(col)
        log = flow.event_log(orders, events, after_sales)
        case = log["case_id"]
        new = case.ne(case.shift()).to_numpy(dtype=bool, na_value=True)
        case_ids = pd.Index(case[new].to_numpy(), dtype="str")
        numbers = np.cumsum(new, dtype=np.int64) - 1
        names = [str(c) for c in log["activity"].cat.categories]
        act = log["activity"].cat.codes.to_numpy().astype(np.int64)
        ts = _nanoseconds(log["timestamp"])
        starts = np.flatnonzero(new)
        log = pd.DataFrame(
            {"case_id": numbers, "activity": log["activity"], "timestamp": log["timestamp"]}
        )
        cancelled = (
            orders["cancelled_at"].notna().to_numpy()
            if "cancelled_at" in orders.columns
            else np.zeros(len(orders), dtype=bool)
        )
        created = stages["created_at"]
        return cls(
            stages=stages,
            segments=segments,
            created_ns=_nanoseconds(created),
            cancelled=np.asarray(cancelled, dtype=bool),
            log=log,
            names=names,
            case_ids=case_ids,
            case_order=pd.Index(stages["order_id"]).get_indexer(case_ids),
            transitions=_transitions(numbers, act, ts, len(names)),
            variants=_variants(act, ts, starts, names),
            tz=getattr(created.dtype, "tz", None),
            as_of=_latest(orders, log),
        )

    def values(self, dimension: str) -> list:
        """The values of a segment dimension present in the data, in their natural order."""
        if dimension not in self.segments:
            return []
        cat = self.segments[dimension]
        used = np.unique(cat.codes[cat.codes >= 0])
        return [cat.categories[c] for c in used]

    def open_hours(self, stage: str) -> np.ndarray:
        """Per order: hours in the stage so far if still in it (see module docstring), else NaN."""
        if stage not in self._open:
            self._open[stage] = _open_hours(self, stage)
        return self._open[stage]


def _latest(orders: pd.DataFrame, log: pd.DataFrame) -> pd.Timestamp:
    """The latest time stamp of the orders' milestones and the log: the data's "now"."""
    stamps = [orders[c].max() for c in flow.MILESTONES if c in orders.columns]
    if len(log):
        stamps.append(log["timestamp"].max())
    known = [s for s in stamps if pd.notna(s)]
    return max(known) if known else pd.NaT


def _transitions(case: np.ndarray, act: np.ndarray, ts: np.ndarray, k: int) -> Transitions:
    rows = np.flatnonzero(case[1:] == case[:-1])  # row -> row + 1 within a case
    edge = act[rows] * k + act[rows + 1]
    key = case[rows] * (k * k) + edge
    # rows run case by case, so a case's first use of an edge is its first in key order
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    first = np.empty(len(rows), dtype=bool)
    first[order] = np.concatenate(([True], sorted_key[1:] != sorted_key[:-1]))
    hours = (ts[rows + 1] - ts[rows]) / _NS_PER_HOUR
    return Transitions(edge, hours, case[rows], first)


def _variants(
    act: np.ndarray, ts: np.ndarray, starts: np.ndarray, names: list[str]
) -> Variants | None:
    """Each case's variant, packing its activity sequence into one int64 key."""
    lengths = np.diff(np.append(starts, len(act)))
    if len(starts) == 0 or lengths.max() > _KEY_EVENTS or len(names) >= 1 << _KEY_BITS:
        return None
    case = np.repeat(np.arange(len(starts)), lengths)
    position = np.arange(len(act)) - starts[case]
    packed = (act + 1) << (_KEY_BITS * position)
    keys = np.add.reduceat(packed, starts)
    of_case, uniques = pd.factorize(keys)
    labels = []
    for key in np.asarray(uniques, dtype=np.int64):  # one per variant, not per case
        steps = []
        while key:
            steps.append(names[int(key & 0xF) - 1])
            key >>= _KEY_BITS
        labels.append(flow.VARIANT_SEPARATOR.join(steps))
    rank = np.empty(len(labels), dtype=np.int64)
    rank[np.argsort(np.array(labels, dtype=object), kind="stable")] = np.arange(len(labels))
    ends = np.append(starts[1:], len(act)) - 1
    return Variants(
        of_case=of_case.astype(np.int64),
        labels=labels,
        events=np.array([s.count(flow.VARIANT_SEPARATOR) + 1 for s in labels], dtype=np.int64),
        label_rank=rank,
        through_h=(ts[ends] - ts[starts]) / _NS_PER_HOUR,
    )


def _open_hours(data: ExplorerData, stage: str) -> np.ndarray:
    start, end = STAGE_MILESTONES[stage]
    frame = data.stages
    if start not in frame.columns:
        return np.full(len(frame), np.nan)
    begun = _nanoseconds(frame[start])
    ended = _nanoseconds(frame[end]) if end in frame.columns else np.full(len(frame), _NAT)
    still = (begun != _NAT) & (ended == _NAT) & ~data.cancelled
    as_of = pd.Timestamp(data.as_of).as_unit("ns").value
    return np.where(still, (as_of - begun) / _NS_PER_HOUR, np.nan)


@dataclass(frozen=True)
class Selection:
    """What the explorer shows: the widget values."""

    start: dt.date | None = None  # first creation day (local); None: from the first order
    end: dt.date | None = None  # last creation day, included; None: to the last order
    order_type: str = "all"
    dimension: str = "carrier"
    stage: str = "shipped_delivered"
    warehouse: tuple[str, ...] = ()  # no value = all
    carrier: tuple[str, ...] = ()
    region: tuple[str, ...] = ()
    channel: tuple[str, ...] = ()

    def same_orders(self, other: Selection | None) -> bool:
        """Whether ``other`` selects the same orders (it may show another stage or dimension)."""
        return other is not None and all(
            getattr(self, name) == getattr(other, name) for name in ORDER_FILTERS
        )

    def as_frame(self) -> pd.DataFrame:
        """The selection as setting/value rows (exported beside the view's files)."""
        rows = []
        for f in fields(self):
            value = getattr(self, f.name)
            shown = "|".join(map(str, value)) if isinstance(value, tuple) else value
            rows.append((f.name, "" if shown is None else str(shown)))
        return pd.DataFrame(rows, columns=["setting", "value"])


# --- pure functions ---------------------------------------------------------------------------


def order_mask(data: ExplorerData, selection: Selection) -> np.ndarray:
    """Which orders (rows of data.stages) the selection holds."""
    mask = np.ones(len(data.stages), dtype=bool)
    if selection.start is not None:
        mask &= data.created_ns >= _day_start_ns(selection.start, data.tz)
    if selection.end is not None:
        mask &= data.created_ns < _day_start_ns(selection.end + dt.timedelta(days=1), data.tz)
    if selection.order_type != "all":
        mask &= _in(data, "order_type", (selection.order_type,))
    for dim in FILTER_DIMENSIONS:
        wanted = getattr(selection, dim)
        if wanted:
            mask &= _in(data, dim, wanted)
    return mask


def _day_start_ns(day: dt.date, tz: object) -> int:
    stamp = pd.Timestamp(day)
    stamp = stamp.tz_localize(tz, nonexistent="shift_forward") if tz is not None else stamp
    return int(stamp.as_unit("ns").value)


def _in(data: ExplorerData, dimension: str, values: Sequence[str]) -> np.ndarray:
    """Orders whose segment value is one of ``values`` (none when the dimension is absent)."""
    cat = data.segments.get(dimension)
    if cat is None:
        return np.zeros(len(data.stages), dtype=bool)
    wanted = [cat.categories.get_loc(v) for v in values if v in cat.categories]
    return np.isin(cat.codes, wanted)


def case_mask(data: ExplorerData, mask: np.ndarray) -> np.ndarray:
    """Per case of the log: whether its order is selected."""
    # -1 (an order not loaded) reads the appended False
    return np.append(mask, False)[data.case_order]


def stage_hours(data: ExplorerData, stage: str) -> np.ndarray:
    """Hours of a stage per order; NaN where it is not completed."""
    return data.stages[f"{stage}_h"].to_numpy(dtype=float)


def stage_distribution(
    data: ExplorerData, mask: np.ndarray, stage: str, dimension: str
) -> pd.DataFrame:
    """Per segment value: completed orders and their stage hours P10, quartiles, P90, mean.

    Sorted by median, slowest first; values without a completed order are left out.
    """
    hours = stage_hours(data, stage)
    done = mask & ~np.isnan(hours)
    cat = data.segments.get(dimension)
    if cat is None or not done.any():
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in DISTRIBUTION_COLUMNS})
    codes = cat.codes[done]
    keep = codes >= 0
    series = pd.Series(hours[done][keep])
    groups = series.groupby(codes[keep])
    q = groups.quantile([0.1, 0.25, 0.5, 0.75, 0.9]).unstack()
    out = pd.DataFrame(
        {
            "value": pd.Series([cat.categories[c] for c in q.index], dtype=object),
            "orders": groups.size().to_numpy(dtype="int64"),
            "p10_h": q[0.1].to_numpy(),
            "q1_h": q[0.25].to_numpy(),
            "median_h": q[0.5].to_numpy(),
            "q3_h": q[0.75].to_numpy(),
            "p90_h": q[0.9].to_numpy(),
            "mean_h": groups.mean().to_numpy(),
        }
    )
    return out.sort_values("median_h", ascending=False, kind="stable").reset_index(drop=True)


def view_log(data: ExplorerData, mask: np.ndarray) -> pd.DataFrame:
    """The events of the selected orders (case_id = case number)."""
    selected = case_mask(data, mask)
    return data.log[selected[data.log["case_id"].to_numpy()]].reset_index(drop=True)


def edges_of(data: ExplorerData, mask: np.ndarray) -> pd.DataFrame:
    """flow_engine.directly_follows of the selected orders' events, from prepared transitions."""
    tr = data.transitions
    chosen = case_mask(data, mask)[tr.case]
    edge, hours = tr.edge[chosen], tr.hours[chosen]
    k = len(data.names)
    space = k * k
    counts = np.bincount(edge, minlength=space)
    present = np.flatnonzero(counts)
    sums = np.bincount(edge, weights=hours, minlength=space)
    cases = np.bincount(edge[tr.first[chosen]], minlength=space)
    # group the hours by edge: a stable sort on small codes is a radix sort
    small = edge.astype(np.uint16) if space <= 1 << 16 else edge
    grouped = hours[np.argsort(small, kind="stable")]
    bounds = np.cumsum(counts[present])[:-1]
    q = [np.quantile(v, [0.5, 0.9]) for v in np.split(grouped, bounds)] if len(present) else []
    out = pd.DataFrame(
        {
            "source": pd.Series([data.names[c // k] for c in present], dtype="str"),
            "target": pd.Series([data.names[c % k] for c in present], dtype="str"),
            "cases": cases[present].astype("int64"),
            "count": counts[present].astype("int64"),
            "mean_h": sums[present] / np.maximum(counts[present], 1),
            "median_h": np.array([v[0] for v in q], dtype="float64"),
            "p90_h": np.array([v[1] for v in q], dtype="float64"),
        }
    )
    # as flow sorts: count descending, ties in business order of source, then target
    out = out.assign(_s=present // k, _t=present % k)
    out = out.sort_values(["count", "_s", "_t"], ascending=[False, True, True])
    return out.drop(columns=["_s", "_t"]).reset_index(drop=True)


def variants_of(data: ExplorerData, mask: np.ndarray, top: int = TOP_VARIANTS) -> pd.DataFrame:
    """The ``top`` rows of flow.variants of the selected orders' events."""
    v = data.variants
    if v is None:  # some case too long to pack: the general algorithm
        return flow.variants(view_log(data, mask)).head(top).reset_index(drop=True)
    chosen = case_mask(data, mask)
    of_case = v.of_case[chosen]
    total = len(of_case)
    if total == 0:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in VARIANT_COLUMNS})
    counts = np.bincount(of_case, minlength=len(v.labels))
    present = np.flatnonzero(counts)
    ranked = present[np.lexsort((v.label_rank[present], -counts[present]))]
    cumulative = np.cumsum(counts[ranked][:top]) / total
    shown = ranked[:top]
    through = v.through_h[chosen]
    medians = [float(np.median(through[of_case == variant])) for variant in shown]
    return pd.DataFrame(
        {
            "variant": pd.Series([v.labels[i] for i in shown], dtype="str"),
            "events": v.events[shown],
            "cases": counts[shown].astype("int64"),
            "share": counts[shown] / total,
            "cumulative_share": cumulative,
            "median_h": np.array(medians, dtype="float64"),
        }
    )


def slowest_orders(
    data: ExplorerData, mask: np.ndarray, stage: str, top: int = TOP_ORDERS
) -> pd.DataFrame:
    """The ``top`` selected orders with the most hours in a stage, completed or still in it.

    hours = end - start for completed orders, as_of - start for orders still in the
    stage (open = True). Ties keep the orders' data order.
    """
    done, still = stage_hours(data, stage), data.open_hours(stage)
    hours = np.where(np.isnan(done), still, done)
    rows = np.flatnonzero(mask & ~np.isnan(hours))
    if len(rows) > top:  # the top few without sorting them all
        cut = -np.partition(-hours[rows], top - 1)[top - 1]
        rows = rows[hours[rows] >= cut]
    order = rows[np.argsort(-hours[rows], kind="stable")[:top]]
    rows_of = data.stages.iloc[order].reset_index(drop=True)  # few rows: take them first
    out = pd.DataFrame({"order_id": rows_of["order_id"]})
    for col in ("order_type", "warehouse", "carrier", "region", "channel"):
        out[col] = rows_of[col].astype(object) if col in rows_of.columns else None
    out["created_at"] = rows_of["created_at"]
    out["hours"] = hours[order]
    out["open"] = np.isnan(done[order])
    return out[SLOWEST_COLUMNS]


def order_timeline(data: ExplorerData, order_id: str) -> pd.DataFrame:
    """One order's events in time order: activity, timestamp, hours since the previous
    event (gap_h, NaN for the first) and since the first event (elapsed_h).

    Empty when the order has no event in the loaded data.
    """
    number = data.case_ids.get_indexer([str(order_id)])[0]
    if number < 0:
        return pd.DataFrame(
            {
                "activity": pd.Series(dtype="str"),
                "timestamp": pd.Series(dtype="datetime64[ns]"),
                "gap_h": pd.Series(dtype="float64"),
                "elapsed_h": pd.Series(dtype="float64"),
            }
        )
    cases = data.log["case_id"].to_numpy()
    lo, hi = np.searchsorted(cases, [number, number + 1])
    rows = data.log.iloc[lo:hi]
    ns = _nanoseconds(rows["timestamp"])
    gaps = np.diff(ns, prepend=ns[0]) / _NS_PER_HOUR
    gaps[0] = np.nan
    return pd.DataFrame(
        {
            "activity": rows["activity"].astype("str").to_numpy(),
            "timestamp": rows["timestamp"].reset_index(drop=True),
            "gap_h": gaps,
            "elapsed_h": (ns - ns[0]) / _NS_PER_HOUR,
        }
    )


@dataclass
class View:
    """Everything the explorer shows for one selection; figures are drawn on first use."""

    selection: Selection
    orders: int  # selected orders
    completed: int  # of them, completed the stage
    in_stage: int  # of them, still in the stage
    distribution: pd.DataFrame
    edges: pd.DataFrame
    variants: pd.DataFrame
    slowest: pd.DataFrame
    overall_median_h: float  # median stage hours of the selected orders that completed it
    lang: str = "en"
    timeline: pd.DataFrame | None = None  # the drilled-down order's events
    timeline_order: str | None = None
    figures: dict[str, Figure] = field(default_factory=dict, repr=False)

    @property
    def distribution_figure(self) -> Figure:
        """Box plots of the stage hours per segment value."""
        if "distribution" not in self.figures:
            self.figures["distribution"] = distribution_chart(
                self.distribution, self.selection, self.overall_median_h, self.lang
            )
        return self.figures["distribution"]

    @property
    def graph_figure(self) -> Figure:
        """The directly-follows graph of the selected orders."""
        if "graph" not in self.figures:
            self.figures["graph"] = graph_chart(self.edges, self.orders, self.lang)
        return self.figures["graph"]


def compute_view(
    data: ExplorerData,
    selection: Selection,
    lang: str = "en",
    top: int = TOP_ORDERS,
    previous: View | None = None,
) -> View:
    """All frames of a selection (figures are drawn when first asked for).

    With ``previous`` selecting the same orders, its graph and variants are reused.
    """
    mask = order_mask(data, selection)
    stage = selection.stage
    hours = stage_hours(data, stage)
    done = mask & ~np.isnan(hours)
    distribution = stage_distribution(data, mask, stage, selection.dimension)
    overall = float(np.median(hours[done])) if done.any() else math.nan
    figures: dict[str, Figure] = {}
    if previous is not None and selection.same_orders(previous.selection):
        edges, variants = previous.edges, previous.variants
        if "graph" in previous.figures and previous.lang == lang:
            figures["graph"] = previous.figures["graph"]
    else:
        edges, variants = edges_of(data, mask), variants_of(data, mask)
    return View(
        selection=selection,
        orders=int(mask.sum()),
        completed=int(done.sum()),
        in_stage=int((mask & ~np.isnan(data.open_hours(stage))).sum()),
        distribution=distribution,
        edges=edges,
        variants=variants,
        slowest=slowest_orders(data, mask, stage, top),
        overall_median_h=overall,
        lang=lang,
        figures=figures,
    )


# --- figures -----------------------------------------------------------------------------------


def stage_name(stage: str, lang: str) -> str:
    """A stage for display: 'Shipped → delivered'."""
    key = f"flow.stage.{stage}" if stage in flow.STAGES else f"explorer.stage.{stage}"
    return t(key, lang)


def distribution_chart(
    distribution: pd.DataFrame, selection: Selection, overall_median_h: float, lang: str
) -> Figure:
    """Horizontal box plots of stage hours per segment value, slowest on top.

    The title names the slowest value among those with at least MIN_TITLE_ORDERS
    orders (a value of two orders is slowest by chance); the dotted line is the median
    of all the selected orders.
    """
    stage = stage_name(selection.stage, lang)
    if distribution.empty:
        return plots.message(t("explorer.dist.empty", lang, stage=stage), lang=lang)
    dim = selection.dimension
    names = [
        f"{segment_value(dim, v, lang)} (n={n:,})"
        for v, n in zip(distribution["value"], distribution["orders"], strict=True)
    ]
    enough = distribution[distribution["orders"] >= MIN_TITLE_ORDERS]
    slow = (enough if len(enough) else distribution).iloc[0]
    title = t(
        "explorer.dist.title",
        lang,
        stage=stage,
        dimension=t(f"flow.dim.{dim}", lang),
        value=segment_value(dim, slow["value"], lang),
        median=graph.hours_text(slow["median_h"]),
        orders=int(slow["orders"]),
    )
    stats = [
        {"whislo": r.p10_h, "q1": r.q1_h, "med": r.median_h, "q3": r.q3_h, "whishi": r.p90_h}
        for r in distribution.itertuples(index=False)
    ]
    with matplotlib.rc_context(plots.style(lang)):
        fig = plots.new_figure(lang, size=(9.0, 1.1 + 0.36 * len(names)))
        ax = fig.add_subplot()
        y = np.arange(len(names), dtype=float)
        ax.bxp(
            stats,
            positions=y,
            widths=0.6,
            orientation="horizontal",
            showfliers=False,
            patch_artist=True,
            boxprops={"facecolor": plots.PALETTE[0], "edgecolor": "#000000", "linewidth": 0.8},
            medianprops={"color": "#ffffff", "linewidth": 1.6},
            whiskerprops={"color": "#333333"},
            capprops={"color": "#333333"},
            manage_ticks=False,
        )
        ax.axvline(overall_median_h, color="#000000", linestyle=":", linewidth=1.2)
        ax.set_yticks(y, names)
        ax.set_ylim(len(names) - 0.5, -0.5)
        ax.set_xlim(left=0)
        ax.grid(axis="y", visible=False)
        ax.set_title(title, loc="left")
        ax.set_xlabel(t("explorer.dist.xlabel", lang))
        ax.legend(
            handles=[
                Line2D(
                    [], [], color="#000000", linestyle=":", label=t("explorer.dist.overall", lang)
                )
            ],
            frameon=False,
            loc="lower right",
        )
    return fig


def graph_chart(edges: pd.DataFrame, orders: int, lang: str) -> Figure:
    """The selection's directly-follows graph, rare transitions left out (and said so)."""
    heaviest = graph.heaviest_edge(edges) if len(edges) else None
    if heaviest is None:
        return plots.message(t("explorer.graph.empty", lang), lang=lang)
    floor = max(1, math.ceil(MIN_DRAWN_SHARE * int(edges["cases"].max())))
    hidden = int((edges["cases"] < floor).sum())
    row = edges[(edges["source"] == heaviest[0]) & (edges["target"] == heaviest[1])].iloc[0]
    title = t(
        "explorer.graph.title",
        lang,
        cases=orders,
        source=flow.activity_label(heaviest[0], lang),
        target=flow.activity_label(heaviest[1], lang),
        share=graph.hours_share(edges, heaviest),
        median=graph.hours_text(row["median_h"]),
    )
    note = t("flow_section.graph.hidden", lang, edges=hidden, cases=floor) if hidden else None
    return graph.draw_dfg(
        edges, lang=lang, title=title, min_cases=floor, highlight=heaviest, note=note
    )


# --- export --------------------------------------------------------------------------------------


def _stamp() -> str:
    return "explorer-" + dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def export_csv(view: View, folder: str | Path, stamp: str | None = None) -> list[Path]:
    """Write the view's tables as CSV (UTF-8) into ``folder``; returns the paths.

    Files: <stamp>-selection.csv, -stage_distribution.csv, -flow_edges.csv,
    -variants.csv, -slowest_orders.csv and, with a drilled-down order, -timeline.csv.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = stamp or _stamp()
    tables = {
        "selection": view.selection.as_frame(),
        "stage_distribution": view.distribution,
        "flow_edges": view.edges,
        "variants": view.variants,
        "slowest_orders": view.slowest,
    }
    if view.timeline is not None and len(view.timeline):
        tables["timeline"] = view.timeline.assign(order_id=view.timeline_order)
    paths = []
    for name, frame in tables.items():
        path = folder / f"{stamp}-{name}.csv"
        write_csv(frame, path)
        paths.append(path)
    return paths


def export_png(view: View, folder: str | Path, stamp: str | None = None) -> list[Path]:
    """Write the view's charts as PNG into ``folder``; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = stamp or _stamp()
    paths = []
    for name, fig in (
        ("stage_distribution", view.distribution_figure),
        ("flow_graph", view.graph_figure),
    ):
        path = folder / f"{stamp}-{name}.png"
        path.write_bytes(plots.png_bytes(fig))
        paths.append(path)
    return paths


# --- display helpers ---------------------------------------------------------------------------


def _hours(value: float) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:,.1f}"


def _table_html(frame: pd.DataFrame) -> str:
    """A display table; pandas escapes every cell, so data text cannot inject markup."""
    return frame.to_html(index=False, border=0, na_rep="–", escape=True)


def slowest_display(slowest: pd.DataFrame, stage: str, lang: str) -> pd.DataFrame:
    """The slowest-orders table with translated headings and values."""
    out = pd.DataFrame(
        {
            t("explorer.col.order_id", lang): slowest["order_id"],
            t("flow.dim.order_type", lang): [
                segment_value("order_type", v, lang) if isinstance(v, str) else "–"
                for v in slowest["order_type"]
            ],
        }
    )
    for col in ("warehouse", "carrier", "region", "channel"):
        out[t(f"flow.dim.{col}", lang)] = slowest[col].astype(object).fillna("–")
    out[t("explorer.col.created_at", lang)] = [
        ts.strftime("%Y-%m-%d %H:%M") for ts in slowest["created_at"]
    ]
    out[t("explorer.col.hours", lang, stage=stage_name(stage, lang))] = [
        _hours(h) for h in slowest["hours"]
    ]
    out[t("explorer.col.open", lang)] = [
        t("explorer.yes", lang) if o else "" for o in slowest["open"]
    ]
    return out


def variants_display(variants: pd.DataFrame, lang: str) -> pd.DataFrame:
    """The variants table with activity names translated and shares as percentages."""
    names = [
        " → ".join(flow.activity_label(a, lang) for a in v.split(flow.VARIANT_SEPARATOR))
        for v in variants["variant"]
    ]
    return pd.DataFrame(
        {
            t("flow.col.variant", lang): names,
            t("flow.col.cases", lang): [f"{c:,}" for c in variants["cases"]],
            t("flow.col.share", lang): [f"{s:.1%}" for s in variants["share"]],
            t("flow.col.median_h", lang): [_hours(h) for h in variants["median_h"]],
        }
    )


def timeline_display(timeline: pd.DataFrame, lang: str) -> pd.DataFrame:
    """An order's timeline with translated activities and headings."""
    return pd.DataFrame(
        {
            t("flow.col.activity", lang): [
                flow.activity_label(a, lang) for a in timeline["activity"]
            ],
            t("explorer.col.timestamp", lang): [
                ts.strftime("%Y-%m-%d %H:%M") for ts in timeline["timestamp"]
            ],
            t("explorer.col.gap_h", lang): [_hours(h) for h in timeline["gap_h"]],
            t("explorer.col.elapsed_h", lang): [_hours(h) for h in timeline["elapsed_h"]],
        }
    )


# --- findings: the two groups of "Where the time goes", down to their orders -----------------

FINDING_ORDERS = 20


@dataclass
class Findings:
    """The week's findings (flow.week_findings rows) and the windows they compare."""

    frame: pd.DataFrame
    week: Window
    baseline: Window | None

    @classmethod
    def of_week(cls, data: WeekData, lang: str) -> Findings:
        """The findings of the data report's "Where the time goes" for a loaded week."""
        section = FlowSection(data, lang)
        weeks = section.baseline_weeks
        baseline = Window(weeks[0].start, weeks[-1].end) if weeks else None
        return cls(section.bottlenecks, data.window, baseline)

    @classmethod
    def of_orders(cls, orders: pd.DataFrame, lang: str, baseline_weeks: int = 6) -> Findings:
        """Findings for an orders frame: the last complete ISO week of its creation times
        against up to ``baseline_weeks`` weeks before it (the first, partial week left out)."""
        created = orders["created_at"].dropna()
        if created.empty:
            return cls(
                pd.DataFrame(columns=flow.FINDING_COLUMNS),
                Window(created.min(), created.max()),
                None,
            )
        tz = str(created.dt.tz) if created.dt.tz is not None else "UTC"
        last = IsoWeek.containing(created.max()).previous()
        first = IsoWeek.containing(created.min()).next()
        count = min(baseline_weeks, max((last.monday - first.monday).days // 7, 0))
        weeks = [last.shift(-k).window(tz) for k in range(count, -1, -1)]
        if len(weeks) < 2:
            return cls(pd.DataFrame(columns=flow.FINDING_COLUMNS), weeks[-1], None)
        found = flow.week_findings(orders, weeks, lang=lang)
        return cls(found, weeks[-1], Window(weeks[0].start, weeks[-2].end))

    def roots(self, group: str) -> pd.DataFrame:
        """The root findings of a group ("new" or "usual"), in rank order."""
        f = self.frame
        return f[(f["group"] == group) & (f["rank"] > 0)].reset_index(drop=True)

    def options(self, lang: str) -> list[tuple[str, str]]:
        """(label, id) of every root finding, new ones first, for a drop-down."""
        out = []
        for group in flow.FINDING_GROUPS:
            tag = t(f"flow_section.tag.{group}", lang)
            for row in self.roots(group).itertuples(index=False):
                stage = stage_name(str(row.stage), lang)
                out.append((f"{tag} {row.id}: {stage} {flow.finding_segment(row, lang)}", row.id))
        return out

    def orders_of(self, orders: pd.DataFrame, finding_id: str) -> pd.DataFrame:
        """The orders behind a finding, slowest first (flow.finding_orders).

        New this week: the segment's orders whose stage started in the week; usual: those
        of the baseline weeks.
        """
        row = self.frame[self.frame["id"] == finding_id]
        if row.empty:
            return pd.DataFrame(columns=["order_id", "hours", "open"])
        finding = next(row.itertuples(index=False))
        window = self.week if finding.group == "new" or self.baseline is None else self.baseline
        return flow.finding_orders(orders, finding, window)


def finding_orders_display(rows: pd.DataFrame, stage: str, lang: str) -> pd.DataFrame:
    """The orders of a finding with translated headings."""
    start, end = STAGE_MILESTONES[stage]
    fmt = "%Y-%m-%d %H:%M"
    return pd.DataFrame(
        {
            t("explorer.col.order_id", lang): rows["order_id"],
            t("explorer.col.stage_start", lang): [
                ts.strftime(fmt) if pd.notna(ts) else "–" for ts in rows[start]
            ],
            t("explorer.col.stage_end", lang): [
                ts.strftime(fmt) if pd.notna(ts) else "–" for ts in rows[end]
            ],
            t("explorer.col.hours", lang, stage=stage_name(stage, lang)): [
                _hours(h) for h in rows["hours"]
            ],
            t("explorer.col.open", lang): [
                t("explorer.yes", lang) if o else "" for o in rows["open"]
            ],
        }
    )


# --- the widgets ---------------------------------------------------------------------------------


class Explorer:
    """Widgets over a loaded week (or order frames); every change recomputes the view.

    Build from a WeekData (orders, events and after_sales of the load; default date
    range = the report week; default export folder = <output_dir>/explorer) or from an
    orders frame (``events`` and ``after_sales`` optional; default range = the last
    seven days with orders; default folder outputs/explorer).
    """

    def __init__(
        self,
        source: WeekData | pd.DataFrame,
        lang: str | None = None,
        *,
        events: pd.DataFrame | None = None,
        after_sales: pd.DataFrame | None = None,
        folder: str | Path | None = None,
        top: int = TOP_ORDERS,
    ):
        import ipywidgets as w

        if isinstance(source, WeekData):
            orders = source.tables["orders"]
            events = source.tables.get("events")
            after_sales = source.tables.get("after_sales")
            lang = lang or source.params.language
            folder = folder or Path(source.params.output_dir) / "explorer"
            first_day = source.window.start.date()
            last_day = (source.window.end - pd.Timedelta(days=1)).date()
        else:
            orders = source
            last = orders["created_at"].max()
            last_day = last.date() if pd.notna(last) else None
            first_day = last_day - dt.timedelta(days=6) if last_day else None
        self.lang = lang or "en"
        self.top = top
        self.data = ExplorerData.build(orders, events, after_sales)
        self._orders = orders
        if isinstance(source, WeekData):
            self.found = Findings.of_week(source, self.lang)
        else:
            self.found = Findings.of_orders(orders, self.lang)
        self._holding = False
        self.view: View | None = None
        self._shown: set[str] = set()  # panels displayed, whose charts are kept drawn
        self._drawn_graph: Figure | None = None
        lang = self.lang

        layout = w.Layout(width="auto")
        style = {"description_width": "initial"}
        self.start = w.DatePicker(
            description=t("explorer.created_from", lang), value=first_day, style=style
        )
        self.end = w.DatePicker(
            description=t("explorer.created_to", lang), value=last_day, style=style
        )
        types = self.data.values("order_type")
        self.order_type = w.Dropdown(
            description=t("explorer.order_type", lang),
            options=[(t("order_type.all", lang), "all")]
            + [(segment_value("order_type", v, lang), v) for v in types],
            value="all",
            style=style,
        )
        dims = [d for d in DIMENSIONS if d in self.data.segments]
        self.dimension = w.Dropdown(
            description=t("explorer.dimension", lang),
            options=[(t(f"flow.dim.{d}", lang), d) for d in dims],
            value="carrier" if "carrier" in dims else (dims[0] if dims else None),
            style=style,
        )
        self.stage = w.Dropdown(
            description=t("explorer.stage", lang),
            options=[(stage_name(s, lang), s) for s in STAGES],
            value="shipped_delivered",
            style=style,
        )
        self.filters = {
            d: w.SelectMultiple(
                description=t(f"flow.dim.{d}", lang),
                options=[str(v) for v in self.data.values(d)],
                value=(),
                rows=5,
                style=style,
                layout=layout,
            )
            for d in FILTER_DIMENSIONS
            if d in self.data.segments
        }
        self.order = w.Combobox(
            description=t("explorer.order", lang),
            placeholder=t("explorer.order_placeholder", lang),
            options=[],
            ensure_option=False,
            style=style,
        )
        self.folder = w.Text(
            description=t("explorer.folder", lang), value=str(folder or DEFAULT_FOLDER), style=style
        )
        self.export_csv_button = w.Button(description=t("explorer.export_csv", lang), icon="table")
        self.export_png_button = w.Button(description=t("explorer.export_png", lang), icon="image")
        self.summary = w.HTML()
        self.distribution_image = w.Image(format="png")
        self.graph_image = w.Image(format="png")
        self.variants_table = w.HTML()
        self.slowest_table = w.HTML()
        self.timeline_table = w.HTML()
        self.export_status = w.HTML()
        self.findings_list = w.HTML()
        self.finding = w.Dropdown(
            description=t("explorer.finding", lang),
            options=[(t("explorer.finding.pick", lang), ""), *self.found.options(lang)],
            value="",
            style=style,
            layout=w.Layout(width="95%"),
        )
        self.finding_table = w.HTML()
        self.finding.observe(lambda change: self.show_finding(change["new"]), names="value")
        self.findings_list.value = self._findings_html()

        for control in (
            self.start,
            self.end,
            self.order_type,
            self.dimension,
            self.stage,
            *self.filters.values(),
        ):
            control.observe(self._changed, names="value")
        self.order.observe(self._order_changed, names="value")
        self.export_csv_button.on_click(lambda _button: self.export_csv())
        self.export_png_button.on_click(lambda _button: self.export_png())
        self.update()

    @classmethod
    def open(
        cls,
        params_files: Sequence[str | Path],
        week: str | None = None,
        snapshot: str | Path | None = None,
        lang: str | None = None,
    ) -> Explorer:
        """Load the week as the reports do: the runner's snapshot if given, else the source."""
        return cls(notebook_week(params_files, week, snapshot), lang)

    # --- state -------------------------------------------------------------------------

    @property
    def selection(self) -> Selection:
        """The current widget values."""
        return Selection(
            start=self.start.value,
            end=self.end.value,
            order_type=self.order_type.value,
            dimension=self.dimension.value,
            stage=self.stage.value,
            **{d: tuple(box.value) for d, box in self.filters.items()},
        )

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Change several widgets, then recompute once: ``with explorer.hold(): ...``.

        Nothing is recomputed when the widgets end up as they were.
        """
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        if self.view is None or self.selection != self.view.selection:
            self.update()

    def _changed(self, _change: dict) -> None:
        if not self._holding:
            self.update()

    def update(self) -> View:
        """Recompute the view from the widget values and refresh every output widget."""
        previous = self.view
        view = compute_view(self.data, self.selection, self.lang, self.top, previous)
        self.view = view
        lang = self.lang
        stage = stage_name(view.selection.stage, lang)
        if view.orders:
            text = t(
                "explorer.summary",
                lang,
                orders=view.orders,
                completed=view.completed,
                stage=stage,
                open=view.in_stage,
            )
        else:
            text = t("explorer.empty", lang)
        self.summary.value = f"<p>{html.escape(text)}</p>"
        if previous is None or view.variants is not previous.variants:
            self.variants_table.value = _table_html(variants_display(view.variants, lang))
        self._render()
        self.slowest_table.value = _table_html(
            slowest_display(view.slowest, view.selection.stage, lang)
        )
        self.order.options = [str(o) for o in view.slowest["order_id"]]
        self._show_timeline(self.order.value)
        return view

    def _render(self) -> None:
        """Draw the charts of the panels on display (drawing takes most of an update)."""
        view = self.view
        if view is None:  # nothing computed yet
            return
        if "distribution" in self._shown:
            self.distribution_image.value = plots.png_bytes(view.distribution_figure)
        if "graph" in self._shown and view.graph_figure is not self._drawn_graph:
            self.graph_image.value = plots.png_bytes(view.graph_figure)
            self._drawn_graph = view.graph_figure

    def _order_changed(self, change: dict) -> None:
        self._show_timeline(change["new"])

    def _show_timeline(self, order_id: str | None) -> None:
        lang = self.lang
        order_id = (order_id or "").strip()
        if self.view is not None:
            self.view.timeline, self.view.timeline_order = None, None
        if not order_id:
            self.timeline_table.value = f"<p>{html.escape(t('explorer.timeline.pick', lang))}</p>"
            return
        timeline = order_timeline(self.data, order_id)
        if timeline.empty:
            text = t("explorer.timeline.unknown", lang, order=order_id)
            self.timeline_table.value = f"<p>{html.escape(text)}</p>"
            return
        if self.view is not None:
            self.view.timeline, self.view.timeline_order = timeline, order_id
        self.timeline_table.value = _table_html(timeline_display(timeline, lang))

    # --- findings -------------------------------------------------------------------------

    def _findings_html(self) -> str:
        lang, parts = self.lang, []
        for group in flow.FINDING_GROUPS:
            title = t(f"explorer.group.{group}", lang)
            roots = self.found.roots(group)
            items = "".join(
                f"<li>{html.escape(str(r.id))}: {html.escape(str(r.finding))}</li>"
                for r in roots.itertuples(index=False)
            )
            empty = f"<p>{html.escape(t('explorer.group.none', lang))}</p>"
            parts.append(
                f"<h4>{html.escape(title)}</h4>" + (f"<ul>{items}</ul>" if items else empty)
            )
        return "".join(parts)

    def show_finding(self, finding_id: str) -> pd.DataFrame:
        """Show the orders behind a finding (slowest first) and offer them for the timeline."""
        lang = self.lang
        if not finding_id:
            self.finding_table.value = ""
            return pd.DataFrame()
        rows = self.found.orders_of(self._orders, finding_id)
        stage = str(self.found.frame.loc[self.found.frame["id"] == finding_id, "stage"].iloc[0])
        text = t(
            "explorer.finding.orders", lang, orders=len(rows), shown=min(len(rows), FINDING_ORDERS)
        )
        table = _table_html(finding_orders_display(rows.head(FINDING_ORDERS), stage, lang))
        self.finding_table.value = f"<p>{html.escape(text)}</p>{table}"
        self.order.options = [str(o) for o in rows["order_id"].head(FINDING_ORDERS)]
        return rows

    def findings_panel(self):
        """The two groups of findings; pick one to list its orders, then one for its timeline."""
        import ipywidgets as w

        return w.VBox(
            [
                self._heading("explorer.heading.findings"),
                self.findings_list,
                self.finding,
                self.finding_table,
            ]
        )

    # --- export ------------------------------------------------------------------------

    def export_csv(self) -> list[Path]:
        """Write the current view's tables into the folder widget's folder."""
        return self._report(
            export_csv(self.update() if self.view is None else self.view, self.folder.value)
        )

    def export_png(self) -> list[Path]:
        """Write the current view's charts into the folder widget's folder."""
        return self._report(
            export_png(self.update() if self.view is None else self.view, self.folder.value)
        )

    def _report(self, paths: list[Path]) -> list[Path]:
        items = "".join(f"<li>{html.escape(str(p))}</li>" for p in paths)
        self.export_status.value = (
            f"<p>{html.escape(t('explorer.written', self.lang))}</p><ul>{items}</ul>"
        )
        return paths

    # --- panels for the notebook ------------------------------------------------------------

    def _heading(self, key: str):
        import ipywidgets as w

        return w.HTML(f"<h3>{html.escape(t(key, self.lang))}</h3>")

    def controls(self):
        """Date range, order type, stage, segment dimension and the filters."""
        import ipywidgets as w

        note = w.HTML(f"<small>{html.escape(t('explorer.all_when_empty', self.lang))}</small>")
        return w.VBox(
            [
                w.HBox([self.start, self.end, self.order_type]),
                w.HBox([self.stage, self.dimension]),
                note,
                w.HBox(list(self.filters.values())),
                self.summary,
            ]
        )

    def distribution_panel(self):
        """Stage-duration box plots per segment value."""
        import ipywidgets as w

        self._shown.add("distribution")
        self._render()
        return w.VBox([self._heading("explorer.heading.distribution"), self.distribution_image])

    def graph_panel(self):
        """The directly-follows graph of the selection."""
        import ipywidgets as w

        self._shown.add("graph")
        self._render()
        return w.VBox([self._heading("explorer.heading.graph"), self.graph_image])

    def variants_panel(self):
        """The most common variants of the selection."""
        import ipywidgets as w

        return w.VBox([self._heading("explorer.heading.variants"), self.variants_table])

    def orders_panel(self):
        """The slowest orders, and the timeline of the order picked."""
        import ipywidgets as w

        return w.VBox(
            [
                self._heading("explorer.heading.slowest"),
                self.slowest_table,
                self._heading("explorer.heading.timeline"),
                self.order,
                self.timeline_table,
            ]
        )

    def export_panel(self):
        """Folder, export buttons, and the paths written."""
        import ipywidgets as w

        return w.VBox(
            [
                self._heading("explorer.heading.export"),
                w.HBox([self.folder, self.export_csv_button, self.export_png_button]),
                self.export_status,
            ]
        )
