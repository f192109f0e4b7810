"""Two auto-responders answering each other for a day of virtual time (reliability.md E 56):
helpdeskd and a robot that ignores every header and answers each mail it gets. The real
spool worker, store, planner and send task run on a settable clock; nothing sleeps."""
from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from tests.integration.test_outbox import START, Desk, close_desk, make_desk

ROBOT = "robot@partner.example"


class Robot:
    """Answers every mail it receives after `delay`, as a brand-new mail: no In-Reply-To
    (unless `threads`), no Auto-Submitted (unless `marks`), a subject of its own."""

    def __init__(self, delay=timedelta(minutes=2), threads=False, marks=False):
        self.delay, self.threads, self.marks = delay, threads, marks
        self.outbox: list[tuple] = []
        self.n = 0

    def receive(self, raw: bytes, at) -> None:
        self.n += 1
        mid = next((line.split(b":", 1)[1].strip().decode() for line in raw.split(b"\r\n")
                    if line.lower().startswith(b"message-id:")), "")
        head = f"In-Reply-To: {mid}\r\n" if self.threads else ""
        head += "Auto-Submitted: auto-replied\r\n" if self.marks else ""
        self.outbox.append((at + self.delay, (
            f"From: Partner Service Desk <{ROBOT}>\r\nTo: support@example.com\r\n"
            f"Subject: We received your request (#{1000 + self.n})\r\nMessage-ID: <auto{self.n}@partner.example>\r\n"
            f"{head}\r\nThank you for your message. A colleague will get back to you.\r\n").encode()))


def simulate(desk: Desk, robot: Robot, hours: int = 24) -> list:
    """Run the exchange; returns the times at which we sent mail to the robot."""
    to_robot = []
    robot.outbox.append((START, (f"From: {ROBOT}\r\nTo: support@example.com\r\nSubject: Order 4711\r\n"
                                 f"Message-ID: <first@partner.example>\r\n\r\nWhere is my order?\r\n").encode()))
    seen = 0
    end = START + timedelta(hours=hours)
    while desk.clock() < end:
        due = [x for x in robot.outbox if x[0] <= desk.clock()]
        robot.outbox = [x for x in robot.outbox if x[0] > desk.clock()]
        for _, raw in due:
            desk.mail(raw, mail_from=ROBOT)
        desk.sweep()
        for mail_from, rcpts, raw in desk.relay.sent[seen:]:
            if ROBOT in rcpts:
                to_robot.append(desk.clock())
                robot.receive(raw, desk.clock())
        seen = len(desk.relay.sent)
        desk.clock.advance(minutes=1)
    return to_robot


@pytest.fixture
def loop_desk(tmp_path, request):
    d = make_desk(tmp_path, extra=getattr(request, "param", ""))
    yield d
    close_desk(d)


def alerts(desk: Desk) -> list[str]:
    return [e.detail for t in desk.store.list_tickets() for e in desk.store.ticket_detail(t.id).events
            if e.kind == "alert"]


def test_the_per_recipient_cap_stops_the_ping_pong_within_the_first_hour(loop_desk, caplog):
    caplog.set_level(logging.WARNING, logger="daemon.tasks")
    sent = simulate(loop_desk, Robot())
    assert 1 <= len(sent) <= 5                                   # [loops] max_per_recipient_hour
    assert sent[-1] - START < timedelta(hours=1)
    assert loop_desk.store.counts()["tickets"] == len(sent) + 1  # every answer was stored
    found = alerts(loop_desk)
    assert len(found) == 1 and "robot@partner.example" in found[0]
    assert len([r for r in caplog.records if r.getMessage().startswith("ALERT")]) == 1     # one log line


@pytest.mark.parametrize("loop_desk", ['[loops]\nmax_per_recipient_hour = 1000\nmax_per_recipient_day = 1000\n'],
                         indirect=True)
def test_the_per_sender_ticket_fuse_alone_also_stops_it(loop_desk):
    sent = simulate(loop_desk, Robot())
    assert len(sent) == 20 and sent[-1] - START < timedelta(hours=1)   # max_new_tickets_per_sender_hour
    found = alerts(loop_desk)
    assert len(found) == 1 and "ticket flood" in found[0]
    tickets = loop_desk.store.list_tickets()
    assert len(tickets) == 21
    agent_mails = [v for v in loop_desk.rows() if v.kind == "agent_new"]
    assert len(agent_mails) == 2 * 20                            # the flood ticket told no agent either


def test_a_robot_that_threads_its_answers_gets_one_acknowledgement(loop_desk):
    sent = simulate(loop_desk, Robot(threads=True), hours=3)
    assert len(sent) == 1 and loop_desk.store.counts()["tickets"] == 1
    assert all(v.kind != "reopen" for v in loop_desk.rows())


def test_a_robot_that_marks_its_mail_is_never_answered(loop_desk):
    sent = simulate(loop_desk, Robot(marks=True), hours=3)
    assert len(sent) == 1                                        # only the first, human-looking mail
    assert loop_desk.store.counts()["tickets"] == 2


def test_daily_cap_bounds_a_slow_robot(loop_desk):
    sent = simulate(loop_desk, Robot(delay=timedelta(minutes=59)))
    assert len(sent) <= 20                                       # [loops] max_per_recipient_day
    assert len(alerts(loop_desk)) >= 1
