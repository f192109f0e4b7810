"""Hostile SMTP clients against the real intake on loopback: session cap, throttling,
recipient list, every smuggling variant, the greeting, timeouts, STARTTLS, a full spool."""
from __future__ import annotations

import shutil
import smtplib
import socket
import ssl
import subprocess

import pytest

from daemon.intake.smtp import IntakeController, IntakeHandler, tls_context
from daemon.spool import Spool
from tests.conftest import free_port, missing
from tests.integration.intake_helpers import entries, raw_session

MSG = b"From: ann@example.org\r\nTo: support@example.com\r\nSubject: printer\r\nMessage-ID: <h1@example.org>\r\n\r\nIt jams.\r\n"


def start(tmp_path, *, handler_kw=None, **ctl_kw):
    spool = Spool(tmp_path / "spool").ensure()
    handler = IntakeHandler(spool, ("example.com",), **(handler_kw or {}))
    kw = dict(max_message_bytes=100_000, per_ip=50, timeout=5, hostname="mx.example.com")
    kw.update(ctl_kw)
    ctl = IntakeController(handler, "127.0.0.1", free_port(), **kw)
    ctl.start()
    ctl.spool = spool
    return ctl


@pytest.fixture
def make(tmp_path):
    started = []

    def _make(**kw):
        ctl = start(tmp_path / str(len(started)), **kw)
        started.append(ctl)
        return ctl
    yield _make
    for ctl in started:
        ctl.stop()


def client(ctl) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", ctl.port, timeout=5)


def test_greeting_says_only_the_configured_name(make):
    ctl = make()
    with socket.create_connection(("127.0.0.1", ctl.port), timeout=5) as s:
        banner = s.recv(1024)
    assert banner == b"220 mx.example.com ESMTP\r\n"
    with client(ctl) as c:
        code, text = c.ehlo("x")
    assert code == 250 and b"Python" not in text and b"SMTP 1." not in text


def test_global_session_cap_answers_421_and_recovers(make):
    ctl = make(max_sessions=20, per_ip=1000)
    held = [socket.create_connection(("127.0.0.1", ctl.port), timeout=5) for _ in range(20)]
    try:
        for s in held:
            assert s.recv(1024).startswith(b"220 ")        # all 20 admitted and greeted
        with socket.create_connection(("127.0.0.1", ctl.port), timeout=5) as s:
            assert s.recv(1024).startswith(b"421 4.3.2")
            assert s.recv(1024) == b""                      # and closed at once
        assert ctl.gate.refused["sessions"] == 1
    finally:
        for s in held:
            s.close()
    with client(ctl) as c:                                  # the flood is over: served at once
        assert c.sendmail("a@x.test", ["support@example.com"], MSG) == {}
    assert len(entries(ctl.spool)) == 1


def test_per_ip_transaction_throttle_is_451_4_7_0(make):
    ctl = make(handler_kw={"per_ip_minute": 3})
    now = [1000.0]
    ctl.handler.throttle.clock = lambda: now[0]
    with client(ctl) as c:
        for _ in range(3):
            assert c.sendmail("a@x.test", ["support@example.com"], MSG) == {}
        with pytest.raises(smtplib.SMTPSenderRefused) as err:
            c.sendmail("a@x.test", ["support@example.com"], MSG)
        assert err.value.smtp_code == 451 and err.value.smtp_error.startswith(b"4.7.0")
        c.rset()
        now[0] += 61                                        # a minute later the client is welcome again
        assert c.sendmail("a@x.test", ["support@example.com"], MSG) == {}
    assert len(entries(ctl.spool)) == 4 and ctl.handler.stats["throttled"] == 1


def test_recipient_list_refuses_unknown_local_parts(make):
    ctl = make(handler_kw={"recipients": ("support@example.com", "help@example.com")})
    with client(ctl) as c:
        refused = c.sendmail("a@x.test", ["Support@Example.com", "nobody@example.com", "help@example.com"], MSG)
    assert refused["nobody@example.com"][0] == 550 and refused["nobody@example.com"][1].startswith(b"5.1.1")
    [(env, _)] = entries(ctl.spool)
    assert env.rcpt_to == ("Support@Example.com", "help@example.com")


SMUGGLE = [b"\n.\n", b"\r.\r", b"\r\n.\r", b"\n.\r\n", b"\r.\r\n", b"\r\n.\n", b"\n.\r"]


@pytest.mark.parametrize("dot", SMUGGLE, ids=[repr(d) for d in SMUGGLE])
def test_every_smuggling_variant_yields_one_message(make, dot):
    ctl = make()
    body = (b"Subject: one\r\n\r\nhello" + dot + b"MAIL FROM:<ceo@example.com>\r\nRCPT TO:<support@example.com>\r\n"
            b"DATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n")
    replies = raw_session(ctl.port, b"EHLO x\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<support@example.com>\r\n"
                                b"DATA\r\n" + body + b"QUIT\r\n")
    got = entries(ctl.spool)
    assert len(got) == 1, replies
    assert replies.count(b"250 2.0.0 OK queued") == 1
    sent = body[:-len(b".\r\n")]
    assert got[0][1] == sent.replace(b"\r\n.", b"\r\n")     # kept as content (dot-unstuffed), not commands


def test_dot_stuffing_is_undone_and_bytes_kept_exactly(make):
    ctl = make()
    raw = b"Subject: dots\r\n\r\n..leading\r\n.\tx\r\nbare\nlf and bare\rcr\r\n"
    wire = raw.replace(b"\r\n.", b"\r\n..")
    raw_session(ctl.port, b"HELO x\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<support@example.com>\r\nDATA\r\n"
                      + wire + b".\r\nQUIT\r\n")
    [(_, stored)] = entries(ctl.spool)
    assert stored == raw


def test_idle_client_is_told_421_on_command_timeout(make):
    ctl = make(timeout=0.3)
    with socket.create_connection(("127.0.0.1", ctl.port), timeout=5) as s:
        data = s.recv(1024)
        while chunk := s.recv(1024):                        # the server closes after its timeout
            data += chunk
    assert b"\r\n421 4.4.2 " in data


def test_oversize_stream_is_552_and_leaves_no_tmp(make):
    ctl = make(max_message_bytes=10_000)
    big = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 50
    replies = raw_session(ctl.port, b"HELO x\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<support@example.com>\r\nDATA\r\n"
                                + big + b".\r\nQUIT\r\n")
    assert b"\r\n552 " in replies
    assert entries(ctl.spool) == [] and list(ctl.spool.tmp.iterdir()) == []


@pytest.fixture
def certificate(tmp_path):
    if shutil.which("openssl") is None:
        missing("openssl not installed (needed to make a self-signed test certificate)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=mx.example.com", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_starttls_offered_with_a_certificate_and_mail_goes_over_tls(make, certificate):
    ctl = make(tls=tls_context(str(certificate[0]), str(certificate[1])))
    with client(ctl) as c:
        c.ehlo()
        assert c.has_extn("starttls")
        c.starttls(context=ssl._create_unverified_context())
        c.ehlo()
        assert c.sendmail("a@x.test", ["support@example.com"], MSG) == {}
    assert len(entries(ctl.spool)) == 1
    with client(make()) as c:                               # no certificate: not offered
        c.ehlo()
        assert not c.has_extn("starttls")


def test_plaintext_pipelined_after_starttls_is_discarded(make, certificate):
    ctl = make(tls=tls_context(str(certificate[0]), str(certificate[1])))
    raw = socket.create_connection(("127.0.0.1", ctl.port), timeout=5)
    raw.recv(1024)
    raw.sendall(b"EHLO x\r\n")
    while b"250 " not in raw.recv(4096):
        pass
    # STARTTLS and an injected transaction in one packet (CVE-2024-34083 class)
    raw.sendall(b"STARTTLS\r\nMAIL FROM:<ceo@example.com>\r\nRCPT TO:<support@example.com>\r\nDATA\r\n"
                b"Subject: injected\r\n\r\nevil\r\n.\r\n")
    assert raw.recv(1024).startswith(b"220 ")
    tls = ssl._create_unverified_context().wrap_socket(raw, server_hostname="mx.example.com")
    tls.sendall(b"NOOP\r\n")
    reply = tls.recv(1024)
    assert reply.startswith(b"250 "), reply                 # a fresh session: nothing queued from plaintext
    tls.sendall(b"RCPT TO:<support@example.com>\r\n")
    assert tls.recv(1024).startswith(b"503")                # no MAIL survived the upgrade
    tls.close()
    assert entries(ctl.spool) == []


def test_bad_certificate_config_names_the_keys(tmp_path):
    from daemon.errors import ConfigError
    (tmp_path / "c.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match="smtp.tls_cert"):
        tls_context(str(tmp_path / "c.pem"), str(tmp_path / "c.pem"))


def test_commands_pipelined_after_the_dot_are_executed_in_order(make):
    ctl = make()
    one = b"MAIL FROM:<a@x.test>\r\nRCPT TO:<support@example.com>\r\nDATA\r\nSubject: first\r\n\r\n1\r\n.\r\n"
    two = one.replace(b"first", b"second").replace(b"\r\n1\r\n", b"\r\n2\r\n")
    replies = raw_session(ctl.port, b"EHLO x\r\n" + one + two + b"QUIT\r\n")  # one packet, PIPELINING style
    assert replies.count(b"250 2.0.0 OK queued") == 2 and b"\r\n221 " in replies
    got = sorted(raw for _, raw in entries(ctl.spool))
    assert got == [b"Subject: first\r\n\r\n1\r\n", b"Subject: second\r\n\r\n2\r\n"]
