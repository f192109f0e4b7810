"""Benchmark: the SLA sweep against a real store (SQLite or PostgreSQL) with many open tickets.

    /work/venv/bin/python bench/sla_sweep.py [--tickets 100000] [--db URL] [--seed 1]

Fills a fresh database with the open tickets of bench/sla.py (same mix: ages, priorities,
policies, answered, pending) in their steady state: ticket rows, `status` events, agent
replies (outgoing public messages), each ticket's `ticketsla` row with the next due time
planned 15 minutes earlier and the `slafired` rows of the levels due by then. Then times,
at NOW:

  due query     SELECT the tickets whose next_due_at <= now (the index)
  feed          the change-feed query (events since the last sweep; none here)
  version scan  open tickets without a plan or with one from other settings (none here)
  sweep         Escalator.sweep(): the three above plus firing every due ticket (one
                transaction each: lock, history, plan, fired row, actions, outbox mails)
  no index      what finding the due levels costs without the stored next due time:
                read every open ticket's history in batches and plan it

SQLite runs with the daemon's pragmas (WAL, synchronous=FULL): each fired ticket is a
durable commit.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from sqlalchemy import insert  # noqa: E402

from sla import NOW, make_tickets  # noqa: E402  (bench/sla.py)
from daemon.config import load_config  # noqa: E402
from daemon.escalation import Escalator  # noqa: E402
from daemon.outbound import desk_of, fuses_of  # noqa: E402
from daemon.pipeline.sla import due_now, plan_escalations, policy_for  # noqa: E402
from daemon.templates import LiveTemplates  # noqa: E402
from daemon.rules.live import LiveRules  # noqa: E402
from daemon import tokens  # noqa: E402
from store import tables as m  # noqa: E402
from store.db import create_schema, make_engine  # noqa: E402
from store.sla_store import SlaCursor, SlaFired, SlaStore, TicketSla  # noqa: E402

EARLIER = NOW - timedelta(minutes=15)


def fill(engine, tickets, live) -> int:
    """Insert the tickets in their steady state; how many levels had fired before."""
    settings = live.sla
    rows = {k: [] for k in ("ticket", "event", "message", "sla", "fired")}
    for h in tickets:
        tid = h.ticket_id + 1
        status = h.status
        rows["ticket"].append(dict(id=tid, subject=f"bench {tid}", type="incident", status=status, priority=h.priority,
                                   queue=h.queue, requester=f"user{tid}@example.org", assignee=None,
                                   created_at=h.created_at, updated_at=h.status_changes[-1].at if h.status_changes
                                   else h.created_at, message_count=1, rules_version=""))
        rows["event"].append(dict(ticket_id=tid, at=h.created_at, kind="created", detail="{}"))
        last = "new"
        for c in h.status_changes:
            rows["event"].append(dict(ticket_id=tid, at=c.at, kind="status",
                                      detail=json.dumps({"from": last, "to": c.status})))
            last = c.status
        for n, at in enumerate(sorted({x for x in (h.first_response_at, h.last_update_at) if x is not None})):
            rows["message"].append(dict(ticket_id=tid, message_id=f"a{n}.{tid}@bench", digest=f"d{n}.{tid}",
                                        raw_sha256="x", direction="out", visibility="public", received_at=at,
                                        subject="", text=""))
        policy = policy_for(settings, h)
        fired = {e.key for e in due_now(plan_escalations(h, policy, EARLIER), EARLIER)}
        rest = plan_escalations(h, policy, EARLIER, fired)
        rows["sla"].append(dict(ticket_id=tid, policy=h.policy, reason="bench", queue=h.queue,
                                version=settings.version, next_due_at=rest[0].due_at if rest else None,
                                planned_at=EARLIER))
        rows["fired"] += [dict(ticket_id=tid, key=k, target=k.split(":")[1].split("@")[0], level=k.rsplit(":", 1)[1],
                               due_at=EARLIER, fired_at=EARLIER, detail="{}") for k in fired]
    with engine.begin() as c:
        for table, key in ((m.Ticket, "ticket"), (m.Event, "event"), (m.Message, "message"), (TicketSla, "sla"),
                           (SlaFired, "fired")):
            data = rows[key]
            for i in range(0, len(data), 5000):
                c.execute(insert(table.__table__), data[i:i + 5000])
        top = c.execute(m.Event.__table__.select().with_only_columns(m.Event.id).order_by(m.Event.id.desc())
                        .limit(1)).scalar()
        c.execute(insert(SlaCursor.__table__), [dict(name="sweep", low=top, high=top)])
    return len(rows["fired"])


def timed(fn):
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickets", type=int, default=100_000)
    ap.add_argument("--db", default="", help="database URL (default: SQLite in a temp dir)")
    ap.add_argument("--seed", type=int, default=1)
    opts = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sla-bench-"))
    (tmp / "site.toml").write_text(f'[helpdesk]\nstate_dir = "state"\n[database]\nurl = "{opts.db}"\n'
                                   f'[paths]\nrules = "{REPO / "rules"}"\ntemplates = "{REPO / "templates"}"\n')
    cfg = load_config(str(tmp / "site.toml"))
    engine = make_engine(cfg.database_url)
    create_schema(engine)
    live = LiveRules(cfg.paths.rules)
    tickets = make_tickets(opts.tickets, opts.seed)
    fill_s, before = timed(lambda: fill(engine, tickets, live))
    print(f"{len(tickets)} open tickets, {before} levels fired before; filled {engine.url.get_backend_name()} "
          f"in {fill_s:.1f} s")
    store = SlaStore(engine)
    esc = Escalator(desk_of(cfg), fuses_of(cfg), store, live, LiveTemplates(cfg.paths.templates),
                    tokens.load_keyring(cfg.state_dir, "", ""), clock=lambda: NOW, immediate=lambda: True)
    esc._planned_version = live.sla.version
    due_s, due = timed(lambda: store.due(NOW, 1_000_000))
    feed_s, _ = timed(lambda: store.changed("bench"))
    feed_s, changed = timed(lambda: store.changed("bench"))
    scan_s, stale = timed(lambda: store.unplanned(live.sla.version, 0, 500))
    print(f"due query    {due_s * 1000:8.1f} ms  ({len(due)} tickets due)")
    print(f"feed         {feed_s * 1000:8.1f} ms  ({len(changed)} changed)")
    print(f"version scan {scan_s * 1000:8.1f} ms  ({len(stale)} to re-plan)")

    def no_index():
        with engine.connect() as c:
            fired: dict[int, set[str]] = {}
            for tid, key in c.execute(SlaFired.__table__.select().with_only_columns(SlaFired.ticket_id, SlaFired.key)):
                fired.setdefault(tid, set()).add(key)
        found = 0
        for h, _, _ in store.histories(NOW - timedelta(days=400), NOW + timedelta(days=1)):
            if h.status in ("resolved", "closed"):
                continue
            found += bool(due_now(plan_escalations(h, policy_for(live.sla, h), NOW, fired.get(h.ticket_id, ())), NOW))
        return found
    full_s, found = timed(no_index)
    sweep_s, checked = timed(esc.sweep)
    with engine.connect() as c:
        fired = c.execute(SlaFired.__table__.select().with_only_columns(SlaFired.id)).fetchall()
    print(f"sweep        {sweep_s:8.2f} s   ({checked} tickets checked, {len(fired) - before} levels fired, "
          f"{sweep_s / max(checked, 1) * 1000:.2f} ms per ticket, durable commits)")
    print(f"no index     {full_s:8.2f} s   (read and plan every open ticket to find the {found} due)")
    again_s, checked2 = timed(esc.sweep)
    print(f"next sweep   {again_s * 1000:8.1f} ms  ({checked2} tickets: nothing due any more)")
    engine.dispose()


if __name__ == "__main__":
    main()
