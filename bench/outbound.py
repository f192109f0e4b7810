"""Benchmark: from our SMTP 250 to the acknowledgement at the relay, through a real `helpdesk serve`.

Two runs against an aiosmtpd relay on loopback that offers PIPELINING and counts its
connections (issue 16, outbound):
  burst   N new tickets (default 500) sent as fast as 4 SMTP clients go: the time SMTP took
          to accept them all, the time until the last acknowledgement reached the relay,
          their ratio, when the last of them was stored (the outbox rows' creation), and
          mails per relay connection;
  paced   new tickets at a steady rate (default 20/s for 20 s): the 250 -> acknowledgement
          latency, p50 / p95 / max.
Each ticket causes three mails (the acknowledgement and two agent notifications); the
per-minute send limit is off ([outbound] max_per_minute = 0) to measure the pipeline.

    .venv/bin/python bench/outbound.py [-n 500] [--rate 20] [--seconds 20] [--workers 2]
"""
from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aiosmtpd.controller import Controller  # noqa: E402

from bench.ack import Relay, send_burst, start  # noqa: E402
from tests.conftest import free_port, write_site_config  # noqa: E402


class CountingRelay(Relay):
    """bench/ack.py's relay (each acknowledgement's arrival by In-Reply-To), offering
    PIPELINING and counting the client connections it saw."""

    def __init__(self):
        super().__init__()
        self.peers: set = set()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return responses[:-1] + ["250-PIPELINING", responses[-1]]

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.peers.add(session.peer)
        return await super().handle_DATA(server, session, envelope)


def run(n: int, rate: float, workers: int, clients: int = 4, limit: int = 0) -> dict:
    relay = CountingRelay()
    ctl = Controller(relay, hostname="127.0.0.1", port=free_port())
    ctl.start()
    tmp = Path(tempfile.mkdtemp(prefix="hd-bench-outbound-"))
    cfg = write_site_config(tmp, f'[queue]\nbackend = "sqlite"\nworkers = {workers}\n[outbound]\nport = {ctl.port}\n'
                                 f"max_per_minute = {limit}\n[loops]\nmax_new_tickets_per_sender_hour = 100000\n"
                                 "max_agent_mails_per_hour = 100000\n")
    port = int(cfg.read_text().split("port = ")[1].split()[0])
    proc = start(cfg, tmp / "serve.log")
    accepted: dict[str, float] = {}
    try:
        wall0 = time.time()
        t0 = send_burst(port, n, clients, rate, accepted)
        t_in = time.monotonic() - t0
        deadline = time.monotonic() + 600
        while len(relay.acks) < (n if not limit else 1) and time.monotonic() < deadline:
            time.sleep(0.02)
        t_all = max(relay.acks.values()) - t0
        while limit and time.monotonic() < deadline:       # ingest only: until every outbox row is written
            with sqlite3.connect(f"file:{tmp / 'state' / 'helpdesk.db'}?mode=ro", uri=True) as db:
                if db.execute("SELECT count(*) FROM outbox").fetchone()[0] >= 3 * n:
                    break
            time.sleep(0.05)
        while relay.total < 3 * n and time.monotonic() < deadline and not limit:
            time.sleep(0.02)
    finally:
        proc.terminate()
        proc.wait(30)
        ctl.stop()
    db = sqlite3.connect(tmp / "state" / "helpdesk.db")
    last = db.execute("SELECT max(created_at) FROM outbox").fetchone()[0]
    db.close()
    stored = datetime.fromisoformat(last).timestamp() - wall0 if last else float("nan")
    lat = sorted((relay.acks[m] - accepted[m]) * 1000 for m in accepted if m in relay.acks)
    arrivals = sorted(relay.acks.values())
    return {"first": arrivals[0] - t0, "half": arrivals[len(arrivals) // 2] - t0, "in": t_in, "all": t_all, "stored": stored, "acks": len(relay.acks), "mails": relay.total,
            "connections": len(relay.peers), "lat": lat}


def pct(values: list[float], p: float) -> float:
    return values[max(0, int(len(values) * p) - 1)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=500, help="new tickets in the burst")
    ap.add_argument("--rate", type=float, default=20.0, help="new tickets a second in the paced run")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the paced run")
    ap.add_argument("--workers", type=int, default=2, help="[queue] workers (sender threads)")
    ap.add_argument("--only", choices=("burst", "paced"), default="", help="run one of the two")
    ap.add_argument("--ingest-only", action="store_true",
                    help="burst with [outbound] max_per_minute = 6: when the tickets are stored with almost no mail sent")
    args = ap.parse_args()
    if args.ingest_only:
        b = run(args.n, 0.0, args.workers, limit=6)
        print(f"ingest only: {args.n} new tickets accepted over SMTP in {b['in']:.2f}s; last stored at "
              f"{b['stored']:.2f}s ({b['stored'] / b['in']:.2f}x)")
        return 0
    if args.only != "paced":
        b = run(args.n, 0.0, args.workers)
        print(f"burst: {args.n} new tickets accepted over SMTP in {b['in']:.2f}s ({args.n / b['in']:.0f}/s); "
              f"last stored at {b['stored']:.2f}s; acks at the relay: first at {b['first']:.2f}s, half by "
              f"{b['half']:.2f}s, last at {b['all']:.2f}s; "
              f"ratio {b['all'] / b['in']:.2f}x")
        print(f"burst: {b['acks']} acks, {b['mails']} mails over {b['connections']} relay connection(s): "
              f"{b['mails'] / max(1, b['connections']):.1f} mails per connection; "
              f"250 -> ack median {statistics.median(b['lat']):.0f} ms, p95 {pct(b['lat'], 0.95):.0f} ms")
    if args.only != "burst":
        n = int(args.rate * args.seconds)
        p = run(n, args.rate, args.workers)
        lat = p["lat"]
        print(f"paced: {n} new tickets at {args.rate:g}/s ({p['mails']} mails, {p['connections']} relay "
              f"connection(s), {p['mails'] / max(1, p['connections']):.1f} mails per connection): 250 -> ack "
              f"p50 {statistics.median(lat):.0f} ms, p95 {pct(lat, 0.95):.0f} ms, max {lat[-1]:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
