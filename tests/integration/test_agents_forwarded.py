"""Agents' mail that came through a mailing list or forwarder (issue 19), through the real
spool worker, store, rules and outbox: with `[agents] arc_trusted_forwarders` the list's ARC
seal vouches for the agent whose DKIM signature the list broke, and the commands run; a
forged From sent through the same list stays unverified; relaxed alignment only for the
From domains listed in `dkim_relaxed_domains`. Real DKIM signatures and ARC seals (dkimpy),
a dict DNS."""
from __future__ import annotations

import email
from email import policy

import pytest

from daemon.model import Envelope
from tests.agentkit import Zone, agent_reply, arc_seal, as_list_delivers, sign
from tests.integration.test_agents import opened
from tests.integration.test_outbox import close_desk, make_desk

LIST = "lists.example.org"


@pytest.fixture
def desk(tmp_path):
    d = make_desk(tmp_path, extra=f'[agents]\narc_trusted_forwarders = ["{LIST}"]\n'
                                  f'dkim_relaxed_domains = ["example.com"]\n')
    zone = Zone()
    d.pem = zone.publish("mail", "example.com")
    d.lists = zone.publish("arc", LIST, label="c")
    d.sub = zone.publish("mail", "mail.example.com", label="b")
    d.zone = zone
    d.app.mail.agents.auth.lookup = zone
    yield d
    close_desk(d)


def deliver(d, raw: bytes):
    """The forwarder hands the mail on to its reply address (support+TOKEN@...)."""
    rcpt = email.message_from_bytes(raw, policy=policy.default)["To"].addresses[0].addr_spec
    env = Envelope(f"it-team-bounces@{LIST}", (rcpt,), "smtp", "198.51.100.9", d.clock().isoformat())
    return d.app.worker.process(raw, env)


def through_list(d, raw: bytes, results: str) -> bytes:
    return arc_seal(as_list_delivers(raw), LIST, d.lists, results)


def test_an_agent_answer_through_a_trusted_list_acts(desk):
    notice = opened(desk)
    raw = agent_reply(notice, "#priority P2\nPlease restart the printer.")
    listed = through_list(desk, sign(raw, "example.com", desk.pem),
                          "dkim=pass header.d=example.com; dmarc=pass header.from=example.com")
    result = deliver(desk, listed)
    assert result.outcome == "agent:acted"
    assert desk.store.ticket_detail(1).ticket.priority == "P2"


def test_a_forged_agent_from_through_the_trusted_list_is_not_an_agent(desk):
    notice = opened(desk)
    forged = agent_reply(notice, "#priority P1\n#assign ben@example.com")
    listed = through_list(desk, forged, "dkim=none; dmarc=fail header.from=example.com")
    result = deliver(desk, listed)
    assert result.outcome in ("agent:unverified", "quarantined")
    t = desk.store.ticket_detail(1)
    assert t.ticket.priority != "P1" and t.ticket.assignee is None


def test_a_signature_by_another_name_of_the_organisation_with_the_relaxed_option(desk):
    """Ana's mail is signed by her provider's outbound name mail.example.com, not by the
    From domain example.com: aligned because example.com is in dkim_relaxed_domains."""
    raw = agent_reply(opened(desk), "#priority P2")
    assert deliver(desk, sign(raw, "mail.example.com", desk.sub)).outcome == "agent:acted"
    assert desk.store.ticket_detail(1).ticket.priority == "P2"


def test_strict_and_no_forwarder_trusted_by_default(tmp_path):
    d = make_desk(tmp_path)
    zone = Zone()
    sub, lists = zone.publish("mail", "mail.example.com", label="b"), zone.publish("arc", LIST, label="c")
    pem = zone.publish("mail", "example.com")
    d.app.mail.agents.auth.lookup = zone
    try:
        raw = agent_reply(opened(d), "#priority P2")
        assert deliver(d, sign(raw, "mail.example.com", sub)).outcome == "agent:unverified"
        listed = arc_seal(as_list_delivers(sign(raw, "example.com", pem)), LIST, lists,
                          "dkim=pass header.d=example.com; dmarc=pass header.from=example.com")
        assert deliver(d, listed).outcome == "agent:unverified"
        assert d.store.ticket_detail(1).ticket.priority != "P2"
    finally:
        close_desk(d)
