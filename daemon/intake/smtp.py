"""SMTP intake edge (aiosmtpd): accept mail for our domains, make it durable, answer.

Policy lives in `IntakeHandler`: RCPT outside the configured domains gets 550 (never an
open relay), and with a recipient list only listed addresses are accepted (550 5.1.1 for
the rest); a client IP starting more transactions a minute than allowed gets 451 4.7.0.
SMTPUTF8 (RFC 6531) is offered; an envelope address with controls or bytes that are not
UTF-8 is refused (501 5.1.7 / 553 5.1.3), never spooled.
DATA is streamed into a spool entry as it arrives (daemon.intake.smtp_session) and
answered 250 only after the entry is fsynced and renamed into the spool; any internal
failure answers 451 4.3.0 with a correlation id (never 5xx, never a traceback), a full
spool volume 452 4.3.1. Size is announced with SIZE and enforced with 552. The
controller adds a global and a per-IP session cap, STARTTLS when a certificate is
configured, a greeting with the configured name only, and a shutdown mode that answers
421 to new sessions.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import ssl
import threading
import time
from collections import Counter, deque
from datetime import datetime, timezone
from typing import Callable

from aiosmtpd.controller import Controller

from daemon.errors import ConfigError
from daemon.intake.smtp_session import Gate, IntakeSMTP
from daemon.model import Envelope
from daemon.model.idn import address_domain
from daemon.spool import Spool, SpoolWriter

log = logging.getLogger(__name__)
FULL = {errno.ENOSPC, errno.EDQUOT}

__all__ = ["Gate", "IntakeController", "IntakeHandler", "IntakeSMTP", "Throttle", "build_intake"]


def _domain(address: str) -> str:
    return address_domain(address)          # IDN: A-labels, "" when not a domain


def _malformed(address: str) -> bool:
    """Controls, or bytes that were not UTF-8 (aiosmtpd decodes envelope arguments with
    surrogateescape): such an address is refused rather than spooled (RFC 6531 allows
    UTF-8 only)."""
    return any(ord(c) < 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF for c in address)


class Throttle:
    """At most `per_minute` events per key in any 60 s window (0: unlimited); `clock` is
    settable so tests need not wait."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.per_minute, self.clock = per_minute, clock
        self.seen: dict[str, deque] = {}

    def allow(self, key: str) -> bool:
        if not self.per_minute:
            return True
        now, times = self.clock(), self.seen.setdefault(key, deque())
        while times and times[0] <= now - 60:
            times.popleft()
        if len(times) >= self.per_minute:
            return False
        times.append(now)
        if len(self.seen) > 10_000:                          # forget quiet addresses
            for k in [k for k, v in self.seen.items() if not v or v[-1] <= now - 60]:
                del self.seen[k]
        return True


class IntakeHandler:
    """aiosmtpd handler: recipient policy, throttling and the durable DATA commit."""

    def __init__(self, spool: Spool, domains: tuple[str, ...], *, max_recipients: int = 100,
                 on_stored: Callable[[str], None] | None = None, data_budget: float = 30.0,
                 source: str = "smtp", recipients: tuple[str, ...] = (), per_ip_minute: int = 0):
        self.spool = spool
        self.source = source                 # the envelope's source: smtp, or lmtp (daemon.intake.lmtp)
        self.data_budget = data_budget
        self.domains = {address_domain("@" + d) or d.lower() for d in domains}
        self.recipients = {r.lower() for r in recipients}
        self.max_recipients = max_recipients
        self.on_stored = on_stored
        self.throttle = Throttle(per_ip_minute)
        self.stats = Counter()

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        ip = str(session.peer[0]) if session.peer else "?"
        if not self.throttle.allow(ip):
            self.stats["throttled"] += 1
            log.warning("throttled peer=%s: more than %d transactions a minute", ip, self.throttle.per_minute)
            return "451 4.7.0 Too many messages from your address, please slow down"
        if _malformed(address or ""):
            return "501 5.1.7 Bad sender address syntax (not UTF-8)"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if _malformed(address) or "@" not in address:
            return "553 5.1.3 Bad recipient address syntax"
        if _domain(address) not in self.domains:
            self.stats["relay_denied"] += 1
            log.warning("relay denied peer=%s rcpt=%r", session.peer, address)
            return "550 5.7.1 Relaying denied: we accept mail only for our own domains"
        if self.recipients and address.strip().strip("<>").lower() not in self.recipients:
            self.stats["unknown_recipient"] += 1
            return "550 5.1.1 No such mailbox here"
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    def _envelope(self, session, envelope) -> Envelope:
        return Envelope(mail_from=(envelope.mail_from or "").strip().strip("<>"), rcpt_to=tuple(envelope.rcpt_tos),
                        source=self.source, peer=str(session.peer[0]) if session.peer else "",
                        received_at=datetime.now(timezone.utc).isoformat())

    def open_stream(self, session, envelope) -> tuple[SpoolWriter | None, str]:
        """A spool entry for DATA to stream into, or (None, the 4xx reply)."""
        try:
            return self.spool.open_entry(self._envelope(session, envelope)), ""
        except Exception as exc:
            return None, self._tempfail(exc, session)

    async def commit_stream(self, server_session, envelope, sink: SpoolWriter) -> str:
        """Make the streamed entry durable within the DATA budget; the reply to send."""
        write = asyncio.get_running_loop().run_in_executor(None, sink.commit)
        return await self._answer(write, server_session)

    async def handle_DATA(self, server, session, envelope):
        """The whole-message path (plain aiosmtpd servers); `IntakeSMTP` streams instead."""
        raw = envelope.original_content
        if raw is None:
            raw = envelope.content if isinstance(envelope.content, bytes) else (envelope.content or "").encode()
        env = self._envelope(session, envelope)
        write = asyncio.get_running_loop().run_in_executor(None, self.spool.put, raw, env)
        return await self._answer(write, session)

    async def _answer(self, write: asyncio.Future, session) -> str:
        try:
            base = await asyncio.wait_for(asyncio.shield(write), timeout=self.data_budget)
        except asyncio.TimeoutError:
            # storage too slow: answer 451 before the client gives up; if the write still
            # completes, the client's retry is recognised as a duplicate by the store
            self.stats["tempfail"] += 1
            log.error("DATA commit exceeded %.0f s peer=%s", self.data_budget, session.peer)
            return "451 4.3.0 Storage is slow, please try again later"
        except Exception as exc:
            return self._tempfail(exc, session)
        self.stats["accepted"] += 1
        if self.on_stored is not None:
            try:
                self.on_stored(base)
            except Exception:
                log.exception("on_stored hook failed for %s", base)
        return f"250 2.0.0 OK queued as {base}"

    def _tempfail(self, exc: Exception, session) -> str:
        ref = os.urandom(4).hex()
        self.stats["tempfail"] += 1
        log.error("DATA not stored (ref %s) peer=%s", ref, session.peer, exc_info=exc)
        if getattr(exc.__cause__, "errno", None) in FULL or getattr(exc, "errno", None) in FULL:
            return f"452 4.3.1 Insufficient system storage, please try again later (ref {ref})"
        return f"451 4.3.0 Temporary local problem, please try again later (ref {ref})"

    async def handle_exception(self, error: Exception) -> str:
        """Any other failure inside a command: a temporary error without internals."""
        ref = os.urandom(4).hex()
        log.error("SMTP session error (ref %s)", ref, exc_info=error)
        return f"451 4.3.0 Temporary local problem, please try again later (ref {ref})"


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """The server context for STARTTLS; a ConfigError names the key whose file is bad."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"smtp.tls_cert / smtp.tls_key: cannot load {cert} / {key}: {exc}") from None
    return ctx


class IntakeController(Controller):
    """A threaded aiosmtpd controller building `IntakeSMTP` sessions."""

    def __init__(self, handler: IntakeHandler, host: str, port: int, *, max_message_bytes: int,
                 per_ip: int = 50, timeout: float = 60, hostname: str | None = None,
                 max_sessions: int = 500, tls: ssl.SSLContext | None = None):
        self.gate = Gate(per_ip, max_sessions)
        super().__init__(handler, hostname=host, port=port, data_size_limit=max_message_bytes,
                         timeout=timeout, server_hostname=hostname, enable_SMTPUTF8=True,
                         ident="ESMTP", tls_context=tls)

    def factory(self):
        return IntakeSMTP(self.handler, gate=self.gate, **self.SMTP_kwargs)

    def shutdown(self, grace: float = 10.0) -> None:
        """Answer 421 to new sessions, give live ones `grace` seconds, then stop."""
        self.gate.closing = True
        deadline = threading.Event()
        waited = 0.0
        while self.gate.active() and waited < grace:
            deadline.wait(0.05)
            waited += 0.05
        self.stop()

    @property
    def bound_port(self) -> int:
        return self.server.sockets[0].getsockname()[1]


def build_intake(smtp, spool: Spool, on_stored: Callable[[str], None] | None = None) -> IntakeController:
    """The SMTP intake `serve` runs, from the [smtp] config section (not started)."""
    handler = IntakeHandler(spool, smtp.domains, max_recipients=smtp.max_recipients, on_stored=on_stored,
                            data_budget=smtp.data_budget_seconds, recipients=smtp.recipients,
                            per_ip_minute=smtp.max_messages_per_ip_minute)
    tls = tls_context(smtp.tls_cert, smtp.tls_key) if smtp.tls_cert else None
    return IntakeController(handler, smtp.host, smtp.port, max_message_bytes=smtp.max_message_bytes,
                            per_ip=smtp.max_connections_per_ip, timeout=smtp.command_timeout_seconds,
                            hostname=smtp.hostname or None, max_sessions=smtp.max_sessions, tls=tls)
