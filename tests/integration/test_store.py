"""The store contract, written once and run against SQLite and PostgreSQL."""
from __future__ import annotations

import hashlib
import threading
from datetime import datetime, timezone

import pytest

from daemon.model import (Address, AttachmentPart, Envelope, MachineVerdict, ParsedMessage, Routing,
                          ThreadDecision)
from store.blobs import Blobs
from store.db import create_schema, make_engine
from store.repo import Store

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)
ENV = Envelope("ann@example.org", ("support@example.com",), "smtp", "127.0.0.1", NOW.isoformat())
ROUTING = Routing(type="incident", queue="general", priority="P3", hits=("builtin:defaults",), rules_version="v1")


def pm(mid: str, *, body: str = "hello", irt: tuple = (), refs: tuple = (), frm: str = "ann@example.org",
       cc: tuple = (), subject: str = "printer", attachments: tuple = (), kind: str = "human") -> ParsedMessage:
    digest = hashlib.sha256(f"{mid}|{body}".encode()).hexdigest()
    return ParsedMessage(
        message_id=mid, message_id_synthetic=False, content_digest=digest, subject=subject,
        from_addr=Address("Ann", frm), reply_to=(), to=(Address("", "support@example.com"),),
        cc=tuple(Address("", c) for c in cc), date=NOW, in_reply_to=irt, references=refs, text=body,
        html=None, attachments=attachments, headers=(("Subject", subject),), machine=MachineVerdict(kind))


def raw_of(msg: ParsedMessage) -> bytes:
    return f"Message-ID: <{msg.message_id}>\r\n\r\n{msg.text}\r\n".encode()


def save(store: Store, msg: ParsedMessage, decision: ThreadDecision):
    raw = raw_of(msg)
    return store.save_incoming(msg, ENV, raw, hashlib.sha256(raw).hexdigest(), decision, ROUTING, NOW,
                               own_addresses=frozenset({"support@example.com"}))


NEW = ThreadDecision("new", None, "no known thread key: new ticket")


@pytest.fixture
def store(backend, tmp_path):
    engine = make_engine(backend.url)
    create_schema(engine)
    s = Store(engine, Blobs(tmp_path / "attachments"))
    yield s
    engine.dispose()


def test_new_ticket_with_participants_events_and_keys(store):
    r = save(store, pm("a@x", cc=("bob@example.org", "support@example.com"), refs=("ghost@x",)), NEW)
    assert r.outcome == "created" and r.ticket_id
    d = store.ticket_detail(r.ticket_id)
    assert d.ticket.status == "new" and d.ticket.requester == "ann@example.org" and d.ticket.message_count == 1
    assert dict(d.participants) == {"ann@example.org": "requester", "bob@example.org": "cc"}
    assert [e.kind for e in d.events] == ["created", "message"]
    known = store.thread_candidates(("a@x", "ghost@x", "nope@x"), None).known
    assert {(k.message_id, k.ghost) for k in known} == {("a@x", False), ("ghost@x", True)}


def test_same_message_twice_is_stored_once(store):
    first = save(store, pm("a@x"), NEW)
    again = save(store, pm("a@x"), NEW)
    assert again.outcome == "duplicate"
    assert store.counts() == {"tickets": 1, "messages": 1}
    assert store.is_duplicate("a@x", pm("a@x").content_digest)
    assert first.ticket_id


def test_same_message_id_different_content_is_two_messages(store):
    save(store, pm("a@x", body="one"), NEW)
    r = save(store, pm("a@x", body="two"), NEW)
    assert r.outcome == "created"
    assert store.counts()["messages"] == 2


def test_append_reopen_and_machine_mail_does_not_reopen(store):
    t = save(store, pm("a@x"), NEW).ticket_id
    with store._write() as s:                                  # resolve it (agent commands come later)
        from store import tables
        row = s.get(tables.Ticket, t)
        row.status = "resolved"
        s.add(row)
        s.commit()
    auto = save(store, pm("auto@x", irt=("a@x",), kind="auto_reply"), ThreadDecision("reopen", t, "irt", "a@x"))
    assert auto.outcome == "appended" and store.ticket_detail(t).ticket.status == "resolved"
    human = save(store, pm("b@x", irt=("a@x",)), ThreadDecision("reopen", t, "irt", "a@x"))
    assert human.outcome == "reopened" and store.ticket_detail(t).ticket.status == "open"
    assert store.ticket_detail(t).ticket.message_count == 3


def test_new_linked_ticket_links_both_ways(store):
    t1 = save(store, pm("a@x"), NEW).ticket_id
    r = save(store, pm("e@x", frm="eve@evil.test"), ThreadDecision("new_linked", None, "tag from stranger", link_to=t1))
    assert r.outcome == "linked"
    assert store.ticket_detail(r.ticket_id).links == ((t1, "related"),)
    assert store.ticket_detail(t1).links == ((r.ticket_id, "related"),)


def test_attachments_are_content_addressed_on_disk(store, tmp_path):
    data = b"%PDF-1.4 hello"
    sha = hashlib.sha256(data).hexdigest()
    part = AttachmentPart("../../etc/passwd", "application/pdf", data, sha, len(data))
    r = save(store, pm("att@x", attachments=(part,)), NEW)
    [msg] = store.ticket_detail(r.ticket_id).messages
    assert msg.attachments[0].filename == "../../etc/passwd"        # display metadata only
    assert store.blobs.get(sha) == data
    assert store.blobs.path_for(sha).parent.parent == (tmp_path / "attachments").resolve()
    with pytest.raises(ValueError):
        store.blobs.path_for("../../etc/passwd")


def test_bounce_attaches_to_ticket_without_creating_one(store):
    t = save(store, pm("a@x"), NEW).ticket_id
    r = save(store, pm("dsn@x", frm="mailer-daemon@x", kind="bounce"), ThreadDecision("bounce", t, "dsn"))
    assert r.outcome == "bounce" and store.counts()["tickets"] == 1
    assert store.ticket_detail(t).messages[-1].visibility == "internal"
    orphan = save(store, pm("dsn2@x", kind="bounce"), ThreadDecision("bounce", None, "none"))
    assert orphan.outcome == "orphan" and store.counts()["tickets"] == 1


def test_quarantine_keeps_raw_once_and_releases(store):
    raw = b"\xd0\xcf\x11\xe0 not mail"
    sha = hashlib.sha256(raw).hexdigest()
    q1 = store.quarantine(raw, sha, ENV, "parse", "not_mail", "OLE2 file", NOW, "x", "y")
    q2 = store.quarantine(raw, sha, ENV, "parse", "not_mail", "OLE2 file", NOW)
    assert q1 == q2 and store.quarantine_count() == 1
    row, back = store.quarantine_get(q1)
    assert back == raw and row.reason == "not_mail" and row.envelope["mail_from"] == "ann@example.org"
    store.quarantine_mark_released(q1, NOW)
    assert store.quarantine_list() == [] and store.quarantine_list(None)[0].status == "released"


def test_list_filters_and_export_batches(store):
    for i in range(7):
        save(store, pm(f"m{i}@x", body=str(i)), NEW)
    rows = store.list_tickets()
    assert [r.id for r in rows] == sorted((r.id for r in rows), reverse=True)
    assert store.list_tickets(status="open") == []
    assert len(store.list_tickets(queue="general", type="incident")) == 7
    assert list(store.iter_tickets(batch=3)) == rows                     # keyset batches, same order
    assert list(store.iter_tickets(batch=3, limit=5)) == rows[:5]
    assert list(store.iter_tickets(batch=2, limit=1)) == rows[:1]
    exported = list(store.iter_details(batch=3))
    assert [d.ticket.id for d in exported] == sorted(r.id for r in rows)
    assert all(len(d.messages) == 1 for d in exported)
    assert exported[0].ticket.created_at.tzinfo is not None


def test_racing_writers_store_a_message_once(store):
    msg = pm("race@x")
    results = []
    barrier = threading.Barrier(4)

    def go():
        barrier.wait()
        results.append(save(store, msg, NEW).outcome)
    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["created", "duplicate", "duplicate", "duplicate"]
    assert store.counts() == {"tickets": 1, "messages": 1}


def test_rule_tags_are_kept_on_a_new_ticket(store):
    routing = Routing(type="incident", queue="general", priority="P2", tags=("outage", "vip", "outage"))
    msg = pm("tags@x")
    raw = raw_of(msg)
    r = store.save_incoming(msg, ENV, raw, hashlib.sha256(raw).hexdigest(), NEW, routing, NOW)
    assert store.ticket_detail(r.ticket_id).tags == ("outage", "vip")
