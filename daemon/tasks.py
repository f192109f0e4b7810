"""The task queue (huey) that sends every mail, and the delivery context its tasks run with.

huey only nudges; the outbox is the truth (huey is at-most-once: a task killed mid-run is
lost). Flow: the spool worker stores a message and its outbox rows in one transaction,
then enqueues `send_outbox(id)` per row. The task claims the row with a lease, sends it
through the relay, records per-recipient results and, after a temporary failure,
schedules itself again (the backoff of daemon.mailer). `sweep` re-enqueues rows that are
due but were never (or too long ago) enqueued and rows whose lease expired (a killed
sender); it runs every `[queue] sweep_seconds` and at start.

`huey` is the one sanctioned module-level object. `configure_queue(cfg)` picks its
storage: SqliteHuey in the state directory (consumer threads inside `helpdesk serve`),
Redis (`helpdesk worker` processes; serve consumes too), or immediate (unit tests). The
composition root (daemon.app) hands the tasks their context with one explicit
`huey.bind(delivery, escalator)`; nothing else sets it.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from huey import Huey, crontab
from huey.consumer import Scheduler, Worker as HueyWorker
from huey.storage import MemoryStorage, RedisStorage, SqliteStorage
from sqlalchemy.exc import OperationalError

from daemon.clock import utcnow
from daemon.errors import HelpdeskError
from daemon.metrics import Metrics
from daemon.mailer import RateLimit, Relay, RetryPolicy, relay_settings, settle
from store.outbox_sender import OutboxStore, RcptOutcome

log = logging.getLogger(__name__)


class HelpdeskHuey(Huey):
    """huey whose storage is chosen at run time, plus the context its tasks run with."""

    context: "Delivery | None" = None
    sla: Any = None                     # daemon.escalation.Escalator: what `escalate` tasks need

    def use(self, storage_class: Any, immediate: bool, **kwargs: Any) -> None:
        self.storage_class, self.storage_kwargs, self._immediate = storage_class, kwargs, immediate
        self.storage = self.create_storage()

    def bind(self, delivery: "Delivery | None", escalator: Any = None) -> None:
        """The one place the tasks' context is set (by the composition root; None unbinds)."""
        self.context, self.sla = delivery, escalator

    def delivery(self) -> "Delivery":
        if self.context is None:
            raise HelpdeskError("the task queue has no delivery context (the composition root did not bind it)")
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
    metrics: Metrics | None = None

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
            if self.metrics is not None:
                self.metrics.outbox_result(status)
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


def build_delivery(cfg, outbox: OutboxStore, clock: Callable[[], datetime] = utcnow,
                   metrics: Metrics | None = None) -> "Delivery":
    o = cfg.outbound
    outbox.bounce_days = o.bounce_suppress_days
    return Delivery(outbox, Relay(relay_settings(cfg)),
                    RetryPolicy(o.retry_first_seconds, o.retry_max_seconds, o.retry_days),
                    cfg.queue.lease_seconds, clock,
                    limit=RateLimit(o.max_per_minute) if o.max_per_minute > 0 else None, metrics=metrics)


def consumer_threads(stop: threading.Event, workers: int) -> list[threading.Thread]:
    """Inside `helpdesk serve`: the sender threads and the scheduler (retries, etas) of the
    bound queue; not started. None for the immediate backend, or with no sender threads
    (`[queue] workers = 0`: `helpdesk worker` processes send)."""
    if huey.immediate or workers == 0:
        return []
    threads = [threading.Thread(target=_run_process, name=f"sender-{i + 1}", daemon=True,
                                args=(HueyWorker(huey, stop, default_delay=0.01, max_delay=0.1, backoff=1.5), stop))
               for i in range(workers)]
    threads.append(threading.Thread(target=_run_process, args=(Scheduler(huey, stop, 1, False), stop),
                                    name="queue-scheduler", daemon=True))
    return threads


def quiet_huey() -> None:
    """One log line per task is ours: huey's own INFO lines go (unless debugging)."""
    if logging.getLogger("huey").level == logging.NOTSET and not log.isEnabledFor(logging.DEBUG):
        logging.getLogger("huey").setLevel(logging.WARNING)


def _run_process(process, stop: threading.Event) -> None:
    process.initialize()
    while not stop.is_set():
        try:
            process.loop()
        except Exception:                         # never die; huey logs task errors itself
            log.exception("queue thread error")
            stop.wait(1.0)


def sweeper(delivery: Delivery, stop: threading.Event, every: float) -> None:
    """The outbox sweep loop (a thread): the first pass at once."""
    delivery.sweep()
    while not stop.wait(every):
        delivery.sweep()


def run_consumer(workers: int) -> None:
    """`helpdesk worker`: consume the bound queue until SIGTERM/SIGINT."""
    consumer = huey.create_consumer(workers=workers, worker_type="thread", initial_delay=0.01,
                                    max_delay=0.1, backoff=1.5, graceful_signal="TERM", shutdown_timeout=60)
    consumer.run()
