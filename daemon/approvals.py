"""Change approval by mail (edge): starts approvals, reminds, expires, and records approvers' replies.

  sweep   every [queue] sweep_seconds (a thread in `serve`, next to the SLA sweep): each open
          ticket of type `change` without an approval gets one - the policy of its service,
          else its queue, else approvals.yaml's default (daemon.pipeline.approvals.plan_for),
          frozen into the row - and every approver of the first stage an approval request
          with a signed reply address (daemon.pipeline.tokens.approval_token: the agents'
          token format with the approval flag). Pending approvers past `remind_after` get one
          reminder; a stage still open `expire_after` after it started expires the change. A
          change with no policy at all is approved at once, with that reason as its event.
  reply   the spool worker's path for mail to an approval reply address (`ApprovalGate`
          wraps the agent desk): outside the write transaction the token is checked and the
          sender authenticated (daemon.identity, the agents' DKIM / Authentication-Results
          policy); inside, the reply is stored as an internal message of the change and
          decides only when the From is the approver the token was made for, authenticated
          as that address, on a change still awaiting this approver. Its text must start with
          `approve` or `reject`; anything else, a second answer or a late one gets a mail
          explaining why nothing was recorded. Unauthenticated or strangers' mail never counts
          (stored or quarantined, with the evidence in an `approval_refused` event).

Every decision is an `approval` event: who, when, what, the comment, the stage and the
authentication evidence. When a stage is decided (its quorum reached, or no longer
reachable) the approvers of that stage who had not answered are `superseded`: no longer
asked, never reminded. The outcome (approved, rejected, expired) is an `approval_outcome`
event, a mail to the requester (`requester/change-outcome`) and one to the change's owner -
its assignee, else its queue's agents (`agent/change-outcome`, with their reply address).
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from daemon.approval_plan import approval_vars, plan_json, stage_of, timer_due
from daemon.approval_rules import LiveApprovals
from daemon.clock import stamp, utcnow
from daemon.identity import Authenticator
from daemon.model import Agent, Auth, Envelope, MailEffects, ParsedMessage
from daemon.pipeline import tokens
from daemon.pipeline.agent import plus_details, roster_of
from daemon.pipeline.agent_mail import MailKit, agent_mail
from daemon.pipeline.approval_mail import ApprovalKit, outcome_mail, refused_mail, request_mail
from daemon.pipeline.commands import Named
from daemon.pipeline.approvals import Decision, Refusal, Vote, plan_for, read_decision, tally
from daemon.pipeline.notify import Desk
from daemon.pipeline.strip import strip_reply
from daemon.agent_notices import Handled
from store.approvals_store import ApprovalRow, ApprovalStore, ApprovalTx
from store.records import SaveResult
from store.sla_store import SlaStore, SlaTx
from store.tickets import AgentWrite

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApprovalPrelude:
    """What is known of a reply to an approval address before the transaction."""

    check: tokens.ReplyCheck
    auth: Auth | None
    text: str


class Approvals:
    """See module docstring."""

    def __init__(self, desk: Desk, engine, live: LiveApprovals, rules: Callable[[], Any], templates, ring,
                 auth: Authenticator, *, clock: Callable[[], datetime] = utcnow,
                 enqueue_mail: Callable[[int], Any] = lambda i: None, random: Callable[[int], bytes] = os.urandom,
                 token_days: int = 30, defer_hours: float = 24.0, max_warnings_per_hour: int = 5,
                 reply_token: Callable[[int, str], str | None] | None = None):
        self.desk, self.live, self.rules, self.templates, self.ring, self.auth = desk, live, rules, templates, ring, auth
        self.reply_token = reply_token                     # agents' signed reply addresses (the owner's notice)
        self.clock, self.enqueue_mail, self.random = clock, enqueue_mail, random
        self.token_days, self.defer_hours, self.max_warnings = token_days, defer_hours, max_warnings_per_hour
        self.store, self.tx_store = ApprovalStore(engine), SlaStore(engine)
        self._seen: tuple[int, int] | None = None          # event ids (low, high): the last two sweeps'

    def token(self, ticket_id: int, email: str, now: datetime) -> str:
        return tokens.approval_token(self.ring, ticket_id, email, (now + timedelta(days=self.token_days)).date())

    def _kit(self, now: datetime) -> ApprovalKit:
        return ApprovalKit(self.desk, self.templates.current, self.ring, now, self.random)

    def _queue(self, name: str) -> dict[str, str]:
        rules = self.rules()
        q = rules.queues.get(name) if rules is not None else None
        return {"name": name, "description": q.description if q else ""}

    # ------------------------------------------------------------------ the sweep
    def sweep(self) -> int:
        """Start, remind and expire what is due; how many changes were looked at. New
        changes are looked for among the tickets with events since the sweep before last
        (a lag of one sweep covers transactions that committed out of id order); the first
        sweep of a process looks at every ticket."""
        done = 0
        try:
            ids, top = self.store.to_start(self._seen[0] if self._seen else None)
            for tid in ids:
                done += self._run(tid, self._start)
            if len(ids) < 200:                       # a full batch: look at the same events again
                self._seen = (self._seen[1] if self._seen else top, top)
            now = self.clock()
            for tid in self.store.awaiting():
                row = self.store.read(tid)
                if row is not None and timer_due(row, now):       # a write transaction only when due
                    done += self._run(tid, self._timers)
        except Exception:                              # the sweeper never dies
            log.exception("approval sweep failed")
        return done

    def _run(self, ticket_id: int, step) -> int:
        now = self.clock()
        try:
            with self.tx_store.transaction() as tx:
                ids = step(tx, ApprovalTx(tx.s), ticket_id, now)
        except Exception as exc:                       # one change must not stop the others
            log.warning("ticket=%s approval step failed: %s", ticket_id, exc)
            return 0
        for i in ids:
            try:
                self.enqueue_mail(i)
            except Exception as exc:                   # the outbox sweep sends it
                log.warning("outbox=%s ticket=%s not enqueued (%s); the sweep will", i, ticket_id, exc)
        return 1

    def _start(self, tx: SlaTx, atx: ApprovalTx, ticket_id: int, now: datetime) -> tuple[int, ...]:
        ticket = tx.ticket(ticket_id, lock=True)
        if ticket is None or ticket.type != "change" or atx.read(ticket_id) is not None:
            return ()
        approvals = self.live.current()
        policy, where = plan_for(approvals, atx.service_of(ticket_id), ticket.queue)
        if policy is None:
            atx.start(ticket_id, "approved", where, {}, now, approvals.version)
            tx.event(ticket_id, now, "approval_outcome", {"outcome": "approved", "why": f"{where}: nothing to approve"})
            log.info("ticket=%s change approved without approvers: %s", ticket_id, where)
            return ()
        atx.start(ticket_id, "awaiting-approval", where, plan_json(policy), now, approvals.version)
        log.info("ticket=%s change awaiting approval (%s, policy %s)", ticket_id, where, policy.name)
        return self._ask(tx, atx, ticket, 1, now, where)

    def _ask(self, tx: SlaTx, atx: ApprovalTx, ticket, stage: int, now: datetime, where: str = "") -> tuple[int, ...]:
        row = atx.read(ticket.id)
        people = stage_of(row.plan, stage).approvers
        atx.ask(ticket.id, stage, [a.email for a in people], now)
        row = atx.read(ticket.id)
        tx.event(ticket.id, now, "approval_requested", {"stage": stage, "approvers": [a.email for a in people],
                                                        "quorum": stage_of(row.plan, stage).quorum_text,
                                                        "policy": where or row.policy})
        kit, queue = self._kit(now), self._queue(ticket.queue)
        variables = approval_vars(row, description=atx.description(ticket.id))
        mails, held = [], []
        for a in people:
            try:
                mails.append(request_mail(kit, ticket, queue, variables, (a.email, a.name),
                                          self.token(ticket.id, a.email, now)))
            except Exception as exc:                   # noqa: BLE001 - one bad address must not stop the rest
                held.append(f"approval request to {a.email} not built: {exc}")
        return tx.mail(MailEffects(mails=tuple(mails), suppressed=tuple(held)), ticket.id, now).outbox_ids

    def _timers(self, tx: SlaTx, atx: ApprovalTx, ticket_id: int, now: datetime) -> tuple[int, ...]:
        ticket, row = tx.ticket(ticket_id, lock=True), atx.read(ticket_id)
        if ticket is None or row is None or row.state != "awaiting-approval":
            return ()
        if now >= row.stage_started_at + timedelta(seconds=row.plan["expire_after"]):
            for v in row.stage_votes():
                if v.status == "pending":
                    atx.vote(ticket_id, row.stage, v.approver, "expired", now, evidence=("no answer in time",))
            return self._outcome(tx, atx, ticket, "expired", now, f"stage {row.stage} not decided by "
                                 f"{stamp(row.stage_started_at + timedelta(seconds=row.plan['expire_after']))}")
        remind = timedelta(seconds=row.plan["remind_after"])
        kit, queue = self._kit(now), self._queue(ticket.queue)
        variables = approval_vars(row, description=atx.description(ticket_id))
        names = {a.email: a.name for a in stage_of(row.plan, row.stage).approvers}
        mails = []
        for v in row.stage_votes():
            if v.status == "pending" and v.reminded_at is None and now >= v.requested_at + remind:
                atx.reminded(ticket_id, row.stage, v.approver, now)
                tx.event(ticket_id, now, "approval_reminded", {"stage": row.stage, "approver": v.approver})
                mails.append(request_mail(kit, ticket, queue, variables, (v.approver, names.get(v.approver, "")),
                                          self.token(ticket_id, v.approver, now), reminder=True))
        return tx.mail(MailEffects(mails=tuple(mails)), ticket_id, now).outbox_ids if mails else ()

    def _outcome(self, tx: SlaTx, atx: ApprovalTx, ticket, outcome: str, now: datetime, why: str) -> tuple[int, ...]:
        atx.decide(ticket.id, outcome, now)
        tx.event(ticket.id, now, "approval_outcome", {"outcome": outcome, "why": why})
        log.info("ticket=%s change %s: %s", ticket.id, outcome, why)
        row = atx.read(ticket.id)
        variables = approval_vars(row, outcome=outcome, reason=why)
        mails, held = [], []
        try:
            mails.append(outcome_mail(self._kit(now), ticket, self._queue(ticket.queue), variables))
        except Exception as exc:                       # noqa: BLE001 - the decision stands without the mail
            held.append(f"outcome mail not built: {exc}")
        kit = MailKit(self.desk, self.templates.current, self.ring, now, self.random, self.reply_token)
        subject = f"[{self.desk.prefix}-{ticket.id}] Change {outcome}: {ticket.subject}"
        for agent in self._owners(ticket):
            try:
                mails.append(agent_mail(kit, "change_outcome_agent", "change-outcome", agent, ticket, None,
                                        self._queue(ticket.queue), {"approval": variables}, subject))
            except Exception as exc:                   # noqa: BLE001 - one bad address must not stop the rest
                held.append(f"outcome notice to {agent.email} not built: {exc}")
        return tx.mail(MailEffects(mails=tuple(mails), suppressed=tuple(held)), ticket.id, now).outbox_ids

    def _owners(self, ticket) -> list[Agent]:
        """Who implements the change: its assignee, else its queue's agents (not the
        requester, who has their own mail, nor our own addresses)."""
        rules = self.rules()
        queues = rules.queues if rules is not None else {}
        if ticket.assignee:
            email = ticket.assignee.lower()
            people = [roster_of(queues).get(email, Agent(email, "", "agent"))]
        else:
            queue = queues.get(ticket.queue)
            people = list(queue.agents) if queue is not None else []
        skip = self.desk.own | {(ticket.requester or "").lower()}
        return list({a.email: a for a in people if a.email not in skip}.values())

    # ------------------------------------------------------------------ replies: before the transaction
    def prelude(self, msg: ParsedMessage, envelope: Envelope, raw: bytes) -> ApprovalPrelude | None:
        """An ApprovalPrelude when the mail goes to an approval reply address, else None."""
        if msg.machine.kind in ("loop", "bounce"):
            return None
        today = self.clock().date()
        for detail in plus_details(msg, envelope, self.desk.address):
            check = tokens.check_approval_token(self.ring, detail, today)
            if check.status == "invalid":
                continue
            sender = msg.from_addr.email.lower() if msg.from_addr else ""
            ours = tokens.principal_id(sender) == check.tag.principal if sender else False
            auth = self.auth.authenticate(raw) if ours and msg.machine.is_human else None
            return ApprovalPrelude(check, auth, strip_reply(msg.text))
        return None

    # ------------------------------------------------------------------ replies: inside the transaction
    def reply(self, tx, msg: ParsedMessage, envelope: Envelope, raw: bytes, pre: ApprovalPrelude,
              now: datetime) -> Handled:
        """Record (or refuse) one approver's reply in the worker's write transaction."""
        tid = pre.check.tag.ticket_id
        atx, stx = ApprovalTx(tx.s), SlaTx(tx.s)
        row, ticket = atx.read(tid), tx.ticket(tid)
        approver = next((v.approver for v in (row.votes if row else ())
                         if tokens.principal_id(v.approver) == pre.check.tag.principal), None)
        sender = msg.from_addr.email.lower() if msg.from_addr else ""
        if row is None or ticket is None or approver is None:
            return self._quarantine(tx, stx, msg, envelope, raw, now, ticket, "unknown-approver",
                                    f"the approval address names no approver of change {tid}")
        if sender != approver:
            why = f"approval address of {approver}, From {sender or '(none)'}"
            handled = self._quarantine(tx, stx, msg, envelope, raw, now, ticket, "unexpected-sender", why)
            ids = self._warn(stx, atx, row, ticket, approver, msg, f"a reply to your approval address came from "
                             f"{sender or '(no address)'}, not from you", now)
            return Handled(handled.kind, handled.result, ids, reason=handled.reason)
        auth = pre.auth
        if msg.machine.is_human and auth is not None and auth.result == "temperror" and self._can_defer(envelope):
            return Handled("deferred", reason=f"approval reply <{msg.message_id}>: {'; '.join(auth.evidence)[:300]}")
        verified = auth is not None and auth.passed and auth.address == approver
        evidence = auth.evidence if auth is not None else ("not authenticated",)
        verdict = "approval" if verified and msg.machine.is_human else "approval-unverified"
        write = AgentWrite(tid, "in", "internal", verdict, approver, "approver's reply", pre.text or msg.text,
                           evidence=tuple(evidence))
        done = tx.record_agent(msg, envelope, raw, _sha(raw), write, now, self.desk.prefix)
        if done.result.outcome == "duplicate":
            return Handled("recorded", done.result)
        if verdict != "approval":
            why = "an automatic reply" if not msg.machine.is_human else "the sender is not authenticated as " \
                  "the approver (no DKIM/DMARC pass)"
            stx.event(tid, now, "approval_refused", {"approver": approver, "from": sender, "why": why,
                                                     "auth": _auth(auth), "message_id": msg.message_id})
            log.warning("ticket=%s approval reply from %s not counted: %s", tid, sender, why)
            ids = self._warn(stx, atx, row, done.ticket, approver, msg, f"a reply in your name was not "
                             f"counted: {why}", now) if msg.machine.is_human else ()
            return Handled("recorded", done.result, ids)
        ids = self._decide(tx, stx, atx, row, done.ticket, approver, msg, pre, auth, now)
        return Handled("recorded", done.result, ids)

    def _decide(self, tx, stx: SlaTx, atx: ApprovalTx, row: ApprovalRow, ticket, approver: str, msg, pre,
                auth: Auth, now: datetime) -> tuple[int, ...]:
        mine = next((v for v in row.stage_votes() if v.approver == approver), None)
        said = read_decision(pre.text)
        if pre.check.status == "expired":
            said = Refusal(f"the approval address expired on {pre.check.tag.expires.isoformat()}")
        elif row.state != "awaiting-approval":
            said = Refusal(f"the change is already {row.state}; nothing was recorded")
        elif mine is None and (gone := next((v for v in row.votes if v.approver == approver
                                             and v.status == "superseded"), None)) is not None:
            said = Refusal(f"stage {gone.stage} of this change was decided before your answer; nothing was recorded")
        elif mine is None:
            said = Refusal(f"you are not asked in stage {row.stage} of this change")
        elif mine.status != "pending":
            said = Refusal(f"you already answered this change ({mine.status}); a decision cannot be changed by mail")
        if isinstance(said, Refusal):
            stx.event(ticket.id, now, "approval_refused", {"approver": approver, "why": said.reason,
                                                           "auth": _auth(auth), "message_id": msg.message_id})
            mail = refused_mail(self._kit(now), ticket, self._queue(ticket.queue),
                                approval_vars(row, reason=said.reason), (approver, ""),
                                self.token(ticket.id, approver, now) if row.state == "awaiting-approval" else None)
            return stx.mail(MailEffects(mails=(mail,)), ticket.id, now).outbox_ids
        return self._count(stx, atx, row, ticket, approver, said, msg, auth, now)

    def _count(self, stx: SlaTx, atx: ApprovalTx, row: ApprovalRow, ticket, approver: str, said: Decision, msg,
               auth: Auth, now: datetime) -> tuple[int, ...]:
        status = "approved" if said.kind == "approve" else "rejected"
        atx.vote(ticket.id, row.stage, approver, status, now, said.comment, tuple(auth.evidence), msg.message_id)
        stx.event(ticket.id, now, "approval", {"approver": approver, "decision": status, "comment": said.comment,
                                               "stage": row.stage, "at": now.astimezone(timezone.utc).isoformat(),
                                               "auth": _auth(auth), "message_id": msg.message_id})
        log.info("ticket=%s %s by %s (stage %d)", ticket.id, status, approver, row.stage)
        row = atx.read(ticket.id)
        stage = stage_of(row.plan, row.stage)
        result = tally(stage, [Vote(v.approver, v.status) for v in row.stage_votes()])
        if result == "pending":
            return ()
        if atx.supersede(ticket.id, row.stage, now):      # the stage is decided: the others are not needed
            stx.event(ticket.id, now, "approval_superseded", {"stage": row.stage, "result": result, "approvers": [
                v.approver for v in row.stage_votes() if v.status == "pending"]})
        if result == "rejected":
            return self._outcome(stx, atx, ticket, "rejected", now, f"stage {row.stage} ({stage.quorum_text} of "
                                 f"{len(stage.approvers)}) can no longer approve")
        if row.stage < len(row.plan["stages"]):
            atx.next_stage(ticket.id, row.stage + 1, now)
            return self._ask(stx, atx, ticket, row.stage + 1, now)
        return self._outcome(stx, atx, ticket, "approved", now, f"stage {row.stage}: {stage.quorum_text} approved")

    def _warn(self, stx: SlaTx, atx: ApprovalTx, row: ApprovalRow, ticket, approver: str, msg, why: str,
              now: datetime) -> tuple[int, ...]:
        """Tell the approver of a mail in their name that did not count (at most
        max_warnings_per_hour of them)."""
        if atx.warnings_since(approver, now - timedelta(hours=1)) >= self.max_warnings:
            return stx.mail(MailEffects(suppressed=(f"warning to {approver} held back: {self.max_warnings} per "
                                                    f"hour",)), ticket.id, now).outbox_ids
        mail = refused_mail(self._kit(now), ticket, self._queue(ticket.queue), approval_vars(row, reason=why),
                            (approver, ""), None, alert=True)
        return stx.mail(MailEffects(mails=(mail,)), ticket.id, now).outbox_ids

    def _quarantine(self, tx, stx: SlaTx, msg, envelope, raw, now, ticket, reason: str, detail: str) -> Handled:
        qid, _ = tx.quarantine(raw, _sha(raw), envelope, "approval", f"approval: {reason}", detail, now,
                               str(msg.from_addr or "")[:500], msg.subject[:500])
        if ticket is not None:
            stx.event(ticket.id, now, "approval_refused", {"why": detail, "from": str(msg.from_addr or ""),
                                                           "message_id": msg.message_id, "quarantine": qid})
        log.warning("quarantined approval-address mail message_id=<%s>: %s", msg.message_id, detail)
        return Handled("quarantined", SaveResult("quarantined", None, None, f"quarantine:{qid}"), reason=reason)

    def _can_defer(self, envelope: Envelope) -> bool:
        try:
            arrived = datetime.fromisoformat(envelope.received_at)
        except (TypeError, ValueError):
            return True
        arrived = arrived if arrived.tzinfo else arrived.replace(tzinfo=timezone.utc)
        return self.clock() - arrived < timedelta(hours=self.defer_hours)


class ApprovalGate:
    """The agent desk with approval replies taken out first: the spool worker's `agents`."""

    def __init__(self, approvals: Approvals, agents):
        self.approvals, self.agents = approvals, agents

    def prelude(self, msg: ParsedMessage, envelope: Envelope, raw: bytes):
        found = self.approvals.prelude(msg, envelope, raw)
        return found if found is not None else self.agents.prelude(msg, envelope, raw)

    def lock_targets(self, pre):
        """An approval reply changes the ticket its token names (locked first, store.writing)."""
        if isinstance(pre, ApprovalPrelude):
            return Named(frozenset({pre.check.tag.ticket_id}) if pre.check.tag else frozenset())
        return self.agents.lock_targets(pre)

    def handle(self, tx, msg, envelope, raw, decision, pre, now) -> Handled | None:
        if isinstance(pre, ApprovalPrelude):
            return self.approvals.reply(tx, msg, envelope, raw, pre, now)
        return self.agents.handle(tx, msg, envelope, raw, decision, pre, now)


def _auth(auth: Auth | None) -> dict:
    if auth is None:
        return {"result": "none", "method": "", "evidence": ["not authenticated"]}
    return {"result": auth.result, "method": auth.method, "address": auth.address, "evidence": list(auth.evidence)}


def _sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def sweeper(approvals: Approvals, stop: threading.Event, every: float) -> None:
    """The approval sweep loop (a thread in `helpdesk serve`); the first pass at once."""
    approvals.sweep()
    while not stop.wait(every):
        approvals.sweep()
