"""Next week's plan: order and ticket forecast, its backtest, resources, special orders.

The meeting fixes next week's priorities; this module gives it numbers to decide on.

Forecast, per order type and day of the target week (orders *created*, local days of
the platform timezone, ISO weeks as in :mod:`meetinglib.core.weeks`)::

    forecast[day] = level x profile[weekday] x lift[day]

* ``profile``: the share of a week each weekday carries, the median over the last
  ``plan.profile_weeks`` weeks, so one odd day does not move it.
* ``level``: a Huber mean of the last ``plan.level_weeks`` weekly totals, plus
  ``plan.trend_weight`` x a Theil-Sen trend (over the last ``max(profile_weeks,
  level_weeks)`` weeks, refitted without an outlying week) projected from the middle of
  the level weeks to the target week. A plain mean of N weeks lags a growing series by
  (N + 1) / 2 weeks; the trend corrects that lag, damped because a slope fitted on a
  few weeks is noisy. Both estimators shrug off a single odd week.
* ``lift``: the promotions calendar in params (day -> factor). Promotion days in the
  history are left out of profile and level: a week with one has its total estimated
  from its other days, so a past promotion does not inflate next week.
* Unusual days: a promotion someone forgot to list, a holiday, an outage. A history day
  far off both the rest of its week and its weekday's trend (``unusual_days``; params
  ``plan.outlier_z`` and ``plan.outlier_min_change``) is left out like a promotion day,
  and listed (``NextWeekPlan.unusual_days``) so the calendar can be completed. Each
  backtest week judges only the days before it.
* "all" orders = the sum of the order types.

Prediction interval (nominal ``plan.interval``): the forecast times the quantiles of
actual / forecast over the usual non-promotion days of the ``plan.backtest_weeks`` weeks
before the target, each forecast from the data before it (split-conformal order
statistics from 20 ratios on; fewer: a log-normal fit; none: Poisson).

Tickets: tickets opened per order created over the last ``plan.share_weeks`` weeks,
times the week's orders forecast, spread over the days by the tickets' own weekday
profile (tickets trail orders, so their week is flatter); interval the same way.

Only whole weeks count as history: the oldest is the first week the data covers from
Monday on (or ``first_week``); days after the last order are unknown, not zero.

Resources: the "all" forecast is split over warehouses and carriers by their shares
of the orders created in the last ``plan.share_weeks`` weeks and set against params:
staff needed = ceil(orders / (orders per person-hour x hours per shift)); agents
needed = ceil(tickets / tickets per agent-day); carrier load against daily capacity.
The workload is orders created (cancelled ones included): slightly conservative.

Special orders: special and after-sales orders open at the end of the report week
(paid, neither shipped nor cancelled before it, as the backlog KPI counts them) with
their ship deadline (``sections.ship_deadline``): overdue, due next week, or later.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import numpy as np
import pandas as pd
from ibis.backends import BaseBackend

from meetinglib.analysis import sections
from meetinglib.analysis.sections import MISSING
from meetinglib.core.errors import InvalidParamError, NoDataError
from meetinglib.core.i18n import t
from meetinglib.core.params import Params, PlanParams
from meetinglib.core.schema import ORDER_TYPES
from meetinglib.core.weeks import IsoWeek, Window
from meetinglib.data import engine

SERIES = (*ORDER_TYPES, "all")
SPECIAL_TYPES = ("special", "after_sales")
STATUSES = ("overdue", "due_next_week", "later")
SECTIONS = ("orders", "tickets", "warehouse", "carrier")
FORECAST_COLUMNS = ("day", "order_type", "forecast", "lower", "upper")
PLAN_COLUMNS = (
    "day",
    "section",
    "item",
    "unit",
    "forecast",
    "lower",
    "upper",
    "needed",
    "needed_upper",
    "available",
    "gap",
    "utilisation",
    "flag",
)
_MIN_EMPIRICAL = 20  # ratios needed before trusting their empirical quantiles
_SPARSE_WEEK_SHARE = 0.25  # leading weeks below this share of a busy week: not covered
_HUBER_K = 1.5
# Every timezone's offset from UTC is a whole number of quarter hours: counts per UTC quarter
# hour from the engine add up to exact counts per local day.
_QUARTER_S = 900
# instants to the microsecond, as the engines keep them (frames may bring nanoseconds)
_INSTANT = dt.Timestamp(timezone="UTC", scale=6)
_EPS = 1e-9  # absorbs float noise before ceil (1,200 / 120 must be 10 people, not 11)


# --- daily counts and coverage ---------------------------------------------------------


def local_day(ts: pd.Series, tz: str) -> pd.Series:
    """The local calendar day in ``tz`` of each timestamp, as naive midnight (NaT stays)."""
    ts = pd.to_datetime(ts)
    ts = ts.dt.tz_localize(tz) if ts.dt.tz is None else ts.dt.tz_convert(tz)
    return ts.dt.tz_localize(None).dt.normalize()


# The week's engine table; a frame is handed to the engine as it is.
Rows: TypeAlias = pd.DataFrame | ir.Table


def _engine_rows(rows: Rows) -> ir.Table:
    return engine.frame_table(rows) if isinstance(rows, pd.DataFrame) else rows


def _local_day_counts(
    con: BaseBackend, table: ir.Table, column: str, tz: str, by: str | None = None
) -> pd.DataFrame:
    """Rows per local day of ``column`` in ``tz`` (and per value of ``by``), from the engine:
    columns day (naive midnight), ``by``, n. Rows without ``column`` are left out."""
    when = table[column]
    # the engine's native microseconds: its epoch of an instant goes through a cast to
    # wall time and the calendar library, several times slower on millions of rows
    micros = engine.unix_micros(when.cast(_INSTANT), con.name)
    keys: dict[str, ir.Value] = {"q": (micros // (_QUARTER_S * 1_000_000)).cast("int64")}
    if by is not None:
        keys[by] = table[by].cast("string")
    rows = table.filter(when.notnull()).select(**keys)
    found = con.execute(rows.group_by(list(keys)).aggregate(n=rows.count()))
    instants = pd.to_datetime(found["q"].astype("int64") * _QUARTER_S, unit="s", utc=True)
    found["day"] = instants.dt.tz_convert(tz).dt.tz_localize(None).dt.normalize()
    return found


def daily_orders(orders: Rows, tz: str, con: BaseBackend | None = None) -> pd.DataFrame:
    """Orders created per local day (rows, every day between first and last) x order type;
    counted by the engine (``con``, default the embedded DuckDB)."""
    found = _local_day_counts(
        con or engine.shared(), _engine_rows(orders), "created_at", tz, "order_type"
    )
    found = found[found["order_type"].notna()]
    counts = found.groupby(["day", "order_type"])["n"].sum().unstack(fill_value=0)
    counts = counts.reindex(columns=list(ORDER_TYPES), fill_value=0)
    if counts.empty:
        return pd.DataFrame(columns=list(ORDER_TYPES), dtype="float64")
    days = pd.date_range(counts.index.min(), counts.index.max(), freq="D")
    counts = counts.reindex(days, fill_value=0).astype("float64")
    counts.index.name, counts.columns.name = "day", None
    return counts


def daily_tickets(tickets: Rows, tz: str, con: BaseBackend | None = None) -> pd.Series:
    """Tickets opened per local day (every day between first and last ticket); by the engine."""
    found = _local_day_counts(con or engine.shared(), _engine_rows(tickets), "opened_at", tz)
    counts = found.groupby("day")["n"].sum().sort_index()
    if counts.empty:
        return pd.Series(dtype="float64", name="tickets")
    days = pd.date_range(counts.index.min(), counts.index.max(), freq="D")
    return counts.reindex(days, fill_value=0).astype("float64").rename("tickets")


def first_full_week(daily_total: pd.Series) -> IsoWeek | None:
    """The oldest week the data covers in full; None without data.

    The week of the first day counts only when that day is its Monday. Leading weeks with
    fewer than a quarter of the upper-quartile week's count are skipped too: sources add orders
    created long before the history when they are still open, a thin tail that is not
    the week's volume.
    """
    seen = daily_total[daily_total > 0]
    if seen.empty:
        return None
    first_day = seen.index.min()
    week = IsoWeek.containing(first_day)
    if first_day.weekday() != 0:
        week = week.next()
    iso = daily_total.index.isocalendar()
    weekly = daily_total.groupby([iso["year"].to_numpy(), iso["week"].to_numpy()]).sum()
    threshold = _SPARSE_WEEK_SHARE * float(np.quantile(weekly.to_numpy(), 0.75))
    for (year, number), total in weekly.items():
        candidate = IsoWeek(int(year), int(number))
        if candidate >= week and total >= threshold:
            return candidate
    return None


# --- robust building blocks ----------------------------------------------------------


def robust_mean(values: np.ndarray, k: float = _HUBER_K) -> float:
    """Huber M-estimate of the mean (scale 1.4826 x MAD; NaN ignored); NaN when empty."""
    v = np.asarray(values, dtype="float64")
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan
    mu = float(np.median(v))
    scale = 1.4826 * float(np.median(np.abs(v - mu)))
    if scale == 0:
        return mu
    for _ in range(50):
        weights = np.minimum(1.0, k / np.maximum(np.abs(v - mu) / scale, _EPS))
        new = float(np.sum(weights * v) / np.sum(weights))
        if abs(new - mu) < 1e-9 * scale:
            return new
        mu = new
    return mu


def theil_sen_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Median of the pairwise slopes (y_j - y_i) / (x_j - x_i); 0 with fewer than 3 points."""
    x, y = np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")
    keep = ~np.isnan(y)
    x, y = x[keep], y[keep]
    if x.size < 3:
        return 0.0
    i, j = np.triu_indices(x.size, k=1)
    return float(np.median((y[j] - y[i]) / (x[j] - x[i])))


def robust_slope(x: np.ndarray, y: np.ndarray, cut: float = 3.0) -> float:
    """Theil-Sen slope, refitted without points more than ``cut`` robust SDs off the line.

    Theil-Sen alone tilts when the odd week is the last one (every pair with it agrees);
    one refit without it fixes that. Robust SD = 1.4826 x MAD of the residuals.
    """
    x, y = np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")
    keep = ~np.isnan(y)
    x, y = x[keep], y[keep]
    slope = theil_sen_slope(x, y)
    residuals = y - slope * x
    residuals -= np.median(residuals) if residuals.size else 0.0
    scale = 1.4826 * float(np.median(np.abs(residuals))) if residuals.size else 0.0
    inlier = np.abs(residuals) <= cut * scale
    if scale > 0 and 3 <= inlier.sum() < inlier.size:
        slope = theil_sen_slope(x[inlier], y[inlier])
    return slope


def unusual_days(
    counts: np.ndarray, z: float | None, min_change: float
) -> tuple[np.ndarray, np.ndarray]:
    """Days far from both the rest of their week and their weekday's trend; usual counts.

    ``counts`` [W, 7]: one series per week and weekday, promotions already divided out,
    NaN = not seen. On log(count + 0.5), a median polish gives weekday and week effects.
    A day is unusual when, in the same direction, its residual from its own week and its
    residual from the Theil-Sen trend of the week effects both exceed ``z`` robust SDs
    (1.4826 x MAD of each residual) and a change of ``min_change``, and its count is off
    the usual one by ``z`` Poisson SDs (so small counts are not flagged for counting
    noise). Needing both residuals leaves a whole odd week (the level's Huber mean deals
    with it) and a week with a real shift alone, while a promotion missing from the
    calendar, a holiday or an outage stands out on both. Needs 3 weeks seen; ``z`` None:
    no day is unusual. Returns the mask [W, 7] and the usual count of every day [W, 7]
    (trend x weekday).
    """
    counts = np.asarray(counts, dtype="float64")
    flagged = np.zeros(counts.shape, dtype=bool)
    y = np.log(np.maximum(counts, 0.0) + 0.5)
    if int((~np.isnan(y)).any(axis=1).sum()) < 3:
        return flagged, np.full(counts.shape, np.nan)
    row = _nanmedian(y, axis=1)
    for _ in range(4):  # median polish: a few sweeps settle a 7-column table
        col = _nanmedian(y - row[:, None], axis=0)
        row = _nanmedian(y - col[None, :], axis=1)
    x = np.arange(y.shape[0], dtype="float64")
    slope = robust_slope(x, row)
    trend = _nanmedian((row - slope * x)[None, :], axis=1)[0] + slope * x
    usual = np.maximum(np.exp(trend[:, None] + col[None, :]) - 0.5, 0.0)
    if z is None:
        return flagged, usual
    within = y - row[:, None] - col[None, :]
    across = y - trend[:, None] - col[None, :]
    floor = math.log1p(min_change)
    # On small counts the log stretches the low tail; 2 x sqrt(count) has an SD of about 1.
    noise = 2.0 * np.abs(np.sqrt(np.maximum(counts, 0.0)) - np.sqrt(usual)) > z
    with np.errstate(invalid="ignore"):
        same_side = np.sign(within) == np.sign(across)
    flagged = _beyond(within, z, floor) & _beyond(across, z, floor) & same_side & noise
    return flagged, usual


def _beyond(residual: np.ndarray, z: float, floor: float) -> np.ndarray:
    """|residual| > max(z x 1.4826 x MAD of the residuals, floor); NaN is never beyond."""
    seen = residual[~np.isnan(residual)]
    scale = 1.4826 * float(np.median(np.abs(seen - np.median(seen)))) if seen.size else 0.0
    with np.errstate(invalid="ignore"):
        return np.abs(residual) > max(z * scale, floor)


def _nanmedian(values: np.ndarray, axis: int) -> np.ndarray:
    """Median along ``axis`` ignoring NaN; NaN where a slice has none.

    np.nanmedian takes a slow masked path on small arrays, and these are all small.
    """
    values = np.moveaxis(np.asarray(values, dtype="float64"), axis, -1)
    ordered = np.sort(values, axis=-1)  # NaN sort last
    n = np.sum(~np.isnan(values), axis=-1)
    lo = np.take_along_axis(ordered, np.maximum((n - 1) // 2, 0)[..., None], axis=-1)[..., 0]
    hi = np.take_along_axis(ordered, np.maximum(n // 2, 0)[..., None], axis=-1)[..., 0]
    return np.where(n > 0, (lo + hi) / 2.0, np.nan)


def _normalise(profile: np.ndarray, fallback: np.ndarray | float) -> np.ndarray:
    """Shares per weekday (axis 0) summing to 1; NaN from ``fallback``; uniform if empty."""
    p = np.where(np.isnan(profile), fallback, profile)
    p = np.where(np.isnan(p), 0.0, p)
    total = p.sum(axis=0)
    return np.where(total > 0, p / np.where(total > 0, total, 1.0), 1.0 / 7.0)


def _shares(values: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Median over weeks of each weekday's share of its week ([n, 7, S] -> [7, S])."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return _nanmedian(values / totals[:, None, :], axis=0)


def _week_totals(masked: np.ndarray, profile: np.ndarray) -> np.ndarray:
    """Weekly totals from the days seen: their sum / their profile share ([n, S])."""
    seen = ~np.isnan(masked)
    covered = np.sum(np.where(seen, profile[None, :, :], 0.0), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(covered > 0, np.nansum(masked, axis=1) / covered, np.nan)


def _base_forecast(
    counts: np.ndarray, lifts: np.ndarray, unusual: np.ndarray, plan: PlanParams
) -> np.ndarray:
    """Unlifted daily forecast [7, S] of the week after ``counts`` [H, 7, S] (NaN: unseen).

    Promotion days (``lifts`` [H, 7] != 1) and ``unusual`` days [H, 7] are left out.
    """
    window = max(plan.profile_weeks, plan.level_weeks)
    counts, lifts, unusual = counts[-window:], lifts[-window:], unusual[-window:]
    skip = (lifts != 1.0) | unusual
    masked = np.where(skip[:, :, None], np.nan, counts)
    in_profile = np.arange(counts.shape[0]) >= counts.shape[0] - plan.profile_weeks
    complete = ~np.isnan(counts).any(axis=(1, 2))
    clean = in_profile & complete & ~skip.any(axis=1)
    # A first profile from weeks without promotions; de-lifted days when there are none.
    if clean.any():
        first = _shares(counts[clean], counts[clean].sum(axis=1))
    else:
        delifted = np.where(unusual[:, :, None], np.nan, counts / lifts[:, :, None])[in_profile]
        first = _shares(delifted, np.nansum(delifted, axis=1))
    first = _normalise(first, 1.0 / 7.0)
    totals = _week_totals(masked, first)
    profile = _normalise(_shares(masked[in_profile], totals[in_profile]), first)
    totals = _week_totals(masked, profile)

    recent = totals[-plan.level_weeks :]
    x_recent = np.arange(counts.shape[0])[-plan.level_weeks :]
    x_all = np.arange(counts.shape[0])
    target_x = counts.shape[0]
    levels = np.empty(totals.shape[1])
    for s in range(totals.shape[1]):  # a handful of series, not rows
        seen = ~np.isnan(recent[:, s])
        if not seen.any():
            levels[s] = math.nan
            continue
        slope = robust_slope(x_all, totals[:, s])
        horizon = target_x - float(np.mean(x_recent[seen]))
        level = robust_mean(recent[:, s]) + plan.trend_weight * slope * horizon
        levels[s] = max(level, 0.0)
    return profile * levels[None, :]


# --- the panel: weeks x weekdays x series -----------------------------------------------


@dataclass(frozen=True)
class _Panel:
    """Daily counts of consecutive weeks, first..target, and the forecast of each week."""

    weeks: tuple[IsoWeek, ...]
    days: pd.DatetimeIndex  # naive local days, 7 per week
    counts: np.ndarray  # [W, 7, S] over SERIES (+ "tickets"); NaN = not covered
    lifts: np.ndarray  # [W, 7] promotion factor, 1 = none
    forecasts: np.ndarray  # [W, 7, S] forecast of each week from the weeks before; NaN = none
    naive: np.ndarray  # [W, 7, S] same weekday of the week before
    unusual: np.ndarray  # [W, 7, 2] unusual days of all orders, of tickets (before target)
    usual: np.ndarray  # [W, 7, 2] their usual counts (NaN: not estimated)

    @property
    def target(self) -> int:
        return len(self.weeks) - 1


def _weeks_between(first: IsoWeek, last: IsoWeek) -> tuple[IsoWeek, ...]:
    n = (last.monday - first.monday).days // 7 + 1
    return tuple(first.shift(i) for i in range(max(n, 0)))


def _lifts(days: pd.DatetimeIndex, plan: PlanParams) -> np.ndarray:
    calendar = pd.Series(plan.promotions, dtype="float64")
    calendar.index = pd.to_datetime(calendar.index)
    return calendar.reindex(days, fill_value=1.0).to_numpy(dtype="float64")


def _panel(
    orders: Rows,
    tickets: Rows | None,
    target: IsoWeek,
    tz: str,
    plan: PlanParams,
    first_week: IsoWeek | None,
    con: BaseBackend | None = None,
) -> _Panel:
    """Counts from the first covered week to ``target`` (its own days unseen), forecasts."""
    daily = daily_orders(orders, tz, con)
    daily["all"] = daily.sum(axis=1)
    inferred = first_full_week(daily["all"])
    first = max(w for w in (inferred, first_week) if w is not None) if inferred else None
    if first is None or first >= target:
        raise NoDataError(
            f"no complete week of orders before {target} to forecast it from (first full "
            f"week in the data: {inferred or 'none'}); load at least one full ISO week of "
            "orders before it (params history_weeks)."
        )
    weeks = _weeks_between(first, target)
    days = pd.date_range(first.monday, periods=7 * len(weeks), freq="D")
    # Days after the last order are unknown, not empty: a week the data ends in is
    # estimated from the days it has.
    unseen = (days >= pd.Timestamp(target.monday)) | (days > daily.index.max())
    frame = daily.reindex(days, fill_value=0.0)
    if tickets is not None:
        per_day = daily_tickets(tickets, tz, con)
        ticket_first = first_full_week(per_day) if not per_day.empty else None
        # Tickets trail their orders by days and the loader keeps the tickets of loaded
        # orders only: the first week of orders brings a thin first week of tickets.
        if ticket_first is not None and first.next() < target:
            ticket_first = max(ticket_first, first.next())
        frame["tickets"] = per_day.reindex(days, fill_value=0.0)
        if ticket_first is None:
            frame["tickets"] = np.nan
        else:
            outside = (days < pd.Timestamp(ticket_first.monday)) | (days > per_day.index.max())
            frame.loc[outside, "tickets"] = np.nan
    values = frame.to_numpy(dtype="float64")
    values[unseen] = np.nan
    counts = values.reshape(len(weeks), 7, values.shape[1])
    lifts = _lifts(days, plan).reshape(len(weeks), 7)

    forecasts = np.full_like(counts, np.nan)
    n_types = len(ORDER_TYPES)
    for i in range(max(1, len(weeks) - 1 - plan.backtest_weeks), len(weeks)):
        history = counts[:i]
        if np.isnan(history[:, :, 0]).all():
            continue
        # Unusual days judged from the data before week i only, as on its Monday.
        unusual, _ = _unusual_orders(history, lifts[:i], plan)
        base = _base_forecast(history[:, :, :n_types], lifts[:i], unusual, plan)
        base = base * lifts[i][:, None]
        forecasts[i, :, :n_types] = base
        forecasts[i, :, n_types] = base.sum(axis=1)
        if tickets is not None:
            week_tickets = _ticket_ratio(history, plan) * base.sum()
            forecasts[i, :, n_types + 1] = week_tickets * _ticket_profile(history, plan)
    if np.isnan(forecasts[-1, :, : len(SERIES)]).any():
        raise NoDataError(
            f"no orders in the {plan.level_weeks} weeks before {target} (params "
            f"plan.level_weeks); the data ends {daily.index.max():%Y-%m-%d}. Load recent data "
            "or forecast an earlier week."
        )
    naive = np.concatenate([np.full_like(counts[:1], np.nan), counts[:-1]])
    unusual = np.zeros((*lifts.shape, 2), dtype=bool)
    usual = np.full((*lifts.shape, 2), np.nan)
    before = counts[:-1]
    unusual[:-1, :, 0], usual[:-1, :, 0] = _unusual_orders(before, lifts[:-1], plan)
    if tickets is not None:
        unusual[:-1, :, 1], usual[:-1, :, 1] = unusual_days(
            before[:, :, n_types + 1], plan.outlier_z, plan.outlier_min_change
        )
    return _Panel(weeks, days, counts, lifts, forecasts, naive, unusual, usual)


def _unusual_orders(
    counts: np.ndarray, lifts: np.ndarray, plan: PlanParams
) -> tuple[np.ndarray, np.ndarray]:
    """Unusual days of all orders [H, 7] (promotion days never), and usual counts (lifted)."""
    all_orders = counts[:, :, len(ORDER_TYPES)]
    flagged, usual = unusual_days(all_orders / lifts, plan.outlier_z, plan.outlier_min_change)
    return flagged & (lifts == 1.0), usual * lifts


def _ticket_ratio(history: np.ndarray, plan: PlanParams) -> float:
    """Tickets opened / orders created over the last share_weeks weeks seen with tickets."""
    n_types = len(ORDER_TYPES)
    recent = history[-plan.share_weeks :]
    seen = ~np.isnan(recent[:, :, n_types + 1])
    orders = np.sum(np.where(seen, recent[:, :, n_types], 0.0))
    return float(np.nansum(recent[:, :, n_types + 1]) / orders) if orders > 0 else 0.0


def _ticket_profile(history: np.ndarray, plan: PlanParams) -> np.ndarray:
    """Share of a week's tickets per weekday: median over the last profile_weeks full weeks.

    Tickets follow orders by days (a late parcel, a return), so their week is flatter
    than the orders' week; spreading the tickets total by the orders' profile would
    overstate Mondays and understate weekends.
    """
    tickets = history[-plan.profile_weeks :, :, len(ORDER_TYPES) + 1]
    full = tickets[~np.isnan(tickets).any(axis=1)][:, :, None]
    if full.size == 0:
        return np.full(7, 1.0 / 7.0)
    return _normalise(_shares(full, full.sum(axis=1)), 1.0 / 7.0)[:, 0]


def _ratio_bounds(ratios: np.ndarray, coverage: float) -> tuple[float, float] | None:
    """Quantiles of actual / forecast for a two-sided interval; None without ratios."""
    n = ratios.size
    tail = (1.0 - coverage) / 2.0
    if n >= _MIN_EMPIRICAL:
        # Order statistics with the split-conformal (n + 1) correction: honest for new days.
        ordered = np.sort(ratios)
        lo = max(1, math.floor((n + 1) * tail))
        hi = min(n, math.ceil((n + 1) * (1.0 - tail)))
        return float(ordered[lo - 1]), float(ordered[hi - 1])
    if n >= 3:
        logs = np.log(ratios)
        z = statistics.NormalDist().inv_cdf(1.0 - tail)
        mu, sd = float(np.mean(logs)), float(np.std(logs, ddof=1))
        return math.exp(mu - z * sd), math.exp(mu + z * sd)
    return None


def _interval(
    panel: _Panel, series: int, coverage: float, plan: PlanParams
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds [7] for the target week of one series."""
    i = panel.target
    past = slice(max(0, i - plan.backtest_weeks), i)
    actual, forecast = panel.counts[past, :, series], panel.forecasts[past, :, series]
    # Promotion and unusual days stay out: the interval is for a week as the calendar
    # sees it. Tickets follow orders, so a day unusual in either is left out for them.
    unusual = panel.unusual[past, :, 0]
    if series >= len(SERIES):
        unusual = unusual | panel.unusual[past, :, 1]
    usable = (panel.lifts[past] == 1.0) & ~unusual & (actual > 0) & (forecast > 0)
    ratios = actual[usable] / forecast[usable]
    point = panel.forecasts[i, :, series]
    bounds = _ratio_bounds(ratios, coverage)
    if bounds is None:
        z = statistics.NormalDist().inv_cdf(0.5 + coverage / 2.0)
        lower, upper = point - z * np.sqrt(point), point + z * np.sqrt(point)
    else:
        lower, upper = point * bounds[0], point * bounds[1]
    return np.minimum(np.maximum(lower, 0.0), point), np.maximum(upper, point)


# --- forecasts ----------------------------------------------------------------------------


def _forecast_frame(
    panel: _Panel, columns: list[tuple[str, int]], plan: PlanParams
) -> pd.DataFrame:
    days = panel.days[-7:]
    parts = []
    for name, s in columns:
        lower, upper = _interval(panel, s, plan.interval, plan)
        parts.append(
            pd.DataFrame(
                {
                    "day": days,
                    "order_type": name,
                    "forecast": panel.forecasts[panel.target, :, s],
                    "lower": lower,
                    "upper": upper,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)[list(FORECAST_COLUMNS)]


def forecast_orders(
    orders: Rows,
    target: IsoWeek,
    tz: str,
    plan: PlanParams,
    first_week: IsoWeek | None = None,
    con: BaseBackend | None = None,
) -> pd.DataFrame:
    """Orders forecast per day of ``target`` and order type (plus "all"): forecast, lower, upper.

    Unit orders created per local day; only orders created before ``target`` are used.
    ``first_week``: the oldest week the source covers in full (None: found in the data).
    """
    panel = _panel(orders, None, target, tz, plan, first_week, con)
    return _forecast_frame(panel, [(name, s) for s, name in enumerate(SERIES)], plan)


def forecast_tickets(
    orders: Rows,
    tickets: Rows,
    target: IsoWeek,
    tz: str,
    plan: PlanParams,
    first_week: IsoWeek | None = None,
    con: BaseBackend | None = None,
) -> pd.DataFrame:
    """Tickets forecast per day of ``target``: tickets-per-order ratio x all-orders forecast.

    Unit tickets opened per local day; columns day, forecast, lower, upper.
    """
    panel = _panel(orders, tickets, target, tz, plan, first_week, con)
    frame = _forecast_frame(panel, [("tickets", len(SERIES))], plan)
    return frame.drop(columns="order_type")


# --- backtest --------------------------------------------------------------------------


@dataclass(frozen=True)
class BacktestSummary:
    """Accuracy of the forecast and of "same weekday last week" on all orders.

    MAPE = mean |forecast - actual| / actual; bias = mean (forecast - actual) / actual
    (positive = forecast too high); day level over every day-point with orders, week
    level over the weekly totals. ``better`` compares day-level MAPE.
    """

    weeks: int
    mape_day: float
    bias_day: float
    mape_week: float
    bias_week: float
    naive_mape_day: float
    naive_bias_day: float
    naive_mape_week: float
    naive_bias_week: float
    better: Literal["forecast", "naive", "tie", "none"]

    def sentence(self, lang: str = "en") -> str:
        """One sentence for the handout: how accurate, and which method to trust."""
        if self.better == "none":
            return t("plan.backtest.none", lang)
        key = {
            "forecast": "plan.backtest.forecast_better",
            "naive": "plan.backtest.naive_better",
            "tie": "plan.backtest.tie",
        }[self.better]
        return t(
            key,
            lang,
            weeks=self.weeks,
            mape=self.mape_day,
            bias=self.bias_day,
            naive=self.naive_mape_day,
            mape_week=self.mape_week,
        )


def _errors(forecast: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Signed relative errors (forecast - actual) / actual; NaN where actual is not > 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(actual > 0, (forecast - actual) / actual, np.nan)


def _backtest_tables(panel: _Panel, plan: PlanParams) -> tuple[pd.DataFrame, BacktestSummary]:
    i = panel.target
    ok = [
        j
        for j in range(max(0, i - plan.backtest_weeks), i)
        if not np.isnan(panel.forecasts[j, :, 0]).all()
        and not np.isnan(panel.naive[j, :, 0]).any()
        and not np.isnan(panel.counts[j, :, 0]).any()
    ]
    s = len(SERIES)
    actual = panel.counts[ok][:, :, :s]
    forecast = panel.forecasts[ok][:, :, :s]
    naive = panel.naive[ok][:, :, :s]
    err, naive_err = _errors(forecast, actual), _errors(naive, actual)
    week_err = _errors(forecast.sum(axis=1), actual.sum(axis=1))
    naive_week_err = _errors(naive.sum(axis=1), actual.sum(axis=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a type with no orders: NaN
        table = pd.DataFrame(
            {
                "week": np.repeat([str(panel.weeks[j]) for j in ok], s),
                "order_type": np.tile(SERIES, len(ok)),
                "actual": actual.sum(axis=1).ravel(),
                "forecast": forecast.sum(axis=1).ravel(),
                "naive": naive.sum(axis=1).ravel(),
                "mape_day": np.nanmean(np.abs(err), axis=1).ravel(),
                "bias_day": np.nanmean(err, axis=1).ravel(),
                "week_error": week_err.ravel(),
                "naive_mape_day": np.nanmean(np.abs(naive_err), axis=1).ravel(),
                "naive_bias_day": np.nanmean(naive_err, axis=1).ravel(),
                "naive_week_error": naive_week_err.ravel(),
            }
        )
        a = s - 1  # "all"
        day, naive_day = err[:, :, a].ravel(), naive_err[:, :, a].ravel()
        if ok:
            mape, naive_mape = float(np.nanmean(np.abs(day))), float(np.nanmean(np.abs(naive_day)))
        else:
            mape = naive_mape = math.nan
        summary = BacktestSummary(
            weeks=len(ok),
            mape_day=mape,
            bias_day=float(np.nanmean(day)) if ok else math.nan,
            mape_week=float(np.nanmean(np.abs(week_err[:, a]))) if ok else math.nan,
            bias_week=float(np.nanmean(week_err[:, a])) if ok else math.nan,
            naive_mape_day=naive_mape,
            naive_bias_day=float(np.nanmean(naive_day)) if ok else math.nan,
            naive_mape_week=float(np.nanmean(np.abs(naive_week_err[:, a]))) if ok else math.nan,
            naive_bias_week=float(np.nanmean(naive_week_err[:, a])) if ok else math.nan,
            better=_better(mape, naive_mape),
        )
    return table, summary


def _better(mape: float, naive_mape: float) -> Literal["forecast", "naive", "tie", "none"]:
    if math.isnan(mape) or math.isnan(naive_mape):
        return "none"
    if abs(mape - naive_mape) < 0.0005:  # within 0.05 points: no real difference
        return "tie"
    return "forecast" if mape < naive_mape else "naive"


def backtest(
    orders: Rows,
    week: IsoWeek,
    tz: str,
    plan: PlanParams,
    first_week: IsoWeek | None = None,
    con: BaseBackend | None = None,
) -> tuple[pd.DataFrame, BacktestSummary]:
    """Forecast each of the ``plan.backtest_weeks`` weeks up to ``week`` from the data before it.

    Returns one row per week x order type ("all" included) with actual, forecast and
    naive weekly totals, day-level MAPE and bias, signed week-level error, for the
    forecast and for the naive "same weekday last week"; and the summary on all orders.
    Weeks lacking a previous week or history are skipped.
    """
    panel = _panel(orders, None, week.next(), tz, plan, first_week, con)
    return _backtest_tables(panel, plan)


# --- resources ----------------------------------------------------------------------------


def _by_weekday(value: float | list[float], days: pd.Series) -> np.ndarray:
    """A params value per day: one number for all days, or seven indexed Monday..Sunday."""
    weekday = pd.DatetimeIndex(days).day_of_week.to_numpy()
    if isinstance(value, list):
        return np.asarray(value, dtype="float64")[weekday]
    return np.full(weekday.size, float(value))


def _recent(week: IsoWeek, tz: str, weeks: int) -> Window:
    """The ``weeks`` weeks ending with ``week``."""
    return Window(week.shift(1 - weeks).start(tz), week.end(tz))


def recent_shares(
    orders: Rows, by: str, week: IsoWeek, tz: str, weeks: int, con: BaseBackend | None = None
) -> pd.DataFrame:
    """Orders created in the ``weeks`` weeks up to ``week`` per value of ``by``: orders, share.

    Orders with an empty ``by`` (not yet routed, cancelled early) are left out of the share.
    Counted by the engine.
    """
    table = _engine_rows(orders)
    value = sections.col(table, by).cast("string")
    rows = table.filter(sections.within(table.created_at, _recent(week, tz, weeks)))
    rows = rows.select(v=value).filter(lambda r: r.v.notnull())
    found = (con or engine.shared()).execute(rows.group_by("v").aggregate(orders=rows.count()))
    counts = pd.Series(
        found["orders"].to_numpy(dtype="int64"), index=pd.Index(found["v"], dtype="string")
    ).sort_index()
    counts.index.name = by
    frame = counts.rename("orders").to_frame()
    frame["share"] = frame["orders"] / frame["orders"].sum() if len(frame) else []
    return frame


def carrier_on_time_rates(
    orders: Rows, week: IsoWeek, tz: str, weeks: int, con: BaseBackend | None = None
) -> pd.DataFrame:
    """Per carrier, orders delivered in the ``weeks`` weeks up to ``week``: delivered (with a
    promised date), on_time_rate = share delivered by promised_delivery_by (NaN if none);
    by the engine."""
    table = _engine_rows(orders)
    if "promised_delivery_by" not in table.columns or "carrier" not in table.columns:
        return pd.DataFrame(columns=["delivered", "on_time_rate"], dtype="float64")
    delivered, promise = sections.col(table, "delivered_at"), table.promised_delivery_by
    judged = (
        sections.within(delivered, _recent(week, tz, weeks))
        & promise.notnull()
        & table.carrier.notnull()
    )
    rows = table.filter(judged).select(
        carrier=table.carrier.cast("string"),
        on_time=ibis.ifelse((delivered <= promise).fill_null(False), 1.0, 0.0),
    )
    found = (con or engine.shared()).execute(
        rows.group_by("carrier").aggregate(delivered=rows.count(), on_time_rate=rows.on_time.mean())
    )
    frame = found.set_index(pd.Index(found["carrier"], dtype="string", name="carrier"))
    frame = frame.drop(columns="carrier").sort_index()
    return frame.astype({"delivered": "int64", "on_time_rate": "float64"})


_REQUIRED = {
    "warehouses": "orders_per_person_hour, hours_per_shift and staff",
    "carriers": "daily_capacity",
}


def _missing_entry(
    key: str, missing: list[str], orders: int, where: str, known: list[str], file: str
) -> InvalidParamError:
    """The error for names the data has and plan.<key> lacks; names the first key."""
    what = {"warehouses": "warehouse", "carriers": "carrier"}[key]
    names = ", ".join(f"'{m}'" for m in missing)
    return InvalidParamError(
        file,
        f"plan.{key}.{missing[0]}",
        f"{what} {names} {'has' if len(missing) == 1 else 'have'} {orders:,} orders {where} "
        f"but no entry under plan.{key}; add {'it' if len(missing) == 1 else 'each'} "
        f"with {_REQUIRED[key]} (see params/demo.yaml). Listed now: {sorted(known)}.",
    )


def _check_known(shares: pd.DataFrame, known: Mapping[str, object], key: str, file: str) -> None:
    """Every name with recent orders must have an entry under plan.<key>."""
    missing = [name for name in shares.index if name not in known and shares.loc[name, "orders"]]
    if missing:
        orders = int(shares.loc[missing, "orders"].sum())
        raise _missing_entry(key, missing, orders, "in the recent weeks", list(known), file)


def _with_idle(shares: pd.DataFrame, known: Mapping[str, object]) -> pd.DataFrame:
    """``shares`` plus, at share 0, the params entries without recent orders (shown idle)."""
    idle = [name for name in known if name not in shares.index]
    extra = pd.DataFrame({"orders": 0, "share": 0.0}, index=pd.Index(idle, name=shares.index.name))
    return pd.concat([shares, extra]) if idle else shares


def warehouse_load(orders_forecast: pd.DataFrame, shares: pd.DataFrame) -> pd.DataFrame:
    """The "all" forecast split over warehouses by share: day, warehouse, forecast, lower, upper."""
    return _split(orders_forecast, shares, "warehouse")


def _split(orders_forecast: pd.DataFrame, shares: pd.DataFrame, by: str) -> pd.DataFrame:
    total = orders_forecast[orders_forecast["order_type"] == "all"].reset_index(drop=True)
    names = list(shares.index)
    n = len(total)
    share = np.tile(shares["share"].to_numpy(dtype="float64"), n)
    return pd.DataFrame(
        {
            "day": np.repeat(total["day"].to_numpy(), len(names)),
            by: np.tile(np.asarray(names, dtype=object), n),
            "forecast": np.repeat(total["forecast"].to_numpy(), len(names)) * share,
            "lower": np.repeat(total["lower"].to_numpy(), len(names)) * share,
            "upper": np.repeat(total["upper"].to_numpy(), len(names)) * share,
        }
    )


def _utilisation(load: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """load / capacity; inf when there is load and no capacity, 0 when neither."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = load / capacity
    return np.where(capacity > 0, ratio, np.where(load > 0, np.inf, 0.0))


def _people(work: np.ndarray, per_person: np.ndarray | float) -> np.ndarray:
    return np.ceil(work / per_person - _EPS).clip(min=0)


def warehouse_staffing(
    load: pd.DataFrame, plan: PlanParams, params_file: str = "params"
) -> pd.DataFrame:
    """Pick-and-pack staff per day and warehouse: needed vs available, gap (+ = shortfall).

    staff_needed = ceil(orders / (orders_per_person_hour x hours_per_shift)), people;
    staff_needed_upper the same at the interval's upper bound; utilisation = hours needed
    / hours available (inf with no staff). ``load``: output of ``warehouse_load``.
    """
    names = load["warehouse"].astype(str)
    missing = sorted(set(names) - set(plan.warehouses))
    if missing:
        orders = int(round(load.loc[names.isin(missing).to_numpy(), "forecast"].sum()))
        raise _missing_entry(
            "warehouses", missing, orders, "in the forecast", list(plan.warehouses), params_file
        )
    wh = {name: plan.warehouses[name] for name in set(names)}
    rate = names.map({n: p.orders_per_person_hour for n, p in wh.items()}).to_numpy(float)
    hours = names.map({n: p.hours_per_shift for n, p in wh.items()}).to_numpy(float)
    available = np.empty(len(load))
    for name, p in wh.items():  # one vector operation per warehouse
        at = (names == name).to_numpy()
        available[at] = _by_weekday(p.staff, load["day"][at])
    orders = load["forecast"].to_numpy(float)
    needed = _people(orders, rate * hours)
    out = pd.DataFrame(
        {
            "day": load["day"].to_numpy(),
            "warehouse": names.to_numpy(),
            "orders": orders,
            "orders_lower": load["lower"].to_numpy(float),
            "orders_upper": load["upper"].to_numpy(float),
            "hours_needed": orders / rate,
            "staff_needed": needed,
            "staff_needed_upper": _people(load["upper"].to_numpy(float), rate * hours),
            "staff_available": available,
            "staff_gap": needed - available,
            "utilisation": _utilisation(orders / rate, available * hours),
        }
    )
    out["short"] = out["staff_gap"] > 0
    return out


def customer_service_staffing(tickets_forecast: pd.DataFrame, plan: PlanParams) -> pd.DataFrame:
    """Agents per day: needed = ceil(tickets / tickets_per_agent_day) vs available, gap.

    Utilisation = tickets / (agents x tickets_per_agent_day), inf with no agents.
    Requires ``plan.customer_service``.
    """
    cs = plan.customer_service
    if cs is None:
        raise InvalidParamError(
            "params",
            "plan.customer_service",
            "not set; add tickets_per_agent_day and agents to plan customer service.",
        )
    tickets = tickets_forecast["forecast"].to_numpy(float)
    available = _by_weekday(cs.agents, tickets_forecast["day"])
    needed = _people(tickets, cs.tickets_per_agent_day)
    out = pd.DataFrame(
        {
            "day": tickets_forecast["day"].to_numpy(),
            "tickets": tickets,
            "tickets_upper": tickets_forecast["upper"].to_numpy(float),
            "agents_needed": needed,
            "agents_needed_upper": _people(
                tickets_forecast["upper"].to_numpy(float), cs.tickets_per_agent_day
            ),
            "agents_available": available,
            "agents_gap": needed - available,
            "utilisation": _utilisation(tickets, available * cs.tickets_per_agent_day),
        }
    )
    out["short"] = out["agents_gap"] > 0
    return out


def carrier_allocation(
    orders_forecast: pd.DataFrame,
    shares: pd.DataFrame,
    on_time: pd.DataFrame,
    plan: PlanParams,
    params_file: str = "params",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The "all" forecast split over carriers by share, against daily capacity and on-time rate.

    Per day x carrier: parcels (= orders), parcels_upper, capacity, utilisation (inf with no
    capacity), overflow = max(0, parcels - capacity), over_capacity, at_risk (upper bound
    over capacity). Per carrier: share, week's parcels and capacity, peak utilisation, days
    over capacity, on-time delivery rate, low_on_time (< plan.min_on_time_delivery).
    """
    _check_known(shares, plan.carriers, "carriers", params_file)
    load = _split(orders_forecast, shares, "carrier")
    names = load["carrier"].astype(str)
    capacity = np.empty(len(load))
    for name in set(names):  # one vector operation per carrier
        at = (names == name).to_numpy()
        capacity[at] = _by_weekday(plan.carriers[name].daily_capacity, load["day"][at])
    parcels = load["forecast"].to_numpy(float)
    upper = load["upper"].to_numpy(float)
    daily = pd.DataFrame(
        {
            "day": load["day"].to_numpy(),
            "carrier": names.to_numpy(),
            "parcels": parcels,
            "parcels_lower": load["lower"].to_numpy(float),
            "parcels_upper": upper,
            "capacity": capacity,
            "utilisation": _utilisation(parcels, capacity),
            "overflow": np.maximum(parcels - capacity, 0.0),
            "over_capacity": parcels > capacity,
            "at_risk": upper > capacity,
        }
    )
    grouped = daily.groupby("carrier", sort=True)
    summary = pd.DataFrame(
        {
            "share": shares["share"],
            "parcels": grouped["parcels"].sum(),
            "capacity": grouped["capacity"].sum(),
            "peak_utilisation": grouped["utilisation"].max(),
            "days_over_capacity": grouped["over_capacity"].sum().astype("int64"),
        }
    )
    summary.index.name = "carrier"
    rates = on_time.reindex(summary.index)
    summary["delivered"] = rates["delivered"].fillna(0).astype("int64")
    summary["on_time_rate"] = rates["on_time_rate"].astype("float64")
    summary["low_on_time"] = summary["on_time_rate"] < plan.min_on_time_delivery
    return daily, summary


# --- special orders ------------------------------------------------------------------------


def open_special_orders(
    orders: Rows, week: IsoWeek, tz: str, ship_hours: float, con: BaseBackend | None = None
) -> pd.DataFrame:
    """Special and after-sales orders open at the end of ``week``, by ship deadline: the
    orders the plan lists by id, selected by the engine.

    Open: paid before the week end, neither shipped nor cancelled before it. Deadline:
    promised_ship_by, else paid_at + ``ship_hours``. Status: overdue (deadline before the
    week end), due_next_week (before the next week's end), later. hours_left = deadline -
    week end in hours (negative = overdue by). Sorted by deadline.
    """
    table = _engine_rows(orders)
    end = sections.instant(week.end(tz))
    next_end = sections.instant(week.next().end(tz))
    # "<" as in the backlog: a milestone exactly at the week end has not happened in it.
    kind = sections.col(table, "order_type").cast("string")
    sub = table.filter(kind.isin(SPECIAL_TYPES).fill_null(False) & sections.open_at(table, end))
    deadline = sections.ship_deadline(sub, ship_hours)
    status = ibis.cases(
        (sections.before(deadline, end), "overdue"),
        (sections.before(deadline, next_end), "due_next_week"),
        else_="later",
    )
    promised = sections.col(sub, "promised_ship_by").notnull()
    rows = sub.select(
        order_id=sub.order_id.cast("string"),
        order_type=sections.col(sub, "order_type").cast("string"),
        warehouse=sections.col(sub, "warehouse").cast("string").fill_null(MISSING),
        paid_at=sections.col(sub, "paid_at"),
        deadline=deadline,
        deadline_from=ibis.ifelse(promised, "promised", "sla"),
        hours_left=engine.hours_between(end, deadline),
        status=status,
    )
    ranked = rows.order_by(ibis.asc(rows.deadline, nulls_first=False), rows.order_id)
    out = (con or engine.shared()).execute(ranked)
    for column in ("paid_at", "deadline"):
        out[column] = pd.to_datetime(out[column], utc=True).dt.tz_convert(tz)
    for column in ("order_id", "order_type", "warehouse"):
        out[column] = out[column].astype("string")
    out["hours_left"] = out["hours_left"].astype("float64")
    out["status"] = pd.Categorical(out["status"], categories=list(STATUSES))
    return out.reset_index(drop=True)


def special_order_counts(special: pd.DataFrame) -> pd.DataFrame:
    """Open special orders per warehouse x status (columns overdue, due_next_week, later, total)."""
    if special.empty:
        empty = pd.DataFrame(columns=[*STATUSES, "total"], dtype="int64")
        empty.index.name = "warehouse"
        return empty
    table = special.groupby(["warehouse", "status"], observed=False).size().unstack("status")
    table = table.reindex(columns=list(STATUSES)).fillna(0).astype("int64")
    table.columns.name = None
    table["total"] = table.sum(axis=1)
    return table


# --- the plan --------------------------------------------------------------------------------


@dataclass
class NextWeekPlan:
    """Everything the plan segment of the meeting shows, for ``target`` = ``week`` + 1."""

    week: IsoWeek  # the report week: the last complete week of data
    target: IsoWeek  # the week planned
    params: Params
    orders: pd.DataFrame  # forecast_orders
    tickets: pd.DataFrame | None  # forecast_tickets; None without tickets data
    backtest: pd.DataFrame
    backtest_summary: BacktestSummary
    warehouse_shares: pd.DataFrame
    staffing: pd.DataFrame | None  # warehouse_staffing; None without plan.warehouses
    customer_service: pd.DataFrame | None  # None without tickets or plan.customer_service
    carriers: pd.DataFrame | None  # carrier_allocation, per day; None without plan.carriers
    carrier_summary: pd.DataFrame | None
    special_orders: pd.DataFrame  # open_special_orders
    special_counts: pd.DataFrame  # special_order_counts
    unusual_days: pd.DataFrame  # history days left out as unusual: day, series, actual, usual

    def sentences(self, lang: str | None = None) -> list[str]:
        """The plan's headline sentences for the handout and the minutes; warehouses and
        carriers by the names params ``labels`` give them in ``lang``."""
        lang = lang or self.params.language

        def named(dimension: str, codes: Any) -> list[str]:
            return [self.params.label(dimension, str(c), lang) for c in codes]

        total = self.orders[self.orders["order_type"] == "all"].reset_index(drop=True)
        peak = int(total["forecast"].idxmax())
        out = [
            t(
                "plan.forecast.headline",
                lang,
                week=str(self.target),
                orders=float(total["forecast"].sum()),
                day=_day_label(total.loc[peak, "day"], lang),
                peak=float(total.loc[peak, "forecast"]),
                lower=float(total.loc[peak, "lower"]),
                upper=float(total.loc[peak, "upper"]),
                coverage=self.params.plan.interval,
            ),
            self.backtest_summary.sentence(lang),
        ]
        if self.staffing is not None:
            out.append(
                _shortfall_sentence(
                    self.staffing,
                    "staff_gap",
                    "plan.staff",
                    lang,
                    by="warehouse",
                    name=lambda code: named("warehouse", [code])[0],
                )
            )
        if self.customer_service is not None:
            cs = self.customer_service
            out.append(_shortfall_sentence(cs, "agents_gap", "plan.agents", lang))
        summary = self.carrier_summary
        over = [] if summary is None else summary.index[summary["days_over_capacity"] > 0]
        if len(over):
            out.append(
                t("plan.carriers.over_capacity", lang, carriers=", ".join(named("carrier", over)))
            )
        low = [] if summary is None else summary.index[summary["low_on_time"]]
        if len(low):
            out.append(
                t(
                    "plan.carriers.low_on_time",
                    lang,
                    carriers=", ".join(named("carrier", low)),
                    threshold=self.params.plan.min_on_time_delivery,
                )
            )
        counts = self.special_counts.sum()
        out.append(
            t(
                "plan.special.summary",
                lang,
                open=int(counts.get("total", 0)),
                overdue=int(counts.get("overdue", 0)),
                due=int(counts.get("due_next_week", 0)),
            )
        )
        return out


def _day_label(day: pd.Timestamp, lang: str) -> str:
    return f"{t(f'weekday.{day.weekday()}', lang)} {day:%m-%d}"


def _shortfall_sentence(
    frame: pd.DataFrame,
    gap: str,
    key: str,
    lang: str,
    by: str | None = None,
    name: Callable[[Any], str] = str,
) -> str:
    """``<key>.covered`` when no day is short, else ``<key>.short`` naming the worst day."""
    short = frame[frame[gap] > 0]
    if short.empty:
        return t(f"{key}.covered", lang)
    worst = short.loc[short[gap].idxmax()]
    return t(
        f"{key}.short",
        lang,
        days=len(short),
        where=name(worst[by]) if by else "",
        day=_day_label(worst["day"], lang),
        gap=float(worst[gap]),
    )


def _params_files(params: Params) -> str:
    return ", ".join(str(f) for f in params.files) or "params"


def next_week_plan(
    orders: Rows,
    tickets: Rows | None,
    week: IsoWeek,
    params: Params,
    first_week: IsoWeek | None = None,
    con: BaseBackend | None = None,
) -> NextWeekPlan:
    """The plan for the week after ``week`` (the report week, the last complete week of data).

    ``orders``, ``tickets``: the week's engine tables (frames are handed to the engine);
    only daily counts, shares and the open special orders come back from ``con``.
    ``first_week``: the oldest week the source covers in full; default the start of the
    loaded history (``week`` - ``params.history_weeks``), later if the data starts later.
    """
    plan, tz = params.plan, params.timezone
    con = con or engine.shared(params.engine)
    orders = _engine_rows(orders)
    tickets = None if tickets is None else _engine_rows(tickets)
    target = week.next()
    first_week = first_week or week.shift(-params.history_weeks)
    has_tickets = tickets is not None and int(con.execute(tickets.count())) > 0
    panel = _panel(orders, tickets if has_tickets else None, target, tz, plan, first_week, con)
    order_fc = _forecast_frame(panel, [(name, s) for s, name in enumerate(SERIES)], plan)
    bt_table, bt_summary = _backtest_tables(panel, plan)
    ticket_fc = cs = None
    if has_tickets:
        ticket_fc = _forecast_frame(panel, [("tickets", len(SERIES))], plan)
        ticket_fc = ticket_fc.drop(columns="order_type")
        if plan.customer_service is not None:
            cs = customer_service_staffing(ticket_fc, plan)

    files = _params_files(params)
    wh_shares = recent_shares(orders, "warehouse", week, tz, plan.share_weeks, con)
    # Without warehouses (carriers) in the params the plan leaves their part out instead
    # of failing: a company's params need not describe its resources on day one.
    staffing = None
    if plan.warehouses:
        _check_known(wh_shares, plan.warehouses, "warehouses", files)
        wh_shares = _with_idle(wh_shares, plan.warehouses)
        staffing = warehouse_staffing(warehouse_load(order_fc, wh_shares), plan, files)
    carriers = carrier_summary = None
    if plan.carriers:
        carrier_shares = recent_shares(orders, "carrier", week, tz, plan.share_weeks, con)
        _check_known(carrier_shares, plan.carriers, "carriers", files)
        carrier_shares = _with_idle(carrier_shares, plan.carriers)
        on_time = carrier_on_time_rates(orders, week, tz, plan.share_weeks, con)
        carriers, carrier_summary = carrier_allocation(
            order_fc, carrier_shares, on_time, plan, files
        )
    special = open_special_orders(orders, week, tz, params.sla.ship_hours, con)
    return NextWeekPlan(
        week=week,
        target=target,
        params=params,
        orders=order_fc,
        tickets=ticket_fc,
        backtest=bt_table,
        backtest_summary=bt_summary,
        warehouse_shares=wh_shares,
        staffing=staffing,
        customer_service=cs,
        carriers=carriers,
        carrier_summary=carrier_summary,
        special_orders=special,
        special_counts=special_order_counts(special),
        unusual_days=_unusual_frame(panel),
    )


def _unusual_frame(panel: _Panel) -> pd.DataFrame:
    """Unusual history days: day, series ("orders" = all orders, "tickets"), actual, usual
    (the trend x weekday count expected), change = actual / usual - 1 (NaN against a usual
    0); oldest first."""
    columns = {"orders": len(ORDER_TYPES), "tickets": len(SERIES)}
    parts = []
    for k, (name, s) in enumerate(columns.items()):
        if s >= panel.counts.shape[2]:
            continue
        flagged = panel.unusual[:, :, k].ravel()
        actual = panel.counts[:, :, s].ravel()[flagged]
        usual = panel.usual[:, :, k].ravel()[flagged]
        parts.append(
            pd.DataFrame(
                {
                    "day": panel.days[flagged],
                    "series": name,
                    "actual": actual,
                    "usual": usual,
                    # against a usual 0 a change is no number (no division warned of)
                    "change": np.divide(
                        actual, usual, out=np.full(len(actual), np.nan), where=usual > 0
                    )
                    - 1.0,
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    return frame.sort_values(["day", "series"], kind="stable").reset_index(drop=True)


def plan_frame(plan: NextWeekPlan) -> pd.DataFrame:
    """The plan as one long table (outputs/<week>/plan.csv): one row per day x item.

    Sections: orders (item = order type or "all"; forecast in orders), tickets (forecast
    in tickets; needed / available = agents), warehouse (forecast = orders routed there;
    needed / available = people on shift), carrier (forecast = needed = parcels,
    available = daily capacity). ``unit`` is the unit of needed, available and gap
    (orders rows: of the forecast). gap = needed - available (+ = shortfall);
    utilisation = workload / capacity (inf: none available); flag: short, over_capacity,
    at_risk (upper bound over capacity), low_on_time, ";"-joined. Values rounded to
    two decimals.
    """
    orders = plan.orders.rename(columns={"order_type": "item"}).assign(
        section="orders", unit="orders"
    )
    parts = [orders]
    if plan.tickets is not None:
        tickets = plan.tickets.assign(section="tickets", item="tickets", unit="tickets")
        if plan.customer_service is not None:
            cs = plan.customer_service
            tickets = tickets.assign(
                unit="agents",
                needed=cs["agents_needed"].to_numpy(),
                needed_upper=cs["agents_needed_upper"].to_numpy(),
                available=cs["agents_available"].to_numpy(),
                gap=cs["agents_gap"].to_numpy(),
                utilisation=cs["utilisation"].to_numpy(),
                flag=np.where(cs["short"], "short", ""),
            )
        parts.append(tickets)
    st = plan.staffing
    if st is not None:
        parts.append(_staffing_rows(st))
    if plan.carriers is not None and plan.carrier_summary is not None:
        parts.append(_carrier_rows(plan.carriers, plan.carrier_summary))
    frame = pd.concat(parts, ignore_index=True).reindex(columns=list(PLAN_COLUMNS))
    frame["flag"] = frame["flag"].fillna("")
    numbers = ["forecast", "lower", "upper", "needed", "needed_upper", "available", "gap"]
    frame[numbers + ["utilisation"]] = frame[numbers + ["utilisation"]].astype("float64").round(2)
    order = frame["section"].map({s: i for i, s in enumerate(SECTIONS)})
    frame = frame.assign(_order=order).sort_values(["day", "_order"], kind="stable")
    return frame.drop(columns="_order").reset_index(drop=True)


def _staffing_rows(st: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "day": st["day"],
            "section": "warehouse",
            "item": st["warehouse"],
            "unit": "people",
            "forecast": st["orders"],
            "lower": st["orders_lower"],
            "upper": st["orders_upper"],
            "needed": st["staff_needed"],
            "needed_upper": st["staff_needed_upper"],
            "available": st["staff_available"],
            "gap": st["staff_gap"],
            "utilisation": st["utilisation"],
            "flag": np.where(st["short"], "short", ""),
        }
    )


def _carrier_rows(ca: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    low = ca["carrier"].map(summary["low_on_time"]).fillna(False).to_numpy(bool)
    flags = (
        pd.Series(np.where(ca["over_capacity"], "over_capacity;", ""), dtype=object)
        + np.where(ca["at_risk"] & ~ca["over_capacity"], "at_risk;", "")
        + np.where(low, "low_on_time;", "")
    ).str.rstrip(";")
    return pd.DataFrame(
        {
            "day": ca["day"],
            "section": "carrier",
            "item": ca["carrier"],
            "unit": "parcels",
            "forecast": ca["parcels"],
            "lower": ca["parcels_lower"],
            "upper": ca["parcels_upper"],
            "needed": ca["parcels"],
            "needed_upper": ca["parcels_upper"],
            "available": ca["capacity"],
            "gap": ca["parcels"] - ca["capacity"],
            "utilisation": ca["utilisation"],
            "flag": flags.to_numpy(),
        }
    )
