"""IMAP intake against a real Dovecot (no IMAP mocks): durability, crashes, resyncs, outages.

Each test gets a fresh Dovecot user (or a private server when it stops, kills or
reconfigures Dovecot), its own spool and SQLite state. Results are counted by draining
the spool with claim/read/done, so "exactly once" means exactly one spool entry.
"""
from __future__ import annotations

import inspect
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from daemon.config import ImapAccount
from daemon.intake.imap import ImapPoller
from daemon.model import Envelope
from daemon.spool import Spool
from store import imap_state
from store.db import make_engine
from tests.conftest import REPO

PW_ENV = "HD_TEST_IMAP_PASSWORD"
LOGGER = "daemon.intake.imap"


def msg(tag: str, body: str = "help") -> bytes:
    return (f"From: user-{tag}@example.org\r\nTo: support@example.com\r\nSubject: case {tag}\r\n"
            f"Message-ID: <{tag}@example.org>\r\nDate: Mon, 02 Mar 2026 10:00:00 +0000\r\n\r\n{body}\r\n").encode()


def account(server, user: str, **kw) -> ImapAccount:
    values = dict(name="support", host="127.0.0.1", port=server.port, security="none", username=user,
                  password_env=PW_ENV, password_credential="", folder="INBOX", move_to="", idle=True,
                  poll_seconds=30, verify_tls=True, ca_file="")
    values.update(kw)
    return ImapAccount(**values)


def wait_until(pred, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Gate:
    """Stands in for a poller's wait between retries (its `pause`): records each delay asked
    for and holds the poller there until the test lets it go, so a test counts retries and
    reads their delays without measuring any time."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.stop: threading.Event | None = None       # the poller's, set by Harness.poller
        self._cond = threading.Condition()
        self._passes = 0
        self._open = False

    def __call__(self, delay: float) -> None:
        with self._cond:
            self.delays.append(delay)
            self._cond.notify_all()
            while not (self._open or self._passes or (self.stop is not None and self.stop.is_set())):
                self._cond.wait(0.05)
            if self._passes:
                self._passes -= 1

    def paused(self, n: int, timeout: float = 10.0) -> list[float]:
        """Wait until the poller has asked for its n-th pause; the delays so far."""
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.delays) >= n, timeout), \
                f"{len(self.delays)} retries, expected {n}"
            return list(self.delays)

    def release(self, n: int = 1) -> None:
        with self._cond:
            self._passes += n
            self._cond.notify_all()

    def open(self) -> None:
        """From now on every pause returns at once."""
        with self._cond:
            self._open = True
            self._cond.notify_all()


@dataclass
class Harness:
    """Spool + state DB + pollers for one test; drains the spool into `seen`."""

    root: Path
    spool: Spool
    db_url: str
    engines: list = field(default_factory=list)
    running: list = field(default_factory=list)
    seen: list[tuple[Envelope, bytes]] = field(default_factory=list)

    def engine(self):
        engine = make_engine(self.db_url)
        imap_state.create_tables(engine)
        self.engines.append(engine)
        return engine

    def poller(self, acct: ImapAccount, password: str = "secret", *, owner: str = "daemon-1",
               engine=None, on_stored=None, cls=ImapPoller, **kw) -> ImapPoller:
        opts = dict(environ={PW_ENV: password}, tick=0.1, backoff_base=0.05, backoff_cap=0.5,
                    auth_backoff=1.0, lease_ttl=5.0)
        opts.update(kw)
        poller = cls(acct, self.spool, engine or self.engine(), on_stored, threading.Event(), owner, **opts)
        if isinstance(opts.get("pause"), Gate):
            opts["pause"].stop = poller.stop
        return poller

    def start(self, poller: ImapPoller) -> ImapPoller:
        self.running.append((poller, poller.start()))
        return poller

    def halt(self, poller: ImapPoller) -> None:
        poller.stop.set()
        for p, t in self.running:
            if p is poller:
                t.join(timeout=15)
                assert not t.is_alive(), "poller did not stop"

    def drain(self) -> list[tuple[Envelope, bytes]]:
        while (c := self.spool.claim()) is not None:
            self.seen.append(self.spool.read(c))
            self.spool.done(c)
        return self.seen

    def wait_entries(self, n: int, timeout: float = 10.0) -> list[tuple[Envelope, bytes]]:
        wait_until(lambda: len(self.drain()) >= n, timeout, f"{n} spool entries (have {len(self.seen)})")
        return self.seen

    def message_ids(self) -> list[str]:
        return [raw.split(b"Message-ID: <", 1)[1].split(b"@", 1)[0].decode() for _, raw in self.drain()]

    def close(self) -> None:
        for p, t in self.running:
            p.stop.set()
        for p, t in self.running:
            t.join(timeout=15)
        for e in self.engines:
            e.dispose()


@pytest.fixture
def harness(tmp_path):
    h = Harness(tmp_path, Spool(tmp_path / "spool").ensure(), f"sqlite:///{tmp_path / 'state.db'}")
    yield h
    h.close()


@pytest.fixture
def backend_harness(backend, tmp_path):
    """A harness on each database backend (the lease is a storage contract)."""
    h = Harness(tmp_path, Spool(tmp_path / "spool").ensure(), backend.url)
    yield h
    h.close()


def unseen(box_client, folder: str = "INBOX") -> list[int]:
    box_client.select_folder(folder)
    return box_client.search(["UNSEEN"])


def all_uids(box_client, folder: str = "INBOX") -> list[int]:
    box_client.select_folder(folder)
    return box_client.search(["ALL"])


def idle_again(poller: ImapPoller, timeout: float = 10.0) -> None:
    wait_until(lambda: poller.status().state == "idle", timeout, "poller idle")


# ----------------------------------------------------------------- happy path
def test_new_mail_taken_once_flagged_seen_and_pushed_by_idle(mailbox, harness, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "imap-support").write_text(mailbox.password + "\n")
    c = mailbox.client()
    c.append("INBOX", msg("old-read"), flags=[b"\\Seen"])     # read before first contact: not ours
    for tag in ("a1", "a2", "a3"):
        c.append("INBOX", msg(tag))
    c.append("INBOX", msg("old-read2"), flags=[b"\\Seen"])    # ... also above the last unseen one
    acct = account(mailbox.server, mailbox.user, password_env="", password_credential="imap-support")
    p = harness.start(harness.poller(acct, environ={}, credentials_dir=str(creds)))
    entries = harness.wait_entries(3)
    idle_again(p)
    c.append("INBOX", msg("a4"))                                  # arrives while idling: pushed
    harness.wait_entries(4, timeout=5)
    idle_again(p)
    assert sorted(harness.message_ids()) == ["a1", "a2", "a3", "a4"]
    env, raw = entries[0]
    uv = c.select_folder("INBOX")[b"UIDVALIDITY"]
    assert raw == msg("a1")
    assert env.mail_from is None and env.rcpt_to == () and env.source == "imap:support"
    assert env.peer == f"INBOX/{uv}/2" and env.received_at.endswith("+00:00")
    assert unseen(c) == []
    st = p.status()
    assert (st.state, st.taken, st.last_error) == ("idle", 4, None) and st.last_mail_at
    assert len(harness.drain()) == 4                                 # nothing more came
    c.logout()


def test_idle_is_reissued_on_the_configured_interval(mailbox, harness):
    c = mailbox.client()
    p = harness.start(harness.poller(account(mailbox.server, mailbox.user), idle_reissue=0.3))
    idle_again(p)
    wait_until(lambda: p.status().idles >= 4, 5, "IDLE re-issued")
    c.append("INBOX", msg("after-reissue"))
    harness.wait_entries(1)
    assert harness.message_ids() == ["after-reissue"]
    c.logout()


def test_polls_without_idle(mailbox, harness):
    c = mailbox.client()
    p = harness.start(harness.poller(account(mailbox.server, mailbox.user, idle=False, poll_seconds=1)))
    wait_until(lambda: p.status().connects == 1 and p.status().state == "polling", 5, "polling")
    c.append("INBOX", msg("polled"))
    harness.wait_entries(1, timeout=5)
    assert harness.message_ids() == ["polled"] and p.status().idles == 0
    wait_until(lambda: unseen(c) == [], 5, "flagged")
    c.logout()


def test_move_to_moves_after_commit(mailbox, harness):
    c = mailbox.client()
    for tag in ("m1", "m2"):
        c.append("INBOX", msg(tag))
    p = harness.start(harness.poller(account(mailbox.server, mailbox.user, move_to="Done")))
    harness.wait_entries(2)
    wait_until(lambda: all_uids(c) == [], 5, "INBOX emptied")
    assert len(all_uids(c, "Done")) == 2
    idle_again(p)
    assert sorted(harness.message_ids()) == ["m1", "m2"]
    c.logout()


@pytest.mark.parametrize("caps,moved", [("IMAP4rev1 IDLE LITERAL+ UIDPLUS", True),
                                        ("IMAP4rev1 IDLE LITERAL+", False)])
def test_without_move_capability(dovecot_factory, harness, caplog, caps, moved):
    """No MOVE: COPY + \\Deleted + UID EXPUNGE with UIDPLUS; else \\Seen only, never EXPUNGE."""
    server = dovecot_factory(f"imap_capability = {caps}\n")
    c = server.client()
    c.create_folder("Done")
    c.append("INBOX", msg("foreign"), flags=[b"\\Seen", b"\\Deleted"])   # someone else's, not expunged
    c.append("INBOX", msg("n1"))
    p = harness.start(harness.poller(account(server, "agent@example.test", move_to="Done")))
    harness.wait_entries(1)
    idle_again(p)
    assert harness.message_ids() == ["n1"]
    if moved:
        assert len(all_uids(c, "Done")) == 1 and all_uids(c) == [1]
    else:
        assert all_uids(c, "Done") == [] and all_uids(c) == [1, 2] and unseen(c) == []
        assert "neither MOVE nor UIDPLUS" in caplog.text
    c.logout()


# ----------------------------------------------------------------- durability and crashes
def test_failed_spool_commit_leaves_message_unseen_and_unmoved(mailbox, harness):
    c = mailbox.client()
    c.append("INBOX", msg("s1"))
    gone = harness.spool.root / "new.gone"
    harness.spool.new.rename(gone)                                  # the commit's rename will fail
    p = harness.start(harness.poller(account(mailbox.server, mailbox.user, move_to="Done")))
    wait_until(lambda: "SpoolError" in (p.status().last_error or ""), 10, "spool failure reported")
    assert unseen(c) == [1] and all_uids(c, "Done") == []
    assert p.status().taken == 0 and os.listdir(harness.spool.tmp) == []
    gone.rename(harness.spool.new)                                  # disk fixed: next attempt works
    harness.wait_entries(1)
    wait_until(lambda: all_uids(c) == [], 5, "moved after commit")
    idle_again(p)
    assert harness.message_ids() == ["s1"]
    c.logout()


CRASHING_POLLER = """
import os, signal, sys, threading
from daemon.config import ImapAccount
from daemon.intake.imap import ImapPoller
from daemon.spool import Spool
from store import imap_state
from store.db import make_engine
acct = ImapAccount(name="support", host="127.0.0.1", port=int(sys.argv[1]), security="none",
                   username=sys.argv[2], password_env="PW", password_credential="", folder="INBOX",
                   move_to="", idle=True, poll_seconds=30, verify_tls=True, ca_file="")
engine = make_engine(sys.argv[3])
imap_state.create_tables(engine)
die = lambda base: os.kill(os.getpid(), signal.SIGKILL)     # committed, not yet flagged
ImapPoller(acct, Spool(sys.argv[4]).ensure(), engine, die, threading.Event(), "crashing-daemon",
           lease_ttl=1.0).run()
"""


def test_crash_after_commit_before_flag_is_finished_on_restart(mailbox, harness, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    c = mailbox.client()
    for tag in ("k1", "k2", "k3"):
        c.append("INBOX", msg(tag))
    proc = subprocess.run([sys.executable, "-c", CRASHING_POLLER, str(mailbox.server.port), mailbox.user,
                           harness.db_url, str(harness.spool.root)], cwd=REPO, timeout=30,
                          env={**os.environ, "PW": mailbox.password, "PYTHONPATH": str(REPO)})
    assert proc.returncode == -signal.SIGKILL
    assert sorted(harness.message_ids()) == ["k1", "k2", "k3"]     # committed before the crash
    assert unseen(c) == [1, 2, 3]                                   # ... and never flagged
    engine = harness.engine()
    uv = c.select_folder("INBOX")[b"UIDVALIDITY"]
    assert imap_state.unacked(engine, "support", "INBOX", uv) == [1, 2, 3]
    p = harness.start(harness.poller(account(mailbox.server, mailbox.user), owner="daemon-2",
                                     engine=engine))              # waits out the dead owner's lease
    wait_until(lambda: unseen(c) == [], 10, "flagged after restart")
    idle_again(p)
    assert len(harness.drain()) == 3 and p.status().taken == 0      # recognised, not spooled again
    assert imap_state.unacked(engine, "support", "INBOX", uv) == []
    assert "still to be flagged" in caplog.text
    c.logout()


def test_uidvalidity_change_resyncs_without_duplicates_or_gaps(mailbox, harness, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    c = mailbox.client()
    for tag in ("v1", "v2"):
        c.append("INBOX", msg(tag))
    acct = account(mailbox.server, mailbox.user)
    p1 = harness.start(harness.poller(acct))
    harness.wait_entries(2)
    idle_again(p1)
    harness.halt(p1)
    c.append("INBOX", msg("v3"))                                    # arrives while we are down
    c.select_folder("INBOX")
    c.remove_flags([2], [b"\\Seen"])                                 # a human marks v2 unread again
    c.logout()
    mailbox.server.doveadm("mailbox", "update", "-u", mailbox.user, "--uid-validity", "424242", "INBOX")
    p2 = harness.start(harness.poller(acct))
    harness.wait_entries(3)
    idle_again(p2)
    c = mailbox.client()
    c.append("INBOX", msg("v4"))                                    # new mail after the change
    harness.wait_entries(4)
    idle_again(p2)
    assert sorted(harness.message_ids()) == ["v1", "v2", "v3", "v4"]
    assert unseen(c) == []
    state = imap_state.load_folder(harness.engines[-1], "support", "INBOX")
    assert state.uidvalidity == 424242 and state.resync_until == 0
    assert caplog.text.count("UIDVALIDITY of INBOX changed") == 1
    assert harness.seen[-1][0].peer == "INBOX/424242/4"
    c.logout()


def test_folder_deleted_and_recreated_while_idling(mailbox, harness, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    c = mailbox.client()
    c.create_folder("Helpdesk")
    c.append("Helpdesk", msg("f1"))
    p = harness.start(harness.poller(account(mailbox.server, mailbox.user, folder="Helpdesk")))
    harness.wait_entries(1)
    idle_again(p)
    c.delete_folder("Helpdesk")                                     # poller gets BYE, then NO on SELECT
    wait_until(lambda: p.status().state == "backoff", 10, "backoff on the missing folder")
    c.create_folder("Helpdesk")
    c.append("Helpdesk", msg("f1"))                                 # restored from a backup: same bytes
    c.append("Helpdesk", msg("f2"))
    harness.wait_entries(2)
    wait_until(lambda: unseen(c, "Helpdesk") == [], 10, "both flagged")
    idle_again(p)
    assert sorted(harness.message_ids()) == ["f1", "f2"]
    assert caplog.text.count("UIDVALIDITY of Helpdesk changed") == 1
    c.logout()


def test_expunged_between_search_and_fetch_is_skipped(mailbox, harness):
    c = mailbox.client()
    for tag in ("e1", "e2", "e3"):
        c.append("INBOX", msg(tag))

    class Racing(ImapPoller):
        def _search(self, client, state, lo, hi, scoped):
            uids = super()._search(client, state, lo, hi, scoped)
            if 2 in uids:                                           # another client removes uid 2
                c.select_folder("INBOX")
                c.add_flags([2], [b"\\Deleted"])
                c.uid_expunge([2])
            return uids

    p = harness.start(harness.poller(account(mailbox.server, mailbox.user), cls=Racing))
    harness.wait_entries(2)
    idle_again(p)
    assert sorted(harness.message_ids()) == ["e1", "e3"]
    assert p.status().last_error is None and unseen(c) == []
    c.logout()


# ----------------------------------------------------------------- outages
def test_server_killed_while_idling_backs_off_then_takes_new_mail_once(dovecot_factory, harness, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    server = dovecot_factory()
    c = server.client()
    c.append("INBOX", msg("before"))
    c.logout()
    gate = Gate()
    p = harness.start(harness.poller(account(server, "agent@example.test"), backoff_base=0.1,
                                     backoff_cap=1.0, pause=gate))
    harness.wait_entries(1)
    idle_again(p)
    connects = p.status().connects
    server.stop(signal.SIGKILL)                                     # crash: whole process group
    gate.paused(1, timeout=30)                                      # the session noticed
    assert p.status().connects == connects
    for n in range(2, 7):                                           # five more failed attempts
        gate.release()
        gate.paused(n)
        assert p.status().connects - connects == n - 1             # one connection per retry, no spin
    delays = gate.paused(6)
    caps = [min(1.0, 0.1 * 2 ** (k - 1)) for k in range(1, 7)]      # base 0.1 doubling, cap 1.0
    assert all(cap / 2 <= d <= cap for d, cap in zip(delays, caps)), delays   # equal jitter
    st = p.status()
    assert st.state == "backoff" and st.retry_at and st.last_error
    assert caplog.text.count("; retry ") == len(delays)             # one line per backoff step
    server.start()
    gate.open()
    c = server.client()
    c.append("INBOX", msg("after"))
    harness.wait_entries(2, timeout=60)                          # an upper bound: a loaded machine reconnects slowly
    idle_again(p)
    assert sorted(harness.message_ids()) == ["after", "before"]
    assert unseen(c) == []
    c.logout()


def test_server_down_at_start_retries_with_backoff(dovecot_factory, harness, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    server = dovecot_factory(start=False)
    gate = Gate()
    p = harness.start(harness.poller(account(server, "agent@example.test"), backoff_base=0.1,
                                     backoff_cap=0.4, pause=gate))
    gate.paused(1)
    gate.release()
    delays = gate.paused(2)                                         # held in its second backoff
    st = p.status()
    assert st.state == "backoff" and "ConnectionRefused" in st.last_error
    assert st.connects == 2 and st.logins == 0                      # one attempt per retry
    assert 0.05 <= delays[0] <= 0.1 and 0.1 <= delays[1] <= 0.2     # equal jitter, doubling
    text = caplog.text
    assert text.count("ConnectionRefusedError") == text.count("; retry ") == 2
    server.start()
    gate.open()
    c = server.client()
    c.append("INBOX", msg("late"))
    harness.wait_entries(1)
    idle_again(p)
    assert harness.message_ids() == ["late"]
    c.logout()


def test_wrong_password_backs_off_and_alerts_while_other_accounts_work(dovecot_factory, mailbox, harness,
                                                                       caplog):
    assert inspect.signature(ImapPoller).parameters["auth_backoff"].default >= 300
    caplog.set_level(logging.INFO, logger=LOGGER)
    # private server without Dovecot's own auth penalty, so only our pacing limits the attempts
    server = dovecot_factory("auth_failure_delay = 0\n", auth_penalty=False)
    gate = Gate()
    bad = harness.start(harness.poller(account(server, "agent@example.test", name="bad"), "wrong",
                                       auth_backoff=1.0, auth_backoff_cap=60.0, pause=gate))
    good = harness.start(harness.poller(account(mailbox.server, mailbox.user, name="good")))
    gate.paused(1)
    st = bad.status()
    assert st.state == "auth_failed" and "AUTHENTICATIONFAILED" in st.last_error and st.retry_at
    assert st.logins == 1                                           # held: no second login meanwhile
    c = mailbox.client()                                            # the other account works meanwhile
    c.append("INBOX", msg("still-works"))
    harness.wait_entries(1)
    idle_again(good)
    assert harness.message_ids() == ["still-works"]
    c.logout()
    assert bad.status().logins == 1
    gate.release()
    delays = gate.paused(2)
    assert bad.status().logins == 2
    assert all(d >= 1.0 for d in delays) and delays[1] <= 60.0      # never sooner than auth_backoff
    wait_until(lambda: server.log_count("auth failed") == 2, 5, "server saw each login")
    alerts = [r for r in caplog.records if r.levelno == logging.ERROR and "ALERT" in r.getMessage()]
    assert len(alerts) == 2                                         # one ALERT per refused login


# ----------------------------------------------------------------- volume and concurrency
def test_backlog_oldest_first_in_batches_survives_restart(mailbox, harness):
    total, first_run = 1000, 300
    c = mailbox.client()
    for start in range(0, total, 250):
        c.multiappend("INBOX", [msg(f"b{i:04d}") for i in range(start, start + 250)])
    stored = []

    def count(base):
        stored.append(base)
        if len(stored) >= first_run:
            p1.stop.set()                                           # "restart" mid-backlog

    acct = account(mailbox.server, mailbox.user)
    p1 = harness.poller(acct, on_stored=count, batch_size=50, search_window=128)
    harness.start(p1)
    wait_until(lambda: p1.status().state == "stopped", 30, "first run stopped")
    first = len(harness.drain())
    assert first_run <= first < total
    assert len(unseen(c)) == total - first                          # flagged exactly what was spooled
    p2 = harness.start(harness.poller(acct, owner="daemon-2", batch_size=50, search_window=128))
    harness.wait_entries(total, timeout=40)
    idle_again(p2)
    assert len(harness.drain()) == total
    uids = [int(env.peer.rsplit("/", 1)[1]) for env, _ in harness.seen]
    assert uids == list(range(1, total + 1))                        # oldest first, none twice
    assert p2.status().batches >= (total - first) // 50
    assert unseen(c) == []
    c.logout()


def test_two_pollers_on_one_mailbox_spool_each_message_once(mailbox, backend_harness):
    harness = backend_harness
    acct = account(mailbox.server, mailbox.user)
    a = harness.start(harness.poller(acct, owner="host-a"))
    b = harness.start(harness.poller(acct, owner="host-b"))       # separate engines, same DB
    wait_until(lambda: {a.status().state, b.status().state} == {"idle", "standby"}, 10, "one active")
    c = mailbox.client()
    c.multiappend("INBOX", [msg(f"t{i:02d}") for i in range(30)])
    harness.wait_entries(30)
    active, standby = (a, b) if b.status().state == "standby" else (b, a)
    idle_again(active)
    assert standby.status().state == "standby"
    assert standby.status().taken == 0 and active.status().taken == 30
    harness.halt(active)                                            # releases the lease at once
    idle_again(standby)
    c.multiappend("INBOX", [msg(f"u{i:02d}") for i in range(5)])
    harness.wait_entries(35)
    idle_again(standby)
    ids = harness.message_ids()
    assert len(ids) == len(set(ids)) == 35
    c.logout()


# ----------------------------------------------------------------- TLS
def _self_signed(d: Path) -> Path:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True, timeout=30)
    return d / "cert.pem"


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_tls_certificate_is_verified(dovecot_factory, harness, security):
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    from tests.conftest import free_port
    imaps = free_port()
    server = dovecot_factory(start=False, imaps_port=imaps)
    cert = _self_signed(server.dir)
    with open(server.conf, "a") as fh:
        fh.write(f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{server.dir / 'key.pem'}\n")
    server.start()
    port = imaps if security == "tls" else server.port
    untrusted = harness.start(harness.poller(account(server, "agent@example.test", security=security,
                                                     port=port, name="untrusted")))
    wait_until(lambda: "CERTIFICATE_VERIFY_FAILED" in (untrusted.status().last_error or ""), 10,
               "certificate refused")
    assert untrusted.status().logins == 0 and server.log_count("Login: user=") == 0
    trusted = harness.start(harness.poller(account(server, "agent@example.test", security=security,
                                                   port=port, name="trusted", ca_file=str(cert))))
    idle_again(trusted)
    c = server.client()
    c.append("INBOX", msg(f"tls-{security}"))
    harness.wait_entries(1)
    assert harness.message_ids() == [f"tls-{security}"]
    c.logout()
