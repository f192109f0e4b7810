"""The store's front door: the engine, the blob store, reads for commands, and `write()`.

Writes go through one `store.writing.WriteTx` (the worker's transaction for a batch of one
or many messages); `save_incoming`, `change_status` and `quarantine` here are that
transaction for one change, for commands and tests. A message already stored (same
Message-ID and same content digest) is recognised and nothing is written twice, even when
two workers race. Reads hand out plain values (store.records), never ORM rows.
"""
from __future__ import annotations

import json

from datetime import datetime
from typing import Iterator

from sqlalchemy import func, or_
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlmodel import Session, select

from daemon.clock import aware, to_utc
from daemon.errors import NotFound, StoreUnavailable
from daemon.model import Envelope, ParsedMessage, Routing, ThreadCandidates, ThreadDecision
from store import tables as m
from store import outbox_sender, saving
from store import tickets as tickets_mod
from store.blobs import Blobs
from store.records import AttachmentRow, EventRow, MessageRow, QuarantineRow, SaveResult, TicketDetail, TicketRow
from store.writing import WriteTx, unavailable


class Store:
    """Tickets, messages and quarantine over one SQLAlchemy engine plus the blob store."""

    def __init__(self, engine: Engine, blobs: Blobs, *, bounce_days: int = 7):
        self.engine = engine
        self.writer = engine.execution_options(sqlite_immediate=True)
        self.blobs = blobs
        self.outbox = outbox_sender.OutboxStore(engine, bounce_days)

    # ----------------------------------------------------------------- plumbing
    def _write(self) -> Session:
        return Session(self.writer, expire_on_commit=False)

    def _read(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    @staticmethod
    def _unavailable(exc: SQLAlchemyError) -> StoreUnavailable:
        return unavailable(exc)

    # ----------------------------------------------------------------- reads
    def is_duplicate(self, message_id: str, digest: str) -> bool:
        try:
            with self._read() as s:
                q = select(m.Message.id).where(m.Message.message_id == message_id, m.Message.digest == digest)
                return s.exec(q).first() is not None
        except OperationalError as exc:
            raise self._unavailable(exc) from exc

    def thread_candidates(self, keys: tuple[str, ...], tag: int | None) -> ThreadCandidates:
        """Known tickets for the thread keys, and a glance at the tagged ticket."""
        try:
            with self.engine.connect() as c:
                return saving.thread_candidates(c, keys, tag)
        except OperationalError as exc:
            raise self._unavailable(exc) from exc

    def ticket_of_message(self, message_id: str) -> int | None:
        """The ticket holding a (real, not ghost) message with this id, for DSN mapping."""
        with self.engine.connect() as c:
            return saving.ticket_of_message(c, message_id)

    # ----------------------------------------------------------------- writes
    def write(self) -> WriteTx:
        """The write transaction the worker drives (store.writing)."""
        return WriteTx(self.writer, self.blobs)

    def save_incoming(self, msg: ParsedMessage, envelope: Envelope, raw: bytes, raw_sha256: str,
                      decision: ThreadDecision, routing: Routing, now: datetime,
                      *, own_addresses: frozenset[str] = frozenset()) -> SaveResult:
        """Store one incoming message (no mail planned) in a transaction of its own."""
        try:
            with self.write() as tx:
                result = tx.save_message(msg, envelope, raw, raw_sha256, decision, routing, now, own_addresses)
                tx.commit()
                return result
        except IntegrityError:
            if self.is_duplicate(msg.message_id, msg.content_digest):
                return SaveResult("duplicate", None, None, msg.message_id)
            raise

    def change_status(self, ticket_id: int, status: str, now: datetime, *, why: str = "") -> str:
        """Set a ticket's status (no mail planned) in a transaction of its own."""
        with self.write() as tx:
            outcome = tx.change_status(ticket_id, status, now, why)
            tx.commit()
            return outcome

    # ----------------------------------------------------------------- quarantine
    def quarantine(self, raw: bytes, raw_sha256: str, envelope: Envelope, stage: str, reason: str,
                   detail: str, now: datetime, header_from: str = "", header_subject: str = "") -> int:
        """Keep a message we could not process; the same held bytes are kept once."""
        with self.write() as tx:
            qid, _ = tx.quarantine(raw, raw_sha256, envelope, stage, reason, detail, now, header_from,
                                   header_subject)
            tx.commit()
            return qid

    def quarantine_list(self, status: str | None = "held") -> list[QuarantineRow]:
        with self._read() as s:
            q = select(m.Quarantine).order_by(m.Quarantine.id.desc())
            if status:
                q = q.where(m.Quarantine.status == status)
            return [self._qrow(r) for r in s.exec(q)]

    def quarantine_get(self, qid: int) -> tuple[QuarantineRow, bytes]:
        with self._read() as s:
            row = s.get(m.Quarantine, qid)
            if row is None:
                raise NotFound(f"quarantine entry {qid} not found")
            raw = s.get(m.RawMessage, row.raw_sha256)
            return self._qrow(row), raw.data if raw else b""

    def quarantine_mark_released(self, qid: int, now: datetime) -> None:
        with self._write() as s:
            row = s.get(m.Quarantine, qid)
            if row is None:
                raise NotFound(f"quarantine entry {qid} not found")
            row.status, row.released_at = "released", to_utc(now)
            s.add(row)
            s.commit()

    @staticmethod
    def _qrow(r: m.Quarantine) -> QuarantineRow:
        return QuarantineRow(r.id, aware(r.created_at), r.stage, r.reason, r.detail, r.raw_sha256, r.size,
                             json.loads(r.envelope or "{}"), r.header_from, r.header_subject, r.status,
                             aware(r.released_at))

    def quarantine_count(self) -> int:
        with self._read() as s:
            return s.exec(select(func.count()).select_from(m.Quarantine)
                          .where(m.Quarantine.status == "held")).one()

    # ----------------------------------------------------------------- reading tickets
    @staticmethod
    def _trow(t: m.Ticket) -> TicketRow:
        return TicketRow(t.id, t.subject, t.type, t.status, t.priority, t.queue, t.requester, t.assignee,
                         aware(t.created_at), aware(t.updated_at), t.message_count, t.rules_version,
                     aware(getattr(t, "archived_at", None)))

    def list_tickets(self, *, status: str | None = None, queue: str | None = None,
                     type: str | None = None, limit: int | None = None) -> list[TicketRow]:
        """Tickets newest first, optionally filtered."""
        return list(self.iter_tickets(status=status, queue=queue, type=type, limit=limit))

    def iter_tickets(self, *, status: str | None = None, queue: str | None = None,
                     type: str | None = None, limit: int | None = None, batch: int = 1000) -> Iterator[TicketRow]:
        """list_tickets a batch at a time (keyset by id): memory stays flat however many there are."""
        last, left = None, limit or None
        while left is None or left > 0:
            with self._read() as s:
                q = select(m.Ticket).order_by(m.Ticket.id.desc()).limit(min(batch, left or batch))
                for col, value in ((m.Ticket.status, status), (m.Ticket.queue, queue), (m.Ticket.type, type)):
                    if value:
                        q = q.where(col == value)
                if last is not None:
                    q = q.where(m.Ticket.id < last)
                rows = [self._trow(t) for t in s.exec(q)]
            if not rows:
                return
            yield from rows
            last = rows[-1].id
            left = None if left is None else left - len(rows)

    def ticket_detail(self, ticket_id: int) -> TicketDetail:
        with self._read() as s:
            t = s.get(m.Ticket, ticket_id)
            if t is None:
                raise NotFound(f"ticket {ticket_id} not found")
            return self._details(s, [t])[0]

    def _details(self, s: Session, tickets: list[m.Ticket]) -> list[TicketDetail]:
        ids = [t.id for t in tickets]
        msgs = s.exec(select(m.Message).where(m.Message.ticket_id.in_(ids)).order_by(m.Message.id)).all()
        atts: dict[int, list[AttachmentRow]] = {}
        if msgs:
            for a in s.exec(select(m.Attachment).where(m.Attachment.message_pk.in_([x.id for x in msgs]))
                            .order_by(m.Attachment.id)):
                atts.setdefault(a.message_pk, []).append(AttachmentRow(a.filename, a.content_type, a.size, a.sha256))
        by_ticket: dict[int, dict] = {i: {"msgs": [], "events": [], "parts": [], "links": []} for i in ids}
        for x in msgs:
            by_ticket[x.ticket_id]["msgs"].append(MessageRow(
                x.id, x.message_id, x.from_addr, x.from_name, tuple(json.loads(x.to_addrs)),
                tuple(json.loads(x.cc_addrs)), x.subject, x.direction, x.visibility, x.text,
                aware(x.received_at), x.machine_kind, x.thread_evidence, x.parent_message_id,
                tuple(atts.get(x.id, ())), x.raw_sha256))
        for e in s.exec(select(m.Event).where(m.Event.ticket_id.in_(ids)).order_by(m.Event.id)):
            by_ticket[e.ticket_id]["events"].append(EventRow(aware(e.at), e.kind, e.detail))
        for p in s.exec(select(m.Participant).where(m.Participant.ticket_id.in_(ids))):
            by_ticket[p.ticket_id]["parts"].append((p.email, p.role))
        for link in s.exec(select(m.TicketLink).where(m.TicketLink.ticket_id.in_(ids))):
            by_ticket[link.ticket_id]["links"].append((link.other_id, link.kind))
        tags: dict[int, list[str]] = {}
        tag_table = tickets_mod.TicketTag
        for tt in s.exec(select(tag_table).where(tag_table.ticket_id.in_(ids)).order_by(tag_table.tag)):
            tags.setdefault(tt.ticket_id, []).append(tt.tag)
        return [TicketDetail(self._trow(t), tuple(sorted(by_ticket[t.id]["parts"])),
                             tuple(sorted(by_ticket[t.id]["links"])), tuple(by_ticket[t.id]["msgs"]),
                             tuple(by_ticket[t.id]["events"]), tuple(tags.get(t.id, ()))) for t in tickets]

    def iter_details(self, *, since: datetime | None = None, batch: int = 500) -> Iterator[TicketDetail]:
        """Every ticket (updated at or after `since`), oldest id first, in bounded batches."""
        last = 0
        while True:
            with self._read() as s:
                q = select(m.Ticket).where(m.Ticket.id > last).order_by(m.Ticket.id).limit(batch)
                if since is not None:
                    q = q.where(or_(m.Ticket.updated_at >= to_utc(since), m.Ticket.created_at >= to_utc(since)))
                tickets = list(s.exec(q))
                if not tickets:
                    return
                details = self._details(s, tickets)
            yield from details
            last = tickets[-1].id

    def raw_messages(self, sha256s: list[str]) -> dict[str, bytes]:
        """The stored raw mails by sha256 (a missing one is left out)."""
        with self._read() as s:
            rows = s.exec(select(m.RawMessage).where(m.RawMessage.sha256.in_(sorted(set(sha256s))))) if sha256s else []
            return {r.sha256: r.data for r in rows}

    def raw_message(self, sha256: str) -> bytes:
        with self._read() as s:
            row = s.get(m.RawMessage, sha256)
            if row is None:
                raise NotFound(f"raw message {sha256} not found")
            return row.data

    def counts(self) -> dict[str, int]:
        with self._read() as s:
            return {"tickets": s.exec(select(func.count()).select_from(m.Ticket)).one(),
                    "messages": s.exec(select(func.count()).select_from(m.Message)).one()}
