"""A connection flood against `helpdesk serve` (a subprocess): the session cap answers 421,
and even past the process's open-files limit (EMFILE in accept, in the health tick and in
the watchers) the daemon keeps running and serves the next normal client at once."""
from __future__ import annotations

import resource
import shutil
import signal
import smtplib
import socket
import tomllib
from pathlib import Path

from tests.conftest import write_site_config
from tests.e2e.helpers import REPO, Daemon, wait_for

MSG = b"From: ann@example.org\r\nTo: support@example.com\r\nSubject: after the flood\r\n\r\nhello\r\n"


def site(tmp_path: Path, smtp: str) -> tuple[Path, int]:
    cfg = write_site_config(tmp_path, "[health]\nstatus_seconds = 1\n")
    text = cfg.read_text().replace('domains = ["example.com", "helpdesk.test"]\n',
                                   'domains = ["example.com", "helpdesk.test"]\n' + smtp)
    cfg.write_text(text)
    return cfg, tomllib.loads(text)["smtp"]["port"]


def flood(port: int, n: int) -> list[socket.socket]:
    """`n` idle connections (non-blocking connects: the ones the daemon never accepts wait
    in the kernel's backlog or are dropped, like a real flood)."""
    out = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        out.append(s)
    return out


def log_has(daemon: Daemon, text: str) -> bool:
    return text in daemon.log.read_text(errors="replace")


def test_session_cap_421_during_the_flood_and_250_right_after(tmp_path):
    cfg, port = site(tmp_path, "max_sessions = 20\nmax_connections_per_ip = 1000\n")
    daemon = Daemon(cfg).start()
    held = []
    try:
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            assert s.recv(1024).startswith(b"220 ")
            held.append(s)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            assert s.recv(1024).startswith(b"421 4.3.2")
        for s in held:
            s.close()
        held = []
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
            assert c.sendmail("ann@example.org", ["support@example.com"], MSG) == {}
        assert daemon.proc.poll() is None
    finally:
        for s in held:
            s.close()
        daemon.kill()


def test_flood_past_the_open_files_limit_does_not_stop_serve(tmp_path):
    # a cap above what the process can hold (a misconfiguration, or the default under a tight
    # ulimit): accept() then fails with EMFILE, and so does every other open in the process
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    cfg, port = site(tmp_path, "max_sessions = 5000\nmax_connections_per_ip = 5000\n")
    cfg.write_text(cfg.read_text() + '[paths]\ntemplates = "templates"\n')
    daemon = Daemon(cfg).start()
    try:
        resource.prlimit(daemon.proc.pid, resource.RLIMIT_NOFILE, (160, 160))
        socks = flood(port, 400)
        try:                                 # each loop meets EMFILE and says it will retry
            wait_for(lambda: log_has(daemon, "health: cannot read state")
                     and log_has(daemon, "templates watch: [Errno 24]"), timeout=60)
            assert daemon.proc.poll() is None
        finally:
            for s in socks:
                s.close()
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:  # served once the flood is gone
            assert c.sendmail("ann@example.org", ["support@example.com"], MSG) == {}
        ack = tmp_path / "templates" / "requester" / "ack.txt.j2"
        ack.write_text(ack.read_text() + "\n(edited after the flood)\n")
        wait_for(lambda: log_has(daemon, "templates reloaded"), timeout=60)     # the watcher lives on
        status = cfg.parent / "state" / "status.json"
        seen = status.stat().st_mtime_ns
        wait_for(lambda: status.stat().st_mtime_ns != seen, timeout=30)         # and so does the health tick
        assert daemon.proc.poll() is None
        text = daemon.log.read_text(errors="replace")
        assert "internal error" not in text and "Exception in thread" not in text
    finally:
        code = daemon.kill(signal.SIGTERM)
    assert code == 0, daemon.log.read_text()[-3000:]
