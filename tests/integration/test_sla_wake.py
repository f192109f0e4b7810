"""The SLA table as the timer queue, on huey's real SQLite storage: a batch of new tickets
schedules at most one wake-up (at its earliest due time, none when one already covers it),
a wake-up fires every ticket due by its time and schedules the next at the next stored due
time, a deadline moved later is not fired early, and two wake-ups for one time (two
processes, or an `escalate` task an older version queued) fire each level once.

The harness is test_outbox's `Desk` with huey moved to SqliteStorage in the test's
directory (not immediate); nothing consumes the queue: a test reads the due entries the
way huey's scheduler does and executes them, at a clock it sets. The shipped rules:
standard policy, P3 = first response 4h, warn at 75 % (test_sla_escalation's times)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from huey.storage import SqliteStorage

from daemon import tasks
from daemon.escalation import escalate, sla_wake
from daemon.model import Envelope
from store.sla_store import SlaStore
from tests.integration.test_outbox import START, close_desk, make_desk, new_mail
from tests.integration.test_sla_escalation import BREACH, WARN, escalations, fired, second_firer

UTC = timezone.utc


@pytest.fixture
def desk(tmp_path):
    d = make_desk(tmp_path)
    d.esc, d.others = d.app.mail.escalator, []
    tasks.huey.use(SqliteStorage, False, filename=str(tmp_path / "queue.db"), timeout=10)
    yield d
    for other in d.others:
        other.store.engine.dispose()
    close_desk(d)


def naive(when: datetime) -> datetime:
    """huey's time: naive UTC."""
    return when.astimezone(UTC).replace(tzinfo=None)


def wake_ups() -> list[datetime]:
    """The times of the SLA wake-ups in huey's storage (queued, or moved to its schedule by
    a consumer), earliest first."""
    return sorted(t.eta.replace(tzinfo=UTC) for t in tasks.huey.pending() + tasks.huey.scheduled()
                  if t.name.endswith("sla_wake"))


def run_due(desk, when: datetime) -> int:
    """Set the clock to `when` and do what huey's consumer would then: a worker takes each
    queued task (one not due yet goes to the schedule), the scheduler hands on the due
    ones; until nothing is left to run. How many SLA tasks ran."""
    desk.clock.now = when
    ts, ran = naive(when), 0
    while True:
        ready = []
        while (task := tasks.huey.dequeue()) is not None:
            (ready.append(task) if task.eta is None or task.eta <= ts else tasks.huey.add_schedule(task))
        ready += tasks.huey.read_schedule(ts)
        if not ready:
            return ran
        for task in ready:
            ran += task.name.endswith(("sla_wake", "escalate"))
            tasks.huey.execute(task, ts)


def store_batch(desk, mails: list[bytes]) -> list[int]:
    """New mails stored by the spool worker in one batch transaction; their ticket ids."""
    env = Envelope("x@example.org", ("support@example.com",), "smtp", "127.0.0.1", desk.clock().isoformat())
    bases = desk.app.spool.put_many([(raw, env) for raw in mails])
    outcomes = desk.app.worker.run_batch(set(bases), limit=len(mails) + 1)
    assert [o.kind for o in outcomes] == ["stored"] * len(mails)
    return sorted(o.result.ticket_id for o in outcomes)


def customers(n: int, first: int = 0) -> list[bytes]:
    return [new_mail(i, frm=f"c{i}@example.org", subject=f"Printer {i} jams") for i in range(first, first + n)]


def test_a_batch_of_new_tickets_schedules_one_wake_up_and_a_later_batch_none(desk):
    ids = store_batch(desk, customers(12))
    names = sorted(t.name.rpartition(".")[2] for t in tasks.huey.pending() + tasks.huey.scheduled())
    assert len(ids) == 12 and names == ["send_due", "sla_wake"]       # one wake-up for the sender, one for SLA
    assert wake_ups() == [WARN]
    desk.clock.advance(minutes=5)                          # due 5 minutes later: the wake-up at WARN covers it
    store_batch(desk, customers(5, 12))
    assert wake_ups() == [WARN]


def test_a_due_time_before_every_scheduled_wake_up_gets_its_own(desk):
    store_batch(desk, customers(3))
    desk.clock.now = START - timedelta(hours=1)            # (a clock that went back): due an hour earlier
    store_batch(desk, customers(2, 3))
    assert wake_ups() == [WARN - timedelta(hours=1), WARN]


def test_a_wake_up_fires_what_is_due_by_its_time_and_schedules_the_next_due(desk):
    early = store_batch(desk, customers(2))
    desk.clock.now = START + timedelta(minutes=30)
    late = store_batch(desk, customers(1, 2))              # warn at WARN + 30 min: covered by the one at WARN
    assert wake_ups() == [WARN]
    assert run_due(desk, WARN - timedelta(seconds=1)) == 0
    assert run_due(desk, WARN) == 1
    assert all(fired(desk, t) == ["standard:first_response:warn"] for t in early) and fired(desk, late[0]) == []
    assert len(escalations(desk)) == 4                     # ana and ben, for each early ticket
    assert wake_ups() == [WARN + timedelta(minutes=30)]    # the next stored due time (before BREACH)
    assert run_due(desk, WARN + timedelta(minutes=30)) == 1
    assert fired(desk, late[0]) == ["standard:first_response:warn"] and len(escalations(desk)) == 6
    assert wake_ups() == [BREACH]
    assert run_due(desk, BREACH) == 1
    assert all(fired(desk, t) == ["standard:first_response:breached", "standard:first_response:warn"]
               for t in early)
    assert wake_ups() == [BREACH + timedelta(minutes=30)]


def test_a_deadline_moved_later_is_not_fired_early(desk):
    (ticket,) = store_batch(desk, customers(1))
    desk.clock.now = START + timedelta(hours=1)
    desk.outbound.change_status(ticket, "pending")         # the clock stops after 1h
    desk.clock.now = START + timedelta(hours=2)
    desk.outbound.change_status(ticket, "open")            # resumes: warn after 2h more
    moved = START + timedelta(hours=4)
    assert SlaStore(desk.store.engine).next_due(ticket) == moved
    assert wake_ups() == [WARN]                            # the earlier wake-up covers the moved time
    assert run_due(desk, WARN) == 1
    assert fired(desk, ticket) == [] and escalations(desk) == []
    assert wake_ups() == [moved]
    run_due(desk, moved)
    assert fired(desk, ticket) == ["standard:first_response:warn"]


def test_two_wake_ups_and_an_old_escalate_task_for_one_time_fire_each_level_once(desk):
    (ticket,) = store_batch(desk, customers(1))
    sla_wake.schedule(eta=WARN)                            # another process's wake-up
    escalate.schedule((ticket,), eta=WARN)                 # queued by a version with one task per ticket
    assert run_due(desk, WARN) == 3
    assert fired(desk, ticket) == ["standard:first_response:warn"] and len(escalations(desk)) == 2
    assert wake_ups() == [BREACH]


def test_a_restarted_process_s_sweep_schedules_the_wake_up_a_lost_queue_had(desk):
    store_batch(desk, customers(2))
    tasks.huey.storage.flush_all()                         # the queue is gone (a flushed Redis)
    restarted = second_firer(desk, stale=False)            # its own escalator: nothing scheduled yet
    desk.clock.advance(minutes=1)
    restarted.sweep()
    assert wake_ups() == [WARN]
    restarted.sweep()                                      # covered now: no second entry
    assert len(tasks.huey.pending()) == 1
