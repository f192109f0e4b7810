"""`helpdesk report` over a generated month with known figures, and the HTML page as a manager
sees it: rendered by headless Chromium (`chromium --headless --dump-dom`), asserted on the
text and the chart elements a person reads.

The month: Monday 2 March to Sunday 29 March 2026, 40 tickets, 10 a week, one every 12 hours
from Monday 00:00. Ticket i (0..39): a request when i % 4 == 0 (else an incident); queue
network for even i, general for odd; channel imap:support when i % 5 == 0, else smtp;
service email when i % 10 < 3; first answer (i % 4 + 1) hours after creation; resolved
10 * (1 + i % 3) hours after creation unless i % 8 == 7 (5 stay open); reopened (and
resolved again) when i % 10 == 0. Before the month: one ticket still open (41 days old at
the end), one resolved in the first week, two resolved problems with 3 and 1 linked
incidents. SLA (always open): first response 2h30m, resolution 24h. Satisfaction answers
in the `csatsurvey` table (migration 0007_problems_csat): 5, 5, 4, 2, 1.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from daemon.config import load_config
from store import tables as m
from store.db import create_schema, make_engine
from tests.conftest import REPO, missing, sla_yaml, write_site_config
from daemon.cli import main
from tests.e2e.helpers import helpdesk
from tests.integration.test_desk_defects import own_rules
from tests.integration.test_outbox import close_desk, make_desk, new_mail

START = datetime(2026, 3, 2, tzinfo=timezone.utc)
END = datetime(2026, 3, 30, tzinfo=timezone.utc)
SLA = sla_yaml(("2h30m", "24h"), ("2h30m", "24h"))
def ticket(s: Session, tid: int, created: datetime, *, type_="incident", queue="general", status="new",
           updated: datetime | None = None, subject: str = "") -> None:
    s.add(m.Ticket(id=tid, subject=subject or f"Ticket {tid}", type=type_, status=status, priority="P3",
                   queue=queue, requester=f"user{tid}@example.org", created_at=created,
                   updated_at=updated or created, message_count=1))


def message(s: Session, tid: int, n: int, at: datetime, direction: str, source: str = "smtp") -> None:
    s.add(m.Message(ticket_id=tid, message_id=f"m{tid}.{n}@example.org", digest=f"d{tid}.{n}", raw_sha256="0" * 64,
                    direction=direction, visibility="public", received_at=at,
                    envelope=json.dumps({"mail_from": "x@example.org", "rcpt_to": [], "source": source})))


def status(s: Session, tid: int, at: datetime, old: str, new: str) -> None:
    s.add(m.Event(ticket_id=tid, at=at, kind="status", detail=json.dumps({"from": old, "to": new, "why": "test"})))


def generate(url: str) -> None:
    engine = make_engine(url)
    create_schema(engine)
    with Session(engine) as s:
        for i in range(40):
            tid = i + 1
            created = START + timedelta(days=7 * (i // 10), hours=12 * (i % 10))
            done = created + timedelta(hours=10 * (1 + i % 3))
            final = "new" if i % 8 == 7 else "resolved"
            ticket(s, tid, created, type_="request" if i % 4 == 0 else "incident",
                   queue="network" if i % 2 == 0 else "general", status=final,
                   updated=done + timedelta(hours=3) if final == "resolved" else created)
            s.flush()
            message(s, tid, 1, created, "in", "imap:support" if i % 5 == 0 else "smtp")
            message(s, tid, 2, created + timedelta(hours=i % 4 + 1), "out")
            s.add(m.TicketSla(ticket_id=tid, policy="standard", service="email" if i % 10 < 3 else None,
                              queue="general", planned_at=created))
            if final == "resolved":
                status(s, tid, done, "open", "resolved")
                if i % 10 == 0:
                    status(s, tid, done + timedelta(hours=1), "resolved", "open")
                    status(s, tid, done + timedelta(hours=3), "open", "resolved")
        ticket(s, 41, datetime(2026, 2, 17, tzinfo=timezone.utc))                       # old and still open
        ticket(s, 42, datetime(2026, 2, 25, tzinfo=timezone.utc), status="resolved",
               updated=datetime(2026, 3, 3, 10, tzinfo=timezone.utc))
        old = datetime(2026, 1, 20, tzinfo=timezone.utc)
        ticket(s, 43, old, type_="problem", status="resolved", subject="Core switch drops links")
        ticket(s, 44, old, type_="problem", status="resolved", subject="Printer driver crash")
        s.flush()
        status(s, 42, datetime(2026, 3, 3, 10, tzinfo=timezone.utc), "open", "resolved")
        for incident, problem in ((1, 43), (2, 43), (3, 43), (4, 44)):
            s.add(m.TicketLink(ticket_id=incident, other_id=problem, kind="problem"))
        s.commit()
        for n, score in enumerate((5, 5, 4, 2, 1)):
            at = (START + timedelta(days=3 + n)).strftime("%Y-%m-%d %H:%M:%S.%f")      # as SQLAlchemy stores it
            at += "+00:00" if url.startswith("postgresql") else ""
            s.exec(text("INSERT INTO csatsurvey (id, ticket_id, requester, queue, message_id, sent_at, score, "
                        "comment, answered_at) VALUES (:t, :t, 'u@example.org', :q, :mid, :at, :score, '', :at)"),
                   params={"t": n + 1, "q": "network" if n % 2 == 0 else "general", "mid": f"s{n}", "at": at,
                           "score": score})
        s.commit()
    engine.dispose()


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    shutil.copytree(REPO / "rules", tmp / "rules")
    (tmp / "rules" / "sla.yaml").write_text(SLA)
    cfg = write_site_config(tmp, '[paths]\nrules = "rules"\n')
    (tmp / "state").mkdir()
    generate(load_config(str(cfg)).database_url)
    proc = helpdesk(cfg, "report", "--from", "2026-03-02", "--to", "2026-03-29", "--json", "--html",
                    str(tmp / "report.html"), check=True)
    return cfg, json.loads(proc.stdout), tmp / "report.html"


def test_the_month_on_postgresql_gives_the_same_figures(month, pg_url, tmp_path):
    """The same month in PostgreSQL."""
    _, on_sqlite, _ = month
    generate(pg_url)
    cfg = write_site_config(tmp_path, '[paths]\nrules = "rules"\n', db_url=pg_url)
    shutil.copytree(REPO / "rules", tmp_path / "rules")
    (tmp_path / "rules" / "sla.yaml").write_text(SLA)
    got = json.loads(helpdesk(cfg, "report", "--from", "2026-03-02", "--to", "2026-03-29", "--json",
                              check=True).stdout)
    assert {k: v for k, v in got.items() if k != "generated_at"} == \
        {k: v for k, v in on_sqlite.items() if k != "generated_at"}


def by_key(rows, key="key", value="tickets") -> dict:
    return {r[key]: r[value] for r in rows}


def test_volume_times_backlog_and_rates(month):
    _, r, _ = month
    assert r["period"] == {"start": "2026-03-02T00:00:00+00:00", "end": "2026-03-30T00:00:00+00:00",
                           "population": "tickets created in [start, end)"}
    assert r["tickets"] == 40
    assert by_key(r["volume"]["type"]) == {"incident": 30, "request": 10}
    assert by_key(r["volume"]["queue"]) == {"network": 20, "general": 20}
    assert by_key(r["volume"]["channel"]) == {"smtp": 32, "imap:support": 8}
    assert by_key(r["volume"]["service"]) == {"email": 12, "(none)": 28}
    times = {(t["target"], t["key"]): t for t in r["times"]}
    fr = times[("first_response", "all")]
    assert (fr["measured"], fr["median_seconds"], fr["p90_seconds"]) == (40, 2.5 * 3600, 4 * 3600)
    assert (fr["sla_met"], fr["sla_breached"], fr["sla_attainment"]) == (20, 20, 50.0)
    res = times[("resolution", "all")]
    # resolved: 35 tickets; 10h for i%3==0 (12), 20h for i%3==1 (11), 30h for i%3==2 (12)
    assert (res["measured"], res["median_seconds"], res["p90_seconds"]) == (35, 20 * 3600, 30 * 3600)
    assert (res["sla_met"], res["sla_breached"]) == (23, 17)              # 12 late + 5 still open
    assert r["reopen"] == {"resolved": 35, "reopened": 4, "rate": 11.43}
    assert r["backlog"]["open"] == 6
    assert by_key(r["backlog"]["ages"], "age") == {"under 1 day": 0, "1-3 days": 1, "3-7 days": 1,
                                                   "7-30 days": 3, "over 30 days": 1}
    assert r["backlog"]["oldest_seconds"] == 41 * 86400


def test_volume_by_service_needs_no_sla_rules(tmp_path, capsys):
    """A rule's `service:` is counted from the ticket alone: no sla.yaml, so no SLA plan rows."""
    rules = own_rules(tmp_path, lambda r: (r / "sla.yaml").unlink())
    d = make_desk(tmp_path, extra=f'[paths]\nrules = "{rules}"\n')
    try:
        assert d.app.rules.sla is None
        d.mail(new_mail(1, subject="VPN drops every hour"))                   # rule vpn: service vpn
        d.mail(new_mail(2, frm="bob@example.org", subject="ERP invoice posting fails"))    # service erp
        d.mail(new_mail(3, frm="cy@example.org", subject="Printer jams"))
        with Session(d.store.engine) as s:
            assert s.exec(select(m.TicketSla)).all() == []
        assert main(["--config", str(d.app.config.sources[-1]), "report", "--from", "2026-03-01", "--to",
                     "2026-03-31", "--json"]) == 0
    finally:
        close_desk(d)
    got = json.loads(capsys.readouterr().out)
    assert by_key(got["volume"]["service"]) == {"vpn": 1, "erp": 1, "(none)": 1}


def test_satisfaction_problems_and_weeks(month):
    _, r, _ = month
    s = r["satisfaction"]
    assert (s["answers"], s["average"], s["satisfied_percent"]) == (5, 3.4, 60.0)
    assert s["distribution"] == {"1": 1, "2": 1, "3": 0, "4": 1, "5": 2}
    assert [(p["ref"], p["incidents"]) for p in r["problems"]] == [("HD-43", 3), ("HD-44", 1)]
    weeks = r["weeks"]
    assert [w["start"][:10] for w in weeks] == ["2026-03-02", "2026-03-09", "2026-03-16", "2026-03-23"]
    assert [w["created"] for w in weeks] == [10, 10, 10, 10]
    assert weeks[0]["resolved"] == 1 + 9 + 1           # ticket 42, nine of the week's own, one resolved again
    assert [w["backlog"] for w in weeks][-1] == 6


def test_the_page_as_chromium_renders_it(month):
    _, r, page = month
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        missing("chromium (Debian package chromium) is not installed")
    source = page.read_text()
    assert "<script" not in source.lower() and "http://" not in source.replace('xmlns="http://www.w3.org/2000/svg"', "")
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                         capture_output=True, timeout=120, text=True, check=True).stdout
    assert "Example Service Desk: continual improvement report" in dom and "2026-03-02" in dom
    for words in ("tickets created", "40", "2h30m", "50.0%", "11.4%", "3.40 / 5", "Core switch drops links",
                  "Backlog by age", "Tickets by queue", "Week by week: created, resolved, backlog"):
        assert words in dom, words
    assert dom.count("<svg") >= 7 and 'class="chart trend"' in dom and "<polyline" in dom
    assert "network: 20" in dom and "general: 20" in dom             # the bars' titles, as a tooltip reads them
    assert "incident 30 · request 10" in dom and "smtp 32 · imap:support 8" in dom     # for clients without SVG
    assert "week of 2026-03-23: 10 created" in dom
    shot = page.with_suffix(".png")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1000,2400", page.as_uri()], capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 20_000                 # a page with charts, not a blank one
