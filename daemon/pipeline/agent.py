"""Agent path: what a mail that involves an agent may do (pure).

parse -> thread -> identity -> **agent** -> store. `claim_of` reads what a mail claims
without believing any of it: a reply token or the comment address among its recipients,
a From that is a registered agent, a Reply-To or display name naming an agent. Only mail
with such a claim takes the agent path; everything else is a customer's and goes on as
before. `decide` then turns the verified facts (token check, sender authentication, the
ticket) into a `Verdict`:

  act          token valid, From = the token's agent, authenticated, rights on the ticket:
               commands run; the text goes to the customer (or is a note: #note / comment)
  note         an authenticated agent without a token on a known ticket: internal note only
  unverified   a valid token but the sender is not proven to be its agent (no DKIM/DMARC
               pass, or a colleague's From): stored internal and flagged, nothing runs, the
               agent is warned
  quarantine   no ticket can be trusted (bad/expired token, a stranger writing to a reply
               address, a spoofed agent From, a Reply-To or display name naming an agent):
               raw kept with the reason, no ticket change; the named agent is warned
  machine      an auto-reply (out of office) to a reply address: stored internal, silent
  defer        DNS temperror while authenticating: keep the mail, try again later
  none         not the agent path after all (e.g. an authenticated agent opening a ticket)

Identity is never taken from From or Reply-To alone, a subject tag never picks the ticket
of a token mail, and every decision carries its evidence.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from daemon.model import Address, Agent, Auth, Envelope, ParsedMessage, ThreadDecision, TicketState
from daemon.pipeline.tokens import ReplyCheck, principal_id

COMMENT = "comment"                   # support+comment@...: an internal note
_EMAILISH = re.compile(r"(?<![^\s<>\"'@,;:()])[^\s<>\"'@,;:()]+@[^\s<>\"'@,;:()]+\.[^\s<>\"'@,;:()]+")
_RCPT_HEADERS = ("delivered-to", "x-original-to", "envelope-to")

REASONS = {
    "unexpected-sender": "unexpected sender for reply address",
    "token-invalid": "the reply address is not valid",
    "token-expired": "the reply address has expired",
    "unauthenticated": "the sender is not authenticated as the agent (no DKIM/DMARC pass)",
    "other-agent": "the mail comes from another agent than the reply address was made for",
    "reply-to-agent": "Reply-To names an agent while From is someone else",
    "display-name": "the From display name imitates an agent's address",
    "agent-unknown": "the reply address names nobody who is an agent now",
    "ticket-unknown": "the reply address names no existing ticket",
    "no-ticket": "an internal note must answer a ticket mail or carry the ticket tag",
    "token-flood": "too many invalid reply addresses from one source within an hour",
}


@dataclass(frozen=True)
class Claim:
    """What a mail claims about agents, unverified."""

    details: tuple[str, ...] = ()               # plus-address parts of our address (tokens)
    comment: bool = False                       # sent to the comment address
    from_agent: Agent | None = None
    reply_to_agent: Agent | None = None         # Reply-To names an agent; From differs
    display_agent: Agent | None = None          # display name carries an agent address; From differs

    @property
    def agent_path(self) -> bool:
        return bool(self.details or self.comment or self.from_agent or self.reply_to_agent or self.display_agent)


@dataclass(frozen=True)
class Verdict:
    """What the agent path decided; `warn` is the agent told of an attempt (their
    registered address), `evidence` explains the decision and is stored with it."""

    kind: str
    reason: str = ""
    ticket_id: int | None = None
    agent: Agent | None = None
    warn: Agent | None = None
    comment: bool = False
    evidence: tuple[str, ...] = ()

    @property
    def why(self) -> str:
        return REASONS.get(self.reason, self.reason)


def roster_of(queues) -> dict[str, Agent]:
    """Every registered agent by address (the first queue's entry names them)."""
    out: dict[str, Agent] = {}
    for q in queues.values():
        for a in q.agents:
            out.setdefault(a.email.lower(), a)
    return out


def plus_details(msg: ParsedMessage, envelope: Envelope, address: str) -> tuple[str, ...]:
    """The `+detail` parts of our address among the recipients (envelope first), without
    bounce addresses; lower-cased (base32 tokens survive case-folding)."""
    local, _, domain = address.lower().rpartition("@")
    prefix = local + "+"
    seen: dict[str, None] = {}
    values = [*envelope.rcpt_to, *(a.email for a in (*msg.to, *msg.cc)),
              *(v for k, v in msg.headers if k.lower() in _RCPT_HEADERS)]
    for value in values:
        l, _, d = (value or "").strip().strip("<>").lower().rpartition("@")
        if d == domain and l.startswith(prefix) and len(l) > len(prefix) and not l[len(prefix):].startswith("bounce-"):
            seen.setdefault(l[len(prefix):], None)
    return tuple(seen)


def claim_of(msg: ParsedMessage, envelope: Envelope, roster: Mapping[str, Agent], address: str) -> Claim:
    """What `msg` claims about agents (nothing here is verified)."""
    details = plus_details(msg, envelope, address)
    sender = msg.from_addr.email.lower() if msg.from_addr else ""
    reply_to = next((roster[a.email.lower()] for a in msg.reply_to
                     if a.email.lower() in roster and a.email.lower() != sender), None)
    return Claim(tuple(d for d in details if d != COMMENT), COMMENT in details, roster.get(sender),
                 reply_to, _display_agent(msg.from_addr, roster))


def _display_agent(addr: Address | None, roster: Mapping[str, Agent]) -> Agent | None:
    if addr is None or not addr.name:
        return None
    for found in _EMAILISH.findall(addr.name.lower()):
        if found != addr.email.lower() and found in roster:
            return roster[found]
    return None


def token_agent(check: ReplyCheck, roster: Mapping[str, Agent], sender: str) -> Agent | None:
    """The registered agent a token was made for: the sender when the principal matches,
    else the first agent whose principal matches (a colleague's token)."""
    if check.tag is None:
        return None
    if sender in roster and principal_id(sender) == check.tag.principal:
        return roster[sender]
    return next((a for e, a in sorted(roster.items()) if principal_id(e) == check.tag.principal), None)


def has_rights(agent: Agent, ticket: TicketState, queues) -> bool:
    """An agent may act on a ticket of their queue, or one assigned to them."""
    queue = queues.get(ticket.queue)
    return (queue is not None and any(a.email == agent.email for a in queue.agents)) or \
        (ticket.assignee or "").lower() == agent.email


def decide(msg: ParsedMessage, claim: Claim, token: ReplyCheck | None, auth: Auth | None,
           ticket: TicketState | None, decision: ThreadDecision, roster: Mapping[str, Agent],
           *, can_defer: bool = True) -> Verdict:
    """The verdict for a mail on the agent path (see the module docstring)."""
    sender = msg.from_addr.email.lower() if msg.from_addr else ""
    if claim.display_agent is not None:
        return Verdict("quarantine", "display-name", warn=claim.display_agent,
                       evidence=(f"From {msg.from_addr.name!r} <{sender}>",))
    if token is not None:
        return _by_token(msg, claim, token, auth, ticket, roster, sender, can_defer)
    if claim.reply_to_agent is not None and claim.from_agent is None:
        return Verdict("quarantine", "reply-to-agent", warn=claim.reply_to_agent,
                       evidence=(f"Reply-To {claim.reply_to_agent.email}, From {sender}",))
    if claim.from_agent is None:                 # only the comment address: a stranger
        return Verdict("quarantine", "unexpected-sender", evidence=(f"From {sender} to the comment address",))
    return _without_token(msg, claim, auth, ticket, decision, can_defer)


def _by_token(msg, claim: Claim, token: ReplyCheck, auth: Auth | None, ticket, roster, sender: str,
              can_defer: bool) -> Verdict:
    agent = token_agent(token, roster, sender)
    tid = token.tag.ticket_id if token.tag else None
    if token.status == "invalid":
        return Verdict("quarantine", "token-invalid", warn=claim.from_agent, evidence=("reply token rejected",))
    if token.status == "expired":
        return Verdict("quarantine", "token-expired", tid, warn=agent,
                       evidence=(f"reply token for ticket {tid} expired {token.tag.expires.isoformat()}",))
    if agent is None:
        return Verdict("quarantine", "agent-unknown", tid, evidence=(f"reply token for ticket {tid}",))
    if ticket is None:
        return Verdict("quarantine", "ticket-unknown", tid, warn=agent)
    comment = token.tag.comment or claim.comment
    if claim.from_agent is None:
        return Verdict("quarantine", "unexpected-sender", tid, warn=agent,
                       evidence=(f"reply address of {agent.email} for ticket {tid}, From {sender}",))
    if not msg.machine.is_human:                # an agent's out-of-office: kept, silent
        return Verdict("machine", msg.machine.kind, tid, agent, comment=comment, evidence=msg.machine.reasons[:3])
    if claim.from_agent.email != agent.email:
        return Verdict("unverified", "other-agent", tid, agent, warn=agent,
                       evidence=(f"token of {agent.email}, From {sender}",))
    return _authenticated("act", agent, tid, auth, can_defer, comment)


def _authenticated(kind: str, agent: Agent, tid: int | None, auth: Auth | None, can_defer: bool,
                   comment: bool = False) -> Verdict:
    evidence = auth.evidence if auth else ("not authenticated",)
    if auth is not None and auth.passed and auth.address == agent.email:
        return Verdict(kind, "authenticated", tid, agent, comment=comment, evidence=evidence)
    if auth is not None and auth.result == "temperror" and can_defer:
        return Verdict("defer", "temperror", tid, agent, evidence=evidence)
    failed = "unverified" if kind == "act" else "quarantine"
    return Verdict(failed, "unauthenticated", tid, agent if kind == "act" else None, warn=agent,
                   evidence=evidence)


def _without_token(msg, claim: Claim, auth: Auth | None, ticket, decision: ThreadDecision,
                   can_defer: bool) -> Verdict:
    agent = claim.from_agent
    tid = ticket.id if ticket is not None else None
    if not msg.machine.is_human:
        return Verdict("none", "machine mail from an agent without a token")
    verdict = _authenticated("note", agent, tid, auth, can_defer, comment=True)
    if verdict.kind != "note":
        return verdict
    if tid is None:
        if claim.comment:
            return Verdict("quarantine", "no-ticket", warn=agent, evidence=(decision.evidence,))
        return Verdict("none", "an authenticated agent writing without a ticket: a new ticket")
    return verdict


def note_ticket(decision: ThreadDecision, tag: int | None) -> int | None:
    """The ticket an authenticated agent's token-less mail is about: the thread's hit,
    else the ticket of the subject tag (a note, never a command, by subject tag)."""
    if decision.action in ("append", "reopen") and decision.ticket_id:
        return decision.ticket_id
    if decision.action == "new_linked" and decision.link_to:
        return decision.link_to
    return tag
