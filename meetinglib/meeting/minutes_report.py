"""The minutes handout: a week's recorded minutes as display pieces for minutes.ipynb."""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd
from IPython.display import HTML

from meetinglib.core.errors import InputDataError
from meetinglib.core.i18n import t
from meetinglib.core.params import Params, load_params
from meetinglib.core.weeks import IsoWeek
from meetinglib.data.dataset import open_week
from meetinglib.meeting.actions_section import ActionsSection
from meetinglib.meeting.agenda import build_agenda, when_text
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

# --- the minutes handout ---------------------------------------------------------------------


class MinutesReport:
    """The minutes of the meeting about a week, as display pieces for notebooks/minutes.ipynb."""

    def __init__(self, params: Params, store: Store, week: IsoWeek, data: Any, lang: str):
        self.params, self.store, self.week, self.data, self.lang = params, store, week, data, lang
        self.row = minutes_row(store, week)
        if self.row is None:
            raise InputDataError(
                f"no minutes recorded for week {week} in the store {store.url}; record them "
                f"with `meeting minutes record FILE --week {week}`."
            )
        self.meeting = int(self.row["id"])

    @classmethod
    def open(
        cls,
        params_files: list[str],
        week: str | None = None,
        snapshot: str | None = None,
        lang: str | None = None,
    ) -> MinutesReport:
        """The minutes of ``week`` from the store, with the week's data (snapshot or source)."""

        params = load_params(*params_files)
        data = open_week(params, week, snapshot)
        return cls(params, open_store(params), data.week, data, lang or params.language)

    def _t(self, key: str, **fields: object) -> str:
        return t(key, self.lang, **fields)

    def _h(self, key: str, level: int = 2, **fields: object) -> str:
        return f"<h{level}>{html.escape(self._t(key, **fields))}</h{level}>"

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
        facts = "".join(f"<p><b>{html.escape(k)}:</b> {html.escape(v)}</p>" for k, v in lines)
        return HTML(f"<h1>{html.escape(self.params.company)} · {html.escape(title)}</h1>{facts}")

    def summary(self) -> Any:
        """The note-taker's summary (escaped, paragraphs kept)."""

        text = (self.row["summary"] or "").strip()
        if not text:
            return HTML("")
        paragraphs = "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n\n"))
        return HTML(self._h("minutes.summary") + paragraphs)

    def decisions(self) -> Any:
        """The meeting's decisions, with department and linked issue."""

        frame = decision_frame(self.store, self.meeting)
        if frame.empty:
            body = f'<p class="ml-note">{html.escape(self._t("minutes.no_decisions"))}</p>'
        else:
            items = []
            for d in frame.itertuples():
                who = department_label(d.department, self.lang) if d.department else ""
                issue = f" (#{int(d.issue_id)} {d.issue_title})" if pd.notna(d.issue_id) else ""
                prefix = f"{who}: " if who else ""
                items.append(f"<li>{html.escape(prefix + d.text + issue)}</li>")
            body = f"<ol>{''.join(items)}</ol>"
        return HTML(self._h("minutes.decisions") + body)

    def actions(self) -> Any:
        """The action items set at the meeting, grouped by department, with owner and due date."""

        items = action_items_frame(self.store, self.meeting)
        parts = [self._h("minutes.actions")]
        if items.empty:
            parts.append(f'<p class="ml-note">{html.escape(self._t("minutes.no_actions"))}</p>')
        order = {d: i for i, d in enumerate(self.params.meeting.departments)}
        for dept in sorted(items["department"].unique(), key=lambda d: order.get(d, 99)):
            part = items[items["department"] == dept]
            parts.append(f"<h3>{html.escape(department_label(dept, self.lang))}</h3><ul>")
            for r in part.itertuples():
                line = self._t(
                    "minutes.action_line",
                    id=int(r.id),
                    description=r.description,
                    owner=r.owner,
                    due=str(r.due_date),
                )
                parts.append(f"<li>{html.escape(line)}</li>")
            parts.append("</ul>")
        return HTML("".join(parts))

    def review_section(self) -> Any:
        """The review of earlier meetings' items and decisions (``ActionsSection``)."""

        return ActionsSection(self.data, self.lang, store=self.store)

    def plan(self) -> Any:
        """Next week's plan as decided, beside the computed proposal."""

        decided = [p for p in (self.row["plan"] or "").splitlines() if p.strip()]
        left = (
            "<ul>" + "".join(f"<li>{html.escape(p)}</li>" for p in decided) + "</ul>"
            if decided
            else f'<p class="ml-note">{html.escape(self._t("minutes.no_plan"))}</p>'
        )
        proposal = PlanSection(self.data, self.lang).summary().data
        cell = 'style="vertical-align:top;padding-right:2em;width:50%"'
        return HTML(
            self._h("minutes.plan", week=str(self.week.next()))
            + f'<table class="ml-plan"><tr><th>{html.escape(self._t("minutes.plan.decided"))}</th>'
            f"<th>{html.escape(self._t('minutes.plan.proposed'))}</th></tr>"
            f"<tr><td {cell}>{left}</td><td {cell}>{proposal}</td></tr></table>"
        )

    def time_frame(self) -> pd.DataFrame:
        """Planned and actual minutes per segment, with a total row; minutes.

        The total's actual minutes and overrun are left empty when a segment has none.
        """
        frame = segment_frame(self.store, self.meeting)
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

        def over(v: Any) -> str:
            if pd.isna(v):
                return "–"
            style = ' style="color:#cf222e"' if v > 0 else ""
            return f"<span{style}>{int(v):+d}</span>"

        head = "".join(
            f"<th>{html.escape(self._t(k))}</th>"
            for k in ("minutes.time.segment", "minutes.time.planned", "minutes.time.actual",
                      "minutes.time.over")
        )  # fmt: skip
        rows = "".join(
            f"<tr><td>{html.escape(str(r.title))}</td><td>{num(r.planned_minutes)}</td>"
            f"<td>{num(r.actual_minutes)}</td><td>{over(r.over)}</td></tr>"
            for r in frame.itertuples()
        )
        return HTML(
            self._h("minutes.time")
            + f'<table class="ml-time"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
        )

    def feedback(self) -> Any:
        """Mean rating, the comments, and the mean rating of earlier meetings."""

        frame = feedback_frame(self.store, self.meeting)
        trend = feedback_trend(self.store, self.week)
        parts = [self._h("minutes.feedback")]
        ratings = frame["rating"].dropna()
        if len(ratings):
            parts.append(
                "<p>"
                + html.escape(
                    self._t("minutes.feedback.mean", mean=ratings.mean(), count=len(ratings))
                )
                + "</p>"
            )
        comments = [
            f"<li>{html.escape(c)}" + (f" — {html.escape(n)}" if n else "") + "</li>"
            for n, c in frame[["name", "comment"]].itertuples(index=False)
            if c
        ]
        if comments:
            parts.append(f"<ul>{''.join(comments)}</ul>")
        if len(trend) > 1:
            cells = " · ".join(
                f"{html.escape(str(w))}: {m:.1f}"
                for w, m in trend[["week", "mean_rating"]].itertuples(index=False)
            )
            parts.append(f"<p>{html.escape(self._t('minutes.feedback.trend'))}: {cells}</p>")
        if len(parts) == 1:
            parts.append(f'<p class="ml-note">{html.escape(self._t("minutes.no_feedback"))}</p>')
        return HTML("".join(parts))

    def promise(self) -> Any:
        """Whether these minutes went out within 24 hours (not yet, when rendered first)."""

        text = promise_text(promise(self.store, self.week), self.lang)
        return HTML(f'<p class="ml-note">{html.escape(text)}</p>')

    def save(self, out_dir: str | None) -> None:
        """Write action_items.csv and action_items.ics into ``out_dir`` (nothing when None)."""
        if out_dir:
            write_action_items(
                self.store, self.meeting, self.params.company, out_dir, self.row["recorded_at"]
            )
        return None
