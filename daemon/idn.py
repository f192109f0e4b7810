"""International mail addresses: IDN domains (RFC 5890) and UTF-8 local parts (RFC 6531).

Pure helpers, no I/O. A domain is compared by its ASCII form (`domain_key`: A-labels,
lower case), so `bücher.example` in `[smtp] domains` or an agent's address matches mail for
`xn--bcher-kva.example` and the other way round; parsed addresses carry their domain in
that form (`canonical_domain`, used by daemon.pipeline.addresses). `smtp_address` checks an address for an
SMTP command: an ASCII local part goes out with its domain in A-labels (no extension
needed); a UTF-8 local part needs the relay's SMTPUTF8. Anything with CR/LF, controls,
spaces, quotes or brackets is refused. IDNA 2003 from the standard library (the codec
daemon.pipeline.compose already uses); no extra dependency.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from daemon.errors import ConfigError

_ASCII_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_A_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_NOT_IN_UTF8_ATOM = set("\"(),:;<>@[\\] \t")


def domain_key(domain: str) -> str:
    """The domain in A-labels, lower case, without a trailing dot. ValueError when it is not
    a valid (internationalised) domain name."""
    name = domain.strip().rstrip(".")
    try:
        ascii_name = name.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ValueError(f"not a valid domain name: {domain!r}") from None
    if not _A_DOMAIN.match(ascii_name):
        raise ValueError(f"not a valid domain name: {domain!r}")
    return ascii_name


def canonical_domain(domain: str) -> str:
    """`domain_key` when the domain is a valid (IDN) name, else just lower-cased: for
    addresses read from mail, where an odd domain is kept rather than dropped here."""
    if domain.isascii():                          # the common case, and A-labels stay as they are
        return domain.lower()
    try:
        return domain_key(domain)
    except ValueError:
        return domain.lower()


def canonical_address(address: str) -> str:
    """`local@domain` with the domain by `canonical_domain`, the local part lower-cased
    (how agents and requesters are compared)."""
    local, at, domain = address.strip().rpartition("@")
    return f"{local.lower()}@{canonical_domain(domain)}" if at else address.strip().lower()


def domain_keys(domains, where: str) -> tuple[str, ...]:
    """Configured domains by `domain_key`; ConfigError naming `where` for an invalid one."""
    out = []
    for d in domains:
        try:
            out.append(domain_key(d))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return tuple(dict.fromkeys(out))


def address_domain(address: str) -> str:
    """The domain of `address` by `domain_key`, "" when it has none or an invalid one."""
    _, at, domain = address.rpartition("@")
    try:
        return domain_key(domain.strip().strip(">")) if at else ""
    except ValueError:
        return ""


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
