"""The data report's "Next week" section: forecast, its accuracy, resources, special orders.

``PlanSection(data, lang)`` computes :func:`meetinglib.analysis.plan.next_week_plan` once, on
first use; each method returns something Jupyter displays, and ``export`` writes
``plan.csv`` (:func:`meetinglib.analysis.plan.plan_frame`) from the same cached plan, so the
handout and the file agree.

When no plan can be made (too little history, a warehouse or carrier in the data
that params do not list) ``summary`` shows why, in the error's own words after a
translated lead-in, the other pieces show nothing and ``export`` writes no file: the
report is not failed for its plan section.

Shortfalls are marked for readers who cannot tell colours apart and for grey print:
red text, a symbol and the size in words (``▲ short 2``); amber ``△`` for a need
covered at the forecast but not at the interval's upper bound.
"""

from __future__ import annotations

import json
import math
from functools import cached_property
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from IPython.display import HTML, Image
from markupsafe import Markup, escape

from meetinglib.analysis import sections
from meetinglib.analysis.plan import (
    SPECIAL_TYPES,
    NextWeekPlan,
    next_week_plan,
    plan_frame,
)
from meetinglib.core.csvsafe import to_csv as write_csv
from meetinglib.core.errors import MeetingError, SectionError
from meetinglib.core.i18n import t
from meetinglib.core.schema import ORDER_TYPES
from meetinglib.data import engine
from meetinglib.data.dataset import WeekData
from meetinglib.report import charts as plots
from meetinglib.report.data_report import chart, code_shown
from meetinglib.report.render import Trusted, frame_table, macro

PLAN_FILE = "plan.csv"
# The optional sections a data report left out, with why ({section: reason}, JSON), written
# beside the handouts by ``PlanSection.check``; the run lists them and takes the file out.
LEFT_OUT_FILE = "sections_left_out.json"
SPECIAL_LIST_ROWS = 12  # open special orders listed by name; the counts cover all of them
UNUSUAL_LISTED = 5  # unusual days named in the note; the rest are counted
MARKER = "※"  # backtest weeks holding unusual days

_RED = "color:#cf222e;font-weight:bold"
_AMBER = "color:#9a6700"


def _mark(text: str, css: str, style: str) -> Trusted:
    """``text`` escaped inside a span styled by class (handout) and inline (JupyterLab)."""
    return Trusted(macro("span", text, css, style))


def _html_table(frame: pd.DataFrame, index: bool = True) -> HTML:
    """The frame through the one table helper (text left, figures right, one header row)."""
    return HTML(str(frame_table(frame.astype(object), index=index)))


def _count(value: float) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:,.0f}"


def _note(text: str) -> HTML:
    return HTML(str(macro("note", text)))


_EMPTY = HTML("")


# The section's name in params.optional_sections.
SECTION = "plan"


def plan_problem(data: WeekData) -> str | None:
    """Why next week's plan cannot be computed from ``data`` and its params, or None."""
    tables, con = data.engine_tables(), engine.shared(data.params.engine)
    try:
        next_week_plan(tables["orders"], tables.get("tickets"), data.week, data.params, con=con)
    except MeetingError as exc:
        return str(exc)
    return None


class PlanSection:
    """Next week's plan as display pieces for the data report."""

    def __init__(self, data: WeekData, lang: str | None = None):
        self.data = data
        self.lang = lang or data.params.language
        self.week = data.week
        self.target = data.week.next()

    def _t(self, key: str, **fields: object) -> str:
        return t(key, self.lang, **fields)

    def _name(self, dimension: str, code: object) -> str:
        """A warehouse or carrier code for people: its name from params ``labels``."""
        return code_shown(self.data.params.label, dimension, code, self.lang)

    # --- the plan, once -------------------------------------------------------------

    @cached_property
    def _outcome(self) -> tuple[NextWeekPlan | None, str | None]:
        tables, con = self.data.engine_tables(), engine.shared(self.data.params.engine)
        try:
            plan = next_week_plan(
                tables["orders"], tables.get("tickets"), self.week, self.data.params, con=con
            )
        except MeetingError as exc:  # too little history, resources missing from params
            # A section that cannot be computed fails the run, unless params mark it optional.
            if SECTION not in self.data.params.optional_sections:
                raise SectionError(SECTION, str(exc)) from None
            return None, str(exc)
        return plan, None

    def check(self, out_dir: str | Path | None) -> None:
        """Compute the plan now, at the report's start: a plan that cannot be made stops
        the report here (SectionError) before anything else is computed, unless params
        list the section as optional; its reason then goes into ``out_dir``'s
        LEFT_OUT_FILE. Returns None, so that a notebook cell ending with it shows nothing.
        """
        if self.problem is not None and out_dir is not None:
            text = json.dumps({SECTION: self.problem}, ensure_ascii=False, indent=1)
            (Path(out_dir) / LEFT_OUT_FILE).write_text(text + "\n", encoding="utf-8")
        return None

    @property
    def plan(self) -> NextWeekPlan | None:
        """The computed plan; None when it could not be made (see ``problem``)."""
        return self._outcome[0]

    @property
    def problem(self) -> str | None:
        """Why there is no plan (the error's own words), or None."""
        return self._outcome[1]

    # --- text -------------------------------------------------------------------------

    def _day(self, day: pd.Timestamp) -> str:
        return f"{self._t(f'weekday.{day.weekday()}')} {day:%m-%d}"

    def heading(self) -> HTML:
        """The section heading: the week planned and its dates."""
        monday = pd.Timestamp(self.target.monday)
        title = self._t(
            "plan_section.title",
            week=str(self.target),
            start=f"{monday:%Y-%m-%d}",
            end=f"{monday + pd.Timedelta(days=6):%Y-%m-%d}",
        )
        return HTML(str(macro("heading", 2, "plan", title)))

    def subheading(self, part: str) -> HTML:
        """A sub-heading: ``forecast``, ``backtest``, ``resources`` or ``special``.

        Nothing without a plan: the summary's message stands alone.
        """
        if self.plan is None:
            return _EMPTY
        return HTML(str(macro("heading", 3, f"plan-{part}", self._t(f"plan.section.{part}"))))

    def summary(self) -> HTML:
        """The plan's headline sentences, or why there is no plan."""
        if self.plan is None:
            text = self._t("plan_section.unavailable", week=str(self.target), reason=self.problem)
            return _note(text)
        items = "".join(str(macro("item", s)) for s in self.plan.sentences(self.lang))
        return HTML(f"<ul>{items}</ul>")

    # --- forecast -----------------------------------------------------------------------

    def _last_week_actual(self) -> pd.Series:
        """Orders created per day of the report week ("same day last week"), in orders."""
        days = pd.date_range(self.week.monday, periods=7, freq="D")
        con = engine.shared(self.data.params.engine)
        orders = self.data.engine_tables()["orders"]
        by_day = sections.order_volume_by_day(con, orders, self.week.window(self.data.tz))
        return by_day["total"].set_axis(days).astype("float64")

    def forecast_chart(self) -> Image | HTML:
        """Stacked bars per day and order type, the interval on all orders, last week's days."""
        plan = self.plan
        if plan is None:
            return _EMPTY
        fc = plan.orders
        total = fc[fc["order_type"] == "all"].set_index("day")
        by_type = fc[fc["order_type"] != "all"].pivot(
            index="day", columns="order_type", values="forecast"
        )
        by_type = by_type.reindex(columns=list(ORDER_TYPES))
        peak = total["forecast"].idxmax()
        summary = plan.backtest_summary
        title = self._t(
            "plan_section.chart.title",
            week=str(self.target),
            orders=float(total["forecast"].sum()),
            day=self._day(peak),
            peak=float(total.loc[peak, "forecast"]),
        )
        if summary.better == "none":
            note = self._t("plan.backtest.none")
        else:
            note = self._t(
                "plan_section.chart.note",
                weeks=summary.weeks,
                mape=summary.mape_day,
                bias=summary.bias_day,
                naive=summary.naive_mape_day,
            )
        fig = _forecast_figure(
            by_type,
            total,
            self._last_week_actual(),
            title=title,
            note=note,
            xlabels=[self._day(d) for d in by_type.index],
            ylabel=self._t("plan_section.chart.ylabel"),
            labels=[self._t(f"order_type.{c}") for c in ORDER_TYPES],
            interval_label=self._t(
                "plan_section.chart.interval", coverage=self.data.params.plan.interval
            ),
            last_label=self._t("plan_section.chart.last_week"),
            lang=self.lang,
        )
        return chart(fig)

    def forecast_table(self) -> HTML:
        """Per day: forecast per order type, all orders with interval, tickets with interval."""
        plan = self.plan
        if plan is None:
            return _EMPTY
        fc = plan.orders
        wide = fc.pivot(index="day", columns="order_type", values="forecast")
        total = fc[fc["order_type"] == "all"].set_index("day")
        coverage = self.data.params.plan.interval
        interval = self._t("plan_section.col.interval", coverage=coverage)
        table = pd.DataFrame(index=wide.index)
        for kind in ORDER_TYPES:
            table[self._t(f"order_type.{kind}")] = wide[kind].map(_count)
        table[self._t("order_type.all")] = total["forecast"].map(_count)
        table[interval] = [
            f"{_count(lo)}–{_count(hi)}"
            for lo, hi in zip(total["lower"], total["upper"], strict=True)
        ]
        week_row = {self._t(f"order_type.{k}"): _count(wide[k].sum()) for k in ORDER_TYPES}
        week_row[self._t("order_type.all")] = _count(total["forecast"].sum())
        week_row[interval] = ""
        if plan.tickets is not None:
            tk = plan.tickets.set_index("day")
            tickets = self._t("plan.col.tickets")
            ticket_interval = self._t("plan_section.col.ticket_interval", coverage=coverage)
            table[tickets] = tk["forecast"].map(_count)
            table[ticket_interval] = [
                f"{_count(lo)}–{_count(hi)}"
                for lo, hi in zip(tk["lower"], tk["upper"], strict=True)
            ]
            week_row[tickets] = _count(tk["forecast"].sum())
            week_row[ticket_interval] = ""
        table.index = [self._day(d) for d in table.index]
        table.loc[self._t("plan_section.week_total")] = week_row
        table.index.name = self._t("word.day")
        caption = self._t("plan_section.forecast_caption")
        return HTML(str(macro("note", caption, "")) + _html_table(table).data)

    # --- accuracy ------------------------------------------------------------------------

    def accuracy(self) -> HTML:
        """The backtest: which method to trust, errors of both, per week; unusual days."""
        plan = self.plan
        if plan is None:
            return _EMPTY
        s = plan.backtest_summary
        parts = [_note(s.sentence(self.lang)).data]
        if s.better != "none":
            pct = "{:.1%}".format
            signed = "{:+.1%}".format
            methods = pd.DataFrame(
                {
                    self._t("plan_section.col.mape_day"): [pct(s.mape_day), pct(s.naive_mape_day)],
                    self._t("plan_section.col.bias_day"): [
                        signed(s.bias_day),
                        signed(s.naive_bias_day),
                    ],
                    self._t("plan_section.col.mape_week"): [
                        pct(s.mape_week),
                        pct(s.naive_mape_week),
                    ],
                    self._t("plan_section.col.bias_week"): [
                        signed(s.bias_week),
                        signed(s.naive_bias_week),
                    ],
                },
                index=[
                    self._t("plan_section.method.forecast"),
                    self._t("plan_section.method.naive"),
                ],
            )
            methods.index.name = self._t("plan_section.col.method")
            parts.append(_html_table(methods).data)
            parts.append(self._backtest_weeks().data)
        parts.append(self.unusual_note().data)
        return HTML("".join(parts))

    def _backtest_weeks(self) -> HTML:
        """One row per backtest week on all orders: actual, forecast, both errors."""
        assert self.plan is not None  # callers show a note instead when there is no plan
        bt = self.plan.backtest
        rows = bt[bt["order_type"] == "all"]
        unusual = self.plan.unusual_days
        days = pd.DatetimeIndex(unusual.loc[unusual["series"] == "orders", "day"])
        iso = days.isocalendar()
        odd = {f"{y}-W{w:02d}" for y, w in zip(iso["year"], iso["week"], strict=True)}
        signed = "{:+.1%}".format
        table = pd.DataFrame(
            {
                self._t("plan_section.col.week"): [
                    f"{w} {MARKER}" if w in odd else w for w in rows["week"]
                ],
                self._t("plan_section.col.actual"): rows["actual"].map(_count).to_numpy(),
                self._t("plan.col.forecast"): rows["forecast"].map(_count).to_numpy(),
                self._t("plan_section.col.error"): rows["week_error"].map(signed).to_numpy(),
                self._t("plan_section.col.naive_error"): rows["naive_week_error"]
                .map(signed)
                .to_numpy(),
            }
        )
        out = _html_table(table, index=False).data
        if odd & set(rows["week"]):
            text = self._t("plan_section.unusual_marker", marker=MARKER)
            out += str(macro("note", text, ""))
        return HTML(out)

    def unusual_note(self) -> HTML:
        """History days left out of the baseline as unusual, to be checked against the calendar."""
        plan = self.plan
        if plan is None:
            return _EMPTY
        unusual = plan.unusual_days
        notes = []
        for series in ("orders", "tickets"):
            days = unusual[unusual["series"] == series]
            if days.empty:
                continue
            named = ", ".join(
                f"{self._day(d)} ({c:+.0%})" if np.isfinite(c) else self._day(d)
                for d, c in zip(
                    days["day"][:UNUSUAL_LISTED], days["change"][:UNUSUAL_LISTED], strict=True
                )
            )
            if len(days) > UNUSUAL_LISTED:
                named += self._t("plan_section.and_more", count=len(days) - UNUSUAL_LISTED)
            notes.append(self._t(f"plan_section.unusual.{series}", count=len(days), days=named))
        return HTML("".join(_note(n).data for n in notes))

    # --- resources ------------------------------------------------------------------------

    def _gap_cell(self, needed: float, available: float, upper: float, key: str) -> Trusted:
        """``needed / available``, then the shortfall (red ▲) or the upper-bound risk (amber △)."""
        text = Markup(escape(f"{_count(needed)} / {_count(available)}"))
        if needed > available:
            mark = _mark(self._t(key, gap=needed - available), "ml-status-off", _RED)
        elif upper > available:
            mark = _mark(self._t("plan_section.at_risk", upper=upper), "ml-status-risk", _AMBER)
        else:
            return Trusted(text)
        return Trusted(text + Markup(" ") + Markup(mark.__html__()))

    def staffing_table(self) -> HTML:
        """Warehouse staff per day: needed / on shift, shortfalls marked with their size."""
        plan = self.plan
        if plan is None:
            return _EMPTY
        st = plan.staffing
        if st is None:
            return _note(self._t("plan_section.no_warehouses"))
        cells = [
            self._gap_cell(n, a, u, "plan_section.short")
            for n, a, u in zip(
                st["staff_needed"], st["staff_available"], st["staff_needed_upper"], strict=True
            )
        ]
        grid = st.assign(cell=cells, label=st["day"].map(self._day))
        table = grid.pivot(index="warehouse", columns="label", values="cell")
        table = table[[self._day(d) for d in grid["day"].drop_duplicates()]]
        week = st.groupby("warehouse")["orders"].sum()
        table.insert(
            0, self._t("plan_section.col.orders_week"), week.reindex(table.index).map(_count)
        )
        shares = plan.warehouse_shares["share"].reindex(table.index)
        table.insert(0, self._t("word.share"), shares.map("{:.0%}".format))
        table.index = [self._name("warehouse", w) for w in table.index]
        table.index.name = self._t("plan.col.warehouse")
        caption = self._t("plan_section.staff_caption")
        return HTML(str(macro("note", caption, "")) + _html_table(table).data)

    def agents_table(self) -> HTML:
        """Customer-service agents per day: tickets forecast, needed / on duty, shortfalls."""
        plan = self.plan
        if plan is None:
            return _EMPTY
        if plan.tickets is None:
            return _note(self._t("plan_section.no_tickets"))
        if plan.customer_service is None:
            return _note(self._t("plan_section.no_agents"))
        cs = plan.customer_service
        days = [self._day(d) for d in cs["day"]]
        cells = [
            self._gap_cell(n, a, u, "plan_section.short")
            for n, a, u in zip(
                cs["agents_needed"], cs["agents_available"], cs["agents_needed_upper"], strict=True
            )
        ]
        table = pd.DataFrame(
            [list(cs["tickets"].map(_count)), cells],
            index=[self._t("plan.col.tickets"), self._t("plan_section.agents_row")],
            columns=days,
        )
        caption = self._t("plan_section.agents_caption")
        return HTML(str(macro("note", caption, "")) + _html_table(table).data)

    def carrier_table(self) -> HTML:
        """Parcels per carrier and day against capacity, and the recent on-time rate."""
        plan = self.plan
        if plan is None:
            return _EMPTY
        ca = plan.carriers
        if ca is None or plan.carrier_summary is None:
            return _note(self._t("plan_section.no_carriers"))
        cells = [
            self._gap_cell(p, c, u, "plan_section.over")
            for p, c, u in zip(ca["parcels"], ca["capacity"], ca["parcels_upper"], strict=True)
        ]
        grid = ca.assign(cell=cells, label=ca["day"].map(self._day))
        table = grid.pivot(index="carrier", columns="label", values="cell")
        table = table[[self._day(d) for d in grid["day"].drop_duplicates()]]
        summary = plan.carrier_summary.reindex(table.index)
        table.insert(0, self._t("word.share"), summary["share"].map("{:.0%}".format))
        threshold = self.data.params.plan.min_on_time_delivery
        rates: list[str | Trusted] = []
        for rate, low in zip(summary["on_time_rate"], summary["low_on_time"], strict=True):
            if not math.isfinite(rate):
                rates.append("–")
            elif low:
                text = self._t("plan_section.low_on_time", rate=rate, threshold=threshold)
                rates.append(_mark(text, "ml-status-off", _RED))
            else:
                rates.append(f"{rate:.1%}")
        table[self._t("plan_section.col.on_time")] = rates
        table.index = [self._name("carrier", c) for c in table.index]
        table.index.name = self._t("plan.col.carrier")
        caption = self._t("plan_section.carrier_caption", weeks=self.data.params.plan.share_weeks)
        return HTML(str(macro("note", caption, "")) + _html_table(table).data)

    # --- special orders ----------------------------------------------------------------

    def special_table(self) -> HTML:
        """Open special and after-sales orders per warehouse: overdue, due next week, later."""
        plan = self.plan
        if plan is None:
            return _EMPTY
        counts = plan.special_counts
        if counts.empty or int(counts["total"].sum()) == 0:
            return _note(self._t("plan_section.no_special"))
        total = counts.sum().to_frame(self._t("word.all")).T.astype("int64")
        counts = pd.concat([counts.rename(index=lambda w: self._name("warehouse", w)), total])
        overdue = [
            _mark(self._t("plan_section.overdue_count", count=int(n)), "ml-status-off", _RED)
            if n > 0
            else "0"
            for n in counts["overdue"]
        ]
        table = pd.DataFrame(
            {
                self._t("plan.status.overdue"): overdue,
                self._t("plan.status.due_next_week"): counts["due_next_week"].map(_count),
                self._t("plan.status.later"): counts["later"].map(_count),
                self._t("word.all"): counts["total"].map(_count),
            },
            index=counts.index,
        )
        table.index.name = self._t("plan.col.warehouse")
        types = " / ".join(self._t(f"order_type.{k}") for k in SPECIAL_TYPES)
        caption = self._t("plan_section.special_caption", types=types)
        return HTML(str(macro("note", caption, "")) + _html_table(table).data)

    def special_list(self) -> HTML:
        """The open special orders due soonest (overdue first), by name."""
        plan = self.plan
        if plan is None:
            return _EMPTY
        sp = plan.special_orders
        soon = sp[sp["status"] != "later"].head(SPECIAL_LIST_ROWS)
        if soon.empty:
            return _EMPTY
        status: list[str | Trusted] = []
        for state, hours in zip(soon["status"], soon["hours_left"], strict=True):
            if state == "overdue":
                text = self._t("plan_section.overdue_by", hours=-hours)
                status.append(_mark(text, "ml-status-off", _RED))
            else:
                status.append(self._t("plan_section.due_in", hours=hours))
        table = pd.DataFrame(
            {
                self._t("plan_section.col.order"): soon["order_id"].to_numpy(),
                self._t("plan_section.col.type"): [
                    self._t(f"order_type.{k}") for k in soon["order_type"]
                ],
                self._t("plan.col.warehouse"): [
                    self._name("warehouse", w) for w in soon["warehouse"]
                ],
                self._t("plan.col.deadline"): soon["deadline"]
                .dt.strftime("%m-%d %H:%M")
                .to_numpy(),
                self._t("plan.col.status"): status,
            }
        )
        shown = self._t(
            "plan_section.special_list_caption",
            shown=len(soon),
            total=int((sp["status"] != "later").sum()),
        )
        return HTML(str(macro("note", shown, "")) + _html_table(table, index=False).data)

    # --- files ------------------------------------------------------------------------

    def export(self, out_dir: str | Path) -> None:
        """Write plan.csv (``plan.plan_frame``) into ``out_dir``; nothing without a plan.

        UTF-8, no index, days as YYYY-MM-DD. Returns None so that a notebook cell ending
        with this call shows nothing.
        """
        if self.plan is None:
            return None
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        frame = plan_frame(self.plan)
        frame = frame.assign(day=frame["day"].dt.strftime("%Y-%m-%d"))
        write_csv(frame, folder / PLAN_FILE)
        return None


# --- chart ---------------------------------------------------------------------------------


def _forecast_figure(
    by_type: pd.DataFrame,
    total: pd.DataFrame,
    last_week: pd.Series,
    *,
    title: str,
    note: str,
    xlabels: list[str],
    ylabel: str,
    labels: list[str],
    interval_label: str,
    last_label: str,
    lang: str,
):
    """Stacked forecast bars, the interval on their total, last week's days as markers."""
    with matplotlib.rc_context(plots.style(lang)):
        fig = plots.new_figure(lang, size=(9.0, 4.2))
        ax = fig.add_subplot()
        x = np.arange(len(by_type))
        plots.stack_bars(ax, x, by_type, labels)
        point = total["forecast"].to_numpy(float)
        lower, upper = total["lower"].to_numpy(float), total["upper"].to_numpy(float)
        ax.errorbar(
            x,
            point,
            yerr=[point - lower, upper - point],
            fmt="none",
            ecolor=plots.PALETTE[7],
            elinewidth=1.2,
            capsize=5,
            label=interval_label,
        )
        ax.plot(
            x,
            last_week.to_numpy(float),
            linestyle="none",
            marker="D",
            markersize=5,
            markerfacecolor="white",
            markeredgecolor=plots.PALETTE[5],
            markeredgewidth=1.5,
            label=last_label,
        )
        ax.set_xticks(x, xlabels)
        ax.set_title(title, loc="left")
        ax.set_ylabel(ylabel)
        top = np.nanmax(np.r_[upper, last_week.to_numpy(float), 1.0])
        ax.set_ylim(0, top * 1.32)
        ax.legend(frameon=False, ncols=3, loc="upper right", fontsize=8)
        fig.supxlabel(note, x=0.0, ha="left", fontsize=9, color=plots.GREY)
    return fig
