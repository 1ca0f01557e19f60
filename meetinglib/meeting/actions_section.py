"""The "Last week's actions" section at the top of the data report (and in the minutes).

``ActionsSection(data, lang)`` reads the meeting store named by ``data.params`` and shows,
for the meeting about ``data.week``: the action items of earlier meetings still open or
closed since (due status, age, times carried over, escalation), the decisions of the
last meeting with the figures of their segment then and now, and whether the last
minutes went out within 24 hours. Every stored text is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import pandas as pd
from IPython.display import HTML
from markupsafe import Markup

from meetinglib.core.i18n import t
from meetinglib.data import engine
from meetinglib.data.dataset import WeekData
from meetinglib.meeting.intake import department_label
from meetinglib.meeting.review import (
    REVIEW_FIGURES,
    Promise,
    decision_figures,
    earlier_actions,
    last_decisions,
    promise,
    promise_text,
)
from meetinglib.meeting.store import Store, open_store
from meetinglib.report.render import macro, table

_RED = "color:#cf222e;font-weight:bold"
_AMBER = "color:#9a6700"
_STATUS_STYLE = {"overdue": ("ml-bad", _RED), "due_this_week": ("ml-warn", _AMBER)}


def _cell(text: str, css: str = "", style: str = "") -> str | Markup:
    return macro("span", text, f"ml-word {css}", style) if css else text


def _table(head: list[str], rows: list[list[str | Markup]], numeric: Sequence[int] = ()) -> HTML:
    """The one table helper: cells escaped unless they are template pieces."""
    return HTML(str(table(head, rows, numeric=numeric, css="ml-actions")))


def _figure(value: float, figure: str) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    if figure == "late_delivery_share":
        return f"{value:.1%}"
    return f"{value:,.0f}"


def _change(value: float, figure: str) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    if figure == "late_delivery_share":
        return f"{value * 100:+.1f} pp"
    return f"{value:+,.0f}"


class ActionsSection:
    """Last meetings' action items and decisions, reviewed at the meeting about data.week."""

    def __init__(self, data: WeekData, lang: str | None = None, store: Store | None = None):
        self.data = data
        self.params = data.params
        self.lang = lang or data.params.language
        self.week = data.week
        self._store = store

    def _t(self, key: str, **fields: object) -> str:
        return t(key, self.lang, **fields)

    @cached_property
    def _loaded(self) -> tuple[pd.DataFrame, str | None, pd.DataFrame, Promise | None]:
        store = self._store or open_store(self.params)
        try:
            items = earlier_actions(self.params, store, self.week)
            last, decisions = last_decisions(store, self.week)
            kept = promise(store, last) if last else None
        finally:
            if self._store is None:
                store.close()
        return items, last, decisions, kept

    @property
    def items(self) -> pd.DataFrame:
        """Earlier meetings' action items as reviewed (see ``review.earlier_actions``)."""
        return self._loaded[0]

    @property
    def last_week(self) -> str | None:
        """Report week of the last meeting before this one; None when there was none."""
        return self._loaded[1]

    @property
    def decisions(self) -> pd.DataFrame:
        return self._loaded[2]

    def heading(self) -> HTML:
        return HTML(str(macro("heading", 2, "actions", self._t("actions.section.title"))))

    def digest(self, limit: int = 3) -> dict[str, Any]:
        """Open, overdue and escalated counts, and the ``limit`` longest-overdue items as
        sentences, for the data report's first page."""
        items = self.items
        if items.empty:
            return {"open": 0, "overdue": 0, "escalated": 0, "overdue_items": []}
        late = items[items["due_status"].eq("overdue")].sort_values("overdue_days", ascending=False)
        sentences = [
            self._t(
                "summary.overdue_item",
                id=int(r.id),
                owner=r.owner,
                description=r.description,
                days=int(r.overdue_days),
            )
            for r in late.head(limit).itertuples()
        ]
        return {
            "open": int(items["status"].eq("open").sum()),
            "overdue": int(items["due_status"].eq("overdue").sum()),
            "escalated": int(items["escalate"].sum()),
            "overdue_items": sentences,
        }

    def summary(self) -> HTML:
        """One line: open, overdue and escalated items; closed since the last meeting."""
        items = self.items
        if self.last_week is None and items.empty:
            return HTML(str(macro("note", self._t("actions.none"))))
        text = self._t(
            "actions.summary",
            open=int(items["status"].eq("open").sum()),
            overdue=int(items["due_status"].eq("overdue").sum()),
            escalated=int(items["escalate"].sum()),
            closed=int(items["status"].isin(["done", "dropped"]).sum()),
        )
        return HTML(str(macro("note", text, "ml-lead")))

    def table(self) -> HTML:
        """The items: department, owner, description, due, status, age, carried, escalation."""
        items = self.items
        if items.empty:
            return HTML("")
        rows = []
        for r in items.itertuples():
            css, style = _STATUS_STYLE.get(r.due_status, ("", ""))
            status = self._t(f"actions.status.{r.due_status}")
            if r.due_status == "overdue":
                status = self._t("actions.overdue_by", status=status, days=int(r.overdue_days))
            flag = _cell(self._t("actions.escalate"), "ml-bad", _RED) if r.escalate else ""
            rows.append(
                [
                    f"#{int(r.id)}",
                    department_label(r.department, self.lang),
                    r.owner,
                    r.description,
                    str(r.due_date),
                    _cell(status, css, style),
                    str(int(r.age_weeks)),
                    str(int(r.carried)),
                    flag,
                ]
            )
        head = [self._t(f"actions.col.{c}") for c in (
            "id", "department", "owner", "description", "due", "status", "age", "carried",
            "escalation",
        )]  # fmt: skip
        return _table(head, rows, numeric=(0, 6, 7))

    @cached_property
    def figures(self) -> pd.DataFrame:
        """Decision figures then and now (``review.decision_figures``); empty without data."""
        empty = pd.DataFrame(columns=["decision_id", "text", "segment", "figure", "before",
                                      "after", "change"])  # fmt: skip
        if self.last_week is None or self.decisions.empty:
            return empty
        orders = self.data.engine_tables().get("orders")
        if orders is None:
            return empty
        con = engine.shared(self.data.params.engine)
        return decision_figures(
            orders, self.decisions, self.last_week, self.week, self.data.tz, con
        )

    def decisions_table(self) -> HTML:
        """Each decision of the last meeting with its segment's figures then and now."""
        if self.last_week is None or self.decisions.empty:
            return HTML("")
        heading = self._t("review.decisions", week=self.last_week)
        figures = self.figures
        rows = []
        for d in self.decisions.itertuples():
            segment = d.segment if isinstance(d.segment, str) and d.segment else ""
            part = figures[figures["decision_id"] == d.id]
            cells = []
            for figure in REVIEW_FIGURES:
                row = part[part["figure"] == figure]
                if row.empty:
                    cells.append("–")
                    continue
                b, a, c = row.iloc[0][["before", "after", "change"]]
                cells.append(f"{_figure(b, figure)} → {_figure(a, figure)} ({_change(c, figure)})")
            rows.append([d.text, segment or self._t("review.all_orders"), *cells])
        head = [
            self._t("review.col.decision"),
            self._t("review.col.segment"),
            *(self._t(f"review.figure.{f}", before=self.last_week, after=str(self.week))
              for f in REVIEW_FIGURES),
        ]  # fmt: skip
        numbers = range(2, len(head))
        return HTML(str(macro("heading", 3, "", heading)) + _table(head, rows, numbers).data)

    def promise_note(self) -> HTML:
        """Whether the last meeting's minutes went out within 24 hours."""
        if self.last_week is None:
            return HTML("")
        return HTML(str(macro("note", promise_text(self._loaded[3], self.lang))))
