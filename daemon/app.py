"""The composition root: builds store, spool, worker and intake from a Config.

Nothing else constructs these; commands ask for an `App` and use its parts. `serve` runs
the SMTP intake and the spool worker until told to stop.
"""
from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

from daemon.config import Config
from daemon.intake.smtp import IntakeController, IntakeHandler
from daemon.pipeline.classify import Defaults
from daemon.pipeline.parse import ParseLimits
from daemon.spool import Spool
from daemon.worker import Worker, WorkerSettings
from store.blobs import Blobs
from store.db import create_schema, make_engine
from store.repo import Store

log = logging.getLogger(__name__)


def worker_settings(cfg: Config) -> WorkerSettings:
    hd = cfg.helpdesk
    return WorkerSettings(
        tag_prefix=hd.ticket_prefix, own_addresses=frozenset({hd.address.lower()}),
        defaults=Defaults(hd.default_type, hd.default_queue, hd.default_priority),
        limits=ParseLimits(max_parts=cfg.limits.max_parts, max_depth=cfg.limits.max_depth,
                           max_headers=cfg.limits.max_headers, max_bytes=cfg.smtp.max_message_bytes * 2),
        max_attempts=cfg.worker.max_attempts, retry_seconds=cfg.worker.retry_seconds)


@dataclass
class App:
    """Everything one helpdeskd process needs, built once from the config."""

    config: Config
    store: Store
    spool: Spool
    worker: Worker
    stop: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)


def open_store(cfg: Config) -> Store:
    engine = make_engine(cfg.database_url, echo=cfg.database.echo)
    create_schema(engine)
    return Store(engine, Blobs(cfg.state_dir / "attachments"))


def build_app(cfg: Config) -> App:
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(cfg)
    spool = Spool(Path(cfg.state_dir) / "spool").ensure()
    worker = Worker(spool, store, worker_settings(cfg))
    return App(cfg, store, spool, worker)


def serve(app: App, *, ready: "callable | None" = None) -> int:
    """Run SMTP intake and the spool worker until SIGTERM/SIGINT; returns the exit code."""
    cfg = app.config
    threads = [threading.Thread(target=app.worker.run_forever, name="spool-worker",
                                args=(app.stop, app.wake, cfg.worker.idle_poll_seconds), daemon=True)]
    controller = None
    if cfg.smtp.enabled:
        handler = IntakeHandler(app.spool, cfg.smtp.domains, max_recipients=cfg.smtp.max_recipients,
                                on_stored=lambda _base: app.wake.set())
        controller = IntakeController(handler, cfg.smtp.host, cfg.smtp.port,
                                      max_message_bytes=cfg.smtp.max_message_bytes,
                                      per_ip=cfg.smtp.max_connections_per_ip,
                                      timeout=cfg.smtp.command_timeout_seconds)
        controller.start()
    for t in threads:
        t.start()

    def _stop(signum, _frame):
        log.info("received %s, shutting down", signal.Signals(signum).name)
        app.stop.set()
        app.wake.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    where = f"smtp {cfg.smtp.host}:{cfg.smtp.port}" if controller else "smtp disabled"
    log.info("ready: %s, state %s, spool depth %d", where, cfg.state_dir, app.spool.depth())
    if ready is not None:
        ready()
    while not app.stop.wait(1.0):
        pass
    if controller is not None:
        controller.shutdown(grace=10.0)
    for t in threads:
        t.join(timeout=30)
    log.info("stopped")
    return 0
