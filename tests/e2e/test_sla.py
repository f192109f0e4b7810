"""SLA escalation end to end: a real `helpdesk serve` (huey consumer on SQLite, its
scheduler and sweeps) with a policy of realistic length, mail in over SMTP, mail out to a
real aiosmtpd relay. The escalation mail arrives once, not before its deadline, and not at
all for a ticket resolved or answered in time.

Nothing waits for a deadline: the daemon and the CLI read a test clock (`[debug]
clock_file`) and the test moves it (`advance`); the SLA sweep (every 0.5 s here) sees the
moved time. The barriers are later events, never sleeps: a P1 ticket created after the late
one is due first, and its escalation arriving while the clock stands between the two
deadlines shows the daemon ran its SLA check then and left the late ticket alone; a third
ticket's escalation after the late one's is the barrier after which nothing more may arrive
for the earlier ones."""
from __future__ import annotations

import email
import hashlib
import json
import shutil
import signal
from datetime import datetime, timedelta
from email import policy
from pathlib import Path

import pytest

from daemon.clock import FileClock
from daemon.config import load_config
from tests.conftest import REPO, sla_yaml
from tests.e2e.helpers import Daemon, advance, helpdesk, show, wait_for
from tests.e2e.test_ack import mail, site, smtp_send
from tests.integration.test_outbox_relay import Sink, SinkHandler

MARGIN = timedelta(minutes=10)          # between a moved clock and the next deadline: room for slow CLI calls

SLA = sla_yaml({"P1": ("30m", "8h"), "P2": ("1h", "8h"), "P3": ("1h", "8h"), "P4": ("1h", "8h")}, ("1h", "2h"),
               escalations="""\
    - name: breached
      at: 100%
      targets: [first_response]
      notify: agent/sla-breached
      to: [{role: lead}]
""")


class TimedHandler(SinkHandler):
    """Records when each mail arrived, by the daemon's (moved) clock."""

    def __init__(self):
        super().__init__()
        self.times: list[datetime] = []
        self.clock = None

    async def handle_DATA(self, server, session, envelope):
        self.times.append(self.clock())
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def sink(tmp_path):
    s = Sink()
    s.handler = TimedHandler()
    s.handler.clock = FileClock(tmp_path / "clock")
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


def now(cfg: Path) -> datetime:
    """The daemon's time (the test clock its config names)."""
    return FileClock(load_config(str(cfg)).debug.clock_file).now()


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
                                         implicit_status="open"), now(cfg))
    store.engine.dispose()


def resolve(cfg: Path, ticket: int) -> None:
    from daemon.app import open_store
    store = open_store(load_config(str(cfg)))
    store.change_status(ticket, "resolved", now(cfg), why="fixed")
    store.engine.dispose()


def acked(sink, subject: bytes) -> tuple[int, bytes]:
    """The ticket with `subject` and the acknowledgement its requester got (no CLI call: a
    loaded machine runs each in seconds)."""
    raw = wait_for(lambda: [m for m in sink.handler.messages if subject in m[2] and m[1] == ("ann@example.org",)],
                   timeout=15)[0][2]
    ref = email.message_from_bytes(raw, policy=policy.default)["X-Helpdesk-Ticket"]
    return int(ref.removeprefix("HD-")), raw


def move_to(cfg: Path, when: datetime) -> None:
    """Move the daemon's clock to `when` (it runs on from there)."""
    advance(Path(load_config(str(cfg)).debug.clock_file), when - now(cfg))


def response_due(cfg: Path, ticket: int) -> datetime:
    """A ticket's first-response deadline, read in this process (what `show` prints)."""
    from daemon.app import open_store
    from daemon.sla.views import SlaReader
    config = load_config(str(cfg))
    store = open_store(config)
    try:
        return datetime.fromisoformat(SlaReader(config, store.engine).show(ticket, now(cfg))["response_due"])
    finally:
        store.engine.dispose()


def test_escalation_arrives_once_on_time_and_never_for_answered_or_resolved(tmp_path, sink):
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    (rules / "sla.yaml").write_text(SLA)
    cfg = site(tmp_path, sink.port, '\n[paths]\nrules = "rules"\n[debug]\nclock_file = "clock"\n')
    assert helpdesk(cfg, "check").returncode == 0
    daemon = Daemon(cfg).start()
    try:
        smtp_send(cfg, mail(1, subject="Resolved in time"))
        smtp_send(cfg, mail(2, subject="Answered in time"))
        in_time = {"Resolved in time": acked(sink, b"Resolved in time")[0],
                   "Answered in time": acked(sink, b"Answered in time")[0]}
        resolve(cfg, in_time["Resolved in time"])
        answer(cfg, in_time["Answered in time"])
        smtp_send(cfg, mail(3, subject="Nobody answers"))
        late, ack = acked(sink, b"Nobody answers")
        assert b"get back to you by" in ack                       # the acknowledgement states the target
        sla = show(cfg, f"HD-{late}")["sla"]
        assert sla["policy"] == "standard" and sla["response_due"] and sla["breached"] == []
        due = datetime.fromisoformat(sla["response_due"])
        # not before the deadline: a P1 outage reported later is due first (30 min against 1 h)
        smtp_send(cfg, mail(4, subject="Network outage on floor 2"))
        first, _ = acked(sink, b"Network outage on floor 2")
        assert escalations(sink) == []                             # the clock has not moved: nothing
        first_due = response_due(cfg, first)
        assert first_due + 2 * MARGIN < due
        move_to(cfg, first_due + MARGIN)                           # past the P1's deadline, before the late one's
        wait_for(lambda: escalations(sink), timeout=20)
        assert [(to, ref) for to, ref, _ in escalations(sink)] == [("chen@example.com", f"HD-{first}")]
        early = show(cfg, f"HD-{late}")["sla"]
        assert early["breached"] == [] and early["escalations"] == []
        move_to(cfg, due + MARGIN)
        wait_for(lambda: any(ref == f"HD-{late}" for _, ref, _ in escalations(sink)), timeout=20)
        # a later ticket's escalation is the barrier: everything due before it has had its chance
        smtp_send(cfg, mail(5, subject="Barrier"))
        barrier, _ = acked(sink, b"Barrier")
        move_to(cfg, response_due(cfg, barrier) + MARGIN)
        wait_for(lambda: any(ref == f"HD-{barrier}" for _, ref, _ in escalations(sink)), timeout=20)
        got = escalations(sink)
        assert [(to, ref) for to, ref, _ in got] == [("chen@example.com", f"HD-{first}"),
                                                     ("ana@example.com", f"HD-{late}"),
                                                     ("ana@example.com", f"HD-{barrier}")]
        assert got[1][2] >= due                                    # not early (by the daemon's clock)
        stored = show(cfg, f"HD-{late}")["sla"]
        assert stored["breached"] == ["first_response"]
        (fired,) = stored["escalations"]
        assert fired["key"] == "standard:first_response:breached" and fired["fired_at"] >= fired["due_at"]
        for subject in ("Resolved in time", "Answered in time"):
            other = show(cfg, f"HD-{in_time[subject]}")["sla"]
            assert other["breached"] == [] and other["escalations"] == []
        report = helpdesk(cfg, "sla", "report", "--json", "--html", str(tmp_path / "sla.html"), check=True)
        (overall,) = [r for r in json.loads(report.stdout)["rows"] if (r["dimension"], r["target"]) == ("all",
                                                                                                    "first_response")]
        # "Resolved in time" was resolved without a public answer: unanswered, not met (issue 17)
        assert (overall["met"], overall["breached"], overall["unanswered"]) == (1, 3, 1)
        assert (tmp_path / "sla.html").read_text().startswith("<!DOCTYPE html>")
    finally:
        assert daemon.kill(signal.SIGTERM) == 0
    assert b"Traceback" not in (tmp_path / "serve.log").read_bytes()
