"""Crash paths: for each spool transition, SIGKILL a real worker process between the steps,
restart, and check that recovery loses nothing and duplicates nothing."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from daemon.app import build_app
from daemon.config import load_config
from daemon.model import Envelope
from tests.conftest import REPO, write_site_config

MSG = (b"From: dave@example.org\r\nTo: support@example.com\r\nSubject: disk full\r\n"
       b"Message-ID: <crash-path@example.org>\r\n\r\nThe share is full.\r\n")
ENV = Envelope("dave@example.org", ("support@example.com",), "smtp", "127.0.0.1", "2026-03-02T09:00:00+00:00")

# Each snippet patches one step to kill the process (like a power cut) when it is reached.
KILL_AFTER_CLAIM = "Spool.read = lambda self, claim: os.kill(os.getpid(), signal.SIGKILL)"
KILL_AFTER_COMMIT = "Spool.done = lambda self, claim: os.kill(os.getpid(), signal.SIGKILL)"
KILL_BEFORE_COMMIT = ("from sqlmodel import Session\n"
                      "Session.commit = lambda self: os.kill(os.getpid(), signal.SIGKILL)")


def run_worker(cfg_path, patch: str) -> int:
    code = textwrap.dedent("""
        import os, signal, sys
        from daemon.spool import Spool
        {patch}
        from daemon.app import build_app
        from daemon.config import load_config
        app = build_app(load_config(sys.argv[1]))
        app.spool.recover()
        app.worker.drain()
    """).format(patch=patch)
    proc = subprocess.run([sys.executable, "-c", code, str(cfg_path)], cwd=str(REPO), timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True)
    return proc.returncode


@pytest.fixture
def setup(tmp_path):
    cfg_path = write_site_config(tmp_path)
    app = build_app(load_config(str(cfg_path)))
    yield cfg_path, app
    app.close()


def finish(app):
    """The restarted daemon: recover, drain; then count what is stored."""
    app.spool.recover()
    app.worker.drain()
    return app.store.counts(), app.spool.pending_bases()


@pytest.mark.parametrize("patch", [KILL_AFTER_CLAIM, KILL_BEFORE_COMMIT, KILL_AFTER_COMMIT],
                         ids=["after-claim", "mid-transaction", "after-commit-before-done"])
def test_sigkill_between_steps_loses_and_duplicates_nothing(setup, patch):
    cfg_path, app = setup
    app.spool.put(MSG, ENV)
    assert run_worker(cfg_path, patch) == -9                       # really killed
    assert app.spool.depth() == 0 and len(app.spool.pending_bases()) == 1   # stuck in cur/
    counts, pending = finish(app)
    assert counts == {"tickets": 1, "messages": 1} and pending == set()
    [t] = app.store.list_tickets()
    assert t.subject == "disk full"


def test_uncommitted_tmp_file_is_never_processed_and_is_cleaned_when_stale(setup):
    _, app = setup
    base, path = app.spool._write_tmp(b"half a message")        # written, never renamed: no 250 given
    assert finish(app)[0] == {"tickets": 0, "messages": 0}
    assert path.exists()                                        # a young tmp may be another writer's
    old = time.time() - 7200
    os.utime(path, (old, old))
    app.spool.recover()
    assert not path.exists()


def test_message_that_kills_the_worker_every_time_is_quarantined(setup):
    cfg_path, app = setup
    app.spool.put(MSG, ENV)
    attempts = app.config.worker.max_attempts
    for _ in range(attempts):
        assert run_worker(cfg_path, KILL_BEFORE_COMMIT) == -9
    counts, pending = finish(app)
    assert counts == {"tickets": 0, "messages": 0} and pending == set()
    [q] = app.store.quarantine_list()
    assert q.stage == "worker" and q.reason == "crashed" and f"{attempts} times" in q.detail


KILL_ON_POISON = ("import daemon.message_path as W\n"        # dies while threading, inside the batch
                  "_thread = W.thread\n"
                  "def _poisoned(msg, *a, **kw):\n"
                  "    if 'POISON' in msg.text:\n"
                  "        os.kill(os.getpid(), signal.SIGKILL)\n"
                  "    return _thread(msg, *a, **kw)\n"
                  "W.thread = _poisoned")


def test_a_poison_message_in_a_batch_takes_only_itself_down(setup):
    """Six messages in one batch, the third kills the worker whenever it is threaded: the
    batch dies once, then every entry that was in it is handled alone - the five good ones
    are stored, the poison one is quarantined as crashed, no good one is."""
    cfg_path, app = setup
    mails = [MSG.replace(b"crash-path@", b"good%d@" % i).replace(b"disk full", b"case %d" % i) for i in range(5)]
    mails.insert(2, MSG.replace(b"crash-path@", b"poison@").replace(b"The share", b"POISON the share"))
    app.spool.put_many([(raw, ENV) for raw in mails])
    runs = 0
    while run_worker(cfg_path, KILL_ON_POISON) == -9:
        runs += 1
        assert runs <= app.config.worker.max_attempts + 1
    assert runs == app.config.worker.max_attempts
    counts, pending = finish(app)
    assert counts == {"tickets": 5, "messages": 5} and pending == set()
    assert sorted(t.subject for t in app.store.list_tickets()) == [f"case {i}" for i in range(5)]
    [q] = app.store.quarantine_list()
    assert (q.stage, q.reason) == ("worker", "crashed") and "POISON" in app.store.quarantine_get(q.id)[1].decode()
