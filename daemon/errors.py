"""The one exception family of helpdeskd.

Every error a user can cause (bad config, bad rules, bad mail) is a HelpdeskError whose
message is one clear line naming the file, key or message at fault. Only the worker loop
and the intake edges catch broadly; everything else lets these propagate.
"""
from __future__ import annotations


class HelpdeskError(Exception):
    """Base of every error helpdeskd raises on purpose; str() is one line for the user."""


class ConfigError(HelpdeskError):
    """Raised when config.toml (or a site file) is unreadable, malformed, or has an unknown
    key, a wrong type or a missing value. The message names the file and the key."""


class RulesError(HelpdeskError):
    """Raised when the YAML rules or the templates fail validation; carries every problem
    as `file:line: reason` in `problems`."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems or [message])


class ParseError(HelpdeskError):
    """Raised by the parse stage when a message cannot be turned into a ParsedMessage
    (not mail at all, over a size/part/depth limit). `reason` is a short code such as
    `not_mail`, `too_many_parts`, `too_deep`; the raw bytes are quarantined."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class StoreUnavailable(HelpdeskError):
    """Raised when the database cannot be reached or is locked; a temporary failure:
    intake answers 451 / exits 75 and the worker retries later without penalty."""


class SpoolError(HelpdeskError):
    """Raised when a message cannot be made durable in the spool (disk full, permissions);
    intake answers 451 / exits 75."""


class NotFound(HelpdeskError):
    """Raised when a ticket, message or quarantine entry named by the user does not exist."""


class AuthDeferred(HelpdeskError):
    """Raised by the agent path when a mail's sender cannot be authenticated now (a DNS
    timeout during DKIM: `temperror`). The worker keeps the mail in the spool and tries
    again later without counting an attempt; it is never treated as a pass."""


class DnsTemporary(HelpdeskError):
    """Raised by a DNS lookup function for a temporary failure (timeout, SERVFAIL, no
    server reachable); DKIM verification turns it into `temperror`."""


class StorageFull(StoreUnavailable):
    """Raised when a file cannot be written because its file system is out of space or
    quota (ENOSPC, EDQUOT): attachments, the spool. Not the message's fault:
    like a database outage, the worker keeps the mail in the spool without counting an
    attempt, and intake answers 452 4.3.1; it is stored once space returns."""
