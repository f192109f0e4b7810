"""SIGKILL `helpdesk serve` while a client sends mail; every 250 must be stored exactly once."""
from __future__ import annotations

import smtplib
import threading
import tomllib

from daemon.config import load_config
from daemon.app import open_store
from tests.conftest import write_site_config
from tests.e2e.helpers import Daemon, wait_for

N = 300


def message(i: int) -> bytes:
    return (f"From: user{i}@example.org\r\nTo: support@example.com\r\nSubject: crash test {i}\r\n"
            f"Message-ID: <crash-{i}@example.org>\r\n\r\nmessage number {i}\r\n").encode()


def send_all(port: int, todo: list[int], accepted: set[int], stop: threading.Event) -> None:
    """Like an MTA: deliver each message, retrying on any failure until accepted or stopped."""
    pending = list(todo)
    conn = None
    while pending and not stop.is_set():
        i = pending[0]
        try:
            if conn is None:
                conn = smtplib.SMTP("127.0.0.1", port, timeout=5)
            conn.sendmail(f"user{i}@example.org", ["support@example.com"], message(i))
            accepted.add(i)
            pending.pop(0)
        except (OSError, smtplib.SMTPException):
            if conn is not None:
                conn.close()
            conn = None
            stop.wait(0.05)
    if conn is not None:
        conn.close()


def test_sigkill_under_load_loses_and_duplicates_nothing(tmp_path):
    cfg_path = write_site_config(tmp_path)
    port = tomllib.loads(cfg_path.read_text())["smtp"]["port"]
    daemon = Daemon(cfg_path).start()
    accepted: set[int] = set()
    stop = threading.Event()
    sender = threading.Thread(target=send_all, args=(port, list(range(N)), accepted, stop))
    sender.start()
    wait_for(lambda: len(accepted) >= N // 3, timeout=60, interval=0.01)
    assert daemon.kill() != 0                      # SIGKILL mid-stream
    at_kill = set(accepted)
    daemon.start()                                 # the sender keeps retrying; the restart recovers
    sender.join(timeout=120)
    stop.set()
    assert accepted == set(range(N))
    store = open_store(load_config(str(cfg_path)))
    try:
        def all_stored():
            counts = store.counts()
            return counts if counts["messages"] >= N else None
        wait_for(all_stored, timeout=60, interval=0.2)
        tickets = store.list_tickets()
        subjects = sorted(t.subject for t in tickets)
        assert subjects == sorted(f"crash test {i}" for i in range(N))       # each exactly once
        assert store.counts() == {"tickets": N, "messages": N}
        assert at_kill <= accepted
    finally:
        daemon.kill()
        store.engine.dispose()
