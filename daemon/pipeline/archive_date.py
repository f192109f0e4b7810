"""When did an archived mail arrive? The date an archive import gives a ticket and message.

`helpdesk ingest --no-mail` of an old archive must date each ticket by the mail's own
time, not the import time, or SLA clocks, reports and the after-hours rule judge old mail
as if it arrived now. `archive_date(msg, imported_at)` (and `archive_date_of_raw` for the
intake edge, which reads only the header block) picks, with the reason:

* the Date header, when it is sane (after 1990, not after the import) and agrees with the
  Received chain: no later than the newest Received time plus a day of clock skew and no
  earlier than the oldest Received time minus `MAX_QUEUED`;
* else the newest Received time (when the desk's own mail server took it), when sane;
* else the import time.
Pure: no I/O, no clock (the import time is an argument), no logging.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from daemon.errors import ParseError
from daemon.model import ParsedMessage
from daemon.pipeline import addresses as hdr

EARLIEST = datetime(1990, 1, 1, tzinfo=timezone.utc)
SKEW = timedelta(days=1)          # a sender's clock may run this far ahead of the servers'
MAX_QUEUED = timedelta(days=30)   # a mail may wait this long (outbox, draft) before sending
_HEADER_BYTES = 256 * 1024


@dataclass(frozen=True)
class ArchiveDate:
    """The arrival time chosen for an archived mail and why (`source`: date, received,
    import)."""

    when: datetime
    source: str
    reason: str


def _sane(when: datetime | None, imported_at: datetime) -> bool:
    return when is not None and EARLIEST <= when <= imported_at + SKEW


def received_times(values: Iterable[str]) -> list[datetime]:
    """The dates of Received fields (after their last `;`), newest first as they stand."""
    out = []
    for value in values:
        _, sep, stamp = value.rpartition(";")
        when = hdr.parse_date(stamp.strip()) if sep else None
        if when is not None:
            out.append(when)
    return out


def pick_date(date: datetime | None, received: list[datetime], imported_at: datetime) -> ArchiveDate:
    """The arrival time from a Date value and the Received times (see the module doc)."""
    hops = [r for r in received if _sane(r, imported_at)]
    newest, oldest = (max(hops), min(hops)) if hops else (None, None)
    if _sane(date, imported_at):
        if newest is None:
            return ArchiveDate(date, "date", "Date header (no Received chain to check it)")
        if oldest - MAX_QUEUED <= date <= newest + SKEW:
            return ArchiveDate(date, "date", "Date header, consistent with the Received chain")
        return ArchiveDate(newest, "received",
                           f"Date {date.isoformat()} disagrees with the Received chain")
    if newest is not None:
        why = "no Date header" if date is None else f"absurd Date {date.isoformat()}"
        return ArchiveDate(newest, "received", f"{why}: the newest Received time")
    why = "no Date header" if date is None else f"absurd Date {date.isoformat()}"
    return ArchiveDate(imported_at, "import", f"{why} and no usable Received time")


def archive_date(msg: ParsedMessage, imported_at: datetime) -> ArchiveDate:
    """The arrival time of a parsed archived mail."""
    received = received_times(v for k, v in msg.headers if k.lower() == "received")
    return pick_date(msg.date, received, imported_at)


def archive_date_of_raw(raw: bytes, imported_at: datetime) -> ArchiveDate:
    """`archive_date` from the raw bytes' header block alone (cheap: no MIME parse); the
    import time when there is no header block to read."""
    text = raw[:_HEADER_BYTES].replace(b"\r\n", b"\n")
    try:
        fields, _ = hdr.scan_header_block(text, max_fields=1000, max_bytes=_HEADER_BYTES)
    except ParseError:
        return ArchiveDate(imported_at, "import", "no readable header block")
    date = next((hdr.parse_date(hdr.header_text(f.value)) for f in fields if f.name.lower() == "date"), None)
    received = received_times(hdr.header_text(f.value) for f in fields if f.name.lower() == "received")
    return pick_date(date, received, imported_at)
