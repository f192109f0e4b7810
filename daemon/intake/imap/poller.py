"""The IMAP poller thread for one [[imap]] account: lease, session loop, backoff, IDLE.

`ImapPoller.run()` takes the (account, folder) lease, opens a session (daemon.intake.imap.
connect), lets `FolderSync` (daemon.intake.imap.folder) select and take new mail, then waits
in IDLE (or polls) and goes round again. Failures back off by daemon.backoff: connection
trouble with equal jitter up to `backoff_cap`; a refused login (or a refused OAuth 2.0 grant)
with upward jitter from `auth_backoff`, with an ALERT. With `auth = "oauth2"` the session
ends (LOGOUT, then a new login) once a new access token is in hand, ahead of the old one's
expiry (when renewing fails the session goes on while the server keeps it), and a token
the server refuses is refreshed and tried once more at once.
"""
from __future__ import annotations

import logging
import os
import random
import threading
import time
from dataclasses import replace
from typing import Callable, Mapping

from imapclient import IMAPClient, SocketTimeout
from imapclient.exceptions import LoginError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from daemon.backoff import EQUAL_JITTER, UPWARD_JITTER, BackoffPolicy, backoff
from daemon.config import ImapAccount
from daemon.errors import ConfigError, SpoolError, StoreUnavailable
from daemon.intake.imap.connect import check_security, close, log_in, open_client
from daemon.intake.imap.folder import FolderSync
from daemon.intake.imap.plan import SEARCH_WINDOW
from daemon.intake.imap.status import PollerStatus, describe, iso
from daemon.oauth2 import AccessToken, OAuth2Error, TokenSource, imap_key, token_source
from daemon.secrets import read_secret
from daemon.spool import Spool
from store import imap_state

log = logging.getLogger(__name__)

RECONNECT = (OSError, IMAPClient.Error, StoreUnavailable, SpoolError, SQLAlchemyError)


class ServerGone(ConnectionError):
    """The server said BYE (or closed the socket) while we were idling."""


class LeaseLost(Exception):
    """Another poller holds the (account, folder) lease now; stop importing."""


def imap_tokens(state_dir, account: ImapAccount, **kw) -> TokenSource | None:
    """The OAuth 2.0 token source of an account with auth = "oauth2", else None."""
    return token_source(state_dir, imap_key(account.name), account, **kw)


class ImapPoller(FolderSync):
    """Takes mail from one [[imap]] account's folder into the spool (see the package docstring)."""

    def __init__(self, account: ImapAccount, spool: Spool, engine: Engine,
                 on_stored: Callable[[str], None] | None, stop: threading.Event, owner_id: str, *,
                 environ: Mapping[str, str] | None = None, credentials_dir: str | None = None,
                 tokens: TokenSource | None = None,
                 batch_size: int = 50, batch_bytes: int = 32 << 20, search_window: int = SEARCH_WINDOW,
                 idle_reissue: float = 29 * 60.0,
                 tick: float = 1.0, backoff_base: float = 1.0, backoff_cap: float = 300.0,
                 auth_backoff: float = 300.0, auth_backoff_cap: float = 3600.0, lease_ttl: float = 90.0,
                 timeout: SocketTimeout = SocketTimeout(connect=30.0, read=120.0),
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random,
                 pause: Callable[[float], object] | None = None):
        check_security(account)
        if account.auth == "oauth2" and tokens is None:
            raise ConfigError(f"imap {account.name}: auth = \"oauth2\" needs a token source")
        self.account, self.spool, self.engine = account, spool, engine
        self.on_stored, self.stop, self.owner_id = on_stored, stop, owner_id
        self.environ = os.environ if environ is None else environ
        self.credentials_dir, self.tokens = credentials_dir, tokens
        self.batch_size, self.batch_bytes, self.search_window = batch_size, batch_bytes, search_window
        self.idle_reissue, self.tick = idle_reissue, tick
        self.retry_policy = BackoffPolicy(backoff_base, backoff_cap, EQUAL_JITTER)
        self.auth_policy = BackoffPolicy(auth_backoff, auth_backoff_cap, UPWARD_JITTER)
        self.lease_ttl, self.timeout = lease_ttl, timeout
        self.clock, self.monotonic, self.rand = clock, monotonic, rand
        self._wait_out = pause or self.stop.wait        # the wait between retries (tests step it)
        self._lock = threading.Lock()
        self._status = PollerStatus(account.name, account.folder)
        self._caps: frozenset[bytes] = frozenset()
        self._failures = self._auth_failures = 0
        self._lease_renew_at = 0.0
        self._standing_by = False
        self._warned: set[str] = set()
        if not account.verify_tls and account.security != "none":
            log.warning("imap %s: TLS certificate verification is OFF (verify_tls = false)", account.name)

    # ------------------------------------------------------------- public
    def status(self) -> PollerStatus:
        with self._lock:
            return self._status

    def start(self) -> threading.Thread:
        """Run in a daemon thread named imap-<account>; returns the thread."""
        t = threading.Thread(target=self.run, name=f"imap-{self.account.name}", daemon=True)
        t.start()
        return t

    def run(self) -> None:
        """Poll until `stop` is set. Never raises: every failure is logged and retried."""
        a = self.account
        log.info("imap %s: polling %s@%s:%d folder %s (security %s)", a.name, a.username, a.host,
                 a.port, a.folder, a.security)
        try:
            while not self.stop.is_set():
                if self._take_lease():
                    self._attempt()
        finally:
            self._release_lease()
            self._set(state="stopped")
            log.info("imap %s: stopped", a.name)

    # ------------------------------------------------------------- status plumbing
    def _set(self, **changes) -> None:
        with self._lock:
            self._status = replace(self._status, **changes)

    def _bump(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._status = replace(self._status, **{name: getattr(self._status, name) + n})

    def _warn_once(self, key: str, msg: str, *args) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(msg, *args)

    # ------------------------------------------------------------- lease
    def _take_lease(self) -> bool:
        a = self.account
        try:
            now = self.clock()
            if imap_state.acquire_lease(self.engine, a.name, a.folder, self.owner_id, self.lease_ttl, now):
                self._lease_renew_at = now + self.lease_ttl / 3
                if self._standing_by:
                    log.info("imap %s: took over the lease on %s", a.name, a.folder)
                self._standing_by = False
                return True
            holder = imap_state.lease_owner(self.engine, a.name, a.folder)
        except (StoreUnavailable, SQLAlchemyError, OSError) as exc:     # OSError: e.g. EMFILE in a flood
            self._backoff(exc)
            return False
        owner, expires = holder or ("?", now)
        if not self._standing_by:
            log.info("imap %s: %s is polled by %s; standing by", a.name, a.folder, owner)
            self._standing_by = True
        self._set(state="standby")
        self.stop.wait(min(max(expires - now + 0.05, 0.05), self.lease_ttl / 3))
        return False

    def _renew_lease(self) -> None:
        a, now = self.account, self.clock()
        if now < self._lease_renew_at:
            return
        if not imap_state.acquire_lease(self.engine, a.name, a.folder, self.owner_id, self.lease_ttl, now):
            raise LeaseLost(f"{a.folder}: lease taken by another poller")
        self._lease_renew_at = now + self.lease_ttl / 3

    def _release_lease(self) -> None:
        try:
            imap_state.release_lease(self.engine, self.account.name, self.account.folder, self.owner_id)
        except (StoreUnavailable, SQLAlchemyError, OSError) as exc:     # OSError: e.g. EMFILE in a flood
            log.warning("imap %s: could not release the lease: %s", self.account.name, describe(exc))

    # ------------------------------------------------------------- failures
    def _attempt(self) -> None:
        try:
            self._session()
        except LeaseLost as exc:
            log.warning("imap %s: %s; standing by", self.account.name, exc)
        except LoginError as exc:
            if "UNAVAILABLE" in str(exc):       # the server's auth backend is down: transient
                self._backoff(exc)
            else:
                self._auth_failed(exc)
        except OAuth2Error as exc:              # the token endpoint refused or is unreachable
            self._auth_failed(exc) if exc.permanent else self._backoff(exc, exc.retry_at)
        except ConfigError as exc:              # no password configured or readable
            self._auth_failed(exc)
        except RECONNECT as exc:
            self._backoff(exc)
        except Exception as exc:  # noqa: BLE001 - an intake edge logs, backs off and goes on
            log.exception("imap %s: unexpected error", self.account.name)
            self._backoff(exc)

    def _backoff(self, exc: BaseException, not_before: float | None = None) -> None:
        self._failures += 1
        delay = backoff(self._failures, self.retry_policy, self.rand())
        if not_before is not None:
            delay = max(delay, not_before - self.clock())
        log.warning("imap %s: %s; retry %d in %.1fs", self.account.name, describe(exc), self._failures, delay)
        self._pause("backoff", exc, delay)

    def _auth_failed(self, exc: BaseException) -> None:
        a = self.account
        self._auth_failures += 1
        delay = backoff(self._auth_failures, self.auth_policy, self.rand())   # never sooner than auth_backoff
        what = "the OAuth 2.0 grant (helpdesk oauth2 login)" if self.tokens else "the password"
        log.error("ALERT imap %s: login as %s at %s:%d refused (%s); next attempt in %.0fs - check %s",
                  a.name, a.username, a.host, a.port, describe(exc), delay, what)
        self._pause("auth_failed", exc, delay)

    def _pause(self, state: str, exc: BaseException, delay: float) -> None:
        now = self.clock()
        self._set(state=state, last_error=describe(exc), last_error_at=iso(now), retry_at=iso(now + delay))
        self._wait_out(delay)

    # ------------------------------------------------------------- session
    def _session(self) -> None:
        client = self._connect()
        graceful = False
        try:
            while not self.stop.is_set():
                uidvalidity, uidnext = self._select(client)
                self._scan(client, uidvalidity, uidnext)
                self._failures = 0
                self._set(retry_at=None)
                self._wait_for_mail(client)
                if self._token_due() and self.tokens.renew():
                    break                       # log in again with the new token
            graceful = True
        finally:
            close(client, graceful)

    def _connect(self) -> IMAPClient:
        a = self.account
        self._set(state="connecting")
        self._bump("connects")
        # the secret first: a missing password or a token endpoint backing off costs no connection
        token = self.tokens.access_token() if self.tokens else None
        password = "" if token else read_secret(f"imap[{a.name}].password", a.password_env, a.password_credential,
                                                environ=self.environ, credentials_dir=self.credentials_dir).value
        client = open_client(a, self.timeout)
        try:
            self._bump("logins")
            self._log_in(client, password, token)
            self._auth_failures = 0
            self._caps = frozenset(client.capabilities())
            if a.move_to and not client.folder_exists(a.move_to):
                client.create_folder(a.move_to)
                log.info("imap %s: created folder %s for move_to", a.name, a.move_to)
        except BaseException:
            close(client, graceful=False)
            raise
        return client

    def _log_in(self, client: IMAPClient, password: str, token: AccessToken | None) -> None:
        """LOGIN, or SASL with the access token; a cached token the server refuses is
        dropped, and a fresh one (refreshed now) is tried once on the same connection."""
        if token is None:
            log_in(client, self.account, password=password)
            return
        try:
            mech = log_in(client, self.account, access_token=token.value)
        except LoginError as exc:
            if "UNAVAILABLE" in str(exc) or token.fresh:
                raise
            log.info("imap %s: access token refused (%s); refreshing it", self.account.name, describe(exc))
            self.tokens.invalidate(token)
            token = self.tokens.access_token()
            mech = log_in(client, self.account, access_token=token.value)
        self._set(token_expires_at=iso(token.expires_at))
        log.info("imap %s: authenticated by %s (access token valid until %s)", self.account.name, mech,
                 iso(token.expires_at))

    def _token_due(self) -> bool:
        """With OAuth 2.0: the access token we logged in with is due for refresh."""
        return self.tokens is not None and self.tokens.due()

    # ------------------------------------------------------------- waiting
    def _wait_for_mail(self, client: IMAPClient) -> None:
        if self._missed_news(client):
            return
        if self.account.idle and b"IDLE" in self._caps:
            self._idle(client, min(self.account.poll_seconds, self.idle_reissue))
            return
        deadline = self.monotonic() + self.account.poll_seconds
        while not self.stop.is_set() and not self._token_due() and (left := deadline - self.monotonic()) > 0:
            self.stop.wait(min(left, self.lease_ttl / 3))
            self._renew_lease()

    def _idle(self, client: IMAPClient, period: float) -> None:
        """IDLE until new mail, `period` (safety-net poll, <= 29 min) or stop. idle_check()
        returns [] on EOF instead of raising, so an early empty return leaves IDLE at once:
        idle_done() then raises AbortError on a dead connection."""
        client.idle()
        self._set(state="idle")
        self._bump("idles")
        deadline = self.monotonic() + period
        while not self.stop.is_set() and not self._token_due() and (left := deadline - self.monotonic()) > 0:
            wait = min(left, self.tick)
            started = self.monotonic()
            responses = client.idle_check(timeout=wait)
            if self._has_news(responses):
                break
            if not responses and self.monotonic() - started < wait / 2:
                break
            self._renew_lease()
        client.idle_done()

    @staticmethod
    def _missed_news(client: IMAPClient) -> bool:
        """Mail announced while we were busy: imaplib keeps an EXISTS that came with another
        command's response, and IDLE would not repeat it. The SELECT's own EXISTS is first."""
        stash = getattr(getattr(client, "_imap", None), "untagged_responses", {})
        return len(stash.get("EXISTS", ())) > 1

    @staticmethod
    def _has_news(responses: list) -> bool:
        for r in responses:
            if r and r[0] == b"BYE":
                raise ServerGone("server said BYE: " + " ".join(x.decode("latin-1") for x in r[1:]
                                                                 if isinstance(x, bytes)))
            if len(r) > 1 and r[1] == b"EXISTS":
                return True
        return False
