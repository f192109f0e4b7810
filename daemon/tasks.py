"""The task queue (huey) that sends every mail, and the mail side of a helpdeskd process.

huey only nudges; the outbox is the truth (huey is at-most-once: a task killed mid-run is
lost). Flow: the spool worker stores a message and its outbox rows in one transaction
(`Outbound.plan_message`), then enqueues `send_outbox(id)` per row. The task claims the
row with a lease, sends it through the relay, records per-recipient results and, after
a temporary failure, schedules itself again (the backoff of daemon.mailer). `sweep`
re-enqueues rows that are due but were never (or too long ago) enqueued and rows whose
lease expired (a killed sender); it runs every `[queue] sweep_seconds` and at start.

`huey` is the one sanctioned module-level object. `configure_queue(cfg)` picks its
storage: SqliteHuey in the state directory (consumer threads inside `helpdesk serve`),
Redis (`helpdesk worker` processes; serve consumes too), or immediate (unit tests).
Entry points for the composition root: `attach_outbound(app)`, `start_consumer(app)`,
`run_worker(cfg)`.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from huey import Huey, crontab
from huey.consumer import Scheduler, Worker as HueyWorker
from huey.storage import MemoryStorage, RedisStorage, SqliteStorage
from sqlalchemy.exc import OperationalError

from daemon import systemd, tokens
from daemon.clock import build_clock
from daemon.errors import HelpdeskError
from daemon.mailer import RateLimit, Relay, RetryPolicy, relay_settings, settle
from daemon.model import (BounceMark, Envelope, MachineVerdict, MailEffects, ParsedMessage, Routing,
                          ThreadDecision)
from daemon.pipeline.notify import (NEW_EVENTS, Desk, Fuses, QueueInfo, Trigger, build_mails,
                                    plan_notifications)
from daemon.render import LiveTemplates, watch_templates
from store.outbox import OutboundRef, OutboxStore, RcptOutcome

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class HelpdeskHuey(Huey):
    """huey whose storage is chosen at run time, plus the delivery context tasks use."""

    context: "Delivery | None" = None
    sla: Any = None                     # daemon.escalation.Escalator: what `escalate` tasks need

    def use(self, storage_class: Any, immediate: bool, **kwargs: Any) -> None:
        self.storage_class, self.storage_kwargs, self._immediate = storage_class, kwargs, immediate
        self.storage = self.create_storage()

    def delivery(self) -> "Delivery":
        if self.context is None:
            raise HelpdeskError("the task queue has no delivery context (attach_outbound/run_worker not called)")
        return self.context


huey = HelpdeskHuey("helpdeskd", results=False, immediate=True)


def configure_queue(cfg) -> HelpdeskHuey:
    """Point `huey` at the configured backend ([queue] backend/url)."""
    backend = cfg.queue.backend
    if backend == "immediate":
        huey.use(MemoryStorage, True)
    elif backend == "redis":
        huey.use(RedisStorage, False, url=cfg.queue.url)
    else:
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        huey.use(SqliteStorage, False, filename=str(cfg.state_dir / "queue.db"), timeout=10)
    return huey


# ---------------------------------------------------------------------- tasks
@huey.task()
def send_outbox(outbox_id: int) -> None:
    """Send one outbox row (claim, relay, record)."""
    huey.delivery().send(outbox_id)


@huey.task()
def sweep() -> None:
    """Re-enqueue due and abandoned outbox rows."""
    huey.delivery().sweep()


@huey.periodic_task(crontab(minute="*"))
def sweep_periodically() -> None:
    """The safety net for `helpdesk worker`, whatever else runs."""
    huey.delivery().sweep()


@dataclass
class Delivery:
    """What the send task needs: the outbox, the relay, the retry policy and a clock."""

    outbox: OutboxStore
    relay: Relay
    policy: RetryPolicy
    lease_seconds: float = 120.0
    clock: Callable[[], datetime] = utcnow
    enqueue: Callable[[int], Any] = lambda i: send_outbox(i)
    limit: RateLimit | None = None

    def send(self, outbox_id: int) -> str | None:
        """One attempt at one row; its new status, or None when it was not ours to send."""
        wait = self.limit.take() if self.limit is not None else 0.0
        if wait > 0:                                  # over the relay rate: try again shortly
            self._later(outbox_id, wait)
            return None
        try:
            claim = self.outbox.claim(outbox_id, self.clock(), self.lease_seconds)
            if claim is None:
                return None
            blocked = claim.bouncing
            todo = [r for r in claim.recipients if r not in blocked]
            started = time.monotonic()
            results = self.relay.send(claim.mail_from, todo, claim.raw) if todo else []
            now = self.clock()
            outcomes, next_at = settle(results, attempt=claim.attempts, created_at=claim.created_at, now=now,
                                       policy=self.policy)
            outcomes += [RcptOutcome(r, "suppressed", 0, "recipient is bouncing") for r in blocked]
            error = "; ".join(sorted({o.reason for o in outcomes if o.reason}))[:1000]
            status = self.outbox.record(claim, outcomes, now, next_at, error, scheduled=not huey.immediate)
        except (HelpdeskError, OperationalError) as exc:     # database away: the sweep tries again later
            log.warning("outbox=%s not sent now: %s", outbox_id, exc)
            return None
        except Exception:                             # a task never dies of one mail
            log.exception("outbox=%s send failed", outbox_id)
            return None
        self._log(claim, outcomes, status, time.monotonic() - started)
        if status == "pending" and next_at is not None:
            self._later(outbox_id, (next_at - now).total_seconds())
        return status

    def _log(self, claim, outcomes: list[RcptOutcome], status: str | None, took: float) -> None:
        summary = ", ".join(f"{o.email}={o.status}{f' {o.code}' if o.code and o.status != 'sent' else ''}"
                            for o in outcomes)
        level = logging.INFO if status == "sent" else logging.WARNING
        log.log(level, "outbox=%s message_id=<%s> ticket=%s attempt=%d %s -> %s (%.3fs)", claim.id, claim.message_id,
                claim.ticket_id, claim.attempts, summary, status or "lease lost", took)

    def _later(self, outbox_id: int, delay: float) -> None:
        try:
            if not huey.immediate:
                send_outbox.schedule((outbox_id,), delay=max(delay, 0.0))
        except Exception as exc:                      # the sweep finds it when it is due
            log.warning("outbox=%s retry not scheduled (%s); the sweep will", outbox_id, exc)

    def sweep(self) -> int:
        """Enqueue every row a sender should pick up now; how many."""
        try:
            ids = self.outbox.due(self.clock(), self.lease_seconds)
        except (HelpdeskError, OperationalError) as exc:
            log.warning("outbox sweep skipped: %s", exc)
            return 0
        except Exception:
            log.exception("outbox sweep failed")
            return 0
        for i in ids:
            try:
                self.enqueue(i)
            except Exception as exc:
                log.warning("outbox=%s not enqueued (%s); next sweep", i, exc)
        if ids:
            log.info("outbox sweep: %d mail(s) handed to the senders", len(ids))
        return len(ids)


def build_delivery(cfg, outbox: OutboxStore, clock: Callable[[], datetime] = utcnow) -> Delivery:
    o = cfg.outbound
    outbox.bounce_days = o.bounce_suppress_days
    return Delivery(outbox, Relay(relay_settings(cfg)),
                    RetryPolicy(o.retry_first_seconds, o.retry_max_seconds, o.retry_days),
                    cfg.queue.lease_seconds, clock,
                    limit=RateLimit(o.max_per_minute) if o.max_per_minute > 0 else None)


# ---------------------------------------------------------------------- planning glue
class Outbound:
    """The mail side of the spool worker: recognises our own mail and bounces of it, plans
    the mail each stored message causes (pure stages, run inside the store transaction),
    and hands new outbox rows to the queue after the commit."""

    def __init__(self, cfg, store, templates: LiveTemplates, ring: tokens.Keyring,
                 rules: Callable[[], Any] = lambda: None, clock: Callable[[], datetime] = utcnow,
                 random: Callable[[int], bytes] = os.urandom, enqueue: Callable[[int], Any] | None = None):
        hd, loops = cfg.helpdesk, cfg.loops
        self.store, self.templates, self.ring, self.rules, self.clock, self.random = \
            store, templates, ring, rules, clock, random
        self.desk = Desk(hd.name, hd.address.lower(), hd.ticket_prefix, frozenset({hd.address.lower()}))
        self.fuses = Fuses(loops.max_per_recipient_hour, loops.max_per_recipient_day,
                           loops.max_new_tickets_per_sender_hour, loops.max_agent_mails_per_hour)
        self.bounce_days = cfg.outbound.bounce_suppress_days
        self.enqueue = enqueue or (lambda i: send_outbox(i))
        self.loop_marker = tokens.loop_marker(self.desk.address)
        self.reply_token: Callable[[int, str], str | None] | None = None   # agents' reply addresses (daemon.agents)
        self.sla = None                     # daemon.escalation.Escalator: SLA clocks re-planned in each transaction

    # -- before threading
    def inspect(self, msg: ParsedMessage, envelope: Envelope) -> ParsedMessage:
        """Our own mail becomes machine kind `loop`; mail to our bounce addresses a bounce."""
        marker = next((v for k, v in msg.headers if k.lower() == "x-loop" and v.strip().lower() == self.loop_marker),
                      None)
        tag = tokens.read_message_id(self.ring, msg.message_id)
        if marker or tag:
            why = f"X-Loop: {marker}" if marker else f"Message-ID <{msg.message_id}> is ours (MAC verified)"
            return replace(msg, machine=MachineVerdict("loop", (why,) + msg.machine.reasons, msg.machine.dsn,
                                                       suppress_auto_reply=True))
        if msg.machine.kind != "bounce" and self._verp(msg, envelope):
            return replace(msg, machine=MachineVerdict("bounce", ("sent to our bounce address",), msg.machine.dsn,
                                                       suppress_auto_reply=True))
        return msg

    def own_ticket(self, msg: ParsedMessage) -> int | None:
        """The ticket named by our own (MAC-verified) Message-ID on a mail that came back."""
        tag = tokens.read_message_id(self.ring, msg.message_id) if msg.machine.kind == "loop" else None
        return tag.ticket_id if tag else None

    def _verp(self, msg: ParsedMessage, envelope: Envelope) -> bytes | None:
        candidates = (*envelope.rcpt_to, *(a.email for a in msg.to))
        return next((n for n in (tokens.bounce_nonce(self.ring, r, self.desk.address) for r in candidates) if n),
                    None)

    def bounce_ref(self, msg: ParsedMessage, envelope: Envelope) -> OutboundRef | None:
        """The outbox row a bounce is about: by its VERP token, else by a verified original
        Message-ID in the delivery report."""
        nonce = self._verp(msg, envelope)
        if nonce is not None:
            ref = self.store.outbox.find(nonce=nonce.hex())
            if ref is not None:
                return ref
        original = msg.machine.dsn.original_message_id if msg.machine.dsn else None
        if original and tokens.read_message_id(self.ring, original):
            return self.store.outbox.find(message_id=original)
        return None

    # -- inside the transaction
    def plan_message(self, msg: ParsedMessage, decision: ThreadDecision, routing: Routing, now: datetime,
                     ref: OutboundRef | None = None):
        """The store's `plan` callback for one incoming message."""
        templates, rules = self.templates.current, self.rules()
        if ref is not None:
            dsn = msg.machine.dsn
            until = now + timedelta(days=self.bounce_days)
            mark = BounceMark(ref.id, dsn.recipients if dsn else (), dsn.action if dsn else "failed",
                              dsn.status if dsn else "", dsn.diagnostic if dsn else "", until)
            return lambda outcome, ticket, ledger: MailEffects(bounces=(mark,))
        trigger = Trigger(
            event="ignored" if routing.action != "ticket" else decision.action if decision.action == "bounce" else "",
            sender=msg.from_addr, human=msg.machine.is_human, ours=msg.machine.kind == "loop",
            no_auto_reply=msg.machine.no_auto_reply or routing.suppress_ack, ack_template=routing.ack_template,
            message_id=None if msg.message_id_synthetic else msg.message_id, subject=msg.subject, text=msg.text,
            received=now, language=language_of(msg))

        def plan(outcome: str, ticket, ledger) -> MailEffects:
            if ticket is None or trigger.event in ("ignored", "bounce"):
                return MailEffects()
            sla = self.sla.track(ledger.s, ticket, now, routing) if self.sla is not None else None
            return self._effects(replace(trigger, event=outcome, sla=sla), ticket, ledger, templates, rules, now)
        return plan

    def plan_status(self, now: datetime):
        """The `plan` callback for a status change (outcome `resolved` sends the notice)."""
        templates, rules = self.templates.current, self.rules()

        def plan(outcome: str, ticket, ledger) -> MailEffects:
            if ticket is None:
                return MailEffects()
            sla = self.sla.track(ledger.s, ticket, now) if self.sla is not None else None
            return self._effects(Trigger(event=outcome, human=False, sla=sla), ticket, ledger, templates, rules, now)
        return plan

    def _effects(self, trigger: Trigger, ticket, ledger, templates, rules, now: datetime) -> MailEffects:
        queue = rules.queues.get(ticket.queue) if rules is not None else None
        agents = queue.agents if queue is not None else ()
        recipients = [ticket.requester, *(a.email for a in agents), *([ticket.assignee] if ticket.assignee else [])]
        history = ledger.history(ticket.id, recipients, ticket.requester if trigger.event in NEW_EVENTS else "", now)
        plan = plan_notifications(ticket, trigger, agents, history, self.desk, self.fuses, now)
        built = build_mails(plan, ticket, trigger, history, self.desk, templates, self.ring,
                            QueueInfo(ticket.queue, queue.description if queue else ""), now, self.random,
                            reply_token=self.reply_token)
        for problem in built.problems:
            log.error("ticket=%s mail not built: %s", ticket.id, problem)
        lang = trigger.language if trigger.event in NEW_EVENTS and trigger.language in templates.languages else None
        return MailEffects(mails=built.mails, alerts=plan.alerts,
                           suppressed=plan.suppressed + tuple(f"not built: {p}" for p in built.problems), language=lang)

    # -- after the commit
    def after_save(self, result) -> None:
        """Enqueue the new outbox rows; log the alerts raised."""
        for alert in getattr(result, "alerts", ()):
            log.warning("ALERT ticket=%s %s (fuse %s)", result.ticket_id, alert.text, alert.key)
        for i in getattr(result, "outbox_ids", ()):             # rows are stored as enqueued now
            try:
                self.enqueue(i)
            except Exception as exc:              # the sweep picks it up after the grace period
                log.warning("outbox=%s ticket=%s not enqueued (%s); the sweep will", i, result.ticket_id, exc)
        if self.sla is not None:                  # schedule the ticket's next SLA check
            self.sla.after_commit(getattr(result, "ticket_id", None))

    def resolve(self, ticket_id: int, why: str = ""):
        """Mark a ticket resolved and send the requester the resolve notice."""
        now = self.clock()
        result = self.store.change_status(ticket_id, "resolved", now, why=why, plan=self.plan_status(now))
        self.after_save(result)
        return result


def language_of(msg: ParsedMessage) -> str | None:
    """The sender's language: the parser's guess, else the first Content-Language tag."""
    value = msg.language or msg.header("Content-Language") or ""
    primary = value.split(",")[0].strip().split("-")[0].lower()
    return primary if primary.isalpha() and 2 <= len(primary) <= 3 else None


# ---------------------------------------------------------------------- wiring
def attach_outbound(app, *, clock: Callable[[], datetime] = utcnow) -> Outbound:
    """Give a built App its mail side: keys, templates (a RulesError refuses start), the
    queue backend, the delivery context, and the spool worker's planner."""
    existing = getattr(app.worker, "mail", None)
    if isinstance(existing, Outbound):
        return existing
    cfg = app.config
    tokens.check_address(cfg.helpdesk.address)
    ring = tokens.load_keyring(cfg.state_dir, cfg.helpdesk.key_env, cfg.helpdesk.key_credential)
    templates = LiveTemplates(cfg.paths.templates)
    configure_queue(cfg)
    huey.context = build_delivery(cfg, app.store.outbox, clock)
    rules = app.rules
    outbound = Outbound(cfg, app.store, templates, ring, rules=lambda: rules.current if rules else None, clock=clock)
    app.worker.mail = outbound
    from daemon.agents import attach_agents          # the agent path: tokens, DKIM, commands
    attach_agents(app, outbound, clock)
    from daemon.escalation import attach_escalation  # SLA clocks and escalations
    attach_escalation(app, outbound, clock)
    app.reloaders.append(lambda: _templates_reloaded(app, templates.reload()))
    return outbound


def _templates_reloaded(app, problems: list[str]) -> None:
    """After a good template reload the rules may name the new templates (`ack: ...`)."""
    if not problems and app.rules is not None:
        from daemon.rules.tester import template_names
        app.rules.reload(known_templates=template_names(app.config.paths.templates))


def start_consumer(app) -> Callable[[], None]:
    """Inside `helpdesk serve`: sender threads, the scheduler (retries), the sweep and the
    template watcher. Returns the function that stops and joins them."""
    outbound = attach_outbound(app)
    cfg, stop = app.config, threading.Event()
    threads = [threading.Thread(target=_sweeper, args=(huey.delivery(), stop, cfg.queue.sweep_seconds),
                                name="outbox-sweep", daemon=True),
               threading.Thread(target=watch_templates, args=(outbound.templates, stop), name="templates-watch",
                                kwargs={"on_reload": lambda problems: _templates_reloaded(app, problems)},
                                daemon=True)]
    if outbound.sla is not None:
        from daemon.escalation import sweeper
        threads.append(threading.Thread(target=sweeper, args=(outbound.sla, stop, cfg.queue.sweep_seconds),
                                        name="sla-sweep", daemon=True))
    if not huey.immediate:
        for i in range(cfg.queue.workers):
            worker = HueyWorker(huey, stop, default_delay=0.01, max_delay=0.1, backoff=1.5)
            threads.append(threading.Thread(target=_run_process, args=(worker, stop), name=f"sender-{i + 1}",
                                            daemon=True))
        threads.append(threading.Thread(target=_run_process, args=(Scheduler(huey, stop, 1, False), stop),
                                        name="queue-scheduler", daemon=True))
    if logging.getLogger("huey").level == logging.NOTSET and not log.isEnabledFor(logging.DEBUG):
        logging.getLogger("huey").setLevel(logging.WARNING)          # one line per task is ours
    for t in threads:
        t.start()
    log.info("queue: %s backend, %d sender thread(s)", cfg.queue.backend, 0 if huey.immediate else cfg.queue.workers)

    def stopper(timeout: float = 30.0) -> None:
        stop.set()
        for t in threads:
            t.join(timeout)
    return stopper


def _run_process(process, stop: threading.Event) -> None:
    process.initialize()
    while not stop.is_set():
        try:
            process.loop()
        except Exception:                         # never die; huey logs task errors itself
            log.exception("queue thread error")
            stop.wait(1.0)


def _sweeper(delivery: Delivery, stop: threading.Event, every: float) -> None:
    delivery.sweep()
    while not stop.wait(every):
        delivery.sweep()


def run_worker(cfg) -> int:
    """`helpdesk worker`: consume the queue (sqlite or redis) until SIGTERM/SIGINT."""
    from daemon.app import open_store
    if cfg.queue.backend == "immediate":
        raise HelpdeskError("helpdesk worker needs queue.backend = \"sqlite\" or \"redis\"")
    store, clock = open_store(cfg), build_clock(cfg)
    configure_queue(cfg)
    huey.context = build_delivery(cfg, store.outbox, clock)
    stop = threading.Event()
    sweeper = threading.Thread(target=_sweeper, args=(huey.context, stop, cfg.queue.sweep_seconds),
                               name="outbox-sweep", daemon=True)
    sweeper.start()
    from daemon.escalation import attach_worker      # `escalate` tasks and the SLA sweep
    attach_worker(cfg, store, stop, clock)
    if logging.getLogger("huey").level == logging.NOTSET and not log.isEnabledFor(logging.DEBUG):
        logging.getLogger("huey").setLevel(logging.WARNING)
    consumer = huey.create_consumer(workers=cfg.queue.workers, worker_type="thread", initial_delay=0.01,
                                    max_delay=0.1, backoff=1.5, graceful_signal="TERM", shutdown_timeout=60)
    log.info("ready: queue worker, %s backend, %d sender thread(s)", cfg.queue.backend, cfg.queue.workers)
    systemd.notify(f"READY=1\nSTATUS=ready: queue worker, {cfg.queue.backend} backend")
    try:
        consumer.run()
    finally:
        stop.set()
        store.engine.dispose()
    return 0
