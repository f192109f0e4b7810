"""The agent path's writes and reads: an agent-path message with its commands, in the caller's
open transaction (store.writing.WriteTx.record_agent).

`record` writes one agent-path message and everything it changes: the raw bytes, the message
row (an agent's public answer is direction `out`, visibility `public` - what SLA first
response reads; notes, command-only mails and unverified mail are `in`/`internal`), the
commands (status, priority, queue, type, assignee, tags, merge, link - each with its event)
and the verdict with its evidence (`agentmessage`). Planning the mail it causes is the
daemon's (daemon.agents); the effects come back through WriteTx.apply_mail. Tables:

  tickettag     the tags of a ticket (rules' tags at creation, #tag, SLA escalations)
  agentmessage  the agent path's verdict on each stored message: acted | note | unverified
                | machine | requester | norights, the agent, the reason and the evidence
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, update
from sqlmodel import Session, select

from daemon.clock import aware, to_utc
from daemon.errors import NotFound
from daemon.model import Envelope, ParsedMessage
from daemon.model import TicketState
from daemon.model import Command
from store import tables as m
from store.tables import AgentMessage, TicketTag  # noqa: F401  (re-exported)
from store import outbox, problems, search
from store.approvals_store import status_refusal
from store.saving import insert_ignore, lock_tickets
from store.records import SaveResult, TicketRow

THREAD = 10                           # customer message ids put into References of a reply


@dataclass(frozen=True)
class AgentWrite:
    """What to store for one agent-path message (see module docstring)."""

    ticket_id: int
    direction: str                    # out | in
    visibility: str                   # public | internal
    verdict: str
    agent: str
    reason: str
    text: str
    commands: tuple[Command, ...] = ()
    implicit_status: str | None = None          # open/pending after a public answer
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True)
class CommandResult:
    command: str
    ok: bool
    detail: str


def alerts_since(s: Session, email: str, since: datetime) -> int:
    """Agent alerts planned to `email` since then (the warnings' hourly cap)."""
    return s.exec(select(func.count()).select_from(outbox.OutboxRecipient)
                  .join(outbox.Outbox, outbox.Outbox.id == outbox.OutboxRecipient.outbox_id)
                  .where(outbox.OutboxRecipient.email == email.lower(), outbox.Outbox.kind == "agent_alert",
                         outbox.OutboxRecipient.planned_at >= to_utc(since))).one()


def _event(s: Session, ticket_id: int, at: datetime, kind: str, detail: dict) -> None:
    s.add(m.Event(ticket_id=ticket_id, at=at, kind=kind, detail=json.dumps(detail, ensure_ascii=False)))


def _trow(t: m.Ticket) -> TicketRow:
    return TicketRow(t.id, t.subject, t.type, t.status, t.priority, t.queue, t.requester, t.assignee,
                     aware(t.created_at), aware(t.updated_at), t.message_count, t.rules_version,
                     aware(getattr(t, "archived_at", None)))


@dataclass(frozen=True)
class Recorded:
    """What `record` did: the save result, each command's result, the ticket after it."""

    result: SaveResult
    results: tuple[CommandResult, ...] = ()
    ticket: TicketRow | None = None


class Reads:
    """The agent path's reads, bound to a session (the write transaction's, or a read one)."""

    def __init__(self, s: Session):
        self.s = s

    def state(self, ticket_id: int | None) -> TicketState | None:
        if not ticket_id:
            return None
        t = self.s.get(m.Ticket, ticket_id)
        return None if t is None else TicketState(t.id, t.subject, t.status, t.priority, t.queue, t.type,
                                                  t.requester, t.assignee)

    def tags(self, ticket_id: int) -> tuple[str, ...]:
        return tuple(sorted(self.s.exec(select(TicketTag.tag).where(TicketTag.ticket_id == ticket_id)).all()))

    def cc_participants(self, ticket_id: int) -> tuple[str, ...]:
        return tuple(sorted(self.s.exec(select(m.Participant.email).where(
            m.Participant.ticket_id == ticket_id, m.Participant.role == "cc")).all()))

    def opening_raw(self, ticket_id: int) -> bytes | None:
        """The raw bytes of the mail that opened the ticket (to check who named its Cc)."""
        sha = self.s.exec(select(m.Message.raw_sha256).where(m.Message.ticket_id == ticket_id)
                          .order_by(m.Message.id).limit(1)).first()
        row = self.s.get(m.RawMessage, sha) if sha else None
        return row.data if row is not None else None

    def thread_ids(self, ticket_id: int) -> tuple[str, ...]:
        """The customer's message ids on the ticket (public, incoming), oldest first."""
        ids = self.s.exec(select(m.Message.message_id).where(
            m.Message.ticket_id == ticket_id, m.Message.direction == "in", m.Message.visibility == "public",
            m.Message.message_id_synthetic == False).order_by(m.Message.id)).all()  # noqa: E712
        return tuple(ids[:1] + ids[1:][-(THREAD - 1):])

    def verdicts(self, ticket_id: int) -> list[tuple[str, str, str, str]]:
        """(message id, verdict, agent, reason) of the ticket's agent-path messages."""
        q = (select(m.Message.message_id, AgentMessage.verdict, AgentMessage.agent, AgentMessage.reason)
             .join(AgentMessage, AgentMessage.message_pk == m.Message.id)
             .where(AgentMessage.ticket_id == ticket_id).order_by(m.Message.id))
        return [tuple(r) for r in self.s.exec(q)]


class TicketStore:
    """Reads of the agent path over the store's engine, each in its own session (the CLI and
    tests); `record` as one transaction of its own."""

    def __init__(self, store, prefix: str = "HD"):
        self.store, self.prefix = store, prefix

    def _reads(self, name: str, *args):
        with Session(self.store.engine, expire_on_commit=False) as s:
            return getattr(Reads(s), name)(*args)

    def state(self, ticket_id: int | None) -> TicketState | None:
        return self._reads("state", ticket_id)

    def tags(self, ticket_id: int) -> tuple[str, ...]:
        return self._reads("tags", ticket_id)

    def verdicts(self, ticket_id: int) -> list[tuple[str, str, str, str]]:
        return self._reads("verdicts", ticket_id)

    def record(self, msg: ParsedMessage, envelope: Envelope, raw: bytes, raw_sha256: str, w: "AgentWrite",
               now: datetime) -> SaveResult:
        """Store one agent-path message (no mail planned) in a transaction of its own."""
        with self.store.write() as tx:
            done = tx.record_agent(msg, envelope, raw, raw_sha256, w, now, self.prefix)
            tx.commit()
        return done.result


def record(s: Session, msg: ParsedMessage, envelope: Envelope, raw: bytes, raw_sha256: str, w: "AgentWrite",
           now: datetime, prefix: str) -> Recorded:
    """Store one agent-path message and its ticket change in the open transaction `s`."""
    if s.exec(select(m.Message.id).where(m.Message.message_id == msg.message_id,
                                         m.Message.digest == msg.content_digest)).first() is not None:
        return Recorded(SaveResult("duplicate", None, None, msg.message_id))
    ticket = s.get(m.Ticket, w.ticket_id)
    if ticket is None:
        raise NotFound(f"ticket {w.ticket_id} not found")
    row = _message(s, msg, envelope, raw, raw_sha256, w, now)
    search.index_message(s.connection(), row.id, row.ticket_id, now, row.subject, row.text)
    results = tuple(_apply(s, ticket, c, w.agent, now, prefix) for c in w.commands)
    explicit = any(r.ok and c.name in ("status", "merge") for c, r in zip(w.commands, results))
    if w.implicit_status and not explicit and ticket.status != w.implicit_status:
        _event(s, ticket.id, now, "status", {"from": ticket.status, "to": w.implicit_status,
                                             "why": f"answer by agent {w.agent}"})
        ticket.status = w.implicit_status
    ticket.message_count += 1
    ticket.updated_at = now
    s.add(ticket)
    _verdict(s, ticket.id, row, w, results, now)
    s.flush()
    return Recorded(SaveResult(f"agent:{w.verdict}", ticket.id, row.id, msg.message_id), results, _trow(ticket))


def _message(s: Session, msg: ParsedMessage, envelope: Envelope, raw: bytes, raw_sha256: str,
             w: AgentWrite, now: datetime) -> m.Message:
    if s.get(m.RawMessage, raw_sha256) is None:
        s.add(m.RawMessage(sha256=raw_sha256, size=len(raw), data=raw))
    row = m.Message(
        ticket_id=w.ticket_id, message_id=msg.message_id, message_id_synthetic=msg.message_id_synthetic,
        digest=msg.content_digest, raw_sha256=raw_sha256, direction=w.direction, visibility=w.visibility,
        from_addr=msg.from_addr.email if msg.from_addr else "", from_name=msg.from_addr.name if msg.from_addr else "",
        to_addrs=json.dumps([str(a) for a in msg.to], ensure_ascii=False),
        cc_addrs=json.dumps([str(a) for a in msg.cc], ensure_ascii=False), subject=msg.subject, text=w.text,
        received_at=now, sent_at=now if w.direction == "out" else None,
        in_reply_to=json.dumps(list(msg.in_reply_to)), references=json.dumps(list(msg.references)),
        machine_kind=msg.machine.kind, machine_reasons=json.dumps(list(msg.machine.reasons)),
        thread_evidence=f"agent path: {w.verdict} ({w.reason})", envelope=json.dumps(asdict(envelope)),
        defects=json.dumps(list(msg.defects)))
    s.add(row)
    s.flush()
    for part in msg.attachments:
        s.add(m.Attachment(message_pk=row.id, filename=part.filename, content_type=part.content_type,
                           size=part.size, sha256=part.sha256, inline=part.inline))
    s.flush()
    c = s.connection()                    # a key another ticket owns stays with it (one owner per key)
    c.execute(insert_ignore(c, m.ThreadKey.__table__), {"key": msg.message_id, "ticket_id": w.ticket_id,
                                                        "ghost": False})
    return row

def _verdict(s: Session, ticket_id: int, row: m.Message, w: AgentWrite,
             results: tuple[CommandResult, ...], now: datetime) -> None:
    s.add(AgentMessage(message_pk=row.id, ticket_id=ticket_id, verdict=w.verdict, agent=w.agent,
                       reason=w.reason[:300], evidence=json.dumps(list(w.evidence)[:20], ensure_ascii=False)))
    if w.agent and w.verdict in ("acted", "note") and s.get(m.Participant, (ticket_id, w.agent)) is None:
        s.add(m.Participant(ticket_id=ticket_id, email=w.agent, role="agent"))
    kind = "unverified" if w.verdict == "unverified" else "agent_mail"
    _event(s, ticket_id, now, kind, {
        "message_id": row.message_id, "from": row.from_addr, "agent": w.agent, "verdict": w.verdict,
        "reason": w.reason, "direction": w.direction, "visibility": w.visibility,
        "commands": [{"command": r.command, "ok": r.ok, "detail": r.detail} for r in results],
        "evidence": list(w.evidence)[:10]})

# ---------------------------------------------------------------------- commands
def _apply(s: Session, t: m.Ticket, c: Command, by: str, now: datetime, prefix: str) -> CommandResult:
    what = c.describe()
    if c.name == "note":
        return CommandResult(what, True, "stored as an internal note")
    if c.name in ("status", "priority", "queue", "type", "assign"):
        column = "assignee" if c.name == "assign" else c.name
        old, new = getattr(t, column), c.value or None
        if (old or None) == new:
            return CommandResult(what, True, f"{c.name} already {new or 'unassigned'}")
        if c.name == "status" and t.type == "change":      # a change is resolved (implemented) once approved
            approval = s.get(m.ChangeApproval, t.id)
            why = status_refusal(t.type, approval.state if approval else None, new, f"{prefix}-{t.id}")
            if why:
                return CommandResult(what, False, why)
        setattr(t, column, new)
        kind = "status" if c.name == "status" else "changed"
        _event(s, t.id, now, kind, {"field": column, "from": old, "to": new, "why": f"{what} by {by}"})
        return CommandResult(what, True, f"{column}: {old or '-'} -> {new or 'unassigned'}")
    if c.name in ("tag", "untag"):
        return _tag(s, t, c, by, now)
    if problems.handles(c, t):                     # #problem, #workaround, #link on a problem
        return CommandResult(what, *problems.apply(s, t, c, by, now, prefix))
    if c.name == "link" and " " in c.value:         # #link HD-12 HD-13: each one
        done = [_apply(s, t, Command("link", v, c.line), by, now, prefix) for v in c.value.split()]
        return CommandResult(what, all(r.ok for r in done), "; ".join(r.detail for r in done))
    other = s.get(m.Ticket, int(c.value))
    ref = f"{prefix}-{c.value}"
    if other is None:
        return CommandResult(what, False, f"there is no ticket {ref}")
    return _link(s, t, other, c, by, now, prefix) if c.name == "link" else _merge(s, t, other, c, by, now, prefix)

def _tag(s: Session, t: m.Ticket, c: Command, by: str, now: datetime) -> CommandResult:
    have = s.get(TicketTag, (t.id, c.value)) is not None
    if c.name == "tag" and not have:
        s.add(TicketTag(ticket_id=t.id, tag=c.value))
    elif c.name == "untag" and have:
        s.exec(delete(TicketTag).where(TicketTag.ticket_id == t.id, TicketTag.tag == c.value))
    else:
        return CommandResult(c.describe(), True, f"tag {c.value} already {'set' if have else 'absent'}")
    _event(s, t.id, now, "tagged", {"tag": c.value, "set": c.name == "tag", "by": by})
    return CommandResult(c.describe(), True, f"tag {c.value} {'added' if c.name == 'tag' else 'removed'}")

def _link(s: Session, t: m.Ticket, other: m.Ticket, c: Command, by: str, now: datetime, prefix: str) -> CommandResult:
    lock_tickets(s.connection(), (t.id, other.id))      # both, in id order: links are written both ways
    for a, b in ((t.id, other.id), (other.id, t.id)):
        if s.get(m.TicketLink, (a, b, "related")) is None:
            s.add(m.TicketLink(ticket_id=a, other_id=b, kind="related"))
            _event(s, a, now, "linked", {"ticket": b, "why": f"{c.describe()} by {by}"})
    return CommandResult(c.describe(), True, f"linked with {prefix}-{other.id}")

def _merge(s: Session, t: m.Ticket, other: m.Ticket, c: Command, by: str, now: datetime, prefix: str) -> CommandResult:
    """Merge `t` into `other`: later replies to t thread into other, t's requester
    joins other as a participant, t is closed."""
    if other.status == "closed":
        return CommandResult(c.describe(), False, f"{prefix}-{other.id} is closed")
    lock_tickets(s.connection(), (t.id, other.id))      # both, in id order (held already from the batch's lock)
    s.add(m.TicketLink(ticket_id=t.id, other_id=other.id, kind="merged_into"))
    if s.get(m.TicketLink, (other.id, t.id, "merged_from")) is None:
        s.add(m.TicketLink(ticket_id=other.id, other_id=t.id, kind="merged_from"))
    s.flush()
    s.exec(update(m.ThreadKey).where(m.ThreadKey.ticket_id == t.id).values(ticket_id=other.id))  # keys have one owner
    for p in s.exec(select(m.Participant).where(m.Participant.ticket_id == t.id)).all():
        if p.role != "agent" and s.get(m.Participant, (other.id, p.email)) is None:
            s.add(m.Participant(ticket_id=other.id, email=p.email, role="cc"))
    old, t.status = t.status, "closed"
    _event(s, t.id, now, "merged", {"into": other.id, "from_status": old, "by": by})
    _event(s, other.id, now, "merged", {"from": t.id, "by": by})
    return CommandResult(c.describe(), True, f"merged into {prefix}-{other.id}; this ticket is closed")


def since_hour(now: datetime) -> datetime:
    return to_utc(now) - timedelta(hours=1)

