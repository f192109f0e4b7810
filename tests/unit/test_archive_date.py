"""Dating archived mail by its own time (issue 15, archive dates): the pure choice in
daemon.pipeline.archive_date and the envelope `helpdesk ingest --no-mail` spools."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from daemon.intake.ingest import envelope_for
from daemon.pipeline.archive_date import archive_date, archive_date_of_raw, pick_date
from daemon.pipeline.parse import parse

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
UTC = timezone.utc


def mail(date: str | None, *received: str) -> bytes:
    head = "".join(f"Received: from relay.example.org by mx.desk.test; {r}\n" for r in received)
    head += "From: Ann <ann@example.org>\nTo: help@desk.test\nSubject: old printer\n"
    head += f"Date: {date}\n" if date is not None else ""
    return (head + "\nIt jammed.\n").encode()


@pytest.mark.parametrize(("date", "received", "when", "source"), [
    ("Tue, 05 Mar 2024 10:00:00 +0100", ["Tue, 05 Mar 2024 09:00:07 +0000"],
     datetime(2024, 3, 5, 9, 0, tzinfo=UTC), "date"),                              # agrees
    ("Tue, 05 Mar 2024 10:00:00 +0100", [], datetime(2024, 3, 5, 9, 0, tzinfo=UTC), "date"),
    ("Mon, 01 Jan 1979 00:00:00 +0000", ["Tue, 05 Mar 2024 09:00:07 +0000"],       # absurd Date
     datetime(2024, 3, 5, 9, 0, 7, tzinfo=UTC), "received"),
    ("Fri, 01 Jan 2100 00:00:00 +0000", [], NOW, "import"),                        # in the future
    ("Tue, 05 Mar 2019 10:00:00 +0000", ["Tue, 05 Mar 2024 09:00:07 +0000"],       # years off
     datetime(2024, 3, 5, 9, 0, 7, tzinfo=UTC), "received"),
    ("not a date", [], NOW, "import"),
    (None, ["Tue, 05 Mar 2024 09:00:07 +0000", "Tue, 05 Mar 2024 08:59:58 +0000"],
     datetime(2024, 3, 5, 9, 0, 7, tzinfo=UTC), "received"),                       # newest hop
])
def test_the_mail_s_own_date_checked_against_its_received_chain(date, received, when, source) -> None:
    raw = mail(date, *received)
    for got in (archive_date(parse(raw), NOW), archive_date_of_raw(raw, NOW)):
        assert (got.when, got.source) == (when, source), got.reason


def test_a_date_queued_a_while_before_sending_is_still_the_mail_s_own() -> None:
    sent = datetime(2024, 3, 5, 9, 0, tzinfo=UTC)
    got = pick_date(sent - timedelta(days=3), [sent], NOW)
    assert got.source == "date" and got.when == sent - timedelta(days=3)


def test_no_header_block_at_all_is_dated_by_the_import() -> None:
    assert archive_date_of_raw(b"\x00\x01 not mail", NOW).source == "import"


def test_an_archive_import_spools_the_mail_s_own_date() -> None:
    raw = mail("Tue, 05 Mar 2024 10:00:00 +0100", "Tue, 05 Mar 2024 09:00:07 +0000")
    archived = envelope_for(raw, "/srv/old.mbox#3", NOW, archive=True)
    assert (archived.source, archived.received_at) == ("archive", "2024-03-05T09:00:00+00:00")
    assert envelope_for(raw, "/srv/old.mbox#3", NOW, archive=False).received_at == NOW.isoformat()
    assert envelope_for(raw, "stdin", NOW, archive=True).source == "stdin"   # a pipe delivery is live mail
