"""The outbox: every mail we send is a row written in the same transaction as its ticket change.

The tables (declared in store/tables.py):

  outbox           one mail: the exact bytes (so a resend is the same mail, same Message-ID),
                   envelope sender, status pending|sending|sent|partial|failed, attempts,
                   next attempt, lease (a sender's claim; it expires, so a killed sender's
                   mail is picked up again by the sweep).
  outboxrecipient  per-recipient status pending|sent|failed|bounced|suppressed with the
                   last SMTP code: accepted recipients are never sent again.
  mailsuppression  addresses whose mail bounced (5xx or a failed DSN), until when.
  mailfuse         fuses that tripped (loop/rate guards): one alert per key per window.
  ticketmail       the requester's language, remembered for later mails.

`Ledger` reads, inside the ticket transaction, what mail planning needs; `apply` writes
what planning decided. Both run prebuilt Core statements on the transaction's connection
(the history is one UNION ALL), as store/saving.py does for the incoming message itself.
The sender side (claim, record, sweep, lookups) is store/outbox_sender.py.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Iterable

from sqlalchemy import (Integer, Text, bindparam, case, func, insert, literal_column, null, text,
                        union_all, update)
from sqlalchemy import cast as sa_cast
from sqlalchemy import select as sa_select
from sqlmodel import Session, select

from daemon.clock import aware as _aware
from daemon.clock import to_utc as _utc
from daemon.model import FuseAlert, MailEffects, MailHistory
from store import tables as m
from store.saving import insert_ignore
from store.tables import Event, MailFuse, MailSuppression, Outbox, OutboxRecipient, TicketMail  # noqa: F401

CONVERSATION = 10                     # message ids of a ticket put into References


OPEN = ("pending", "sending")
RCPT_OPEN = ("pending",)


def _event(s: Session, ticket_id: int | None, at: datetime, kind: str, detail: dict) -> None:
    if ticket_id is not None:
        s.add(Event(ticket_id=ticket_id, at=at, kind=kind, detail=json.dumps(detail, ensure_ascii=False)))


# ---------------------------------------------------------------------- planning side
class _Sql:
    """The planning side's statements, built once and run with parameters on the
    transaction's Core connection (no statement building, no ORM unit of work per mail)."""

    def __init__(self):
        ob, rc, sup, tm = Outbox.__table__, OutboxRecipient.__table__, MailSuppression.__table__, TicketMail.__table__
        msg, t = m.Message.__table__, m.Ticket.__table__
        tid, emails = bindparam("b_tid"), bindparam("b_emails", expanding=True)
        self.language = sa_select(tm.c.language).where(tm.c.ticket_id == tid)
        # history: one round trip, rows of (part, text, number, number) - see Ledger.history
        self.parts = {
            "acks": sa_select(func.count()).select_from(ob).where(ob.c.ticket_id == tid, ob.c.kind == "ack")
            .scalar_subquery(),
            "language": self.language.scalar_subquery(),
            "flood": sa_select(func.count()).select_from(t).where(t.c.requester == bindparam("b_sender"),
                                                                  t.c.created_at >= bindparam("b_since"))
            .scalar_subquery(),
            "conversation": sa_select(_n(_CONVERSATION), msg.c.message_id, msg.c.id, _NULL_INT).where(
                msg.c.ticket_id == tid, msg.c.message_id_synthetic == False),  # noqa: E712
            "counts": sa_select(_n(_COUNTS), rc.c.email, func.count(),
                                func.count(case((rc.c.planned_at >= bindparam("b_hour"), 1))))
            .where(rc.c.email.in_(emails), rc.c.planned_at >= bindparam("b_day")).group_by(rc.c.email),
            "bouncing": sa_select(_n(_BOUNCING), sup.c.email, _NULL_INT, _NULL_INT)
            .where(sup.c.email.in_(emails), sup.c.until > bindparam("b_now")),
            "notices": sa_select(_n(_NOTICES), ob.c.kind + " " + rc.c.email, _NULL_INT, _NULL_INT).distinct()
            .select_from(ob.join(rc, rc.c.outbox_id == ob.c.id))
            .where(ob.c.ticket_id == tid, ob.c.audience == "requester", ob.c.auto != "no",
                   rc.c.email.in_(emails), ob.c.created_at >= bindparam("b_notices"))}
        self.history: dict[tuple[bool, bool, bool, bool], object] = {}
        self.outbox = insert(ob).returning(ob.c.id, sort_by_parameter_order=True)
        self.recipients = insert(rc)
        self.events, self.ticketmail = insert(m.Event.__table__), insert(tm)
        fuse, key = MailFuse.__table__, bindparam("b_key")
        self.fuse = sa_select(fuse.c.until).where(fuse.c.key == key)
        self.fuse_count = update(fuse).where(fuse.c.key == key).values(count=fuse.c.count + 1)
        self.fuse_reset = update(fuse).where(fuse.c.key == key)

    def history_for(self, ticket: bool, sender: bool, emails: bool, notices: bool = False):
        """The history statement for what is asked: a UNION ALL of the parts that apply."""
        key = (ticket, sender, emails, notices)
        if key not in self.history:
            p = self.parts
            state = sa_select(_n(_STATE), p["language"] if ticket else sa_cast(null(), Text),
                              p["acks"] if ticket else _n(0), p["flood"] if sender else _n(0))
            parts = [state] + ([p["conversation"]] if ticket else []) + ([p["counts"], p["bouncing"]] if emails else [])
            parts += [p["notices"]] if ticket and emails and notices else []
            self.history[key] = union_all(*parts) if len(parts) > 1 else state
        return self.history[key]


_STATE, _CONVERSATION, _COUNTS, _BOUNCING, _NOTICES = range(5)
_NULL_INT = sa_cast(null(), Integer)


def _n(value: int):
    return literal_column(str(value), Integer)


@cache
def _sql() -> _Sql:
    return _Sql()


class Ledger:
    """What mail planning may read, bound to the ticket transaction's session."""

    def __init__(self, s: Session):
        self.s = s

    def history(self, ticket_id: int | None, recipients: Iterable[str], sender: str, now: datetime,
                notices_since: datetime | None = None) -> MailHistory:
        """One statement: (part, text, number, number) rows - the state row (language,
        acks, tickets the sender opened in the last hour), the ticket's real message ids
        (with their row id), per recipient its mails in the last day and hour, the
        recipients whose mail is suppressed, and (with `notices_since`) which automatic
        requester mail of the ticket went to which recipient since then (RFC 3834)."""
        now, emails = _utc(now), sorted({e.lower() for e in recipients if e})
        if ticket_id is None and not sender and not emails:
            return MailHistory()
        self.s.flush()                          # what the session holds counts too (as autoflush did)
        rows = self.s.connection().execute(
            _sql().history_for(ticket_id is not None, bool(sender), bool(emails), notices_since is not None),
            {"b_tid": ticket_id, "b_sender": sender, "b_since": now - timedelta(hours=1), "b_emails": emails,
             "b_hour": now - timedelta(hours=1), "b_day": now - timedelta(days=1), "b_now": now,
             "b_notices": _utc(notices_since) if notices_since is not None else now}).all()
        language, acks, flood = next((s, a, b) for part, s, a, b in rows if part == _STATE)
        ids = [s for _, s in sorted((a, s) for part, s, a, _ in rows if part == _CONVERSATION)]
        counts = sorted((s, a, b) for part, s, a, b in rows if part == _COUNTS)
        return MailHistory(acks=acks, last_hour=tuple((e, h) for e, _, h in counts if h),
                           last_day=tuple((e, d) for e, d, _ in counts),
                           bouncing=frozenset(s for part, s, _, _ in rows if part == _BOUNCING),
                           sender_new_tickets=flood if sender else 0,
                           conversation=tuple(ids[:1] + ids[1:][-(CONVERSATION - 1):]), language=language,
                           notices=frozenset(tuple(s.split(" ", 1)) for part, s, _, _ in rows if part == _NOTICES))


@dataclass(frozen=True)
class Applied:
    outbox_ids: tuple[int, ...] = ()
    alerts: tuple[FuseAlert, ...] = ()          # the alerts raised now (not repeats)


def apply(s: Session, effects: MailEffects, ticket_id: int | None, now: datetime) -> Applied:
    """Write what planning decided: outbox rows with recipients, thread keys for our
    Message-IDs, events, delivery reports, fuses; all inside the caller's transaction."""
    if not (effects.mails or effects.suppressed or effects.bounces or effects.alerts or effects.language):
        return Applied()
    q, now = _sql(), _utc(now)
    s.flush()                                   # earlier writes of the transaction first (event order)
    c = s.connection()
    ids = c.execute(q.outbox, [{
        "ticket_id": mail.ticket_id, "kind": mail.kind, "audience": mail.audience, "template": mail.template,
        "auto": mail.auto, "message_id": mail.message_id, "nonce": mail.nonce, "mail_from": mail.mail_from,
        "raw": mail.raw, "status": "pending", "attempts": 0, "created_at": now, "next_attempt_at": now,
        "lease_until": None, "lease_token": "", "enqueued_at": now,            # enqueued after commit
        "sent_at": None, "last_error": ""} for mail in effects.mails]).scalars().all() if effects.mails else []
    rcpts = [{"outbox_id": i, "email": r, "status": "pending", "code": 0, "reason": "", "planned_at": now,
              "updated_at": None} for i, mail in zip(ids, effects.mails)
             for r in dict.fromkeys(x.lower() for x in mail.recipients)]
    if rcpts:
        c.execute(q.recipients, rcpts)
    keys = [{"key": mail.message_id, "ticket_id": mail.ticket_id, "ghost": False} for mail in effects.mails
            if mail.ticket_id is not None]
    if keys:
        c.execute(insert_ignore(c, m.ThreadKey.__table__), sorted(keys, key=lambda k: k["key"]))
    events: list[dict] = []
    if effects.mails:
        _note(events, ticket_id, now, "mail_queued", {"mails": [
            {"outbox": i, "kind": x.kind, "to": list(x.recipients), "message_id": x.message_id, "template": x.template}
            for i, x in zip(ids, effects.mails)]})
    if effects.suppressed:
        _note(events, ticket_id, now, "mail_held", {"why": list(effects.suppressed)})
    for mark in effects.bounces:
        _bounce(s, mark, now, events)
    known = s.info.setdefault("fuses", {})      # this transaction's view of the fuses it tripped
    alerts = tuple(a for a in effects.alerts if _trip(c, a, now, known, s.info.get("later")))
    for alert in alerts:
        _note(events, ticket_id, now, "alert", {"fuse": alert.key, "text": alert.text})
    if events:
        c.execute(q.events, events)
    if effects.language and ticket_id is not None and \
            c.execute(q.language, {"b_tid": ticket_id}).first() is None:
        c.execute(q.ticketmail, {"ticket_id": ticket_id, "language": effects.language})
    return Applied(tuple(ids), alerts)


def _note(events: list[dict], ticket_id: int | None, at: datetime, kind: str, detail: dict) -> None:
    """An event row for apply's one INSERT (in the order they happened)."""
    if ticket_id is not None:
        events.append({"ticket_id": ticket_id, "at": at, "kind": kind,
                       "detail": json.dumps(detail, ensure_ascii=False)})


FUSE_LOCKS, SUPPRESSION_LOCKS = 0x6675, 0x7370          # advisory lock classes: "fu", "sp"
TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(:cls, :k)")


def _free(c, cls: int, key: str) -> bool:
    """Step 5 of the lock order (store.writing): take the try-lock of an address-keyed row;
    False when another transaction is writing that row now (then leave it to that one).
    Always True on SQLite (one writer)."""
    if c.dialect.name != "postgresql":
        return True
    k = int.from_bytes(hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()[:4], "big", signed=True)
    return bool(c.execute(TRY_LOCK, {"cls": cls, "k": k}).scalar())


def _trip(c, alert: FuseAlert, now: datetime, known: dict | None = None, later=None) -> bool:
    """Count a fuse trip; True when it is the first in its window (then alert). A trip of a
    fuse another transaction is tripping at this moment is left to that one (its trip counts,
    the alert is its to raise): nobody waits on a fuse row. `known`: the transaction's
    fuses so far (key -> its window's end, or None when the try-lock was refused), so a
    batch tripping one fuse many times reads and try-locks it once; `later(statement, row)`
    (store.writing.WriteTx): the counting UPDATEs wait for the batch's one executemany
    before the commit (nothing reads the count inside the transaction)."""
    q, key = _sql(), alert.key
    known = {} if known is None else known
    if key not in known:
        if not _free(c, FUSE_LOCKS, key):
            known[key] = None
            return False
        row = c.execute(q.fuse, {"b_key": key}).first()
        if row is None:                         # another writer may trip the same fuse at this moment
            if c.execute(insert_ignore(c, MailFuse.__table__),
                         {"key": key, "until": _utc(alert.until), "count": 1}).rowcount:
                known[key] = _utc(alert.until)
                return True
            row = c.execute(q.fuse, {"b_key": key}).first()
        known[key] = _aware(row.until)
    until = known[key]
    if until is None:                           # another transaction holds it
        return False
    if until > now:
        if later is not None:
            later(q.fuse_count, {"b_key": key})
        else:
            c.execute(q.fuse_count, {"b_key": key})
        return False
    if later is not None:                       # counts of the window that ended go in first
        later(q.fuse_count, None)
    c.execute(q.fuse_reset, {"b_key": key, "until": _utc(alert.until), "count": 1})
    known[key] = _utc(alert.until)
    return True


def _bounce(s: Session, mark, now: datetime, events: list[dict]) -> None:
    row = s.get(Outbox, mark.outbox_id)
    if row is None:
        return
    rcpts = s.exec(select(OutboxRecipient).where(OutboxRecipient.outbox_id == row.id)).all()
    named = {r.lower() for r in mark.recipients}
    hit = [r for r in rcpts if r.email in named] or (rcpts if len(rcpts) == 1 or not named else [])
    for r in hit:
        r.reason = f"delivery report: {mark.action} {mark.status} {mark.diagnostic}".strip()[:1000]
        r.updated_at = now
        if mark.action == "failed":
            r.status = "bounced"
            if mark.suppress_until is not None:
                suppress(s, r.email, now, mark.suppress_until, r.reason)
        s.add(r)
    kind = "mail_bounced" if mark.action == "failed" else "mail_delayed"
    _note(events, row.ticket_id, now, kind, {"outbox": row.id, "message_id": row.message_id,
                                         "to": [r.email for r in hit], "status": mark.status,
                                         "diagnostic": mark.diagnostic[:300]})


def suppress(s: Session, email: str, now: datetime, until: datetime, reason: str) -> None:
    """Hold mail to `email` until then; when another transaction is suppressing the same
    address at this moment, it is left to that one (nobody waits on the row, store.writing)."""
    if not _free(s.connection(), SUPPRESSION_LOCKS, email.lower()):
        return
    row = s.get(MailSuppression, email.lower())
    if row is None:
        row = MailSuppression(email=email.lower(), until=_utc(until), since=now, reason=reason[:1000])
    else:
        row.until, row.reason = max(_aware(row.until), _utc(until)), reason[:1000]
    s.add(row)


# ---------------------------------------------------------------------- sending side
