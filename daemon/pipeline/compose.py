"""Composing one outgoing mail: sanitised header values and rendered bodies into the
complete message as CRLF bytes - exactly the bytes `EmailMessage(policy=SMTP)` gives, or
`policy=SMTPUTF8` when an address has a UTF-8 local part.

Headers the policy would write unchanged (printable ASCII, single spaces, no encoded-word
look-alikes, folding at spaces) are written directly; everything else (non-ASCII, quoting
edge cases, overlong words, odd dates) is folded by the policy itself, cached per value.
No CR/LF reaches a header: every value is sanitised, and addresses are checked by
`mail_address` (daemon.model.idn): ASCII dot-atoms with IDN domains in A-labels, or a UTF-8
local part (RFC 6531). A mail to or from a UTF-8 local part is written with UTF-8 headers
(RFC 6532: the address and any other non-ASCII value raw, no encoded words); it can only go
out through a relay that offers SMTPUTF8, which the relay client checks (daemon.mailer
holds it otherwise). `outbound_address` is the strict ASCII form. Nothing here does I/O.
"""
from __future__ import annotations

import random as _random
import re
import sys
from dataclasses import dataclass
from datetime import datetime
from email import policy as email_policy
from email import quoprimime
from email.headerregistry import Address as HeaderAddress
from email.utils import format_datetime
from functools import lru_cache

from daemon.model import Address
from daemon.model.idn import smtp_address
from daemon.pipeline.addresses import sanitize
from daemon.pipeline.render import Rendered

POLICY = email_policy.SMTP
UTF8_POLICY = email_policy.SMTPUTF8
_ATOM_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_DOMAIN = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_MSGID = re.compile(r"^[\x21-\x3b\x3d\x3f-\x7e]{1,250}@[\x21-\x3b\x3d\x3f-\x7e]{1,250}$")
MAX_REFERENCES = 20
MAX_SUBJECT = 250


@dataclass(frozen=True)
class Headers:
    """The header values of one outgoing mail, before sanitising."""

    from_name: str
    from_email: str
    to: tuple[Address, ...]
    subject: str
    message_id: str
    date: datetime
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    reply_to: str | None = None
    auto: str = "auto-generated"
    loop: str = ""
    ticket_ref: str = ""
    lang: str | None = None


def outbound_address(email: str) -> str | None:
    """`email` as an ASCII dot-atom address we can put in a header and an SMTP command
    (IDN domains in punycode), or None: CR/LF, spaces, quotes, non-ASCII local parts and
    anything else odd are refused before any header or SMTP command is written."""
    local, at, domain = (email or "").rpartition("@")
    if not at or len(local) > 64:
        return None
    try:
        domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    if not _ATOM_LOCAL.match(local) or not _DOMAIN.match(domain) or len(domain) > 253:
        return None
    return f"{local}@{domain}"


def mail_address(email: str) -> str | None:
    """`email` as it goes into a header and an SMTP command, or None when unusable: the
    ASCII form of `outbound_address`, or a UTF-8 local part (NFC) with its domain, which
    needs UTF-8 headers and a relay offering SMTPUTF8."""
    ascii_form = outbound_address(email)
    if ascii_form is not None:
        return ascii_form
    addr = smtp_address(email)
    return addr.text if addr is not None and addr.utf8 else None


def needs_utf8(h: "Headers") -> bool:
    """Whether an address of the mail has a UTF-8 local part (UTF-8 headers, SMTPUTF8)."""
    emails = [h.from_email, *(a.email for a in h.to)] + ([h.reply_to] if h.reply_to else [])
    return any(outbound_address(e) is None and mail_address(e) is not None for e in emails)


def _ids(values: tuple[str, ...]) -> list[str]:
    """Well-formed message ids, deduplicated, first + last of a long chain."""
    ids = list(dict.fromkeys(v.strip().strip("<>") for v in values if v and _MSGID.match(v.strip().strip("<>"))))
    if len(ids) > MAX_REFERENCES:
        ids = ids[:1] + ids[-(MAX_REFERENCES - 1):]
    return ids


def compose(h: Headers, body: Rendered) -> bytes:
    """The complete message as CRLF bytes (text part, plus an HTML alternative if any),
    exactly as `EmailMessage(policy=SMTP)` with these headers and `set_content` /
    `add_alternative` (quoted-printable UTF-8) writes it. Headers the policy would write
    unchanged are written directly; anything else (non-ASCII, encoded-word look-alikes,
    quoting edge cases, overlong words) is folded by the policy itself. With a UTF-8 local
    part (`needs_utf8`) the policy is SMTPUTF8 and the header section is UTF-8 (RFC 6532)."""
    utf8 = needs_utf8(h)
    head = [_addresses("From", ((h.from_name, h.from_email),), utf8),
            _addresses("To", tuple((a.name, a.email) for a in h.to), utf8)]
    subject = sanitize(h.subject)
    head.append(_header("Subject", subject if len(subject) <= MAX_SUBJECT else subject[:MAX_SUBJECT - 1] + "…", utf8))
    date = format_datetime(h.date)
    head.append(f"Date: {date}{_NL}" if _DATE.match(date) else _policy_fold("Date", date, utf8))
    head.append(_header("Message-ID", f"<{h.message_id}>", utf8))
    parent = _ids((h.in_reply_to,) if h.in_reply_to else ())
    refs = _ids(h.references)
    if parent:
        head.append(_header("In-Reply-To", f"<{parent[0]}>", utf8))
    if refs:
        head.append(_header("References", " ".join(f"<{r}>" for r in refs), utf8))
    if h.reply_to:
        head.append(_addresses("Reply-To", (("", h.reply_to),), utf8))
    head.append(_header("Auto-Submitted", h.auto, utf8))
    head.append(f"X-Auto-Response-Suppress: All{_NL}")
    head.append(_header("X-Loop", sanitize(h.loop), utf8))
    if h.ticket_ref:
        head.append(_header("X-Helpdesk-Ticket", sanitize(h.ticket_ref), utf8))
    text = _qp(body.text)
    if body.html is None:
        head.append(_TEXT_HEAD.format("plain") + "MIME-Version: 1.0" + _NL)
        parts = text
    else:
        html, boundary = _qp(body.html), _boundary()
        head.append(f'MIME-Version: 1.0{_NL}Content-Type: multipart/alternative;{_NL} boundary="{boundary}"{_NL}')
        parts = (f"--{boundary}{_NL}{_TEXT_HEAD.format('plain')}{_NL}{text}{_NL}--{boundary}{_NL}"
                 f"{_TEXT_HEAD.format('html')}MIME-Version: 1.0{_NL}{_NL}{html}{_NL}--{boundary}--{_NL}")
    if h.lang:                                  # after the content headers, as set_content leaves them
        head.append(_header("Content-Language", sanitize(h.lang), utf8))
    return ("".join(head) + _NL + parts).encode("utf-8" if utf8 else "ascii")


_NL = "\r\n"
_MAXLEN = POLICY.max_line_length
_PLAIN = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*\Z")         # printable ASCII words, single spaces
_SPECIALS = frozenset('()<>@,:;.\\"[]')                            # display names with these are quoted
_NLCRE = re.compile(r"\r\n|\r|\n")
_DATE = re.compile(r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\Z")   # as the policy re-writes it
_TEXT_HEAD = 'Content-Type: text/{}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n'
_BOUNDARY_DIGITS = len(repr(sys.maxsize - 1))


def _plain(value: str) -> bool:
    """Whether the policy writes `value` as it is (no encoding, no quoting decisions)."""
    return "=?" not in value and _PLAIN.match(value) is not None


def _header(name: str, value: str, utf8: bool = False) -> str:
    """One header field, folded as email.policy.SMTP (SMTPUTF8 when `utf8`) folds an
    unstructured value."""
    if not _plain(value):
        return _policy_fold(name, value, utf8)
    if len(name) + 2 + len(value) <= _MAXLEN:
        return f"{name}: {value}{_NL}"
    if len(value) < _MAXLEN:                    # the policy moves the whole value to the next line
        return f"{name}:{_NL} {value}{_NL}"
    words = value.split(" ")
    if any(len(w) >= _MAXLEN for w in words):   # too long for any line: the policy encodes it
        return _policy_fold(name, value, utf8)
    lines, line = [], name + ":"
    for w in words:
        if len(line) + 1 + len(w) <= _MAXLEN:
            line += " " + w
        else:
            lines.append(line)
            line = " " + w
    lines.append(line)
    return _NL.join(lines) + _NL


@lru_cache(maxsize=1024)
def _policy_fold(name: str, value: str, utf8: bool = False) -> str:
    policy = UTF8_POLICY if utf8 else POLICY
    return policy.header_store_parse(name, value)[1].fold(policy=policy)


@lru_cache(maxsize=1024)
def _addresses(name: str, boxes: tuple[tuple[str, str], ...], utf8: bool = False) -> str:
    """An address header of (display name, address) pairs; refuses unusable addresses (and
    UTF-8 local parts unless `utf8`: the header section is then UTF-8)."""
    checked, plain = [], []
    for display, email in boxes:
        addr = mail_address(email) if utf8 else outbound_address(email)
        if addr is None:
            raise ValueError(f"refusing unusable address {sanitize(email)[:80]!r}")
        display = sanitize(display)[:100]
        checked.append((display, addr))
        if not display:
            plain.append(addr)
        elif _plain(display):                   # as headerregistry.Address.__str__ writes it
            quoted = display if _SPECIALS.isdisjoint(display) else \
                '"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"'
            plain.append(f"{quoted} <{addr}>")
        else:
            plain.append("")
    line = f"{name}: {', '.join(plain)}"
    if plain and all(plain) and line.isascii() and len(line) <= _MAXLEN:
        return line + _NL
    value = [HeaderAddress(display_name=d, username=a.rpartition("@")[0], domain=a.rpartition("@")[2])
             for d, a in checked]
    policy = UTF8_POLICY if utf8 else POLICY
    return policy.header_store_parse(name, value)[1].fold(policy=policy)


def _qp(text: str) -> str:
    """A body as set_content(cte="quoted-printable") encodes it, with CRLF line ends."""
    lines = text.encode("utf-8").splitlines()
    return _NLCRE.sub(_NL, quoprimime.body_encode((b"\n".join(lines) + b"\n").decode("latin-1"), _MAXLEN))


def _boundary() -> str:
    """A MIME boundary in the email package's format (it never occurs in QP-encoded parts:
    they cannot contain "==")."""
    return f"{'=' * 15}{_random.randrange(sys.maxsize):0{_BOUNDARY_DIGITS}d}=="
