"""International mail over real loopback SMTP: intake accepts IDN domains (either spelling)
and UTF-8 addresses with SMTPUTF8 (RFC 6531); the relay client sends with SMTPUTF8 when
offered and holds, never mangles, what needs it when not."""
from __future__ import annotations

import smtplib

import pytest

from daemon.intake.smtp import IntakeController, IntakeHandler
from daemon.mailer import Relay, RelaySettings
from daemon.spool import Spool
from tests.conftest import free_port
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
