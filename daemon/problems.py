"""Problem management in the worker's write transaction: what resolving a problem causes,
and the known error a new incident's acknowledgement carries.

Linking is done by commands (`#problem HD-7` on an incident, `#link HD-12 HD-13` on the
problem, `helpdesk update --problem`: store.problems through store.tickets) and by a rule
(`problem: HD-7`: `link_new`, called by daemon.message_path for a new ticket, live mail or
an archive import). When a problem becomes resolved, `on_resolved` resolves its linked
incidents that are still open (the problem queue's `resolve_linked_incidents`, default true;
each gets a `status` event naming the problem and its SLA plan is re-planned) and tells
each of their requesters once (`requester/problem-resolved`, on their own incident, so an
answer threads there): the plan is daemon.pipeline.problems', the mails are built by
daemon.pipeline.requester_notice.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Callable

from daemon import tokens
from daemon.model import MailEffects, Routing
from daemon.pipeline.notify import Desk
from daemon.pipeline.problems import Incident, known_error_vars, plan_resolution, problem_vars
from daemon.pipeline.requester_notice import Notice, requester_notice
from store.records import TicketRow

log = logging.getLogger(__name__)


def combine(*effects: MailEffects) -> MailEffects:
    """Several plans' effects as one (mails, bounces, alerts and held mail in order; the
    first language named)."""
    return MailEffects(mails=tuple(x for e in effects for x in e.mails),
                       bounces=tuple(x for e in effects for x in e.bounces),
                       alerts=tuple(x for e in effects for x in e.alerts),
                       suppressed=tuple(x for e in effects for x in e.suppressed),
                       language=next((e.language for e in effects if e.language), None))


def link_new(tx, ticket_id: int | None, routing: Routing, now: datetime, prefix: str) -> None:
    """A rule's `problem:` links a new ticket to that problem (when it is open). No mail:
    daemon.message_path calls it for live mail (before planning, so the acknowledgement
    names the problem) and for an archive import alike."""
    if ticket_id is None or routing.problem is None:
        return
    rule = next((h.split(" -> ")[0] for h in routing.hits if "problem=" in h), "a rule")
    if tx.problems.link_new(ticket_id, routing.problem, now, rule[:200], prefix):
        log.info("ticket=%s linked to problem %s-%s by a rule", ticket_id, prefix, routing.problem)


class ProblemDesk:
    """See module docstring. Built once by the composition root (daemon.app)."""

    def __init__(self, desk: Desk, templates, ring: tokens.Keyring, rules: Callable[[], Any],
                 random: Callable[[int], bytes], sla=None):
        self.desk, self.templates, self.ring, self.rules, self.random, self.sla = \
            desk, templates, ring, rules, random, sla

    def known_error(self, tx, ticket_id: int) -> dict | None:
        """The `known_error` template variable for a new incident's acknowledgement."""
        known = tx.problems.known_error(ticket_id)
        if known is None:
            return None
        return known_error_vars(f"{self.desk.prefix}-{known.problem_id}", known.subject, known.workaround)

    def on_resolved(self, tx, problem: TicketRow, now: datetime) -> MailEffects:
        """What the problem `problem`, resolved just now in `tx`, causes (module docstring)."""
        if problem.type != "problem":
            return MailEffects()
        rules = self.rules()
        queue = rules.queues.get(problem.queue) if rules is not None else None
        linked = tx.problems.incidents(problem.id)
        plan = plan_resolution([Incident(i.id, i.status, i.requester) for i in linked],
                               tx.problems.notified(problem.id), self.desk.own,
                               queue.resolve_linked_incidents if queue is not None else True)
        ref = f"{self.desk.prefix}-{problem.id}"
        tx.lock_tickets(plan.resolve)                    # locked first with the problem already (store.writing)
        for tid in plan.resolve:
            tx.change_status(tid, "resolved", now, f"problem {ref} resolved")
            if self.sla is not None:
                self.sla.track(tx.sla, tx.ticket(tid), now)
        workaround = tx.problems.workaround(problem.id)
        mails, held = [], list(plan.skipped)
        for tid, email in plan.notify:
            incident = tx.ticket(tid)
            history = tx.mail_history(tid, [email], "", now)
            if email in history.bouncing:
                held.append(f"problem-resolved to {email} held back: mail to it bounced recently")
                continue
            extra = {"problem": problem_vars(ref, problem.subject, workaround, f"{self.desk.prefix}-{tid}")}
            try:
                mails.append(requester_notice(Notice("problem_resolved", "problem-resolved", extra), incident,
                                              history, self.desk, self.templates.current, self.ring,
                                              self._queue(rules, incident.queue), now, self.random(8)))
            except Exception as exc:               # noqa: BLE001 - one bad mail must not block the change
                held.append(f"not built: problem-resolved to {email}: {exc.__class__.__name__}: {exc}")
                log.error("ticket=%s problem-resolved notice not built: %s", tid, exc)
                continue
            tx.problems.mark_notified(problem.id, email, tid, now)
        log.info("ticket=%s problem resolved: %d incident(s) resolved, %d requester(s) told", problem.id,
                 len(plan.resolve), len(mails))
        return MailEffects(mails=tuple(mails), suppressed=tuple(held))

    @staticmethod
    def _queue(rules, name: str) -> dict[str, str]:
        queue = rules.queues.get(name) if rules is not None else None
        return {"name": name, "description": queue.description if queue is not None else ""}
