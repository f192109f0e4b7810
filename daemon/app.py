"""The composition root: builds store, spool, worker and intake from a Config.

Nothing else constructs these; commands ask for an `App` and use its parts. `serve` runs
the SMTP intake and the spool worker until told to stop.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from daemon import systemd, tasks
from daemon.config import Config
from daemon.health import Health
from daemon.listen import listening
from daemon.intake.imap import ImapPoller
from daemon.intake.smtp import IntakeController, IntakeHandler
from daemon.pipeline.classify import Defaults
from daemon.pipeline.parse import ParseLimits
from daemon.errors import SpoolError
from daemon.rules.live import LiveRules, watch
from daemon.rules.tester import template_names
from daemon.spool import Spool
from daemon.worker import Worker, WorkerSettings
from store.blobs import Blobs
from store import imap_state  # noqa: F401  (registers the IMAP state tables before create_schema)
from store.db import create_schema, make_engine
from store.repo import Store

log = logging.getLogger(__name__)

SWITCH_INTERVAL = 0.0005            # seconds; see serve()


def worker_settings(cfg: Config) -> WorkerSettings:
    hd = cfg.helpdesk
    return WorkerSettings(
        tag_prefix=hd.ticket_prefix, own_addresses=frozenset({hd.address.lower()}),
        defaults=defaults_of(cfg),
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
    rules: LiveRules | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)
    reload_requested: threading.Event = field(default_factory=threading.Event)
    reloaders: list = field(default_factory=list)
    imap: list = field(default_factory=list)

    def reload(self) -> None:
        """Rebuild rules and templates (SIGHUP); each keeps its last good version on error."""
        log.info("reload requested")
        for reload_one in self.reloaders:
            try:
                reload_one()
            except Exception:                       # a reload never takes the daemon down
                log.exception("reload failed; the last good version stays live")


def open_store(cfg: Config) -> Store:
    engine = make_engine(cfg.database_url, echo=cfg.database.echo)
    create_schema(engine)
    return Store(engine, Blobs(cfg.state_dir / "attachments"))


def defaults_of(cfg: Config) -> Defaults:
    hd = cfg.helpdesk
    return Defaults(hd.default_type, hd.default_queue, hd.default_priority)


def load_live_rules(cfg: Config) -> LiveRules:
    """The rule set the daemon starts with; a RulesError (with every problem) refuses start."""
    return LiveRules(cfg.paths.rules, known_templates=template_names(cfg.paths.templates),
                     defaults=defaults_of(cfg))


def build_app(cfg: Config, *, outbound: bool = True) -> App:
    """Everything a command needs. `outbound=False` plans no mail (archive imports)."""
    try:
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        spool = Spool(Path(cfg.state_dir) / "spool").ensure()
    except OSError as exc:
        raise SpoolError(f"cannot use state directory {cfg.state_dir}: {exc.strerror or exc}") from exc
    rules = load_live_rules(cfg)
    store = open_store(cfg)
    worker = Worker(spool, store, worker_settings(cfg), rules=lambda: rules.current)
    app = App(cfg, store, spool, worker, rules=rules)
    app.reloaders.append(rules.reload)
    if outbound:
        tasks.attach_outbound(app)             # templates, keys and the relay; mail planned in the worker
    return app


def serve(app: App, *, ready: "callable | None" = None) -> int:
    """Run SMTP intake and the spool worker until SIGTERM/SIGINT; returns the exit code."""
    cfg = app.config
    # The SMTP event loop must get the interpreter quickly while the worker thread is busy:
    # with the default 5 ms switch interval each step of an SMTP session could wait that long
    # behind the worker (measured: 250s per second +28 % under load at 0.5 ms).
    sys.setswitchinterval(SWITCH_INTERVAL)
    threads = [threading.Thread(target=app.worker.run_forever, name="spool-worker",
                                args=(app.stop, app.wake, cfg.worker.idle_poll_seconds), daemon=True)]
    controller = None
    if cfg.smtp.enabled:
        handler = IntakeHandler(app.spool, cfg.smtp.domains, max_recipients=cfg.smtp.max_recipients,
                                on_stored=lambda _base: app.wake.set(),
                                data_budget=cfg.smtp.data_budget_seconds)
        controller = IntakeController(handler, cfg.smtp.host, cfg.smtp.port,
                                      max_message_bytes=cfg.smtp.max_message_bytes,
                                      per_ip=cfg.smtp.max_connections_per_ip,
                                      timeout=cfg.smtp.command_timeout_seconds)
        with listening(cfg, "smtp.port", cfg.smtp.host, cfg.smtp.port):
            controller.start()
    if app.rules is not None:
        threads.append(threading.Thread(target=watch, name="rules-watch", args=(app.rules, app.stop),
                                        kwargs={"interval": 2.0}, daemon=True))
    for t in threads:
        t.start()
    stop_consumer = tasks.start_consumer(app) if app.worker.mail is not None else (lambda: None)

    def _stop(signum, _frame):
        log.info("received %s, shutting down", signal.Signals(signum).name)
        app.stop.set()
        app.wake.set()

    def _hup(_signum, _frame):
        app.reload_requested.set()

    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    app.imap = [ImapPoller(acct, app.spool, app.store.engine, lambda _b: app.wake.set(), app.stop, owner)
                for acct in cfg.imap]
    imap_threads = [p.start() for p in app.imap]   # run() never raises: one account can't stop others
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGHUP, _hup)
    where = f"smtp {cfg.smtp.host}:{cfg.smtp.port}" if controller else "smtp disabled"
    log.info("ready: %s, state %s, spool depth %d", where, cfg.state_dir, app.spool.depth())
    systemd.notify(f"READY=1\nSTATUS=ready: {where}")
    if ready is not None:
        ready()
    ping = systemd.watchdog_interval()
    health = Health(app, cfg.state_dir / "status.json")
    while not app.stop.wait(min(ping or 1.0, 1.0)):
        if ping:
            systemd.notify("WATCHDOG=1")
        health.tick()
        if app.reload_requested.is_set():
            app.reload_requested.clear()
            app.reload()
    systemd.notify("STOPPING=1")
    if controller is not None:
        controller.shutdown(grace=10.0)
    for t in imap_threads:
        t.join(timeout=15)
    for t in threads:
        t.join(timeout=30)
    stop_consumer()                                # in-flight sends finish first
    health.write(state="stopped")
    log.info("stopped")
    return 0
