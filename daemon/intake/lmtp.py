"""LMTP intake edge (RFC 2033, aiosmtpd's LMTP): how a local MTA hands us its mail.

Postfix's `lmtp` transport (or Exim's `lmtp` transport) delivers here over a UNIX socket
or a loopback TCP port. The policy and the durable commit are the SMTP intake's
(`daemon.intake.smtp.IntakeHandler`: recipients outside our domains get 550; 250 only
after the raw bytes and the envelope are fsynced into the spool; any internal failure a
451 4.3.0). What LMTP adds is the reply after DATA: one line per accepted recipient, in
RCPT order. The message is spooled once for all of them, so every line carries the
same outcome. SMTPUTF8 (RFC 6531) is offered in the LHLO reply, as on SMTP: UTF-8 senders,
recipients and headers (RFC 6532) are accepted and spooled byte for byte. `LmtpController`
is the start/stop object the composition root runs.
"""
from __future__ import annotations

import logging
import os
import socket as _socket
import stat
import threading
from pathlib import Path
from typing import Callable

from aiosmtpd.controller import Controller, UnixSocketController
from aiosmtpd.lmtp import LMTP

from daemon.errors import HelpdeskError
from daemon.intake.smtp import IntakeHandler
from daemon.spool import Spool

log = logging.getLogger(__name__)


class LmtpHandler(IntakeHandler):
    """The SMTP intake's handler with RFC 2033's one DATA reply per recipient."""

    def __init__(self, spool: Spool, domains: tuple[str, ...], *, max_recipients: int = 100,
                 on_stored: Callable[[str], None] | None = None, data_budget: float = 30.0):
        super().__init__(spool, domains, max_recipients=max_recipients, on_stored=on_stored,
                         data_budget=data_budget, source="lmtp")

    async def handle_DATA(self, server, session, envelope):
        status = await super().handle_DATA(server, session, envelope)
        return "\r\n".join([status] * max(len(envelope.rcpt_tos), 1))


class _Sessions:
    """Counts live LMTP sessions, so a stop can let them finish."""

    def __init__(self):
        self.live = 0
        self.lock = threading.Lock()

    def change(self, by: int) -> None:
        with self.lock:
            self.live += by


class IntakeLMTP(LMTP):
    """aiosmtpd's LMTP session, counted for a graceful stop."""

    def __init__(self, handler, *, sessions: _Sessions, **kwargs):
        super().__init__(handler, **kwargs)
        self._sessions, self._counted = sessions, False

    def connection_made(self, transport):
        if not self._counted:
            self._counted = True
            self._sessions.change(+1)
        super().connection_made(transport)

    def connection_lost(self, error):
        if self._counted:
            self._counted = False
            self._sessions.change(-1)
        super().connection_lost(error)


class _Factory:
    """Makes IntakeLMTP sessions for either controller kind."""

    sessions: _Sessions
    handler: IntakeHandler
    SMTP_kwargs: dict

    def factory(self):
        return IntakeLMTP(self.handler, sessions=self.sessions, **self.SMTP_kwargs)


class _TcpController(_Factory, Controller):
    pass


class _UnixController(_Factory, UnixSocketController):
    pass


class LmtpController:
    """Start/stop of the LMTP listener: a UNIX socket when `socket` is set, else host:port."""

    def __init__(self, handler: LmtpHandler, *, socket: str = "", host: str = "127.0.0.1", port: int = 2424,
                 max_message_bytes: int = 26214400, timeout: float = 60, hostname: str | None = None):
        self.socket_path = Path(socket) if socket else None
        self.sessions = _Sessions()
        common = dict(data_size_limit=max_message_bytes, timeout=timeout, server_hostname=hostname,
                      enable_SMTPUTF8=True)
        if self.socket_path is not None:
            self.inner = _UnixController(handler, unix_socket=str(self.socket_path), **common)
        else:
            self.inner = _TcpController(handler, hostname=host, port=port, **common)
        self.inner.sessions = self.sessions
        self.where = f"lmtp unix:{self.socket_path}" if self.socket_path else f"lmtp {host}:{port}"

    def start(self) -> None:
        """Bind and serve; a HelpdeskError names the key when the address is unusable."""
        key = "lmtp.socket" if self.socket_path else "lmtp.port"
        try:
            if self.socket_path is not None:
                self._clear_stale_socket()
            else:                             # fail at once, not after aiosmtpd's ready timeout
                _socket.create_server((self.inner.hostname, self.inner.port)).close()
            self.inner.start()
        except (OSError, HelpdeskError) as exc:
            if not self.inner.loop.is_running():
                self.inner.loop.close()
            if isinstance(exc, HelpdeskError):
                raise
            raise HelpdeskError(f"{key}: cannot listen on {self.where.split(' ', 1)[1]}: {exc.strerror or exc} "
                                f"(another daemon may be running)") from None
        if self.socket_path is not None:      # the MTA's delivery agent runs as another user
            os.chmod(self.socket_path, 0o666)
        log.info("%s listening", self.where)

    def _clear_stale_socket(self) -> None:
        path = self.socket_path
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            return
        if not stat.S_ISSOCK(mode):
            raise HelpdeskError(f"lmtp.socket: {path} exists and is not a socket")
        probe = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()                     # nobody listens: left by a killed daemon
            return
        finally:
            probe.close()
        raise HelpdeskError(f"lmtp.socket: {path} is in use (another daemon may be running)")

    def stop(self, grace: float = 10.0) -> None:
        """Let live sessions finish for up to `grace` seconds, then stop listening."""
        waited, tick = 0.0, threading.Event()
        while self.sessions.live and waited < grace:
            tick.wait(0.05)
            waited += 0.05
        self.inner.stop()
        if self.socket_path is not None:
            try:
                self.socket_path.unlink()
            except FileNotFoundError:
                pass

    @property
    def bound_port(self) -> int | None:
        if self.socket_path is not None:
            return None
        return self.inner.server.sockets[0].getsockname()[1]


def start_lmtp(cfg, spool: Spool, wake: threading.Event) -> LmtpController | None:
    """The LMTP listener of `serve` from [lmtp] (and [smtp]'s domains and limits), started;
    None when disabled."""
    if not cfg.lmtp.enabled:
        return None
    handler = LmtpHandler(spool, cfg.smtp.domains, max_recipients=cfg.smtp.max_recipients,
                          on_stored=lambda _base: wake.set(), data_budget=cfg.smtp.data_budget_seconds)
    ctl = LmtpController(handler, socket=cfg.lmtp.socket, host=cfg.lmtp.host, port=cfg.lmtp.port,
                         max_message_bytes=cfg.smtp.max_message_bytes, timeout=cfg.smtp.command_timeout_seconds)
    ctl.start()
    return ctl
