"""One SMTP session with the relay, reused for many mails (the sender's batches).

`RelaySession(relay)` opens its connection at the first mail (TLS, AUTH, EHLO as
daemon.mailer.Relay says) and keeps it for the next: `send(mail_from, recipients, raw)`
answers one `RcptResult` per recipient, like `Relay.send`, and never raises for SMTP
trouble. Where the relay offers ESMTP PIPELINING (RFC 2920) the envelope - MAIL, every
RCPT and DATA - goes out in one write and the answers are read after it: one round trip
plus the content per mail. Without it, smtplib's `sendmail` runs on the same connection.
After a mail that did not go through cleanly (a refused sender or recipient, a DATA
error) the next one starts with RSET, so one bad mail never breaks the session. A
connection the relay closed while idle is opened again once, for a mail that had not
started; trouble after the final dot is that mail's temporary failure (reliability case
42) and the next mail gets a fresh connection. When the relay cannot be reached at all,
the rest of the batch fails at once with the same reason instead of each waiting for its
own timeout. A session may be kept open between drains (daemon.delivery); one the relay timed out
meanwhile (closed, or 421 to MAIL) is the stale case above. `connections` and `mails`
count what the session did (benchmarks, tests).
"""
from __future__ import annotations

import re
import smtplib
import socket
import ssl
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from daemon.model.idn import SmtpAddress, plan_utf8, smtp_address


class Opens(Protocol):
    """What a session needs of its relay (daemon.mailer.Relay): where it is, and a new,
    greeted, authenticated connection."""

    settings: Any

    def open(self) -> smtplib.SMTP: ...


_DOT = re.compile(rb"(?m)^\.")


@dataclass(frozen=True)
class RcptResult:
    email: str
    outcome: str                         # sent | temp | perm
    code: int = 0
    reason: str = ""
    recipient_fault: bool = True         # perm because of the recipient (mark as bouncing)


class RelayTrouble(Exception):
    """The transaction as a whole failed: `temporary` or not, `reason` safe to log."""

    def __init__(self, reason: str, temporary: bool = True, code: int = 0, sender_fault: bool = False):
        super().__init__(reason)
        self.reason, self.temporary, self.code, self.sender_fault = reason, temporary, code, sender_fault


def _text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(str(value).split())[:500]


class _Stale(Exception):
    """A reused connection turned out closed before this mail started: open a new one."""


def dot_stuffed(raw: bytes) -> bytes:
    """The DATA content as smtplib sends bytes: leading dots doubled, the final CRLF . CRLF."""
    data = _DOT.sub(b"..", raw)
    return data + (b"" if data.endswith(b"\r\n") else b"\r\n") + b".\r\n"


class RelaySession:
    """See module docstring. Use as a context manager; `close()` says QUIT."""

    def __init__(self, relay: Opens):
        self.relay = relay
        self.conn: smtplib.SMTP | None = None
        self.dirty = False                       # the last transaction failed: RSET first
        self.broken = None                       # RelayTrouble: the relay cannot be reached now
        self.connections = self.mails = 0

    def __enter__(self) -> "RelaySession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                conn.close()

    def _drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()

    # ------------------------------------------------------------------ one mail
    def send(self, mail_from: str, recipients: Sequence[str], raw: bytes) -> list[RcptResult]:
        """Deliver `raw` for `recipients` on this session; one result per recipient."""
        good: dict[str, SmtpAddress] = {}
        results = []
        for rcpt in recipients:
            addr = smtp_address(rcpt)
            if addr is None:
                results.append(RcptResult(rcpt, "perm", 0, "refused before sending: not a plain mail address"))
            else:
                good[rcpt] = addr
        if not good:
            return results
        sender = smtp_address(mail_from)
        if sender is None:
            return results + [RcptResult(r, "perm", 0, "bad envelope sender", False) for r in good]
        try:
            refused, held = self._transaction(sender, good, raw)
        except RelayTrouble as exc:
            outcome = "temp" if exc.temporary else "perm"
            return results + [RcptResult(r, outcome, exc.code, exc.reason, not exc.sender_fault) for r in good]
        for rcpt, addr in good.items():
            if rcpt in held:
                results.append(RcptResult(rcpt, "temp", 0, held[rcpt]))
            elif addr.text in refused:
                code, reason = refused[addr.text]
                results.append(RcptResult(rcpt, "temp" if 400 <= code < 500 else "perm", code, reason))
            else:
                results.append(RcptResult(rcpt, "sent", 250, ""))
        return results

    def _transaction(self, sender: SmtpAddress, rcpts: dict[str, SmtpAddress], raw: bytes
                     ) -> tuple[dict[str, tuple[int, str]], dict[str, str]]:
        """The refused recipients (by SMTP address) with (code, reason), and those held back
        (SMTPUTF8 needed, not offered) with the reason; RelayTrouble for the whole mail."""
        if self.broken is not None:
            raise self.broken
        for fresh in (self.conn is None, True):
            if self.conn is None:
                self._open()
            try:
                return self._on_connection(sender, rcpts, raw, fresh)
            except _Stale:
                self._drop()
            except smtplib.SMTPResponseException as exc:
                if exc.smtp_code == 421:            # the relay is closing this session
                    self._drop()
                raise self._trouble(exc) from None
            except (smtplib.SMTPException, ssl.SSLError, OSError, socket.timeout) as exc:
                self._drop()
                raise RelayTrouble(f"relay {self.relay.settings.host}:{self.relay.settings.port}: "
                                   f"{exc.__class__.__name__}: {_text(str(exc))}") from None
        raise RelayTrouble("relay closed the connection at once")            # pragma: no cover

    def _open(self) -> None:
        try:
            self.conn = self.relay.open()
            self.connections += 1
        except RelayTrouble as exc:
            self.broken = exc
            raise

    def _trouble(self, exc: smtplib.SMTPResponseException):
        self.dirty = True
        if isinstance(exc, smtplib.SMTPSenderRefused):
            return RelayTrouble(f"relay refused our sender: {exc.smtp_code} {_text(exc.smtp_error)}",
                                temporary=exc.smtp_code < 500, code=exc.smtp_code, sender_fault=True)
        return RelayTrouble(f"{exc.smtp_code} {_text(exc.smtp_error)}", temporary=exc.smtp_code < 500,
                            code=exc.smtp_code)

    def _on_connection(self, sender: SmtpAddress, rcpts: dict[str, SmtpAddress], raw: bytes, fresh: bool
                       ) -> tuple[dict[str, tuple[int, str]], dict[str, str]]:
        conn = self.conn
        if self.dirty:
            try:
                conn.rset()
            except (smtplib.SMTPServerDisconnected, OSError):
                if fresh:
                    raise
                raise _Stale() from None
            self.dirty = False
        now, held, utf8 = plan_utf8(sender, rcpts, raw, conn.has_extn("smtputf8"))
        if not now:
            return {}, held
        options = ["SMTPUTF8"] if utf8 else []
        to = [rcpts[r].text for r in now]
        self.mails += 1
        if conn.has_extn("size"):
            options = [f"SIZE={len(raw)}"] + options
        refused = (self._pipelined if conn.has_extn("pipelining") else self._classic)(sender.text, to, raw, options,
                                                                                   fresh)
        if refused:
            self.dirty = True
        return {r: (code, _text(msg)) for r, (code, msg) in refused.items()}, held

    def _check_stale(self, code: int, fresh: bool) -> None:
        """The answer to MAIL on a connection we had kept: closed (-1) or 421 (the relay timed
        the idle session out) means open a new one for this mail; on a new one, trouble."""
        if code == -1 or (code == 421 and not fresh):
            if fresh:
                raise smtplib.SMTPServerDisconnected("connection closed by the relay")
            self.mails -= 1
            raise _Stale()

    def _classic(self, sender: str, to: list[str], raw: bytes, options: list[str], fresh: bool
                 ) -> dict[str, tuple[int, bytes]]:
        """One command at a time (no PIPELINING offered): MAIL, each RCPT, DATA."""
        conn = self.conn
        try:
            code, resp = conn.mail(sender, options)
        except (smtplib.SMTPServerDisconnected, OSError):
            code, resp = -1, b""
        self._check_stale(code, fresh)
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, resp, sender)
        refused = {r: a for r in to if (a := conn.rcpt(r))[0] not in (250, 251)}
        if len(refused) == len(to):
            return refused
        code, resp = conn.data(raw)
        if code != 250:
            raise smtplib.SMTPDataError(code, resp)
        return refused

    def _pipelined(self, sender: str, to: list[str], raw: bytes, options: list[str], fresh: bool
                   ) -> dict[str, tuple[int, bytes]]:
        """MAIL, RCPT... and DATA in one write (RFC 2920), then the content; the refused
        recipients, or SMTPResponseException for the mail as a whole."""
        conn = self.conn
        enc = "utf-8" if "SMTPUTF8" in options else "ascii"
        lines = [f"MAIL FROM:<{sender}>{''.join(' ' + o for o in options)}", *(f"RCPT TO:<{r}>" for r in to), "DATA"]
        try:
            conn.send("".join(line + "\r\n" for line in lines).encode(enc))
            mail = conn.getreply()
        except (smtplib.SMTPServerDisconnected, OSError):
            mail = (-1, b"")
        self._check_stale(mail[0], fresh)
        answers = [conn.getreply() for _ in to]
        data = conn.getreply()
        if mail[0] != 250:
            raise smtplib.SMTPSenderRefused(mail[0], mail[1], sender)
        refused = {r: a for r, a in zip(to, answers) if a[0] not in (250, 251)}
        if data[0] != 354:
            if len(refused) == len(to):
                return refused                       # nothing accepted: DATA refused for that reason
            raise smtplib.SMTPDataError(*data)
        conn.send(dot_stuffed(raw) if len(refused) < len(to) else b".\r\n")
        done = conn.getreply()
        if len(refused) == len(to):
            return refused
        if done[0] != 250:
            raise smtplib.SMTPDataError(*done)
        return refused
