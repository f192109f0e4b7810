"""SMTP intake edge (aiosmtpd): accept mail for our domains, make it durable, answer.

Policy lives in `IntakeHandler`: RCPT outside the configured domains gets 550 (never an
open relay); DATA answers 250 only after the raw bytes and the envelope are fsynced in the
spool; any internal failure answers 451 4.3.0 with a correlation id (never 5xx, never a
traceback). Size is announced with SIZE and enforced with 552 by aiosmtpd. `IntakeSMTP`
adds a per-IP connection cap and a shutdown mode that answers 421 to new sessions.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import Counter
from datetime import datetime, timezone
from typing import Callable

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from daemon.model import Envelope
from daemon.pipeline.idn import address_domain
from daemon.spool import Spool

log = logging.getLogger(__name__)


def _domain(address: str) -> str:
    return address_domain(address)          # IDN: A-labels, "" when not a domain


class IntakeHandler:
    """aiosmtpd handler: recipient policy and the durable DATA commit."""

    def __init__(self, spool: Spool, domains: tuple[str, ...], *, max_recipients: int = 100,
                 on_stored: Callable[[str], None] | None = None, data_budget: float = 30.0,
                 source: str = "smtp"):
        self.spool = spool
        self.source = source                 # the envelope's source: smtp, or lmtp (daemon.intake.lmtp)
        self.data_budget = data_budget
        self.domains = {address_domain("@" + d) or d.lower() for d in domains}
        self.max_recipients = max_recipients
        self.on_stored = on_stored
        self.stats = Counter()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if any(c in address for c in "\r\n\0") or "@" not in address:
            return "553 5.1.3 Bad recipient address syntax"
        if _domain(address) not in self.domains:
            self.stats["relay_denied"] += 1
            log.warning("relay denied peer=%s rcpt=%r", session.peer, address)
            return "550 5.7.1 Relaying denied: we accept mail only for our own domains"
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        ref = os.urandom(4).hex()
        try:
            raw = envelope.original_content
            if raw is None:
                raw = envelope.content if isinstance(envelope.content, bytes) else (envelope.content or "").encode()
            env = Envelope(mail_from=(envelope.mail_from or "").strip().strip("<>"), rcpt_to=tuple(envelope.rcpt_tos), source=self.source,
                           peer=str(session.peer[0]) if session.peer else "",
                           received_at=datetime.now(timezone.utc).isoformat())
            write = asyncio.get_running_loop().run_in_executor(None, self.spool.put, raw, env)
            base = await asyncio.wait_for(asyncio.shield(write), timeout=self.data_budget)
        except asyncio.TimeoutError:
            # storage too slow: answer 451 before the client gives up; if the write still
            # completes, the client's retry is recognised as a duplicate by the store
            self.stats["tempfail"] += 1
            log.error("DATA commit exceeded %.0f s (ref %s) peer=%s", self.data_budget, ref, session.peer)
            return f"451 4.3.0 Storage is slow, please try again later (ref {ref})"
        except Exception:
            self.stats["tempfail"] += 1
            log.exception("DATA not stored (ref %s) peer=%s", ref, session.peer)
            return f"451 4.3.0 Temporary local problem, please try again later (ref {ref})"
        self.stats["accepted"] += 1
        if self.on_stored is not None:
            try:
                self.on_stored(base)
            except Exception:
                log.exception("on_stored hook failed for %s", base)
        return f"250 2.0.0 OK queued as {base}"


class IntakeSMTP(SMTP):
    """aiosmtpd's SMTP with a per-IP connection cap and a refuse-new-sessions switch."""

    def __init__(self, handler, *, gate: "Gate", **kwargs):
        super().__init__(handler, **kwargs)
        self.gate = gate
        self._refused = False
        self._ip: str | None = None

    def connection_made(self, transport):
        peer = transport.get_extra_info("peername")
        ip = peer[0] if peer else "?"
        why = self.gate.admit(ip) if self._ip is None and self.transport is None else None
        if why is not None:
            self._refused = True
            transport.write(f"{why}\r\n".encode())
            transport.close()
            return
        if self._ip is None and self.transport is None:
            self._ip = ip
        super().connection_made(transport)

    def connection_lost(self, error):
        if self._refused:
            return
        if self._ip is not None:
            self.gate.leave(self._ip)
            self._ip = None
        super().connection_lost(error)


class Gate:
    """Counts live sessions per IP; refuses over the cap or while shutting down."""

    def __init__(self, per_ip: int):
        self.per_ip = per_ip
        self.live: Counter[str] = Counter()
        self.closing = False
        self.lock = threading.Lock()

    def admit(self, ip: str) -> str | None:
        with self.lock:
            if self.closing:
                return "421 4.3.2 Service shutting down, please try again later"
            if self.live[ip] >= self.per_ip:
                return "421 4.7.0 Too many connections from your address"
            self.live[ip] += 1
            return None

    def leave(self, ip: str) -> None:
        with self.lock:
            self.live[ip] -= 1
            if self.live[ip] <= 0:
                del self.live[ip]

    def active(self) -> int:
        with self.lock:
            return sum(self.live.values())


class IntakeController(Controller):
    """A threaded aiosmtpd controller building `IntakeSMTP` sessions."""

    def __init__(self, handler: IntakeHandler, host: str, port: int, *, max_message_bytes: int,
                 per_ip: int = 50, timeout: float = 60, hostname: str | None = None):
        self.gate = Gate(per_ip)
        super().__init__(handler, hostname=host, port=port, data_size_limit=max_message_bytes,
                         timeout=timeout, server_hostname=hostname, enable_SMTPUTF8=True)

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
