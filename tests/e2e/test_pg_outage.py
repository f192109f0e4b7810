"""A real PostgreSQL stop under `helpdesk serve` (reliability case 21): SMTP intake keeps
answering 250 (the spool is durable), the mail waits uncounted, the health file says the
database is unavailable, and everything is stored when the server returns, without a
restart of the daemon. The PostgreSQL here is the test's own (initdb in a temp dir, its own
port); the shared one on 5432 is never touched."""
from __future__ import annotations

import json
import os
import shutil
import signal
import smtplib
import subprocess
import tempfile
import tomllib
from pathlib import Path

import pytest

from tests.conftest import free_port, missing, write_site_config
from tests.e2e.helpers import Daemon, wait_for


class OwnPostgres:
    """A throw-away PostgreSQL cluster run as the `postgres` user; stop() and start() it."""

    def __init__(self, root: Path, port: int):
        self.root, self.port, self.proc = root, port, None
        self.as_pg = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]

    def initdb(self) -> None:
        subprocess.run(self.as_pg + ["initdb", "-D", str(self.root / "data"), "-A", "trust", "-U", "postgres",
                                     "-E", "UTF8", "--no-sync"], check=True, capture_output=True)

    def start(self) -> None:
        log = open(self.root / "pg.log", "ab")
        self.proc = subprocess.Popen(self.as_pg + ["postgres", "-D", str(self.root / "data"), "-c",
                                                   "listen_addresses=127.0.0.1", "-p", str(self.port), "-k",
                                                   str(self.root)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(lambda: subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-q"]).returncode == 0,
                 timeout=60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)            # "fast" shutdown
            self.proc.wait(timeout=60)
        self.proc = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture
def own_pg():
    if os.geteuid() != 0 or shutil.which("initdb") is None or shutil.which("setpriv") is None:
        missing("needs root, initdb and setpriv to run a PostgreSQL of the test's own")
    root = Path(tempfile.mkdtemp(prefix="hd-pg-"))
    shutil.chown(root, "postgres", "postgres")
    pg = OwnPostgres(root, free_port())
    try:
        pg.initdb()
        pg.start()
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def mail(tag: str) -> bytes:
    return (f"From: ann@example.org\r\nTo: support@example.com\r\nSubject: outage {tag}\r\n"
            f"Message-ID: <{tag}@example.org>\r\n\r\nbody {tag}\r\n").encode()


def send(port: int, tag: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
        assert c.sendmail("ann@example.org", ["support@example.com"], mail(tag)) == {}


def test_postgresql_stopped_and_started_under_serve(tmp_path, own_pg):
    cfg = write_site_config(tmp_path, "[health]\nstatus_seconds = 1\n", db_url=own_pg.url)
    port = tomllib.loads(cfg.read_text())["smtp"]["port"]
    daemon = Daemon(cfg).start(timeout=60)
    log = lambda: daemon.log.read_text(errors="replace")          # noqa: E731
    status = tmp_path / "state" / "status.json"
    try:
        send(port, "before")
        wait_for(lambda: "message_id=<before@example.org> ticket=1 outcome=created" in log(), timeout=60)
        own_pg.stop()
        send(port, "during")                                      # intake unaffected: durable in the spool
        wait_for(lambda: "store unavailable, message" in log(), timeout=60)
        wait_for(lambda: status.exists() and json.loads(status.read_text())["database"].startswith("unavailable"),
                 timeout=60)
        assert "message_id=<during@example.org> ticket" not in log()       # waiting, not stored or quarantined
        own_pg.start()                                            # the server returns: no daemon restart
        wait_for(lambda: "message_id=<during@example.org> ticket=2 outcome=created" in log(), timeout=120)
        wait_for(lambda: json.loads(status.read_text())["database"] == "ok", timeout=60)
        assert daemon.proc.poll() is None
        snap = json.loads(status.read_text())
        assert snap["quarantined"] == 0 and snap["worker"]["quarantined"] == 0
    finally:
        daemon.kill()
