"""RFC 3834 section 2 for the notices that are not about a new ticket: the same notice
(reopened, resolved) about one ticket goes to one address at most once in
`[loops] same_notice_days` (7) days; the ticket changes regardless and the held notice is
named in the ticket's events. The clock is the harness's settable one, on SQLite and
PostgreSQL."""
from __future__ import annotations

import json

import pytest

from tests.integration.test_outbox import close_desk, make_desk, new_mail, reply_to

REQUESTER = ("ack", "reopen", "resolve")


@pytest.fixture
def desk(backend, tmp_path):
    d = make_desk(tmp_path, backend.config_url)
    yield d
    close_desk(d)


def requester_kinds(desk, ticket_id: int) -> list[str]:
    return [v.kind for v in sorted(desk.rows(ticket_id=ticket_id), key=lambda v: v.id) if v.kind in REQUESTER]


def held(desk, ticket_id: int) -> list[str]:
    detail = desk.store.ticket_detail(ticket_id)
    return [why for e in detail.events if e.kind == "mail_held" for why in json.loads(e.detail)["why"]]


def resolve_and_reopen(desk, ticket_id: int, n: int) -> None:
    assert desk.outbound.resolve(ticket_id).outcome == "resolved"
    desk.clock.advance(hours=2)                                   # past the hourly cap's window
    assert desk.mail(reply_to("m1.ann@example.org", n)).outcome == "reopened"
    desk.clock.advance(hours=2)


def test_the_same_notice_goes_at_most_once_in_seven_days(desk):
    t = desk.mail(new_mail()).ticket_id
    desk.clock.advance(hours=2)
    resolve_and_reopen(desk, t, 1)
    assert requester_kinds(desk, t) == ["ack", "resolve", "reopen"]
    resolve_and_reopen(desk, t, 2)                                 # the same day: both held
    assert requester_kinds(desk, t) == ["ack", "resolve", "reopen"]
    reasons = [w for w in held(desk, t) if "RFC 3834" in w]
    assert len(reasons) == 2 and "resolve notice" in reasons[0] and "reopen notice" in reasons[1]
    assert "ann@example.org" in reasons[0] and "7 days" in reasons[0]
    assert desk.store.ticket_detail(t).ticket.status != "resolved"     # the ticket changed regardless
    desk.clock.advance(days=6, hours=12)                           # 7 days after the first notices, less 4 h
    resolve_and_reopen(desk, t, 3)
    assert requester_kinds(desk, t) == ["ack", "resolve", "reopen"]
    desk.clock.advance(hours=1)                                    # now more than 7 days later
    resolve_and_reopen(desk, t, 4)
    assert requester_kinds(desk, t) == ["ack", "resolve", "reopen", "resolve", "reopen"]


def test_another_ticket_and_the_agents_are_not_held(desk):
    first = desk.mail(new_mail(1)).ticket_id
    second = desk.mail(new_mail(2, subject="Screen flickers")).ticket_id
    desk.clock.advance(hours=2)
    desk.outbound.resolve(first)
    desk.outbound.resolve(second)                                   # another ticket: another notice
    assert requester_kinds(desk, first) == ["ack", "resolve"] and requester_kinds(desk, second) == ["ack", "resolve"]
    desk.clock.advance(hours=2)
    desk.mail(reply_to("m1.ann@example.org", 1))
    desk.clock.advance(hours=2)
    desk.mail(reply_to("m1.ann@example.org", 2))                   # appended: agents hear of each reply
    agent_rows = [v for v in desk.rows(ticket_id=first) if v.kind == "agent_message"]
    assert len(agent_rows) >= 2


def test_zero_days_turns_the_rule_off(backend, tmp_path):
    d = make_desk(tmp_path, backend.config_url, "[loops]\nsame_notice_days = 0\n")
    try:
        t = d.mail(new_mail()).ticket_id
        d.clock.advance(hours=2)
        resolve_and_reopen(d, t, 1)
        resolve_and_reopen(d, t, 2)
        assert requester_kinds(d, t) == ["ack", "resolve", "reopen", "resolve", "reopen"]
    finally:
        close_desk(d)
