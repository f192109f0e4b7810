"""Health of a running daemon: a status file for `helpdesk status`, log lines and alerts.

`serve` calls `Health.tick()` about once a second; every `status_seconds` it writes
`<state_dir>/status.json` atomically (spool depth, quarantine count, worker counters,
intake counters, each IMAP account's state, last mail and last error, the last
rules/templates reload problems) and beats its process file (daemon.processes), every
`log_minutes` it logs a summary, and it logs an ALERT once when an account has been
failing or silent longer than configured (and once more when it recovers).

`report(cfg)` is what `helpdesk status` and /healthz show: that file, every serve and
worker process of the state directory, the outbox read from the database (depth,
oldest pending mail, last relay error) and every node's heartbeat from the database (any
host: daemon.node_beat; a node with mail in its spool silent longer than `[health]
node_silent_seconds` is a problem); `problems(report)` lists why it is unhealthy.
It also alerts while an OAuth 2.0 token refresh fails or a refresh token nears its end
(daemon.oauth2_store).
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.exc import SQLAlchemyError

from daemon.approval_rules import approval_problems
from daemon.clock import utcnow
from daemon.node_beat import Heart, nodes_view
from daemon.processes import ProcessFile, read_all
from daemon.oauth2_store import ALERT_KINDS, read_statuses, status_line, token_alerts
from store.nodes import read_nodes
from store.observe import outbox_figures

log = logging.getLogger(__name__)
FAILING = {"backoff", "auth_failed", "connecting"}


def _parse(ts: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(ts) if ts else None
    except ValueError:
        return None


class Health:
    """Writes status and raises alerts for one serve process (see module docstring)."""

    def __init__(self, app, path: Path, clock=time.monotonic):
        self.app, self.path, self.clock = app, Path(path), clock
        cfg = app.config.health
        self.every, self.log_every = cfg.status_seconds, cfg.log_minutes * 60
        self.failing_after = timedelta(minutes=cfg.alert_failing_minutes)
        self.silent_after = timedelta(hours=cfg.alert_silent_hours) if cfg.alert_silent_hours else None
        self.started = datetime.now(timezone.utc)
        self.failing_since: dict[str, datetime] = {}
        self.alerted: set[str] = set()
        self.next_write = self.next_log = 0.0
        http = getattr(app.config, "http", None)
        self.process = ProcessFile(self.path.parent, "serve", self.started.isoformat(),
                                   http=f"{http.host}:{http.port}" if http is not None and http.enabled else "")
        engine = getattr(app.store, "engine", None)
        self.heart = Heart(engine, app.config, "serve", getattr(app, "clock", None) or utcnow) \
            if engine is not None else None

    def snapshot(self, state: str = "running") -> dict:
        app = self.app
        try:
            quarantined = app.store.quarantine_count()
            db = "ok"
        except Exception as exc:                     # the database being down is a health fact
            quarantined, db = None, f"unavailable: {exc.__class__.__name__}"
        accounts = [asdict(p.status()) for p in app.imap]
        mail = getattr(app.worker, "mail", None)
        templates = getattr(mail, "templates", None)
        return {"state": state, "pid": os.getpid(), "written_at": datetime.now(timezone.utc).isoformat(),
                "started_at": self.started.isoformat(), "database": db, "spool_depth": app.spool.depth(),
                "quarantined": quarantined, "worker": dict(app.worker.stats),
                "rules_version": app.rules.version if app.rules else None,
                "rules_problems": list(getattr(app.rules, "last_problems", []) or [])
                + approval_problems(app),
                "templates_problems": list(getattr(templates, "last_problems", []) or []),
                "imap": accounts, "oauth2": read_statuses(getattr(app.config, "state_dir", None)),
                "alerts": sorted(self.alerted)}

    def write(self, state: str = "running", snap: dict | None = None) -> dict:
        snap = snap if snap is not None else self.snapshot(state)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(snap, indent=1, default=str))
        os.replace(tmp, self.path)
        if state == "running":
            self.process.beat(spool_depth=snap.get("spool_depth"))
        else:
            self.process.remove()
        if self.heart is not None:                             # the other nodes see it (the database)
            self.heart.beat(snap.get("spool_depth") or 0)
        return snap

    def tick(self) -> None:
        now = self.clock()
        if now < self.next_write:
            return
        self.next_write = now + self.every
        try:
            snap = self.snapshot()
        except OSError as exc:                # e.g. EMFILE during a connection flood: try next tick
            log.warning("health: cannot read state (%s); retrying", exc)
            return
        self._alerts(snap)
        snap["alerts"] = sorted(self.alerted)           # the file shows this tick's alerts
        try:
            self.write(snap=snap)
        except OSError as exc:
            log.warning("cannot write status file %s: %s", self.path, exc)
            return
        if self.log_every and now >= self.next_log:
            self.next_log = now + self.log_every
            accts = ", ".join(f"{a['account']}={a['state']}" for a in snap["imap"]) or "no imap"
            log.info("health: spool %s, quarantined %s, db %s, %s, worker %s", snap["spool_depth"],
                     snap["quarantined"], snap["database"], accts, snap["worker"])

    def _alerts(self, snap: dict) -> None:
        now = datetime.now(timezone.utc)
        for acct in snap["imap"]:
            name = acct["account"]
            if acct["state"] in FAILING:
                since = self.failing_since.setdefault(name, now)
                self._raise(f"{name}: failing", now - since >= self.failing_after,
                            f"IMAP account {name} failing for {now - since}: {acct.get('last_error')}")
            else:
                self.failing_since.pop(name, None)
                self._raise(f"{name}: failing", False, f"IMAP account {name} recovered")
            if self.silent_after:
                last = _parse(acct.get("last_mail_at")) or self.started
                self._raise(f"{name}: silent", now - last >= self.silent_after,
                            f"IMAP account {name} received no mail since {last.isoformat()}")

        for status in snap.get("oauth2", []):            # token refresh failing, refresh token ending
            found = token_alerts(status, time.time())
            for kind in ALERT_KINDS:
                key = f"oauth2 {status.get('account')}: {kind}"
                self._raise(key, key in found, found.get(key, f"{key}: cleared"))

    def _raise(self, key: str, active: bool, text: str) -> None:
        if active and key not in self.alerted:
            self.alerted.add(key)
            log.error("ALERT %s", text)
        elif not active and key in self.alerted:
            self.alerted.discard(key)
            log.warning("alert cleared: %s", text)


# ---------------------------------------------------------------------- helpdesk status
def _snapshot_of(cfg) -> dict:
    """status.json of the serve process, with `running` (fresh and in state running)."""
    snap: dict = {}
    try:
        snap = json.loads((cfg.state_dir / "status.json").read_text())
        age = (datetime.now(timezone.utc) - datetime.fromisoformat(snap["written_at"])).total_seconds()
        running = snap.get("state") == "running" and age < 3 * cfg.health.status_seconds + 5
    except (OSError, ValueError, KeyError, TypeError):
        running = False
    snap["running"] = running
    if not running:
        snap["state"] = "not running"
    return snap


def outbox_state(engine, retry_first_seconds: float, now: datetime) -> tuple[dict | None, str]:
    """The outbox figures as JSON, and "ok"; or None and why the database could not be read."""
    try:
        fig = outbox_figures(engine, now - timedelta(seconds=retry_first_seconds))
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
        return None, f"unreachable: {exc.__class__.__name__}: {reason}"
    iso = lambda dt: dt.isoformat() if dt else None  # noqa: E731
    # failing "for a while": at least the first retry interval, not one refused attempt a moment ago
    failing = fig.relay_failing and fig.failing_since is not None and \
        (now - fig.failing_since).total_seconds() >= retry_first_seconds
    return {"pending": fig.pending, "oldest_pending_at": iso(fig.oldest_pending_at), "overdue": fig.overdue,
            "relay_failing": failing, "relay_failing_since": iso(fig.failing_since) if fig.relay_failing else None,
            "last_relay_error": fig.last_error or None,
            "last_relay_error_at": iso(fig.last_error_at), "last_sent_at": iso(fig.last_sent_at)}, "ok"


def _database_of(cfg, now: datetime) -> tuple[dict | None, str, list[dict], list[str]]:
    """outbox_state and every node's heartbeat (nodes_view) on a short-lived engine that
    never creates a database."""
    url = cfg.database_url
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
        return None, f"unreachable: no database at {url[len('sqlite:///'):]}", [], []
    engine = create_engine(url, connect_args={"timeout": 5} if url.startswith("sqlite") else {"connect_timeout": 5})
    try:
        box, database = outbox_state(engine, cfg.outbound.retry_first_seconds, now)
        try:
            nodes, alerts = nodes_view(read_nodes(engine), now, cfg.health.node_silent_seconds) \
                if database == "ok" else ([], [])
        except SQLAlchemyError:                      # a database from before the heartbeat table
            nodes, alerts = [], []
        return box, database, nodes, alerts
    finally:
        engine.dispose()


def report(cfg, now: datetime | None = None) -> dict:
    """Everything `helpdesk status` shows (see module docstring), with `problems`."""
    now = now or datetime.now(timezone.utc)
    snap = _snapshot_of(cfg)
    stale = 3 * cfg.health.status_seconds + 5
    snap["processes"] = [{"kind": p.kind, "pid": p.pid, "host": p.host, "alive": p.alive, "why": p.why or None,
                          "started_at": p.info.get("started_at"), "http": p.info.get("http") or None}
                         for p in read_all(cfg.state_dir, stale)]
    snap["outbox"], snap["database"], snap["nodes"], stuck = _database_of(cfg, now)
    snap["problems"] = problems(snap, cfg.outbound.retry_first_seconds) + stuck
    return snap


def problems(snap: dict, first_retry_seconds: float = 300.0) -> list[str]:
    """Why this report is unhealthy; empty when all is well."""
    out = []
    if not snap.get("running"):
        out.append("the daemon (serve) is not running: no fresh status file")
    if str(snap.get("database", "ok")) != "ok":
        out.append(f"database {snap['database']}")
    box = snap.get("outbox") or {}
    if box.get("relay_failing"):
        out.append(f"the relay has been failing since {box['relay_failing_since']}: {box['last_relay_error']}")
    if box.get("overdue"):
        out.append(f"{box['overdue']} mail(s) wait in the outbox past their first retry ({first_retry_seconds:.0f}s; "
                   f"oldest queued {box['oldest_pending_at']})")
    for kind in ("rules", "templates"):
        found = snap.get(f"{kind}_problems") or []
        if found:
            out.append(f"the last {kind} reload failed ({len(found)} problem(s)), the last good version stays "
                       f"live: {found[0]}")
    out += [f"alert: {a}" for a in snap.get("alerts") or []]
    out += [f"{p['kind']} pid {p['pid']} on {p['host']} is dead ({p['why']})"
            for p in snap.get("processes", []) if not p["alive"]]
    return out


def status_text(snap: dict) -> str:
    """The report for a terminal: the daemon, its processes, the outbox, then every problem."""
    if snap.get("running"):
        lines = [f"helpdesk: {snap['state']} (pid {snap['pid']}, since {snap['started_at']})",
                 f"  spool depth {snap['spool_depth']} · quarantined {snap['quarantined']} · rules "
                 f"{snap.get('rules_version')}", f"  worker {snap['worker']}"]
    else:
        lines = ["helpdesk: daemon not running (no fresh status file)"]
    lines.append(f"  database {snap['database']}")
    for p in snap.get("processes", []):
        state = "alive" if p["alive"] else f"DEAD ({p['why']})"
        http = f" · http {p['http']}" if p.get("http") else ""
        lines.append(f"  process {p['kind']} pid {p['pid']} on {p['host']}: {state} · since {p['started_at']}{http}")
    for n in snap.get("nodes", []):
        lines.append(f"  node {n['node']} ({n['kind']}, pid {n['pid']} on {n['host']}): spool {n['spool_depth']} · "
                     f"last seen {n['last_seen']} ({n['silent_seconds']:.0f}s ago)" + (" · ALERT" if n["alert"] else ""))
    box = snap.get("outbox")
    if box is not None:
        lines.append(f"  outbox {box['pending']} pending · oldest {box['oldest_pending_at'] or '-'} · last sent "
                     f"{box['last_sent_at'] or '-'} · last relay error {box['last_relay_error'] or '-'}")
    for a in snap.get("imap", []) if snap.get("running") else []:
        lines.append(f"  imap {a['account']}/{a['folder']}: {a['state']} · taken {a['taken']} · last mail "
                     f"{a.get('last_mail_at') or '-'} · last error {a.get('last_error') or '-'}")
    lines += [f"  {status_line(o)}" for o in snap.get("oauth2", [])]
    lines += [f"  PROBLEM {p}" for p in snap.get("problems", []) if not p.startswith("alert: ")]
    lines += [f"  ALERT {a}" for a in snap.get("alerts") or []]
    return "\n".join(lines)
