"""The write transaction: one object the worker drives for a batch of one or many messages.

Everything a stored message changes goes through one `WriteTx`. First, once for the batch,
`lock_threads`: the thread keys of every message, then every ticket the batch may change,
locked in one order (below), so concurrent writers on PostgreSQL never deadlock and a reply
racing its parent threads on what the parent's transaction committed. Then, per message:
the reads threading and planning need (thread candidates, the ticket a delivery report is
about, the ticket row, its mail history, the agent path's ticket state), the message itself
(`save_message`, or `record_agent` with its commands), then the effects planning decided
(`apply_mail`; the SLA plan through `sla`). The store applies what it is handed and never
calls back into daemon/. A reply sees the ticket its parent opened earlier in the same
transaction; `commit` makes the lot durable at once (group commit: one fsync for a backlog),
and nothing is acknowledged before it returns. A failure while writing leaves the
transaction unusable: the caller rolls it back (see daemon.worker).

The lock order (PostgreSQL; SQLite's BEGIN IMMEDIATE has one writer at a time). Every
write path takes its locks in these steps, each step in its own order, and never goes
back to an earlier step:

  1. thread keys: the shared threads lock, then one advisory lock per key the
     transaction's messages carry, by the key's 64-bit hash (store.saving.lock_threads).
     A merge, which moves keys between tickets, takes the threads lock exclusively instead.
  2. tickets: every ticket the transaction may change, FOR NO KEY UPDATE, by id, in one
     statement (saving.LOCK_TICKETS): those the keys lead to, subject tags, the ticket a
     reply token (agent or approver) names, both tickets of a merge or link, a problem's
     incidents when its status changes, the ticket of a bounce's or our own returning mail
     (daemon.message_path.MessagePath.lock). A path without keys (`helpdesk reply/update`
     goes through the same `lock`; an SLA escalation, a status change) locks its one
     ticket first. A ticket that turns up only later (an incident linked to a problem
     while it was being resolved) is locked at once if its id is above every one held,
     else NOWAIT: the transaction fails and is retried rather than wait out of order. Rows that belong to a ticket (thread-key rows, links, participants,
     SLA state, approvals, the ticket's outbox rows and their recipients) are only written
     under their ticket's lock, so they need no order of their own; FK checks take FOR KEY
     SHARE, which NO KEY UPDATE does not block.
  3. thread-key rows: inserted (ON CONFLICT DO NOTHING) only for keys locked in step 1
     or new ids of our own mail; moved only by a merge (exclusive).
  4. outbox: new rows (nothing waits on them); recipients of a bounced mail, under the
     ticket's lock. The sender (store.outbox_sender) locks outbox rows only, never a ticket.
  5. rows keyed by an address, not a ticket (mailfuse, mailsuppression): never waited for.
     Each is written under a try-lock on its key (pg_try_advisory_xact_lock); when another
     writer holds it, that writer is tripping the same fuse (or suppressing the same
     address) at this moment, and this one leaves the row to it (store.outbox).
tests/integration/test_deadlock.py runs every path at once on PostgreSQL and counts no
DeadlockDetected.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import func
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

from daemon.errors import NotFound, StoreUnavailable
from daemon.model import Envelope, MailEffects, MailHistory, ParsedMessage, Routing, ThreadCandidates, ThreadDecision
from store import outbox, outbox_sender, saving, tickets
from store.csat import SurveyTx
from store.problems import ProblemTx
from store import tables as m
from store.records import SaveResult, TicketRow
from store.sla_store import SlaTx
from daemon.clock import to_utc


@dataclass(frozen=True)
class Saved(SaveResult):
    """A SaveResult plus what went into the outbox in the same transaction: the new rows
    to enqueue and the fuse alerts raised (first trip of a window only)."""

    outbox_ids: tuple[int, ...] = ()
    alerts: tuple = ()


def unavailable(exc: Exception) -> StoreUnavailable:
    """The error the worker treats as "not the message's fault" (kept in the spool)."""
    orig = getattr(exc, "orig", None) or exc
    return StoreUnavailable(f"database unavailable: {orig.__class__.__name__}: {orig}")


class WriteTx:
    """One open write transaction (see module docstring). Use as a context manager: leaving
    it without `commit` rolls back."""

    def __init__(self, engine, blobs):
        self._writer, self.blobs = engine, blobs
        self._s: Session | None = None
        self._held: set[int] = set()                    # tickets this transaction has locked (PostgreSQL)
        self._later: dict = {}                          # statement -> rows, run just before the commit
        self._digests: dict[str, set[str]] = {}         # Message-ID -> digests stored (prefetched, then kept)

    # ------------------------------------------------------------------ the transaction
    @property
    def s(self) -> Session:
        if self._s is None:
            self._s = Session(self._writer, expire_on_commit=False)
            self._s.info["later"] = self._later_row      # store.outbox defers fuse counts through it
        return self._s

    def _c(self):
        self.s.flush()
        return self.s.connection()

    def _guard(self, call):
        try:
            return call()
        except OperationalError as exc:
            raise unavailable(exc) from exc

    def commit(self) -> None:
        """Make every write so far durable; the object can go on with a new transaction."""
        self._held = set()
        if self._s is not None:
            if self._later:
                self._guard(self._run_later)
            s, self._s = self._s, None
            self._digests = {}
            try:
                self._guard(s.commit)
            finally:
                s.close()

    def _later_row(self, stmt, row: "dict | None") -> None:
        """Keep `row` for `stmt`'s executemany before the commit; `row` None: run the
        rows kept for `stmt` now (a write that must come after them follows)."""
        if row is None:
            rows = self._later.pop(stmt, None)
            if rows:
                self._c().execute(stmt, rows)
            return
        self._later.setdefault(stmt, []).append(row)

    def _run_later(self) -> None:
        """The rows nothing reads inside the transaction (raw bytes, search index), one
        executemany per statement: fewer round trips (store.saving)."""
        c = self._c()
        later, self._later = self._later, {}
        for stmt, rows in later.items():
            c.execute(stmt, rows)

    def rollback(self) -> None:
        """Forget every write since the last commit."""
        self._held = set()
        self._later, self._digests = {}, {}
        if self._s is not None:
            s, self._s = self._s, None
            try:
                s.rollback()
            finally:
                s.close()

    def __enter__(self) -> "WriteTx":
        return self

    def __exit__(self, *exc) -> None:
        self.rollback()

    # ------------------------------------------------------------------ locks, then reads
    def lock_threads(self, keys, tickets=(), exclusive: bool = False) -> None:
        """Before any thread lookup: lock the thread keys of every message this transaction
        will store, then the tickets they lead to and `tickets` (store.saving.lock_threads:
        steps 1 and 2 of the lock order, module docstring); `exclusive` for a merge."""
        locked = self._guard(lambda: saving.lock_threads(self._c(), keys, tickets, exclusive))
        self._held |= locked

    def lock_tickets(self, ids) -> None:
        """Step 2 of the lock order for a transaction that knows its tickets without thread
        keys (or adds some it holds already): their rows, in id order. A ticket found only
        after others are locked (an incident linked to a problem while it was being resolved)
        and below one held already is never waited for: locked NOWAIT, and if another
        writer holds it this transaction fails as unavailable and is retried, locking it in
        order then (store.saving.lock_tickets)."""
        locked = self._guard(lambda: saving.lock_tickets(self._c(), ids, self._held))
        self._held |= locked

    def prefetch_digests(self, message_ids) -> None:
        """After `lock_threads` (a message's own id is one of its keys, so no other writer
        stores it meanwhile): read the stored digests of all these Message-IDs in one query,
        for `save_message`'s duplicate check."""
        ids = [i for i in set(message_ids) if i not in self._digests]
        if ids:
            self._digests.update(self._guard(lambda: saving.seen_digests_of(self._c(), ids)))

    def thread_candidates(self, keys: tuple[str, ...], tag: int | None) -> ThreadCandidates:
        return self._guard(lambda: saving.thread_candidates(self._c(), keys, tag))

    def ticket_of_message(self, message_id: str) -> int | None:
        return self._guard(lambda: saving.ticket_of_message(self._c(), message_id))

    def ticket(self, ticket_id: int | None) -> TicketRow | None:
        """The ticket as this transaction sees it (its own writes included)."""
        if ticket_id is None:
            return None
        return self._guard(lambda: saving.ticket_row(self._c(), ticket_id))

    def mail_history(self, ticket_id: int | None, recipients, sender: str, now: datetime,
                     notices_since: datetime | None = None) -> MailHistory:
        return self._guard(lambda: outbox.Ledger(self.s).history(ticket_id, recipients, sender, now, notices_since))

    def alerts_since(self, email: str, since: datetime) -> int:
        return self._guard(lambda: tickets.alerts_since(self.s, email, since))

    def outbox_ref(self, *, nonce: str | None = None, message_id: str | None = None):
        return self._guard(lambda: outbox_sender.find_ref(self.s, nonce=nonce, message_id=message_id))

    @property
    def sla(self) -> SlaTx:
        """The SLA plan rows of this transaction (store.sla_store)."""
        return SlaTx(self.s)

    @property
    def problems(self) -> ProblemTx:
        """Problem management's rows of this transaction (store.problems)."""
        return ProblemTx(self.s)

    @property
    def surveys(self) -> SurveyTx:
        """Satisfaction surveys' rows of this transaction (store.csat)."""
        return SurveyTx(self.s)

    def agent_reads(self) -> "tickets.Reads":
        return tickets.Reads(self.s)

    # ------------------------------------------------------------------ writes
    def save_message(self, msg: ParsedMessage, envelope: Envelope, raw: bytes, raw_sha256: str,
                     decision: ThreadDecision, routing: Routing, now: datetime,
                     own_addresses: frozenset[str] = frozenset(), archived_at: datetime | None = None,
                     candidates: ThreadCandidates | None = None) -> SaveResult:
        """An incoming customer message and its ticket change, dated `now`; attachment bytes
        are made durable on disk first. A message already stored is recognised (`duplicate`).
        `archived_at`: the import time when `now` is an archived mail's own date;
        `candidates`: the message's thread candidates as `thread_candidates` gave them in
        this transaction, nothing written since (not read again, store.saving.Writer). The
        result's `written` is the ticket as the save left it."""
        for part in msg.attachments:
            self.blobs.put(part.data, part.sha256 or None)

        def write() -> SaveResult:
            c = self._c()
            digests = self._digests.get(msg.message_id)
            if digests is None:
                digests = saving.seen_digests(c, msg.message_id)
            if msg.content_digest in digests:
                return SaveResult("duplicate", None, None, msg.message_id)
            result = saving.save_message(c, msg, envelope, raw, raw_sha256, decision, routing, to_utc(now),
                                         own_addresses, reuse=bool(digests),
                                         archived_at=to_utc(archived_at) if archived_at is not None else None,
                                         later=self._later_row, known=candidates)
            if msg.message_id in self._digests:         # a second copy later in the batch is a duplicate
                self._digests[msg.message_id].add(msg.content_digest)
            return result
        return self._guard(write)

    def record_agent(self, msg: ParsedMessage, envelope: Envelope, raw: bytes, raw_sha256: str,
                     write: "tickets.AgentWrite", now: datetime, prefix: str) -> "tickets.Recorded":
        """An agent-path message with its commands (store.agent_writes)."""
        for part in msg.attachments:
            self.blobs.put(part.data, part.sha256 or None)
        self._digests.pop(msg.message_id, None)         # stored here: the duplicate check asks the database
        return self._guard(lambda: tickets.record(self.s, msg, envelope, raw, raw_sha256, write,
                                                       to_utc(now), prefix))

    def quarantine(self, raw: bytes, raw_sha256: str, envelope: Envelope, stage: str, reason: str, detail: str,
                   now: datetime, header_from: str = "", header_subject: str = "") -> tuple[int, bool]:
        """Keep a message we will not process; (id, whether it is new). The same held bytes
        are kept once."""
        def write() -> tuple[int, bool]:
            found = self.s.exec(select(m.Quarantine.id).where(m.Quarantine.raw_sha256 == raw_sha256,
                                                              m.Quarantine.status == "held")).first()
            if found is not None:
                return found, False
            saving.Writer(self._c(), to_utc(now)).raw(raw_sha256, raw)
            row = m.Quarantine(created_at=to_utc(now), stage=stage, reason=reason, detail=detail[:2000],
                               raw_sha256=raw_sha256, size=len(raw), envelope=json.dumps(asdict(envelope)),
                               header_from=header_from[:500], header_subject=header_subject[:500])
            self.s.add(row)
            self.s.flush()
            return row.id, True
        return self._guard(write)

    def change_status(self, ticket_id: int, status: str, now: datetime, why: str = "") -> str:
        """Set a ticket's status (event `status`); the outcome: the new status, or `unchanged`."""
        def write() -> str:
            ticket = self.s.get(m.Ticket, ticket_id)
            if ticket is None:
                raise NotFound(f"ticket {ticket_id} not found")
            old = ticket.status
            if old == status:
                return "unchanged"
            ticket.status, ticket.updated_at = status, to_utc(now)
            self.s.add(ticket)
            self.s.add(m.Event(ticket_id=ticket_id, at=to_utc(now), kind="status",
                               detail=json.dumps({"from": old, "to": status, "why": why}, ensure_ascii=False)))
            return status
        return self._guard(write)

    def apply_mail(self, effects: MailEffects, ticket_id: int | None, now: datetime) -> outbox.Applied:
        """Write the mail planning decided (outbox rows, bounce marks, fuses) for `ticket_id`."""
        return self._guard(lambda: outbox.apply(self.s, effects, ticket_id, now))

    def digest_done(self, key: str) -> bool:
        """Whether the digest `key` (daemon.digest) was decided already, by any node."""
        return self._guard(lambda: self.s.get(m.AgentDigest, key) is not None)

    def record_digest(self, key: str, agent: str, day: str, outbox_id: int | None, now: datetime) -> None:
        """The digest `key` is decided (sent as `outbox_id`, or nothing to send); a second
        node's insert hits the primary key at flush and its transaction rolls back."""
        def write() -> None:
            self.s.add(m.AgentDigest(key=key, agent=agent, day=day, outbox_id=outbox_id, created_at=to_utc(now)))
            self.s.flush()
        self._guard(write)

    def count(self, table) -> int:
        return self._guard(lambda: self.s.exec(select(func.count()).select_from(table)).one())
