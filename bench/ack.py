"""Benchmark: acknowledgements end to end through a real `helpdesk serve`.

Mail goes in over SMTP (several concurrent clients), the daemon stores it, plans the
acknowledgement and the agent notifications into the outbox, and its sender threads hand
them to a real aiosmtpd relay on loopback. Measured: acknowledgements per second, and the
latency from our SMTP 250 to the acknowledgement reaching the relay (median, p95, max).

Run by hand (prints figures; no assertions):
    .venv/bin/python bench/ack.py                     # 500 mails, 4 clients, SQLite + SqliteHuey
    .venv/bin/python bench/ack.py -n 2000 --workers 4
    .venv/bin/python bench/ack.py --redis redis://127.0.0.1:6379/15
"""
from __future__ import annotations

import argparse
import os
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aiosmtpd.controller import Controller  # noqa: E402

from tests.conftest import free_port, write_site_config  # noqa: E402


START = [0.0]                              # when the clients start (pacing reference)


class Relay:
    """Records when each acknowledgement (by In-Reply-To) arrives."""

    def __init__(self):
        self.acks: dict[str, float] = {}
        self.total = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        now = time.monotonic()
        head = envelope.original_content.split(b"\r\n\r\n", 1)[0]
        irt = next((line.split(b":", 1)[1].strip().strip(b"<>").decode() for line in head.split(b"\r\n")
                    if line.lower().startswith(b"in-reply-to:")), "")
        with self.lock:
            self.total += 1
            if b"Auto-Submitted: auto-replied" in head:
                self.acks.setdefault(irt, now)
        return "250 OK"


def serve_command(config: Path) -> list[str]:
    return [sys.executable, "-m", "daemon", "--config", str(config), "serve"]


def start(config: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("HELPDESK_CONFIG", None)
    fh = open(log, "ab")
    proc = subprocess.Popen(serve_command(config), stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=str(REPO),
                            start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if b" ready" in log.read_bytes():
            return proc
        if proc.poll() is not None:
            raise SystemExit(f"serve exited: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    raise SystemExit("serve did not become ready")


def send(port: int, ids: list[int], accepted: dict[str, float], interval: float = 0.0) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
        for k, i in enumerate(ids):
            if interval:
                time.sleep(max(0.0, START[0] + k * interval - time.monotonic()))
            mid = f"bench-ack-{i}@corp.example"
            raw = (f"From: User {i} <user{i}@corp.example>\r\nTo: support@example.com\r\n"
                   f"Subject: Printer on floor {i % 9} jams ({i})\r\nMessage-ID: <{mid}>\r\n\r\n"
                   f"It jams on every page.\r\n").encode()
            c.sendmail(f"user{i}@corp.example", ["support@example.com"], raw)
            accepted[mid] = time.monotonic()


def send_burst(port: int, n: int, clients: int, rate: float, accepted: dict) -> float:
    """Mails 0..n-1 from `clients` threads at `rate` a second in all (0: as fast as they go);
    returns the start (time.monotonic), when every one has its 250."""
    chunks = [list(range(n))[k::clients] for k in range(clients)]
    t0 = START[0] = time.monotonic()
    interval = clients / rate if rate else 0.0
    threads = [threading.Thread(target=send, args=(port, c, accepted, interval)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=500, help="mails to send")
    ap.add_argument("--clients", type=int, default=4, help="concurrent SMTP clients")
    ap.add_argument("--workers", type=int, default=2, help="[queue] workers (sender threads)")
    ap.add_argument("--redis", default="", help="use RedisHuey at this URL")
    ap.add_argument("--rate", type=float, default=0.0, help="mails per second in total (0: as fast as possible)")
    args = ap.parse_args()
    relay = Relay()
    ctl = Controller(relay, hostname="127.0.0.1", port=free_port())
    ctl.start()
    tmp = Path(tempfile.mkdtemp(prefix="hd-bench-ack-"))
    queue = f'backend = "redis"\nurl = "{args.redis}"' if args.redis else 'backend = "sqlite"'
    cfg = write_site_config(tmp, f"[queue]\n{queue}\nworkers = {args.workers}\n[outbound]\nport = {ctl.port}\nmax_per_minute = 0\n"
                                 "[loops]\nmax_new_tickets_per_sender_hour = 100000\nmax_agent_mails_per_hour = 100000\n")
    port = int(cfg.read_text().split("port = ")[1].split()[0])
    if args.redis:
        import redis
        redis.Redis.from_url(args.redis).flushdb()
    proc = start(cfg, tmp / "serve.log")
    accepted: dict[str, float] = {}
    try:
        t0 = send_burst(port, args.n, args.clients, args.rate, accepted)
        t_in = time.monotonic() - t0
        deadline = time.monotonic() + 600
        while len(relay.acks) < args.n and time.monotonic() < deadline:
            time.sleep(0.05)
        t_all = max(relay.acks.values()) - t0
    finally:
        proc.terminate()
        proc.wait(30)
        ctl.stop()
    lat = sorted((relay.acks[m] - accepted[m]) * 1000 for m in accepted if m in relay.acks)
    pace = f"paced at {args.rate:g}/s" if args.rate else "as fast as they go"
    print(f"mails in: {args.n} over SMTP with {args.clients} clients ({pace}) in {t_in:.2f}s ({args.n / t_in:.0f}/s)")
    print(f"acks out: {len(relay.acks)} of {args.n}; all mail out: {relay.total} (ack + 2 agent notifications "
          f"per ticket); queue {'redis' if args.redis else 'sqlite'}, {args.workers} sender thread(s)")
    print(f"throughput: {len(relay.acks) / t_all:.1f} acks/s, {relay.total / t_all:.1f} mails/s end to end "
          f"({t_all:.2f}s from the first 250 to the last ack)")
    print(f"latency 250 -> ack at the relay: median {statistics.median(lat):.0f} ms, "
          f"p95 {lat[int(len(lat) * 0.95) - 1]:.0f} ms, max {lat[-1]:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
