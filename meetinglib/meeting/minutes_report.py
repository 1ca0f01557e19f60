"""The minutes handout: a week's recorded minutes as display pieces for minutes.ipynb."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from IPython.display import HTML
from markupsafe import Markup

from meetinglib.core.errors import InputDataError
from meetinglib.core.i18n import t
from meetinglib.core.params import Params
from meetinglib.core.weeks import IsoWeek
from meetinglib.data.dataset import notebook_week
from meetinglib.meeting.actions_section import ActionsSection
from meetinglib.meeting.agenda import build_agenda, issue_load, segment_title, when_text
from meetinglib.meeting.intake import department_label
from meetinglib.meeting.minutes import (
    action_items_frame,
    attendance_frame,
    decision_frame,
    feedback_frame,
    feedback_trend,
    minutes_row,
    segment_frame,
    write_action_items,
)
from meetinglib.meeting.review import promise, promise_text
from meetinglib.meeting.store import Store, open_store
from meetinglib.report.plan_section import PlanSection
from meetinglib.report.render import environment, macro, table

# --- the minutes handout ---------------------------------------------------------------------


class MinutesReport:
    """The minutes of the meeting about a week, as display pieces for notebooks/minutes.ipynb."""

    def __init__(self, params: Params, store: Store, week: IsoWeek, data: Any, lang: str):
        self.params, self.store, self.week, self.data, self.lang = params, store, week, data, lang
        row = minutes_row(store, week)
        if row is None:
            raise InputDataError(
                f"no minutes recorded for week {week} in the store {store.url}; record them "
                f"with `meeting minutes record FILE --week {week}`."
            )
        self.row: dict[str, Any] = row
        self.meeting = int(row["id"])

    @classmethod
    def open(
        cls,
        params_files: list[str],
        week: str | None = None,
        snapshot: str | None = None,
        lang: str | None = None,
    ) -> MinutesReport:
        """The minutes of ``week`` from the store, with the week's data (snapshot or source)."""
        data = notebook_week(params_files, week, snapshot)
        return cls(
            data.params, open_store(data.params), data.week, data, lang or data.params.language
        )

    def _t(self, key: str, **fields: object) -> str:
        return t(key, self.lang, **fields)

    def _piece(self, name: str, *args: Any) -> HTML:
        """One macro of ``sections/minutes.html.j2`` (every text escaped there)."""
        module = environment().get_template("sections/minutes.html.j2").module
        return HTML(str(Markup(getattr(module, name)(*args))))

    def header(self) -> Any:
        """Title, meeting time, attendees present, delegates and absentees."""

        agenda = build_agenda(self.params, self.week, {}, self.lang)
        people = attendance_frame(self.store, self.meeting)
        status = people["status"].fillna("unknown")
        present = people.loc[status.eq("present"), "name"].tolist()
        delegates = [
            self._t("minutes.delegate_for", delegate=d, name=n)
            for n, d in people.loc[status.eq("delegate"), ["name", "delegate"]].itertuples(
                index=False
            )
        ]
        absent = people.loc[status.eq("absent"), "name"].tolist()
        title = self._t(
            "minutes.title", title=self.params.meeting.title_in(self.lang), week=str(self.week)
        )
        lines = [
            (self._t("minutes.when"), when_text(agenda)),
            (self._t("minutes.present"), ", ".join(present + delegates) or "–"),
            (self._t("minutes.absent"), ", ".join(absent) or "–"),
        ]
        return self._piece("header", self.params.company, title, lines)

    def summary(self) -> Any:
        """The note-taker's summary (escaped, paragraphs kept)."""

        text = (self.row["summary"] or "").strip()
        if not text:
            return HTML("")
        return self._piece("paragraphs", self._t("minutes.summary"), text.split("\n\n"))

    def decisions(self) -> Any:
        """The meeting's decisions, with department and linked issue."""

        frame = decision_frame(self.store, self.meeting)
        items = []
        for d in frame.itertuples():
            who = department_label(d.department, self.lang) if d.department else ""
            issue = f" (#{int(d.issue_id)} {d.issue_title})" if pd.notna(d.issue_id) else ""
            prefix = f"{who}: " if who else ""
            items.append(prefix + d.text + issue)
        heading, empty = self._t("minutes.decisions"), self._t("minutes.no_decisions")
        return self._piece("numbered", heading, items, empty)

    def actions(self) -> Any:
        """The action items set at the meeting, grouped by department, with owner and due date."""

        items = action_items_frame(self.store, self.meeting)
        order = {d: i for i, d in enumerate(self.params.meeting.departments)}
        groups = []
        for dept in sorted(items["department"].unique(), key=lambda d: order.get(d, 99)):
            part = items[items["department"] == dept]
            lines = [
                self._t(
                    "minutes.action_line",
                    id=int(r.id),
                    description=r.description,
                    owner=r.owner,
                    due=str(r.due_date),
                )
                for r in part.itertuples()
            ]
            groups.append((department_label(dept, self.lang), lines))
        heading, empty = self._t("minutes.actions"), self._t("minutes.no_actions")
        return self._piece("grouped", heading, groups, empty)

    def review_section(self) -> Any:
        """The review of earlier meetings' items and decisions (``ActionsSection``)."""

        return ActionsSection(self.data, self.lang, store=self.store)

    def plan(self) -> Any:
        """Next week's plan as decided, beside the computed proposal."""

        decided = [p for p in (self.row["plan"] or "").splitlines() if p.strip()]
        # The proposal is the plan section's own template output.
        proposal = Markup(PlanSection(self.data, self.lang).summary().data)
        return self._piece(
            "plan",
            self._t("minutes.plan", week=str(self.week.next())),
            self._t("minutes.plan.decided"),
            self._t("minutes.plan.proposed"),
            decided,
            self._t("minutes.no_plan"),
            proposal,
        )

    def time_frame(self) -> pd.DataFrame:
        """Planned and actual minutes per segment, with a total row; minutes.

        The total's actual minutes and overrun are left empty when a segment has none.
        Each segment is titled in the handout's language from its key (the store keeps
        the title in the language that laid the agenda out).
        """
        frame = segment_frame(self.store, self.meeting)
        load = issue_load(self.store, self.week)
        frame["title"] = [
            segment_title(self.params, key, self.lang, stored=title, load=load) or title
            for key, title in zip(frame["segment"], frame["title"], strict=True)
        ]
        total = pd.DataFrame(
            {
                "segment": ["total"],
                "title": [self._t("minutes.time.total")],
                "planned_minutes": [frame["planned_minutes"].sum()],
                "actual_minutes": [frame["actual_minutes"].sum(min_count=1)],
            }
        )
        out = pd.concat([frame, total], ignore_index=True)
        out["over"] = out["actual_minutes"] - out["planned_minutes"]
        if frame["actual_minutes"].isna().any():  # a total over part of the meeting misleads
            out.loc[out.index[-1], ["actual_minutes", "over"]] = np.nan
        return out

    def time_control(self) -> Any:
        """Planned against actual minutes per agenda segment, and the total."""

        frame = self.time_frame()

        def num(v: Any) -> str:
            return "–" if pd.isna(v) else f"{int(v)}"

        def over(v: Any) -> str | Markup:
            if pd.isna(v):
                return "–"
            return macro("span", f"{int(v):+d}", "ml-status-off") if v > 0 else f"{int(v):+d}"

        head = [self._t(k) for k in ("minutes.time.segment", "minutes.time.planned",
                                     "minutes.time.actual", "minutes.time.over")]  # fmt: skip
        rows = [
            [str(r.title), num(r.planned_minutes), num(r.actual_minutes), over(r.over)]
            for r in frame.itertuples()
        ]
        heading = macro("heading", 2, "", self._t("minutes.time"))
        return HTML(str(heading + table(head, rows, numeric=[1, 2, 3], css="ml-time")))

    def feedback(self) -> Any:
        """Mean rating, the comments, and the mean rating of earlier meetings."""

        frame = feedback_frame(self.store, self.meeting)
        trend = feedback_trend(self.store, self.week)
        ratings = frame["rating"].dropna()
        mean = (
            self._t("minutes.feedback.mean", mean=ratings.mean(), count=len(ratings))
            if len(ratings)
            else ""
        )
        comments = [
            (c, n or "") for n, c in frame[["name", "comment"]].itertuples(index=False) if c
        ]
        points = (
            [
                (str(w), f"{m:.1f}")
                for w, m in trend[["week", "mean_rating"]].itertuples(index=False)
            ]
            if len(trend) > 1
            else []
        )
        return self._piece(
            "feedback",
            self._t("minutes.feedback"),
            mean,
            comments,
            self._t("minutes.feedback.trend"),
            points,
            self._t("minutes.no_feedback"),
        )

    def promise(self) -> Any:
        """Whether these minutes went out within 24 hours (not yet, when rendered first)."""

        text = promise_text(promise(self.store, self.week), self.lang)
        return HTML(str(macro("note", text)))

    def save(self, out_dir: str | None) -> None:
        """Write action_items.csv and action_items.ics into ``out_dir`` (nothing when None)."""
        if out_dir:
            write_action_items(
                self.store, self.meeting, self.params.company, out_dir, self.row["recorded_at"]
            )
        return None
