"""Benchmark: `helpdesk report` over a large month.

    .venv/bin/python bench/report.py [--tickets 50000] [--days 28]

Writes a fresh SQLite database in a temporary directory with --tickets tickets created over
--days days (each with its first mail, one public answer, a resolved status event for 90 %
and an SLA plan row), then times, with the shipped rules and sla.yaml:

  collect    the store reads and the figures (daemon.report.collect: every ticket of the
             period, its messages' envelope and first answer, its status events, the SLA
             histories and attainment)
  text/html  rendering the report as text and as the HTML page
Prints the figures and the size of the page.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from daemon.report.collect import collect  # noqa: E402
from daemon.report.page import render_html  # noqa: E402
from daemon.report.render import render_text  # noqa: E402
from daemon.rules.live import LiveRules  # noqa: E402
from store import tables as m  # noqa: E402
from store.db import create_schema, make_engine  # noqa: E402

START = datetime(2026, 3, 2, tzinfo=timezone.utc)


def generate(engine, n: int, days: int, rnd: random.Random) -> None:
    tickets, messages, events, plans = [], [], [], []
    for i in range(1, n + 1):
        created = START + timedelta(seconds=rnd.randrange(days * 86400))
        answered = created + timedelta(minutes=rnd.expovariate(1 / 120))
        done = rnd.random() < 0.9
        tickets.append({"id": i, "subject": f"Ticket {i}", "type": rnd.choice(("incident", "incident", "request")),
                        "status": "resolved" if done else "open", "priority": rnd.choice(("P2", "P3", "P3", "P4")),
                        "queue": rnd.choice(("general", "network", "workplace", "security")),
                        "requester": f"u{i % 5000}@example.org", "assignee": None, "created_at": created,
                        "updated_at": created, "message_count": 2, "rules_version": ""})
        env = json.dumps({"source": rnd.choice(("smtp", "smtp", "imap:support"))})
        for k, (at, direction) in enumerate(((created, "in"), (answered, "out"))):
            messages.append({"ticket_id": i, "message_id": f"m{i}.{k}", "digest": f"d{i}.{k}", "raw_sha256": "0",
                             "direction": direction, "visibility": "public", "received_at": at, "envelope": env})
        if done:
            events.append({"ticket_id": i, "at": answered + timedelta(hours=rnd.expovariate(1 / 20)),
                           "kind": "status", "detail": json.dumps({"from": "open", "to": "resolved"})})
        plans.append({"ticket_id": i, "policy": "standard", "queue": "general", "planned_at": created,
                      "service": rnd.choice((None, None, "email", "vpn"))})
    with engine.begin() as c:
        for table, rows in ((m.Ticket, tickets), (m.Message, messages), (m.Event, events), (m.TicketSla, plans)):
            c.execute(table.__table__.insert(), rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tickets", type=int, default=50_000)
    p.add_argument("--days", type=int, default=28)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/bench.db")
        create_schema(engine)
        t0 = time.perf_counter()
        generate(engine, args.tickets, args.days, random.Random(1))
        print(f"generated {args.tickets} tickets in {time.perf_counter() - t0:.1f} s")
        sla = LiveRules(REPO / "rules").sla
        end = START + timedelta(days=args.days)
        t0 = time.perf_counter()
        figures = collect(engine, sla, START, end, end + timedelta(days=1))
        t1 = time.perf_counter()
        text = render_text(figures)
        t2 = time.perf_counter()
        page = render_html(figures)
        t3 = time.perf_counter()
        engine.dispose()
    print(f"collect  {t1 - t0:7.2f} s  ({args.tickets / (t1 - t0):,.0f} tickets/s)")
    print(f"text     {1000 * (t2 - t1):7.1f} ms ({len(text):,} characters)")
    print(f"html     {1000 * (t3 - t2):7.1f} ms ({len(page):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
