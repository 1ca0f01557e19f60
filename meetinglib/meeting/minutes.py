"""The minutes of a meeting: recording them from a YAML file, and reading them back.

The minutes of the meeting about report week W are written by the note-taker in a YAML
file and recorded with ``meeting minutes record FILE --week W``. Every key but ``week``
is optional; an example is ``tests/data/minutes/2026-W47.yaml``::

    week: 2026-W47                 # optional; must equal --week when given
    summary: |                     # free text, shown at the top of the minutes
      EastPost's late deliveries to the South are the week's main problem.
    plan:                          # next week's plan as decided, one line each
      - Two extra pickers in WH-South from Tuesday
    attendance:                    # people of meeting.organizer / meeting.attendees, by e-mail
      - {email: chen.jie@demo-shop.example, status: present}       # present | absent | delegate
      - {email: liu.yang@demo-shop.example, status: delegate, delegate: Sun Li}
    time:                          # actual minutes per agenda segment: opening, data_report,
      opening: 6                   # a department code (its issues), solutions,
      logistics: 14                # next_week_plan, summary_feedback
    decisions:
      - ref: D1                    # optional label, for actions to point at
        text: Move South parcels from EastPost to SwiftExpress for two weeks
        department: logistics      # optional, a code of meeting.departments
        issue: 3                   # optional: an issue id, or an issue's exact title
    actions:
      - description: Agree the temporary volume shift with SwiftExpress
        owner: Chen Jie
        department: logistics
        due: 2026-11-27
        issue: 3                   # optional
        decision: D1               # optional, the ref of a decision above
        status: open               # optional: open (default) | done | dropped
        note: ""                   # optional
    updates:                       # earlier action items reviewed at this meeting, by id
      - {id: 4, status: done, note: closed on Wednesday}          # or by their exact text:
      - {description: Recount WH-South stock, due: 2026-11-27}
    feedback:                      # per attendee (e-mail), or anonymous without one
      - {email: chen.jie@demo-shop.example, rating: 4, comment: Good focus on the South}

The whole file is checked before anything is written; every problem is reported with
the file, the key path (``actions[2].due``) and what is wrong, and the command exits
with code 3. Recording is one transaction, built on the store's per-item operations
(``meetinglib.meeting.store``, "Per-item records"): every entry of the file is merged
into the stored item it names, and nothing the file does not name is removed, so
entries other note-takers recorded (in the console, or another file) stay. Recording
the same file again changes nothing. Decisions are matched by their text, action
items by description and owner, within the meeting; attendance by the person's
e-mail, minutes per segment by the segment, feedback by the attendee's e-mail
(anonymous feedback by its rating and comment); the summary and the plan are set
when the file gives them. Values equal to the stored ones leave an item and its
version untouched. A file's ``status: open`` never reopens an item closed since
(``meeting actions done``); ``done`` or ``dropped`` closes it.

A file recorded again for the same week (known by its file name) is merged against what
it recorded the time before, kept in the store: only the values the file changed since
are written, so what others changed meanwhile (in the console, with ``meeting actions
update``, or in another file) stays, and an action item the file recorded stays that
item even after its owner changed. A value both the file and someone else changed since
is a conflict: the whole file is refused (``MinutesConflictError``, exit code 3), each
such entry named with both values, and nothing is written. The first recording of a
file writes every value it gives.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from icalendar import Calendar, Todo
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from meetinglib.core.csvsafe import to_csv as write_csv
from meetinglib.core.errors import ConcurrentEditError, InputDataError, MeetingError
from meetinglib.core.params import Params
from meetinglib.core.weeks import IsoWeek
from meetinglib.core.yamlsafe import UniqueKeyLoader
from meetinglib.meeting import store as _records
from meetinglib.meeting.agenda import PRODID, build_agenda, issue_load, prepare_meeting
from meetinglib.meeting.store import (
    ActionItem,
    Batch,
    Store,
    add_action_item,
    add_decision,
    add_feedback,
    mark_recorded,
    meeting_id,
    meeting_state,
    minutes_digest,
    open_store,
    plan_segments,
    recorded_file,
    save_recorded_file,
    set_attendance,
    set_segment_time,
    set_summary,
    store_url,
    update_action_item,
    update_decision,
    update_feedback,
)
from meetinglib.meeting.store import mark_sent as _mark_sent

# The readers of the recorded minutes live with the store's SQL; named here as before.
attendance_frame = _records.attendance_frame
decision_frame = _records.decision_frame
feedback_frame = _records.feedback_frame
feedback_trend = _records.feedback_trend
minutes_row = _records.minutes_row
segment_frame = _records.segment_frame

SEGMENT_KEYS_FIXED = (
    "opening",
    "data_report",
    "solutions",
    "next_week_plan",
    "summary_feedback",
)


class _TextDates(UniqueKeyLoader):
    """SafeLoader keeping dates as text, so a bad date is reported, not a crash; a key
    given twice is refused."""


_TextDates.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


# --- the file format --------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class AttendanceEntry(_Strict):
    email: str = Field(min_length=3)
    status: Literal["present", "absent", "delegate"]
    delegate: str = ""


class DecisionEntry(_Strict):
    ref: str | None = None
    text: str = Field(min_length=1)
    department: str | None = None
    issue: int | str | None = None  # id, or the exact title of a stored issue


class ActionEntry(_Strict):
    description: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    department: str
    due: dt.date
    issue: int | str | None = None  # id, or the exact title of a stored issue
    decision: str | None = None
    status: Literal["open", "done", "dropped"] = "open"
    note: str = ""


class UpdateEntry(_Strict):
    id: int | None = None
    description: str | None = None  # instead of id: the exact text of an earlier item
    status: Literal["open", "done", "dropped"] | None = None
    due: dt.date | None = None
    owner: str | None = None
    note: str | None = None


class FeedbackEntry(_Strict):
    email: str | None = None
    rating: int | None = Field(None, ge=1, le=5)
    comment: str = ""


class MinutesFile(_Strict):
    """A minutes file as parsed (see the module text for the format)."""

    week: str | None = None
    summary: str = ""
    plan: list[str] = Field(default_factory=list)
    attendance: list[AttendanceEntry] = Field(default_factory=list)
    time: dict[str, int] = Field(default_factory=dict)
    decisions: list[DecisionEntry] = Field(default_factory=list)
    actions: list[ActionEntry] = Field(default_factory=list)
    updates: list[UpdateEntry] = Field(default_factory=list)
    feedback: list[FeedbackEntry] = Field(default_factory=list)


def key_path(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as a key path: ``actions[2].due`` (items counted from 1)."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part + 1}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def _fail(path: Path, problems: list[str]) -> InputDataError:
    listed = "\n".join(f"  {p}" for p in problems)
    return InputDataError(
        f"minutes file {path}: {len(problems)} problem(s); nothing was recorded. Fix them "
        f"and record the file again:\n{listed}"
    )


def parse_minutes(path: str | Path) -> MinutesFile:
    """Read and check the structure of a minutes file; InputDataError listing every problem."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"minutes file {path} does not exist; check the path.")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8-sig"), Loader=_TextDates)  # noqa: S506
    except UnicodeDecodeError:
        raise InputDataError(f"minutes file {path} is not UTF-8 text; save it as UTF-8.") from None
    except yaml.YAMLError as exc:
        raise _fail(path, [f"not valid YAML: {exc}".replace("\n", " ")]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _fail(path, ["(top level): expected keys like summary, decisions, actions"])
    if isinstance(raw.get("week"), str | int):
        raw["week"] = str(raw["week"])
    try:
        return MinutesFile.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = key_path(err["loc"])
            got = "" if err["type"] == "missing" else f" (got {err.get('input')!r})"
            problems.append(f"{where}: {err['msg']}{got}")
        raise _fail(path, problems) from None


def people_by_email(params: Params) -> dict[str, Any]:
    """The organizer and attendees of params, by lower-case e-mail."""
    m = params.meeting
    people = [*([m.organizer] if m.organizer else []), *m.attendees]
    return {p.email.lower(): p for p in people}


def segment_keys(params: Params) -> list[str]:
    """Keys the ``time`` block accepts: the fixed agenda segments and the departments."""
    return [*SEGMENT_KEYS_FIXED[:2], *params.meeting.departments, *SEGMENT_KEYS_FIXED[2:]]


def check_minutes(
    doc: MinutesFile, path: Path, params: Params, store: Store, week: IsoWeek
) -> None:
    """Check the file's content against params and the store; InputDataError listing all."""
    problems: list[str] = []
    if doc.week is not None:
        try:
            if IsoWeek.parse(doc.week) != week:
                problems.append(f"week: the file says {doc.week} but --week is {week}")
        except InputDataError:
            raise
        except Exception:
            problems.append(f"week: {doc.week!r} is not an ISO week like 2026-W47")
    people = people_by_email(params)
    departments = params.meeting.departments
    for i, person in enumerate(doc.attendance, 1):
        if person.email.lower() not in people:
            problems.append(
                f"attendance[{i}].email: {person.email!r} is not the organizer or an attendee in "
                "the params (meeting.attendees)"
            )
        if person.status == "delegate" and not person.delegate:
            problems.append(f"attendance[{i}].delegate: name who came instead")
    emails = [a.email.lower() for a in doc.attendance]
    for email in sorted({e for e in emails if emails.count(e) > 1}):
        problems.append(f"attendance: {email} is listed more than once")
    keys = segment_keys(params)
    for key, minutes in doc.time.items():
        if key not in keys:
            problems.append(f"time.{key}: not an agenda segment; use one of {keys}")
        elif minutes < 0:
            problems.append(f"time.{key}: minutes cannot be negative (got {minutes})")
    refs = [d.ref for d in doc.decisions if d.ref]
    for ref in sorted({r for r in refs if refs.count(r) > 1}):
        problems.append(f"decisions: ref {ref!r} is used more than once")
    for i, d in enumerate(doc.decisions, 1):
        if d.department is not None and d.department not in departments:
            problems.append(f"decisions[{i}].department: {d.department!r} not in {departments}")
    for i, a in enumerate(doc.actions, 1):
        if a.department not in departments:
            problems.append(f"actions[{i}].department: {a.department!r} not in {departments}")
        if a.decision is not None and a.decision not in refs:
            problems.append(f"actions[{i}].decision: no decision with ref {a.decision!r} above")
    entries: list[tuple[str, int, DecisionEntry | ActionEntry]]
    entries = [("decisions", i, d) for i, d in enumerate(doc.decisions, 1)]
    entries += [("actions", i, a) for i, a in enumerate(doc.actions, 1)]
    issues = store.issues(through_week=str(week)).sort_values("id")
    items = store.action_items().sort_values("id")
    items = items.rename(columns={"meeting_week": "week"})
    issues, items = list(issues.itertuples()), list(items.itertuples())
    known_issues = {r.id for r in issues}
    by_title = {r.title.strip(): r.id for r in issues}  # the latest issue of a title wins
    for kind, i, e in entries:
        if isinstance(e.issue, str):
            if e.issue.strip() not in by_title:
                problems.append(
                    f"{kind}[{i}].issue: no issue titled {e.issue!r} in the store up to week "
                    f"{week}; give the issue's id or its exact title"
                )
            else:
                e.issue = by_title[e.issue.strip()]
        elif e.issue is not None and e.issue not in known_issues:
            problems.append(f"{kind}[{i}].issue: issue #{e.issue} is not in the store")
    weeks = {r.id: r.week for r in items}
    earlier = {r.description: r.id for r in items if r.week < str(week)}
    for i, u in enumerate(doc.updates, 1):
        if (u.id is None) == (u.description is None):
            problems.append(f"updates[{i}]: give either id or description of the action item")
        elif u.description is not None:
            if u.description not in earlier:
                problems.append(
                    f"updates[{i}].description: no action item of an earlier meeting reads "
                    f"{u.description!r}"
                )
            else:
                u.id = earlier[u.description]
        elif u.id not in weeks:
            problems.append(f"updates[{i}].id: action item #{u.id} is not in the store")
        elif weeks[u.id] >= str(week):
            problems.append(
                f"updates[{i}].id: action item #{u.id} was set at the meeting about "
                f"{weeks[u.id]}, not an earlier one; change it under actions"
            )
    for i, f in enumerate(doc.feedback, 1):
        if f.email is not None and f.email.lower() not in people:
            problems.append(f"feedback[{i}].email: {f.email!r} is not in the params' attendees")
        if f.rating is None and not f.comment:
            problems.append(f"feedback[{i}]: give a rating (1-5) or a comment")
    if problems:
        raise _fail(path, problems)


# --- recording ---------------------------------------------------------------------------------


def ensure_meeting(params: Params, store: Store, week: IsoWeek | str) -> int:
    """The id of the meeting about ``week``, recorded from the params' agenda when missing."""

    found = meeting_id(store, week)
    if found is not None:
        return found

    prepare_meeting(params, store, IsoWeek.parse(week))
    found = meeting_id(store, week)
    assert found is not None
    return found


@dataclass(frozen=True)
class RecordResult:
    """What recording a minutes file did."""

    week: IsoWeek
    meeting_id: int
    decisions_added: int
    actions_added: int
    actions_updated: int
    earlier_updated: int
    unchanged: bool  # the same file was recorded before


def _sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def record_minutes(
    params: Params, store: Store, path: str | Path, week: IsoWeek | str
) -> RecordResult:
    """Check the minutes file and record it for the meeting about ``week`` (one transaction)."""
    path = Path(path)
    doc = parse_minutes(path)
    return record_document(
        params, store, doc, week, where=path, source=path.name, digest=_sha256(path.read_bytes())
    )


def record_document(
    params: Params,
    store: Store,
    doc: MinutesFile,
    week: IsoWeek | str,
    *,
    where: str | Path,
    source: str,
    digest: str | None = None,
) -> RecordResult:
    """Check parsed minutes and record them (the file's path or "console" in messages)."""
    week = IsoWeek.parse(week)
    check_minutes(doc, Path(where), params, store, week)
    digest = digest or _sha256(doc.model_dump_json().encode("utf-8"))
    mid = ensure_meeting(params, store, week)
    if minutes_digest(store, week) == digest:
        return RecordResult(week, mid, 0, 0, 0, 0, True)

    agenda = build_agenda(params, week, issue_load(store, week))
    with store.batch() as batch:
        counts = _write(batch, params, doc, week, agenda, source=source, digest=digest)
    return RecordResult(week, mid, *counts, False)


class _Merge:
    """Which of a file's values to write, against what the same file recorded last.

    Without an earlier recording of the file (``known`` false) every value is written,
    as given. Otherwise a value the file left as it was is not written (the store's may
    be someone else's since); a value the file changed is written unless the store's
    changed too, to a third value: that is a conflict, kept in ``conflicts``.
    """

    def __init__(self, known: bool) -> None:
        self.known = known
        self.conflicts: list[str] = []

    def take(self, item: str, field: str, mine: Any, before: Any, stored: Any) -> bool:
        if not self.known:
            return True
        if mine == before:
            return False
        if stored in (before, mine):
            return True
        self.conflicts.append(
            f"{item}, {field}: the file changes {_shown(before)} to {_shown(mine)}, but the "
            f"store holds {_shown(stored)} (changed by someone else since the file was "
            "recorded)"
        )
        return False


def _shown(value: Any) -> str:
    if value is None or value == "":
        return "(nothing)"
    if isinstance(value, (list, tuple)):
        return "; ".join(str(v) for v in value) or "(nothing)"
    return repr(str(value))


class MinutesConflictError(ConcurrentEditError):
    """A minutes file recorded again changes entries someone else changed since."""

    def __init__(self, source: str, week: IsoWeek, conflicts: list[str]) -> None:
        self.conflicts = conflicts
        MeetingError.__init__(
            self,
            f"{source} was recorded for week {week} before, and the store's entries changed "
            f"since; the file changes {len(conflicts)} of them too:\n  - "
            + "\n  - ".join(conflicts)
            + "\nNothing was recorded. Make the file say what the store holds for these "
            "entries (or change them with `meeting actions update`), then record it again.",
        )


def _write(
    batch: Batch,
    params: Params,
    doc: MinutesFile,
    week: IsoWeek,
    agenda: Any,
    *,
    source: str,
    digest: str,
) -> tuple[int, int, int, int]:
    """Record the document item by item, inside the batch's one transaction.

    Every item is merged on its own (see the module text): nothing the document does
    not name is removed, so other note-takers' items stay. A file recorded before is
    merged against what it recorded then (``_Merge``): only what the file changed since
    is written, and a change someone else made meanwhile to the same value refuses the
    whole file (MinutesConflictError).
    """
    state = meeting_state(batch, week)
    saved = recorded_file(batch, week, source)
    base = MinutesFile.model_validate(saved["doc"]) if saved else None
    # the action items the file's entries recorded last time, by their description
    recorded_ids: dict[str, int] = {k: int(v) for k, v in (saved or {}).get("actions", {}).items()}
    merge = _Merge(base is not None)
    writes: list[Any] = []  # the writes, made once every conflict is known
    # (one entry's values at a time, of every kind)
    was: Any
    mine: Any
    before: Any
    before_value: Any
    stored_value: Any
    fields: dict[str, Any]

    # the summary and the plan as one write, when the file gives them (empty: not given)
    summary_changed = bool(doc.summary) and merge.take(
        "summary", "text", doc.summary, base.summary if base else None, state.summary.summary
    )
    plan_changed = bool(doc.plan) and merge.take(
        "plan",
        "steps",
        list(doc.plan),
        list(base.plan) if base else None,
        list(state.summary.plan),
    )
    if summary_changed or plan_changed:
        writes.append(
            lambda: set_summary(
                batch,
                week,
                summary=doc.summary if summary_changed else None,
                plan=doc.plan if plan_changed else None,
                source=source,
            )
        )

    people = people_by_email(params)
    stored_attendance = {
        a.email: (a.status, a.delegate) for a in state.attendance if a.status is not None
    }
    base_attendance = (
        {e.email.lower(): (e.status, e.delegate) for e in base.attendance} if base else {}
    )
    for entry in doc.attendance:
        person = people[entry.email.lower()]
        stored_att = stored_attendance.get(person.email)
        mine = (entry.status, entry.delegate)
        if merge.take(
            f"attendance of {person.email}",
            "status",
            mine,
            base_attendance.get(person.email, stored_att),
            stored_att,
        ):
            writes.append(
                lambda e=entry, p=person: set_attendance(
                    batch,
                    week,
                    p.email,
                    e.status,
                    delegate=e.delegate,
                    name=p.name,
                    department=p.department,
                    source=source,
                )
            )

    # Minutes per segment: the agenda's plan beside what the document says was spent.
    planned = {(i.department or i.key): (i.title, i.minutes) for i in agenda.items}
    stored_segments = {x.segment: x.actual_minutes for x in state.segments}
    layout = [
        (key, *planned.get(key, (key, 0)))
        for key in segment_keys(params)
        if key in planned or key in doc.time or key in stored_segments
    ]
    for key, minutes in doc.time.items():
        stored_min = stored_segments.get(key)
        before = base.time.get(key, stored_min) if base else None
        if merge.take(f"minutes of segment {key}", "minutes", minutes, before, stored_min):
            writes.append(
                lambda k=key, m=minutes: set_segment_time(batch, week, k, m, source=source)
            )

    decisions_added = 0
    decision_ids: dict[str, int] = {}
    by_text = {d.text: d for d in state.decisions}
    base_decisions = {d.text: d for d in base.decisions} if base else {}
    decision_writes: list[tuple[DecisionEntry, Any, bool]] = []
    for d in doc.decisions:
        issue = None if d.issue is None else int(d.issue)
        found = by_text.get(d.text)
        if found is None:
            decision_writes.append((d, None, True))
            continue
        was = base_decisions.get(d.text)
        fields = {}
        for field, mine, stored_value, before_value in (
            ("department", d.department, found.department, was and was.department),
            ("issue_id", issue, found.issue_id, was and _int_or_none(was.issue)),
        ):
            before = stored_value if was is None else before_value
            label = f"decision #{found.id} ({d.text})"
            if merge.take(label, field.removesuffix("_id"), mine, before, stored_value):
                fields[field] = mine
        decision_writes.append((d, (found, fields), False))

    base_actions = {a.description: a for a in base.actions} if base else {}
    by_id = {i.id: i for i in state.actions}
    by_key = {(i.description, i.owner): i for i in state.actions}
    action_writes: list[tuple[ActionEntry, ActionItem | None, dict[str, Any]]] = []
    for a in doc.actions:
        item = by_id.get(recorded_ids[a.description]) if a.description in recorded_ids else None
        item = item or by_key.get((a.description, a.owner))
        if item is None:
            action_writes.append((a, None, {}))
            continue
        was = base_actions.get(a.description)
        label = f"action item #{item.id} ({a.description})"
        fields = {}
        issue = None if a.issue is None else int(a.issue)
        for field, mine, stored_value, before_value in (
            ("owner", a.owner, item.owner, was.owner if was else None),
            ("department", a.department, item.department, was.department if was else None),
            ("due_date", a.due, item.due_date, was.due if was else None),
            ("issue_id", issue, item.issue_id, _int_or_none(was.issue) if was else None),
            ("note", a.note, item.note, was.note if was else None),
        ):
            before = before_value if was is not None else stored_value
            if merge.take(label, _field_name(field), mine, before, stored_value):
                fields[field] = mine
        # A file's "open" never reopens an item closed since; done or dropped closes it.
        if a.status != "open":
            before = was.status if was is not None else item.status
            if merge.take(label, "status", a.status, before, item.status):
                fields["status"] = a.status
        # the link to a decision: the file's ref, written when the file changed it
        if was is None or a.decision != was.decision:
            fields["decision"] = a.decision
        action_writes.append((a, item, fields))

    base_updates = {u.id: u for u in base.updates} if base else {}
    every = {i.id: i for i in (*state.earlier_actions, *state.actions)}
    update_writes: list[tuple[int, dict[str, Any]]] = []
    for u in doc.updates:
        assert u.id is not None  # check_minutes resolved descriptions to ids
        current = every.get(u.id)
        was_u = base_updates.get(u.id)
        changes: dict[str, Any] = {}
        for field, mine, before_value in (
            ("due_date", u.due, was_u and was_u.due),
            ("owner", u.owner, was_u and was_u.owner),
            ("note", u.note, was_u and was_u.note),
            ("status", u.status, was_u and was_u.status),
        ):
            if mine is None:
                continue
            # an item closed since is no longer among the meeting's: nothing to compare
            stored_value = getattr(current, field) if current is not None else mine
            before = stored_value if before_value is None else before_value
            if merge.take(f"action item #{u.id}", _field_name(field), mine, before, stored_value):
                changes[field] = mine
        update_writes.append((u.id, changes))

    by_person = {f.email: f for f in state.feedback if f.email is not None}
    base_feedback = {f.email.strip().lower(): f for f in base.feedback if f.email} if base else {}
    feedback_writes: list[Any] = []
    anonymous = {(f.rating, f.comment) for f in state.feedback if f.email is None}
    for f in doc.feedback:
        email = f.email.strip().lower() if f.email else None
        if email is not None and email in by_person:
            current_f = by_person[email]
            was_f = base_feedback.get(email)
            fields = {}
            for field, mine, stored_value in (
                ("rating", f.rating, current_f.rating),
                ("comment", f.comment, current_f.comment),
            ):
                before = getattr(was_f, field) if was_f is not None else stored_value
                if merge.take(f"feedback of {email}", field, mine, before, stored_value):
                    fields[field] = mine
            if fields:
                feedback_writes.append(
                    lambda fid=current_f.id, c=fields: update_feedback(
                        batch, fid, expected_version=None, **c
                    )
                )
        elif email is not None or (f.rating, f.comment) not in anonymous:
            # Anonymous feedback has no owner to match: the same rating and comment is one.
            feedback_writes.append(
                lambda e=email, r=f.rating, c=f.comment: add_feedback(
                    batch, week, email=e, rating=r, comment=c, source=source
                )
            )
            if email is None:
                anonymous.add((f.rating, f.comment))

    if merge.conflicts:
        raise MinutesConflictError(source, week, merge.conflicts)

    for write in writes:
        write()
    plan_segments(batch, week, layout)

    for d, match, new in decision_writes:
        issue = None if d.issue is None else int(d.issue)
        if new:
            decision = add_decision(
                batch, week, d.text, department=d.department, issue_id=issue, source=source
            )
            by_text[d.text] = decision
            decisions_added += 1
        else:
            found, fields = match
            decision = (
                update_decision(batch, found.id, expected_version=None, **fields)
                if fields
                else found
            )
        if d.ref:
            decision_ids[d.ref] = decision.id

    added = updated = 0
    ids: dict[str, int] = {}
    for a, item, fields in action_writes:
        issue = None if a.issue is None else int(a.issue)
        decision_id = decision_ids.get(a.decision) if a.decision else None
        if item is None:
            item = add_action_item(
                batch,
                week,
                description=a.description,
                owner=a.owner,
                department=a.department,
                due_date=a.due,
                issue_id=issue,
                decision_id=decision_id,
                note=a.note,
                status=a.status,
                source=source,
            )
            by_key[(a.description, a.owner)] = item
            added += 1
        else:
            changes = dict(fields)
            if "decision" in changes:
                changes.pop("decision")
                if a.decision is None or decision_id is not None:
                    changes["decision_id"] = decision_id
            if changes:
                update_action_item(batch, item.id, expected_version=None, **changes)
                updated += 1
        ids[a.description] = item.id

    for item_id, changes in update_writes:
        if changes:
            update_action_item(batch, item_id, expected_version=None, **changes)

    for write in feedback_writes:
        write()

    mark_recorded(batch, week, source=source, digest=digest)
    save_recorded_file(batch, week, source, {"doc": doc.model_dump(mode="json"), "actions": ids})
    return decisions_added, added, updated, len(doc.updates)


def _int_or_none(value: int | str | None) -> int | None:
    return None if value is None else int(value)


def _field_name(field: str) -> str:
    """A stored field as the minutes file names it (due_date: due, issue_id: issue)."""
    return field.removesuffix("_date").removesuffix("_id")


# --- reading back --------------------------------------------------------------------------------


def has_minutes(params: Params, week: IsoWeek | str) -> bool:
    """Whether minutes of the meeting about ``week`` are recorded in the store.

    A SQLite store that does not exist yet holds no minutes; asking must not create it.
    """

    url = store_url(params)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return False

    with open_store(params) as store:
        return minutes_row(store, week) is not None


# --- the 24-hour promise ------------------------------------------------------------------------

PROMISE_HOURS = 24


def sent_within(ended_at: dt.datetime, sent_at: dt.datetime | None, hours: int = PROMISE_HOURS):
    """Whether the minutes went out within ``hours`` of the meeting's end (None: not sent)."""
    if sent_at is None:
        return None
    return sent_at - ended_at <= dt.timedelta(hours=hours)


def mark_sent(store: Store, week: IsoWeek | str, when: dt.datetime, recipients: int) -> None:
    """Record that the minutes of ``week`` were sent at ``when`` (UTC, naive) to n people."""
    _mark_sent(store, week, when, recipients)


# --- files beside the handout ---------------------------------------------------------------

ACTION_ITEMS_FILE = "action_items.csv"
ACTION_ITEMS_ICS = "action_items.ics"
ACTION_COLUMNS = [
    "id", "meeting_week", "department", "owner", "description", "due_date", "status",
    "issue_id", "note",
]  # fmt: skip


def action_items_frame(store: Store, meeting: int) -> pd.DataFrame:
    """Action items set at a meeting, by department then due date (ACTION_COLUMNS)."""
    items = store.action_items()
    items = items[items["meeting_id"] == meeting]
    return items.sort_values(["department", "due_date", "id"]).loc[:, ACTION_COLUMNS]


def action_items_ics(items: pd.DataFrame, company: str, stamp: dt.datetime) -> bytes:
    """An iCalendar PUBLISH with one VTODO per action item, due on its due date."""

    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("method", "PUBLISH")
    slug = "".join(c if c.isalnum() else "-" for c in company.casefold()).strip("-")
    for r in items.itertuples():
        todo = Todo()
        todo.add("uid", f"action-item-{int(r.id)}-{slug}@meetinglib")
        todo.add("dtstamp", stamp)
        todo.add("summary", f"{r.description} ({r.owner})")
        todo.add("due", r.due_date)
        todo.add("status", {"open": "NEEDS-ACTION", "done": "COMPLETED"}.get(r.status, "CANCELLED"))
        todo.add("categories", [r.department])
        todo.add("description", f"{r.owner} · {r.department} · {r.meeting_week}\n{r.note}".strip())
        cal.add_component(todo)
    return cal.to_ical()


def write_action_items(
    store: Store, meeting: int, company: str, folder: str | Path, stamp: dt.datetime
) -> dict[str, Path]:
    """Write action_items.csv and action_items.ics into ``folder``; returns name -> path."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    items = action_items_frame(store, meeting)
    csv_path = out / ACTION_ITEMS_FILE
    write_csv(items, csv_path)
    ics_path = out / ACTION_ITEMS_ICS
    ics_path.write_bytes(action_items_ics(items, company, stamp))
    return {ACTION_ITEMS_FILE: csv_path, ACTION_ITEMS_ICS: ics_path}
