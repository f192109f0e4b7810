"""The parse time budget (daemon.parse_guard; reliability.md case 92, issue 12 defect 2):
parsing in reused child processes that are killed at the deadline, with other mail
parsed meanwhile; and the parse-ahead helpers of a big import giving up on a stuck chunk.

The slow parse is real: the guard's test hook makes a child hang forever on mail holding
a marker, so only the deadline (a SIGKILL) can end it; nothing in the pipeline sleeps."""
from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import Future

import pytest

from daemon.errors import ParseError
from daemon.intake.parallel import ParseAhead
from daemon.parse_guard import ParseGuard, parse_within, shared_guard
from daemon.pipeline.parse import DEFAULT_LIMITS, ParseLimits, parse

HANG = b"X-Test-Hang: forever"
MAIL = (b"From: Ann <ann@example.org>\nTo: help@desk.test\nSubject: printer\n"
        b"Message-ID: <p1@example.org>\n\nIt jams.\n")
SLOW = MAIL.replace(b"Subject: printer", HANG + b"\nSubject: slow")


@pytest.fixture
def guard():
    g = ParseGuard(2, hang_marker=HANG)
    yield g
    for pid in g.busy_pids():              # a test that failed half-way must not hang close()
        os.kill(pid, signal.SIGKILL)
    g.close()


def test_a_parse_in_the_guard_gives_what_parse_gives(guard: ParseGuard) -> None:
    got = guard.parse(MAIL, limits=DEFAULT_LIMITS, envelope_mail_from="ann@example.org", seconds=30)
    want = parse(MAIL, envelope_mail_from="ann@example.org")
    assert got == want
    assert guard.parse(MAIL, seconds=30) == want          # the same child, reused
    assert guard.stats["started"] == 1


def test_parse_errors_and_limits_cross_the_process_boundary(guard: ParseGuard) -> None:
    with pytest.raises(ParseError) as refused:
        guard.parse(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1rest", seconds=30)
    assert refused.value.reason == "not_mail"
    with pytest.raises(ParseError) as big:
        guard.parse(MAIL, limits=ParseLimits(max_bytes=10), seconds=30)
    assert big.value.reason == "too_large"


def test_a_parse_over_the_budget_is_killed_and_refused_as_parse_timeout(guard: ParseGuard) -> None:
    with pytest.raises(ParseError) as slow:
        guard.parse(SLOW, seconds=0.3)
    assert slow.value.reason == "parse_timeout" and "killed" in slow.value.detail
    assert guard.busy_pids() == [] and guard.stats["timeouts"] == 1
    assert guard.parse(MAIL, seconds=30).subject == "printer"   # a fresh child takes over


def test_other_mail_is_parsed_while_one_message_hangs(guard: ParseGuard) -> None:
    """The hanging parse ends only when its child is killed, after the normal mail was
    parsed by the other child: so the normal one cannot have waited for it."""
    order: list[str] = []
    failure: list[ParseError] = []

    def slow() -> None:
        try:
            guard.parse(SLOW, seconds=600)
        except ParseError as exc:
            failure.append(exc)
        order.append("slow")

    worker = threading.Thread(target=slow)
    worker.start()
    assert guard.parse(MAIL, seconds=600).subject == "printer"
    order.append("normal")
    while not guard.busy_pids():           # the slow one has its child (it may start last)
        threading.Event().wait(0.01)
    [stuck] = guard.busy_pids()
    os.kill(stuck, signal.SIGKILL)         # what the deadline would do, but now
    worker.join()
    assert order == ["normal", "slow"]
    assert failure[0].reason == "parse_crashed"
    assert guard.parse(MAIL, seconds=30).subject == "printer"


def test_the_attack_mails_of_issue_12_parse_in_the_guard(guard: ParseGuard) -> None:
    head = b"From: a@example.org\nTo: help@desk.test\nSubject: x\nMIME-Version: 1.0\n"
    flood = head + b"Content-Type: text/plain" + b"".join(b";\n p%d=v" % i for i in range(60_000)) \
        + b"\n\nbody\n"
    inner = b"From: b@example.org\nSubject: " + b"\xe9" * 100_000 + b"\n\nhi\n"
    attached = (head + b'Content-Type: multipart/mixed; boundary="BBBB"\n\n--BBBB\n'
                b"Content-Type: text/plain\n\nsee attached\n--BBBB\nContent-Type: message/rfc822\n"
                b"Content-Disposition: attachment; filename=inner.eml\n\n" + inner + b"--BBBB--\n")
    got = guard.parse(flood, seconds=120)
    assert got.text == "body\n" and any("parameters after" in d for d in got.defects)
    got = guard.parse(attached, seconds=120)
    assert got.text == "see attached" and [a.filename for a in got.attachments] == ["inner.eml"]


def test_the_shared_guard_is_one_per_process() -> None:
    assert shared_guard() is shared_guard()
    assert parse_within(MAIL, seconds=30).subject == "printer"


def test_parse_ahead_gives_up_on_a_chunk_that_is_not_done_in_time() -> None:
    helpers = ParseAhead(DEFAULT_LIMITS, 1, parse_seconds=0.1)
    try:
        done, never = Future(), Future()
        done.set_result([parse(MAIL)])
        got = helpers.gather(["b0", "b1"], [(0, done), (1, never)])
        assert set(got) == {"b0"} and helpers.stuck     # b1 is left to the worker
    finally:
        helpers.close()                                   # returns: the stuck helper was killed
