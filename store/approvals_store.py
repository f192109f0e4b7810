"""Change approval rows (store): the one place that reads and writes changeapproval and approvalvote.

`ApprovalTx` works inside an open session (the approval sweep's transaction, or the worker's
write transaction for an approver's reply); `ApprovalStore` reads for `show` and the sweep.
It stores what it is handed and decides nothing (daemon.approvals does).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

from sqlalchemy import Engine, func
from sqlmodel import Session, select

from daemon.clock import aware, to_utc
from store import tables as m
from store.ticket_service import service_of


@dataclass(frozen=True)
class VoteRow:
    """One approver's part in one stage."""

    stage: int
    approver: str
    status: str
    requested_at: datetime
    reminded_at: datetime | None
    decided_at: datetime | None
    comment: str
    evidence: tuple[str, ...]
    message_id: str


@dataclass(frozen=True)
class ApprovalRow:
    """A change ticket's approval with every vote, oldest stage first."""

    ticket_id: int
    state: str
    policy: str
    plan: dict
    stage: int
    stage_started_at: datetime
    started_at: datetime
    decided_at: datetime | None
    version: str
    votes: tuple[VoteRow, ...]

    def stage_votes(self, stage: int | None = None) -> tuple[VoteRow, ...]:
        want = self.stage if stage is None else stage
        return tuple(v for v in self.votes if v.stage == want)


def status_refusal(ticket_type: str, approval_state: str | None, status: str, ref: str) -> str | None:
    """Why a change may not get `status` now, or None. A change is implemented (resolved) only
    once approved; while its approval is under way (or not started yet) it is neither
    resolved nor closed; a rejected or expired one may be closed, never resolved. The rule
    the status commands apply (store.tickets) and `helpdesk update` checks before writing."""
    if ticket_type != "change" or status not in ("resolved", "closed") or approval_state == "approved":
        return None
    if approval_state in ("rejected", "expired"):
        return None if status == "closed" else (f"{ref} is a change that was {approval_state}: it cannot be "
                                                f"implemented (resolved); close it instead (#close)")
    waiting = "its approval has not started yet" if approval_state is None else "it is still awaiting approval"
    return (f"{ref} is a change and {waiting}: it can be {status} only once the approvers have decided "
            f"(`helpdesk show {ref}` lists who is asked)")


def _opt(value: datetime | None) -> datetime | None:
    return aware(value) if value is not None else None


def _vote(r: m.ApprovalVote) -> VoteRow:
    return VoteRow(r.stage, r.approver, r.status, aware(r.requested_at), _opt(r.reminded_at), _opt(r.decided_at),
                   r.comment, tuple(json.loads(r.evidence or "[]")), r.message_id)


def read(s: Session, ticket_id: int) -> ApprovalRow | None:
    row = s.get(m.ChangeApproval, ticket_id)
    if row is None:
        return None
    votes = s.exec(select(m.ApprovalVote).where(m.ApprovalVote.ticket_id == ticket_id)
                   .order_by(m.ApprovalVote.stage, m.ApprovalVote.id)).all()
    return ApprovalRow(row.ticket_id, row.state, row.policy, json.loads(row.plan or "{}"), row.stage,
                       aware(row.stage_started_at), aware(row.started_at), _opt(row.decided_at), row.version,
                       tuple(_vote(v) for v in votes))


class ApprovalTx:
    """Approval reads and writes in one open session."""

    def __init__(self, s: Session):
        self.s = s

    def read(self, ticket_id: int, *, lock: bool = False) -> ApprovalRow | None:
        if lock:
            self.s.exec(select(m.ChangeApproval).where(m.ChangeApproval.ticket_id == ticket_id).with_for_update())
        return read(self.s, ticket_id)

    def start(self, ticket_id: int, state: str, policy: str, plan: dict, now: datetime, version: str) -> None:
        self.s.add(m.ChangeApproval(ticket_id=ticket_id, state=state, policy=policy[:200],
                                    plan=json.dumps(plan, ensure_ascii=False), stage=1, stage_started_at=to_utc(now),
                                    started_at=to_utc(now), decided_at=to_utc(now) if state != "awaiting-approval"
                                    else None, version=version))
        self.s.flush()

    def ask(self, ticket_id: int, stage: int, approvers: Iterable[str], now: datetime) -> None:
        for email in approvers:
            self.s.add(m.ApprovalVote(ticket_id=ticket_id, stage=stage, approver=email, requested_at=to_utc(now)))
        self.s.flush()

    def next_stage(self, ticket_id: int, stage: int, now: datetime) -> None:
        row = self.s.get(m.ChangeApproval, ticket_id)
        row.stage, row.stage_started_at = stage, to_utc(now)
        self.s.add(row)

    def decide(self, ticket_id: int, state: str, now: datetime) -> None:
        row = self.s.get(m.ChangeApproval, ticket_id)
        row.state, row.decided_at = state, to_utc(now)
        self.s.add(row)

    def _vote_row(self, ticket_id: int, stage: int, approver: str) -> m.ApprovalVote | None:
        return self.s.exec(select(m.ApprovalVote).where(m.ApprovalVote.ticket_id == ticket_id,
                                                        m.ApprovalVote.stage == stage,
                                                        m.ApprovalVote.approver == approver)).first()

    def vote(self, ticket_id: int, stage: int, approver: str, status: str, now: datetime, comment: str = "",
             evidence: tuple[str, ...] = (), message_id: str = "") -> None:
        row = self._vote_row(ticket_id, stage, approver)
        row.status, row.decided_at, row.comment = status, to_utc(now), comment
        row.evidence, row.message_id = json.dumps(list(evidence), ensure_ascii=False), message_id
        self.s.add(row)
        self.s.flush()

    def supersede(self, ticket_id: int, stage: int, now: datetime) -> int:
        """The stage's approvers still pending become `superseded` (the stage is decided
        without them); how many."""
        rows = self.s.exec(select(m.ApprovalVote).where(m.ApprovalVote.ticket_id == ticket_id,
                                                        m.ApprovalVote.stage == stage,
                                                        m.ApprovalVote.status == "pending")).all()
        for row in rows:
            row.status, row.decided_at = "superseded", to_utc(now)
            row.evidence = json.dumps(["the stage was decided before this approver answered"])
            self.s.add(row)
        self.s.flush()
        return len(rows)

    def reminded(self, ticket_id: int, stage: int, approver: str, now: datetime) -> None:
        row = self._vote_row(ticket_id, stage, approver)
        row.reminded_at = to_utc(now)
        self.s.add(row)

    def warnings_since(self, email: str, since: datetime) -> int:
        """Warnings about mail in this approver's name planned since then (their hourly cap)."""
        return self.s.exec(select(func.count()).select_from(m.OutboxRecipient)
                           .join(m.Outbox, m.Outbox.id == m.OutboxRecipient.outbox_id)
                           .where(m.OutboxRecipient.email == email.lower(), m.Outbox.kind == "approval_alert",
                                  m.OutboxRecipient.planned_at >= to_utc(since))).one()

    def description(self, ticket_id: int, limit: int = 4000) -> str:
        """The change's first message text (what the requester asked for), cut at `limit`."""
        text = self.s.exec(select(m.Message.text).where(m.Message.ticket_id == ticket_id)
                           .order_by(m.Message.id).limit(1)).first()
        return (text or "")[:limit]

    def service_of(self, ticket_id: int) -> str | None:
        return service_of(self.s, ticket_id)


class ApprovalStore:
    """Reads outside a ticket transaction (the sweep's work lists, `show`)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def to_start(self, after_event: int | None = None, limit: int = 200) -> tuple[list[int], int]:
        """Open change tickets that have no approval yet - among the tickets with events
        after `after_event` (None: all tickets) - and the newest event id when asked."""
        with Session(self.engine) as s:
            top = s.exec(select(func.max(m.Event.id))).one() or 0
            q = (select(m.Ticket.id).outerjoin(m.ChangeApproval, m.ChangeApproval.ticket_id == m.Ticket.id)
                 .where(m.Ticket.type == "change", m.ChangeApproval.ticket_id.is_(None),
                        m.Ticket.status.not_in(("resolved", "closed"))))
            if after_event is not None:
                q = q.where(m.Ticket.id.in_(select(m.Event.ticket_id).where(m.Event.id > after_event)))
            return list(s.exec(q.order_by(m.Ticket.id).limit(limit)).all()), top

    def awaiting(self) -> list[int]:
        with Session(self.engine) as s:
            return list(s.exec(select(m.ChangeApproval.ticket_id)
                               .where(m.ChangeApproval.state == "awaiting-approval")
                               .order_by(m.ChangeApproval.ticket_id)).all())

    def read(self, ticket_id: int) -> ApprovalRow | None:
        with Session(self.engine) as s:
            return read(s, ticket_id)

    def read_many(self, ticket_ids) -> dict[int, ApprovalRow]:
        """The approvals of those tickets that have one (export: a batch at a time)."""
        ids = list(ticket_ids)
        with Session(self.engine) as s:
            have = s.exec(select(m.ChangeApproval.ticket_id).where(m.ChangeApproval.ticket_id.in_(ids))).all()
            return {tid: read(s, tid) for tid in have}
