"""The mail the agent path causes: the customer's copy of an agent's answer, notes to
colleagues, command confirmations and warnings about mail refused in an agent's name.

`Notices` reads what it needs from the worker's write transaction (the mail history, who
is on the ticket, the opening mail's sender authentication for Cc participants) and builds
the mails with the pure builders of daemon.pipeline.agent_mail; it returns the effects
and the worker's transaction applies them. `ReplyTokens` makes the signed reply addresses
every agent notification carries.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from daemon import tokens
from daemon.clock import utcnow
from daemon.identity import Auth, Authenticator
from daemon.model import MailEffects, OutgoingMail, ParsedMessage
from daemon.pipeline import agent as plan
from daemon.pipeline.agent_mail import MailKit, Said, agent_mail, customer_reply
from daemon.pipeline.commands import Commands
from daemon.pipeline.notify import Desk, Fuses
from daemon.model import Agent
from store.records import SaveResult
from store.tickets import since_hour

log = logging.getLogger(__name__)
ATTEMPTS = frozenset({"unexpected-sender", "token-invalid", "unauthenticated", "other-agent", "reply-to-agent",
                      "display-name", "token-flood"})


class ReplyTokens:
    """Signed reply addresses for agents (daemon.tokens), valid for `days`."""

    def __init__(self, ring: tokens.Keyring, days: int, clock: Callable[[], datetime] = utcnow):
        self.ring, self.days, self.clock = ring, days, clock

    def __call__(self, ticket_id: int, email: str, *, comment: bool = False) -> str:
        expires = (self.clock() + timedelta(days=self.days)).date()
        return tokens.reply_token(self.ring, ticket_id, email, expires, comment=comment)


@dataclass(frozen=True)
class Acted:
    """What an agent's mail did: its validated commands, whether the text went to the
    customer, and each command's result."""

    cmds: Commands
    public: bool
    results: tuple = ()


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

    def effects(self) -> MailEffects:
        return MailEffects(mails=tuple(self.mails), suppressed=tuple(self.held))


@dataclass(frozen=True)
class Handled:
    """What the agent path did with a message: `recorded` (stored, `result`), `quarantined`,
    or `deferred` (authentication must wait: keep it in the spool); with the outbox rows
    and fuse alerts written in the transaction."""

    kind: str
    result: SaveResult | None = None
    outbox_ids: tuple[int, ...] = ()
    alerts: tuple = ()
    reason: str = ""


class Notices:
    """See module docstring."""

    def __init__(self, desk: Desk, fuses: Fuses, templates, ring: tokens.Keyring, random: Callable[[int], bytes],
                 reply_token: ReplyTokens, auth: Authenticator, max_warnings_per_hour: int):
        self.desk, self.fuses, self.templates, self.ring, self.random = desk, fuses, templates, ring, random
        self.reply_token, self.auth, self.max_warnings = reply_token, auth, max_warnings_per_hour

    def _builder(self, ticket, queue_name: str, rules, now: datetime) -> _Builder:
        kit = MailKit(self.desk, self.templates.current, self.ring, now, self.random, self.reply_token)
        queue = rules.queues.get(queue_name) if rules is not None and queue_name else None
        return _Builder(kit, ticket, {"name": queue_name, "description": queue.description if queue else ""}, [], [])

    # ------------------------------------------------------------------ a stored agent-path message
    def recorded(self, tx, verdict: plan.Verdict, msg: ParsedMessage, ticket: plan.TicketState,
                 acted: Acted | None, trow, rules, now: datetime) -> MailEffects:
        """The mail an agent-path message that was stored causes."""
        build = self._builder(trow, trow.queue, rules, now)
        if verdict.kind == "unverified" and verdict.warn and msg.machine.is_human:
            self._warn(tx, build, verdict, msg, now)
        if acted is None:
            return build.effects()
        said = Said(msg.from_addr.name if msg.from_addr else "", msg.from_addr.email if msg.from_addr else "",
                    msg.subject, acted.cmds.body, msg.date)
        cc_note = None
        if acted.public:
            recipients, cc_note = self._customers(tx, ticket)
            thread = tx.agent_reads().thread_ids(ticket.id)
            build.add(lambda: customer_reply(build.kit, trow, verdict.agent, said, recipients, thread, build.queue))
        elif (verdict.comment or acted.cmds.note or verdict.kind == "note") and acted.cmds.body.strip():
            subject = f"[{self.desk.prefix}-{trow.id}] Note: {trow.subject}"
            for other in self._colleagues(tx, trow, verdict.agent, rules, now, build.held):
                build.add(lambda o=other: agent_mail(build.kit, "agent_note", "note", o, trow, said, build.queue,
                                                     {}, subject))
        if acted.cmds.written or cc_note:
            self._confirm(build, verdict, acted, said, trow, cc_note)
        return build.effects()

    def _confirm(self, build: _Builder, verdict: plan.Verdict, acted: Acted, said: Said, trow,
                 cc_note: str | None) -> None:
        extra = {"results": [{"command": r.command, "ok": r.ok, "detail": r.detail} for r in acted.results]
                 + [{"command": f.line, "ok": False, "detail": f.reason} for f in acted.cmds.refused],
                 "answered": acted.public, "notes": [cc_note] if cc_note else []}
        build.add(lambda: agent_mail(build.kit, "agent_confirm", "confirm", verdict.agent, trow, said, build.queue,
                                     extra, f"[{self.desk.prefix}-{trow.id}] Commands: {trow.subject}"))

    def _customers(self, tx, ticket: plan.TicketState) -> tuple[tuple[str, ...], str | None]:
        """The requester, and the Cc participants only when the mail that named them was
        authenticated as the requester (reliability F66: never from unauthenticated Cc)."""
        reads = tx.agent_reads()
        ccs = tuple(c for c in reads.cc_participants(ticket.id) if c not in self.desk.own)
        if not ccs:
            return (ticket.requester,), None
        opening = reads.opening_raw(ticket.id)
        auth = self.auth.authenticate(opening) if opening else Auth("none")
        if auth.passed and auth.address == ticket.requester.lower():
            return (ticket.requester, *ccs), None
        return (ticket.requester,), (f"not sent to the Cc participant(s) {', '.join(ccs)}: the mail that named "
                                     f"them was not authenticated ({auth.result})")

    def _colleagues(self, tx, trow, sender: Agent, rules, now: datetime, held: list) -> list[Agent]:
        queue = rules.queues.get(trow.queue)
        pool = list(queue.agents if queue else ())
        roster = plan.roster_of(rules.queues)
        if trow.assignee and trow.assignee.lower() not in {a.email for a in pool}:
            pool.append(roster.get(trow.assignee.lower(), Agent(trow.assignee.lower(), "", "agent")))
        history = tx.mail_history(trow.id, [a.email for a in pool if a.email != sender.email], "", now)
        out: list[Agent] = []
        for a in pool:
            if a.email == sender.email or a.email in self.desk.own or a in out:
                continue
            if a.email in history.bouncing or history.sent_hour(a.email) >= self.fuses.agent_hour:
                held.append(f"note to {a.email} held back (bouncing or hourly cap)")
                continue
            out.append(a)
        return out

    # ------------------------------------------------------------------ refused mail
    def refused(self, tx, verdict: plan.Verdict, msg: ParsedMessage, ticket: plan.TicketState | None, rules,
                now: datetime) -> MailEffects:
        """The warning to the agent a quarantined mail names (if any)."""
        build = self._builder(ticket, ticket.queue if ticket else "", rules, now)
        if verdict.warn is not None and msg.machine.is_human:
            self._warn(tx, build, verdict, msg, now)
        return build.effects()

    def _warn(self, tx, build: _Builder, verdict: plan.Verdict, msg: ParsedMessage, now: datetime) -> None:
        agent = verdict.warn
        if tx.alerts_since(agent.email, since_hour(now)) >= self.max_warnings:
            build.held.append(f"warning to {agent.email} held back: {self.max_warnings} per hour")
            return
        extra = {"rejection": {"reason": verdict.why, "attempt": verdict.reason in ATTEMPTS,
                               "from": str(msg.from_addr) if msg.from_addr else "(none)",
                               "subject": msg.subject[:200], "message_id": msg.message_id,
                               "evidence": list(verdict.evidence)[:5]}}
        tid = build.ticket.id if build.ticket is not None else 0
        subject = (f"[{self.desk.prefix}-{tid}] " if tid else "") + "Mail in your name not accepted"
        build.add(lambda: agent_mail(build.kit, "agent_alert", "rejected", agent, build.ticket, None, build.queue,
                                     extra, subject))
