"""`helpdesk oauth2 login ACCOUNT`: the OAuth 2.0 device-code flow (RFC 8628) an admin runs once.

It asks the account's device-authorization endpoint for a code, prints the URL to open and
the code to enter, polls the token endpoint every `interval` seconds (slower when told
`slow_down`) until the admin has signed in, and stores the refresh token in the state
directory (daemon.oauth2_store), where a running daemon picks it up at its next refresh.
Clock and sleep are passed in, so tests drive the wait without the wall clock.
"""
from __future__ import annotations

import json
import time
from typing import Callable, Mapping

from daemon.oauth2 import (LOGIN_SEED, OAuth2Error, OAuth2Settings, Post, client_fields, imap_key, oauth2_settings,
                           parse_token_answer, post_form)
from daemon.oauth2_store import TokenStore

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SLOW_DOWN = 5.0                        # RFC 8628 3.5: add 5 seconds to the interval


def oauth2_accounts(cfg) -> dict[str, OAuth2Settings]:
    """The accounts with auth = "oauth2", by the name `login` takes: [[imap]] names, `outbound`."""
    found = {a.name: oauth2_settings(imap_key(a.name), a) for a in cfg.imap if a.auth == "oauth2"}
    if cfg.outbound.auth == "oauth2":
        found.setdefault("outbound", oauth2_settings("outbound", cfg.outbound, float(cfg.outbound.timeout)))
    return found


def device_login(settings: OAuth2Settings, store: TokenStore, *, out: Callable[[str], None],
                 environ: Mapping[str, str] | None = None, post: Post = post_form,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
    """Run the device-code flow for one account and store its refresh token; OAuth2Error
    when the provider refuses or the code expires before the admin signed in."""
    fields = client_fields(settings, environ)
    start = clock()
    code = _device_code(settings, fields, post)
    out(f"To sign in for {settings.key}, open {code['uri']} and enter the code {code['user_code']}")
    out(f"waiting for the sign-in (the code is valid for {code['expires_in'] // 60:.0f} minutes) ...")
    interval, deadline = code["interval"], start + code["expires_in"]
    poll = dict(fields, grant_type=DEVICE_GRANT, device_code=code["device_code"])
    while True:
        sleep(interval)
        if clock() > deadline:
            raise OAuth2Error(f"{settings.key}: the code expired before the sign-in; run the login again",
                              permanent=True, code="expired_token")
        try:
            grant = parse_token_answer(*post(settings.oauth2_token_url, poll, settings.timeout))
            break
        except OAuth2Error as exc:
            if exc.code == "slow_down":
                interval += SLOW_DOWN
            elif exc.code != "authorization_pending":
                raise OAuth2Error(f"{settings.key}: sign-in failed: {exc}", permanent=True, code=exc.code) from None
    if not grant.refresh_token:
        raise OAuth2Error(f"{settings.key}: the provider gave no refresh token (add offline_access to "
                          f"oauth2_scope)", permanent=True, code="no_refresh_token")
    now = clock()
    # LOGIN_SEED: this token supersedes any first token configured (which the admin's shell
    # may not even see: it can live in the daemon's unit)
    store.save_refresh_token(grant.refresh_token, now, grant.refresh_expires_in, LOGIN_SEED)
    store.record_success(now, now + grant.expires_in, "device_code")
    out(f"signed in; the refresh token is stored in {store.path}")


def _device_code(settings: OAuth2Settings, fields: dict, post: Post) -> dict:
    """The device-authorization answer, normalised (Google says verification_url)."""
    form = {k: v for k, v in fields.items() if k in ("client_id", "scope")}
    status, body = post(settings.oauth2_device_url, form, settings.timeout)
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        data = None
    if status != 200 or not isinstance(data, dict) or not data.get("device_code") or not data.get("user_code"):
        error = data.get("error") if isinstance(data, dict) else None
        raise OAuth2Error(f"{settings.key}: device authorization at {settings.oauth2_device_url} refused: "
                          f"{error or f'HTTP {status}'}", permanent=True, code=str(error or status))
    return {"device_code": str(data["device_code"]), "user_code": str(data["user_code"]),
            "uri": str(data.get("verification_uri_complete") or data.get("verification_uri")
                       or data.get("verification_url") or "?"),
            "interval": float(data.get("interval") or 5), "expires_in": float(data.get("expires_in") or 900)}
