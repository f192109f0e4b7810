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
        """Read DATA up to the lone dot, a buffer at a time, un-stuffing dots and writing
        whole lines to `sink`. Only `<CR><LF>.<CR><LF>` ends DATA and only `<CR><LF>` ends
        a line (a bare LF or CR is content: no smuggling); bytes after the end (pipelined
        commands) go back to the reader."""
        scan = _Scan(self.data_size_limit, self.line_length_limit)
        while self.transport is not None:
            chunk = await self._reader.read(CHUNK)
            if not chunk:
                raise asyncio.CancelledError()           # the client went away mid-DATA
            body, rest = scan.feed(chunk)
            if body:
                sink.write(body)
            self._reset_timeout()
            if rest is not None:
                if rest:
                    self._reader._buffer[:0] = rest      # noqa: SLF001 - pipelined commands after the dot
                return scan.state
        raise asyncio.CancelledError()


CHUNK = 256 * 1024


class _Scan:
    """The DATA byte stream, a chunk at a time: finds the end, checks line length and
    size, undoes dot-stuffing (RFC 5321 4.5.2). `carry` is an unfinished last line."""

    def __init__(self, size_limit: int | None, line_limit: int):
        self.size_limit, self.line_limit = size_limit, line_limit
        self.state, self.size = NOMINAL, 0
        self.carry, self.at_start = b"", True

    def feed(self, chunk: bytes) -> tuple[bytes, bytes | None]:
        """(un-stuffed complete lines to keep, bytes after the end or None if not ended)."""
        buf = self.carry + chunk
        if self.at_start and buf.startswith(b".\r\n"):
            end = 0
        else:
            end = buf.find(b"\r\n.\r\n")
            end = end + 2 if end >= 0 else -1
        rest = None
        if end >= 0:
            lines, rest, self.carry = buf[:end], buf[end + 3:], b""
        else:
            if self.state == NOMINAL:                    # keep whole lines, carry the unfinished one
                last = buf.rfind(b"\r\n")
                cut = last + 2 if last >= 0 else 0
            else:                                        # dropping: carry only what may start the end
                cut = max(len(buf) - 4, 0)
            lines, self.carry = buf[:cut], buf[cut:]
        return self._keep(lines, rest is not None), rest

    def _keep(self, lines: bytes, ended: bool) -> bytes:
        self.size += len(lines)
        if self.state == NOMINAL and self.size_limit and self.size + len(self.carry) > self.size_limit:
            self.state = TOO_MUCH
        if self.state == NOMINAL and (len(self.carry) >= self.line_limit
                                      or (lines and max(map(len, lines.split(b"\r\n"))) + 2 > self.line_limit)):
            self.state = TOO_LONG
        if self.state != NOMINAL:                        # only the end is looked for now
            if not ended:                                # a carry that began a line keeps its line end
                self.carry = ((b"\r\n" if self.at_start else b"") + self.carry)[-4:]
            self.at_start = False
            return b""
        self.at_start = True                             # `lines` ends at a line end (or is empty)
        if lines.startswith(b"."):
            lines = lines[1:]
        return lines.replace(b"\r\n.", b"\r\n")
