"""Where OAuth 2.0 state lives: one file per account in `<state_dir>/oauth2/`.

`<state_dir>/oauth2/<account>.json` (directory 0700, file 0600, replaced atomically: write a
temp file, rename; with a new refresh token also fsync the file and the directory) holds the
newest refresh token - rotated ones replace the first one from the environment or
credential, and are used from then on - and what `helpdesk status` shows: the access token's expiry, the last refresh, the last error.
The refresh token never leaves this file: `read_statuses` drops it. A lock file next to it
(`flock`) makes refreshes of one account take turns across processes (serve and worker), so
a rotated token is never lost to a race.

`token_alerts` is pure: a failed refresh, or a refresh token near its known end of life
(`refresh_token_expires_in` in the endpoint's answer), is an ALERT.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from daemon.errors import ConfigError

DIRNAME = "oauth2"
WARN_SECONDS = 7 * 86400            # ALERT when the refresh token has less than this left
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def store_name(key: str) -> str:
    """The file name stem for an account key: "imap[support]" -> "imap-support"."""
    return _UNSAFE.sub("_", key.replace("[", "-").replace("]", ""))


def _iso(t: float | None) -> str | None:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds") if t else None


class TokenStore:
    """The state file of one account (see module docstring)."""

    def __init__(self, state_dir: Path, key: str):
        self.key = key
        self.dir = Path(state_dir) / DIRNAME
        self.path = self.dir / f"{store_name(key)}.json"

    # ------------------------------------------------------------- reading
    def load(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.path}: unreadable OAuth 2.0 state ({exc.__class__.__name__}); "
                              f"run 'helpdesk oauth2 login' again") from None
        return data if isinstance(data, dict) else {}

    def refresh_token(self) -> str | None:
        token = self.load().get("refresh_token")
        return token if isinstance(token, str) and token else None

    def mark(self) -> int:
        """Changes whenever a new refresh token is stored (by any process)."""
        return int(self.load().get("generation") or 0)

    # ------------------------------------------------------------- writing
    def save_refresh_token(self, token: str, now: float, expires_in: float | None = None, seed: str = "") -> None:
        """Store a new (rotated, or first from `helpdesk oauth2 login`) refresh token; `seed`
        names the configured first token its chain began with (daemon.oauth2.seed_of)."""
        data = self.load()
        data.update(refresh_token=token, refresh_token_saved_at=now, generation=int(data.get("generation") or 0) + 1,
                    refresh_token_expires_at=now + expires_in if expires_in else None, seed=seed)
        self._write(data, durable=True)

    def record_success(self, now: float, access_expires_at: float, grant: str) -> None:
        data = self.load()
        data.update(refreshed_at=now, access_expires_at=access_expires_at, grant=grant,
                    refreshes=int(data.get("refreshes") or 0) + 1, last_error=None, last_error_at=None,
                    last_error_permanent=False, retry_at=None)
        self._write(data)

    def record_failure(self, now: float, error: str, permanent: bool, retry_at: float | None) -> None:
        data = self.load()
        data.update(last_error=error[:300], last_error_at=now, last_error_permanent=permanent, retry_at=retry_at)
        self._write(data)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the account's lock file (exclusive flock) for the duration."""
        self._ensure_dir()
        fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _ensure_dir(self) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _write(self, data: dict, durable: bool = False) -> None:
        """Replace the file atomically; `durable` (a new refresh token: the old one may be
        dead already) also fsyncs the file and the directory. Status updates need not."""
        self._ensure_dir()
        data["account"] = self.key
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(data, indent=1, sort_keys=True).encode())
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        if not durable:
            return
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


# ----------------------------------------------------------------- status
def read_statuses(state_dir: Path | None) -> list[dict]:
    """Every account's OAuth 2.0 state for `helpdesk status`, without the refresh token."""
    out: list[dict] = []
    if state_dir is None:
        return out
    for path in sorted((Path(state_dir) / DIRNAME).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            data.pop("refresh_token", None)
            out.append(data)
    return out


ALERT_KINDS = ("token refresh failing", "refresh token near its end")


def token_alerts(status: dict, now: float, warn_seconds: float = WARN_SECONDS) -> dict[str, str]:
    """Active alerts of one account's state, {key: text}: a failing refresh (the last
    attempt failed), a refresh token with less than `warn_seconds` of known life left.
    Keys are `oauth2 ACCOUNT: KIND` with KIND from ALERT_KINDS."""
    name, alerts = status.get("account", "?"), {}
    failed_at, ok_at = status.get("last_error_at"), status.get("refreshed_at")
    if status.get("last_error") and failed_at and (not ok_at or failed_at >= ok_at):
        alerts[f"oauth2 {name}: {ALERT_KINDS[0]}"] = (f"oauth2 {name}: token refresh failing since "
                                                      f"{_iso(failed_at)}: {status['last_error']}")
    ends = status.get("refresh_token_expires_at")
    if ends and ends - now < warn_seconds:
        alerts[f"oauth2 {name}: {ALERT_KINDS[1]}"] = (
            f"oauth2 {name}: refresh token {'expired' if ends <= now else 'expires'} at {_iso(ends)}; "
            f"run 'helpdesk oauth2 login' for this account")
    return alerts


def status_line(status: dict) -> str:
    """One line for `helpdesk status`: token expiry, last refresh, refresh-token end of life."""
    expires = _iso(status.get("access_expires_at")) or "-"
    parts = [f"oauth2 {status.get('account', '?')}: access token expires {expires}",
             f"refreshed {_iso(status.get('refreshed_at')) or '-'} ({status.get('refreshes') or 0} so far)"]
    if status.get("refresh_token_expires_at"):
        parts.append(f"refresh token until {_iso(status['refresh_token_expires_at'])}")
    if status.get("last_error"):
        parts.append(f"last error {status['last_error']}")
    return " · ".join(parts)
