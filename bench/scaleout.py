"""Benchmark: several nodes on PostgreSQL and Redis (issue 14). Run by hand; prints figures.

    .venv/bin/python bench/scaleout.py                    # 600 messages per cluster run, 300 per store run
    .venv/bin/python bench/scaleout.py --messages 2000 --per-message 1000

1. Aggregate intake and ingest rate with one and with two `helpdesk serve` (and one
   `helpdesk worker` sending, as in the scale-out test) on a fresh PostgreSQL database and
   Redis: the corpus of bench/ingest.py (60 % new conversations, 40 % replies) is sent over
   SMTP by 8 clients, spread over the serve nodes. Intake = messages / time until the last
   250; ingest = messages / time until the last one is stored (every message in the database).
2. Per-message cost of the write path (lock, thread, classify, save, plan and apply the mail)
   in one process, on SQLite and on PostgreSQL: one transaction per message
   (`Worker.process`), and drained from the spool in batches (group commit).
Needs PostgreSQL at $HELPDESK_TEST_PG (default postgresql+psycopg://postgres@127.0.0.1:5432/test)
and Redis at --redis (a database it flushes).
"""
from __future__ import annotations

import argparse
import os
import smtplib
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from ingest import make_corpus  # noqa: E402  (bench/ingest.py)

from daemon.app import build_app  # noqa: E402
from daemon.config import load_config  # noqa: E402
from daemon.model import Envelope  # noqa: E402

PG_ADMIN = os.environ.get("HELPDESK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
KEY_ENV = "HELPDESK_BENCH_KEY"
os.environ.setdefault(KEY_ENV, "1 YmVuY2gtc2lnbmluZy1rZXktZm9yLXNjYWxlb3V0LTE0")
DESK = "support@example.com"


class Relay:
    """A relay that accepts everything (aiosmtpd), counting."""

    def __init__(self):
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        return "250 OK"


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_pg() -> tuple[str, callable]:
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"hd_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))

    def drop():
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name, drop


def site(root: Path, name: str, db: str, queue: str, relay: int, smtp: bool, workers: int) -> tuple[Path, int]:
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    backend = f'backend = "redis"\nurl = "{queue}"' if queue.startswith("redis") else f'backend = "{queue}"'
    (root / "site.toml").write_text(f"""
[helpdesk]
address = "{DESK}"
state_dir = "state"
key_env = "{KEY_ENV}"
[database]
url = "{db}"
[queue]
{backend}
workers = {workers}
[smtp]
enabled = {str(smtp).lower()}
port = {port}
domains = ["example.com"]
max_messages_per_ip_minute = 1000000
[outbound]
port = {relay}
[loops]
max_new_tickets_per_sender_hour = 1000000
max_per_recipient_hour = 1000000
max_per_recipient_day = 1000000
[health]
node = "{name}"
""")
    return root / "site.toml", port


def start(cfg: Path, command: str) -> subprocess.Popen:
    log = open(cfg.parent / f"{command}.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(cfg), command], stdout=log,
                            stderr=subprocess.STDOUT, cwd=str(cfg.parent), env=dict(os.environ, PYTHONPATH=str(REPO)))
    deadline = time.monotonic() + 60
    while b" ready" not in (cfg.parent / f"{command}.log").read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{command} did not start: {(cfg.parent / f'{command}.log').read_text()[-2000:]}")
        time.sleep(0.05)
    return proc


def send_all(ports: list[int], corpus, clients: int = 8) -> None:
    chunks = [corpus[i::clients] for i in range(clients)]

    def run(k: int) -> None:
        conns = {p: smtplib.SMTP("127.0.0.1", p, timeout=60) for p in ports}
        try:
            for j, (raw, _, _) in enumerate(chunks[k]):
                conns[ports[(k + j) % len(ports)]].sendmail("user@corp.example", [DESK], raw.replace(b"\n", b"\r\n"))
        finally:
            for c in conns.values():
                c.quit()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(run, range(clients)))


def cluster(nodes: int, corpus, redis_url: str, work: Path) -> tuple[float, float]:
    import redis
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    db, drop = fresh_pg()
    relay = Relay()
    ctl = Controller(relay, hostname="127.0.0.1", port=free_port())
    ctl.start()
    procs = []
    try:
        serves = [site(work / f"s{i}", f"s{i}", db, redis_url, ctl.port, True, 0) for i in range(nodes)]
        wcfg, _ = site(work / "w", "w", db, redis_url, ctl.port, False, 4)
        procs = [start(cfg, "serve") for cfg, _ in serves] + [start(wcfg, "worker")]
        engine = create_engine(db)
        t0 = time.monotonic()
        send_all([p for _, p in serves], corpus)
        intake = time.monotonic() - t0
        while True:
            with engine.connect() as c:
                n = c.execute(text("SELECT count(*) FROM message WHERE direction = 'in'")).scalar()
            if n >= len(corpus):
                break
            time.sleep(0.05)
        ingest = time.monotonic() - t0
        engine.dispose()
        return len(corpus) / intake, len(corpus) / ingest
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        ctl.stop()
        client.flushdb()
        client.close()
        drop()


def per_message(db: str, corpus, work: Path) -> tuple[float, float]:
    """ms per message: one transaction each, then batches drained from the spool."""
    results = []
    for mode in ("one", "batch"):
        root = work / f"{mode}-{'pg' if db else 'sqlite'}"
        drop = None
        if db:
            db_url, drop = fresh_pg()
        else:
            db_url = ""
        cfg, _ = site(root, "bench", db_url, "sqlite", free_port(), False, 1)
        app = build_app(load_config(str(cfg)))
        env = Envelope("user@corp.example", (DESK,), "smtp", "127.0.0.1", "")
        try:
            t0 = time.monotonic()
            if mode == "one":
                for raw, _, _ in corpus:
                    app.worker.process(raw, env)
            else:
                app.spool.put_many((raw, env) for raw, _, _ in corpus)
                t0 = time.monotonic()
                app.worker.drain()
            results.append((time.monotonic() - t0) * 1000 / len(corpus))
        finally:
            app.close()
            if drop:
                drop()
    return results[0], results[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=600)
    ap.add_argument("--per-message", type=int, default=300)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    args = ap.parse_args()
    corpus = make_corpus(args.messages, seed=14, domain="corp.example")
    small = make_corpus(args.per_message, seed=15, domain="corp.example")
    with tempfile.TemporaryDirectory(prefix="hd-scaleout-") as tmp:
        work = Path(tmp)
        print(f"cluster runs: {args.messages} messages over SMTP, 8 clients, PostgreSQL + Redis, one worker sending")
        for nodes in (1, 2):
            intake, ingest = cluster(nodes, corpus, args.redis, work / f"cluster{nodes}")
            print(f"  {nodes} serve: intake {intake:7.1f} msg/s   ingest (stored) {ingest:7.1f} msg/s")
        print(f"per-message cost of the write path, {args.per_message} messages, in one process:")
        for label, db in (("SQLite", ""), ("PostgreSQL", "pg")):
            one, batch = per_message(db, small, work)
            print(f"  {label:<10}  one transaction each {one:6.2f} ms/msg   drained in batches {batch:6.2f} ms/msg")


if __name__ == "__main__":
    main()
