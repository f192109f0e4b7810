"""Loading the keys that sign our tokens (edge): env variable, systemd credential or a
generated key file.

The keys come from an environment variable or a systemd credential named in config; with
neither, a random key is generated once into `<state_dir>/keys/helpdesk.key` (0600). What
the tokens are and how they are made and verified is pure and lives in
daemon.pipeline.tokens; its names are re-exported here for the callers that use both.
"""
from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path
from typing import Mapping

from daemon.errors import ConfigError
from daemon.pipeline.tokens import (FLAG_COMMENT, FLAG_REPLY, KINDS, Keyring, MessageTag,  # noqa: F401
                                    ReplyCheck, ReplyTag, bounce_address, bounce_nonce, bounce_token,
                                    check_address, check_reply_token, loop_marker, message_id,
                                    principal_id, read_bounce_token, read_message_id, reply_address,
                                    reply_token)
from daemon.secrets import read_secret

KEY_FILE = "helpdesk.key"
_MIN_SECRET = 16


# ---------------------------------------------------------------------- keys
def parse_keys(text: str, where: str) -> Keyring:
    """Key material: one key per line, `KID SECRET` (KID 1..255; SECRET base64 or hex, at
    least 16 bytes) or a bare SECRET (key id 1). The first key signs; `#` starts a comment."""
    keys: dict[int, bytes] = {}
    order: list[int] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) > 2 or (len(parts) == 2 and not parts[0].isdigit()):
            raise ConfigError(f"{where}:{n}: expected 'KID SECRET' or 'SECRET'")
        kid = int(parts[0]) if len(parts) == 2 else 1
        secret = _decode_secret(parts[-1])
        if not 1 <= kid <= 255 or kid in keys:
            raise ConfigError(f"{where}:{n}: key id must be 1..255 and unique")
        if secret is None or len(secret) < _MIN_SECRET:
            raise ConfigError(f"{where}:{n}: secret must be base64 or hex of at least {_MIN_SECRET} bytes")
        keys[kid] = secret
        order.append(kid)
    if not keys:
        raise ConfigError(f"{where}: no key found")
    return Keyring(keys, order[0])


def _decode_secret(text: str) -> bytes | None:
    if re.fullmatch(r"[0-9a-fA-F]+", text) and len(text) % 2 == 0:
        return bytes.fromhex(text)
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_" if "-" in text or "_" in text
                                else None, validate=True)
    except (binascii.Error, ValueError):
        return None


def load_keyring(state_dir: Path, key_env: str = "", key_credential: str = "",
                 environ: Mapping[str, str] | None = None) -> Keyring:
    """The keys from $`key_env`, else the systemd credential `key_credential` (both read by
    daemon.secrets), else the generated key file in `<state_dir>/keys/` (0600, made on first use)."""
    if key_env or key_credential:
        secret = read_secret("helpdesk.key", key_env, key_credential, environ=environ)
        return parse_keys(secret.value, secret.origin)
    return _generated(Path(state_dir) / "keys" / KEY_FILE)


def _generated(path: Path) -> Keyring:
    try:
        return parse_keys(path.read_text(), str(path))
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read key file: {exc.strerror}") from None
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, f"# helpdeskd signing key (generated); keep it secret, keep it stable\n"
                     f"1 {base64.b64encode(os.urandom(32)).decode()}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)                      # first writer wins when two processes race
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return parse_keys(path.read_text(), str(path))
