"""Observability wiring for `serve` and `worker`: metrics, /metrics + /healthz, process beat.

The composition root calls `observe_serve(app)` once every listener is built (it also
makes SIGUSR1 wake the spool worker: the pipe hand-off's signal) and `observe_worker(...)`
in `helpdesk worker`; each returns an `Observer` whose `stop()` ends what it started.
/healthz reports the same problems as `helpdesk status` does for this process: the
database unreachable, the relay failing, mail waiting past its first retry, the last
rules/templates reload failed, an IMAP alert.
"""
from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from daemon.handoff import WAKE_SIGNAL
from daemon.health import outbox_state, problems
from daemon.http import HttpServer
from daemon.approval_rules import approval_problems
from daemon.metrics import Metrics, outbox_pending_of
from daemon.node_beat import Heart
from daemon.processes import ProcessFile


@dataclass
class Observer:
    """What observe_* started; `stop()` undoes it."""

    metrics: Metrics
    http: HttpServer | None = None
    stops: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        for stop in reversed(self.stops):
            stop()
        if self.http is not None:
            self.http.stop()


def _check(kind: str, cfg, engine, extra: Callable[[], dict]) -> dict:
    body = {"kind": kind, "pid": os.getpid(), "running": True, **extra()}
    body["outbox"], body["database"] = outbox_state(engine, cfg.outbound.retry_first_seconds,
                                                    datetime.now(timezone.utc))
    body["problems"] = problems(body, cfg.outbound.retry_first_seconds)
    return body


def _serve_facts(app, health) -> dict:
    mail = getattr(app.worker, "mail", None)
    return {"spool_depth": app.spool.depth(),
            "rules_problems": list(getattr(app.rules, "last_problems", []) or [])
            + approval_problems(app),
            "templates_problems": list(getattr(getattr(mail, "templates", None), "last_problems", []) or []),
            "alerts": sorted(health.alerted) if health is not None else []}


def _start_http(cfg, metrics: Metrics, check: Callable[[], dict]) -> HttpServer | None:
    if not cfg.http.enabled:
        return None
    return HttpServer(cfg.http.host, cfg.http.port, metrics, check).start()


def observe_serve(app, health=None) -> Observer:
    """Metrics of this serve (the App's), the HTTP listener when enabled, SIGUSR1 = wake the worker."""
    metrics = app.metrics
    metrics.watch(spool=app.spool, worker_stats=lambda: app.worker.stats,
                  outbox_pending=outbox_pending_of(app.store.engine),
                  imap=lambda: [p.status() for p in app.imap])
    signal.signal(WAKE_SIGNAL, lambda _signum, _frame: app.wake.set())
    check = lambda: _check("serve", app.config, app.store.engine, lambda: _serve_facts(app, health))  # noqa: E731
    return Observer(metrics, _start_http(app.config, metrics, check))


def observe_worker(cfg, store, stop: threading.Event, metrics: Metrics | None = None,
                   clock: Callable[[], datetime] | None = None) -> Observer:
    """Metrics, HTTP, a process file and the node's heartbeat in the database (both beaten
    every status_seconds) of `helpdesk worker`."""
    metrics = metrics if metrics is not None else Metrics()
    metrics.watch(outbox_pending=outbox_pending_of(store.engine))
    http = _start_http(cfg, metrics, lambda: _check("worker", cfg, store.engine, dict))
    beat = ProcessFile(cfg.state_dir, "worker", datetime.now(timezone.utc).isoformat(),
                       http=http.where if http is not None else "")

    heart = Heart(store.engine, cfg, "worker", clock or (lambda: datetime.now(timezone.utc)))

    def run() -> None:
        while True:
            try:
                beat.beat()
            except OSError:
                pass                       # a full disk must not stop the worker; status shows it stale
            heart.beat(0)                  # a worker has no spool of its own
            if stop.wait(cfg.health.status_seconds):
                return
    thread = threading.Thread(target=run, name="process-beat", daemon=True)
    thread.start()
    observer = Observer(metrics, http)
    observer.stops.append(lambda: (stop.set(), thread.join(5), beat.remove()))
    return observer
