"""Weekly KPIs of order processing, defined once and computed by the query engine.

A KPI counts the events that happened in a half-open window ``[start, end)`` and its
docstring names the event that places a row in the week: *created* for volume, GMV,
cancellation and abnormal orders; *shipped* for on-time shipping; *delivered* for
delivery, cycle time and the perfect order; the *end milestone* of a stage for stage
durations; the other tables by their own time (tickets by ``opened_at``, after-sales
cases by ``requested_at``, settlements by ``settled_at``); backlogs are taken at an
instant (the week's end). A window without such events gives 0 for a count and NaN for a
rate or a duration, never an error.

``CATALOGUE`` and ``weekly_kpis``: every KPI of the weekly series, defined once as an
Ibis expression (its observations: the rows, the event placing each in a week, a value)
and computed by the query engine (embedded DuckDB by default, Spark through params) for
many consecutive weeks and segments (order type, warehouse, carrier, carrier/region...);
only per-week, per-segment aggregates come back. The report, the anomaly rules and
``kpis.csv`` use it; the breakdowns the report's sections show for one week are the
engine's too (``sections``). There is no second implementation to keep in step: the
tests check these definitions against values worked out by hand, against SQLite, against
Spark, and against plain per-window pandas computations kept with the tests.

Functions never read files and never modify their inputs. Conventions a caller must know:

* Percentiles (P90) interpolate linearly between order statistics: numpy's default,
  DuckDB's quantile_cont and Spark's percentile.
* Durations are in hours (float), except after-sales case cycle and settlement lag, in
  days. Units: orders, currency, share (0-1), hours, days, per_1000 (per 1,000 orders
  created), score (CSAT 1-5).
* Cancellation means ``cancelled_at`` is set, whenever it happened up to the data
  extraction: GMV excludes such orders and the cancellation rate counts them.
* Multi-table KPIs count every row of the tables given; to split them by order type, pass
  the rows of orders of that type (``weekly_kpis`` does this through the order_id).
* Breakdowns by a dimension list every known value of it (schema values, categories of
  the column, values seen anywhere in ``orders``), zeros included; orders with an empty
  value are counted under ``MISSING``, shown only when there are some.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
from ibis.backends import BaseBackend
from ibis.common.exceptions import IbisTypeError

from meetinglib.analysis import sections
from meetinglib.core.errors import InvalidParamError
from meetinglib.core.schema import ORDER_TYPES, ORDERS
from meetinglib.core.weeks import IsoWeek, Window
from meetinglib.data import engine

# The breakdowns' constants live with their engine definitions (``sections``).
MISSING = sections.MISSING
P90 = sections.P90

Unit = Literal["orders", "currency", "share", "hours", "days", "per_1000", "score"]


# The ticket durations: from and to which column.
TICKET_STAGES: dict[str, tuple[str, str]] = {
    "first_response": ("opened_at", "first_response_at"),
    "resolution": ("opened_at", "resolved_at"),
}


# --- series over weeks ------------------------------------------------------------------------


def week_label(window: Window) -> str:
    """The ISO week (e.g. "2026-W11") of the window's start, in the window's timezone."""
    return str(IsoWeek.containing(window.start))


def _week_bounds(windows: list[Window]) -> np.ndarray:
    """Nanosecond instants of the week starts and the last end; the windows must be consecutive."""
    if not windows:
        raise ValueError("no windows given; pass at least one week.")
    for before, after in zip(windows, windows[1:], strict=False):
        if before.end != after.start:
            raise ValueError(
                f"windows must be consecutive: one ends {before.end}, the next starts "
                f"{after.start}; pass consecutive weeks (weeks.weeks_ending)."
            )
    starts = [w.start.value for w in windows] + [windows[-1].end.value]
    return np.asarray(starts, dtype="int64")


# --- the KPI catalogue: one definition per KPI, as Ibis expressions -------------------------
#
# Each KPI observes rows (orders, tickets, cases...) as an Ibis table: the week of the event
# that places the row (0 = the first week), a value, and the segment columns of the row's
# order. The engine (DuckDB by default, Spark by params) aggregates them per week and
# segment; only those aggregates come back here, to be finished into the long series.

Kind = Literal["count", "sum", "mean", "median", "p90", "ratio", "level"]
SEGMENT_COLUMNS = ("order_type", "warehouse", "carrier", "region", "channel")
ALL = "all"
# Columns of an observation table; segment columns carry this prefix, so that they never
# clash with a table's own columns.
_SEG = "seg_"
_LOADED = "seg_loaded"  # whether the row's order is loaded (rows of other tables)
_SEGMENT_NAMES = [*(_SEG + c for c in SEGMENT_COLUMNS), _LOADED]
# The combination of an order's segment values as one number (``SegmentCodes``); NULL for
# a row whose order is not loaded.
_CODE = "seg_code"
# The tables with about one row or more per order: joined to orders, each of their rows
# carries the code instead of five strings (see ``SegmentCodes``).
_CODED = ("order_lines", "settlements")
_GROUP = ["scenario", "dimension", "segment", "week"]
_SUMS = ["n", "s1", "s2", "qv", "qse"]  # the figures of an aggregate row
_Z = 1.96  # the 95% interval behind a quantile's standard error
# The order columns every KPI reading a table needs with its rows (see Frames.rows).
_ORDER_COLUMNS = {"order_lines": ("shipped_at",), "settlements": ("delivered_at",)}


class SegmentCodes:
    """Each combination of segment values as one number, for the joins of large tables.

    A column's values are numbered 1, 2... (0: empty) and the code writes them in mixed
    radix, one digit per column: a CASE per column on orders, read back (``decode``) from
    the few thousand rows a sums pass returns. A join of order lines or settlements to
    orders then holds one number per order instead of five strings: its hash table is
    the bulk of such a pass (a third less time at 200k orders a week). Tables with few
    rows per order (tickets, cases) keep the strings: there the join holds their rows,
    and coding every order would cost more than it saves.
    """

    def __init__(self, values: Mapping[str, Sequence[str]]):
        # Per segment column of orders, its values in a fixed (sorted) order.
        self.values = {c: list(v) for c, v in values.items()}
        self.radix: dict[str, int] = {}
        weight = 1
        for column in SEGMENT_COLUMNS:
            if column in self.values:
                self.radix[column] = weight
                weight *= len(self.values[column]) + 1

    @classmethod
    def of(cls, con: BaseBackend, orders: ir.Table) -> SegmentCodes:
        """The codes of the segment values found in ``orders`` (one small query)."""
        columns = [c for c in SEGMENT_COLUMNS if c in orders.columns]
        if not columns:
            return cls({})
        found = con.execute(orders.select(*columns).distinct())
        return cls({c: sorted({str(v) for v in found[c] if not pd.isna(v)}) for c in columns})

    def code(self, orders: ir.Table) -> ir.IntegerValue:
        """Each order's code from its segment columns."""
        total: ir.IntegerValue = ibis.literal(0, "int64")
        for column, weight in self.radix.items():
            values = self.values[column]
            if values:
                digit = orders[column].cases(*[(v, i + 1) for i, v in enumerate(values)], else_=0)
                total = total + digit.cast("int64") * weight
        return total

    def decode(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with its ``seg_code`` column read back as the segment columns
        (``seg_*``, None where empty) and whether the row's order is loaded."""
        codes = pd.to_numeric(frame[_CODE]).to_numpy(dtype="float64", na_value=np.nan)
        loaded = ~np.isnan(codes)
        whole = np.where(loaded, codes, 0).astype("int64")
        out = frame.drop(columns=[_CODE])
        for column in SEGMENT_COLUMNS:
            names = np.array([None, *self.values.get(column, [])], dtype=object)
            if column in self.radix:
                digits = whole // self.radix[column] % len(names)
                out[_SEG + column] = np.where(loaded, names[digits], None)
            else:
                out[_SEG + column] = np.full(len(frame), None, dtype=object)
        out[_LOADED] = loaded
        return out


@dataclass(frozen=True)
class Obs:
    """Observations of a KPI: rows of ``table``, each placed in the week of ``at`` with
    ``value`` (rows where ``keep`` is false do not count). KPIs observing the same rows at
    the same event are aggregated in one pass over them."""

    table: ir.Table
    at: ir.Value
    value: ir.Value
    keep: ir.Value | None
    segments: dict[str, ir.Value]
    code: ir.Value | None = None  # the segment values' code (``SegmentCodes``), if carried

    def negated(self) -> Obs:
        return Obs(self.table, self.at, -self.value, self.keep, self.segments, self.code)

    @property
    def source(self) -> tuple[Any, Any]:
        """What identifies one pass: the rows and the event (Ibis nodes compare by value)."""
        return (self.table.op(), self.at.op())


class Frames:
    """The canonical tables as Ibis tables, with the weeks and the SLA the observations use.

    ``bounds``: the week starts and the last week's end (timezone-aware instants);
    ``scenarios``: segments to set aside, one series each (see ``weekly_kpis_without``);
    ``backend``: the name of the engine the expressions are for (``con.name``).
    """

    def __init__(
        self,
        tables: Mapping[str, ir.Table],
        bounds: Sequence[pd.Timestamp],
        sla: float,
        lookback_days: float | None = None,
        scenarios: Sequence[Mapping[str, str]] = (),
        backend: str | None = None,
    ):
        self.tables, self.sla, self.lookback_days = dict(tables), sla, lookback_days
        self.backend = backend
        # Per scenario, the quantile cells wanted (KPI -> (segmentation, segment)); None: all.
        self.cells: list[dict[str, Collection[tuple[str, str]]]] | None = None
        # The share of the rows in each (segmentation, segment) of ``cells``, when known:
        # what a quantile pass over those cells holds (``_quantile_pass``'s estimate).
        self.shares: Mapping[tuple[str, str], float] | None = None
        self.scenarios = list(scenarios)
        self.bounds = [pd.Timestamp(b).tz_convert("UTC").to_pydatetime() for b in bounds]
        self.weeks = len(self.bounds) - 1
        lengths = {
            int((b - a).total_seconds()) for a, b in zip(self.bounds, self.bounds[1:], strict=False)
        }
        self.week_seconds = lengths.pop() if len(lengths) == 1 else None
        self.micros = [int(pd.Timestamp(b).value // 1000) for b in self.bounds]
        self.orders = self.tables["orders"]
        self._rows: dict[tuple[str, tuple[str, ...]], ir.Table] = {}
        # Known before observations are built (``kpi_aggregates``): then the rows of the
        # tables in ``_CODED`` carry the segment values' code.
        self.codes: SegmentCodes | None = None
        # The table behind each table of ``rows``: as many rows, without the join.
        self._bases: dict[Any, ir.Table] = {}
        self._delivered: ir.Table | None = None

    def col(self, table: ir.Table, name: str) -> ir.Value:
        """A column of ``table`` (orders, or rows joined to them); an optional orders column
        the source lacks reads as empty."""
        if name in table.columns:
            return table[name]
        kind = ORDERS.column(name).kind
        dtype = {"timestamp": "timestamp('UTC')", "float": "float64"}.get(kind, "string")
        return ibis.null().cast(dtype)

    def us(self, at: ir.Value) -> ir.IntegerValue:
        """The instant ``at`` as microseconds since the epoch: compared and shifted as
        plain integers (``engine.unix_micros``)."""
        return engine.unix_micros(at, self.backend)

    def hours(self, start: ir.Value, end: ir.Value) -> ir.Value:
        """Hours from start to end (whole microseconds, as every engine counts them); NULL
        when end precedes start (a milestone out of order: validation flags the order,
        and only this duration leaves the duration KPIs)."""
        hours = engine.hours_between(start, end, self.backend)
        return ibis.ifelse(hours < 0, ibis.null("float64"), hours)

    def week(self, at: ir.TimestampValue) -> ir.IntegerValue:
        """The week holding ``at`` (0-based), NULL outside the weeks or when ``at`` is NULL."""
        inside = (at >= self.bounds[0]) & (at < self.bounds[-1])
        if self.week_seconds:
            # Weeks of equal length (no daylight-saving change): integer arithmetic on
            # microseconds, not a search (nor the engines' slow calendar functions).
            since = self.us(at) - self.micros[0]
            week = since // (self.week_seconds * 1_000_000)
        else:
            week = ibis.cases(*[(at < end, i) for i, end in enumerate(self.bounds[1:])])
        return ibis.ifelse(inside, week, ibis.null("int64"))

    def week_end(self, week: ir.IntegerValue) -> ir.IntegerValue:
        """The end of week ``week`` (0-based) as microseconds since the epoch (see
        ``engine.unix_micros``); NULL for a NULL week."""
        if self.week_seconds:
            return self.micros[0] + (week + 1) * (self.week_seconds * 1_000_000)
        return ibis.cases(*[(week == i, end) for i, end in enumerate(self.micros[1:])])

    def ends_up_to(self, us: ir.IntegerValue, edges: Sequence[int]) -> ir.IntegerValue:
        """How many of ``edges`` (ascending microseconds since the epoch) are at or before
        ``us`` (a searchsorted, side right)."""
        steps = {b - a for a, b in zip(edges, edges[1:], strict=False)}
        if len(steps) == 1:
            # Evenly spaced edges: one division, where 13 comparisons would each repeat
            # the expression behind ``us``.
            count = (us - edges[0]) // steps.pop() + 1
            return ibis.greatest(ibis.least(count, len(edges)), 0)
        total: ir.IntegerValue = ibis.literal(0)
        for edge in edges:
            total = total + ibis.ifelse(us >= edge, 1, 0)
        return total

    def segments(self, table: ir.Table) -> dict[str, ir.Value]:
        """The segment columns of ``table``'s orders, and whether the order is loaded."""
        columns = {_SEG + c: self.col(table, c) for c in SEGMENT_COLUMNS}
        return {**columns, _LOADED: ibis.literal(True)}

    def of_orders(self, at: ir.Value, value: Any, keep: Any = None) -> Obs:
        """Observations of orders: the week of ``at`` and ``value`` per order."""
        return self._observed(self.orders, at, value, keep, self.segments(self.orders))

    def rows(self, table: str, *order_columns: str) -> ir.Table:
        """``table`` with its order's segments (``seg_*``) and ``order_columns`` (``o_*``).

        Rows whose order is not loaded keep empty segments: they count in "all" only.
        One join per table, whatever the KPI asks for: KPIs observing the same table at
        the same event then share one pass (settled amounts and settlement lags).
        """
        columns = tuple(dict.fromkeys([*_ORDER_COLUMNS.get(table, ()), *order_columns]))
        key = (table, columns)
        if key not in self._rows:
            rows = self.tables[table]
            wanted = {
                **self.segments(self.orders),
                **{f"o_{c}": self.col(self.orders, c) for c in columns},
            }
            if self.codes is not None and table in _CODED:
                # Besides the strings: each query reads the columns it needs.
                wanted[_CODE] = self.codes.code(self.orders)
            orders = self.orders.select(o_order_id=self.orders.order_id, **wanted)
            joined = rows.left_join(orders, rows.order_id == orders.o_order_id)
            loaded = joined.mutate(**{_LOADED: joined.o_order_id.notnull()})
            self._rows[key] = loaded.drop("o_order_id")
            self._bases[self._rows[key].op()] = rows
        return self._rows[key]

    def delivered(self) -> ir.Table:
        """Orders with what judges a delivery perfect: the first complaint (p_complaint),
        the first after-sales case (p_case) and the lines shipped short (p_short) of each.
        Every KPI placed by delivery observes this table, so that all share one pass
        (``_obs_perfect``); a quantile pass, needing none of the three, reads orders as
        they are (``base``, ``_before_join``)."""
        if self._delivered is None:
            orders = self.orders
            if "tickets" in self.tables:
                tickets = self.tables["tickets"]
                complaints = tickets.filter(
                    (tickets.category == "complaint") & tickets.opened_at.notnull()
                )
                first = complaints.group_by(p_id=complaints.order_id).aggregate(
                    p_complaint=complaints.opened_at.min()
                )
                orders = orders.left_join(first, orders.order_id == first.p_id).drop("p_id")
            if "after_sales" in self.tables:
                cases = self.tables["after_sales"]
                cases = cases.filter(cases.requested_at.notnull())
                first = cases.group_by(p_id=cases.order_id).aggregate(
                    p_case=cases.requested_at.min()
                )
                orders = orders.left_join(first, orders.order_id == first.p_id).drop("p_id")
            lines = self.tables.get("order_lines")
            if lines is not None and "qty_shipped" in lines.columns:
                short = lines.filter(lines.qty_shipped < lines.qty)
                short = short.group_by(p_id=short.order_id).aggregate(p_short=short.count())
                orders = orders.left_join(short, orders.order_id == short.p_id).drop("p_id")
            self._delivered = orders
            self._bases[orders.op()] = self.orders
        return self._delivered

    def base(self, table: ir.Table) -> ir.Table:
        """The table whose rows ``table`` holds: the table itself, or for rows joined to
        their orders (``rows``, ``delivered``) the table before the join."""
        return self._bases.get(table.op(), table)

    def of_rows(self, rows: ir.Table, at: ir.Value, value: Any, keep: Any = None) -> Obs:
        """Observations of another table's rows (from ``rows``): week of ``at``, ``value``."""
        segments = {name: rows[name] for name in _SEGMENT_NAMES}
        observed = self._observed(rows, at, value, keep, segments)
        if _CODE in rows.columns:
            observed = replace(observed, code=rows[_CODE])
        return observed

    def _observed(
        self, table: ir.Table, at: ir.Value, value: Any, keep: Any, segments: dict[str, ir.Value]
    ) -> Obs:
        value = ibis.literal(float(value)) if isinstance(value, int | float) else value
        return Obs(table, at, value.cast("float64"), keep, segments)

    def spans(
        self, table: ir.Table, start: ir.Value, end: ir.Value, weight: Any, created: Any = None
    ) -> ir.Table:
        """Rows counted at a week's end e when start < e and not end < e (NULL end: never
        ends); with ``created`` and the lookback, only up to the week starting no later
        than created + lookback. Instants as microseconds since the epoch (see
        ``engine.unix_micros``). Columns enter, leave (week indexes), value, segments."""
        ends = self.micros[1:]
        never = ibis.literal(self.weeks)
        weight = ibis.literal(float(weight)) if isinstance(weight, int | float) else weight
        until = ibis.null("int64")
        if created is not None and self.lookback_days is not None:
            until = created + int(self.lookback_days * 86400) * 1_000_000
        # Each step reads the one before as a subquery (``view``): the engine computes
        # start, stop and the lookback's limit once, where inlining them into the next
        # step would repeat each many times.
        rows = table.select(
            start=start,
            stop=ibis.ifelse(end.isnull(), ibis.null("int64"), ibis.greatest(start, end)),
            until=until,
            value=weight.cast("float64"),
            **{name: table[name] for name in _SEGMENT_NAMES},
        ).view()
        enter = ibis.ifelse(rows.start.isnull(), never, self.ends_up_to(rows.start, ends))
        leave = ibis.ifelse(
            rows.start.isnull() | rows.stop.isnull(), never, self.ends_up_to(rows.stop, ends)
        )
        if created is not None and self.lookback_days is not None:
            last = self.ends_up_to(rows.until, self.micros[:-1])
            leave = ibis.greatest(ibis.least(leave, last), enter)
        spans = rows.select("value", *_SEGMENT_NAMES, enter=enter, leave=leave).view()
        return spans.filter(spans.enter < spans.leave)


def _flag(condition: ir.BooleanValue) -> ir.Value:
    """1.0 where ``condition`` holds, else 0.0 (NULL counts as not holding)."""
    return ibis.ifelse(condition.fill_null(False), 1.0, 0.0)


def ship_deadline_us(f: Frames, orders: ir.Table) -> ir.IntegerValue:
    """promised_ship_by where set, else paid_at + the ship SLA, in microseconds since the
    epoch; NULL when neither."""
    sla = int(round(f.sla * 3600)) * 1_000_000
    return ibis.coalesce(
        f.us(f.col(orders, "promised_ship_by")), f.us(f.col(orders, "paid_at")) + sla
    )


@dataclass(frozen=True)
class KpiDef:
    """A KPI of the weekly series: how each week's value is observed and aggregated.

    ``observe(frames)`` gives observations (an Ibis table: a row per order, ticket,
    case... with the week of its ``event`` and a value); ``kind`` says how a week's
    observations become its value: count or sum of values, mean (of 0/1 values: a share),
    median, p90, ratio of two sums (times ``scale``), or level at the week's end. ``dims``
    are the segmentations besides all orders ("order_type", "warehouse",
    "carrier/region"...).
    """

    key: str
    unit: Unit
    higher_is_better: bool
    event: str
    kind: Kind
    observe: Callable[[Frames], Any]
    dims: tuple[str, ...] = ()
    tables: tuple[str, ...] = ("orders",)
    scale: float = 1.0


def _o(f: Frames, name: str) -> ir.Value:
    return f.col(f.orders, name)


def _created(f: Frames, value: Any) -> Obs:
    return f.of_orders(_o(f, "created_at"), value)


def _obs_created(f: Frames) -> Obs:
    return _created(f, 1.0)


def _gmv_value(f: Frames) -> ir.Value:
    kept = _o(f, "cancelled_at").isnull()
    return ibis.ifelse(kept, _o(f, "amount").fill_null(0.0), 0.0)


def _obs_gmv(f: Frames) -> Obs:
    return _created(f, _gmv_value(f))


def _obs_cancelled(f: Frames) -> Obs:
    return _created(f, _flag(_o(f, "cancelled_at").notnull()))


def _obs_abnormal(f: Frames) -> Obs:
    return _created(f, _flag(_o(f, "exception_code").notnull()))


def _obs_stockout(f: Frames) -> Obs:
    return _created(f, _flag(_o(f, "exception_code") == "stockout"))


def _obs_shipped(f: Frames) -> Obs:
    return f.of_orders(_o(f, "shipped_at"), 1.0)


def _obs_on_time_ship(f: Frames) -> Obs:
    shipped, deadline = _o(f, "shipped_at"), ship_deadline_us(f, f.orders)
    on_time = ibis.ifelse(deadline.isnull(), ibis.null("float64"), _flag(f.us(shipped) <= deadline))
    return f.of_orders(shipped, on_time)


def _obs_handling(f: Frames) -> Obs:
    return f.of_orders(_o(f, "shipped_at"), f.hours(_o(f, "paid_at"), _o(f, "shipped_at")))


def _obs_lost_damaged(f: Frames) -> Obs:
    return f.of_orders(
        _o(f, "shipped_at"), _flag(_o(f, "exception_code").isin(["lost", "damaged"]))
    )


def _obs_fill(f: Frames) -> tuple[Obs, Obs]:
    lines = f.rows("order_lines", "shipped_at")
    if "qty_shipped" not in lines.columns:
        none = f.of_rows(lines, lines.o_shipped_at, 0.0, ibis.literal(False))
        return none, none
    judged = lines.qty_shipped.notnull()
    shipped = f.of_rows(lines, lines.o_shipped_at, lines.qty_shipped.fill_null(0), judged)
    return shipped, f.of_rows(lines, lines.o_shipped_at, lines.qty, judged)


def _of_delivered(f: Frames, value: Callable[[ir.Table], Any]) -> Obs:
    """Observations of orders by their delivery: ``value`` of the orders of
    ``Frames.delivered`` (one pass for every KPI placed by delivery)."""
    orders = f.delivered()
    at = f.col(orders, "delivered_at")
    return f._observed(orders, at, value(orders), None, f.segments(orders))


def _obs_on_time_delivery(f: Frames) -> Obs:
    def on_time(orders: ir.Table) -> ir.Value:
        delivered, promise = f.col(orders, "delivered_at"), f.col(orders, "promised_delivery_by")
        return ibis.ifelse(promise.isnull(), ibis.null("float64"), _flag(delivered <= promise))

    return _of_delivered(f, on_time)


def _obs_transit(f: Frames) -> Obs:
    return _of_delivered(f, lambda o: f.hours(f.col(o, "shipped_at"), f.col(o, "delivered_at")))


def _obs_cycle(f: Frames) -> Obs:
    return _of_delivered(f, lambda o: f.hours(f.col(o, "created_at"), f.col(o, "delivered_at")))


def _obs_perfect(f: Frames) -> Obs:
    """Delivered on time, no exception, no complaint or after-sales case by the end of
    the delivery week, no line shipped short; orders without a promise are not judged."""
    orders = f.delivered()
    delivered = f.col(orders, "delivered_at")
    promise = f.col(orders, "promised_delivery_by")
    # Complaints and cases count up to the end of the order's delivery week (compared as
    # microseconds since the epoch, as the week is found).
    cutoff = f.week_end(f.week(delivered))
    perfect = (delivered <= promise).fill_null(False) & f.col(orders, "exception_code").isnull()
    if "p_complaint" in orders.columns:
        perfect &= ~(f.us(orders.p_complaint) < cutoff).fill_null(False)
    if "p_case" in orders.columns:
        perfect &= ~(f.us(orders.p_case) < cutoff).fill_null(False)
    if "p_short" in orders.columns:
        perfect &= orders.p_short.isnull()
    value = ibis.ifelse(promise.isnull(), ibis.null("float64"), _flag(perfect))
    return f._observed(orders, delivered, value, None, f.segments(orders))


def _delivered_orders(f: Frames) -> Obs:
    return _of_delivered(f, lambda _: 1.0)


def _refund_value(cases: ir.Table) -> ir.Value:
    if "refund_amount" not in cases.columns:
        return ibis.literal(0.0)
    return cases.refund_amount.fill_null(0.0).cast("float64")


def _obs_returns(f: Frames) -> tuple[Obs, Obs]:
    cases = f.rows("after_sales")
    returned = f.of_rows(cases, cases.requested_at, _flag(cases.kind == "return"))
    return returned, _delivered_orders(f)


def _obs_refunds(f: Frames) -> tuple[Obs, Obs]:
    cases = f.rows("after_sales")
    refunded = f.of_rows(cases, cases.requested_at, _flag(_refund_value(cases) > 0))
    return refunded, _delivered_orders(f)


def _obs_tickets(f: Frames, category: str | None) -> tuple[Obs, Obs]:
    tickets = f.rows("tickets")
    value: Any = 1.0 if category is None else _flag(tickets.category == category)
    return f.of_rows(tickets, tickets.opened_at, value), _created(f, 1.0)


def _obs_all_tickets(f: Frames) -> tuple[Obs, Obs]:
    return _obs_tickets(f, None)


def _obs_complaints(f: Frames) -> tuple[Obs, Obs]:
    return _obs_tickets(f, "complaint")


def _obs_ticket_hours(f: Frames, stage: str) -> Obs:
    tickets = f.rows("tickets")
    start_col, end_col = TICKET_STAGES[stage]
    if end_col not in tickets.columns:
        return f.of_rows(tickets, tickets.opened_at, 0.0, ibis.literal(False))
    return f.of_rows(tickets, tickets[end_col], f.hours(tickets[start_col], tickets[end_col]))


def _obs_first_response(f: Frames) -> Obs:
    return _obs_ticket_hours(f, "first_response")


def _obs_resolution(f: Frames) -> Obs:
    return _obs_ticket_hours(f, "resolution")


def _obs_csat(f: Frames) -> Obs:
    tickets = f.rows("tickets")
    if "csat" not in tickets.columns or "resolved_at" not in tickets.columns:
        return f.of_rows(tickets, tickets.opened_at, 0.0, ibis.literal(False))
    return f.of_rows(tickets, tickets.resolved_at, tickets.csat)


def _obs_refund_amount(f: Frames) -> Obs:
    cases = f.rows("after_sales")
    return f.of_rows(cases, cases.requested_at, _refund_value(cases))


def _obs_case_cycle(f: Frames) -> Obs:
    cases = f.rows("after_sales")
    if "closed_at" not in cases.columns:
        return f.of_rows(cases, cases.requested_at, 0.0, ibis.literal(False))
    days = f.hours(cases.requested_at, cases.closed_at) / 24.0
    return f.of_rows(cases, cases.closed_at, days)


def _obs_net_revenue(f: Frames) -> list[Obs]:
    return [_obs_gmv(f), _obs_refund_amount(f).negated()]


def _obs_settled(f: Frames) -> Obs:
    rows = f.rows("settlements")
    return f.of_rows(rows, rows.settled_at, rows.amount, rows.status == "settled")


def _obs_settlement_lag(f: Frames) -> Obs:
    rows = f.rows("settlements", "delivered_at")
    lag = f.hours(rows.o_delivered_at, rows.settled_at) / 24.0
    return f.of_rows(rows, rows.settled_at, lag, rows.status == "settled")


def _shipped_or_cancelled(f: Frames) -> ir.Value:
    """The earlier of shipped_at and cancelled_at (NULL when neither happened)."""
    shipped, cancelled = _o(f, "shipped_at"), _o(f, "cancelled_at")
    shipped_first = shipped.notnull() & ~(cancelled < shipped).fill_null(False)
    return ibis.ifelse(shipped_first, shipped, cancelled)


def _order_rows(f: Frames) -> ir.Table:
    return f.orders.mutate(**f.segments(f.orders))


def _obs_backlog(f: Frames) -> ir.Table:
    orders = _order_rows(f)
    paid, created = f.us(_o(f, "paid_at")), f.us(_o(f, "created_at"))
    return f.spans(orders, paid, f.us(_shipped_or_cancelled(f)), 1.0, created)


def _obs_overdue(f: Frames) -> ir.Table:
    orders = _order_rows(f)
    paid, deadline = f.us(_o(f, "paid_at")), ship_deadline_us(f, f.orders)
    due = ibis.ifelse(deadline > paid, deadline, paid)
    due = ibis.ifelse(paid.isnull() | deadline.isnull(), ibis.null("int64"), due)
    return f.spans(orders, due, f.us(_shipped_or_cancelled(f)), 1.0, f.us(_o(f, "created_at")))


def _obs_pending(f: Frames) -> ir.Table:
    """Amount pending at each week's end (currency): settlements of orders delivered before
    it and not settled or refunded before it; without a settled_at, only those whose
    status leaves the money due (``sections.pending_until_settled``)."""
    rows = f.rows("settlements", "delivered_at")
    rows = rows.filter(sections.pending_until_settled(rows.status, rows.settled_at))
    return f.spans(rows, f.us(rows.o_delivered_at), f.us(rows.settled_at), rows.amount)


_T, _CS, _ST, _LN = ("tickets",), ("after_sales",), ("settlements",), ("order_lines",)
_TYPE, _WH, _TYPE_WH = ("order_type",), ("warehouse",), ("order_type", "warehouse")
_DELIVERY = ("order_type", "carrier", "carrier/region")

# Every KPI of the weekly series. Columns: key, unit, higher is better, event placing a row
# in a week, aggregation, observations, segmentations, tables needed besides orders, scale.
# fmt: off
CATALOGUE: dict[str, KpiDef] = {k.key: k for k in (
    KpiDef("orders_created", "orders", True, "created", "count", _obs_created,
           ("order_type", "channel", "warehouse")),
    KpiDef("gmv", "currency", True, "created", "sum", _obs_gmv, ("order_type", "channel")),
    KpiDef("cancellation_rate", "share", False, "created", "mean", _obs_cancelled,
           ("order_type", "channel")),
    KpiDef("orders_shipped", "orders", True, "shipped", "count", _obs_shipped,
           ("warehouse", "carrier")),
    KpiDef("on_time_ship_rate", "share", True, "shipped", "mean", _obs_on_time_ship, _TYPE_WH),
    KpiDef("handling_median_h", "hours", False, "shipped", "median", _obs_handling, _TYPE_WH),
    KpiDef("handling_p90_h", "hours", False, "shipped", "p90", _obs_handling, _TYPE_WH),
    KpiDef("cycle_time_p90_h", "hours", False, "delivered", "p90", _obs_cycle, _TYPE_WH),
    KpiDef("backlog", "orders", False, "week_end", "level", _obs_backlog, _TYPE_WH),
    KpiDef("overdue_backlog", "orders", False, "week_end", "level", _obs_overdue, _TYPE_WH),
    KpiDef("abnormal_rate", "share", False, "created", "mean", _obs_abnormal, _TYPE_WH),
    KpiDef("stockout_orders", "orders", False, "created", "sum", _obs_stockout, _WH),
    KpiDef("fill_rate", "share", True, "shipped", "ratio", _obs_fill, _WH, _LN),
    KpiDef("on_time_delivery_rate", "share", True, "delivered", "mean", _obs_on_time_delivery,
           _DELIVERY),
    KpiDef("transit_median_h", "hours", False, "delivered", "median", _obs_transit,
           ("carrier", "carrier/region")),
    KpiDef("transit_p90_h", "hours", False, "delivered", "p90", _obs_transit, ("carrier",)),
    KpiDef("lost_damaged_rate", "share", False, "shipped", "mean", _obs_lost_damaged,
           ("carrier",)),
    KpiDef("perfect_order_rate", "share", True, "delivered", "mean", _obs_perfect, _TYPE),
    KpiDef("tickets_per_1000", "per_1000", False, "opened", "ratio", _obs_all_tickets, _TYPE,
           _T, 1000.0),
    KpiDef("complaint_rate", "per_1000", False, "opened", "ratio", _obs_complaints, _TYPE, _T,
           1000.0),
    KpiDef("first_response_median_h", "hours", False, "first_response", "median",
           _obs_first_response, (), _T),
    KpiDef("first_response_p90_h", "hours", False, "first_response", "p90",
           _obs_first_response, (), _T),
    KpiDef("resolution_median_h", "hours", False, "resolved", "median", _obs_resolution, (),
           _T),
    KpiDef("resolution_p90_h", "hours", False, "resolved", "p90", _obs_resolution, (), _T),
    KpiDef("csat", "score", True, "resolved", "mean", _obs_csat, (), _T),
    KpiDef("return_rate", "share", False, "requested", "ratio", _obs_returns, _TYPE, _CS),
    KpiDef("refund_rate", "share", False, "requested", "ratio", _obs_refunds, _TYPE, _CS),
    KpiDef("refund_amount", "currency", False, "requested", "sum", _obs_refund_amount, _TYPE,
           _CS),
    KpiDef("case_cycle_median_d", "days", False, "closed", "median", _obs_case_cycle, (), _CS),
    KpiDef("case_cycle_p90_d", "days", False, "closed", "p90", _obs_case_cycle, (), _CS),
    KpiDef("net_revenue", "currency", True, "created_and_requested", "sum", _obs_net_revenue, (),
           _CS),
    KpiDef("settled_amount", "currency", True, "settled", "sum", _obs_settled, (), _ST),
    KpiDef("settlement_lag_median_d", "days", False, "settled", "median", _obs_settlement_lag,
           (), _ST),
    KpiDef("settlement_lag_p90_d", "days", False, "settled", "p90", _obs_settlement_lag, (),
           _ST),
    KpiDef("pending_amount", "currency", False, "week_end", "level", _obs_pending, (), _ST),
)}
# fmt: on

# Columns each KPI needs besides the required ones: of orders by name, of another table as
# "table.column"; "a|b": either will do. A KPI whose source lacks one is "not available",
# never zero (``missing_columns``): a refund rate of 0 % where the export has no refund
# amounts would read as "no refunds".
NEEDS: dict[str, tuple[str, ...]] = {
    "gmv": ("amount",),
    "cancellation_rate": ("cancelled_at",),
    "orders_shipped": ("shipped_at",),
    "on_time_ship_rate": ("shipped_at", "paid_at|promised_ship_by"),
    "handling_median_h": ("paid_at", "shipped_at"),
    "handling_p90_h": ("paid_at", "shipped_at"),
    "cycle_time_p90_h": ("delivered_at",),
    "backlog": ("paid_at", "shipped_at"),
    "overdue_backlog": ("paid_at", "shipped_at"),
    "abnormal_rate": ("exception_code",),
    "stockout_orders": ("exception_code",),
    "fill_rate": ("shipped_at", "order_lines.qty_shipped"),
    "on_time_delivery_rate": ("delivered_at", "promised_delivery_by"),
    "transit_median_h": ("shipped_at", "delivered_at"),
    "transit_p90_h": ("shipped_at", "delivered_at"),
    "lost_damaged_rate": ("shipped_at", "exception_code"),
    "perfect_order_rate": ("delivered_at", "promised_delivery_by", "exception_code"),
    "first_response_median_h": ("tickets.first_response_at",),
    "first_response_p90_h": ("tickets.first_response_at",),
    "resolution_median_h": ("tickets.resolved_at",),
    "resolution_p90_h": ("tickets.resolved_at",),
    "csat": ("tickets.resolved_at", "tickets.csat"),
    "return_rate": ("delivered_at",),
    "refund_rate": ("delivered_at", "after_sales.refund_amount"),
    "refund_amount": ("after_sales.refund_amount",),
    "case_cycle_median_d": ("after_sales.closed_at",),
    "case_cycle_p90_d": ("after_sales.closed_at",),
    "net_revenue": ("amount", "after_sales.refund_amount"),
    "settled_amount": ("settlements.settled_at",),
    "settlement_lag_median_d": ("delivered_at", "settlements.settled_at"),
    "settlement_lag_p90_d": ("delivered_at", "settlements.settled_at"),
    # Without settled_at a row stays pending as its status says (pending_until_settled).
    "pending_amount": ("delivered_at",),
}


def missing_columns(
    key: str, has_table: Callable[[str], bool], has_column: Callable[[str, str], bool]
) -> list[str]:
    """What the source lacks for KPI ``key``: its tables ("tickets"), then columns (orders'
    by name, other tables' as "tickets.csat").

    Empty when the KPI can be computed. ``has_column(table, column)`` answers for a table
    the source has; a column of a table it lacks is not listed (the table is). An
    alternative "a|b" is missing only when both are (and is listed as "a|b").
    """
    spec = CATALOGUE[key]
    missing = [table for table in spec.tables if not has_table(table)]
    for need in NEEDS.get(key, ()):
        table, dot, columns = need.partition(".")
        table, columns = (table, columns) if dot else ("orders", need)
        if table != "orders" and not has_table(table):
            continue
        if not any(has_column(table, c) for c in columns.split("|")):
            missing.append(need)
    return missing


# The headline of the report, in display order.
HEADLINE = (
    "orders_created",
    "gmv",
    "on_time_ship_rate",
    "cycle_time_p90_h",
    "abnormal_rate",
    "perfect_order_rate",
    "complaint_rate",
    "refund_rate",
)
SERIES_COLUMNS = ("kpi", "dimension", "segment", "order_type", "week", "value", "n", "se")


def _segment(obs: ir.Table, dim: str) -> ir.Value:
    """The segment of each observation in ``dim`` ("all", a value, values joined by "/");
    NULL when a value is missing (the row counts in "all" only)."""
    if dim == ALL:
        return ibis.literal(ALL)
    columns = [obs[_SEG + c] for c in dim.split("/")]
    segment = columns[0]
    for column in columns[1:]:
        segment = segment.concat("/", column)
    return segment


@dataclass
class _Member:
    """One KPI's share of a pass: its key, part (obs, num, den), kind and observations."""

    key: str
    part: str
    kind: str
    obs: Obs
    dims: tuple[str, ...]
    q: float | None = None


def _observed_rows(
    f: Frames,
    members: list[_Member],
    weeks: tuple[int, int] | None = None,
    columns: Sequence[str] | None = None,
) -> ir.Table:
    """The rows one pass reads: week, segment columns (``columns``: those named; default:
    all) and each member's value v{i} (NULL where it does not count), rows outside the
    weeks (``weeks``: weeks lo to hi - 1; default: all) left out."""
    first = members[0].obs
    values: dict[str, ir.Value] = {}
    for i, m in enumerate(members):
        value = m.obs.value
        if m.kind in ("count", "sum"):
            value = value.fill_null(0.0)  # a kept row without a value adds nothing
        keep = m.obs.keep
        values[f"v{i}"] = value if keep is None else ibis.ifelse(keep, value, ibis.null("float64"))
    known = {**first.segments, _CODE: first.code}
    segments = first.segments if columns is None else {c: known[c] for c in columns}
    table, at = first.table, first.at
    # Rows joined to their orders (``Frames.rows``) or orders joined to what judges their
    # delivery (``Frames.delivered``) are read before the join when nothing the pass reads
    # needs a column the join adds (a quantile of every ticket, transit times...): the
    # join only adds columns (each side is unique by order_id).
    unjoined = _before_join(f, table, [at, *segments.values(), *values.values()])
    if unjoined is not None:
        table, at = f.base(table), unjoined[0]
        segments = dict(zip(segments, unjoined[1 : 1 + len(segments)], strict=True))
        values = dict(zip(values, unjoined[1 + len(segments) :], strict=True))
    if weeks is not None:
        # The weeks' instants compared as they are stored: the engine skips the row
        # groups outside them (rows are written about in the order of their events).
        lo, hi = weeks
        table = table.filter((at >= f.bounds[lo]) & (at < f.bounds[hi]))
    # ``view``: the values are computed once, where inlining them into the filter and
    # every later step would compute each again.
    rows = table.select(week=f.week(at), **segments, **values).view()
    return rows.filter(rows.week.notnull())


def _before_join(f: Frames, table: ir.Table, exprs: Sequence[ir.Value]) -> list[ir.Value] | None:
    """``exprs`` over rows joined to their orders (``table``) as expressions over the rows
    before the join; None when ``table`` is not such a join or one reads an orders column."""
    base = f.base(table)
    if base is table:
        return None
    try:
        return [e.op().replace({table.op(): base.op()}).to_expr() for e in exprs]
    except IbisTypeError:
        return None  # a column the join adds (o_delivered_at...)


def _sums_columns(members: list[_Member]) -> list[str]:
    """The segment columns the fine sums are grouped by: the code (``SegmentCodes``, which
    ``kpi_aggregates`` decodes) where the rows carry it, else every segment column."""
    return [_CODE] if members[0].obs.code is not None else list(_SEGMENT_NAMES)


def _fine_sums(f: Frames, members: list[_Member], rows: ir.Table | None = None) -> ir.Table:
    """One pass over rows observed at one event, for every additive KPI reading them: per
    week and combination of segment values, each KPI i's n{i} (values counted) and the
    sums a{i}, b{i} of its values and squares. Every segmentation, and every segment set
    aside, is a sum of these few rows (``_rolled``): one grouping, one scan.

    ``rows``: those rows, given (``_sums_and_quantiles``), with the columns of
    ``_sums_columns`` and member i's value as v{i}."""
    group = ["week", *_sums_columns(members)]
    if rows is None:
        rows = _observed_rows(f, members, columns=group[1:])
    aggregates: dict[str, Any] = {}
    for i in range(len(members)):
        v = rows[f"v{i}"]
        aggregates[f"n{i}"] = v.count()
        aggregates[f"a{i}"] = v.sum().fill_null(0.0)
        aggregates[f"b{i}"] = (v * v).sum().fill_null(0.0)
    return rows.group_by(group).aggregate(**aggregates)


@dataclass(frozen=True)
class _QuantilePass:
    """A quantile pass: its query, the fractions it computes, for each member the index
    of the value it reads (members reading the same values share one aggregate: a median
    and a P90 of the same durations sort them once), and the bytes of engine memory each
    observed row holds while it runs (``_week_chunks``)."""

    table: ir.Table | None  # None: no cell wanted, nothing to compute
    fractions: list[float]
    value_of: list[int]
    row_bytes: int = 0


def _quantile_columns(f: Frames, members: list[_Member]) -> list[str]:
    """The segment columns a quantile pass reads: those of its segmentations, and with
    segments to set aside, whether the order is loaded and the columns they name."""
    dims = list(dict.fromkeys(d for m in members for d in m.dims))
    used = {c for d in dims for c in _dim_columns(d)}
    if f.scenarios:
        used |= {_LOADED, *(_SEG + c for s in f.scenarios for c in s)}
    return [c for c in _SEGMENT_NAMES if c in used]


def _quantile_pass(
    f: Frames,
    members: list[_Member],
    weeks: tuple[int, int] | None = None,
    rows: ir.Table | None = None,
) -> _QuantilePass:
    """One pass over rows observed at one event (in ``weeks``: weeks lo to hi - 1; default:
    all), for every quantile KPI reading them: per segmentation, segment and week, for
    each distinct value k and scenario j the count n{k}_{j} and the quantiles q{k}_{j}
    at every fraction any member needs (NULL where no member reading the value has that
    segmentation).

    Without segments to set aside there is one scenario (0), every row; with them,
    scenario j counts the rows outside segment j: one filtered aggregate per segment in
    the same scan, where a copy of the rows per segment would multiply the scan. The
    rows are read once for every segmentation (a common table expression of the columns
    they need), not once per segmentation.

    ``rows``: those rows, given (``_sums_and_quantiles``: shared with the pass's sums), with
    the columns of ``_quantile_columns`` and member i's value as v{i}."""
    dims = list(dict.fromkeys(d for m in members for d in m.dims))
    fractions = sorted({_fraction(x) for m in members if m.q is not None for x in _around(m.q)})
    first: dict[tuple[Any, Any], int] = {}
    value_of = []
    for i, m in enumerate(members):
        keep = None if m.obs.keep is None else m.obs.keep.op()
        value_of.append(first.setdefault((m.obs.value.op(), keep), i))
    columns = _quantile_columns(f, members)
    if rows is None:
        # Named, the rows become one common table expression the segmentations share.
        rows = _observed_rows(f, members, weeks, columns).alias("kpi_observed")
    out = []
    slots = 0.0
    for dim in dims:
        part = rows.mutate(dimension=ibis.literal(dim), segment=_segment(rows, dim))
        part = part.filter(part.segment.notnull())
        share = 1.0  # of the rows, those this segmentation's aggregates hold
        if f.cells is not None:
            segments = _cells_wanted(f.cells, [m.key for m in members], dim)
            if not segments:
                continue
            if dim != ALL:
                part = part.filter(part.segment.isin(sorted(segments)))
                if f.shares is not None:
                    share = min(1.0, sum(f.shares.get((dim, seg), 1.0) for seg in segments))
        outside = [_outside(part, scenario) for scenario in f.scenarios] or [None]
        aggregates: dict[str, Any] = {}
        for k in sorted(set(value_of)):
            readers = [m for m, kk in zip(members, value_of, strict=True) if kk == k]
            for j, where in enumerate(outside):
                wanted = any(dim in m.dims for m in readers)
                if wanted and f.cells is not None:
                    wanted = bool(_cells_wanted(f.cells[j : j + 1], [m.key for m in readers], dim))
                v = part[f"v{k}"]
                if not wanted:
                    aggregates[f"n{k}_{j}"] = ibis.null("float64")
                    aggregates[f"q{k}_{j}"] = ibis.null("array<float64>")
                    continue
                aggregates[f"n{k}_{j}"] = v.count(where=where).cast("float64")
                aggregates[f"q{k}_{j}"] = v.quantile(fractions, where=where)
                slots += share
        out.append(part.group_by(["dimension", "segment", "week"]).aggregate(**aggregates))
    # What a row holds: its week, segment values and values in the shared rows, and a
    # value in every quantile aggregate that reads it (an aggregate keeps all its values):
    # with cells and their shares, as many as the rows of its segments hold on average.
    row_bytes = 8 + 16 * len(columns) + 8 * len(set(value_of)) + math.ceil(16 * slots)
    return _QuantilePass(ibis.union(*out) if out else None, fractions, value_of, row_bytes)


# The share of the engine's memory limit one quantile query may fill with its rows, as
# ``row_bytes`` counts them: its aggregates keep every value they read, which the engine
# cannot spill to disk. The count is an upper bound: on 1M orders a week DuckDB needed
# 0.37 to 0.40 of it for a pass over every order (430 MiB for the handling times, 908 MiB
# for the transit and cycle times), 0.11 to 0.12 for the root search's (its rows enter
# only the segments it asks for). At 1.5 such a pass fills at most 0.6 of the limit; a
# run of weeks that still meets the limit is split in two (``_quantile_rows``).
_QUANTILE_MEMORY_SHARE = 1.5


def _week_chunks(
    con: BaseBackend, f: Frames, table: ir.Table, row_bytes: int
) -> list[tuple[int, int]]:
    """The weeks (lo, hi: weeks lo to hi - 1) of each query of a quantile pass over the
    rows of ``table``: all weeks in one, or runs of weeks whose rows fit in
    ``_QUANTILE_MEMORY_SHARE`` of the engine's memory limit. A quantile's group lies in
    one week, so the runs give the same result. The rows per week are taken as the
    table's count (before any join to orders) over the weeks."""
    limit = engine.memory_limit_bytes(con)
    weeks = max(f.weeks, 1)
    if limit is None or row_bytes <= 0:
        return [(0, f.weeks)]
    per_week = int(con.execute(f.base(table).count())) / weeks
    fits = int(limit * _QUANTILE_MEMORY_SHARE // max(per_week * row_bytes, 1.0))
    runs = -(-weeks // min(max(fits, 1), weeks))
    step = -(-weeks // runs)  # runs of about equal length
    return [(lo, min(lo + step, f.weeks)) for lo in range(0, f.weeks, step)]


def _quantile_rows(
    con: BaseBackend,
    f: Frames,
    members: list[_Member],
    whole: _QuantilePass,
    runs: list[tuple[int, int]],
) -> pd.DataFrame:
    """The rows of a quantile pass (``whole``: over every week) computed run by run of
    weeks. A run the engine refuses for its memory limit is computed again as two runs
    of half its weeks (``_week_chunks`` sized the runs on an estimate); a single week
    refused raises the engine's error."""
    done: list[pd.DataFrame] = []
    pending = list(runs)
    while pending:
        lo, hi = pending.pop(0)
        table = (
            whole.table if (lo, hi) == (0, f.weeks) else _quantile_pass(f, members, (lo, hi)).table
        )
        try:
            done.append(con.execute(table))
        except Exception as exc:
            if not engine.out_of_memory(exc) or hi - lo < 2:
                raise
            middle = (lo + hi) // 2
            pending[:0] = [(lo, middle), (middle, hi)]
    return done[0] if len(done) == 1 else pd.concat(done, ignore_index=True)


def _cells_wanted(
    cells: Sequence[Mapping[str, Collection[tuple[str, str]]]], keys: Sequence[str], dim: str
) -> set[str]:
    """The segments of ``dim`` any of ``cells`` wants for any KPI of ``keys``."""
    return {seg for c in cells for key in keys for d, seg in c.get(key, ()) if d == dim}


def _outside(rows: ir.Table, scenario: Mapping[str, str]) -> ir.BooleanValue:
    """Whether each row lies outside the segment ``scenario`` (its order not in it)."""
    # A row whose order is not loaded belongs to no segment: it is never set aside.
    inside: ir.BooleanValue = rows[_LOADED]
    for column, value in scenario.items():
        seg = rows[_SEG + column]
        inside &= seg.isnull() if value == MISSING else (seg == value).fill_null(False)
    return ~inside


def _inside(fine: pd.DataFrame, scenario: Mapping[str, str]) -> np.ndarray:
    """Which rows of a fine frame lie inside the segment ``scenario``."""
    inside = np.array(fine[_LOADED].to_numpy(dtype=bool, na_value=False))
    for column, value in scenario.items():
        seg = fine[_SEG + column]
        if value == MISSING:
            inside &= seg.isna().to_numpy(dtype=bool)
        else:
            inside &= seg.eq(value).to_numpy(dtype=bool, na_value=False)
    return inside


def _dim_columns(dim: str) -> list[str]:
    return [] if dim == ALL else [_SEG + c for c in dim.split("/")]


def _grouped(fine: pd.DataFrame, dim: str) -> tuple[Any, np.ndarray]:
    """The fine rows grouped per segment of ``dim`` and week (rows with an empty segment
    value left out, they count in "all" only), and each fine row's group number (-1: in
    none), numbered in the order the grouping lists its groups."""
    columns = _dim_columns(dim)
    valid = fine.dropna(subset=columns) if columns else fine
    grouped = valid.groupby([*columns, "week"], sort=False, observed=True)
    codes = np.full(len(fine), -1, dtype="int64")
    numbers = grouped.ngroup().to_numpy(dtype="float64", na_value=-1.0)
    codes[fine.index.get_indexer(valid.index)] = numbers.astype("int64")
    return grouped, codes


def _summed(grouped: Any, dim: str, values: Sequence[str]) -> pd.DataFrame:
    """The groups' sums: dimension, segment, week and ``values`` (NULL where every value
    is, as the engine's SUM)."""
    summed = grouped[list(values)].sum(min_count=1).reset_index()
    columns = _dim_columns(dim)
    if not columns:
        return summed.assign(dimension=ALL, segment=ALL)
    segment = summed[columns[0]].astype(str)
    for column in columns[1:]:
        segment = segment + "/" + summed[column].astype(str)
    return summed.drop(columns=columns).assign(dimension=dim, segment=segment.to_numpy())


def _group_sums(codes: np.ndarray, values: np.ndarray, groups: int) -> np.ndarray:
    """Per group (``codes``, -1: none) the sums of each column of ``values``; NaN values
    are left out, a group whose values are all NaN sums to NaN, a group without rows to 0."""
    keep = codes >= 0
    codes, values = codes[keep], values[keep]
    out = np.zeros((groups, values.shape[1]))
    for j in range(values.shape[1]):
        column = values[:, j]
        known = ~np.isnan(column)
        sums = np.bincount(codes[known], weights=column[known], minlength=groups)
        rows = np.bincount(codes, minlength=groups)
        counted = np.bincount(codes[known], minlength=groups)
        out[:, j] = np.where((rows > 0) & (counted == 0), np.nan, sums)
    return out


def _rolled(
    fine: pd.DataFrame,
    dims: Sequence[str],
    values: Sequence[str],
    scenarios: Sequence[Mapping[str, str]],
) -> Iterator[tuple[int, str, pd.DataFrame]]:
    """(scenario, dim, sums per segment and week) for every scenario and dim: all rows'
    sums, less those of the rows inside each set-aside segment (few fine rows each).

    The fine rows are grouped once per dim; each scenario's sums to subtract are array
    sums over the group numbers of its rows (hundreds of scenarios x dims, each a
    grouping of frames, took seconds)."""
    fine = fine.reset_index(drop=True)
    grouping = {dim: _grouped(fine, dim) for dim in dims}
    totals = {dim: _summed(grouping[dim][0], dim, values) for dim in dims}
    if not scenarios:
        for dim in dims:
            yield 0, dim, totals[dim]
        return
    matrix = fine[list(values)].to_numpy(dtype="float64")
    # The totals a scenario subtracts from are summed the way its rows are: a segment
    # holding all of a cell's rows then leaves exactly 0, not a rounding residue.
    whole = {dim: _group_sums(grouping[dim][1], matrix, len(totals[dim])) for dim in dims}
    for scenario, segment in enumerate(scenarios):
        inside = _inside(fine, segment)
        for dim in dims:
            total = totals[dim]
            if not inside.any():
                yield scenario, dim, total
                continue
            codes = grouping[dim][1]
            mine = _group_sums(np.where(inside, codes, -1), matrix, len(total))
            left = whole[dim] - mine
            frame = pd.DataFrame(left, columns=list(values))
            frame.insert(0, "week", total["week"].to_numpy())
            frame.insert(0, "segment", total["segment"].to_numpy())
            yield scenario, dim, frame.assign(dimension=dim)


def _sums_long(
    members: list[_Member],
    fine: pd.DataFrame,
    scenarios: Sequence[Mapping[str, str]],
    columns: Sequence[int],
) -> pd.DataFrame:
    """The fine sums of a pass as rows of (kpi, part, scenario, dimension, segment, week,
    n, s1, s2, qv, qse), per scenario: every row, or the rows outside a set-aside segment.
    Member i's sums are the fine frame's n{c}, a{c}, b{c} with c = ``columns[i]``."""
    dims = list(dict.fromkeys(d for m in members for d in m.dims))
    values = [f"{p}{c}" for c in columns for p in ("n", "a", "b")]
    frames = []
    for scenario, dim, summed in _rolled(fine, dims, values, scenarios):
        for i, m in enumerate(members):
            if dim not in m.dims:
                continue
            frames.append(
                pd.DataFrame(
                    {
                        "kpi": m.key,
                        "part": m.part,
                        "scenario": scenario,
                        "dimension": dim,
                        "segment": summed["segment"].to_numpy(),
                        "week": summed["week"].to_numpy(dtype="int64"),
                        "n": summed[f"n{columns[i]}"].to_numpy(dtype="float64"),
                        "s1": summed[f"a{columns[i]}"].to_numpy(dtype="float64"),
                        "s2": summed[f"b{columns[i]}"].to_numpy(dtype="float64"),
                        "qv": np.nan,
                        "qse": np.nan,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _quantiles_long(
    members: list[_Member], done: _QuantilePass, wide: pd.DataFrame, scenarios: int
) -> pd.DataFrame:
    """The wide result of a quantile pass as rows of (kpi, part, scenario, dimension,
    segment, week, n, s1, s2, qv, qse): each member's quantile and its standard error,
    the sparsity estimate sqrt(q (1 - q) / n) * (Q(q + h) - Q(q - h)) / 2h (``_around``)."""
    frames = []
    fractions = done.fractions
    for i, m in enumerate(members):
        k, q = done.value_of[i], float(m.q or 0.0)
        low, mid, high = (fractions.index(_fraction(x)) for x in _around(q))
        for j in range(scenarios):
            mine = wide[wide[f"n{k}_{j}"].notna() & wide["dimension"].isin(m.dims)]
            qs = np.full((len(mine), len(fractions)), np.nan)
            for row, found in enumerate(mine[f"q{k}_{j}"]):
                if found is not None and len(found):
                    qs[row] = np.asarray(found, dtype="float64")
            n = mine[f"n{k}_{j}"].to_numpy(dtype="float64")
            spread = (qs[:, high] - qs[:, low]) / (fractions[high] - fractions[low])
            with np.errstate(divide="ignore", invalid="ignore"):
                se = np.sqrt(q * (1 - q) / n) * spread
            frames.append(
                pd.DataFrame(
                    {
                        "kpi": m.key,
                        "part": m.part,
                        "scenario": j,
                        **{c: mine[c].to_numpy() for c in ("dimension", "segment", "week")},
                        "n": n,
                        "s1": np.nan,
                        "s2": np.nan,
                        "qv": qs[:, mid],
                        "qse": se,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def _fraction(x: float) -> float:
    return round(min(max(x, 0.0), 1.0), 12)


_H = 0.1  # widest bandwidth of a quantile's standard error, in fractions


def _around(q: float) -> tuple[float, float, float]:
    """The fractions q - h, q, q + h behind a quantile and its standard error.

    The error is the sparsity estimate sqrt(q (1 - q) / n) * (Q(q + h) - Q(q - h)) / 2h:
    quantiles at fixed fractions, which every engine computes in the same pass. A wide
    h keeps it honest for clustered values (delivery times bunched by day, where a narrow
    one can fall inside one bunch and report no spread at all); h stays at most half the
    way to 0 and 1, so that a P90's error never leans on the maximum.
    """
    h = min(_H, q / 2, (1 - q) / 2)
    return (q - h, q, q + h)


def _level_sums(key: str, spans: ir.Table, columns: Sequence[str]) -> ir.Table:
    """Sums of the spans per week index entered, week index left and combination of
    segment values, in one grouping (the level at each week's end is the running
    difference of what enters and leaves, taken after the engine; ``_edge_sums``):
    kpi, enter, leave, ``columns``, n, s1, s2."""
    sums = spans.group_by(["enter", "leave", *columns]).aggregate(
        n=spans.count().cast("float64"),
        s1=spans.value.sum(),
        s2=(spans.value * spans.value).sum(),
    )
    return sums.select(
        kpi=ibis.literal(key),
        enter=sums.enter.cast("int64"),
        leave=sums.leave.cast("int64"),
        **{c: sums[c] for c in columns},
        n=sums.n,
        s1=sums.s1.cast("float64"),
        s2=sums.s2.cast("float64"),
    )


def _edge_sums(fine: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The spans' sums per (enter, leave) cell as sums per week index and edge: kpi, part
    (enter, leave), week, ``columns``, n, s1, s2 (a span enters at one week's end and
    leaves at a later one; each edge sums the cells sharing its week)."""
    keys = ["kpi", *columns]
    parts = []
    for edge in ("enter", "leave"):
        summed = (
            fine.groupby([*keys, edge], sort=False, dropna=False, observed=True)[["n", "s1", "s2"]]
            .sum(min_count=1)  # NULL where every value is, as the engine's SUM
            .reset_index()
            .rename(columns={edge: "week"})
        )
        parts.append(summed.assign(part=edge))
    out = pd.concat(parts, ignore_index=True)
    return out[["kpi", "part", "week", *columns, "n", "s1", "s2"]]


def _levels_long(
    fine: pd.DataFrame, dims: Mapping[str, Sequence[str]], scenarios: Sequence[Mapping[str, str]]
) -> pd.DataFrame:
    """The level KPIs' fine sums as rows of (kpi, part, scenario, dimension, segment,
    week, n, s1, s2, qv, qse)."""
    frames = []
    for (key, part), group in fine.groupby(["kpi", "part"], sort=False):
        for scenario, _dim, summed in _rolled(group, dims[key], ("n", "s1", "s2"), scenarios):
            frames.append(
                summed.assign(kpi=key, part=part, scenario=scenario, qv=np.nan, qse=np.nan)
            )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _dims(kpi: KpiDef, only: Mapping[str, Sequence[str]] | None) -> tuple[str, ...]:
    """The segmentations of ``kpi`` to compute: all, or those ``only`` names for it."""
    dims = (ALL, *kpi.dims)
    return dims if only is None else tuple(d for d in dims if d in only.get(kpi.key, ()))


Passes = dict[tuple[Any, Any], list[_Member]]


def _observe(
    frames: Frames, keys: Sequence[str], dims: Mapping[str, Sequence[str]] | None
) -> tuple[Passes, dict[str, tuple[str, ...]], list[ir.Table]]:
    """The KPIs ``keys`` as passes (members grouped by the rows and event they observe),
    and the level KPIs with their segmentations and spans."""
    levels: list[ir.Table] = []
    level_dims: dict[str, tuple[str, ...]] = {}
    passes: Passes = {}

    def add(key: str, part: str, kind: str, obs: Obs, dims: tuple[str, ...]) -> None:
        q = {"median": 0.5, "p90": P90}.get(kind)
        passes.setdefault(obs.source, []).append(_Member(key, part, kind, obs, dims, q))

    for key in keys:
        kpi = CATALOGUE[key]
        kpi_dims = _dims(kpi, dims)
        if not kpi_dims:
            continue
        observed = kpi.observe(frames)
        if kpi.kind == "level":
            level_dims[key] = kpi_dims
            levels.append(observed)
        elif kpi.kind == "ratio":
            num, den = observed
            add(key, "num", "sum", num, kpi_dims)
            add(key, "den", "sum", den, kpi_dims)
        else:
            for obs in observed if isinstance(observed, list) else [observed]:
                add(key, "obs", kpi.kind, obs, kpi_dims)
    return passes, level_dims, levels


def _fetch(
    con: BaseBackend,
    query: ir.Table,
    store: dict[Any, pd.DataFrame] | None,
    key: Any,
    finish: Callable[[pd.DataFrame], Any] | None = None,
    run: Callable[[], Any] | None = None,
) -> Any:
    """``query``'s result (passed through ``finish``), from ``store`` when the query named
    ``key`` ran before on the same tables (a store belongs to one set of tables).
    ``run``: what gives the result instead of running ``query``."""
    if store is not None and key in store:
        return store[key]
    result = run() if run is not None else con.execute(query)
    result = finish(result) if finish is not None else result
    if store is not None:
        store[key] = result
    return result


def _sums_and_quantiles(
    con: BaseBackend, f: Frames, full: list[_Member], quantiles: list[_Member]
) -> tuple[pd.DataFrame, _QuantilePass, pd.DataFrame] | None:
    """A pass's fine sums (of its additive members ``full``) and quantile pass (of
    ``quantiles``) from one query whose rows are read once: the fine sums' result, the
    quantile pass and its rows. Where both read rows joined to their orders (settlements
    and their orders' delivery, for the settled amount and the settlement lag), two
    queries would make the join twice.

    None (the two are then run apart) off DuckDB, which computes a common table expression
    once where another engine may compute it per reader, when the quantiles have no cell to
    compute, or when the rows both keep would not fit the memory share of one quantile
    query (``_week_chunks``), or the engine refuses them for its memory limit.
    """
    if con.name != "duckdb":
        return None
    sums_columns = _sums_columns(full)
    quantile_columns = _quantile_columns(f, quantiles)
    columns = [*sums_columns, *(c for c in quantile_columns if c not in sums_columns)]
    rows = _observed_rows(f, [*full, *quantiles], columns=columns).alias("kpi_pass")
    n = len(full)
    done = _quantile_pass(
        f,
        quantiles,
        rows=rows.select(
            "week", *quantile_columns, **{f"v{i}": rows[f"v{n + i}"] for i in range(len(quantiles))}
        ),
    )
    if done.table is None:
        return None
    # The shared rows are held whole while both read them: week, columns and values.
    shared = 8 * (1 + len(columns) + n + len(quantiles))
    if _week_chunks(con, f, quantiles[0].obs.table, done.row_bytes + shared) != [(0, f.weeks)]:
        return None
    sums = _fine_sums(f, full, rows.select("week", *sums_columns, *[f"v{i}" for i in range(n)]))
    try:
        fine, wide = engine.execute_together(con, [sums, done.table])
    except Exception as exc:
        if not engine.out_of_memory(exc):
            raise
        return None
    return fine, done, wide


def _query_key(frames: Frames, what: str, members: Sequence[Any]) -> tuple[Any, ...]:
    """What identifies a query on one set of tables: its kind, the KPIs it computes and
    the weeks, SLA, lookback and engine its expressions were built for (two builds of
    one expression differ in the identities of their joins, so not the expression)."""
    return (what, tuple(members), tuple(frames.micros), frames.sla, frames.lookback_days)


def kpi_aggregates(
    con: BaseBackend,
    frames: Frames,
    keys: Sequence[str],
    dims: Mapping[str, Sequence[str]] | None = None,
    store: dict[Any, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """The engine's part of the weekly series: per KPI, scenario, segment and week the sums
    (or the quantile) that ``weekly_kpis`` finishes; a few thousand rows.

    KPIs that observe the same rows at the same event share one pass over them (volume,
    GMV, cancellations and abnormal orders all read orders by their creation): one query
    per pass for the sums, one for its quantiles, and one for the levels at week ends.
    The sums are those of every catalogue KPI of the pass per week and combination of
    segment values: every segmentation, and every segment set aside, is summed from them
    after the engine. With ``store`` (a dict kept by the caller) they are computed once
    for the series and every later segment set aside on the same tables."""
    if frames.codes is None and any(t in frames.tables for t in _CODED):
        orders = frames.orders
        frames.codes = _fetch(
            con, orders, store, ("codes",), run=lambda: SegmentCodes.of(con, orders)
        )
    passes, level_dims, levels = _observe(frames, keys, dims)
    present = [k for k in CATALOGUE if all(t in frames.tables for t in CATALOGUE[k].tables)]
    if list(keys) == present and dims is None:
        every, every_level_dims, every_levels = passes, level_dims, levels
    else:
        every, every_level_dims, every_levels = _observe(frames, present, None)
    results = []
    scenarios = frames.scenarios
    for source, members in passes.items():
        sums = [m for m in members if m.q is None]
        quantiles = [m for m in members if m.q is not None]
        together = None
        if sums:
            full = [m for m in every[source] if m.q is None]
            position = {(m.key, m.part): i for i, m in enumerate(full)}
            names = [(m.key, m.part) for m in full]
            decode = frames.codes.decode if frames.codes and full[0].obs.code is not None else None
            key = _query_key(frames, "sums", names)
            if quantiles and (store is None or key not in store):
                together = _sums_and_quantiles(con, frames, full, quantiles)
            if together is not None:
                fine = decode(together[0]) if decode is not None else together[0]
                if store is not None:
                    store[key] = fine
            else:
                fine = _fetch(con, _fine_sums(frames, full), store, key, decode)
            columns = [position[(m.key, m.part)] for m in sums]
            results.append(_sums_long(sums, fine, scenarios, columns))
        if quantiles:
            if together is not None:
                done, wide = together[1], together[2]
            else:
                done = _quantile_pass(frames, quantiles)
                if done.table is not None:
                    chunks = _week_chunks(con, frames, quantiles[0].obs.table, done.row_bytes)
                    wide = _quantile_rows(con, frames, quantiles, done, chunks)
            if done.table is not None:
                results.append(_quantiles_long(quantiles, done, wide, max(len(scenarios), 1)))
    if levels:
        union = ibis.union(
            *[
                _level_sums(key, spans, _SEGMENT_NAMES)
                for key, spans in zip(every_level_dims, every_levels, strict=True)
            ]
        )
        key = _query_key(frames, "levels", list(every_level_dims))
        fine = _fetch(con, union, store, key, lambda cells: _edge_sums(cells, _SEGMENT_NAMES))
        fine = fine[fine["kpi"].isin(list(level_dims))]
        results.append(_levels_long(fine, level_dims, scenarios))
    results = [r for r in results if len(r)]
    if not results:
        return pd.DataFrame(columns=["scenario", "kpi", "part", *_GROUP[1:], *_SUMS])
    return pd.concat(results, ignore_index=True)


def _frame_levels(orders: pd.DataFrame) -> dict[str, list[str]]:
    """Display order of each segment column's values: a categorical's categories, else
    sorted; order types in schema order."""
    levels: dict[str, list[str]] = {"order_type": list(ORDER_TYPES)}
    for column in SEGMENT_COLUMNS[1:]:
        if column not in orders.columns:
            levels[column] = []
            continue
        values = orders[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            levels[column] = [str(c) for c in values.cat.categories]
        else:
            levels[column] = sorted(str(v) for v in values.dropna().unique())
    return levels


def _names(dim: str, seen: Sequence[str], levels: Mapping[str, Sequence[str]] | None) -> list[str]:
    """The segments of ``dim`` in display order: every order type; others as observed."""
    if dim == ALL:
        return [ALL]
    if dim == "order_type":
        return list(ORDER_TYPES)
    columns = dim.split("/")
    rank = {c: {v: i for i, v in enumerate((levels or {}).get(c, ()))} for c in columns}

    def order(name: str) -> tuple[Any, ...]:
        values = name.split("/", len(columns) - 1)
        return tuple(
            (rank[c].get(v, len(rank[c])), v) for c, v in zip(columns, values, strict=False)
        )

    return sorted(set(seen), key=order)


def _grid(
    rows: pd.DataFrame, column: str, index: dict[str, int], weeks: int, fill: float
) -> np.ndarray:
    out = np.full((len(index), weeks), fill, dtype="float64")
    at = pd.Index(list(index)).get_indexer(rows["segment"])
    week = rows["week"].to_numpy(dtype="int64")
    keep = (at >= 0) & (week >= 0) & (week < weeks)
    out[at[keep], week[keep]] = rows[column].to_numpy(dtype="float64")[keep]
    return out


def _finish(
    kpi: KpiDef, rows: pd.DataFrame, names: list[str], weeks: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(value, n, se) as segments x weeks from the engine's aggregates of one segmentation.

    se is the sampling standard error of a week's value: Poisson for a count, compound
    Poisson for a sum, binomial-like for a mean, order statistics for a quantile.
    """
    index = {name: i for i, name in enumerate(names)}
    empty = rows.iloc[:0]
    found = dict(tuple(rows.groupby("part", sort=False)))
    part = {p: found.get(p, empty) for p in ("obs", "num", "den", "enter", "leave")}
    nan = np.full((len(names), weeks), np.nan)
    if kpi.kind == "level":
        width = weeks + 1
        out = []
        for column in ("s1", "n", "s2"):
            moves = _grid(part["enter"], column, index, width, 0.0)
            moves -= _grid(part["leave"], column, index, width, 0.0)
            out.append(np.cumsum(moves, axis=1)[:, :weeks])
        value, count, squares = out
        return value, count, np.sqrt(np.clip(squares, 0.0, None))
    if kpi.kind == "ratio":
        num = _grid(part["num"], "s1", index, weeks, 0.0)
        num_squares = _grid(part["num"], "s2", index, weeks, 0.0)
        den = _grid(part["den"], "s1", index, weeks, 0.0)
        value = np.divide(kpi.scale * num, den, out=nan.copy(), where=den > 0)
        se = np.divide(kpi.scale * np.sqrt(num_squares), den, out=nan.copy(), where=den > 0)
        return value, den, se
    obs = part["obs"]
    n = _grid(obs, "n", index, weeks, 0.0)
    if kpi.kind in ("median", "p90"):
        return _grid(obs, "qv", index, weeks, np.nan), n, _grid(obs, "qse", index, weeks, np.nan)
    total = _grid(obs, "s1", index, weeks, 0.0)
    squares = _grid(obs, "s2", index, weeks, 0.0)
    if kpi.kind in ("count", "sum"):
        return total, n, np.sqrt(squares)
    value = np.divide(total, n, out=nan.copy(), where=n > 0)
    mean_square = np.divide(squares, n, out=nan.copy(), where=n > 0)
    variance = np.clip(mean_square - value * value, 0.0, None)
    return value, n, np.sqrt(np.divide(variance, n, out=nan.copy(), where=n > 0))


# The columns the catalogue reads, per table; the others (events, SKUs, reasons...) need
# not be handed to the engine, which at a million orders a week saves gigabytes.
KPI_COLUMNS: dict[str, tuple[str, ...]] = {
    "orders": tuple(ORDERS.names),
    "tickets": ("order_id", "opened_at", "first_response_at", "resolved_at", "category", "csat"),
    "after_sales": ("order_id", "kind", "requested_at", "closed_at", "refund_amount"),
    "settlements": ("order_id", "settled_at", "amount", "status"),
    "order_lines": ("order_id", "qty", "qty_shipped"),
}


def _engine_frames(tables: Mapping[str, pd.DataFrame]) -> dict[str, ir.Table]:
    """The catalogue's tables and columns of ``tables`` as engine tables."""
    return {
        name: engine.frame_table(frame[[c for c in frame.columns if c in KPI_COLUMNS[name]]])
        for name, frame in tables.items()
        if name in KPI_COLUMNS
    }


def kpi_tables(tables: Mapping[str, ir.Table]) -> dict[str, ir.Table]:
    """The catalogue's tables and columns of the engine tables ``tables`` (the others are
    never read by a KPI)."""
    return {
        name: table.select(*[c for c in table.columns if c in KPI_COLUMNS[name]])
        for name, table in tables.items()
        if name in KPI_COLUMNS
    }


def weekly_kpis(
    tables: Mapping[str, pd.DataFrame],
    windows: list[Window],
    ship_sla_hours: float,
    keys: Sequence[str] | None = None,
    *,
    created_from: pd.Timestamp | None = None,
    complete_from: pd.Timestamp | None = None,
    lookback_days: float | None = None,
    con: BaseBackend | None = None,
) -> pd.DataFrame:
    """Catalogue KPIs per consecutive week and segment, from frames in memory.

    The frames enter the engine (``con``; the embedded DuckDB by default) as they are; see
    ``weekly_kpis_on`` for the result.
    """
    frames = _engine_frames(tables)
    return weekly_kpis_on(
        con or engine.shared(),
        frames,
        windows,
        ship_sla_hours,
        keys,
        created_from=created_from,
        complete_from=complete_from,
        lookback_days=lookback_days,
        levels=_frame_levels(tables["orders"]),
    )


def weekly_kpis_on(
    con: BaseBackend,
    tables: Mapping[str, ir.Table],
    windows: list[Window],
    ship_sla_hours: float,
    keys: Sequence[str] | None = None,
    *,
    created_from: pd.Timestamp | None = None,
    complete_from: pd.Timestamp | None = None,
    lookback_days: float | None = None,
    levels: Mapping[str, Sequence[str]] | None = None,
    store: dict[Any, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Catalogue KPIs per consecutive week and segment, computed by the engine ``con``.

    Long frame with columns kpi, dimension ("all", "warehouse", "carrier/region"...),
    segment ("all", a value, or values joined by "/"), order_type ("all" or a type, with
    dimension "all"), week (label), value, n (observations behind the value: orders,
    tickets..., the denominator of a ratio, the count of a level), se (sampling standard
    error of the value: Poisson for counts and sums, binomial-like for means and ratios,
    the sparsity estimate for quantiles; what the anomaly rules floor sigma by). KPIs
    whose tables are absent are left out. Every order type is listed (none of a type:
    counts 0, rates NaN); a segment's weeks before its first observation are NaN (a
    carrier new this week has no history) and segments never observed are left out.
    Weeks starting before ``created_from`` (KPIs placed by creation) or ``complete_from``
    (all others) are NaN: the data does not cover them fully. With ``lookback_days``,
    backlogs count at each week's end only orders created up to that many days before
    the week's start. ``levels`` orders each segment column's values (default: sorted).
    ``store`` (a dict the caller keeps) holds the engine's sums for a later
    ``weekly_kpis_without_on`` on the same tables, which then need no query.
    """
    return _series(
        con,
        tables,
        windows,
        ship_sla_hours,
        keys,
        created_from=created_from,
        complete_from=complete_from,
        lookback_days=lookback_days,
        levels=levels,
        store=store,
    )[0]


def weekly_kpis_without(
    tables: Mapping[str, pd.DataFrame],
    windows: list[Window],
    ship_sla_hours: float,
    keys: Sequence[str],
    segments: Sequence[Mapping[str, str]],
    *,
    created_from: pd.Timestamp | None = None,
    complete_from: pd.Timestamp | None = None,
    con: BaseBackend | None = None,
    dims: Mapping[str, Sequence[str]] | None = None,
) -> list[pd.DataFrame]:
    """Per segment of ``segments``, the KPIs ``keys`` computed without that segment's orders
    (and the rows of other tables pointing at them), in one query for all segments.

    A segment maps segment columns to values ({"carrier": "EastPost", "region": "North"};
    MISSING for an empty value); each result is shaped as ``weekly_kpis``'s. ``dims``
    (KPI -> segmentations, "all" included) limits each KPI to the segmentations named.
    """
    if not segments:
        return []
    return weekly_kpis_without_on(
        con or engine.shared(),
        _engine_frames(tables),
        windows,
        ship_sla_hours,
        keys,
        segments,
        created_from=created_from,
        complete_from=complete_from,
        dims=dims,
        levels=_frame_levels(tables["orders"]),
    )


def weekly_kpis_without_on(
    con: BaseBackend,
    tables: Mapping[str, ir.Table],
    windows: list[Window],
    ship_sla_hours: float,
    keys: Sequence[str],
    segments: Sequence[Mapping[str, str]],
    *,
    created_from: pd.Timestamp | None = None,
    complete_from: pd.Timestamp | None = None,
    dims: Mapping[str, Sequence[str]] | None = None,
    levels: Mapping[str, Sequence[str]] | None = None,
    cells: Sequence[Mapping[str, Collection[tuple[str, str]]]] | None = None,
    store: dict[Any, pd.DataFrame] | None = None,
    lookback_days: float | None = None,
    shares: Mapping[tuple[str, str], float] | None = None,
) -> list[pd.DataFrame]:
    """``weekly_kpis_without`` computed by the engine ``con`` on its tables ``tables``.

    Sums come from one grouping per pass, taken apart per segment after the engine;
    quantiles from one scan with an aggregate per segment over the rows outside it.
    ``cells`` (per segment of ``segments``: KPI -> (segmentation, segment) pairs) limits
    the quantile KPIs to the cells named: those left out are missing from the result.
    ``store``: see ``weekly_kpis_on`` (the sums of the series are taken from it).
    ``shares``: the share of orders in each (segmentation, segment) of ``cells``, when
    known; it sizes the quantile queries (``_week_chunks``), not their results.
    """
    if not segments:
        return []
    series = _series(
        con,
        tables,
        windows,
        ship_sla_hours,
        keys,
        created_from=created_from,
        complete_from=complete_from,
        lookback_days=lookback_days,
        levels=levels,
        scenarios=segments,
        dims=dims,
        cells=cells,
        store=store,
        shares=shares,
    )
    return [series[i] for i in range(len(segments))]


def _series(
    con: BaseBackend,
    tables: Mapping[str, ir.Table],
    windows: list[Window],
    ship_sla_hours: float,
    keys: Sequence[str] | None,
    *,
    created_from: pd.Timestamp | None,
    complete_from: pd.Timestamp | None,
    lookback_days: float | None = None,
    levels: Mapping[str, Sequence[str]] | None = None,
    scenarios: Sequence[Mapping[str, str]] = (),
    dims: Mapping[str, Sequence[str]] | None = None,
    cells: Sequence[Mapping[str, Collection[tuple[str, str]]]] | None = None,
    store: dict[Any, pd.DataFrame] | None = None,
    shares: Mapping[tuple[str, str], float] | None = None,
) -> dict[int, pd.DataFrame]:
    bounds = _week_bounds(windows)
    labels = np.array([week_label(w) for w in windows], dtype=object)
    weeks = len(windows)
    wanted = [key for key in (keys or CATALOGUE) if all(t in tables for t in CATALOGUE[key].tables)]
    count = max(len(scenarios), 1)
    if not wanted:
        return {i: pd.DataFrame(columns=list(SERIES_COLUMNS)) for i in range(count)}
    instants = [pd.Timestamp(b, tz="UTC") for b in bounds]
    frames = Frames(tables, instants, ship_sla_hours, lookback_days, scenarios, con.name)
    frames.cells = None if cells is None else [dict(c) for c in cells]
    frames.shares = shares
    aggregates = kpi_aggregates(con, frames, wanted, dims, store)
    if aggregates.duplicated(["scenario", "kpi", "part", "dimension", "segment", "week"]).any():
        # A KPI observed in several passes (net revenue: orders and cases) adds them up.
        aggregates = aggregates.groupby(
            ["scenario", "kpi", "part", "dimension", "segment", "week"], as_index=False, sort=False
        ).agg({"n": "sum", "s1": "sum", "s2": "sum", "qv": "first", "qse": "first"})
    by_scenario = dict(tuple(aggregates.groupby("scenario", sort=False)))
    out = {}
    for scenario in range(count):
        found = by_scenario.get(scenario, aggregates.iloc[:0])
        by_kpi = dict(tuple(found.groupby("kpi", sort=False)))
        parts = []
        for key in wanted:
            kpi = CATALOGUE[key]
            of_kpi = by_kpi.get(key, found.iloc[:0])
            by_dim = dict(tuple(of_kpi.groupby("dimension", sort=False)))
            cutoff = created_from if kpi.event == "created" else complete_from
            start = pd.Timestamp(cutoff).value if cutoff is not None else bounds[0]
            hidden = bounds[:-1] < start
            for dim in _dims(kpi, dims):
                rows = by_dim.get(dim, of_kpi.iloc[:0])
                names = _names(dim, rows["segment"].dropna().unique().tolist(), levels)
                value, n, se = _finish(kpi, rows, names, weeks)
                if dim != ALL:
                    # A segment has no history before it first appears.
                    value = np.where(np.cumsum(n != 0, axis=1) > 0, value, np.nan)
                    if dim != "order_type":
                        seen = (n != 0).any(axis=1)
                        value, n, se = value[seen], n[seen], se[seen]
                        names = [x for x, shown in zip(names, seen, strict=True) if shown]
                value[:, hidden] = np.nan
                parts.append(_long(kpi.key, dim, value, n, se, names, labels))
        out[scenario] = pd.concat(parts, ignore_index=True)
    return out


def _long(
    key: str,
    dim: str,
    value: np.ndarray,
    n: np.ndarray,
    se: np.ndarray,
    names: list[str],
    labels: Sequence[str] | np.ndarray,
) -> pd.DataFrame:
    segments = np.repeat(np.array(names, dtype=object), len(labels))
    by_type = dim == "order_type"
    rows = len(segments)
    return pd.DataFrame(
        {
            "kpi": np.full(rows, key, dtype=object),
            "dimension": np.full(rows, ALL if by_type else dim, dtype=object),
            "segment": np.full(rows, ALL, dtype=object) if by_type else segments,
            "order_type": segments if by_type else np.full(rows, ALL, dtype=object),
            "week": np.tile(labels, len(names)),
            "value": value.ravel(),
            "n": n.ravel(),
            "se": np.where(np.isnan(value), np.nan, se).ravel(),
        }
    )


# --- targets ------------------------------------------------------------------------------------

STATUSES = ("on_target", "at_risk", "off_target")


@dataclass(frozen=True)
class Target:
    """A KPI's target; ``at_risk`` (optional) marks where "at risk" turns into "off target"."""

    target: float
    at_risk: float | None = None


def resolve_targets(targets: Mapping[str, Any], where: str = "the params") -> dict[str, Target]:
    """The params' targets as ``Target`` per catalogue KPI; checks keys and the at-risk side.

    A value is a number (the target) or has ``target`` and ``at_risk`` attributes or keys.
    Raises InvalidParamError for an unknown KPI or an at_risk on the better side of target.
    """
    out = {}
    for key, spec in targets.items():
        if key not in CATALOGUE:
            raise InvalidParamError(
                where, f"targets.{key}", f"no KPI named {key!r}; use one of {list(CATALOGUE)}"
            )
        if isinstance(spec, Mapping):
            target, at_risk = spec.get("target"), spec.get("at_risk")
        else:
            target, at_risk = getattr(spec, "target", spec), getattr(spec, "at_risk", None)
        higher = CATALOGUE[key].higher_is_better
        if at_risk is not None and (at_risk > target if higher else at_risk < target):
            side = "below" if higher else "above"
            raise InvalidParamError(
                where,
                f"targets.{key}.at_risk",
                f"{at_risk} is on the better side of the target {target}; for this KPI "
                f"{'higher' if higher else 'lower'} is better, so at_risk must be {side} it",
            )
        if target is None:
            raise InvalidParamError(where, f"targets.{key}.target", "give the target value")
        out[key] = Target(float(target), None if at_risk is None else float(at_risk))
    return out


def target_status(value: float, target: Target | None, higher_is_better: bool) -> str | None:
    """on_target (target met), at_risk (short of it, not past at_risk), off_target; or None.

    None when there is no target or no value. Meeting the target exactly is on target.
    """
    if target is None or value is None or not np.isfinite(value):
        return None
    sign = 1.0 if higher_is_better else -1.0
    if sign * (value - target.target) >= 0:
        return "on_target"
    if target.at_risk is not None and sign * (value - target.at_risk) >= 0:
        return "at_risk"
    return "off_target"
