"""Agent path mail: the exact bytes of what an agent's mail causes (pure).

  agent_reply    the agent's answer to the customer: From "<agent> via <desk>" <desk
                 address>, the ticket tag, In-Reply-To/References of the customer's
                 messages, no quoted history; human-written, so `Auto-Submitted: no`.
                 Template `requester/reply`.
  agent_note     an internal note, to the ticket's other agents (`agent/note`).
  agent_confirm  which commands ran and which were refused and why, to the acting agent's
                 registered address (`agent/confirm`).
  agent_alert    a mail claiming to be from an agent was not accepted, to that agent's
                 registered address (`agent/rejected`), with a fresh reply address.

Every agent mail carries that agent's reply token in Reply-To. Headers are built by
daemon.pipeline.compose from sanitised strings; nothing here does I/O.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping

from daemon.clock import stamp as _stamp
from daemon.pipeline import tokens
from daemon.model import Address, Agent, OutgoingMail
from daemon.pipeline.addresses import sanitize
from daemon.pipeline.compose import Headers, compose, mail_address
from daemon.pipeline.notify import Desk
from daemon.pipeline.thread import normalize_subject
from daemon.pipeline.render import Rendered, Templates, build_context, message_vars

Token = Callable[[int, str], "str | None"]          # (ticket id, agent address) -> reply token


@dataclass(frozen=True)
class MailKit:
    """What building mail needs besides the ticket: who we are, templates, keys, time."""

    desk: Desk
    templates: Templates
    ring: tokens.Keyring
    now: datetime
    random: Callable[[int], bytes]
    token: Token | None = None


@dataclass(frozen=True)
class Said:
    """The message an agent mail is about: who wrote it, subject, text, when."""

    from_name: str
    from_email: str
    subject: str
    text: str
    received: datetime | None = None


def _ticket_vars(ticket, desk: Desk) -> dict[str, Any]:
    if ticket is None:
        return {"id": 0, "ref": "", "tag": "", "subject": "", "status": "", "priority": "", "queue": "",
                "type": "", "created": "", "requester": ""}
    return {"id": ticket.id, "ref": f"{desk.prefix}-{ticket.id}", "tag": f"[{desk.prefix}-{ticket.id}]",
            "subject": normalize_subject(ticket.subject, desk.prefix) or "(no subject)", "status": ticket.status,
            "priority": ticket.priority, "queue": ticket.queue, "type": ticket.type,
            "created": _stamp(getattr(ticket, "created_at", None)), "requester": ticket.requester}


def _context(kit: MailKit, ticket, said: Said | None, agent: Agent | None, queue: Mapping[str, str],
             extra: Mapping[str, Any]) -> dict[str, Any]:
    message = None if said is None else message_vars(sanitize(said.subject), said.text, sanitize(said.from_name),
                                                     said.from_email, _stamp(said.received))
    requester = ticket.requester if ticket is not None else ""
    ctx = build_context(
        desk={"name": kit.desk.name, "address": kit.desk.address}, ticket=_ticket_vars(ticket, kit.desk),
        requester={"name": "", "email": requester, "display": requester}, message=message, queue=dict(queue),
        lang="en", reply_to=kit.desk.address,
        agent={"name": agent.name, "email": agent.email, "role": agent.role, "display": agent.name or agent.email}
        if agent is not None else None)
    ctx.update(extra)
    return ctx


def _render(kit: MailKit, audience: str, event: str, queue: str, ctx: dict, default_subject: str) -> Rendered:
    name = kit.templates.find(audience, event, queue=queue or None)
    if name is None:
        raise LookupError(f"no template {audience}/{event}")
    return kit.templates.render(name, ctx, default_subject)


def _tagged(subject: str, tag: str) -> str:
    subject = sanitize(subject)
    return subject if not tag or tag.lower() in subject.lower() else f"{tag} {subject}"


def customer_reply(kit: MailKit, ticket, agent: Agent, said: Said, recipients: tuple[str, ...],
                   thread: tuple[str, ...], queue: Mapping[str, str]) -> OutgoingMail:
    """The agent's answer to the customer (and the public participants)."""
    rcpts = tuple(dict.fromkeys(r.lower() for r in recipients if mail_address(r)))
    if not rcpts:
        raise ValueError("no usable customer address")
    ctx = _context(kit, ticket, said, agent, queue, {})
    tag = f"[{kit.desk.prefix}-{ticket.id}]"
    body = _render(kit, "requester", "reply", ticket.queue, ctx, f"Re: {tag} {ctx['ticket']['subject']}")
    nonce = kit.random(8)
    mid = tokens.message_id(kit.ring, "reply", ticket.id, nonce, kit.desk.domain)
    headers = Headers(
        from_name=f"{agent.name or agent.email} via {kit.desk.name}", from_email=kit.desk.address,
        to=tuple(Address("", r) for r in rcpts), subject=_tagged(body.subject, tag), message_id=mid, date=kit.now,
        in_reply_to=thread[-1] if thread else None, references=thread, reply_to=None, auto="no",
        loop=tokens.loop_marker(kit.desk.address), ticket_ref=f"{kit.desk.prefix}-{ticket.id}", lang=None)
    return OutgoingMail(ticket.id, "agent_reply", "requester", body.template, mid, nonce.hex(),
                        tokens.bounce_address(kit.ring, kit.desk.address, nonce), rcpts, compose(headers, body), "no")


def agent_mail(kit: MailKit, kind: str, event: str, to: Agent, ticket, said: Said | None,
               queue: Mapping[str, str], extra: Mapping[str, Any], subject: str) -> OutgoingMail:
    """One mail to an agent's registered address, with their reply token in Reply-To."""
    if mail_address(to.email) is None:
        raise ValueError(f"unusable agent address {to.email!r}")
    ctx = _context(kit, ticket, said, to, queue, extra)
    tid = ticket.id if ticket is not None else 0
    tag = f"[{kit.desk.prefix}-{tid}]" if tid else ""
    body = _render(kit, "agent", event, ticket.queue if ticket is not None else "", ctx, subject)
    token = kit.token(tid, to.email) if kit.token is not None and tid else None
    nonce = kit.random(8)
    mid = tokens.message_id(kit.ring, "agent", tid, nonce, kit.desk.domain)
    headers = Headers(
        from_name=kit.desk.name, from_email=kit.desk.address, to=(Address(to.name, to.email),),
        subject=_tagged(body.subject, tag), message_id=mid, date=kit.now,
        reply_to=tokens.reply_address(kit.desk.address, token) if token else None, auto="auto-generated",
        loop=tokens.loop_marker(kit.desk.address), ticket_ref=f"{kit.desk.prefix}-{tid}" if tid else "")
    return OutgoingMail(ticket.id if ticket is not None else None, kind, "agent", body.template, mid, nonce.hex(),
                        tokens.bounce_address(kit.ring, kit.desk.address, nonce), (to.email,),
                        compose(headers, body))
