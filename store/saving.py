"""The write path of incoming messages, as prebuilt SQLAlchemy Core statements (the hot path).

Used by `store.writing.WriteTx` (one message or a batch, one transaction): the thread
locks and lookup, the duplicate check, raw bytes, the ticket (new, or appended to, reopened,
or a bounce filed on it), participants, links, the message row, attachments, thread keys
and events.

One conversation, one ticket, whatever the timing: a thread key belongs to one ticket
(unique `threadkey.key`). On PostgreSQL a write transaction first takes `lock_threads`:
transaction-scoped advisory locks on every key its messages carry, in one order (sorted by
the key's 64-bit hash), then the tickets owning them and every other ticket the transaction
may change (FOR NO KEY UPDATE, by id; the whole order is in store.writing). A reply and
its parent stored at once by two daemons meet on the lock of the parent's id: the second
waits for the first to commit and only then reads the candidates and threads, into the
ticket the first one opened. On SQLite BEGIN IMMEDIATE already makes the writer the only one.
Keys are inserted with ON CONFLICT DO NOTHING, returning those inserted; the owners of the
others are the thread candidates this transaction read for the message (read back only for
a key not among them). Keys of another ticket in one message (a conversation split before,
or mail that names two tickets) link the two tickets (`met`, for the agent notice); never
silently left apart. The result carries the ticket as the writes left it (the new row's
values, or what the UPDATE returned), so planning does not read it again. Every statement is built once at import
and executed with parameters on the transaction's Core connection: no statement
construction, no cache-key computation, no ORM unit of work per message (measured: a
prebuilt INSERT costs a quarter of a freshly built one). Nothing here commits.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from datetime import datetime
from types import SimpleNamespace

from sqlalchemy import bindparam, case, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from daemon.clock import aware
from daemon.model import (Envelope, KnownMessage, ParsedMessage, Routing, ThreadCandidates, ThreadDecision,
                          TicketGlance)
from store import tables as m
from store import search
from store.records import SaveResult, TicketRow, Written

T, MSG, EVT = m.Ticket.__table__, m.Message.__table__, m.Event.__table__
TK, PART, ATT = m.ThreadKey.__table__, m.Participant.__table__, m.Attachment.__table__
LINK, RAW = m.TicketLink.__table__, m.RawMessage.__table__
INS_TAGS = insert(m.TicketTag.__table__)

# ---------------------------------------------------------------------- prebuilt statements
INS_TICKET, INS_MESSAGE, INS_EVENTS = insert(T), insert(MSG), insert(EVT)
INS_EVENT_IDS = INS_EVENTS.returning(EVT.c.id, EVT.c.ticket_id)   # a new ticket's last event: its plan has seen it
INS_PARTS, INS_ATTS, INS_LINKS = insert(PART), insert(ATT), insert(LINK)
SEL_STATUS = select(T.c.status).where(T.c.id == bindparam("b_tid"))
SEL_TICKET = select(T).where(T.c.id == bindparam("b_tid"))
SEL_DIGESTS = select(MSG.c.digest).where(MSG.c.message_id == bindparam("b_mid"))
SEL_MANY_DIGESTS = select(MSG.c.message_id, MSG.c.digest).where(MSG.c.message_id.in_(bindparam("b_mids",
                                                                                               expanding=True)))
SEL_KNOWN = (select(TK.c.key, TK.c.ticket_id, TK.c.ghost, T.c.status)
             .join(T, T.c.id == TK.c.ticket_id).where(TK.c.key.in_(bindparam("b_keys", expanding=True))))
SEL_PARTICIPANTS = select(PART.c.email).where(PART.c.ticket_id == bindparam("b_tid"))
SEL_TICKET_OF = (select(MSG.c.ticket_id).where(MSG.c.message_id == bindparam("b_mid"), MSG.c.ticket_id.is_not(None))
                 .limit(1))
SEL_KEYS_OF = select(TK.c.key, TK.c.ghost).where(TK.c.ticket_id == bindparam("b_tid"),
                                                 TK.c.key.in_(bindparam("b_keys", expanding=True)))
UPD_REOPEN = update(T).where(T.c.id == bindparam("b_tid")).values(status="open")
UPD_TOUCH = (update(T).where(T.c.id == bindparam("b_tid"))      # updated_at never goes back (archived mail)
             .values(message_count=T.c.message_count + 1,
                     updated_at=case((T.c.updated_at > bindparam("b_now"), T.c.updated_at), else_=bindparam("b_now")))
             .returning(*T.c))                                    # the row as it now is: planning reads no other
UPD_REAL_KEY = (update(TK).where(TK.c.ticket_id == bindparam("b_tid"), TK.c.key == bindparam("b_key"))
                .values(ghost=False))
SEL_OWNERS = select(TK.c.key, TK.c.ticket_id, TK.c.ghost).where(TK.c.key.in_(bindparam("b_keys", expanding=True)))
SEL_LINKED = select(LINK.c.other_id).where(LINK.c.ticket_id == bindparam("b_tid"), LINK.c.kind == "related",
                                           LINK.c.other_id.in_(bindparam("b_ids", expanding=True)))
SEL_OWNER_IDS = select(TK.c.ticket_id).where(TK.c.key.in_(bindparam("b_keys", expanding=True))).distinct()
LOCK_TICKETS = (select(T.c.id).where(T.c.id.in_(bindparam("b_ids", expanding=True))).order_by(T.c.id)
                .with_for_update(key_share=True))              # FOR NO KEY UPDATE: FK checks still pass
LOCK_LATE = LOCK_TICKETS.with_for_update(key_share=True, nowait=True)   # out of order: never wait
THREADS_LOCK = 0x68647468726473      # "hdthrds": shared by every key-locking writer, exclusive for a huge batch
MAX_KEY_LOCKS = 1024                 # more keys than this in one transaction: the exclusive lock instead
LOCK_SHARED = text("SELECT pg_advisory_xact_lock_shared(:k)")
LOCK_EXCLUSIVE = text("SELECT pg_advisory_xact_lock(:k)")
LOCK_KEYS = text("SELECT count(*) FROM (SELECT pg_advisory_xact_lock(k) FROM "
                 "(SELECT unnest(CAST(:ks AS bigint[])) AS k ORDER BY 1) AS s) AS x")
_IGNORING: dict[tuple[str, str], object] = {}
_KEYS_INSERTED: dict[str, object] = {}


def insert_ignore(c: Connection, table):
    """INSERT that does nothing when a unique key exists (SQLite and PostgreSQL); built once."""
    stmt = _IGNORING.get((c.dialect.name, table.name))
    if stmt is None:
        stmt = pg_insert(table).on_conflict_do_nothing() if c.dialect.name == "postgresql" \
            else insert(table).prefix_with("OR IGNORE")
        _IGNORING[(c.dialect.name, table.name)] = stmt
    return stmt


def _ins_keys(c: Connection):
    """insert_ignore for thread keys, returning the keys it inserted (skipped ones return nothing)."""
    stmt = _KEYS_INSERTED.get(c.dialect.name)
    if stmt is None:
        stmt = _KEYS_INSERTED[c.dialect.name] = insert_ignore(c, TK).returning(TK.c.key)
    return stmt


def _ins_raw(c: Connection):
    return insert_ignore(c, RAW)


def key_lock(key: str) -> int:
    """The advisory lock number of a thread key (64 bits of its sha256, signed)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()[:8], "big", signed=True)


def lock_threads(c: Connection, keys, tickets=(), exclusive: bool = False) -> set[int]:
    """PostgreSQL: lock every thread key of the transaction's messages, then the tickets they
    lead to (and `tickets`: subject tags, reply tokens, command targets, bounced mail's
    tickets), in the one order (store.writing). Call it before the transaction reads thread
    candidates; a no-op on SQLite. `exclusive`: the transaction moves keys from one ticket to
    another (a merge): it takes the threads lock alone, so no writer holding keys runs beside
    it and none reads the owners it is changing. Returns the tickets locked."""
    if c.dialect.name != "postgresql":
        return set()
    keys = sorted(set(keys))
    numbers = sorted({key_lock(k) for k in keys})
    if exclusive or len(numbers) > MAX_KEY_LOCKS:
        c.execute(LOCK_EXCLUSIVE, {"k": THREADS_LOCK})
    else:
        c.execute(LOCK_SHARED, {"k": THREADS_LOCK})
        if numbers:
            c.execute(LOCK_KEYS, {"ks": numbers})
    owners = set(c.execute(SEL_OWNER_IDS, {"b_keys": keys}).scalars()) if keys else set()
    return lock_tickets(c, owners | {t for t in tickets if t})


def lock_tickets(c: Connection, ids, held=frozenset()) -> set[int]:
    """Lock these tickets' rows (FOR NO KEY UPDATE), in id order: the ticket step of the one
    order (store.writing); returns the ids locked. `held`: those this transaction has
    locked already; a new id below the highest of them would break the order, so it is
    locked NOWAIT (another writer holding it fails this transaction, which is retried)."""
    ids = {int(i) for i in ids if i}
    if not ids or c.dialect.name != "postgresql":
        return set()
    top, new = max(held, default=0), ids - set(held)       # those held already need no statement
    late = sorted(i for i in new if i < top)
    if late:
        c.execute(LOCK_LATE, {"b_ids": late}).all()
    rest = sorted(i for i in new if i >= top)
    if rest:
        c.execute(LOCK_TICKETS, {"b_ids": rest}).all()
    return ids


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False)


# ---------------------------------------------------------------------- reads threading needs
def thread_candidates(c: Connection, keys: tuple[str, ...], tag: int | None) -> ThreadCandidates:
    """Known tickets for the thread keys, and a glance at the tagged ticket."""
    known = tuple(KnownMessage(k, t, st, g) for k, t, g, st in c.execute(SEL_KNOWN, {"b_keys": list(keys)})) \
        if keys else ()
    return ThreadCandidates(known=known, tagged=glance(c, tag) if tag else None)


def glance(c: Connection, ticket_id: int) -> TicketGlance | None:
    status = c.execute(SEL_STATUS, {"b_tid": ticket_id}).scalar()
    if status is None:
        return None
    emails = c.execute(SEL_PARTICIPANTS, {"b_tid": ticket_id}).scalars()
    return TicketGlance(ticket_id, status, frozenset(e.lower() for e in emails))


def ticket_of_message(c: Connection, message_id: str) -> int | None:
    """The ticket holding a (real, not ghost) message with this id, for DSN mapping."""
    return c.execute(SEL_TICKET_OF, {"b_mid": message_id}).scalar()


def as_ticket(row) -> TicketRow:
    """A TicketRow from a ticket's row (Core row or ORM object)."""
    return TicketRow(row.id, row.subject, row.type, row.status, row.priority, row.queue, row.requester,
                     row.assignee, aware(row.created_at), aware(row.updated_at), row.message_count,
                     row.rules_version, aware(getattr(row, "archived_at", None)))


def ticket_row(c: Connection, ticket_id: int) -> TicketRow | None:
    """The ticket, or None."""
    row = c.execute(SEL_TICKET, {"b_tid": ticket_id}).first()
    return as_ticket(row) if row is not None else None


def seen_digests(c: Connection, message_id: str) -> set[str]:
    """Content digests already stored under this Message-ID (one query answers both
    "is this a duplicate" and "is this Message-ID reused with other content")."""
    return set(c.execute(SEL_DIGESTS, {"b_mid": message_id}).scalars())


def seen_digests_of(c: Connection, message_ids) -> dict[str, set[str]]:
    """`seen_digests` for many Message-IDs in one query (every id asked gets an entry)."""
    ids = sorted(set(message_ids))
    found: dict[str, set[str]] = {i: set() for i in ids}
    for start in range(0, len(ids), 500):
        for mid, digest in c.execute(SEL_MANY_DIGESTS, {"b_mids": ids[start:start + 500]}):
            found[mid].add(digest)
    return found


# ---------------------------------------------------------------------- one message's writes
class Writer:
    """One message's writes in one open transaction; events are batched into one INSERT.
    `now` dates them all (an archived mail's own date); `archived_at`, the import time of
    an archived mail, is kept on a ticket it creates. `known`: the message's thread
    candidates as this transaction read them, with no writes since: the statuses of their
    tickets and the owners of their keys are not read again. `ticket`: the ticket as
    these writes left it."""

    def __init__(self, c: Connection, now: datetime, archived_at: datetime | None = None, later=None,
                 known: ThreadCandidates | None = None):
        self.c, self.now, self.archived_at = c, now, archived_at
        self.later = later              # (statement, row) -> None: run with the batch's others before commit
        self.events: list[dict] = []
        self.ticket: TicketRow | None = None
        self.statuses = {k.ticket_id: k.ticket_status for k in known.known} if known else {}
        if known is not None and known.tagged is not None:
            self.statuses[known.tagged.ticket_id] = known.tagged.status
        self.owners = {k.message_id: (k.ticket_id, k.ghost) for k in known.known} if known else {}

    def event(self, ticket_id: int, kind: str, detail: dict) -> None:
        self.events.append({"ticket_id": ticket_id, "at": self.now, "kind": kind, "detail": _json(detail)})

    def flush_events(self, ticket_id: int | None = None) -> int:
        """Insert the events kept; with `ticket_id`, the id of the last of them on that ticket."""
        events, self.events = self.events, []
        if not events:
            return 0
        if ticket_id is None:
            self.c.execute(INS_EVENTS, events)
            return 0
        return max((i for i, t in self.c.execute(INS_EVENT_IDS, events) if t == ticket_id), default=0)

    def raw(self, sha256: str, data: bytes) -> None:
        """Keep the raw bytes once (the same bytes may already be held, e.g. by quarantine).
        Nothing reads them back inside the transaction: with `later` the row waits for the
        batch's one executemany."""
        row = {"sha256": sha256, "size": len(data), "data": data}
        if self.later is not None:
            self.later(_ins_raw(self.c), row)
        else:
            self.c.execute(_ins_raw(self.c), row)

    # ------------------------------------------------------------------ tickets
    def ticket_for(self, msg: ParsedMessage, decision: ThreadDecision, routing: Routing,
                   own: frozenset[str]) -> tuple[int | None, str, bool]:
        """The ticket this message lands on, the outcome word, and whether it is new."""
        if decision.action == "bounce":
            found = self._status(decision.ticket_id) if decision.ticket_id else None
            return (decision.ticket_id, "bounce", False) if found else (None, "orphan", False)
        if decision.action in ("append", "reopen"):
            status = self._status(decision.ticket_id)
            if status is not None:
                return decision.ticket_id, self._maybe_reopen(msg, decision, status), False
        return (*self.new_ticket(msg, decision, routing, own), True)

    def _status(self, ticket_id: int) -> str | None:
        known = self.statuses.get(ticket_id)
        return known if known is not None else self.c.execute(SEL_STATUS, {"b_tid": ticket_id}).scalar()

    def _maybe_reopen(self, msg: ParsedMessage, decision: ThreadDecision, status: str) -> str:
        # only a human reply reopens or un-pends: an auto-reply must never do it
        if not msg.machine.is_human or status not in ("resolved", "pending"):
            return "appended"
        if decision.action != "reopen" and status != "pending":
            return "appended"
        self.c.execute(UPD_REOPEN, {"b_tid": decision.ticket_id})
        self.statuses[decision.ticket_id] = "open"
        self.event(decision.ticket_id, "status", {"from": status, "to": "open", "why": "customer reply"})
        return "reopened" if status == "resolved" else "appended"

    def new_ticket(self, msg: ParsedMessage, decision: ThreadDecision, routing: Routing,
                   own: frozenset[str]) -> tuple[int, str]:
        requester = msg.from_addr.email if msg.from_addr else ""
        values = {"subject": msg.subject, "type": routing.type, "status": "new", "priority": routing.priority,
                  "queue": routing.queue, "requester": requester, "assignee": routing.assignee,
                  "created_at": self.now, "updated_at": self.now, "message_count": 1,
                  "rules_version": routing.rules_version, "archived_at": self.archived_at}
        tid = self.c.execute(INS_TICKET, values).inserted_primary_key[0]
        self.ticket = as_ticket(SimpleNamespace(id=tid, **values))       # what reading it back gives
        self._participants(tid, requester, msg, own)
        if routing.tags:
            self.c.execute(INS_TAGS, [{"ticket_id": tid, "tag": t}
                                                         for t in dict.fromkeys(routing.tags)])
        created = {"evidence": decision.evidence, "routing": {
            "type": routing.type, "queue": routing.queue, "priority": routing.priority, "service": routing.service,
            "tags": list(routing.tags), "hits": list(routing.hits), "rules_version": routing.rules_version}}
        if self.archived_at is not None:
            created["archived"] = {"imported_at": self.archived_at.isoformat()}
        self.event(tid, "created", created)
        if decision.action == "new_linked" and decision.link_to and self._status(decision.link_to):
            self.c.execute(INS_LINKS, [
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
            self.c.execute(INS_PARTS, rows)

    # ------------------------------------------------------------------ the message
    def message(self, msg: ParsedMessage, envelope: Envelope, raw_sha256: str, decision: ThreadDecision,
                routing: Routing, ticket_id: int | None, reuse: bool) -> int:
        values = message_values(msg, envelope, raw_sha256, decision, routing, self.now, ticket_id)
        values["message_id_reuse"] = reuse
        pk = self.c.execute(INS_MESSAGE, values).inserted_primary_key[0]
        if msg.attachments:
            self.c.execute(INS_ATTS, [
                {"message_pk": pk, "filename": a.filename, "content_type": a.content_type, "size": a.size,
                 "sha256": a.sha256, "inline": a.inline} for a in msg.attachments])
        return pk

    def touch(self, ticket_id: int, msg: ParsedMessage, decision: ThreadDecision, from_addr: str,
              new: bool) -> tuple[int, ...]:
        """A message landed on the ticket: count it (a new ticket was created counting it),
        index its thread keys, log it; link the tickets whose keys met in it (returned)."""
        if not new:
            self.ticket = as_ticket(self.c.execute(UPD_TOUCH, {"b_tid": ticket_id, "b_now": self.now}).one())
        met = index_keys(self.c, ticket_id, msg, self.owners)
        kind = "bounce" if decision.action == "bounce" else "message"
        self.event(ticket_id, kind, {"message_id": msg.message_id, "from": from_addr, "evidence": decision.evidence})
        return link_tickets(self, ticket_id, met, msg.message_id) if met else ()


def message_values(msg: ParsedMessage, envelope: Envelope, raw_sha256: str, decision: ThreadDecision,
                   routing: Routing, now: datetime, ticket_id: int | None) -> dict:
    internal = decision.action == "bounce"
    return dict(
        ticket_id=ticket_id, message_id=msg.message_id, message_id_synthetic=msg.message_id_synthetic,
        message_id_reuse=False, digest=msg.content_digest, raw_sha256=raw_sha256, direction="in",
        visibility="internal" if internal else "public",
        from_addr=msg.from_addr.email if msg.from_addr else "", from_name=msg.from_addr.name if msg.from_addr else "",
        to_addrs=_json([str(a) for a in msg.to]), cc_addrs=_json([str(a) for a in msg.cc]), subject=msg.subject,
        text=msg.text, received_at=now, sent_at=None, in_reply_to=json.dumps(list(msg.in_reply_to)),
        refs=json.dumps(list(msg.references)), parent_message_id=decision.parent_message_id,
        machine_kind=msg.machine.kind, machine_reasons=json.dumps(list(msg.machine.reasons)),
        thread_evidence=decision.evidence, envelope=json.dumps(asdict(envelope)),
        routing=json.dumps({"type": routing.type, "queue": routing.queue, "priority": routing.priority,
                            "hits": list(routing.hits), "misses": list(routing.misses),
                            "rules_version": routing.rules_version}),
        defects=json.dumps(list(msg.defects)))


def index_keys(c: Connection, ticket_id: int, msg: ParsedMessage, known=None) -> tuple[int, ...]:
    """Register the message's own id (real) and every id it names (ghosts) for the ticket;
    a key another ticket owns stays with it. Returns the other tickets owning keys of this
    message (sorted; empty unless two tickets meet in it). `known`: key -> (ticket, ghost)
    as this transaction read them (Writer): only keys neither inserted now nor known are
    read back."""
    keys = {msg.message_id: False}
    for ref in (*msg.in_reply_to, *msg.references):
        keys.setdefault(ref, True)
    inserted = set(c.execute(_ins_keys(c), [{"key": k, "ticket_id": ticket_id, "ghost": g}
                                            for k, g in sorted(keys.items())]).scalars())
    owners = {k: (ticket_id, keys[k]) if k in inserted else (known or {}).get(k) for k in keys}
    unknown = [k for k, owner in owners.items() if owner is None]
    if unknown:
        owners.update({k: (t, g) for k, t, g in c.execute(SEL_OWNERS, {"b_keys": unknown})})
    owners = {k: o for k, o in owners.items() if o is not None}
    if owners.get(msg.message_id) == (ticket_id, True):
        c.execute(UPD_REAL_KEY, {"b_tid": ticket_id, "b_key": msg.message_id})   # a ghost became real
    return tuple(sorted({t for t, _ in owners.values() if t != ticket_id}))


def link_tickets(w: "Writer", ticket_id: int, others: tuple[int, ...], message_id: str) -> tuple[int, ...]:
    """Link `ticket_id` with each ticket whose keys met it in one message (related, both
    ways, a `linked` event on each); returns the tickets newly linked."""
    c = w.c
    have = set(c.execute(SEL_LINKED, {"b_tid": ticket_id, "b_ids": list(others)}).scalars()) if others else set()
    fresh = tuple(o for o in others if o not in have)
    if fresh:
        c.execute(insert_ignore(c, LINK), [row for o in fresh for row in (
            {"ticket_id": ticket_id, "other_id": o, "kind": "related"},
            {"ticket_id": o, "other_id": ticket_id, "kind": "related"})])
        for o in fresh:
            why = f"message <{message_id}> carries thread keys of both tickets (split conversation)"
            w.event(ticket_id, "linked", {"ticket": o, "why": why})
            w.event(o, "linked", {"ticket": ticket_id, "why": why})
    return fresh


def save_message(c: Connection, msg: ParsedMessage, envelope: Envelope, raw: bytes, raw_sha256: str,
                 decision: ThreadDecision, routing: Routing, now: datetime, own: frozenset[str],
                 reuse: bool = False, archived_at: datetime | None = None, later=None,
                 known: ThreadCandidates | None = None) -> SaveResult:
    """All writes of one incoming message, in the caller's open transaction, dated `now`
    (`archived_at`: the import time of an archived mail, `known`: the thread candidates
    just read, see Writer). `later(statement, row)`: where the rows nothing reads inside
    the transaction go (raw bytes, the search index), to be inserted with the batch's
    others before the commit. The result carries the ticket as the writes left it."""
    w = Writer(c, now, archived_at, later, known)
    w.raw(raw_sha256, raw)
    ticket_id, outcome, new = w.ticket_for(msg, decision, routing, own)
    pk = w.message(msg, envelope, raw_sha256, decision, routing, ticket_id, reuse)
    search.index_message(c, pk, ticket_id, now, msg.subject, msg.text, later)
    met = w.touch(ticket_id, msg, decision, msg.from_addr.email if msg.from_addr else "", new) \
        if ticket_id is not None else ()
    last = w.flush_events(ticket_id if new else None)
    written = Written(w.ticket, new, last) if w.ticket is not None else None
    return SaveResult(outcome, ticket_id, pk, msg.message_id, met=met, written=written)
