"""`helpdesk serve` as systemd runs it: READY over a real NOTIFY_SOCKET, IMAP and SMTP intake,
`helpdesk status`, SIGHUP reload, and SIGTERM ending cleanly with exit 0."""
from __future__ import annotations

import json
import signal
import smtplib
import socket
import tomllib

from tests.conftest import write_site_config
from tests.e2e.helpers import Daemon, helpdesk, tickets, wait_for

MSG = (b"From: carol@example.org\r\nTo: support@example.com\r\nSubject: {subj}\r\n"
       b"Message-ID: <{mid}@example.org>\r\n\r\nPlease help.\r\n")


def notify_socket(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(30)
    return sock, str(path)


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
    sock, path = notify_socket(tmp_path)
    daemon = Daemon(cfg, env={"NOTIFY_SOCKET": path, "HD_TEST_IMAP_PASSWORD": mailbox.password,
                              "WATCHDOG_USEC": "1000000"}).start()
    try:
        assert sock.recv(4096).startswith(b"READY=1")
        assert sock.recv(4096) == b"WATCHDOG=1"                    # pings at half of WatchdogSec
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
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=30) == 0
        sock.settimeout(5)
        seen = set()
        while b"STOPPING=1" not in seen:
            seen.add(sock.recv(4096))
        assert seen <= {b"WATCHDOG=1", b"STOPPING=1"}
    finally:
        daemon.kill()
        sock.close()
    assert helpdesk(cfg, "status").returncode == 1                # stopped
    c = mailbox.client()
    c.select_folder("INBOX")
    assert c.search(["UNSEEN"]) == []                              # flagged only after commit
    c.logout()
