"""The spool: durable put, claim by rename, attempts counted, recovery of dead claims."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from daemon.errors import SpoolError
from daemon.model import Envelope
from daemon.spool import Spool, decode_entry, encode_entry

ENV = Envelope("a@x.test", ("support@example.com",), "smtp", "127.0.0.1", "2026-01-01T00:00:00+00:00")


@pytest.fixture
def spool(tmp_path):
    return Spool(tmp_path / "spool").ensure()


def test_entry_roundtrip_keeps_bytes_exactly():
    raw = b"From: a\r\n\r\nbody\x00\xff\r\n.\r\n"
    env, back = decode_entry(encode_entry(raw, ENV))
    assert back == raw and env == ENV


def test_put_claim_done_fifo(spool):
    bases = [spool.put(f"m{i}".encode(), ENV) for i in range(3)]
    assert spool.depth() == 3
    seen = []
    while (c := spool.claim()) is not None:
        env, raw = spool.read(c)
        seen.append((c.base, raw))
        assert c.attempt == 1
        spool.done(c)
    assert seen == [(b, f"m{i}".encode()) for i, b in enumerate(bases)]
    assert spool.depth() == 0 and spool.pending_bases() == set()
    assert os.listdir(spool.tmp) == []


def test_done_behind_forgets_the_entries_once_settled(spool):
    """An import's unlinks run on the spool's thread; after `settle` every file is gone
    (and a second settle has nothing to wait for)."""
    bases = spool.put_many([(f"m{i}".encode(), ENV) for i in range(5)])
    claims = [spool.claim() for _ in bases]
    for c in claims:
        spool.done_behind(c)
    spool.settle()
    assert os.listdir(spool.cur) == [] and spool.pending_bases() == set()
    spool.settle()


def test_claim_only_some(spool):
    a, b = spool.put(b"a", ENV), spool.put(b"b", ENV)
    c = spool.claim({b})
    assert c.base == b
    assert spool.pending_bases() == {a, b}


def test_release_counts_attempts_unless_told(spool):
    spool.put(b"x", ENV)
    c1 = spool.claim()
    spool.release(c1)
    c2 = spool.claim()
    assert c2.attempt == 2
    spool.release(c2, count_attempt=False)
    assert spool.claim().attempt == 2


def test_recover_returns_entries_of_dead_processes(spool):
    base = spool.put(b"x", ENV)
    # a child process claims the entry and dies without finishing (like a SIGKILL)
    code = ("import sys; sys.path.insert(0, %r); from daemon.spool import Spool; "
            "from pathlib import Path; s = Spool(Path(%r)); assert s.claim() is not None"
            % (str(__import__('pathlib').Path(__file__).resolve().parents[2]), str(spool.root)))
    subprocess.run([sys.executable, "-c", code], check=True)
    assert spool.depth() == 0 and base in spool.pending_bases()
    assert spool.recover() == 1
    c = spool.claim()
    assert c.base == base and c.attempt == 2        # the crash counted as an attempt


def test_recover_leaves_live_claims_alone(spool):
    spool.put(b"x", ENV)
    other = Spool(spool.root)
    claim = other.claim()
    # our own pid is "alive" from another Spool's view only if it is not us; a claim by
    # this very process is considered dead (we are recovering at start)
    assert claim is not None
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        os.rename(claim.path, claim.path.with_name(f"{claim.base}.a1@{spool.host},{live.pid}"))
        assert spool.recover() == 0
    finally:
        live.kill()
        live.wait()
    assert spool.recover() == 1


def test_put_failure_on_full_disk(tmp_path, monkeypatch):
    spool = Spool(tmp_path / "s").ensure()
    real_write = os.write

    def full(fd, data):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "write", full)
    with pytest.raises(SpoolError, match="No space left"):
        spool.put(b"x", ENV)
    monkeypatch.setattr(os, "write", real_write)
    assert spool.depth() == 0 and os.listdir(spool.tmp) == []
