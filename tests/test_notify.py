"""The meeting notice, sent through a real SMTP server on localhost."""

from __future__ import annotations

import email
import socket
from email import policy

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from icalendar import Calendar

from meetinglib.cli import main
from meetinglib.meeting.store import Store

PASSWORD_ENV = "MEETINGLIB_TEST_SMTP_PASSWORD"


class Inbox:
    """An aiosmtpd handler keeping every message it receives."""

    def __init__(self):
        self.envelopes = []
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            self.logins.append((auth_data.login, auth_data.password))
            return AuthResult(success=auth_data.password == b"s3cret pw", handled=False)
        return AuthResult(success=False, handled=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server():
    inbox = Inbox()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=inbox.authenticate,
        auth_require_tls=False,  # plain on localhost; production params use STARTTLS
        auth_exclude_mechanism=["LOGIN"],  # PLAIN only: one attempt per wrong password
    )
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


def write_params(tmp_path, port: int) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(
        f"""\
company: Demo Shop
timezone: Asia/Shanghai
source: {{kind: folder, path: data}}
store: {{path: '{tmp_path / "meeting.db"}'}}
output_dir: '{tmp_path / "out"}'
meeting:
  title: Weekly review
  time: "14:00"
  place: Room <3F>
  online_link: https://meet.example.com/ops
  organizer: {{name: Li Na, email: li.na@shop.example, department: operations}}
  attendees:
    - {{name: Chen Jie, email: chen.jie@shop.example, department: logistics}}
    - {{name: 张敏, email: zhang.min@shop.example, department: customer_service}}
smtp:
  host: 127.0.0.1
  port: {port}
  user: ops-reports
  password_env: {PASSWORD_ENV}
  sender: ops-reports@shop.example
  starttls: false
  timeout_seconds: 10
""",
        encoding="utf-8",
    )
    with Store.at(f"sqlite:///{tmp_path / 'meeting.db'}") as store:
        store.add_issues(
            [
                {"department": "logistics", "week": "2026-W47", "title": "EastPost late",
                 "severity": "high", "source": "x", "row_hash": "1"},
            ]
        )  # fmt: skip
    return str(path)


NOTICE = ["notice", "--week", "2026-W47", "--params"]


def test_notice_sent_and_received_with_its_invite(tmp_path, smtp_server, monkeypatch, capsys):
    inbox, port = smtp_server
    params = write_params(tmp_path, port)
    monkeypatch.setenv(PASSWORD_ENV, "s3cret pw")
    assert main([*NOTICE, params, "--send"]) == 0
    out = capsys.readouterr().out
    assert f"sent to 2 recipient(s) through 127.0.0.1:{port}" in out
    assert inbox.logins == [(b"ops-reports", b"s3cret pw")]

    (envelope,) = inbox.envelopes
    assert envelope.mail_from == "ops-reports@shop.example"
    assert envelope.rcpt_tos == ["chen.jie@shop.example", "zhang.min@shop.example"]
    message = email.message_from_bytes(envelope.original_content, policy=policy.default)
    assert message["Subject"] == (
        "Weekly review · week 2026-W47 · Mon 2026-11-23 14:00–15:30 (Asia/Shanghai)"
    )
    assert message["Reply-To"] == "Li Na <li.na@shop.example>"
    assert "张敏 <zhang.min@shop.example>" in str(message["To"])
    text = message.get_body(("plain",)).get_content()
    assert "14:20–14:24  Logistics: 1 issue (4 min)" in text
    assert "Online: https://meet.example.com/ops" in text
    page = message.get_body(("html",)).get_content()
    assert "Room &lt;3F&gt;" in page and "<3F>" not in page

    (ics,) = [p for p in message.iter_attachments() if p.get_content_type() == "text/calendar"]
    assert ics.get_param("method") == "REQUEST" and ics.get_filename() == "meeting.ics"
    cal = Calendar.from_ical(ics.get_content())
    (event,) = cal.walk("VEVENT")
    assert str(event["ORGANIZER"]) == "mailto:li.na@shop.example"
    assert sorted(str(a) for a in event["ATTENDEE"]) == [
        "mailto:chen.jie@shop.example",
        "mailto:zhang.min@shop.example",
    ]
    assert event.decoded("DTSTART").isoformat() == "2026-11-23T14:00:00+08:00"
    # The copy kept beside the handouts is the same message.
    kept = (tmp_path / "out" / "2026-W47" / "notice.eml").read_bytes()
    assert email.message_from_bytes(kept, policy=policy.default)["Subject"] == message["Subject"]
    assert "s3cret" not in kept.decode("ascii", errors="replace") + out


def test_without_send_the_notice_is_written_not_sent(tmp_path, smtp_server, capsys):
    inbox, port = smtp_server
    params = write_params(tmp_path, port)
    assert main([*NOTICE, params]) == 0
    eml = tmp_path / "out" / "2026-W47" / "notice.eml"
    out = capsys.readouterr().out
    assert f"written to {eml} (not sent" in out
    # The agenda it writes again is listed with its language, not replaced unseen.
    assert "written again with it (en):" in out
    assert str(eml.with_name("agenda.html")) in out
    assert inbox.envelopes == []
    message = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    parts = [p.get_content_type() for p in message.walk()]
    assert parts == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "text/calendar",
    ]


def test_wrong_password_missing_password_and_no_server(tmp_path, smtp_server, monkeypatch, capsys):
    inbox, port = smtp_server
    params = write_params(tmp_path, port)
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    assert main([*NOTICE, params, "--send"]) == 5  # the environment's exit code
    err = capsys.readouterr().err
    assert f"the SMTP server refused the login of ops-reports: 127.0.0.1:{port}" in err
    assert "nothing was sent" in err
    assert "wrong" not in err and inbox.envelopes == []

    monkeypatch.delenv(PASSWORD_ENV)
    assert main([*NOTICE, params, "--send"]) == 2
    assert f"environment variable {PASSWORD_ENV} (named by smtp.password_env) is not set" in (
        capsys.readouterr().err
    )

    other = tmp_path / "nobody-listens"
    other.mkdir()
    closed = write_params(other, free_port())
    monkeypatch.setenv(PASSWORD_ENV, "s3cret pw")
    assert main([*NOTICE, closed, "--send"]) == 5
    err = capsys.readouterr().err
    assert "could not send the notice through the SMTP server (" in err
    assert "Traceback" not in err
    # The minutes name themselves, with the same exit code.
    from email.message import EmailMessage

    from meetinglib.core.errors import MailNotSentError
    from meetinglib.core.params import load_params
    from meetinglib.meeting.notify import send

    message = EmailMessage()
    message["To"] = "li.na@shop.example"
    smtp = load_params(closed).smtp
    assert smtp is not None
    with pytest.raises(MailNotSentError, match=r"could not send the minutes through") as failed:
        send(message, smtp, "minutes")
    assert failed.value.exit_code == 5


def test_a_password_in_the_params_is_refused(tmp_path):
    from meetinglib.core.errors import UnknownParamError
    from meetinglib.core.params import load_params

    path = tmp_path / "p.yaml"
    path.write_text(
        "company: X\ntimezone: Asia/Shanghai\nsource: {kind: folder, path: d}\n"
        "smtp: {host: h, sender: a@b.example, password: hunter2}\n",
        encoding="utf-8",
    )
    with pytest.raises(UnknownParamError, match=r"unknown key 'smtp.password'.*'password_env'"):
        load_params(path)
