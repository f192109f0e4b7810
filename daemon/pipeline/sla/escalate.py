"""Escalate: what one due SLA escalation level does to a ticket, and its mails (pure).

After `plan_escalations`/`due_now` (daemon.pipeline.sla) named a level due, the edge
(daemon.escalation) calls, inside the ticket transaction:

  plan_escalation    who is told (one mail per recipient), whom the ticket goes to, the
                     new priority, the tags; with notes for what could not be done.
                     Recipients: `assignee` (nobody assigned: the queue's agents), `queue`
                     (its address, else its agents), `role:NAME` (those agents of the
                     ticket's queue), or an address. Our own addresses never get one.
                     Priority is only ever raised, never lowered.
  escalation_vars    the `escalation` template variable (same keys as
                     daemon.pipeline.render.ESCALATION_SAMPLE, which the template trial uses).
  build_escalation_mails  renders `<audience>/sla-*` templates and composes each mail
                     like every other automatic mail (daemon.pipeline.compose:
                     Auto-Submitted, X-Loop, MAC'd Message-ID, VERP); recipients whose
                     mail bounces, or who reached the hourly cap, are held back.

Nothing here does I/O; time and randomness come in as arguments.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Callable

from daemon.clock import duration_text, stamp  # noqa: F401  (importable from here)
from daemon.model import Address, Agent, FuseAlert, MailEffects, MailHistory, OutgoingMail, Queue
from daemon.pipeline import tokens
from daemon.pipeline.compose import Headers, compose
from daemon.pipeline.notify import Desk, Fuses, QueueInfo
from daemon.pipeline.render import Templates, build_context
from daemon.pipeline.sla.clocks import Escalation, Policy, SlaState
from daemon.pipeline.thread import normalize_subject

KIND = "escalation"                     # outbox kind of escalation mails
LABELS = {"first_response": "first response", "resolution": "resolution", "update": "update"}


@dataclass(frozen=True)
class Notice:
    """One escalation mail: template (`agent/sla-warning`), recipient, the recipient as an
    agent (for the `agent` variable), and why they get it."""

    template: str
    to: Address
    agent: Agent | None
    via: str


@dataclass(frozen=True)
class EscalationPlan:
    escalation: Escalation
    notices: tuple[Notice, ...] = ()
    assignee: str | None = None         # the new assignee (None: unchanged)
    priority: str | None = None         # the new priority (None: unchanged)
    tags: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()         # what could not be done, and why

    def summary(self) -> dict[str, Any]:
        """What the level did, for the event log and the fired row."""
        out: dict[str, Any] = {"key": self.escalation.key, "target": self.escalation.target,
                               "level": self.escalation.level, "percent": self.escalation.percent,
                               "due_at": self.escalation.due_at.isoformat(),
                               "notify": [{"to": n.to.email, "template": n.template, "via": n.via}
                                          for n in self.notices]}
        for key, value in (("reassigned_to", self.assignee), ("priority", self.priority)):
            if value:
                out[key] = value
        if self.tags:
            out["tags"] = list(self.tags)
        if self.notes:
            out["notes"] = list(self.notes)
        return out


# ---------------------------------------------------------------------- deciding
def plan_escalation(ticket, esc: Escalation, rules, own: frozenset[str] = frozenset()) -> EscalationPlan:
    """The effects of level `esc` on `ticket` (a store TicketRow) under rule set `rules`."""
    queue: Queue | None = rules.queues.get(ticket.queue) if rules is not None else None
    notices: list[Notice] = []
    notes: list[str] = []
    assignee = priority = None
    tags: list[str] = []
    for action in esc.actions:
        if action.kind == "notify":
            seen = {n.to.email for n in notices if n.template == action.value}
            for spec in action.to:
                for to, agent, via in _recipients(spec, ticket, queue, rules, notes):
                    if to.email in own or to.email in seen:
                        continue
                    seen.add(to.email)
                    notices.append(Notice(action.value, to, agent, via))
        elif action.kind == "reassign":
            assignee = _reassign(action.value, ticket, queue, notes) or assignee
        elif action.kind == "priority":
            priority = _raise(action.value, priority or ticket.priority, rules, notes) or priority
        elif action.kind == "tag" and action.value not in tags:
            tags.append(action.value)
    return EscalationPlan(esc, tuple(notices), assignee, priority, tuple(tags), tuple(notes))


def _agent(email: str, rules, queue: Queue | None) -> Agent | None:
    pools = [queue] if queue is not None else []
    pools += list(rules.queues.values()) if rules is not None else []
    return next((a for q in pools for a in q.agents if a.email == email), None)


def _recipients(spec: str, ticket, queue: Queue | None, rules, notes: list[str]):
    """(address, agent, via) for one `to:` entry."""
    agents = queue.agents if queue is not None else ()
    if spec == "assignee":
        if ticket.assignee:
            email = ticket.assignee.lower()
            agent = _agent(email, rules, queue) or Agent(email, "", "agent")
            return [(Address(agent.name, email), agent, "assignee")]
        if not agents:
            notes.append(f"no assignee and no agents in queue {ticket.queue!r} to tell")
        return [(Address(a.name, a.email), a, "queue agents (nobody assigned)") for a in agents]
    if spec == "queue":
        if queue is not None and queue.email:
            team = Agent(queue.email.lower(), f"{queue.name} team", "queue")
            return [(Address(team.name, team.email), team, "queue")]
        if not agents:
            notes.append(f"queue {ticket.queue!r} has no address and no agents to tell")
        return [(Address(a.name, a.email), a, "queue agents") for a in agents]
    if spec.startswith("role:"):
        role = spec[5:]
        found = [a for a in agents if a.role == role]
        if not found:
            notes.append(f"nobody has role {role!r} in queue {ticket.queue!r}")
        return [(Address(a.name, a.email), a, spec) for a in found]
    agent = _agent(spec, rules, queue)
    return [(Address(agent.name if agent else "", spec), agent or Agent(spec, "", "address"), "address")]


def _reassign(value: str, ticket, queue: Queue | None, notes: list[str]) -> str | None:
    if value.startswith("role:"):
        role = value[5:]
        agent = queue.with_role(role) if queue is not None else None
        if agent is None:
            notes.append(f"reassign: nobody has role {role!r} in queue {ticket.queue!r}")
            return None
        value = agent.email
    if (ticket.assignee or "").lower() == value:
        return None
    return value


def _raise(value: str, current: str, rules, notes: list[str]) -> str | None:
    levels = tuple(rules.matrix.levels) if rules is not None and rules.matrix is not None else ()
    if current not in levels:
        notes.append(f"priority: {current!r} is not a level of priority.yaml")
        return None
    at = levels.index(current)
    if value == "raise":
        if at == 0:
            notes.append(f"priority: already {current}, the highest")
            return None
        return levels[at - 1]
    if value in levels and levels.index(value) < at:
        return value
    notes.append(f"priority: {current} is already {value} or higher (escalations never lower it)")
    return None


# ---------------------------------------------------------------------- template variables
def _who(email: str | None, rules, queue: Queue | None) -> str:
    if not email:
        return ""
    agent = _agent(email.lower(), rules, queue)
    return f"{agent.name} <{email}>" if agent is not None and agent.name else email


def escalation_vars(plan: EscalationPlan, before, state: SlaState, policy: Policy, rules) -> dict[str, Any]:
    """The `escalation` variable: `before` is the ticket before the level's actions,
    `state` the SLA state after them."""
    esc = plan.escalation
    queue = rules.queues.get(before.queue) if rules is not None else None
    clock = state.clock(esc.target)
    left = clock.left if clock is not None else None
    breached = bool(clock is not None and clock.breached)
    due = stamp(clock.due_at) if clock is not None else ""
    when = f" ({due})" if due else ""
    if clock is None:
        phrase = ""
    elif breached:
        phrase = f"overdue by {duration_text(left)} of business time{when}"
    else:
        phrase = f"due in {duration_text(left)} of business time{when}"
    targets = policy.targets.get(state.priority)
    return {
        "level": esc.level, "percent": f"{esc.percent:g}%", "target": esc.target,
        "target_label": LABELS.get(esc.target, esc.target),
        "goal": duration_text(clock.goal) if clock is not None else "-", "due": due,
        "elapsed": duration_text(clock.elapsed) if clock is not None else "-",
        "left": duration_text(left) if left is not None and not breached else "0m",
        "overdue": duration_text(left) if breached else "", "breached": breached, "state": phrase,
        "policy": policy.name, "policy_description": policy.description,
        "calendar": targets.calendar.name if targets is not None else "",
        "priority_before": before.priority, "priority": plan.priority or before.priority,
        "priority_raised": plan.priority or "",
        "assignee": _who(plan.assignee or before.assignee, rules, queue),
        "reassigned_to": _who(plan.assignee, rules, queue),
        "tags_added": ", ".join(plan.tags),
        "recipients": ", ".join(n.to.email for n in plan.notices)}


# ---------------------------------------------------------------------- building
def build_escalation_mails(plan: EscalationPlan, ticket, variables: dict[str, Any], sla: dict[str, str] | None,
                           history: MailHistory, desk: Desk, fuses: Fuses, templates: Templates,
                           ring: tokens.Keyring, queue: QueueInfo, now: datetime,
                           random: Callable[[int], bytes]) -> MailEffects:
    """One mail per notice of `plan` about `ticket` (after the level's actions)."""
    mails: list[OutgoingMail] = []
    held: list[str] = []
    alerts: list[FuseAlert] = []
    for notice in plan.notices:
        email = notice.to.email
        if email in history.bouncing:
            held.append(f"{notice.template} to {email} held back: mail to it bounced recently")
            continue
        if history.sent_hour(email) + sum(1 for m in mails if email in m.recipients) >= fuses.agent_hour:
            held.append(f"{email}: {fuses.agent_hour} notifications in the last hour")
            alerts.append(FuseAlert(f"agent:{email}", now + timedelta(hours=1),
                                    f"notification storm: {email} reached {fuses.agent_hour} automatic mails "
                                    f"in an hour; further notifications held back"))
            continue
        try:
            mails.append(_build(notice, ticket, variables, sla, history, desk, templates, ring, queue, now, random(8)))
        except Exception as exc:             # noqa: BLE001 - one bad mail must not block the level
            held.append(f"not built: {notice.template} to {email}: {exc.__class__.__name__}: {exc}")
    return MailEffects(mails=tuple(mails), alerts=tuple(alerts), suppressed=tuple(held))


def _build(notice: Notice, ticket, variables: dict[str, Any], sla: dict[str, str] | None, history: MailHistory,
           desk: Desk, templates: Templates, ring: tokens.Keyring, queue: QueueInfo, now: datetime,
           nonce: bytes) -> OutgoingMail:
    audience, _, event = notice.template.partition("/")
    name = templates.find(audience, event, queue=ticket.queue)
    if name is None:
        raise LookupError(f"no template {notice.template}")
    subject = normalize_subject(ticket.subject, desk.prefix) or "(no subject)"
    tag = f"[{desk.prefix}-{ticket.id}]"
    agent = None
    if audience == "agent":
        a = notice.agent or Agent(notice.to.email, notice.to.name, "")
        agent = {"name": a.name, "email": a.email, "role": a.role, "display": a.name or a.email}
    ctx = build_context(
        desk={"name": desk.name, "address": desk.address},
        ticket={"id": ticket.id, "ref": f"{desk.prefix}-{ticket.id}", "tag": tag, "subject": subject,
                "status": ticket.status, "priority": ticket.priority, "queue": ticket.queue, "type": ticket.type,
                "created": stamp(ticket.created_at), "requester": ticket.requester},
        requester={"name": "", "email": ticket.requester, "display": ticket.requester},
        message=None, queue={"name": queue.name, "description": queue.description}, lang="en",
        reply_to=desk.address, agent=agent, sla=sla, escalation=variables)
    body = templates.render(name, ctx, f"{tag} SLA {variables['level']}: {subject}")
    mid = tokens.message_id(ring, "agent", ticket.id, nonce, desk.domain)
    headers = Headers(from_name=desk.name, from_email=desk.address, to=(notice.to,),
                      subject=body.subject if tag.lower() in body.subject.lower() else f"{tag} {body.subject}",
                      message_id=mid, date=now, in_reply_to=(history.conversation[-1:] or [None])[0],
                      references=history.conversation, reply_to=desk.address if audience == "agent" else None,
                      auto="auto-generated", loop=tokens.loop_marker(desk.address),
                      ticket_ref=f"{desk.prefix}-{ticket.id}")
    return OutgoingMail(ticket.id, KIND, audience, name, mid, nonce.hex(),
                        tokens.bounce_address(ring, desk.address, nonce), (notice.to.email,), compose(headers, body),
                        headers.auto)


def with_changes(ticket, plan: EscalationPlan):
    """The ticket row as it is after the plan's reassignment and priority change."""
    return replace(ticket, assignee=plan.assignee or ticket.assignee, priority=plan.priority or ticket.priority)
