"""The daily agent digest ([digest] in config.toml) with a settable clock: sent at the
configured hour in each agent's own time zone (queues.yaml `timezone:`, else [digest]
timezone), through the outbox, once per agent per local day - also after a restart and when
a second node races for it - with the SLA risks first and each ticket's signed reply
address; nothing for an agent without open tickets; nothing at all unless enabled."""
from __future__ import annotations

import re

import pytest

from daemon.desk_cli import Act, perform
from daemon.digest import Digests
from daemon.pipeline.digest import due_digests, roster_agents
from daemon.model import Agent
from tests.agentkit import Zone
from tests.integration.test_agents import opened, send_agent
from tests.integration.test_outbox import START, close_desk, make_desk, parsed

# START is Monday 2 March 2026 09:30 UTC: 10:30 in Berlin (Ana), 09:30 in UTC (Ben, the default)
DIGEST = '[digest]\nenabled = true\nhour = 11\n'


@pytest.fixture
def desk(tmp_path):
    d = make_desk(tmp_path, extra=DIGEST)
    yield d
    close_desk(d)


def digests_to(d, who: str) -> list:
    return [parsed(raw) for _, rcpts, raw in d.relay.sent if rcpts == (who,) and "Your desk on" in raw.decode()]


def body(mail) -> str:
    return mail.get_body(("plain",)).get_content()


def two_tickets_for_ana(d) -> None:
    opened(d, 1)
    opened(d, 2, subject="Printer jams")
    perform(d.app, Act(1, "ana@example.com", ("assign me", "priority P1")))
    perform(d.app, Act(2, "ana@example.com", ("assign me",)))


def test_sent_at_the_local_hour_once_a_day_with_the_risks_first(desk):
    two_tickets_for_ana(desk)
    digests = desk.app.mail.digests
    assert digests.run() == 0                                   # 10:30 in Berlin: not yet
    desk.clock.advance(minutes=35)                              # 11:05 Berlin; HD-1 (P1, 30m) is overdue
    assert digests.run() == 1
    [mail] = digests_to(desk, "ana@example.com")
    assert mail["Subject"] == "Your desk on 2026-03-02: 2 open, 1 at SLA risk"
    text = body(mail)
    risk, other = text.index("At SLA risk"), text.index("Your other open tickets")
    assert risk < text.index("HD-1  P1") < other < text.index("HD-2  P3")
    assert re.search(r"HD-1  P1  new +Printer jams  \(SLA: first response overdue by 0h\d\d\)", text), text
    assert len(re.findall(r"reply to work it: support\+\S+@example\.com", text)) == 2
    assert digests.run() == 0                                   # once a day
    restarted = Digests(desk.app.config.digest, desk.store, desk.app.mail.agents.queries,
                        lambda: desk.app.rules.current, clock=desk.clock)
    assert restarted.run() == 0                                 # the day's key is in the database
    assert digests_to(desk, "ben@example.com") == []           # Ben (UTC) reaches 11:00 later ...
    desk.clock.advance(hours=1)
    assert digests.run() == 0 and digests_to(desk, "ben@example.com") == []   # ... and has no tickets
    desk.clock.advance(hours=22, minutes=54)                    # Tuesday 10:59 Berlin
    assert digests.run() == 0
    desk.clock.advance(minutes=1)
    assert digests.run() == 1 and len(digests_to(desk, "ana@example.com")) == 2
    assert digests_to(desk, "ana@example.com")[1]["Subject"].startswith("Your desk on 2026-03-03:")


def test_the_reply_address_in_the_digest_works_the_ticket(desk):
    two_tickets_for_ana(desk)
    desk.clock.advance(minutes=35)
    desk.app.mail.digests.run()
    text = body(digests_to(desk, "ana@example.com")[0])
    address = re.search(r"HD-2 .*\n    assignee ana@example.com; reply to work it: (support\+\S+@example\.com)",
                        text).group(1)
    raw = (f"From: Ana Lima <ana@example.com>\r\nTo: {address}\r\nSubject: Re: HD-2\r\n"
           f"Message-ID: <dg1@example.com>\r\n\r\n#pending\r\n").encode()
    desk.app.mail.agents.auth.lookup = _zone(desk)
    assert send_agent(desk, raw, to=address).outcome == "agent:acted"
    assert desk.store.ticket_detail(2).ticket.status == "pending"


def _zone(d):
    zone = Zone()
    d.pem = zone.publish("mail", "example.com")
    return zone


class _Blind:
    """A second node that checked the key before the first one committed."""

    def __init__(self, store):
        self.inner = store

    def write(self):
        tx = self.inner.write()
        tx.digest_done = lambda key: False
        return tx


def test_a_second_node_racing_for_the_same_digest_sends_nothing(desk):
    two_tickets_for_ana(desk)
    desk.clock.advance(minutes=35)
    assert desk.app.mail.digests.run() == 1
    rows = len(desk.rows())
    other = Digests(desk.app.config.digest, _Blind(desk.store), desk.app.mail.agents.queries,
                    lambda: desk.app.rules.current, clock=desk.clock)
    assert other.run() == 0 and len(desk.rows()) == rows
    assert len(digests_to(desk, "ana@example.com")) == 1


def test_off_by_default(tmp_path):
    d = make_desk(tmp_path)
    try:
        assert d.app.config.digest.enabled is False
        two_tickets_for_ana(d)
        d.clock.advance(hours=5)
        assert d.app.mail.digests.run() == 0 and digests_to(d, "ana@example.com") == []
    finally:
        close_desk(d)


def test_the_local_hour_in_each_zone():
    ana, ben = Agent("ana@example.com", "Ana", "lead", "Europe/Berlin"), Agent("ben@example.com", "Ben", "agent")
    due = due_digests((ana, ben), START, 10, "America/New_York")           # 10:30 Berlin, 04:30 New York
    assert [(d.agent.email, d.day.isoformat(), d.key) for d in due] == [
        ("ana@example.com", "2026-03-02", "digest:ana@example.com:2026-03-02")]
    late = START.replace(hour=23, minute=30)                              # 00:30 Tuesday in Berlin
    assert [(d.agent.email, d.day.isoformat()) for d in due_digests((ana, ben), late, 0, "UTC")] == [
        ("ana@example.com", "2026-03-03"), ("ben@example.com", "2026-03-02")]


def test_the_roster_gives_each_agent_once_with_their_zone(desk):
    agents = {a.email: a for a in roster_agents(desk.app.rules.current.queues)}
    assert agents["ana@example.com"].timezone == "Europe/Berlin" and agents["ben@example.com"].timezone == ""
    assert len(agents) == len(set(agents))
