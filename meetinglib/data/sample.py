"""Deterministic sample data shaped like a real e-commerce platform's weekly export.

``generate_sample`` writes the six canonical tables (orders, tickets, after_sales,
settlements, order_lines, events) as Parquet or CSV files into one folder. The data
is a snapshot taken at the export time, Monday 06:00 after the last week: every
milestone after that moment is empty (not reached yet), so the last days hold open,
unshipped and undelivered orders just like a real export. Promise deadlines
(``promised_ship_by``, ``promised_delivery_by``) are commitments, not milestones, and
may lie after the export time.

The same arguments and seed give identical files. Each concern draws from its own
random stream per chunk (orders, order lines, tickets, after-sales, settlements,
incidents), so switching the injected incidents on or off, or writing only some
tables, leaves the history unchanged.

The span is generated in chunks (runs of whole days up to _CHUNK_ORDERS orders, a
busier day in pieces) and written as it goes:
an order's later milestones (payment, shipping, delivery, settlement, tickets,
after-sales, events) may fall into later weeks, and the rows of the time-sorted tables
wait until no later order can precede them. Memory therefore follows the weekly volume,
not the number of weeks: five million orders a week for twelve weeks peaks below
2 GiB (benchmarks/results/sample.md).

Two incidents can be injected into the last week (``INCIDENTS``), so that a report
has something real to find: a carrier slowing down in one region, and a warehouse
running out of its most popular SKUs.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import os
import time
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from meetinglib.core.errors import InvalidParamError
from meetinglib.core.i18n import t
from meetinglib.core.schema import (
    ACTIVITIES,
    AFTER_SALES_KINDS,
    EXCEPTION_CODES,
    ORDER_TYPES,
    SCHEMAS,
    SETTLEMENT_STATUSES,
    TICKET_CATEGORIES,
)
from meetinglib.core.weeks import IsoWeek

# --- public constants ----------------------------------------------------------------

FORMATS = ("parquet", "csv")
ROW_GROUP_ROWS = 250_000
# Orders generated at once: a day, or a piece of a busy day (about 520 bytes each in flight).
_CHUNK_ORDERS = 250_000
EXPORT_HOUR = 6
SHIP_SLA_HOURS = {"normal": 48.0, "special": 72.0, "after_sales": 48.0}

CHANNELS = ("app", "web", "mini_program", "marketplace")
WAREHOUSES = ("WH-North", "WH-East", "WH-South")
CARRIERS = ("SwiftExpress", "EastPost", "CloudLogistics", "RapidRoute")
REGIONS = ("East", "North", "South", "Central", "West", "Northeast")
AFTER_SALES_REASONS = (
    "size_fit",
    "damaged",
    "not_as_described",
    "late_delivery",
    "changed_mind",
    "wrong_item",
)
SKU_COUNT = 2_000
PROMOTION_WEEKS_BEFORE_END = 5

# Incident strengths, named so reports and tests can refer to them. The transit factor
# is what the shipped -> delivered median shows; the road time grows a little more
# because delivery hours (08:00-21:00) absorb part of the difference.
TRANSIT_INCIDENT_FACTOR = 2.5
_TRANSIT_INCIDENT_ROAD_FACTOR = 2.8
# Share of WH-South orders holding one of the SKUs that run out (they get the stockout).
STOCKOUT_INCIDENT_SHARE = 0.38


@dataclass(frozen=True)
class Incident:
    """A problem injected into the last week of the sample."""

    key: str
    description: str  # in English; text(lang) in any language
    segment: dict[str, str]
    # In a sample's incidents: the day it starts and its week (the description names them).
    start: dt.date | None = None
    week: str = ""

    def text(self, lang: str) -> str:
        """The description in ``lang`` (the catalogue's ``sample.incident.<key>``)."""
        if self.start is None:
            return self.description
        day = f"{self.start:%Y-%m-%d}"
        fields = {"factor": TRANSIT_INCIDENT_FACTOR, "day": day, "week": self.week}
        return t(f"sample.incident.{self.key}", lang, **fields)


@dataclass(frozen=True)
class SampleSummary:
    """What ``generate_sample`` wrote."""

    folder: Path
    end_week: IsoWeek
    files: dict[str, Path]
    rows: dict[str, int]
    incidents: tuple[Incident, ...]
    seconds: float


INCIDENTS: tuple[Incident, ...] = (
    Incident(
        key="carrier_transit",
        description=(
            f"EastPost transit time in region South x{TRANSIT_INCIDENT_FACTOR} "
            "for shipments from Tuesday of the last week"
        ),
        segment={"carrier": "EastPost", "region": "South"},
    ),
    Incident(
        key="warehouse_stockout",
        description=(
            "WH-South out of stock of its most popular SKUs from Wednesday of the last week: "
            "about a third of its orders get exception stockout and stay unshipped "
            "or ship late and short"
        ),
        segment={"warehouse": "WH-South"},
    ),
)

# --- model parameters ----------------------------------------------------------------

_DAY = 86_400.0
_HOUR = 3_600.0

_ORDER_TYPE_SHARES = (0.88, 0.07, 0.05)
_AMOUNT_MEDIAN = np.array([150.0, 330.0, 95.0])  # by order type, CNY
_AMOUNT_SIGMA = 0.75
_CHANNEL_SHARES = (0.52, 0.14, 0.22, 0.12)
_REGION_SHARES = (0.30, 0.16, 0.22, 0.14, 0.10, 0.08)
# Rows: region (REGIONS order); columns: warehouse. Most orders ship from the nearest one.
_WAREHOUSE_BY_REGION = np.array(
    [
        [0.08, 0.87, 0.05],
        [0.88, 0.10, 0.02],
        [0.02, 0.10, 0.88],
        [0.25, 0.45, 0.30],
        [0.45, 0.10, 0.45],
        [0.90, 0.10, 0.00],
    ]
)
_CARRIER_SHARES = (0.32, 0.28, 0.25, 0.15)
# Distance class (0 = same area ... 3 = far) from warehouse (rows) to region (columns).
_DISTANCE = np.array(
    [
        [1, 0, 2, 1, 2, 1],
        [0, 1, 1, 1, 3, 2],
        [1, 2, 0, 1, 2, 3],
    ]
)
# Median transit days by carrier (rows) and distance class (columns).
_TRANSIT_DAYS = np.array(
    [
        [0.9, 1.4, 2.0, 2.7],
        [1.2, 1.8, 2.5, 3.3],
        [1.4, 2.1, 2.9, 3.8],
        [1.0, 1.6, 2.3, 3.1],
    ]
)
_TRANSIT_SIGMA = np.array([0.22, 0.25, 0.30, 0.40])
# Share of parcels held up in a sorting centre (adds 1-3.5 days): drives late deliveries.
_TRANSIT_DELAY_SHARE = np.array([0.02, 0.03, 0.05, 0.08])
# The carrier's published standard days by distance class, added to promised_ship_by.
_STANDARD_DAYS = np.array(
    [
        [1.0, 2.0, 2.0, 3.0],
        [1.0, 2.0, 3.0, 4.0],
        [2.0, 3.0, 3.0, 4.0],
        [1.0, 2.0, 3.0, 4.0],
    ]
)
_LOST_SHARE = np.array([0.0008, 0.0015, 0.002, 0.003])
_DAMAGED_SHARE = np.array([0.002, 0.003, 0.004, 0.006])

_WEEKDAY_WEIGHTS = np.array([1.15, 1.07, 1.02, 1.00, 0.97, 0.88, 0.91])
_HOUR_WEIGHTS = np.array(
    [0.90, 0.50, 0.30, 0.20, 0.15, 0.20, 0.35, 0.60, 0.90, 1.10, 1.25, 1.30]
    + [1.35, 1.30, 1.20, 1.15, 1.15, 1.20, 1.30, 1.50, 1.80, 1.90, 1.60, 1.25]
)
_WEEKLY_GROWTH = 0.006
_WEEKLY_NOISE = 0.03
_DAILY_NOISE = 0.03
_PROMOTION_DAYS = {3: 2.5, 4: 3.0, 5: 2.7}  # weekday -> volume factor (Thu, Fri, Sat)

_UNPAID_SHARE = 0.018  # of customer-paid orders; auto-cancelled after 30 minutes
_PAYMENT_FAILED_SHARE = 0.5  # of the unpaid ones: a failed attempt rather than abandonment
_FRAUD_SHARE = 0.004
_STOCKOUT_SHARE = 0.008
_ADDRESS_ERROR_SHARE = 0.006
_CUSTOMS_SHARE = 0.001
_CUSTOMER_CANCEL_SHARE = 0.006  # before shipping
_REFUSED_SHARE = 0.001  # refused at the door: cancelled instead of delivered

# Warehouse ships the same day when paid before the cutoff, else the next day; a few
# orders slip by extra days. Cumulative shares of 0, 1 and 2 extra days (rest: 3).
_CUTOFF_HOUR = np.array([15.0, 15.0, 14.0])
_EXTRA_DAYS_CDF = np.array([0.90, 0.975, 0.995])
_SPECIAL_EXTRA_DAYS_CDF = np.array([0.75, 0.92, 0.98])
_PROMOTION_SLOWDOWN = np.array([0.18, 0.06, 0.01])
_WAREHOUSE_SAME_DAY_ADJUST = np.array([0.0, 0.03, -0.03])

_LINES_SHARES = (0.45, 0.30, 0.15, 0.10)  # 1-4 lines per order
_QTY_SHARES = (0.70, 0.20, 0.10)  # qty 1-3

_ORDER_ID_START = 100_000_001

_EXC = {code: i for i, code in enumerate(EXCEPTION_CODES)}
_SPECIAL = ORDER_TYPES.index("special")
_AFTER_SALES_TYPE = ORDER_TYPES.index("after_sales")
_EASTPOST = CARRIERS.index("EastPost")
_SOUTH = REGIONS.index("South")
_WH_SOUTH = WAREHOUSES.index("WH-South")

# Tickets: problems in priority order (exception codes first, then lateness), the chance
# each one makes the customer write in, and the ticket category it gets.
_LATE_DELIVERY = len(EXCEPTION_CODES)
_LATE_SHIP = _LATE_DELIVERY + 1
_GENERAL = _LATE_SHIP + 1
_TICKET_CHANCE = np.zeros(_GENERAL + 1)
_TICKET_CHANCE[[_EXC[c] for c in EXCEPTION_CODES]] = [0.35, 0.40, 0.25, 0.50, 0.80, 0.60, 0.20]
_TICKET_CHANCE[[_LATE_DELIVERY, _LATE_SHIP, _GENERAL]] = [0.35, 0.20, 0.055]
# Rows: problem; columns: TICKET_CATEGORIES (complaint, inquiry, delivery, return_request,
# payment, other).
_TICKET_CATEGORY = np.array(
    [
        [0.50, 0.50, 0.00, 0.00, 0.00, 0.00],  # stockout
        [0.00, 0.30, 0.70, 0.00, 0.00, 0.00],  # address_error
        [0.00, 0.00, 0.00, 0.00, 1.00, 0.00],  # payment_failed
        [0.00, 0.40, 0.60, 0.00, 0.00, 0.00],  # customs_hold
        [0.40, 0.00, 0.60, 0.00, 0.00, 0.00],  # lost
        [0.50, 0.00, 0.00, 0.50, 0.00, 0.00],  # damaged
        [0.50, 0.30, 0.00, 0.00, 0.20, 0.00],  # fraud_review
        [0.45, 0.00, 0.55, 0.00, 0.00, 0.00],  # late delivery
        [0.30, 0.40, 0.30, 0.00, 0.00, 0.00],  # late shipping
        [0.10, 0.45, 0.05, 0.15, 0.10, 0.15],  # general question
    ]
)
_CSAT_COMPLAINT = (0.25, 0.25, 0.25, 0.15, 0.10)
_CSAT_OTHER = (0.03, 0.05, 0.15, 0.37, 0.40)
_CSAT_RATED_SHARE = 0.65

_CASE_SHARE = 0.045
_CASE_SHARE_DAMAGED = 0.70
_CASE_SHARE_LATE = 0.07
_KIND_SHARES = np.array([[0.55, 0.30, 0.15], [0.30, 0.40, 0.30]])  # base, damaged
# Rows: base, late delivery; columns: AFTER_SALES_REASONS.
_REASON_SHARES = np.array(
    [
        [0.28, 0.07, 0.20, 0.12, 0.25, 0.08],
        [0.10, 0.05, 0.10, 0.50, 0.20, 0.05],
    ]
)
_CASE_CLOSE_DAYS = np.array([5.0, 1.5, 6.0])  # median by kind
_DISPUTE_SHARE = 0.005
_FEE_RATE = 0.006


# --- public API ----------------------------------------------------------------------


def generate_sample(
    folder: str | Path,
    *,
    weeks: int = 12,
    orders_per_week: int = 20_000,
    seed: int = 7,
    end_week: IsoWeek | str | None = None,
    tz: str = "Asia/Shanghai",
    incidents: bool = True,
    fmt: str = "parquet",
    tables: Iterable[str] | None = None,
    progress: Callable[[str], None] | None = None,
    lang: str = "en",
) -> SampleSummary:
    """Write ``weeks`` ISO weeks of sample data ending with ``end_week`` into ``folder``.

    ``orders_per_week`` is the average baseline volume (the promotion week is larger).
    ``end_week`` defaults to the latest complete ISO week before today in ``tz``.
    ``tables`` limits which canonical tables are written (default: all six); the data
    of a table does not depend on which others are written. ``progress`` lines are in
    ``lang``.

    The span is generated in chunks of at most _CHUNK_ORDERS orders and written as it
    goes, so memory holds one chunk's orders plus the rows they produce for later days
    (mostly settlements up to two weeks ahead), however many weeks are written.
    """
    started = time.perf_counter()
    wanted = _checked_arguments(weeks, orders_per_week, tz, fmt, tables)
    week = _resolve_end_week(end_week, tz)
    say = progress or (lambda _message: None)
    cal = _calendar(week, weeks, tz)
    say(t("sample.generating", lang, weeks=weeks, week=str(week)))

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        table: _TableFile(out / f"{table}.{fmt}", fmt, tz) for table in SCHEMAS if table in wanted
    }
    try:
        _write_days(files, cal, seed, orders_per_week, incidents, say, lang)
        for file in files.values():
            file.close()
    except BaseException:
        for file in files.values():
            file.abort()
        raise
    rows: dict[str, int] = {}
    for table, file in files.items():
        os.replace(file.partial, file.path)
        rows[table] = file.rows
        say(t("sample.wrote", lang, file=file.path.name, rows=file.rows))
    return SampleSummary(
        folder=out,
        end_week=week,
        files={table: file.path for table, file in files.items()},
        rows=rows,
        incidents=_incidents_of(cal) if incidents else (),
        seconds=time.perf_counter() - started,
    )


def _write_days(
    files: dict[str, _TableFile],
    cal: _Calendar,
    seed: int,
    orders_per_week: int,
    incidents: bool,
    say: Callable[[str], None],
    lang: str = "en",
) -> None:
    """Generate the orders chunk by chunk and hand every table its finished rows.

    Orders and order lines are written with their chunk. The rows of the time-sorted
    tables wait, grouped by the local day of their time, until no later order can add
    to that day; then they are sorted and written, so every file stays in time order.
    """
    held = {table: _HeldRows(cal, key) for table, key in _SORTED_BY.items() if table in files}
    numbered = dict.fromkeys(files, 0)  # rows written so far: the next ids start after them
    first = 0  # the chunk's first order number
    streams = _streams(seed, 0)
    counts = _daily_counts(streams[_ORDERS_STREAM], cal, orders_per_week)
    chunks = _chunks(counts)
    sku_of_rank: np.ndarray | None = None  # drawn with the first chunk's basket
    day_times = np.empty(0)  # creation times of a day cut in pieces
    weeks_done = 0
    for k, chunk in enumerate(chunks):
        streams = streams if k == 0 else _streams(seed, k)
        (day, start, stop), *rest = chunk
        if rest or (start == 0 and stop == counts[day]):
            created = _creation_times(streams[_ORDERS_STREAM], cal, chunk)
        else:
            if start == 0:
                day_times = _creation_times(streams[_ORDERS_STREAM], cal, [(day, 0, counts[day])])
            created = day_times[start:stop]
        made, sku_of_rank = _chunk_tables(
            streams, created, first, cal, incidents, sku_of_rank, set(files)
        )
        for table, data in made.items():
            if isinstance(data, _Table):
                files[table].write(data)
            else:
                held[table].add(data)
        first += created.size
        del made, created
        # Days before the next chunk's first day can get no more rows.
        through = chunks[k + 1][0][0] - 1 if k + 1 < len(chunks) else None
        for table, rows in held.items():
            ready = rows.take_through(through)
            files[table].write(_SORTED_TABLES[table](ready, numbered[table]))
            numbered[table] += _row_count(ready)
        while weeks_done < cal.weeks and (through is None or 7 * weeks_done + 6 <= through):
            week_days = counts[7 * weeks_done : 7 * weeks_done + 7]
            weeks_done += 1
            say(
                t(
                    "sample.week_done",
                    lang,
                    week=str(cal.end_week.shift(weeks_done - cal.weeks)),
                    orders=int(week_days.sum()),
                    done=weeks_done,
                    weeks=cal.weeks,
                )
            )


def _chunks(counts: np.ndarray) -> list[list[tuple[int, int, int]]]:
    """Orders generated together: runs of whole days of at most _CHUNK_ORDERS orders, and
    each busier day alone, in pieces; each entry is (day, first, end) of a day's orders."""
    chunks: list[list[tuple[int, int, int]]] = []
    current: list[tuple[int, int, int]] = []
    size = 0
    for day, count in enumerate(counts.tolist()):
        if current and (size + count > _CHUNK_ORDERS):
            chunks.append(current)
            current, size = [], 0
        if count > _CHUNK_ORDERS:
            for start in range(0, count, _CHUNK_ORDERS):
                chunks.append([(day, start, min(start + _CHUNK_ORDERS, count))])
            continue
        current.append((day, 0, count))
        size += count
    if current:
        chunks.append(current)
    return chunks


_OPTIONS = "the sample-data options"


def _checked_arguments(
    weeks: int, orders_per_week: int, tz: str, fmt: str, tables: Iterable[str] | None
) -> tuple[str, ...]:
    """The tables to write, after checking every argument."""
    if isinstance(weeks, bool) or not isinstance(weeks, int) or weeks < 1:
        raise InvalidParamError(_OPTIONS, "weeks", f"must be a whole number >= 1, got {weeks!r}")
    if (
        isinstance(orders_per_week, bool)
        or not isinstance(orders_per_week, int)
        or orders_per_week < 1
    ):
        raise InvalidParamError(
            _OPTIONS, "orders_per_week", f"must be a whole number >= 1, got {orders_per_week!r}"
        )
    if fmt not in FORMATS:
        raise InvalidParamError(_OPTIONS, "fmt", f"must be one of {list(FORMATS)}, got {fmt!r}")
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidParamError(
            _OPTIONS, "tz", f"unknown timezone {tz!r}; use an IANA name like Asia/Shanghai"
        ) from None
    if tables is None:
        return tuple(SCHEMAS)
    wanted = tuple(tables) if not isinstance(tables, str) else (tables,)
    unknown = sorted(set(wanted) - set(SCHEMAS))
    if unknown:
        raise InvalidParamError(
            _OPTIONS, "tables", f"unknown table(s) {unknown}; known tables: {list(SCHEMAS)}"
        )
    return wanted


def _resolve_end_week(end_week: IsoWeek | str | None, tz: str) -> IsoWeek:
    """The given week, or the latest complete ISO week before today in ``tz``."""
    if end_week is None:
        return IsoWeek.containing(pd.Timestamp.now(tz)).previous()
    return IsoWeek.parse(end_week)


@dataclass(frozen=True)
class _Calendar:
    tz: str
    end_week: IsoWeek
    weeks: int
    day_starts: np.ndarray  # UTC seconds of each local midnight; the last is the export Monday
    export: float  # UTC seconds of the export, Monday 06:00 after end_week
    promotion: np.ndarray  # volume factor per day (1 outside the promotion)
    promotion_window: tuple[float, float]  # when handling is slower (NaN when no promotion)

    def day(self, week_offset: int, weekday: int) -> float:
        """UTC seconds of local midnight of ``weekday`` (0 = Monday) in a week of the span."""
        return float(self.day_starts[7 * (self.weeks - 1 + week_offset) + weekday])


def _calendar(end_week: IsoWeek, weeks: int, tz: str) -> _Calendar:
    """Days of the span, the export time and the promotion days."""
    first = end_week.shift(-(weeks - 1)).monday
    days = pd.date_range(pd.Timestamp(first), periods=7 * weeks + 1, freq="D", tz=tz)
    day_starts = days.as_unit("s").asi8.astype(np.float64)
    export_monday = end_week.next().monday
    export = pd.Timestamp(dt.datetime.combine(export_monday, dt.time(EXPORT_HOUR))).tz_localize(tz)
    promotion = np.ones(day_starts.size)
    window = (np.nan, np.nan)
    promo_week = weeks - 1 - PROMOTION_WEEKS_BEFORE_END
    if promo_week >= 0:
        first_day = 7 * promo_week + min(_PROMOTION_DAYS)
        for weekday, factor in _PROMOTION_DAYS.items():
            promotion[7 * promo_week + weekday] = factor
        # Handling stays slow one day after the promotion while the backlog clears.
        window = (
            float(day_starts[first_day]),
            float(day_starts[first_day + len(_PROMOTION_DAYS) + 1]),
        )
    return _Calendar(
        tz=tz,
        end_week=end_week,
        weeks=weeks,
        day_starts=day_starts,
        export=export.timestamp(),
        promotion=promotion,
        promotion_window=window,
    )


# --- small vectorised helpers --------------------------------------------------------


def _pick(u: np.ndarray, shares: Iterable[float] | np.ndarray) -> np.ndarray:
    """Index drawn with the given shares, one per uniform number in ``u`` (int8)."""
    weights = np.asarray(shares, dtype=np.float64)
    cdf = np.cumsum(weights) / weights.sum()
    return np.minimum(np.searchsorted(cdf, u, side="right"), cdf.size - 1).astype(np.int8)


def _pick_by(u: np.ndarray, group: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Index drawn with the shares of row ``group[i]`` of ``shares`` (int8)."""
    out = np.zeros(u.size, dtype=np.int8)
    for g in np.unique(group):
        rows = group == g
        out[rows] = _pick(u[rows], shares[g])
    return out


def _seen(times: np.ndarray, export: float) -> np.ndarray:
    """The times as the export shows them: NaN (not reached yet) from the export on."""
    return np.where(times < export, times, np.nan)


def _utc_offsets(seconds: np.ndarray, tz: str) -> np.ndarray:
    """Offset of local wall time from UTC at each instant, seconds (0 where NaN)."""
    whole = np.nan_to_num(seconds).astype(np.int64)
    index = pd.DatetimeIndex(whole.astype("datetime64[s]")).tz_localize("UTC").tz_convert(tz)
    return (index.tz_localize(None).as_unit("s").asi8 - whole).astype(np.float64)


def _local_day_and_hour(seconds: np.ndarray, tz: str) -> tuple[np.ndarray, np.ndarray]:
    """UTC seconds of each instant's local midnight, and its local hour of day (float)."""
    offset = _utc_offsets(seconds, tz)
    local = seconds + offset
    midnight = np.floor(local / _DAY) * _DAY
    return midnight - offset, (local - midnight) / _HOUR


def _sku_popularity() -> np.ndarray:
    """Share of order lines of each SKU by popularity rank: a long-tailed Zipf-like curve."""
    weights = 1.0 / (np.arange(1, SKU_COUNT + 1) + 3.0)
    return weights / weights.sum()


def _hot_sku_count() -> int:
    """How many top SKUs run out so that about STOCKOUT_INCIDENT_SHARE of orders hold one."""
    top_share = np.cumsum(_sku_popularity())
    lines = np.asarray(_LINES_SHARES)
    holds_one = 1.0 - ((1.0 - top_share[:, None]) ** np.arange(1, lines.size + 1) * lines).sum(1)
    return int(np.searchsorted(holds_one, STOCKOUT_INCIDENT_SHARE) + 1)


# --- orders --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """Every order's true timeline (UTC seconds, NaN = never), possibly past the export."""

    created: np.ndarray
    order_type: np.ndarray
    channel: np.ndarray
    region: np.ndarray
    warehouse: np.ndarray
    carrier: np.ndarray
    amount: np.ndarray
    paid: np.ndarray
    exc: np.ndarray  # exception code index, -1 = none
    exc_time: np.ndarray  # when the exception became known
    cancel: np.ndarray
    release: np.ndarray  # when the warehouse may start handling (after holds)
    ship_plan: np.ndarray  # when it would ship were it not cancelled
    ship: np.ndarray
    pick_ok: np.ndarray  # picking happens (False: stock never arrived)
    transit: np.ndarray  # days
    refused: np.ndarray  # refused at the door: cancelled at the delivery attempt
    promise_ship: np.ndarray
    promise_delivery: np.ndarray
    u_pick: np.ndarray
    u_pack: np.ndarray
    u_door: np.ndarray
    # Filled in by the delivery step (replace(plan, delivered=...)); empty before it.
    delivered: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def n(self) -> int:
        return int(self.created.size)


def _daily_counts(rng: np.random.Generator, cal: _Calendar, orders_per_week: int) -> np.ndarray:
    """Orders created on each day of the span: weekday, trend, noise and promotion."""
    days = cal.day_starts.size
    day = np.arange(days)
    week = day // 7
    trend = (1.0 + _WEEKLY_GROWTH) ** (week - (cal.weeks - 1) / 2)
    week_noise = rng.lognormal(0.0, _WEEKLY_NOISE, cal.weeks + 1)[week]
    day_noise = rng.lognormal(0.0, _DAILY_NOISE, days)
    weekday = _WEEKDAY_WEIGHTS[day % 7] / _WEEKDAY_WEIGHTS.mean()
    hour_shares = _HOUR_WEIGHTS / _HOUR_WEIGHTS.sum()
    exported = np.ones(days)
    exported[-1] = hour_shares[:EXPORT_HOUR].sum()  # the export Monday up to 06:00
    expected = orders_per_week / 7 * trend * week_noise * weekday * day_noise * cal.promotion
    return rng.poisson(expected * exported).astype(np.int64)


def _creation_times(
    rng: np.random.Generator, cal: _Calendar, days: list[tuple[int, int, int]]
) -> np.ndarray:
    """Sorted creation times of whole days' orders (``(day, 0, count)`` each), by hour."""
    day = np.repeat([d for d, _, _ in days], [end for _, _, end in days])
    n = day.size
    hour_shares = _HOUR_WEIGHTS / _HOUR_WEIGHTS.sum()
    u_hour, u_second = rng.random(n), rng.random(n)
    hour = _pick(u_hour, hour_shares).astype(np.float64)
    last = day == cal.day_starts.size - 1
    hour[last] = _pick(u_hour[last], hour_shares[:EXPORT_HOUR])
    created = np.floor(cal.day_starts[day] + (hour + u_second) * _HOUR)
    # Within the day (a 23-hour day when clocks go forward), and before the export.
    end = np.append(cal.day_starts[1:], cal.export)[day]
    return np.sort(np.minimum(created, end - 1))


def _ship_times(
    release: np.ndarray,
    warehouse: np.ndarray,
    order_type: np.ndarray,
    cal: _Calendar,
    u_days: np.ndarray,
    u_pickup: np.ndarray,
) -> np.ndarray:
    """Carrier pickup time: same day when released before the cutoff, else later days."""
    midnight, hour = _local_day_and_hour(release, cal.tz)
    special = order_type == _SPECIAL
    start, end = cal.promotion_window
    slow = (release >= start) & (release < end)
    days = (hour >= _CUTOFF_HOUR[warehouse]).astype(np.int64) + special
    for k in range(_EXTRA_DAYS_CDF.size):
        threshold = np.where(special, _SPECIAL_EXTRA_DAYS_CDF[k], _EXTRA_DAYS_CDF[k])
        threshold = threshold - slow * _PROMOTION_SLOWDOWN[k]
        if k == 0:
            threshold = threshold + _WAREHOUSE_SAME_DAY_ADJUST[warehouse]
        days += u_days > threshold
    # Same-day parcels leave with the evening pickups; later ones any time of the day.
    pickup = np.where(days == 0, 16.0 + 5.5 * u_pickup, 9.0 + 12.5 * u_pickup)
    return midnight + days * _DAY + pickup * _HOUR


def _plan_orders(rng: np.random.Generator, cal: _Calendar, created: np.ndarray) -> _Plan:
    """Orders created at ``created`` with their attributes and true, untruncated timeline."""
    n = created.size

    def uniform() -> np.ndarray:
        return rng.random(n)

    order_type = _pick(uniform(), _ORDER_TYPE_SHARES)
    channel = _pick(uniform(), _CHANNEL_SHARES)
    region = _pick(uniform(), _REGION_SHARES)
    warehouse = _pick_by(uniform(), region, _WAREHOUSE_BY_REGION)
    carrier = _pick(uniform(), _CARRIER_SHARES)
    spread = np.exp(_AMOUNT_SIGMA * rng.standard_normal(n))
    amount = np.round(np.maximum(5.0, _AMOUNT_MEDIAN[order_type] * spread), 2)

    # Payment: customers pay within minutes or never (auto-cancel after 30 minutes);
    # after-sales orders are paid by the system at once.
    customer_pays = order_type != _AFTER_SALES_TYPE
    u_unpaid, u_failed, u_system = uniform(), uniform(), uniform()
    customer_delay = np.minimum(90.0 * np.exp(rng.standard_normal(n)), 1_500.0)
    pay_delay = np.where(customer_pays, customer_delay, 30.0 * u_system)
    unpaid = customer_pays & (u_unpaid < _UNPAID_SHARE)
    paid = np.where(unpaid, np.nan, created + pay_delay)
    cancel = np.where(unpaid, created + 1_800.0 + 300.0 * uniform(), np.nan)
    failed = unpaid & (u_failed < _PAYMENT_FAILED_SHARE)

    # One exception at most per order, drawn from one uniform number.
    u_exc, u1, u2, u3, u4 = (uniform() for _ in range(5))
    is_paid = ~unpaid
    bounds = np.cumsum([_FRAUD_SHARE, _STOCKOUT_SHARE, _ADDRESS_ERROR_SHARE, _CUSTOMS_SHARE])
    fraud = is_paid & customer_pays & (u_exc < bounds[0])
    stockout = is_paid & (u_exc >= bounds[0]) & (u_exc < bounds[1])
    address = is_paid & (u_exc >= bounds[1]) & (u_exc < bounds[2])
    customs = is_paid & (u_exc >= bounds[2]) & (u_exc < bounds[3])
    lost_top = bounds[3] + _LOST_SHARE[carrier]
    lost = is_paid & (u_exc >= bounds[3]) & (u_exc < lost_top)
    damaged = is_paid & (u_exc >= lost_top) & (u_exc < lost_top + _DAMAGED_SHARE[carrier])

    # Fraud review holds the order 1-3 days; stockouts wait 1-4 days for stock. Some of
    # both end in a cancellation before the order can ship.
    hold = np.zeros(n)
    hold = np.where(fraud, (24.0 + 48.0 * u1) * _HOUR, hold)
    detect = (1.0 + 5.0 * u2) * _HOUR
    hold = np.where(stockout, detect + (24.0 + 72.0 * u1) * _HOUR, hold)
    cancel = np.where(fraud & (u3 < 0.15), paid + hold, cancel)
    cancel = np.where(stockout & (u3 < 0.25), paid + detect + (2.0 + 46.0 * u4) * _HOUR, cancel)
    release = paid + hold
    ship_plan = _ship_times(release, warehouse, order_type, cal, uniform(), uniform())

    u_cancel, u_when = uniform(), uniform()
    clean = is_paid & ~(fraud | stockout | address | customs | lost | damaged)
    customer_cancel = clean & (u_cancel < _CUSTOMER_CANCEL_SHARE)
    cancel = np.where(customer_cancel, paid + (0.05 + 0.85 * u_when) * (ship_plan - paid), cancel)
    refused = clean & (u_cancel >= _CUSTOMER_CANCEL_SHARE)
    refused &= u_cancel < _CUSTOMER_CANCEL_SHARE + _REFUSED_SHARE
    ship = np.where(cancel < ship_plan, np.nan, ship_plan)
    # A stocked-out order whose stock came in before the customer gave up ships instead.
    cancel = np.where(cancel >= ship_plan, np.nan, cancel)

    distance = _DISTANCE[warehouse, region]
    transit = _TRANSIT_DAYS[carrier, distance] * np.exp(
        _TRANSIT_SIGMA[carrier] * rng.standard_normal(n)
    )
    held_up = uniform() < _TRANSIT_DELAY_SHARE[carrier]
    transit = transit + np.where(held_up, 1.0 + 2.5 * uniform(), 0.0)
    transit = (
        transit + np.where(address, 2.0 + 3.0 * u1, 0.0) + np.where(customs, 3.0 + 5.0 * u1, 0.0)
    )

    exc = np.full(n, -1, dtype=np.int8)
    exc_time = np.full(n, np.nan)
    known = (
        (failed, "payment_failed", created + pay_delay),
        (fraud, "fraud_review", paid + (0.1 + 0.9 * u2) * _HOUR),
        (stockout, "stockout", paid + detect),
        (address, "address_error", ship + (2.0 + 22.0 * u2) * _HOUR),
        (customs, "customs_hold", ship + (12.0 + 24.0 * u2) * _HOUR),
        (lost, "lost", ship + (5.0 + 4.0 * u2) * _DAY),
        (damaged, "damaged", np.nan),  # known at delivery, set in _delivered
    )
    for mask, code, when in known:
        exc[mask] = _EXC[code]
        exc_time = np.where(mask, when, exc_time)

    sla_hours = np.array([SHIP_SLA_HOURS[t] for t in ORDER_TYPES])[order_type]
    promise_ship = paid + sla_hours * _HOUR
    promise_delivery = promise_ship + _STANDARD_DAYS[carrier, distance] * _DAY
    return _Plan(
        created=created,
        order_type=order_type,
        channel=channel,
        region=region,
        warehouse=warehouse,
        carrier=carrier,
        amount=amount,
        paid=paid,
        exc=exc,
        exc_time=exc_time,
        cancel=cancel,
        release=release,
        ship_plan=ship_plan,
        ship=ship,
        pick_ok=~np.isnan(ship_plan),
        transit=np.maximum(transit, 0.3),
        refused=refused,
        promise_ship=promise_ship,
        promise_delivery=promise_delivery,
        u_pick=uniform(),
        u_pack=uniform(),
        u_door=uniform(),
    )


def _delivered(plan: _Plan, cal: _Calendar) -> _Plan:
    """The plan with delivery times: couriers deliver 08:00-21:00 local time."""
    arrival = plan.ship + plan.transit * _DAY
    midnight, hour = _local_day_and_hour(arrival, cal.tz)
    morning = (8.0 + 3.0 * plan.u_door) * _HOUR
    delivered = np.where(hour < 8.0, midnight + morning, arrival)
    delivered = np.where(hour >= 21.0, midnight + _DAY + morning, delivered)
    delivered = np.where(plan.exc == _EXC["lost"], np.nan, delivered)
    cancel = np.where(plan.refused, delivered, plan.cancel)
    exc_time = np.where(plan.exc == _EXC["damaged"], delivered, plan.exc_time)
    delivered = np.where(plan.refused, np.nan, delivered)
    return replace(plan, delivered=delivered, cancel=cancel, exc_time=exc_time)


# --- order lines (the basket) --------------------------------------------------------


@dataclass(frozen=True)
class _Basket:
    """Up to four lines per order, as (orders, 4) matrices."""

    rank: np.ndarray  # popularity rank of the line's SKU, 0 = most popular
    qty: np.ndarray
    valid: np.ndarray  # the line exists
    short: np.ndarray  # quantity not shipped
    sku_of_rank: np.ndarray  # SKU number of each popularity rank


def _plan_basket(rng: np.random.Generator, n: int, sku_of_rank: np.ndarray | None) -> _Basket:
    """1-4 distinct SKUs per order from a skewed catalogue, qty 1-3 each."""
    lines = _pick(rng.random(n), _LINES_SHARES).astype(np.int64) + 1
    cdf = np.cumsum(_sku_popularity())
    width = len(_LINES_SHARES)
    rank = np.empty((n, width), dtype=np.int16)
    qty = np.empty((n, width), dtype=np.int8)
    for j in range(width):
        rank[:, j] = np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), SKU_COUNT - 1)
        qty[:, j] = _pick(rng.random(n), _QTY_SHARES) + 1
    valid = np.arange(width) < lines[:, None]
    # A SKU drawn twice for one order is one line, not two.
    for j in range(1, width):
        for i in range(j):
            valid[:, j] &= rank[:, j] != rank[:, i]
    return _Basket(
        rank=rank,
        qty=qty,
        valid=valid,
        short=np.zeros((n, width), dtype=np.int8),
        sku_of_rank=rng.permutation(SKU_COUNT) + 1 if sku_of_rank is None else sku_of_rank,
    )


def _with_stockout_shortages(basket: _Basket, plan: _Plan) -> _Basket:
    """Stocked-out orders that ship anyway ship their first line short (when they can)."""
    ships = (plan.exc == _EXC["stockout"]) & ~np.isnan(plan.ship)
    first = basket.qty[:, 0]
    can_short = ships & ((basket.valid.sum(axis=1) >= 2) | (first >= 2))
    short = basket.short.copy()
    short[:, 0] = np.where(can_short, first - first // 2, short[:, 0])
    return replace(basket, short=short)


# --- incidents -----------------------------------------------------------------------


def _stockout_incident(
    plan: _Plan, basket: _Basket, cal: _Calendar, rng: np.random.Generator
) -> tuple[_Plan, _Basket]:
    """WH-South runs out of its top SKUs from Wednesday of the last week."""
    wednesday = cal.day(0, 2)
    hot = basket.valid & (basket.rank < _hot_sku_count())
    has_hot = hot.any(axis=1)
    has_other = (basket.valid & ~hot).any(axis=1)
    hit = (plan.warehouse == _WH_SOUTH) & (plan.paid >= wednesday) & has_hot
    hit &= (plan.exc < 0) & np.isnan(plan.cancel) & ~plan.refused
    u_detect, u_partial, u_late, u_cancel, u_when = rng.random((5, plan.n))
    # Orders with other lines in stock may go out short once the promise is missed;
    # the rest wait for stock that arrives after the export.
    partial = hit & has_other & (u_partial < 0.35)
    stuck = hit & ~partial
    exc_time = np.where(hit, plan.paid + (0.5 + 2.5 * u_detect) * _HOUR, plan.exc_time)
    ship_plan = np.where(partial, plan.promise_ship + (2.0 + 28.0 * u_late) * _HOUR, plan.ship_plan)
    ship_plan = np.where(stuck, np.nan, ship_plan)
    cancel = np.where(
        stuck & (u_cancel < 0.10), exc_time + (6.0 + 42.0 * u_when) * _HOUR, plan.cancel
    )
    plan = replace(
        plan,
        exc=np.where(hit, np.int8(_EXC["stockout"]), plan.exc).astype(np.int8),
        exc_time=exc_time,
        cancel=cancel,
        ship_plan=ship_plan,
        ship=np.where(cancel < ship_plan, np.nan, ship_plan),
        pick_ok=plan.pick_ok & ~stuck,
    )
    short = np.where(partial[:, None] & hot, basket.qty, basket.short).astype(np.int8)
    return plan, replace(basket, short=short)


def _transit_incident(plan: _Plan, cal: _Calendar, rng: np.random.Generator) -> _Plan:
    """EastPost parcels to region South take about 2.5x longer from Tuesday of the last week."""
    tuesday = cal.day(0, 1)
    hit = (plan.carrier == _EASTPOST) & (plan.region == _SOUTH) & (plan.ship >= tuesday)
    factor = _TRANSIT_INCIDENT_ROAD_FACTOR * np.exp(0.08 * rng.standard_normal(plan.n))
    return replace(plan, transit=np.where(hit, plan.transit * factor, plan.transit))


def _incidents_of(cal: _Calendar) -> tuple[Incident, ...]:
    """INCIDENTS with the dates of this sample in their descriptions."""
    weekday = {"carrier_transit": 1, "warehouse_stockout": 2}  # Tuesday, Wednesday
    dated = [
        replace(
            incident,
            segment=dict(incident.segment),
            start=cal.end_week.monday + dt.timedelta(days=weekday[incident.key]),
            week=str(cal.end_week),
        )
        for incident in INCIDENTS
    ]
    return tuple(replace(incident, description=incident.text("en")) for incident in dated)


# --- tables --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ids:
    """Text ids ``prefix`` + zero-padded number; ``numbers`` None: the row's own position."""

    prefix: str
    width: int
    numbers: np.ndarray | None = None
    offset: int = 0


@dataclass(frozen=True)
class _Times:
    seconds: np.ndarray  # UTC seconds, NaN = empty


@dataclass(frozen=True)
class _Codes:
    codes: np.ndarray  # index into labels, -1 = empty
    labels: tuple[str, ...]


@dataclass(frozen=True)
class _Numbers:
    values: np.ndarray  # NaN = empty
    type: pa.DataType


_Column = _Ids | _Times | _Codes | _Numbers


@dataclass(frozen=True)
class _Table:
    """Columns of one table (or of the rows of it written in one go), in file order."""

    name: str
    size: int
    columns: dict[str, _Column]


_Rows = dict[str, np.ndarray]  # raw columns of a time-sorted table, before they are sorted


def _row_count(rows: _Rows) -> int:
    """Number of rows in ``rows``."""
    return int(next(iter(rows.values())).size)


def _order_ids(numbers: np.ndarray | None = None, first: int = 0) -> _Ids:
    """Order ids like SO100000001 from order numbers (0 = the first order of the span)."""
    return _Ids("SO", 9, numbers, _ORDER_ID_START + first)


# --- one chunk of orders ---------------------------------------------------------------

# Random streams: one per concern and chunk. The first chunk's are the seed's first six
# children, as when the whole span was generated at once, so a span that fits in one
# chunk gives the same data as then; every later chunk spawns its own.
_ORDERS_STREAM, _LINES_STREAM, _TICKETS_STREAM, _CASES_STREAM = range(4)
_SETTLEMENTS_STREAM, _INCIDENT_STREAM = 4, 5


def _streams(seed: int, chunk: int) -> dict[int, np.random.Generator]:
    """The random generators of each concern for ``chunk`` (0 = the first)."""
    key: tuple[int, ...] = () if chunk == 0 else (chunk,)
    return {
        c: np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(c, *key)))
        for c in range(6)
    }


def _chunk_tables(
    streams: dict[int, np.random.Generator],
    created: np.ndarray,
    first: int,
    cal: _Calendar,
    incidents: bool,
    sku_of_rank: np.ndarray | None,
    wanted: set[str],
) -> tuple[dict[str, _Table | _Rows], np.ndarray]:
    """What orders created at ``created`` (numbered from ``first``) give each table.

    Draws from the week's ``streams``. Orders and order lines come as finished tables;
    the time-sorted tables as raw rows. Also returns the SKU catalogue order (drawn
    with the first chunk's basket when ``sku_of_rank`` is None).
    """
    plan = _plan_orders(streams[_ORDERS_STREAM], cal, created)
    basket = _plan_basket(streams[_LINES_STREAM], plan.n, sku_of_rank)
    basket = _with_stockout_shortages(basket, plan)
    if incidents:
        plan, basket = _stockout_incident(plan, basket, cal, streams[_INCIDENT_STREAM])
        plan = _transit_incident(plan, cal, streams[_INCIDENT_STREAM])
    plan = _delivered(plan, cal)

    made: dict[str, _Table | _Rows] = {}
    if "orders" in wanted:
        made["orders"] = _orders_table(plan, cal, first)
    if "tickets" in wanted:
        made["tickets"] = _ticket_rows(streams[_TICKETS_STREAM], plan, cal, first)
    if wanted & {"after_sales", "settlements"}:
        cases = _plan_cases(streams[_CASES_STREAM], plan)
        if "after_sales" in wanted:
            made["after_sales"] = _case_rows(cases, cal, first)
        if "settlements" in wanted:
            settle_rng = streams[_SETTLEMENTS_STREAM]
            made["settlements"] = _settlement_rows(settle_rng, plan, cases, cal, first)
    if "order_lines" in wanted:
        made["order_lines"] = _order_lines_table(basket, plan, cal, first)
    if "events" in wanted:
        made["events"] = _event_rows(plan, cal, first)
    return made, basket.sku_of_rank


class _HeldRows:
    """Rows of a time-sorted table, held by the local day of their time until written.

    A row's time is never before its order was created, so once the orders of a day are
    generated no later order adds rows to that day or any earlier one.
    """

    def __init__(self, cal: _Calendar, key: str) -> None:
        self._edges = cal.day_starts[1:]
        self._untimed = int(self._edges.size) + 1  # rows without a time are written last
        self._key = key
        self._days: dict[int, list[_Rows]] = {}
        self._empty: _Rows = {}

    def add(self, rows: _Rows) -> None:
        """Hold ``rows`` under the day each one's time falls in."""
        if not self._empty:
            self._empty = {k: v[:0] for k, v in rows.items()}
        when = rows[self._key]
        if not when.size:
            return
        day = np.searchsorted(self._edges, when, side="right")
        # Small integers: the stable sort is a radix sort.
        small = np.int16 if self._untimed < np.iinfo(np.int16).max else np.int32
        day = np.where(np.isnan(when), self._untimed, day).astype(small)
        order = np.argsort(day, kind="stable")
        day = day[order]
        starts = np.flatnonzero(np.diff(day, prepend=-1)).tolist()
        for start, stop in zip(starts, [*starts[1:], day.size], strict=True):
            take = order[start:stop]
            self._days.setdefault(int(day[start]), []).append({k: v[take] for k, v in rows.items()})

    def take_through(self, day: int | None) -> _Rows:
        """The held rows of days up to ``day`` (None: all) in time order, untimed ones last."""
        days = sorted(d for d in self._days if day is None or d <= day)
        pieces = [piece for d in days for piece in self._days.pop(d)]
        if not pieces:
            return dict(self._empty)
        rows = {k: np.concatenate([p[k] for p in pieces]) for k in self._empty}
        # Stable: rows at the same second keep the order they were made in (an order's
        # activities stay in process order); NaN sorts last.
        order = np.argsort(rows[self._key], kind="stable")
        return {k: v[order] for k, v in rows.items()}


# --- tables --------------------------------------------------------------------------


def _orders_table(plan: _Plan, cal: _Calendar, first: int) -> _Table:
    """The orders as the export shows them; warehouse and carrier are set at payment."""
    export = cal.export
    paid = _seen(plan.paid, export)
    allocated = ~np.isnan(paid)
    return _Table(
        "orders",
        plan.n,
        {
            "order_id": _order_ids(first=first),
            "order_type": _Codes(plan.order_type, ORDER_TYPES),
            "created_at": _Times(plan.created),
            "paid_at": _Times(paid),
            "shipped_at": _Times(_seen(plan.ship, export)),
            "delivered_at": _Times(_seen(plan.delivered, export)),
            "cancelled_at": _Times(_seen(plan.cancel, export)),
            "promised_ship_by": _Times(np.where(allocated, plan.promise_ship, np.nan)),
            "promised_delivery_by": _Times(np.where(allocated, plan.promise_delivery, np.nan)),
            "channel": _Codes(plan.channel, CHANNELS),
            "warehouse": _Codes(np.where(allocated, plan.warehouse, -1), WAREHOUSES),
            "carrier": _Codes(np.where(allocated, plan.carrier, -1), CARRIERS),
            "region": _Codes(plan.region, REGIONS),
            "amount": _Numbers(plan.amount, pa.float64()),
            "exception_code": _Codes(
                np.where(plan.exc_time < export, plan.exc, -1), EXCEPTION_CODES
            ),
        },
    )


def _late_deliveries(plan: _Plan) -> np.ndarray:
    """Shipped orders not delivered by promised_delivery_by (lost ones never are)."""
    shipped = ~np.isnan(plan.ship)
    return shipped & ~plan.refused & ~(plan.delivered <= plan.promise_delivery)


def _late_shipments(plan: _Plan) -> np.ndarray:
    """Paid orders neither shipped nor cancelled by promised_ship_by."""
    paid = ~np.isnan(plan.paid)
    return paid & ~(plan.ship <= plan.promise_ship) & ~(plan.cancel <= plan.promise_ship)


def _ticket_rows(rng: np.random.Generator, plan: _Plan, cal: _Calendar, first: int) -> _Rows:
    """Customer-service tickets: problems (exceptions, lateness) raise the chance of one."""
    n, export = plan.n, cal.export
    u_trigger, u_general, u_category, u_wait, u_rated, u_score = rng.random((6, n))
    z_general, z_first, z_resolve = rng.standard_normal((3, n))

    late_delivery = _late_deliveries(plan)
    late_ship = _late_shipments(plan)
    has_exc = plan.exc >= 0
    problem = np.full(n, _GENERAL, dtype=np.int8)
    problem[late_ship] = _LATE_SHIP
    problem[late_delivery] = _LATE_DELIVERY
    problem[has_exc] = plan.exc[has_exc]
    noticed = np.select(
        [has_exc, late_delivery, late_ship],
        [plan.exc_time, plan.promise_delivery, plan.promise_ship],
        default=np.nan,
    )
    fired = (problem != _GENERAL) & (u_trigger < _TICKET_CHANCE[problem])
    general = ~fired & (u_general < _TICKET_CHANCE[_GENERAL])
    opened = np.where(fired, noticed - np.log1p(-u_wait) * 8.0 * _HOUR, np.nan)
    opened = np.where(general, plan.created + 30.0 * _HOUR * np.exp(z_general), opened)
    problem = np.where(fired, problem, _GENERAL)
    keep = np.flatnonzero(opened < export)

    opened = opened[keep]
    category = _pick_by(u_category[keep], problem[keep], _TICKET_CATEGORY)
    complaint = category == TICKET_CATEGORIES.index("complaint")
    first_response = opened + 1.5 * _HOUR * np.exp(0.9 * z_first[keep])
    resolved = first_response + 20.0 * _HOUR * np.exp(z_resolve[keep]) * np.where(
        complaint, 1.6, 1.0
    )
    resolved = _seen(resolved, export)
    score = np.where(
        complaint, _pick(u_score[keep], _CSAT_COMPLAINT), _pick(u_score[keep], _CSAT_OTHER)
    )
    rated = ~np.isnan(resolved) & (u_rated[keep] < _CSAT_RATED_SHARE)
    return {
        "order_id": keep + first,
        "opened_at": opened,
        "first_response_at": _seen(first_response, export),
        "resolved_at": resolved,
        "category": category,
        "csat": np.where(rated, score + 1.0, np.nan),
    }


def _tickets_table(rows: _Rows, numbered: int) -> _Table:
    """Tickets in order of opening, numbered on from the ``numbered`` already written."""
    return _Table(
        "tickets",
        _row_count(rows),
        {
            "ticket_id": _Ids("TK", 9, None, numbered + 1),
            "order_id": _order_ids(rows["order_id"]),
            "opened_at": _Times(rows["opened_at"]),
            "first_response_at": _Times(rows["first_response_at"]),
            "resolved_at": _Times(rows["resolved_at"]),
            "category": _Codes(rows["category"], TICKET_CATEGORIES),
            "csat": _Numbers(rows["csat"], pa.float64()),
        },
    )


@dataclass(frozen=True)
class _Cases:
    """After-sales cases (true times, possibly past the export) and full refunds per order."""

    order_pos: np.ndarray
    kind: np.ndarray
    reason: np.ndarray
    requested: np.ndarray
    closed: np.ndarray
    refund_amount: np.ndarray
    refunded_at: np.ndarray  # per order: when a full refund closed, NaN otherwise


def _plan_cases(rng: np.random.Generator, plan: _Plan) -> _Cases:
    """Returns, refunds and exchanges requested after delivery; damage and lateness add some."""
    n = plan.n
    u_case, u_kind, u_reason, u_partial, u_fraction = rng.random((5, n))
    z_request, z_close = rng.standard_normal((2, n))
    delivered = ~np.isnan(plan.delivered)
    damaged = plan.exc == _EXC["damaged"]
    late = delivered & (plan.delivered > plan.promise_delivery)
    chance = np.where(damaged, _CASE_SHARE_DAMAGED, np.where(late, _CASE_SHARE_LATE, _CASE_SHARE))
    pos = np.flatnonzero(delivered & (u_case < chance))

    wait_days = np.clip(2.0 * np.exp(0.8 * z_request[pos]), 1.0 / 24.0, 14.0)
    requested = plan.delivered[pos] + wait_days * _DAY
    kind = _pick_by(u_kind[pos], damaged[pos].astype(np.int8), _KIND_SHARES)
    reason = np.where(
        damaged[pos],
        np.int8(AFTER_SALES_REASONS.index("damaged")),
        _pick_by(u_reason[pos], late[pos].astype(np.int8), _REASON_SHARES),
    ).astype(np.int8)
    amount = plan.amount[pos]
    partial = np.round(amount * (0.1 + 0.5 * u_fraction[pos]), 2)
    refund = np.select(
        [kind == AFTER_SALES_KINDS.index("return"), kind == AFTER_SALES_KINDS.index("refund_only")],
        [amount, np.where(u_partial[pos] < 0.6, amount, partial)],
        default=0.0,
    )
    closed = requested + _CASE_CLOSE_DAYS[kind] * np.exp(0.6 * z_close[pos]) * _DAY
    full = (kind != AFTER_SALES_KINDS.index("exchange")) & (refund == amount)
    refunded_at = np.full(n, np.nan)
    refunded_at[pos[full]] = closed[full]
    return _Cases(pos, kind, reason, requested, closed, refund, refunded_at)


def _case_rows(cases: _Cases, cal: _Calendar, first: int) -> _Rows:
    """The cases requested before the export; closed_at empty while still open."""
    keep = np.flatnonzero(cases.requested < cal.export)
    return {
        "order_id": cases.order_pos[keep] + first,
        "kind": cases.kind[keep],
        "requested_at": cases.requested[keep],
        "closed_at": _seen(cases.closed[keep], cal.export),
        "refund_amount": cases.refund_amount[keep],
        "reason": cases.reason[keep],
    }


def _after_sales_table(rows: _Rows, numbered: int) -> _Table:
    """Cases in order of request, numbered on from the ``numbered`` already written."""
    return _Table(
        "after_sales",
        _row_count(rows),
        {
            "case_id": _Ids("AS", 9, None, numbered + 1),
            "order_id": _order_ids(rows["order_id"]),
            "kind": _Codes(rows["kind"], AFTER_SALES_KINDS),
            "requested_at": _Times(rows["requested_at"]),
            "closed_at": _Times(rows["closed_at"]),
            "refund_amount": _Numbers(rows["refund_amount"], pa.float64()),
            "reason": _Codes(rows["reason"], AFTER_SALES_REASONS),
        },
    )


def _settlement_rows(
    rng: np.random.Generator, plan: _Plan, cases: _Cases, cal: _Calendar, first: int
) -> _Rows:
    """One row per paid, not cancelled order: settled 3-10 days after delivery, or not yet."""
    export = cal.export
    u_dispute, u_lag, u_refund = rng.random((3, plan.n))
    eligible = ~np.isnan(_seen(plan.paid, export)) & np.isnan(_seen(plan.cancel, export))
    lost = plan.exc == _EXC["lost"]
    refunded_at = np.where(lost, plan.exc_time + (1.0 + 2.0 * u_refund) * _DAY, cases.refunded_at)
    refunded = refunded_at < export
    delivered = ~np.isnan(_seen(plan.delivered, export))
    disputed = ~refunded & delivered & (u_dispute < _DISPUTE_SHARE)
    settle_at = plan.delivered + (3.0 + 7.0 * u_lag) * _DAY
    settled = ~refunded & ~disputed & (settle_at < export)
    status = np.select(
        [refunded, disputed, settled],
        [SETTLEMENT_STATUSES.index(s) for s in ("refunded", "disputed", "settled")],
        default=SETTLEMENT_STATUSES.index("pending"),
    ).astype(np.int8)
    settled_at = np.select([refunded, settled], [refunded_at, settle_at], default=np.nan)
    pos = np.flatnonzero(eligible)
    amount = plan.amount[pos]
    return {
        "order_id": pos + first,
        "settled_at": settled_at[pos],
        "amount": amount,
        "fee": np.round(amount * _FEE_RATE, 2),
        "status": status[pos],
    }


def _settlements_table(rows: _Rows, _numbered: int) -> _Table:
    """Settlements in order of settlement; rows not settled yet (empty settled_at) last."""
    return _Table(
        "settlements",
        _row_count(rows),
        {
            "order_id": _order_ids(rows["order_id"]),
            "settled_at": _Times(rows["settled_at"]),
            "amount": _Numbers(rows["amount"], pa.float64()),
            "fee": _Numbers(rows["fee"], pa.float64()),
            "status": _Codes(rows["status"], SETTLEMENT_STATUSES),
        },
    )


def _order_lines_table(basket: _Basket, plan: _Plan, cal: _Calendar, first: int) -> _Table:
    """One row per order line, in order of the orders; nothing shipped before shipping."""
    flat = np.flatnonzero(basket.valid)
    order_pos = flat // basket.valid.shape[1]
    qty = basket.qty.ravel()[flat].astype(np.int32)
    shipped = ~np.isnan(_seen(plan.ship, cal.export))[order_pos]
    qty_shipped = np.where(shipped, qty - basket.short.ravel()[flat], 0)
    sku = basket.sku_of_rank[basket.rank.ravel()[flat]]
    return _Table(
        "order_lines",
        flat.size,
        {
            "order_id": _order_ids(order_pos, first),
            "sku": _Ids("SKU-", 5, sku),
            "qty": _Numbers(qty, pa.int32()),
            "qty_shipped": _Numbers(qty_shipped, pa.int32()),
        },
    )


def _event_rows(plan: _Plan, cal: _Calendar, first: int) -> _Rows:
    """Each order's activities at the times of its milestones; picking and packing between."""
    export = cal.export
    span = plan.ship_plan - plan.release
    picked = plan.release + (0.15 + 0.45 * plan.u_pick) * span
    packed = picked + (0.3 + 0.5 * plan.u_pack) * (plan.ship_plan - picked)
    not_cancelled = ~(plan.cancel <= picked)
    picked = np.where(plan.pick_ok & not_cancelled, picked, np.nan)
    packed = np.where(plan.pick_ok & ~(plan.cancel <= packed), packed, np.nan)
    times = {
        "created": plan.created,
        "paid": plan.paid,
        "picked": picked,
        "packed": packed,
        "shipped": plan.ship,
        "delivered": plan.delivered,
        "cancelled": plan.cancel,
    }
    # Grouped by order, in process order within one: the stable sort by time when the
    # rows are written keeps an order's activities at the same second in that order.
    seen = np.stack([when < export for when in times.values()], axis=1)
    order_pos, activity = np.nonzero(seen)
    stamps = np.stack(list(times.values()), axis=1)[order_pos, activity]
    codes = np.array([ACTIVITIES.index(a) for a in times], dtype=np.int8)
    return {
        "order_id": order_pos.astype(np.int64) + first,
        "activity": codes[activity],
        "timestamp": stamps,
    }


def _events_table(rows: _Rows, _numbered: int) -> _Table:
    """Events in order of time."""
    return _Table(
        "events",
        _row_count(rows),
        {
            "order_id": _order_ids(rows["order_id"]),
            "activity": _Codes(rows["activity"], ACTIVITIES),
            "timestamp": _Times(rows["timestamp"]),
        },
    )


# The tables written in time order, by the column they are sorted on, and how their rows
# become a table.
_SORTED_BY = {
    "tickets": "opened_at",
    "after_sales": "requested_at",
    "settlements": "settled_at",
    "events": "timestamp",
}
_SORTED_TABLES: dict[str, Callable[[_Rows, int], _Table]] = {
    "tickets": _tickets_table,
    "after_sales": _after_sales_table,
    "settlements": _settlements_table,
    "events": _events_table,
}


# --- writing -------------------------------------------------------------------------


def _fixed_width_text(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """Arrow strings ``prefix`` + ``numbers`` zero-padded to ``width`` (at most 9 digits)."""
    if numbers.size and (numbers.min() < 0 or numbers.max() >= 10**width or width > 9):
        raise ValueError(f"ids of {prefix!r} need more than {width} digits")
    n = numbers.size
    # 32-bit arithmetic, one digit row at a time: several times faster than int64.
    digits = np.empty((width, n), dtype=np.uint8)
    rest = numbers.astype(np.uint32)
    ten = np.uint32(10)
    for k in range(width - 1, -1, -1):
        quotient = rest // ten
        digits[k] = (rest - quotient * ten).astype(np.uint8) + 48
        rest = quotient
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    chars = np.empty((n, head.size + width), dtype=np.uint8)
    chars[:, : head.size] = head
    chars[:, head.size :] = digits.T
    offsets = np.arange(n + 1, dtype=np.int32) * chars.shape[1]
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars.ravel()))


def _arrow_type(column: _Column, fmt: str, tz: str) -> pa.DataType:
    if isinstance(column, _Ids):
        return pa.string()
    if isinstance(column, _Times):
        return pa.timestamp("us", tz=tz) if fmt == "parquet" else pa.string()
    if isinstance(column, _Codes):
        return pa.dictionary(pa.int8(), pa.string()) if fmt == "parquet" else pa.string()
    return column.type


def _arrow_chunk(
    column: _Column, take: np.ndarray | slice, positions: np.ndarray, fmt: str, tz: str
) -> pa.Array:
    """One column's values at ``take``, as the Arrow array the file format wants."""
    if isinstance(column, _Ids):
        numbers = positions if column.numbers is None else column.numbers[take]
        return _fixed_width_text(
            column.prefix, numbers.astype(np.int64) + column.offset, column.width
        )
    if isinstance(column, _Times):
        seconds = column.seconds[take]
        missing = np.isnan(seconds)
        whole = np.where(missing, 0.0, seconds).astype(np.int64)  # floors: all times are > 0
        if fmt == "parquet":
            return pa.array(whole * 1_000_000, type=pa.timestamp("us", tz=tz), mask=missing)
        stamps = pa.array(whole, type=pa.timestamp("s", tz=tz), mask=missing)
        text = pc.strftime(stamps, format="%Y-%m-%dT%H:%M:%S%z")
        return pc.replace_substring_regex(text, pattern=r"([+-]\d\d)(\d\d)$", replacement=r"\1:\2")
    if isinstance(column, _Codes):
        codes = np.asarray(column.codes[take])
        indices = pa.array(codes.astype(np.int8), type=pa.int8(), mask=codes < 0)
        labels = pa.array(column.labels, type=pa.string())
        if fmt == "parquet":
            return pa.DictionaryArray.from_arrays(indices, labels)
        return labels.take(indices)
    values = np.asarray(column.values[take])
    if pa.types.is_floating(column.type):
        return pa.array(values, type=column.type, from_pandas=True)
    return pa.array(values, type=column.type)


def _values(column: _Column) -> np.ndarray:
    """The array of ``column`` (ids numbered)."""
    if isinstance(column, _Ids):
        assert column.numbers is not None
        return column.numbers
    if isinstance(column, _Times):
        return column.seconds
    if isinstance(column, _Codes):
        return column.codes
    return column.values


def _with_values(column: _Column, values: np.ndarray) -> _Column:
    """``column`` holding ``values`` instead of its array."""
    if isinstance(column, _Ids):
        return replace(column, numbers=values)
    if isinstance(column, _Times):
        return _Times(values)
    if isinstance(column, _Codes):
        return replace(column, codes=values)
    return replace(column, values=values)


def _rows_of(column: _Column, start: int, stop: int) -> _Column:
    """Rows ``start:stop`` of ``column``; ids get explicit numbers (offset 0)."""
    if isinstance(column, _Ids):
        if column.numbers is None:
            numbers = np.arange(start, stop, dtype=np.int64) + column.offset
        else:
            numbers = column.numbers[start:stop].astype(np.int64) + column.offset
        return replace(column, numbers=numbers, offset=0)
    return _with_values(column, _values(column)[start:stop])


def _joined(columns: list[_Column]) -> _Column:
    """The columns (of one kind, ids numbered) one after the other, as a new copy."""
    return _with_values(columns[0], np.concatenate([_values(c) for c in columns]))


class _TableFile:
    """One table's file, written as its rows come, under a temporary name until complete.

    Rows are held until they fill a row group of ROW_GROUP_ROWS rows, whatever the sizes
    of the pieces handed in: Parquet files get full row groups (the last one smaller),
    so readers can skip row groups by time; CSV rows are appended after a header
    written once. Each row group is converted to Arrow in one go.
    """

    def __init__(self, path: Path, fmt: str, tz: str) -> None:
        self.path = path
        self.partial = path.with_name(f".{path.name}.partial")
        self.rows = 0
        self._fmt = fmt
        self._tz = tz
        self._sink: pa.NativeFile | None = None
        self._writer: pq.ParquetWriter | pacsv.CSVWriter | None = None
        self._schema = pa.schema([])
        self._held: list[_Table] = []  # rows not yet written, ids numbered
        self._held_rows = 0

    def write(self, table: _Table) -> None:
        """Append the rows of ``table`` (opens the file on the first call, even with none)."""
        names = list(table.columns)
        if names != SCHEMAS[table.name].names:
            raise RuntimeError(f"{table.name}: columns {names} differ from the canonical schema")
        if self._writer is None:
            self._open(table)
        if table.size:
            self._held.append(_Table(table.name, table.size, _numbered(table)))
            self._held_rows += table.size
            self.rows += table.size
        if self._held_rows >= ROW_GROUP_ROWS:
            self._write_held(final=False)

    def close(self) -> None:
        """Write what is held and close the temporary file."""
        self._write_held(final=True)
        if self._writer is not None:
            self._writer.close()
        if self._sink is not None:
            self._sink.close()

    def abort(self) -> None:
        """Close and delete the temporary file (after a failure)."""
        if self._writer is not None:
            with contextlib.suppress(Exception):  # already closed, or the failure itself
                self._writer.close()
        if self._sink is not None and not self._sink.closed:
            self._sink.close()
        self.partial.unlink(missing_ok=True)

    def _open(self, table: _Table) -> None:
        fmt, tz = self._fmt, self._tz
        self._schema = pa.schema(
            [pa.field(k, _arrow_type(c, fmt, tz)) for k, c in table.columns.items()]
        )
        self._sink = pa.OSFile(str(self.partial), "wb")
        if fmt == "parquet":
            dictionary = [
                k for k, c in table.columns.items() if isinstance(c, _Codes) or k == "sku"
            ]
            self._writer = pq.ParquetWriter(
                self._sink, self._schema, compression="zstd", use_dictionary=dictionary
            )
        else:
            # The header is written by hand: Arrow quotes header names whatever the style.
            self._sink.write((",".join(self._schema.names) + "\n").encode("utf-8"))
            options = pacsv.WriteOptions(include_header=False, quoting_style="none")
            self._writer = pacsv.CSVWriter(self._sink, self._schema, write_options=options)

    def _write_held(self, *, final: bool) -> None:
        """Write the held rows as full row groups (and, when ``final``, the rest)."""
        if not self._held:
            return
        name = self._held[0].name
        columns = {k: _joined([t.columns[k] for t in self._held]) for k in self._schema.names}
        self._held = []
        total = self._held_rows
        whole = total if final else total - total % ROW_GROUP_ROWS
        fmt, tz = self._fmt, self._tz
        for start in range(0, whole, ROW_GROUP_ROWS):
            stop = min(start + ROW_GROUP_ROWS, whole)
            take, positions = slice(start, stop), np.arange(start, stop)
            arrays = [_arrow_chunk(c, take, positions, fmt, tz) for c in columns.values()]
            batch = pa.record_batch(arrays, schema=self._schema)
            if isinstance(self._writer, pq.ParquetWriter):
                self._writer.write_batch(batch, row_group_size=ROW_GROUP_ROWS)
            else:
                assert self._writer is not None
                self._writer.write_batch(batch)
        if total > whole:
            # A copy, so the rest does not keep the joined arrays alive.
            rest = {k: _joined([_rows_of(c, whole, total)]) for k, c in columns.items()}
            self._held = [_Table(name, total - whole, rest)]
        self._held_rows = total - whole


def _numbered(table: _Table) -> dict[str, _Column]:
    """The columns of ``table`` with every id as an explicit number (offset 0), so pieces
    with different offsets can be joined."""
    return {
        k: _rows_of(c, 0, table.size) if isinstance(c, _Ids) else c
        for k, c in table.columns.items()
    }


# --- department issue lists -------------------------------------------------------------------


@dataclass(frozen=True)
class SampleIssueFile:
    """A department's issue list written by ``write_sample_issues``."""

    path: Path
    department: str
    week: IsoWeek
    encoding: str | None  # None for XLSX


# (department, weeks before the end week, file format, encoding, header language, rows);
# each row: title, description, severity, segment, weekday first seen (0 = Monday), submitter.
# Several rows point at the injected incidents (EastPost -> South, WH-South stockout);
# some are near-duplicates in English and Chinese, and one problem comes back from the
# week before.
_SAMPLE_ISSUES: tuple[tuple[str, int, str, str | None, str, tuple[tuple[Any, ...], ...]], ...] = (
    (
        "it",
        1,
        "csv",
        "utf-8",
        "en",
        (
            (
                "Order export job to the WMS fails on Monday mornings",
                "The 06:00 export stops with a timeout; orders reach the warehouses late.",
                "high",
                "",
                0,
                "Zhao Lei",
            ),
        ),
    ),
    (
        "customer_service",
        1,
        "csv",
        "utf-8",
        "en",
        (
            (
                "Refund requests take too long to close",
                "Customers wait more than five days for refund-only cases.",
                "medium",
                "",
                2,
                "Zhang Min",
            ),
        ),
    ),
    (
        "logistics",
        0,
        "csv",
        "utf-8",
        "en",
        (
            (
                "EastPost deliveries to the South region are late",
                "Parcels handed to EastPost for the South take two to three days longer.",
                "high",
                "carrier=EastPost; region=South",
                1,
                "Chen Jie",
            ),
            (
                "EastPost late deliveries in South region",
                "Same pattern seen on the tracking board since Tuesday.",
                "medium",
                "carrier=EastPost; region=South",
                2,
                "Sun Hao",
            ),
            (
                "RapidRoute weekend pick-ups missed",
                "Saturday pick-ups at WH-North did not happen twice.",
                "low",
                "carrier=RapidRoute",
                5,
                "Chen Jie",
            ),
        ),
    ),
    (
        "customer_service",
        0,
        "csv",
        "gbk",
        "zh-CN",
        (
            (
                "华南地区客户投诉快递延误",
                "华南客户来电投诉包裹迟迟未到。",
                "高",
                "地区=South",
                2,
                "张敏",
            ),
            ("退款审核时间过长", "仅退款申请平均五天以上才处理完。", "中", "", 0, "张敏"),
            (
                "客户反映缺货订单迟迟未发货",
                "华南仓下单的客户询问为何一直未发货。",
                "中",
                "仓库=WH-South；异常=缺货",
                3,
                "李娜",
            ),
        ),
    ),
    (
        "operations",
        0,
        "xlsx",
        None,
        "en",
        (
            (
                "Stockouts at WH-South block shipping",
                "The most popular SKUs ran out at WH-South from Wednesday.",
                "critical",
                "warehouse=WH-South; exception_code=stockout",
                2,
                "Wang Wei",
            ),
            (
                "华南仓缺货，大量订单无法发货",
                "补货预计下周二到货。",
                "high",
                "warehouse=WH-South; exception_code=stockout",
                3,
                "刘芳",
            ),
            (
                "Packing station scanner at WH-East keeps failing",
                "Station 3 drops the connection several times a shift.",
                "low",
                "warehouse=WH-East",
                4,
                "Wang Wei",
            ),
        ),
    ),
    (
        "finance",
        0,
        "csv",
        "utf-8-sig",
        "en",
        (
            (
                "Refunds for damaged parcels growing",
                "Refunds with reason damaged are up on last month.",
                "medium",
                "exception_code=damaged",
                3,
                "Liu Yang",
            ),
            (
                "Settlement file from the payment provider arrives late",
                "The daily file came after 10:00 on three days.",
                "low",
                "",
                1,
                "Liu Yang",
            ),
        ),
    ),
    (
        "it",
        0,
        "csv",
        "gbk",
        "en",
        (
            (
                "Order export job failed again on Monday morning",
                "Same timeout as last week; restarted by hand at 07:10.",
                "high",
                "",
                0,
                "Zhao Lei",
            ),
            ("打印面单服务偶尔超时", "高峰时段面单打印等待超过一分钟。", "medium", "", 3, "赵磊"),
        ),
    ),
)
_ISSUE_HEADERS = {
    "en": ("title", "description", "severity", "segment", "first_seen", "submitter"),
    "zh-CN": ("标题", "描述", "严重程度", "涉及范围", "首次发现", "提交人"),
}


def write_sample_issues(folder: str | Path, end_week: IsoWeek | str) -> tuple[SampleIssueFile, ...]:
    """Write the demo departments' issue lists for ``end_week`` (and one week before it).

    CSV files in UTF-8 (one with BOM) and GBK, and one XLSX, with English and Chinese
    titles, written as a department would fill in the template. Files are named
    ``issues-<department>-<week>.<csv|xlsx>``; the same week gives the same content.
    """

    week = IsoWeek.parse(end_week)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for department, back, fmt, encoding, lang, rows in _SAMPLE_ISSUES:
        when = week.shift(-back)
        records = [
            (title, text, severity, segment, str(when.monday + dt.timedelta(days=day)), who)
            for title, text, severity, segment, day, who in rows
        ]
        path = out / f"issues-{department.replace('_', '-')}-{when}.{fmt}"
        if fmt == "xlsx":
            from openpyxl import Workbook

            book = Workbook()
            sheet = book.active
            sheet.title = "issues"
            sheet.append(list(_ISSUE_HEADERS[lang]))
            for record in records:
                sheet.append(list(record))
            book.save(path)
        else:
            with open(path, "w", encoding=encoding, newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(_ISSUE_HEADERS[lang])
                writer.writerows(records)
        written.append(SampleIssueFile(path, department, when, encoding))
    return tuple(written)


# --- demo minutes -----------------------------------------------------------------------------

_MINUTES_BEFORE = """\
# Minutes of the meeting about {week} (held {held}); format: meetinglib/meeting/minutes.py.
week: {week}
summary: |
  The WMS export failed again on Monday; refund-only cases wait too long.
plan:
  - Keep WH-South on the weekend rota
attendance:
  - {{email: li.na@demo-shop.example, status: present}}
  - {{email: wang.wei@demo-shop.example, status: present}}
  - {{email: zhang.min@demo-shop.example, status: present}}
  - {{email: chen.jie@demo-shop.example, status: present}}
  - {{email: liu.yang@demo-shop.example, status: absent}}
  - {{email: zhao.lei@demo-shop.example, status: present}}
time: {{opening: 5, data_report: 17, customer_service: 5, it: 6, solutions: 18,
        next_week_plan: 10, summary_feedback: 5}}
decisions:
  - ref: D1
    text: Move the WMS export to 05:00 and retry it automatically
    department: it
    issue: Order export job to the WMS fails on Monday mornings
actions:
  - description: Move the WMS export to 05:00 with an automatic retry
    owner: Zhao Lei
    department: it
    due: {d2}
    issue: Order export job to the WMS fails on Monday mornings
    decision: D1
  - description: Reply template for refund-only cases
    owner: Zhang Min
    department: customer_service
    due: {d4}
    issue: Refund requests take too long to close
  - description: Recount WH-South stock of the 50 fastest SKUs
    owner: Wang Wei
    department: operations
    due: {d3}
feedback:
  - {{email: li.na@demo-shop.example, rating: 4}}
  - {{email: zhang.min@demo-shop.example, rating: 3, comment: The IT part ran long}}
  - {{email: chen.jie@demo-shop.example, rating: 4}}
"""

_MINUTES_WEEK = """\
# Minutes of the meeting about {week} (held {held}); format: meetinglib/meeting/minutes.py.
week: {week}
summary: |
  EastPost's deliveries to the South are late for the second week; the volume moves to
  SwiftExpress for two weeks. The refund template is in use; the WMS export fix slipped.
plan:
  - SwiftExpress takes EastPost's South parcels until {d11}
  - One extra picker per shift in WH-South from Tuesday
attendance:
  - {{email: li.na@demo-shop.example, status: present}}
  - {{email: wang.wei@demo-shop.example, status: present}}
  - {{email: zhang.min@demo-shop.example, status: present}}
  - {{email: chen.jie@demo-shop.example, status: present}}
  - {{email: liu.yang@demo-shop.example, status: delegate, delegate: Sun Li}}
  - {{email: zhao.lei@demo-shop.example, status: absent}}
time: {{opening: 6, data_report: 19, operations: 6, customer_service: 10, logistics: 16,
        finance: 5, it: 4, solutions: 14, next_week_plan: 8, summary_feedback: 5}}
decisions:
  - ref: D1
    text: Shift EastPost's South parcels to SwiftExpress for two weeks
    department: logistics
    issue: EastPost deliveries to the South region are late
actions:
  - description: Agree the volume shift and pick-up times with SwiftExpress
    owner: Chen Jie
    department: logistics
    due: {d1}
    decision: D1
    issue: EastPost deliveries to the South region are late
  - description: Call customers whose South parcels are more than three days late
    owner: Zhang Min
    department: customer_service
    due: {d3}
  - description: Claim the late-delivery penalty from EastPost
    owner: Liu Yang
    department: finance
    due: {d9}
updates:
  - {{description: Reply template for refund-only cases, status: done, note: in use since Thursday}}
  - {{description: Move the WMS export to 05:00 with an automatic retry, note: needs a release}}
feedback:
  - {{email: li.na@demo-shop.example, rating: 4}}
  - {{email: chen.jie@demo-shop.example, rating: 5, comment: Clear decision on the South}}
  - {{email: zhang.min@demo-shop.example, rating: 4}}
  - {{rating: 3, comment: The data report part could be shorter}}
"""


def write_sample_minutes(folder: str | Path, end_week: IsoWeek | str) -> tuple[Path, Path]:
    """Write the demo minutes of the meetings about the week before ``end_week`` and
    ``end_week`` (held the Monday after each), for the default params' attendees.

    The earlier meeting's items fall due before the later meeting, so its review shows
    items closed, carried over and overdue. Files: ``minutes-<week>.yaml``.
    """
    week = IsoWeek.parse(end_week)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for when, text in ((week.previous(), _MINUTES_BEFORE), (week, _MINUTES_WEEK)):
        held = when.next().monday
        days = {f"d{n}": held + dt.timedelta(days=n) for n in (1, 2, 3, 4, 9, 11)}
        path = out / f"minutes-{when}.yaml"
        path.write_text(text.format(week=when, held=held, **days), encoding="utf-8")
        written.append(path)
    return written[0], written[1]
