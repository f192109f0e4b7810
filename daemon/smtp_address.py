"""Addresses for SMTP commands (RFC 5321, RFC 6531): `smtp_address` checks an address for
MAIL FROM / RCPT TO - an ASCII local part goes out with its domain in A-labels (no extension
needed); a UTF-8 local part needs the relay's SMTPUTF8. Anything with CR/LF, controls,
spaces, quotes or brackets is refused. `plan_utf8` decides which recipients go out when
the relay does or does not offer SMTPUTF8. Pure helpers, no I/O (daemon.model.idn
re-exports them; the domains are daemon.idn's).
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from daemon.idn import domain_key

_ASCII_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_NOT_IN_UTF8_ATOM = set("\"(),:;<>@[\\] \t")


@dataclass(frozen=True)
class SmtpAddress:
    """An address ready for MAIL FROM / RCPT TO; `utf8` when it needs SMTPUTF8."""

    text: str
    utf8: bool


def smtp_address(address: str) -> SmtpAddress | None:
    """`address` for an SMTP command, or None when it is malformed or hostile."""
    local, at, domain = (address or "").rpartition("@")
    if not at or not local or len(local.encode("utf-8")) > 64:
        return None
    try:
        ascii_domain = domain_key(domain)
    except ValueError:
        return None
    if _ASCII_LOCAL.match(local):
        return SmtpAddress(f"{local}@{ascii_domain}", False)
    if not _utf8_local(local):
        return None
    return SmtpAddress(f"{unicodedata.normalize('NFC', local)}@{domain.strip().rstrip('.')}", True)


def _utf8_local(local: str) -> bool:
    """A dot-atom of atext extended by non-ASCII letters, marks, numbers, symbols, punctuation."""
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return False
    for ch in local:
        if ch in _NOT_IN_UTF8_ATOM or ord(ch) < 0x21 or ord(ch) == 0x7F:
            return False
        if ord(ch) > 0x7F and unicodedata.category(ch)[0] in "CZ":      # controls, format, spaces
            return False
    return True


def header_needs_utf8(raw: bytes) -> bool:
    """The message's header section holds raw non-ASCII bytes (RFC 6532 UTF-8 headers)."""
    end = raw.find(b"\r\n\r\n")
    head = raw if end < 0 else raw[:end]
    return not head.isascii()


HELD = "held: the relay does not offer SMTPUTF8 (RFC 6531), which this {what} needs; not sent rather than mangled"


def plan_utf8(sender: SmtpAddress, rcpts: dict[str, SmtpAddress], raw: bytes, offered: bool
              ) -> tuple[list[str], dict[str, str], bool]:
    """Which recipients go out now, which are held (with the reason), and whether MAIL FROM
    takes the SMTPUTF8 parameter, given whether the relay offers SMTPUTF8. A UTF-8 sender
    or UTF-8 headers need it for the whole message; a UTF-8 local part only for that
    recipient."""
    whole = sender.utf8 or header_needs_utf8(raw)
    if offered:
        return list(rcpts), {}, whole or any(a.utf8 for a in rcpts.values())
    if whole:
        return [], {r: HELD.format(what="message") for r in rcpts}, False
    held = {r: HELD.format(what="address") for r, a in rcpts.items() if a.utf8}
    return [r for r in rcpts if r not in held], held, False
