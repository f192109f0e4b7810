"""One lock order on every write path (store.writing), on the real PostgreSQL: writers each on
their own connection run, at once and in batches of mixed kinds, agent replies that name
their ticket only by the reply token (no thread header), `#link` and `#merge` of overlapping
pairs (both directions at once), customer replies by thread key to the same tickets, new
tickets from the same two senders past the flood fuse (their fuse rows tripped in both
orders), delivery reports on our mail, and `helpdesk reply` from the command line. Pass: no
DeadlockDetected, nothing failed, and the results agree with each other."""
from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from daemon.desk_cli import Act, perform
from daemon.message_path import Entry
from daemon.model import Envelope
from daemon.pipeline.parse import parse
from store import tables as m
from tests.agentkit import Zone, agent_reply, sign
from tests.integration.test_outbox import close_desk, dsn, make_desk, new_mail
from tests.integration.test_thread_race import store_batch, writers_at_once

WRITERS = 6
PAIRS = ((1, 2), (3, 4), (2, 3), (1, 4), (2, 4), (1, 3))
MERGES = ((5, 6), (7, 8))


@pytest.fixture
def desk(pg_url, tmp_path):
    d = make_desk(tmp_path, pg_url, '[agents]\nauthserv_ids = ["mx.example.com"]\n'
                                    '[loops]\nmax_new_tickets_per_sender_hour = 1\n')
    zone = Zone()
    d.pem = zone.publish("mail", "example.com")
    d.app.mail.agents.auth.lookup = zone
    yield d
    close_desk(d)


def notices(d) -> dict[int, bytes]:
    """The last notice Ana got per ticket (it carries her reply token for that ticket)."""
    out = {}
    for _, rcpts, raw in d.relay.sent:
        if "ana@example.com" in rcpts:
            tid = int(parse(raw).subject.split("[HD-")[1].split("]")[0])
            out[tid] = raw
    return out


def token_only(notice: bytes, body: str, n: int) -> bytes:
    """An agent's mail to the ticket's reply address with no In-Reply-To or References: only
    the token says which ticket it is for."""
    raw = agent_reply(notice, body, n=n, quote=False)
    return b"".join(line for line in raw.splitlines(keepends=True)
                    if not line.lower().startswith((b"in-reply-to:", b"references:")))


def entry(d, raw: bytes, *, agent: bool = False) -> Entry:
    if agent:
        raw = sign(raw, "example.com", d.pem)
    env = Envelope("ana@example.com" if agent else "ann@example.org", (str(parse(raw).to[0].email),), "smtp",
                   "198.51.100.7", d.clock().isoformat())
    return d.app.worker.path.prepare(Entry(None, raw, env), parse(raw))


def workload(d) -> tuple[list[Entry], list[Act]]:
    for n in range(1, 9):
        d.mail(new_mail(n, frm=f"user{n}@example.org", subject=f"Case {n}"))
    note, acks, entries = notices(d), {}, []
    for _, rcpts, raw in d.relay.sent:
        if rcpts and rcpts[0].startswith("user"):
            acks[int(rcpts[0][4:].split("@")[0])] = parse(raw).message_id
    n = 100
    for a, b in PAIRS:                             # link a-b from both tickets at once
        entries += [entry(d, token_only(note[a], f"#link HD-{b}\nRelated.", n), agent=True),
                    entry(d, token_only(note[b], f"#link HD-{a}\nRelated.", n + 1), agent=True)]
        n += 2
    for a, b in MERGES:                            # merge a into b and b into a at once: one wins
        entries += [entry(d, token_only(note[a], f"#merge HD-{b}", n), agent=True),
                    entry(d, token_only(note[b], f"#merge HD-{a}", n + 1), agent=True)]
        n += 2
    for t in range(1, 9):                          # answers by token, and the customers' replies
        if t < 5:                                  # (an answer would reopen a merged ticket)
            entries.append(entry(d, token_only(note[t], "#priority P2\nWe are on it.", n), agent=True))
            n += 1
        for k in range(2):
            entries.append(entry(d, (f"From: U <user{t}@example.org>\r\nTo: support@example.com\r\n"
                                     f"Subject: Re: Case {t}\r\nMessage-ID: <re{t}.{k}@example.org>\r\n"
                                     f"In-Reply-To: <{acks[t]}>\r\nReferences: <{acks[t]}>\r\n\r\n"
                                     f"Still broken ({k}).\r\n").encode()))
        entries.append(entry(d, dsn("support@example.com", acks[t], rcpt=f"user{t}@example.org")))
    for k in range(12):                            # the flood fuse of two senders, both orders
        for s in ("s1", "s2") if k % 2 else ("s2", "s1"):
            entries.append(entry(d, new_mail(k, frm=f"{s}@example.org", subject=f"Flood {k}")))
    acts = [Act(t, "ana@example.com", ("priority P3",), f"From the command line {t}.", via="reply")
            for t in (1, 2, 3, 4)]
    return entries, acts


def test_every_write_path_at_once_meets_no_deadlock(desk):
    entries, acts = workload(desk)
    rng = random.Random(14)
    rng.shuffle(entries)
    batches, i = [], 0
    while i < len(entries):
        size = rng.randint(1, 4)
        batches.append(entries[i:i + size])
        i += size
    lanes = [batches[k::WRITERS] for k in range(WRITERS)]
    lanes[0] = [("cli", a) for a in acts] + lanes[0]
    stats = writers_at_once(lanes, lambda work: perform(desk.app, work[1]) if isinstance(work, tuple)
                            else store_batch(desk, work))
    print(f"\n{len(batches)} batches of {len(entries)} messages + {len(acts)} replies on {WRITERS} writers: {stats}")
    assert stats["deadlocks"] == 0 and stats["errors"] == []
    consistent(desk, entries, acts)


def consistent(d, entries: list[Entry], acts: list[Act]) -> None:
    with Session(d.store.engine) as s:
        mids = Counter(s.execute(select(m.Message.message_id)).scalars())
        tickets = {t.id: t for t in s.execute(select(m.Ticket)).scalars()}
        links = set(s.execute(select(m.TicketLink.ticket_id, m.TicketLink.other_id, m.TicketLink.kind)).all())
        counts = dict(s.execute(select(m.Message.ticket_id, func.count()).group_by(m.Message.ticket_id)).all())
        alerts = Counter(json.loads(d)["fuse"] for d in s.execute(
            select(m.Event.detail).where(m.Event.kind == "alert")).scalars())
        fuses = {f.key: f.count for f in s.execute(select(m.MailFuse)).scalars()}
        cli = s.execute(select(func.count()).select_from(m.Message).where(
            m.Message.text.like("From the command line%"))).scalar()
    assert all(mids[e.msg.message_id] == 1 for e in entries)                  # every message stored once
    assert cli == len(acts)
    assert all(counts.get(t, 0) == row.message_count for t, row in tickets.items())
    for a, b in PAIRS:                                                        # linked both ways, once
        assert {(a, b, "related"), (b, a, "related")} <= links
    assert all((b, a, k) in links for a, b, k in links if k == "related")
    for a, b in MERGES:                                                       # exactly one merged into the other
        merged = [(x, y) for x, y in ((a, b), (b, a)) if (x, y, "merged_into") in links]
        assert len(merged) == 1, (a, b, merged)
        gone, kept = merged[0]
        assert tickets[gone].status == "closed" and tickets[kept].status != "closed"
        assert (kept, gone, "merged_from") in links
    assert {t.requester for t in tickets.values()} >= {"s1@example.org", "s2@example.org"}
    for s in ("s1", "s2"):                                                    # one alert per fuse and window
        assert sum(t.requester == f"{s}@example.org" for t in tickets.values()) == 12
        assert alerts[f"sender-tickets:{s}@example.org"] == 1 and fuses[f"sender-tickets:{s}@example.org"] >= 1
