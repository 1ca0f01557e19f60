"""The note-taker's console: an ipywidgets panel recording the minutes during the meeting.

The console collects what a minutes file holds (``meetinglib.meeting.minutes.MinutesFile``):
attendance, minutes spent per agenda segment, decisions, action items, earlier items
closed, feedback, summary and plan. Every button records the whole collection through
``minutes.record_document``, the same checks and the same transaction as
``meeting minutes record``, so the store is up to date after each click and a failed
check writes nothing and says why in ``console.message`` (escaped). Sections left empty
keep what is stored (a minutes file recorded earlier stays intact).

The panel is built only in an interactive session; tests drive the widgets' values and
call the buttons' ``click()``.
"""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

from pydantic import ValidationError

from meetinglib.core.errors import MeetingError
from meetinglib.core.i18n import t
from meetinglib.core.params import Params, load_params
from meetinglib.core.weeks import IsoWeek
from meetinglib.data.dataset import resolve_week
from meetinglib.meeting.actions import action_list
from meetinglib.meeting.intake import department_label
from meetinglib.meeting.minutes import (
    ActionEntry,
    AttendanceEntry,
    DecisionEntry,
    FeedbackEntry,
    MinutesFile,
    UpdateEntry,
    people_by_email,
    record_document,
    segment_keys,
)
from meetinglib.meeting.store import Store, open_store

ATTENDANCE_CHOICES = ("", "present", "absent", "delegate")  # "": not recorded


class MeetingConsole:
    """Widgets recording the minutes of the meeting about ``week`` into ``store``."""

    def __init__(self, params: Params, store: Store, week: IsoWeek | str, lang: str | None = None):
        import ipywidgets as w

        self.params, self.store = params, store
        self.week = IsoWeek.parse(week)
        self.lang = lang or params.language
        self.doc = MinutesFile(week=str(self.week))
        departments = [(department_label(d, self.lang), d) for d in params.meeting.departments]
        self.people = people_by_email(params)
        _ = self._t

        self.attendance = {
            email: (
                w.Dropdown(
                    options=[
                        (_(f"console.attendance.{c or 'unknown'}"), c) for c in ATTENDANCE_CHOICES
                    ],
                    value="",
                    description=person.name,
                ),
                w.Text(placeholder=_("console.delegate")),
            )
            for email, person in self.people.items()
        }
        self.times = {
            key: w.BoundedIntText(value=0, min=0, max=600, description=self._segment_name(key))
            for key in segment_keys(params)
        }
        issues = store.issues(through_week=str(self.week))
        issue_options = [("—", None)] + [
            (f"#{r.id} {r.title}", int(r.id)) for r in issues.itertuples()
        ]
        self.decision_text = w.Textarea(placeholder=_("console.decision"))
        self.decision_department = w.Dropdown(options=[("—", None), *departments])
        self.decision_issue = w.Dropdown(options=issue_options)
        self.decision_button = w.Button(description=_("console.add_decision"))
        self.action_description = w.Textarea(placeholder=_("console.action"))
        self.action_owner = w.Text(placeholder=_("console.owner"))
        self.action_department = w.Dropdown(options=departments)
        self.action_due = w.DatePicker(description=_("console.due"))
        self.action_issue = w.Dropdown(options=issue_options)
        self.action_button = w.Button(description=_("console.add_action"))
        self.earlier = w.SelectMultiple(options=self._earlier_options(), rows=6)
        self.done_button = w.Button(description=_("console.mark_done"))
        self.feedback_person = w.Dropdown(
            options=[(_("console.anonymous"), None)]
            + [(p.name, email) for email, p in self.people.items()]
        )
        self.feedback_rating = w.Dropdown(
            options=[("—", None), *[(str(i), i) for i in range(1, 6)]]
        )
        self.feedback_comment = w.Text(placeholder=_("console.comment"))
        self.feedback_button = w.Button(description=_("console.add_feedback"))
        self.summary = w.Textarea(placeholder=_("console.summary"))
        self.plan = w.Textarea(placeholder=_("console.plan"))
        self.save_button = w.Button(description=_("console.save"), button_style="primary")
        self.message = w.HTML()

        self.decision_button.on_click(lambda _b: self.add_decision())
        self.action_button.on_click(lambda _b: self.add_action())
        self.done_button.on_click(lambda _b: self.mark_done())
        self.feedback_button.on_click(lambda _b: self.add_feedback())
        self.save_button.on_click(lambda _b: self.save())

        def box(title: str, *children: Any) -> Any:
            return w.VBox([w.HTML(f"<h3>{html.escape(title)}</h3>"), *children])

        rows = [w.HBox(list(pair)) for pair in self.attendance.values()]
        self.widget = w.VBox(
            [
                box(_("console.section.attendance"), *rows),
                box(_("console.section.time"), *self.times.values()),
                box(_("console.section.decisions"), self.decision_text, self.decision_department,
                    self.decision_issue, self.decision_button),
                box(_("console.section.actions"), self.action_description, self.action_owner,
                    self.action_department, self.action_due, self.action_issue,
                    self.action_button),
                box(_("console.section.earlier"), self.earlier, self.done_button),
                box(_("console.section.feedback"), self.feedback_person, self.feedback_rating,
                    self.feedback_comment, self.feedback_button),
                box(_("console.section.summary"), self.summary, self.plan, self.save_button),
                self.message,
            ]
        )  # fmt: skip

    def _t(self, key: str, **fields: object) -> str:
        return t(key, self.lang, **fields)

    def _segment_name(self, key: str) -> str:
        if key in self.params.meeting.departments:
            return department_label(key, self.lang)
        return t(f"agenda.{key}", self.lang)

    def _earlier_options(self) -> list[tuple[str, int]]:
        items = action_list(self.params, self.store, self.week)
        items = items[items["meeting_week"] < str(self.week)]
        return [
            (f"#{int(r.id)} {r.owner}: {r.description} ({r.due_date})", int(r.id))
            for r in items.itertuples()
        ]

    # --- collecting ---------------------------------------------------------------------

    def _say(self, text: str, ok: bool = True) -> None:
        color = "#1a7f37" if ok else "#cf222e"
        body = html.escape(text).replace("\n", "<br>")
        self.message.value = f'<p style="color:{color}">{body}</p>'

    def _collect(self) -> MinutesFile:
        """The document with the form-level fields (attendance, times, summary, plan) read."""
        attendance = [
            AttendanceEntry(email=email, status=status.value, delegate=delegate.value.strip())
            for email, (status, delegate) in self.attendance.items()
            if status.value
        ]
        times = {k: int(v.value) for k, v in self.times.items() if v.value}
        plan = [line.strip() for line in self.plan.value.splitlines() if line.strip()]
        return self.doc.model_copy(
            update={
                "attendance": attendance,
                "time": times,
                "summary": self.summary.value.strip(),
                "plan": plan,
            }
        )

    def _record(self, doc: MinutesFile, done: str) -> bool:
        try:
            result = record_document(
                self.params, self.store, doc, self.week, where="console", source="console"
            )
        except MeetingError as exc:
            self._say(str(exc), ok=False)
            return False
        self.doc = doc
        self._say(
            self._t(
                "console.saved",
                done=done,
                decisions=len(doc.decisions),
                actions=len(doc.actions),
                week=str(result.week),
            )
        )
        return True

    def _entry(self, kind: type, **values: Any) -> Any | None:
        try:
            return kind(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            self._say(self._t("console.invalid", problems=problems), ok=False)
            return None

    def add_decision(self) -> bool:
        """Record the decision in the form; clears the form when recorded."""
        entry = self._entry(
            DecisionEntry,
            text=self.decision_text.value,
            department=self.decision_department.value,
            issue=self.decision_issue.value,
        )
        if entry is None:
            return False
        doc = self._collect()
        doc = doc.model_copy(update={"decisions": [*doc.decisions, entry]})
        if self._record(doc, self._t("console.done.decision")):
            self.decision_text.value = ""
            return True
        return False

    def add_action(self) -> bool:
        """Record the action item in the form; clears description and owner when recorded."""
        due = self.action_due.value
        if not isinstance(due, dt.date):
            self._say(self._t("console.no_due"), ok=False)
            return False
        entry = self._entry(
            ActionEntry,
            description=self.action_description.value,
            owner=self.action_owner.value,
            department=self.action_department.value,
            due=due,
            issue=self.action_issue.value,
        )
        if entry is None:
            return False
        doc = self._collect()
        doc = doc.model_copy(update={"actions": [*doc.actions, entry]})
        if self._record(doc, self._t("console.done.action")):
            self.action_description.value = ""
            self.action_owner.value = ""
            return True
        return False

    def mark_done(self) -> bool:
        """Close the selected earlier items."""
        chosen = list(self.earlier.value)
        if not chosen:
            self._say(self._t("console.none_selected"), ok=False)
            return False
        doc = self._collect()
        updates = [u for u in doc.updates if u.id not in chosen]
        updates += [UpdateEntry(id=i, status="done") for i in chosen]
        if self._record(
            doc.model_copy(update={"updates": updates}), self._t("console.done.closed")
        ):
            self.earlier.options = self._earlier_options()
            return True
        return False

    def add_feedback(self) -> bool:
        """Record one attendee's (or an anonymous) rating and comment."""
        entry = self._entry(
            FeedbackEntry,
            email=self.feedback_person.value,
            rating=self.feedback_rating.value,
            comment=self.feedback_comment.value,
        )
        if entry is None:
            return False
        doc = self._collect()
        kept = [f for f in doc.feedback if entry.email is None or f.email != entry.email]
        if self._record(
            doc.model_copy(update={"feedback": [*kept, entry]}), self._t("console.done.feedback")
        ):
            self.feedback_comment.value = ""
            return True
        return False

    def save(self) -> bool:
        """Record attendance, minutes per segment, summary and plan as they stand."""
        return self._record(self._collect(), self._t("console.done.saved"))


def open_console(params_files: list[str], week: str | None = None, lang: str | None = None) -> Any:
    """The console's widget for ``week`` (default: the latest complete week in the data)."""

    params = load_params(*params_files)
    return MeetingConsole(params, open_store(params), resolve_week(params, week), lang).widget
