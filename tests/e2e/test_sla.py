"""SLA escalation end to end: a real `helpdesk serve` (huey consumer on SQLite, its
scheduler and sweeps) with a policy measured in seconds, mail in over SMTP, mail out to a
real aiosmtpd relay. The escalation mail arrives once, not before its deadline, and not at
all for a ticket resolved or answered in time. No sleeps: a later ticket's escalation is the
barrier after which nothing more may arrive for the earlier ones."""
from __future__ import annotations

import email
import hashlib
import json
import shutil
import signal
from datetime import datetime, timezone
from email import policy
from pathlib import Path

import pytest

from daemon.config import load_config
from tests.conftest import REPO
from tests.e2e.helpers import Daemon, helpdesk, show, tickets, wait_for
from tests.e2e.test_ack import mail, site, smtp_send
from tests.integration.test_outbox_relay import Sink, SinkHandler

FIRST_RESPONSE = 4                      # seconds

SLA = f"""\
# A policy in seconds (the `s` unit is meant for tests like this one).
calendars:
  always:
    always_open: true
escalations:
  quick:
    - name: breached
      at: 100%
      targets: [first_response]
      notify: agent/sla-breached
      to: [{{role: lead}}]
policies:
  standard:
    calendar: always
    escalations: quick
    targets:
      P1: {{first_response: {FIRST_RESPONSE}s, resolution: 1h}}
      P2: {{first_response: {FIRST_RESPONSE}s, resolution: 1h}}
      P3: {{first_response: {FIRST_RESPONSE}s, resolution: 1h}}
      P4: {{first_response: {FIRST_RESPONSE}s, resolution: 1h}}
  business-critical:
    calendar: always
    targets:
      P1: {{first_response: 1h, resolution: 2h}}
      P2: {{first_response: 1h, resolution: 2h}}
      P3: {{first_response: 1h, resolution: 2h}}
      P4: {{first_response: 1h, resolution: 2h}}
default_policy: standard
"""


class TimedHandler(SinkHandler):
    """Records when each mail arrived (wall clock, UTC)."""

    def __init__(self):
        super().__init__()
        self.times: list[datetime] = []

    async def handle_DATA(self, server, session, envelope):
        self.times.append(datetime.now(timezone.utc))
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def sink():
    s = Sink()
    s.handler = TimedHandler()
    s.controller.handler = s.handler
    with s:
        yield s


def escalations(sink) -> list[tuple[str, str, datetime]]:
    """(recipient, ticket ref, arrival) of every SLA mail the relay got."""
    out = []
    for (_, rcpts, raw), at in zip(list(sink.handler.messages), list(sink.handler.times)):
        msg = email.message_from_bytes(raw, policy=policy.default)
        if "SLA BREACHED" in msg["Subject"]:
            out.append((rcpts[0], msg["X-Helpdesk-Ticket"], at))
    return out


def ticket_id(cfg: Path, subject: str) -> int:
    return wait_for(lambda: next((t["id"] for t in tickets(cfg) if t["subject"] == subject), None), timeout=15)


def answer(cfg: Path, ticket: int) -> None:
    """An agent's public answer stored through the agent path's store (another process)."""
    from daemon.app import open_store
    from daemon.model import Envelope
    from daemon.pipeline.parse import parse
    from store.tickets import AgentWrite, TicketStore
    store = open_store(load_config(str(cfg)))
    raw = (f"From: Ana Lima <ana@example.com>\r\nTo: support@example.com\r\nSubject: Re: [HD-{ticket}]\r\n"
           f"Message-ID: <answer.{ticket}@example.com>\r\n\r\nWe are on it.\r\n").encode()
    TicketStore(store).record(parse(raw), Envelope("ana@example.com", ()), raw, hashlib.sha256(raw).hexdigest(),
                              AgentWrite(ticket, "out", "public", "acted", "ana@example.com", "test", "We are on it.",
                                         implicit_status="open"), datetime.now(timezone.utc))
    store.engine.dispose()


def resolve(cfg: Path, ticket: int) -> None:
    from daemon.app import open_store
    store = open_store(load_config(str(cfg)))
    store.change_status(ticket, "resolved", datetime.now(timezone.utc), why="fixed")
    store.engine.dispose()


def test_escalation_arrives_once_on_time_and_never_for_answered_or_resolved(tmp_path, sink):
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    (rules / "sla.yaml").write_text(SLA)
    cfg = site(tmp_path, sink.port, '\n[paths]\nrules = "rules"\n')
    assert helpdesk(cfg, "check").returncode == 0
    daemon = Daemon(cfg).start()
    try:
        smtp_send(cfg, mail(1, subject="Resolved in time"))
        smtp_send(cfg, mail(2, subject="Answered in time"))
        resolve(cfg, ticket_id(cfg, "Resolved in time"))
        answer(cfg, ticket_id(cfg, "Answered in time"))
        smtp_send(cfg, mail(3, subject="Nobody answers"))
        late = ticket_id(cfg, "Nobody answers")
        ack = wait_for(lambda: [m for m in sink.handler.messages if b"Nobody answers" in m[2]
                                and m[1] == ("ann@example.org",)], timeout=15)[0][2]
        assert b"get back to you by" in ack                       # the acknowledgement states the target
        sla = show(cfg, f"HD-{late}")["sla"]
        assert sla["policy"] == "standard" and sla["response_due"] and sla["breached"] == []
        due = datetime.fromisoformat(sla["response_due"])
        wait_for(lambda: escalations(sink), timeout=FIRST_RESPONSE + 20)
        # a later ticket's escalation is the barrier: everything due before it has had its chance
        smtp_send(cfg, mail(4, subject="Barrier"))
        barrier = ticket_id(cfg, "Barrier")
        wait_for(lambda: any(ref == f"HD-{barrier}" for _, ref, _ in escalations(sink)), timeout=FIRST_RESPONSE + 20)
        got = escalations(sink)
        assert [(to, ref) for to, ref, _ in got] == [("ana@example.com", f"HD-{late}"),
                                                     ("ana@example.com", f"HD-{barrier}")]
        assert got[0][2] >= due                                    # not early
        stored = show(cfg, f"HD-{late}")["sla"]
        assert stored["breached"] == ["first_response"]
        (fired,) = stored["escalations"]
        assert fired["key"] == "standard:first_response:breached" and fired["fired_at"] >= fired["due_at"]
        for subject in ("Resolved in time", "Answered in time"):
            other = show(cfg, f"HD-{ticket_id(cfg, subject)}")["sla"]
            assert other["breached"] == [] and other["escalations"] == []
        report = helpdesk(cfg, "sla", "report", "--json", "--html", str(tmp_path / "sla.html"), check=True)
        (overall,) = [r for r in json.loads(report.stdout)["rows"] if (r["dimension"], r["target"]) == ("all",
                                                                                                    "first_response")]
        assert (overall["met"], overall["breached"]) == (2, 2)
        assert (tmp_path / "sla.html").read_text().startswith("<!DOCTYPE html>")
    finally:
        assert daemon.kill(signal.SIGTERM) == 0
    assert b"Traceback" not in (tmp_path / "serve.log").read_bytes()
