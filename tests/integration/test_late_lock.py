"""A ticket a transaction finds only after it holds others (an incident linked to a problem
while the problem was being resolved) must not be waited for out of the one lock order
(store.writing): below the highest ticket held it is locked NOWAIT, so two writers never wait
on each other; the loser fails as unavailable and is retried. Real PostgreSQL."""
from __future__ import annotations

from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text

from daemon.errors import StoreUnavailable
from store import saving
from tests.integration.test_outbox import close_desk, make_desk, new_mail


@pytest.fixture
def desk(pg_url, tmp_path):
    d = make_desk(tmp_path, pg_url)
    for n in (1, 2, 3):
        d.mail(new_mail(n, frm=f"user{n}@example.org", subject=f"Case {n}"))
    d.url = pg_url
    yield d
    close_desk(d)


@contextmanager
def holding(url: str, ticket_id: int):
    """Another writer holding ticket `ticket_id`'s row lock (an open transaction)."""
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            c.execute(text("SELECT id FROM ticket WHERE id = :i FOR NO KEY UPDATE"), {"i": ticket_id})
            yield
            c.rollback()
    finally:
        engine.dispose()


def test_a_late_ticket_below_one_held_is_not_waited_for(desk):
    with holding(desk.url, 1), desk.store.write() as tx:
        tx.lock_tickets([2])
        tx.s.execute(text("SET LOCAL lock_timeout = '20s'"))   # a wait (the old code) fails the test
        with pytest.raises(StoreUnavailable) as caught:
            tx.lock_tickets([1])
        assert "could not obtain lock" in str(caught.value.__cause__)


def test_late_tickets_are_locked_when_free_or_above_every_held(desk):
    with holding(desk.url, 1), desk.store.write() as tx:
        tx.lock_tickets([2])
        tx.lock_tickets([3])                 # above every ticket held: in order, waits if it must
        tx.lock_tickets([2, 3])              # held already: no cost
        tx.commit()
    with desk.store.write() as tx:               # a new transaction starts with nothing held
        tx.lock_tickets([3])
        tx.lock_tickets([1])                     # below, but nobody holds it: locked at once
        locks = tx.s.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'tuple' OR "
                                  "(locktype = 'transactionid' AND NOT granted)")).scalar()
        assert locks == 0                        # row locks live in the rows; nothing waits
        tx.commit()


def test_the_order_rule_itself(desk):
    engine = create_engine(desk.url)
    with engine.begin() as c:
        assert saving.lock_tickets(c, [3, 1, None]) == {1, 3}
        assert saving.lock_tickets(c, [2], held={1, 3}) == {2}
    engine.dispose()
