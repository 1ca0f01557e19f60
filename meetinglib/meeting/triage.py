"""Issue triage: merge near-duplicates, weigh each issue against the data, rank them.

The issues on a week's agenda are the ones raised for that week plus those still open
from earlier meetings (they come back until resolved). Within a department, two
issues are the same problem when their titles are similar or they name the same
segment; such issues are merged into one, and every submission is kept as one of its
sources.

Title similarity is the Dice coefficient of the titles' n-gram sets, after NFKC
normalisation and case folding: character trigrams of each Latin word (stop words
left out) and character bigrams of each run of Chinese characters, so that it works
for English, Chinese and titles mixing both. Titles at ``SIMILARITY_THRESHOLD`` or
above are near-duplicates.

Evidence, for an issue that names a segment (``carrier=EastPost;region=South``), is
that segment's figures this week and last week, against those of all orders:

* orders: orders created in the week (in the segment);
* late orders: orders that missed a deadline in the week: shipped in the week after
  their ship deadline (``sections.ship_deadline``), delivered in the week after
  ``promised_delivery_by``, or at week end paid, neither shipped nor cancelled, and
  past their ship deadline (overdue backlog);
* exception orders: orders created in the week with an ``exception_code``;
* problem orders (orders affected): late orders and exception orders, each order once;
* refund amount: ``refund_amount`` of after-sales cases requested in the week.

Priority, from 0 to 100 (the handout states it too)::

    priority = 100 * (0.4 * severity + 0.4 * impact + 0.2 * recurrence)

    severity   = 0, 1/3, 2/3, 1 for low, medium, high, critical (the highest of the
                 merged submissions)
    impact     = min(1, max(excess share of problem orders,
                            excess share of refund amount) / IMPACT_FULL_SHARE)
    recurrence = min(weeks, 4) / 4, weeks = distinct earlier weeks, among the last
                 RECURRENCE_WEEKS, in which the department raised the problem (this
                 issue's own earlier submissions, or a similar issue, resolved or not)

The excess share of a figure F (problem orders, refund amount) is what the segment
has beyond the rate of the other orders this week, as a share of all of F::

    excess = max(0, F(segment) - orders(segment) * F(rest) / orders(rest))
    excess share = excess / F(all orders)

so a large segment is not "important" merely for being large (a warehouse with a third
of the orders has a third of the late orders when nothing is wrong there), and an
issue whose segment holds IMPACT_FULL_SHARE (a quarter) of the week's problem orders
beyond normal has full impact. An issue without a segment, or without data, takes its
severity score as impact, so it is neither favoured nor penalised.

Ties are broken by severity, then problem orders, then the oldest issue first.
"""

from __future__ import annotations

import math
import re
import textwrap
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import matplotlib
import numpy as np
import pandas as pd
from ibis.backends import BaseBackend
from IPython.display import HTML, Image, display
from matplotlib.ticker import PercentFormatter

from meetinglib.analysis import sections
from meetinglib.core.csvsafe import to_csv as write_csv
from meetinglib.core.i18n import CodeLabel, code_name, label_or, t
from meetinglib.core.params import AgendaParams
from meetinglib.core.weeks import IsoWeek, Window
from meetinglib.data import engine
from meetinglib.data.dataset import notebook_week
from meetinglib.meeting.intake import SEGMENT_KEYS, IssueForm, department_label
from meetinglib.meeting.store import SEVERITIES, Store, open_store
from meetinglib.report import charts as plots
from meetinglib.report.render import frame_table, macro

SIMILARITY_THRESHOLD = 0.55
RECURRENCE_WEEKS = 8
RECURRENCE_CAP = 4
WEIGHTS = {"severity": 0.4, "impact": 0.4, "recurrence": 0.2}
IMPACT_FULL_SHARE = 0.25
SEVERITY_SCORE = {s: i / (len(SEVERITIES) - 1) for i, s in enumerate(SEVERITIES)}
FIGURES = ("orders", "late_orders", "exception_orders", "problem_orders", "refund_amount")
STATUSES = ("new", "reported_again", "carried_over")
TRIAGE_COLUMNS = (
    "rank",
    "issue_id",
    "member_ids",
    "department",
    "title",
    "severity",
    "segment",
    "status",
    "first_week",
    "weeks_open",
    "reports",
    "sources",
    "submitters",
    "recurrence",
    *FIGURES,
    "impact",
    "priority",
)

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKENS = re.compile(rf"[{_CJK}]+|(?:(?![{_CJK}])[^\W_])+")
_CJK_RUN = re.compile(rf"[{_CJK}]+")
_CJK_FILLERS = re.compile("[的了和与及在是]")
# English words that say nothing about which problem a title means.
_STOPWORD_TEXT = """a an the and or of in on at to for from by with is are was were be been
very too not no our we it its this that these those some many much more"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


# --- similarity -----------------------------------------------------------------------------


def title_grams(title: str) -> frozenset[str]:
    """The n-grams a title is compared by: trigrams of Latin words, bigrams of Chinese runs."""
    text = unicodedata.normalize("NFKC", title or "").casefold()
    grams: set[str] = set()
    for token in _TOKENS.findall(text):
        if _CJK_RUN.fullmatch(token):
            run = _CJK_FILLERS.sub("", token)
            grams.update(run[i : i + 2] for i in range(len(run) - 1))
            if len(run) == 1:
                grams.add(run)
        elif token not in _STOPWORDS:
            padded = f" {token} "
            grams.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return frozenset(grams)


def title_similarity(a: str, b: str) -> float:
    """Dice coefficient 2|A∩B| / (|A|+|B|) of the titles' n-gram sets; 0 to 1."""
    ga, gb = title_grams(a), title_grams(b)
    if not ga or not gb:
        return 0.0
    return 2 * len(ga & gb) / (len(ga) + len(gb))


def _similar(
    grams: Sequence[frozenset[str]], segments: Sequence[str], threshold: float
) -> np.ndarray:
    """Boolean matrix: similar titles or the same non-empty segment."""
    n = len(grams)
    out = np.eye(n, dtype=bool)
    for i in range(n):
        for j in range(i + 1, n):
            shared = len(grams[i] & grams[j])
            total = len(grams[i]) + len(grams[j])
            same = bool(segments[i]) and segments[i] == segments[j]
            out[i, j] = out[j, i] = same or (total > 0 and 2 * shared / total >= threshold)
    return out


def group_issues(issues: pd.DataFrame, threshold: float = SIMILARITY_THRESHOLD) -> pd.Series:
    """The group of each issue: the id of the first-raised issue it is a near-duplicate of.

    Within a department, issues with similar titles or the same segment are linked, and
    linked issues form one group (transitively). The group is named by its member of
    the earliest week (then lowest id). Index: ``issues``' index.
    """
    group = pd.Series(issues["id"].to_numpy(dtype="int64"), index=issues.index, name="group")
    ordered = issues.sort_values(["week", "id"])
    for _, part in ordered.groupby("department", sort=False):
        grams = [title_grams(x) for x in part["title"]]
        linked = _similar(grams, list(part["segment"].fillna("")), threshold)
        parent = list(range(len(part)))

        def root(i: int, parent: list[int] = parent) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for i, j in zip(*np.nonzero(np.triu(linked, 1)), strict=True):
            a, b = root(int(i)), root(int(j))
            if a != b:
                parent[max(a, b)] = min(a, b)  # the earlier issue names the group
        ids = part["id"].to_numpy(dtype="int64")
        group.loc[part.index] = ids[[root(i) for i in range(len(part))]]
    return group


# --- segments and evidence -------------------------------------------------------------------


def segment_dict(segment: str) -> dict[str, str]:
    """The stored form ``carrier=X;region=Y`` as a dict (empty text: {})."""
    pairs = [p.split("=", 1) for p in (segment or "").split(";") if "=" in p]
    return {k.strip(): v.strip() for k, v in pairs}


def segment_mask(orders: pd.DataFrame, segment: dict[str, str]) -> np.ndarray:
    """Which orders the segment covers (all orders for {}); a column the data lacks: none."""
    mask = np.ones(len(orders), dtype=bool)
    for key, value in segment.items():
        if key not in SEGMENT_KEYS:
            raise KeyError(f"unknown segment key {key!r}; use one of {SEGMENT_KEYS}")
        if key not in orders.columns:
            return np.zeros(len(orders), dtype=bool)
        column = orders[key].astype(object)
        mask &= (column == value).fillna(False).to_numpy(dtype=bool)
    return mask


def segment_condition(orders: ir.Table, segment: Mapping[str, str]) -> ir.BooleanValue:
    """On the engine: whether an order is in the segment (all for {}); a column the data
    lacks: none."""
    inside: ir.BooleanValue = ibis.literal(True)
    for key, value in segment.items():
        if key not in SEGMENT_KEYS:
            raise KeyError(f"unknown segment key {key!r}; use one of {SEGMENT_KEYS}")
        if key not in orders.columns:
            return ibis.literal(False)
        inside &= (orders[key].cast("string") == value).fill_null(False)
    return inside


def late_condition(orders: ir.Table, window: Window, ship_sla_hours: float) -> ir.BooleanValue:
    """On the engine: whether an order missed a deadline in the window: shipped late,
    delivered late, or overdue.

    Shipped in the window after the ship deadline (``sections.ship_deadline``); delivered
    in the window after promised_delivery_by; or at window end paid, not shipped, not
    cancelled and past the ship deadline.
    """
    deadline = sections.ship_deadline(orders, ship_sla_hours)
    shipped, delivered = sections.col(orders, "shipped_at"), sections.col(orders, "delivered_at")
    promised = sections.col(orders, "promised_delivery_by")
    end = sections.instant(window.end)
    shipped_late = sections.within(shipped, window) & (shipped > deadline).fill_null(False)
    delivered_late = sections.within(delivered, window) & (delivered > promised).fill_null(False)
    overdue = sections.open_at(orders, end) & sections.before(deadline, end)
    return shipped_late | delivered_late | overdue


def late_orders(orders: pd.DataFrame, window: Window, ship_sla_hours: float) -> np.ndarray:
    """Per order of a frame, whether it missed a deadline in the window (``late_condition``,
    computed by the engine); boolean per order."""
    table = engine.frame_table(orders)
    flags = table.select(late=late_condition(table, window, ship_sla_hours))
    return engine.shared().execute(flags)["late"].to_numpy(dtype=bool)


def figures_on(
    con: BaseBackend,
    orders: ir.Table,
    after_sales: ir.Table | None,
    segments: Sequence[Mapping[str, str]],
    window: Window,
    ship_sla_hours: float,
) -> list[pd.Series]:
    """FIGURES of each segment's orders in the window (see the module text), in one query;
    orders and currency.

    orders: created in the window; late orders: ``late_condition``; exception orders:
    created in the window with an exception_code; problem orders: late or exception, each
    order once; refund amount: refund_amount of the segment's orders' after-sales cases
    requested in the window.
    """
    created = sections.within(orders.created_at, window)
    late = late_condition(orders, window, ship_sla_hours)
    exception = created & sections.col(orders, "exception_code").notnull()
    flags = orders.select(
        _oid=orders.order_id,
        created=created,
        late=late,
        exception=exception,
        **{f"s{i}": segment_condition(orders, seg) for i, seg in enumerate(segments)},
    )
    if after_sales is not None and "refund_amount" in after_sales.columns:
        cases = after_sales.filter(sections.within(after_sales.requested_at, window))
        per_order = cases.group_by(_cid=cases.order_id).aggregate(
            _refund=cases.refund_amount.cast("float64").sum()
        )
        flags = flags.left_join(per_order, flags._oid == per_order._cid)
        refund = flags._refund.fill_null(0.0)
    else:
        refund = ibis.literal(0.0)

    def total(condition: ir.BooleanValue) -> ir.Value:
        return ibis.ifelse(condition, 1, 0).sum()

    sums: dict[str, ir.Value] = {}
    for i in range(len(segments)):
        inside = flags[f"s{i}"]
        sums[f"orders{i}"] = total(inside & flags.created)
        sums[f"late_orders{i}"] = total(inside & flags.late)
        sums[f"exception_orders{i}"] = total(inside & flags.exception)
        sums[f"problem_orders{i}"] = total(inside & (flags.late | flags.exception))
        sums[f"refund_amount{i}"] = ibis.ifelse(inside, refund, 0.0).sum()
    found = con.execute(flags.aggregate(**sums)).iloc[0] if segments else None
    out = []
    for i in range(len(segments)):
        assert found is not None
        values = {f: found[f"{f}{i}"] for f in FIGURES}
        out.append(
            pd.Series(
                {f: 0.0 if pd.isna(v) else float(v) for f, v in values.items()}, dtype="float64"
            )
        )
    return out


def segment_figures(
    orders: pd.DataFrame,
    after_sales: pd.DataFrame | None,
    segment: dict[str, str],
    window: Window,
    ship_sla_hours: float,
) -> pd.Series:
    """FIGURES of the segment's orders in the window (``figures_on``, by the engine)."""
    cases = None if after_sales is None else engine.frame_table(after_sales)
    table = engine.frame_table(orders)
    con = engine.shared()
    return figures_on(con, table, cases, [segment], window, ship_sla_hours)[0]


def evidence_frame(
    this_week: pd.Series,
    last_week: pd.Series,
    all_orders: pd.Series,
    all_last_week: pd.Series,
) -> pd.DataFrame:
    """FIGURES and shares of a segment and of all orders, this week and last week.

    Rows: FIGURES plus late_share = late_orders / orders and exception_share =
    exception_orders / orders (NaN without orders). Columns: this_week, last_week (the
    segment), all_orders, all_last_week (every order), part_of_all = this_week /
    all_orders and part_last_week = last_week / all_last_week (NaN for the shares and
    when the whole is 0).
    """
    frame = pd.DataFrame(
        {
            "this_week": this_week,
            "last_week": last_week,
            "all_orders": all_orders,
            "all_last_week": all_last_week,
        }
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = pd.DataFrame(
            {
                "late_share": frame.loc["late_orders"] / frame.loc["orders"],
                "exception_share": frame.loc["exception_orders"] / frame.loc["orders"],
            }
        ).T
        frame["part_of_all"] = frame["this_week"] / frame["all_orders"]
        frame["part_last_week"] = frame["last_week"] / frame["all_last_week"]
    shares[["part_of_all", "part_last_week"]] = np.nan
    frame = pd.concat([frame, shares]).replace([np.inf, -np.inf], np.nan)
    frame.index.name = "figure"
    return frame


def evidence(
    orders: pd.DataFrame,
    after_sales: pd.DataFrame | None,
    segment: dict[str, str],
    window: Window,
    previous_window: Window,
    ship_sla_hours: float,
) -> pd.DataFrame:
    """The segment against itself last week and against all orders (see ``evidence_frame``)."""
    con, table = engine.shared(), engine.frame_table(orders)
    cases = None if after_sales is None else engine.frame_table(after_sales)
    this, whole = figures_on(con, table, cases, [segment, {}], window, ship_sla_hours)
    last, whole_last = figures_on(con, table, cases, [segment, {}], previous_window, ship_sla_hours)
    return evidence_frame(this, last, whole, whole_last)


def excess_share(segment: pd.Series, whole: pd.Series, figure: str) -> float:
    """The segment's ``figure`` beyond the other orders' rate, as a share of the whole's; 0-1.

    excess = max(0, F(segment) - orders(segment) x F(rest) / orders(rest)), rest = whole
    minus segment (rate 0 when the segment has all orders); share = excess / F(whole),
    0 when the whole has none.
    """
    if not whole[figure] > 0:
        return 0.0
    rest_orders = whole["orders"] - segment["orders"]
    rest_rate = (whole[figure] - segment[figure]) / rest_orders if rest_orders > 0 else 0.0
    excess = max(0.0, segment[figure] - segment["orders"] * rest_rate)
    return float(min(excess / whole[figure], 1.0))


def impact(segment: pd.Series, whole: pd.Series) -> float:
    """min(1, max(excess share of problem orders, of refund amount) / IMPACT_FULL_SHARE)."""
    shares = [excess_share(segment, whole, f) for f in ("problem_orders", "refund_amount")]
    return float(min(max(shares) / IMPACT_FULL_SHARE, 1.0))


def priority(severity: str, impact_share: float | None, recurrence_weeks: int) -> float:
    """100 x (0.4 severity score + 0.4 impact + 0.2 min(recurrence, 4)/4); 0 to 100.

    Without a measured impact (None or NaN) the severity score stands in for it.
    """
    s = SEVERITY_SCORE[severity]
    i = s if impact_share is None or math.isnan(impact_share) else impact_share
    r = min(recurrence_weeks, RECURRENCE_CAP) / RECURRENCE_CAP
    score = WEIGHTS["severity"] * s + WEIGHTS["impact"] * i + WEIGHTS["recurrence"] * r
    return round(100 * score, 1)


# --- triage -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrdersData:
    """What the evidence is computed from: the week's orders (and after-sales cases) as
    engine tables (frames are handed to the engine as they are); only FIGURES come back."""

    orders: ir.Table | pd.DataFrame
    after_sales: ir.Table | pd.DataFrame | None
    tz: str
    ship_sla_hours: float
    con: BaseBackend | None = None
    _figures: dict[tuple[str, IsoWeek], pd.Series] = field(
        default_factory=dict, repr=False, compare=False
    )

    def _tables(self) -> tuple[BaseBackend, ir.Table, ir.Table | None]:
        def table(x: ir.Table | pd.DataFrame) -> ir.Table:
            return engine.frame_table(x) if isinstance(x, pd.DataFrame) else x

        cases = None if self.after_sales is None else table(self.after_sales)
        return self.con or engine.shared(), table(self.orders), cases

    def prefetch(self, segments: Sequence[str], week: IsoWeek) -> None:
        """FIGURES of stored segments in ``week``, in one query for those not known yet."""
        wanted = [s for s in dict.fromkeys(segments) if (s, week) not in self._figures]
        if not wanted:
            return
        con, orders, cases = self._tables()
        found = figures_on(
            con,
            orders,
            cases,
            [segment_dict(s) for s in wanted],
            week.window(self.tz),
            self.ship_sla_hours,
        )
        self._figures.update({(s, week): f for s, f in zip(wanted, found, strict=True)})

    def figures(self, segment: str, week: IsoWeek) -> pd.Series:
        """FIGURES of a stored segment ("" = all orders) in ``week``."""
        self.prefetch([segment], week)
        return self._figures[(segment, week)]

    def evidence(self, segment: str, week: IsoWeek) -> pd.DataFrame:
        """``evidence_frame`` of a stored segment for ``week``."""
        for when in (week, week.previous()):
            self.prefetch([segment, ""], when)
        return evidence_frame(
            self.figures(segment, week),
            self.figures(segment, week.previous()),
            self.figures("", week),
            self.figures("", week.previous()),
        )


def agenda_issues(issues: pd.DataFrame, week: IsoWeek | str) -> pd.DataFrame:
    """The issues a week's meeting discusses: raised for the week, or open from before."""
    week = str(IsoWeek.parse(week))
    current = issues["week"] == week
    carried = (issues["week"] < week) & (issues["status"] == "open")
    return issues[current | carried]


def _sources(part: pd.DataFrame) -> str:
    rows = part["source_row"] if "source_row" in part.columns else pd.Series(None, part.index)
    texts = [
        f"{week} {source}" + (f" row {int(row)}" if pd.notna(row) else "")
        for week, source, row in zip(part["week"], part["source"], rows, strict=True)
    ]
    return "; ".join(texts)


def triage(
    issues: pd.DataFrame,
    week: IsoWeek | str,
    data: OrdersData | None = None,
    *,
    threshold: float = SIMILARITY_THRESHOLD,
    recurrence_weeks: int = RECURRENCE_WEEKS,
) -> pd.DataFrame:
    """One row per merged issue on the week's agenda, ranked by priority (TRIAGE_COLUMNS).

    ``issues``: the store's issues through the week (any status; earlier weeks give
    recurrence and carried-over items). Without ``data`` the figures and impact are
    NaN and the severity stands in for the impact.
    """
    week = IsoWeek.parse(week)
    this = str(week)
    issues = issues[issues["week"] <= this]
    candidates = agenda_issues(issues, week)
    if candidates.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in TRIAGE_COLUMNS})
    groups = group_issues(candidates, threshold)
    earliest = str(week.shift(-recurrence_weeks))
    history = issues[(issues["week"] < this) & (issues["week"] >= earliest)]
    if data is not None:
        # Every segment on the agenda (and all orders), this week and last, in two queries.
        segments = ["", *(str(x) for x in candidates["segment"] if isinstance(x, str) and x)]
        for when in (week, week.previous()):
            data.prefetch(segments, when)
    whole = data.figures("", week) if data else None
    rows = []
    for group_id, part in candidates.groupby(groups, sort=False):
        part = part.sort_values(["week", "id"])
        first = part.iloc[0]
        rank_severity = part["severity"].map(SEVERITIES.index)
        severity = SEVERITIES[int(rank_severity.max())]
        by_weight = part.assign(_s=-rank_severity).sort_values(["_s", "week", "id"])
        segment = next((s for s in by_weight["segment"] if s), "")
        weeks = set(part["week"])
        status = (
            "new" if weeks == {this} else ("reported_again" if this in weeks else "carried_over")
        )
        recurrence = _recurrence(part, history, earliest, this, threshold)
        figures = pd.Series(np.nan, index=list(FIGURES))
        share = float("nan")
        if data is not None and segment:
            figures = data.figures(segment, week)
            share = impact(figures, whole)
        rows.append(
            {
                "issue_id": int(group_id),
                "member_ids": ", ".join(str(int(i)) for i in part["id"]),
                "department": first["department"],
                "title": first["title"],
                "severity": severity,
                "segment": segment,
                "status": status,
                "first_week": first["week"],
                "weeks_open": _weeks_between(IsoWeek.parse(first["week"]), week),
                "reports": len(part),
                "sources": _sources(part),
                "submitters": ", ".join(dict.fromkeys(s for s in part["submitter"] if s)),
                "recurrence": recurrence,
                **figures.to_dict(),
                "impact": share,
                "priority": priority(severity, share, recurrence),
            }
        )
    table = pd.DataFrame(rows)
    table["_severity"] = table["severity"].map(SEVERITIES.index)
    table = table.sort_values(
        ["priority", "_severity", "problem_orders", "issue_id"],
        ascending=[False, False, False, True],
        na_position="last",
    ).reset_index(drop=True)
    table["rank"] = np.arange(1, len(table) + 1)
    counts = ["orders", "late_orders", "exception_orders", "problem_orders"]
    table[counts] = table[counts].round().astype("Int64")
    return table.loc[:, list(TRIAGE_COLUMNS)]


def _weeks_between(first: IsoWeek, last: IsoWeek) -> int:
    return (last.monday - first.monday).days // 7


def _recurrence(
    part: pd.DataFrame, history: pd.DataFrame, since: str, this: str, threshold: float
) -> int:
    """Distinct weeks in [since, this) in which the department raised this problem.

    The group's own submissions of those weeks count, and so does any issue of the
    department then (resolved or not) with the same segment or a similar title.
    """
    weeks = {w for w in part["week"] if since <= w < this}
    earlier = history[history["department"] == part["department"].iloc[0]]
    if len(earlier):
        mine = [title_grams(x) for x in part["title"]]
        segments = {s for s in part["segment"] if s}
        for week, title, segment in zip(
            earlier["week"], earlier["title"], earlier["segment"], strict=True
        ):
            if week in weeks:
                continue
            if segment and segment in segments:
                weeks.add(week)
                continue
            grams = title_grams(title)
            if any(
                g and grams and 2 * len(g & grams) / (len(g) + len(grams)) >= threshold
                for g in mine
            ):
                weeks.add(week)
    return len(weeks)


def department_load(triaged: pd.DataFrame) -> dict[str, int]:
    """Merged issues on the agenda per department: the load the agenda's time follows."""
    return {str(k): int(v) for k, v in triaged.groupby("department").size().items()}


# --- the handout ------------------------------------------------------------------------------


def _fmt_number(value: float, kind: str, currency: str) -> str:
    if pd.isna(value):
        return "–"
    if kind == "share":
        return f"{value:.1%}"
    if kind == "currency":
        return f"{currency} {value:,.0f}"
    return f"{value:,.0f}"


_FIGURE_KIND = {
    "orders": "count",
    "late_orders": "count",
    "exception_orders": "count",
    "problem_orders": "count",
    "refund_amount": "currency",
}


def _table(frame: pd.DataFrame) -> HTML:
    """A table whose cells are escaped (user text may hold markup): the one table helper."""
    return HTML(str(frame_table(frame.astype(object))))


def _p(text: str, css: str = "ml-note") -> str:
    return str(macro("note", text, css))


class TriageReport:
    """The week's triaged issues, displayed piece by piece in ``issue_triage``."""

    def __init__(
        self,
        triaged: pd.DataFrame,
        week: IsoWeek,
        *,
        company: str,
        departments: Sequence[str],
        lang: str = "en",
        data: OrdersData | None = None,
        action_items: pd.DataFrame | None = None,
        currency: str = "CNY",
        agenda_minutes: dict[str, int] | None = None,
        interactive: bool = False,
        store: Store | None = None,
        label: CodeLabel | None = None,
    ):
        self.triaged = triaged
        self.week = week
        self.company = company
        self.departments = list(departments)
        self.lang = lang
        self.data = data
        self.action_items = action_items
        self.currency = currency
        self.agenda_minutes = agenda_minutes or {}
        self.interactive = interactive
        self.store = store
        # People's names for the data's codes (e.g. Params.label); issues.csv keeps the codes.
        self.label = label

    @classmethod
    def open(
        cls,
        params_files: Sequence[str | Path],
        week: str | None = None,
        snapshot: str | Path | None = None,
        lang: str | None = None,
    ) -> TriageReport:
        """Load the week's data (the runner's snapshot if given) and the store's issues."""
        data = notebook_week(params_files, week, snapshot)
        params = data.params
        store = open_store(params)
        issues = store.issues(through_week=str(data.week))
        tables = data.engine_tables()
        orders = OrdersData(
            tables["orders"],
            tables.get("after_sales"),
            data.tz,
            params.sla.ship_hours,
            engine.shared(params.engine),
        )
        triaged = triage(issues, data.week, orders)
        open_items = store.action_items(status="open")
        minutes = department_minutes(department_load(triaged), params.agenda)
        return cls(
            triaged,
            data.week,
            company=params.company,
            departments=params.meeting.departments,
            lang=lang or params.language,
            data=orders,
            action_items=open_items,
            currency=params.currency,
            agenda_minutes=minutes,
            interactive=snapshot is None,
            store=store,
            label=params.label,
        )

    def _t(self, key: str, **fields: object) -> str:
        return t(key, self.lang, **fields)

    def _dept(self, code: str) -> str:
        return department_label(code, self.lang)

    # --- text -----------------------------------------------------------------------------

    def title(self) -> HTML:
        frame = self.triaged
        carried = int((frame["status"] == "carried_over").sum()) if len(frame) else 0
        sub = self._t(
            "triage.subtitle",
            company=self.company,
            week=self.week,
            issues=len(frame),
            departments=frame["department"].nunique() if len(frame) else 0,
            carried=carried,
        )
        return HTML(str(macro("title", self._t("triage.title"), sub)))

    def section(self, key: str) -> HTML:
        return HTML(str(macro("heading", 2, key, self._t(f"triage.section.{key}"))))

    def priority_note(self) -> HTML:
        return HTML(
            _p(
                self._t(
                    "triage.priority_note",
                    ws=WEIGHTS["severity"],
                    wi=WEIGHTS["impact"],
                    wr=WEIGHTS["recurrence"],
                    full=IMPACT_FULL_SHARE,
                    cap=RECURRENCE_CAP,
                    weeks=RECURRENCE_WEEKS,
                )
            )
        )

    # --- tables ---------------------------------------------------------------------------

    def _segment_text(self, segment: str) -> str:
        """The stored segment (``carrier=EastPost;region=South``) for people: its codes
        named by ``label`` (params ``labels``), exception codes and order types by the
        catalogue."""
        parts = []
        for key, value in segment_dict(segment).items():
            if key in ("exception_code", "order_type"):
                # catalogue codes: named by the message catalogue, as the data report does
                catalogue = "exception" if key == "exception_code" else key
                shown = label_or(f"{catalogue}.{value}", self.lang, value)
            else:
                shown = code_name(self.label, key, value, self.lang)
            parts.append(f"{self._t(f'triage.segment.{key}')} {shown}")
        return ", ".join(parts) or "–"

    def _issue_rows(self, frame: pd.DataFrame, with_department: bool) -> pd.DataFrame:
        cur = self.currency
        columns: dict[str, Any] = {self._t("triage.col.rank"): frame["rank"].astype(int)}
        if with_department:
            columns[self._t("triage.col.department")] = frame["department"].map(self._dept)
        columns.update(
            {
                self._t("triage.col.issue"): [
                    f"#{i} {title}"
                    for i, title in zip(frame["issue_id"], frame["title"], strict=True)
                ],
                self._t("triage.col.severity"): frame["severity"].map(
                    lambda s: self._t(f"severity.{s}")
                ),
                self._t("triage.col.segment"): frame["segment"].map(self._segment_text),
                self._t("triage.col.status"): [
                    self._t(f"triage.status.{s}", weeks=w)
                    for s, w in zip(frame["status"], frame["weeks_open"], strict=True)
                ],
                self._t("triage.col.problem_orders"): frame["problem_orders"].map(
                    lambda v: _fmt_number(v, "count", cur)
                ),
                self._t("triage.col.refund_amount"): frame["refund_amount"].map(
                    lambda v: _fmt_number(v, "currency", cur)
                ),
                self._t("triage.col.recurrence"): frame["recurrence"].astype(int),
                self._t("triage.col.priority"): frame["priority"].map(lambda v: f"{v:.0f}"),
            }
        )
        return pd.DataFrame(columns)

    def overview(self) -> HTML:
        """All issues on the agenda, highest priority first."""
        if self.triaged.empty:
            return HTML(_p(self._t("triage.none", week=self.week)))
        return _table(self._issue_rows(self.triaged, with_department=True))

    def evidence_table(self, segment: str) -> HTML:
        assert self.data is not None
        ev = self._evidence(segment)
        cur = self.currency
        rows = []
        # Counts and amounts only: a ratio of late events to orders created mixes two events.
        for key, row in ev.loc[list(FIGURES)].iterrows():
            kind = _FIGURE_KIND[str(key)]
            change = row["this_week"] - row["last_week"]
            rows.append(
                {
                    self._t("triage.col.figure"): self._t(f"triage.figure.{key}"),
                    self._t("word.this_week"): _fmt_number(row["this_week"], kind, cur),
                    self._t("word.last_week"): _fmt_number(row["last_week"], kind, cur),
                    self._t("word.change"): _fmt_change(change, kind, cur),
                    self._t("triage.col.all_orders"): _fmt_number(row["all_orders"], kind, cur),
                    self._t("triage.col.part_of_all"): _fmt_number(
                        row["part_of_all"], "share", cur
                    ),
                }
            )
        return _table(pd.DataFrame(rows))

    def _evidence(self, segment: str) -> pd.DataFrame:
        assert self.data is not None
        return self.data.evidence(segment, self.week)

    def evidence_chart(self, segment: str) -> Image:
        """The segment's part of the week's orders, late and exception orders and refunds."""
        ev = self._evidence(segment)
        keys = ["orders", "late_orders", "exception_orders", "refund_amount"]
        parts = ev.loc[keys, ["part_of_all", "part_last_week"]].fillna(0.0)
        title = self._t(
            "triage.chart.title",
            segment=self._segment_text(segment),
            orders=parts.loc["orders", "part_of_all"],
            late=parts.loc["late_orders", "part_of_all"],
            exceptions=parts.loc["exception_orders", "part_of_all"],
        )
        fig = _grouped_bars(
            parts.to_numpy(),
            [self._t(f"triage.chart.group.{k}") for k in keys],
            [self._t("word.this_week"), self._t("word.last_week")],
            textwrap.fill(title, 60 if self.lang.startswith("zh") else 100),
            self.lang,
        )
        return Image(plots.png_bytes(fig), metadata={"alt": title})

    def carried_over_table(self, department: str) -> HTML | None:
        """Open action items of the department from earlier meetings (None when there are none)."""
        items = self.action_items
        if items is None or items.empty:
            return None
        mine = items[items["department"] == department]
        if mine.empty:
            return None
        week_end = self.week.monday + pd.Timedelta(days=6)
        frame = pd.DataFrame(
            {
                self._t("triage.col.action"): mine["description"],
                self._t("triage.col.owner"): mine["owner"],
                self._t("triage.col.due"): mine["due_date"].astype(str),
                self._t("triage.col.set_in"): mine["meeting_week"],
                self._t("triage.col.overdue"): [
                    self._t("triage.overdue") if pd.Timestamp(d).date() < week_end else ""
                    for d in mine["due_date"]
                ],
            }
        )
        return _table(frame)

    def department_sections(self) -> None:
        """Display one section per department, in agenda order: issues, evidence, carry-over."""
        listed = set(self.triaged["department"]) if len(self.triaged) else set()
        if self.action_items is not None and len(self.action_items):
            listed |= set(self.action_items["department"])
        order = [d for d in self.departments if d in listed] + sorted(
            listed - set(self.departments)
        )
        if not order:
            display(HTML(_p(self._t("triage.none", week=self.week))))
            return
        for department in order:
            mine = self.triaged[self.triaged["department"] == department]
            minutes = self.agenda_minutes.get(department, 0)
            count = "one" if len(mine) == 1 else "other"
            heading = self._t(
                f"triage.department.heading.{count}",
                department=self._dept(department),
                issues=len(mine),
                minutes=minutes,
            )
            display(HTML(str(macro("heading", 2, f"department-{department}", heading))))
            if len(mine):
                display(_table(self._issue_rows(mine, with_department=False)))
            for row in mine.itertuples():
                if not row.segment or self.data is None:
                    continue
                caption = self._t("triage.evidence.heading", id=row.issue_id, title=row.title)
                display(HTML(str(macro("heading", 3, "", caption))))
                display(self.evidence_chart(row.segment))
                display(self.evidence_table(row.segment))
            carried = mine[mine["status"] != "new"]
            items = self.carried_over_table(department)
            if len(carried) or items is not None:
                display(HTML(str(macro("heading", 3, "", self._t("triage.carried.heading")))))
                if len(carried):
                    count = "one" if len(carried) == 1 else "other"
                    text = self._t(f"triage.carried.issues.{count}", count=len(carried))
                    display(HTML(_p(text)))
                if items is not None:
                    display(items)

    # --- files and the form --------------------------------------------------------------

    def save(self, out_dir: str | Path | None) -> None:
        """Write issues.csv (the ranked, merged issues) into ``out_dir`` when one is given."""
        if out_dir is None:
            return
        path = Path(out_dir) / "issues.csv"
        write_csv(self.triaged, path)

    def issue_form(self) -> Any:
        """The widget form adding an issue, in an interactive session; None in a handout."""
        if not self.interactive or self.store is None:
            return None

        return IssueForm(self.store, self.week, self.departments, self.lang).widget


def _fmt_change(change: float, kind: str, currency: str) -> str:
    if pd.isna(change):
        return "–"
    if kind == "share":
        return f"{change * 100:+.1f} pp"
    if kind == "currency":
        return f"{currency} {change:+,.0f}"
    return f"{change:+,.0f}"


def _grouped_bars(
    values: np.ndarray, groups: list[str], labels: list[str], title: str, lang: str
) -> Any:
    """Bars per group (rows of ``values``), one bar per series (columns), shares in %."""

    with matplotlib.rc_context(plots.style(lang)):
        fig = plots.new_figure(lang, size=(8.0, 3.2))
        ax = fig.add_subplot()
        width = 0.8 / len(labels)
        x = np.arange(len(groups))
        for k, label in enumerate(labels):
            ax.bar(
                x + (k - (len(labels) - 1) / 2) * width,
                values[:, k],
                width,
                label=label,
                color=plots.PALETTE[k % len(plots.PALETTE)],
                hatch=plots.HATCHES[k % len(plots.HATCHES)],
                edgecolor="#333333",
                linewidth=0.5,
            )
        ax.set_xticks(x, groups)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylabel(t("triage.chart.ylabel", lang))
        ax.set_ylim(0, max(0.05, float(values.max()) * 1.15))
        ax.set_title(title, loc="left")
        ax.legend(frameon=False, fontsize=9)
    return fig


def department_minutes(load: Mapping[str, int], boxes: AgendaParams) -> dict[str, int]:
    """Minutes per department with issues: issues x minutes_per_issue within the cap.

    Each department with issues needs max(min_department, ceil(issues x
    minutes_per_issue)). When the needs add up to more than departments_cap, each gets
    min_department plus (cap - n x min_department) x issues / all issues, rounded down,
    and the minutes left go one each to the largest remainders (ties: more issues,
    then the order given). When even the minimums exceed the cap, the cap is split
    evenly. Departments without issues get none.
    """
    busy = {d: int(n) for d, n in load.items() if n > 0}
    if not busy:
        return {}
    need = {
        d: max(boxes.min_department, math.ceil(n * boxes.minutes_per_issue - 1e-9))
        for d, n in busy.items()
    }
    cap = boxes.departments_cap
    if sum(need.values()) <= cap:
        return need
    floor = min(boxes.min_department, cap // len(busy))
    rest = cap - floor * len(busy)
    total = sum(busy.values())
    exact = {d: rest * n / total for d, n in busy.items()}
    minutes = {d: floor + math.floor(x) for d, x in exact.items()}
    left = cap - sum(minutes.values())
    order = list(busy)
    by_remainder = sorted(
        busy, key=lambda d: (-(exact[d] - math.floor(exact[d])), -busy[d], order.index(d))
    )
    for d in by_remainder[:left]:
        minutes[d] += 1
    return minutes
