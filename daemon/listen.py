"""A listener that cannot bind names its config key, instead of an OSError traceback.

`serve` (and any other process opening a port or socket: SMTP, LMTP, HTTP) wraps the start
of each listener in `listening(cfg, "smtp.port", host, port)`; an OSError while binding
becomes one line like
`site.toml:7: smtp.port: cannot listen on 127.0.0.1:2525: address already in use (another
helpdesk serve, or another daemon, may be running)`.
"""
from __future__ import annotations

import errno
from contextlib import contextmanager
from typing import Iterator

from daemon.config import Config, key_location
from daemon.errors import HelpdeskError

REASONS = {
    errno.EADDRINUSE: "address already in use (another helpdesk serve, or another daemon, may be running)",
    errno.EACCES: "permission denied (ports below 1024 need privileges; choose another port)",
    errno.EADDRNOTAVAIL: "address not available on this host (check the host key)",
}


class ListenError(HelpdeskError):
    """Raised when a listener configured by `key` cannot bind its address (exit 1)."""


def explain(cfg: Config, key: str, where: str, exc: OSError) -> ListenError:
    """The ListenError for `exc`, naming the file and line that set `key`."""
    reason = REASONS.get(exc.errno or 0) or (exc.strerror or str(exc))
    return ListenError(f"{key_location(cfg, key)}: {key}: cannot listen on {where}: {reason}")


@contextmanager
def listening(cfg: Config, key: str, host: str, port: int | str) -> Iterator[None]:
    """Turn an OSError raised inside into a ListenError (see the module docstring)."""
    where = f"{host}:{port}" if host else str(port)
    try:
        yield
    except OSError as exc:
        raise explain(cfg, key, where, exc) from exc
