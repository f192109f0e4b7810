"""The relay client against a real aiosmtpd server on loopback (reliability.md D 39-45),
and the retry policy. `Sink` is shared with the other outbox and e2e tests."""
from __future__ import annotations

import asyncio
import logging
import ssl
import subprocess
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from daemon.mailer import RcptResult, Relay, RelaySettings, RetryPolicy, backoff, settle
from tests.conftest import free_port

RAW = (b"From: support@example.com\r\nTo: ann@example.org\r\nSubject: hi\r\nMessage-ID: <m1@example.com>\r\n\r\n"
       b"line one\r\n.starts with a dot\r\n")
FROM = "support+bounce-abc@example.com"


class SinkHandler:
    """An SMTP relay for tests: records what it accepts; answers can be scripted per RCPT
    address and per DATA; `hold` makes DATA wait (to kill a sender mid-send)."""

    def __init__(self):
        self.messages: list[tuple[str, tuple[str, ...], bytes]] = []
        self.rcpts_seen: list[str] = []
        self.mails_seen: list[str] = []
        self.rcpt_replies: dict[str, list[str]] = {}
        self.data_replies: list[str] = []
        self.hold: threading.Event | None = None
        self.data_started = threading.Event()
        self.drop_after_data = False
        self.arrived = threading.Condition()

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.mails_seen.append(address)
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.rcpts_seen.append(address)
        queue = self.rcpt_replies.get(address.lower())
        if queue:
            reply = queue.pop(0) if len(queue) > 1 else queue[0]
            if not reply.startswith("250"):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.data_started.set()
        if self.hold is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.hold.wait, 60)
        if self.data_replies:
            reply = self.data_replies.pop(0)
            if not reply.startswith("250"):
                return reply
        if self.drop_after_data:
            server.transport.close()
        with self.arrived:
            self.messages.append((envelope.mail_from, tuple(envelope.rcpt_tos), envelope.original_content))
            self.arrived.notify_all()
        return "250 2.0.0 OK"

    def wait_for(self, n: int, timeout: float = 90.0) -> list:
        """The messages once `n` have arrived (at once if they have). The bound is for a
        loaded CI machine: a real daemon's first mail waited more than 30 s there."""
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.messages) >= n, timeout):
                raise AssertionError(f"sink got {len(self.messages)} message(s), expected {n}")
            return list(self.messages)


class Sink:
    """A started aiosmtpd Controller on a free loopback port with a SinkHandler."""

    def __init__(self, **kwargs):
        self.handler = SinkHandler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **kwargs)

    def __enter__(self) -> "Sink":
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.handler.hold is not None:
            self.handler.hold.set()
        self.controller.stop()


@pytest.fixture
def sink():
    with Sink() as s:
        yield s


@pytest.fixture(scope="session")
def cert(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    key, crt = d / "key.pem", d / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return key, crt


def server_tls(cert) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert[1]), str(cert[0]))
    return ctx


def relay(port: int, **kw) -> Relay:
    return Relay(RelaySettings(host=kw.pop("host", "127.0.0.1"), port=port, timeout=5, **kw))


def test_accepted_mail_arrives_byte_for_byte(sink):
    results = relay(sink.port).send(FROM, ["ann@example.org"], RAW)
    assert results == [RcptResult("ann@example.org", "sent", 250, "")]
    (mail_from, rcpts, data), = sink.handler.wait_for(1)
    assert mail_from == FROM and rcpts == ("ann@example.org",) and data == RAW


def test_case_41_partial_acceptance_per_recipient(sink):
    sink.handler.rcpt_replies = {"grey@example.org": ["451 4.7.1 greylisted, try later"],
                                 "gone@example.org": ["550 5.1.1 no such user"]}
    results = {r.email: r for r in relay(sink.port).send(FROM, ["ok@example.org", "grey@example.org",
                                                                  "gone@example.org"], RAW)}
    assert results["ok@example.org"].outcome == "sent"
    assert (results["grey@example.org"].outcome, results["grey@example.org"].code) == ("temp", 451)
    assert (results["gone@example.org"].outcome, results["gone@example.org"].code) == ("perm", 550)
    assert sink.handler.wait_for(1)[0][1] == ("ok@example.org",)


@pytest.mark.parametrize("reply, outcome", [("451 4.3.0 try again", "temp"), ("554 5.7.1 rejected", "perm")])
def test_data_answer_applies_to_every_accepted_recipient(sink, reply, outcome):
    sink.handler.data_replies = [reply]
    results = relay(sink.port).send(FROM, ["a@example.org", "b@example.org"], RAW)
    assert {(r.outcome, r.code) for r in results} == {(outcome, int(reply[:3]))}


def test_case_42_connection_lost_after_the_dot_is_temporary(sink):
    sink.handler.drop_after_data = True
    assert relay(sink.port).send(FROM, ["a@example.org"], RAW)[0].outcome == "temp"


def test_relay_down_is_temporary():
    result = relay(free_port()).send(FROM, ["a@example.org"], RAW)[0]
    assert result.outcome == "temp" and "ConnectionRefusedError" in result.reason


def test_case_45_crlf_recipient_is_refused_before_any_smtp_command(sink):
    evil = "a@b.test\r\nRCPT TO:<x@evil.test>"
    results = relay(sink.port).send(FROM, [evil, "ok@example.org"], RAW)
    assert [(r.email, r.outcome) for r in results] == [(evil, "perm"), ("ok@example.org", "sent")]
    assert sink.handler.rcpts_seen == ["ok@example.org"]
    assert relay(sink.port).send("bad from\r\n@x", ["ok@example.org"], RAW)[0].outcome == "perm"


def test_case_44_starttls_required_but_not_offered_fails_closed(sink):
    result = relay(sink.port, security="starttls").send(FROM, ["a@example.org"], RAW)[0]
    assert result.outcome == "temp" and "no STARTTLS" in result.reason
    assert sink.handler.mails_seen == [] and sink.handler.messages == []


def test_starttls_and_implicit_tls_with_certificate_checks(cert):
    with Sink(tls_context=server_tls(cert), require_starttls=True) as s:
        ok = relay(s.port, security="starttls", ca_file=str(cert[1])).send(FROM, ["a@example.org"], RAW)
        assert ok[0].outcome == "sent"
        bad = relay(s.port, security="starttls").send(FROM, ["a@example.org"], RAW)[0]   # system CAs only
        assert bad.outcome == "temp" and "certificate" in bad.reason.lower()
        assert relay(s.port, security="starttls", verify_tls=False).send(FROM, ["b@example.org"], RAW)[0].outcome \
            == "sent"
        assert len(s.handler.wait_for(2)) == 2
    with Sink(ssl_context=server_tls(cert)) as s:
        assert relay(s.port, security="tls", ca_file=str(cert[1])).send(FROM, ["a@example.org"], RAW)[0].outcome \
            == "sent"


def test_plaintext_only_to_loopback():
    result = relay(25, host="192.0.2.1").send(FROM, ["a@example.org"], RAW)[0]
    assert result.outcome == "perm" and "loopback" in result.reason and not result.recipient_fault


def test_case_43_auth_failure_backs_off_and_never_shows_the_password(caplog):
    secret = "s3cret-Passw0rd"

    def check(server, session, envelope, mechanism, auth_data):
        return AuthResult(success=auth_data.login == b"desk" and auth_data.password == secret.encode(),
                          handled=False)

    with Sink(authenticator=check, auth_require_tls=False) as s:
        caplog.set_level(logging.DEBUG)
        good = relay(s.port, username="desk", password=secret).send(FROM, ["a@example.org"], RAW)[0]
        assert good.outcome == "sent"
        bad = relay(s.port, username="desk", password=secret + "x").send(FROM, ["a@example.org"], RAW)[0]
        assert bad.outcome == "temp" and bad.reason == "relay authentication failed (535)"
        assert secret not in caplog.text and secret not in repr(RelaySettings(password=secret))


# ---------------------------------------------------------------------- retry policy
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)
POLICY = RetryPolicy(first_seconds=300, max_seconds=3600, days=4)


def test_backoff_doubles_and_is_capped():
    assert [backoff(n, POLICY) for n in (1, 2, 3, 4, 5, 9)] == [300, 600, 1200, 2400, 3600, 3600]


def test_settle_sorts_outcomes_and_schedules_the_next_attempt():
    results = [RcptResult("a@x.org", "sent", 250), RcptResult("b@x.org", "temp", 451, "grey"),
               RcptResult("c@x.org", "perm", 550, "gone"), RcptResult("d@x.org", "perm", 554, "ours", False)]
    out, next_at = settle(results, attempt=1, created_at=NOW, now=NOW, policy=POLICY)
    assert [(o.email, o.status, o.bouncing) for o in out] == [
        ("a@x.org", "sent", False), ("b@x.org", "pending", False), ("c@x.org", "failed", True),
        ("d@x.org", "failed", False)]
    assert next_at == NOW + timedelta(seconds=300)


def test_settle_gives_up_after_the_window():
    late = NOW + timedelta(days=4) - timedelta(minutes=10)
    out, next_at = settle([RcptResult("b@x.org", "temp", 451, "grey")], attempt=30, created_at=NOW, now=late,
                          policy=POLICY)
    assert next_at is None and out[0].status == "failed" and out[0].reason.startswith("gave up after 4 days")
