"""Benchmark of the IMAP intake edge against a real, private Dovecot (run by hand).

    /work/venv/bin/python bench/imap.py [--messages 200] [--backlog 5000] [--size 3000]

Prints (1) the latency from APPEND on the IMAP server to the message being committed in
the spool, pushed via IDLE, one message at a time (median, p95, max), and (2) the rate
for a backlog taken oldest first in batches (messages/s). Spool only: the ticket
pipeline is measured elsewhere. Needs dovecot-imapd installed.
"""
from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon.config import ImapAccount  # noqa: E402
from daemon.intake.imap import ImapPoller  # noqa: E402
from daemon.spool import Spool  # noqa: E402
from store import imap_state  # noqa: E402
from store.db import make_engine  # noqa: E402
from tests.integration.dovecot import Dovecot, find_binary  # noqa: E402


def message(i: int, size: int) -> bytes:
    body = ("The printer on floor 3 jams again. " * (size // 36 + 1))[:size]
    return (f"From: user{i}@example.org\r\nTo: support@example.com\r\nSubject: bench {i}\r\n"
            f"Message-ID: <bench-{i}-{time.time_ns()}@example.org>\r\n\r\n{body}\r\n").encode()


def make_poller(server: Dovecot, user: str, work: Path, on_stored, name: str) -> ImapPoller:
    acct = ImapAccount(name=name, host="127.0.0.1", port=server.port, security="none", username=user,
                       password_env="PW", password_credential="", folder="INBOX", move_to="", idle=True,
                       poll_seconds=60, verify_tls=True, ca_file="")
    engine = make_engine(f"sqlite:///{work / (name + '.db')}")
    imap_state.create_tables(engine)
    return ImapPoller(acct, Spool(work / f"spool-{name}").ensure(), engine, on_stored, threading.Event(),
                      "bench", environ={"PW": "secret"})


def bench_latency(server: Dovecot, work: Path, n: int, size: int) -> list[float]:
    stored = threading.Event()
    poller = make_poller(server, server.add_user(), work, lambda _b: stored.set(), "latency")
    client = server.client(poller.account.username)
    thread = poller.start()
    while poller.status().state != "idle":
        time.sleep(0.01)
    out = []
    for i in range(n):
        stored.clear()
        t0 = time.perf_counter()
        client.append("INBOX", message(i, size))
        if not stored.wait(30):
            raise RuntimeError(f"message {i} not stored within 30 s")
        out.append(time.perf_counter() - t0)
        while poller.status().state != "idle":       # back in IDLE before the next one
            time.sleep(0.001)
    poller.stop.set()
    thread.join()
    client.logout()
    return out


def bench_server_push(server: Dovecot, n: int, size: int) -> list[float]:
    """Baseline: APPEND -> EXISTS seen by a bare IMAPClient in IDLE (the server's own delay)."""
    user = server.add_user()
    watcher, appender = server.client(user), server.client(user)
    watcher.select_folder("INBOX")
    out = []
    for i in range(n):
        watcher.idle()
        t0 = time.perf_counter()
        appender.append("INBOX", message(i, size))
        while not any(len(r) > 1 and r[1] == b"EXISTS" for r in watcher.idle_check(timeout=30)):
            pass
        out.append(time.perf_counter() - t0)
        watcher.idle_done()
    watcher.logout()
    appender.logout()
    return out


def bench_backlog(server: Dovecot, work: Path, n: int, size: int) -> tuple[float, int]:
    user = server.add_user()
    client = server.client(user)
    step = max(1, min(500, (8 << 20) // size))       # keep the bench's own memory small
    for start in range(0, n, step):
        client.multiappend("INBOX", [message(i, size) for i in range(start, min(n, start + step))])
    client.logout()
    count = [0]
    done = threading.Event()

    def on_stored(_base):
        count[0] += 1
        if count[0] >= n:
            done.set()

    poller = make_poller(server, user, work, on_stored, "backlog")
    t0 = time.perf_counter()
    thread = poller.start()
    if not done.wait(600):
        raise RuntimeError(f"only {count[0]} of {n} stored")
    elapsed = time.perf_counter() - t0
    poller.stop.set()
    thread.join()
    return elapsed, poller.status().batches


def summary(sorted_secs: list[float]) -> str:
    p95 = sorted_secs[min(len(sorted_secs) - 1, max(0, round(0.95 * len(sorted_secs)) - 1))]
    return (f"median {statistics.median(sorted_secs) * 1000:.1f} ms  p95 {p95 * 1000:.1f} ms  "
            f"max {sorted_secs[-1] * 1000:.1f} ms  (n={len(sorted_secs)})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200, help="messages for the IDLE latency run")
    ap.add_argument("--backlog", type=int, default=5000, help="messages in the backlog run")
    ap.add_argument("--size", type=int, default=3000, help="body size in bytes")
    ap.add_argument("--workdir", default=None, help="where spool and state go (default: a temp dir)")
    args = ap.parse_args()
    binary = find_binary("dovecot")
    if binary is None:
        print("dovecot not installed (apt-get install dovecot-imapd)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="hd-bench-imap-", dir=args.workdir))
    server = Dovecot.create(binary)
    server.start()
    try:
        base = sorted(bench_server_push(server, min(args.messages, 50), args.size))
        lat = sorted(bench_latency(server, work, args.messages, args.size))
        print(f"IDLE latency, APPEND -> spool commit, {len(lat)} messages of ~{args.size} B:")
        print(f"  poller:   {summary(lat)}")
        print(f"  baseline: {summary(base)}  (APPEND -> EXISTS to a bare IDLE client: Dovecot's own delay)")
        elapsed, batches = bench_backlog(server, work, args.backlog, args.size)
        print(f"backlog of {args.backlog} messages of ~{args.size} B: {elapsed:.2f} s, "
              f"{args.backlog / elapsed:.0f} messages/s ({batches} batches)")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS of this process {rss:.0f} MiB (spool and SQLite state in {work})")
    finally:
        server.remove()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
