"""The meeting console: note-takers record the meeting together, item by item.

Several consoles (the note-taker's, each department lead's) may be open on one store at
once: a SQLite file on one machine, a PostgreSQL database for a team. The console opens
on the meeting's week (asked for, else the week of the latest published report, else
the latest complete week in the data), says it in its title, and loads everything
recorded for it from ``store.meeting_state``: attendance, minutes per agenda segment,
decisions, action items, earlier items still open, feedback, summary and plan.

Every change is one item written on its own (``store.add_decision``,
``update_action_item``, ``set_attendance`` ...), never a whole section, so adding,
editing or closing one item leaves everyone else's as they are. Each item carries the
version it was loaded at; when someone changed it in between, the store refuses the
edit (``ConcurrentEditError``) and the console says so next to the button, shows what
the store holds now and keeps what was typed in the form: pressing save again replaces
the other entry on purpose, Refresh takes it. A row's button (Mark done, Remove) has
nothing typed to keep: refused the same way, it says what the store holds now, and
pressing it again applies to that; Mark done on an item someone else marked done
meanwhile just says it is done. Refresh reloads the lists and every form field left
untouched since it was loaded; a field being edited keeps its text.

The panel is built only in an interactive session; tests set the widgets' values and
call the buttons' ``click()``, and every control has a CSS class (``mc-...``) for the
browser test.
"""

from __future__ import annotations

import datetime as dt
import html
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from meetinglib.core.errors import ConcurrentEditError, InputDataError, MeetingError
from meetinglib.core.i18n import t
from meetinglib.core.params import Params, load_params
from meetinglib.core.weeks import IsoWeek
from meetinglib.data.dataset import resolve_week
from meetinglib.meeting.agenda import build_agenda, issue_load, segment_title
from meetinglib.meeting.intake import department_label
from meetinglib.meeting.minutes import ensure_meeting, people_by_email
from meetinglib.meeting.store import (
    ActionItem,
    MeetingState,
    SegmentItem,
    Store,
    add_action_item,
    add_decision,
    add_feedback,
    close_action_item,
    delete_decision,
    delete_feedback,
    meeting_state,
    open_store,
    plan_segments,
    set_attendance,
    set_segment_time,
    set_summary,
    update_action_item,
    update_decision,
    update_feedback,
)
from meetinglib.meeting.triage import agenda_issues

ATTENDANCE_CHOICES = ("", "present", "absent", "delegate")  # "": not recorded
SOURCE = "console"
OK, FAILED = "#1a7f37", "#cf222e"


# --- which week ------------------------------------------------------------------------------


def latest_report_week(params: Params) -> IsoWeek | None:
    """The week of the newest published report under ``output_dir``; None when there is none."""
    root = Path(params.output_dir)
    weeks = []
    for folder in root.glob("*-W*") if root.is_dir() else ():
        try:
            week = IsoWeek.parse(folder.name)
        except MeetingError:
            continue  # staging and failed runs: ".2026-W47.staging-...", "2026-W47.failed-..."
        if (folder / "index.html").is_file():
            weeks.append(week)
    return max(weeks, default=None, key=str)


def console_week(params: Params, week: IsoWeek | str | None = None) -> IsoWeek:
    """The week asked for, else the latest published report's, else the data's latest."""
    if week is not None:
        return IsoWeek.parse(week)
    return latest_report_week(params) or resolve_week(params, None)


def issue_choices(store: Store, week: IsoWeek | str) -> list[tuple[str, int]]:
    """Open issues the week's meeting discusses (raised for it, or carried over): label, id."""
    issues = agenda_issues(store.issues(through_week=str(IsoWeek.parse(week))), week)
    issues = issues[issues["status"] == "open"]
    return [(f"#{int(r.id)} {r.title}", int(r.id)) for r in issues.itertuples()]


def label_width(labels: Sequence[str]) -> str:
    """A CSS width that holds the longest label whole (wide CJK characters count as 1 em)."""

    def ems(text: str) -> float:
        return sum(1.0 if unicodedata.east_asian_width(c) in "WF" else 0.62 for c in text)

    return f"{max((ems(x) for x in labels), default=4) + 1.5:.1f}em"


@dataclass
class _Field:
    """A form field synced with a stored item: the value and version it was loaded at."""

    loaded: Any
    version: int


# --- the console -------------------------------------------------------------------------------


class MeetingConsole:
    """Widgets recording the meeting about ``week`` into ``store``, one item at a time."""

    def __init__(self, params: Params, store: Store, week: IsoWeek | str, lang: str | None = None):
        import ipywidgets as w

        self.w = w
        self.params, self.store = params, store
        self.week = IsoWeek.parse(week)
        self.lang = lang or params.language
        self.people = people_by_email(params)
        self.departments = [(department_label(d, self.lang), d) for d in params.meeting.departments]
        self.load = load = issue_load(store, self.week)
        self.agenda = build_agenda(params, self.week, load, self.lang)
        ensure_meeting(params, store, self.week)
        # The stored segment titles are the handout's, in the params' language, whatever
        # language each console shows; as `meeting minutes record` lays them out.
        stored = build_agenda(params, self.week, load)
        plan_segments(
            store, self.week, [(i.department or i.key, i.title, i.minutes) for i in stored.items]
        )
        self.state: MeetingState = meeting_state(store, self.week)
        self._fields: dict[str, _Field] = {}
        self._editing: dict[str, tuple[int, int] | None] = {"decision": None, "action": None}
        # Earlier items closed while this console is open stay listed, with their status.
        self._closed_since: dict[int, ActionItem] = {}
        self._notes: dict[tuple[str, int], tuple[str, bool]] = {}
        _ = self._t

        # Title and refresh.
        # Text fields send their value when left (not at every key), before the button's
        # click; a value set back here after recording then stays.
        self.title = w.HTML(self._title_html())
        self.refresh_button = self._button("console.refresh", "mc-refresh", self.refresh)
        self.refresh_result = self._result("mc-refresh-result")

        # Attendance: one row per invited person.
        choices = [(_(f"console.attendance.{c or 'unknown'}"), c) for c in ATTENDANCE_CHOICES]
        names = [self._person_label(e) for e in self.people]
        width = label_width([*names, _("console.delegate")])
        self.attendance = {
            email: (
                w.Dropdown(
                    options=choices,
                    value="",
                    description=self._person_label(email),
                    style={"description_width": width},
                    layout=w.Layout(width="auto"),
                ).add_class("mc-attendance"),
                w.Text(
                    continuous_update=False,
                    description=_("console.delegate"),
                    style={"description_width": "initial"},
                    layout=w.Layout(width="auto"),
                ).add_class("mc-delegate"),
            )
            for email in self.people
        }
        self.attendance_button = self._button(
            "console.save_attendance", "mc-save-attendance", self.save_attendance
        )
        self.attendance_result = self._result("mc-attendance-result")

        # Minutes spent per agenda segment.
        segments = [
            (x.segment, self._segment_label(self._segment_title(x), x.planned_minutes))
            for x in self.state.segments
        ]
        width = label_width([label for _k, label in segments])
        self.times = {
            key: w.BoundedIntText(
                value=0,
                min=0,
                max=600,
                description=label,
                style={"description_width": width},
                layout=w.Layout(width=f"calc({width} + 7em)"),
            ).add_class("mc-time")
            for key, label in segments
        }
        self.times_button = self._button("console.save_times", "mc-save-times", self.save_times)
        self.times_result = self._result("mc-times-result")

        # Decisions.
        form_width = label_width(
            [_(k) for k in ("console.decision", "console.department", "console.issue",
                            "console.action", "console.owner", "console.due", "console.person",
                            "console.rating", "console.comment", "console.summary",
                            "console.plan_label")]
        )  # fmt: skip
        style = {"description_width": form_width}
        wide = w.Layout(width="95%")
        issues = self._issue_options()
        self.decision_list = w.VBox().add_class("mc-decision-list")
        self.decision_text = w.Textarea(
            continuous_update=False, description=_("console.decision"), style=style, layout=wide
        ).add_class("mc-decision-text")
        self.decision_department = w.Dropdown(
            options=[(_("console.none"), None), *self.departments],
            description=_("console.department"),
            style=style,
        ).add_class("mc-decision-department")
        self.decision_issue = w.Dropdown(
            options=issues, description=_("console.issue"), style=style, layout=wide
        ).add_class("mc-decision-issue")
        self.decision_button = self._button(
            "console.add_decision", "mc-add-decision", self.add_decision, primary=True
        )
        self.decision_save = self._button(
            "console.save_decision", "mc-save-decision", self.save_decision, primary=True
        )
        self.decision_cancel = self._button(
            "console.cancel", "mc-cancel-decision", lambda: self._cancel("decision")
        )
        self.decision_result = self._result("mc-decision-result")

        # Action items of this meeting.
        self.action_list = w.VBox().add_class("mc-action-list")
        self.action_description = w.Textarea(
            continuous_update=False, description=_("console.action"), style=style, layout=wide
        ).add_class("mc-action-description")
        self.action_owner = w.Combobox(
            continuous_update=False,
            options=[p.name for p in self.people.values()],
            ensure_option=False,
            description=_("console.owner"),
            style=style,
        ).add_class("mc-action-owner")
        self.action_department = w.Dropdown(
            options=self.departments, description=_("console.department"), style=style
        ).add_class("mc-action-department")
        self.action_due = w.DatePicker(description=_("console.due"), style=style).add_class(
            "mc-action-due"
        )
        self.action_issue = w.Dropdown(
            options=issues, description=_("console.issue"), style=style, layout=wide
        ).add_class("mc-action-issue")
        self.action_button = self._button(
            "console.add_action", "mc-add-action", self.add_action, primary=True
        )
        self.action_save = self._button(
            "console.save_action", "mc-save-action", self.save_action, primary=True
        )
        self.action_cancel = self._button(
            "console.cancel", "mc-cancel-action", lambda: self._cancel("action")
        )
        self.action_result = self._result("mc-action-result")

        # Earlier items still open: one row each, closed with its own button.
        self.earlier_list = w.VBox().add_class("mc-earlier-list")

        # Feedback.
        self.feedback_list = w.VBox().add_class("mc-feedback-list")
        self.feedback_person = w.Dropdown(
            options=[(_("console.anonymous"), None)]
            + [(p.name, email) for email, p in self.people.items()],
            description=_("console.person"),
            style=style,
        ).add_class("mc-feedback-person")
        self.feedback_rating = w.Dropdown(
            options=[(_("console.none"), None), *[(str(i), i) for i in range(1, 6)]],
            description=_("console.rating"),
            style=style,
        ).add_class("mc-feedback-rating")
        self.feedback_comment = w.Text(
            continuous_update=False, description=_("console.comment"), style=style, layout=wide
        ).add_class("mc-feedback-comment")
        self.feedback_button = self._button(
            "console.add_feedback", "mc-add-feedback", self.add_feedback, primary=True
        )
        self.feedback_result = self._result("mc-feedback-result")

        # Summary and plan.
        self.summary = w.Textarea(
            continuous_update=False, description=_("console.summary"), style=style, layout=wide
        ).add_class("mc-summary")
        self.plan = w.Textarea(
            continuous_update=False,
            description=_("console.plan_label"),
            placeholder=_("console.plan"),
            style=style,
            layout=wide,
        ).add_class("mc-plan")
        self.save_button = self._button("console.save", "mc-save-summary", self.save,
                                        primary=True)  # fmt: skip
        self.summary_result = self._result("mc-summary-result")

        def box(title: str, *children: Any) -> Any:
            return w.VBox([w.HTML(f"<h3>{html.escape(title)}</h3>"), *children])

        def bar(*children: Any) -> Any:
            return w.HBox(
                list(children), layout=w.Layout(align_items="center", flex_flow="row wrap")
            )

        people = [bar(*pair) for pair in self.attendance.values()]
        self.widget = w.VBox(
            [
                self.title,
                bar(self.refresh_button, self.refresh_result),
                box(_("console.section.attendance"), *people,
                    bar(self.attendance_button, self.attendance_result)),
                box(_("console.section.time"), *self.times.values(),
                    bar(self.times_button, self.times_result)),
                box(_("console.section.decisions"), self.decision_list, self.decision_text,
                    self.decision_department, self.decision_issue,
                    bar(self.decision_button, self.decision_save, self.decision_cancel,
                        self.decision_result)),
                box(_("console.section.actions"), self.action_list, self.action_description,
                    self.action_owner, self.action_department, self.action_due,
                    self.action_issue,
                    bar(self.action_button, self.action_save, self.action_cancel,
                        self.action_result)),
                box(_("console.section.earlier"), self.earlier_list),
                box(_("console.section.feedback"), self.feedback_list, self.feedback_person,
                    self.feedback_rating, self.feedback_comment,
                    bar(self.feedback_button, self.feedback_result)),
                box(_("console.section.summary"), self.summary, self.plan,
                    bar(self.save_button, self.summary_result)),
            ],
            layout=w.Layout(max_width="1100px"),
        ).add_class("mc-console")  # fmt: skip
        self._show_editing()
        self._load(self.state)

    # --- small pieces ------------------------------------------------------------------------

    def _t(self, key: str, **fields: object) -> str:
        return t(key, self.lang, **fields)

    def _button(
        self, key: str, css: str, action: Callable[[], object], primary: bool = False
    ) -> Any:
        button = self.w.Button(
            description=self._t(key),
            button_style="primary" if primary else "",
            layout=self.w.Layout(width="auto"),
        ).add_class(css)
        button.on_click(lambda _b: action())
        return button

    def _result(self, css: str) -> Any:
        return self.w.HTML(layout=self.w.Layout(margin="0 0 0 1em")).add_class(css)

    @staticmethod
    def _say(target: Any, text: str, ok: bool = True) -> None:
        body = html.escape(text).replace("\n", "<br>")
        target.value = f'<span style="color:{OK if ok else FAILED}">{body}</span>'

    def _person_label(self, email: str) -> str:
        person = self.people[email]
        if person.department:
            return f"{person.name} ({department_label(person.department, self.lang)})"
        return str(person.name)

    def _segment_label(self, title: str, planned: int) -> str:
        return self._t("console.segment", title=title, minutes=planned)

    def _segment_title(self, segment: SegmentItem) -> str:
        """A stored segment's title in the console's language (the store keeps one)."""
        title = segment_title(
            self.params, segment.segment, self.lang, stored=segment.title, load=self.load
        )
        return title or str(segment.title)

    def _title_html(self) -> str:
        when, tz = self.agenda.start.strftime("%Y-%m-%d %H:%M"), self.params.timezone
        title = self.params.meeting.title_in(self.lang)
        heading = self._t("console.title", title=title, week=str(self.week))
        line = self._t(
            "console.when", week=str(self.week), when=f"{when} ({tz})", store=self.store.url
        )
        return f"<h2>{html.escape(heading)}</h2><p>{html.escape(line)}</p>"

    def _issue_options(self, keep: Sequence[int | None] = ()) -> list[tuple[str, int | None]]:
        options: list[tuple[str, int | None]] = [(self._t("console.none"), None)]
        options += issue_choices(self.store, self.week)
        known = {v for _label, v in options}
        extra = [i for i in keep if i is not None and i not in known]
        options += [(f"#{i}", i) for i in extra]  # an item's issue closed since: still shown
        return options

    def _issue_text(self, issue_id: int | None) -> str:
        if issue_id is None:
            return ""
        for label, value in self.decision_issue.options:
            if value == issue_id:
                return str(label)
        return f"#{issue_id}"

    def _department_text(self, code: str | None) -> str:
        return "" if not code else department_label(code, self.lang)

    # --- loading -------------------------------------------------------------------------

    def _sync(self, key: str, widget: Any, stored: Any, version: int) -> None:
        """Show the stored value unless the field was changed here since it was loaded."""
        field = self._fields.get(key)
        if field is None or widget.value == field.loaded:
            widget.value = stored
            self._fields[key] = _Field(stored, version)

    def _load(self, state: MeetingState) -> None:
        before = {a.id: a for a in getattr(self, "state", state).earlier_actions}
        gone = set(before) - {a.id for a in state.earlier_actions} - set(self._closed_since)
        if gone:
            self._closed_since.update(self._actions_now(gone))
        elif self._closed_since:
            self._closed_since.update(self._actions_now(set(self._closed_since)))
        self.state = state
        for item in state.attendance:
            pair = self.attendance.get(item.email)
            if pair is None:
                continue
            self._sync(f"attendance:{item.email}", pair[0], item.status or "", item.version)
            self._sync(f"delegate:{item.email}", pair[1], item.delegate, item.version)
        for segment in state.segments:
            if segment.segment in self.times:
                self._sync(
                    f"time:{segment.segment}",
                    self.times[segment.segment],
                    segment.actual_minutes or 0,
                    segment.version,
                )
        summary = state.summary
        self._sync("summary", self.summary, summary.summary, summary.version)
        self._sync("plan", self.plan, "\n".join(summary.plan), summary.version)
        keep = [d.issue_id for d in state.decisions] + [a.issue_id for a in state.actions]
        options = self._issue_options(keep)
        for dropdown in (self.decision_issue, self.action_issue):
            value = dropdown.value
            dropdown.options = options
            dropdown.value = value if value in {v for _l, v in options} else None
        self._render_lists()

    def _actions_now(self, ids: set[int]) -> dict[int, ActionItem]:
        """Action items ``ids`` as stored now (for earlier items closed since loaded)."""
        frame = self.store.action_items()
        frame = frame[frame["id"].isin(ids)]
        fields = ActionItem.__dataclass_fields__
        items = {}
        for row in frame.to_dict("records"):
            # NaN (pandas' missing value, the only value unequal to itself) back to None.
            values: dict[str, Any] = {k: None if row[k] != row[k] else row[k] for k in fields}
            items[int(row["id"])] = ActionItem(**values)
        return items

    def _reload(self) -> None:
        self._load(meeting_state(self.store, self.week))

    def refresh(self) -> bool:
        """Reload everything recorded for the week; fields being edited keep their text."""
        try:
            self._reload()
        except MeetingError as exc:
            self._say(self.refresh_result, str(exc), ok=False)
            return False
        s = self.state
        recorded = sum(a.status is not None for a in s.attendance)
        self._say(
            self.refresh_result,
            self._t(
                "console.refreshed",
                time=dt.datetime.now().strftime("%H:%M:%S"),
                attendance=recorded,
                decisions=len(s.decisions),
                actions=len(s.actions),
                feedback=len(s.feedback),
            ),
        )
        return True

    # --- lists -------------------------------------------------------------------------------

    def _row(self, kind: str, item_id: int, text: str, *buttons: Any) -> Any:
        w = self.w
        label = w.HTML(
            f"<span>{html.escape(text)}</span>", layout=w.Layout(flex="1 1 0", min_width="0")
        )
        note = w.HTML(layout=w.Layout(margin="0 0 0 1em")).add_class("mc-row-result")
        if (kind, item_id) in self._notes:
            message, ok = self._notes[(kind, item_id)]
            self._say(note, message, ok)
        row = w.HBox(
            [label, *buttons, note],
            layout=w.Layout(align_items="center", border_bottom="1px solid #ddd", width="100%"),
        )
        return row.add_class(f"mc-{kind}-row")

    def _row_button(self, key: str, css: str, action: Callable[[], object]) -> Any:
        button = self._button(key, css, action)
        button.layout.flex = "0 0 auto"  # a long entry wraps; its buttons keep their words
        return button

    def _render_lists(self) -> None:
        _ = self._t
        s = self.state
        rows = []
        for d in s.decisions:
            bits = [d.text, self._department_text(d.department), self._issue_text(d.issue_id)]
            rows.append(
                self._row(
                    "decision",
                    d.id,
                    " · ".join(b for b in bits if b),
                    self._row_button("console.edit", "mc-edit", partial(self.edit_decision, d.id)),
                    self._row_button(
                        "console.remove", "mc-remove", partial(self.remove_decision, d.id)
                    ),
                )  # fmt: skip
            )
        self.decision_list.children = rows or [
            self.w.HTML(f"<i>{html.escape(_('console.none_yet'))}</i>")
        ]

        rows = []
        for a in s.actions:
            buttons = [self._row_button("console.edit", "mc-edit", partial(self.edit_action, a.id))]
            if a.status == "open":
                buttons.append(
                    self._row_button("console.mark_done", "mc-done", partial(self.close_item, a.id))
                )
            rows.append(self._row("action", a.id, self._action_text(a), *buttons))
        self.action_list.children = rows or [
            self.w.HTML(f"<i>{html.escape(_('console.none_yet'))}</i>")
        ]

        rows = []
        earlier = {a.id: a for a in s.earlier_actions}
        shown = sorted({**self._closed_since, **earlier}.values(), key=lambda a: a.id)
        for a in shown:
            buttons = []
            if a.id in earlier:
                buttons.append(
                    self._row_button("console.mark_done", "mc-done", partial(self.close_item, a.id))
                )
            text = self._action_text(a) + " · " + _("console.from_week", week=a.meeting_week)
            rows.append(self._row("earlier", a.id, text, *buttons))
        self.earlier_list.children = rows or [
            self.w.HTML(f"<i>{html.escape(_('console.none_open'))}</i>")
        ]

        rows = []
        for f in s.feedback:
            who = f.name or _("console.anonymous")
            bits = [who, "★" * (f.rating or 0), f.comment]
            rows.append(
                self._row("feedback", f.id, " · ".join(b for b in bits if b),
                          self._row_button("console.remove", "mc-remove",
                                           partial(self.remove_feedback, f.id)))
            )  # fmt: skip
        self.feedback_list.children = rows

    def _action_text(self, a: ActionItem) -> str:
        return self._t(
            "console.row.action",
            id=a.id,
            description=a.description,
            owner=a.owner,
            department=self._department_text(a.department),
            due=a.due_date.isoformat(),
            status=self._t(f"console.status.{a.status}"),
        )

    # --- writing -------------------------------------------------------------------------

    def _attempt(
        self, target: Any, work: Callable[[], object], done: str, item: tuple[str, Any] = ("", 0)
    ) -> bool:
        """Run one write; say what happened next to its button; reload the lists."""
        try:
            work()
        except ConcurrentEditError:
            self._reload()
            self._say(target, self._conflict_text(*item), ok=False)
            return False
        except MeetingError as exc:
            self._say(target, self._t("console.invalid", problems=str(exc)), ok=False)
            return False
        self._say(target, done)
        self._reload()
        return True

    def _adopt(self, key: str, version: int) -> None:
        """After a conflict: the next save replaces the stored entry on purpose."""
        if key in self._fields:
            self._fields[key].version = version

    def save_attendance(self) -> bool:
        """Record each person whose attendance was changed here; others' entries are kept."""
        changed, conflicts, problems = 0, [], []
        for email, (status, delegate) in self.attendance.items():
            field = self._fields.get(f"attendance:{email}")
            other = self._fields.get(f"delegate:{email}")
            loaded = (field.loaded if field else "", other.loaded if other else "")
            if (status.value, delegate.value.strip()) == loaded:
                continue
            version = field.version if field else 0
            try:
                item = set_attendance(
                    self.store,
                    self.week,
                    email,
                    status.value or None,
                    delegate=delegate.value.strip(),
                    expected_version=version,
                    name=self.people[email].name,
                    department=self.people[email].department,
                    source=SOURCE,
                )
            except ConcurrentEditError as exc:
                conflicts.append(("attendance", email))
                self._adopt(f"attendance:{email}", exc.stored)
                self._adopt(f"delegate:{email}", exc.stored)
                continue
            except MeetingError as exc:
                problems.append(f"{self.people[email].name}: {exc}")
                continue
            changed += 1
            self._fields[f"attendance:{email}"] = _Field(item.status or "", item.version)
            self._fields[f"delegate:{email}"] = _Field(item.delegate, item.version)
        return self._report(self.attendance_result, changed, conflicts, problems,
                            "console.done.attendance")  # fmt: skip

    def _report(
        self,
        target: Any,
        changed: int,
        conflicts: list[tuple[str, str]],
        problems: list[str],
        key: str,
    ) -> bool:
        self._reload()
        if conflicts or problems:
            lines = [self._conflict_text(kind, name) for kind, name in conflicts]
            lines += [self._t("console.invalid", problems=p) for p in problems]
            if changed:
                lines.insert(0, self._t(key, count=changed))
            self._say(target, "\n".join(lines), ok=False)
            return False
        self._say(target, self._t(key, count=changed) if changed else self._t("console.unchanged"))
        return True

    def save_times(self) -> bool:
        """Record the minutes of each segment changed here."""
        changed, conflicts, problems = 0, [], []
        for key, widget in self.times.items():
            field = self._fields.get(f"time:{key}")
            if field is not None and widget.value == field.loaded:
                continue
            try:
                item = set_segment_time(
                    self.store,
                    self.week,
                    key,
                    int(widget.value) or None,
                    expected_version=field.version if field else 0,
                    source=SOURCE,
                )
            except ConcurrentEditError as exc:
                conflicts.append(("time", key))
                self._adopt(f"time:{key}", exc.stored)
                continue
            except MeetingError as exc:
                problems.append(str(exc))
                continue
            changed += 1
            self._fields[f"time:{key}"] = _Field(item.actual_minutes or 0, item.version)
        return self._report(self.times_result, changed, conflicts, problems, "console.done.times")

    def _decision_values(self) -> dict[str, Any]:
        return {
            "department": self.decision_department.value,
            "issue_id": self.decision_issue.value,
        }

    def add_decision(self) -> bool:
        """Add the decision in the form as a new item; clears the text when recorded."""

        def work() -> None:
            add_decision(
                self.store, self.week, self.decision_text.value, source=SOURCE,
                **self._decision_values(),
            )  # fmt: skip

        if self._attempt(self.decision_result, work, self._t("console.done.decision")):
            self.decision_text.value = ""
            return True
        return False

    def edit_decision(self, decision_id: int) -> None:
        """Load decision ``decision_id`` into the form, to change it with save_decision."""
        d = self._find(self.state.decisions, decision_id)
        self._editing["decision"] = (d.id, d.version)
        self.decision_text.value = d.text
        self.decision_department.value = d.department
        self.decision_issue.value = d.issue_id
        self._show_editing()
        self._say(self.decision_result, self._t("console.editing", id=d.id))

    def save_decision(self) -> bool:
        """Save the decision being edited, if nobody changed it since it was loaded."""
        editing = self._editing["decision"]
        if editing is None:
            return self.add_decision()
        decision_id, version = editing
        try:
            update_decision(
                self.store, decision_id, expected_version=version, text=self.decision_text.value,
                **self._decision_values(),
            )  # fmt: skip
        except ConcurrentEditError as exc:
            self._editing["decision"] = (decision_id, exc.stored)
            self._conflict(self.decision_result, "decision", decision_id)
            return False
        except MeetingError as exc:
            self._say(self.decision_result, self._t("console.invalid", problems=str(exc)), False)
            return False
        self._cancel("decision")
        self._say(self.decision_result, self._t("console.done.saved_item", id=decision_id))
        self._reload()
        return True

    def _conflict(self, target: Any, kind: str, item_id: int) -> None:
        """Show the conflict; the form keeps what was typed, the lists show what is stored."""
        self._reload()
        self._say(target, self._conflict_text(kind, item_id), ok=False)

    def _stored_text(self, kind: str, key: Any) -> str | None:
        """What the store holds now for one item (as last loaded); None when it is gone."""
        s = self.state
        if kind == "attendance":
            a = next((a for a in s.attendance if a.email == key), None)
            if a is None or a.status is None:
                return None
            status = self._t(f"console.attendance.{a.status}")
            return f"{a.name}: {status}" + (f" ({a.delegate})" if a.delegate else "")
        if kind == "time":
            seg = next((x for x in s.segments if x.segment == key), None)
            return None if seg is None else f"{self._segment_title(seg)}: {seg.actual_minutes or 0}"
        if kind == "summary":
            return "\n".join([s.summary.summary, *s.summary.plan])
        items: Sequence[Any] = {
            "decision": s.decisions,
            "action": [*s.actions, *s.earlier_actions, *self._closed_since.values()],
            "feedback": s.feedback,
        }.get(kind, ())
        item = next((x for x in items if x.id == key), None)
        if item is None:
            return None
        if kind == "decision":
            return str(item.text)
        if kind == "action":
            return self._action_text(item)
        return " · ".join(b for b in (item.name, "★" * (item.rating or 0), item.comment) if b)

    def _conflict_text(self, kind: str, key: Any) -> str:
        stored = self._stored_text(kind, key)
        if stored is None:
            return self._t("console.conflict_gone")
        return self._t("console.conflict", stored=stored)

    def _remove_refused(self, kind: str, item_id: int) -> tuple[str, bool]:
        """Remove refused, the item changed meanwhile: what it holds now; pressing Remove
        again removes it as it is now (the lists were reloaded)."""
        stored = self._stored_text(kind, item_id)
        if stored is None:  # removed by someone else meanwhile: what Remove was for
            return self._t("console.done.removed"), True
        button = self._t("console.remove")
        return self._t("console.remove.changed", stored=stored, button=button), False

    def remove_decision(self, decision_id: int) -> bool:
        """Remove one decision (as loaded: refused when someone changed it meanwhile)."""
        d = self._find(self.state.decisions, decision_id)
        return self._row_write(
            "decision", decision_id,
            lambda: delete_decision(self.store, decision_id, expected_version=d.version),
            self._t("console.done.removed"),
            partial(self._remove_refused, "decision", decision_id),
        )  # fmt: skip

    def _action_values(self) -> dict[str, Any] | None:
        due = self.action_due.value
        if not isinstance(due, dt.date):
            self._say(self.action_result, self._t("console.no_due"), ok=False)
            return None
        return {
            "description": self.action_description.value,
            "owner": self.action_owner.value,
            "department": self.action_department.value,
            "due_date": due,
            "issue_id": self.action_issue.value,
        }

    def add_action(self) -> bool:
        """Add the action item in the form; clears description and owner when recorded."""
        values = self._action_values()
        if values is None:
            return False
        departments = self.params.meeting.departments

        def work() -> None:
            add_action_item(self.store, self.week, departments=departments, source=SOURCE, **values)

        if self._attempt(self.action_result, work, self._t("console.done.action")):
            self.action_description.value = ""
            self.action_owner.value = ""
            return True
        return False

    def edit_action(self, item_id: int) -> None:
        """Load action item ``item_id`` of this meeting into the form."""
        a = self._find(self.state.actions, item_id)
        self._editing["action"] = (a.id, a.version)
        self.action_description.value = a.description
        self.action_owner.value = a.owner
        self.action_department.value = a.department
        self.action_due.value = a.due_date
        self.action_issue.value = a.issue_id
        self._show_editing()
        self._say(self.action_result, self._t("console.editing", id=a.id))

    def save_action(self) -> bool:
        """Save the action item being edited, if nobody changed it since it was loaded."""
        editing = self._editing["action"]
        if editing is None:
            return self.add_action()
        values = self._action_values()
        if values is None:
            return False
        item_id, version = editing
        try:
            update_action_item(
                self.store, item_id, expected_version=version,
                departments=self.params.meeting.departments, **values,
            )  # fmt: skip
        except ConcurrentEditError as exc:
            self._editing["action"] = (item_id, exc.stored)
            self._conflict(self.action_result, "action", item_id)
            return False
        except MeetingError as exc:
            self._say(self.action_result, self._t("console.invalid", problems=str(exc)), False)
            return False
        self._cancel("action")
        self._say(self.action_result, self._t("console.done.saved_item", id=item_id))
        self._reload()
        return True

    def close_item(self, item_id: int) -> bool:
        """Mark action item ``item_id`` (this meeting's or an earlier one) done."""
        items = [*self.state.actions, *self.state.earlier_actions]
        a = self._find(items, item_id)
        kind = "earlier" if a.meeting_week < str(self.week) else "action"

        def work() -> None:
            close_action_item(self.store, item_id, expected_version=a.version)

        return self._row_write(
            kind,
            item_id,
            work,
            self._t("console.done.closed"),
            partial(self._close_refused, item_id),
        )

    def _close_refused(self, item_id: int) -> tuple[str, bool]:
        """Mark done refused, the item changed meanwhile: done already is the goal reached;
        still open, pressing Mark done again closes it as it is now (the lists were
        reloaded); closed otherwise (dropped), there is nothing to press."""
        s = self.state
        items = [*s.actions, *s.earlier_actions, *self._closed_since.values()]
        now = next((x for x in items if x.id == item_id), None)
        if now is None:
            return self._t("console.conflict_gone"), False
        if now.status == "done":
            return self._t("console.close.already_done"), True
        stored = self._action_text(now)
        if now.status != "open":
            return self._t("console.close.closed", stored=stored), False
        button = self._t("console.mark_done")
        return self._t("console.close.changed", stored=stored, button=button), False

    def _row_write(
        self,
        kind: str,
        item_id: int,
        work: Callable[[], object],
        done: str,
        refused: Callable[[], tuple[str, bool]],
    ) -> bool:
        """A write from a row's button: its result goes next to that button.

        When someone changed the item meanwhile, the lists are reloaded and ``refused``
        says what that means for this button (and whether its goal is reached anyway).
        """
        try:
            work()
        except ConcurrentEditError:
            self._reload()
            message, ok = refused()
            self._notes[(kind, item_id)] = (message, ok)
            self._render_lists()
            return ok
        except MeetingError as exc:
            self._notes[(kind, item_id)] = (self._t("console.invalid", problems=str(exc)), False)
            self._reload()
            return False
        self._notes[(kind, item_id)] = (done, True)
        self._reload()
        return True

    def add_feedback(self) -> bool:
        """Record a person's (or an anonymous) rating and comment; a person's earlier one is
        changed rather than doubled."""
        email = self.feedback_person.value
        rating, comment = self.feedback_rating.value, self.feedback_comment.value
        mine = [f for f in self.state.feedback if email is not None and f.email == email]

        def work() -> None:
            if mine:
                update_feedback(
                    self.store, mine[0].id, expected_version=mine[0].version, rating=rating,
                    comment=comment,
                )  # fmt: skip
            else:
                add_feedback(
                    self.store, self.week, email=email, rating=rating, comment=comment,
                    source=SOURCE,
                )  # fmt: skip

        item = ("feedback", mine[0].id if mine else 0)
        if self._attempt(self.feedback_result, work, self._t("console.done.feedback"), item):
            self.feedback_comment.value = ""
            return True
        return False

    def remove_feedback(self, feedback_id: int) -> bool:
        """Remove one feedback entry."""
        f = self._find(self.state.feedback, feedback_id)
        return self._row_write(
            "feedback", feedback_id,
            lambda: delete_feedback(self.store, feedback_id, expected_version=f.version),
            self._t("console.done.removed"),
            partial(self._remove_refused, "feedback", feedback_id),
        )  # fmt: skip

    def save(self) -> bool:
        """Record the summary and/or the plan changed here.

        Both share one version: when someone else changed the other field meanwhile, the
        save goes through on top of theirs; the same field changed by both is a conflict.
        """
        summary, plan = self._fields["summary"], self._fields["plan"]
        changed_summary = self.summary.value != summary.loaded
        changed_plan = self.plan.value != plan.loaded
        if not (changed_summary or changed_plan):
            self._say(self.summary_result, self._t("console.unchanged"))
            return True
        lines = [line.strip() for line in self.plan.value.splitlines() if line.strip()]
        version = summary.version
        for attempt in (1, 2):
            try:
                item = set_summary(
                    self.store,
                    self.week,
                    summary=self.summary.value if changed_summary else None,
                    plan=lines if changed_plan else None,
                    expected_version=version,
                    source=SOURCE,
                )
                break
            except ConcurrentEditError as exc:
                stored = meeting_state(self.store, self.week).summary
                clash = (changed_summary and stored.summary != summary.loaded) or (
                    changed_plan and "\n".join(stored.plan) != plan.loaded
                )
                if clash or attempt == 2:
                    self._adopt("summary", exc.stored)
                    self._adopt("plan", exc.stored)
                    self._reload()
                    self._say(self.summary_result, self._conflict_text("summary", None), False)
                    return False
                version = stored.version
            except MeetingError as exc:
                problems = self._t("console.invalid", problems=str(exc))
                self._say(self.summary_result, problems, False)
                return False
        if changed_summary:
            self._fields["summary"] = _Field(self.summary.value, item.version)
        if changed_plan:
            self._fields["plan"] = _Field(self.plan.value, item.version)
        self._reload()
        self._say(self.summary_result, self._t("console.done.saved"))
        return True

    # --- editing state ---------------------------------------------------------------------

    def _cancel(self, kind: str) -> None:
        self._editing[kind] = None
        if kind == "decision":
            self.decision_text.value = ""
        else:
            self.action_description.value = ""
            self.action_owner.value = ""
        self._show_editing()

    def _show_editing(self) -> None:
        for kind, add, save, cancel in (
            ("decision", self.decision_button, self.decision_save, self.decision_cancel),
            ("action", self.action_button, self.action_save, self.action_cancel),
        ):
            editing = self._editing[kind] is not None
            add.layout.display = "none" if editing else None
            save.layout.display = None if editing else "none"
            cancel.layout.display = None if editing else "none"

    @staticmethod
    def _find(items: Sequence[Any], item_id: int) -> Any:
        for item in items:
            if item.id == item_id:
                return item
        raise InputDataError(f"item #{item_id} is not loaded in this console; press Refresh.")


def open_console(
    params_files: Sequence[str] | None = None, week: str | None = None, lang: str | None = None
) -> Any:
    """The console's widget for ``week`` (default: the latest report's week; see console_week).

    ``params_files`` empty: the demo's params (see ``load_params``).
    """
    params = load_params(*(params_files or ()))
    store = open_store(params)
    return MeetingConsole(params, store, console_week(params, week), lang).widget
