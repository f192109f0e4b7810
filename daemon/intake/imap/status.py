"""What one IMAP poller reports for `helpdesk status`: a frozen snapshot, and the two
formatting helpers (an error's one-line description, an ISO 8601 UTC time) it uses."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone


@dataclass(frozen=True)
class PollerStatus:
    """A snapshot of one poller for `helpdesk status`. `state` is one of: starting,
    connecting, polling, idle, backoff, auth_failed, standby (another daemon holds the
    lease), stopped. Times are ISO 8601 UTC. `token_expires_at` is the OAuth 2.0 access
    token's expiry (None with password login)."""

    account: str
    folder: str
    state: str = "starting"
    taken: int = 0                    # messages this poller committed to the spool
    last_mail_at: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    retry_at: str | None = None
    connects: int = 0
    logins: int = 0
    batches: int = 0
    idles: int = 0
    token_expires_at: str | None = None


def describe(exc: BaseException) -> str:
    """`ClassName: message`, at most 300 characters, for logs and status."""
    return f"{exc.__class__.__name__}: {exc}"[:300]


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")
