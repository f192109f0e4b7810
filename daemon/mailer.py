"""The outbound relay client (smtplib), and what a relay's answer means for an outbox row.

`Relay.send(mail_from, recipients, raw)` talks to the configured relay ([outbound]) and
returns one `RcptResult` per recipient - sent, temp (4xx, connection trouble: retry) or
perm (5xx: do not retry) - and never raises for SMTP trouble. TLS: `tls` (implicit) or
`starttls`, which fails closed when the relay offers no STARTTLS; `none` is plaintext and
only allowed to a loopback relay (config refuses anything else). Addresses are checked
before any SMTP command is written: CR/LF or anything odd is a permanent failure of that
recipient alone. The password is read from the environment or a systemd credential, kept
out of every repr, log line and stored error.

`settle` is the pure policy: given an attempt's results, the retry schedule and the clock,
what to record per recipient and when to try again (exponential backoff from
`retry_first_seconds` to `retry_max_seconds`, give up after `retry_days`).
"""
from __future__ import annotations

import logging
import os
import smtplib
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Mapping, Sequence

from daemon.errors import ConfigError
from daemon.pipeline.compose import outbound_address
from store.outbox import RcptOutcome

log = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class RelaySettings:
    host: str = "127.0.0.1"
    port: int = 25
    security: str = "none"               # starttls | tls | none
    username: str = ""
    password: str = field(default="", repr=False)
    verify_tls: bool = True
    ca_file: str = ""
    timeout: float = 30.0
    helo: str = ""


@dataclass(frozen=True)
class RcptResult:
    email: str
    outcome: str                         # sent | temp | perm
    code: int = 0
    reason: str = ""
    recipient_fault: bool = True         # perm because of the recipient (mark as bouncing)


def relay_settings(cfg, environ: Mapping[str, str] | None = None) -> RelaySettings:
    """RelaySettings from [outbound], with the password from $password_env or the systemd
    credential password_credential."""
    o = cfg.outbound
    env = os.environ if environ is None else environ
    password = ""
    if o.password_env:
        password = env.get(o.password_env, "")
        if not password:
            raise ConfigError(f"outbound.password_env: environment variable {o.password_env} is not set")
    elif o.password_credential:
        path = Path(env.get("CREDENTIALS_DIRECTORY", "")) / o.password_credential
        try:
            password = path.read_text().strip()
        except OSError:
            raise ConfigError(f"outbound.password_credential: cannot read credential {o.password_credential!r} "
                              f"(is $CREDENTIALS_DIRECTORY set?)") from None
    return RelaySettings(o.host, o.port, o.security, o.username, password, o.verify_tls, o.ca_file,
                         float(o.timeout), o.helo)


class RelayTrouble(Exception):
    """The transaction as a whole failed: `temporary` or not, `reason` safe to log."""

    def __init__(self, reason: str, temporary: bool = True, code: int = 0, sender_fault: bool = False):
        super().__init__(reason)
        self.reason, self.temporary, self.code, self.sender_fault = reason, temporary, code, sender_fault


class Relay:
    """A client for the configured relay; one connection per send (simple and robust)."""

    def __init__(self, settings: RelaySettings):
        self.settings = settings

    def send(self, mail_from: str, recipients: Sequence[str], raw: bytes) -> list[RcptResult]:
        """Deliver `raw` to the relay for `recipients`; one result per recipient."""
        good, results = [], []
        for rcpt in recipients:
            if outbound_address(rcpt) == rcpt:
                good.append(rcpt)
            else:
                results.append(RcptResult(rcpt, "perm", 0, "refused before sending: not a plain mail address"))
        if not good:
            return results
        if outbound_address(mail_from) != mail_from:
            return results + [RcptResult(r, "perm", 0, "bad envelope sender", False) for r in good]
        try:
            refused = self._transaction(mail_from, good, raw)
        except RelayTrouble as exc:
            outcome = "temp" if exc.temporary else "perm"
            return results + [RcptResult(r, outcome, exc.code, exc.reason, not exc.sender_fault) for r in good]
        for rcpt in good:
            if rcpt in refused:
                code, reason = refused[rcpt]
                results.append(RcptResult(rcpt, "temp" if 400 <= code < 500 else "perm", code, reason))
            else:
                results.append(RcptResult(rcpt, "sent", 250, ""))
        return results

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        helo = s.helo or None
        if s.security == "none" and s.host not in LOOPBACK:
            raise RelayTrouble("plaintext (security = none) is only allowed to a loopback relay", temporary=False,
                               sender_fault=True)
        if s.security == "tls":
            return smtplib.SMTP_SSL(s.host, s.port, local_hostname=helo, timeout=s.timeout, context=self._tls())
        conn = smtplib.SMTP(s.host, s.port, local_hostname=helo, timeout=s.timeout)
        if s.security == "starttls":
            conn.ehlo()
            if not conn.has_extn("starttls"):
                conn.close()
                raise RelayTrouble("relay offers no STARTTLS; refusing to send in plaintext")
            conn.starttls(context=self._tls())
            conn.ehlo()
        return conn

    def _tls(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.settings.ca_file or None)
        if not self.settings.verify_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _transaction(self, mail_from: str, rcpts: list[str], raw: bytes) -> dict[str, tuple[int, str]]:
        """Run one SMTP transaction; the refused recipients with (code, reason)."""
        conn = None
        try:
            conn = self._connect()
            if self.settings.username:
                conn.login(self.settings.username, self.settings.password)
            refused = conn.sendmail(mail_from, rcpts, raw)
            return {r: (code, _text(msg)) for r, (code, msg) in refused.items()}
        except smtplib.SMTPRecipientsRefused as exc:
            return {r: (code, _text(msg)) for r, (code, msg) in exc.recipients.items()}
        except smtplib.SMTPAuthenticationError as exc:
            raise RelayTrouble(f"relay authentication failed ({exc.smtp_code})", code=exc.smtp_code) from None
        except smtplib.SMTPSenderRefused as exc:
            raise RelayTrouble(f"relay refused our sender: {exc.smtp_code} {_text(exc.smtp_error)}",
                               temporary=exc.smtp_code < 500, code=exc.smtp_code, sender_fault=True) from None
        except smtplib.SMTPResponseException as exc:           # DATA and other answers
            raise RelayTrouble(f"{exc.smtp_code} {_text(exc.smtp_error)}", temporary=exc.smtp_code < 500,
                               code=exc.smtp_code) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise RelayTrouble(f"relay does not support what we need: {exc}") from None
        except (smtplib.SMTPException, ssl.SSLError, ssl.CertificateError, OSError, socket.timeout) as exc:
            raise RelayTrouble(f"relay {self.settings.host}:{self.settings.port}: "
                               f"{exc.__class__.__name__}: {_text(str(exc))}") from None
        finally:
            if conn is not None:
                try:
                    conn.quit()
                except (smtplib.SMTPException, OSError):
                    conn.close()


def _text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(str(value).split())[:500]


# ---------------------------------------------------------------------- retry policy
@dataclass(frozen=True)
class RetryPolicy:
    first_seconds: float = 300.0
    max_seconds: float = 3600.0
    days: float = 5.0


def backoff(attempt: int, policy: RetryPolicy) -> float:
    """Seconds before attempt `attempt + 1`: first, then doubling, capped."""
    return min(policy.first_seconds * 2 ** max(attempt - 1, 0), policy.max_seconds)


def settle(results: Sequence[RcptResult], *, attempt: int, created_at: datetime, now: datetime,
           policy: RetryPolicy) -> tuple[list[RcptOutcome], datetime | None]:
    """What to record for each recipient, and when to try again (None: nothing left)."""
    next_at = now + timedelta(seconds=backoff(attempt, policy))
    give_up = next_at > created_at + timedelta(days=policy.days)
    out: list[RcptOutcome] = []
    for r in results:
        if r.outcome == "sent":
            out.append(RcptOutcome(r.email, "sent", r.code or 250))
        elif r.outcome == "perm":
            out.append(RcptOutcome(r.email, "failed", r.code, r.reason, bouncing=r.recipient_fault and r.code >= 500))
        elif give_up:
            out.append(RcptOutcome(r.email, "failed", r.code,
                                   f"gave up after {policy.days:g} days of temporary failures: {r.reason}"))
        else:
            out.append(RcptOutcome(r.email, "pending", r.code, r.reason))
    return out, (next_at if any(o.status == "pending" for o in out) else None)


class RateLimit:
    """A token bucket shared by this process's senders: at most `per_minute` mails a minute
    to the relay, in bursts of at most ten seconds' worth, so a mass incident never exceeds
    the relay's own limit. `take()` returns 0 when a mail may go now, else how many seconds
    to wait; the caller reschedules rather than blocking a sender."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute / 6.0)
        self.tokens, self.clock = self.capacity, clock
        self.at = clock()
        self.lock = threading.Lock()

    def take(self) -> float:
        with self.lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return 0.0
            return (1.0 - self.tokens) / self.rate
