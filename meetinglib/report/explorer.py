"""The interactive bottleneck explorer: ipywidgets over the engine's flow tables.

Underneath are pure functions: ``ExplorerData.build`` prepares the week once on the
query engine (embedded DuckDB): a compact table of one row per order (segments, stage
hours, hours so far in a stage not yet left), the event log as an engine table, and,
for the orders created in the default date range, each case's transitions and its
variant, kept in the engine; ``compute_view(data, selection, lang)`` turns a
``Selection`` (the widget values) into a ``View`` of frames and figures with a few
aggregate queries (only aggregates and the few rows a table lists come back);
``export_csv`` / ``export_png`` write a view. ``Explorer`` builds the widgets and
recomputes the view whenever one changes.

Which orders a selection holds: those created in the date range (local calendar
days, both ends included), of the chosen order type, and whose warehouse, carrier,
region and channel are among the selected values (no value selected = all). Their
whole event logs are used, events before or after the range included, so the graph
and the variants show complete paths.

Stage durations: the box plots count the selected orders that completed the stage.
The slowest-orders table also lists orders still in the stage (started, not ended,
not cancelled), aged at the latest time stamp in the data (about when it was
exported), because a stuck order is often the slowest of all.

Speed: the graph is flow_engine's directly-follows graph (its one definition) of the
selected orders' transitions, and the variants flow.variants' figures, both summed
from the prepared per-transition and per-case tables; a selection reaching outside
the prepared date range prepares that range first. A change of the stage or the
segment dimension alone reuses the previous graph and variants. Drawing a chart takes
longer than any computation, so charts are drawn only for the panels on display.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import html
import itertools
import json
import math
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import matplotlib
import numpy as np
import pandas as pd
from ibis.backends import BaseBackend
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from meetinglib.analysis import flow, flow_engine
from meetinglib.core.csvsafe import to_csv as write_csv
from meetinglib.core.errors import EnvironmentProblem, ExplorerEngineError
from meetinglib.core.i18n import CodeLabel, code_name, t
from meetinglib.core.params import EngineParams, Params, load_params
from meetinglib.core.weeks import IsoWeek, Window
from meetinglib.data.dataset import WeekData, open_week, resolve_week
from meetinglib.data.engine import (
    MIN_MEMORY,
    US_PER_HOUR,
    EngineSettings,
    connect,
    data_memory_limit,
    frame_table,
    memory_limit_bytes,
    settings_of,
    shared,
)
from meetinglib.report import charts as plots
from meetinglib.report import flow_graph as graph
from meetinglib.report.flow_section import FINDINGS_FILE, FlowSection, segment_value

STAGES = tuple(flow_engine.EXPLORER_STAGES)
STAGE_MILESTONES = flow_engine.EXPLORER_STAGES
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
_QUANTILES = {"p10_h": 0.1, "q1_h": 0.25, "median_h": 0.5, "q3_h": 0.75, "p90_h": 0.9}
_NAMES = itertools.count()


# --- the data, prepared once -----------------------------------------------------------------


@dataclass
class Prepared:
    """The orders created in a date range, their transitions and per-case variants, kept
    in the engine."""

    start: dt.date | None  # first creation day covered; None: from the first order
    end: dt.date | None  # last creation day covered; None: to the last order
    # the rows of ExplorerData.orders created in the range, plus variant_number and
    # through_h of their case (flow_engine.case_variants_expr; NULL without an event)
    orders: ir.Table
    # flow_engine.transitions_expr rows with a target (case_id, source, target, hours),
    # first_of_case, and their order's created_at and segment columns
    steps: ir.Table
    codes: ir.Table  # the log's activity codes (flow_engine.activity_codes)
    variants: ir.Table  # variant (text), events, number (1, 2, ... in text order)
    log: ir.Table | None = None  # the event log of these orders

    def covers(self, selection: Selection) -> bool:
        """Whether every order the selection can hold was created in the range."""
        starts_ok = self.start is None or (
            selection.start is not None and selection.start >= self.start
        )
        ends_ok = self.end is None or (selection.end is not None and selection.end <= self.end)
        return starts_ok and ends_ok


@dataclass
class ExplorerData:
    """The week arranged on the engine for fast filtering; build with ``ExplorerData.build``."""

    con: BaseBackend
    orders: ir.Table  # flow_engine.order_stages_expr of every order (computed when read)
    log: ir.Table  # the event log (flow_engine.event_log_expr) of every order
    count: int  # number of orders
    values_of: dict[str, list[Any]]  # segment dimension -> its values present, in order
    tz: str
    as_of: pd.Timestamp | None  # the latest time in the data: age of orders still in a stage
    prepared: Prepared | None = field(default=None, repr=False)
    # opened from saved tables: loads the whole week when a selection reaches beyond them
    complete: Callable[[], ExplorerData] | None = field(default=None, repr=False)
    # computed views by selection (edges and variants by the orders selected), reused
    views: dict[Any, Any] = field(default_factory=dict, repr=False)
    # the tables the log comes from (orders, events, after_sales): prepare reads only the
    # chosen orders' part of them
    sources: dict[str, ir.Table] = field(default_factory=dict, repr=False)

    @classmethod
    def build(
        cls,
        orders: pd.DataFrame | ir.Table,
        events: pd.DataFrame | ir.Table | None = None,
        after_sales: pd.DataFrame | ir.Table | None = None,
        *,
        con: BaseBackend | None = None,
        tz: str | None = None,
        prepare: tuple[dt.date | None, dt.date | None] | None = None,
    ) -> ExplorerData:
        """Stage hours per order and the event log (events table, else milestones).

        Frames enter the engine as tables; ``tz`` (the platform timezone) defaults to
        that of a frame's created_at. ``prepare``: the creation days whose orders'
        transitions and variants are prepared at once (default: none until asked).
        """
        con = con or shared()
        if tz is None:
            zone = getattr(getattr(orders, "dtypes", {}).get("created_at"), "tz", None)
            tz = str(zone) if zone is not None else "UTC"
        if isinstance(orders, pd.DataFrame):
            # positions of a frame's rows, for masks over them (order_mask)
            orders = orders.assign(_row=np.arange(len(orders)))
        tables = {
            name: frame_table(frame) if isinstance(frame, pd.DataFrame) else frame
            for name, frame in (
                ("orders", orders),
                ("events", events),
                ("after_sales", after_sales),
            )
            if frame is not None
        }
        log = flow_engine.event_log_expr(
            tables["orders"], tables.get("events"), tables.get("after_sales")
        )
        raw = tables["orders"]
        present = [d for d in DIMENSIONS if d in raw.columns]
        milestones = [c for c in flow.MILESTONES if c in raw.columns]
        # One scan of the orders for their count, latest milestones and segment values
        # (a query each took twice as long at 12.8M orders).
        got = con.to_pandas(
            raw.aggregate(
                n=raw.count(),
                **{f"max_{c}": raw[c].max() for c in milestones},
                **{f"values_{d}": raw[d].cast("string").collect(distinct=True) for d in present},
            )
        ).iloc[0]
        as_of = _latest(con, [got[f"max_{c}"] for c in milestones], log)
        per_order = flow_engine.order_stages_expr(con, raw, tz, as_of)
        values_of: dict[str, list[Any]] = {}
        for d in present:
            found = got[f"values_{d}"]
            if found is not None and len(found):
                values_of[d] = _in_order(d, pd.Series(list(found)).dropna())
        if "created_at" in raw.columns and as_of is not None:
            values_of["weekday"] = list(flow.WEEKDAY_NAMES)
            values_of["hour"] = list(range(24))
        data = cls(con, per_order, log, int(got["n"]), values_of, tz, as_of, sources=tables)
        if prepare is not None:
            data.prepare(*prepare)
        return data

    @property
    def segments(self) -> dict[str, list[Any]]:
        """The segment dimensions the orders have, with their values."""
        return self.values_of

    def values(self, dimension: str) -> list:
        """The values of a segment dimension present in the data, in their natural order."""
        return list(self.values_of.get(dimension, []))

    def prepare(
        self,
        start: dt.date | None,
        end: dt.date | None,
        store: Callable[[str, ir.Table], ir.Table] | None = None,
    ) -> Prepared:
        """Transitions and variants of the orders created from ``start`` to ``end``, kept.

        Laid out for the widget changes: each order carries its variant (a number, see
        Prepared.variants) and each transition the columns a selection filters on, so
        that a change filters rows and aggregates them, with no join. ``store(name,
        expr)`` keeps the large tables, "orders" and "steps", and "log" once the cases are
        made of it (default: temporary tables of the engine; save_week writes them
        straight to Parquet).
        """
        given = store is not None
        if store is None:
            store = lambda _name, expr: _keep(self.con, expr)  # noqa: E731
        between = _created_between(self, start, end)
        con = self.con
        # kept in the engine: every widget change reads them, none recomputes them
        chosen = _keep(con, self.orders.filter(*between) if between else self.orders)
        log = _keep(con, self._log_of(chosen) if between else self.log)
        codes = _keep(con, flow_engine.activity_codes(log))
        cases = _keep(con, _case_sequences(con, log, codes))
        variants = _keep(con, _numbered_variants(con, cases, codes))
        per_case = cases.join(variants.select("sequence", "number"), "sequence").select(
            case_id=cases.case_id, variant_number=variants.number, through_h=cases.through_h
        )
        orders = store(
            "orders",
            chosen.left_join(per_case, chosen.order_id == per_case.case_id).drop("case_id"),
        )
        filters = ["created_at", *[f"seg_{d}" for d in ("order_type", *FILTER_DIMENSIONS)]]
        by = chosen.select(
            order_id=chosen.order_id, **{c: chosen[c] for c in filters if c in chosen.columns}
        )
        steps = store("steps", _case_steps(con, cases, by))
        if given:
            # the cases are made: the log's engine copy is of no further use than saving it
            log = store("log", log)
        self.prepared = Prepared(start, end, orders, steps, codes, variants.drop("sequence"), log)
        return self.prepared

    def _log_of(self, chosen: ir.Table | list[str]) -> ir.Table:
        """The event log of the ``chosen`` orders (rows of self.orders, or order numbers).

        Each source table is filtered to the chosen order numbers before the log is made
        of it, with their lowest and highest number as well: the same rows, but the
        engine then skips the Parquet row groups of other orders by their statistics
        instead of reading the whole log (tens of millions of events at scale).
        """
        tables = self.sources
        ids: Any = chosen if isinstance(chosen, list) else chosen.order_id
        if not tables or any(
            not t.order_id.type().is_string() for t in tables.values() if "order_id" in t.columns
        ):
            return self.log.filter(self.log.case_id.isin(ids))
        if isinstance(chosen, list):
            low, high = (min(chosen), max(chosen)) if chosen else (None, None)
        else:
            got = self.con.to_pandas(
                chosen.aggregate(low=chosen.order_id.min(), high=chosen.order_id.max())
            ).iloc[0]
            low, high = (None, None) if pd.isna(got["low"]) else (got["low"], got["high"])
        if low is None:
            return self.log.filter(ibis.literal(False))

        def only(table: ir.Table | None) -> ir.Table | None:
            if table is None:
                return None
            near = table.filter(table.order_id.between(str(low), str(high)))
            return near.filter(near.order_id.isin(ids))

        return flow_engine.event_log_expr(
            only(tables["orders"]), only(tables.get("events")), only(tables.get("after_sales"))
        )

    def prepared_for(self, selection: Selection) -> Prepared:
        """The prepared tables covering the selection's orders (prepared now if needed).

        Data opened from saved tables holds only their orders: a selection reaching
        beyond them loads the whole week first (``complete``), which takes a while.
        """
        if self.prepared is None or not self.prepared.covers(selection):
            self.load_whole()
            return self.prepare(selection.start, selection.end)
        return self.prepared

    def load_whole(self) -> bool:
        """Data opened from saved tables: every order and event of the week from now on
        (``complete``); returns whether it loaded anything."""
        if self.complete is None:
            return False
        whole, self.complete = self.complete(), None
        self.orders, self.log, self.count = whole.orders, whole.log, whole.count
        return True


def _keep(con: BaseBackend, expr: ir.Table) -> ir.Table:
    """An expression's rows kept by the engine as a temporary table (computed once)."""
    return con.create_table(f"explorer_{next(_NAMES)}", expr, temp=True)


# Events packed as one integer (time * width + code) while the activity codes fit in a
# width up to this: microseconds since 1970 times 1024 fit in 64 bits until the year 2255.
_MAX_PACKED_WIDTH = 1024


def _case_sequences(con: BaseBackend, log: ir.Table, codes: ir.Table) -> ir.Table:
    """Per case of an event log: case_id, sequence (its activity codes in log order),
    stamps (their times, microseconds since the epoch), events and through_h (hours from
    its first to its last event).

    flow_engine.case_variants_expr's cases with the variant as codes: a list of small
    integers is grouped and joined far faster than the text; _numbered_variants names
    each distinct sequence once. Each case's events are gathered unordered and its list
    sorted (by time, then code: log order), half the work of an ordered aggregation.
    DuckDB SQL (lists and lambdas).
    """
    coded = log.select(
        case_id=log.case_id.cast("string"),
        activity=log.activity.cast("string"),
        us=flow_engine.micros(con, log.timestamp),
    ).join(codes, "activity")
    top = con.execute(codes.code.max())
    width = 1 << max(int(top) if top is not None and pd.notna(top) else 0, 1).bit_length()
    if width <= _MAX_PACKED_WIDTH:
        # Each event as one integer, time * width + code: the same order as (time, code),
        # and lists of integers are gathered and sorted faster than lists of pairs (at
        # 5.3M events of 1M cases, 2.3 s against 3.7 s). Codes are 0 or more, so a time
        # before 1970 still decodes: its remainder is taken up to a positive one.
        item = f"us * {width} + code"
        code = f"CAST(((e % {width}) + {width}) % {width} AS BIGINT)"
        stamp = f"(e - ((e % {width}) + {width}) % {width}) // {width}"
    else:
        item, code, stamp = "struct_pack(us := us, code := code)", "e.code", "e.us"
    query = f"""
        SELECT case_id, sequence, stamps, events,
            CAST(stamps[-1] - stamps[1] AS DOUBLE) / {US_PER_HOUR} AS through_h
        FROM (
            SELECT case_id,
                list_transform(ev, lambda e: {code}) AS sequence,
                list_transform(ev, lambda e: {stamp}) AS stamps,
                events
            FROM (
                SELECT case_id, list_sort(list({item})) AS ev,
                    CAST(count(*) AS BIGINT) AS events
                FROM ({ibis.to_sql(coded.select("case_id", "us", "code"), dialect="duckdb")})
                GROUP BY case_id
            )
        )
    """
    return _view(con, query)


def _view(con: BaseBackend, query: str) -> ir.Table:
    """A DuckDB query as a table (a temporary view; Ibis's con.sql fails on duckdb 2.0)."""
    if con.name != "duckdb":
        raise ValueError(f"the explorer's tables are prepared on DuckDB, not {con.name}")
    name = f"explorer_{next(_NAMES)}"
    con.raw_sql(f'CREATE OR REPLACE TEMPORARY VIEW "{name}" AS {query}')
    return con.table(name)


def _case_steps(con: BaseBackend, cases: ir.Table, by: ir.Table) -> ir.Table:
    """The transitions of _case_sequences' cases with their order's columns ``by`` (keyed
    by order_id): case_id, source, target (activity codes), hours, first_of_case (the
    first time the case takes that transition), then by's columns.

    flow_engine.transitions_expr's rows with a target (the tests compare the graphs),
    read off each case's ordered codes and times: the events were sorted once, for the
    cases, so no window sorts them again. DuckDB SQL (lists and lambdas).
    """
    extra = [c for c in by.columns if c != "order_id"]
    # Each transition as one number, source * 2^32 + target (codes are row numbers of the
    # activities, far below 2^31): finding the first equal one compares integers, not
    # two-element lists (about a quarter of the query's time at 4.3M transitions).
    pairs = (
        "list_transform(range(1, len(sequence)), "
        "lambda j: CAST(sequence[j] AS BIGINT) * 4294967296 + sequence[j + 1])"
    )
    query = f"""
        SELECT s.case_id, s.sequence[s.i] AS source, s.sequence[s.i + 1] AS target,
            CAST(s.stamps[s.i + 1] - s.stamps[s.i] AS DOUBLE) / {US_PER_HOUR} AS hours,
            list_position(s.pairs, s.pairs[s.i]) = s.i AS first_of_case,
            {", ".join(f'b."{c}"' for c in extra)}
        FROM (
            SELECT case_id, sequence, stamps, {pairs} AS pairs,
                unnest(range(1, len(sequence))) AS i
            FROM ({ibis.to_sql(cases.select("case_id", "sequence", "stamps"), dialect="duckdb")})
        ) AS s
        JOIN ({ibis.to_sql(by, dialect="duckdb")}) AS b ON s.case_id = b.order_id
    """
    return _view(con, query)


def _numbered_variants(con: BaseBackend, cases: ir.Table, codes: ir.Table) -> ir.Table:
    """The variants of _case_sequences' cases: sequence, variant (the activities joined
    as flow.variants joins them), events, number (0, 1, ... in the order of the text)."""
    names = con.to_pandas(codes)
    activity = {int(c): str(a) for c, a in zip(names["code"], names["activity"], strict=True)}
    named = cases.group_by("sequence").aggregate(events=cases.events.max())
    named = named.mutate(
        variant=named.sequence.map(lambda code: code.substitute(activity, else_="")).join(
            flow.VARIANT_SEPARATOR
        )
    )
    # numbered in the order of their text: ties sort as by the text
    in_order = ibis.window(order_by=named.variant)
    return named.select(
        "sequence", "variant", "events", number=ibis.row_number().over(in_order).cast("int64")
    )


def _in_order(dimension: str, values: pd.Series) -> list[Any]:
    if dimension == "weekday":
        present = set(values)
        return [d for d in flow.WEEKDAY_NAMES if d in present]
    if dimension == "hour":
        return sorted(int(v) for v in values)
    return sorted(str(v) for v in values)


def _latest(con: BaseBackend, milestones: list[Any], log: ir.Table) -> pd.Timestamp | None:
    """The latest time stamp of the orders' ``milestones`` (the latest of each) and the
    log: the data's "now"."""
    stamps = [*milestones, con.execute(log.timestamp.max())]
    known = [pd.Timestamp(s) for s in stamps if s is not None and pd.notna(s)]
    return max(known) if known else None


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

Chosen = Selection | np.ndarray  # a selection, or a mask over the orders (order_mask)


def _day_start(day: dt.date, tz: str) -> pd.Timestamp:
    return pd.Timestamp(day).tz_localize(tz, nonexistent="shift_forward")


def _created_between(
    data: ExplorerData, start: dt.date | None, end: dt.date | None, rows: ir.Table | None = None
) -> list[Any]:
    at = (data.orders if rows is None else rows).created_at
    out = []
    if start is not None:
        out.append(at >= flow_engine.instant(_day_start(start, data.tz)))
    if end is not None:
        out.append(at < flow_engine.instant(_day_start(end + dt.timedelta(days=1), data.tz)))
    return out


def _predicates(
    data: ExplorerData, selection: Selection, rows: ir.Table | None = None
) -> list[Any]:
    """The selection as filters on ``rows`` (default data.orders)."""
    rows = data.orders if rows is None else rows
    out = _created_between(data, selection.start, selection.end, rows)
    wanted: dict[str, Sequence[str]] = {
        d: getattr(selection, d) for d in FILTER_DIMENSIONS if getattr(selection, d)
    }
    if selection.order_type != "all":
        wanted["order_type"] = (selection.order_type,)
    for dim, values in wanted.items():
        if dim not in data.values_of:
            out.append(ibis.literal(False))
        else:
            out.append(rows[f"seg_{dim}"].isin([str(v) for v in values]))
    return out


def selected(data: ExplorerData, chosen: Chosen) -> ir.Table:
    """The rows of data.orders a selection (or a mask from order_mask) holds."""
    if isinstance(chosen, Selection):
        rows = data.prepared_for(chosen).orders
        preds = _predicates(data, chosen, rows)
        return rows.filter(*preds) if preds else rows
    ids = _order_ids(data)[np.asarray(chosen, dtype=bool)]
    wanted = ibis.memtable(pd.DataFrame({"order_id": pd.Series(ids, dtype="str")}))
    return data.orders.filter(data.orders.order_id.isin(wanted.order_id))


def _positions(data: ExplorerData) -> list[Any]:
    """The order of the orders' positions: rows of a frame, else order numbers."""
    return ["_row"] if "_row" in data.orders.columns else ["order_id"]


def _order_ids(data: ExplorerData) -> np.ndarray:
    """Every order number, by position (the positions order_mask uses)."""
    by = _positions(data)
    columns = ["order_id", *[c for c in by if c != "order_id"]]
    frame = data.con.to_pandas(data.orders.select(*columns).order_by(by))
    return frame["order_id"].to_numpy(dtype=object)


def order_mask(data: ExplorerData, selection: Selection) -> np.ndarray:
    """Per order, by position (the rows of an orders frame, else order numbers): whether
    the selection holds it."""
    preds = _predicates(data, selection)
    hit = ibis.and_(*preds) if preds else ibis.literal(True)
    ordered = data.orders.select(hit=hit, **{c: data.orders[c] for c in _positions(data)})
    got = data.con.to_pandas(ordered.order_by(_positions(data)))["hit"]
    return got.fillna(False).to_numpy(dtype=bool)


def stage_distribution(
    data: ExplorerData, chosen: Chosen, stage: str, dimension: str
) -> pd.DataFrame:
    """Per segment value: completed orders and their stage hours P10, quartiles, P90, mean.

    Sorted by median, slowest first (ties by value); values without a completed order
    are left out.
    """
    if dimension not in data.values_of:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in DISTRIBUTION_COLUMNS})
    rows = selected(data, chosen)
    hours, seg = rows[f"{stage}_h"], rows[f"seg_{dimension}"]
    done = rows.filter(hours.notnull(), seg.notnull())
    hours = done[f"{stage}_h"]
    per = done.group_by(value=done[f"seg_{dimension}"]).aggregate(
        orders=done.count().cast("int64"),
        **{k: hours.quantile(q).cast("float64") for k, q in _QUANTILES.items()},
        mean_h=hours.mean().cast("float64"),
    )
    out = data.con.to_pandas(per.order_by([ibis.desc("median_h"), "value"]))
    out["value"] = pd.Series(
        [int(v) if dimension == "hour" else v for v in out["value"]], dtype=object
    )
    return out[DISTRIBUTION_COLUMNS].reset_index(drop=True)


def _prepared_rows(data: ExplorerData, chosen: Chosen, which: str) -> tuple[Prepared, ir.Table]:
    """The prepared orders or steps (``which``) of the selected orders."""
    if isinstance(chosen, Selection):
        prepared = data.prepared_for(chosen)
        rows = getattr(prepared, which)
        preds = _predicates(data, chosen, rows)
        return prepared, rows.filter(*preds) if preds else rows
    prepared = data.prepared_for(Selection())
    rows = getattr(prepared, which)
    ids = selected(data, chosen).select("order_id")
    key = rows.case_id if which == "steps" else rows.order_id
    return prepared, rows.filter(key.isin(ids.order_id))


def edges_of(data: ExplorerData, chosen: Chosen) -> pd.DataFrame:
    """The directly-follows graph of the selected orders' events, as flow_engine's.

    The same figures as flow_engine.edges_expr (its one definition; the tests compare
    them), aggregated in one pass over the prepared steps: cases counts each case's
    first time on the edge, the median and P90 are DuckDB's quantile_cont (the same
    linear interpolation at q·(n−1) as flow_engine's ranks).
    """
    prepared, steps = _prepared_rows(data, chosen, "steps")
    per = steps.group_by(["source", "target"]).aggregate(
        cases=steps.first_of_case.sum().cast("int64"),
        count=steps.count().cast("int64"),
        mean_h=steps.hours.mean().cast("float64"),
        q=steps.hours.quantile([0.5, 0.9]),
    )
    got = data.con.to_pandas(per)
    names = data.con.to_pandas(prepared.codes).set_index("code")["activity"]
    quantiles = [list(q) if q is not None else [math.nan, math.nan] for q in got["q"]]
    out = pd.DataFrame(
        {
            "source": got["source"].map(names),
            "target": got["target"].map(names),
            "cases": got["cases"],
            "count": got["count"],
            "mean_h": got["mean_h"],
            "median_h": [q[0] for q in quantiles],
            "p90_h": [q[1] for q in quantiles],
        },
        columns=flow_engine.DFG_COLUMNS,
    )
    return flow_engine.finish_edges(out)


def variants_of(data: ExplorerData, chosen: Chosen, top: int = TOP_VARIANTS) -> pd.DataFrame:
    """The ``top`` rows of flow.variants of the selected orders' events (as
    flow_engine.variants_on), from the prepared orders' variant numbers."""
    prepared, orders = _prepared_rows(data, chosen, "orders")
    cases = orders.filter(orders.variant_number.notnull())
    per = cases.group_by("variant_number").aggregate(
        cases=cases.count().cast("int64"),
        median_h=cases.through_h.quantile(0.5).cast("float64"),
    )
    per = per.mutate(all_cases=per.cases.sum().over(ibis.window()))
    ranked = per.order_by([ibis.desc("cases"), "variant_number"])
    ranked = ranked.limit(top) if top is not None else ranked
    names = prepared.variants
    frame = data.con.to_pandas(
        ranked.join(names, ranked.variant_number == names.number).order_by(
            [ibis.desc("cases"), "variant_number"]
        )
    )
    all_cases = int(frame["all_cases"].iloc[0]) if len(frame) else 0
    return flow_engine.variant_frame(frame, all_cases)


def slowest_orders(
    data: ExplorerData, chosen: Chosen, stage: str, top: int = TOP_ORDERS
) -> pd.DataFrame:
    """The ``top`` selected orders with the most hours in a stage, completed or still in it.

    hours = end - start for completed orders, as_of - start for orders still in the
    stage (open = True). Ties by order number.
    """
    rows = selected(data, chosen)
    done, still = rows[f"{stage}_h"], rows[f"{stage}_open_h"]
    hours = done.fill_null(still)
    columns: dict[str, Any] = {"order_id": rows.order_id}
    for col in ("order_type", "warehouse", "carrier", "region", "channel"):
        name = f"seg_{col}"
        columns[col] = rows[name] if name in rows.columns else ibis.null("string")
    picked = rows.filter(hours.notnull()).select(
        **columns, created_at=rows.created_at, hours=hours, open=done.isnull()
    )
    out = data.con.to_pandas(picked.order_by([ibis.desc("hours"), "order_id"]).limit(top))
    out["created_at"] = out["created_at"].dt.tz_convert(data.tz)
    for col in ("order_type", "warehouse", "carrier", "region", "channel"):
        out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out[SLOWEST_COLUMNS].reset_index(drop=True)


def order_timeline(data: ExplorerData, order_id: str) -> pd.DataFrame:
    """One order's events in time order: activity, timestamp, hours since the previous
    event (gap_h, NaN for the first) and since the first event (elapsed_h).

    Empty when the order has no event in the loaded data.
    """
    key = ("timeline", str(order_id), data.complete is None)
    return _once(data, key, lambda: _timeline(data, order_id))


def _timeline(data: ExplorerData, order_id: str) -> pd.DataFrame:
    log = data.log
    rows = data.con.to_pandas(log.filter(log.case_id == str(order_id)))
    if rows.empty:
        return pd.DataFrame(
            {
                "activity": pd.Series(dtype="str"),
                "timestamp": pd.Series(dtype="datetime64[ns]"),
                "gap_h": pd.Series(dtype="float64"),
                "elapsed_h": pd.Series(dtype="float64"),
            }
        )
    rank = {a: i for i, a in enumerate(flow.activity_order(list(rows["activity"])))}
    rows = rows.assign(_rank=rows["activity"].map(rank))
    rows = rows.sort_values(["timestamp", "_rank"], kind="stable").reset_index(drop=True)
    stamps = rows["timestamp"].dt.tz_convert(data.tz)
    us = ((stamps - stamps.iloc[0]) // pd.Timedelta(microseconds=1)).to_numpy(dtype=np.int64)
    elapsed = us / 3_600_000_000
    gaps = np.concatenate(([np.nan], np.diff(us) / 3_600_000_000))
    return pd.DataFrame(
        {
            "activity": rows["activity"].astype("str").to_numpy(),
            "timestamp": stamps,
            "gap_h": gaps,
            "elapsed_h": elapsed,
        }
    )


def _counts(data: ExplorerData, selection: Selection) -> tuple[int, int, int, float]:
    """Selected orders, of them completed / still in the stage, median of the completed."""
    rows = selected(data, selection)
    done, still = rows[f"{selection.stage}_h"], rows[f"{selection.stage}_open_h"]
    got = data.con.to_pandas(
        rows.aggregate(
            n=rows.count(),
            completed=done.count(),
            open=still.count(),
            median=done.quantile(0.5).cast("float64"),
        )
    ).iloc[0]
    median = float(got["median"]) if pd.notna(got["median"]) else math.nan
    return int(got["n"]), int(got["completed"]), int(got["open"]), median


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
    # people's names for the data's codes in the charts (params ``labels``)
    label: CodeLabel | None = field(default=None, repr=False, compare=False)

    @property
    def distribution_figure(self) -> Figure:
        """Box plots of the stage hours per segment value."""
        if "distribution" not in self.figures:
            self.figures["distribution"] = distribution_chart(
                self.distribution, self.selection, self.overall_median_h, self.lang, self.label
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
    label: CodeLabel | None = None,
) -> View:
    """All frames of a selection (figures are drawn when first asked for).

    With ``previous`` selecting the same orders, its graph and variants are reused. The
    frames hold the codes; the figures name them with ``label`` (e.g. ``Params.label``).
    """
    stage, dimension = selection.stage, selection.dimension
    chosen = tuple(getattr(selection, name) for name in ORDER_FILTERS)
    # each part is computed once per combination of the widgets it depends on
    orders, completed, in_stage, overall = _once(
        data, ("counts", chosen, stage), lambda: _counts(data, selection)
    )
    distribution = _once(
        data,
        ("distribution", chosen, stage, dimension),
        lambda: stage_distribution(data, selection, stage, dimension),
    )
    slowest = _once(
        data, ("slowest", chosen, stage, top), lambda: slowest_orders(data, selection, stage, top)
    )
    figures: dict[str, Figure] = {}
    if previous is not None and selection.same_orders(previous.selection):
        edges, variants = previous.edges, previous.variants
        if "graph" in previous.figures and previous.lang == lang:
            figures["graph"] = previous.figures["graph"]
    else:
        edges, variants = _once(
            data,
            ("graph", chosen),
            lambda: (edges_of(data, selection), variants_of(data, selection)),
        )
    return View(
        selection=selection,
        orders=orders,
        completed=completed,
        in_stage=in_stage,
        distribution=distribution,
        edges=edges,
        variants=variants,
        slowest=slowest,
        overall_median_h=overall,
        lang=lang,
        figures=figures,
        label=label,
    )


def _once(data: ExplorerData, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    """A part of a view computed once per key (the widget values it depends on)."""
    if key not in data.views:
        data.views[key] = compute()
    return data.views[key]


# --- figures -----------------------------------------------------------------------------------


def stage_name(stage: str, lang: str) -> str:
    """A stage for display: 'Shipped → delivered'."""
    key = f"flow.stage.{stage}" if stage in flow.STAGES else f"explorer.stage.{stage}"
    return t(key, lang)


def distribution_chart(
    distribution: pd.DataFrame,
    selection: Selection,
    overall_median_h: float,
    lang: str,
    label: CodeLabel | None = None,
) -> Figure:
    """Horizontal box plots of stage hours per segment value, slowest on top (values named
    by ``label``, see flow_section.segment_value).

    The title names the slowest value among those with at least MIN_TITLE_ORDERS
    orders (a value of two orders is slowest by chance); the dotted line is the median
    of all the selected orders.
    """
    stage = stage_name(selection.stage, lang)
    if distribution.empty:
        return plots.message(t("explorer.dist.empty", lang, stage=stage), lang=lang)
    dim = selection.dimension
    names = [
        f"{segment_value(dim, v, lang, label)} (n={n:,})"
        for v, n in zip(distribution["value"], distribution["orders"], strict=True)
    ]
    enough = distribution[distribution["orders"] >= MIN_TITLE_ORDERS]
    slow = (enough if len(enough) else distribution).iloc[0]
    title = t(
        "explorer.dist.title",
        lang,
        stage=stage,
        dimension=t(f"flow.dim.{dim}", lang),
        value=segment_value(dim, slow["value"], lang, label),
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


class ExportFolderError(EnvironmentProblem):
    """The export folder cannot take the files: it is a file, or it cannot be made or
    written (no permission, a read-only or full disk, a place where no folder can be)."""

    def __init__(self, folder: Path, reason: str = ""):
        """``reason``: what the system said; empty when ``folder`` is a file."""
        self.folder, self.reason = folder, reason
        super().__init__(
            folder,
            f"cannot write the export into this folder ({reason})"
            if reason
            else "the export folder is a file, not a folder",
            "Choose a folder this user can write to (it is created when missing).",
        )

    def text(self, lang: str = "en") -> str:
        """The message in ``lang``, for the export's status line."""
        if not self.reason:
            return t("explorer.export_not_folder", lang, folder=str(self.folder))
        return t("explorer.export_failed", lang, folder=str(self.folder), reason=self.reason)


@contextlib.contextmanager
def _writing_into(folder: Path) -> Iterator[None]:
    """``folder`` made if missing; any failure to make it or write into it an
    ExportFolderError naming the folder (instead of a bare OSError)."""
    if folder.exists() and not folder.is_dir():
        raise ExportFolderError(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        yield
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename and Path(exc.filename) != folder else ""
        raise ExportFolderError(folder, f"{exc.strerror or type(exc).__name__}{where}") from None


def export_csv(view: View, folder: str | Path, stamp: str | None = None) -> list[Path]:
    """Write the view's tables as CSV (UTF-8) into ``folder``; returns the paths.

    Files: <stamp>-selection.csv, -stage_distribution.csv, -flow_edges.csv,
    -variants.csv, -slowest_orders.csv and, with a drilled-down order, -timeline.csv.
    A folder that cannot take them: ExportFolderError.
    """
    folder = Path(folder)
    with _writing_into(folder):
        return _export_csv(view, folder, stamp)


def _export_csv(view: View, folder: Path, stamp: str | None) -> list[Path]:
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
    """Write the view's charts as PNG into ``folder``; returns the paths. A folder that
    cannot take them: ExportFolderError."""
    folder = Path(folder)
    with _writing_into(folder):
        return _export_png(view, folder, stamp)


def _export_png(view: View, folder: Path, stamp: str | None) -> list[Path]:
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


def slowest_display(
    slowest: pd.DataFrame, stage: str, lang: str, label: CodeLabel | None = None
) -> pd.DataFrame:
    """The slowest-orders table with translated headings and values, the codes of
    warehouse, carrier, region and channel named by ``label`` (e.g. ``Params.label``)."""
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
        out[t(f"flow.dim.{col}", lang)] = [
            "–" if pd.isna(v) else code_name(label, col, v, lang)
            for v in slowest[col].astype(object)
        ]
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
    weeks: int = 1  # baseline weeks the findings compare with (their sentences say so)
    # per root finding, its orders (orders_of) when computed beforehand, or the Parquet
    # file holding them (read when first asked for)
    stored: dict[str, pd.DataFrame | Path] = field(default_factory=dict, repr=False)
    # findings whose stored orders are their slowest only (the saved tables keep the
    # FINDING_ORDERS the explorer lists), with the number of orders behind each
    counts: dict[str, int] = field(default_factory=dict, repr=False)
    # people's names for the segments' codes in the sentences and options (params
    # ``labels``); the frame's value columns keep the codes
    label: CodeLabel | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of_week(cls, data: WeekData, lang: str) -> Findings:
        """The findings of the data report's "Where the time goes" for a loaded week."""
        section = FlowSection(data, lang)
        weeks = section.baseline_weeks
        baseline = Window(weeks[0].start, weeks[-1].end) if weeks else None
        return cls(
            section.bottlenecks, data.window, baseline, max(len(weeks), 1), label=section.label
        )

    @classmethod
    def of_orders(
        cls,
        orders: pd.DataFrame,
        lang: str,
        baseline_weeks: int = 6,
        label: CodeLabel | None = None,
    ) -> Findings:
        """Findings for an orders frame: the last complete ISO week of its creation times
        against up to ``baseline_weeks`` weeks before it (the first, partial week left out);
        segment values named by ``label`` in the sentences."""
        created = orders["created_at"].dropna()
        if created.empty:
            return cls(
                pd.DataFrame(columns=flow.FINDING_COLUMNS),
                Window(created.min(), created.max()),
                None,
                label=label,
            )
        tz = str(created.dt.tz) if created.dt.tz is not None else "UTC"
        last = IsoWeek.containing(created.max()).previous()
        first = IsoWeek.containing(created.min()).next()
        count = min(baseline_weeks, max((last.monday - first.monday).days // 7, 0))
        weeks = [last.shift(-k).window(tz) for k in range(count, -1, -1)]
        if len(weeks) < 2:
            return cls(pd.DataFrame(columns=flow.FINDING_COLUMNS), weeks[-1], None, label=label)
        found = flow.week_findings(orders, weeks, lang=lang, label=label)
        baseline = Window(weeks[0].start, weeks[-2].end)
        return cls(found, weeks[-1], baseline, len(weeks) - 1, label=label)

    def _stored(self, finding_id: str) -> pd.DataFrame:
        """A finding's orders computed beforehand (read from their file the first time)."""
        rows = self.stored[finding_id]
        if isinstance(rows, Path):
            rows = self._read_orders(rows, finding_id)
            self.stored[finding_id] = rows
        return rows

    def _read_orders(self, path: Path, finding_id: str) -> pd.DataFrame:
        """A finding's orders from a file of save_prepared (several findings' slowest
        orders, _FINDING_ORDER_COLUMNS with _finding and _at, their place), as orders_of
        gives them."""
        got = pd.read_parquet(path, filters=[("_finding", "==", finding_id)])
        got = got.sort_values("_at", kind="stable")
        stage = str(self.frame.loc[self.frame["id"] == finding_id, "stage"].iloc[0])
        a, b = flow.STAGES[stage]
        zone = self.week.start.tz
        return pd.DataFrame(
            {
                "order_id": got["order_id"],
                a: got["start_at"].dt.tz_convert(zone),
                b: got["end_at"].dt.tz_convert(zone),
                "hours": got["hours"],
                "open": got["open"],
            }
        ).reset_index(drop=True)

    def in_language(self, lang: str) -> Findings:
        """The same findings with their sentences (finding, driven_by) in ``lang``."""
        rows = self.frame.to_dict("records")
        roots = {r["id"]: r for r in rows if r["id"]}
        frame = self.frame.copy()
        label = self.label
        if rows:
            frame["finding"] = [flow.finding_sentence(r, self.weeks, lang, label) for r in rows]
            frame["driven_by"] = [
                flow.finding_segment(pd.Series(roots[r["folded_into"]]), lang, label)
                if r["folded_into"]
                else ""
                for r in rows
            ]
        return Findings(
            frame, self.week, self.baseline, self.weeks, self.stored, self.counts, label
        )

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
                segment = flow.finding_segment(row, lang, self.label)
                out.append((f"{tag} {row.id}: {stage} {segment}", row.id))
        return out

    def orders_of(
        self,
        orders: pd.DataFrame | ir.Table,
        finding_id: str,
        con: BaseBackend | None = None,
        tz: str | None = None,
    ) -> pd.DataFrame:
        """The orders behind a finding, slowest first (flow.finding_orders).

        New this week: the segment's orders whose stage started in the week; usual: those
        of the baseline weeks. Computed from ``orders`` unless stored whole beforehand.
        """
        if finding_id in self.stored and finding_id not in self.counts:
            return self._stored(finding_id).copy()
        row = self.frame[self.frame["id"] == finding_id]
        if row.empty:
            return pd.DataFrame(columns=["order_id", "hours", "open"])
        finding = next(row.itertuples(index=False))
        window = self.week if finding.group == "new" or self.baseline is None else self.baseline
        if isinstance(orders, pd.DataFrame):
            return flow.finding_orders(orders, finding, window)
        zone = tz or str(self.week.start.tz)
        return flow_engine.finding_orders_on(con or shared(), orders, finding, window, zone)

    def slowest(
        self,
        orders: pd.DataFrame | ir.Table,
        finding_id: str,
        con: BaseBackend | None = None,
        tz: str | None = None,
    ) -> tuple[pd.DataFrame, int]:
        """The FINDING_ORDERS slowest orders behind a finding (orders_of's first rows) and
        the number of orders behind it: from what is stored when it is, so that a saved
        finding lists its orders without computing them all."""
        if finding_id in self.stored:
            rows = self._stored(finding_id)
            return rows.head(FINDING_ORDERS).copy(), self.counts.get(finding_id, len(rows))
        rows = self.orders_of(orders, finding_id, con, tz)
        return rows.head(FINDING_ORDERS), len(rows)


_FINDING_ORDER_COLUMNS = ("order_id", "start_at", "end_at", "hours", "open")


def finding_orders_expr(
    con: BaseBackend, orders: ir.Table, found: Findings, ids: Sequence[str], tz: str
) -> ir.Table:
    """The orders of several findings as one table: _finding (its id) and
    _FINDING_ORDER_COLUMNS, in no order.

    The rows of flow_engine.finding_orders_on for each finding (the tests compare them),
    with the stage's start and end as start_at and end_at, so that one query writes
    every finding's orders.
    """
    parts = []
    frame = found.frame
    chosen = [next(frame[frame["id"] == i].itertuples(index=False)) for i in ids]
    dimensions = {f.dimension for f in chosen} | {
        f.dimension_2 for f in chosen if isinstance(f.dimension_2, str)
    }
    # the segment columns once for all findings (weekday and hour need a lookup query)
    table = flow_engine.with_segments(con, orders, tz, sorted(dimensions))
    for finding_id, finding in zip(ids, chosen, strict=True):
        window = found.week if finding.group == "new" or found.baseline is None else found.baseline
        a, b = flow.STAGES[str(finding.stage)]
        segment = {finding.dimension: finding.value}
        if isinstance(finding.dimension_2, str):
            segment[finding.dimension_2] = finding.value_2
        rows = table.filter(
            (table[a] >= flow_engine.instant(window.start)),
            (table[a] < flow_engine.instant(window.end)),
            *[table[f"seg_{d}"] == flow_engine.segment_literal(d, v) for d, v in segment.items()],
        )
        end = flow_engine.instant(window.end)
        leave = rows[b].fill_null(end)
        if "cancelled_at" in rows.columns:
            leave = ibis.least(leave, rows.cancelled_at.fill_null(end))
        hours = ibis.greatest(flow_engine.hours_of(con, rows[a], ibis.least(leave, end)), 0.0)
        parts.append(
            rows.select(
                _finding=ibis.literal(str(finding_id)),
                order_id=rows.order_id.cast("string"),
                start_at=rows[a],
                end_at=rows[b],
                hours=hours,
                open=leave >= end,
            )
        )
    out = parts[0]
    for part in parts[1:]:
        out = out.union(part)
    return out


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


# --- the prepared tables, saved beside the week's handouts -----------------------------------

# Bump when the saved tables change shape: older folders are then prepared again.
PREPARED_FORMAT = 5
PREPARED_FOLDER = "explorer_data"
# the data report's findings, written beside it (FlowSection.export)
REPORT_FINDINGS = FINDINGS_FILE
_SAVED_TABLES = ("orders", "log", "steps", "codes", "variants")
# the events of the orders the findings list that were created outside the prepared
# range (the saved log is log.parquet and this file, when there is one)
_LISTED_LOG = "log_listed.parquet"
# the slowest orders of each finding (save_prepared)
_FINDING_ORDERS_FILE = "finding_orders.parquet"
_VIEW_FRAMES = ("distribution", "edges", "variants", "slowest")


def prepared_folder(params: Params, week: IsoWeek | str) -> Path:
    """Where a week's prepared explorer tables are kept: <output_dir>/<week>/explorer_data."""
    return Path(params.output_dir) / str(week) / PREPARED_FOLDER


def source_fingerprint(params: Params, week: IsoWeek | str) -> str:
    """sha256 (hex) of what the prepared tables are computed from: the table format, the
    week, every parameter, and the name, size and modification time of each source file."""
    files: list[list[Any]] = []
    where = params.source.path
    # outputs kept inside the source folder are no input (saving these tables adds some)
    outputs = Path(params.output_dir).resolve()
    if where is not None and Path(where).exists():
        found = sorted(Path(where).rglob("*")) if Path(where).is_dir() else [Path(where)]
        for path in found:
            if path.is_file() and not path.resolve().is_relative_to(outputs):
                stat = path.stat()
                files.append([str(path), stat.st_size, stat.st_mtime_ns])
    parts = {
        "format": PREPARED_FORMAT,
        "week": str(week),
        "params": params.model_dump(mode="json"),
        "files": files,
    }
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


LATEST_WEEK_FILE = ".explorer_latest_week.json"


def latest_week(params: Params) -> IsoWeek:
    """The latest complete week of the data (dataset.resolve_week), remembered per
    data and params in <output_dir>/.explorer_latest_week.json: finding it reads every
    creation time of the source, seconds on a large one."""
    key = source_fingerprint(params, "")
    path = Path(params.output_dir) / LATEST_WEEK_FILE
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("fingerprint") == key:
            return IsoWeek.parse(str(saved["week"]))
    except (OSError, ValueError, KeyError, AttributeError):
        pass  # not remembered (or unreadable): found again below
    week = resolve_week(params, None)
    with contextlib.suppress(OSError):  # a read-only folder only costs the next start
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"fingerprint": key, "week": str(week)}), encoding="utf-8")
    return week


def _stamp_text(stamp: pd.Timestamp | None) -> str | None:
    return None if stamp is None else stamp.isoformat()


def _stamp_of(text: str | None) -> pd.Timestamp | None:
    return None if text is None else pd.Timestamp(text)


def save_prepared(
    data: ExplorerData,
    found: Findings,
    view: View,
    folder: str | Path,
    fingerprint: str,
    top: int = TOP_ORDERS,
    orders: ir.Table | None = None,
    written: Path | None = None,
) -> Path:
    """Write the prepared tables, the findings with their orders and the first view into
    ``folder``.

    Tables as Parquet (written by the engine, no rows through pandas), the rest in
    meta.json; the folder is replaced as a whole, so a reader never sees half of it.
    Root findings whose orders are not in ``found.stored`` get them from ``orders``
    (the engine's orders table; one query for all of them). The event log saved holds
    the prepared orders' events and those of the orders each finding lists.
    ``written``: a temporary folder beside ``folder`` already holding some of the tables
    (save_week's preparation writes the large ones there straight away).
    """
    prepared = data.prepared
    if prepared is None or prepared.log is None:
        raise ValueError("nothing prepared to save: call ExplorerData.prepare first")
    folder = Path(folder)
    temp = written if written is not None else _temp_folder(folder)
    con = data.con
    roots = (
        [str(i) for i in found.frame.loc[found.frame["rank"] > 0, "id"]] if len(found.frame) else []
    )
    # The findings' orders as the explorer lists them: each finding's FINDING_ORDERS
    # slowest and its number of orders (a finding of the usual weeks holds hundreds of
    # thousands at a million orders a week, which the explorer never shows): those
    # computed before as frames, the others by one query.
    parts = []
    counts: dict[str, int] = {}
    for finding_id in list(found.stored):
        rows, counts[finding_id] = found.slowest(pd.DataFrame(), finding_id)
        renamed = rows.rename(
            columns=dict(zip(rows.columns[1:3], ("start_at", "end_at"), strict=True))
        )
        parts.append(renamed.assign(_finding=finding_id, _at=np.arange(len(rows))))
    missing = [r for r in roots if r not in found.stored]
    if missing and orders is not None:
        slowest, found_counts = _slowest_of_findings(
            con, finding_orders_expr(con, orders, found, missing, data.tz)
        )
        parts.append(slowest)
        # a finding without an order in the week has no row in the query's result
        counts.update({r: found_counts.get(r, 0) for r in missing})
    stored = {finding_id: _FINDING_ORDERS_FILE for finding_id in counts}
    listed: set[str] = set()
    if parts:
        every = pd.concat(parts, ignore_index=True)
        every.to_parquet(temp / _FINDING_ORDERS_FILE, index=False)
        listed.update(str(o) for o in every["order_id"])
    if listed:
        # the timelines the findings offer of orders created outside the range, in a file
        # of their own: the range's log is written before the findings are known
        # (prepare_week), and only these few orders' events are looked up now
        chosen = prepared.orders.filter(prepared.orders.order_id.isin(sorted(listed)))
        inside = set(con.to_pandas(chosen.select("order_id"))["order_id"].astype(str))
        if outside := sorted(listed - inside):
            con.to_parquet(data._log_of(outside), temp / _LISTED_LOG)
    saved = {name: getattr(prepared, name) for name in _SAVED_TABLES}
    for name, table in saved.items():
        if not (temp / f"{name}.parquet").exists():
            con.to_parquet(table, temp / f"{name}.parquet")
    for name in _VIEW_FRAMES:
        getattr(view, name).to_parquet(temp / f"view_{name}.parquet", index=False)
    selection = {
        f.name: (
            list(v)
            if isinstance(v := getattr(view.selection, f.name), tuple)
            else (v.isoformat() if isinstance(v, dt.date) else v)
        )
        for f in fields(view.selection)
    }
    meta = {
        "format": PREPARED_FORMAT,
        "fingerprint": fingerprint,
        "tz": data.tz,
        "as_of": _stamp_text(data.as_of),
        "count": data.count,
        "values_of": data.values_of,
        "start": None if prepared.start is None else prepared.start.isoformat(),
        "end": None if prepared.end is None else prepared.end.isoformat(),
        "view": {
            "selection": selection,
            "orders": view.orders,
            "completed": view.completed,
            "in_stage": view.in_stage,
            "overall_median_h": view.overall_median_h,
            "lang": view.lang,
            "top": top,
        },
        "findings": {
            "rows": found.frame.to_dict("records"),
            "week": [found.week.start.isoformat(), found.week.end.isoformat()],
            "baseline": None
            if found.baseline is None
            else [found.baseline.start.isoformat(), found.baseline.end.isoformat()],
            "weeks": found.weeks,
            "stored": stored,
            "counts": counts,
        },
    }
    (temp / "meta.json").write_text(json.dumps(meta, default=_plain_json), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    temp.rename(folder)
    for finding_id, name in stored.items():
        if not isinstance(found.stored.get(finding_id), pd.DataFrame):
            found.stored[finding_id] = folder / name
            found.counts[finding_id] = counts[finding_id]
    return folder


def _slowest_of_findings(con: BaseBackend, rows: ir.Table) -> tuple[pd.DataFrame, dict[str, int]]:
    """Per finding of ``rows`` (finding_orders_expr), its FINDING_ORDERS slowest orders in
    orders_of's order (hours descending, then order number) with their place ``_at``,
    and its number of orders: one grouping, where numbering the rows would sort them all.
    """
    con.execute(rows.limit(0))  # registers the in-memory tables the query reads
    fields = ", ".join(f'"{c}" := "{c}"' for c in _FINDING_ORDER_COLUMNS)
    query = f"""
        WITH rows AS ({ibis.to_sql(rows, dialect="duckdb")}),
        tops AS (
            SELECT _finding, count(*) AS n,
                   arg_min(struct_pack({fields}),
                           struct_pack(h := -hours, o := order_id), {FINDING_ORDERS}) AS top
            FROM rows GROUP BY _finding
        )
        SELECT _finding, n, generate_subscripts(top, 1) - 1 AS _at, unnest(top) AS r
        FROM tops
    """
    got = con.raw_sql(query).df()
    counts = {str(f): int(n) for f, n in zip(got["_finding"], got["n"], strict=True)}
    top = pd.DataFrame(list(got["r"]), columns=list(_FINDING_ORDER_COLUMNS))
    for column in ("start_at", "end_at"):
        # instants even when every one listed is missing (the slowest are often open)
        top[column] = pd.to_datetime(top[column], utc=True)
    out = top.assign(_finding=got["_finding"].astype(str).to_numpy(), _at=got["_at"].to_numpy())
    return out, counts


def _temp_folder(folder: Path) -> Path:
    """An empty temporary folder beside ``folder`` (renamed to it once complete)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    temp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir()
    return temp


def default_selection(data: ExplorerData, start: dt.date | None, end: dt.date | None) -> Selection:
    """The selection an explorer starts with: the date range, every order, the shipped →
    delivered stage, by carrier (else the first dimension the orders have)."""
    dims = [d for d in DIMENSIONS if d in data.segments]
    dimension = "carrier" if "carrier" in dims else (dims[0] if dims else "carrier")
    return Selection(start=start, end=end, dimension=dimension)


def report_findings(path: Path, data: WeekData, lang: str) -> Findings | None:
    """The week's findings as the data report wrote them (``bottlenecks.csv`` of the same
    run, from the same snapshot), in ``lang``; None when the file is missing or a text
    cell was neutralised for spreadsheets (then computed again: Findings.of_week).

    The same frame as Findings.of_week (the tests compare them): floats are written
    with all their digits, the hour's values are numbers again, empty cells missing.
    """
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, ValueError):
        return None
    if list(raw.columns) != flow.FINDING_COLUMNS:
        return None
    if any(raw[c].str.startswith("'").any() for c in raw.columns):
        return None  # a cell csvsafe changed: its value is not the frame's
    section = FlowSection(data, lang)
    weeks = section.baseline_weeks
    baseline = Window(weeks[0].start, weeks[-1].end) if weeks else None
    if raw.empty:
        frame = pd.DataFrame(columns=flow.FINDING_COLUMNS)
        return Findings(frame, data.window, baseline, max(len(weeks), 1), label=section.label)

    def value(dimension: str, text: str) -> Any:
        return int(text) if dimension == "hour" else text

    frame = pd.DataFrame(
        {
            "id": raw["id"],
            "group": raw["group"],
            "rank": raw["rank"].astype("int64"),
            "stage": raw["stage"],
            "dimension": raw["dimension"],
            "value": pd.Series(
                [value(d, v) for d, v in zip(raw["dimension"], raw["value"], strict=True)],
                dtype=object,
            ),
            "dimension_2": pd.Series([d or np.nan for d in raw["dimension_2"]], dtype="str"),
            "value_2": pd.Series(
                [
                    value(d, v) if d else None
                    for d, v in zip(raw["dimension_2"], raw["value_2"], strict=True)
                ],
                dtype=object,
            ),
            "orders": raw["orders"].astype("int64"),
            **{
                c: pd.Series([float(v) if v else math.nan for v in raw[c]], dtype="float64")
                for c in ("hours_h", "baseline_h", "overall_h", "added_delay_h", "z")
            },
            "folded_into": raw["folded_into"],
            "driven_by": raw["driven_by"],
            "finding": raw["finding"],
        }
    )
    # sentences in ``lang``: the report may have been written in another language
    found = Findings(frame, data.window, baseline, max(len(weeks), 1), label=section.label)
    return found.in_language(lang)


def save_week(
    params: Params, data: WeekData, folder: str | Path | None = None, report: Path | None = None
) -> Path | None:
    """Prepare a loaded week's explorer tables and save them (``Explorer.open`` starts
    from them); returns the folder (default prepared_folder of the week), or None when
    the params' engine is not DuckDB (the explorer's tables are prepared on DuckDB only).

    The large tables go from the engine straight to Parquet; the findings are the data
    report's when ``report`` (its folder of the same run) holds them (report_findings).
    prepare_week and finish_week are its two halves: the first needs no findings, so
    that the runner can do it while the data report is computed.
    """
    where = prepared_folder(params, data.week) if folder is None else Path(folder)
    if params.engine.kind == "source":
        return None
    con = shared(explorer_engine(params))
    temp = _temp_folder(where)
    kept = _temporary_tables(con)
    try:
        return finish_week(prepare_week(params, data, temp, con), where, report)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
        # the engine's copies of the week's log and cases are of no further use here
        for name in _temporary_tables(con) - kept:
            con.raw_sql(f'DROP TABLE IF EXISTS temp.main."{name}"')


@dataclass
class WeekTables:
    """A week's explorer tables as far as they go without the findings (prepare_week):
    the large ones written to ``temp``, the rest kept by ``explorer``'s engine."""

    params: Params
    data: WeekData
    explorer: ExplorerData
    temp: Path
    first_day: dt.date
    last_day: dt.date


def prepare_week(params: Params, data: WeekData, temp: Path, con: BaseBackend) -> WeekTables:
    """The part of save_week that needs no findings: every order's stage hours, and the
    week's orders, transitions, variants and event log, the large tables written as
    Parquet into the folder ``temp`` (it must exist; finish_week renames it)."""
    tables = data.engine_tables(con)
    first_day = data.window.start.date()
    last_day = (data.window.end - pd.Timedelta(days=1)).date()
    explorer = ExplorerData.build(
        tables["orders"], tables.get("events"), tables.get("after_sales"), con=con, tz=data.tz
    )

    def store(name: str, expr: ir.Table) -> ir.Table:
        path = temp / f"{name}.parquet"
        con.to_parquet(expr, path)
        return con.read_parquet(str(path), table_name=f"explorer_{next(_NAMES)}")

    explorer.prepare(first_day, last_day, store)
    return WeekTables(params, data, explorer, temp, first_day, last_day)


def finish_week(week: WeekTables, folder: Path, report: Path | None = None) -> Path:
    """The rest of save_week once the findings are known: the findings with their orders
    and the first view, then ``week.temp`` renamed to ``folder`` (save_prepared)."""
    data, explorer, lang = week.data, week.explorer, week.params.language
    found = report_findings(report / REPORT_FINDINGS, data, lang) if report else None
    found = found or Findings.of_week(data, lang)
    selection = default_selection(explorer, week.first_day, week.last_day)
    view = compute_view(explorer, selection, lang)
    key = source_fingerprint(week.params, data.week)
    orders = data.engine_tables(explorer.con)["orders"]
    return save_prepared(explorer, found, view, folder, key, orders=orders, written=week.temp)


def explorer_engine(params: Params) -> EngineParams:
    """The engine the explorer computes on: the params' DuckDB, or an embedded DuckDB
    of its own when the KPIs run on Spark (the explorer's many small queries over the
    week's snapshot, a local folder, are what DuckDB is for; Spark has no temporary
    tables through Ibis). With engine ``source`` the week stays in the database: an
    ExplorerEngineError (exit 2) says what to do."""
    if params.engine.kind == "source":
        raise ExplorerEngineError(params.engine.kind)
    return params.engine if params.engine.kind == "duckdb" else EngineParams()


def background_engine(params: Params, data_bytes: int = 0) -> BaseBackend:
    """A DuckDB engine of its own for prepare_week while a notebook's kernel computes:
    one thread (the kernel keeps most of the machine busy) and half the memory limit
    of the params' engine (the kernel's engine may take the whole of it meanwhile);
    without a limit in params, half of what ``data_bytes`` of snapshot ask for."""
    settings = settings_of(explorer_engine(params))
    full = _full_limit(settings, data_bytes)
    con = connect(dataclasses.replace(settings, threads=1, memory_limit=full))
    limit = memory_limit_bytes(con)
    if limit is not None:
        con.raw_sql(f"SET memory_limit = '{max(limit // 2, MIN_MEMORY) >> 20}MiB'")
    return con


def _full_limit(settings: EngineSettings, data_bytes: int) -> str:
    """The params' memory limit, or what ``data_bytes`` of snapshot ask for."""
    if settings.memory_limit:
        return settings.memory_limit
    return f"{data_memory_limit(data_bytes, settings.threads) >> 20}MiB"


def in_full(con: BaseBackend, params: Params, data_bytes: int = 0) -> None:
    """A background_engine given the threads and memory limit of the params' engine
    (for ``data_bytes`` of snapshot), once nothing else computes (finish_week after the
    notebooks).

    Callable from another thread while the engine runs a query: the settings are the
    database's, set through a cursor of their own (the busy connection would make the
    call wait for its query), and DuckDB's added threads take up the running query's
    tasks at once. At 1M orders a week the findings' part took 6.2 s on one thread,
    3.7 s when given two threads 0.3 s in, 3.4 s on two from the start.
    """
    settings = settings_of(explorer_engine(params))
    threads = settings.threads
    statements = [
        f"SET memory_limit = '{_full_limit(settings, data_bytes)}'",
        f"SET threads = {int(threads)}" if threads else "RESET threads",
    ]
    cursor = con.con.cursor()  # background engines are DuckDB (background_engine)
    try:
        for statement in statements:
            cursor.execute(statement)
    finally:
        cursor.close()


def _temporary_tables(con: BaseBackend) -> set[str]:
    """Names of the engine's temporary tables (DuckDB)."""
    if con.name != "duckdb":
        return set()
    got = con.raw_sql("SELECT table_name FROM duckdb_tables() WHERE temporary").fetchall()
    return {str(row[0]) for row in got}


def _plain_json(value: Any) -> Any:
    """numpy scalars and missing values as JSON values."""
    if isinstance(value, np.generic):
        return value.item()
    if value is pd.NA or value is pd.NaT:
        return None
    raise TypeError(f"not JSON: {type(value).__name__}")


def open_prepared(
    folder: str | Path, fingerprint: str, con: BaseBackend | None = None
) -> tuple[ExplorerData, Findings, View] | None:
    """The explorer's data, findings and first view from a folder save_prepared wrote.

    None when the folder is missing, of another format, or prepared from other data
    or params (another ``fingerprint``). The tables stay Parquet files the engine reads
    when asked: nothing but the small frames of the first view is read now.
    """
    folder = Path(folder)
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("format") != PREPARED_FORMAT or meta.get("fingerprint") != fingerprint:
        return None
    con = con or shared()
    files = {name: [str(folder / f"{name}.parquet")] for name in _SAVED_TABLES}
    if (folder / _LISTED_LOG).is_file():
        files["log"].append(str(folder / _LISTED_LOG))
    tables = {
        name: con.read_parquet(paths, table_name=f"explorer_{next(_NAMES)}")
        for name, paths in files.items()
    }
    day = lambda text: None if text is None else dt.date.fromisoformat(text)  # noqa: E731
    prepared = Prepared(
        day(meta["start"]),
        day(meta["end"]),
        tables["orders"],
        tables["steps"],
        tables["codes"],
        tables["variants"],
        tables["log"],
    )
    data = ExplorerData(
        con,
        tables["orders"],
        tables["log"],
        int(meta["count"]),
        {d: list(v) for d, v in meta["values_of"].items()},
        str(meta["tz"]),
        _stamp_of(meta["as_of"]),
        prepared,
    )
    shown = meta["view"]
    picked = shown["selection"]
    selection = Selection(
        **{
            **picked,
            "start": day(picked["start"]),
            "end": day(picked["end"]),
            **{d: tuple(picked[d]) for d in FILTER_DIMENSIONS},
        }
    )
    frames = {n: pd.read_parquet(folder / f"view_{n}.parquet") for n in _VIEW_FRAMES}
    distribution = frames["distribution"]
    distribution["value"] = distribution["value"].astype(object)
    slowest = frames["slowest"]
    for col in ("order_type", "warehouse", "carrier", "region", "channel"):
        slowest[col] = slowest[col].astype(object).where(slowest[col].notna(), None)
    view = View(
        selection=selection,
        orders=int(shown["orders"]),
        completed=int(shown["completed"]),
        in_stage=int(shown["in_stage"]),
        distribution=distribution,
        edges=frames["edges"],
        variants=frames["variants"],
        slowest=slowest,
        overall_median_h=float(shown["overall_median_h"]),
        lang=str(shown["lang"]),
    )
    chosen = tuple(getattr(selection, name) for name in ORDER_FILTERS)
    data.views[("counts", chosen, selection.stage)] = (
        view.orders,
        view.completed,
        view.in_stage,
        view.overall_median_h,
    )
    data.views[("distribution", chosen, selection.stage, selection.dimension)] = distribution
    data.views[("slowest", chosen, selection.stage, int(shown["top"]))] = slowest
    data.views[("graph", chosen)] = (view.edges, view.variants)
    return data, _saved_findings(folder, meta["findings"], data.tz), view


def _saved_findings(folder: Path, saved: dict[str, Any], tz: str) -> Findings:
    """Findings as save_prepared wrote them (their orders read when asked for)."""
    frame = pd.DataFrame(saved["rows"], columns=flow.FINDING_COLUMNS)
    if len(frame):
        frame["orders"] = frame["orders"].astype("int64")
        frame["rank"] = frame["rank"].astype("int64")

    def window(ends: list[str]) -> Window:
        # in the platform's zone, as the windows of a loaded week
        return Window(pd.Timestamp(ends[0]).tz_convert(tz), pd.Timestamp(ends[1]).tz_convert(tz))

    week = window(saved["week"])
    base = saved["baseline"]
    baseline = None if base is None else window(base)
    stored: dict[str, pd.DataFrame | Path] = {
        finding_id: folder / name for finding_id, name in saved["stored"].items()
    }
    counts = {finding_id: int(n) for finding_id, n in saved["counts"].items()}
    return Findings(frame, week, baseline, int(saved["weeks"]), stored, counts)


# --- the widgets ---------------------------------------------------------------------------------


@dataclass
class Saved:
    """A week's explorer opened from its saved tables (open_prepared), and how to load
    the whole week when a selection reaches beyond them."""

    data: ExplorerData
    found: Findings
    view: View
    params: Params
    week: Callable[[], WeekData]


def _say(text: str) -> None:
    """Progress of a long step, shown under the notebook cell."""
    print(text, flush=True)


class Explorer:
    """Widgets over a loaded week (or order frames); every change recomputes the view.

    Build from a WeekData (orders, events and after_sales of the load; default date
    range = the report week; default export folder = <output_dir>/explorer) or from an
    orders frame (``events`` and ``after_sales`` optional; default range = the last
    seven days with orders; default folder outputs/explorer).
    """

    def __init__(
        self,
        source: WeekData | pd.DataFrame | Saved,
        lang: str | None = None,
        *,
        events: pd.DataFrame | None = None,
        after_sales: pd.DataFrame | None = None,
        folder: str | Path | None = None,
        top: int = TOP_ORDERS,
        label: CodeLabel | None = None,
    ):
        import ipywidgets as w

        self._week: WeekData | None = source if isinstance(source, WeekData) else None
        self._load: Callable[[], WeekData] | None = None
        self._orders: pd.DataFrame | ir.Table | None = None
        if isinstance(source, Saved):
            # tables prepared beforehand: nothing is computed but what is not saved
            lang = lang or source.params.language
            label = label or source.params.label
            folder = folder or Path(source.params.output_dir) / "explorer"
            self.data = source.data
            prepared = self.data.prepared
            first_day = prepared.start if prepared is not None else None
            last_day = prepared.end if prepared is not None else None
            self._load = source.week
            self.data.complete = self._whole
        elif isinstance(source, WeekData):
            # the week's tables as the engine holds them: no row table in pandas
            engine_params = explorer_engine(source.params)
            on_own = engine_params is not source.params.engine
            con = shared(engine_params)
            tables = source.engine_tables(con) if on_own else source.engine_tables()
            lang = lang or source.params.language
            label = label or source.params.label
            folder = folder or Path(source.params.output_dir) / "explorer"
            first_day = source.window.start.date()
            last_day = (source.window.end - pd.Timedelta(days=1)).date()
            self.data = ExplorerData.build(
                tables["orders"],
                tables.get("events"),
                tables.get("after_sales"),
                con=con,
                tz=source.tz,
                prepare=(first_day, last_day),
            )
            self._orders = tables["orders"]
        else:
            last = source["created_at"].max()
            last_day = last.date() if pd.notna(last) else None
            first_day = last_day - dt.timedelta(days=6) if last_day else None
            self.data = ExplorerData.build(
                source, events, after_sales, prepare=(first_day, last_day)
            )
            self._orders = source
        self.lang = lang or "en"
        # people's names for the data's codes (params ``labels``): shown, never filtered on
        self.label = label
        self.top = top
        if isinstance(source, Saved):
            # saved with their sentences in the saved view's language and the params' names
            found = dataclasses.replace(source.found, label=label)
            same = source.view.lang == self.lang and label == source.params.label
            self.found = found if same else found.in_language(self.lang)
        elif isinstance(source, WeekData):
            self.found = Findings.of_week(source, self.lang)
            if label != self.found.label:
                self.found = dataclasses.replace(self.found, label=label).in_language(self.lang)
        else:
            self.found = Findings.of_orders(source, self.lang, label=label)
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
                # the name shown, the code selected: the filter matches the data's codes
                options=[(code_name(label, d, v, lang), str(v)) for v in self.data.values(d)],
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
        self.export_csv_button.on_click(lambda _button: self._clicked(self.export_csv))
        self.export_png_button.on_click(lambda _button: self._clicked(self.export_png))
        self.update()

    @classmethod
    def open(
        cls,
        params_files: Sequence[str | Path],
        week: str | None = None,
        snapshot: str | Path | None = None,
        lang: str | None = None,
    ) -> Explorer:
        """The week's explorer, started from its prepared tables when they were saved from
        the same data and params (``outputs/<week>/explorer_data``).

        Otherwise the week is loaded as the reports load it (the runner's snapshot if
        given, else the source), prepared and saved, so that the next start is quick.
        """
        params = load_params(*params_files)
        report_week = latest_week(params) if week is None else resolve_week(params, week)
        folder = prepared_folder(params, report_week)
        key = source_fingerprint(params, report_week)

        def load() -> WeekData:
            there = snapshot is not None and Path(snapshot).is_dir()
            return open_week(params, report_week, snapshot if there else None)

        opened = open_prepared(folder, key, shared(explorer_engine(params)))
        if opened is not None:
            return cls(Saved(*opened, params, load), lang)
        shown = lang or params.language
        _say(t("explorer.progress.preparing", shown, week=str(report_week)))
        explorer = cls(load(), lang)
        explorer.save(folder, key)
        _say(t("explorer.progress.saved", shown, folder=str(folder)))
        return explorer

    def save(self, folder: str | Path, fingerprint: str) -> Path:
        """Save the prepared tables, the findings with their orders and the first view
        (save_prepared); the findings' orders are computed now if they were not."""
        found, orders = self.found, self._orders
        if not isinstance(orders, ir.Table):
            # without the engine's orders table, finding by finding (loading the week)
            for finding_id in found.frame.loc[found.frame["rank"] > 0, "id"]:
                if finding_id not in found.stored:
                    found.stored[finding_id] = self.finding_orders(str(finding_id))
        view = self.view if self.view is not None else self.update()
        return save_prepared(
            self.data,
            found,
            view,
            folder,
            fingerprint,
            self.top,
            orders=orders if isinstance(orders, ir.Table) else None,
        )

    def _whole(self) -> ExplorerData:
        """Every order and event of the week (loaded now if need be), on the engine."""
        week = self.week_data()
        tables = week.engine_tables()
        return ExplorerData.build(
            tables["orders"],
            tables.get("events"),
            tables.get("after_sales"),
            con=self.data.con,
            tz=week.tz,
        )

    def week_data(self) -> WeekData:
        """The loaded week (loaded now, with a message, if the explorer started from saved
        tables)."""
        if self._week is None:
            if self._load is None:
                raise ValueError("the explorer was built from frames, not from a week")
            _say(t("explorer.progress.loading", self.lang))
            shown = self.summary.value
            self.summary.value = f"<p>{html.escape(t('explorer.progress.loading', self.lang))}</p>"
            try:
                self._week = self._load()
            finally:
                self.summary.value = shown  # an update that follows says what it shows
        return self._week

    def finding_orders(self, finding_id: str) -> pd.DataFrame:
        """The orders behind a finding, slowest first (Findings.orders_of); a saved
        finding keeps its slowest only, so all of them load the week."""
        found = self.found
        whole = finding_id in found.stored and finding_id not in found.counts
        return found.orders_of(self._finding_source(whole), finding_id, self.data.con, self.data.tz)

    def slowest_finding_orders(self, finding_id: str) -> tuple[pd.DataFrame, int]:
        """The orders the explorer lists for a finding (its FINDING_ORDERS slowest) and
        the number behind it (Findings.slowest): a saved finding's need no load."""
        known = finding_id in self.found.stored
        return self.found.slowest(
            self._finding_source(known), finding_id, self.data.con, self.data.tz
        )

    def _finding_source(self, known: bool) -> pd.DataFrame | ir.Table:
        """The orders findings' orders are computed from (the week loaded if need be)."""
        if not known and self._orders is None:
            self._orders = self.week_data().engine_tables()["orders"]
        return self._orders if self._orders is not None else pd.DataFrame()

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
        prepared, selection = self.data.prepared, self.selection
        if prepared is None or not prepared.covers(selection):
            text = t("explorer.progress.range", self.lang, start=selection.start, end=selection.end)
            self.summary.value = f"<p>{html.escape(text)}</p>"
        view = compute_view(self.data, selection, self.lang, self.top, previous, self.label)
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
            slowest_display(view.slowest, view.selection.stage, lang, self.label)
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
        if timeline.empty and self.data.load_whole():
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
        """Show the orders behind a finding (its slowest, with their number) and offer them
        for the timeline; returns the orders shown."""
        lang = self.lang
        if not finding_id:
            self.finding_table.value = ""
            return pd.DataFrame()
        rows, count = self.slowest_finding_orders(finding_id)
        stage = str(self.found.frame.loc[self.found.frame["id"] == finding_id, "stage"].iloc[0])
        text = t("explorer.finding.orders", lang, orders=count, shown=len(rows))
        table = _table_html(finding_orders_display(rows, stage, lang))
        self.finding_table.value = f"<p>{html.escape(text)}</p>{table}"
        self.order.options = [str(o) for o in rows["order_id"]]
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
        """Write the current view's tables into the folder widget's folder (the status line
        says where, or why not: ExportFolderError is raised after it is shown)."""
        return self._export(export_csv)

    def export_png(self) -> list[Path]:
        """Write the current view's charts into the folder widget's folder (as export_csv)."""
        return self._export(export_png)

    def _export(self, write: Callable[[View, str | Path], list[Path]]) -> list[Path]:
        self.export_status.value = ""  # the last export's message is not this one's
        try:
            paths = write(self.update() if self.view is None else self.view, self.folder.value)
        except ExportFolderError as exc:
            self._failed(exc.text(self.lang))
            raise
        except Exception as exc:  # a bug: still not shown as written
            self._failed(
                t("explorer.export_error", self.lang, error=f"{type(exc).__name__}: {exc}")
            )
            raise
        return self._report(paths)

    def _failed(self, text: str) -> None:
        self.export_status.value = f'<p class="ml-status-off"><b>{html.escape(text)}</b></p>'

    def _clicked(self, export: Callable[[], list[Path]]) -> None:
        """A button's export: a folder that cannot take the files is said in the status
        line, not raised into the widget's log."""
        with contextlib.suppress(ExportFolderError):
            export()

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
