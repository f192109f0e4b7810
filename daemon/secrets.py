"""The one secret reader: a secret comes from an environment variable or a systemd credential.

Passwords, signing keys, OAuth client secrets and first refresh tokens are never written in
config.toml. A config section names where the secret lives with two keys, `<key>_env` (an
environment variable) and `<key>_credential` (a file in `$CREDENTIALS_DIRECTORY`, as
systemd's `LoadCredential=` provides it). `read_secret` takes the variable when it is set,
else the credential; a credential is only ever read from `$CREDENTIALS_DIRECTORY` (or the
directory passed in), never from the working directory. Every error is a ConfigError naming
the config key at fault, and no error or repr carries the secret itself.

This is an edge module (it reads the environment and files); it does not log.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from daemon.errors import ConfigError


@dataclass(frozen=True)
class Secret:
    """A secret's text and where it came from (`$NAME` or the credential file's path)."""

    value: str = field(repr=False)
    origin: str


def read_secret(key: str, env: str = "", credential: str = "", *, environ: Mapping[str, str] | None = None,
                credentials_dir: str | None = None) -> Secret:
    """The secret for config key `key` (say "outbound.password") from $`env` when that is set,
    else from the systemd credential `credential`. Trailing line breaks of a credential
    file are dropped. Raises ConfigError naming `key_env` / `key_credential`."""
    environ = os.environ if environ is None else environ
    if env and environ.get(env):
        return Secret(environ[env], f"${env}")
    if credential:
        return _credential(key, credential, credentials_dir or environ.get("CREDENTIALS_DIRECTORY") or "")
    if env:
        raise ConfigError(f"{key}_env: environment variable {env} is not set")
    raise ConfigError(f"{key}: no secret configured: set {key}_env or {key}_credential")


def _credential(key: str, name: str, directory: str) -> Secret:
    if "/" in name or name in (".", "..") or "\0" in name:
        raise ConfigError(f"{key}_credential: not a plain credential name: {name!r}")
    if not directory:
        raise ConfigError(f"{key}_credential: $CREDENTIALS_DIRECTORY is not set "
                          f"(LoadCredential={name}:... in the unit)")
    path = Path(directory) / name
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{key}_credential: cannot read credential {name!r} ({path}): "
                          f"{exc.strerror or exc.__class__.__name__}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{key}_credential: credential {name!r} ({path}) is not UTF-8 text") from None
    text = text.rstrip("\r\n")
    if not text:
        raise ConfigError(f"{key}_credential: credential {name!r} ({path}) is empty")
    return Secret(text, str(path))


def shared_key_problem(database_url: str, key_env: str, key_credential: str) -> str | None:
    """Why this node may not run, or None. With a network database (PostgreSQL) several nodes
    serve one desk, and a Message-ID, bounce address or agent reply token signed by one must
    verify on every other: the signing key must be configured (`[helpdesk] key_env` or
    `key_credential`, the same key on every node), never generated per state directory."""
    if not database_url or database_url.startswith("sqlite") or key_env or key_credential:
        return None
    return ("helpdesk.key_env / helpdesk.key_credential: not set, but database.url is a shared database (PostgreSQL): "
            "every node must sign with the same key. Set key_env (an environment variable) or key_credential "
            "(a systemd credential) holding the same key on every node (lines \"KID SECRET\", see config.toml)")
