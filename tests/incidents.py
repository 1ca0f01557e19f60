"""Synthetic weeks of orders with incidents of known size injected into the last week.

Six weeks of orders (a warm-up week, four baseline weeks, the report week), created
uniformly, with stage durations that depend on warehouse, order type, carrier and
region, and the export taken on the Monday after the report week at 06:00 (later
milestones are empty). Each incident multiplies one stage's duration, or sets a share
of orders cancelled or lost, for one segment in the report week only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from meetinglib.core.weeks import IsoWeek, Window

TZ = "Asia/Shanghai"
REPORT_WEEK = IsoWeek.parse("2026-W07")  # Monday 2026-02-09
WEEKS = 6  # warm-up, four baseline weeks, report week
WAREHOUSES = ("WH-A", "WH-B", "WH-C")
CARRIERS = ("C1", "C2", "C3", "C4")
REGIONS = ("R1", "R2", "R3", "R4", "R5")
CHANNELS = ("app", "web", "shop")
TYPES = ("normal", "special", "after_sales")
WAREHOUSE_PACE = np.array([1.0, 1.1, 0.9])
TYPE_PACE = np.array([1.0, 1.6, 1.2])
CARRIER_PACE = np.array([1.0, 1.1, 0.9, 1.2])
REGION_PACE = np.array([1.0, 1.2, 0.8, 1.6, 1.0])  # R4: a usual bottleneck


@dataclass(frozen=True)
class Incidents:
    """Incidents of the report week (1.0 / 0.0 / None = none)."""

    warehouse_handling: tuple[str, float] | None = None  # ("WH-B", 2.2)
    transit: tuple[str, str, float] | None = None  # ("C3", "R2", 2.5): carrier, region
    type_handling: tuple[str, float] | None = None  # ("special", 2.0)
    weekday_handling: tuple[int, float] | None = None  # (3, 2.0): orders created on Thursday
    channel_cancel: tuple[str, float] | None = None  # ("web", 0.15): share cancelled
    carrier_lost: tuple[str, float] | None = None  # ("C2", 0.05): share of parcels lost


def weeks(count: int = WEEKS) -> list[Window]:
    """The baseline weeks (all but the warm-up week) and the report week."""
    return [REPORT_WEEK.shift(-k).window(TZ) for k in range(count - 2, -1, -1)]


def orders(
    incidents: Incidents, per_week: int = 4000, seed: int = 5, count: int = WEEKS
) -> pd.DataFrame:
    """Orders of ``count`` weeks ending with the report week, canonical columns, tz-aware."""
    rng = np.random.default_rng(seed)
    n = per_week * count
    first = REPORT_WEEK.shift(-(count - 1)).start(TZ)
    report = REPORT_WEEK.window(TZ)
    export = report.end + pd.Timedelta(hours=6)
    hour = 3600.0
    created = first.value / 1e9 + rng.random(n) * count * 7 * 86400
    wh = rng.integers(0, len(WAREHOUSES), n)
    car = rng.integers(0, len(CARRIERS), n)
    reg = rng.integers(0, len(REGIONS), n)
    chan = rng.integers(0, len(CHANNELS), n)
    typ = rng.choice(len(TYPES), n, p=[0.8, 0.12, 0.08])
    paid = created + 0.3 * hour * rng.lognormal(0, 0.5, n)
    handling = 18 * hour * WAREHOUSE_PACE[wh] * TYPE_PACE[typ] * rng.lognormal(0, 0.5, n)
    in_report = (paid >= report.start.value / 1e9) & (paid < report.end.value / 1e9)
    weekday = pd.to_datetime(created, unit="s", utc=True).tz_convert(TZ).day_of_week.to_numpy()
    if incidents.warehouse_handling:
        name, factor = incidents.warehouse_handling
        handling = np.where(in_report & (wh == WAREHOUSES.index(name)), handling * factor, handling)
    if incidents.type_handling:
        name, factor = incidents.type_handling
        handling = np.where(in_report & (typ == TYPES.index(name)), handling * factor, handling)
    if incidents.weekday_handling:
        day, factor = incidents.weekday_handling
        handling = np.where(in_report & (weekday == day), handling * factor, handling)
    shipped = paid + handling
    transit = 30 * hour * CARRIER_PACE[car] * REGION_PACE[reg] * rng.lognormal(0, 0.4, n)
    shipped_in_report = (shipped >= report.start.value / 1e9) & (shipped < report.end.value / 1e9)
    if incidents.transit:
        carrier, region, factor = incidents.transit
        hit = shipped_in_report & (car == CARRIERS.index(carrier)) & (reg == REGIONS.index(region))
        transit = np.where(hit, transit * factor, transit)
    delivered = shipped + transit
    # cancellations: 2 % of orders, a few hours after creation, before shipping
    u = rng.random(n)
    cancel_share = np.full(n, 0.02)
    created_in_report = (created >= report.start.value / 1e9) & (created < report.end.value / 1e9)
    if incidents.channel_cancel:
        name, share = incidents.channel_cancel
        hit = created_in_report & (chan == CHANNELS.index(name))
        cancel_share = np.where(hit, share, cancel_share)
    cancelled_flag = u < cancel_share
    cancelled = np.where(cancelled_flag, created + 2 * hour * rng.lognormal(0, 0.5, n), np.nan)
    # lost parcels: 0.5 % of shipments are never delivered
    lost_share = np.full(n, 0.005)
    if incidents.carrier_lost:
        name, share = incidents.carrier_lost
        lost_share = np.where(shipped_in_report & (car == CARRIERS.index(name)), share, lost_share)
    lost = (rng.random(n) < lost_share) & ~cancelled_flag
    paid = np.where(cancelled_flag & (u < cancel_share / 2), np.nan, paid)
    shipped = np.where(cancelled_flag, np.nan, shipped)
    delivered = np.where(cancelled_flag | lost, np.nan, delivered)
    cutoff = export.value / 1e9
    keep = created < cutoff

    def stamp(seconds: np.ndarray) -> pd.Series:
        seconds = np.where(seconds < cutoff, seconds, np.nan)
        out = pd.to_datetime(seconds[keep], unit="s", utc=True).tz_convert(TZ)
        return pd.Series(out).dt.as_unit("us")

    promised = paid + 48 * hour
    frame = pd.DataFrame(
        {
            "order_id": pd.Series([f"SO{i:06d}" for i in np.flatnonzero(keep)], dtype="str"),
            "order_type": pd.Categorical.from_codes(typ[keep], TYPES),
            "created_at": stamp(created),
            "paid_at": stamp(paid),
            "shipped_at": stamp(shipped),
            "delivered_at": stamp(delivered),
            "cancelled_at": stamp(cancelled),
            "promised_ship_by": pd.Series(
                pd.to_datetime(promised[keep], unit="s", utc=True).tz_convert(TZ)
            ).dt.as_unit("us"),
            "channel": pd.Categorical.from_codes(chan[keep], CHANNELS),
            "warehouse": pd.Categorical.from_codes(wh[keep], WAREHOUSES),
            "carrier": pd.Categorical.from_codes(car[keep], CARRIERS),
            "region": pd.Categorical.from_codes(reg[keep], REGIONS),
            "amount": np.round(rng.lognormal(5, 0.5, int(keep.sum())), 2),
            "exception_code": pd.Series(
                np.where(lost[keep] & ~np.isnan(shipped[keep]), "lost", None), dtype="str"
            ),
        }
    )
    # a lost parcel is a known exception only once shipped before the export
    frame.loc[frame["shipped_at"].isna(), "exception_code"] = None
    return frame
