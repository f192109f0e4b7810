"""The agent desk: the spool worker's agent path (edge glue, like daemon.tasks.Outbound).

For each message after threading, `AgentDesk.process` reads what it claims
(daemon.pipeline.agent.claim_of). Mail with no agent claim returns None and goes on as a
customer's - unless it is the requester replying with a command they may use (`#resolve`).
Otherwise: check the reply token (daemon.tokens), authenticate the sender when a verdict
depends on it (daemon.identity: DKIM or our MTA's Authentication-Results), decide (pure),
and carry the verdict out: store and plan mail through store.tickets in one transaction,
or quarantine with the reason and warn the agent. A DNS temperror raises AuthDeferred:
the worker keeps the mail in the spool and retries (up to `[agents] defer_hours`).

`attach_agents` wires it into a built App (called from daemon.tasks.attach_outbound): the
worker gets the desk and every agent notification gets the agent's reply address.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from daemon import tokens
from daemon.errors import AuthDeferred
from daemon.identity import Auth, Authenticator, AuthPolicy, dns_lookup, load_pinned, pinned_lookup
from daemon.model import Envelope, MailEffects, OutgoingMail, ParsedMessage, ThreadDecision
from daemon.pipeline import agent as plan
from daemon.pipeline.agent_mail import MailKit, Said, agent_mail, customer_reply
from daemon.pipeline.commands import Commands, Refusal, Vocabulary, parse_commands, validate, validate_requester
from daemon.pipeline.strip import strip_reply
from daemon.pipeline.thread import subject_tag
from daemon.rules.declarations import Agent
from store.records import SaveResult
from store.tickets import AgentWrite, TicketStore, since_hour

log = logging.getLogger(__name__)
ATTEMPTS = frozenset({"unexpected-sender", "token-invalid", "unauthenticated", "other-agent", "reply-to-agent",
                      "display-name", "token-flood"})


@dataclass(frozen=True)
class AgentSettings:
    """[agents] in config, besides the authentication policy."""

    token_days: int = 30
    retry_seconds: float = 60.0
    defer_hours: float = 24.0
    requester_commands: tuple[str, ...] = ("resolve",)
    max_warnings_per_hour: int = 5
    max_bad_tokens_per_hour: int = 20


class Flood:
    """Invalid reply tokens per source (client IP, else From) in a sliding hour."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic):
        self.limit, self.clock = limit, clock
        self.seen: dict[str, deque] = {}
        self.lock = threading.Lock()

    def over(self, source: str) -> bool:
        with self.lock:
            q = self.seen.get(source)
            now = self.clock()
            while q and q[0] < now - 3600:
                q.popleft()
            return bool(q) and len(q) >= self.limit

    def count(self, source: str) -> None:
        with self.lock:
            if len(self.seen) > 10_000:
                self.seen.clear()
            self.seen.setdefault(source, deque()).append(self.clock())


class AgentDesk:
    """See module docstring."""

    def __init__(self, settings: AgentSettings, store, outbound, authenticator: Authenticator,
                 rules: Callable[[], Any], clock: Callable[[], datetime]):
        self.settings, self.outbound, self.auth, self.rules, self.clock = \
            settings, outbound, authenticator, rules, clock
        self.desk, self.ring = outbound.desk, outbound.ring
        self.tickets = TicketStore(store, outbound.desk.prefix)
        self.flood = Flood(settings.max_bad_tokens_per_hour)

    def reply_token(self, ticket_id: int, email: str, *, comment: bool = False) -> str:
        expires = (self.clock() + timedelta(days=self.settings.token_days)).date()
        return tokens.reply_token(self.ring, ticket_id, email, expires, comment=comment)

    # ------------------------------------------------------------------ the path
    def process(self, msg: ParsedMessage, envelope: Envelope, raw: bytes, decision: ThreadDecision,
                now: datetime) -> SaveResult | None:
        """Handle `msg` if it is agent mail (or a requester's command); None otherwise."""
        rules = self.rules()
        if rules is None or msg.machine.kind in ("loop", "bounce"):
            return None
        roster = plan.roster_of(rules.queues)
        claim = plan.claim_of(msg, envelope, roster, self.desk.address)
        if not claim.agent_path:
            return self._requester(msg, envelope, raw, decision, now) if self._may_command(msg, decision) else None
        check = tokens.check_reply_token(self.ring, claim.details[0], now.date()) if claim.details else None
        if check is not None and check.status == "invalid":
            source = envelope.peer or (msg.from_addr.email.lower() if msg.from_addr else "?")
            if self.flood.over(source):          # guessing tokens: no more work, no more warnings
                verdict = plan.Verdict("quarantine", "token-flood", evidence=(f"source {source}",))
                return self._quarantine(verdict, msg, envelope, raw, now, None)
            self.flood.count(source)
            if self.flood.over(source):
                log.warning("ALERT %d invalid reply addresses from %s within an hour; further ones are "
                            "quarantined as token-flood", self.settings.max_bad_tokens_per_hour, source)
        ticket = self.tickets.state(self._ticket_id(msg, check, decision))
        auth = self._authenticate(raw, msg, claim, check, roster)
        verdict = plan.decide(msg, claim, check, auth, ticket, decision, roster, can_defer=self._can_defer(envelope))
        log.info("agent path message_id=<%s> ticket=%s verdict=%s reason=%s agent=%s", msg.message_id,
                 verdict.ticket_id, verdict.kind, verdict.reason, verdict.agent.email if verdict.agent else "-")
        if verdict.kind == "none":
            return None
        if verdict.kind == "defer":
            raise AuthDeferred(f"agent mail <{msg.message_id}>: {'; '.join(verdict.evidence)[:300]}")
        if verdict.kind == "quarantine":
            return self._quarantine(verdict, msg, envelope, raw, now, ticket)
        return self._record(verdict, msg, envelope, raw, now, ticket, rules)

    def _ticket_id(self, msg: ParsedMessage, check, decision: ThreadDecision) -> int | None:
        if check is not None:
            return check.tag.ticket_id if check.tag else None
        return plan.note_ticket(decision, subject_tag(msg.subject, self.desk.prefix))

    def _authenticate(self, raw: bytes, msg: ParsedMessage, claim: plan.Claim, check, roster) -> Auth | None:
        """Only when a verdict depends on it (DKIM may cost a DNS query)."""
        if claim.from_agent is None or claim.display_agent is not None or not msg.machine.is_human:
            return None
        if check is not None and (check.status != "valid" or
                                  plan.token_agent(check, roster, claim.from_agent.email) != claim.from_agent):
            return None
        return self.auth.authenticate(raw)

    def _can_defer(self, envelope: Envelope) -> bool:
        try:
            arrived = datetime.fromisoformat(envelope.received_at)
        except (TypeError, ValueError):
            return True
        arrived = arrived if arrived.tzinfo else arrived.replace(tzinfo=timezone.utc)
        return self.clock() - arrived < timedelta(hours=self.settings.defer_hours)

    # ------------------------------------------------------------------ carrying it out
    def _record(self, verdict: plan.Verdict, msg, envelope, raw, now, ticket: plan.TicketState, rules):
        text = strip_reply(msg.text)
        agent = verdict.agent
        vocab = Vocabulary(frozenset(rules.queues), frozenset(rules.types), frozenset(rules.tags),
                           frozenset(plan.roster_of(rules.queues)), tuple(rules.matrix.levels), self.desk.prefix)
        parsed = parse_commands(text)
        evidence = verdict.evidence
        if verdict.kind in ("unverified", "machine"):
            write = AgentWrite(ticket.id, "in", "internal", verdict.kind, agent.email if agent else "",
                               verdict.why, text, evidence=evidence)
            return self.tickets.record(msg, envelope, raw, _sha(raw), write, now,
                                       self._mail_plan(verdict, msg, ticket, None, now, rules))
        if verdict.kind == "note":
            cmds = Commands((), tuple(Refusal(line, "commands need the ticket's reply address (answer a ticket "
                                                    "mail); not run") for line, _, _ in parsed.lines), parsed.body)
        elif not plan.has_rights(agent, ticket, rules.queues):
            verdict = plan.Verdict("norights", "no rights on the ticket", ticket.id, agent, evidence=evidence)
            cmds = Commands((), tuple(Refusal(line, f"you are not an agent of queue {ticket.queue} nor the "
                                                    "assignee; not run") for line, _, _ in parsed.lines), parsed.body)
        else:
            cmds = validate(parsed, vocab, sender=agent.email, ticket_id=ticket.id)
        public = verdict.kind == "act" and not (verdict.comment or cmds.note) and bool(cmds.body.strip())
        kind = {"act": "acted"}.get(verdict.kind, verdict.kind)
        status = None
        if public:
            status = "pending" if cmds.status() == "pending" else "open"
        write = AgentWrite(ticket.id, "out" if public else "in", "public" if public else "internal", kind,
                           agent.email, verdict.why, cmds.body if cmds.body.strip() else text,
                           cmds.commands, status, evidence)
        return self.tickets.record(msg, envelope, raw, _sha(raw), write, now,
                                   self._mail_plan(verdict, msg, ticket, (cmds, public), now, rules))

    def _mail_plan(self, verdict: plan.Verdict, msg: ParsedMessage, ticket: plan.TicketState, acted, now, rules):
        templates = self.outbound.templates.current
        kit = MailKit(self.desk, templates, self.ring, now, self.outbound.random, self.reply_token)
        said = Said(msg.from_addr.name if msg.from_addr else "", msg.from_addr.email if msg.from_addr else "",
                    msg.subject, "", msg.date)
        cc_note = None
        recipients: tuple[str, ...] = ()
        if acted is not None and acted[1]:
            recipients, cc_note = self._customers(ticket)
        thread = self.tickets.thread_ids(ticket.id) if acted is not None and acted[1] else ()

        def mail_plan(results, trow, ledger) -> MailEffects:
            queue = rules.queues.get(trow.queue)
            qinfo = {"name": trow.queue, "description": queue.description if queue else ""}
            out: list[OutgoingMail] = []
            held: list[str] = []
            build = _Builder(kit, trow, qinfo, out, held)
            if verdict.kind in ("unverified",) and verdict.warn and msg.machine.is_human:
                self._warn(build, ledger, verdict, msg, now)
            if acted is None:
                return MailEffects(mails=tuple(out), suppressed=tuple(held))
            cmds, public = acted
            body = Said(said.from_name, said.from_email, msg.subject, cmds.body, msg.date)
            if public:
                build.add(lambda: customer_reply(kit, trow, verdict.agent, body, recipients, thread, qinfo))
            elif (verdict.comment or cmds.note or verdict.kind == "note") and cmds.body.strip():
                for other in self._colleagues(trow, verdict.agent, rules, ledger, now, held):
                    build.add(lambda o=other: agent_mail(kit, "agent_note", "note", o, trow, body, qinfo, {},
                                                         f"[{self.desk.prefix}-{trow.id}] Note: {trow.subject}"))
            if cmds.written or cc_note:
                extra = {"results": [{"command": r.command, "ok": r.ok, "detail": r.detail} for r in results]
                         + [{"command": f.line, "ok": False, "detail": f.reason} for f in cmds.refused],
                         "answered": public, "notes": [cc_note] if cc_note else []}
                build.add(lambda: agent_mail(kit, "agent_confirm", "confirm", verdict.agent, trow, body, qinfo, extra,
                                             f"[{self.desk.prefix}-{trow.id}] Commands: {trow.subject}"))
            return MailEffects(mails=tuple(out), suppressed=tuple(held))
        return mail_plan

    def _customers(self, ticket: plan.TicketState) -> tuple[tuple[str, ...], str | None]:
        """The requester, and the Cc participants only when the mail that named them was
        authenticated as the requester (reliability F66: never from unauthenticated Cc)."""
        ccs = tuple(c for c in self.tickets.cc_participants(ticket.id) if c not in self.desk.own)
        if not ccs:
            return (ticket.requester,), None
        opening = self.tickets.opening_raw(ticket.id)
        auth = self.auth.authenticate(opening) if opening else Auth("none")
        if auth.passed and auth.address == ticket.requester.lower():
            return (ticket.requester, *ccs), None
        return (ticket.requester,), (f"not sent to the Cc participant(s) {', '.join(ccs)}: the mail that named "
                                     f"them was not authenticated ({auth.result})")

    def _colleagues(self, trow, sender: Agent, rules, ledger, now, held: list) -> list[Agent]:
        queue = rules.queues.get(trow.queue)
        pool = list(queue.agents if queue else ())
        roster = plan.roster_of(rules.queues)
        if trow.assignee and trow.assignee.lower() not in {a.email for a in pool}:
            pool.append(roster.get(trow.assignee.lower(), Agent(trow.assignee.lower(), "", "agent")))
        emails = [a.email for a in pool if a.email != sender.email]
        history = ledger.history(trow.id, emails, "", now)
        out = []
        for a in pool:
            if a.email == sender.email or a.email in self.desk.own or a in out:
                continue
            if a.email in history.bouncing or history.sent_hour(a.email) >= self.outbound.fuses.agent_hour:
                held.append(f"note to {a.email} held back (bouncing or hourly cap)")
                continue
            out.append(a)
        return out

    def _warn(self, build: "_Builder", ledger, verdict: plan.Verdict, msg: ParsedMessage, now: datetime) -> None:
        agent = verdict.warn
        if ledger.alerts_since(agent.email, since_hour(now)) >= self.settings.max_warnings_per_hour:
            build.held.append(f"warning to {agent.email} held back: {self.settings.max_warnings_per_hour} per hour")
            return
        extra = {"rejection": {"reason": verdict.why, "attempt": verdict.reason in ATTEMPTS,
                               "from": str(msg.from_addr) if msg.from_addr else "(none)",
                               "subject": msg.subject[:200], "message_id": msg.message_id,
                               "evidence": list(verdict.evidence)[:5]}}
        tid = build.ticket.id if build.ticket is not None else 0
        subject = (f"[{self.desk.prefix}-{tid}] " if tid else "") + "Mail in your name not accepted"
        build.add(lambda: agent_mail(build.kit, "agent_alert", "rejected", agent, build.ticket, None, build.queue,
                                     extra, subject))

    def _quarantine(self, verdict: plan.Verdict, msg, envelope, raw, now, ticket) -> SaveResult:
        detail = f"{verdict.why}; " + "; ".join(verdict.evidence)
        templates = self.outbound.templates.current
        kit = MailKit(self.desk, templates, self.ring, now, self.outbound.random, self.reply_token)
        rules = self.rules()
        queue = rules.queues.get(ticket.queue) if ticket is not None and rules is not None else None
        qinfo = {"name": ticket.queue if ticket else "", "description": queue.description if queue else ""}

        def warn_plan(ledger) -> MailEffects:
            out: list[OutgoingMail] = []
            held: list[str] = []
            if verdict.warn is not None and msg.machine.is_human:
                self._warn(_Builder(kit, ticket, qinfo, out, held), ledger, verdict, msg, now)
            return MailEffects(mails=tuple(out), suppressed=tuple(held))
        result = self.tickets.quarantine(raw, _sha(raw), envelope, f"agent: {verdict.reason}", detail, now,
                                         str(msg.from_addr or "")[:500], msg.subject[:500], warn_plan)
        log.warning("quarantined agent-path mail message_id=<%s> ticket=%s: %s", msg.message_id,
                    verdict.ticket_id, detail[:300])
        return result

    # ------------------------------------------------------------------ requesters
    def may_handle(self, msg: ParsedMessage, envelope: Envelope, decision: ThreadDecision) -> bool:
        """Whether `process` could act on `msg`, decided from the message alone (no store
        reads): False means `process` returns None. The batch worker hands such mail to
        the one-at-a-time path, after committing what came before it."""
        rules = self.rules()
        if rules is None or msg.machine.kind in ("loop", "bounce"):
            return False
        if plan.claim_of(msg, envelope, plan.roster_of(rules.queues), self.desk.address).agent_path:
            return True
        return self._may_command(msg, decision)

    def _may_command(self, msg: ParsedMessage, decision: ThreadDecision) -> bool:
        """A requester's mail that could carry commands for its ticket."""
        return bool(self.settings.requester_commands) and decision.action in ("append", "reopen") \
            and msg.machine.is_human and bool(parse_commands(strip_reply(msg.text)).lines)

    def _requester(self, msg, envelope, raw, decision: ThreadDecision, now) -> SaveResult | None:
        allowed = self.settings.requester_commands
        text = strip_reply(msg.text)
        parsed = parse_commands(text)
        ticket = self.tickets.state(decision.ticket_id)
        sender = msg.from_addr.email.lower() if msg.from_addr else ""
        if ticket is None or sender != (ticket.requester or "").lower():
            return None
        cmds = validate_requester(parsed, allowed)
        if not cmds.commands:
            return None
        write = AgentWrite(ticket.id, "in", "public", "requester", "", "requester command", cmds.body or text,
                           cmds.commands, evidence=(f"From {sender} is the ticket's requester",))
        status_plan = self.outbound.plan_status(now)

        def mail_plan(results, trow, ledger) -> MailEffects:
            resolved = trow.status == "resolved" and ticket.status != "resolved"
            return status_plan("resolved", trow, ledger) if resolved else MailEffects()
        return self.tickets.record(msg, envelope, raw, _sha(raw), write, now, mail_plan)


@dataclass
class _Builder:
    """Collects built mails; a mail that cannot be built is named, not fatal."""

    kit: MailKit
    ticket: Any
    queue: dict
    mails: list
    held: list

    def add(self, make: Callable[[], OutgoingMail]) -> None:
        try:
            self.mails.append(make())
        except Exception as exc:               # noqa: BLE001 - one bad mail must not block the ticket
            self.held.append(f"not built: {exc.__class__.__name__}: {exc}")
            log.error("ticket=%s agent mail not built: %s", getattr(self.ticket, "id", None), exc)


def _sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


# ---------------------------------------------------------------------- wiring
def build_authenticator(cfg) -> Authenticator:
    a = cfg.agents
    policy = AuthPolicy(a.auth, dict(a.domains), frozenset(i.lower() for i in a.authserv_ids), a.authres_count,
                        a.dkim_min_key_bits, a.dns_timeout_seconds)
    lookup = dns_lookup(a.dns_timeout_seconds)
    if a.dkim_keys_file:
        lookup = pinned_lookup(load_pinned(a.dkim_keys_file), lookup)
    return Authenticator(policy, lookup)


def attach_agents(app, outbound, clock: Callable[[], datetime]) -> AgentDesk:
    """Give the App's worker the agent path and agent notifications their reply address."""
    cfg = app.config
    a = cfg.agents
    settings = AgentSettings(a.token_days, a.dns_retry_seconds, a.defer_hours, tuple(a.requester_commands),
                             a.max_warnings_per_hour, a.max_bad_tokens_per_hour)
    desk = AgentDesk(settings, app.store, outbound, build_authenticator(cfg), outbound.rules, clock)
    outbound.reply_token = desk.reply_token
    app.worker.agents = desk
    app.worker.settings = replace(app.worker.settings, auth_retry_seconds=a.dns_retry_seconds)
    return desk
