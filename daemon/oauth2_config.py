"""The OAuth 2.0 keys shared by `[[imap]]` accounts and `[outbound]`, and their checks.

`auth = "password"` (default) | `"oauth2"`; with oauth2: `oauth2_token_url` (https, or http
to loopback), `oauth2_client_id`, `oauth2_client_secret_env` / `_credential` (optional: a
public client has none), `oauth2_scope`, `oauth2_refresh_token_env` / `_credential` (the
first refresh token; rotated ones are kept in the state directory), and `oauth2_device_url`
(the device-authorization endpoint `helpdesk oauth2 login` uses; empty: derived from the
token URL). Used by daemon.config_read (validation) and daemon.oauth2 (the token client);
the frozen OAuth2Keys the sections inherit is in daemon.config_sections (no dataclass here:
the check runs at every command's start).
"""
from __future__ import annotations

import urllib.parse
from typing import Any

from daemon.errors import ConfigError

LOOPBACK = ("127.0.0.1", "::1", "localhost")
AUTH_MODES = ("password", "oauth2")


# the keys of daemon.config_sections.OAuth2Keys and their defaults (tested equal)
OAUTH2_DEFAULTS: dict[str, Any] = {
    "auth": "password", "oauth2_token_url": "", "oauth2_client_id": "", "oauth2_client_secret_env": "",
    "oauth2_client_secret_credential": "", "oauth2_scope": "", "oauth2_refresh_token_env": "",
    "oauth2_refresh_token_credential": "", "oauth2_device_url": "",
}


def check_auth(values: dict, where: str) -> None:
    """ConfigError naming `where.key` for a bad `auth` or a missing/odd OAuth 2.0 key."""
    if values["auth"] not in AUTH_MODES:
        raise ConfigError(f"{where}.auth: must be password or oauth2, got {values['auth']!r}")
    if values["auth"] != "oauth2":
        return
    for key in ("username", "oauth2_token_url", "oauth2_client_id"):
        if not values[key]:
            raise ConfigError(f"{where}.{key}: required when auth = \"oauth2\"")
    for key in ("oauth2_token_url", "oauth2_device_url"):
        if values[key]:
            _check_url(values[key], f"{where}.{key}")


def _check_url(url: str, where: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"{where}: not an http(s) URL: {url!r}")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        raise ConfigError(f"{where}: plain http is refused unless the host is loopback: {url!r}")


def device_url(token_url: str) -> str:
    """The device-authorization endpoint beside a token endpoint: Google's
    `/device/code`, else Microsoft's (and most others') `.../devicecode` for `.../token`."""
    parts = urllib.parse.urlsplit(token_url)
    if parts.hostname == "oauth2.googleapis.com":
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/device/code", "", ""))
    head, _, last = parts.path.rpartition("/")
    path = f"{head}/devicecode" if last == "token" else f"{parts.path.rstrip('/')}/devicecode"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
