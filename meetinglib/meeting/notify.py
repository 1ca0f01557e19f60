"""The meeting notice: an e-mail with the agenda (text and HTML) and the invitation.

``notice_message`` builds a standard MIME message: a ``multipart/alternative`` body
(plain text and HTML, every user-written text escaped) and ``meeting.ics`` attached as
``text/calendar; method=REQUEST``, which mail clients offer to add to the calendar.
``write_eml`` keeps it as a file anyone can open; ``send`` hands it to the SMTP server
named under ``smtp`` in params (STARTTLS when set, login when a user is set). The
password is read from the environment variable ``smtp.password_env`` names at the
moment of sending, and never written to a file, a message or a log.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, getaddresses, make_msgid
from pathlib import Path

from markupsafe import Markup

from meetinglib.core.csp import with_csp
from meetinglib.core.errors import MailNotSentError, ParamsError
from meetinglib.core.i18n import t
from meetinglib.core.params import Params, SmtpParams
from meetinglib.meeting.agenda import (
    MeetingPack,
    agenda_html,
    agenda_lines,
    agenda_table_html,
    build_agenda,
    meeting_facts_html,
    when_text,
)
from meetinglib.report.render import page


def notice_subject(pack: MeetingPack) -> str:
    a = pack.agenda
    return t("notice.subject", a.lang, title=a.title, week=a.week, when=when_text(a))


def notice_text(pack: MeetingPack) -> str:
    """The plain-text body of the notice."""
    a, lang = pack.agenda, pack.agenda.lang
    lines = [
        t("notice.greeting", lang),
        "",
        t("notice.intro", lang, title=a.title, week=a.week, when=when_text(a)),
    ]
    if a.place:
        lines.append(f"{t('agenda.place', lang)}: {a.place}")
    if a.online_link:
        lines.append(f"{t('agenda.online', lang)}: {a.online_link}")
    lines += ["", t("notice.agenda", lang), *agenda_lines(a), ""]
    lines.append(t("notice.issues", lang, issues=a.issues, departments=len(pack.load)))
    lines += [t("notice.invite", lang), "", t("notice.closing", lang)]
    if a.organizer:
        lines.append(a.organizer.name)
    return "\n".join(lines) + "\n"


def notice_html(pack: MeetingPack) -> str:
    """The HTML body of the notice (self-contained; every text escaped)."""
    a, lang = pack.agenda, pack.agenda.lang
    return with_csp(
        page(
            "notice.html.j2",
            lang=lang,
            title=notice_subject(pack),
            greeting=t("notice.greeting", lang),
            intro=t("notice.intro", lang, title=a.title, week=a.week, when=when_text(a)),
            facts=Markup(meeting_facts_html(a)),
            agenda_heading=t("notice.agenda", lang),
            segments=Markup(agenda_table_html(a)),
            issues=t("notice.issues", lang, issues=a.issues, departments=len(pack.load)),
            invite=t("notice.invite", lang),
            closing=t("notice.closing", lang),
            signature=a.organizer.name if a.organizer else "",
        )
    )


def write_other_languages(pack: MeetingPack, params: Params, folder: str | Path) -> dict[str, Path]:
    """The agenda and the notice in every further language of the params, beside the
    first language's: ``agenda.en.html``, ``notice.en.html``, ``notice.en.txt``."""
    out = Path(folder)
    written = {}
    for lang in params.handout_languages:
        if lang == pack.agenda.lang:
            continue
        agenda = build_agenda(params, pack.agenda.week, pack.load, lang)
        other = dataclasses.replace(pack, agenda=agenda)
        for name, text in (
            (f"agenda.{lang}.html", agenda_html(agenda)),
            (f"notice.{lang}.html", notice_html(other)),
            (f"notice.{lang}.txt", notice_text(other)),
        ):
            path = out / name
            path.write_text(text, encoding="utf-8")
            written[name] = path
    return written


def recipients(pack: MeetingPack) -> list[str]:
    """The attendees' addresses, as "Name <address>"."""
    return [formataddr((p.name, p.email)) for p in pack.agenda.attendees]


def notice_message(pack: MeetingPack, sender: str) -> EmailMessage:
    """The notice as a MIME message from ``sender`` to the attendees, invite attached."""
    a = pack.agenda
    to = recipients(pack)
    if not to:
        raise ParamsError(
            "meeting.attendees is empty; list the people to invite (name, email, department)."
        )
    msg = EmailMessage()
    msg["Subject"] = notice_subject(pack)
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    if a.organizer:
        msg["Reply-To"] = formataddr((a.organizer.name, a.organizer.email))
    msg["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].strip(">") or None)
    msg.set_content(notice_text(pack))
    msg.add_alternative(notice_html(pack), subtype="html")
    msg.add_attachment(
        pack.ics.decode("utf-8"),
        subtype="calendar",
        filename="meeting.ics",
        cte="base64",  # keeps the iCalendar lines byte for byte (CRLF, folding)
        params={"method": "REQUEST"},
    )
    return msg


def write_notice_bodies(pack: MeetingPack, folder: str | Path) -> dict[str, Path]:
    """Write notice.txt and notice.html into ``folder``; returns name -> path."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, text in (("notice.txt", notice_text(pack)), ("notice.html", notice_html(pack))):
        path = out / name
        path.write_text(text, encoding="utf-8")
        written[name] = path
    return written


def write_eml(message: EmailMessage, path: str | Path) -> Path:
    """Write the message as an .eml file (RFC 5322, CRLF line ends)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(message.as_bytes(policy=message.policy.clone(linesep="\r\n")))
    return path


def send(message: EmailMessage, smtp: SmtpParams, what: str = "notice") -> list[str]:
    """Send through the SMTP server of ``smtp``; returns the addresses it accepted.

    A server that cannot be reached or refuses the login raises MailNotSentError (the
    environment's exit code), naming ``what`` it could not send."""
    password = smtp.password()
    if smtp.user and password is None:
        raise ParamsError(
            "smtp.user is set but smtp.password_env is not; name the environment variable "
            "holding the SMTP password in smtp.password_env."
        )
    to = [addr for _, addr in getaddresses(message.get_all("To", []))]
    where = f"{smtp.host}:{smtp.port}"
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_seconds) as server:
            server.ehlo()
            if smtp.starttls:
                server.starttls(context=ssl.create_default_context())
                server.ehlo()
            if smtp.user:
                server.login(smtp.user, password or "")
            refused = server.send_message(message, from_addr=smtp.sender, to_addrs=to)
    except smtplib.SMTPAuthenticationError:
        raise MailNotSentError(
            where,
            f"the SMTP server refused the login of {smtp.user}",
            f"Check smtp.user and the password in ${smtp.password_env}; nothing was sent.",
        ) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise MailNotSentError(
            where,
            f"could not send the {what} through the SMTP server ({type(exc).__name__}: {exc})",
            "Check smtp.host, smtp.port and smtp.starttls in the params, and that the server "
            "is reachable; nothing was sent.",
        ) from None
    return [addr for addr in to if addr not in refused]
