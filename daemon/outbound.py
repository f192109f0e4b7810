"""The mail side of the spool worker: what mail (and which SLA timers) a stored change causes.

Before threading, `inspect` recognises our own mail coming back (X-Loop, or a Message-ID
with our MAC) and mail to our bounce addresses; `bounce_ref` finds the outbox row a bounce
is about. Inside the worker's write transaction, `plan_message` / `plan_status` read the
rows planning needs from it (the ticket as it now is, its mail history, the SLA inputs),
run the pure planners (daemon.pipeline.notify, daemon.pipeline.sla via the Escalator) and
return the effects; the worker hands them to the transaction (`WriteTx.apply_mail`).
After the commit `after_commit` wakes a sender for the new outbox rows (once: the sender
claims every due row, daemon.delivery) and arms the SLA wake-up; around a committed batch
`one_wake_up` makes that one sender wake-up and at most one SLA wake-up for all of it.
"""
from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator

from daemon import tokens
from daemon.clock import utcnow
from daemon.model import (Agent, BounceMark, Envelope, MachineVerdict, MailEffects, ParsedMessage, Routing,
                          ThreadDecision)
from daemon.pipeline.agent_mail import MailKit, agent_mail
from daemon.csat import Surveys
from daemon.problems import ProblemDesk, combine
from daemon.pipeline.notify import NEW_EVENTS, Desk, Fuses, QueueInfo, Trigger, build_mails, plan_notifications
from store.outbox_sender import OutboundRef
from store.records import TicketRow, Written
from store.writing import Saved

log = logging.getLogger(__name__)


def desk_of(cfg) -> Desk:
    hd = cfg.helpdesk
    return Desk(hd.name, hd.address.lower(), hd.ticket_prefix, frozenset({hd.address.lower()}))


def fuses_of(cfg) -> Fuses:
    loops = cfg.loops
    return Fuses(loops.max_per_recipient_hour, loops.max_per_recipient_day, loops.max_new_tickets_per_sender_hour,
                 loops.max_agent_mails_per_hour, loops.same_notice_days)


def language_of(msg: ParsedMessage) -> str | None:
    """The sender's language: the parser's guess, else the first Content-Language tag."""
    value = msg.language or msg.header("Content-Language") or ""
    primary = value.split(",")[0].strip().split("-")[0].lower()
    return primary if primary.isalpha() and 2 <= len(primary) <= 3 else None


class Outbound:
    """See module docstring. Built once by the composition root (daemon.app)."""

    def __init__(self, store, desk: Desk, fuses: Fuses, templates, ring: tokens.Keyring, *,
                 rules: Callable[[], Any] = lambda: None, sla=None, bounce_days: int = 7,
                 enqueue: Callable[[int], Any] = lambda i: None, clock: Callable[[], datetime] = utcnow,
                 random: Callable[[int], bytes] = os.urandom,
                 reply_token: Callable[..., str | None] | None = None, problems: ProblemDesk | None = None,
                 surveys: Surveys | None = None):
        self.store, self.desk, self.fuses, self.templates, self.ring, self.rules = \
            store, desk, fuses, templates, ring, rules
        self.sla, self.bounce_days, self.enqueue, self.clock, self.random = sla, bounce_days, enqueue, clock, random
        self.reply_token = reply_token
        self.problems: ProblemDesk | None = problems     # what resolving a problem causes, known errors
        self.surveys: Surveys | None = surveys           # satisfaction surveys and their answers
        self.loop_marker = tokens.loop_marker(desk.address)
        self._batch = threading.local()                   # one_wake_up's rows, per thread

    # ------------------------------------------------------------------ before threading
    def inspect(self, msg: ParsedMessage, envelope: Envelope) -> ParsedMessage:
        """Our own mail becomes machine kind `loop`; mail to our bounce addresses a bounce."""
        marker = next((v for k, v in msg.headers if k.lower() == "x-loop" and v.strip().lower() == self.loop_marker),
                      None)
        tag = tokens.read_message_id(self.ring, msg.message_id)
        if marker or tag:
            why = f"X-Loop: {marker}" if marker else f"Message-ID <{msg.message_id}> is ours (MAC verified)"
            return replace(msg, machine=MachineVerdict("loop", (why,) + msg.machine.reasons, msg.machine.dsn,
                                                       suppress_auto_reply=True))
        if msg.machine.kind != "bounce" and self._verp(msg, envelope):
            return replace(msg, machine=MachineVerdict("bounce", ("sent to our bounce address",), msg.machine.dsn,
                                                       suppress_auto_reply=True))
        return msg

    def own_ticket(self, msg: ParsedMessage) -> int | None:
        """The ticket named by our own (MAC-verified) Message-ID on a mail that came back."""
        tag = tokens.read_message_id(self.ring, msg.message_id) if msg.machine.kind == "loop" else None
        return tag.ticket_id if tag else None

    def _verp(self, msg: ParsedMessage, envelope: Envelope) -> bytes | None:
        candidates = (*envelope.rcpt_to, *(a.email for a in msg.to))
        return next((n for n in (tokens.bounce_nonce(self.ring, r, self.desk.address) for r in candidates) if n),
                    None)

    def bounce_ref(self, tx, msg: ParsedMessage, envelope: Envelope) -> OutboundRef | None:
        """The outbox row a bounce is about: by its VERP token, else by a verified original
        Message-ID in the delivery report."""
        nonce = self._verp(msg, envelope)
        if nonce is not None:
            ref = tx.outbox_ref(nonce=nonce.hex())
            if ref is not None:
                return ref
        original = msg.machine.dsn.original_message_id if msg.machine.dsn else None
        if original and tokens.read_message_id(self.ring, original):
            return tx.outbox_ref(message_id=original)
        return None

    # ------------------------------------------------------------------ inside the transaction
    def plan_message(self, tx, msg: ParsedMessage, decision: ThreadDecision, routing: Routing, outcome: str,
                     ticket_id: int | None, now: datetime, ref: OutboundRef | None = None,
                     written: Written | None = None) -> MailEffects:
        """The mail one stored incoming message causes (and its ticket's SLA re-plan).
        `written`: the ticket as the save left it, nothing written since (store.records):
        not read again; one the save created has no plan or problem to read either."""
        if ref is not None:
            dsn = msg.machine.dsn
            return MailEffects(bounces=(BounceMark(ref.id, dsn.recipients if dsn else (),
                                                   dsn.action if dsn else "failed", dsn.status if dsn else "",
                                                   dsn.diagnostic if dsn else "",
                                                   now + timedelta(days=self.bounce_days)),))
        if routing.action != "ticket" or decision.action == "bounce" or ticket_id is None:
            return MailEffects()
        ticket = written.ticket if written is not None else tx.ticket(ticket_id)
        fresh = written.last_event if written is not None and written.created else None
        sla = self.sla.track(tx.sla, ticket, now, routing, fresh=fresh) if self.sla is not None else None
        trigger = Trigger(
            event=outcome, sender=msg.from_addr, human=msg.machine.is_human, ours=msg.machine.kind == "loop",
            no_auto_reply=msg.machine.no_auto_reply or routing.suppress_ack, ack_template=routing.ack_template,
            message_id=None if msg.message_id_synthetic else msg.message_id, subject=msg.subject, text=msg.text,
            received=now, language=language_of(msg), sla=sla,
            known_error=self.problems.known_error(tx, ticket_id)
            if self.problems and outcome in NEW_EVENTS and fresh is None else None)
        return self.effects(tx, trigger, ticket, now)

    def plan_status(self, tx, ticket: TicketRow | None, outcome: str, now: datetime) -> MailEffects:
        """The mail a status change causes (outcome `resolved` sends the resolve notice)."""
        if ticket is None:
            return MailEffects()
        sla = self.sla.track(tx.sla, ticket, now) if self.sla is not None else None
        return self.effects(tx, Trigger(event=outcome, human=False, sla=sla), ticket, now)

    def on_resolved(self, tx, ticket: TicketRow | None, now: datetime) -> MailEffects:
        """Besides the resolve notice, what a ticket becoming resolved causes: a problem's
        incidents resolved and their requesters told (daemon.problems), the satisfaction
        survey (daemon.csat)."""
        if ticket is None:
            return MailEffects()
        done = [self.problems.on_resolved(tx, ticket, now)] if self.problems is not None else []
        done += [self.surveys.on_resolved(tx, ticket, now)] if self.surveys is not None else []
        return combine(*done)

    def effects(self, tx, trigger: Trigger, ticket: TicketRow, now: datetime) -> MailEffects:
        """Read the ticket's mail history, then plan and build (pure)."""
        templates, rules = self.templates.current, self.rules()
        queue = rules.queues.get(ticket.queue) if rules is not None else None
        agents = queue.agents if queue is not None else ()
        recipients = [ticket.requester, *(a.email for a in agents), *([ticket.assignee] if ticket.assignee else [])]
        days = self.fuses.same_notice_days
        history = tx.mail_history(ticket.id, recipients, ticket.requester if trigger.event in NEW_EVENTS else "", now,
                                  notices_since=now - timedelta(days=days) if days else None)
        plan = plan_notifications(ticket, trigger, agents, history, self.desk, self.fuses, now)
        built = build_mails(plan, ticket, trigger, history, self.desk, templates, self.ring,
                            QueueInfo(ticket.queue, queue.description if queue else ""), now, self.random,
                            reply_token=self.reply_token)
        for problem in built.problems:
            log.error("ticket=%s mail not built: %s", ticket.id, problem)
        lang = trigger.language if trigger.event in NEW_EVENTS and trigger.language in templates.languages else None
        return MailEffects(mails=built.mails, alerts=plan.alerts,
                           suppressed=plan.suppressed + tuple(f"not built: {p}" for p in built.problems), language=lang)

    def plan_split(self, tx, ticket_id: int, met: tuple[int, ...], message_id: str, now: datetime) -> MailEffects:
        """The notice to the ticket's agents (queue agents and assignee) that the message
        `message_id` carried thread keys of the tickets `met` too: they were just linked."""
        ticket, rules = tx.ticket(ticket_id), self.rules()
        if ticket is None or not met:
            return MailEffects()
        queue = rules.queues.get(ticket.queue) if rules is not None else None
        agents = list(queue.agents) if queue is not None else []
        if ticket.assignee and all(a.email != ticket.assignee.lower() for a in agents):
            agents.append(Agent(ticket.assignee.lower(), "", "agent"))
        kit = MailKit(self.desk, self.templates.current, self.ring, now, self.random, self.reply_token)
        queue_vars = {"name": ticket.queue, "description": queue.description if queue else ""}
        extra = {"split": {"tickets": [f"{self.desk.prefix}-{t}" for t in met], "message_id": message_id}}
        mails, held = [], []
        for agent in {a.email: a for a in agents}.values():
            try:
                mails.append(agent_mail(kit, "agent_split", "split", agent, ticket, None, queue_vars, extra,
                                        f"[{self.desk.prefix}-{ticket.id}] Linked: one conversation, several tickets"))
            except Exception as exc:          # noqa: BLE001 - one bad mail must not block the ticket
                held.append(f"split notice to {agent.email} not built: {exc.__class__.__name__}: {exc}")
        if not agents:
            held.append(f"split notice: queue {ticket.queue} has no agents")
        log.warning("ticket=%s linked with %s: message_id=<%s> carries thread keys of both", ticket.id,
                    ", ".join(map(str, met)), message_id)
        return MailEffects(mails=tuple(mails), suppressed=tuple(held))

    # ------------------------------------------------------------------ after the commit
    def after_commit(self, ticket_id: int | None, outbox_ids=(), alerts=()) -> None:
        """Enqueue the new outbox rows; log the alerts raised; schedule the next SLA check."""
        for alert in alerts:
            log.warning("ALERT ticket=%s %s (fuse %s)", ticket_id, alert.text, alert.key)
        if outbox_ids:                            # rows are stored as enqueued now; one wake-up for all
            held = getattr(self._batch, "ids", None)
            if held is not None:
                held.extend(outbox_ids)           # the batch wakes the sender once, at its end
            else:
                self._wake(ticket_id, outbox_ids)
        if self.sla is not None:
            self.sla.after_commit(ticket_id)

    def _wake(self, ticket_id: int | None, outbox_ids) -> None:
        try:
            self.enqueue(outbox_ids[0])
        except Exception as exc:                  # the sweep picks them up after the grace period
            log.warning("outbox=%s ticket=%s not enqueued (%s); the sweep will", ",".join(map(str, outbox_ids)),
                        ticket_id, exc)

    @contextmanager
    def one_wake_up(self) -> Iterator[None]:
        """Around the `after_commit`s of one committed batch (the spool worker's): the sender
        is woken once at the end, for every outbox row the batch wrote, and the SLA side
        schedules at most one wake-up (Escalator.one_wake_up)."""
        self._batch.ids = []
        try:
            with self.sla.one_wake_up() if self.sla is not None else nullcontext():
                yield
        finally:
            ids, self._batch.ids = self._batch.ids, None
            if ids:
                self._wake(None, ids)

    def change_status(self, ticket_id: int, status: str, why: str = "") -> Saved:
        """Set a ticket's status in a transaction of its own, with the mail it causes."""
        now = self.clock()
        with self.store.write() as tx:
            outcome = tx.change_status(ticket_id, status, now, why)
            if outcome == "unchanged":
                return Saved("unchanged", ticket_id, None, "")
            ticket = tx.ticket(ticket_id)
            effects = self.plan_status(tx, ticket, outcome, now)
            if outcome == "resolved":
                effects = combine(effects, self.on_resolved(tx, ticket, now))
            applied = tx.apply_mail(effects, ticket_id, now)
            tx.commit()
        self.after_commit(ticket_id, applied.outbox_ids, applied.alerts)
        return Saved(outcome, ticket_id, None, "", outbox_ids=applied.outbox_ids, alerts=applied.alerts)

    def resolve(self, ticket_id: int, why: str = "") -> Saved:
        """Mark a ticket resolved and send the requester the resolve notice."""
        return self.change_status(ticket_id, "resolved", why)
