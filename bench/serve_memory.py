"""Memory of a long-running `helpdesk serve`: RSS after 10,000, 20,000, ... messages (issue 16).

Target: `serve` RSS under 150 MB after 100,000 messages. Starts a real daemon (a subprocess,
SQLite state in a temp dir, the SQLite queue, an aiosmtpd sink on loopback as relay so the
acknowledgements and agent notifications go somewhere), sends N messages of the ingest
corpus (bench/ingest.py: 60 % new conversations, 40 % replies, 10 % HTML, 8 % with an
attachment) over SMTP from a few client threads, and every `--every` messages stored prints
VmRSS and VmHWM of the serve process and of its child processes (parse lanes), the messages
stored per second since the last line, and the mails the relay got. The clients hold back
while the spool holds more than `--backlog` messages, so "after N messages" means N stored,
not N waiting on disk. Prints figures; asserts nothing.

    .venv/bin/python bench/serve_memory.py [--messages 100000] [--every 10000] [--clients 4]
                                           [--backlog 500] [--repo PATH] [--arena-max N] [--probe MARKS] [--keep]

`--repo` runs another checkout's daemon (e.g. an export of main) for a before/after figure.

Measured 2026-12-04 on main e85097f (2 cores shared, load 5-15): serve VmRSS 117.7 MB ready;
152.5 / 161.1 / 168.1 / 173.0 / 178.1 / 182.5 MB at 10k / 20k / 30k / 40k / 50k / 60k stored
(16-51 msg/s); parse children flat at 13 and 25 MB. With MALLOC_ARENA_MAX=2: 117.5 MB ready,
133.1 / 139.2 / 141.6 / 144.4 MB at 2.5k / 5k / 7.5k / 10k. Of the 60k figure, ~127 MB is
anonymous mappings and 30 MB brk heap (smaps): glibc arenas of the 18 threads, not file maps.

Measured 2026-12-04 (branch rss100k, 2 cores shared, load 9-19), to 100,000 messages:
- main 6d62264, MALLOC_ARENA_MAX=2 (as the units): 118.6 MB ready; 142.9 / 150.8 / 152.9 /
  156.8 / 159.4 / 162.1 MB at 10k / 20k / 30k / 40k / 50k / 60k (stopped there, 14-57 msg/s).
- rss100k (daemon.heap: 2 arenas set by serve itself, MALLOC_ARENA_MAX unset; malloc_trim
  every 60 s; no redis/psycopg import on a SQLite site), --arena-max 0: 102.9 MB ready;
  123.3 / 132.0 / 136.2 / 137.9 / 140.3 / 143.8 / 135.4 / 143.7 / 144.3 MB at 10k ... 90k,
  147.2 MB at 99,999 stored (VmHWM 153.4); idle after it, with the trims: 144.4, then 141.0 MB.
The ready figure is 16 MB lower only where the [postgres]/[redis] extras are installed (this
venv has them from [test]); the growth is lower everywhere. --probe at 7k (main): tracemalloc
+6 MB since 2k (3.7 MB of it one block, the interned-strings dict grown once; lru_caches of
compose/addresses filling to their bounds), glibc in use 50 of 64 MB, malloc_trim(0) gave
back 7.5 MB in 1.4 ms; threads' stacks 0.3 MB in all.
"""
from __future__ import annotations

import argparse
import os
import signal
import smtplib
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aiosmtpd.controller import Controller  # noqa: E402

from bench.ingest import iter_corpus  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.integration.intake_memory import status_kb  # noqa: E402


class Sink:
    """The relay: counts the mails it is given and keeps nothing."""

    def __init__(self):
        self.mails = 0

    async def handle_DATA(self, server, session, envelope):
        self.mails += 1
        return "250 OK"


def children(pid: int) -> list[int]:
    """Every descendant of pid, from /proc/PID/task/*/children."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return out
    for tid in tasks:
        try:
            kids = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
        except FileNotFoundError:
            continue
        for k in map(int, kids):
            out += [k, *children(k)]
    return out


def memory(pid: int) -> str:
    line = f"serve VmRSS {status_kb(pid, 'VmRSS') / 1024:6.1f} MB VmHWM {status_kb(pid, 'VmHWM') / 1024:6.1f} MB"
    kids = children(pid)
    if kids:
        rss = [status_kb(k, "VmRSS") / 1024 for k in kids]
        hwm = [status_kb(k, "VmHWM") / 1024 for k in kids]
        line += (f"; {len(kids)} child(ren) VmRSS " + "/".join(f"{r:.0f}" for r in rss) + " MB, VmHWM "
                 + "/".join(f"{h:.0f}" for h in hwm) + " MB")
    return line


def site_config(state: Path, port: int, relay: int) -> Path:
    cfg = state / "bench.toml"
    cfg.write_text(f'[helpdesk]\nstate_dir = "state"\n[smtp]\nport = {port}\ndomains = ["example.com"]\n'
                   "max_messages_per_ip_minute = 0\n[worker]\nidle_poll_seconds = 0.2\n"
                   f'[queue]\nbackend = "sqlite"\n[outbound]\nport = {relay}\nmax_per_minute = 0\n'
                   "[loops]\nmax_new_tickets_per_sender_hour = 1000000\nmax_agent_mails_per_hour = 1000000\n"
                   "max_per_recipient_hour = 1000000\nmax_per_recipient_day = 1000000\n")
    return cfg


def probe_env(tmp: Path, marks: str) -> dict[str, str]:
    """bench/serve_probe.py as the serve process's sitecustomize (see there): its environment."""
    (tmp / "probe").mkdir()
    (tmp / "probe" / "sitecustomize.py").write_bytes((REPO / "bench" / "serve_probe.py").read_bytes())
    return {"HD_PROBE_OUT": str(tmp / "probe.txt"), "HD_PROBE_MARKS": marks, "HD_PROBE_PATH": str(tmp / "probe")}


def start(repo: Path, cfg: Path, log: Path, arena_max: int = 0, probe: dict | None = None) -> subprocess.Popen:
    path = os.pathsep.join([*([probe["HD_PROBE_PATH"]] if probe else []), str(repo)])
    env = dict(os.environ, PYTHONPATH=path, **({"MALLOC_ARENA_MAX": str(arena_max)} if arena_max else {}),
               **(probe or {}))
    env.pop("HELPDESK_CONFIG", None)
    proc = subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(cfg), "serve"], cwd=str(cfg.parent),
                            env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while b" ready" not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)    # its own session: serve and its parse lanes, not left behind
            raise SystemExit("serve did not start: " + log.read_text()[-2000:])
        time.sleep(0.05)
    return proc


class Feed:
    """The corpus, one message at a time, to several client threads; holds back while the spool is full."""

    def __init__(self, n: int, spool: Path, backlog: int):
        self.corpus = iter_corpus(n)
        self.lock = threading.Lock()
        self.spool, self.backlog = spool, backlog
        self.sent = 0
        self.errors: list[str] = []

    def waiting(self) -> int:
        return sum(len(os.listdir(self.spool / d)) for d in ("new", "cur") if (self.spool / d).is_dir())

    def next(self):
        with self.lock:
            if self.sent % 100 == 0:
                while self.waiting() > self.backlog:
                    time.sleep(0.05)
            item = next(self.corpus, None)
            if item is not None:
                self.sent += 1
            return item

    def client(self, port: int) -> None:
        try:
            c = smtplib.SMTP("127.0.0.1", port, timeout=120)
            while (item := self.next()) is not None:
                c.sendmail("bench@example.org", ["support@example.com"], item[0].replace(b"\n", b"\r\n"))
            c.quit()
        except Exception as e:                     # noqa: BLE001 - reported at the end
            self.errors.append(repr(e))


def stored(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            return c.execute("SELECT max(id) FROM message").fetchone()[0] or 0
    except sqlite3.Error:
        return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--every", type=int, default=10_000, help="print a line every this many messages stored")
    ap.add_argument("--clients", type=int, default=4, help="SMTP client threads")
    ap.add_argument("--backlog", type=int, default=500, help="clients wait while the spool holds more")
    ap.add_argument("--repo", type=Path, default=REPO)
    ap.add_argument("--arena-max", type=int, default=2,
                    help="MALLOC_ARENA_MAX for serve, as systemd/*.service set it (glibc's malloc arenas); "
                         "0: unset (serve then limits them itself: daemon.heap)")
    ap.add_argument("--probe", metavar="MARKS", default="",
                    help="e.g. 2000,10000,20000: at these stored counts serve itself reports its heaps, "
                         "tracemalloc growth and malloc_trim's effect (bench/serve_probe.py); slows serve")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (print its path)")
    args = ap.parse_args()
    sink = Sink()
    ctl = Controller(sink, hostname="127.0.0.1", port=free_port())
    ctl.start()
    tmp = Path(tempfile.mkdtemp(prefix="hd-bench-serve-mem-"))
    cfg = site_config(tmp, free_port(), ctl.port)
    print(f"messages {args.messages}, {args.clients} SMTP clients, repo {args.repo}, dir {tmp}, "
          f"MALLOC_ARENA_MAX {args.arena_max or os.environ.get('MALLOC_ARENA_MAX', 'unset')}", flush=True)
    probe = probe_env(tmp, args.probe) if args.probe else None
    proc = start(args.repo.resolve(), cfg, tmp / "serve.log", args.arena_max, probe)
    db = tmp / "state" / "helpdesk.db"
    feed = Feed(args.messages, tmp / "state" / "spool", args.backlog)
    print(f"{0:>7} stored  ready: {memory(proc.pid)}", flush=True)
    try:
        threads = [threading.Thread(target=feed.client, args=(int(cfg.read_text().split("port = ")[1].split()[0]),),
                                    daemon=True) for _ in range(args.clients)]
        t0 = last_t = time.monotonic()
        for t in threads:
            t.start()
        mark, last_n, seen, moved = args.every, 0, 0, time.monotonic()
        while mark <= args.messages:
            if proc.poll() is not None:
                raise SystemExit("serve exited: " + (tmp / "serve.log").read_text()[-2000:])
            n = stored(db)
            if n != seen:
                seen, moved = n, time.monotonic()
            elif time.monotonic() - moved > 120:
                print(f"no progress for 120 s at {n} stored, {feed.sent} sent", flush=True)
                break
            if n >= mark or (n >= feed.sent and not any(t.is_alive() for t in threads) and n > last_n):
                now = time.monotonic()
                print(f"{n:>7} stored  {(n - last_n) / (now - last_t):6.1f} msg/s  {memory(proc.pid)}; "
                      f"relay got {sink.mails} mails", flush=True)
                last_n, last_t = n, now
                mark = (n // args.every + 1) * args.every
                if n >= feed.sent and not any(t.is_alive() for t in threads):
                    break
            time.sleep(0.5)
        took = time.monotonic() - t0
        print(f"done: {stored(db)} stored in {took:.0f} s ({stored(db) / took:.1f} msg/s overall); "
              f"relay got {sink.mails} mails; {memory(proc.pid)}", flush=True)
        for e in feed.errors[:5]:
            print("  client error:", e)
    finally:
        proc.terminate()
        proc.wait(60)
        ctl.stop()
        if probe and Path(probe["HD_PROBE_OUT"]).exists():
            print(Path(probe["HD_PROBE_OUT"]).read_text())
        if not args.keep:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
