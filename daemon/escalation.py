"""SLA timers and escalations: the edge between the pure SLA stage, the store and the queue.

  track      inside every ticket transaction the mail planner (daemon.outbound) runs (a new
             message, a status change): chooses the policy at creation (select_policy: the routing's
             service policy wins), re-selects it when the queue changed, re-plans the
             clocks and stores the ticket's next due time (store.sla_store.ticketsla).
             Returns the `sla` template variable (the acknowledgement states the targets).
  after_commit  arms the ticket's next due time (`arm`); a ticket changed by a path that
             did not track it (the agent path) is re-planned right away instead. A ticket
             several messages of one batch transaction tracked gets as many calls: the last
             arms the latest plan, the others do nothing. Tracks are counted per
             transaction, so those of a rolled-back one are forgotten at the ticket's next
             track. Immediate mode (tests) fires a due time that has passed at once.
  wake-up    the SLA table is the timer queue (ticketsla.next_due_at, indexed); huey only
             nudges. Arming asks daemon.sla.wakeups for an `sla_wake` task at the due time
             (none when a wake-up this process scheduled covers it; one per committed batch
             inside `one_wake_up`). `sla_wake` (`wake`) fires every ticket whose stored due
             time has passed (the sweep's query), then asks for a wake-up at the earliest
             stored due time after now (one MIN on the index): escalations keep their
             exact instant. `escalate(ticket_id)` tasks queued by an older version still
             fire their ticket.
  fire       one transaction per ticket: lock the ticket, read its history, plan, and for
             each level due now insert its (ticket, key) row, apply its actions (reassign,
             priority, tags), write its mails into the outbox, re-plan. A second firer hits
             the unique row and rolls back: each level fires exactly once, also with two
             workers, an overlapping sweep or a restart in between. Paused and resolved
             tickets never escalate (the plan has no levels for them).
  sweep      every [queue] sweep_seconds (and each minute in `helpdesk worker`): fires
             tickets whose stored next due time has passed (queue lost, daemon was down),
             re-plans tickets changed since the last sweep (the event log as change feed)
             and, once per SLA settings version, every open ticket planned with older ones;
             then keeps a wake-up at the next due time (a lost queue heals).

A wake-up that runs early (the deadline moved later) fires nothing for that ticket; one that
runs late fires what is due then. All times are UTC from `clock`; a clock jump makes a level
fire earlier or later, never twice (its row exists) and never not at all (the sweep compares
the stored due time with the clock on every pass).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Callable, ContextManager

from sqlalchemy.exc import DBAPIError

from daemon.clock import utcnow
from daemon.errors import HelpdeskError
from daemon.metrics import Metrics
from daemon.pipeline.notify import Desk, Fuses, QueueInfo
from daemon.pipeline.sla import (Escalation, Policy, SlaSettings, SlaState, TicketHistory, due_now,
                                 plan_escalations, policy_for, select_policy, sla_state)
from daemon.pipeline.sla.escalate import (build_escalation_mails, escalation_vars, plan_escalation, stamp,
                                          with_changes)
from daemon.sla.wakeups import WakeUps
from daemon.tasks import crontab, huey
from store.records import TicketRow
from store.sla_store import AlreadyFired, SlaStore, SlaTx

log = logging.getLogger(__name__)
MAX_ROUNDS = 10                       # levels fired in one transaction (a raise can make more due)
BATCH = 500


# ---------------------------------------------------------------------- tasks
def _bound() -> "Escalator":
    if huey.sla is None:
        raise HelpdeskError("the task queue has no SLA context (the composition root did not bind it)")
    return huey.sla


@huey.task()
def escalate(ticket_id: int) -> None:
    """Fire whatever SLA escalation level is due on one ticket (nothing when none is): tasks
    queued by a version that scheduled one per ticket."""
    _bound().fire(ticket_id)


@huey.task()
def sla_wake() -> None:
    """Fire every ticket due now and schedule the next wake-up (Escalator.wake)."""
    _bound().wake()


@huey.periodic_task(crontab(minute="*"))
def sla_sweep_periodically() -> None:
    """The SLA safety net in `helpdesk worker` processes."""
    if huey.sla is not None:
        huey.sla.sweep()


def sla_vars(state: SlaState | None, *, promise: bool = False) -> dict[str, str] | None:
    """The `sla` template variable: both due times, or None (no targets, or paused).
    `promise` (mail that tells the customer when we answer): `response_due` is the next
    answer we owe - the first response while it runs, else the resolution (a reopened
    ticket was answered already) - and None when that time has passed: never a deadline
    in the past."""
    if state is None:
        return None
    fr, res = state.clock("first_response"), state.clock("resolution")
    if fr is None or res is None or res.due_at is None:
        return None
    if not promise:
        return {"response_due": stamp(fr.due_at or fr.done_at), "resolution_due": stamp(res.due_at)}
    answer = fr.due_at if fr.due_at is not None and fr.done_at is None and not fr.breached else res.due_at
    if answer <= state.at or res.due_at <= state.at:
        return None
    return {"response_due": stamp(answer), "resolution_due": stamp(res.due_at)}


@dataclass
class _Pending:
    """A ticket tracked in the write transaction `tx` (a token), not yet after its commit:
    how many tracks wait for their after_commit, and the due time to arm then."""

    tx: object
    count: int = 0
    due: datetime | None = None


def domain_of(email: str | None) -> str | None:
    return email.rpartition("@")[2].lower() if email and "@" in email else None


class Escalator:
    """The SLA side of a helpdeskd process (see module docstring)."""

    def __init__(self, desk: Desk, fuses: Fuses, store: SlaStore, live, templates, ring, *,
                 clock: Callable[[], datetime] = utcnow, enqueue_mail: Callable[[int], Any] = lambda i: None,
                 random: Callable[[int], bytes] = os.urandom, immediate: Callable[[], bool] = lambda: huey.immediate,
                 metrics: Metrics | None = None):
        self.desk, self.fuses = desk, fuses
        self.store, self.live, self.templates, self.ring = store, live, templates, ring
        self.clock, self.enqueue_mail, self.random, self.immediate = clock, enqueue_mail, random, immediate
        self.metrics = metrics
        self._pending: dict[int, _Pending] = {}
        self.wakes = WakeUps(lambda due: sla_wake.schedule(eta=due), clock)
        self._lock = threading.Lock()
        self._planned_version: str | None = None

    def settings(self) -> tuple[Any, SlaSettings | None]:
        return self.live.loaded

    def fired_keys(self, tx: SlaTx, ticket_id: int) -> frozenset[str]:
        """The levels that fired, as `fire` reads them (a test overrides this to see the unique
        row decide alone); a re-plan in `track` has them from the plan inputs' statement."""
        return tx.fired_keys(ticket_id)

    # ------------------------------------------------------------------ inside a ticket transaction
    def track(self, tx: SlaTx, ticket: TicketRow, now: datetime, routing=None,
              fresh: int | None = None) -> dict[str, str] | None:
        """Re-plan `ticket` in the caller's write transaction (its SLA rows `tx`); the `sla`
        template variable. `routing` (a new message's) chooses the policy when there is none yet.
        `fresh`: the ticket was created in this transaction and nothing but its own save wrote
        to it, whose last event is `fresh` (store.records.Written): there is nothing to read."""
        _, settings = self.settings()
        if settings is None:
            return None
        history, policy, plans, moved = self._replan(tx, ticket, settings, now, routing=routing, fresh=fresh)
        token = tx.s.info.setdefault("sla_tracks", object())     # this transaction
        with self._lock:
            pending = self._pending.get(ticket.id)
            if pending is None or pending.tx is not token:         # none, or left by a transaction gone
                pending = self._pending[ticket.id] = _Pending(token)
            moved = moved or pending.due is not None               # an earlier track here moved it
            pending.count += 1
            pending.due = plans[0].due_at if plans and moved else None
        return sla_vars(sla_state(history, policy, now), promise=True)

    def _replan(self, tx: SlaTx, ticket: TicketRow, settings: SlaSettings, now: datetime, *, routing=None,
                fired: frozenset[str] | None = None,
                fresh: int | None = None) -> tuple[TicketHistory, Policy, tuple[Escalation, ...], bool]:
        """Plan and store; (history, policy, levels to fire, whether the next due time moved).
        `fresh`: see `track` (no plan row yet, so no level fired)."""
        row = tx.row(ticket.id) if fresh is None else None
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
        history, seen, stored = tx.plan_inputs(ticket, name) if fresh is None else \
            tx.created_inputs(ticket, name, fresh)
        policy = policy_for(settings, history)
        if fired is None:                 # a ticket never planned has fired nothing (fire plans first)
            fired = stored if row is not None else frozenset()
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
            pending = self._pending.get(ticket_id)
            if pending is not None:
                pending.count -= 1
                if pending.count > 0:              # another message of the transaction tracked it
                    return
                del self._pending[ticket_id]
        if pending is None:
            self.fire(ticket_id)
        elif pending.due is not None:
            self.arm(ticket_id, pending.due)

    def arm(self, ticket_id: int, due: datetime) -> None:
        """Have a wake-up run at `due` (at once when it has passed) for this ticket: inside
        `one_wake_up` the batch's earliest due time is kept for its end; immediate mode
        (tests) fires a passed one now."""
        if self.immediate():
            try:
                if due <= self.clock():
                    self.fire(ticket_id)
            except Exception as exc:              # the sweep finds it when it is due
                log.warning("ticket=%s SLA check not scheduled (%s); the sweep will", ticket_id, exc)
            return
        self.wakes.at(due)

    def one_wake_up(self) -> ContextManager[None]:
        """Around the `after_commit`s of one committed batch: at most one wake-up, at the
        earliest due time armed inside, none when one already covers it (daemon.sla.wakeups)."""
        return self.wakes.batch()

    def wake(self) -> int:
        """The wake-up task: fire every ticket due now, then schedule the next wake-up at
        the earliest due time still ahead; how many tickets were checked. A ticket left
        due (its check failed) is the sweep's."""
        _, settings = self.settings()
        if settings is None:
            return 0
        now = self.clock()
        with self.one_wake_up():                  # the fired tickets' next levels arm in it
            try:
                return len(self._fire_due(now))
            finally:
                self._arm_next(now)

    def _arm_next(self, now: datetime) -> None:
        """Keep a wake-up at the earliest stored due time after `now` (one indexed MIN)."""
        if self.immediate():                      # nothing runs later: arm fires what has passed
            return
        after = self.store.earliest_due(now)
        if after is not None:
            self.wakes.at(after)

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
            if keys and self.metrics is not None:
                self.metrics.escalation_fired(len(keys))
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
        """Fire what is due, re-plan what changed, keep a wake-up at the next due time (a
        lost queue heals); how many tickets were checked."""
        _, settings = self.settings()
        if settings is None:
            return 0
        checked: set[int] = set()
        try:
            with self.one_wake_up():              # the checked tickets' next levels: one wake-up
                if self._planned_version != settings.version:
                    after = 0
                    while batch := self.store.unplanned(settings.version, after, BATCH):
                        checked |= self._check(batch)
                        after = batch[-1]
                    self._planned_version = settings.version
                checked |= self._check(self.store.changed())
                checked |= self._fire_due(self.clock(), checked)
                self._arm_next(self.clock())
        except (DBAPIError, HelpdeskError) as exc:
            log.warning("SLA sweep stopped: %s", exc)
        except Exception:                          # the sweeper never dies
            log.exception("SLA sweep failed")
        return len(checked)

    def _fire_due(self, now: datetime, checked: set[int] | frozenset[int] = frozenset()) -> set[int]:
        """Fire every ticket whose stored next due time is at or before `now` (not in `checked`)."""
        done: set[int] = set()
        while batch := [i for i in self.store.due(now, BATCH) if i not in checked and i not in done]:
            done |= self._check(batch)
        return done

    def _check(self, ids) -> set[int]:
        for ticket_id in ids:
            self.fire(ticket_id)
        return set(ids)


def sweeper(esc: Escalator, stop: threading.Event, every: float) -> None:
    """The SLA sweep loop (a thread in `helpdesk serve`); the first pass at once."""
    esc.sweep()
    while not stop.wait(every):
        esc.sweep()
