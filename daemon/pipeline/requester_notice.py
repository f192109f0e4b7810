"""One automatic mail to a ticket's requester outside the ack/reopen/resolve trio (pure):
the problem-resolved notice and the satisfaction survey.

Like daemon.pipeline.notify's mails: the template in the requester's language (queue
override first), From the desk, the ticket tag in the subject, In-Reply-To/References of
the ticket's conversation (so a reply threads into the ticket), a MAC'd Message-ID and a
VERP bounce address, marked automatic. `extra` adds the event's own template variables
(`problem`, `survey`). Nothing here does I/O; randomness comes in as the nonce.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from daemon.clock import stamp
from daemon.model import Address, MailHistory, OutgoingMail
from daemon.pipeline import tokens
from daemon.pipeline.addresses import sanitize
from daemon.pipeline.compose import Headers, compose
from daemon.pipeline.notify import Desk
from daemon.pipeline.render import Templates, build_context
from daemon.pipeline.thread import normalize_subject


@dataclass(frozen=True)
class Notice:
    """Which mail: outbox kind, template event (`requester/<event>`), the extra variables."""

    kind: str
    event: str
    extra: Mapping[str, Any]


def requester_notice(notice: Notice, ticket, history: MailHistory, desk: Desk, templates: Templates,
                     ring: tokens.Keyring, queue: Mapping[str, str], now: datetime, nonce: bytes) -> OutgoingMail:
    """The mail `notice` to `ticket`'s requester (a store TicketRow); LookupError when the
    template is missing."""
    lang = history.language
    name = templates.find("requester", notice.event, queue=ticket.queue, lang=lang)
    if name is None:
        raise LookupError(f"no template requester/{notice.event}")
    subject = normalize_subject(ticket.subject, desk.prefix) or "(no subject)"
    tag = f"[{desk.prefix}-{ticket.id}]"
    ctx = build_context(
        desk={"name": desk.name, "address": desk.address},
        ticket={"id": ticket.id, "ref": f"{desk.prefix}-{ticket.id}", "tag": tag, "subject": subject,
                "status": ticket.status, "priority": ticket.priority, "queue": ticket.queue, "type": ticket.type,
                "created": stamp(ticket.created_at), "requester": ticket.requester},
        requester={"name": "", "email": ticket.requester, "display": ticket.requester}, message=None,
        queue=dict(queue), lang=lang or "en", reply_to=desk.address)
    ctx.update(notice.extra)
    body = templates.render(name, ctx, f"{tag} {subject}")
    mid = tokens.message_id(ring, "notice", ticket.id, nonce, desk.domain)
    to = Address("", ticket.requester.lower())
    shown = sanitize(body.subject)
    headers = Headers(
        from_name=desk.name, from_email=desk.address, to=(to,),
        subject=shown if tag.lower() in shown.lower() else f"{tag} {shown}", message_id=mid, date=now,
        in_reply_to=(history.conversation[-1:] or [None])[0], references=history.conversation,
        reply_to=None, auto="auto-generated", loop=tokens.loop_marker(desk.address),
        ticket_ref=f"{desk.prefix}-{ticket.id}", lang=body.lang or lang)
    return OutgoingMail(ticket.id, notice.kind, "requester", name, mid, nonce.hex(),
                        tokens.bounce_address(ring, desk.address, nonce), (to.email,), compose(headers, body),
                        headers.auto)
