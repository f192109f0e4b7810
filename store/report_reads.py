"""The continual improvement report's reads (store): plain rows for daemon.report.figures.

`ReportReads(engine)` reads, in bounded batches, the facts of every ticket created in a
period (type, queue, service - the SLA plan's, else the one the `created` event names -, channel,
status changes, first public answer) and of the
tickets that may have been open during it (the backlog), the satisfaction answers and the
problems with the most linked incidents. It computes nothing.

Satisfaction and problems come from the problem/CSAT work of issue 18 (branch itil-pc):
`read_satisfaction` reads the `csatsurvey` table (score 1-5, answered_at) and
`read_problem_links` the `ticketlink` rows of kind `problem` (incident -> problem). Both
look the table up first, so the report says "not recorded" on a database without it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Iterator

from sqlalchemy import DateTime, Engine, Integer, String, bindparam, func, inspect, text
from sqlmodel import Session, select

from daemon.clock import aware, to_utc
from store import tables as m
from store.sla_store import status_of
from store.ticket_service import created_service


@dataclass(frozen=True)
class TicketFacts:
    """One ticket as the report sees it; `statuses` are (at, new status), oldest first."""

    id: int
    subject: str
    type: str
    queue: str
    priority: str
    status: str
    service: str
    channel: str
    created_at: datetime
    first_response_at: datetime | None
    statuses: tuple[tuple[datetime, str], ...]


@dataclass(frozen=True)
class Score:
    """One answered satisfaction survey."""

    ticket_id: int
    queue: str
    score: int
    answered_at: datetime


@dataclass(frozen=True)
class ProblemLinks:
    """A problem ticket and how many incidents are linked to it."""

    problem_id: int
    subject: str
    status: str
    incidents: int


def channel_of(envelope_json: str) -> str:
    """smtp | imap:<account> | lmtp | ingest | stdin | unknown, from a stored envelope."""
    try:
        source = json.loads(envelope_json or "{}").get("source") or "unknown"
    except (ValueError, AttributeError):
        return "unknown"
    return str(source)[:60]


class ReportReads:
    """See module docstring."""

    def __init__(self, engine: Engine, batch: int = 1000):
        self.engine, self.batch = engine, batch

    def created(self, start: datetime, end: datetime) -> Iterator[TicketFacts]:
        """Every ticket created in [start, end)."""
        yield from self._tickets(m.Ticket.created_at >= to_utc(start), m.Ticket.created_at < to_utc(end))

    def maybe_open(self, start: datetime, end: datetime) -> Iterator[TicketFacts]:
        """Tickets created before `end` that may have been open at some time in [start, end):
        not resolved or closed now, or changed since `start`."""
        yield from self._tickets(m.Ticket.created_at < to_utc(end),
                                 (m.Ticket.status.not_in(("resolved", "closed"))) |
                                 (m.Ticket.updated_at >= to_utc(start)))

    def _tickets(self, *where) -> Iterator[TicketFacts]:
        last = 0
        while True:
            with Session(self.engine) as s:
                rows = s.exec(select(m.Ticket).where(*where, m.Ticket.id > last).order_by(m.Ticket.id)
                              .limit(self.batch)).all()
                if not rows:
                    return
                facts = self._facts(s, rows)
            yield from facts
            last = rows[-1].id

    def _facts(self, s: Session, rows) -> list[TicketFacts]:
        ids = [t.id for t in rows]
        service = dict(s.exec(select(m.TicketSla.ticket_id, m.TicketSla.service)
                              .where(m.TicketSla.ticket_id.in_(ids))).all())
        first_in = dict(s.exec(select(m.Message.ticket_id, func.min(m.Message.id))
                               .where(m.Message.ticket_id.in_(ids)).group_by(m.Message.ticket_id)).all())
        envelopes = dict(s.exec(select(m.Message.id, m.Message.envelope)
                                .where(m.Message.id.in_(list(first_in.values())))).all())
        answered = dict(s.exec(select(m.Message.ticket_id, func.min(m.Message.received_at))
                               .where(m.Message.ticket_id.in_(ids), m.Message.direction == "out",
                                      m.Message.visibility == "public").group_by(m.Message.ticket_id)).all())
        statuses: dict[int, list] = {}
        for tid, at, kind, detail in s.exec(select(m.Event.ticket_id, m.Event.at, m.Event.kind, m.Event.detail)
                                            .where(m.Event.ticket_id.in_(ids), m.Event.kind.in_(("status", "created")))
                                            .order_by(m.Event.id)):
            if kind == "created":                   # the rule's service, with or without an SLA plan
                if not service.get(tid):
                    service[tid] = created_service(detail)
            elif (to := status_of(detail)) is not None:
                statuses.setdefault(tid, []).append((aware(at), to))
        return [TicketFacts(t.id, t.subject, t.type, t.queue, t.priority, t.status, service.get(t.id) or "",
                            channel_of(envelopes.get(first_in.get(t.id), "")), aware(t.created_at),
                            aware(answered[t.id]) if t.id in answered else None, tuple(statuses.get(t.id, ())))
                for t in rows]

    def read_satisfaction(self, start: datetime, end: datetime) -> list[Score] | None:
        """Satisfaction answers given in [start, end); None when no CSAT table exists."""
        if not inspect(self.engine).has_table("csatsurvey"):
            return None
        q = (text("SELECT ticket_id, queue, score, answered_at FROM csatsurvey WHERE score IS NOT NULL "
                  "AND answered_at >= :start AND answered_at < :end ORDER BY answered_at")
             .bindparams(bindparam("start", type_=DateTime(timezone=True)),
                         bindparam("end", type_=DateTime(timezone=True)))
             .columns(ticket_id=Integer, queue=String, score=Integer, answered_at=DateTime(timezone=True)))
        with self.engine.connect() as c:
            rows = c.execute(q, {"start": to_utc(start), "end": to_utc(end)}).all()
        return [Score(r[0], r[1], int(r[2]), _time(r[3])) for r in rows]

    def read_problem_links(self, limit: int = 10) -> list[ProblemLinks]:
        """The problems with the most linked incidents (ticketlink kind `problem`, written on
        the incident), most first."""
        with Session(self.engine) as s:
            counts = s.exec(select(m.TicketLink.other_id, func.count()).where(m.TicketLink.kind == "problem")
                            .group_by(m.TicketLink.other_id).order_by(func.count().desc(), m.TicketLink.other_id)
                            .limit(limit)).all()
            out = []
            for pid, n in counts:
                t = s.get(m.Ticket, pid)
                out.append(ProblemLinks(pid, t.subject if t else "(deleted)", t.status if t else "", int(n)))
            return out


def _time(value) -> datetime:
    """A timestamp read back (naive UTC on SQLite) as an aware UTC datetime."""
    return aware(value)


def outbox_has(engine: Engine, message_id: str) -> bool:
    """Whether a mail with this Message-ID was written into the outbox (a report sent once)."""
    with Session(engine) as s:
        return s.exec(select(m.Outbox.id).where(m.Outbox.message_id == message_id)).first() is not None
