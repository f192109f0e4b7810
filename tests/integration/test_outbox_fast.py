"""The planning side's reads and writes run prebuilt Core statements (one UNION ALL for
the mail history, one for the SLA inputs). They must answer exactly what the ORM queries
they replaced answered - kept here as `reference_*` - on SQLite and PostgreSQL, for every
shape of question (ticket or not, sender or not, recipients or not), and `apply` must
write the same rows and events in the same order."""
from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from daemon.model import BounceMark, FuseAlert, MailEffects, MailHistory, OutgoingMail
from store import tables as m
from store.db import create_schema, make_engine
from store.outbox import (CONVERSATION, Ledger, MailFuse, MailSuppression, Outbox, OutboxRecipient, TicketMail,
                          apply)
from store.records import TicketRow
from store.sla_store import AGENT_REPLY, SlaTx, build_history, status_of

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
EMAILS = ["ann@example.org", "bob@example.org", "cy@example.net", "dee@acme.test", "ana@example.com"]


@pytest.fixture
def engine(backend, tmp_path):
    e = make_engine(backend.url)
    create_schema(e)
    yield e
    e.dispose()


def reference_history(s: Session, ticket_id, recipients, sender: str, now: datetime) -> MailHistory:
    """The ORM version this replaced (store/outbox.py before the Core statements)."""
    emails = sorted({e.lower() for e in recipients if e})
    acks, conversation, language = 0, (), None
    if ticket_id is not None:
        acks = s.exec(select(func.count()).select_from(Outbox)
                      .where(Outbox.ticket_id == ticket_id, Outbox.kind == "ack")).one()
        ids = s.exec(select(m.Message.message_id).where(m.Message.ticket_id == ticket_id,
                                                        m.Message.message_id_synthetic == False)  # noqa: E712
                     .order_by(m.Message.id)).all()
        conversation = tuple(ids[:1] + ids[1:][-(CONVERSATION - 1):])
        state = s.get(TicketMail, ticket_id)
        language = state.language if state else None

    def counts(since):
        if not emails:
            return ()
        q = (select(OutboxRecipient.email, func.count()).where(OutboxRecipient.email.in_(emails),
                                                               OutboxRecipient.planned_at >= since)
             .group_by(OutboxRecipient.email))
        return tuple(sorted((e, n) for e, n in s.exec(q)))
    bouncing = frozenset(s.exec(select(MailSuppression.email).where(
        MailSuppression.email.in_(emails), MailSuppression.until > now)).all()) if emails else frozenset()
    flood = s.exec(select(func.count()).select_from(m.Ticket).where(
        m.Ticket.requester == sender, m.Ticket.created_at >= now - timedelta(hours=1))).one() if sender else 0
    return MailHistory(acks=acks, last_hour=counts(now - timedelta(hours=1)), last_day=counts(now - timedelta(days=1)),
                       bouncing=bouncing, sender_new_tickets=flood, conversation=conversation, language=language)


def reference_sla(s: Session, ticket: TicketRow, policy: str):
    events = s.exec(select(m.Event.at, m.Event.detail).where(
        m.Event.ticket_id == ticket.id, m.Event.kind == "status").order_by(m.Event.id)).all()
    replies = s.exec(select(m.Message.received_at).where(
        m.Message.ticket_id == ticket.id, m.Message.direction == AGENT_REPLY["direction"],
        m.Message.visibility == AGENT_REPLY["visibility"])).all()
    statuses = [(at, to) for at, d in events if (to := status_of(d)) is not None]
    seen = s.exec(select(func.max(m.Event.id)).where(m.Event.ticket_id == ticket.id)).one() or 0
    return build_history(ticket, policy, statuses, replies), seen


def seed(s: Session, rng: random.Random) -> list[TicketRow]:
    tickets = []
    for i in range(12):
        requester = rng.choice(EMAILS + [""])
        t = m.Ticket(subject=f"t{i}", type="incident", status=rng.choice(["new", "open", "resolved"]), priority="P3",
                     queue="general", requester=requester, created_at=NOW - timedelta(minutes=rng.randrange(0, 180)),
                     updated_at=NOW)
        s.add(t)
        s.flush()
        tickets.append(TicketRow(t.id, t.subject, t.type, t.status, t.priority, t.queue, t.requester, None,
                                 t.created_at, t.updated_at, 0))
        for j in range(rng.randrange(0, 14)):
            out = rng.random() < 0.3
            s.add(m.Message(ticket_id=t.id, message_id=f"m{i}.{j}@x.test", message_id_synthetic=rng.random() < 0.2,
                            digest=f"d{i}.{j}", raw_sha256="r", direction="out" if out else "in",
                            visibility=rng.choice(["public", "internal"]),
                            received_at=NOW - timedelta(minutes=rng.randrange(0, 3000))))
        for j in range(rng.randrange(0, 5)):
            status = rng.choice(["open", "pending", "resolved"])
            s.add(m.Event(ticket_id=t.id, at=NOW - timedelta(minutes=rng.randrange(0, 3000)),
                          kind=rng.choice(["status", "message", "status"]),
                          detail=json.dumps({"to": status}) if rng.random() < 0.9 else "not json"))
        if rng.random() < 0.4:
            s.add(TicketMail(ticket_id=t.id, language=rng.choice(["de", "fr"])))
        for j in range(rng.randrange(0, 4)):
            o = Outbox(ticket_id=t.id, kind=rng.choice(["ack", "agent_new", "resolve"]), audience="requester",
                       message_id=f"o{i}.{j}@x.test", nonce=f"n{i}.{j}", mail_from="b@x.test", raw=b"x",
                       created_at=NOW, next_attempt_at=NOW)
            s.add(o)
            s.flush()
            for e in rng.sample(EMAILS, rng.randrange(1, 3)):
                ago = timedelta(minutes=rng.choice([1, 30, 60, 61, 300, 1440, 1441, 3000]))   # edges included
                s.add(OutboxRecipient(outbox_id=o.id, email=e, planned_at=NOW - ago))
    for e in rng.sample(EMAILS, 3):
        s.add(MailSuppression(email=e, until=NOW + timedelta(days=rng.choice([-1, 1])), since=NOW))
    s.commit()
    return tickets


def test_history_and_sla_inputs_answer_as_the_orm_queries_did(engine):
    rng = random.Random(11)
    with Session(engine) as s:
        tickets = seed(s, rng)
    with Session(engine) as s:
        for _ in range(150):
            ticket_id = rng.choice([None, 10_000] + [t.id for t in tickets])
            recipients = rng.sample(EMAILS + ["ANN@example.org", "", "nobody@x.test"], rng.randrange(0, 5))
            sender = rng.choice(["", "nobody@x.test"] + EMAILS)
            assert Ledger(s).history(ticket_id, recipients, sender, NOW) == \
                reference_history(s, ticket_id, recipients, sender, NOW), (ticket_id, recipients, sender)
        for t in tickets:
            history, seen, fired = SlaTx(s).plan_inputs(t, "standard")
            assert (history, seen) == reference_sla(s, t, "standard") and fired == SlaTx(s).fired_keys(t.id)
            assert SlaTx(s).history(t, "standard") == history


def mail(ticket_id, n: int, *recipients: str) -> OutgoingMail:
    return OutgoingMail(ticket_id, "ack" if n == 0 else "agent_new", "requester", "requester/ack", f"q{n}@x.test",
                        f"nonce{n}", "b@x.test", recipients, f"raw {n}".encode(), "auto-replied")


def test_apply_writes_rows_and_events_in_order(engine):
    with Session(engine) as s:
        tickets = seed(s, random.Random(5))
    tid = tickets[0].id
    with Session(engine) as s:
        bounced = s.exec(select(Outbox.id).where(Outbox.kind == "ack")).first()
        before = s.exec(select(func.max(m.Event.id))).one() or 0
        s.add(m.Event(ticket_id=tid, at=NOW, kind="pending-orm", detail="{}"))       # written before apply's rows
        effects = MailEffects(
            mails=(mail(tid, 0, "Ann@Example.org", "ann@example.org"), mail(tid, 1, "ana@example.com"),
                   mail(None, 2, "x@x.test")),
            bounces=(BounceMark(bounced, (), "delayed", "4.4.1", "later"),) if bounced else (),
            alerts=(FuseAlert("k1", NOW + timedelta(hours=1), "one"),
                    FuseAlert("k1", NOW + timedelta(hours=1), "again"),
                    FuseAlert("k2", NOW + timedelta(hours=1), "two")),
            suppressed=("held: why",), language="de")
        done = apply(s, effects, tid, NOW)
        s.commit()
    with Session(engine) as s:
        rows = {o.id: o for o in s.exec(select(Outbox).where(Outbox.id.in_(done.outbox_ids))).all()}
        assert [rows[i].message_id for i in done.outbox_ids] == ["q0@x.test", "q1@x.test", "q2@x.test"]
        assert all(r.status == "pending" and r.attempts == 0 and r.enqueued_at is not None for r in rows.values())
        rcpts = s.exec(select(OutboxRecipient.outbox_id, OutboxRecipient.email, OutboxRecipient.status)
                       .where(OutboxRecipient.outbox_id.in_(done.outbox_ids))).all()
        assert sorted(rcpts) == sorted([(done.outbox_ids[0], "ann@example.org", "pending"),
                                        (done.outbox_ids[1], "ana@example.com", "pending"),
                                        (done.outbox_ids[2], "x@x.test", "pending")])
        keys = s.exec(select(m.ThreadKey.key).where(m.ThreadKey.key.in_(["q0@x.test", "q1@x.test", "q2@x.test"]))).all()
        assert sorted(keys) == ["q0@x.test", "q1@x.test"]
        events = s.exec(select(m.Event.kind, m.Event.detail).where(m.Event.id > before).order_by(m.Event.id)).all()
        kinds = [k for k, _ in events]
        assert kinds == ["pending-orm", "mail_queued", "mail_held"] + (["mail_delayed"] if bounced else []) + \
            ["alert", "alert"]
        queued = json.loads(events[1][1])["mails"]
        assert [(q["outbox"], q["message_id"]) for q in queued] == list(zip(done.outbox_ids, ["q0@x.test", "q1@x.test",
                                                                                           "q2@x.test"]))
        assert [a.key for a in done.alerts] == ["k1", "k2"]
        assert {f.key: f.count for f in s.exec(select(MailFuse)).all()} == {"k1": 2, "k2": 1}
        assert s.get(TicketMail, tid).language in ("de", "fr")       # kept when the ticket had one already
    with Session(engine) as s:                                          # a fuse past its window trips anew
        assert apply(s, MailEffects(alerts=(FuseAlert("k1", NOW + timedelta(hours=3), "x"),)), tid,
                     NOW + timedelta(hours=2)).alerts
        s.commit()
        assert s.get(MailFuse, "k1").count == 1
