"""Agents by mail at the desk address, end to end over SMTP into a real `helpdesk serve`
with a real relay sink: `#help` delivered twice (an MTA's retry) is answered once; the daily
digest arrives when the daemon's settable clock (`[debug] clock_file`, moved by the test,
never waited for) reaches the configured hour in the agent's time zone, with the ticket's
signed reply address."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.agentkit import sign
from tests.e2e.helpers import advance, helpdesk, wait_for
from tests.e2e.test_ack import mail, parsed, smtp_send

HOUR = 5


def zone_at_three() -> str:
    """A fixed-offset zone where it is now 03:xx: the digest hour (05) is 2 hours away
    whatever the wall clock says (no midnight in between)."""
    shift = (3 - datetime.now(timezone.utc).hour) % 24
    shift = shift - 24 if shift > 14 else shift
    return "UTC" if shift == 0 else f"Etc/GMT{'-' if shift > 0 else '+'}{abs(shift)}"    # Etc/GMT-2 = UTC+2


@pytest.fixture
def desk(tmp_path, signed_desk):
    (tmp_path / "clock").write_text("0\n")
    cfg, pem, _ = signed_desk(f'[debug]\nclock_file = "clock"\n[digest]\nenabled = true\nhour = {HOUR}\n'
                              f'timezone = "{zone_at_three()}"\n')
    return cfg, pem, tmp_path / "clock"


def to_ben(sink, since: int = 0) -> list:
    return [parsed(raw) for _, rcpts, raw in sink.handler.messages[since:] if rcpts == ("ben@example.com",)]


def query(n: int, body: str) -> bytes:
    return (f"From: Ben Okafor <ben@example.com>\r\nTo: support@example.com\r\nSubject: desk\r\n"
            f"Date: Wed, 02 Dec 2026 09:45:00 +0000\r\nMessage-ID: <e2e-q{n}@example.com>\r\n\r\n{body}\r\n").encode()


def test_help_twice_answered_once_and_the_digest_at_the_moved_hour(desk, sink):  # noqa: F811
    cfg, pem, clock = desk
    smtp_send(cfg, mail(1))
    wait_for(lambda: len(sink.handler.messages) >= 3)
    helpdesk(cfg, "update", "HD-1", "--assign", "ben@example.com", "--as", "ana@example.com", check=True)

    n = len(sink.handler.messages)
    ask = sign(query(1, "#help"), "example.com", pem)
    smtp_send(cfg, ask, frm="ben@example.com")
    smtp_send(cfg, ask, frm="ben@example.com")                     # the MTA's retry: the same mail
    smtp_send(cfg, sign(query(2, "#mine"), "example.com", pem), frm="ben@example.com")
    wait_for(lambda: any("open tickets" in str(m["Subject"]).lower() for m in to_ben(sink, n)))
    subjects = [str(m["Subject"]) for m in to_ben(sink, n)]
    assert subjects.count("Commands you may use") == 1, subjects  # answered once (the #mine came after it)
    assert not any("Your desk on" in s for s in subjects)         # 03:xx in Ben's zone: no digest yet

    n = len(sink.handler.messages)
    advance(clock, timedelta(hours=2))                              # 05:xx: the digest hour has come
    got = wait_for(lambda: [m for m in to_ben(sink, n) if "Your desk on" in str(m["Subject"])])
    assert str(got[0]["Subject"]).endswith(": 1 open, 0 at SLA risk")
    text = got[0].get_body(("plain",)).get_content()
    assert "HD-1  P3" in text and "reply to work it: support+" in text
