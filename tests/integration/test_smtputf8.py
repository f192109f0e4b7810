"""International mail over real loopback SMTP: intake accepts IDN domains (either spelling)
and UTF-8 addresses with SMTPUTF8 (RFC 6531); the relay client sends with SMTPUTF8 when
offered and holds, never mangles, what needs it when not; an acknowledgement to a UTF-8
local part goes out with SMTPUTF8 and UTF-8 headers (RFC 6532), or is held with the reason."""
from __future__ import annotations

import email
import smtplib
from email import policy

import pytest

from daemon import tasks
from daemon.app import build_app
from daemon.config import load_config
from daemon.intake.smtp import IntakeController, IntakeHandler
from daemon.mailer import Relay, RelaySettings
from daemon.model import Envelope
from daemon.spool import Spool
from tests.conftest import free_port, write_site_config
from tests.integration.test_outbox_relay import Sink, SinkHandler
from tests.integration.test_smtp_intake import entries

IDN, ACE = "bücher.example", "xn--bcher-kva.example"
MSG = b"From: ann@example.org\r\nTo: support@example.com\r\nSubject: hi\r\nMessage-ID: <u1@example.org>\r\n\r\nx\r\n"
UTF8_MSG = "From: José <josé@example.org>\r\nTo: support@bücher.example\r\nSubject: café\r\n\r\nx\r\n".encode()


@pytest.fixture(params=[(IDN,), (ACE,)], ids=["configured-unicode", "configured-ace"])
def intake(tmp_path, request):
    spool = Spool(tmp_path / "spool").ensure()
    handler = IntakeHandler(spool, request.param)
    port = free_port()
    ctl = IntakeController(handler, "127.0.0.1", port, max_message_bytes=10_000, timeout=5)
    ctl.start()
    ctl.spool, ctl.port = spool, port
    yield ctl
    ctl.stop()


def test_intake_takes_both_spellings_of_an_idn_domain_and_utf8_addresses(intake):
    with smtplib.SMTP("127.0.0.1", intake.port, timeout=5) as c:
        c.ehlo()
        assert c.has_extn("smtputf8")
        assert c.sendmail("ann@example.org", [f"support@{ACE}"], MSG) == {}
        assert c.sendmail("josé@example.org", [f"support@{IDN}", f"équipe@{IDN}"], UTF8_MSG,
                          mail_options=["SMTPUTF8"]) == {}
    first, second = entries(intake.spool)
    assert first[0].rcpt_to == (f"support@{ACE}",)
    assert second[0].mail_from == "josé@example.org" and second[0].rcpt_to == (f"support@{IDN}", f"équipe@{IDN}")
    assert second[1] == UTF8_MSG                                    # stored as it came, byte for byte


def test_intake_still_refuses_other_domains(intake):
    with smtplib.SMTP("127.0.0.1", intake.port, timeout=5) as c:
        c.ehlo()
        c.mail("ann@example.org")
        code, text = c.rcpt("ann@bucher.example")                   # looks alike, is not ours
    assert code == 550 and b"Relaying denied" in text


class Utf8Sink(SinkHandler):
    def __init__(self):
        super().__init__()
        self.options: list[list[str]] = []

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.options.append(list(mail_options))
        return await super().handle_MAIL(server, session, envelope, address, mail_options)


def sink(smtputf8: bool) -> Sink:
    s = Sink(enable_SMTPUTF8=smtputf8)
    s.handler = Utf8Sink()
    s.controller.handler = s.handler
    return s


def relay(port: int) -> Relay:
    return Relay(RelaySettings(port=port, timeout=5))


def test_relay_with_smtputf8_sends_utf8_addresses_and_headers():
    with sink(True) as s:
        results = relay(s.port).send("desk@example.com", ["josé@example.org", f"ann@{IDN}"], UTF8_MSG)
        assert [r.outcome for r in results] == ["sent", "sent"]
        ((mail_from, rcpts, data),) = s.handler.wait_for(1)
    assert s.handler.options == [[f"SIZE={len(UTF8_MSG)}", "SMTPUTF8"]]
    assert rcpts == ("josé@example.org", f"ann@{ACE}") and data == UTF8_MSG


def test_relay_without_smtputf8_holds_what_needs_it_and_sends_the_rest():
    plain = MSG
    with sink(False) as s:
        results = relay(s.port).send("desk@example.com", ["josé@example.org", f"ann@{IDN}"], plain)
        ((_, rcpts, data),) = s.handler.wait_for(1)
        assert rcpts == (f"ann@{ACE}",) and data == plain               # the IDN domain in A-labels
        held, sent = results
        assert (held.email, held.outcome, sent.outcome) == ("josé@example.org", "temp", "sent")
        assert "does not offer SMTPUTF8" in held.reason and "not sent rather than mangled" in held.reason
        whole = relay(s.port).send("desk@example.com", ["ann@example.org"], UTF8_MSG)   # UTF-8 headers
        assert whole[0].outcome == "temp" and "this message needs" in whole[0].reason
        assert len(s.handler.messages) == 1 and s.handler.rcpts_seen == [f"ann@{ACE}"]


# ---------------------------------------------------------------------- acknowledgements to UTF-8 local parts
JOSE_MAIL = ("From: José Núñez <josé@example.org>\r\nTo: support@example.com\r\nSubject: Drucker kaputt\r\n"
             "Message-ID: <utf8-1@example.org>\r\n\r\nEr druckt nicht.\r\n").encode()


def desk_with_relay(tmp_path, port: int):
    cfg = load_config(str(write_site_config(tmp_path, f'[queue]\nbackend = "immediate"\n[outbound]\nport = {port}\n')))
    return build_app(cfg)


def close(app) -> None:
    app.close()
    tasks.huey.bind(None)
    tasks.huey.use(tasks.MemoryStorage, True)


def ack_row(app, ticket_id: int):
    return next(v for v in app.store.outbox.rows(ticket_id=ticket_id) if v.kind == "ack")


def test_ack_to_a_utf8_local_part_goes_out_with_smtputf8_and_utf8_headers(tmp_path):
    with sink(True) as s:
        app = desk_with_relay(tmp_path, s.port)
        try:
            r = app.worker.process(JOSE_MAIL, Envelope("josé@example.org", ("support@example.com",), "smtp"))
            assert r.outcome == "created"
            got = s.handler.wait_for(3)
            ack = ack_row(app, r.ticket_id)
            assert ack.status == "sent" and ack.recipients[0][:2] == ("josé@example.org", "sent")
        finally:
            close(app)
    [(mail_from, rcpts, data)] = [m for m in got if m[1] == ("josé@example.org",)]
    assert data == ack.raw and mail_from.startswith("support+bounce-")
    assert ["SMTPUTF8"] == [o for o in s.handler.options[[m[1] for m in got].index(rcpts)] if o == "SMTPUTF8"]
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8")                # RFC 6532: raw UTF-8, no encoded words
    assert "\r\nTo: josé@example.org\r\n" in head and "=?" not in head.split("\r\nTo:", 1)[1].split("\r\n", 1)[0]
    msg = email.message_from_string(data.decode("utf-8"), policy=policy.default)
    assert msg["To"].addresses[0].addr_spec == "josé@example.org" and msg["Auto-Submitted"] == "auto-replied"
    others = [m for m in got if m[1] != ("josé@example.org",)]          # agent notices stay plain ASCII
    assert others and all(m[2].isascii() for m in others)


def test_ack_to_a_utf8_local_part_is_held_with_the_reason_without_smtputf8(tmp_path):
    with sink(False) as s:
        app = desk_with_relay(tmp_path, s.port)
        try:
            r = app.worker.process(JOSE_MAIL, Envelope("josé@example.org", ("support@example.com",), "smtp"))
            s.handler.wait_for(2)                                        # the agent notices went
            ack = ack_row(app, r.ticket_id)
            events = app.store.ticket_detail(r.ticket_id).events
        finally:
            close(app)
    assert ack.status == "pending" and ack.recipients[0][:2] == ("josé@example.org", "pending")
    assert all(rc != ("josé@example.org",) for _, rc, _ in s.handler.messages)
    assert "josé@example.org" not in s.handler.rcpts_seen               # never mangled, never tried
    deferred = [e for e in events if "does not offer SMTPUTF8" in str(e)]
    assert deferred, events
