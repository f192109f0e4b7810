"""Reads for working the desk: open tickets by assignee and by queue (`helpdesk agents`,
the `#mine` / `#queue` answers by mail). Read-only; the SLA deadlines come from the
stored timers (store.tables SlaTimer) when there are any."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, select

from daemon.clock import aware
from store import tables as m

CLOSED = ("resolved", "closed")


@dataclass(frozen=True)
class OpenTicket:
    """An open ticket as an agent's list shows it."""

    id: int
    subject: str
    status: str
    priority: str
    queue: str
    assignee: str | None
    updated_at: datetime


def open_counts(s: Session) -> dict[str, int]:
    """Open tickets per assignee (lower-case address)."""
    q = select(func.lower(m.Ticket.assignee), func.count()).where(
        m.Ticket.assignee.is_not(None), m.Ticket.status.not_in(CLOSED)).group_by(func.lower(m.Ticket.assignee))
    return {a: n for a, n in s.exec(q).all() if a}


def open_tickets(s: Session, *, assignee: str | None = None, queue: str | None = None,
                 limit: int = 50) -> list[OpenTicket]:
    """Open tickets of one assignee or one queue, most urgent priority first, then oldest."""
    q = select(m.Ticket).where(m.Ticket.status.not_in(CLOSED))
    if assignee is not None:
        q = q.where(func.lower(m.Ticket.assignee) == assignee.lower())
    if queue is not None:
        q = q.where(m.Ticket.queue == queue)
    q = q.order_by(m.Ticket.priority, m.Ticket.id).limit(limit)
    return [OpenTicket(t.id, t.subject, t.status, t.priority, t.queue, t.assignee, aware(t.updated_at))
            for t in s.exec(q).all()]
