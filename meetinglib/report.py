"""The data report as display-ready pieces, so the notebook stays a list of calls.

``DataReport.open(...)`` loads the week once (from the runner's snapshot or from the
source); each method returns something Jupyter displays: a heading, a table, a
chart. All text comes through :mod:`meetinglib.i18n`; all figures come from
:mod:`meetinglib.kpis`, so the handout and the machine-readable files agree.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from IPython.display import HTML, Image, Markdown
from matplotlib.figure import Figure

from . import kpis, plots
from .dataset import WeekData, load_week
from .i18n import label_or, t
from .params import load_params
from .schema import ORDER_TYPES
from .weeks import IsoWeek, Window

STAGES = ("created_paid", "paid_shipped", "shipped_delivered", "created_delivered")
# A carrier-region cell is "the" late-delivery finding only with this many judged
# deliveries, a rise of at least MIN_LATE_RISE in its late share, and a rise of at least
# MIN_LATE_Z binomial standard errors over its history: a 6 x 4 grid of cells always
# has one that got worse by chance.
MIN_CELL_DELIVERIES = 20
MIN_LATE_RISE = 0.10
MIN_LATE_Z = 3.5


def fmt_value(value: float, unit: str, currency: str = "CNY") -> str:
    """A KPI value for people: shares as %, hours with one decimal, counts with separators."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if unit == "share":
        return f"{value:.1%}"
    if unit == "hours":
        return f"{value:,.1f} h"
    if unit == "currency":
        return f"{currency} {value:,.0f}"
    return f"{value:,.0f}"


def fmt_change(this: float, last: float, unit: str) -> str:
    """Change from last week: points for shares, absolute plus relative otherwise."""
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in (this, last)):
        return "–"
    diff = this - last
    if unit == "share":
        return f"{diff * 100:+.1f} pp"
    rel = f" ({diff / last:+.1%})" if last else ""
    if unit == "hours":
        return f"{diff:+.1f} h{rel}"
    return f"{diff:+,.0f}{rel}"


def chart(fig: Figure) -> Image:
    """A figure as an embedded PNG whose alternative text is its title (the finding)."""
    return Image(plots.png_bytes(fig), metadata={"alt": plots.title_of(fig)})


class DataReport:
    """The week's data report, computed once and displayed piece by piece."""

    def __init__(self, data: WeekData, lang: str | None = None):
        self.data = data
        self.lang = lang or data.params.language
        self.orders = data.tables["orders"]
        self.sla_hours = data.params.sla.ship_hours

    @classmethod
    def open(
        cls,
        params_files: Sequence[str | Path],
        week: str | None = None,
        snapshot: str | Path | None = None,
        lang: str | None = None,
    ) -> DataReport:
        """Load the week: the runner's validated snapshot if given, else the source."""
        params = load_params(*params_files)
        data = WeekData.load(Path(snapshot), params) if snapshot else load_week(params, week)
        return cls(data, lang)

    # --- text -------------------------------------------------------------------------

    def _t(self, key: str, **fields: object) -> str:
        return t(key, self.lang, **fields)

    def title(self) -> Markdown:
        w = self.data.window
        sub = self._t(
            "report.subtitle",
            company=self.data.params.company,
            week=self.data.week,
            start=w.start.strftime("%Y-%m-%d"),
            end=(w.end - pd.Timedelta(days=1)).strftime("%Y-%m-%d"),
            tz=self.data.tz,
        )
        return Markdown(f"# {self._t('report.title')}\n\n{html.escape(sub)}")

    def section(self, key: str) -> Markdown:
        return Markdown(f"## {self._t(f'report.{key}')}")

    def _order_type(self, code: str) -> str:
        return self._t(f"order_type.{code}")

    # --- headline -----------------------------------------------------------------------

    @cached_property
    def headline(self) -> pd.DataFrame:
        return kpis.headline(
            self.orders, self.data.window, self.data.previous_window, self.sla_hours
        )

    def headline_table(self) -> HTML:
        cur = self.data.params.currency
        rows = []
        for row in self.headline.itertuples():
            arrow = ""
            comparable = not (math.isnan(row.this_week) or math.isnan(row.last_week))
            if comparable and row.this_week != row.last_week:
                up = row.this_week > row.last_week
                good = up == bool(row.higher_is_better)
                css = "ml-status-on" if good else "ml-status-off"
                arrow = f' <span class="{css}">{"▲" if up else "▼"}</span>'
            rows.append(
                {
                    self._t("word.kpi"): self._t(f"kpi.{row.key}"),
                    self._t("word.this_week"): fmt_value(row.this_week, row.unit, cur),
                    self._t("word.last_week"): fmt_value(row.last_week, row.unit, cur),
                    self._t("word.change"): fmt_change(row.this_week, row.last_week, row.unit)
                    + arrow,
                }
            )
        table = pd.DataFrame(rows)
        return HTML(table.to_html(index=False, escape=False, border=0))

    # --- volume -------------------------------------------------------------------------

    def volume_chart(self) -> Image:
        by_day = kpis.order_volume_by_day(self.orders, self.data.window)
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

    # --- efficiency ---------------------------------------------------------------------

    def stage_chart(self) -> Image:
        this = kpis.stage_durations(self.orders, self.data.window)
        last = kpis.stage_durations(self.orders, self.data.previous_window)
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

    def stage_table(self) -> HTML:
        this = kpis.stage_durations(self.orders, self.data.window)
        table = pd.DataFrame(
            {
                self._t("word.kpi"): [self._t(f"kpi.stage.{s}") for s in STAGES],
                self._t("word.orders"): [f"{int(this.loc[s, 'count']):,}" for s in STAGES],
                self._t("word.median"): [
                    fmt_value(this.loc[s, "median_h"], "hours") for s in STAGES
                ],
                self._t("word.p90"): [fmt_value(this.loc[s, "p90_h"], "hours") for s in STAGES],
            }
        )
        return HTML(table.to_html(index=False, border=0))

    def backlog_chart(self) -> Image:
        """Overdue backlog at week end per warehouse, this week against last week."""
        this = kpis.backlog_by(self.orders, self.data.window.end, self.sla_hours, "warehouse")
        last = kpis.backlog_by(
            self.orders, self.data.previous_window.end, self.sla_hours, "warehouse"
        )
        overdue = this["overdue"].rename(index=self._missing)
        total = int(overdue.sum())
        if not total:
            return Image(
                plots.png_bytes(plots.message(self._t("chart.backlog.none"), lang=self.lang))
            )
        top = overdue.idxmax()
        fig = plots.paired_hbars(
            overdue,
            last["overdue"].rename(index=self._missing),
            title=self._t(
                "chart.backlog.title",
                warehouse=top,
                overdue=int(overdue.max()),
                total=total,
                share=overdue.max() / total,
            ),
            xlabel=self._t("chart.backlog.xlabel"),
            labels=(self._t("word.this_week"), self._t("word.last_week")),
            lang=self.lang,
        )
        return chart(fig)

    def _missing(self, value: object) -> object:
        return self._t("word.missing") if value == kpis.MISSING else value

    # --- logistics ---------------------------------------------------------------------

    def late_delivery_finding(self) -> tuple[str, str, float, float] | None:
        """The carrier-region cell whose late share rose most above its history, if any.

        Returns (carrier, region, late share this week, late share last week). The
        baseline is the cell's pooled late share over the history weeks (the overall
        share for a cell new this week); a cell qualifies with MIN_CELL_DELIVERIES judged
        deliveries, a rise of MIN_LATE_RISE and MIN_LATE_Z binomial standard errors.
        """
        window = self.data.window
        history = Window(self._complete_history_start(), window.start)
        this = kpis.late_delivery_by(self.orders, window, "carrier", "region")
        base = kpis.late_delivery_by(self.orders, history, "carrier", "region")
        this = this[this["delivered"] >= MIN_CELL_DELIVERIES]
        if this.empty:
            return None
        overall = 1 - kpis.on_time_delivery_rate(self.orders, history)
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
        last = kpis.late_delivery_by(self.orders, self.data.previous_window, "carrier", "region")
        last_rate = last["late_rate"].get((carrier, region), float("nan"))
        rate = float(this.loc[(carrier, region), "late_rate"])
        return str(carrier), str(region), rate, float(last_rate)

    def _complete_history_start(self) -> pd.Timestamp:
        """Start of the first history week whose deliveries are not cut off by the data.

        Deliveries in the first week of an extract only come from orders created in it,
        the quick ones; a baseline including that week understates lateness. Weeks
        starting less than a week after the first order are skipped.
        """
        first_order = self.orders["created_at"].min()
        start = self.data.history_weeks[0].start(self.data.tz)
        if pd.isna(first_order):
            return start
        ready = IsoWeek.containing(first_order + pd.Timedelta(days=7)).next().start(self.data.tz)
        return min(max(start, ready), self.data.window.start)

    def delivery_heatmap(self) -> Image:
        """Late-delivery share per region x carrier, the most worsened cell outlined."""
        cells = kpis.late_delivery_by(self.orders, self.data.window, "region", "carrier")
        rates = cells["late_rate"].unstack("carrier")
        counts = cells["delivered"].unstack("carrier").fillna(0)
        finding = self.late_delivery_finding()
        if finding:
            carrier, region, rate, last = finding
            title = self._t(
                "chart.late.title", carrier=carrier, region=region, rate=rate, last=last
            )
            highlight = (region, carrier)
        else:
            overall = 1 - kpis.on_time_delivery_rate(self.orders, self.data.window)
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

    # --- abnormal orders ------------------------------------------------------------------

    def pareto_chart(self) -> Image:
        pareto = kpis.abnormal_orders(self.orders, self.data.window)
        if pareto.empty:
            fig = plots.message(self._t("chart.pareto.empty"), lang=self.lang)
            return chart(fig)
        counts = pareto["count"].rename(
            index=lambda c: label_or(f"exception.{c}", self.lang, str(c))
        )
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

    # --- data quality -------------------------------------------------------------------

    def quality_note(self) -> HTML:
        q = self.data.quality
        loaded = sum(q.loaded.values())
        if not q.total_quarantined:
            text = self._t("quality.clean", rows=loaded)
            return HTML(f'<p class="ml-note">{html.escape(text)}</p>')
        text = self._t("quality.summary", rows=loaded, quarantined=q.total_quarantined)
        table = q.to_frame(self.lang).to_html(index=False, border=0)
        return HTML(f'<p class="ml-note">{html.escape(text)}</p>{table}')

    def quality_table(self) -> HTML:
        q = self.data.quality
        frame = pd.DataFrame(
            {
                self._t("quality.table"): list(q.loaded),
                self._t("quality.loaded"): [f"{q.loaded[k]:,}" for k in q.loaded],
                self._t("quality.kept"): [f"{q.kept.get(k, 0):,}" for k in q.loaded],
                self._t("quality.quarantined"): [
                    f"{q.loaded[k] - q.kept.get(k, 0):,}" for k in q.loaded
                ],
            }
        )
        return HTML(frame.to_html(index=False, border=0))
