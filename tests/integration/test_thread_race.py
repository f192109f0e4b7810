"""Several writers on one database behave like one (issue 14), on SQLite and PostgreSQL: a reply
and its parent stored at the same moment by two transactions end in one ticket (the second
waits on the first's thread-key lock and threads on what it committed); many concurrent
writers running the real write path (lock, thread, classify, save, plan and apply the mail)
split no conversation, store every message once, acknowledge every ticket once, and on
PostgreSQL meet no DeadlockDetected; keys of two tickets in one message link them and
tell the agents."""
from __future__ import annotations

import random
import threading
import time

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlmodel import Session

from daemon.errors import StoreUnavailable
from daemon.message_path import Entry
from daemon.model import Envelope
from daemon.pipeline.parse import parse
from store import tables as m
from tests.integration.test_outbox import close_desk, make_desk

def mail(mid: str, refs: tuple[str, ...] = (), frm: str = "ann@example.org", subject: str = "Printer jams") -> bytes:
    head = f"From: Ann <{frm}>\r\nTo: support@example.com\r\nSubject: {subject}\r\nMessage-ID: <{mid}>\r\n"
    if refs:
        head += f"In-Reply-To: <{refs[-1]}>\r\nReferences: {' '.join(f'<{r}>' for r in refs)}\r\n"
    return (head + f"\r\nText of {mid}.\r\n").encode()


def conversation(n: int, replies: int = 1) -> list[bytes]:
    """A parent and `replies` replies, each naming every earlier message."""
    ids = [f"c{n}.{i}@example.org" for i in range(replies + 1)]
    return [mail(ids[i], tuple(ids[:i]), frm=f"user{n}@example.org",
                 subject=f"Conversation {n}" if i == 0 else f"Re: Conversation {n}") for i in range(replies + 1)]


@pytest.fixture
def desk(backend, tmp_path):
    d = make_desk(tmp_path, backend.config_url)
    d.backend = backend
    yield d
    close_desk(d)


def entry(desk, raw: bytes) -> Entry:
    env = Envelope("ann@example.org", ("support@example.com",), "smtp", "127.0.0.1", desk.clock().isoformat())
    return desk.app.worker.path.prepare(Entry(None, raw, env), parse(raw))


def store_batch(desk, entries: list[Entry]) -> list:
    """One write transaction over `entries`, as the spool worker runs it."""
    path = desk.app.worker.path
    with desk.store.write() as tx:
        path.lock(tx, entries)
        done = [path.store_one(tx, e) for e in entries]
        tx.commit()
    return [d.result for d in done]


def waiting_for_a_lock(url: str) -> bool:
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return bool(c.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar())
    finally:
        engine.dispose()


def until(check, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def tickets_of(desk) -> dict[str, int]:
    with Session(desk.store.engine) as s:
        return dict(s.execute(select(m.Message.message_id, m.Message.ticket_id)).all())


@pytest.mark.parametrize("first", ["parent", "reply"])
def test_a_reply_and_its_parent_at_the_same_moment_make_one_ticket(desk, first):
    parent, reply = conversation(1)
    order = [parent, reply] if first == "parent" else [reply, parent]
    one, two = entry(desk, order[0]), entry(desk, order[1])
    path, got = desk.app.worker.path, {}
    with desk.store.write() as tx:                     # the first transaction holds its keys, uncommitted
        path.lock(tx, [one])
        held = path.store_one(tx, one).result
        racer = threading.Thread(target=lambda: got.update(r=store_batch(desk, [two])[0]))
        racer.start()
        if desk.backend.name == "postgresql":          # the second waits on the first one's key lock
            until(lambda: waiting_for_a_lock(desk.backend.url))
        tx.commit()
    racer.join(30)
    assert got["r"].ticket_id == held.ticket_id and held.outcome == "created" and got["r"].outcome == "appended"
    assert set(tickets_of(desk).values()) == {held.ticket_id}


def deadlocks_in(exc: BaseException) -> int:
    while exc is not None:
        if exc.__class__.__name__ == "DeadlockDetected" or "deadlock detected" in str(exc):
            return 1
        exc = exc.__cause__ or exc.__context__
    return 0


def writers_at_once(lanes: list[list], do) -> dict:
    """One thread per lane, released together; each runs `do(work)` for its lane's work in
    order, retrying what fails as StoreUnavailable (as the worker puts a batch back). The
    deadlocks seen, the retries and any other error."""
    stats = {"deadlocks": 0, "retries": 0, "errors": []}
    lock, start = threading.Lock(), threading.Barrier(len(lanes))

    def run(lane):
        start.wait()
        for work in lane:
            for _ in range(20):
                try:
                    do(work)
                    break
                except StoreUnavailable as exc:             # e.g. DeadlockDetected: the worker would retry
                    with lock:
                        stats["deadlocks"] += deadlocks_in(exc)
                        stats["retries"] += 1
                except Exception as exc:                    # noqa: BLE001 - counted, the test fails on it
                    with lock:
                        stats["deadlocks"] += deadlocks_in(exc)
                        stats["errors"].append(repr(exc))
                    break
    threads = [threading.Thread(target=run, args=(lane,)) for lane in lanes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return stats


def test_many_concurrent_writers_split_nothing_and_never_deadlock(desk):
    """8 writers, batches of 1-6 messages in random order: 40 conversations of a parent and
    3 replies, each naming all earlier messages, spread over every writer."""
    convs = [conversation(n, replies=3) for n in range(40)]
    raws = [raw for c in convs for raw in c]
    rng = random.Random(14)
    rng.shuffle(raws)
    entries = [entry(desk, raw) for raw in raws]
    batches, i = [], 0
    while i < len(entries):
        size = rng.randint(1, 6)
        batches.append(entries[i:i + size])
        i += size
    lanes = [batches[k::8] for k in range(8)]
    stats = writers_at_once(lanes, lambda batch: store_batch(desk, batch))
    print(f"\n{desk.backend.name}: {len(batches)} batches, {stats}")
    assert stats["deadlocks"] == 0 and stats["errors"] == []
    owner = tickets_of(desk)
    assert len(owner) == 160                                            # every message stored once
    split = [n for n in range(40) if len({owner[f"c{n}.{i}@example.org"] for i in range(4)}) != 1]
    assert split == []
    with Session(desk.store.engine) as s:
        assert s.execute(select(func.count()).select_from(m.Ticket)).scalar() == 40
        acks = s.execute(select(m.Outbox.ticket_id, func.count()).where(m.Outbox.kind == "ack")
                         .group_by(m.Outbox.ticket_id)).all()
        keys = s.execute(select(m.ThreadKey.key, func.count()).group_by(m.ThreadKey.key)
                         .having(func.count() > 1)).all()
    assert len(acks) == 40 and all(n == 1 for _, n in acks) and keys == []


def test_keys_of_two_tickets_in_one_message_link_them_and_tell_the_agents(desk, monkeypatch):
    """A split made before (two tickets, e.g. by an older version or a sender writing into two
    threads) is found when one message names both: linked both ways, an event, a notice."""
    a, b = mail("a1@example.org", subject="VPN down"), mail("b1@example.org", subject="Printer jams")
    ta, tb = store_batch(desk, [entry(desk, a)])[0].ticket_id, store_batch(desk, [entry(desk, b)])[0].ticket_id
    both = mail("x1@example.org", ("b1@example.org", "a1@example.org"), subject="Re: both")
    res = store_batch(desk, [entry(desk, both)])[0]
    assert res.ticket_id == ta and res.met == (tb,)
    with Session(desk.store.engine) as s:
        links = set(s.execute(select(m.TicketLink.ticket_id, m.TicketLink.other_id)
                              .where(m.TicketLink.kind == "related")).all())
        notices = s.execute(select(m.Outbox.ticket_id, m.Outbox.raw).where(m.Outbox.kind == "agent_split")).all()
    assert links == {(ta, tb), (tb, ta)}
    assert "linked" in desk.events(ta) and "linked" in desk.events(tb)
    assert notices and all(t == ta for t, _ in notices)
    assert f"HD-{tb}".encode() in notices[0][1] and b"x1@example.org" in notices[0][1]
    again = store_batch(desk, [entry(desk, mail("x2@example.org", ("b1@example.org", "a1@example.org")))])[0]
    assert again.met == ()                                              # told once, not at every message
