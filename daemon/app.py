"""The composition root: builds everything a helpdeskd process runs from a Config.

Nothing else constructs these; `serve`, `worker`, `ingest` and the CLI commands ask for an
`App` and use its parts, each handed what it needs at construction: the clock, the store,
the spool, the live rules and templates, the signing keys, the mail planner (Outbound),
the agent desk, the SLA escalator, the delivery context of the queue and the spool worker.
The queue's tasks get their context through the one `huey.bind` call here. `serve` runs
the intake edges and the workers until told to stop; `run_queue_worker` is
`helpdesk worker`.
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
from datetime import datetime
from pathlib import Path
from typing import Callable

from daemon import systemd, tasks, tokens
from daemon.agent_notices import Notices, ReplyTokens
from daemon.agents import AgentDesk, agent_settings, build_authenticator
from daemon.clock import utcnow
from daemon.config import Config
from daemon.errors import HelpdeskError, SpoolError
from daemon.escalation import Escalator, sweeper as sla_sweeper
from daemon.health import Health
from daemon.intake.imap import ImapPoller
from daemon.intake.smtp import IntakeController, IntakeHandler
from daemon.macros import LiveMacros, vocabulary
from daemon.outbound import Outbound, desk_of, fuses_of
from daemon.pipeline.classify import Defaults
from daemon.pipeline.parse import ParseLimits
from daemon.render import LiveTemplates, watch_templates
from daemon.rules.live import LiveRules, watch
from daemon.rules.tester import template_names
from daemon.spool import Spool
from daemon.message_path import WorkerSettings
from daemon.worker import Worker
from store import imap_state  # noqa: F401  (registers the IMAP state tables before create_schema)
from store.blobs import Blobs
from store.db import create_schema, make_engine
from store.repo import Store
from store.sla_store import SlaStore

log = logging.getLogger(__name__)

SWITCH_INTERVAL = 0.0005            # seconds; see serve()


def worker_settings(cfg: Config) -> WorkerSettings:
    hd = cfg.helpdesk
    return WorkerSettings(
        tag_prefix=hd.ticket_prefix, own_addresses=frozenset({hd.address.lower()}),
        defaults=defaults_of(cfg),
        limits=ParseLimits(max_parts=cfg.limits.max_parts, max_depth=cfg.limits.max_depth,
                           max_headers=cfg.limits.max_headers, max_bytes=cfg.smtp.max_message_bytes * 2),
        max_attempts=cfg.worker.max_attempts, retry_seconds=cfg.worker.retry_seconds,
        auth_retry_seconds=cfg.agents.dns_retry_seconds)


@dataclass
class Mail:
    """The mail side of a process: keys, templates, the planner, the agent desk, the SLA
    escalator and the queue's delivery context."""

    ring: tokens.Keyring
    templates: LiveTemplates
    outbound: Outbound
    agents: AgentDesk
    escalator: Escalator
    delivery: tasks.Delivery


@dataclass
class App:
    """Everything one helpdeskd process needs, built once from the config."""

    config: Config
    store: Store
    spool: Spool
    worker: Worker
    rules: LiveRules | None = None
    mail: Mail | None = None
    clock: Callable[[], datetime] = utcnow
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

    def close(self) -> None:
        """Unbind the queue's context and release the database."""
        if self.mail is not None and tasks.huey.context is self.mail.delivery:
            tasks.huey.bind(None)
        self.store.engine.dispose()


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


def open_spool(cfg: Config) -> Spool:
    try:
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        return Spool(Path(cfg.state_dir) / "spool").ensure()
    except OSError as exc:
        raise SpoolError(f"cannot use state directory {cfg.state_dir}: {exc.strerror or exc}") from exc


def build_mail(cfg: Config, store: Store, rules: LiveRules, clock: Callable[[], datetime]) -> Mail:
    """Keys, templates (a RulesError refuses start), the queue backend and everything that
    plans or sends mail; binds the queue's tasks to it."""
    tokens.check_address(cfg.helpdesk.address)
    ring = tokens.load_keyring(cfg.state_dir, cfg.helpdesk.key_env, cfg.helpdesk.key_credential)
    templates = LiveTemplates(cfg.paths.templates)
    tasks.configure_queue(cfg)
    delivery = tasks.build_delivery(cfg, store.outbox, clock)
    desk, fuses = desk_of(cfg), fuses_of(cfg)
    send = tasks.send_outbox
    escalator = Escalator(desk, fuses, SlaStore(store.engine), rules, templates, ring, clock=clock,
                          enqueue_mail=lambda i: send(i))
    replies = ReplyTokens(ring, cfg.agents.token_days, clock)
    outbound = Outbound(store, desk, fuses, templates, ring, rules=lambda: rules.current, sla=escalator,
                        bounce_days=cfg.outbound.bounce_suppress_days, enqueue=lambda i: send(i), clock=clock,
                        reply_token=replies)
    auth = build_authenticator(cfg)
    notices = Notices(desk, fuses, templates, ring, os.urandom, replies, auth, cfg.agents.max_warnings_per_hour)
    macros = LiveMacros(cfg.paths.rules, vocab=lambda: vocabulary(rules.current, desk.prefix))
    agents = AgentDesk(agent_settings(cfg), desk, notices, outbound, auth, rules=lambda: rules.current, clock=clock,
                       macros=macros.current)
    agents.live_macros = macros
    tasks.huey.bind(delivery, escalator)
    return Mail(ring, templates, outbound, agents, escalator, delivery)


def build_app(cfg: Config, *, outbound: bool = True, clock: Callable[[], datetime] = utcnow) -> App:
    """Everything a command needs. `outbound=False` plans no mail (archive imports)."""
    spool = open_spool(cfg)
    rules = load_live_rules(cfg)
    store = open_store(cfg)
    mail = build_mail(cfg, store, rules, clock) if outbound else None
    worker = Worker(spool, store, worker_settings(cfg), clock=clock, rules=lambda: rules.current,
                    mail=mail.outbound if mail else None, agents=mail.agents if mail else None)
    app = App(cfg, store, spool, worker, rules=rules, mail=mail, clock=clock)
    app.reloaders.append(rules.reload)
    if mail is not None:
        app.reloaders.append(lambda: reload_templates(app, mail.templates))
        app.reloaders.append(mail.agents.live_macros.reload)
    return app


def reload_templates(app: App, templates: LiveTemplates) -> None:
    """SIGHUP: reload the templates; the rules again only when the templates changed (the
    rules were reloaded just before: once more would log their result twice)."""
    before = templates.current.version
    problems = templates.reload()
    if templates.current.version != before:
        templates_reloaded(app, problems)


def templates_reloaded(app: App, problems: list[str]) -> None:
    """After a good template reload the rules may name the new templates (`ack: ...`)."""
    if not problems and app.rules is not None:
        app.rules.reload(known_templates=template_names(app.config.paths.templates))


def mail_threads(app: App, stop: threading.Event) -> list[threading.Thread]:
    """The outbox and SLA sweeps, the template watcher and the queue's consumer threads."""
    cfg, mail = app.config, app.mail
    every = cfg.queue.sweep_seconds
    return [threading.Thread(target=tasks.sweeper, args=(mail.delivery, stop, every), name="outbox-sweep",
                             daemon=True),
            threading.Thread(target=sla_sweeper, args=(mail.escalator, stop, every), name="sla-sweep", daemon=True),
            threading.Thread(target=watch_templates, args=(mail.templates, stop), name="templates-watch",
                             kwargs={"on_reload": lambda problems: templates_reloaded(app, problems)}, daemon=True),
            *tasks.consumer_threads(stop, cfg.queue.workers)]


def start_consumer(app: App) -> Callable[[], None]:
    """Inside `helpdesk serve`: start the mail threads; returns the function that stops and joins them."""
    stop = threading.Event()
    threads = mail_threads(app, stop)
    tasks.quiet_huey()
    for t in threads:
        t.start()
    log.info("queue: %s backend, %d sender thread(s)", app.config.queue.backend,
             0 if tasks.huey.immediate else app.config.queue.workers)

    def stopper(timeout: float = 30.0) -> None:
        stop.set()
        for t in threads:
            t.join(timeout)
    return stopper


def run_queue_worker(app: App) -> int:
    """`helpdesk worker`: consume the queue (sqlite or redis) until SIGTERM/SIGINT, with the
    outbox and SLA sweeps and the rules/templates watchers."""
    cfg = app.config
    if cfg.queue.backend == "immediate":
        raise HelpdeskError("helpdesk worker needs queue.backend = \"sqlite\" or \"redis\"")
    stop = threading.Event()
    threads = [t for t in mail_threads(app, stop) if not t.name.startswith(("sender-", "queue-"))]
    threads.append(threading.Thread(target=watch, args=(app.rules, stop), name="rules-watch", daemon=True))
    for t in threads:
        t.start()
    tasks.quiet_huey()
    log.info("ready: queue worker, %s backend, %d sender thread(s)", cfg.queue.backend, cfg.queue.workers)
    systemd.notify(f"READY=1\nSTATUS=ready: queue worker, {cfg.queue.backend} backend")
    try:
        tasks.run_consumer(cfg.queue.workers)
    finally:
        stop.set()
        app.close()
    return 0


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
        controller.start()
    if app.rules is not None:
        threads.append(threading.Thread(target=watch, name="rules-watch", args=(app.rules, app.stop),
                                        kwargs={"interval": 2.0}, daemon=True))
    for t in threads:
        t.start()
    stop_consumer = start_consumer(app) if app.mail is not None else (lambda: None)

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
