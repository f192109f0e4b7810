"""Mail in over SMTP to a real `helpdesk serve` -> ticket -> acknowledgement and agent
notifications caught by a real aiosmtpd relay on loopback, asserted on the bytes; a relay
that answers 451 then 250; one that answers 550; a sender killed mid-send (SIGKILL) whose
mail is sent again with the same Message-ID; a bounce coming back."""
from __future__ import annotations

import email
import signal
import smtplib
import threading
import tomllib
from email import policy
from pathlib import Path

import pytest

from daemon.app import open_store
from daemon.config import load_config
from tests.conftest import write_site_config
from tests.e2e.helpers import Daemon, show, tickets, wait_for
from tests.integration.test_outbox_relay import Sink, SinkHandler

class HoldingHandler(SinkHandler):
    """Holds the first DATA until released, then answers it with `held_reply` (not
    recording it); every DATA's bytes are kept in `attempted`."""

    def __init__(self):
        super().__init__()
        self.attempted: list[bytes] = []
        self.release = threading.Event()
        self.held_reply = "451 4.3.0 try again"

    async def handle_DATA(self, server, session, envelope):
        import asyncio
        self.attempted.append(envelope.original_content)
        if len(self.attempted) == 1:
            self.data_started.set()
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 60)
            return self.held_reply
        return await super().handle_DATA(server, session, envelope)


def site(tmp_path: Path, sink_port: int, extra: str = "") -> Path:
    return write_site_config(tmp_path, f"""
[queue]
backend = "sqlite"
workers = 1
sweep_seconds = 0.5
lease_seconds = 3.0

[outbound]
port = {sink_port}
retry_first_seconds = 1.0
retry_max_seconds = 2.0
{extra}""")


def smtp_send(cfg: Path, raw: bytes, frm: str = "ann@example.org", to: str = "support@example.com") -> None:
    port = tomllib.loads(cfg.read_text())["smtp"]["port"]
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
        c.sendmail(frm, [to], raw)


def mail(n: int, frm: str = "ann@example.org", subject: str = "Printer on floor 3 jams") -> bytes:
    return (f"From: Ann Example <{frm}>\r\nTo: support@example.com\r\nSubject: {subject}\r\n"
            f"Message-ID: <e2e-{n}@example.org>\r\n\r\nIt jams on every page. {{{{ 7*7 }}}}\r\n").encode()


def parsed(raw: bytes):
    return email.message_from_bytes(raw, policy=policy.default)


def by_rcpt(messages) -> dict[str, tuple]:
    return {m[1][0]: m for m in messages}


def events(cfg: Path, ref: str) -> list[dict]:
    return show(cfg, ref)["events"]


@pytest.fixture
def sink():
    with Sink() as s:
        yield s


def test_acknowledgement_and_notifications_leave_through_the_relay(tmp_path, sink):
    cfg = site(tmp_path, sink.port)
    daemon = Daemon(cfg).start()
    try:
        smtp_send(cfg, mail(1))
        got = by_rcpt(sink.handler.wait_for(3))
        assert set(got) == {"ann@example.org", "ana@example.com", "ben@example.com"}
        mail_from, rcpts, raw = got["ann@example.org"]
        assert rcpts == ("ann@example.org",) and mail_from.startswith("support+bounce-")
        assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
        ack = parsed(raw)
        assert ack["Subject"] == "[HD-1] Printer on floor 3 jams" and ack["To"] == "ann@example.org"
        assert ack["Auto-Submitted"] == "auto-replied" and ack["X-Auto-Response-Suppress"] == "All"
        assert ack["In-Reply-To"] == "<e2e-1@example.org>" and ack["Message-ID"].startswith("<hd.")
        assert ack["X-Loop"] and ack["Bcc"] is None
        text = ack.get_body(("plain",)).get_content()
        assert "HD-1" in text and "every page. {{ 7*7 }}" in text and "page. 49" not in text
        note = parsed(got["ana@example.com"][2])
        assert note["Reply-To"].startswith("support+") and note["Auto-Submitted"] == "auto-generated"  # reply token
        wait_for(lambda: [e for e in events(cfg, "HD-1") if e["kind"] == "mail_sent"], timeout=10)
        # the requester answers the acknowledgement: it threads, agents are told, no new ack
        reply = (f"From: Ann Example <ann@example.org>\r\nTo: support@example.com\r\nSubject: Re: {ack['Subject']}\r\n"
                 f"Message-ID: <e2e-1r@example.org>\r\nIn-Reply-To: {ack['Message-ID']}\r\n\r\nAlso page 2.\r\n")
        smtp_send(cfg, reply.encode())
        more = sink.handler.wait_for(5)
        assert sorted(m[1][0] for m in more[3:]) == ["ana@example.com", "ben@example.com"]
        assert len(tickets(cfg)) == 1
    finally:
        daemon.kill(signal.SIGTERM)


def test_greylisting_relay_451_then_250(tmp_path, sink):
    sink.handler.rcpt_replies = {"ann@example.org": ["451 4.7.1 greylisted, come back later", "250 OK"]}
    cfg = site(tmp_path, sink.port)
    daemon = Daemon(cfg).start()
    try:
        smtp_send(cfg, mail(2))
        got = by_rcpt(sink.handler.wait_for(3, timeout=30))
        assert "ann@example.org" in got and sink.handler.rcpts_seen.count("ann@example.org") == 2
        kinds = [e["kind"] for e in events(cfg, "HD-1")]
        assert "mail_deferred" in kinds
        wait_for(lambda: sum(e["kind"] == "mail_sent" for e in events(cfg, "HD-1")) == 3, timeout=10)
    finally:
        daemon.kill(signal.SIGTERM)


def test_relay_550_is_not_retried_and_suppresses_the_next_ack(tmp_path, sink):
    sink.handler.rcpt_replies = {"ann@example.org": ["550 5.1.1 no such user"]}
    cfg = site(tmp_path, sink.port)
    daemon = Daemon(cfg).start()
    try:
        smtp_send(cfg, mail(3))
        sink.handler.wait_for(2)                                  # the two agents
        wait_for(lambda: [e for e in events(cfg, "HD-1") if e["kind"] == "mail_failed"], timeout=10)
        smtp_send(cfg, mail(4, subject="Second problem"))
        sink.handler.wait_for(4)
        store = open_store(load_config(str(cfg)))
        try:
            ack = next(v for v in store.outbox.rows(ticket_id=1) if v.kind == "ack")
            assert ack.status == "failed" and ack.recipients == (("ann@example.org", "failed", 550),)
            assert not [v for v in store.outbox.rows(ticket_id=2) if v.kind == "ack"]
        finally:
            store.engine.dispose()
        assert sink.handler.rcpts_seen.count("ann@example.org") == 1
        held = [e for e in events(cfg, "HD-2") if e["kind"] == "mail_held"]
        assert held and "bounced recently" in str(held[0]["detail"])
    finally:
        daemon.kill(signal.SIGTERM)


def test_sender_killed_mid_send_is_resent_with_the_same_message_id(tmp_path):
    handler = HoldingHandler()
    with Sink() as sink:
        sink.handler = handler
        sink.controller.handler = handler
        cfg = site(tmp_path, sink.port)
        daemon = Daemon(cfg).start()
        try:
            smtp_send(cfg, mail(5))
            assert handler.data_started.wait(30)
            assert daemon.kill(signal.SIGKILL) != 0              # dies while the relay holds DATA
            first = handler.attempted[0]
            handler.release.set()                                # that attempt is then refused
            daemon.start()
            got = handler.wait_for(3, timeout=60)
            ids = [parsed(m[2])["Message-ID"] for m in got]
            assert len(set(ids)) == 3                            # each mail accepted exactly once
            again = next(m for m in got if parsed(m[2])["Message-ID"] == parsed(first)["Message-ID"])
            assert again[2] == first                             # the very same bytes
        finally:
            daemon.kill(signal.SIGTERM)


def test_a_bounce_of_our_ack_is_filed_not_a_new_ticket(tmp_path, sink):
    cfg = site(tmp_path, sink.port)
    daemon = Daemon(cfg).start()
    try:
        smtp_send(cfg, mail(6))
        ack = by_rcpt(sink.handler.wait_for(3))["ann@example.org"]
        report = (f"From: MAILER-DAEMON@mx.example.org\r\nTo: {ack[0]}\r\nSubject: Undelivered Mail Returned to "
                  f"Sender\r\nMessage-ID: <dsn-e2e@mx.example.org>\r\nMIME-Version: 1.0\r\nContent-Type: "
                  f"multipart/report; report-type=delivery-status; boundary=\"BB\"\r\n\r\n--BB\r\nContent-Type: "
                  f"text/plain\r\n\r\nUndeliverable.\r\n--BB\r\nContent-Type: message/delivery-status\r\n\r\n"
                  f"Reporting-MTA: dns; mx.example.org\r\n\r\nFinal-Recipient: rfc822; ann@example.org\r\n"
                  f"Action: failed\r\nStatus: 5.2.2\r\n--BB--\r\n").encode()
        smtp_send(cfg, report, frm="", to=ack[0])
        wait_for(lambda: [e for e in events(cfg, "HD-1") if e["kind"] == "mail_bounced"], timeout=15)
        assert len(tickets(cfg)) == 1 and len(sink.handler.messages) == 3
    finally:
        daemon.kill(signal.SIGTERM)
