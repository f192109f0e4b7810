"""The agent desk: the spool worker's agent path.

Per message, `prelude` (outside the write transaction, before any store read) reads what the
mail claims (daemon.pipeline.agent.claim_of), strips the reply and parses its commands once,
checks a reply token (daemon.tokens) and authenticates the sender when a verdict depends on it
(daemon.identity: DKIM or our MTA's Authentication-Results - a DNS query never runs while the
write transaction holds its lock). Inside the transaction `handle` decides (pure) and carries
the verdict out through the worker's `store.writing.WriteTx`: store and plan mail, or
quarantine with the reason and warn the agent. It answers `None` for mail that is not the
agent path after all (it goes on as a customer's), or a `Handled` - `deferred` for a DNS
temperror: the worker keeps the mail in the spool and retries (up to `[agents] defer_hours`).
Mail planning for the path is daemon.agent_notices.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from functools import cached_property
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from daemon import tokens
from daemon.agent_notices import Acted, Handled, Notices  # noqa: F401  (Handled: importable from here)
from daemon.clock import utcnow
from daemon.desk_mail import DeskQueries
from daemon.macros import command_lines, context_of, expand, with_macros
from daemon.identity import Auth, Authenticator, AuthPolicy, dns_lookup, load_pinned, pinned_lookup
from daemon.model import Envelope, MailEffects, ParsedMessage, ThreadDecision
from daemon.pipeline import agent as plan
from daemon.pipeline.commands import Command, Commands, Named, Parsed, Refusal, Vocabulary, named_tickets, \
    parse_commands, validate, validate_requester
from daemon.pipeline.strip import strip_reply
from daemon.pipeline.thread import subject_tag
from daemon.problems import combine
from store.records import SaveResult
from store.tickets import AgentWrite

log = logging.getLogger(__name__)


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


class Prelude:
    """What the agent path knows of a message before any store read (see module docstring):
    the claim, the reply-token check and the sender's authentication; the reply text is
    stripped and its command lines parsed once, when first asked for (a new ticket's mail
    is never stripped)."""

    def __init__(self, body: str, roster: dict, claim: plan.Claim, check: tokens.ReplyCheck | None = None,
                 auth: Auth | None = None, flood: str = ""):
        self.body, self.roster, self.claim, self.check, self.auth = body, roster, claim, check, auth
        self.flood = flood                   # the source, when it sent too many invalid tokens

    @cached_property
    def text(self) -> str:
        return strip_reply(self.body)

    @cached_property
    def parsed(self) -> Parsed:
        return parse_commands(self.text)


class AgentDesk:
    """See module docstring."""

    def __init__(self, settings: AgentSettings, desk, notices: Notices, outbound, authenticator: Authenticator,
                 rules: Callable[[], Any], clock: Callable[[], datetime] = utcnow,
                 macros: Callable[[], Any] | None = None):
        self.settings, self.desk, self.notices, self.outbound = settings, desk, notices, outbound
        self.auth, self.rules, self.clock, self.macros = authenticator, rules, clock, macros
        self.queries = DeskQueries(notices, macros, getattr(outbound, "sla", None))
        self.flood = Flood(settings.max_bad_tokens_per_hour)

    @property
    def ring(self) -> tokens.Keyring:
        return self.notices.ring

    @ring.setter
    def ring(self, ring: tokens.Keyring) -> None:          # a key rotation (tests use it)
        self.notices.ring = self.notices.reply_token.ring = ring

    # ------------------------------------------------------------------ before the transaction
    def prelude(self, msg: ParsedMessage, envelope: Envelope, raw: bytes) -> Prelude | None:
        """None for mail the agent path never handles (our own, bounces; no rules loaded)."""
        rules = self.rules()
        if rules is None or msg.machine.kind in ("loop", "bounce"):
            return None
        roster = plan.roster_of(rules.queues)
        claim = plan.claim_of(msg, envelope, roster, self.desk.address)
        if not claim.agent_path:
            return Prelude(msg.text, roster, claim)
        check = tokens.check_reply_token(self.ring, claim.details[0], self.clock().date()) if claim.details else None
        if check is not None and check.status == "invalid":
            source = envelope.peer or (msg.from_addr.email.lower() if msg.from_addr else "?")
            if self.flood.over(source):          # guessing tokens: no more work, no more warnings
                return Prelude(msg.text, roster, claim, check, None, source)
            self.flood.count(source)
            if self.flood.over(source):
                log.warning("ALERT %d invalid reply addresses from %s within an hour; further ones are "
                            "quarantined as token-flood", self.settings.max_bad_tokens_per_hour, source)
        return Prelude(msg.text, roster, claim, check, self._authenticate(raw, msg, claim, check, roster))

    def _authenticate(self, raw: bytes, msg: ParsedMessage, claim: plan.Claim, check, roster) -> Auth | None:
        """Only when a verdict depends on it (DKIM may cost a DNS query)."""
        if claim.from_agent is None or claim.display_agent is not None or not msg.machine.is_human:
            return None
        if check is not None and (check.status != "valid" or
                                  plan.token_agent(check, roster, claim.from_agent.email) != claim.from_agent):
            return None
        return self.auth.authenticate(raw)

    def lock_targets(self, pre: Prelude | None) -> Named:
        """The tickets an agent-path mail may change that its thread keys need not lead to:
        its reply token's ticket and those its command lines name (a merge's second ticket),
        its macros' command lines included; the write transaction locks them with the rest,
        in the one order (store.writing)."""
        if pre is None or not pre.claim.agent_path or pre.check is None:   # commands need a token
            return Named()
        named = named_tickets(command_lines(pre.parsed, self.macros() if self.macros is not None else None))
        token = {pre.check.tag.ticket_id} if pre.check.tag else set()
        return Named(named.tickets | token, named.merge, named.status)

    # ------------------------------------------------------------------ inside the transaction
    def handle(self, tx, msg: ParsedMessage, envelope: Envelope, raw: bytes, decision: ThreadDecision,
               pre: Prelude | None, now: datetime) -> Handled | None:
        """Carry out the agent path in the worker's transaction; None: a customer's mail."""
        if pre is None:
            return None
        rules = self.rules()
        if not pre.claim.agent_path:
            return self._requester(tx, msg, envelope, raw, decision, pre, now) if self._may_command(msg, decision,
                                                                                                  pre) else None
        reads = tx.agent_reads()
        if pre.flood:
            verdict = plan.Verdict("quarantine", "token-flood", evidence=(f"source {pre.flood}",))
            return self._quarantine(tx, verdict, msg, envelope, raw, now, None, rules)
        answered = self.queries.answer(tx, msg, pre, rules, now) if self.queries is not None else None
        if answered is not None:                 # #help, #mine, #queue to the desk address (daemon.desk_mail)
            return answered
        ticket = reads.state(self._ticket_id(msg, pre.check, decision))
        verdict = plan.decide(msg, pre.claim, pre.check, pre.auth, ticket, decision, pre.roster,
                              can_defer=self._can_defer(envelope))
        log.info("agent path message_id=<%s> ticket=%s verdict=%s reason=%s agent=%s", msg.message_id,
                 verdict.ticket_id, verdict.kind, verdict.reason, verdict.agent.email if verdict.agent else "-")
        if verdict.kind == "none":
            return None
        if verdict.kind == "defer":
            return Handled("deferred", reason=f"agent mail <{msg.message_id}>: {'; '.join(verdict.evidence)[:300]}")
        if verdict.kind == "quarantine":
            return self._quarantine(tx, verdict, msg, envelope, raw, now, ticket, rules)
        return self._record(tx, verdict, msg, envelope, raw, now, ticket, rules, pre)

    def _ticket_id(self, msg: ParsedMessage, check, decision: ThreadDecision) -> int | None:
        if check is not None:
            return check.tag.ticket_id if check.tag else None
        return plan.note_ticket(decision, subject_tag(msg.subject, self.desk.prefix))

    def _can_defer(self, envelope: Envelope) -> bool:
        try:
            arrived = datetime.fromisoformat(envelope.received_at)
        except (TypeError, ValueError):
            return True
        arrived = arrived if arrived.tzinfo else arrived.replace(tzinfo=timezone.utc)
        return self.clock() - arrived < timedelta(hours=self.settings.defer_hours)

    # ------------------------------------------------------------------ carrying it out
    def _commands(self, verdict: plan.Verdict, ticket: plan.TicketState, rules, pre: Prelude) -> Commands:
        parsed, agent = pre.parsed, verdict.agent
        if verdict.kind == "note":
            why = "commands need the ticket's reply address (answer a ticket mail); not run"
        elif not plan.has_rights(agent, ticket, rules.queues):
            why = f"you are not an agent of queue {ticket.queue} nor the assignee; not run"
        else:
            vocab = Vocabulary(frozenset(rules.queues), frozenset(rules.types), frozenset(rules.tags),
                               frozenset(pre.roster), tuple(rules.matrix.levels), self.desk.prefix)
            parsed, refused = expand(parsed, self.macros(), context_of(ticket, agent, self.desk.prefix)) \
                if self.macros is not None else (parsed, ())
            return with_macros(validate(parsed, vocab, sender=agent.email, ticket_id=ticket.id), refused)
        return Commands((), tuple(Refusal(line, why) for line, _, _ in parsed.lines), parsed.body)

    def _record(self, tx, verdict: plan.Verdict, msg, envelope, raw, now, ticket: plan.TicketState, rules,
                pre: Prelude) -> Handled:
        agent = verdict.agent
        if verdict.kind in ("unverified", "machine"):
            write = AgentWrite(ticket.id, "in", "internal", verdict.kind, agent.email if agent else "",
                               verdict.why, pre.text, evidence=verdict.evidence)
            return self._write(tx, write, msg, envelope, raw, now, lambda done: self.notices.recorded(
                tx, verdict, msg, ticket, None, done.ticket, rules, now))
        if verdict.kind != "note" and not plan.has_rights(agent, ticket, rules.queues):
            verdict = plan.Verdict("norights", "no rights on the ticket", ticket.id, agent, evidence=verdict.evidence)
        cmds = self._commands(verdict, ticket, rules, pre)
        public = verdict.kind == "act" and not (verdict.comment or cmds.note) and bool(cmds.body.strip())
        status = ("pending" if cmds.status() == "pending" else "open") if public else None
        write = AgentWrite(ticket.id, "out" if public else "in", "public" if public else "internal",
                           {"act": "acted"}.get(verdict.kind, verdict.kind), agent.email, verdict.why,
                           cmds.body if cmds.body.strip() else pre.text,
                           cmds.commands + on_answer(public, ticket, agent, rules, cmds), status, verdict.evidence)
        return self._write(tx, write, msg, envelope, raw, now, lambda done: self._acted(
            tx, verdict, msg, ticket, Acted(cmds, public, done.results), done.ticket, rules, now))

    def _acted(self, tx, verdict: plan.Verdict, msg, ticket: plan.TicketState, acted: Acted, trow, rules,
               now) -> MailEffects:
        """The agent-path mail, plus the resolve notice when the agent resolved the ticket
        without answering the customer (an answer already tells them)."""
        effects = self.notices.recorded(tx, verdict, msg, ticket, acted, trow, rules, now)
        if trow.status != "resolved" or ticket.status == "resolved":
            return effects
        notice = self.outbound.plan_status(tx, trow, "resolved", now) if not acted.public else MailEffects()
        return combine(effects, notice, self.outbound.on_resolved(tx, trow, now))

    def _write(self, tx, write: AgentWrite, msg, envelope, raw, now, effects) -> Handled:
        """Store the message, then plan and apply the mail it causes (`effects(recorded)`)."""
        done = tx.record_agent(msg, envelope, raw, _sha(raw), write, now, self.desk.prefix)
        if done.result.outcome == "duplicate":
            return Handled("recorded", done.result)
        applied = tx.apply_mail(effects(done), done.result.ticket_id, now)
        return Handled("recorded", done.result, applied.outbox_ids, applied.alerts)

    def _quarantine(self, tx, verdict: plan.Verdict, msg, envelope, raw, now, ticket, rules) -> Handled:
        detail = f"{verdict.why}; " + "; ".join(verdict.evidence)
        qid, new = tx.quarantine(raw, _sha(raw), envelope, "agent", f"agent: {verdict.reason}", detail, now,
                                 str(msg.from_addr or "")[:500], msg.subject[:500])
        applied = tx.apply_mail(self.notices.refused(tx, verdict, msg, ticket, rules, now), None, now) if new \
            else None
        log.warning("quarantined agent-path mail message_id=<%s> ticket=%s: %s", msg.message_id,
                    verdict.ticket_id, detail[:300])
        result = SaveResult("quarantined", None, None, f"quarantine:{qid}")
        return Handled("quarantined", result, applied.outbox_ids if applied else (), reason=verdict.reason)

    # ------------------------------------------------------------------ requesters
    def _may_command(self, msg: ParsedMessage, decision: ThreadDecision, pre: Prelude) -> bool:
        """A requester's mail that could carry commands for its ticket."""
        return bool(self.settings.requester_commands) and decision.action in ("append", "reopen") \
            and msg.machine.is_human and bool(pre.parsed.lines)

    def _requester(self, tx, msg, envelope, raw, decision: ThreadDecision, pre: Prelude, now) -> Handled | None:
        ticket = tx.agent_reads().state(decision.ticket_id)
        sender = msg.from_addr.email.lower() if msg.from_addr else ""
        if ticket is None or sender != (ticket.requester or "").lower():
            return None
        cmds = validate_requester(pre.parsed, self.settings.requester_commands)
        if not cmds.commands:
            return None
        write = AgentWrite(ticket.id, "in", "public", "requester", "", "requester command", cmds.body or pre.text,
                           cmds.commands, evidence=(f"From {sender} is the ticket's requester",))

        def effects(done) -> MailEffects:
            resolved = done.ticket.status == "resolved" and ticket.status != "resolved"
            if not resolved:
                return MailEffects()
            return combine(self.outbound.plan_status(tx, done.ticket, "resolved", now),
                           self.outbound.on_resolved(tx, done.ticket, now))
        return self._write(tx, write, msg, envelope, raw, now, effects)


def on_answer(public: bool, ticket: plan.TicketState, agent, rules, cmds: Commands) -> tuple[Command, ...]:
    """An answer to the requester on an unassigned ticket assigns it to the agent who
    answered, unless the queue says `assign_on_answer: false` or the mail assigns it."""
    queue = rules.queues.get(ticket.queue)
    if not public or ticket.assignee or (queue is not None and not queue.assign_on_answer) \
            or any(c.name == "assign" for c in cmds.commands):
        return ()
    return (Command("assign", agent.email, "(first answer; queue setting assign_on_answer)"),)


def _sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def build_authenticator(cfg) -> Authenticator:
    a = cfg.agents
    policy = AuthPolicy(a.auth, dict(a.domains), frozenset(i.lower() for i in a.authserv_ids), a.authres_count,
                        a.dkim_min_key_bits, a.dns_timeout_seconds, frozenset(a.dkim_relaxed_domains),
                        frozenset(a.arc_trusted_forwarders))
    lookup = dns_lookup(a.dns_timeout_seconds)
    if a.dkim_keys_file:
        lookup = pinned_lookup(load_pinned(a.dkim_keys_file), lookup)
    return Authenticator(policy, lookup)


def agent_settings(cfg) -> AgentSettings:
    a = cfg.agents
    return AgentSettings(a.token_days, a.dns_retry_seconds, a.defer_hours, tuple(a.requester_commands),
                         a.max_warnings_per_hour, a.max_bad_tokens_per_hour)
