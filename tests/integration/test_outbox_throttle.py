"""Mass incident (reliability case 46): the relay never gets more than `max_per_minute`
mails a minute from us; what is over the rate waits in the outbox and is sent later."""
from __future__ import annotations

from daemon import tasks
from daemon.mailer import RateLimit
from tests.integration.test_outbox import close_desk, make_desk


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_rate_limit_bursts_then_paces():
    ticks = Ticks()
    limit = RateLimit(60, clock=ticks)                 # 1 a second, bursts of 10
    assert [limit.take() for _ in range(10)] == [0.0] * 10
    assert 0.99 < limit.take() <= 1.0                  # the 11th waits about a second
    ticks.t += 1.0
    assert limit.take() == 0.0
    assert limit.take() > 0


def test_a_batch_takes_what_the_bucket_holds_and_gives_back_the_rest():
    ticks = Ticks()
    limit = RateLimit(60, clock=ticks)                 # 1 a second, bursts of 10
    assert limit.take_up_to(50) == (10, 0.0)
    granted, wait = limit.take_up_to(50)
    assert granted == 0 and 0.99 < wait <= 1.0
    limit.give_back(3)                                 # three were not due after all
    assert limit.take_up_to(50) == (3, 0.0)
    ticks.t += 2.0
    assert limit.take_up_to(50) == (2, 0.0)


def test_mass_incident_is_paced_and_nothing_is_lost(tmp_path):
    desk = make_desk(tmp_path, extra="[loops]\nmax_new_tickets_per_sender_hour = 1000\n")
    ticks = Ticks()
    delivery = tasks.huey.delivery()
    delivery.limit = RateLimit(60, clock=ticks)
    delivery.scheduled = True
    later: list[float] = []
    delivery.schedule = later.append                   # what huey would schedule: a wake-up after delay
    try:
        for i in range(20):                            # 20 users report the same outage at once
            raw = (f"From: user{i}@example.org\r\nTo: support@example.com\r\nSubject: VPN down\r\n"
                   f"Message-ID: <vpn-{i}@example.org>\r\n\r\nCannot connect.\r\n").encode()
            desk.mail(raw, mail_from=f"user{i}@example.org")
        assert len(desk.rows()) == 60                  # an ack and two agent notices per ticket
        assert len(desk.relay.sent) == 10              # only the burst went out at once
        assert sum(1 for r in desk.rows() if r.status == "pending") == 50
        assert later and all(0 < delay <= 1.0 for delay in later)   # a wake-up when the next may go
        rounds = 0
        while later:                                   # the scheduled wake-ups run, a second apart
            rounds += 1
            ticks.t += 1.0
            later.clear()
            delivery.drain()
            assert len(desk.relay.sent) == min(60, 10 + rounds)      # never more than the rate
        assert len(desk.relay.sent) == 60 and {r.status for r in desk.rows()} == {"sent"}
        assert len({raw for _, _, raw in desk.relay.sent}) == 60            # each sent once
        assert rounds == 51                            # one a second (the relay saw 60 in ~a minute), and
                                                       # the wake-up after the last finds nothing left
    finally:
        close_desk(desk)
