"""SLA persistence: each ticket's policy and next escalation time, the levels that fired,
and the histories the SLA stage and the report read.

The third module allowed to speak SQL (besides store/repo.py and store/outbox.py). Tables
(on the same SQLModel metadata as store/models.py; new tables only, nothing existing altered):

  ticketsla   one row per ticket: the policy (chosen at creation, again when the queue
              changes) and why, the routing's service and requested policy (kept for that
              re-selection), the queue it was chosen for, the SLA settings version of the
              last plan, `next_due_at`: the earliest escalation level still to fire
              (NULL: none; indexed, so a sweep reads only what is due), and `seen_event`:
              the ticket's last event the plan has seen (the change feed skips the rest).
  slafired    one row per (ticket, key) that fired, UNIQUE(ticket_id, key). It is inserted
              in the same transaction as the level's actions and outbox mails: a second
              firer (another worker, an overlapping sweep, a replay after a restart) hits
              the constraint, rolls back and sends nothing.
  slacursor   where the sweep is in the event log (a change feed for tickets changed by
              paths that did not re-plan them).

An agent's first response is read from `message`: an outgoing public message
(`is_agent_reply`; store/tickets.py writes an agent's answer so, notes and everything
else are `in` or `internal`). Our automatic mail (acknowledgements, notices,
escalations) lives in the outbox and is never a message row, so it never counts. Tags an
escalation adds go to store/tickets.py's `tickettag`, like an agent's #tag.
`SlaTx` reads and writes inside one ticket transaction (the caller's session, or one
`SlaStore.transaction()` opens); `SlaStore` holds the sweep's and the report's queries.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Iterable, Iterator, Sequence

from sqlalchemy import (Integer, Text, bindparam, func, insert, literal_column, null,
                        union_all, update)
from sqlalchemy import cast as sa_cast
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from daemon.clock import aware as _aware
from daemon.clock import to_utc as _utc
from daemon.errors import HelpdeskError
from daemon.model import STOPPED, StatusChange, TicketHistory
from store import tables as m
from store import outbox
from store.tables import SlaCursor, SlaFired, TicketSla, TicketTag  # noqa: F401  (re-exported)
from store.records import TicketRow

AGENT_REPLY = {"direction": "out", "visibility": "public"}
STOPPED_STATUSES = tuple(sorted(STOPPED))
QUIET_EVENTS = ("mail_queued", "mail_sent", "mail_deferred", "mail_failed", "mail_held", "mail_bounced",
                "mail_delayed", "alert", "sla_escalation")     # they change nothing the clocks read


class AlreadyFired(HelpdeskError):
    """Raised when an escalation level's (ticket, key) row exists: another firer did it."""


@dataclass(frozen=True)
class SlaRow:
    ticket_id: int
    policy: str
    reason: str
    service: str | None
    requested: str | None
    queue: str
    version: str
    next_due_at: datetime | None
    planned_at: datetime
    seen_event: int = 0                 # the ticket's last event this plan has seen


@dataclass(frozen=True)
class FiredRow:
    key: str
    target: str
    level: str
    due_at: datetime
    fired_at: datetime
    detail: dict


def is_agent_reply(direction: str, visibility: str) -> bool:
    """Whether a message row is an agent's public answer (what first response reads)."""
    return (direction, visibility) == (AGENT_REPLY["direction"], AGENT_REPLY["visibility"])


def build_history(ticket: TicketRow, policy: str, statuses: Iterable[tuple[datetime, str]],
                  replies: Sequence[datetime]) -> TicketHistory:
    """The SLA stage's view of a ticket from its row, its `status` events (at, new status)
    in order and its agent replies. A status set without an event shows at `updated_at`."""
    changes = [StatusChange(_aware(at), to) for at, to in statuses]
    current = changes[-1].status if changes else "new"
    if ticket.status != current:
        changes.append(StatusChange(_aware(ticket.updated_at), ticket.status))
    replies = sorted(_aware(r) for r in replies)
    return TicketHistory(ticket.id, _aware(ticket.created_at), ticket.priority, ticket.queue, policy,
                         tuple(changes), replies[0] if replies else None, replies[-1] if replies else None,
                         _aware(ticket.archived_at))


def status_of(detail: str) -> str | None:
    """The new status named by a `status` event's JSON detail."""
    try:
        to = json.loads(detail).get("to")
    except (ValueError, AttributeError):
        return None
    return to if isinstance(to, str) else None


def _trow(t) -> TicketRow:
    return TicketRow(t.id, t.subject, t.type, t.status, t.priority, t.queue, t.requester, t.assignee,
                     _aware(t.created_at), _aware(t.updated_at), t.message_count, t.rules_version,
                     _aware(getattr(t, "archived_at", None)))


def _srow(r) -> SlaRow:
    return SlaRow(r.ticket_id, r.policy, r.reason, r.service, r.requested, r.queue, r.version,
                  _aware(r.next_due_at), _aware(r.planned_at), r.seen_event)


class _Sql:
    """What every ticket transaction runs (re-planning after each incoming message), built
    once and run with parameters on the session's Core connection."""

    def __init__(self):
        ts, ev, msg, fired = TicketSla.__table__, m.Event.__table__, m.Message.__table__, SlaFired.__table__
        tid = bindparam("b_tid")
        self.row = sa_select(ts).where(ts.c.ticket_id == tid)
        null_id, null_at, null_text = sa_cast(null(), Integer), sa_cast(null(), ev.c.at.type), sa_cast(null(), Text)
        self.inputs = union_all(         # (part, id, at, detail): status events, agent replies, last event id,
            sa_select(_n(_STATUS), ev.c.id, ev.c.at, ev.c.detail).where(ev.c.ticket_id == tid, ev.c.kind == "status"),
            sa_select(_n(_REPLY), null_id, msg.c.received_at, null_text).where(msg.c.ticket_id == tid,
                                                                               *_reply_clause(m)),
            sa_select(_n(_SEEN), func.max(ev.c.id), null_at, null_text).where(ev.c.ticket_id == tid),
            sa_select(_n(_FIRED), null_id, null_at, sa_cast(fired.c.key, Text)).where(fired.c.ticket_id == tid))
        #                                  levels fired
        self.fired_keys = sa_select(fired.c.key).where(fired.c.ticket_id == tid)
        self.seen = sa_select(func.max(ev.c.id)).where(ev.c.ticket_id == tid)
        self.insert = insert(ts)
        self.update = update(ts).where(ts.c.ticket_id == tid)        # SET from the parameters' column names


_STATUS, _REPLY, _SEEN, _FIRED = range(4)


def _n(value: int):
    return literal_column(str(value), Integer)


@cache
def _sql() -> _Sql:
    return _Sql()


_UNREAD = object()


# ---------------------------------------------------------------------- one ticket transaction
class SlaTx:
    """SLA reads and writes bound to one session (one ticket transaction). The per-message
    path (row, history, fired_keys, save_plan) runs prebuilt Core statements; the session's
    pending ORM writes are flushed first, so they read what an ORM query would."""

    def __init__(self, s: Session):
        self.s = s

    def _c(self):
        self.s.flush()
        return self.s.connection()

    def ticket(self, ticket_id: int, *, lock: bool = False) -> TicketRow | None:
        """The ticket; `lock` takes its row lock (PostgreSQL; FOR NO KEY UPDATE, as every
        writer's ticket step, store.writing) so changes to it wait for us."""
        q = select(m.Ticket).where(m.Ticket.id == ticket_id)
        row = self.s.exec(q.with_for_update(key_share=True) if lock else q).first()
        return _trow(row) if row is not None else None

    def row(self, ticket_id: int) -> SlaRow | None:
        r = self._c().execute(_sql().row, {"b_tid": ticket_id}).first()
        return _srow(r) if r is not None else None

    def history(self, ticket: TicketRow, policy: str) -> TicketHistory:
        return self.plan_inputs(ticket, policy)[0]

    def plan_inputs(self, ticket: TicketRow, policy: str) -> tuple[TicketHistory, int, frozenset[str]]:
        """The ticket's history, its last event id (what `save_plan` records as seen) and
        the keys of the levels that fired (as `fired_keys`), read in one statement."""
        rows = self._c().execute(_sql().inputs, {"b_tid": ticket.id}).all()
        events = sorted((i, at, d) for part, i, at, d in rows if part == _STATUS)
        statuses = [(at, to) for _, at, d in events if (to := status_of(d)) is not None]
        replies = [at for part, _, at, _ in rows if part == _REPLY]
        seen = next((i for part, i, _, _ in rows if part == _SEEN), None) or 0
        fired = frozenset(d for part, _, _, d in rows if part == _FIRED)
        return build_history(ticket, policy, statuses, replies), seen, fired

    def created_inputs(self, ticket: TicketRow, policy: str,
                       last_event: int) -> tuple[TicketHistory, int, frozenset[str]]:
        """`plan_inputs` of a ticket created in this transaction with nothing written since
        but its save's events, the last `last_event`: it has no status event, agent reply
        or fired level yet, so nothing is read."""
        return build_history(ticket, policy, (), ()), last_event, frozenset()

    def fired(self, ticket_id: int) -> list[FiredRow]:
        rows = self.s.exec(select(SlaFired).where(SlaFired.ticket_id == ticket_id).order_by(SlaFired.id)).all()
        return [FiredRow(r.key, r.target, r.level, _aware(r.due_at), _aware(r.fired_at), json.loads(r.detail or "{}"))
                for r in rows]

    def fired_keys(self, ticket_id: int) -> frozenset[str]:
        return frozenset(self._c().execute(_sql().fired_keys, {"b_tid": ticket_id}).scalars())

    def save_plan(self, ticket_id: int, *, policy: str, reason: str, service: str | None, requested: str | None,
                  queue: str, version: str, next_due: datetime | None, now: datetime, current=_UNREAD,
                  seen: int | None = None) -> None:
        """Store the plan (no write when nothing changed; planned_at = when it last did).
        `current` and `seen`: the ticket's plan row and last event id as just read in this
        transaction, with no writes since (saves reading them again)."""
        c, q = self._c(), _sql()
        if seen is None:
            seen = c.execute(q.seen, {"b_tid": ticket_id}).scalar() or 0
        r = self.row(ticket_id) if current is _UNREAD else current
        due = _utc(next_due) if next_due else None
        values = {"policy": policy, "reason": reason[:500], "service": service, "requested": requested, "queue": queue,
                  "version": version, "next_due_at": due, "seen_event": seen}
        if r is not None and (r.policy, r.reason, r.service, r.requested, r.queue, r.version, r.next_due_at,
                              r.seen_event) == tuple(values.values()):
            return
        values["planned_at"] = _utc(now)
        if r is None:
            c.execute(q.insert, {"ticket_id": ticket_id, **values})
        else:
            c.execute(q.update, {"b_tid": ticket_id, **values})

    def record_fired(self, ticket_id: int, *, key: str, target: str, level: str, due_at: datetime,
                     now: datetime, detail: dict) -> None:
        """Insert the (ticket, key) row now (flushed): AlreadyFired when it exists. The
        caller must then roll back the whole transaction."""
        self.s.add(SlaFired(ticket_id=ticket_id, key=key, target=target, level=level, due_at=_utc(due_at),
                            fired_at=_utc(now), detail=json.dumps(detail, ensure_ascii=False)))
        try:
            self.s.flush()
        except IntegrityError as exc:
            raise AlreadyFired(f"ticket {ticket_id}: {key} already fired") from exc

    def change_ticket(self, ticket_id: int, now: datetime, *, assignee: str | None = None,
                      priority: str | None = None) -> None:
        t = self.s.get(m.Ticket, ticket_id)
        if assignee is not None:
            t.assignee = assignee
        if priority is not None:
            t.priority = priority
        t.updated_at = _utc(now)
        self.s.add(t)

    def add_tag(self, ticket_id: int, tag: str) -> bool:
        """Add a tag (store/tickets.py's table); False when the ticket has it already."""
        if self.s.get(TicketTag, (ticket_id, tag)) is not None:
            return False
        self.s.add(TicketTag(ticket_id=ticket_id, tag=tag))
        return True

    def event(self, ticket_id: int, at: datetime, kind: str, detail: dict) -> None:
        self.s.add(m.Event(ticket_id=ticket_id, at=_utc(at), kind=kind, detail=json.dumps(detail, ensure_ascii=False)))

    def mail(self, effects, ticket_id: int, now: datetime):
        """Write planned mail into the outbox (same transaction); store.outbox.Applied."""
        return outbox.apply(self.s, effects, ticket_id, now)

    @property
    def ledger(self):
        return outbox.Ledger(self.s)


def _reply_clause(m) -> tuple:
    return (m.Message.direction == AGENT_REPLY["direction"], m.Message.visibility == AGENT_REPLY["visibility"])


# ---------------------------------------------------------------------- sweeps, views, reports
class SlaStore:
    """The SLA tables over one engine (writes take SQLite's write lock first)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.writer = engine.execution_options(sqlite_immediate=True)

    @contextmanager
    def transaction(self) -> Iterator[SlaTx]:
        """A write transaction: committed when the block ends, rolled back on an error."""
        with Session(self.writer, expire_on_commit=False) as s:
            yield SlaTx(s)
            s.commit()

    def _read(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def due(self, now: datetime, limit: int = 500) -> list[int]:
        """Tickets with an escalation level due at or before `now`, earliest first."""
        with self._read() as s:
            return list(s.exec(select(TicketSla.ticket_id).where(TicketSla.next_due_at <= _utc(now))
                               .order_by(TicketSla.next_due_at).limit(limit)).all())

    def earliest_due(self, after: datetime) -> datetime | None:
        """The earliest stored next due time later than `after` (one MIN on the due index)."""
        with self._read() as s:
            return _aware(s.exec(select(func.min(TicketSla.next_due_at))
                                 .where(TicketSla.next_due_at > _utc(after))).one())

    def next_due(self, ticket_id: int) -> datetime | None:
        with self._read() as s:
            r = s.get(TicketSla, ticket_id)
            return _aware(r.next_due_at) if r is not None else None

    def unplanned(self, version: str, after: int = 0, limit: int = 500) -> list[int]:
        """Open tickets (id > after) with no plan, or one made with other SLA settings."""
        with self._read() as s:
            q = (select(m.Ticket.id).join(TicketSla, TicketSla.ticket_id == m.Ticket.id, isouter=True)
                 .where(m.Ticket.id > after, m.Ticket.status.not_in(STOPPED_STATUSES),
                        (TicketSla.ticket_id.is_(None)) | (TicketSla.version != version))
                 .order_by(m.Ticket.id).limit(limit))
            return list(s.exec(q).all())

    def changed(self, name: str = "sweep", limit: int = 5000) -> list[int]:
        """Tickets with events since the sweep before last (a lag of one sweep covers
        transactions that committed out of id order) that their plan has not seen;
        advances the cursor."""
        with Session(self.writer, expire_on_commit=False) as s:
            cur = s.get(SlaCursor, name)
            if cur is None:
                top = s.exec(select(func.max(m.Event.id))).one() or 0
                s.add(SlaCursor(name=name, low=top, high=top))
                s.commit()
                return []
            last = s.exec(select(func.max(m.Event.id))).one() or 0
            rows = s.exec(select(m.Event.id, m.Event.ticket_id)
                          .join(TicketSla, TicketSla.ticket_id == m.Event.ticket_id, isouter=True)
                          .where(m.Event.id > cur.low, m.Event.id <= last, m.Event.kind.not_in(QUIET_EVENTS),
                                 TicketSla.ticket_id.is_(None) | (m.Event.id > TicketSla.seen_event))
                          .order_by(m.Event.id).limit(limit)).all()
            top = max(cur.high, rows[-1][0] if len(rows) == limit else last)
            if (cur.low, cur.high) != (cur.high, top):            # nothing new twice in a row: no write
                s.exec(update(SlaCursor).where(SlaCursor.name == name).values(low=cur.high, high=top))
            s.commit()
            return sorted({t for _, t in rows})

    def view(self, ticket_id: int) -> tuple[TicketRow, SlaRow | None, TicketHistory, list[FiredRow], list[str]] | None:
        """What `helpdesk show` needs: ticket, plan row, history (policy "" without a
        plan), the levels fired and the tags added."""
        with self._read() as s:
            tx = SlaTx(s)
            ticket = tx.ticket(ticket_id)
            if ticket is None:
                return None
            row = tx.row(ticket_id)
            tags = s.exec(select(TicketTag.tag).where(TicketTag.ticket_id == ticket_id).order_by(TicketTag.tag)).all()
            return ticket, row, tx.history(ticket, row.policy if row else ""), tx.fired(ticket_id), list(tags)

    def policies(self, ids: Sequence[int]) -> dict[int, str]:
        if not ids:
            return {}
        with self._read() as s:
            return dict(s.exec(select(TicketSla.ticket_id, TicketSla.policy).where(TicketSla.ticket_id.in_(ids))).all())

    def histories(self, start: datetime, end: datetime,
                  batch: int = 1000) -> Iterator[tuple[TicketHistory, bool, str]]:
        """(history, has a stored policy, requester) of every ticket created in [start,
        end), in bounded batches; the policy is "" where none was stored."""
        last = 0
        while True:
            with self._read() as s:
                tickets = s.exec(select(m.Ticket).where(m.Ticket.created_at >= _utc(start),
                                                        m.Ticket.created_at < _utc(end), m.Ticket.id > last)
                                 .order_by(m.Ticket.id).limit(batch)).all()
                if not tickets:
                    return
                ids = [t.id for t in tickets]
                pol = dict(s.exec(select(TicketSla.ticket_id, TicketSla.policy)
                                  .where(TicketSla.ticket_id.in_(ids))).all())
                statuses: dict[int, list] = {}
                for tid, at, d in s.exec(select(m.Event.ticket_id, m.Event.at, m.Event.detail).where(
                        m.Event.ticket_id.in_(ids), m.Event.kind == "status").order_by(m.Event.id)):
                    if (to := status_of(d)) is not None:
                        statuses.setdefault(tid, []).append((at, to))
                replies: dict[int, list] = {}
                for tid, first, latest in s.exec(select(m.Message.ticket_id, func.min(m.Message.received_at),
                                                        func.max(m.Message.received_at))
                                                 .where(m.Message.ticket_id.in_(ids), *_reply_clause(m))
                                                 .group_by(m.Message.ticket_id)):
                    replies[tid] = [first, latest]
                rows = [_trow(t) for t in tickets]
            for t in rows:
                yield (build_history(t, pol.get(t.id, ""), statuses.get(t.id, ()), replies.get(t.id, ())),
                       t.id in pol, t.requester)
            last = ids[-1]
