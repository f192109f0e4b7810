"""Health: the status file and the ALERT lines for failing or silent IMAP accounts."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from types import SimpleNamespace

from daemon.config import HealthSection
from daemon.health import Health


@dataclass
class Status:
    account: str
    state: str
    folder: str = "INBOX"
    taken: int = 0
    last_mail_at: str | None = None
    last_error: str | None = None


@dataclass
class Poller:
    st: Status

    def status(self) -> Status:
        return self.st


@dataclass
class Spool:
    def depth(self) -> int:
        return 3


@dataclass
class Store:
    def quarantine_count(self) -> int:
        return 1


@dataclass
class FakeApp:
    """The parts of App that Health reads (the real App needs a running daemon)."""
    pollers: list
    config: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(
        health=HealthSection(status_seconds=0, log_minutes=0, alert_failing_minutes=0, alert_silent_hours=1)))
    spool: Spool = field(default_factory=Spool)
    store: Store = field(default_factory=Store)
    worker: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(stats={"stored": 7}))
    rules: None = None

    @property
    def imap(self):
        return self.pollers


def test_status_file_and_alerts_raised_once_and_cleared(tmp_path, caplog):
    support = Poller(Status("support", "auth_failed", last_error="LOGIN failed"))
    sales = Poller(Status("sales", "idle", last_mail_at="2000-01-01T00:00:00+00:00"))
    health = Health(FakeApp([support, sales]), tmp_path / "status.json", clock=iter(range(10**6)).__next__)
    with caplog.at_level(logging.WARNING, logger="daemon.health"):
        health.tick()
        health.tick()                                   # still failing: no second alert
    snap = json.loads((tmp_path / "status.json").read_text())
    assert snap["spool_depth"] == 3 and snap["quarantined"] == 1 and snap["worker"] == {"stored": 7}
    assert [a["state"] for a in snap["imap"]] == ["auth_failed", "idle"]
    alerts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ALERT")]
    assert len(alerts) == 2
    assert any("support failing" in a and "LOGIN failed" in a for a in alerts)
    assert any("sales received no mail since 2000-01-01" in a for a in alerts)
    caplog.clear()
    support.st.state = "idle"
    with caplog.at_level(logging.WARNING, logger="daemon.health"):
        health.tick()
    assert any("recovered" in r.getMessage() for r in caplog.records)
    assert json.loads((tmp_path / "status.json").read_text())["alerts"] == ["sales: silent"]
