"""The continual improvement report mailed on its `[reports]` schedule by a real `helpdesk
serve` to a real aiosmtpd relay, over the generated month of tests/integration/test_report.py.
The daemon's clock is a test clock file set to Monday 30 March 2026, 08:00 UTC: the weekly
report of 23-29 March goes out at once; after a restart it is not sent again - the barrier
is the next week's report, sent when the clock is moved a week on, after which exactly two
report mails have arrived."""
from __future__ import annotations

import email
import shutil
import signal
from datetime import datetime, timedelta, timezone
from email import policy

import pytest

from daemon.clock import write_offset
from daemon.config import load_config
from daemon.report.mailing import period_due
from tests.conftest import REPO
from tests.e2e.helpers import Daemon, advance, wait_for
from tests.e2e.test_ack import site
from tests.integration.test_outbox_relay import Sink
from tests.integration.test_report import SLA, generate

MONDAY = datetime(2026, 3, 30, 8, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("schedule,now,want", [
    ("weekly", MONDAY, ("2026-03-23", "2026-03-30")),
    ("weekly", MONDAY.replace(hour=6), ("2026-03-16", "2026-03-23")),      # before the send hour
    ("weekly", datetime(2026, 4, 2, 12, tzinfo=timezone.utc), ("2026-03-23", "2026-03-30")),
    ("monthly", datetime(2026, 4, 1, 7, tzinfo=timezone.utc), ("2026-03-01", "2026-04-01")),
    ("monthly", datetime(2026, 4, 1, 6, tzinfo=timezone.utc), ("2026-02-01", "2026-03-01")),
    ("monthly", datetime(2026, 1, 15, 9, tzinfo=timezone.utc), ("2025-12-01", "2026-01-01")),
    ("daily", MONDAY, ("2026-03-29", "2026-03-30")),
])
def test_period_due(schedule, now, want):
    start, end = period_due(schedule, 7, now)
    assert (start.date().isoformat(), end.date().isoformat()) == want


@pytest.fixture
def sink():
    with Sink() as s:
        yield s


def reports(sink) -> list:
    return [email.message_from_bytes(raw, policy=policy.default) for _, rcpts, raw in list(sink.handler.messages)
            if b"service desk report" in raw.split(b"\r\n\r\n", 1)[0]]


def test_weekly_report_mailed_once_per_week(tmp_path, sink):
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    (rules / "sla.yaml").write_text(SLA)
    cfg = site(tmp_path, sink.port, '\n[paths]\nrules = "rules"\n[debug]\nclock_file = "clock"\n'
                                    '[reports]\nto = ["boss@example.com", "cio@example.com"]\n')
    (tmp_path / "state").mkdir()
    generate(load_config(str(cfg)).database_url)
    clock = tmp_path / "clock"
    write_offset(clock, MONDAY - datetime.now(timezone.utc))
    daemon = Daemon(cfg).start()
    try:
        got = wait_for(lambda: reports(sink), timeout=60)
        first = got[0]
        assert first["To"] == "boss@example.com, cio@example.com"
        assert "weekly service desk report, 2026-03-23 to 2026-03-29" in first["Subject"]
        assert first["Message-ID"] == "<report.weekly.20260330@example.com>"
        text = first.get_body(("plain",)).get_content()
        page = first.get_body(("html",)).get_content()
        assert "10 ticket(s) created" in text and "VOLUME BY QUEUE" in text
        assert "<svg" in page and "<script" not in page and "Tickets by queue" in page
        daemon.kill(signal.SIGTERM)
        daemon = Daemon(cfg).start()                  # a restart does not send it again ...
        advance(clock, timedelta(days=7))             # ... the next week's report is the barrier
        wait_for(lambda: len(reports(sink)) >= 2, timeout=60)
        subjects = [r["Subject"] for r in reports(sink)]
        assert len(subjects) == 2 and "2026-03-30 to 2026-04-05" in subjects[1]
    finally:
        daemon.kill(signal.SIGTERM)
