"""The SLA report: attainment per queue, priority and policy over a period, as text,
JSON and one self-contained HTML page."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

from zoneinfo import ZoneInfo

from daemon.pipeline.calendar import BusinessCalendar
from daemon.pipeline.sla import Policy, SlaSettings, StatusChange, Targets, TicketHistory
from daemon.sla.report import build_report, duration_text, render_html, render_json, render_text

UTC = timezone.utc
H = timedelta(hours=1)
OFFICE = BusinessCalendar("office", "Europe/Berlin", tuple(((480, 1080),) if d < 5 else () for d in range(7)))
POLICY = Policy("std", {"P2": Targets(OFFICE, H, 8 * H), "P3": Targets(OFFICE, 4 * H, 30 * H)})
SETTINGS = SlaSettings("v", "sla.yaml", {"office": OFFICE}, {"std": POLICY}, (), "std")


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=ZoneInfo("Europe/Berlin")).astimezone(UTC)


def t(i: int, queue: str, prio: str, changes=(), first=None, created=None) -> TicketHistory:
    return TicketHistory(i, created or at(2, 9), prio, queue, "std",
                         tuple(StatusChange(when, s) for when, s in changes), first, first)


HISTORIES = [
    t(1, "general", "P3", [(at(3, 9), "resolved")], first=at(2, 10)),              # 1h met, 10h met
    t(2, "general", "P3", [(at(6, 9), "resolved")], first=at(2, 15)),              # 6h breached, 40h breached
    t(3, "network", "P2", [(at(2, 10), "pending")], first=at(2, 9, 30)),           # 30m met, paused: open
    t(4, "network", "P2"),                                                          # no answer: both breached
    t(5, "general", "P3", created=at(1, 9) - timedelta(days=3)),                   # before the period
    t(6, "general", "P9"),                                                          # no targets
]
UNANSWERED = [t(7, "general", "P3", [(at(2, 10), "resolved")]),                     # resolved, never answered
              t(8, "general", "P3", [(at(2, 15), "resolved")])]                     # ... after the 4h goal
START, END, NOW = at(1, 0), at(8, 0), at(9, 12)


def report():
    return build_report(HISTORIES, SETTINGS, start=START, end=END, now=NOW)


def test_attainment_counts_and_times():
    r = report()
    assert (r.tickets, r.skipped) == (5, 1)
    fr, res = r.row("all", "all", "first_response"), r.row("all", "all", "resolution")
    assert (fr.met, fr.breached, fr.open, fr.attainment) == (2, 2, 0, 50.0)
    assert (fr.median, fr.p90) == (H, 6 * H)                     # of 30m, 1h, 6h; p90 by nearest rank
    assert (res.met, res.breached, res.open) == (1, 2, 1) and round(res.attainment, 1) == 33.3
    assert (res.median, res.p90) == (25 * H, 40 * H)             # of the resolved ones: 10h and 40h


def test_groups_by_queue_priority_and_policy():
    r = report()
    net = r.row("queue", "network", "resolution")
    assert (net.tickets, net.met, net.breached, net.open, net.attainment, net.median) == (2, 0, 1, 1, 0.0, None)
    assert r.row("priority", "P3", "first_response").attainment == 50.0
    assert r.row("policy", "std", "first_response").tickets == 4
    assert [(x.dimension, x.key) for x in r.rows][::2] == [("all", "all"), ("queue", "general"), ("queue", "network"),
                                                          ("priority", "P2"), ("priority", "P3"), ("policy", "std")]


def test_open_tickets_are_left_out_of_attainment_until_they_breach():
    early = build_report(HISTORIES[3:4], SETTINGS, start=START, end=END, now=at(2, 9, 30))
    row = early.row("all", "all", "first_response")
    assert (row.open, row.attainment) == (1, None)


def test_a_ticket_resolved_without_a_public_answer_is_unanswered_not_met():
    r = build_report(UNANSWERED, SETTINGS, start=START, end=END, now=NOW)
    fr, res = r.row("all", "all", "first_response"), r.row("all", "all", "resolution")
    assert (fr.met, fr.breached, fr.unanswered, fr.open, fr.attainment) == (0, 1, 1, 0, 0.0)
    assert (fr.median, fr.p90) == (None, None)                   # no response, no response time
    assert (res.met, res.breached, res.unanswered) == (2, 0, 0)
    assert re.search(r"\n  all\s+first response\s+2\s+0\s+1\s+0\s+1\s+0\.0%", render_text(r))
    assert json.loads(render_json(r))["rows"][0]["unanswered"] == 1


def test_text():
    text = render_text(report())
    assert "tickets created 2026-02-28T23:00:00+00:00 to 2026-03-07T23:00:00+00:00" in text
    assert re.search(r"\n  all\s+first response\s+4\s+2\s+2\s+0\s+0\s+50\.0%\s+1h00m\s+6h00m\n", text), text
    assert re.search(r"\n  network\s+first response", text) and "BY PRIORITY" in text
    empty = render_text(build_report([], SETTINGS, start=START, end=END, now=NOW))
    assert "No tickets with SLA targets" in empty


def test_json():
    data = json.loads(render_json(report()))
    assert data["tickets"] == 5 and data["skipped"] == 1 and data["period"]["start"] == START.isoformat()
    first = data["rows"][0]
    assert first == {"dimension": "all", "key": "all", "target": "first_response", "tickets": 4, "met": 2,
                     "breached": 2, "open": 0, "unanswered": 0, "attainment": 50.0, "median_seconds": 3600.0, "p90_seconds": 21600.0}


def test_html_is_self_contained_and_escaped():
    hostile = TicketHistory(9, at(2, 9), "P3", "<script>alert(1)</script>", "std")
    page = render_html(build_report(HISTORIES + [hostile], SETTINGS, start=START, end=END, now=NOW),
                       title="March & more")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page and "&lt;script&gt;" in page and "March &amp; more" in page
    for external in ("http://", "https://", "src=", "url(", "@import", "<link"):
        assert external not in page
    assert "By queue" in page and "By priority" in page and "By policy" in page
    assert re.search(r'width:\d+px;background:#2e7d32', page)     # CSS bars


def test_duration_text():
    assert [duration_text(x) for x in (None, timedelta(0), timedelta(minutes=45), timedelta(hours=26, minutes=5))] \
        == ["-", "0m", "45m", "26h05m"]
