"""The envelope of one message: what the transport said, kept with the raw bytes in the spool.

A module of its own, outside the daemon.model package (which re-exports it), so that the
pipe hand-off (daemon.handoff) and the spool write an entry without defining every model
dataclass (issue 16: about 17 ms of a `helpdesk ingest` from an MTA's pipe). Values only.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Envelope:
    """What the transport told us: SMTP MAIL FROM / RCPT TO, or the file/IMAP origin.

    `mail_from` is "" for the null sender `<>`; None when unknown (a file import)."""

    mail_from: str | None
    rcpt_to: tuple[str, ...] = ()
    source: str = "unknown"          # smtp | ingest | stdin | imap:<account>
    peer: str = ""                   # client IP, file path, or mailbox/UID
    received_at: str = ""            # ISO 8601 UTC, set by the intake edge
