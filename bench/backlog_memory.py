"""A backlog of N messages waiting in the spool when `helpdesk serve` starts (reliability
cases 13 and 36): peak RSS while it drains, throughput, and (with --kill) a SIGKILL half
way and a restart, after which every message must be stored exactly once. Prints figures.

    .venv/bin/python bench/backlog_memory.py [--messages 10000] [--kill]
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from daemon.model import Envelope  # noqa: E402
from daemon.spool import Spool  # noqa: E402
from tests.conftest import free_port  # noqa: E402


def kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def fill(spool: Spool, n: int) -> None:
    env = Envelope("user@example.org", ("support@example.com",), "smtp")
    for start in range(0, n, 500):
        spool.put_many([((f"From: user{i % 300}@example.org\r\nTo: support@example.com\r\n"
                          f"Subject: backlog case {i}\r\nMessage-ID: <backlog-{i}@example.org>\r\n\r\n"
                          f"Printer {i} is broken.\r\n").encode(), env) for i in range(start, min(start + 500, n))])


def start(cfg: Path, state: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("HELPDESK_CONFIG", None)
    return subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(cfg), "serve"], cwd=str(state),
                            env=env, stdout=open(state / "serve.log", "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def waiting(spool: Spool) -> int:
    return len(os.listdir(spool.new)) + len(os.listdir(spool.cur))


def drain(proc: subprocess.Popen, spool: Spool, until: int) -> tuple[int, float]:
    """Sample RSS until at most `until` entries wait; (peak kB, seconds)."""
    t0, peak = time.monotonic(), 0
    while waiting(spool) > until and proc.poll() is None:
        peak = max(peak, kb(proc.pid, "VmRSS"))
        time.sleep(0.1)
    return max(peak, kb(proc.pid, "VmHWM")), time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--kill", action="store_true", help="SIGKILL half way, restart, check exactly once")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hd-bench-backlog-") as tmp:
        state = Path(tmp)
        cfg = state / "bench.toml"
        cfg.write_text(f'[helpdesk]\nstate_dir = "state"\n[smtp]\nport = {free_port()}\ndomains = ["example.com"]\n'
                       '[worker]\nidle_poll_seconds = 0.2\n[loops]\nmax_new_tickets_per_sender_hour = 100000\n')
        spool = Spool(state / "state" / "spool").ensure()
        fill(spool, args.messages)
        proc = start(cfg, state)
        try:
            peak, took = drain(proc, spool, args.messages // 2 if args.kill else 0)
            if args.kill:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                print(f"killed with {waiting(spool)} of {args.messages} waiting after {took:.0f} s, peak RSS "
                      f"{peak / 1024:.0f} MB")
                proc = start(cfg, state)
                peak, took = drain(proc, spool, 0)
            print(f"{args.messages} messages drained in {took:.0f} s ({args.messages / max(took, 1e-9):.0f}/s"
                  f"{' after the restart' if args.kill else ''}); peak RSS {peak / 1024:.0f} MB")
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        from daemon.app import open_store
        from daemon.config import load_config
        store = open_store(load_config(str(cfg)))
        print("store counts:", store.counts(), "quarantined:", store.quarantine_count())
        store.engine.dispose()


if __name__ == "__main__":
    main()
