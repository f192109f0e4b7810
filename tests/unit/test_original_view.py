"""daemon.original_view: `show --full` reads each message's original text from its raw mail."""
from __future__ import annotations

from datetime import datetime, timezone

from daemon.original_view import Original, original_lines, read_original
from daemon.pipeline.parse import ParseLimits
from store.records import MessageRow

RAW = (b"From: ann@example.org\r\nTo: help@example.com\r\nSubject: Re: VPN\r\n"
       b"Message-ID: <r@example.org>\r\n\r\nWorks now.\r\n\r\nOn Mon, Ann wrote:\r\n> VPN down\r\n")
ROW = MessageRow(1, "r@example.org", "ann@example.org", "", (), (), "Re: VPN", "in", "public",
                 "Works now.", datetime(2026, 1, 5, tzinfo=timezone.utc), "human", "", None, (), "ab" * 32)


def test_the_original_text_is_the_whole_body_as_sent() -> None:
    original = read_original(RAW, "ab" * 32)
    assert original == Original("ab" * 32, len(RAW), "Works now.\n\nOn Mon, Ann wrote:\n> VPN down\n")
    assert original_lines(ROW, original) == [
        f"[raw mail] sha256 {'ab' * 32} ({len(RAW)} bytes), Message-ID <r@example.org>",
        "[original text, unstripped]", "Works now.", "", "On Mon, Ann wrote:", "> VPN down"]


def test_a_missing_or_unreadable_raw_mail_says_so_and_shows_the_stored_text() -> None:
    missing = read_original(None, "ab" * 32)
    assert (missing.size, missing.text, missing.problem) == (None, None, "raw mail not stored")
    assert original_lines(ROW, missing)[1:] == ["[raw mail not stored; the stored text follows]", "Works now."]
    refused = read_original(RAW, "ab" * 32, ParseLimits(max_bytes=10))
    assert refused.size == len(RAW) and refused.text is None
    assert refused.problem.startswith("raw mail does not parse: ")
    assert "(not stored)" in original_lines(ROW, missing)[0]
