"""The outbox's sender side: `OutboxStore` claims due mails for sending - a batch at a time,
oldest due first, by the due index: the table is the queue - under a lease that expires
(a killed sender's mail is picked up again by the sweep), records each recipient's
outcome for a whole batch in one transaction (`record_and_claim` also claims the next
batch in it), gives back what a sender could not send in time, and answers lookups;
`find_ref` finds our outbound mail by Message-ID or nonce. The rows are written in the
ticket's transaction by store/outbox.py (`apply`)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

from sqlalchemy import bindparam, func, insert, or_, update
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from daemon.clock import aware as _aware
from daemon.clock import to_utc as _utc
from store.outbox import RCPT_OPEN, suppress
from store.tables import Event, MailSuppression, Outbox, OutboxRecipient


_OB, _RC = Outbox.__table__, OutboxRecipient.__table__
_SQL = {
    "rcpt": update(_RC).where(_RC.c.outbox_id == bindparam("b_id"), _RC.c.email == bindparam("b_email"))
    .values(status=bindparam("b_status"), code=bindparam("b_code"), reason=bindparam("b_reason"),
            updated_at=bindparam("b_at")),
    "box": update(_OB).where(_OB.c.id == bindparam("b_id"), _OB.c.status == "sending",
                             _OB.c.lease_token == bindparam("b_token"))
    .values(status=bindparam("b_status"), lease_until=None, lease_token="", last_error=bindparam("b_error"),
            next_attempt_at=bindparam("b_next"), enqueued_at=bindparam("b_enq"), sent_at=bindparam("b_sent")),
    "release": update(_OB).where(_OB.c.id == bindparam("b_id"), _OB.c.status == "sending",
                                 _OB.c.lease_token == bindparam("b_token"))
    .values(status="pending", lease_until=None, lease_token="", attempts=_OB.c.attempts - 1),
}


@dataclass(frozen=True)
class Claimed:
    """A mail a sender holds the lease on: what it needs to send it."""

    id: int
    ticket_id: int | None
    kind: str
    message_id: str
    mail_from: str
    raw: bytes
    recipients: tuple[str, ...]
    attempts: int
    created_at: datetime
    lease_token: str
    bouncing: frozenset[str] = frozenset()      # recipients suppressed since the mail was planned


@dataclass(frozen=True)
class RcptOutcome:
    """What to record for one recipient: status sent|pending|failed|suppressed."""

    email: str
    status: str
    code: int = 0
    reason: str = ""
    bouncing: bool = False              # mark the address as bouncing (suppress automatic mail)


@dataclass(frozen=True)
class Attempt:
    """One send attempt of a claimed mail, to record: each recipient's outcome, when to try
    again (None: nothing left open) and the error text."""

    claim: Claimed
    outcomes: tuple[RcptOutcome, ...]
    next_attempt: datetime | None = None
    error: str = ""


@dataclass(frozen=True)
class OutboundRef:
    id: int
    ticket_id: int | None
    message_id: str
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class OutboxView:
    id: int
    ticket_id: int | None
    kind: str
    message_id: str
    mail_from: str
    status: str
    attempts: int
    recipients: tuple[tuple[str, str, int], ...]     # (email, status, code)
    next_attempt_at: datetime
    last_error: str
    raw: bytes


class OutboxStore:
    """The sender side of the outbox over one engine (writes take SQLite's write lock first)."""

    def __init__(self, engine: Engine, bounce_days: int = 7):
        self.engine = engine
        self.writer = engine.execution_options(sqlite_immediate=True)
        self.bounce_days = bounce_days

    def claim(self, outbox_id: int, now: datetime, lease_seconds: float) -> Claimed | None:
        """Take the lease on one due mail (pending and due, or sending with an expired lease)."""
        got = self.claim_due(now, lease_seconds, 1, ids=(outbox_id,))
        return got[0] if got else None

    def claim_due(self, now: datetime, lease_seconds: float, limit: int,
                  ids: Sequence[int] | None = None) -> list[Claimed]:
        """Take the lease on up to `limit` due mails (oldest due first; only `ids` when given)
        in one write transaction: the outbox table, by its due index, is the queue. On
        PostgreSQL rows another sender is claiming are skipped (SKIP LOCKED)."""
        if limit <= 0:
            return []
        with self.writer.begin() as c:
            return self._claim(c, _utc(now), lease_seconds, limit, ids)

    def _claim(self, c, now: datetime, lease_seconds: float, limit: int, ids: Sequence[int] | None
               ) -> list[Claimed]:
        token = os.urandom(8).hex()
        ob, rc, sup = Outbox.__table__, OutboxRecipient.__table__, MailSuppression.__table__
        due = or_((ob.c.status == "pending") & (ob.c.next_attempt_at <= now),
                  (ob.c.status == "sending") & (ob.c.lease_until < now))
        pick = sa_select(ob.c.id).where(due).order_by(ob.c.next_attempt_at, ob.c.id).limit(limit)
        if ids is not None:
            pick = pick.where(ob.c.id.in_(list(ids)))
        if c.dialect.name == "postgresql":            # evaluated once: a rescan of a SKIP LOCKED LIMIT
            picked = pick.with_for_update(skip_locked=True).cte("picked").prefix_with("MATERIALIZED")
            pick = sa_select(picked.c.id)              # subquery could pick other rows, more than `limit`
        rows = c.execute(update(ob).where(ob.c.id.in_(pick), due)
                         .values(status="sending", lease_until=now + timedelta(seconds=lease_seconds),
                                 lease_token=token, attempts=ob.c.attempts + 1)
                         .returning(ob.c.id, ob.c.ticket_id, ob.c.kind, ob.c.message_id, ob.c.mail_from, ob.c.raw,
                                    ob.c.attempts, ob.c.created_at, ob.c.next_attempt_at)).all()
        if not rows:
            return []
        got = [r.id for r in rows]
        rcpts: dict[int, list[str]] = {i: [] for i in got}
        for oid, email in c.execute(sa_select(rc.c.outbox_id, rc.c.email).where(
                rc.c.outbox_id.in_(got), rc.c.status.in_(RCPT_OPEN)).order_by(rc.c.outbox_id, rc.c.email)):
            rcpts[oid].append(email)
        wanted = sorted({e for v in rcpts.values() for e in v})
        blocked = set(c.execute(sa_select(sup.c.email).where(sup.c.email.in_(wanted), sup.c.until > now))
                      .scalars()) if wanted else set()
        rows = sorted(rows, key=lambda r: (_aware(r.next_attempt_at), r.id))
        return [Claimed(r.id, r.ticket_id, r.kind, r.message_id, r.mail_from, r.raw, tuple(rcpts[r.id]), r.attempts,
                        _aware(r.created_at), token, frozenset(e for e in rcpts[r.id] if e in blocked)) for r in rows]

    def release(self, claims: Sequence[Claimed]) -> int:
        """Give claimed mails back unsent (a batch that ran out of lease time): pending and
        due again, the attempt not counted; how many were still ours."""
        if not claims:
            return 0
        with self.writer.begin() as c:
            return c.execute(_SQL["release"], [{"b_id": x.id, "b_token": x.lease_token} for x in claims]).rowcount

    def record(self, claim: Claimed, outcomes: Sequence[RcptOutcome], now: datetime,
               next_attempt: datetime | None, error: str = "", *, scheduled: bool = False) -> str | None:
        """Store the result of one attempt; the row's new status, or None when the lease was
        lost (another sender took the mail over; its result counts). `scheduled`: the caller
        has queued the retry itself, so the sweep leaves it alone until then (plus grace)."""
        return self.record_many([Attempt(claim, tuple(outcomes), next_attempt, error)], now, scheduled=scheduled)[0]

    def record_many(self, attempts: Sequence["Attempt"], now: datetime, *, scheduled: bool = False
                    ) -> list[str | None]:
        """`record` for several attempts in one write transaction (a sender's batch): two
        reads and one executemany per table, whatever the batch's size."""
        return self.record_and_claim(attempts, now, scheduled=scheduled)[0]

    def record_and_claim(self, attempts: Sequence["Attempt"], now: datetime, *, scheduled: bool = False,
                         lease_seconds: float = 0.0, limit: int = 0) -> tuple[list[str | None], list[Claimed]]:
        """`record_many`, and in the same write transaction `claim_due(now, lease_seconds,
        limit)`: a sender going on takes the write lock once per batch, not twice."""
        now = _utc(now)
        with Session(self.writer, expire_on_commit=False) as s:
            statuses = self._record_all(s, attempts, now, scheduled) if attempts else []
            claims = self._claim(s.connection(), now, lease_seconds, limit, None) if limit > 0 else []
            s.commit()
        return statuses, claims

    def _record_all(self, s: Session, attempts: Sequence["Attempt"], now: datetime, scheduled: bool
                    ) -> list[str | None]:
        ob, rc = Outbox.__table__, OutboxRecipient.__table__
        ids = [a.claim.id for a in attempts]
        c = s.connection()
        pick = sa_select(ob.c.id, ob.c.status, ob.c.lease_token, ob.c.ticket_id, ob.c.kind, ob.c.message_id,
                         ob.c.next_attempt_at, ob.c.enqueued_at, ob.c.sent_at).where(ob.c.id.in_(ids))
        rows = {r.id: r for r in c.execute(pick.with_for_update() if c.dialect.name == "postgresql" else pick)}
        have: dict[int, dict[str, str]] = {i: {} for i in ids}
        for oid, email, status in c.execute(sa_select(rc.c.outbox_id, rc.c.email, rc.c.status)
                                            .where(rc.c.outbox_id.in_(ids))):
            have[oid][email] = status
        out, rcpt_rows, box_rows, events = [], [], [], []
        for a in attempts:
            row = rows.get(a.claim.id)
            if row is None or row.status != "sending" or row.lease_token != a.claim.lease_token:
                out.append(None)                      # the lease was lost: another sender's result counts
                continue
            out.append(self._settle_row(s, row, a, have[row.id], now, scheduled, rcpt_rows, box_rows))
            events += self._events(row, a.outcomes, now, a.claim.attempts)
        if rcpt_rows:
            c.execute(_SQL["rcpt"], rcpt_rows)
        if box_rows:
            c.execute(_SQL["box"], box_rows)
        if events:
            c.execute(insert(Event.__table__), events)
        return out

    def _settle_row(self, s: Session, row, a: "Attempt", statuses: dict[str, str], now: datetime, scheduled: bool,
                    rcpt_rows: list[dict], box_rows: list[dict]) -> str:
        """One attempt's recipient and row updates (into the executemany lists); its new status."""
        for o in a.outcomes:
            email = o.email.lower()
            if statuses.get(email) not in RCPT_OPEN:
                continue
            statuses[email] = o.status
            rcpt_rows.append({"b_id": row.id, "b_email": email, "b_status": o.status, "b_code": o.code,
                              "b_reason": o.reason[:1000], "b_at": now})
            if o.bouncing:
                suppress(s, email, now, now + timedelta(days=self.bounce_days), o.reason)
        status = _row_status(list(statuses.values()))
        next_at, enqueued, sent_at = row.next_attempt_at, row.enqueued_at, row.sent_at
        if status == "pending":
            next_at = _utc(a.next_attempt or now)
            enqueued = next_at if scheduled else None
        elif "sent" in statuses.values():
            sent_at = sent_at or now
        box_rows.append({"b_id": row.id, "b_token": row.lease_token, "b_status": status, "b_error": a.error[:1000],
                         "b_next": next_at, "b_enq": enqueued, "b_sent": sent_at})
        return status

    @staticmethod
    def _events(row, outcomes: Sequence[RcptOutcome], now: datetime, attempt: int) -> list[dict]:
        if row.ticket_id is None:
            return []
        sent = [o.email for o in outcomes if o.status == "sent"]
        failed = [{"to": o.email, "code": o.code, "reason": o.reason[:300]} for o in outcomes if o.status == "failed"]
        deferred = [{"to": o.email, "code": o.code, "reason": o.reason[:300]} for o in outcomes if o.status == "pending"]
        base = {"outbox": row.id, "kind": row.kind, "message_id": row.message_id}
        out = []
        for kind, detail in (("mail_sent", sent and {**base, "to": sent}),
                             ("mail_failed", failed and {**base, "failed": failed}),
                             ("mail_deferred", deferred and attempt == 1 and {**base, "deferred": deferred})):
            if detail:                                # a deferral: the first only, no event per retry
                out.append({"ticket_id": row.ticket_id, "at": now, "kind": kind,
                            "detail": json.dumps(detail, ensure_ascii=False)})
        return out

    def due(self, now: datetime, grace_seconds: float, limit: int = 1000) -> list[int]:
        """Mails a sender should pick up: due pending rows nobody enqueued within the grace
        period (huey may have lost the task), and rows whose lease expired. They are marked
        enqueued now."""
        now = _utc(now)
        stale = now - timedelta(seconds=grace_seconds)
        with Session(self.writer, expire_on_commit=False) as s:
            q = (select(Outbox.id).where(or_(
                (Outbox.status == "pending") & (Outbox.next_attempt_at <= now)
                & or_(Outbox.enqueued_at.is_(None), Outbox.enqueued_at < stale),
                (Outbox.status == "sending") & (Outbox.lease_until < now)))
                 .order_by(Outbox.next_attempt_at, Outbox.id).limit(limit))
            ids = list(s.exec(q).all())
            if ids:
                s.exec(update(Outbox).where(Outbox.id.in_(ids)).values(enqueued_at=now))
            s.commit()
            return ids

    def find(self, *, message_id: str | None = None, nonce: str | None = None) -> OutboundRef | None:
        """Our outgoing mail by its Message-ID or its bounce-token nonce."""
        with Session(self.engine) as s:
            return find_ref(s, message_id=message_id, nonce=nonce)

    def get(self, outbox_id: int) -> OutboxView | None:
        with Session(self.engine) as s:
            row = s.get(Outbox, outbox_id)
            if row is None:
                return None
            rcpts = s.exec(select(OutboxRecipient).where(OutboxRecipient.outbox_id == outbox_id)
                           .order_by(OutboxRecipient.email)).all()
            return OutboxView(row.id, row.ticket_id, row.kind, row.message_id, row.mail_from, row.status,
                              row.attempts, tuple((r.email, r.status, r.code) for r in rcpts),
                              _aware(row.next_attempt_at), row.last_error, row.raw)

    def rows(self, *, ticket_id: int | None = None, status: str | None = None) -> list[OutboxView]:
        with Session(self.engine) as s:
            q = select(Outbox.id).order_by(Outbox.id)
            if ticket_id is not None:
                q = q.where(Outbox.ticket_id == ticket_id)
            if status:
                q = q.where(Outbox.status == status)
            ids = list(s.exec(q).all())
        return [v for v in (self.get(i) for i in ids) if v is not None]

    def counts(self) -> dict[str, int]:
        with Session(self.engine) as s:
            return dict(s.exec(select(Outbox.status, func.count()).group_by(Outbox.status)).all())


def find_ref(s: Session, *, message_id: str | None = None, nonce: str | None = None) -> OutboundRef | None:
    """Our outgoing mail by its Message-ID or its bounce-token nonce, in session `s`."""
    if not message_id and not nonce:
        return None
    q = select(Outbox).where(Outbox.message_id == message_id.strip("<>")) if message_id \
        else select(Outbox).where(Outbox.nonce == nonce)
    row = s.exec(q).first()
    if row is None:
        return None
    rcpts = s.exec(select(OutboxRecipient.email).where(OutboxRecipient.outbox_id == row.id)).all()
    return OutboundRef(row.id, row.ticket_id, row.message_id, tuple(rcpts))


def _row_status(statuses: list[str]) -> str:
    if any(st in RCPT_OPEN for st in statuses):
        return "pending"
    sent = sum(st == "sent" for st in statuses)
    return "sent" if sent == len(statuses) else "partial" if sent else "failed"
