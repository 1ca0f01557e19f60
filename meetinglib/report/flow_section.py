"""The data report's "Where the time goes" section: bottlenecks, their spread, the flow.

``FlowSection(data, lang)`` computes once, on first use, and each method returns
something Jupyter displays; ``export`` writes ``flow_edges.csv`` and
``bottlenecks.csv`` from the same cached frames.

Which orders and events belong to the report week (the KPI rule: an event counts in
the week it happens):

- bottlenecks: a stage counts in the week when its end event falls in it
  (flow.bottlenecks with the week's window);
- the graph: the transitions whose later event falls in the week, taken from the
  event log of the orders with any event in the week. An order shipped last week and
  delivered this week adds shipped -> delivered this week, and nothing else; every
  transition is counted in exactly one week. The log is the ``events`` table when the
  source has one, else the milestones of ``orders``; ``after_sales`` adds the return
  steps either way;
- previous weeks: the same stage and segment over the history weeks before the
  report week (stage end in them), from the first history week the extract covers
  completely, so a finding can say whether it is new or the usual.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import ibis.expr.types as ir
import matplotlib
import numpy as np
import pandas as pd
from ibis.backends import BaseBackend
from IPython.display import HTML, Image
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from meetinglib.analysis import flow, flow_engine
from meetinglib.core.csvsafe import to_csv as write_csv
from meetinglib.core.i18n import CodeLabel, code_name, label_or, t
from meetinglib.core.weeks import IsoWeek, Window
from meetinglib.data.dataset import WeekData
from meetinglib.data.engine import frame_table, shared
from meetinglib.report import charts as plots
from meetinglib.report import flow_graph as graph
from meetinglib.report.data_report import chart
from meetinglib.report.render import macro, render

TOP_FINDINGS = 8
# A finding is "worse" ("better") than before when its segment's median this week is
# at least this much above (below) the same segment's median in the previous weeks.
TREND_CHANGE = 0.15
# Fewer orders than this in the previous weeks: no comparison.
MIN_PREVIOUS_ORDERS = 30
# Transitions of fewer orders than this share of the week's orders are not drawn
# (the CSV has them all); rare paths would hide the flow behind thin arrows.
MIN_DRAWN_SHARE = 0.002

EDGE_COLUMNS = ["source", "target", "cases", "count", "mean_h", "median_h", "p90_h"]
HISTORY_COLUMNS = ["previous_orders", "previous_median_h", "trend"]


# --- which events and orders belong to the week ---------------------------------------------


def transitions_into(log: pd.DataFrame, window: Window) -> pd.DataFrame:
    """The rows of a sorted event log behind the transitions that end in ``window``.

    Keeps every event in the window and, per case, the event just before its first
    one in the window. A case's events in a window are consecutive rows (the log is
    sorted by case, then time), so the kept rows make exactly those transitions.
    """
    inside = window.contains(log["timestamp"]).to_numpy(dtype=bool, na_value=False)
    keep = inside.copy()
    if len(log) > 1:
        case = log["case_id"]
        same_next = case.iloc[1:].to_numpy() == case.iloc[:-1].to_numpy()
        keep[:-1] |= inside[1:] & same_next
    return log[keep].reset_index(drop=True)


def week_event_log(
    tables: Mapping[str, pd.DataFrame | ir.Table], window: Window, con: BaseBackend | None = None
) -> pd.DataFrame:
    """The event log of the transitions ending in ``window`` (see the module docstring).

    Computed by the engine (``con``, default the shared DuckDB) from ``tables`` (frames
    or engine tables): only the events of the cases with an event in the window come
    back, sorted as flow.event_log sorts, times in the window's timezone.
    """
    on_engine = {
        name: frame_table(table) if isinstance(table, pd.DataFrame) else table
        for name, table in tables.items()
        if name in ("orders", "events", "after_sales")
    }
    log = (con or shared()).to_pandas(
        flow_engine.week_log_expr(on_engine, window.start, window.end)
    )
    log["timestamp"] = log["timestamp"].dt.tz_convert(window.start.tz)
    empty = pd.DataFrame(columns=["order_id", "created_at"])
    sorted_log = flow.event_log(empty, log.rename(columns={"case_id": "order_id"}))
    return transitions_into(sorted_log, window)


def complete_history(orders: pd.DataFrame, history: Window) -> Window:
    """``history`` from the first week that starts at least 7 days after the first order.

    Stages ending in the first days of an extract come only from orders created in
    those days, the quick ones; a baseline including them would look too fast.
    """
    first = orders["created_at"].min()
    return history_after(None if pd.isna(first) else first, history)


def history_after(first: pd.Timestamp | None, history: Window) -> Window:
    """complete_history given the first order's creation time (None: no order)."""
    if first is None:
        return history
    tz = str(history.start.tz)
    ready = IsoWeek.containing(first.tz_convert(tz) + pd.Timedelta(days=7)).next().start(tz)
    return Window(min(max(history.start, ready), history.end), history.end)


def segment_mask(frame: pd.DataFrame, finding) -> np.ndarray:
    """Rows of a stage frame in a finding's segment (one or two dimensions)."""
    mask = np.ones(len(frame), dtype=bool)
    for dim, value in ((finding.dimension, finding.value), (finding.dimension_2, finding.value_2)):
        if not isinstance(dim, str):
            continue
        if dim == "weekday":
            value = flow.weekday_number(value)
        mask &= (frame[dim] == value).to_numpy(dtype=bool, na_value=False)
    return mask


def stage_hours(frame: pd.DataFrame, stage: str, window: Window) -> np.ndarray:
    """Hours of a stage per row, NaN where the stage did not end in ``window``."""
    end = flow.STAGES[stage][1]
    hours = frame[f"{stage}_h"].to_numpy(dtype=float)
    inside = window.contains(frame[end]).to_numpy(dtype=bool, na_value=False)
    return np.where(inside, hours, np.nan)


def with_history(findings: pd.DataFrame, frame: pd.DataFrame, history: Window) -> pd.DataFrame:
    """Findings plus previous_orders, previous_median_h and trend over ``history``.

    trend: "worse" / "better" when median_h is at least TREND_CHANGE above / below
    previous_median_h, "as_before" in between, "no_history" with fewer than
    MIN_PREVIOUS_ORDERS previous orders in the segment.
    """
    out = findings.copy()
    counts, medians = [], []
    for row in findings.itertuples(index=False):
        hours = stage_hours(frame, row.stage, history)[segment_mask(frame, row)]
        hours = hours[~np.isnan(hours)]
        counts.append(len(hours))
        medians.append(float(np.median(hours)) if len(hours) else math.nan)
    out["previous_orders"] = pd.Series(counts, dtype="int64", index=out.index)
    out["previous_median_h"] = pd.Series(medians, dtype="float64", index=out.index)
    ratio = out["median_h"] / out["previous_median_h"]
    trend = np.select(
        [ratio >= 1 + TREND_CHANGE, ratio <= 1 / (1 + TREND_CHANGE)],
        ["worse", "better"],
        "as_before",
    )
    trend = np.where(out["previous_orders"] < MIN_PREVIOUS_ORDERS, "no_history", trend)
    out["trend"] = pd.Series(trend, dtype="str", index=out.index)
    return out


# --- wording --------------------------------------------------------------------------------


def segment_value(dimension: str, value: Any, lang: str, label: CodeLabel | None = None) -> str:
    """A segment value for display: weekday and order type translated, hour as 10:00, the
    data's own codes (warehouse, carrier...) named by ``label`` (e.g. ``Params.label``)."""
    if dimension == "weekday":
        return t(f"weekday.{flow.weekday_number(value)}", lang)
    if dimension == "hour":
        return f"{int(value):02d}:00"
    if dimension == "order_type":
        return label_or(f"order_type.{value}", lang, str(value))
    return code_name(label, dimension, value, lang)


def segment_label(finding, lang: str, label: CodeLabel | None = None) -> str:
    """'Carrier EastPost × Region South': a finding's segment, short, for chart rows."""

    def one(dimension: str, value: object) -> str:
        return t(
            "flow_section.segment.one",
            lang,
            dimension=t(f"flow.dim.{dimension}", lang),
            value=segment_value(dimension, value, lang, label),
        )

    first = one(finding.dimension, finding.value)
    if not isinstance(finding.dimension_2, str):
        return first
    second = one(finding.dimension_2, finding.value_2)
    return t("flow_section.segment.pair", lang, first=first, second=second)


# --- the section ------------------------------------------------------------------------------


# The findings as the data report shows them (``export_findings``).
FINDINGS_FILE = "bottlenecks.csv"


class FlowSection:
    """Where the time goes in the report week, computed once and displayed piece by piece."""

    def __init__(self, data: WeekData, lang: str | None = None, top: int = TOP_FINDINGS):
        self.data = data
        self.lang = lang or data.params.language
        # people's names for the data's codes (params ``labels``)
        self.label: CodeLabel = data.params.label
        self.top = top
        self.window = data.window
        self._findings_in: set[Path] = set()  # folders export_findings wrote to
        earliest = data.history_weeks[0].start(data.tz)
        first = flow_engine.first_created(self.engine, self.orders)
        self.history = history_after(first, Window(earliest, self.window.start))

    @property
    def previous_weeks(self) -> int:
        """Number of weeks the comparison with earlier weeks covers."""
        return len(self.baseline_weeks)

    @property
    def period(self) -> str:
        """'the previous 3 weeks' (or 'the previous week') in the section's language."""
        if self.previous_weeks == 1:
            return self._t("flow_section.period.one")
        return self._t("flow_section.period.many", weeks=self.previous_weeks)

    def _t(self, key: str, **fields: object) -> str:
        return t(key, self.lang, **fields)

    # --- cached computation -------------------------------------------------------------

    @cached_property
    def baseline_weeks(self) -> list[Window]:
        """The complete history weeks the findings compare with, at most params' number."""
        weeks = [w.window(self.data.tz) for w in self.data.history_weeks[:-1]]
        weeks = [w for w in weeks if w.start >= self.history.start]
        return weeks[-self.rules.baseline_weeks :] if weeks else []

    @cached_property
    def rules(self) -> flow.FindingRules:
        """The materiality rules of params ``findings`` (shown counts: ``top``)."""
        p = self.data.params.findings
        return flow.FindingRules(
            min_orders=p.min_orders,
            margin=p.margin,
            min_hours=p.min_hours,
            min_z=p.min_z,
            min_share=p.min_share,
            echo_left=p.echo_left,
            baseline_weeks=p.baseline_weeks,
            top_new=min(p.top_new, self.top),
            top_usual=p.top_usual,
        )

    @cached_property
    def bottlenecks(self) -> pd.DataFrame:
        """flow.week_findings of the week: both groups, roots and the echoes folded in.

        The rows of ``bottlenecks.csv``. Empty without a complete baseline week.
        """
        if not self.baseline_weeks:
            return pd.DataFrame(columns=flow.FINDING_COLUMNS)
        weeks = [*self.baseline_weeks, self.window]
        # the cohort sums per cell come from the engine; ranking and folding run on them
        sums = flow_engine.cohort_sums_on(self.engine, self.orders, weeks)
        return flow.week_findings(
            None, weeks, self.rules, lang=self.lang, data=sums, label=self.label
        )

    def group(self, name: str) -> pd.DataFrame:
        """The root findings of one group ("new" or "usual"), in rank order."""
        found = self.bottlenecks
        return found[(found["group"] == name) & (found["rank"] > 0)].reset_index(drop=True)

    def echoes(self, finding_id: str) -> pd.DataFrame:
        """The findings folded into one root finding."""
        found = self.bottlenecks
        return found[found["folded_into"] == finding_id].reset_index(drop=True)

    @cached_property
    def edges(self) -> pd.DataFrame:
        """flow_engine's directly-follows graph of the transitions ending in the week.

        Computed by the params' engine on the week's engine tables; only the edges
        come back.
        """
        start, end = self.window.start, self.window.end
        log = flow_engine.week_log_expr(self.data.engine_tables(), start, end, self.engine.name)
        return flow_engine.directly_follows_on(self.engine, log, ending_in=(start, end))

    @cached_property
    def local_span(self) -> pd.DataFrame:
        """Local weekday and hour of every quarter-hour the orders were created in
        (flow_engine.local_day_hour_span), shared by the section's segment queries."""
        return flow_engine.local_day_hour_span(self.engine, self.orders, self.data.tz)

    @property
    def orders(self) -> ir.Table:
        """The orders as a table of the engine."""
        return self.data.engine_tables()["orders"]

    @property
    def engine(self) -> BaseBackend:
        """The params' engine (embedded DuckDB unless params say otherwise)."""
        return shared(self.data.params.engine)

    # --- display -------------------------------------------------------------------------

    def heading(self) -> HTML:
        return HTML(str(macro("heading", 2, "flow", self._t("flow_section.heading"))))

    def summary_findings(self, limit: int) -> list[str]:
        """The ``limit`` top root findings as sentences, new this week first, then the usual
        bottlenecks (echoes folded into them are left out), for the data report's first page."""
        if self.bottlenecks.empty:
            return []
        roots = pd.concat([self.group(name) for name in flow.FINDING_GROUPS])
        return [str(f) for f in roots["finding"].head(limit)]

    def findings(self) -> HTML:
        """The two groups as numbered lists: new this week, then the usual bottlenecks.

        Each root finding names up to three of the findings folded into it.
        """
        week = str(self.data.week)
        if not self.baseline_weeks:
            return HTML(str(macro("note", self._t("flow_section.no_baseline", week=week))))
        groups = []
        for name in flow.FINDING_GROUPS:
            items = []
            for row in self.group(name).itertuples(index=False):
                echoes = self.echoes(str(row.id))
                note = ""
                if len(echoes):
                    names = [self._echo_name(e) for e in echoes.head(3).itertuples(index=False)]
                    note = self._t(
                        "flow_section.echoes",
                        # parts of a segment join with 、 in Chinese: the examples with ；
                        names=self._t("flow_section.echoes.separator").join(names),
                        count=len(echoes),
                    )
                items.append({"finding": str(row.finding), "echoes": note})
            groups.append(
                {
                    "title": self._t(f"flow_section.group.{name}", period=self.period),
                    "empty": self._t(f"flow_section.none.{name}", week=week, period=self.period),
                    "items": items,
                }
            )
        intro = self._t("flow_section.intro.groups", week=week, period=self.period)
        return HTML(str(render("sections/flow_findings.html.j2", intro=intro, groups=groups)))

    def _echo_name(self, row) -> str:
        stage = self._t(f"flow.stage.{row.stage}")
        return f"{stage} {flow.finding_segment(row, self.lang, self.label)}"

    def worst_segments_chart(self) -> Image:
        """Per root finding: the segment's stage hours this week and before, and the median.

        Stage hours of the stages that ENDED in the week and in the baseline weeks, as
        orders experience them; the ranking itself compares like cohorts (see flow).
        """
        found = self.bottlenecks[self.bottlenecks["rank"] > 0] if len(self.bottlenecks) else None
        if found is None or found.empty:
            return chart(plots.message(self._t("flow_section.chart.empty"), lang=self.lang))
        before_window = Window(self.baseline_weeks[0].start, self.window.start)
        roots = list(found.itertuples(index=False))
        asks = []
        for row in roots:
            segment = {row.dimension: row.value}
            if isinstance(row.dimension_2, str):
                segment[row.dimension_2] = row.value_2
            asks += [(row.stage, segment, self.window), (row.stage, segment, before_window)]
            asks.append((row.stage, {}, self.window))
        stats = flow_engine.stage_summaries(
            self.engine, self.orders, self.data.tz, asks, local=self.local_span
        )
        boxes = [_box_of(r) for r in stats.itertuples(index=False)]
        this_week, before, overall, names = [], [], [], []
        for i, row in enumerate(roots):
            now, then, everyone = boxes[3 * i : 3 * i + 3]
            this_week.append(now)
            enough = then is not None and stats["orders"].iloc[3 * i + 1] >= MIN_PREVIOUS_ORDERS
            before.append(then if enough else None)
            overall.append(everyone["med"] if everyone is not None else math.nan)
            stage = self._t(f"flow.stage.{row.stage}")
            group = self._t(f"flow_section.tag.{row.group}")
            names.append(f"{group}: {stage}\n{segment_label(row, self.lang, self.label)}")
        top = next(found.itertuples(index=False))
        title = self._t(
            f"flow_section.chart.title.{top.group}",
            stage=self._t(f"flow.stage.{top.stage}"),
            segment=segment_label(top, self.lang, self.label),
            added=graph.hours_text(top.added_delay_h),
        )
        fig = _paired_boxes(
            names,
            this_week,
            before,
            overall,
            title=title,
            xlabel=self._t("flow_section.chart.xlabel"),
            labels=(
                self._t("word.this_week"),
                self._t("flow_section.chart.before", period=self.period),
                self._t("flow_section.chart.overall"),
            ),
            lang=self.lang,
        )
        return chart(fig)

    def graph_chart(self) -> Image:
        """The week's directly-follows graph, the step holding the most order-hours in bold."""
        edges = self.edges
        week = str(self.data.week)
        heaviest = graph.heaviest_edge(edges) if len(edges) else None
        if heaviest is None:
            return chart(
                plots.message(self._t("flow_section.graph.empty", week=week), lang=self.lang)
            )
        cases = int(edges["cases"].max())
        floor = max(1, math.ceil(MIN_DRAWN_SHARE * cases))
        hidden = int((edges["cases"] < floor).sum())
        note = self._t("flow_section.graph.hidden", edges=hidden, cases=floor) if hidden else None
        row = edges[(edges["source"] == heaviest[0]) & (edges["target"] == heaviest[1])].iloc[0]
        title = self._t(
            "flow_section.graph.title",
            week=week,
            source=flow.activity_label(heaviest[0], self.lang),
            target=flow.activity_label(heaviest[1], self.lang),
            share=graph.hours_share(edges, heaviest),
            median=graph.hours_text(row["median_h"]),
            cases=int(row["cases"]),
        )
        fig = graph.draw_dfg(
            edges, lang=self.lang, title=title, min_cases=floor, highlight=heaviest, note=note
        )
        return chart(fig)

    # --- files ---------------------------------------------------------------------------

    def export(self, out_dir: str | Path) -> None:
        """Write flow_edges.csv and bottlenecks.csv into ``out_dir`` (UTF-8, no index).

        Returns None so that a notebook cell ending with this call shows nothing.
        """
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        write_csv(self.edges[EDGE_COLUMNS], folder / "flow_edges.csv")
        self.export_findings(folder)

    def export_findings(self, out_dir: str | Path) -> None:
        """Write bottlenecks.csv into ``out_dir`` as soon as the findings are known, once:
        the run finishes the explorer's tables from this file beside the rest of the
        report (at a million orders a week the flow section's graph and chart take 7 s
        more). Written whole under its name, so that a reader never sees half of it;
        ``export`` writes it when this was not called. Returns None.
        """
        folder = Path(out_dir)
        if folder in self._findings_in:
            return None
        folder.mkdir(parents=True, exist_ok=True)
        part = folder / f".{FINDINGS_FILE}.part"
        write_csv(self.bottlenecks, part)
        os.replace(part, folder / FINDINGS_FILE)
        self._findings_in.add(folder)
        return None


# --- chart ---------------------------------------------------------------------------------


def _box_of(stats: Any) -> dict[str, Any] | None:
    """Box statistics for matplotlib's bxp from a stage_summaries row (None: no order)."""
    if stats.orders == 0:
        return None
    return {
        "whislo": stats.p10_h,
        "q1": stats.q1_h,
        "med": stats.median_h,
        "q3": stats.q3_h,
        "whishi": stats.p90_h,
        "fliers": [],
    }


def _paired_boxes(
    names: list[str],
    this_week: list[dict | None],
    before: list[dict | None],
    overall: list[float],
    *,
    title: str,
    xlabel: str,
    labels: tuple[str, str, str],
    lang: str,
):
    """Horizontal box pairs per row (this week filled, before hatched) and a median tick."""
    with matplotlib.rc_context(plots.style(lang)):
        fig = plots.new_figure(lang, size=(9.0, 1.0 + 0.62 * len(names)))
        ax = fig.add_subplot()
        y = np.arange(len(names), dtype=float)
        h = 0.3
        styles: tuple[dict[str, Any], ...] = (
            {"facecolor": plots.PALETTE[0], "edgecolor": "#000000", "hatch": ""},
            {"facecolor": "white", "edgecolor": "#555555", "hatch": plots.HATCHES[1]},
        )
        for offset, boxes, style in (
            (-h / 2 - 0.02, this_week, styles[0]),
            (h / 2 + 0.02, before, styles[1]),
        ):
            stats = [b for b in boxes if b is not None]
            where = [yi + offset for yi, b in zip(y, boxes, strict=True) if b is not None]
            if not stats:
                continue
            ax.bxp(
                stats,
                positions=where,
                widths=h,
                orientation="horizontal",
                showfliers=False,
                patch_artist=True,
                boxprops={"linewidth": 0.8, **style},
                medianprops={
                    "color": "#ffffff" if style["hatch"] == "" else "#000000",
                    "linewidth": 1.6,
                },
                whiskerprops={"color": "#333333"},
                capprops={"color": "#333333"},
                manage_ticks=False,
            )
        # dotted, in front of the boxes: visible on both, in colour and in grey
        ax.vlines(overall, y - 0.42, y + 0.42, colors="#000000", linestyles=":", linewidth=1.4)
        ax.set_yticks(y, names)
        ax.set_ylim(len(names) - 0.5, -0.5)
        ax.set_xlim(left=0)
        ax.grid(axis="y", visible=False)
        ax.set_title(textwrap.fill(title, 70), loc="left")
        ax.set_xlabel(xlabel)
        handles = [
            Patch(**styles[0], label=labels[0]),
            Patch(**styles[1], label=labels[1]),
            Line2D([], [], color="#000000", linestyle=":", linewidth=1.4, label=labels[2]),
        ]
        fig.legend(handles=handles, frameon=False, loc="outside lower center", ncols=3)
    return fig
