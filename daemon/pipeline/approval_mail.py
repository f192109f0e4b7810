"""Change approval mail (pure): the exact bytes of the mails a change's approval causes.

  request    to an approver: the change, what is asked (stage, quorum), how to answer;
             Reply-To carries the approver's signed approval token (`approver/request`, or
             `approver/reminder` for the reminder to one who has not answered)
  refused    to an approver whose reply recorded nothing, and why (`approver/refused`)
  outcome    to the requester: approved, rejected or expired (`requester/change-outcome`)

Templates get the usual `desk`, `ticket`, `queue` variables plus `approval` ({stage,
stages, state, quorum, approvers, expires, outcome, decisions, reason, description (the
change's first message), alert}) and `approver`
({email, name, display}). Headers are built by daemon.pipeline.compose; no I/O here.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping

from daemon.clock import stamp
from daemon.model import Address, OutgoingMail
from daemon.pipeline import tokens
from daemon.pipeline.compose import Headers, compose, outbound_address
from daemon.pipeline.notify import Desk
from daemon.pipeline.render import Templates, build_context
from daemon.pipeline.thread import normalize_subject


@dataclass(frozen=True)
class ApprovalKit:
    """What building approval mail needs: who we are, templates, keys, time, randomness."""

    desk: Desk
    templates: Templates
    ring: tokens.Keyring
    now: datetime
    random: Callable[[int], bytes]


def ticket_vars(ticket, desk: Desk) -> dict[str, Any]:
    return {"id": ticket.id, "ref": f"{desk.prefix}-{ticket.id}", "tag": f"[{desk.prefix}-{ticket.id}]",
            "subject": normalize_subject(ticket.subject, desk.prefix) or "(no subject)", "status": ticket.status,
            "priority": ticket.priority, "queue": ticket.queue, "type": ticket.type,
            "created": stamp(ticket.created_at), "requester": ticket.requester}


def _context(kit: ApprovalKit, ticket, queue: Mapping[str, str], approval: Mapping[str, Any],
             approver: tuple[str, str] | None, reply_to: str) -> dict[str, Any]:
    ctx = build_context(desk={"name": kit.desk.name, "address": kit.desk.address},
                        ticket=ticket_vars(ticket, kit.desk),
                        requester={"name": "", "email": ticket.requester, "display": ticket.requester},
                        message=None, queue=dict(queue), lang="en", reply_to=reply_to)
    ctx["approval"] = dict(approval)
    if approver is not None:
        email, name = approver
        ctx["approver"] = {"email": email, "name": name, "display": name or email}
    return ctx


def _mail(kit: ApprovalKit, ticket, kind: str, audience: str, event: str, to: str, ctx: dict,
          subject: str, reply_to: str | None) -> OutgoingMail:
    if outbound_address(to) is None:
        raise ValueError(f"unusable address {to!r}")
    name = kit.templates.find(audience, event, queue=ticket.queue)
    if name is None:
        raise LookupError(f"no template {audience}/{event}")
    tag = f"[{kit.desk.prefix}-{ticket.id}]"
    body = kit.templates.render(name, ctx, subject)
    nonce = kit.random(8)
    mid = tokens.message_id(kit.ring, "notice", ticket.id, nonce, kit.desk.domain)
    title = body.subject if tag.lower() in body.subject.lower() else f"{tag} {body.subject}"
    headers = Headers(from_name=kit.desk.name, from_email=kit.desk.address, to=(Address("", to),), subject=title,
                      message_id=mid, date=kit.now, reply_to=reply_to, auto="auto-generated",
                      loop=tokens.loop_marker(kit.desk.address), ticket_ref=f"{kit.desk.prefix}-{ticket.id}")
    return OutgoingMail(ticket.id, kind, audience, body.template, mid, nonce.hex(),
                        tokens.bounce_address(kit.ring, kit.desk.address, nonce), (to.lower(),),
                        compose(headers, body))


def request_mail(kit: ApprovalKit, ticket, queue: Mapping[str, str], approval: Mapping[str, Any],
                 approver: tuple[str, str], token: str, *, reminder: bool = False) -> OutgoingMail:
    """The approval request (or its reminder) to one approver, answerable by reply."""
    reply_to = tokens.reply_address(kit.desk.address, token)
    ctx = _context(kit, ticket, queue, approval, approver, reply_to)
    event = "reminder" if reminder else "request"
    subject = f"{'Reminder: ' if reminder else ''}Approval needed: {ctx['ticket']['subject']}"
    return _mail(kit, ticket, f"approval_{event}", "approver", event, approver[0], ctx, subject, reply_to)


def refused_mail(kit: ApprovalKit, ticket, queue: Mapping[str, str], approval: Mapping[str, Any],
                 approver: tuple[str, str], token: str | None, *, alert: bool = False) -> OutgoingMail:
    """Your reply recorded nothing, and why (approval["reason"]); `alert`: a mail in your
    name that was not yours (kind approval_alert, capped per hour by the caller)."""
    reply_to = tokens.reply_address(kit.desk.address, token) if token else None
    ctx = _context(kit, ticket, queue, dict(approval, alert=alert), approver, reply_to or kit.desk.address)
    return _mail(kit, ticket, "approval_alert" if alert else "approval_refused", "approver", "refused", approver[0],
                 ctx, f"Not recorded: {ctx['ticket']['subject']}", reply_to)


def outcome_mail(kit: ApprovalKit, ticket, queue: Mapping[str, str], approval: Mapping[str, Any]) -> OutgoingMail:
    """The outcome of the change's approval, to its requester."""
    ctx = _context(kit, ticket, queue, approval, None, kit.desk.address)
    return _mail(kit, ticket, "change_outcome", "requester", "change-outcome", ticket.requester, ctx,
                 f"Change {approval.get('outcome', '')}: {ctx['ticket']['subject']}", None)
