"""ParseLanes keeps the order of what it is given: an entry parsed quickly waits for the
slower one before it (a reply never goes before its parent), unless that one is overdue;
and it hands back the whole line once parsed (a batch stays one batch)."""
from __future__ import annotations

import threading
from dataclasses import dataclass

from daemon.model import Envelope
from daemon.parse_lanes import ParseLanes


@dataclass
class Item:
    raw: bytes
    envelope: Envelope = Envelope("a@example.org", ("support@example.com",), "smtp")


def lanes_with_a_held_parent(overtake: float):
    release, reply_done, parent_started = threading.Event(), threading.Event(), threading.Event()

    def parse(raw, *, limits, envelope_mail_from):
        if raw == b"parent":
            parent_started.set()
            assert release.wait(30)
        else:
            reply_done.set()
        return raw.decode()
    lanes = ParseLanes(parse, 2, overtake_seconds=overtake)
    lanes.submit(Item(b"parent"))
    lanes.submit(Item(b"reply"))
    assert parent_started.wait(30)
    return lanes, release, reply_done


def test_a_quick_reply_waits_for_its_slower_parent():
    lanes, release, reply_done = lanes_with_a_held_parent(overtake=600.0)
    got = []
    t = threading.Thread(target=lambda: got.extend(lanes.harvest()))
    t.start()
    assert reply_done.wait(30)
    assert t.is_alive()                       # the reply is parsed, but may not go before its parent
    release.set()
    t.join(30)
    assert [r for _, r in got] in (["parent", "reply"], ["parent"])
    got += lanes.harvest()
    assert [r for _, r in got] == ["parent", "reply"] and lanes.pending == 0
    lanes.close()


def test_an_overdue_parse_is_passed_and_stays_in_its_lane():
    lanes, release, reply_done = lanes_with_a_held_parent(overtake=0.0)
    assert reply_done.wait(30)
    assert [r for _, r in lanes.harvest()] == ["reply"]
    assert lanes.pending == 1
    release.set()
    assert [r for _, r in lanes.harvest()] == ["parent"]
    lanes.close()


def test_entries_parsed_ahead_keep_their_place():
    lanes, release, _ = lanes_with_a_held_parent(overtake=600.0)
    lanes.add_parsed(Item(b"ahead"), "ahead")
    release.set()
    got = []
    while len(got) < 3:
        got += lanes.harvest()
    assert [r for _, r in got] == ["parent", "reply", "ahead"]
    lanes.close()


def test_the_whole_line_comes_back_at_once_however_long_the_parses_take():
    gate = threading.Semaphore(0)

    def parse(raw, *, limits, envelope_mail_from):
        assert gate.acquire(timeout=30)          # each parse waits for the test's go
        return raw.decode()
    lanes = ParseLanes(parse, 2, overtake_seconds=600.0)
    for i in range(6):
        lanes.submit(Item(b"m%d" % i))
    got = []
    t = threading.Thread(target=lambda: got.extend(lanes.harvest()))
    t.start()
    for _ in range(5):
        gate.release()
    assert t.is_alive()                          # one parse still to go: nothing handed back yet
    gate.release()
    t.join(30)
    assert [r for _, r in got] == [f"m{i}" for i in range(6)]
    lanes.close()
