"""Control-chart rules over a KPI's weekly series, and the sentences that report them.

A series is a float Series indexed by week label, oldest first. Its last point is the
week under review; the points before it are its history. NaN points (weeks the data does
not cover, or with too few observations to judge) are dropped before any rule runs, so
the rules see the weeks that have a value.

Robust baseline: center = median of the history (the week under review excluded), sigma
= 1.4826 x MAD (median absolute deviation; the factor makes it a normal standard
deviation), floored by ``sigma_floor``: the caller's estimate of the week's sampling noise
(a few points can have a MAD near zero by chance). One unusual week in the history, a
promotion, moves neither.

The rules, after the Western Electric / Nelson rules, with their parameters:

* ``beyond_limits``: the point lies more than ``LIMIT`` (3) sigma from the center, sigma
  widened by sqrt(1 + pi / 2k) for the uncertainty of a median of k points; needs
  ``MIN_HISTORY`` (5) history points. Severity "high" from ``HIGH_SIGMAS`` (6) sigma,
  else "medium".
* ``run``: the last ``RUN_LENGTH`` (8) points all lie on one side of the center of the
  points before them (at least ``MIN_REFERENCE`` (5) such points), and the run's median
  is at least ``RUN_MIN_SHIFT`` (1) sigma away: a sustained shift. Severity "medium".
* ``trend``: the last ``TREND_LENGTH`` (6) points each higher (or each lower) than the
  one before, changing by at least ``TREND_MIN_CHANGE`` (2) sigma in total, and the last
  point at least ``TREND_MIN_DEPARTURE`` (1) sigma past the center in that direction (a
  return to normal after a spike, such as a promotion, is not a trend); needs
  ``MIN_HISTORY`` history points for sigma. Severity "low".

Every rule returns a ``Flag`` (rule name, direction, severity, the numbers behind it) or
None: no flag, or too little history to tell. The rules only judge the last point: they
answer "what changed this week".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from meetinglib.core.i18n import t

MAD_TO_SIGMA = 1.4826
LIMIT = 3.0
HIGH_SIGMAS = 6.0
MIN_HISTORY = 5
RUN_LENGTH = 8
MIN_REFERENCE = 5
RUN_MIN_SHIFT = 1.0
TREND_LENGTH = 6
TREND_MIN_CHANGE = 2.0
TREND_MIN_DEPARTURE = 1.0
SEVERITIES = ("high", "medium", "low")
RULES = ("beyond_limits", "run", "trend")


@dataclass(frozen=True)
class Baseline:
    """Robust center and spread of a history."""

    center: float
    sigma: float
    low: float
    high: float
    points: int


@dataclass(frozen=True)
class Flag:
    """One rule firing on the last point of a series.

    ``score`` is the size of the signal in sigmas (beyond_limits: |z|; run: shift of the
    run's median; trend: total change) and orders flags of the same severity. ``points``:
    history points (beyond_limits), run or trend length. ``start``: first point of a run or
    trend (NaN for beyond_limits). ``low``/``high``: range of the history.
    """

    rule: str
    direction: int
    severity: str
    score: float
    value: float
    center: float
    sigma: float
    low: float
    high: float
    points: int
    start: float = float("nan")

    @property
    def rank(self) -> tuple[int, float]:
        """Sort key, most severe first: severity, then score descending."""
        return SEVERITIES.index(self.severity), -self.score


def _points(series: pd.Series) -> np.ndarray:
    values = np.asarray(pd.Series(series, dtype="float64"), dtype="float64")
    finite: np.ndarray = values[np.isfinite(values)]
    return finite


def _current(series: pd.Series) -> float:
    """The week under review; NaN when it has no value (then no rule fires)."""
    values = np.asarray(pd.Series(series, dtype="float64"), dtype="float64")
    return float(values[-1]) if len(values) else float("nan")


def robust_baseline(history: pd.Series | np.ndarray, sigma_floor: float = 0.0) -> Baseline | None:
    """Median and MAD-based sigma (at least ``sigma_floor``) of the finite points; None if none."""
    values = _points(pd.Series(history, dtype="float64"))
    if not len(values):
        return None
    center = float(np.median(values))
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(values - center)))
    return Baseline(
        center, max(sigma, sigma_floor), float(values.min()), float(values.max()), len(values)
    )


def _sigmas(delta: float, sigma: float) -> float:
    if delta == 0:
        return 0.0
    return math.copysign(math.inf, delta) if sigma <= 0 else delta / sigma


def beyond_limits(
    series: pd.Series,
    *,
    limit: float = LIMIT,
    min_history: int = MIN_HISTORY,
    sigma_floor: float = 0.0,
) -> Flag | None:
    """The last point more than ``limit`` robust sigmas from the history's median."""
    value = _current(series)
    history = _points(series)[:-1] if math.isfinite(value) else np.empty(0)
    if len(history) < min_history:
        return None
    base = robust_baseline(history, sigma_floor)
    if base is None:  # no finite point: nothing to judge against
        return None
    # The median of k points is itself uncertain (variance about pi/2 sigma^2 / k): the
    # difference to it spreads that much wider, which matters for short histories.
    spread = base.sigma * math.sqrt(1 + math.pi / (2 * base.points))
    z = _sigmas(value - base.center, spread)
    if abs(z) <= limit:
        return None
    return Flag(
        rule="beyond_limits",
        direction=1 if z > 0 else -1,
        severity="high" if abs(z) >= HIGH_SIGMAS else "medium",
        score=abs(z),
        value=value,
        center=base.center,
        sigma=spread,
        low=base.low,
        high=base.high,
        points=base.points,
    )


def run_on_one_side(
    series: pd.Series,
    *,
    length: int = RUN_LENGTH,
    min_reference: int = MIN_REFERENCE,
    min_shift: float = RUN_MIN_SHIFT,
    sigma_floor: float = 0.0,
) -> Flag | None:
    """The last ``length`` points on one side of the center of the points before them.

    The reference is the history before the run (a run cannot be judged against a median
    it makes up itself); its median must be at least ``min_shift`` sigma from the run's.
    """
    if not math.isfinite(_current(series)):
        return None
    values = _points(series)
    if len(values) < length + min_reference:
        return None
    run, reference = values[-length:], values[:-length]
    base = robust_baseline(reference, sigma_floor)
    if base is None:  # no finite point: nothing to judge against
        return None
    above, below = (run > base.center).all(), (run < base.center).all()
    shift = _sigmas(float(np.median(run)) - base.center, base.sigma)
    if not (above or below) or abs(shift) < min_shift:
        return None
    return Flag(
        rule="run",
        direction=1 if above else -1,
        severity="medium",
        score=abs(shift),
        value=float(run[-1]),
        center=base.center,
        sigma=base.sigma,
        low=base.low,
        high=base.high,
        points=length,
        start=float(run[0]),
    )


def trend(
    series: pd.Series,
    *,
    length: int = TREND_LENGTH,
    min_history: int = MIN_HISTORY,
    min_change: float = TREND_MIN_CHANGE,
    min_departure: float = TREND_MIN_DEPARTURE,
    sigma_floor: float = 0.0,
) -> Flag | None:
    """The last ``length`` points each higher (or each lower) than the one before, ending
    at least ``min_departure`` sigma past the history's center in that direction."""
    if not math.isfinite(_current(series)):
        return None
    values = _points(series)
    if len(values) < max(length, min_history + 1):
        return None
    steps = np.diff(values[-length:])
    rising, falling = (steps > 0).all(), (steps < 0).all()
    base = robust_baseline(values[:-1], sigma_floor)
    if base is None:  # no finite point: nothing to judge against
        return None
    change = _sigmas(float(values[-1] - values[-length]), base.sigma)
    departure = _sigmas(float(values[-1]) - base.center, base.sigma)
    if not (rising or falling) or abs(change) < min_change:
        return None
    if departure * (1 if rising else -1) < min_departure:
        return None
    return Flag(
        rule="trend",
        direction=1 if rising else -1,
        severity="low",
        score=abs(change),
        value=float(values[-1]),
        center=base.center,
        sigma=base.sigma,
        low=base.low,
        high=base.high,
        points=length,
        start=float(values[-length]),
    )


def check(series: pd.Series, *, sigma_floor: float = 0.0) -> list[Flag]:
    """Every rule with its default parameters on one series; most severe first."""
    flags = [
        beyond_limits(series, sigma_floor=sigma_floor),
        run_on_one_side(series, sigma_floor=sigma_floor),
        trend(series, sigma_floor=sigma_floor),
    ]
    return sorted((f for f in flags if f is not None), key=lambda f: f.rank)


def enough_history(series: pd.Series, min_history: int = MIN_HISTORY) -> bool:
    """Whether the last point has a value and at least ``min_history`` points before it."""
    return math.isfinite(_current(series)) and len(_points(series)) - 1 >= min_history


def is_adverse(flag: Flag, higher_is_better: bool) -> bool:
    """Whether the flag is a change for the worse for a KPI of that direction."""
    return flag.direction == (-1 if higher_is_better else 1)


def describe(flag: Flag, subject: str, fmt: Callable[[float], str], lang: str = "en") -> str:
    """The flag as a plain sentence, e.g. "On-time delivery rate (EastPost → South) fell to
    34.1%, below its 9-week range (85.2% to 91.0%)." ``fmt`` formats a KPI value."""
    way = "up" if flag.direction > 0 else "down"
    fields = {
        "subject": subject,
        "value": fmt(flag.value),
        "center": fmt(flag.center),
        "low": fmt(flag.low),
        "high": fmt(flag.high),
        "start": fmt(flag.start),
        "weeks": flag.points,
        "steps": flag.points - 1,
        "sigmas": flag.score,
    }
    if flag.rule == "beyond_limits":
        outside = flag.value > flag.high or flag.value < flag.low
        key = f"anomaly.beyond.{way}.{'outside' if outside else 'inside'}"
    else:
        key = f"anomaly.{flag.rule}.{way}"
    return t(key, lang, **fields)
