"""The DATA scanner of the SMTP intake, fed the same bytes cut at every possible place:
it must agree with a line-by-line reading (RFC 5321 4.5.2) wherever the chunks end."""
from __future__ import annotations

import random

import pytest

from daemon.intake.smtp_session import NOMINAL, TOO_LONG, TOO_MUCH, _Scan


def by_lines(stream: bytes, size_limit: int, line_limit: int) -> tuple[str, bytes, bytes]:
    """The reference: read CRLF-terminated lines until the lone dot."""
    out, state, size, pos = [], NOMINAL, 0, 0
    while True:
        nl = stream.index(b"\r\n", pos) + 2
        line, pos = stream[pos:nl], nl
        if line == b".\r\n":
            return state, b"".join(out) if state == NOMINAL else b"", stream[pos:]
        size += len(line)
        if state == NOMINAL and size > size_limit:
            state = TOO_MUCH
        if state == NOMINAL and len(line) > line_limit:
            state = TOO_LONG
        if state == NOMINAL:
            out.append(line[1:] if line.startswith(b".") else line)


def scanned(stream: bytes, cuts: list[int], size_limit: int, line_limit: int) -> tuple[str, bytes, bytes]:
    scan, kept, start = _Scan(size_limit, line_limit), [], 0
    for end in cuts + [len(stream)]:
        body, rest = scan.feed(stream[start:end])
        kept.append(body)
        if rest is not None:
            return scan.state, b"".join(kept) if scan.state == NOMINAL else b"", rest + stream[end:]
        start = end
    raise AssertionError("end of DATA not found")


CASES = {
    "plain": b"Subject: x\r\n\r\nhello\r\nworld\r\n.\r\nQUIT\r\n",
    "empty": b".\r\nMAIL FROM:<a@b>\r\n",
    "stuffed": b"..one\r\n...two\r\n.\r\n\r\n..\r\nx\r\n.\r\n",
    "smuggle": b"a\n.\nMAIL FROM:<x@y>\r\nb\r.\rc\r\n.\rd\n.\r\ne\r\n.\r\nRSET\r\n",
    "long line": b"ok\r\n" + b"y" * 1500 + b"\r\nmore\r\n.\r\nQUIT\r\n",
    "exactly the limit": b"z" * 999 + b"\r\n" + b"w" * 1000 + b"\r\n.\r\n",
    "too much": (b"x" * 60 + b"\r\n") * 40 + b".\r\n",
}


@pytest.mark.parametrize("name", CASES)
def test_scanner_agrees_with_line_reading_at_every_cut(name):
    stream = CASES[name]
    want = by_lines(stream, 2000, 1001)
    for cut in range(len(stream) + 1):
        assert scanned(stream, [cut], 2000, 1001) == want, (name, cut)


def test_scanner_agrees_on_random_mail_cut_into_random_chunks():
    rng = random.Random(12)
    alphabet = [b"a", b".", b"\r", b"\n", b"\r\n", b"\r\n.", b"..", b" ", b"y" * 30]
    states = set()
    for i in range(1000):
        size_limit = 10_000 if i % 2 else 150
        body = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 300)))
        stream = body + b"\r\n.\r\nNEXT\r\n"
        want = by_lines(stream, size_limit, 40)
        cuts = sorted(rng.sample(range(len(stream) + 1), k=min(len(stream), rng.randrange(1, 12))))
        got = scanned(stream, cuts, size_limit, 40)
        # over both limits, which one is named first may differ: both are refused alike
        assert (got[0] == NOMINAL, got[1:]) == (want[0] == NOMINAL, want[1:]), stream
        states.add(want[0])
    assert states == {NOMINAL, TOO_LONG, TOO_MUCH}          # every path was taken


def test_states_are_reported():
    assert scanned(CASES["long line"], [], 10_000, 1001)[0] == TOO_LONG
    assert scanned(CASES["too much"], [], 2000, 1001)[0] == TOO_MUCH
