"""The week's KPI table: every KPI x segment, this week against last, target and anomaly.

``kpi_table(data, lang)`` is the one computation behind the headline, the section
tables, "What changed" and ``kpis.csv``: the weekly series of
:func:`meetinglib.analysis.kpis.weekly_kpis` over the history weeks and the report week,
judged by the control-chart rules of :mod:`meetinglib.analysis.anomalies`. No
presentation here: ``meeting kpis --week W`` writes ``kpis.csv`` from it without a
notebook.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pandas as pd

from meetinglib.analysis import anomalies, kpis
from meetinglib.core.csvsafe import to_csv as write_csv
from meetinglib.core.fmt import fmt_value
from meetinglib.core.i18n import CodeLabel, code_name, t
from meetinglib.core.weeks import IsoWeek, Window
from meetinglib.data import engine
from meetinglib.data.dataset import WeekData

# A week's rate, mean or quantile is judged by the anomaly rules only when this many
# observations stand behind it; fewer make week-to-week noise look like a change. A P90
# needs ten observations above it.
MIN_OBSERVATIONS = 30
MIN_OBSERVATIONS_P90 = 100
# A change worth fewer orders (tickets, cases) than this is not worth meeting time,
# however unusual: it keeps rare events (0 -> 3 lost parcels) off "What changed". Times,
# amounts and scores must move by at least this share of their usual level.
MIN_EVENTS = 10
MIN_RELATIVE_CHANGE = {"hours": 0.10, "days": 0.10, "currency": 0.05, "score": 0.03}
KPI_TABLE_COLUMNS = (
    "week",
    "kpi",
    "label",
    "dimension",
    "segment",
    "order_type",
    "this_week",
    "last_week",
    "change",
    "unit",
    "higher_is_better",
    "target",
    "at_risk",
    "status",
    "anomaly",
    "anomaly_direction",
    "anomaly_severity",
    "anomaly_sigmas",
    "anomaly_adverse",
    "event",
    "n_this_week",
    "note",
)
KPIS_FILE = "kpis.csv"

Key = tuple[str, str, str, str]  # kpi, dimension, segment, order_type


def segment_label(
    dimension: str, segment: str, order_type: str, lang: str, label: CodeLabel | None = None
) -> str:
    """A segment for people: "Special orders", "warehouse WH-South", "EastPost → South".

    ``label`` names the codes (e.g. ``Params.label``: params ``labels``); without it, or
    for a code it does not name, the code is shown as it is.
    """
    if order_type != kpis.ALL:
        return t("segment.order_type", lang, value=t(f"order_type.{order_type}", lang))
    if dimension == kpis.ALL:
        return t("order_type.all", lang)
    if dimension == "carrier/region":
        carrier, region = segment.split("/", 1)
        return t(
            "segment.carrier_region",
            lang,
            carrier=code_name(label, "carrier", carrier, lang),
            region=code_name(label, "region", region, lang),
        )
    return t(f"segment.{dimension}", lang, value=code_name(label, dimension, segment, lang))


# The first order of each week's data (by identity, forgotten with it): the series, the
# root search and the sections each ask, and each asking scanned every order.
_FIRST_ORDER: dict[int, pd.Timestamp | None] = {}


def first_order(data: WeekData) -> pd.Timestamp | None:
    """When the first order loaded was created, in the platform timezone (None: no order);
    an aggregate of the engine, computed once per week's data."""
    key = id(data)
    if key not in _FIRST_ORDER:
        _FIRST_ORDER[key] = _first_order(data)
        weakref.finalize(data, _FIRST_ORDER.pop, key, None)
    return _FIRST_ORDER[key]


def _first_order(data: WeekData) -> pd.Timestamp | None:
    orders = data.engine_tables()["orders"]
    first = engine.shared(data.params.engine).execute(orders.created_at.min())
    if first is None or pd.isna(first):
        return None
    first = pd.Timestamp(first)
    # Spark hands instants back as UTC wall time (its session runs in UTC).
    first = first.tz_localize("UTC") if first.tzinfo is None else first
    return first.tz_convert(data.tz)


def complete_history_start(data: WeekData) -> pd.Timestamp:
    """Start of the first history week whose deliveries are not cut off by the data.

    Deliveries in the first week of an extract only come from orders created in it, the
    quick ones; a baseline including that week understates lateness. Weeks starting less
    than a week after the first order are skipped.
    """
    first_order_at = first_order(data)
    start = data.history_weeks[0].start(data.tz)
    if first_order_at is None:
        return start
    ready = IsoWeek.containing(first_order_at + pd.Timedelta(days=7)).next().start(data.tz)
    return min(max(start, ready), data.window.start)


def created_from(data: WeekData) -> pd.Timestamp:
    """Start of the first week the orders cover from its first day on.

    A week whose first order comes after its Monday is only partly in the extract; its
    order counts would read as a drop.
    """
    first_order_at = first_order(data)
    start = data.history_weeks[0].start(data.tz)
    if first_order_at is None:
        return start
    covered = IsoWeek.containing(first_order_at - pd.Timedelta(days=1)).next()
    return min(max(start, covered.start(data.tz)), data.window.start)


NOT_AVAILABLE = "not_available"


def not_available(data: WeekData) -> dict[str, list[str]]:
    """KPIs the source cannot support, with what it lacks (tables, then columns)."""
    out = {}
    for key in kpis.CATALOGUE:
        missing = kpis.missing_columns(key, lambda table: table in data.tables, data.has_column)
        if missing:
            out[key] = missing
    return out


def not_available_text(missing: Sequence[str], lang: str) -> str:
    """ "not available — the source has no amount" (alternatives joined by "or")."""
    what = ", ".join(m.replace("|", f" {t('word.or', lang)} ") for m in missing)
    return t("kpi.not_available", lang, missing=what)


def _not_available_row(
    data: WeekData, kpi: str, missing: list[str], lang: str
) -> dict[str, object]:
    spec = kpis.CATALOGUE[kpi]
    return {
        "week": str(data.week),
        "kpi": kpi,
        "label": t(f"kpi.{kpi}", lang),
        "dimension": kpis.ALL,
        "segment": kpis.ALL,
        "order_type": kpis.ALL,
        "this_week": np.nan,
        "last_week": np.nan,
        "change": np.nan,
        "unit": spec.unit,
        "higher_is_better": spec.higher_is_better,
        "target": np.nan,
        "at_risk": np.nan,
        "status": NOT_AVAILABLE,
        "anomaly": "",
        "anomaly_direction": "",
        "anomaly_severity": "",
        "anomaly_sigmas": np.nan,
        "anomaly_adverse": False,
        "event": spec.event,
        "n_this_week": np.nan,
        "note": not_available_text(missing, lang),
    }


def week_windows(data: WeekData) -> list[Window]:
    """The history weeks and the report week, oldest first."""
    return [w.window(data.tz) for w in data.history_weeks]


def weekly_series(
    data: WeekData, exclude: set[str] | None = None, store: dict[Any, pd.DataFrame] | None = None
) -> pd.DataFrame:
    """Every KPI per week and segment (long; see ``kpis.weekly_kpis``), but ``exclude``.

    Backlogs count, at each week's end, open orders created up to
    ``open_order_lookback_days`` before that week (each week its own lookback).
    ``store`` keeps the engine's sums for the root search (``kpis.weekly_kpis_on``).
    """
    keys = [k for k in kpis.CATALOGUE if k not in (exclude or set())]
    return kpis.weekly_kpis_on(
        engine.shared(data.params.engine),
        kpis.kpi_tables(data.engine_tables()),
        week_windows(data),
        data.params.sla.ship_hours,
        keys,
        created_from=created_from(data),
        complete_from=complete_history_start(data),
        lookback_days=data.params.open_order_lookback_days,
        store=store,
    )


def wide(
    series: pd.DataFrame, week_labels: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(values, observations, standard errors): a row per KPI x segment, a column per week."""
    keys = ["kpi", "dimension", "segment", "order_type"]
    order = pd.MultiIndex.from_frame(series[keys].drop_duplicates())
    frame = series.set_index([*keys, "week"])
    values, counts, errors = (
        frame[column].unstack("week").reindex(index=order, columns=list(week_labels))
        for column in ("value", "n", "se")
    )
    return values, counts, errors


def judged_values(spec: kpis.KpiDef, values: pd.Series, counts: pd.Series) -> pd.Series:
    """The weekly values the anomaly rules may judge: enough observations behind each."""
    if spec.kind in ("count", "sum", "level"):
        return values
    needed = MIN_OBSERVATIONS_P90 if spec.kind == "p90" else MIN_OBSERVATIONS
    return values.where(counts >= needed)


def sigma_floor(
    spec: kpis.KpiDef, judged: pd.Series, counts: pd.Series, errors: pd.Series
) -> float:
    """The sampling noise a week like this one had in the history: the median standard
    error of the history weeks, rescaled to this week's number of observations."""
    history = judged.iloc[:-1].notna().to_numpy()
    se = errors.iloc[:-1].to_numpy()[history]
    if not len(se):
        return 0.0
    if spec.kind not in ("count", "sum", "level"):
        now = float(counts.iloc[-1])
        se = se * np.sqrt(counts.iloc[:-1].to_numpy()[history] / now) if now > 0 else se
    floor = float(np.nanmedian(se)) if np.isfinite(se).any() else 0.0
    return floor if math.isfinite(floor) else 0.0


def is_material(spec: kpis.KpiDef, flag: anomalies.Flag, n: float) -> bool:
    """Whether the change is worth meeting time: at least MIN_EVENTS orders, tickets or
    cases for counted KPIs, MIN_RELATIVE_CHANGE of the usual level for the others."""
    delta = abs(flag.value - flag.center)
    if spec.unit == "orders":
        return delta >= MIN_EVENTS
    if spec.unit in ("share", "per_1000"):
        return delta * n / spec.scale >= MIN_EVENTS
    return delta >= MIN_RELATIVE_CHANGE.get(spec.unit, 0.0) * abs(flag.center)


def flag_sentence(
    key: Key, flag: anomalies.Flag, lang: str, currency: str, label: CodeLabel | None = None
) -> str:
    """The finding as a sentence, e.g. "EastPost → South: On-time delivery rate fell..."."""
    kpi, dimension, segment, order_type = key
    subject = t(f"kpi.{kpi}", lang)
    if dimension != kpis.ALL or order_type != kpis.ALL:
        part = segment_label(dimension, segment, order_type, lang, label)
        subject = t("anomaly.subject", lang, kpi=subject, segment=part)
    unit = kpis.CATALOGUE[kpi].unit
    return anomalies.describe(flag, subject, lambda v: fmt_value(v, unit, currency), lang)


@dataclass(frozen=True)
class KpiTable:
    """The week's KPI table and what it was computed from."""

    week: IsoWeek
    week_labels: list[str]
    values: pd.DataFrame
    counts: pd.DataFrame
    errors: pd.DataFrame
    table: pd.DataFrame
    flags: dict[Key, anomalies.Flag] = field(repr=False)
    # The engine's sums behind the series: the root search sets segments aside from them.
    engine_sums: dict[Any, pd.DataFrame] = field(default_factory=dict, repr=False, compare=False)

    @property
    def changes(self) -> pd.DataFrame:
        """The week's changes for the worse, most severe first (rows of ``table``)."""
        return adverse_changes(self.table, self.flags)

    def weekly(
        self,
        kpi: str,
        dimension: str = kpis.ALL,
        segment: str = kpis.ALL,
        order_type: str = kpis.ALL,
    ) -> pd.Series:
        """One KPI's weekly values in one segment, oldest week first (NaN when absent)."""
        key = (kpi, dimension, segment, order_type)
        if key not in self.values.index:
            return pd.Series(np.nan, index=self.week_labels)
        return self.values.loc[key]

    def row(
        self,
        kpi: str,
        dimension: str = kpis.ALL,
        segment: str = kpis.ALL,
        order_type: str = kpis.ALL,
    ) -> pd.Series | None:
        """One KPI's row of ``table`` in one segment; None when the week has none."""
        table = self.table
        hit = table[
            (table["kpi"] == kpi)
            & (table["dimension"] == dimension)
            & (table["segment"] == segment)
            & (table["order_type"] == order_type)
        ]
        return hit.iloc[0] if len(hit) else None


def kpi_table(data: WeekData, lang: str | None = None) -> KpiTable:
    """Every KPI x segment of the week: this week, last week, target, status, anomaly flag.

    The rows of ``kpis.csv``; units as in ``kpis.CATALOGUE`` (shares 0-1, hours...).
    ``segment`` holds the codes; the sentence (``note``) names them as params ``labels``
    do in ``lang``.
    """
    lang = lang or data.params.language
    label = data.params.label
    where = ", ".join(str(f) for f in data.params.files) or "the params"
    targets = kpis.resolve_targets(data.params.targets, where)
    labels = [kpis.week_label(w) for w in week_windows(data)]
    unavailable = not_available(data)
    store: dict[Any, pd.DataFrame] = {}
    series = weekly_series(data, exclude=set(unavailable), store=store)
    values, counts, errors = wide(series, labels)
    rows, flags = [], {}
    for key in values.index:
        kpi, dimension, segment, order_type = key
        spec = kpis.CATALOGUE[kpi]
        series, n = values.loc[key], counts.loc[key]
        judged = judged_values(spec, series, n)
        floor = sigma_floor(spec, judged, n, errors.loc[key])
        found = anomalies.check(judged, sigma_floor=floor)
        flag = next((f for f in found if is_material(spec, f, float(n.iloc[-1]))), None)
        if flag is not None:
            flags[key] = flag
        this, last = float(series.iloc[-1]), float(series.iloc[-2])
        overall = dimension == kpis.ALL and order_type == kpis.ALL
        target = targets.get(kpi) if overall else None
        status = kpis.target_status(this, target, spec.higher_is_better)
        rows.append(
            {
                "week": str(data.week),
                "kpi": kpi,
                "label": t(f"kpi.{kpi}", lang),
                "dimension": dimension,
                "segment": segment,
                "order_type": order_type,
                "this_week": this,
                "last_week": last,
                "change": this - last,
                "unit": spec.unit,
                "higher_is_better": spec.higher_is_better,
                "target": target.target if target else np.nan,
                "at_risk": target.at_risk if target and target.at_risk is not None else np.nan,
                "status": status or "",
                "anomaly": flag.rule if flag else "",
                "anomaly_direction": ("up" if flag.direction > 0 else "down") if flag else "",
                "anomaly_severity": flag.severity if flag else "",
                "anomaly_sigmas": flag.score if flag else np.nan,
                "anomaly_adverse": bool(flag and anomalies.is_adverse(flag, spec.higher_is_better)),
                "event": spec.event,
                "n_this_week": float(n.iloc[-1]),
                "note": (
                    flag_sentence(key, flag, lang, data.params.currency, label) if flag else ""
                ),
            }
        )
    for kpi, missing in unavailable.items():
        # a table the source lacks too ("the source has no tickets"): the headline and
        # kpis.csv say so, where the KPI would otherwise just be missing
        rows.append(_not_available_row(data, kpi, missing, lang))
    table = pd.DataFrame(rows, columns=list(KPI_TABLE_COLUMNS))
    return KpiTable(data.week, labels, values, counts, errors, table, flags, store)


def adverse_changes(table: pd.DataFrame, flags: dict[Key, anomalies.Flag]) -> pd.DataFrame:
    """The changes for the worse, most severe first (rows of ``table``)."""
    adverse = table[table["anomaly_adverse"]].copy()
    keys = list(
        zip(
            adverse["kpi"],
            adverse["dimension"],
            adverse["segment"],
            adverse["order_type"],
            strict=True,
        )
    )
    ranks = [flags[k].rank for k in keys]
    adverse["_severity"] = [r[0] for r in ranks]
    adverse["_score"] = [r[1] for r in ranks]
    adverse = adverse.sort_values(["_severity", "_score"], kind="stable")
    return adverse.drop(columns=["_severity", "_score"]).reset_index(drop=True)


def write_kpis_csv(table: pd.DataFrame, folder: str | Path) -> Path:
    """Write ``kpis.csv`` (one row per KPI x segment) into ``folder``; returns its path."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    path = out / KPIS_FILE
    # 15 significant digits: a sum's binary noise (154189.77000000002) is not a figure
    write_csv(table, path, float_format="%.15g")
    return path


# --- root findings of "What changed" ---------------------------------------------------------
#
# One slowdown moves several KPIs (handling, then the backlog, then on-time shipping) and
# shows in every segment holding its orders (each warehouse, when one order type is
# slow). A flagged segment whose flags all vanish once the orders of another flagged
# segment are set aside is "driven by" that one; the segments driving others are the
# root findings, one row each with the KPIs they moved, distinct roots first.

# Cause before effect: the order the KPIs of one root are listed in.
CAUSAL_ORDER = (
    "handling_median_h",
    "handling_p90_h",
    "stockout_orders",
    "fill_rate",
    "backlog",
    "overdue_backlog",
    "on_time_ship_rate",
    "orders_shipped",
    "cancellation_rate",
    "abnormal_rate",
    "lost_damaged_rate",
    "transit_median_h",
    "transit_p90_h",
    "on_time_delivery_rate",
    "cycle_time_p90_h",
    "perfect_order_rate",
)
ROOT_COLUMNS = (
    "finding",
    "dimension",
    "segment",
    "order_type",
    "segment_label",
    "kpis",
    "severity",
    "note",
    "driven",
    "driven_flags",
)
Segment = tuple[str, str, str]  # dimension, segment, order_type
# A flag counts as explained by another segment only when, without that segment's
# orders, at least this share of its week's observations is left: a carrier-region cell
# served mostly by one warehouse loses its flag with that warehouse's orders whether or
# not the warehouse is the cause.
MIN_KEPT_SHARE = 0.5
OVERALL: Segment = (kpis.ALL, kpis.ALL, kpis.ALL)


def adverse_flag(
    spec: kpis.KpiDef, values: pd.Series, counts: pd.Series, errors: pd.Series
) -> anomalies.Flag | None:
    """The material change for the worse on the last week of one series, or None.

    The same judgement as ``kpi_table``: enough observations, the sampling-noise floor,
    the control-chart rules, materiality, the KPI's direction.
    """
    judged = judged_values(spec, values, counts)
    floor = sigma_floor(spec, judged, counts, errors)
    found = anomalies.check(judged, sigma_floor=floor)
    flag = next((f for f in found if is_material(spec, f, float(counts.iloc[-1]))), None)
    if flag is None or not anomalies.is_adverse(flag, spec.higher_is_better):
        return None
    return flag


def segment_counts(data: WeekData) -> pd.DataFrame:
    """The orders loaded per combination of segment values: the segment columns (empty
    values as missing) and ``orders``; an aggregate of the engine, a few hundred rows."""
    orders = data.engine_tables()["orders"]
    values = {
        c: orders[c].cast("string") if c in orders.columns else ibis.null("string")
        for c in kpis.SEGMENT_COLUMNS
    }
    counts = orders.select(**values).group_by(list(values)).aggregate(orders=ibis._.count())
    frame = engine.shared(data.params.engine).execute(counts)
    frame["orders"] = frame["orders"].astype("int64")
    return frame


def segment_orders(orders: pd.DataFrame, segment: Segment) -> np.ndarray:
    """Which orders (rows of ``orders``: orders, or their counts per combination of
    segment values) belong to a segment of the KPI table (all for the overall)."""
    dimension, value, order_type = segment
    mask = np.ones(len(orders), dtype=bool)
    # Compared as they are (categories or text): a cast to str of millions of rows took
    # seconds per segment.
    if order_type != kpis.ALL:
        mask &= (orders["order_type"] == order_type).to_numpy(dtype=bool, na_value=False)
    if dimension != kpis.ALL:
        for column, part in zip(dimension.split("/"), value.split("/", 1), strict=False):
            if part == kpis.MISSING:
                mask &= orders[column].isna().to_numpy(dtype=bool)
            else:
                mask &= (orders[column] == part).to_numpy(dtype=bool, na_value=False)
    return mask


def segment_values(segment: Segment) -> dict[str, str]:
    """A segment of the KPI table as its segment columns' values (MISSING: empty)."""
    dimension, value, order_type = segment
    values = {} if order_type == kpis.ALL else {"order_type": order_type}
    if dimension != kpis.ALL:
        values.update(zip(dimension.split("/"), value.split("/", 1), strict=False))
    return values


def _kpi_rank(kpi: str) -> int:
    return CAUSAL_ORDER.index(kpi) if kpi in CAUSAL_ORDER else len(CAUSAL_ORDER)


def _contains(outer: Segment, inner: Segment) -> bool:
    """Whether every order of ``inner`` is in ``outer`` (by their definitions)."""
    if outer == OVERALL:
        return True
    if outer[2] != kpis.ALL:
        return inner[2] == outer[2]
    if inner[0] == kpis.ALL or outer[0] == kpis.ALL:
        return False
    parts = dict(zip(inner[0].split("/"), inner[1].split("/", 1), strict=False))
    need = dict(zip(outer[0].split("/"), outer[1].split("/", 1), strict=False))
    return all(parts.get(k) == v for k, v in need.items())


Flagged = tuple[str, str, str, str]  # kpi, dimension, segment, order_type


def _cells_of(flags: Sequence[Flagged]) -> dict[str, set[tuple[str, str]]]:
    """The (segmentation, segment) of each flag, per KPI, as ``weekly_kpis`` names them."""
    cells: dict[str, set[tuple[str, str]]] = {}
    for kpi, dimension, segment, order_type in flags:
        cell = ("order_type", order_type) if order_type != kpis.ALL else (dimension, segment)
        cells.setdefault(kpi, set()).add(cell)
    return cells


def root_changes(data: WeekData, result: KpiTable, lang: str | None = None) -> pd.DataFrame:
    """The week's changes for the worse as root findings, distinct roots first.

    A flag (a KPI in a segment) is explained by another flagged segment when it is no
    longer flagged once that segment's orders are set aside (recomputed over all weeks)
    while at least MIN_KEPT_SHARE of its orders remain, and the other
    segment does not contain it.
    Segments explaining the most flags become roots first; a flag explained by several
    roots goes to the one that flags the same KPI itself, else to one inside its segment,
    else the first. A segment with a flag no root explains is a root too.

    One row per root: ``finding`` (C1, C2...), its segment (``segment_label``: in words,
    in ``lang``, codes named as params ``labels`` do), ``kpis`` (the KPIs it moved,
    cause before effect, as a tuple), ``severity`` and ``note`` of its most severe flag,
    ``driven`` (the other segments with flags it explains, as (dimension, segment,
    order_type) tuples). Ordered by severity, then by the number of flags explained.
    """
    lang = lang or data.params.language
    changes = result.changes
    if changes.empty:
        return pd.DataFrame(columns=list(ROOT_COLUMNS))
    flags: list[Flagged] = [
        (r.kpi, r.dimension, r.segment, r.order_type) for r in changes.itertuples(index=False)
    ]
    by_segment: dict[Segment, list[str]] = {}
    for kpi, dimension, segment, order_type in flags:
        by_segment.setdefault((dimension, segment, order_type), []).append(kpi)
    # Orders counted per combination of segment values: which orders two segments share
    # is a weighted sum over these few rows, not a mask over every order.
    combos = segment_counts(data)
    weight = combos["orders"].to_numpy(dtype="int64")
    explains: dict[Segment, set[Flagged]] = {}
    members: dict[Segment, np.ndarray] = {}

    def orders_of(segment: Segment) -> np.ndarray:
        if segment not in members:
            members[segment] = segment_orders(combos, segment)
        return members[segment]

    # The flags each cause could explain, known before any series is computed.
    candidates: dict[Segment, list[Flagged]] = {}
    for cause in (s for s in by_segment if s != OVERALL):
        drop = orders_of(cause)
        candidates[cause] = []
        if not weight[drop].any() or not weight[~drop].any():
            continue
        for flag in flags:
            inner = (flag[1], flag[2], flag[3])
            if inner == cause or _contains(cause, inner):
                continue  # setting a segment aside removes what lies inside it: no evidence
            mine = orders_of(inner)
            if not weight[mine & drop].any():
                continue  # no order in common: its series stays exactly as it is
            if weight[mine & ~drop].sum() < MIN_KEPT_SHARE * weight[mine].sum():
                continue  # the two share most orders: which one drives cannot be told this way
            candidates[cause].append(flag)
    causes = [cause for cause, able in candidates.items() if able]
    explains.update({cause: set() for cause, able in candidates.items() if not able})
    # Only what a cause could explain is computed without it: the KPIs, segmentations and
    # segments of its candidate flags (a quantile without a segment costs a scan's worth).
    cells = [_cells_of(candidates[cause]) for cause in causes]
    keys = sorted({kpi for cell in cells for kpi in cell})
    flagged_dims = {
        kpi: sorted({dim for cell in cells for dim, _ in cell.get(kpi, ())}) for kpi in keys
    }
    # Each cell's share of the orders, from the counts at hand: a quantile query over a few
    # cells holds their rows only, and is sized so (one query where a query over every
    # row would need several: at 1M orders a week 5 queries became 2).
    total = weight.sum()
    shares = {
        (dim, seg): float(weight[orders_of((dim, seg, kpis.ALL))].sum() / total)
        for cell in cells
        for found in cell.values()
        for dim, seg in found
        if dim != kpis.ALL and total
    }
    recomputed = kpis.weekly_kpis_without_on(
        engine.shared(data.params.engine),
        kpis.kpi_tables(data.engine_tables()),
        week_windows(data),
        data.params.sla.ship_hours,
        keys,
        [segment_values(cause) for cause in causes],
        created_from=created_from(data),
        complete_from=complete_history_start(data),
        dims=flagged_dims,
        cells=cells,
        store=result.engine_sums,
        # the series' own lookback: its sums are then those of the KPI table
        lookback_days=data.params.open_order_lookback_days,
        shares=shares,
    )
    for cause, series in zip(causes, recomputed, strict=True):
        values, counts, errors = wide(series, result.week_labels)
        explained = set()
        for flag in candidates[cause]:
            if flag not in values.index:
                continue
            spec = kpis.CATALOGUE[flag[0]]
            if adverse_flag(spec, values.loc[flag], counts.loc[flag], errors.loc[flag]) is None:
                explained.add(flag)
        explains[cause] = explained

    def severity(segment: Segment) -> tuple[int, float]:
        return min(result.flags[(k, *segment)].rank for k in by_segment[segment])

    owner: dict[Flagged, Segment] = {}
    roots: list[Segment] = []
    covered: set[Flagged] = set()
    for cause in sorted(explains, key=lambda s: (-len(explains[s]), severity(s))):
        if all((k, *cause) in covered for k in by_segment[cause]):
            continue  # every flag of it is explained by a root before it
        roots.append(cause)
        covered |= explains[cause]
    for flag in flags:
        seg = (flag[1], flag[2], flag[3])
        if seg in roots:
            continue
        able = [r for r in roots if flag in explains[r]]
        if not able:
            continue
        same_kpi = [r for r in able if flag[0] in by_segment[r]]
        inside = [r for r in able if _contains(seg, r)]
        owner[flag] = (same_kpi or inside or able)[0]
    for seg in by_segment:
        if seg not in roots and any((k, *seg) not in owner for k in by_segment[seg]):
            roots.append(seg)  # some of its flags are its own
    roots.sort(key=lambda s: (severity(s), -len(explains.get(s, ()))))
    rows = []
    for i, root in enumerate(roots, start=1):
        kpis_moved = [k for k in by_segment[root] if (k, *root) not in owner]
        moved = sorted(kpis_moved, key=lambda k: (_kpi_rank(k), k))
        lead = min(kpis_moved, key=lambda k: result.flags[(k, *root)].rank)
        lead_row = result.row(lead, *root)
        driven = []
        for flag, r in owner.items():
            if r == root and (flag[1], flag[2], flag[3]) not in driven:
                driven.append((flag[1], flag[2], flag[3]))
        rows.append(
            {
                "finding": f"C{i}",
                "dimension": root[0],
                "segment": root[1],
                "order_type": root[2],
                "segment_label": segment_label(*root, lang, data.params.label),
                "kpis": tuple(moved),
                "severity": result.flags[(lead, *root)].severity,
                "note": "" if lead_row is None else str(lead_row["note"]),
                "driven": tuple(driven),
                "driven_flags": tuple(f for f, r in owner.items() if r == root),
            }
        )
    return pd.DataFrame(rows, columns=list(ROOT_COLUMNS))


def with_roots(table: pd.DataFrame, roots: pd.DataFrame, lang: str = "en") -> pd.DataFrame:
    """``table`` plus ``finding`` (the root finding id of each adverse flag) and ``driven_by``
    (for a flag explained by another segment's orders: that root's segment in words, as
    ``root_changes`` wrote it in ``segment_label``)."""
    out = table.copy()
    finding = [""] * len(out)
    driven_by = [""] * len(out)
    position = {
        (r.kpi, r.dimension, r.segment, r.order_type): i
        for i, r in enumerate(out.itertuples(index=False))
    }
    for root in roots.itertuples(index=False):
        own = (root.dimension, root.segment, root.order_type)
        words = str(root.segment_label) if "segment_label" in roots else segment_label(*own, lang)
        for kpi in root.kpis:
            if (kpi, *own) in position:
                finding[position[(kpi, *own)]] = root.finding
        for flag in root.driven_flags:
            if flag in position:
                finding[position[flag]] = root.finding
                driven_by[position[flag]] = words
    out["finding"] = pd.Series(finding, index=out.index, dtype="str")
    out["driven_by"] = pd.Series(driven_by, index=out.index, dtype="str")
    return out
