"""Benchmark: `helpdesk search` latency on a large desk (store.search).

Makes the schema by the migrations on an empty database, fills it with N tickets (default
100,000), each with an opening mail and an answer (synthetic text drawn from an IT-desk
vocabulary with a Zipf-like spread, so some words are on most tickets and some on a
handful), indexes them (the one-time backfill path of store.search.create_index, which
migration 0003 runs; the same rows the per-message hook writes), then times `search()` for
a common word, a rare word, two words, a subject word and a miss.

Run by hand (prints figures; no assertions):
    .venv/bin/python bench/search.py                         # SQLite in a temp dir
    .venv/bin/python bench/search.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/bench_search
    .venv/bin/python bench/search.py -n 20000 --runs 50
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import insert, text  # noqa: E402
from sqlmodel import SQLModel  # noqa: E402

from store import tables as m  # noqa: E402
from store.db import create_schema, make_engine  # noqa: E402
from store.search import create_index, search  # noqa: E402

WORDS = ("printer vpn laptop password reset mail outlook teams access folder share licence monitor dock "
         "keyboard wifi network slow crash error update install account locked phone headset badge door "
         "screen battery charger server backup restore calendar invite meeting room projector scanner toner "
         "paper jam floor building office remote home token certificate expired browser chrome firefox "
         "excel word powerpoint sharepoint onedrive sync drive disk full memory cpu fan noise hot").split()
RARE = ("zeppelin", "quokka", "fjord", "obsidian")
QUERIES = (("common word", "printer"), ("rare word", "zeppelin"), ("two words", "vpn certificate"),
           ("subject word", "urgent"), ("no match", "xylophonist"))


def body(rng: random.Random) -> str:
    n = rng.randint(20, 80)
    words = [WORDS[min(int(rng.paretovariate(1.2)) - 1, len(WORDS) - 1)] for _ in range(n)]
    if rng.random() < 0.001:
        words.insert(rng.randrange(len(words)), rng.choice(RARE))
    return " ".join(words).capitalize() + "."


def fill(engine, n: int, seed: int = 7) -> float:
    rng = random.Random(seed)
    start = time.perf_counter()
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with engine.begin() as c:
        for lo in range(0, n, 5000):
            tickets, msgs = [], []
            for i in range(lo + 1, min(n, lo + 5000) + 1):
                at = t0 + timedelta(minutes=i)
                subject = ("Urgent: " if rng.random() < 0.05 else "") + " ".join(rng.sample(WORDS[:30], 3))
                tickets.append(dict(id=i, subject=subject, type="incident", status="open", priority="P3",
                                    queue="general", requester=f"u{i % 977}@example.org", created_at=at,
                                    updated_at=at, message_count=2))
                for k, (direction, frm) in enumerate((("in", f"u{i % 977}@example.org"), ("out", "ana@example.com"))):
                    msgs.append(dict(id=2 * i - 1 + k, ticket_id=i, message_id=f"b{i}.{k}@example.org",
                                     digest=f"d{i}.{k}", raw_sha256="0" * 64, direction=direction,
                                     visibility="public", from_addr=frm, subject=subject, text=body(rng),
                                     received_at=at + timedelta(seconds=k)))
            c.execute(insert(m.Ticket), tickets)
            c.execute(insert(m.Message), msgs)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=100_000, help="tickets (default 100000)")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--pg", metavar="URL", help="a PostgreSQL database to use (emptied first)")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    url = args.pg or f"sqlite:///{tmp.name}/bench.db"
    engine = make_engine(url)
    if args.pg:
        with engine.begin() as c:
            c.execute(text("DROP TABLE IF EXISTS message_search, alembic_version"))
        SQLModel.metadata.drop_all(engine)
    create_schema(engine)                         # every migration, on an empty database
    with engine.begin() as c:                     # the index is made again after the fill, as 0003 does
        c.execute(text("DROP TABLE IF EXISTS " + ("message_search" if args.pg else "message_fts")))
    took = fill(engine, args.n)
    start = time.perf_counter()
    with engine.begin() as c:
        create_index(c)                           # migration 0003's step: creates and backfills the index
    indexed = time.perf_counter() - start
    print(f"{engine.dialect.name}: {args.n} tickets, {2 * args.n} messages stored in {took:.1f}s, "
          f"indexed in {indexed:.1f}s")
    for label, q in QUERIES:
        times, found = [], 0
        for _ in range(args.runs):
            t = time.perf_counter()
            found = len(search(engine, q, 20))
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        print(f"  {label:<13} {q!r:<20} hits {found:>2}  median {statistics.median(times):7.1f} ms  "
              f"p95 {times[int(len(times) * 0.95) - 1]:7.1f} ms")
    engine.dispose()


if __name__ == "__main__":
    main()
