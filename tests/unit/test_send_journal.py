"""The send journal (daemon.send_journal): a batch held by a live writer is never an orphan,
one whose writer let go is, with its answers as written; a torn last line is skipped."""
from __future__ import annotations

from datetime import datetime, timezone

from daemon.send_journal import Journal, from_line, to_line
from store.outbox_sender import Attempt, Claimed, RcptOutcome

AT = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)


def attempt(n: int) -> Attempt:
    claim = Claimed(n, 7, "ack", f"m{n}@x.test", "b@x.test", b"raw", ("a@x.test",), 1, AT, f"tok{n}")
    return Attempt(claim, (RcptOutcome("a@x.test", "sent", 250), RcptOutcome("b@x.test", "pending", 451, "grey ü")),
                   AT, "grey ü")


def test_a_line_round_trips_what_the_mark_needs():
    back = from_line(to_line(attempt(3)).rstrip(b"\n"))
    a = attempt(3)
    assert (back.claim.id, back.claim.lease_token, back.claim.attempts, back.claim.ticket_id) == (3, "tok3", 1, 7)
    assert back.outcomes == a.outcomes and back.next_attempt == AT and back.error == a.error


def test_a_held_batch_is_not_an_orphan_a_released_one_is(tmp_path):
    journal = Journal(tmp_path / "j")
    live = journal.batch()
    live.note(attempt(1))
    assert list(journal.orphans()) == []                     # its writer holds it
    left = journal.batch()
    left.note(attempt(2))
    left.note(attempt(3))
    left.sync()
    left.close()                                             # the mark failed: left for a replay
    (path, attempts), = list(journal.orphans())
    assert path == left.path and [a.claim.id for a in attempts] == [2, 3]
    live.done()
    assert not live.path.exists() and list(journal.dir.glob("*.part")) == []


def test_a_torn_last_line_is_skipped(tmp_path):
    journal = Journal(tmp_path / "j")
    b = journal.batch()
    b.note(attempt(1))
    b.close()
    with open(b.path, "ab") as fh:
        fh.write(to_line(attempt(2))[:20])                   # killed in the middle of a write
    (_, attempts), = list(journal.orphans())
    assert [a.claim.id for a in attempts] == [1]
