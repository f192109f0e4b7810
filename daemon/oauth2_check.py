"""`helpdesk check` for OAuth 2.0 accounts: can each `auth = "oauth2"` account get a token?

Loading the config already refused a missing `oauth2_token_url`, `oauth2_client_id` or
`username` and a bad URL, naming the key and the line. What only the environment the daemon
runs in can tell is checked here, as `serve` would meet it (systemd's `ExecStartPre=helpdesk
check` runs with the unit's environment and `$CREDENTIALS_DIRECTORY`):

* the client secret, when one is named: the variable set, the credential readable, UTF-8 and
  not empty;
* a refresh token: a stored (rotated) one in the state directory, which must be readable, or
  the configured first one, which must be readable; with neither, a client secret (the
  client-credentials grant) - else the account cannot log in at all.

Each problem is `FILE:LINE: KEY: reason`, KEY as the config spells it (`imap[0].…`,
`outbound.…`), the line the one that set it (or its table). No secret is printed, and the
token endpoint is not asked (a check must not rotate a refresh token).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from daemon.config import Config, key_location
from daemon.errors import ConfigError
from daemon.oauth2 import imap_key
from daemon.config_sections import OAuth2Keys
from daemon.oauth2_store import TokenStore
from daemon.secrets import read_secret


@dataclass(frozen=True)
class Account:
    """One OAuth 2.0 account as check sees it: its config key (`imap[0]`, `outbound`), the
    account key of the token store (`imap[support]`), the name `oauth2 login` takes."""

    where: str
    key: str
    login: str
    keys: OAuth2Keys


def accounts(cfg: Config) -> list[Account]:
    """Every account with auth = "oauth2", in config order."""
    found = [Account(f"imap[{i}]", imap_key(a.name), a.name, a) for i, a in enumerate(cfg.imap) if a.auth == "oauth2"]
    if cfg.outbound.auth == "oauth2":
        found.append(Account("outbound", "outbound", "outbound", cfg.outbound))
    return found


def oauth2_problems(cfg: Config, environ: Mapping[str, str] | None = None) -> tuple[list[str], list[str]]:
    """(problems, notes): a problem line per account that cannot get a token here; a note
    per account saying where its refresh token comes from."""
    problems: list[str] = []
    notes: list[str] = []
    for acct in accounts(cfg):
        found, note = _account(cfg, acct, environ)
        problems += found
        if note:
            notes.append(f"{acct.key}: {note}")
    return problems, notes


def _account(cfg: Config, acct: Account, environ) -> tuple[list[str], str]:
    k, problems = acct.keys, []
    secret = bool(k.oauth2_client_secret_env or k.oauth2_client_secret_credential)
    if secret:
        problems += _secret(cfg, f"{acct.where}.oauth2_client_secret", k.oauth2_client_secret_env,
                            k.oauth2_client_secret_credential, environ)
    store = TokenStore(cfg.state_dir, acct.key)
    try:
        stored = store.refresh_token()
    except ConfigError as exc:
        return problems + [f"{key_location(cfg, f'{acct.where}.auth')}: {acct.where}.auth: {exc}"], ""
    first = bool(k.oauth2_refresh_token_env or k.oauth2_refresh_token_credential)
    unread = _secret(cfg, f"{acct.where}.oauth2_refresh_token", k.oauth2_refresh_token_env,
                     k.oauth2_refresh_token_credential, environ) if first else []
    if stored and unread:                     # as the token client does: the rotated one is used
        return problems, f"refresh token stored in {store.path} (the configured first one is not readable)"
    problems += unread
    if stored:
        return problems, f"refresh token stored in {store.path}"
    if first:
        return problems, "first refresh token from the config"
    if secret:
        return problems, "client-credentials grant (no refresh token)"
    where = f"{acct.where}.oauth2_refresh_token_env"
    return problems + [f"{key_location(cfg, f'{acct.where}.auth')}: {where}: no refresh token and no client "
                       f"secret, so no token can be had: run 'helpdesk oauth2 login {acct.login}', or set "
                       f"oauth2_refresh_token_env / oauth2_refresh_token_credential (or a client secret for the "
                       f"client-credentials grant)"], ""


def _secret(cfg: Config, key: str, env: str, credential: str, environ) -> list[str]:
    """The problem reading one configured secret, at the line of the key at fault."""
    try:
        read_secret(key, env, credential, environ=environ)
    except ConfigError as exc:
        named = str(exc).split(": ", 1)[0]
        return [f"{key_location(cfg, named)}: {exc}"]
    return []
