"""The store: the only module that speaks SQL. Idempotent writes, plain values out.

`save_incoming` writes one message and everything it changes (ticket, participants,
thread keys, links, events, raw bytes) in one transaction; attachment bytes are made
durable on disk first. A message already stored (same Message-ID and same content digest)
is recognised and nothing is written twice, even when two workers race.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Callable, Iterator

from sqlalchemy import func, or_
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from daemon.errors import NotFound, StoreUnavailable
from daemon.model import (Envelope, FuseAlert, MailEffects, ParsedMessage, Routing, ThreadCandidates,
                          ThreadDecision)
from store import tables as m
from store import outbox, saving
from store.batch import WriteBatch
from store.blobs import Blobs
from store.records import (AttachmentRow, EventRow, MessageRow, QuarantineRow, SaveResult,
                           TicketDetail, TicketRow)


def _utc(dt: datetime) -> datetime:
    """UTC for the database (sqlmodel's UTCDateTime wants aware values)."""
    return dt.astimezone(timezone.utc) if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _aware(dt: datetime | None) -> datetime | None:
    return dt.replace(tzinfo=timezone.utc) if dt is not None and dt.tzinfo is None else dt


def _addr_list(addrs) -> str:
    return json.dumps([str(a) for a in addrs], ensure_ascii=False)


# plan(outcome, ticket or None, ledger) -> what mail the change causes; called inside the
# transaction once the ticket id is known (see daemon.pipeline.notify / daemon.tasks).
Plan = Callable[[str, "TicketRow | None", outbox.Ledger], MailEffects]


@dataclass(frozen=True)
class Saved(SaveResult):
    """A SaveResult plus what went into the outbox in the same transaction: the new rows
    to enqueue and the fuse alerts raised (first trip of a window only)."""

    outbox_ids: tuple[int, ...] = ()
    alerts: tuple[FuseAlert, ...] = ()


class Store:
    """Tickets, messages and quarantine over one SQLAlchemy engine plus the blob store."""

    def __init__(self, engine: Engine, blobs: Blobs, *, bounce_days: int = 7):
        self.engine = engine
        self.writer = engine.execution_options(sqlite_immediate=True)
        self.blobs = blobs
        self.outbox = outbox.OutboxStore(engine, bounce_days)

    # ----------------------------------------------------------------- plumbing
    def _write(self) -> Session:
        return Session(self.writer, expire_on_commit=False)

    def _read(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    @staticmethod
    def _unavailable(exc: SQLAlchemyError) -> StoreUnavailable:
        orig = getattr(exc, "orig", None) or exc
        return StoreUnavailable(f"database unavailable: {orig.__class__.__name__}: {orig}")

    # ----------------------------------------------------------------- pipeline reads
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

    # ----------------------------------------------------------------- pipeline write
    def batch(self) -> WriteBatch:
        """An open write transaction for many messages (group commit, see store.batch)."""
        return WriteBatch(self)

    def save_incoming(self, msg: ParsedMessage, envelope: Envelope, raw: bytes, raw_sha256: str,
                      decision: ThreadDecision, routing: Routing, now: datetime,
                      *, own_addresses: frozenset[str] = frozenset(), plan: Plan | None = None) -> SaveResult:
        """Store one incoming message and its ticket change in one transaction; with `plan`,
        the outgoing mail it causes goes into the outbox in that same transaction."""
        try:
            with self._write() as s:
                result = self.save_in(s, msg, envelope, raw, raw_sha256, decision, routing, now,
                                      own_addresses=own_addresses, plan=plan)
                s.commit()
                return result
        except IntegrityError:
            if self.is_duplicate(msg.message_id, msg.content_digest):
                return SaveResult("duplicate", None, None, msg.message_id)
            raise
        except OperationalError as exc:
            raise self._unavailable(exc) from exc

    def save_in(self, s: Session, msg: ParsedMessage, envelope: Envelope, raw: bytes, raw_sha256: str,
                decision: ThreadDecision, routing: Routing, now: datetime,
                *, own_addresses: frozenset[str] = frozenset(), plan: Plan | None = None) -> SaveResult:
        """`save_incoming`'s writes in the caller's open transaction (see store.batch);
        attachment bytes are made durable on disk first. Does not commit."""
        for part in msg.attachments:
            self.blobs.put(part.data, part.sha256 or None)
        c = s.connection()
        digests = saving.seen_digests(c, msg.message_id)
        if msg.content_digest in digests:
            return SaveResult("duplicate", None, None, msg.message_id)
        result = saving.save_message(c, msg, envelope, raw, raw_sha256, decision, routing,
                                     _utc(now), own_addresses, reuse=bool(digests))
        if plan is not None:
            result = self._plan(s, result, plan, _utc(now))
        return result

    def _plan(self, s: Session, result: SaveResult, plan: Plan, now: datetime) -> Saved:
        s.flush()                                 # ORM changes (change_status) reach the row read next
        row = saving.ticket_row(s.connection(), result.ticket_id) if result.ticket_id is not None else None
        ticket = TicketRow(row.id, row.subject, row.type, row.status, row.priority, row.queue, row.requester,
                           row.assignee, _aware(row.created_at), _aware(row.updated_at), row.message_count,
                           row.rules_version) if row is not None else None
        effects = plan(result.outcome, ticket, outbox.Ledger(s))
        done = outbox.apply(s, effects, result.ticket_id, now)
        return Saved(result.outcome, result.ticket_id, result.message_pk, result.message_id,
                     done.outbox_ids, done.alerts)

    def change_status(self, ticket_id: int, status: str, now: datetime, *, why: str = "",
                      plan: Plan | None = None) -> Saved:
        """Set a ticket's status (event `status`); with `plan`, the mail it causes (e.g. the
        resolve notice, outcome `resolved`) goes into the outbox in the same transaction."""
        now = _utc(now)
        try:
            with self._write() as s:
                ticket = s.get(m.Ticket, ticket_id)
                if ticket is None:
                    raise NotFound(f"ticket {ticket_id} not found")
                old = ticket.status
                if old == status:
                    return Saved("unchanged", ticket_id, None, "")
                ticket.status, ticket.updated_at = status, now
                s.add(ticket)
                self._event(s, ticket_id, now, "status", {"from": old, "to": status, "why": why})
                result = Saved(status, ticket_id, None, "")
                if plan is not None:
                    result = self._plan(s, result, plan, now)
                s.commit()
                return result
        except OperationalError as exc:
            raise self._unavailable(exc) from exc

    @staticmethod
    def _event(s: Session, ticket_id: int, at: datetime, kind: str, detail: dict) -> None:
        s.add(m.Event(ticket_id=ticket_id, at=at, kind=kind, detail=json.dumps(detail, ensure_ascii=False)))

    # ----------------------------------------------------------------- quarantine
    def quarantine(self, raw: bytes, raw_sha256: str, envelope: Envelope, stage: str, reason: str,
                   detail: str, now: datetime, header_from: str = "", header_subject: str = "") -> int:
        """Keep a message we could not process; the same held bytes are kept once."""
        try:
            with self._write() as s:
                q = select(m.Quarantine.id).where(m.Quarantine.raw_sha256 == raw_sha256,
                                                  m.Quarantine.status == "held")
                found = s.exec(q).first()
                if found is not None:
                    return found
                if s.get(m.RawMessage, raw_sha256) is None:
                    s.add(m.RawMessage(sha256=raw_sha256, size=len(raw), data=raw))
                row = m.Quarantine(created_at=_utc(now), stage=stage, reason=reason, detail=detail[:2000],
                                   raw_sha256=raw_sha256, size=len(raw), envelope=json.dumps(asdict(envelope)),
                                   header_from=header_from[:500], header_subject=header_subject[:500])
                s.add(row)
                s.commit()
                return row.id
        except OperationalError as exc:
            raise self._unavailable(exc) from exc

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
            row.status, row.released_at = "released", _utc(now)
            s.add(row)
            s.commit()

    @staticmethod
    def _qrow(r: m.Quarantine) -> QuarantineRow:
        return QuarantineRow(r.id, _aware(r.created_at), r.stage, r.reason, r.detail, r.raw_sha256, r.size,
                             json.loads(r.envelope or "{}"), r.header_from, r.header_subject, r.status,
                             _aware(r.released_at))

    def quarantine_count(self) -> int:
        with self._read() as s:
            return s.exec(select(func.count()).select_from(m.Quarantine)
                          .where(m.Quarantine.status == "held")).one()

    # ----------------------------------------------------------------- reading tickets
    @staticmethod
    def _trow(t: m.Ticket) -> TicketRow:
        return TicketRow(t.id, t.subject, t.type, t.status, t.priority, t.queue, t.requester, t.assignee,
                         _aware(t.created_at), _aware(t.updated_at), t.message_count, t.rules_version)

    def list_tickets(self, *, status: str | None = None, queue: str | None = None,
                     type: str | None = None, limit: int | None = None) -> list[TicketRow]:
        """Tickets newest first, optionally filtered."""
        with self._read() as s:
            q = select(m.Ticket).order_by(m.Ticket.id.desc())
            for col, value in ((m.Ticket.status, status), (m.Ticket.queue, queue), (m.Ticket.type, type)):
                if value:
                    q = q.where(col == value)
            if limit:
                q = q.limit(limit)
            return [self._trow(t) for t in s.exec(q)]

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
                _aware(x.received_at), x.machine_kind, x.thread_evidence, x.parent_message_id,
                tuple(atts.get(x.id, ()))))
        for e in s.exec(select(m.Event).where(m.Event.ticket_id.in_(ids)).order_by(m.Event.id)):
            by_ticket[e.ticket_id]["events"].append(EventRow(_aware(e.at), e.kind, e.detail))
        for p in s.exec(select(m.Participant).where(m.Participant.ticket_id.in_(ids))):
            by_ticket[p.ticket_id]["parts"].append((p.email, p.role))
        for link in s.exec(select(m.TicketLink).where(m.TicketLink.ticket_id.in_(ids))):
            by_ticket[link.ticket_id]["links"].append((link.other_id, link.kind))
        from store.tickets import TicketTag
        tags: dict[int, list[str]] = {}
        for tt in s.exec(select(TicketTag).where(TicketTag.ticket_id.in_(ids)).order_by(TicketTag.tag)):
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
                    q = q.where(or_(m.Ticket.updated_at >= _utc(since), m.Ticket.created_at >= _utc(since)))
                tickets = list(s.exec(q))
                if not tickets:
                    return
                details = self._details(s, tickets)
            yield from details
            last = tickets[-1].id

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
