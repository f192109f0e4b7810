"""daemon.sla.wakeups: which SLA wake-ups a process schedules (a settable clock; the
schedule is a list, or a queue that refuses)."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from daemon.clock import ManualClock
from daemon.sla.wakeups import WakeUps

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)


def wakeups() -> tuple[WakeUps, list[datetime], ManualClock]:
    got: list[datetime] = []
    clock = ManualClock(T0)
    return WakeUps(got.append, clock), got, clock


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_a_wake_up_ahead_at_or_before_the_due_time_covers_it():
    w, got, _ = wakeups()
    w.at(h(3))
    w.at(h(3))
    w.at(h(4))
    assert got == [h(3)]
    w.at(h(1))                                           # earlier than every one ahead: its own
    w.at(h(2))
    assert got == [h(3), h(1)]


def test_a_wake_up_whose_time_came_covers_nothing_more():
    """It ran, or is running and may have read the table already: a new due time after it
    gets a wake-up of its own, and so does one that has passed (at once)."""
    w, got, clock = wakeups()
    w.at(h(1))
    clock.set(h(1))
    w.at(h(2))
    w.at(h(0.5))
    assert got == [h(1), h(2), h(0.5)]


def test_a_batch_schedules_once_at_its_earliest_time_and_a_nested_one_leaves_it_to_the_outer():
    w, got, _ = wakeups()
    with w.batch():
        w.at(h(4))
        with w.batch():
            w.at(h(2))
        assert got == []
        w.at(h(3))
    assert got == [h(2)]
    with w.batch():                                      # covered: nothing
        w.at(h(5))
    with w.batch():                                      # nothing armed: nothing
        pass
    assert got == [h(2)]


def test_a_failed_schedule_is_logged_and_not_taken_for_scheduled(caplog):
    calls: list[datetime] = []

    def refuse(due: datetime) -> None:
        calls.append(due)
        raise ConnectionError("queue away")

    w = WakeUps(refuse, ManualClock(T0))
    with caplog.at_level(logging.WARNING, logger="daemon.sla.wakeups"):
        w.at(h(1))
        w.at(h(2))                                       # not covered by the one that failed
    assert calls == [h(1), h(2)]
    assert "SLA wake-up at 2026-03-02T10:30:00+00:00 not scheduled (queue away); the sweep will" in caplog.text
