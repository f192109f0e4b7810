"""LMTP intake over real sockets (TCP and UNIX): one reply per recipient, durable first."""
from __future__ import annotations

import os
import socket

import pytest

from daemon.errors import HelpdeskError
from daemon.intake.lmtp import LmtpController, LmtpHandler
from daemon.spool import Spool
from tests.conftest import free_port
from tests.integration.intake_helpers import entries

MSG = b"From: ann@example.org\r\nTo: support@example.com\r\nSubject: printer\r\nMessage-ID: <l1@example.org>\r\n\r\nIt jams.\r\n"


class Client:
    """A line-level LMTP client: smtplib.LMTP reads only one reply after DATA."""

    opened: list["Client"] = []

    def __init__(self, sock: socket.socket):
        self.sock, self.buf = sock, b""
        self.sock.settimeout(10)
        Client.opened.append(self)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf.split(b"\r\n", 1)
        return out

    def reply(self) -> list[bytes]:
        lines = [self.line()]
        while lines[-1][3:4] == b"-":
            lines.append(self.line())
        return lines

    def cmd(self, text: str) -> list[bytes]:
        self.sock.sendall(text.encode() + b"\r\n")
        return self.reply()

    def send(self, mail_from: str, rcpts: list[str], data: bytes) -> tuple[list[bytes], list[bytes]]:
        """(RCPT replies, DATA replies)."""
        assert self.cmd(f"MAIL FROM:<{mail_from}>")[0].startswith(b"250")
        rcpt = [self.cmd(f"RCPT TO:<{r}>")[0] for r in rcpts]
        accepted = sum(r.startswith(b"250") for r in rcpt)
        assert self.cmd("DATA")[0].startswith(b"354")
        self.sock.sendall(data.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        return rcpt, [self.line() for _ in range(max(accepted, 1))]


def close_clients() -> None:
    while Client.opened:
        Client.opened.pop().sock.close()


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    close_clients()


def connect_tcp(port: int) -> Client:
    c = Client(socket.create_connection(("127.0.0.1", port), timeout=10))
    assert c.reply()[0].startswith(b"220")
    assert c.cmd("LHLO mta.test")[0].startswith(b"250")
    return c


@pytest.fixture
def lmtp(tmp_path):
    spool = Spool(tmp_path / "spool").ensure()
    stored = []
    handler = LmtpHandler(spool, ("example.com",), max_recipients=5, on_stored=stored.append)
    ctl = LmtpController(handler, host="127.0.0.1", port=free_port(), max_message_bytes=10_000, timeout=5)
    ctl.start()
    ctl.spool, ctl.stored = spool, stored
    yield ctl
    close_clients()
    ctl.stop()


def test_one_reply_per_accepted_recipient_after_one_durable_write(lmtp):
    c = connect_tcp(lmtp.bound_port)
    rcpt, data = c.send("ann@example.org", ["support@example.com", "nobody@elsewhere.org", "it@example.com"], MSG)
    assert [r[:3] for r in rcpt] == [b"250", b"550", b"250"]
    assert len(data) == 2 and all(d.startswith(b"250 2.0.0 OK queued as ") for d in data)
    assert c.cmd("QUIT")[0].startswith(b"221")
    (env, raw), = entries(lmtp.spool)
    assert raw == MSG
    assert env.source == "lmtp" and env.mail_from == "ann@example.org"
    assert env.rcpt_to == ("support@example.com", "it@example.com")
    assert len(lmtp.stored) == 1


def test_helo_and_ehlo_are_not_lmtp(lmtp):
    c = Client(socket.create_connection(("127.0.0.1", lmtp.bound_port), timeout=10))
    c.reply()
    assert c.cmd("EHLO mta.test")[0].startswith(b"500")
    assert c.cmd("HELO mta.test")[0].startswith(b"500")


def test_spool_failure_gives_451_for_every_recipient_and_stores_nothing(lmtp):
    os.chmod(lmtp.spool.tmp, 0o500)
    try:
        if os.access(lmtp.spool.tmp, os.W_OK):       # root ignores the mode: break the directory instead
            os.rename(lmtp.spool.tmp, lmtp.spool.root / "tmp.off")
        c = connect_tcp(lmtp.bound_port)
        _rcpt, data = c.send("ann@example.org", ["support@example.com", "it@example.com"], MSG)
    finally:
        if (lmtp.spool.root / "tmp.off").exists():
            os.rename(lmtp.spool.root / "tmp.off", lmtp.spool.tmp)
        os.chmod(lmtp.spool.tmp, 0o700)
    assert len(data) == 2 and all(d.startswith(b"451 4.3.0") for d in data)
    assert entries(lmtp.spool) == []


def test_unix_socket_listener_replaces_a_stale_socket(tmp_path):
    spool = Spool(tmp_path / "spool").ensure()
    path = tmp_path / "run" / "lmtp.sock"
    path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))                          # bound, never listening: a killed daemon's leftover
    stale.close()
    ctl = LmtpController(LmtpHandler(spool, ("example.com",)), socket=str(path))
    ctl.start()
    try:
        assert ctl.bound_port is None and path.stat().st_mode & 0o777 == 0o666
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(path))
        c = Client(s)
        assert c.reply()[0].startswith(b"220")
        c.cmd("LHLO mta.test")
        _rcpt, data = c.send("", ["support@example.com"], MSG)
        assert data[0].startswith(b"250")
        with pytest.raises(HelpdeskError, match="lmtp.socket: .* in use"):
            LmtpController(LmtpHandler(spool, ("example.com",)), socket=str(path)).start()
    finally:
        close_clients()
        ctl.stop()
    assert not path.exists()
    (env, _raw), = entries(spool)
    assert env.mail_from == "" and env.peer == ""


def test_busy_port_names_the_key(lmtp):
    other = LmtpController(LmtpHandler(lmtp.spool, ("example.com",)), host="127.0.0.1", port=lmtp.bound_port)
    with pytest.raises(HelpdeskError, match=r"lmtp.port: cannot listen on 127.0.0.1:\d+: .*another daemon"):
        other.start()


UTF8_MSG = ("From: José Núñez <josé@example.org>\r\nTo: équipe@bücher.example\r\nSubject: café au lait\r\n"
            "Message-ID: <l-utf8@example.org>\r\n\r\nÇa ne marche pas.\r\n").encode()


def test_smtputf8_over_lmtp_is_offered_accepted_and_stored_intact(tmp_path):
    """RFC 6531 over LMTP: LHLO offers SMTPUTF8; a UTF-8 sender and recipients (and an IDN
    domain configured in either spelling) are accepted with MAIL FROM's SMTPUTF8 parameter,
    and the envelope and the raw bytes are stored as they came."""
    spool = Spool(tmp_path / "spool").ensure()
    ctl = LmtpController(LmtpHandler(spool, ("example.com", "xn--bcher-kva.example")), host="127.0.0.1",
                         port=free_port(), max_message_bytes=10_000, timeout=5)
    ctl.start()
    try:
        c = Client(socket.create_connection(("127.0.0.1", ctl.bound_port), timeout=10))
        c.reply()
        assert b"250-SMTPUTF8" in c.cmd("LHLO mta.test") or b"250 SMTPUTF8" in c.cmd("LHLO mta.test")
        assert c.cmd("MAIL FROM:<josé@example.org> SMTPUTF8")[0].startswith(b"250")
        rcpt = [c.cmd(f"RCPT TO:<{r}>")[0] for r in ("équipe@bücher.example", "support@example.com",
                                                       "ölaf@elsewhere.org")]
        assert [r[:3] for r in rcpt] == [b"250", b"250", b"550"]
        assert c.cmd("DATA")[0].startswith(b"354")
        c.sock.sendall(UTF8_MSG + b".\r\n")
        data = [c.line(), c.line()]
        assert all(d.startswith(b"250 2.0.0 OK queued as ") for d in data)
        assert c.cmd("QUIT")[0].startswith(b"221")
    finally:
        close_clients()
        ctl.stop()
    (env, raw), = entries(spool)
    assert raw == UTF8_MSG                                          # byte for byte: RFC 6532 headers kept
    assert env.mail_from == "josé@example.org" and env.rcpt_to == ("équipe@bücher.example", "support@example.com")


def test_hostile_bytes_in_an_lmtp_envelope_get_an_answer_not_a_crash(lmtp):
    """Invalid UTF-8 in MAIL FROM or RCPT TO is answered 5xx; the session goes on and the
    next message is stored."""
    c = connect_tcp(lmtp.bound_port)
    c.sock.sendall(b"MAIL FROM:<jos\xc3@example.org> SMTPUTF8\r\n")
    assert c.reply()[0][:1] == b"5"
    assert c.cmd("MAIL FROM:<josé@example.org> SMTPUTF8")[0].startswith(b"250")
    c.sock.sendall(b"RCPT TO:<\xff\xfe@example.com>\r\n")
    assert c.reply()[0][:1] == b"5"
    assert c.cmd("RSET")[0].startswith(b"250")
    _rcpt, data = c.send("ann@example.org", ["support@example.com"], MSG)
    assert data[0].startswith(b"250")
    (env, raw), = entries(lmtp.spool)
    assert raw == MSG and env.mail_from == "ann@example.org"
