"""The composition root: builds everything a helpdeskd process runs from a Config.

Nothing else constructs these; `serve`, `worker`, `ingest` and the CLI commands ask for an
`App` and use its parts, each handed what it needs at construction: the clock, the store,
the spool, the live rules and templates, the signing keys, the mail planner (Outbound),
the agent desk, the SLA escalator, the daily agent digest, the delivery context of the queue
and the spool worker.
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
from functools import partial
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from daemon import systemd, tasks, tokens
from daemon.agent_notices import Notices, ReplyTokens
from daemon.agents import AgentDesk, agent_settings, build_authenticator
from daemon.approval_rules import LiveApprovals
from daemon.approvals import ApprovalGate, Approvals, sweeper as approval_sweeper
from daemon.report.mailing import ReportMailer, report_sweeper
from daemon.clock import build_clock, utcnow
from daemon.config import Config
from daemon.errors import HelpdeskError, SpoolError
from daemon.digest import Digests, digest_loop
from daemon.escalation import Escalator, sweeper as sla_sweeper
from daemon.health import Health
from daemon.heap import Trim
from daemon.intake.imap import ImapPoller, imap_tokens
from daemon.intake.lmtp import start_lmtp
from daemon.intake.smtp import build_intake
from daemon.metrics import Metrics
from daemon.observe import observe_serve, observe_worker
from daemon.macros import LiveMacros, vocabulary
from daemon.outbound import Outbound, desk_of, fuses_of
from daemon.parse_guard import ParseGuard
from daemon.problems import ProblemDesk
from daemon.csat import Surveys
from daemon.templates import LiveTemplates, watch_templates
from daemon.listen import listening
from daemon.rules.live import LiveRules, watch
from daemon.templates import template_names
from daemon.settings import defaults_of, worker_settings  # noqa: F401  (worker_settings: for commands)
from daemon.spool import Spool
from daemon.stores import open_store  # noqa: F401  (re-exported: commands open the store from here too)
from daemon.worker import Worker
from store.repo import Store
from store.sla_store import SlaStore

log = logging.getLogger(__name__)

SWITCH_INTERVAL = 0.0005            # seconds; see serve()


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
    digests: Digests | None = None
    approvals: Approvals | None = None
    reports: ReportMailer | None = None


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
    guard: ParseGuard | None = None
    metrics: Metrics = field(default_factory=Metrics)

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
        if self.mail is not None:
            self.mail.delivery.close()                  # the kept relay session says QUIT
            if tasks.huey.context is self.mail.delivery:
                tasks.huey.bind(None)
        self.worker.close()
        if self.guard is not None:
            self.guard.close()
        self.store.engine.dispose()


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


def build_mail(cfg: Config, store: Store, rules: LiveRules, clock: Callable[[], datetime], metrics: Metrics) -> Mail:
    """Keys, templates (a RulesError refuses start), the queue backend and everything that
    plans or sends mail; binds the queue's tasks to it."""
    tokens.check_address(cfg.helpdesk.address)
    ring = tokens.load_keyring(cfg.state_dir, cfg.helpdesk.key_env, cfg.helpdesk.key_credential)
    templates = LiveTemplates(cfg.paths.templates)
    tasks.configure_queue(cfg)
    delivery = tasks.build_delivery(cfg, store.outbox, clock, metrics)
    desk, fuses = desk_of(cfg), fuses_of(cfg)
    send = delivery.wake                             # one sender wake-up; it takes every due row
    escalator = Escalator(desk, fuses, SlaStore(store.engine), rules, templates, ring, clock=clock,
                          enqueue_mail=send, metrics=metrics)
    replies = ReplyTokens(ring, cfg.agents.token_days, clock)
    problems = ProblemDesk(desk, templates, ring, lambda: rules.current, os.urandom, sla=escalator)
    surveys = Surveys(desk, templates, ring, lambda: rules.current, os.urandom, replies)
    outbound = Outbound(store, desk, fuses, templates, ring, rules=lambda: rules.current, sla=escalator,
                        bounce_days=cfg.outbound.bounce_suppress_days, enqueue=send, clock=clock,
                        reply_token=replies, problems=problems, surveys=surveys)
    auth = build_authenticator(cfg)
    notices = Notices(desk, fuses, templates, ring, os.urandom, replies, auth, cfg.agents.max_warnings_per_hour)
    macros = LiveMacros(cfg.paths.rules, vocab=lambda: vocabulary(rules.current, desk.prefix))
    agents = AgentDesk(agent_settings(cfg), desk, notices, outbound, auth, rules=lambda: rules.current, clock=clock,
                       macros=macros.current)
    agents.live_macros = macros
    tasks.huey.bind(delivery, escalator)
    digests = Digests(cfg.digest, store, agents.queries, lambda: rules.current, clock=clock,
                      enqueue_mail=send)
    live_approvals = LiveApprovals(cfg.paths.rules, rules=lambda: rules.current)
    approvals = Approvals(desk, store.engine, live_approvals, lambda: rules.current, templates, ring, auth,
                          clock=clock, enqueue_mail=send, token_days=cfg.agents.token_days,
                          defer_hours=cfg.agents.defer_hours,
                          max_warnings_per_hour=cfg.agents.max_warnings_per_hour, reply_token=replies)
    reports = ReportMailer(cfg.reports, desk, store.engine, lambda: rules.sla, ring, clock=clock,
                           enqueue_mail=send)
    return Mail(ring, templates, outbound, agents, escalator, delivery, digests, approvals, reports)


def build_app(cfg: Config, *, outbound: bool = True, clock: Callable[[], datetime] | None = None) -> App:
    """Everything a command needs. `outbound=False` plans no mail (archive imports). `clock`:
    the process's one clock (default: from config, daemon.clock.build_clock)."""
    clock = clock or build_clock(cfg)
    spool = open_spool(cfg)
    rules = load_live_rules(cfg)
    store = open_store(cfg)
    metrics = Metrics()                              # this process's registry (daemon.metrics)
    mail = build_mail(cfg, store, rules, clock, metrics) if outbound else None
    lanes = cfg.worker.parse_processes              # forked on first use: commands that parse nothing pay nothing
    guard = ParseGuard(processes=lanes)
    worker = Worker(spool, store, worker_settings(cfg), clock=clock, rules=lambda: rules.current,
                    mail=mail.outbound if mail else None,
                    agents=ApprovalGate(mail.approvals, mail.agents) if mail else None,   # approvers' replies first
                    parse=partial(guard.parse, seconds=cfg.limits.parse_seconds), lanes=lanes)
    app = App(cfg, store, spool, worker, rules=rules, mail=mail, clock=clock, guard=guard, metrics=metrics)
    app.reloaders.append(rules.reload)
    if mail is not None:
        app.reloaders.append(lambda: reload_templates(app, mail.templates))
        app.reloaders.append(mail.agents.live_macros.reload)
        app.reloaders.append(mail.approvals.live.reload)
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
            threading.Thread(target=approval_sweeper, args=(mail.approvals, stop, every), name="approval-sweep",
                             daemon=True),
            *([threading.Thread(target=report_sweeper, args=(mail.reports, stop, every), name="report-mailing",
                                daemon=True)] if cfg.reports.to else []),
            threading.Thread(target=watch_templates, args=(mail.templates, stop), name="templates-watch",
                             kwargs={"on_reload": lambda problems: templates_reloaded(app, problems)}, daemon=True),
            *([threading.Thread(target=digest_loop, args=(mail.digests, stop, every), name="digest", daemon=True)]
              if cfg.digest.enabled else []),
            *tasks.consumer_threads(stop, cfg.queue.workers)]


def start_consumer(app: App) -> Callable[[], None]:
    """Inside `helpdesk serve`: start the mail threads; returns the function that stops and joins them."""
    stop = threading.Event()
    threads = mail_threads(app, stop)
    app.mail.delivery.coalesce = any(t.name.startswith("sender-") for t in threads)   # wake-ups consumed here
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
    if cfg.queue.workers < 1:
        raise HelpdeskError("helpdesk worker needs queue.workers >= 1 (its sender threads)")
    stop = threading.Event()
    threads = [t for t in mail_threads(app, stop) if not t.name.startswith(("sender-", "queue-"))]
    threads.append(threading.Thread(target=watch, args=(app.rules, stop), name="rules-watch", daemon=True))
    for t in threads:
        t.start()
    observer = observe_worker(cfg, app.store, stop, app.metrics, clock=app.clock)
    tasks.quiet_huey()
    log.info("ready: queue worker, %s backend, %d sender thread(s)", cfg.queue.backend, cfg.queue.workers)
    systemd.notify(f"READY=1\nSTATUS=ready: queue worker, {cfg.queue.backend} backend")
    try:
        tasks.run_consumer(cfg.queue.workers)
    finally:
        stop.set()
        observer.stop()
        app.close()
    return 0


@dataclass
class Running:
    """What `serve` started, stopped in this order: intake first, then the workers."""

    health: Health
    observer: object
    where: str
    smtp: object | None = None
    lmtp: object | None = None
    imap_threads: list = field(default_factory=list)
    threads: list = field(default_factory=list)
    stop_consumer: Callable[[], None] = lambda: None


def start_intake(app: App) -> Running:
    """The spool worker, the rules watcher, the mail threads, the SMTP and LMTP listeners,
    the IMAP pollers, metrics and the health file."""
    cfg = app.config
    run = Running(Health(app, cfg.state_dir / "status.json"), None, "smtp disabled")
    run.threads = [threading.Thread(target=app.worker.run_forever, name="spool-worker",
                                    args=(app.stop, app.wake, cfg.worker.idle_poll_seconds), daemon=True)]
    if app.rules is not None:
        run.threads.append(threading.Thread(target=watch, name="rules-watch", args=(app.rules, app.stop),
                                            kwargs={"interval": 2.0}, daemon=True))
    if cfg.smtp.enabled:
        run.smtp = build_intake(cfg.smtp, app.spool, on_stored=lambda _base: app.wake.set())
        with listening(cfg, "smtp.port", cfg.smtp.host, cfg.smtp.port):
            run.smtp.start()
        run.where = f"smtp {cfg.smtp.host}:{cfg.smtp.port}"
    for t in run.threads:
        t.start()
    run.stop_consumer = start_consumer(app) if app.mail is not None else (lambda: None)
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    app.imap = [ImapPoller(acct, app.spool, app.store.engine, lambda _b: app.wake.set(), app.stop, owner,
                           tokens=imap_tokens(cfg.state_dir, acct)) for acct in cfg.imap]
    run.imap_threads = [p.start() for p in app.imap]   # run() never raises: one account can't stop others
    run.lmtp = start_lmtp(cfg, app.spool, app.wake)
    run.observer = observe_serve(app, run.health)     # metrics, /metrics and /healthz; SIGUSR1 wakes the worker
    run.where += f", {run.lmtp.where}" if run.lmtp else ""
    run.where += f", http {run.observer.http.where}" if run.observer.http else ""
    run.health.tick()                                 # the process file the pipe hand-off looks for
    return run


def handle_signals(app: App) -> None:
    """SIGTERM/SIGINT stop, SIGHUP reloads rules and templates (in the main loop)."""
    def _stop(signum, _frame):
        log.info("received %s, shutting down", signal.Signals(signum).name)
        app.stop.set()
        app.wake.set()

    def _hup(_signum, _frame):
        app.reload_requested.set()
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGHUP, _hup)


def supervise(app: App, health: Health, trim: Trim | None = None) -> None:
    """The main loop until told to stop: watchdog pings, the health file, malloc trims, reloads."""
    ping = systemd.watchdog_interval()
    trim = trim or Trim()
    while not app.stop.wait(min(ping or 1.0, 1.0)):
        if ping:
            systemd.notify("WATCHDOG=1", wait=False)
        health.tick()
        trim.tick()
        if app.reload_requested.is_set():
            app.reload_requested.clear()
            app.reload()


def stop_all(run: Running) -> None:
    """Intake first (in-flight DATA finishes), then the pollers and workers, then the senders."""
    if run.smtp is not None:
        run.smtp.shutdown(grace=10.0)
    if run.lmtp is not None:
        run.lmtp.stop(grace=10.0)
    run.observer.stop()
    for t in run.imap_threads:
        t.join(timeout=15)
    for t in run.threads:
        t.join(timeout=30)
    run.stop_consumer()                              # in-flight sends finish first
    run.health.write(state="stopped")


def serve(app: App, *, ready: "Callable[[], None] | None" = None) -> int:
    """Run the intake edges and the workers until SIGTERM/SIGINT; returns the exit code."""
    # The SMTP event loop must get the interpreter quickly while the worker thread is busy:
    # with the default 5 ms switch interval each step of an SMTP session could wait that long
    # behind the worker (measured: 250s per second +28 % under load at 0.5 ms).
    sys.setswitchinterval(SWITCH_INTERVAL)
    run = start_intake(app)
    handle_signals(app)
    log.info("ready: %s, state %s, spool depth %d", run.where, app.config.state_dir, app.spool.depth())
    systemd.notify(f"READY=1\nSTATUS=ready: {run.where}")
    if ready is not None:
        ready()
    supervise(app, run.health)
    systemd.notify("STOPPING=1")
    stop_all(run)
    log.info("stopped")
    return 0
