"""The write path of one incoming message, as SQLAlchemy Core statements (the hot path).

Called by `Store.save_incoming` inside its transaction: raw bytes, the ticket (new, or
appended to, reopened, or a bounce filed on it), participants, links, the message row,
attachments, thread keys and events. Core statements instead of ORM objects keep the
per-message cost low (no unit of work, no identity map to refresh); the ORM session is
only the transaction. Nothing here commits.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlmodel import Session

from daemon.model import Envelope, ParsedMessage, Routing, ThreadDecision
from store import models as m
from store.records import SaveResult

T, MSG, EVT = m.Ticket.__table__, m.Message.__table__, m.Event.__table__


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False)


class Writer:
    """One message's writes in one open transaction; events are batched into one INSERT."""

    def __init__(self, s: Session, now: datetime):
        self.s, self.now = s, now
        self.events: list[dict] = []

    def event(self, ticket_id: int, kind: str, detail: dict) -> None:
        self.events.append({"ticket_id": ticket_id, "at": self.now, "kind": kind, "detail": _json(detail)})

    def flush_events(self) -> None:
        if self.events:
            self.s.execute(insert(EVT), self.events)
            self.events = []

    def raw(self, sha256: str, data: bytes) -> None:
        """Keep the raw bytes once (the same bytes may already be held, e.g. by quarantine)."""
        self.s.execute(insert_ignore(self.s, m.RawMessage.__table__).values(sha256=sha256, size=len(data), data=data))

    # ------------------------------------------------------------------ tickets
    def ticket_for(self, msg: ParsedMessage, decision: ThreadDecision, routing: Routing,
                   own: frozenset[str]) -> tuple[int | None, str]:
        """The ticket this message lands on, and the outcome word."""
        if decision.action == "bounce":
            found = self._status(decision.ticket_id) if decision.ticket_id else None
            return (decision.ticket_id, "bounce") if found else (None, "orphan")
        if decision.action in ("append", "reopen"):
            status = self._status(decision.ticket_id)
            if status is not None:
                return decision.ticket_id, self._maybe_reopen(msg, decision, status)
        return self.new_ticket(msg, decision, routing, own)

    def _status(self, ticket_id: int) -> str | None:
        return self.s.execute(select(T.c.status).where(T.c.id == ticket_id)).scalar()

    def _maybe_reopen(self, msg: ParsedMessage, decision: ThreadDecision, status: str) -> str:
        # only a human reply reopens or un-pends: an auto-reply must never do it
        if not msg.machine.is_human or status not in ("resolved", "pending"):
            return "appended"
        if decision.action != "reopen" and status != "pending":
            return "appended"
        self.s.execute(update(T).where(T.c.id == decision.ticket_id).values(status="open"))
        self.event(decision.ticket_id, "status", {"from": status, "to": "open", "why": "customer reply"})
        return "reopened" if status == "resolved" else "appended"

    def new_ticket(self, msg: ParsedMessage, decision: ThreadDecision, routing: Routing,
                   own: frozenset[str]) -> tuple[int, str]:
        requester = msg.from_addr.email if msg.from_addr else ""
        tid = self.s.execute(insert(T).values(
            subject=msg.subject, type=routing.type, status="new", priority=routing.priority, queue=routing.queue,
            requester=requester, assignee=routing.assignee, created_at=self.now, updated_at=self.now,
            message_count=0, rules_version=routing.rules_version)).inserted_primary_key[0]
        self._participants(tid, requester, msg, own)
        if routing.tags:
            from store.tickets import TicketTag         # registered by store.models (no cycle at call time)
            self.s.execute(insert(TicketTag.__table__), [{"ticket_id": tid, "tag": t}
                                                         for t in dict.fromkeys(routing.tags)])
        self.event(tid, "created", {"evidence": decision.evidence, "routing": {
            "type": routing.type, "queue": routing.queue, "priority": routing.priority,
            "tags": list(routing.tags), "hits": list(routing.hits), "rules_version": routing.rules_version}})
        if decision.action == "new_linked" and decision.link_to and self._status(decision.link_to):
            self.s.execute(insert(m.TicketLink.__table__), [
                {"ticket_id": tid, "other_id": decision.link_to, "kind": "related"},
                {"ticket_id": decision.link_to, "other_id": tid, "kind": "related"}])
            self.event(decision.link_to, "linked", {"ticket": tid, "why": decision.evidence})
            return tid, "linked"
        return tid, "created"

    def _participants(self, tid: int, requester: str, msg: ParsedMessage, own: frozenset[str]) -> None:
        rows, seen = [], {requester.lower(), ""}
        if requester:
            rows.append({"ticket_id": tid, "email": requester.lower(), "role": "requester"})
        for addr in (*msg.to, *msg.cc):
            email = addr.email.lower()
            if email not in seen and email not in own:
                seen.add(email)
                rows.append({"ticket_id": tid, "email": email, "role": "cc"})
        if rows:
            self.s.execute(insert(m.Participant.__table__), rows)

    # ------------------------------------------------------------------ the message
    def message(self, msg: ParsedMessage, envelope: Envelope, raw_sha256: str, decision: ThreadDecision,
                routing: Routing, ticket_id: int | None, reuse: bool) -> int:
        values = message_values(msg, envelope, raw_sha256, decision, routing, self.now, ticket_id)
        values["message_id_reuse"] = reuse
        pk = self.s.execute(insert(MSG).values(**values)).inserted_primary_key[0]
        if msg.attachments:
            self.s.execute(insert(m.Attachment.__table__), [
                {"message_pk": pk, "filename": a.filename, "content_type": a.content_type, "size": a.size,
                 "sha256": a.sha256, "inline": a.inline} for a in msg.attachments])
        return pk

    def touch(self, ticket_id: int, msg: ParsedMessage, decision: ThreadDecision, from_addr: str) -> None:
        """A message landed on the ticket: count it, index its thread keys, log it."""
        self.s.execute(update(T).where(T.c.id == ticket_id).values(
            message_count=T.c.message_count + 1, updated_at=self.now))
        index_keys(self.s, ticket_id, msg)
        kind = "bounce" if decision.action == "bounce" else "message"
        self.event(ticket_id, kind, {"message_id": msg.message_id, "from": from_addr, "evidence": decision.evidence})


def message_values(msg: ParsedMessage, envelope: Envelope, raw_sha256: str, decision: ThreadDecision,
                   routing: Routing, now: datetime, ticket_id: int | None) -> dict:
    internal = decision.action == "bounce"
    return dict(
        ticket_id=ticket_id, message_id=msg.message_id, message_id_synthetic=msg.message_id_synthetic,
        digest=msg.content_digest, raw_sha256=raw_sha256, direction="in",
        visibility="internal" if internal else "public",
        from_addr=msg.from_addr.email if msg.from_addr else "", from_name=msg.from_addr.name if msg.from_addr else "",
        to_addrs=_json([str(a) for a in msg.to]), cc_addrs=_json([str(a) for a in msg.cc]), subject=msg.subject,
        text=msg.text, received_at=now, in_reply_to=json.dumps(list(msg.in_reply_to)),
        refs=json.dumps(list(msg.references)), parent_message_id=decision.parent_message_id,
        machine_kind=msg.machine.kind, machine_reasons=json.dumps(list(msg.machine.reasons)),
        thread_evidence=decision.evidence, envelope=json.dumps(asdict(envelope)),
        routing=json.dumps({"type": routing.type, "queue": routing.queue, "priority": routing.priority,
                            "hits": list(routing.hits), "misses": list(routing.misses),
                            "rules_version": routing.rules_version}),
        defects=json.dumps(list(msg.defects)))


def index_keys(s: Session, ticket_id: int, msg: ParsedMessage) -> None:
    """Record the message's own id (real) and every id it names (ghosts) for the ticket."""
    keys = {msg.message_id: False}
    for ref in (*msg.in_reply_to, *msg.references):
        keys.setdefault(ref, True)
    tk = m.ThreadKey.__table__
    existing = dict(s.execute(select(tk.c.key, tk.c.ghost).where(
        tk.c.ticket_id == ticket_id, tk.c.key.in_(list(keys)))).all())
    new = [{"key": k, "ticket_id": ticket_id, "ghost": g} for k, g in keys.items() if k not in existing]
    if new:
        s.execute(insert(tk), new)
    if existing.get(msg.message_id):                   # a ghost became a real message
        s.execute(update(tk).where(tk.c.ticket_id == ticket_id, tk.c.key == msg.message_id).values(ghost=False))


def insert_ignore(s: Session, table):
    """INSERT that does nothing when the primary key exists (SQLite and PostgreSQL)."""
    if s.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        return pg_insert(table).on_conflict_do_nothing()
    return insert(table).prefix_with("OR IGNORE")


def seen_digests(s: Session, message_id: str) -> set[str]:
    """Content digests already stored under this Message-ID (one query answers both
    "is this a duplicate" and "is this Message-ID reused with other content")."""
    return set(s.execute(select(MSG.c.digest).where(MSG.c.message_id == message_id)).scalars())


def save_message(s: Session, msg: ParsedMessage, envelope: Envelope, raw: bytes, raw_sha256: str,
                 decision: ThreadDecision, routing: Routing, now: datetime, own: frozenset[str],
                 reuse: bool = False) -> SaveResult:
    """All writes of one incoming message, in the caller's open transaction."""
    w = Writer(s, now)
    w.raw(raw_sha256, raw)
    ticket_id, outcome = w.ticket_for(msg, decision, routing, own)
    pk = w.message(msg, envelope, raw_sha256, decision, routing, ticket_id, reuse)
    if ticket_id is not None:
        w.touch(ticket_id, msg, decision, msg.from_addr.email if msg.from_addr else "")
    w.flush_events()
    return SaveResult(outcome, ticket_id, pk, msg.message_id)
