"""Health of a running daemon: a status file for `helpdesk status`, log lines and alerts.

`serve` calls `Health.tick()` about once a second; every `status_seconds` it writes
`<state_dir>/status.json` atomically (spool depth, quarantine count, worker counters,
intake counters, each IMAP account's state, last mail and last error), every
`log_minutes` it logs a summary, and it logs an ALERT once when an account has been
failing or silent longer than configured (and once more when it recovers).
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

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

    def snapshot(self, state: str = "running") -> dict:
        app = self.app
        try:
            quarantined = app.store.quarantine_count()
            db = "ok"
        except Exception as exc:                     # the database being down is a health fact
            quarantined, db = None, f"unavailable: {exc.__class__.__name__}"
        accounts = [asdict(p.status()) for p in app.imap]
        return {"state": state, "pid": os.getpid(), "written_at": datetime.now(timezone.utc).isoformat(),
                "started_at": self.started.isoformat(), "database": db, "spool_depth": app.spool.depth(),
                "quarantined": quarantined, "worker": dict(app.worker.stats),
                "rules_version": app.rules.version if app.rules else None,
                "rules_problems": list(getattr(app.rules, "last_problems", []) or []),
                "imap": accounts, "alerts": sorted(self.alerted)}

    def write(self, state: str = "running", snap: dict | None = None) -> dict:
        snap = snap if snap is not None else self.snapshot(state)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(snap, indent=1, default=str))
        os.replace(tmp, self.path)
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

    def _raise(self, key: str, active: bool, text: str) -> None:
        if active and key not in self.alerted:
            self.alerted.add(key)
            log.error("ALERT %s", text)
        elif not active and key in self.alerted:
            self.alerted.discard(key)
            log.warning("alert cleared: %s", text)
