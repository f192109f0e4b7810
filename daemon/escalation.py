"""SLA timers and escalations: the edge between the pure SLA stage, the store and the queue.

  track      inside every ticket transaction the mail planner runs (a new message, a
             status change): chooses the policy at creation (select_policy: the routing's
             service policy wins), re-selects it when the queue changed, re-plans the
             clocks and stores the ticket's next due time (store.sla_store.ticketsla).
             Returns the `sla` template variable (the acknowledgement states the targets).
  after_commit  hands the next due time to huey (`escalate`, scheduled at that exact
             instant); a ticket changed by a path that did not track it (the agent path)
             is re-planned right away instead.
  fire       one transaction per ticket: lock the ticket, read its history, plan, and for
             each level due now insert its (ticket, key) row, apply its actions (reassign,
             priority, tags), write its mails into the outbox, re-plan. A second firer hits
             the unique row and rolls back: each level fires exactly once, also with two
             workers, an overlapping sweep or a restart in between. Paused and resolved
             tickets never escalate (the plan has no levels for them).
  sweep      every [queue] sweep_seconds (and each minute in `helpdesk worker`): fires
             tickets whose stored next due time has passed (queue lost, daemon was down),
             re-plans tickets changed since the last sweep (the event log as change feed)
             and, once per SLA settings version, every open ticket planned with older ones.

A task that runs early (the deadline moved) fires nothing; one that runs late fires what is
due then. All times are UTC from `clock`; a clock jump makes a level fire earlier or later,
never twice (its row exists) and never not at all (the sweep compares the stored due time
with the clock on every pass).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Callable

from huey import crontab
from sqlalchemy.exc import DBAPIError

from daemon.errors import HelpdeskError
from daemon.pipeline.escalate import (build_escalation_mails, escalation_vars, plan_escalation, stamp,
                                      with_changes)
from daemon.pipeline.notify import Desk, Fuses, QueueInfo
from daemon.pipeline.sla import (Escalation, Policy, SlaSettings, SlaState, TicketHistory, due_now,
                                 plan_escalations, policy_for, select_policy, sla_state)
from daemon.tasks import huey
from store.records import TicketRow
from store.sla_store import AlreadyFired, SlaStore, SlaTx

log = logging.getLogger(__name__)
MAX_ROUNDS = 10                       # levels fired in one transaction (a raise can make more due)
BATCH = 500


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# ---------------------------------------------------------------------- tasks
@huey.task()
def escalate(ticket_id: int) -> None:
    """Fire whatever SLA escalation level is due on one ticket (nothing when none is)."""
    if huey.sla is None:
        raise HelpdeskError("the task queue has no SLA context (attach_escalation not called)")
    huey.sla.fire(ticket_id)


@huey.periodic_task(crontab(minute="*"))
def sla_sweep_periodically() -> None:
    """The SLA safety net in `helpdesk worker` processes."""
    if huey.sla is not None:
        huey.sla.sweep()


def sla_vars(state: SlaState | None) -> dict[str, str] | None:
    """The `sla` template variable: both due times, or None (no targets, or paused)."""
    if state is None:
        return None
    fr, res = state.clock("first_response"), state.clock("resolution")
    if fr is None or res is None or res.due_at is None:
        return None
    return {"response_due": stamp(fr.due_at or fr.done_at), "resolution_due": stamp(res.due_at)}


def domain_of(email: str | None) -> str | None:
    return email.rpartition("@")[2].lower() if email and "@" in email else None


class Escalator:
    """The SLA side of a helpdeskd process (see module docstring)."""

    def __init__(self, cfg, store: SlaStore, live, templates, ring, *, clock: Callable[[], datetime] = utcnow,
                 enqueue_mail: Callable[[int], Any] = lambda i: None, random: Callable[[int], bytes] = os.urandom,
                 immediate: Callable[[], bool] = lambda: huey.immediate):
        hd, loops = cfg.helpdesk, cfg.loops
        self.store, self.live, self.templates, self.ring = store, live, templates, ring
        self.clock, self.enqueue_mail, self.random, self.immediate = clock, enqueue_mail, random, immediate
        self.desk = Desk(hd.name, hd.address.lower(), hd.ticket_prefix, frozenset({hd.address.lower()}))
        self.fuses = Fuses(loops.max_per_recipient_hour, loops.max_per_recipient_day,
                           loops.max_new_tickets_per_sender_hour, loops.max_agent_mails_per_hour)
        self._pending: dict[int, datetime | None] = {}
        self._lock = threading.Lock()
        self._planned_version: str | None = None

    def settings(self) -> tuple[Any, SlaSettings | None]:
        return self.live.loaded

    def fired_keys(self, tx: SlaTx, ticket_id: int) -> frozenset[str]:
        """The levels that fired (a test overrides this to see the unique row decide alone)."""
        return tx.fired_keys(ticket_id)

    # ------------------------------------------------------------------ inside a ticket transaction
    def track(self, s, ticket: TicketRow, now: datetime, routing=None) -> dict[str, str] | None:
        """Re-plan `ticket` in the caller's transaction (session `s`); the `sla` template
        variable. `routing` (a new message's) chooses the policy when there is none yet."""
        _, settings = self.settings()
        if settings is None:
            return None
        tx = SlaTx(s)
        history, policy, plans, moved = self._replan(tx, ticket, settings, now, routing=routing)
        with self._lock:
            self._pending[ticket.id] = plans[0].due_at if plans and moved else None
        return sla_vars(sla_state(history, policy, now))

    def _replan(self, tx: SlaTx, ticket: TicketRow, settings: SlaSettings, now: datetime, *, routing=None,
                fired: frozenset[str] | None = None) -> tuple[TicketHistory, Policy, tuple[Escalation, ...], bool]:
        """Plan and store; (history, policy, levels to fire, whether the next due time moved)."""
        row = tx.row(ticket.id)
        if row is None or row.queue != ticket.queue:
            service = row.service if row else getattr(routing, "service", None)
            requested = row.requested if row else getattr(routing, "sla_policy", None)
            choice = select_policy(settings, priority=ticket.priority, queue=ticket.queue, service=service,
                                   domain=domain_of(ticket.requester), requested=requested)
            name, reason = choice.name, choice.reason
            if row is not None and row.policy != name:
                tx.event(ticket.id, now, "sla_policy", {"from": row.policy, "to": name, "why": f"queue {row.queue} -> "
                                                        f"{ticket.queue}: {reason}"})
        else:
            name, reason, service, requested = row.policy, row.reason, row.service, row.requested
        history, seen = tx.plan_inputs(ticket, name)
        policy = policy_for(settings, history)
        if fired is None:
            fired = self.fired_keys(tx, ticket.id)
        plans = plan_escalations(history, policy, now, fired)
        due = plans[0].due_at if plans else None
        tx.save_plan(ticket.id, policy=name, reason=reason, service=service, requested=requested, queue=ticket.queue,
                     version=settings.version, next_due=due, now=now, current=row, seen=seen)
        return history, policy, plans, row is None or row.next_due_at != due

    def after_commit(self, ticket_id: int | None) -> None:
        """After a ticket transaction: schedule its next check (or re-plan it now when the
        change did not go through `track`)."""
        if ticket_id is None:
            return
        with self._lock:
            tracked = ticket_id in self._pending
            due = self._pending.pop(ticket_id, None)
        if not tracked:
            self.fire(ticket_id)
        elif due is not None:
            self.arm(ticket_id, due)

    def arm(self, ticket_id: int, due: datetime) -> None:
        """Have huey run `escalate(ticket_id)` at `due` (at once when it has passed)."""
        try:
            if self.immediate():
                if due <= self.clock():
                    self.fire(ticket_id)
                return
            escalate.schedule((ticket_id,), eta=due)
        except Exception as exc:                  # the sweep finds it when it is due
            log.warning("ticket=%s SLA check not scheduled (%s); the sweep will", ticket_id, exc)

    # ------------------------------------------------------------------ firing
    def fire(self, ticket_id: int) -> tuple[str, ...]:
        """Fire the levels due on one ticket now; the keys fired (by this call)."""
        for attempt in range(3):
            try:
                keys, outbox_ids, next_due, done = self._fire(ticket_id)
            except AlreadyFired as exc:
                log.info("ticket=%s escalation already fired by another worker (%s); nothing sent", ticket_id,
                         exc.__cause__.__class__.__name__ if exc.__cause__ else "")
                return ()
            except (DBAPIError, HelpdeskError) as exc:       # locked, deadlock, database away
                log.warning("ticket=%s SLA check failed (attempt %d): %s", ticket_id, attempt + 1, exc)
                time.sleep(0.05 * (attempt + 1))
                continue
            for line in done:                          # committed: now it is true
                log.info("ticket=%s %s", ticket_id, line)
            for i in outbox_ids:
                try:
                    self.enqueue_mail(i)
                except Exception as exc:      # the outbox sweep sends it
                    log.warning("outbox=%s ticket=%s not enqueued (%s); the sweep will", i, ticket_id, exc)
            if next_due is not None:
                self.arm(ticket_id, next_due)
            return keys
        return ()

    def _fire(self, ticket_id: int) -> tuple[tuple[str, ...], tuple[int, ...], datetime | None, list[str]]:
        rules, settings = self.settings()
        if settings is None:
            return (), (), None, []
        templates, now = self.templates.current, self.clock()
        keys: list[str] = []
        outbox_ids: list[int] = []
        done: list[str] = []
        with self.store.transaction() as tx:
            ticket = tx.ticket(ticket_id, lock=True)
            if ticket is None:
                return (), (), None, []
            fired = set(self.fired_keys(tx, ticket_id))
            moved = False
            for _ in range(MAX_ROUNDS):
                history, policy, plans, moved_now = self._replan(tx, ticket, settings, now, fired=frozenset(fired))
                moved = moved or moved_now
                due = due_now(plans, now)
                if not due:
                    break
                for esc in due:
                    ticket, ids, line = self._one(tx, ticket, esc, history, policy, rules, templates, now)
                    done.append(line)
                    history = replace(history, priority=ticket.priority)
                    fired.add(esc.key)
                    keys.append(esc.key)
                    outbox_ids += ids
            next_due = plans[0].due_at if plans and moved else None      # unmoved: already scheduled
        return tuple(keys), tuple(outbox_ids), next_due, done

    def _one(self, tx: SlaTx, ticket: TicketRow, esc: Escalation, history: TicketHistory, policy: Policy,
             rules, templates, now: datetime) -> tuple[TicketRow, tuple[int, ...], str]:
        """Fire one level: its unique row first, then its actions and mails."""
        plan = plan_escalation(ticket, esc, rules, self.desk.own)
        tx.record_fired(ticket.id, key=esc.key, target=esc.target, level=esc.level, due_at=esc.due_at, now=now,
                        detail=plan.summary())
        after = with_changes(ticket, plan)
        why = f"SLA escalation {esc.key}"
        for field, old, new in (("assignee", ticket.assignee, plan.assignee), ("priority", ticket.priority,
                                                                               plan.priority)):
            if new:
                tx.event(ticket.id, now, "changed", {"field": field, "from": old, "to": new, "why": why})
        if plan.assignee or plan.priority:
            tx.change_ticket(ticket.id, now, assignee=plan.assignee, priority=plan.priority)
        for tag in plan.tags:
            if tx.add_tag(ticket.id, tag):
                tx.event(ticket.id, now, "tagged", {"tag": tag, "set": True, "by": why})
        state = sla_state(replace(history, priority=after.priority), policy, now)
        variables = escalation_vars(plan, ticket, state, policy, rules)
        queue = rules.queues.get(ticket.queue) if rules is not None else None
        mails = tx.ledger.history(ticket.id, [n.to.email for n in plan.notices], "", now)
        effects = build_escalation_mails(plan, after, variables, sla_vars(state), mails, self.desk, self.fuses,
                                         templates, self.ring, QueueInfo(ticket.queue, queue.description if queue
                                                                          else ""), now, self.random)
        applied = tx.mail(effects, ticket.id, now)
        tx.event(ticket.id, now, "sla_escalation", dict(plan.summary(), state=variables["state"]))
        for alert in applied.alerts:
            log.warning("ALERT ticket=%s %s (fuse %s)", ticket.id, alert.text, alert.key)
        line = (f"SLA {esc.key} fired ({esc.target} at {esc.percent:g}%, due {esc.due_at.isoformat()}): "
                f"{len(effects.mails)} mail(s)" + "".join(f"; {n}" for n in plan.notes + effects.suppressed))
        return after, applied.outbox_ids, line

    # ------------------------------------------------------------------ the safety net
    def sweep(self) -> int:
        """Fire what is due, re-plan what changed; how many tickets were checked."""
        _, settings = self.settings()
        if settings is None:
            return 0
        checked: set[int] = set()
        try:
            if self._planned_version != settings.version:
                after = 0
                while batch := self.store.unplanned(settings.version, after, BATCH):
                    checked |= self._check(batch)
                    after = batch[-1]
                self._planned_version = settings.version
            checked |= self._check(self.store.changed())
            while batch := [i for i in self.store.due(self.clock(), BATCH) if i not in checked]:
                checked |= self._check(batch)
        except (DBAPIError, HelpdeskError) as exc:
            log.warning("SLA sweep stopped: %s", exc)
        except Exception:                          # the sweeper never dies
            log.exception("SLA sweep failed")
        return len(checked)

    def _check(self, ids) -> set[int]:
        for ticket_id in ids:
            self.fire(ticket_id)
        return set(ids)


# ---------------------------------------------------------------------- wiring
def build_escalator(cfg, engine, live, templates, ring, *, clock: Callable[[], datetime] = utcnow,
                    enqueue_mail: Callable[[int], Any] | None = None) -> Escalator:
    from daemon.tasks import send_outbox
    return Escalator(cfg, SlaStore(engine), live, templates, ring, clock=clock,
                     enqueue_mail=enqueue_mail or (lambda i: send_outbox(i)))


def attach_escalation(app, outbound, clock: Callable[[], datetime] = utcnow) -> Escalator | None:
    """Give a built App's mail side its SLA timers (called from daemon.tasks.attach_outbound)."""
    if app.rules is None:
        return None
    esc = build_escalator(app.config, app.store.engine, app.rules, outbound.templates, outbound.ring, clock=clock,
                          enqueue_mail=outbound.enqueue)
    outbound.sla = huey.sla = esc
    return esc


def sweeper(esc: Escalator, stop: threading.Event, every: float) -> None:
    """The SLA sweep loop (a thread in `helpdesk serve`); the first pass at once."""
    esc.sweep()
    while not stop.wait(every):
        esc.sweep()


def attach_worker(cfg, store, stop: threading.Event, clock: Callable[[], datetime] = utcnow) -> threading.Thread:
    """`helpdesk worker`: what its consumer needs to run `escalate` tasks (rules and SLA
    settings, templates, keys), their reload watchers and the SLA sweep."""
    from daemon import tokens
    from daemon.app import load_live_rules
    from daemon.render import LiveTemplates, watch_templates
    from daemon.rules.live import watch
    live = load_live_rules(cfg)
    templates = LiveTemplates(cfg.paths.templates)
    ring = tokens.load_keyring(cfg.state_dir, cfg.helpdesk.key_env, cfg.helpdesk.key_credential)
    huey.sla = build_escalator(cfg, store.engine, live, templates, ring, clock=clock)
    for target, args in ((watch, (live, stop)), (watch_templates, (templates, stop))):
        threading.Thread(target=target, args=args, daemon=True, name=f"{target.__name__}").start()
    thread = threading.Thread(target=sweeper, args=(huey.sla, stop, cfg.queue.sweep_seconds), name="sla-sweep",
                              daemon=True)
    thread.start()
    return thread

