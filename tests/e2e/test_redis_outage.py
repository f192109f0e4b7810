"""Redis (the huey broker) down when a ticket is created (reliability case 20): SMTP intake
answers 250, the ticket is committed with its acknowledgement waiting in the outbox, and
the mail leaves once the broker is back, without restarting anything. The Redis here is
the test's own (its own port and directory); the shared one is never stopped."""
from __future__ import annotations

import os
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest

from tests.conftest import free_port, missing, write_site_config
from tests.e2e.helpers import REPO, Daemon, wait_for
from tests.integration.test_outbox_relay import Sink


class OwnRedis:
    def __init__(self, root: Path, port: int):
        self.root, self.port, self.proc = root, port, None

    def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir",
                                      str(self.root), "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                                      "--logfile", str(self.root / "redis.log")], stdout=subprocess.DEVNULL)
        import redis
        client = redis.Redis(host="127.0.0.1", port=self.port)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False
        try:
            wait_for(up, timeout=30)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture
def own_redis():
    if shutil.which("redis-server") is None:
        missing("redis-server not installed")
    root = Path(tempfile.mkdtemp(prefix="hd-redis-"))
    r = OwnRedis(root, free_port())
    r.start()
    try:
        yield r
    finally:
        r.stop()
        shutil.rmtree(root, ignore_errors=True)


MAIL = (b"From: Ann Example <ann@example.org>\r\nTo: support@example.com\r\nSubject: broker outage\r\n"
        b"Message-ID: <redis-down@example.org>\r\n\r\nThe printer jams.\r\n")


def test_ticket_committed_and_ack_sent_once_the_broker_returns(tmp_path, own_redis):
    with Sink() as sink:
        cfg = write_site_config(tmp_path, f"""
[queue]
backend = "redis"
url = "redis://127.0.0.1:{own_redis.port}/0"
sweep_seconds = 0.5
lease_seconds = 3.0
[outbound]
port = {sink.port}
retry_first_seconds = 1.0
retry_max_seconds = 2.0
""")
        port = tomllib.loads(cfg.read_text())["smtp"]["port"]
        daemon = Daemon(cfg).start(timeout=60)
        env = dict(os.environ, PYTHONPATH=str(REPO))
        env.pop("HELPDESK_CONFIG", None)
        wlog = open(tmp_path / "worker.log", "ab")
        worker = subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(cfg), "worker"], env=env,
                                  cwd=str(tmp_path), stdout=wlog, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            own_redis.stop()                                          # the broker goes away
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
                assert c.sendmail("ann@example.org", ["support@example.com"], MAIL) == {}
            wait_for(lambda: "message_id=<redis-down@example.org> ticket=1 outcome=created" in daemon.log.read_text(),
                     timeout=60)
            assert [m for m in sink.handler.messages if "ann@example.org" in m[1]] == []
            own_redis.start()                                         # back: the sweep hands the outbox over
            wait_for(lambda: any("ann@example.org" in m[1] for m in sink.handler.messages), timeout=120)
            acks = [m for m in sink.handler.messages if "ann@example.org" in m[1]]
            assert len(acks) == 1 and b"broker outage" in acks[0][2]
            assert daemon.proc.poll() is None and worker.poll() is None
        finally:
            daemon.kill()
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait(timeout=60)
            wlog.close()
