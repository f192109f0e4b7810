"""Pure parts of observability: JSON log lines, metrics rendering, status problems."""
from __future__ import annotations

import io
import json
import logging
import sys
import time
from types import SimpleNamespace

from daemon.health import problems, status_text
from daemon.logfmt import JsonFormatter, fields_of, install
from daemon.metrics import Metrics


def test_fields_are_read_from_the_text_the_edges_write():
    assert fields_of("outbox=5 message_id=<a.1@example.org> ticket=12 attempt=1 ann=sent") == \
        {"outbox": 5, "message_id": "a.1@example.org", "ticket": 12}
    assert fields_of("ticket=None mail not built") == {}
    assert fields_of("no fields here") == {}


def _record(msg, *args, exc_info=None, **extra):
    rec = logging.LogRecord("daemon.worker", logging.WARNING, __file__, 1, msg, args, exc_info)
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


def test_json_lines_carry_message_id_and_ticket():
    line = JsonFormatter().format(_record("stored message_id=<%s> ticket=%s", "m@x", 7))
    out = json.loads(line)
    assert out["message"] == "stored message_id=<m@x> ticket=7"
    assert (out["message_id"], out["ticket"], out["level"], out["logger"]) == ("m@x", 7, "warning", "daemon.worker")
    assert out["time"].endswith("+00:00")
    assert "\n" not in line


def test_extra_wins_and_tracebacks_stay_on_one_line():
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        rec = _record("failed", exc_info=sys.exc_info(), ticket=9, message_id="e@x")
    line = JsonFormatter().format(rec)
    out = json.loads(line)
    assert (out["ticket"], out["message_id"]) == (9, "e@x")
    assert "ValueError: boom" in out["exception"] and "\n" not in line


def test_install_leaves_a_configured_root_alone():
    root = logging.getLogger()
    before = list(root.handlers), root.level
    handler = install(logging.INFO, "json", io.StringIO())
    assert isinstance(handler.formatter, JsonFormatter)
    if before[0]:                                   # pytest's capture handler is there
        assert root.handlers == before[0] and root.level == before[1]


def test_metrics_render_counters_histogram_and_live_figures():
    m = Metrics()
    m.message_received("smtp")
    m.message_received("imap")
    m.outbox_result("sent")
    m.outbox_result("failed")
    m.outbox_result("pending")
    m.escalation_fired()
    m.spooled_done(f"{time.time_ns() - 2_000_000_000}.abcdef")
    m.spooled_done("junk")
    accounts = [SimpleNamespace(account="support", state="idle"), SimpleNamespace(account="sales", state="backoff")]
    m.watch(spool=SimpleNamespace(depth=lambda: 3), worker_stats=lambda: {"stored": 4, "quarantined": 1},
            outbox_pending=lambda: 2, imap=lambda: accounts)
    text = m.render().decode()
    for line in ('helpdesk_messages_received_total{intake="smtp"} 1.0', "helpdesk_outbox_sent_total 1.0",
                 "helpdesk_outbox_failed_total 1.0", "helpdesk_escalations_fired_total 1.0",
                 "helpdesk_ingest_seconds_count 1.0", 'helpdesk_ingest_seconds_bucket{le="1.0"} 0.0',
                 'helpdesk_ingest_seconds_bucket{le="2.5"} 1.0', "helpdesk_spool_depth 3.0",
                 "helpdesk_messages_stored_total 4.0", "helpdesk_messages_quarantined_total 1.0",
                 "helpdesk_outbox_pending 2.0", 'helpdesk_imap_up{account="support"} 1.0',
                 'helpdesk_imap_up{account="sales"} 0.0'):
        assert line in text.splitlines(), line


def test_a_failing_figure_is_left_out_not_the_scrape(caplog):
    def down():
        raise ConnectionError("database down")
    m = Metrics()
    m.watch(spool=SimpleNamespace(depth=lambda: 0), outbox_pending=down)
    text = m.render().decode()
    assert "helpdesk_spool_depth 0.0" in text and "helpdesk_outbox_pending " not in text
    assert "outbox pending not collected: database down" in caplog.text


def test_spool_observer_counts_first_reads_by_source():
    m = Metrics()
    spool = SimpleNamespace(depth=lambda: 0)
    m.watch(spool=spool)
    env = SimpleNamespace(source="imap:support")
    spool.observer.read(SimpleNamespace(attempt=1, base="1.a"), env)
    spool.observer.read(SimpleNamespace(attempt=2, base="1.a"), env)      # a retry is not a new message
    assert 'helpdesk_messages_received_total{intake="imap"} 1.0' in m.render().decode()


def healthy(**over):
    snap = {"running": True, "database": "ok", "outbox": {"pending": 0, "overdue": 0, "relay_failing": False},
            "rules_problems": [], "templates_problems": [], "alerts": [], "processes": []}
    snap.update(over)
    return snap


def test_problems_name_each_cause():
    assert problems(healthy()) == []
    assert problems(healthy(running=False)) == ["the daemon (serve) is not running: no fresh status file"]
    assert problems(healthy(database="unreachable: OperationalError: connection refused", outbox=None)) == \
        ["database unreachable: OperationalError: connection refused"]
    box = {"pending": 3, "overdue": 2, "relay_failing": True, "last_relay_error": "connection refused",
           "relay_failing_since": "2026-01-01T00:00:00+00:00", "oldest_pending_at": "2026-01-01T00:00:00+00:00"}
    found = problems(healthy(outbox=box), 300)
    assert found[0] == "the relay has been failing since 2026-01-01T00:00:00+00:00: connection refused"
    assert found[1].startswith("2 mail(s) wait in the outbox past their first retry (300s")
    found = problems(healthy(rules_problems=["rules/x.yaml:3: bad"], templates_problems=["t.j2:1: bad"]))
    assert found == ["the last rules reload failed (1 problem(s)), the last good version stays live: rules/x.yaml:3: bad",
                     "the last templates reload failed (1 problem(s)), the last good version stays live: t.j2:1: bad"]
    dead = {"kind": "worker", "pid": 9, "host": "h", "alive": False, "why": "process gone", "started_at": "x"}
    assert problems(healthy(processes=[dead])) == ["worker pid 9 on h is dead (process gone)"]


def test_status_text_shows_a_failed_reload_without_json():
    snap = healthy(rules_problems=["rules/x.yaml:3: bad"], state="running", pid=1, started_at="t", spool_depth=0,
                   quarantined=0, worker={}, outbox=None, database="ok")
    snap["problems"] = problems(snap)
    assert "PROBLEM the last rules reload failed" in status_text(snap)
