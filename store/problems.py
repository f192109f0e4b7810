"""Problem management's rows, in the caller's open transaction (or a read session).

An incident is linked to its problem by two `ticketlink` rows: kind `problem` on the
incident (other_id = the problem) and kind `incident` on the problem (other_id = the
incident). An incident has at most one problem: linking it again moves it. `knownerror`
holds a problem's workaround; `problemnotice` the requesters already told that the
problem was resolved (each once). Every change writes an event on the tickets it touches.
Deciding what mail follows is the daemon's (daemon.problems); nothing here commits.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete
from sqlmodel import Session, select

from daemon.clock import aware, to_utc
from daemon.model import Command
from store import tables as m

PROBLEM, INCIDENT = "problem", "incident"
CLOSED = ("resolved", "closed")
MAX_WORKAROUND = 4000


@dataclass(frozen=True)
class Linked:
    """A ticket linked to a problem, as notices and views need it."""

    id: int
    subject: str
    status: str
    queue: str
    requester: str


@dataclass(frozen=True)
class KnownError:
    """The problem an incident is linked to, with its workaround ("" when none is set)."""

    problem_id: int
    subject: str
    status: str
    workaround: str = ""
    set_at: datetime | None = None


def _event(s: Session, ticket_id: int, at: datetime, kind: str, detail: dict) -> None:
    s.add(m.Event(ticket_id=ticket_id, at=to_utc(at), kind=kind, detail=json.dumps(detail, ensure_ascii=False)))


class ProblemTx:
    """Problem rows over one session (WriteTx.problems, or a read session for views)."""

    def __init__(self, s: Session):
        self.s = s

    # ------------------------------------------------------------------ reads
    def problem_of(self, incident_id: int) -> int | None:
        return self.s.exec(select(m.TicketLink.other_id).where(m.TicketLink.ticket_id == incident_id,
                                                               m.TicketLink.kind == PROBLEM)).first()

    def incidents(self, problem_id: int) -> list[Linked]:
        """The incidents linked to the problem, oldest first."""
        q = (select(m.Ticket).join(m.TicketLink, m.TicketLink.other_id == m.Ticket.id)
             .where(m.TicketLink.ticket_id == problem_id, m.TicketLink.kind == INCIDENT).order_by(m.Ticket.id))
        return [Linked(t.id, t.subject, t.status, t.queue, t.requester) for t in self.s.exec(q)]

    def known_error(self, incident_id: int) -> KnownError | None:
        """The problem of an incident and its workaround, or None when it has no problem."""
        pid = self.problem_of(incident_id)
        problem = self.s.get(m.Ticket, pid) if pid else None
        if problem is None:
            return None
        row = self.s.get(m.KnownError, problem.id)
        return KnownError(problem.id, problem.subject, problem.status, row.workaround if row else "",
                          aware(row.set_at) if row else None)

    def workaround(self, problem_id: int) -> str:
        row = self.s.get(m.KnownError, problem_id)
        return row.workaround if row else ""

    def notified(self, problem_id: int) -> frozenset[str]:
        """Requesters already told the problem was resolved."""
        return frozenset(self.s.exec(select(m.ProblemNotice.email).where(m.ProblemNotice.problem_id == problem_id)))

    # ------------------------------------------------------------------ writes
    def link(self, incident: m.Ticket, problem: m.Ticket, by: str, now: datetime, prefix: str) -> tuple[bool, str]:
        """Link `incident` to `problem` (moving it from another problem); (ok, detail)."""
        if problem.type != PROBLEM:
            return False, (f"{prefix}-{problem.id} is not a problem (type {problem.type}); "
                           f"make it one with #type problem")
        if incident.id == problem.id:
            return False, "a problem cannot be linked to itself"
        if incident.type == PROBLEM:
            return False, f"{prefix}-{incident.id} is a problem itself; link incidents to it instead"
        old = self.problem_of(incident.id)
        if old == problem.id:
            return True, f"{prefix}-{incident.id} already linked to problem {prefix}-{problem.id}"
        if old is not None:
            self.s.exec(delete(m.TicketLink).where(m.TicketLink.ticket_id == incident.id,
                                                   m.TicketLink.kind == PROBLEM))
            self.s.exec(delete(m.TicketLink).where(m.TicketLink.ticket_id == old, m.TicketLink.kind == INCIDENT,
                                                   m.TicketLink.other_id == incident.id))
            _event(self.s, old, now, "problem_unlinked", {"incident": incident.id, "moved_to": problem.id, "by": by})
        self.s.add(m.TicketLink(ticket_id=incident.id, other_id=problem.id, kind=PROBLEM))
        self.s.add(m.TicketLink(ticket_id=problem.id, other_id=incident.id, kind=INCIDENT))
        _event(self.s, incident.id, now, "problem_linked", {"problem": problem.id, "by": by})
        _event(self.s, problem.id, now, "incident_linked", {"incident": incident.id, "by": by})
        self.s.flush()
        return True, f"{prefix}-{incident.id} linked to problem {prefix}-{problem.id}"

    def link_new(self, incident_id: int, problem_id: int, now: datetime, why: str, prefix: str) -> bool:
        """A rule links a new ticket to an open problem; a problem that does not exist, is
        not a problem or is no longer open is not linked (the event says why)."""
        incident, problem = self.s.get(m.Ticket, incident_id), self.s.get(m.Ticket, problem_id)
        if incident is None:
            return False
        if problem is None or problem.type != PROBLEM or problem.status in CLOSED:
            state = "does not exist" if problem is None else \
                f"is a {problem.type}" if problem.type != PROBLEM else f"is {problem.status}"
            _event(self.s, incident_id, now, "problem_not_linked",
                   {"problem": problem_id, "why": f"{prefix}-{problem_id} {state}", "rule": why})
            return False
        ok, _ = self.link(incident, problem, f"rule {why}", now, prefix)
        return ok

    def set_workaround(self, problem: m.Ticket, text: str, by: str, now: datetime, prefix: str) -> tuple[bool, str]:
        if problem.type != PROBLEM:
            return False, f"{prefix}-{problem.id} is a {problem.type}: only a problem has a workaround"
        text = text.strip()[:MAX_WORKAROUND]
        if not text:
            return False, "#workaround needs the text"
        row = self.s.get(m.KnownError, problem.id) or m.KnownError(ticket_id=problem.id, workaround="",
                                                                   set_at=to_utc(now))
        row.workaround, row.set_by, row.set_at = text, by, to_utc(now)
        self.s.add(row)
        _event(self.s, problem.id, now, "workaround", {"text": text[:500], "by": by})
        return True, "workaround set: new incidents linked to this problem get it in their acknowledgement"

    def mark_notified(self, problem_id: int, email: str, ticket_id: int, now: datetime) -> None:
        self.s.add(m.ProblemNotice(problem_id=problem_id, email=email.lower(), ticket_id=ticket_id,
                                   sent_at=to_utc(now)))


# ---------------------------------------------------------------------- the agent commands
COMMANDS = frozenset({"problem", "workaround"})


def handles(c: Command, t: m.Ticket) -> bool:
    """Whether the command is problem management's: #problem, #workaround, #link on a problem."""
    return c.name in COMMANDS or (c.name == "link" and t.type == PROBLEM)


def apply(s: Session, t: m.Ticket, c: Command, by: str, now: datetime, prefix: str) -> tuple[bool, str]:
    """Carry out one of problem management's commands on ticket `t`; (ok, detail)."""
    tx = ProblemTx(s)
    if c.name == "workaround":
        return tx.set_workaround(t, c.value, by, now, prefix)
    refs = [int(v) for v in c.value.split()]
    out: list[tuple[bool, str]] = []
    for ref in refs:
        other = s.get(m.Ticket, ref)
        if other is None:
            out.append((False, f"there is no ticket {prefix}-{ref}"))
        elif c.name == "problem":
            out.append(tx.link(t, other, by, now, prefix))
        else:                                        # #link on a problem: the others are its incidents
            out.append(tx.link(other, t, by, now, prefix))
    return all(ok for ok, _ in out), "; ".join(d for _, d in out)
