"""`helpdesk worker`'s observability (metrics, /healthz, process file) and `helpdesk status`
against a real database: outbox figures, mail overdue, the database unreachable."""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import Session

from daemon.config import load_config
from daemon.errors import HelpdeskError
from daemon.health import report
from daemon.http import HttpServer
from daemon.metrics import Metrics
from daemon.observe import observe_worker
from daemon.processes import read_all
from store.outbox import Outbox, OutboxRecipient
from tests.conftest import free_port, write_site_config
from tests.e2e.helpers import helpdesk


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def add_outbox(engine, *, age: timedelta, status="pending", rcpt_status="pending", reason="", n=1):
    now = datetime.now(timezone.utc)
    with Session(engine) as s:
        row = Outbox(kind="ack", audience="requester", message_id=f"m{n}@x", nonce=f"n{n}", mail_from="s@x", raw=b"x",
                     status=status, attempts=1, created_at=now - age, next_attempt_at=now)
        s.add(row)
        s.flush()
        s.add(OutboxRecipient(outbox_id=row.id, email="ann@example.org", status=rcpt_status, reason=reason,
                              planned_at=now - age, updated_at=now - age / 2))
        s.commit()


def test_worker_serves_metrics_healthz_and_registers_itself(tmp_path, app):
    port = free_port()
    cfg = load_config(str(write_site_config(tmp_path, f"[http]\nenabled = true\nport = {port}\n")))
    stop = threading.Event()
    obs = observe_worker(cfg, app.store, stop)
    try:
        code, body = get(port, "/metrics")
        assert code == 200 and "helpdesk_outbox_pending 0.0" in body.decode().splitlines()
        code, body = get(port, "/healthz")
        assert code == 200 and json.loads(body)["kind"] == "worker" and json.loads(body)["problems"] == []
        assert get(port, "/nope")[0] == 404
        (seen,) = read_all(cfg.state_dir, 60)
        assert (seen.kind, seen.alive, seen.info["http"]) == ("worker", True, f"127.0.0.1:{port}")
        add_outbox(app.store.engine, age=timedelta(hours=1), reason="421 relay busy")
        code, body = get(port, "/healthz")
        assert code == 503 and json.loads(body)["outbox"]["relay_failing"]
        with pytest.raises(HelpdeskError, match=r"http.port: cannot listen on 127.0.0.1:\d+: .*another daemon"):
            HttpServer("127.0.0.1", port, Metrics(), dict)
    finally:
        obs.stop()
    assert read_all(cfg.state_dir, 60) == []


def test_status_figures_from_the_outbox(config, app):
    add_outbox(app.store.engine, age=timedelta(seconds=10), n=1)
    snap = report(config)
    box = snap["outbox"]
    assert (box["pending"], box["overdue"], box["relay_failing"], snap["database"]) == (1, 0, False, "ok")
    add_outbox(app.store.engine, age=timedelta(hours=2), n=2, reason="connection refused")
    add_outbox(app.store.engine, age=timedelta(hours=3), n=3, status="sent", rcpt_status="sent")
    snap = report(config)
    box = snap["outbox"]
    assert (box["pending"], box["overdue"]) == (2, 1)
    assert box["relay_failing"] and box["last_relay_error"] == "connection refused"
    assert any(p.startswith("1 mail(s) wait in the outbox past their first retry") for p in snap["problems"])


def test_a_later_delivery_clears_relay_failing(config, app):
    add_outbox(app.store.engine, age=timedelta(hours=2), n=1, reason="connection refused")
    add_outbox(app.store.engine, age=timedelta(minutes=2), n=2, status="sent", rcpt_status="sent")
    assert report(config)["outbox"]["relay_failing"] is False


def test_status_exits_1_when_the_database_is_unreachable(tmp_path):
    closed = free_port()
    cfg = write_site_config(tmp_path, db_url=f"postgresql+psycopg://postgres@127.0.0.1:{closed}/nothing")
    proc = helpdesk(cfg, "status")
    assert proc.returncode == 1
    assert b"PROBLEM database unreachable: OperationalError" in proc.stdout
    proc = helpdesk(cfg, "status", "--json")
    assert proc.returncode == 1 and json.loads(proc.stdout)["database"].startswith("unreachable")
    assert b"helpdesk: database unreachable" in proc.stderr


def test_status_never_creates_a_database(tmp_path):
    cfg = write_site_config(tmp_path)
    proc = helpdesk(cfg, "status")
    assert proc.returncode == 1 and b"database unreachable: no database at" in proc.stdout
    assert not (tmp_path / "state" / "helpdesk.db").exists()


def test_one_refusal_a_moment_ago_is_not_yet_a_failing_relay(config, app):
    add_outbox(app.store.engine, age=timedelta(seconds=20), n=1, reason="connection refused")
    box = report(config)["outbox"]
    assert box["relay_failing"] is False and box["relay_failing_since"] is not None
    assert box["last_relay_error"] == "connection refused"
