"""`helpdesk serve` as systemd runs it: READY over a real NOTIFY_SOCKET, IMAP and SMTP intake,
`helpdesk status`, SIGHUP reload, and SIGTERM ending cleanly with exit 0."""
from __future__ import annotations

import json
import signal
import smtplib
import socket
import threading
import tomllib

from tests.conftest import write_site_config
from tests.e2e.helpers import Daemon, helpdesk, tickets, wait_for

MSG = (b"From: carol@example.org\r\nTo: support@example.com\r\nSubject: {subj}\r\n"
       b"Message-ID: <{mid}@example.org>\r\n\r\nPlease help.\r\n")


class Notifications:
    """The NOTIFY_SOCKET end, as systemd reads it: a thread takes every datagram as it comes
    (an unread socket queue would fill and drop the daemon's pings)."""

    def __init__(self, tmp_path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.path = str(tmp_path / "notify.sock")
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.got: list[bytes] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.stop.is_set():
            try:
                self.got.append(self.sock.recv(4096))
            except socket.timeout:
                continue
            except OSError:
                return

    def nth(self, n: int, timeout: float = 30) -> bytes:
        return wait_for(lambda: self.got[n] if len(self.got) > n else None, timeout=timeout, interval=0.05)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def test_serve_under_systemd_with_imap_and_smtp(tmp_path, mailbox):
    imap = f"""
[[imap]]
name = "support"
host = "127.0.0.1"
port = {mailbox.server.port}
security = "none"
username = "{mailbox.user}"
password_env = "HD_TEST_IMAP_PASSWORD"
poll_seconds = 5

[health]
status_seconds = 1
"""
    cfg = write_site_config(tmp_path, imap)
    note = Notifications(tmp_path)
    daemon = Daemon(cfg, env={"NOTIFY_SOCKET": note.path, "HD_TEST_IMAP_PASSWORD": mailbox.password,
                              "WATCHDOG_USEC": "1000000"}).start()
    try:
        assert note.nth(0).startswith(b"READY=1")
        assert note.nth(1) == b"WATCHDOG=1"                         # pings at half of WatchdogSec
        c = mailbox.client()
        c.append("INBOX", MSG.replace(b"{subj}", b"via imap").replace(b"{mid}", b"imap-1"))
        c.logout()
        port = tomllib.loads(cfg.read_text())["smtp"]["port"]
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            s.sendmail("carol@example.org", ["support@example.com"],
                       MSG.replace(b"{subj}", b"via smtp").replace(b"{mid}", b"smtp-1"))
        rows = wait_for(lambda: (lambda r: r if len(r) == 2 else None)(tickets(cfg)), timeout=30, interval=0.3)
        assert sorted(r["subject"] for r in rows) == ["via imap", "via smtp"]
        def imap_took_one():
            st = json.loads(helpdesk(cfg, "status", "--json").stdout)
            return st if st.get("imap") and st["imap"][0]["taken"] == 1 else None
        status = wait_for(imap_took_one, timeout=15, interval=0.3)
        assert status["running"] and status["spool_depth"] == 0 and status["imap"][0]["state"] in ("idle", "polling")
        assert helpdesk(cfg, "status").returncode == 0
        daemon.proc.send_signal(signal.SIGHUP)                     # reload: rules stay valid, daemon stays up
        wait_for(lambda: b"reload requested" in daemon.log.read_bytes(), timeout=10)
        before = len(note.got)
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=30) == 0
        wait_for(lambda: b"STOPPING=1" in note.got[before:], timeout=5, interval=0.05)
        seen = set(note.got[before:])
        assert seen <= {b"WATCHDOG=1", b"STOPPING=1"}
    finally:
        daemon.kill()
        note.close()
    assert helpdesk(cfg, "status").returncode == 1                # stopped
    c = mailbox.client()
    c.select_folder("INBOX")
    assert c.search(["UNSEEN"]) == []                              # flagged only after commit
    c.logout()
