"""The meeting's agenda with time boxes, and its calendar invitation.

The agenda follows the meeting's segments: opening, data report, one segment per
department with issues (in the order of ``meeting.departments``), solutions, next
week's plan, summary and feedback. The fixed segments take the minutes set under
``agenda`` in params. The department segments share the time the issues need: each
department gets ``issues x minutes_per_issue`` minutes (at least ``min_department``);
when all together would exceed ``departments_cap``, each gets ``min_department`` plus
a share of the rest of the cap in proportion to its issues (largest-remainder
rounding to whole minutes). The issue load counts merged issues on the agenda (new,
raised again, or open from earlier meetings; see ``meetinglib.meeting.triage``).

The meeting about report week W is held in week W + ``meeting.week_offset`` on
``meeting.weekday`` at ``meeting.time`` in the platform timezone. The invitation is
an iCalendar (RFC 5545) ``REQUEST`` built with the ``icalendar`` library, with a
stable UID per week and a SEQUENCE that the store raises whenever time, place or
attendees change, so calendars update the event instead of adding another.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from icalendar import Calendar, Event, vCalAddress, vText
from markupsafe import Markup

from meetinglib.core.csp import with_csp
from meetinglib.core.errors import InvalidParamError
from meetinglib.core.i18n import LANGUAGES, t
from meetinglib.core.params import Params, PersonParams
from meetinglib.core.weeks import IsoWeek
from meetinglib.meeting.intake import department_label
from meetinglib.meeting.store import Store
from meetinglib.meeting.triage import department_load, department_minutes, triage
from meetinglib.report.render import page, render, table

FIXED_BEFORE = ("opening", "data_report")
FIXED_AFTER = ("solutions", "next_week_plan", "summary_feedback")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
PRODID = "-//meetinglib//weekly order-processing review//EN"


@dataclass(frozen=True)
class AgendaItem:
    """One segment of the meeting, with its time box."""

    key: str  # opening, data_report, department, solutions, next_week_plan, summary_feedback
    title: str
    minutes: int
    start: dt.datetime
    end: dt.datetime
    department: str | None = None
    issues: int = 0


@dataclass(frozen=True)
class Agenda:
    """The meeting about ``week``: when, where, who, and its segments in order."""

    week: IsoWeek
    company: str
    title: str
    start: dt.datetime  # tz-aware, platform timezone
    end: dt.datetime  # start + meeting.duration_minutes
    tz: str
    place: str | None
    online_link: str | None
    organizer: PersonParams | None
    attendees: tuple[PersonParams, ...]
    items: tuple[AgendaItem, ...]
    lang: str

    @property
    def planned_minutes(self) -> int:
        """Minutes the segments take (at most the meeting's duration)."""
        return sum(item.minutes for item in self.items)

    @property
    def issues(self) -> int:
        return sum(item.issues for item in self.items)


def meeting_start(params: Params, week: IsoWeek) -> dt.datetime:
    """When the meeting about report week ``week`` starts, tz-aware in the platform timezone."""
    m = params.meeting
    day = week.shift(m.week_offset).monday + dt.timedelta(days=WEEKDAYS.index(m.weekday))
    return dt.datetime.combine(day, m.time, tzinfo=zoneinfo.ZoneInfo(params.timezone))


def build_agenda(
    params: Params, week: IsoWeek | str, load: Mapping[str, int], lang: str | None = None
) -> Agenda:
    """The agenda of the meeting about ``week`` for an issue load per department."""
    week = IsoWeek.parse(week)
    lang = lang or params.handout_languages[0]
    boxes, m = params.agenda, params.meeting
    longest = sum(getattr(boxes, k) for k in (*FIXED_BEFORE, *FIXED_AFTER)) + boxes.departments_cap
    if longest > m.duration_minutes:
        raise InvalidParamError(
            ", ".join(str(f) for f in params.files) or "params",
            "agenda",
            f"the time boxes add up to {longest} minutes at most (fixed segments plus "
            f"departments_cap), more than meeting.duration_minutes = {m.duration_minutes}; "
            "shorten them or lengthen the meeting",
        )
    minutes = department_minutes(load, boxes)
    ordered = [d for d in m.departments if d in minutes] + sorted(set(minutes) - set(m.departments))
    plan: list[tuple[str, str, int, str | None, int]] = [
        (k, t(f"agenda.{k}", lang), getattr(boxes, k), None, 0) for k in FIXED_BEFORE
    ]
    plan += [
        ("department", department_title(d, load[d], lang), minutes[d], d, int(load[d]))
        for d in ordered
    ]
    plan += [(k, t(f"agenda.{k}", lang), getattr(boxes, k), None, 0) for k in FIXED_AFTER]
    start = meeting_start(params, week)
    items, clock = [], start
    for key, title, length, department, issues in plan:
        if length <= 0:
            continue
        end = clock + dt.timedelta(minutes=length)
        items.append(AgendaItem(key, title, length, clock, end, department, issues))
        clock = end
    return Agenda(
        week=week,
        company=params.company,
        title=m.title_in(lang),
        start=start,
        end=start + dt.timedelta(minutes=m.duration_minutes),
        tz=params.timezone,
        place=m.place,
        online_link=m.online_link,
        organizer=m.organizer,
        attendees=tuple(m.attendees),
        items=tuple(items),
        lang=lang,
    )


def department_title(department: str, issues: int, lang: str) -> str:
    """A department's segment title in ``lang``, e.g. "Logistics: 2 issues"."""
    return t(
        f"agenda.department.{'one' if issues == 1 else 'other'}",
        lang,
        department=department_label(department, lang),
        issues=int(issues),
    )


def segment_title(
    params: Params,
    key: str,
    lang: str,
    *,
    stored: str = "",
    load: Mapping[str, int] | None = None,
) -> str | None:
    """The title in ``lang`` of the segment the store keeps under ``key`` (a fixed
    segment's key or a department code), as the agenda names it; None for a key the
    agenda does not know (then the stored title is all there is).

    The store keeps each segment's title once, in the language that laid the agenda
    out; a handout or console in another language names the segment from its key. A
    department's title carries its issue count as the agenda had it: the count in the
    ``stored`` title when that is the agenda's title in one of the languages, else the
    department's issues in ``load``; a department without issues is named alone.
    """
    if key in (*FIXED_BEFORE, *FIXED_AFTER):
        return t(f"agenda.{key}", lang)
    load = load or {}
    if key not in params.meeting.departments and key not in load:
        return None
    counts = (int(n) for n in re.findall(r"\d+", stored))
    issues = next(
        (n for n in counts if any(department_title(key, n, x) == stored for x in LANGUAGES)),
        int(load.get(key, 0)),
    )
    return department_title(key, issues, lang) if issues else department_label(key, lang)


def issue_load(store: Store, week: IsoWeek | str) -> dict[str, int]:
    """Merged issues on the week's agenda per department, from the store."""

    week = IsoWeek.parse(week)
    return department_load(triage(store.issues(through_week=str(week)), week))


# --- text and HTML ------------------------------------------------------------------------------


def _hm(when: dt.datetime) -> str:
    return when.strftime("%H:%M")


def when_text(agenda: Agenda) -> str:
    """The meeting's day and time, e.g. "Mon 2026-11-23 14:00–15:30 (Asia/Shanghai)"."""
    day = t(f"weekday.{agenda.start.weekday()}", agenda.lang)
    return f"{day} {agenda.start:%Y-%m-%d} {_hm(agenda.start)}–{_hm(agenda.end)} ({agenda.tz})"


def agenda_lines(agenda: Agenda) -> list[str]:
    """One line per segment: "14:00–14:05  Opening (5 min)"."""
    unit = t("agenda.minutes", agenda.lang)
    return [f"{_hm(i.start)}–{_hm(i.end)}  {i.title} ({i.minutes} {unit})" for i in agenda.items]


def agenda_text(agenda: Agenda) -> str:
    """The agenda as plain text: heading, when, where, segments."""
    lines = [
        t("agenda.heading", agenda.lang, title=agenda.title, week=agenda.week),
        when_text(agenda),
    ]
    if agenda.place:
        lines.append(f"{t('agenda.place', agenda.lang)}: {agenda.place}")
    if agenda.online_link:
        lines.append(f"{t('agenda.online', agenda.lang)}: {agenda.online_link}")
    return "\n".join([*lines, "", *agenda_lines(agenda)])


def agenda_table_html(agenda: Agenda) -> str:
    """The segments as an HTML table (every text escaped): time and segment left, minutes right."""
    lang = agenda.lang
    header = [t(k, lang) for k in ("agenda.col.time", "agenda.col.segment", "agenda.col.minutes")]
    rows = [[f"{_hm(i.start)}–{_hm(i.end)}", i.title, str(i.minutes)] for i in agenda.items]
    return str(table(header, rows, numeric=[2], css="ml-agenda"))


def meeting_facts_html(agenda: Agenda) -> str:
    """When, where and the online link as HTML paragraphs (escaped)."""
    lang = agenda.lang
    return str(
        render(
            "sections/meeting_facts.html.j2",
            when=when_text(agenda),
            place=agenda.place,
            place_label=t("agenda.place", lang),
            link=agenda.online_link,
            link_label=t("agenda.online", lang),
        )
    )


def agenda_html(agenda: Agenda) -> str:
    """A self-contained, printable HTML page of the agenda."""
    heading = t("agenda.heading", agenda.lang, title=agenda.title, week=agenda.week)
    return with_csp(
        page(
            "agenda.html.j2",
            lang=agenda.lang,
            title=heading,
            company=agenda.company,
            facts=Markup(meeting_facts_html(agenda)),
            segments=Markup(agenda_table_html(agenda)),
        )
    )


# --- the invitation --------------------------------------------------------------------------


def invite_uid(company: str, week: IsoWeek) -> str:
    """A UID that stays the same for the meeting about ``week`` of this company."""
    slug = re.sub(r"[^a-z0-9]+", "-", company.casefold()).strip("-") or "company"
    digest = hashlib.sha256(company.encode("utf-8")).hexdigest()[:8]
    return f"weekly-review-{week}-{slug}-{digest}@meetinglib"


def invite_hash(agenda: Agenda) -> str:
    """Digest of what makes a calendar update necessary: time, place, link, people."""
    people = sorted(p.email.lower() for p in agenda.attendees)
    organizer = agenda.organizer.email.lower() if agenda.organizer else ""
    key = "|".join(
        [
            agenda.start.isoformat(),
            agenda.end.isoformat(),
            agenda.title,
            agenda.place or "",
            agenda.online_link or "",
            organizer,
            *people,
        ]
    )
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _address(person: PersonParams, role: str | None = None) -> object:
    address = vCalAddress(f"mailto:{person.email}")
    address.params["CN"] = vText(person.name)
    if role:
        address.params["CUTYPE"] = vText("INDIVIDUAL")
        address.params["ROLE"] = vText(role)
        address.params["PARTSTAT"] = vText("NEEDS-ACTION")
        address.params["RSVP"] = vText("TRUE")
    return address


def invite(
    agenda: Agenda,
    *,
    uid: str,
    sequence: int = 0,
    stamp: dt.datetime | None = None,
) -> bytes:
    """The iCalendar REQUEST for the meeting: organizer, attendees, time, place, agenda."""

    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "REQUEST")
    event = Event()
    event.add("uid", uid)
    event.add("dtstamp", stamp or dt.datetime.now(dt.UTC))
    event.add("dtstart", agenda.start)
    event.add("dtend", agenda.end)
    event.add("summary", f"{agenda.title} · {agenda.week}")
    location = agenda.place or agenda.online_link
    if location:
        event.add("location", location)
    if agenda.online_link:
        event.add("url", agenda.online_link)
    event.add("description", agenda_text(agenda))
    event.add("sequence", sequence)
    event.add("status", "CONFIRMED")
    event.add("transp", "OPAQUE")
    if agenda.organizer:
        event.add("organizer", _address(agenda.organizer))
    for person in agenda.attendees:
        role = "OPT-PARTICIPANT" if person.optional else "REQ-PARTICIPANT"
        event.add("attendee", _address(person, role))
    cal.add_component(event)
    # Calendars need the VTIMEZONE of a TZID to place the meeting correctly.
    cal.add_missing_timezones()
    return cal.to_ical()


@dataclass(frozen=True)
class MeetingPack:
    """The agenda of a week's meeting and its invitation, recorded in the store."""

    agenda: Agenda
    load: dict[str, int]
    uid: str
    sequence: int
    ics: bytes


def prepare_meeting(
    params: Params, store: Store, week: IsoWeek | str, lang: str | None = None
) -> MeetingPack:
    """Agenda from the store's issues, the meeting recorded in the store, and the invite."""
    week = IsoWeek.parse(week)
    load = issue_load(store, week)
    agenda = build_agenda(params, week, load, lang)
    people = [
        {"name": p.name, "email": p.email, "department": p.department, "role": role}
        for p, role in [
            *([(agenda.organizer, "organizer")] if agenda.organizer else []),
            *((p, "optional" if p.optional else "required") for p in agenda.attendees),
        ]
    ]
    organizer = agenda.organizer
    record = store.record_meeting(
        str(week),
        details={
            "title": agenda.title,
            "starts_at": _utc(agenda.start),
            "ends_at": _utc(agenda.end),
            "timezone": agenda.tz,
            "place": agenda.place,
            "online_link": agenda.online_link,
            "organizer_name": organizer.name if organizer else None,
            "organizer_email": organizer.email if organizer else None,
        },
        uid=invite_uid(params.company, week),
        invite_hash=invite_hash(agenda),
        people=people,
    )
    ics = invite(agenda, uid=record.uid, sequence=record.sequence)
    return MeetingPack(agenda, load, record.uid, record.sequence, ics)


def _utc(when: dt.datetime) -> dt.datetime:
    return when.astimezone(dt.UTC).replace(tzinfo=None)


def write_agenda_files(pack: MeetingPack, folder: str | Path) -> dict[str, Path]:
    """Write agenda.html and meeting.ics into ``folder``; returns name -> path."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "agenda.html": agenda_html(pack.agenda).encode("utf-8"),
        "meeting.ics": pack.ics,
    }
    written = {}
    for name, content in files.items():
        path = out / name
        partial = out / f".{name}.partial"
        partial.write_bytes(content)
        partial.replace(path)
        written[name] = path
    return written
