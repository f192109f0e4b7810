"""One SMTP session of the intake edge: admission, DATA streamed to the spool, timeouts.

`IntakeSMTP` is aiosmtpd's SMTP protocol with three changes. A `Gate` admits each new
connection (a global session cap, a per-IP cap, and a refuse-everything switch while
shutting down; over a cap the client gets 421 and the socket is closed at once, so a
flood cannot use up the process's file descriptors). DATA is written to a spool entry
line by line as it arrives, so a session holds one line, not the message, in memory
(aiosmtpd's own DATA keeps every line and then joins them: ~4x the message size per
session). An idle client is told `421 4.4.2` before the connection is closed.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter

from aiosmtpd.smtp import SMTP

log = logging.getLogger(__name__)

NOMINAL, TOO_LONG, TOO_MUCH = "nominal", "too_long", "too_much"


class Gate:
    """Counts live sessions (all, and per IP); refuses over a cap or while shutting down."""

    def __init__(self, per_ip: int, max_sessions: int = 500):
        self.per_ip, self.max_sessions = per_ip, max_sessions
        self.live: Counter[str] = Counter()
        self.total = 0
        self.refused: Counter[str] = Counter()
        self.closing = False
        self.lock = threading.Lock()

    def admit(self, ip: str) -> str | None:
        """None when the session may start, else the 421 reply to send before closing."""
        with self.lock:
            if self.closing:
                why = "shutdown", "421 4.3.2 Service shutting down, please try again later"
            elif self.total >= self.max_sessions:
                why = "sessions", "421 4.3.2 Too many connections, please try again later"
            elif self.live[ip] >= self.per_ip:
                why = "per_ip", "421 4.7.0 Too many connections from your address"
            else:
                self.live[ip] += 1
                self.total += 1
                return None
            self.refused[why[0]] += 1
            return why[1]

    def leave(self, ip: str) -> None:
        with self.lock:
            self.live[ip] -= 1
            self.total -= 1
            if self.live[ip] <= 0:
                del self.live[ip]

    def active(self) -> int:
        with self.lock:
            return self.total


class IntakeSMTP(SMTP):
    """aiosmtpd's SMTP with admission by a `Gate`, streamed DATA and a 421 on timeout."""

    def __init__(self, handler, *, gate: Gate, **kwargs):
        super().__init__(handler, **kwargs)
        self.gate = gate
        self._refused = False
        self._ip: str | None = None

    def connection_made(self, transport):
        first = self._ip is None and self.transport is None     # not the STARTTLS re-entry
        if first:
            peer = transport.get_extra_info("peername")
            ip = peer[0] if peer else "?"
            why = self.gate.admit(ip)
            if why is not None:
                self._refused = True
                try:
                    transport.write(f"{why}\r\n".encode())
                finally:
                    transport.close()
                return
            self._ip = ip
        super().connection_made(transport)

    def connection_lost(self, error):
        if self._refused:
            return
        if self._ip is not None:
            self.gate.leave(self._ip)
            self._ip = None
        super().connection_lost(error)

    def _timeout_cb(self):
        log.info("%r command timeout", self.session.peer)
        if self.transport is not None:
            self.transport.write(f"421 4.4.2 {self.hostname} Timeout, closing connection\r\n".encode())
        super()._timeout_cb()

    async def smtp_DATA(self, arg: str) -> None:
        open_stream = getattr(self.event_handler, "open_stream", None)
        if open_stream is None:
            return await super().smtp_DATA(arg)
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        if not self.envelope.rcpt_tos:
            return await self.push("503 Error: need RCPT command")
        if arg:
            return await self.push("501 Syntax: DATA")
        sink, refusal = open_stream(self.session, self.envelope)
        if sink is None:
            return await self.push(refusal)
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            state = await self._receive(sink)
        except BaseException:
            sink.abort()                                 # connection lost mid-DATA: nobody got a 250
            raise
        if state != NOMINAL:
            sink.abort()
            self._set_post_data_state()
            return await self.push("500 Line too long (see RFC5321 4.5.3.1.6)" if state == TOO_LONG
                                   else "552 5.3.4 Error: Too much mail data")
        status = await self.event_handler.commit_stream(self.session, self.envelope, sink)
        self._set_post_data_state()
        await self.push(status)

    async def _receive(self, sink) -> str:
        """Read DATA up to the lone dot, un-stuffing dots, writing each line to `sink`.
        Only `<CR><LF>` ends a line (a bare LF or CR is content: no smuggling)."""
        size, limit, state = 0, self.data_size_limit, NOMINAL
        partial = False                                  # inside an over-long line
        while self.transport is not None:
            try:
                line = await self._reader.readuntil(b"\r\n")
            except asyncio.CancelledError:
                self._writer.close()
                raise
            except asyncio.LimitOverrunError as exc:      # over the line limit: drain, keep nothing
                state = TOO_LONG if state == NOMINAL else state
                line = await self._reader.read(exc.consumed)
            if not partial and line == b".\r\n":
                return state
            size += len(line)
            if state == NOMINAL and limit and size > limit:
                state = TOO_MUCH
            partial = not line.endswith(b"\r\n")
            if state == NOMINAL:
                sink.write(line[1:] if line.startswith(b".") else line)
            self._reset_timeout()
        raise asyncio.CancelledError()                   # transport gone: treat as lost
