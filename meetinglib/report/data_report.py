"""The data report as display-ready pieces, so the notebook stays a list of calls.

``DataReport.open(...)`` loads the week once (from the runner's snapshot or from the
source); each method returns something Jupyter displays: a heading, a table, a chart, a
list of sentences. All text comes through :mod:`meetinglib.core.i18n`; all figures come from
:mod:`meetinglib.analysis.kpis`.

One computation feeds everything: ``kpi_table`` holds every KPI x segment of the week
(this week, last week, target, status, anomaly flag), computed from the weekly series of
``kpis.weekly_kpis`` and judged by :mod:`meetinglib.analysis.anomalies`. The headline, the
section tables, "What changed" and ``export`` (``kpis.csv``) all read it, so the handout
and the machine-readable file cannot disagree.

The handout opens with a one-page summary (``summary``: headline KPIs with status, the
most severe changes and bottlenecks, open and overdue actions, the data-quality warning)
and a table of contents (``contents``); then the sections in meeting order (see
``SECTIONS``), each heading carrying its key as anchor (``#changes``).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import ibis.expr.types as ir
import numpy as np
import pandas as pd
from IPython.display import HTML, Image
from markupsafe import Markup
from matplotlib.figure import Figure

from meetinglib.analysis import anomalies, kpis, sections
from meetinglib.analysis.kpi_table import (
    MIN_OBSERVATIONS,
    NOT_AVAILABLE,
    KpiTable,
    complete_history_start,
    kpi_table,
    root_changes,
    segment_label,
    week_windows,
    with_roots,
    write_kpis_csv,
)
from meetinglib.core.fmt import fmt_change, fmt_value
from meetinglib.core.i18n import CodeLabel, code_name, label_or, t
from meetinglib.core.schema import ORDER_TYPES
from meetinglib.core.weeks import Window
from meetinglib.data import engine
from meetinglib.data.dataset import WeekData, notebook_week, short_of
from meetinglib.report import charts as plots
from meetinglib.report.render import frame_table, macro, render, table


def code_shown(label: CodeLabel | None, dimension: str, value: Any, lang: str) -> str:
    """A value of the data's ``dimension`` (warehouse, carrier...) for people in ``lang``:
    "missing" for an empty one (``kpis.MISSING``), else its name from ``label`` (e.g.
    ``Params.label``: params ``labels``), else the code as it is."""
    if value == kpis.MISSING:
        return t("word.missing", lang)
    return code_name(label, dimension, value, lang)


# The handout's order, which is the meeting's: the summary on page one, last week's
# actions, the headline, what changed and where the time goes (what the meeting
# discusses), then the departments' figures, next week's plan and the appendix.
SECTIONS = (
    "actions",
    "headline",
    "changes",
    "flow",
    "volume",
    "efficiency",
    "abnormal",
    "logistics",
    "service",
    "after_sales",
    "finance",
    "plan",
    "appendix",
)
# Section titles kept by the modules that draw them.
SECTION_TITLE_KEYS = {
    "actions": "actions.section.title",
    "flow": "flow_section.heading",
}
# Page one: this many of the most severe changes, bottleneck findings and overdue items.
SUMMARY_ITEMS = 3
# The data-quality warnings page one shows, for the run to pass on (``DataReport.export``).
REPORT_WARNINGS = "report_warnings.json"
# The share of the week's orders without an amount from which page one warns that GMV
# reads low (an order without one counts 0).
EMPTY_AMOUNT_SHARE = 0.01
STAGES = ("created_paid", "paid_shipped", "shipped_delivered", "created_delivered")
# A carrier-region cell is "the" late-delivery finding only with this many judged
# deliveries, a rise of at least MIN_LATE_RISE in its late share, and a rise of at least
# MIN_LATE_Z binomial standard errors over its history: a 6 x 4 grid of cells always
# has one that got worse by chance.
MIN_CELL_DELIVERIES = 20
MIN_LATE_RISE = 0.10
MIN_LATE_Z = 3.5
# The KPIs of the department sections' tables, in display order.
SERVICE_KPIS = (
    "tickets_per_1000",
    "complaint_rate",
    "first_response_median_h",
    "first_response_p90_h",
    "resolution_median_h",
    "resolution_p90_h",
    "csat",
)
AFTER_SALES_KPIS = (
    "return_rate",
    "refund_rate",
    "refund_amount",
    "case_cycle_median_d",
    "case_cycle_p90_d",
)
FINANCE_KPIS = (
    "gmv",
    "refund_amount",
    "net_revenue",
    "settled_amount",
    "pending_amount",
    "settlement_lag_median_d",
    "settlement_lag_p90_d",
)
SPARK_WEEKS = 12
MAX_CHANGES = 12
EXAMPLES = 10
STATUS_SYMBOL = {"on_target": "✔", "at_risk": "⚠", "off_target": "✖"}
STATUS_CLASS = {
    "on_target": "ml-status-on",
    "at_risk": "ml-status-risk",
    "off_target": "ml-status-off",
}


def chart(fig: Figure) -> Image:
    """A figure as an embedded PNG whose alternative text is its title (the finding)."""
    return Image(plots.png_bytes(fig), metadata={"alt": plots.title_of(fig)})


def _nan(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _late_share(cells: pd.DataFrame) -> float:
    """Late deliveries / judged deliveries over the cells of ``late_delivery_by``."""
    judged = int(cells["delivered"].sum())
    return int(cells["late"].sum()) / judged if judged else float("nan")


def caption(text: str) -> Markup:
    """A caption line above a table (escaped)."""
    return macro("note", text, "ml-caption")


def html(*pieces: Markup | HTML) -> HTML:
    """Trusted pieces (templates' output) as one displayable block."""
    return HTML("".join(str(p.data) if isinstance(p, HTML) else str(p) for p in pieces))


class Findings(Protocol):
    """A section that can name its top findings for the summary (``FlowSection``)."""

    def summary_findings(self, limit: int) -> list[str]: ...


class ActionDigest(Protocol):
    """Last week's actions in a few figures for the summary (``ActionsSection``)."""

    def digest(self, limit: int) -> dict[str, Any]: ...


class DataReport:
    """The week's data report, computed once and displayed piece by piece."""

    def __init__(self, data: WeekData, lang: str | None = None):
        self.data = data
        self.lang = lang or data.params.language
        # The section tables are aggregates the engine computes from the week's tables;
        # no row table comes back here.
        self.con = engine.shared(data.params.engine)
        self.tables = data.engine_tables()
        self._stage_cache: dict[tuple[Any, ...], pd.DataFrame] = {}
        self._told_absent: set[str] = set()  # tables whose absence a section has noted
        self.sla_hours = data.params.sla.ship_hours
        self.currency = data.params.currency
        where = ", ".join(str(f) for f in data.params.files) or "the params"
        self.targets = kpis.resolve_targets(data.params.targets, where)
        # The headline KPIs, and after them, in the catalogue's order, every other KPI
        # the params give a target: a target set is a figure the meeting wants judged.
        self.headline = (
            *kpis.HEADLINE,
            *(k for k in kpis.CATALOGUE if k in self.targets and k not in kpis.HEADLINE),
        )

    @classmethod
    def open(
        cls,
        params_files: Sequence[str | Path],
        week: str | None = None,
        snapshot: str | Path | None = None,
        lang: str | None = None,
    ) -> DataReport:
        """Load the week: the runner's validated snapshot if given, else the source."""
        return cls(notebook_week(params_files, week, snapshot), lang)

    # --- text -------------------------------------------------------------------------

    def _t(self, key: str, **fields: object) -> str:
        return t(key, self.lang, **fields)

    def _fmt(self, value: float, unit: str) -> str:
        return fmt_value(value, unit, self.currency, self.lang)

    def _note(self, text: str) -> HTML:
        return html(macro("note", text))

    def title(self) -> HTML:
        w = self.data.window
        sub = self._t(
            "report.subtitle",
            company=self.data.params.company,
            week=self.data.week,
            start=w.start.strftime("%Y-%m-%d"),
            end=(w.end - pd.Timedelta(days=1)).strftime("%Y-%m-%d"),
            tz=self.data.tz,
        )
        return html(macro("title", self._t("report.title"), sub))

    def section_title(self, key: str) -> str:
        """The title of section ``key`` in the report's language."""
        return self._t(SECTION_TITLE_KEYS.get(key, f"report.{key}"))

    def section(self, key: str) -> HTML:
        """A section heading with its key as anchor, e.g. ``section("logistics")``."""
        return html(macro("heading", 2, key, self.section_title(key)))

    def subsection(self, key: str) -> HTML:
        return html(macro("heading", 3, key, self._t(f"report.{key}")))

    def contents(self) -> HTML:
        """The table of contents: every section, linked to its heading."""
        entries = [(key, self.section_title(key)) for key in SECTIONS]
        return html(macro("contents", self._t("report.contents"), entries))

    # --- page one ---------------------------------------------------------------------------

    def summary_table(self) -> Markup:
        """The headline KPIs in five columns: this week, change, target, status."""
        header = [
            self._t("word.kpi"),
            self._t("word.this_week"),
            self._t("word.change"),
            self._t("word.target"),
            self._t("word.status"),
        ]
        rows = []
        for key in self.headline:
            row = self.kpi_result.row(key)
            if row is None:
                continue
            rows.append(
                [
                    str(row["label"]),
                    self._fmt(row["this_week"], row["unit"]),
                    self._change_cell(row),
                    self._target_cell(row),
                    self._status_cell(row),
                ]
            )
        return table(header, rows, numeric=[1, 2, 3], wide=False)

    def summary(self, flow: Findings | None = None, actions: ActionDigest | None = None) -> HTML:
        """Page one: headline KPIs with status, the most severe changes and bottlenecks
        (linked to their sections), open and overdue actions, the data-quality warning."""
        see = self._t
        changes = [
            (self._severity_cell(severity), sentence)
            for severity, sentence, _, _ in self.changes_by_root()[:SUMMARY_ITEMS]
        ]
        warning = self.quality_warning() or None
        context: dict[str, Any] = {
            "heading": self._t("report.summary"),
            "kpis_heading": self._t("summary.kpis"),
            "kpis": self.summary_table(),
            "quality": warning
            and {
                "title": self._t("summary.quality"),
                "text": warning,
                "link": see("summary.see", section=self.section_title("appendix")),
            },
            "changes": {
                "heading": self._t("summary.changes"),
                "entries": changes,
                "empty": self._changes_summary(),
                "link": see("summary.see", section=self.section_title("changes")),
            },
            "flow": flow
            and {
                "heading": self._t("summary.flow"),
                "entries": flow.summary_findings(SUMMARY_ITEMS),
                "empty": self._t("flow_section.none", week=str(self.data.week)),
                "link": see("summary.see", section=self.section_title("flow")),
            },
            "actions": None,
        }
        if actions is not None:
            digest = actions.digest(SUMMARY_ITEMS)
            context["actions"] = {
                "heading": self._t("summary.actions"),
                "text": self._t(
                    "summary.actions_text",
                    open=digest["open"],
                    overdue=digest["overdue"],
                    escalated=digest["escalated"],
                ),
                "overdue": digest["overdue_items"],
                "link": see("summary.see", section=self.section_title("actions")),
            }
        return html(render("sections/summary.html.j2", **context))

    def _order_type(self, code: str) -> str:
        return self._t(f"order_type.{code}")

    def _kpi(self, key: str) -> str:
        return self._t(f"kpi.{key}")

    def _segment(self, dimension: str, segment: str, order_type: str) -> str:
        return segment_label(dimension, segment, order_type, self.lang, self.data.params.label)

    def _name(self, dimension: str, value: Any) -> str:
        """A value of the data's ``dimension`` for people (see ``code_shown``)."""
        return code_shown(self.data.params.label, dimension, value, self.lang)

    # --- the one computation: meetinglib.analysis.kpi_table -----------------------------

    @cached_property
    def kpi_result(self) -> KpiTable:
        """The week's KPI table and the weekly series behind it."""
        return kpi_table(self.data, self.lang)

    @cached_property
    def orders(self) -> ir.Table:
        """The orders this week's and last week's breakdowns read, kept in the engine."""
        windows = [self.data.previous_window, self.data.window]
        return sections.report_orders(self.con, self.tables["orders"], windows)

    @cached_property
    def _values(self) -> dict[str, list[str]]:
        return sections.dimension_values(
            self.con, self.tables["orders"], ("channel", "warehouse", "carrier", "region")
        )

    def _levels(self, by: str | None) -> list[str]:
        """Every value of ``by`` in the loaded orders: a breakdown lists them, zeros too."""
        return self._values.get(by, []) if by else []

    @cached_property
    def windows(self) -> list[Window]:
        """The history weeks and the report week, oldest first."""
        return week_windows(self.data)

    @property
    def week_labels(self) -> list[str]:
        return self.kpi_result.week_labels

    def _complete_history_start(self) -> pd.Timestamp:
        return complete_history_start(self.data)

    @property
    def _wide(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        return self.kpi_result.values, self.kpi_result.counts, self.kpi_result.errors

    @property
    def kpi_table(self) -> pd.DataFrame:
        """One row per KPI x segment (the rows of ``kpis.csv``); see ``analysis.kpi_table``."""
        return self.kpi_result.table

    @cached_property
    def roots(self) -> pd.DataFrame:
        """The week's changes for the worse as root findings (``kpi_table.root_changes``)."""
        return root_changes(self.data, self.kpi_result, self.lang)

    @cached_property
    def changes(self) -> pd.DataFrame:
        """The week's changes for the worse, most severe first (rows of ``kpi_table``)."""
        return self.kpi_result.changes

    def export(self, out_dir: str | Path | None) -> None:
        """Write ``kpis.csv`` (``kpi_table``) and the week's data-quality warnings
        (REPORT_WARNINGS, a JSON list of texts; the run relays them to the manifest and
        the terminal) into ``out_dir``; nothing when it is None."""
        if out_dir is not None:
            write_kpis_csv(with_roots(self.kpi_table, self.roots, self.lang), out_dir)
            warnings = json.dumps(self.quality_warnings(), ensure_ascii=False, indent=1)
            (Path(out_dir) / REPORT_WARNINGS).write_text(warnings + "\n", encoding="utf-8")

    # --- shared table pieces ---------------------------------------------------------------

    def _change_text(self, row: pd.Series) -> str:
        return fmt_change(row["this_week"], row["last_week"], row["unit"], self.lang, self.currency)

    def _change_cell(self, row: pd.Series) -> Markup:
        text = self._change_text(row)
        if _nan(row["this_week"]) or _nan(row["last_week"]) or row["this_week"] == row["last_week"]:
            return macro("change", text, "", "")
        up = row["this_week"] > row["last_week"]
        good = up == bool(row["higher_is_better"])
        css = "ml-status-on" if good else "ml-status-off"
        return macro("change", text, css, "▲" if up else "▼")

    def _target_cell(self, row: pd.Series) -> str:
        if _nan(row["target"]):
            return "–"
        sign = "≥" if row["higher_is_better"] else "≤"
        return f"{sign} {self._fmt(row['target'], row['unit'])}"

    def _status_cell(self, row: pd.Series) -> Markup | str:
        status = row["status"]
        if not status:
            return "–"
        if status == NOT_AVAILABLE:
            # What the source lacks, instead of a zero judged against a target.
            return macro("span", str(row["note"]), "ml-not-available")
        word = self._t(f"status.{status}")
        return macro("status", STATUS_CLASS[status], STATUS_SYMBOL[status], word)

    @cached_property
    def _trend_weeks(self) -> int:
        """The weeks the sparklines span: SPARK_WEEKS, or fewer from the first week with
        orders (an export of four weeks draws four, and says so)."""
        created = self.kpi_result.weekly("orders_created").iloc[-SPARK_WEEKS:]
        with_orders = np.flatnonzero(created.fillna(0).to_numpy(dtype=float) > 0)
        return len(created) - int(with_orders[0]) if len(with_orders) else len(created)

    def _sparkline(self, row: pd.Series) -> Markup:
        values = self.kpi_result.weekly(row["kpi"]).iloc[-self._trend_weeks :]
        target = None if _nan(row["target"]) else float(row["target"])
        fig = plots.sparkline(values.to_numpy(dtype=float), target=target, lang=self.lang)
        data = base64.b64encode(plots.sparkline_png(fig)).decode("ascii")
        finite = values.dropna()
        alt = self._t(
            "headline.spark_alt",
            kpi=row["label"],
            weeks=len(values),
            first=self._fmt(finite.iloc[0], row["unit"]) if len(finite) else "–",
            last=self._fmt(finite.iloc[-1], row["unit"]) if len(finite) else "–",
        )
        return macro("img", data, alt, 165, 42)

    def kpi_rows_table(self, keys: Sequence[str], *, sparklines: bool = False) -> HTML:
        """This week, last week, change, target and status of KPIs (all orders)."""
        header = [
            self._t("word.kpi"),
            self._t("word.this_week"),
            self._t("word.last_week"),
            self._t("word.change"),
        ]
        if sparklines:
            header.append(self._t("headline.trend", weeks=self._trend_weeks))
        header += [self._t("word.target"), self._t("word.status")]
        rows = []
        for key in keys:
            row = self.kpi_result.row(key)
            if row is None:
                continue
            cells: list[str | Markup] = [
                str(row["label"]),
                self._fmt(row["this_week"], row["unit"]),
                self._fmt(row["last_week"], row["unit"]),
                self._change_cell(row),
            ]
            if sparklines:
                cells.append("" if row["status"] == NOT_AVAILABLE else self._sparkline(row))
            cells += [self._target_cell(row), self._status_cell(row)]
            rows.append(cells)
        if not rows:
            return self._note(self._t("report.no_data"))
        return html(table(header, rows, numeric=[1, 2, 3, len(header) - 2]))

    def order_type_table(self, keys: Sequence[str], notes: bool = True) -> HTML:
        """KPIs this week per order type (with the change from last week); with ``notes``,
        why the KPIs the source cannot support are not available, below the table."""
        types = [kpis.ALL, *ORDER_TYPES]
        header = [self._t("word.kpi")] + [
            self._order_type(o) if o != kpis.ALL else self._t("order_type.all") for o in types
        ]
        rows = []
        absent = self._unsupported(keys)
        for key in keys:
            cells: list[str | Markup] = []
            for order_type in types:
                if key in absent:
                    cells.append(self._t("status.not_available"))
                    continue
                row = self.kpi_result.row(key, order_type=order_type)
                if row is None:
                    cells.append("–")
                    continue
                value = self._fmt(row["this_week"], row["unit"])
                change = self._change_text(row)
                cells.append(macro("small_below", value, "" if change == "–" else change))
            if any(c != "–" for c in cells):
                rows.append([self._kpi(key), *cells])
        if not rows:
            return self._note(self._t("report.no_data"))
        found = table(header, rows, numeric=range(1, len(header)))
        return html(found, *absent.values()) if notes else html(found)

    def _unsupported(self, keys: Sequence[str]) -> dict[str, HTML]:
        """Of ``keys``, the KPIs the source cannot support, each with its note "... not
        available — the source has no ..." (``_not_available``): a table shows the word
        in their cells and the note below it, not "–", which reads as "no orders"."""
        return {k: note for k in keys if (note := self._not_available(k)) is not None}

    def _segment_tables(self, keys: Sequence[str]) -> HTML:
        """``keys`` per order type and per warehouse, then why those the source cannot
        support are not available."""
        absent = self._unsupported(keys)
        return html(
            self._segment_rows_table(keys, "order_type", absent),
            self._segment_rows_table(keys, "warehouse", absent),
            *absent.values(),
        )

    def _segment_rows_table(
        self, keys: Sequence[str], dimension: str, absent: Mapping[str, HTML]
    ) -> HTML:
        """KPIs (columns: this week / last week) per value of a dimension or order type;
        those of ``absent`` (``_unsupported``) say "not available" in their cells."""
        frame = self.kpi_table
        if dimension == "order_type":
            segments = [(kpis.ALL, kpis.ALL, o) for o in (kpis.ALL, *ORDER_TYPES)]
        else:
            values = frame.loc[
                (frame["kpi"].isin(keys)) & (frame["dimension"] == dimension), "segment"
            ].unique()
            segments = [(kpis.ALL, kpis.ALL, kpis.ALL)] + [(dimension, s, kpis.ALL) for s in values]
        header = [self._t(f"word.{dimension}")]
        for key in keys:
            header += [self._t("table.this_week_of", kpi=self._kpi(key)), self._t("word.last_week")]
        rows = []
        for dim, seg, order_type in segments:
            name = (
                self._t("order_type.all")
                if dim == kpis.ALL and order_type == kpis.ALL
                else (
                    self._order_type(order_type)
                    if order_type != kpis.ALL
                    else self._name(dimension, seg)
                )
            )
            cells = [name]
            for key in keys:
                row = self.kpi_result.row(key, dim, seg, order_type)
                if key in absent:
                    cells += [self._t("status.not_available")] * 2
                elif row is None:
                    cells += ["–", "–"]
                else:
                    cells += [
                        self._fmt(row["this_week"], row["unit"]),
                        self._fmt(row["last_week"], row["unit"]),
                    ]
            rows.append(cells)
        return html(table(header, rows, numeric=range(1, len(header))))

    # --- 1. headline -----------------------------------------------------------------------

    def headline_table(self) -> HTML:
        """The handful of KPIs that matter (and those given a target): this week, last
        week, trend, target, status."""
        return self.kpi_rows_table(self.headline, sparklines=True)

    def _not_available(self, kpi: str) -> HTML | None:
        """A note "not available — the source has no ..." when the source cannot support
        ``kpi``; None when it can. Sections show it instead of zeros."""
        row = self.kpi_result.row(kpi)
        if row is None or row["status"] != NOT_AVAILABLE:
            return None
        return self._note(f"{row['label']}: {row['note']}")

    def quality_warning(self) -> str:
        """The data-quality warning of the week (empty when no table is past the limit)."""
        return " ".join(self.quality_warnings())

    def quality_warnings(self) -> list[str]:
        """The week's data-quality warnings, one text each: tables past the quarantine
        limit, then an incomplete week (``short_week``), then amounts missing
        (``empty_amounts``)."""
        return list(self._quality_warnings)

    @cached_property
    def _quality_warnings(self) -> tuple[str, ...]:
        # read by page one twice and by the export: worked out once
        quality = self.data.quality
        texts = [
            self._t(
                "quality.week_warning",
                table=table,
                set_aside=aside,
                rows=rows,
                share=f"{aside / rows:.1%}",
                limit=f"{quality.max_share:.1%}",
            )
            for table, aside, rows in quality.week_warnings
        ]
        short = self.short_week()
        if short is not None:
            orders, median = short
            texts.append(
                self._t("quality.short_week", orders=orders, median=median, share=orders / median)
            )
        empty = self.empty_amounts()
        if empty is not None:
            missing, orders = empty
            texts.append(
                self._t(
                    "quality.empty_amounts", missing=missing, orders=orders, share=missing / orders
                )
            )
        return tuple(texts)

    def empty_amounts(self) -> tuple[int, int] | None:
        """(orders created this week without an amount, orders created this week) when at
        least EMPTY_AMOUNT_SHARE of them have none: GMV counts them as 0. An export's
        "N/A", "-" or "NULL" is an empty cell (validate.MISSING_TOKENS), so a column half
        of "N/A" passes validation and halves GMV without this. None otherwise, and when
        the source has no amount at all (GMV is then not available)."""
        if not self.data.has_column("orders", "amount"):
            return None
        orders = self.tables["orders"]
        week = orders.filter(sections.within(orders.created_at, self.data.window))
        got = self.con.to_pandas(week.aggregate(n=week.count(), filled=week.amount.count()))
        n, filled = int(got["n"].iloc[0]), int(got["filled"].iloc[0])
        if not n or (n - filled) / n < EMPTY_AMOUNT_SHARE:
            return None
        return n - filled, n

    def short_week(self) -> tuple[int, int] | None:
        """(orders created this week, the median of the weeks before) when this week's
        orders fall short of ``quality.complete_week_share`` of that median, as the latest
        complete week is judged (``dataset.short_of``): a week asked for whose data ends
        inside it, whose figures all read low. None otherwise."""
        quality = self.data.params.quality
        series = self.kpi_result.weekly("orders_created")
        if series.empty or pd.isna(series.iloc[-1]):
            return None
        before = series.iloc[:-1].tail(quality.complete_week_history)
        median = short_of(float(series.iloc[-1]), before, quality.complete_week_share)
        return None if median is None else (int(series.iloc[-1]), round(median))

    def headline_note(self) -> HTML:
        """One line pointing at "What changed", after the week's data-quality warning if any."""
        note = self._note(self._changes_summary())
        warning = self.quality_warning()
        if not warning:
            return note
        return html(macro("quality_warning", warning), note)

    def headline_by_order_type(self) -> HTML:
        """The headline KPIs per order type."""
        # the headline table above it says why a KPI is not available
        return self.order_type_table(self.headline, notes=False)

    def _history_points(self) -> int:
        start = self._complete_history_start()
        return sum(1 for w in self.windows[:-1] if w.start >= start)

    def _changes_summary(self) -> str:
        if len(self.changes):
            count = len(self.roots)
            key = "changes.roots.one" if count == 1 else "changes.roots"
            return self._t(key, count=count, series=len(self.changes))
        history = self._history_points()
        if history < anomalies.MIN_HISTORY:
            return self._t("changes.too_little", weeks=history, needed=anomalies.MIN_HISTORY)
        return self._t("changes.none", series=len(self.kpi_table), weeks=history)

    # --- 2. volume -------------------------------------------------------------------------

    def volume_chart(self) -> Image:
        """Orders created per day, stacked by order type (a day without orders shows 0)."""
        by_day = sections.order_volume_by_day(self.con, self.orders, self.data.window)
        types = [c for c in ORDER_TYPES if c in by_day.columns]
        frame = by_day[types]
        days = [self._t(f"weekday.{d.weekday()}") + d.strftime(" %m-%d") for d in frame.index]
        frame = frame.set_axis(days)
        totals = frame.sum(axis=1)
        busiest = totals.idxmax() if totals.sum() else "–"
        fig = plots.stacked_bars(
            frame,
            title=self._t(
                "chart.volume.title",
                total=int(totals.sum()),
                day=busiest,
                count=int(totals.max()) if len(totals) else 0,
            ),
            xlabel=self._t("word.day"),
            ylabel=f"{self._t('word.orders')} ({self._t('unit.orders')})",
            labels=[self._order_type(c) for c in types],
            lang=self.lang,
        )
        return chart(fig)

    def channel_chart(self) -> Image:
        """Orders created per channel, this week against last week."""
        this = sections.order_volume_by(
            self.con, self.orders, self.data.window, "channel", self._levels("channel")
        )
        last = sections.order_volume_by(
            self.con, self.orders, self.data.previous_window, "channel", self._levels("channel")
        )
        # People's names for the channel codes, from the params (per language).
        name = lambda code: self._name("channel", code)  # noqa: E731
        this = this.rename(index=name)
        last = last.rename(index=name).reindex(this.index, fill_value=0)
        if not this.sum():
            return chart(plots.message(self._t("report.no_data"), lang=self.lang))
        change = (this - last) / last.where(last > 0)
        mover = change.abs().idxmax() if change.notna().any() else this.idxmax()
        title = self._t(
            "chart.channels.title",
            top=this.idxmax(),
            share=this.max() / this.sum(),
            mover=mover,
            change=float(change.get(mover, np.nan)) if change.notna().any() else 0.0,
        )
        fig = plots.paired_hbars(
            this.astype(float),
            last.astype(float),
            title=title,
            xlabel=f"{self._t('kpi.orders_created')} ({self._t('unit.orders')})",
            labels=(self._t("word.this_week"), self._t("word.last_week")),
            value_format="{:,.0f}",
            lang=self.lang,
        )
        return chart(fig)

    def cancellation_table(self) -> HTML:
        """Orders created and cancelled per order type, this week and last week."""
        if (missing := self._not_available("cancellation_rate")) is not None:
            return missing
        this = sections.cancellations_by(self.con, self.orders, self.data.window, "order_type")
        last = sections.cancellations_by(
            self.con, self.orders, self.data.previous_window, "order_type"
        )
        header = [
            self._t("word.order_type"),
            self._t("kpi.orders_created"),
            self._t("word.cancelled"),
            self._t("table.this_week_of", kpi=self._kpi("cancellation_rate")),
            self._t("word.last_week"),
        ]
        rows = []
        for code in this.index:
            name = self._order_type(code) if code in ORDER_TYPES else self._missing(code)
            rows.append(
                [
                    name,
                    f"{this.loc[code, 'created']:,}",
                    f"{this.loc[code, 'cancelled']:,}",
                    self._fmt(this.loc[code, "rate"], "share"),
                    self._fmt(last["rate"].get(code, np.nan), "share"),
                ]
            )
        total = self.kpi_result.row("cancellation_rate")
        rows.append(
            [
                self._t("order_type.all"),
                f"{int(this['created'].sum()):,}",
                f"{int(this['cancelled'].sum()):,}",
                self._fmt(total["this_week"], "share") if total is not None else "–",
                self._fmt(total["last_week"], "share") if total is not None else "–",
            ]
        )
        return html(table(header, rows, numeric=[1, 2, 3, 4]))

    # --- 3. processing efficiency ------------------------------------------------------------

    def stage_chart(self) -> Image:
        """P90 hours of each stage, this week against last week."""
        this = self._stages(self.data.window)
        last = self._stages(self.data.previous_window)
        names = {s: self._t(f"kpi.stage.{s}") for s in STAGES}
        p90_this = this["p90_h"].reindex(STAGES).rename(index=names)
        p90_last = last["p90_h"].reindex(STAGES).rename(index=names)
        # The cycle time spans the other stages, so "slowest" is among the three parts.
        parts = p90_this.drop(names["created_delivered"])
        slow = parts.idxmax() if parts.notna().any() else "–"
        fig = plots.paired_hbars(
            p90_this,
            p90_last,
            title=self._t("chart.stages.title", stage=slow, hours=parts.max()),
            xlabel=f"P90 ({self._t('unit.hours')})",
            labels=(self._t("word.this_week"), self._t("word.last_week")),
            lang=self.lang,
        )
        return chart(fig)

    def _stages(self, window: Window, by: str | None = None) -> pd.DataFrame:
        """``sections.stage_durations`` of a window, computed once per window and ``by``."""
        key = (window.start, window.end, by)
        if key not in self._stage_cache:
            levels = self._levels(by)
            found = sections.stage_durations(self.con, self.orders, window, by, levels)
            self._stage_cache[key] = found
        return self._stage_cache[key]

    def stage_table(self, by: str | None = "order_type") -> HTML:
        """Median / P90 hours per stage (rows) for all orders and each value of ``by``."""
        overall = self._stages(self.data.window)
        columns = [(self._t("order_type.all"), overall)]
        if by:
            split = self._stages(self.data.window, by)
            for value in split.index.get_level_values(0).unique():
                name = self._order_type(value) if by == "order_type" else self._name(by, value)
                columns.append((str(name), split.loc[value]))
        header = [self._t("word.stage")] + [name for name, _ in columns]
        rows = []
        for stage in STAGES:
            cells = [self._t(f"kpi.stage.{stage}")]
            for _, stats in columns:
                if stats.loc[stage, "count"] == 0:
                    cells.append("–")
                else:
                    median = self._fmt(stats.loc[stage, "median_h"], "hours")
                    p90 = self._fmt(stats.loc[stage, "p90_h"], "hours")
                    cells.append(f"{median} / {p90}")
            rows.append(cells)
        note = self._t("table.stage.caption")
        return html(caption(note), table(header, rows, numeric=range(1, len(header))))

    def on_time_ship_table(self) -> HTML:
        """On-time ship rate and handling time per order type and per warehouse."""
        return self._segment_tables(("on_time_ship_rate", "handling_median_h", "handling_p90_h"))

    def backlog_chart(self) -> Image:
        """Overdue backlog at week end per warehouse, this week against last week."""
        this = sections.backlog_by(
            self.con,
            self.orders,
            self.data.window.end,
            self.sla_hours,
            "warehouse",
            self._levels("warehouse"),
        )
        last = sections.backlog_by(
            self.con,
            self.orders,
            self.data.previous_window.end,
            self.sla_hours,
            "warehouse",
            self._levels("warehouse"),
        )
        name = lambda code: self._name("warehouse", code)  # noqa: E731
        overdue = this["overdue"].rename(index=name)
        total = int(overdue.sum())
        if not total:
            return chart(plots.message(self._t("chart.backlog.none"), lang=self.lang))
        top = overdue.idxmax()
        fig = plots.paired_hbars(
            overdue,
            last["overdue"].rename(index=name),
            title=self._t(
                "chart.backlog.title",
                warehouse=top,
                overdue=int(overdue.max()),
                total=total,
                share=overdue.max() / total,
            ),
            xlabel=self._t("chart.backlog.xlabel"),
            labels=(self._t("word.this_week"), self._t("word.last_week")),
            value_format="{:,.0f}",
            lang=self.lang,
        )
        return chart(fig)

    def backlog_table(self) -> HTML:
        """Backlog and overdue backlog at week end per order type and per warehouse."""
        return self._segment_tables(("backlog", "overdue_backlog"))

    def _missing(self, value: Any) -> Any:
        return self._t("word.missing") if value == kpis.MISSING else value

    # --- 4. abnormal orders -------------------------------------------------------------------

    def pareto_chart(self) -> Image | HTML:
        """Abnormal orders created this week by exception code, largest first."""
        if (missing := self._not_available("abnormal_rate")) is not None:
            return missing
        pareto = sections.abnormal_orders(self.con, self.orders, self.data.window)
        if pareto.empty:
            return chart(plots.message(self._t("chart.pareto.empty"), lang=self.lang))
        counts = pareto["count"].rename(index=self._exception)
        fig = plots.pareto(
            counts,
            title=self._t(
                "chart.pareto.title", top=counts.index[0], share=float(pareto["share"].iloc[0])
            ),
            ylabel=f"{self._t('word.orders')} ({self._t('unit.orders')})",
            cumulative_label=self._t("word.cumulative_share"),
            lang=self.lang,
        )
        return chart(fig)

    def _exception(self, code: object) -> str:
        return label_or(f"exception.{code}", self.lang, str(code))

    def abnormal_trend_chart(self) -> Image | HTML:
        """Abnormal orders per week of creation, stacked by exception code."""
        if (missing := self._not_available("abnormal_rate")) is not None:
            return missing
        weeks = sections.abnormal_by_week(self.con, self.tables["orders"], self.windows)
        shown = self.kpi_result.weekly("abnormal_rate").notna()
        weeks = weeks[shown.to_numpy()].iloc[-SPARK_WEEKS:]
        if weeks.empty or not weeks.to_numpy().sum():
            return chart(plots.message(self._t("chart.pareto.empty"), lang=self.lang))
        rate = self.kpi_result.weekly("abnormal_rate").dropna()
        title = self._t(
            "chart.abnormal_trend.title",
            count=int(weeks.iloc[-1].sum()),
            rate=float(rate.iloc[-1]),
            median=float(rate.iloc[:-1].median()) if len(rate) > 1 else float("nan"),
            weeks=max(len(rate) - 1, 0),
        )
        frame = weeks.set_axis([w.split("-")[-1] for w in weeks.index])
        fig = plots.stacked_bars(
            frame,
            title=title,
            xlabel=self._t("word.week_created"),
            ylabel=f"{self._t('word.orders')} ({self._t('unit.orders')})",
            labels=[self._exception(c) for c in frame.columns],
            lang=self.lang,
            legend_below=True,
        )
        return chart(fig)

    def abnormal_by_type_table(self) -> HTML:
        """Abnormal-order rate per order type, this week and last, with its top exception."""
        if (missing := self._not_available("abnormal_rate")) is not None:
            return missing
        this = sections.abnormal_by(self.con, self.orders, self.data.window, "order_type")
        last = sections.abnormal_by(self.con, self.orders, self.data.previous_window, "order_type")
        header = [
            self._t("word.order_type"),
            self._t("kpi.orders_created"),
            self._t("kpi.abnormal_orders"),
            self._t("table.this_week_of", kpi=self._kpi("abnormal_rate")),
            self._t("word.last_week"),
            self._t("word.top_exception"),
        ]
        rows = []
        window = self.data.window
        for code in this.index:
            if code not in ORDER_TYPES:
                continue
            of_type = self.orders.filter(self.orders.order_type == code)
            pareto = sections.abnormal_orders(self.con, of_type, window)
            top = "–"
            if not pareto.empty:
                top = f"{self._exception(pareto.index[0])} ({pareto['share'].iloc[0]:.0%})"
            rows.append(
                [
                    self._order_type(code),
                    f"{this.loc[code, 'created']:,}",
                    f"{this.loc[code, 'abnormal']:,}",
                    self._fmt(this.loc[code, "rate"], "share"),
                    self._fmt(last["rate"].get(code, np.nan), "share"),
                    top,
                ]
            )
        return html(table(header, rows, numeric=[1, 2, 3, 4]))

    def abnormal_examples_table(self, limit: int = EXAMPLES) -> HTML:
        """The abnormal orders of the week most in need of follow-up, by order id."""
        if (missing := self._not_available("abnormal_rate")) is not None:
            return missing
        examples = sections.abnormal_examples(
            self.con, self.orders, self.data.window, self.sla_hours, limit
        )
        if examples.empty:
            return self._note(self._t("chart.pareto.empty"))
        header = [
            self._t("col.order_id"),
            self._t("word.order_type"),
            self._t("col.exception"),
            self._t("word.warehouse"),
            self._t("word.carrier"),
            self._t("col.created"),
            self._t("col.status"),
            self._t("col.hours_late"),
            self._t("col.amount", currency=self.currency),
        ]
        rows = []
        for r in examples.itertuples():
            rows.append(
                [
                    r.order_id,
                    self._order_type(r.order_type) if r.order_type in ORDER_TYPES else "–",
                    self._exception(r.exception_code),
                    "–" if _nan(r.warehouse) else self._name("warehouse", r.warehouse),
                    "–" if _nan(r.carrier) else self._name("carrier", r.carrier),
                    r.created_at.strftime("%m-%d %H:%M"),
                    self._t(f"example.{r.status}"),
                    "–" if _nan(r.hours_late) else f"{r.hours_late:,.0f}",
                    "–" if _nan(r.amount) else f"{r.amount:,.2f}",
                ]
            )
        note = self._t("table.examples.caption")
        return html(caption(note), table(header, rows, numeric=[7, 8]))

    # --- 5. logistics -------------------------------------------------------------------------

    def carrier_table(self) -> HTML:
        """Carrier scorecard: volume, on-time delivery, transit median/P90, lost/damaged."""
        this = sections.carrier_scorecard(self.con, self.orders, self.data.window)
        last = sections.carrier_scorecard(self.con, self.orders, self.data.previous_window)
        if this.empty:
            return self._note(self._t("report.no_data"))
        header = [
            self._t("word.carrier"),
            self._t("kpi.orders_shipped"),
            self._t("col.delivered"),
            self._t("kpi.on_time_delivery_rate"),
            self._t("word.change"),
            self._t("kpi.transit_median_h"),
            self._t("kpi.transit_p90_h"),
            self._t("kpi.lost_damaged_rate"),
        ]
        rows = []
        for carrier, r in this.iterrows():
            before = last["on_time_delivery_rate"].get(carrier, np.nan)
            rows.append(
                [
                    self._name("carrier", carrier),
                    f"{int(r['shipped']):,}",
                    f"{int(r['delivered']):,}",
                    self._fmt(r["on_time_delivery_rate"], "share"),
                    fmt_change(r["on_time_delivery_rate"], before, "share", self.lang),
                    self._fmt(r["transit_median_h"], "hours"),
                    self._fmt(r["transit_p90_h"], "hours"),
                    self._fmt(r["lost_damaged_rate"], "share"),
                ]
            )
        return html(table(header, rows, numeric=range(1, 8)))

    def late_delivery_finding(self) -> tuple[str, str, float, float] | None:
        """The carrier-region cell whose late share rose most above its history, if any.

        Returns (carrier, region, late share this week, late share last week). The
        baseline is the cell's pooled late share over the history weeks (the overall
        share for a cell new this week); a cell qualifies with MIN_CELL_DELIVERIES judged
        deliveries, a rise of MIN_LATE_RISE and MIN_LATE_Z binomial standard errors.
        """
        window = self.data.window
        history = Window(self._complete_history_start(), window.start)
        this = sections.late_delivery_by(self.con, self.orders, window, "carrier", "region")
        base = sections.late_delivery_by(
            self.con, self.tables["orders"], history, "carrier", "region"
        )
        # The overall late share: every judged delivery falls in one cell (empty values
        # under MISSING), so the cells' sums are all orders'.
        overall = _late_share(base) if len(base) else _late_share(this)
        this = this[this["delivered"] >= MIN_CELL_DELIVERIES]
        if this.empty:
            return None
        before = base["late_rate"].reindex(this.index).fillna(overall)
        rise = this["late_rate"] - before
        # Floor the baseline so that a cell with no late delivery before is not flagged
        # for a single late parcel.
        p0 = before.clip(lower=0.02, upper=0.98)
        z = rise / np.sqrt(p0 * (1 - p0) / this["delivered"])
        notable = (rise >= MIN_LATE_RISE) & (z >= MIN_LATE_Z)
        if not notable.any():
            return None
        carrier, region = z[notable].idxmax()
        last = sections.late_delivery_by(
            self.con, self.orders, self.data.previous_window, "carrier", "region"
        )
        last_rate = last["late_rate"].get((carrier, region), float("nan"))
        rate = float(this.loc[(carrier, region), "late_rate"])
        return str(carrier), str(region), rate, float(last_rate)

    def delivery_heatmap(self) -> Image | HTML:
        """Late-delivery share per region x carrier, the most worsened cell outlined."""
        if (missing := self._not_available("on_time_delivery_rate")) is not None:
            return missing
        cells = sections.late_delivery_by(
            self.con, self.orders, self.data.window, "region", "carrier"
        )
        if cells.empty:
            return chart(plots.message(self._t("chart.late.none"), lang=self.lang))
        rates = cells["late_rate"].unstack("carrier")
        counts = cells["delivered"].unstack("carrier").fillna(0)
        region_name = lambda code: self._name("region", code)  # noqa: E731
        carrier_name = lambda code: self._name("carrier", code)  # noqa: E731
        rates = rates.rename(index=region_name, columns=carrier_name)
        counts = counts.rename(index=region_name, columns=carrier_name)
        finding = self.late_delivery_finding()
        if finding:
            carrier, region, rate, last = finding
            carrier, region = carrier_name(carrier), region_name(region)
            title = self._t(
                "chart.late.title", carrier=carrier, region=region, rate=rate, last=last
            )
            highlight = (region, carrier)
        else:
            overall = _late_share(cells)
            title = self._t("chart.late.calm", rate=overall)
            highlight = None
        fig = plots.heatmap(
            rates,
            counts=counts,
            title=title,
            xlabel=self._t("word.carrier"),
            ylabel=self._t("word.region"),
            highlight=highlight,
            lang=self.lang,
        )
        return chart(fig)

    def stockout_table(self) -> HTML:
        """Stockout-affected orders and fill rate per warehouse, this week and last."""
        if (missing := self._not_available("stockout_orders")) is not None:
            return missing
        this = sections.stockouts_by(
            self.con, self.orders, self.data.window, "warehouse", self._levels("warehouse")
        )
        last = sections.stockouts_by(
            self.con, self.orders, self.data.previous_window, "warehouse", self._levels("warehouse")
        )
        has_lines = "order_lines" in self.tables
        header = [
            self._t("word.warehouse"),
            self._t("kpi.orders_created"),
            self._t("table.this_week_of", kpi=self._kpi("stockout_orders")),
            self._t("word.last_week"),
            self._t("word.share"),
            self._t("table.this_week_of", kpi=self._kpi("fill_rate")),
            self._t("word.last_week"),
        ]
        rows = []
        for warehouse in [*this.index, kpis.ALL]:
            if warehouse == kpis.ALL:
                name, created = self._t("order_type.all"), int(this["created"].sum())
                stockout, before = int(this["stockout"].sum()), int(last["stockout"].sum())
                fill = self.kpi_result.row("fill_rate")
            else:
                name = self._name("warehouse", warehouse)
                created = int(this.loc[warehouse, "created"])
                stockout = int(this.loc[warehouse, "stockout"])
                before = int(last["stockout"].get(warehouse, 0))
                fill = self.kpi_result.row("fill_rate", "warehouse", str(warehouse))
            rows.append(
                [
                    name,
                    f"{created:,}",
                    f"{stockout:,}",
                    f"{before:,}",
                    self._fmt(stockout / created if created else np.nan, "share"),
                    self._fmt(fill["this_week"], "share") if fill is not None else "–",
                    self._fmt(fill["last_week"], "share") if fill is not None else "–",
                ]
            )
        body = table(header, rows, numeric=range(1, 7))
        if not has_lines:
            return html(caption(self._t("logistics.no_lines")), body)
        return html(body)

    # --- 6. customer service ------------------------------------------------------------------

    def _absent(self, table: str) -> HTML | None:
        """None when the source has ``table``; else the note saying it has not, the first
        time a section asks (the table and the chart after it would say it twice)."""
        if table in self.tables:
            return None
        if table in self._told_absent:
            return HTML("")
        self._told_absent.add(table)
        return self._note(self._t("report.no_table", table=table))

    def service_table(self) -> HTML:
        """Tickets and complaints per 1,000 orders, response and resolution times, CSAT."""
        absent = self._absent("tickets")
        if absent:
            return absent
        opened = sections.tickets_opened(self.con, self.tables["tickets"], self.data.window)
        note = self._t("service.opened", tickets=opened)
        body = self.kpi_rows_table(SERVICE_KPIS)
        by_type = self.order_type_table(("tickets_per_1000", "complaint_rate"))
        return html(caption(note), body, by_type)

    def ticket_category_chart(self) -> Image | HTML:
        """Tickets opened per category, this week against last week."""
        absent = self._absent("tickets")
        if absent:
            return absent
        tickets = self.tables["tickets"]
        this = sections.ticket_categories(self.con, tickets, self.data.window)
        last = sections.ticket_categories(self.con, tickets, self.data.previous_window).reindex(
            this.index, fill_value=0
        )
        if not this.sum():
            return chart(plots.message(self._t("report.no_data"), lang=self.lang))
        order = this.sort_values(ascending=False, kind="stable").index
        names = {c: label_or(f"category.{c}", self.lang, str(self._missing(c))) for c in order}
        this, last = this[order].rename(index=names), last[order].rename(index=names)
        fig = plots.paired_hbars(
            this.astype(float),
            last.astype(float),
            title=self._t(
                "chart.categories.title",
                top=this.index[0],
                count=int(this.iloc[0]),
                share=this.iloc[0] / this.sum(),
            ),
            xlabel=f"{self._t('word.tickets')} ({self._t('unit.tickets')})",
            labels=(self._t("word.this_week"), self._t("word.last_week")),
            value_format="{:,.0f}",
            lang=self.lang,
        )
        return chart(fig)

    # --- 7. after-sales -----------------------------------------------------------------------

    def after_sales_table(self) -> HTML:
        """Return and refund rates, refund amount, case cycle time; per order type too."""
        absent = self._absent("after_sales")
        if absent:
            return absent
        body = self.kpi_rows_table(AFTER_SALES_KPIS)
        by_type = self.order_type_table(("return_rate", "refund_rate", "refund_amount"))
        return html(body, by_type)

    def reasons_chart(self) -> Image | HTML:
        """After-sales cases requested per reason, this week against last week."""
        absent = self._absent("after_sales")
        if absent:
            return absent
        cases = self.tables["after_sales"]
        this = sections.after_sales_reasons(self.con, cases, self.data.window)
        if this.empty or not this.sum():
            return chart(plots.message(self._t("report.no_data"), lang=self.lang))
        last = sections.after_sales_reasons(self.con, cases, self.data.previous_window).reindex(
            this.index, fill_value=0
        )
        names = {r: label_or(f"reason.{r}", self.lang, str(self._missing(r))) for r in this.index}
        this, last = this.rename(index=names), last.rename(index=names)
        fig = plots.paired_hbars(
            this.astype(float),
            last.astype(float),
            title=self._t(
                "chart.reasons.title",
                top=this.index[0],
                share=this.iloc[0] / this.sum(),
                cases=int(this.sum()),
            ),
            xlabel=f"{self._t('word.cases')} ({self._t('unit.cases')})",
            labels=(self._t("word.this_week"), self._t("word.last_week")),
            value_format="{:,.0f}",
            lang=self.lang,
        )
        return chart(fig)

    # --- 8. finance -----------------------------------------------------------------------------

    def finance_table(self) -> HTML:
        """GMV, refunds, net; settled and pending amounts; settlement lag; disputes."""
        body = self.kpi_rows_table(FINANCE_KPIS)
        settlements = self.tables.get("settlements")
        if settlements is None:
            return html(body, caption(self._t("report.no_table", table="settlements")))
        count, amount = sections.disputes(self.con, settlements)
        notes = [self._t("finance.disputes", count=count, amount=self._fmt(amount, "currency"))]
        # Without a settled_at column every settled row lacks its time: that is the
        # export's shape (the settled amount reads not available), not a contradiction.
        has_time = self.data.has_column("settlements", "settled_at")
        count, amount = (
            sections.settled_without_time(self.con, settlements) if has_time else (0, 0.0)
        )
        if count:
            # Their money is in neither amount above: said where Finance reads, not only
            # in the appendix.
            notes.append(
                self._t(
                    "finance.settled_without_time",
                    count=count,
                    amount=self._fmt(amount, "currency"),
                )
            )
        return html(body, *(caption(note) for note in notes))

    def aging_chart(self) -> Image | HTML:
        """Amount awaiting settlement at week end, by days since delivery."""
        absent = self._absent("settlements")
        if absent:
            return absent
        aging = sections.pending_aging(
            self.con, self.tables["settlements"], self.tables["orders"], self.data.window.end
        )
        total = float(aging["amount"].sum())
        if not total:
            return chart(plots.message(self._t("chart.aging.none"), lang=self.lang))
        old = float(aging.loc[["15_30", "over_30"], "amount"].sum())
        fig = plots.bars(
            aging["amount"].rename(index=lambda b: self._t(f"aging.{b}")),
            title=self._t(
                "chart.aging.title", total=self._fmt(total, "currency"), share=old / total
            ),
            xlabel=self._t("chart.aging.xlabel"),
            ylabel=self._t("chart.aging.ylabel", currency=self.currency),
            highlight=[b in ("15_30", "over_30") for b in aging.index],
            lang=self.lang,
        )
        return chart(fig)

    # --- 9. what changed ------------------------------------------------------------------------

    def changes_by_kpi(self) -> list[tuple[str, str, list[str]]]:
        """The changes grouped per KPI, most severe first: (severity, sentence of the most
        severe segment, the other segments flagged for the same KPI)."""
        groups: dict[str, tuple[str, str, list[str]]] = {}
        for r in self.changes.itertuples():
            segment = self._segment(r.dimension, r.segment, r.order_type)
            if r.kpi in groups:
                groups[r.kpi][2].append(segment)
            else:
                groups[r.kpi] = (r.anomaly_severity, r.note, [])
        return list(groups.values())

    def changes_by_root(self) -> list[tuple[str, str, list[str], list[str]]]:
        """The root findings, distinct problems first: (severity, sentence of its most
        severe flag, the other KPIs it moved, the segments whose flags it drives)."""
        out = []
        for r in self.roots.itertuples(index=False):
            lead = r.note
            moved = [self._t(f"kpi.{k}") for k in r.kpis if self._t(f"kpi.{k}") not in lead]
            driven = [self._segment(d, s, o) for d, s, o in r.driven]
            out.append((r.severity, lead, moved, driven))
        return out

    def changes_list(self) -> HTML:
        """The week's changes for the worse, one row per root finding, distinct ones first.

        A row names the KPIs the root moved together and the segments whose flags vanish
        without its orders ("driven by it"); kpis.csv carries the same relation.
        """
        summary = macro("note", self._changes_summary())
        groups = self.changes_by_root()
        if not groups:
            return html(summary)
        shown = groups[:MAX_CHANGES]
        separator = self._t("changes.separator")
        header = [
            self._t("word.severity"),
            self._t("word.what_changed"),
            self._t("changes.moved"),
            self._t("changes.driven"),
        ]
        rows = [
            [
                self._severity_cell(severity),
                sentence,
                separator.join(moved),
                separator.join(driven),
            ]
            for severity, sentence, moved, driven in shown
        ]
        more = Markup("")
        if len(groups) > len(shown):
            hidden = len(groups) - len(shown)
            more = caption(self._t("changes.more", count=hidden))
        return html(summary, table(header, rows), more)

    def _severity_cell(self, severity: str) -> Markup:
        """Dots and a word, so severity reads without colour: ●●● high, ●● medium, ● low."""
        css = "ml-status-off" if severity == "high" else "ml-status-risk"
        dots = "●" * (len(anomalies.SEVERITIES) - anomalies.SEVERITIES.index(severity))
        return macro("status", css, dots, self._t(f"severity.{severity}"))

    # --- 10. appendix ---------------------------------------------------------------------------

    def quality_note(self) -> HTML:
        q = self.data.quality
        loaded = sum(q.loaded.values())
        # rows of other tables whose order is not among those loaded: left out, so said
        left_out = {name: n for name, n in q.no_order.items() if n and name != "orders"}
        lost = (
            " "
            + self._t(
                "quality.no_order_note",
                rows=sum(left_out.values()),
                tables=self._t("quality.separator").join(
                    f"{name} {n:,}" for name, n in left_out.items()
                ),
            )
            if left_out
            else ""
        )
        if not q.entries:
            text = self._t("quality.clean", rows=loaded) + lost
            return html(macro("note", text, "ml-warning")) if lost else self._note(text)
        if not q.total_quarantined:
            # Rows kept but flagged (an unknown value, milestones out of order, a status
            # without its time) are listed as well: nothing set aside is not nothing found.
            text = self._t("quality.flagged", rows=loaded) + lost
            return html(macro("note", text, "ml-warning"), frame_table(q.to_frame(self.lang)))
        text = self._t("quality.summary", rows=loaded, quarantined=q.total_quarantined) + lost
        return html(macro("note", text, "ml-warning"), frame_table(q.to_frame(self.lang)))

    def quality_table(self) -> HTML:
        """Per table, where the rows read went: set aside, outside the weeks the report
        reads, left out because their order was not loaded, and used; they add up."""
        q = self.data.quality
        header = [
            self._t("quality.table"),
            self._t("quality.loaded"),
            self._t("quality.quarantined"),
            self._t("quality.outside"),
            self._t("quality.no_order"),
            self._t("quality.used"),
        ]

        def count(n: int | None) -> str:
            return "–" if n is None else f"{n:,}"

        rows = []
        for name in q.loaded:
            kept = q.kept.get(name, 0)
            used = q.used.get(name)
            # orders are what the others are matched to: none of them lacks its order
            no_order = None if name == "orders" or used is None else q.no_order.get(name, 0)
            outside = None if used is None else kept - used - (no_order or 0)
            rows.append(
                [
                    name,
                    count(q.loaded[name]),
                    count(q.loaded[name] - kept),
                    count(outside),
                    count(no_order),
                    count(used),
                ]
            )
        return html(table(header, rows, numeric=[1, 2, 3, 4, 5]))

    def definitions_table(self) -> HTML:
        """Every KPI of the report: formula, unit and the event placing a row in the week."""
        header = [
            self._t("word.kpi"),
            self._t("word.formula"),
            self._t("word.unit"),
            self._t("word.event"),
        ]
        rows = [
            [
                self._kpi(key),
                self._t(f"formula.{key}", sla=f"{self.sla_hours:g}"),
                self._t(f"unit_name.{spec.unit}", currency=self.currency),
                self._t(f"event.{spec.event}"),
            ]
            for key, spec in kpis.CATALOGUE.items()
        ]
        # Reference text: small type on paper.
        return html(table(header, rows, wide=True))

    def rules_note(self) -> HTML:
        """How "What changed" is decided: the control-chart rules and their parameters."""
        text = self._t(
            "report.rules_text",
            limit=anomalies.LIMIT,
            high=anomalies.HIGH_SIGMAS,
            history=anomalies.MIN_HISTORY,
            run=anomalies.RUN_LENGTH,
            reference=anomalies.MIN_REFERENCE,
            shift=anomalies.RUN_MIN_SHIFT,
            trend=anomalies.TREND_LENGTH,
            change=anomalies.TREND_MIN_CHANGE,
            observations=MIN_OBSERVATIONS,
        )
        return html(caption(text))
