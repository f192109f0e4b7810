"""plan_notifications: who gets which automatic mail, and the fuses (reliability.md E)."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from daemon.model import Address, MailHistory
from daemon.pipeline.notify import Desk, Fuses, Trigger, plan_notifications
from daemon.rules.declarations import Agent
from store.records import TicketRow

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)
DESK = Desk("Desk", "support@example.com", "HD", frozenset({"support@example.com"}))
FUSES = Fuses(recipient_hour=5, recipient_day=20, sender_tickets_hour=20, agent_hour=50)
AGENTS = (Agent("ana@example.com", "Ana", "lead"), Agent("ben@example.com", "Ben", "agent"))
TICKET = TicketRow(42, "Printer", "incident", "new", "P3", "general", "ann@example.org", None, NOW, NOW, 1)
ANN = Address("Ann", "ann@example.org")


def plan(event="created", *, ticket=TICKET, history=MailHistory(sender_new_tickets=1), **trigger):
    t = Trigger(event=event, sender=trigger.pop("sender", ANN), **trigger)
    return plan_notifications(ticket, t, AGENTS, history, DESK, FUSES, NOW)


def kinds(p):
    return sorted((m.kind, m.to.email) for m in p.mails)


def test_new_ticket_acknowledges_requester_and_tells_the_agents():
    p = plan()
    assert kinds(p) == [("ack", "ann@example.org"), ("agent_new", "ana@example.com"),
                        ("agent_new", "ben@example.com")]
    assert not p.suppressed and not p.alerts
    assert kinds(plan("linked")) == kinds(p)


def test_machine_mail_gets_no_acknowledgement_but_agents_hear_of_the_ticket():
    p = plan(no_auto_reply=True, human=False)
    assert kinds(p) == [("agent_new", "ana@example.com"), ("agent_new", "ben@example.com")]


def test_our_own_mail_triggers_nothing_but_one_alert():
    p = plan(ours=True)
    assert p.mails == () and [a.key for a in p.alerts] == ["own-mail:42"]
    assert p.alerts[0].until == NOW + timedelta(hours=1)


@pytest.mark.parametrize("event", ["bounce", "orphan", "ignored", "duplicate"])
def test_bounces_and_ignored_mail_cause_nothing(event):
    assert plan(event).mails == ()


def test_replies_notify_agents_only_when_a_person_wrote():
    assert kinds(plan("appended")) == [("agent_message", "ana@example.com"), ("agent_message", "ben@example.com")]
    assert plan("appended", human=False, no_auto_reply=True).mails == ()      # auto-reply to our ack: nothing


def test_reopen_tells_requester_and_agents():
    assert kinds(plan("reopened")) == [("agent_message", "ana@example.com"), ("agent_message", "ben@example.com"),
                                       ("reopen", "ann@example.org")]


def test_resolve_sends_the_notice():
    assert kinds(plan("resolved", sender=None, human=False)) == [("resolve", "ann@example.org")]


def test_agent_who_wrote_is_not_notified_and_assignee_gets_the_replies():
    assert kinds(plan("appended", sender=Address("Ben", "ben@example.com"))) == \
        [("agent_message", "ana@example.com")]
    assigned = replace(TICKET, assignee="ben@example.com")
    assert kinds(plan("appended", ticket=assigned)) == [("agent_message", "ben@example.com")]
    outsider = replace(TICKET, assignee="zed@example.com")
    assert ("agent_new", "zed@example.com") in kinds(plan(ticket=outsider))


def test_at_most_one_acknowledgement_per_ticket():
    p = plan(history=MailHistory(acks=1))
    assert "ack to requester held back: ticket already acknowledged" in p.suppressed
    assert ("ack", "ann@example.org") not in kinds(p) and not p.alerts


def test_no_mail_to_our_own_address_or_a_bouncing_one():
    own = plan(ticket=replace(TICKET, requester="support@example.com"))
    assert "one of our own addresses" in own.suppressed[0] and all(m.kind != "ack" for m in own.mails)
    bouncing = plan(history=MailHistory(bouncing=frozenset({"ann@example.org"})))
    assert "bounced recently" in bouncing.suppressed[0] and all(m.kind != "ack" for m in bouncing.mails)
    agent = plan(history=MailHistory(bouncing=frozenset({"ben@example.com"})))
    assert ("agent_new", "ben@example.com") not in kinds(agent) and "bounced recently" in agent.suppressed[0]
    odd = plan(ticket=replace(TICKET, requester="a@b.test\r\nRCPT TO:<x@evil.test>"))
    assert "no usable requester address" in odd.suppressed[0]


def test_per_recipient_hourly_and_daily_caps_raise_one_alert_key():
    hour = plan(history=MailHistory(last_hour=(("ann@example.org", 5),), last_day=(("ann@example.org", 5),)))
    assert "last hour" in hour.suppressed[0]
    assert [(a.key, a.until) for a in hour.alerts] == [("recipient:ann@example.org", NOW + timedelta(hours=1))]
    day = plan(history=MailHistory(last_hour=(("ann@example.org", 1),), last_day=(("ann@example.org", 20),)))
    assert "last day" in day.suppressed[0] and day.alerts[0].until == NOW + timedelta(days=1)
    assert kinds(plan(history=MailHistory(last_hour=(("ann@example.org", 4),))))[0] == ("ack", "ann@example.org")


def test_ticket_flood_from_one_sender_holds_back_everything():
    p = plan(history=MailHistory(sender_new_tickets=21))
    assert p.mails == () and "opened 21 tickets in an hour" in p.suppressed[0]
    assert [a.key for a in p.alerts] == ["sender-tickets:ann@example.org"]
    assert plan("appended", history=MailHistory(sender_new_tickets=99)).mails   # replies are not new tickets


def test_agent_notification_cap():
    p = plan(history=MailHistory(last_hour=(("ana@example.com", 50),)))
    assert kinds(p) == [("ack", "ann@example.org"), ("agent_new", "ben@example.com")]
    assert [a.key for a in p.alerts] == ["agent:ana@example.com"]


def test_rfc_3834_the_same_notice_about_a_ticket_at_most_once_in_the_window():
    seen = MailHistory(notices=frozenset({("reopen", "ann@example.org")}))
    p = plan("reopened", history=seen)
    assert ("reopen", "ann@example.org") not in kinds(p) and ("agent_message", "ana@example.com") in kinds(p)
    assert any("RFC 3834" in s and "reopen notice" in s and "7 days" in s for s in p.suppressed)
    assert kinds(plan("resolved", sender=None, human=False, history=seen)) == [("resolve", "ann@example.org")]
    acked = MailHistory(notices=frozenset({("ack", "ann@example.org")}))
    assert ("ack", "ann@example.org") in kinds(plan(history=acked))     # acks: once per ticket, by `acks`
    off = plan_notifications(TICKET, Trigger("reopened", sender=ANN), AGENTS, seen, DESK,
                             replace(FUSES, same_notice_days=0), NOW)
    assert ("reopen", "ann@example.org") in kinds(off)
