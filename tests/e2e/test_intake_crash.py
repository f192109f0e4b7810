"""`helpdesk serve` killed exactly between the durable spool commit and the 250 (reliability
case 3), and stopped with SIGTERM while a client is in the middle of DATA (case 22)."""
from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import sys
import tomllib

import pytest

from daemon.app import open_store
from daemon.config import load_config
from tests.conftest import write_site_config
from tests.e2e.helpers import REPO, Daemon, wait_for

MSG = (b"From: ann@example.org\r\nTo: support@example.com\r\nSubject: killed before the 250\r\n"
       b"Message-ID: <kill-250@example.org>\r\n\r\nthe MTA will retry this\r\n")

# serve, with the spool commit wrapped: the process SIGKILLs itself the moment the entry is
# durable (fsynced and renamed), before the event loop can write the 250
KILL_AFTER_COMMIT = """
import os, signal, sys
import daemon.spool as spool
real = spool.SpoolWriter.commit
def commit(self):
    base = real(self)
    os.kill(os.getpid(), signal.SIGKILL)
spool.SpoolWriter.commit = commit
from daemon.cli import main
sys.exit(main(["--config", sys.argv[1], "serve"]))
"""


def counts(cfg):
    store = open_store(load_config(str(cfg)))
    try:
        return store.counts()
    finally:
        store.engine.dispose()


def test_kill_between_durable_write_and_250_then_the_retry_is_a_duplicate(tmp_path):
    cfg = write_site_config(tmp_path)
    port = tomllib.loads(cfg.read_text())["smtp"]["port"]
    log = open(tmp_path / "serve.log", "ab")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", KILL_AFTER_COMMIT, str(cfg)], cwd=str(tmp_path), env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: b" ready" in (tmp_path / "serve.log").read_bytes() or proc.poll() is not None)
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionError)):
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
                c.sendmail("ann@example.org", ["support@example.com"], MSG)      # no 250 ever arrives
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    spool = tmp_path / "state" / "spool"                             # durable although unanswered (waiting,
    assert len(os.listdir(spool / "new")) + len(os.listdir(spool / "cur")) == 1   # or just claimed by the worker)
    daemon = Daemon(cfg).start()                                    # restart; the MTA retries
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
            assert c.sendmail("ann@example.org", ["support@example.com"], MSG) == {}
        wait_for(lambda: "outcome=duplicate" in daemon.log.read_text()
                 and not os.listdir(spool / "new") and not os.listdir(spool / "cur"), timeout=60)
        assert counts(cfg) == {"tickets": 1, "messages": 1}        # the first copy processed, the retry a duplicate
    finally:
        daemon.kill()


def test_sigterm_lets_in_flight_data_finish_and_refuses_new_sessions(tmp_path):
    cfg = write_site_config(tmp_path)
    port = tomllib.loads(cfg.read_text())["smtp"]["port"]
    daemon = Daemon(cfg).start()
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.recv(1024)
        s.sendall(b"HELO x\r\nMAIL FROM:<ann@example.org>\r\nRCPT TO:<support@example.com>\r\nDATA\r\n")
        got = b""
        while b"354" not in got:
            got += s.recv(1024)
        s.sendall(b"Subject: in flight\r\nMessage-ID: <flight@example.org>\r\n\r\nfirst half\r\n")
        os.killpg(daemon.proc.pid, signal.SIGTERM)
        wait_for(lambda: b"shutting down" in daemon.log.read_bytes())
        def refused():                                              # new sessions: 421 while we drain
            with socket.create_connection(("127.0.0.1", port), timeout=30) as n:
                return n.recv(1024).startswith(b"421 4.3.2")
        wait_for(refused)
        s.sendall(b"second half\r\n.\r\n")
        reply = b""
        while b"\r\n" not in reply:
            reply += s.recv(1024)
        assert reply.startswith(b"250 "), reply
        s.sendall(b"QUIT\r\n")
    finally:
        s.close()
    assert daemon.proc.wait(timeout=60) == 0
    daemon.kill()
    spooled = len(os.listdir(tmp_path / "state" / "spool" / "new"))
    assert spooled + counts(cfg)["messages"] == 1                 # kept: stored, or waiting in the spool
