"""The task queue (huey) that sends every mail, and the delivery context its tasks run with.

huey only nudges; the outbox is the truth and, by its due index, the queue (huey is
at-most-once: a task killed mid-run is lost). Flow: the spool worker stores a message and
its outbox rows in one transaction, then wakes a sender: one `send_due` task, not one per
row (daemon.delivery: a drain claims every due row in batches, sends them over one relay
session, marks each batch in one transaction, and schedules one wake-up for the retries
falling due in the same second). `send_outbox(id)` sends one given row (tasks queued by
an older version; tests). `sweep` wakes a sender for rows that are due but were never (or
too long ago) enqueued and rows whose lease expired (a killed sender); it runs every
`[queue] sweep_seconds` and at start.

`huey` is the one sanctioned module-level object. `configure_queue(cfg)` picks its
storage: SqliteHuey in the state directory (consumer threads inside `helpdesk serve`),
Redis (`helpdesk worker` processes; serve consumes too), or immediate (unit tests). The
composition root (daemon.app) hands the tasks their context with one explicit
`huey.bind(delivery, escalator)`; nothing else sets it.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any, Callable

from daemon import huey_lean  # first: huey without redis and psycopg (see its docstring)
from huey import Huey, crontab
from huey.consumer import Scheduler, Worker as HueyWorker
from huey.storage import MemoryStorage, RedisStorage, SqliteStorage

from daemon.clock import utcnow
from daemon.errors import HelpdeskError
from daemon.metrics import Metrics
from daemon.delivery import Delivery
from daemon.mailer import RateLimit, Relay, RetryPolicy, relay_settings
from daemon.send_journal import Journal
from store.outbox_sender import OutboxStore

log = logging.getLogger(__name__)


class HelpdeskHuey(Huey):
    """huey whose storage is chosen at run time, plus the context its tasks run with."""

    context: "Delivery | None" = None
    sla: Any = None                     # daemon.escalation.Escalator: what `sla_wake`/`escalate` tasks need

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
        huey_lean.use_redis()
        huey.use(RedisStorage, False, url=cfg.queue.url)
    else:
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        huey.use(SqliteStorage, False, filename=str(cfg.state_dir / "queue.db"), timeout=10)
    return huey


# ---------------------------------------------------------------------- tasks
@huey.task()
def send_due() -> None:
    """Send every due outbox row, in batches over one relay session (daemon.delivery)."""
    huey.delivery().drain()


@huey.task()
def send_outbox(outbox_id: int) -> None:
    """Send one given outbox row (claim, relay, record)."""
    huey.delivery().send(outbox_id)


@huey.task()
def sweep() -> None:
    """Wake a sender for due and abandoned outbox rows."""
    huey.delivery().sweep()


@huey.periodic_task(crontab(minute="*"))
def sweep_periodically() -> None:
    """The safety net for `helpdesk worker`, whatever else runs."""
    huey.delivery().sweep()


def build_delivery(cfg, outbox: OutboxStore, clock: Callable[[], datetime] = utcnow,
                   metrics: Metrics | None = None) -> Delivery:
    """The senders' context for the configured relay and the bound queue (configure_queue first)."""
    o = cfg.outbound
    outbox.bounce_days = o.bounce_suppress_days
    return Delivery(outbox, Relay(relay_settings(cfg)),
                    RetryPolicy(o.retry_first_seconds, o.retry_max_seconds, o.retry_days),
                    cfg.queue.lease_seconds, clock, wake_task=lambda: send_due(),
                    schedule=lambda delay: send_due.schedule(delay=delay),
                    limit=RateLimit(o.max_per_minute) if o.max_per_minute > 0 else None, metrics=metrics,
                    journal=Journal(cfg.state_dir / "outbox-journal"), scheduled=not huey.immediate)


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
