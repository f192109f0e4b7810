"""Notify: which automatic mails a ticket change causes, and their exact bytes (pure).

parse -> thread -> classify -> **plan** -> store. `plan_notifications` decides, from the
ticket, what happened (`Trigger`), the queue's agents and the mail history the store read
inside the ticket transaction, who gets which mail:

  requester  an acknowledgement for a new ticket (at most one per ticket), a notice on
             reopen and on resolve; never to machine mail, our own mail, our own
             addresses, or a recipient whose mail bounced recently;
  agents     the new ticket, and each later message a person wrote (only the assignee
             once there is one); never the agent who wrote it.

Fuses: per-recipient caps per hour and per day, a per-sender cap on new tickets per hour,
an hourly cap per agent, and RFC 3834's rule for notices that are not about a new ticket:
the same notice (reopen, resolve) about one ticket to one address at most once in
`same_notice_days` (7) days (the store reads which were planned since: `MailHistory.notices`). A mail over a fuse is held back (the ticket is still stored) and
the fuse raises one alert per window (`FuseAlert`), not one per mail.

`build_mails` renders each planned mail from the templates and composes it
(daemon.pipeline.compose) from sanitised strings into the bytes `email.policy.SMTP` gives:
no CR/LF reaches a header, long and non-ASCII values are folded and encoded, line endings
are CRLF. Every mail is marked automatic
(Auto-Submitted, X-Auto-Response-Suppress: All, X-Loop) and gets a MAC'd Message-ID and a
VERP bounce address (daemon.tokens). Nothing here does I/O; randomness comes in as a
function.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Mapping

from daemon.clock import stamp as _stamp
from daemon.pipeline import tokens
from daemon.model import Address, Agent, FuseAlert, MailHistory, OutgoingMail
from daemon.pipeline.addresses import sanitize
from daemon.pipeline.compose import Headers, compose, mail_address
from daemon.pipeline.thread import normalize_subject
from daemon.pipeline.render import Templates, build_context, message_vars

NEW_EVENTS = frozenset({"created", "linked"})
REPLY_EVENTS = frozenset({"appended", "reopened"})
TOKEN_KIND = {"ack": "ack", "reopen": "notice", "resolve": "notice", "agent_new": "agent", "agent_message": "agent"}


@dataclass(frozen=True)
class Fuses:
    """[loops] in config: caps on automatic mail."""

    recipient_hour: int = 5
    recipient_day: int = 20
    sender_tickets_hour: int = 20
    agent_hour: int = 200
    same_notice_days: int = 7


@dataclass(frozen=True)
class Desk:
    """Who we are: display name, address, subject tag prefix, every address of ours."""

    name: str
    address: str
    prefix: str = "HD"
    own: frozenset[str] = frozenset()

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2].lower()


@dataclass(frozen=True)
class Trigger:
    """What happened to the ticket, as planning sees it. event: created | linked | appended |
    reopened | resolved | bounce | orphan | ignored."""

    event: str
    sender: Address | None = None
    human: bool = True                   # a person wrote it: agents hear of it
    no_auto_reply: bool = False          # nothing automatic may go to the sender
    ours: bool = False                   # our own mail came back
    ack_template: str | None = None      # e.g. "requester/ack-vip" chosen by a rule
    message_id: str | None = None
    subject: str = ""
    text: str = ""
    received: datetime | None = None
    language: str | None = None
    sla: Mapping[str, str] | None = None   # template `sla` (response_due, resolution_due) once SLAs exist
    known_error: Mapping[str, str] | None = None   # template `known_error`: the linked problem's workaround


@dataclass(frozen=True)
class PlannedMail:
    kind: str                            # ack | reopen | resolve | agent_new | agent_message
    audience: str                        # requester | agent
    to: Address
    agent: Agent | None = None


@dataclass(frozen=True)
class Plan:
    mails: tuple[PlannedMail, ...] = ()
    suppressed: tuple[str, ...] = ()
    alerts: tuple[FuseAlert, ...] = ()


# ---------------------------------------------------------------------- deciding
def plan_notifications(ticket, trigger: Trigger, agents: tuple[Agent, ...], history: MailHistory,
                       desk: Desk, fuses: Fuses, now: datetime) -> Plan:
    """The mails `trigger` on `ticket` (a store TicketRow) causes, after the fuses."""
    mails: list[PlannedMail] = []
    held: list[str] = []
    alerts: list[FuseAlert] = []
    if trigger.ours:
        alerts.append(FuseAlert(f"own-mail:{ticket.id}", now + timedelta(hours=1),
                                f"our own mail came back into {desk.prefix}-{ticket.id}; stored without triggers"))
        return Plan(alerts=tuple(alerts))
    flood = trigger.event in NEW_EVENTS and history.sender_new_tickets > fuses.sender_tickets_hour
    if flood:
        sender = trigger.sender.email.lower() if trigger.sender else ""
        held.append(f"sender {sender} opened {history.sender_new_tickets} tickets in an hour "
                    f"(limit {fuses.sender_tickets_hour}): no automatic mail")
        alerts.append(FuseAlert(f"sender-tickets:{sender}", now + timedelta(hours=1),
                                f"ticket flood: {sender} opened more than {fuses.sender_tickets_hour} "
                                f"tickets within an hour; acknowledgements and notifications held back"))
    kind = {"created": "ack", "linked": "ack", "reopened": "reopen", "resolved": "resolve"}.get(trigger.event)
    if kind and not flood and not trigger.no_auto_reply:
        _requester(kind, ticket, history, desk, fuses, now, mails, held, alerts)
    agent_kind = "agent_new" if trigger.event in NEW_EVENTS else \
        "agent_message" if trigger.event in REPLY_EVENTS and trigger.human else None
    if agent_kind and not flood:
        for agent in _agents_for(agent_kind, ticket, trigger, agents, desk):
            if agent.email in history.bouncing:
                held.append(f"{agent_kind} to {agent.email} held back: mail to it bounced recently")
                continue
            if history.sent_hour(agent.email) >= fuses.agent_hour:
                held.append(f"{agent.email}: {fuses.agent_hour} notifications in the last hour")
                alerts.append(FuseAlert(f"agent:{agent.email}", now + timedelta(hours=1),
                                        f"notification storm: {agent.email} reached {fuses.agent_hour} "
                                        f"automatic mails in an hour; further notifications held back"))
                continue
            mails.append(PlannedMail(agent_kind, "agent", Address(agent.name, agent.email), agent))
    return Plan(tuple(mails), tuple(held), tuple(alerts))


def _requester(kind: str, ticket, history: MailHistory, desk: Desk, fuses: Fuses, now: datetime,
               mails: list, held: list, alerts: list) -> None:
    email = (ticket.requester or "").lower()
    why = None
    if not email or mail_address(email) is None:
        why = f"no usable requester address {email!r}"
    elif email in desk.own:
        why = f"{email} is one of our own addresses"
    elif kind == "ack" and history.acks:
        why = "ticket already acknowledged"
    elif kind != "ack" and fuses.same_notice_days and (kind, email) in history.notices:
        why = (f"RFC 3834: the same {kind} notice about this ticket went to {email} within the last "
               f"{fuses.same_notice_days} days")
    elif email in history.bouncing:
        why = f"mail to {email} bounced recently"
    elif history.sent_hour(email) >= fuses.recipient_hour or history.sent_day(email) >= fuses.recipient_day:
        day = history.sent_day(email) >= fuses.recipient_day
        why = (f"{email} already got {history.sent_day(email) if day else history.sent_hour(email)} automatic "
               f"mails in the last {'day' if day else 'hour'}")
        alerts.append(FuseAlert(f"recipient:{email}", now + timedelta(days=1 if day else 0, hours=0 if day else 1),
                                f"mail loop guard: automatic mail to {email} capped at "
                                f"{fuses.recipient_day if day else fuses.recipient_hour} per "
                                f"{'day' if day else 'hour'}; further mail held back"))
    if why:
        held.append(f"{kind} to requester held back: {why}")
        return
    mails.append(PlannedMail(kind, "requester", Address("", email)))


def _agents_for(kind: str, ticket, trigger: Trigger, agents: tuple[Agent, ...], desk: Desk) -> list[Agent]:
    sender = trigger.sender.email.lower() if trigger.sender else ""
    pool = list(agents)
    if ticket.assignee:
        assignee = next((a for a in agents if a.email == ticket.assignee.lower()),
                        Agent(ticket.assignee.lower(), "", "agent"))
        pool = [assignee] if kind == "agent_message" else pool + [assignee]
    seen: set[str] = set()
    out = []
    for a in pool:
        if a.email in seen or a.email == sender or a.email in desk.own:
            continue
        seen.add(a.email)
        out.append(a)
    return out


# ---------------------------------------------------------------------- building
@dataclass(frozen=True)
class QueueInfo:
    name: str
    description: str = ""


@dataclass(frozen=True)
class Built:
    mails: tuple[OutgoingMail, ...] = ()
    problems: tuple[str, ...] = field(default=())


ReplyToken = Callable[[int, str], "str | None"]       # (ticket id, agent address) -> token or None


def build_mails(plan: Plan, ticket, trigger: Trigger, history: MailHistory, desk: Desk, templates: Templates,
                ring: tokens.Keyring, queue: QueueInfo, now: datetime,
                random: Callable[[int], bytes], reply_token: ReplyToken | None = None) -> Built:
    """Render and compose every planned mail. A mail that cannot be built is left out and
    named in `problems` (the ticket is stored regardless). `reply_token` is the slot for
    per-agent reply tokens: its token goes into the agent's Reply-To (`local+TOKEN@domain`)."""
    out, problems = [], []
    for planned in plan.mails:
        try:
            token = reply_token(ticket.id, planned.to.email) if reply_token and planned.audience == "agent" else None
            out.append(_build(planned, ticket, trigger, history, desk, templates, ring, queue, now, random(8), token))
        except Exception as exc:             # noqa: BLE001 - one bad mail must not block the ticket
            problems.append(f"{planned.kind} to {planned.to.email}: {exc.__class__.__name__}: {exc}")
    return Built(tuple(out), tuple(problems))


def _build(planned: PlannedMail, ticket, trigger: Trigger, history: MailHistory, desk: Desk,
           templates: Templates, ring: tokens.Keyring, queue: QueueInfo, now: datetime, nonce: bytes,
           token: str | None = None) -> OutgoingMail:
    lang = (history.language or trigger.language) if planned.audience == "requester" else None
    name = _template(planned, trigger, templates, ticket.queue, lang)
    subject = normalize_subject(ticket.subject, desk.prefix) or "(no subject)"
    tag = f"[{desk.prefix}-{ticket.id}]"
    ctx = _context(planned, ticket, trigger, desk, queue, lang or "en", subject, tag)
    body = templates.render(name, ctx, f"{tag} {subject}")
    mid = tokens.message_id(ring, TOKEN_KIND[planned.kind], ticket.id, nonce, desk.domain)
    author = (trigger.sender.name or trigger.sender.email) if trigger.sender else ticket.requester
    from_name = desk.name if planned.audience == "requester" else f"{author} via {desk.name}"
    headers = Headers(
        from_name=from_name, from_email=desk.address, to=(planned.to,), subject=_tagged(body.subject, tag),
        message_id=mid, date=now, in_reply_to=trigger.message_id or (history.conversation[-1:] or [None])[0],
        references=history.conversation + ((trigger.message_id,) if trigger.message_id else ()),
        reply_to=tokens.reply_address(desk.address, token) if planned.audience == "agent" else None,
        auto="auto-replied" if planned.kind == "ack" else "auto-generated",
        loop=tokens.loop_marker(desk.address), ticket_ref=f"{desk.prefix}-{ticket.id}", lang=body.lang or lang)
    return OutgoingMail(ticket.id, planned.kind, planned.audience, name, mid, nonce.hex(),
                        tokens.bounce_address(ring, desk.address, nonce), (planned.to.email,),
                        compose(headers, body), headers.auto)


def _template(planned: PlannedMail, trigger: Trigger, templates: Templates, queue: str, lang: str | None) -> str:
    event = {"agent_new": "new", "agent_message": "message"}.get(planned.kind, planned.kind)
    if planned.kind == "ack" and trigger.ack_template and trigger.ack_template.startswith("requester/"):
        chosen = templates.find("requester", trigger.ack_template.split("/", 1)[1], queue=queue, lang=lang)
        if chosen:
            return chosen
    name = templates.find(planned.audience, event, queue=queue, lang=lang)
    if name is None:
        raise LookupError(f"no template {planned.audience}/{event}")
    return name


def _context(planned: PlannedMail, ticket, trigger: Trigger, desk: Desk, queue: QueueInfo, lang: str,
             subject: str, tag: str) -> dict:
    stamp = _stamp
    sender = trigger.sender or Address("", ticket.requester or "")
    requester_name = sender.name if sender.email.lower() == (ticket.requester or "").lower() else ""
    message = None if trigger.event == "resolved" else message_vars(
        sanitize(trigger.subject), trigger.text, sanitize(sender.name), sender.email,
        stamp(trigger.received) if trigger.received else "")
    agent = None
    if planned.agent is not None:
        a = planned.agent
        agent = {"name": a.name, "email": a.email, "role": a.role, "display": a.name or a.email}
    return build_context(
        desk={"name": desk.name, "address": desk.address},
        ticket={"id": ticket.id, "ref": f"{desk.prefix}-{ticket.id}", "tag": tag, "subject": subject,
                "status": ticket.status, "priority": ticket.priority, "queue": ticket.queue, "type": ticket.type,
                "created": stamp(ticket.created_at), "requester": ticket.requester},
        requester={"name": sanitize(requester_name), "email": ticket.requester,
                   "display": sanitize(requester_name) or ticket.requester},
        message=message, queue={"name": queue.name, "description": queue.description}, lang=lang,
        reply_to=desk.address, agent=agent, sla=trigger.sla, known_error=trigger.known_error)


def _tagged(subject: str, tag: str) -> str:
    subject = sanitize(subject)
    return subject if tag.lower() in subject.lower() else f"{tag} {subject}"
