"""The outbound relay client (smtplib), and what a relay's answer means for an outbox row.

`Relay.session()` is one SMTP session with the configured relay ([outbound]) for many
mails (daemon.relay_session: PIPELINING, RSET after a failed mail); `Relay.send(mail_from,
recipients, raw)` is one mail on a session of its own. Both return one `RcptResult` per recipient - sent, temp (4xx, connection trouble: retry) or
perm (5xx: do not retry) - and never raises for SMTP trouble. International addresses
(daemon.model.idn): IDN domains go out in A-labels; a UTF-8 local part, sender or header is sent
with SMTPUTF8 when the relay offers it, else that mail (or recipient) is held (temp, with
the reason), never mangled. TLS: `tls` (implicit) or
`starttls`, which fails closed when the relay offers no STARTTLS; `none` is plaintext and
only allowed to a loopback relay (config refuses anything else). Addresses are checked
before any SMTP command is written: CR/LF or anything odd is a permanent failure of that
recipient alone. The password is read from the environment or a systemd credential
(daemon.secrets), kept out of every repr, log line and stored error. With `auth = "oauth2"`
the relay is authenticated by SASL XOAUTH2 or OAUTHBEARER (whichever it offers) with an
access token from daemon.oauth2; a token the relay refuses is refreshed and tried once more.

`settle` is the pure policy: given an attempt's results, the retry schedule and the clock,
what to record per recipient and when to try again (exponential backoff from
`retry_first_seconds` to `retry_max_seconds`, give up after `retry_days`).
"""
from __future__ import annotations

import logging
import smtplib
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Mapping, Sequence

from daemon.backoff import BackoffPolicy
from daemon.errors import ConfigError
from daemon.oauth2 import (AccessToken, OAuth2Error, OAuth2Settings, TokenSource, oauth2_settings, pick_mechanism,
                           sasl_response)
from daemon.oauth2_store import TokenStore
from daemon.backoff import backoff as delay_after
from daemon.secrets import read_secret
from daemon.relay_session import RcptResult, RelaySession, RelayTrouble, _text  # noqa: F401 (re-exported)
from store.outbox_sender import RcptOutcome

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
    auth: str = "password"               # password | oauth2
    oauth2: OAuth2Settings | None = None
    state_dir: Path | None = None        # where the OAuth 2.0 token store lives


def relay_settings(cfg, environ: Mapping[str, str] | None = None) -> RelaySettings:
    """RelaySettings from [outbound], with the password from $password_env or the systemd
    credential password_credential (daemon.secrets)."""
    o = cfg.outbound
    password = ""
    if o.password_env or o.password_credential:
        password = read_secret("outbound.password", o.password_env, o.password_credential, environ=environ).value
    oauth = oauth2_settings("outbound", o, float(o.timeout)) if o.auth == "oauth2" else None
    return RelaySettings(o.host, o.port, o.security, o.username, password if oauth is None else "", o.verify_tls,
                         o.ca_file, float(o.timeout), o.helo, o.auth, oauth, cfg.state_dir)


class Relay:
    """A client for the configured relay: `session()` for many mails on one connection
    (daemon.relay_session), `send` for one mail on a connection of its own."""

    def __init__(self, settings: RelaySettings, tokens: TokenSource | None = None):
        self.settings = settings
        if tokens is None and settings.oauth2 is not None:
            tokens = TokenSource(settings.oauth2, TokenStore(settings.state_dir or Path("."), "outbound"))
        self.tokens = tokens

    def session(self) -> RelaySession:
        return RelaySession(self)

    def send(self, mail_from: str, recipients: Sequence[str], raw: bytes) -> list[RcptResult]:
        """Deliver `raw` to the relay for `recipients`; one result per recipient."""
        with self.session() as s:
            return s.send(mail_from, recipients, raw)

    def open(self) -> smtplib.SMTP:
        """A connection ready for MAIL: TLS as configured, authenticated, EHLO done;
        RelayTrouble when that fails."""
        conn = None
        try:
            conn = self._connect()
            if self.tokens is not None:
                self._oauth2_login(conn)
            elif self.settings.username:
                conn.login(self.settings.username, self.settings.password)
            conn.ehlo_or_helo_if_needed()
            return conn
        except RelayTrouble:
            _close(conn)
            raise
        except smtplib.SMTPAuthenticationError as exc:
            _close(conn)
            raise RelayTrouble(f"relay authentication failed ({exc.smtp_code})", code=exc.smtp_code) from None
        except smtplib.SMTPResponseException as exc:
            _close(conn)
            raise RelayTrouble(f"{exc.smtp_code} {_text(exc.smtp_error)}", temporary=exc.smtp_code < 500,
                               code=exc.smtp_code) from None
        except smtplib.SMTPNotSupportedError as exc:
            _close(conn)
            raise RelayTrouble(f"relay does not support what we need: {exc}") from None
        except (smtplib.SMTPException, ssl.SSLError, ssl.CertificateError, OSError, socket.timeout) as exc:
            _close(conn)
            raise RelayTrouble(f"relay {self.settings.host}:{self.settings.port}: "
                               f"{exc.__class__.__name__}: {_text(str(exc))}") from None

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

    def _oauth2_login(self, conn: smtplib.SMTP) -> None:
        """AUTH XOAUTH2 or OAUTHBEARER; a cached token the relay refuses is dropped and a
        fresh one tried once on the same connection."""
        conn.ehlo_or_helo_if_needed()
        mech = pick_mechanism((conn.esmtp_features.get("auth") or "").split())
        if mech is None:
            raise RelayTrouble("relay offers neither AUTH OAUTHBEARER nor AUTH XOAUTH2 (auth = \"oauth2\")")
        token = self._token()
        try:
            self._sasl(conn, mech, token)
        except smtplib.SMTPAuthenticationError:
            if token.fresh:
                raise
            log.info("relay refused the cached access token; refreshing it")
            self.tokens.invalidate(token)
            self._sasl(conn, mech, self._token())

    def _token(self) -> AccessToken:
        try:
            return self.tokens.access_token()
        except (OAuth2Error, ConfigError) as exc:
            raise RelayTrouble(f"no OAuth 2.0 access token for the relay: {exc}") from None

    def _sasl(self, conn: smtplib.SMTP, mech: str, token: AccessToken) -> None:
        s = self.settings
        first = sasl_response(mech, s.username, token.value, s.host, s.port)
        after_error = "" if mech == "XOAUTH2" else "\x01"          # RFC 7628 3.2.3: answer the error
        conn.auth(mech, lambda challenge=None: first if challenge is None else after_error)


def _close(conn: smtplib.SMTP | None) -> None:
    if conn is not None:
        try:
            conn.close()
        except OSError:
            pass


# ---------------------------------------------------------------------- retry policy
@dataclass(frozen=True)
class RetryPolicy:
    first_seconds: float = 300.0
    max_seconds: float = 3600.0
    days: float = 5.0


def backoff(attempt: int, policy: RetryPolicy) -> float:
    """Seconds before attempt `attempt + 1`: first, then doubling, capped (daemon.backoff)."""
    return delay_after(attempt, BackoffPolicy(policy.first_seconds, policy.max_seconds))


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
    to wait, `take_up_to(n)` a batch's worth; the caller reschedules rather than blocking a
    sender."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute / 6.0)
        self.tokens, self.clock = self.capacity, clock
        self.at = clock()
        self.lock = threading.Lock()

    def take(self) -> float:
        granted, wait = self.take_up_to(1)
        return 0.0 if granted else wait

    def take_up_to(self, n: int) -> tuple[int, float]:
        """Up to `n` mails that may go now (a sender's batch), and when none may: how many
        seconds until the next one may."""
        with self.lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
            self.at = now
            granted = min(n, int(self.tokens))
            if granted:
                self.tokens -= granted
                return granted, 0.0
            return 0, (1.0 - self.tokens) / self.rate

    def give_back(self, n: int) -> None:
        """Mails taken but not sent (fewer were due than granted)."""
        with self.lock:
            self.tokens = min(self.capacity, self.tokens + n)
