"""OAuth 2.0 access tokens for IMAP and the outbound relay: the token client.

An account with `auth = "oauth2"` logs in by SASL (OAUTHBEARER or XOAUTH2, whichever the
server offers) with an access token from `oauth2_token_url`. `TokenSource.access_token()`
hands out the cached token, or gets a new one:

* the **refresh-token grant** when there is a refresh token: the newest one kept in the
  state directory (daemon.oauth2_store), else the first one from `oauth2_refresh_token_env`
  / `_credential`. A rotated refresh token in the answer is stored (0600, atomically)
  before the access token is used, and used from then on.
* the **client-credentials grant** (Microsoft 365 application access) when there is no
  refresh token but a client secret.

A token is due for refresh ahead of its expiry (`refresh_at`: 5 minutes before, or half
way for short-lived tokens) and right away after the server refused it (`invalidate`).
Failures at the token endpoint back off (daemon.backoff): a transient one (network, 5xx,
429) from 30 s, a refused grant (`invalid_grant`: revoked or expired) from 5 minutes; until
then `access_token()` raises the last error without asking again, so no caller can make a
tight loop against the endpoint. Every outcome is written to the store, where `helpdesk
status` reads each account's token expiry and alerts.

Pure helpers (mechanism choice, SASL strings, refresh policy, token-answer parsing) are at
the top; `post_form` (urllib) and `TokenSource` are the edge.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field, fields
from typing import Callable, Iterable, Mapping

from daemon.backoff import EQUAL_JITTER, BackoffPolicy, backoff
from daemon.errors import HelpdeskError
from daemon.config_sections import OAuth2Keys
from daemon.oauth2_config import device_url
from daemon.oauth2_store import TokenStore
from daemon.secrets import read_secret

log = logging.getLogger(__name__)

MECHANISMS = ("OAUTHBEARER", "XOAUTH2")         # preference when a server offers both
REFRESH_AHEAD = 300.0                           # seconds before expiry a token is renewed
TRANSIENT = BackoffPolicy(30.0, 3600.0, EQUAL_JITTER)
REFUSED = BackoffPolicy(300.0, 3600.0, EQUAL_JITTER)
PERMANENT_ERRORS = frozenset({"invalid_grant", "invalid_client", "unauthorized_client", "invalid_scope",
                              "unsupported_grant_type", "access_denied", "expired_token", "invalid_request"})


class OAuth2Error(HelpdeskError):
    """Raised when no access token can be had: the token endpoint refused the grant
    (`permanent`: revoked or expired refresh token, wrong client) or could not be reached
    (transient). `retry_at` (epoch seconds) is when the endpoint will be asked again."""

    def __init__(self, message: str, *, permanent: bool, code: str = "", retry_at: float | None = None):
        super().__init__(message)
        self.permanent, self.code, self.retry_at = permanent, code, retry_at


@dataclass(frozen=True, kw_only=True)
class OAuth2Settings(OAuth2Keys):
    """One account's OAuth 2.0 keys (the config's OAuth2Keys, with `oauth2_device_url` filled
    in); `key` names the account in errors ("outbound", "imap[support]")."""

    key: str
    timeout: float = 30.0


@dataclass(frozen=True)
class AccessToken:
    """An access token; `fresh` when it was fetched by the call that returned it."""

    value: str = field(repr=False)
    expires_at: float
    refresh_at: float
    fresh: bool = False


@dataclass(frozen=True)
class Grant:
    """A successful token-endpoint answer."""

    access_token: str = field(repr=False)
    expires_in: float
    refresh_token: str | None = field(default=None, repr=False)
    refresh_expires_in: float | None = None


def oauth2_settings(key: str, keys: OAuth2Keys, timeout: float = 30.0) -> OAuth2Settings:
    """OAuth2Settings from an account's config keys (an ImapAccount or the OutboundSection)."""
    values = {f.name: getattr(keys, f.name) for f in fields(OAuth2Keys)}
    values["oauth2_device_url"] = keys.oauth2_device_url or device_url(keys.oauth2_token_url)
    return OAuth2Settings(key=key, timeout=timeout, **values)


def token_source(state_dir, key: str, keys: OAuth2Keys, **kw) -> "TokenSource | None":
    """The TokenSource of an account with auth = "oauth2" (None for password accounts)."""
    if keys.auth != "oauth2":
        return None
    return TokenSource(oauth2_settings(key, keys), TokenStore(state_dir, key), **kw)


def imap_key(name: str) -> str:
    """The account key of an [[imap]] account in errors, logs, status and the store."""
    return f"imap[{name}]"


# ----------------------------------------------------------------- pure helpers
def pick_mechanism(offered: Iterable[str]) -> str | None:
    """OAUTHBEARER or XOAUTH2 from the SASL mechanisms a server offers, None if neither."""
    names = {m.upper() for m in offered}
    return next((m for m in MECHANISMS if m in names), None)


def sasl_response(mechanism: str, user: str, token: str, host: str = "", port: int = 0) -> str:
    """The client's first SASL message (before base64) for XOAUTH2 or OAUTHBEARER (RFC 7628)."""
    if mechanism == "XOAUTH2":
        return f"user={user}\x01auth=Bearer {token}\x01\x01"
    authzid = user.replace("=", "=3D").replace(",", "=2C")
    return f"n,a={authzid},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"


def refresh_at(obtained_at: float, expires_in: float) -> float:
    """When to renew a token obtained at `obtained_at` valid `expires_in` seconds:
    REFRESH_AHEAD before expiry, or half way through for a token shorter than twice that."""
    return obtained_at + max(expires_in - REFRESH_AHEAD, expires_in / 2)


def refreshes_per_day(expires_in: float) -> float:
    """Token requests a day for one account that holds a token all the time (IDLE)."""
    return 86400.0 / (refresh_at(0.0, expires_in))


def parse_token_answer(status: int, body: bytes) -> Grant:
    """A Grant from a token endpoint's HTTP answer, or OAuth2Error saying why not."""
    try:
        data = json.loads(body.decode("utf-8")) if body else {}
    except (UnicodeDecodeError, ValueError):
        data = None
    if not isinstance(data, dict):
        raise OAuth2Error(f"token endpoint answered HTTP {status} without a JSON object",
                          permanent=False, code=f"http_{status}")
    if status == 200 and isinstance(data.get("access_token"), str) and data["access_token"]:
        rt = data.get("refresh_token")
        return Grant(data["access_token"], _seconds(data.get("expires_in")) or 3600.0,
                     rt if isinstance(rt, str) and rt else None, _seconds(data.get("refresh_token_expires_in")))
    code = str(data.get("error") or f"http_{status}")[:64]
    text = " ".join(str(data.get("error_description") or "").split())[:200]
    raise OAuth2Error(f"token endpoint refused: {code}" + (f" ({text})" if text else ""),
                      permanent=code in PERMANENT_ERRORS and status < 500, code=code)


def _seconds(value: object) -> float | None:
    """A positive number of seconds from a JSON number or digit string, else None."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


# ----------------------------------------------------------------- HTTP
def post_form(url: str, fields: Mapping[str, str], timeout: float) -> tuple[int, bytes]:
    """POST `fields` form-encoded; (status, body). OAuth2Error (transient) when unreachable."""
    data = urllib.parse.urlencode(fields).encode("ascii")
    req = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:       # noqa: S310 - http(s) checked in config
            return resp.status, resp.read(1 << 20)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OAuth2Error(f"token endpoint {urllib.parse.urlsplit(url).netloc} unreachable: {reason}",
                          permanent=False, code="unreachable") from None


Post = Callable[[str, Mapping[str, str], float], tuple[int, bytes]]


def client_fields(settings: OAuth2Settings, environ: Mapping[str, str] | None,
                  credentials_dir: str | None = None) -> dict[str, str]:
    """client_id, the client secret when one is configured, and the scope."""
    fields = {"client_id": settings.oauth2_client_id}
    if settings.oauth2_client_secret_env or settings.oauth2_client_secret_credential:
        fields["client_secret"] = read_secret(f"{settings.key}.oauth2_client_secret", settings.oauth2_client_secret_env,
                                              settings.oauth2_client_secret_credential, environ=environ,
                                              credentials_dir=credentials_dir).value
    if settings.oauth2_scope:
        fields["scope"] = settings.oauth2_scope
    return fields


def first_refresh_token(settings: OAuth2Settings, environ: Mapping[str, str] | None,
                        credentials_dir: str | None = None) -> str:
    """The configured first refresh token (oauth2_refresh_token_env / _credential), "" if none."""
    s = settings
    if not (s.oauth2_refresh_token_env or s.oauth2_refresh_token_credential):
        return ""
    return read_secret(f"{s.key}.oauth2_refresh_token", s.oauth2_refresh_token_env, s.oauth2_refresh_token_credential,
                       environ=environ, credentials_dir=credentials_dir).value


LOGIN_SEED = "*"                                # a chain begun by `helpdesk oauth2 login`


def seed_of(first: str) -> str:
    """What the store remembers of the configured first refresh token (a digest, not the token)."""
    return hashlib.sha256(first.encode()).hexdigest()[:16] if first else ""


# ----------------------------------------------------------------- the source
class TokenSource:
    """Access tokens for one account (see module docstring). Thread-safe."""

    def __init__(self, settings: OAuth2Settings, store: TokenStore, *, environ: Mapping[str, str] | None = None,
                 credentials_dir: str | None = None, post: Post = post_form,
                 clock: Callable[[], float] = time.time, rand: Callable[[], float] = random.random):
        self.settings, self.store = settings, store
        self.environ, self.credentials_dir = environ, credentials_dir
        self.post, self.clock, self.rand = post, clock, rand
        self._lock = threading.Lock()
        self._token: AccessToken | None = None
        self._failures = 0
        self._error: OAuth2Error | None = None
        self._store_mark = store.mark()

    def access_token(self) -> AccessToken:
        """The cached token while it is not due, else a new one from the endpoint."""
        with self._lock:
            now = self.clock()
            cached = self._token
            if cached is not None and (now < cached.refresh_at or (now < cached.expires_at and self._backing_off(now))):
                return AccessToken(cached.value, cached.expires_at, cached.refresh_at, False)
            self._check_backoff(now)
            self._token = self._fetch(now)
            return self._token

    def due(self) -> bool:
        """The token handed out last is due for refresh (a session should renew it and log in
        again) - but not while the endpoint is backing off and that token still lives."""
        with self._lock:
            token, now = self._token, self.clock()
            if token is None or now < token.refresh_at:
                return False
            return not (now < token.expires_at and self._backing_off(now))

    def invalidate(self, token: AccessToken) -> None:
        """The server refused `token`: the next access_token() asks the endpoint."""
        with self._lock:
            if self._token is not None and self._token.value == token.value:
                self._token = None

    def renew(self) -> bool:
        """Get the next token now, ahead of expiry; False (logged, recorded) when the endpoint
        refuses or is unreachable: keep the current session while the server keeps it."""
        try:
            self.access_token()
        except (OAuth2Error, HelpdeskError) as exc:
            log.warning("oauth2 %s: could not renew the access token (%s); keeping the session", self.settings.key,
                        exc)
            return False
        return True

    # ------------------------------------------------------------- internals
    def _backing_off(self, now: float) -> bool:
        err = self._error
        return err is not None and err.retry_at is not None and now < err.retry_at

    def _check_backoff(self, now: float) -> None:
        err = self._error
        if err is None or err.retry_at is None or now >= err.retry_at:
            return
        mark = self.store.mark()
        if err.permanent and mark != self._store_mark:       # `helpdesk oauth2 login` stored a new token
            self._store_mark, self._error = mark, None
            return
        raise err

    def _fetch(self, now: float) -> AccessToken:
        with self.store.locked():                           # one refresh at a time across processes
            refresh_token, seed = self._refresh_token()
            fields = client_fields(self.settings, self.environ, self.credentials_dir)
            if refresh_token:
                fields.update(grant_type="refresh_token", refresh_token=refresh_token)
            elif "client_secret" in fields:
                fields["grant_type"] = "client_credentials"
            else:
                raise self._failed(now, OAuth2Error(
                    f"{self.settings.key}: no refresh token: run 'helpdesk oauth2 login' for it or set "
                    f"{self.settings.key}.oauth2_refresh_token_env", permanent=True, code="no_refresh_token"))
            try:
                grant = parse_token_answer(*self.post(self.settings.oauth2_token_url, fields, self.settings.timeout))
            except OAuth2Error as exc:
                raise self._failed(now, exc) from None
            if grant.refresh_token and grant.refresh_token != refresh_token:
                self.store.save_refresh_token(grant.refresh_token, now, grant.refresh_expires_in, seed)
                log.info("oauth2 %s: refresh token rotated; the new one is stored", self.settings.key)
            token = AccessToken(grant.access_token, now + grant.expires_in, refresh_at(now, grant.expires_in), True)
            self.store.record_success(now, token.expires_at, fields["grant_type"])
            self._store_mark = self.store.mark()
        self._failures, self._error = 0, None
        log.info("oauth2 %s: new access token (%s grant), valid %.0fs", self.settings.key, fields["grant_type"],
                 grant.expires_in)
        return token

    def _refresh_token(self) -> tuple[str, str]:
        """The refresh token to use and the seed of its chain: the stored (rotated) one,
        unless the configured first token has changed since that chain began (an admin put a
        new one in the environment or credential), or there is none stored. A token stored
        by `helpdesk oauth2 login` (seed LOGIN_SEED) wins over the configured one."""
        stored = self.store.load()
        try:
            first = first_refresh_token(self.settings, self.environ, self.credentials_dir)
        except HelpdeskError:                     # the first one may be gone once a rotated one is kept
            if not stored.get("refresh_token"):
                raise
            first = ""
        seed, kept, kept_seed = seed_of(first), stored.get("refresh_token"), stored.get("seed", "")
        if kept and (not first or kept_seed in (LOGIN_SEED, seed)):
            return kept, seed if first else kept_seed
        if kept:
            log.info("oauth2 %s: the configured refresh token changed; using it", self.settings.key)
        return first, seed

    def _failed(self, now: float, exc: OAuth2Error) -> OAuth2Error:
        self._failures += 1
        delay = backoff(self._failures, REFUSED if exc.permanent else TRANSIENT, self.rand())
        exc.retry_at = now + delay
        self._error = exc
        self.store.record_failure(now, str(exc), exc.permanent, exc.retry_at)
        level = logging.ERROR if exc.permanent else logging.WARNING
        log.log(level, "%soauth2 %s: %s; next token request in %.0fs", "ALERT " if exc.permanent else "",
                self.settings.key, exc, delay)
        return exc
