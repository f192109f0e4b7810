"""Header handling for the parse stage: the header block, charsets, RFC 2047 words,
sanitising, mailbox lists, message ids, dates and display file names.

Pure helpers used by `parse` (and `machine`). They turn the raw bytes and strings of a
mail header into clean text and `Address` values and never raise on bad input: an
unknown or lying charset falls back (declared -> utf-8 -> a legacy guess -> latin-1),
a broken encoded word stays literal, an unusable mailbox is dropped. Every string that
leaves this module has no CR, LF or other control character. Only `scan_header_block`
raises, with the parse stage's own `ParseError`.
"""
from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from daemon.errors import ParseError
from daemon.model import Address
from daemon.pipeline.mailboxes import split_mailboxes
from daemon.pipeline.charsets import codec_for, decode_bytes, decode_text, guess_legacy  # noqa: F401 (re-exported)
from daemon.model.idn import canonical_domain

_SURROGATE = re.compile("[\ud800-\udfff]")
_QUOTED_PAIR = re.compile(r"\\(.)")
_BARE_QUOTE = re.compile(r'(?<!\\)"')
_CTRLS = [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]    # C0, DEL, C1, LS, PS
_CTRL_TABLE = {c: " " for c in _CTRLS}
_BIDI_TABLE = {c: None for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E,
                                  0x200F, 0x061C, 0xFEFF]}
_FILENAME_TABLE = {**{c: None for c in _CTRLS}, **_BIDI_TABLE}
_RESERVED_NAMES = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$",
                   *(f"{p}{n}" for p in ("COM", "LPT") for n in "0123456789¹²³")}
_EXTENSIONS = {
    "text/plain": ".txt", "text/html": ".html", "message/rfc822": ".eml",
    "message/global": ".eml", "text/calendar": ".ics", "application/pdf": ".pdf",
    "image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "application/zip": ".zip",
    "application/ms-tnef": ".dat", "application/vnd.ms-tnef": ".dat", "text/csv": ".csv",
    "application/pgp-signature": ".asc", "application/pgp-encrypted": ".pgp",
    "application/pkcs7-signature": ".p7s", "application/pkcs7-mime": ".p7m",
    "application/json": ".json", "application/xml": ".xml", "text/xml": ".xml",
    "message/delivery-status": ".txt", "message/feedback-report": ".txt",
    "message/disposition-notification": ".txt", "text/rfc822-headers": ".txt",
}
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,64})\?([QqBb])\?([^?]*)\?=")
_DOMAIN_OK = re.compile(r"^(?:\[[0-9A-Fa-f:.]{2,45}\]|[^\s@<>()\[\],;:\\\"]{1,253})$")
_LOCAL_OK = re.compile(r'^(?:"[^"\\]*(?:\\.[^"\\]*)*"|[^\s@<>()\[\],;:\\"]{1,64})$')
_RAW_WORD = re.compile(rb"=\?([^?\s]{1,64})\?([QqBb])\?([^?]*)\?=")
_HIGH_BYTE = re.compile(rb"[\x80-\xff]")
_HEADER_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]*:")        # email.feedparser.headerRE
_FIELD_START = re.compile(rb"(?<=\n)(?![ \t])")
_LATE_MIME = re.compile(rb"\n(?:content-type|mime-version|content-transfer-encoding):", re.I)
_MAIL_FIELDS = {"from", "to", "cc", "subject", "date", "message-id", "received", "sender",
                "return-path", "reply-to", "mime-version", "content-type", "delivered-to",
                "in-reply-to", "references", "bcc", "resent-from", "newsgroups"}
_ANGLE_ID = re.compile(r"<([^<>]{1,998})>")
MAX_ADDRESSES = 1000
MAX_IDS = 100


@dataclass(frozen=True)
class Field:
    """One field of the top header block as it stood on the wire (line ends as LF)."""

    name: str
    value: bytes                # raw value, folding newlines kept
    raw: bytes                  # the whole field with its line endings


def scan_header_block(text: bytes, *, max_fields: int, max_bytes: int) -> tuple[list[Field], int]:
    """Cut the top header block of LF-only `text` into fields as email.feedparser
    reads it: it ends at a blank line or at the first line that is neither a field nor
    a continuation, except that such a line counts as a fold that lost its indent when
    MIME fields still follow it before the blank line (else the mail's Content-Type
    would be lost). Returns the fields and the offset where the rest begins."""
    start = text.find(b"\n") + 1 if text.startswith(b"From ") else 0    # mbox From_ line
    stop = text.find(b"\n\n", start)
    stop = len(text) if stop < 0 else stop + 1
    if stop - start > max_bytes:
        raise ParseError("too_many_headers", f"header block over {max_bytes} bytes")
    fields: list[Field] = []
    offset = start
    for chunk in _FIELD_START.split(text[start:stop]):
        if chunk[:1] not in (b" ", b"\t") and not chunk.startswith(b"From "):
            if _HEADER_LINE.match(chunk):
                name, _, value = chunk.partition(b":")
                if name:
                    fields.append(Field(name.decode("ascii"), value.strip(), chunk))
            elif fields and _LATE_MIME.search(text, offset, stop):
                last = fields[-1]
                fields[-1] = Field(last.name, last.value + b"\n " + chunk.strip(),
                                   last.raw + b" " + chunk)
            else:
                break                                   # the body starts here
            if len(fields) > max_fields:
                raise ParseError("too_many_headers", f"over {max_fields} header fields")
        offset += len(chunk)
    if not _MAIL_FIELDS.intersection(f.name.lower() for f in fields):
        raise ParseError("not_mail", "no RFC 5322 header block")
    if not fields[-1].raw.endswith(b"\n"):
        fields[-1] = Field(fields[-1].name, fields[-1].value, fields[-1].raw + b"\n")
    return fields, offset


def sanitize(text: str) -> str:
    """One line of text: control characters become spaces, runs of space collapse."""
    return " ".join(text.translate(_CTRL_TABLE).split())


def strip_bidi(text: str) -> str:
    """Remove bidirectional override/embedding/isolate marks (display spoofing)."""
    return text.translate(_BIDI_TABLE)


def _word_bytes(encoding: str, payload: str, charset: str) -> bytes | None:
    """The bytes an encoded word's payload stands for. Raw 8-bit text inside the word
    (old clients send `=?iso-8859-1?q?caf\xe9?=`) is taken as text of the word's own
    charset: surrogate escapes back to their bytes, decoded characters re-encoded."""
    try:
        raw = payload.encode("ascii")
    except UnicodeError:
        return _raw_word_bytes(payload, charset)
    try:
        if encoding in "Bb":
            raw = b"".join(raw.split()).rstrip(b"=")      # white space a client folded into it
            return binascii.a2b_base64(raw + b"=" * (-len(raw) % 4))
        return binascii.a2b_qp(raw, header=True)
    except (binascii.Error, ValueError):
        return None


def _raw_word_bytes(payload: str, charset: str) -> bytes:
    try:
        return payload.encode("ascii", "surrogateescape")
    except UnicodeError:
        pass
    try:
        return payload.encode(codec_for(charset) or "utf-8")
    except (UnicodeError, LookupError):
        return payload.encode("utf-8", "surrogateescape")


def _escape_high(m: re.Match) -> bytes:
    return b"=%02X" % m.group(0)[0]


def repair_raw_words(raw: bytes) -> bytes:
    """A raw header value whose encoded words carry raw 8-bit bytes, with those bytes
    written as `=XX` (a B word of raw text becomes a Q word), so they are decoded by the
    word's own charset and not by the guess made for the whole header."""
    def fix(m: re.Match) -> bytes:
        payload = m.group(3)
        if payload.isascii():
            return m.group(0)
        if m.group(2) in b"Bb":
            payload = b"".join(b"=%02X" % c for c in payload)
        else:
            payload = _HIGH_BYTE.sub(_escape_high, payload)
        return b"=?" + m.group(1) + b"?Q?" + payload + b"?="
    return _RAW_WORD.sub(fix, raw)


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words (not sanitised). Adjacent words of one charset are
    joined before decoding, so a character split across two words survives."""
    if "=?" not in value:
        return value
    out: list[str] = []
    pending: list[bytes] = []
    pending_cs = ""
    pos = 0
    for m in _ENCODED_WORD.finditer(value):
        charset = m.group(1).split("*", 1)[0]
        data = _word_bytes(m.group(2), m.group(3), charset)
        if data is None:
            continue                      # stays literal, as part of the next gap
        gap = value[pos:m.start()]
        between_words = pos > 0 and not gap.strip()   # RFC 2047: that space is dropped
        if not (between_words and charset.lower() == pending_cs.lower()):
            if pending:
                out.append(decode_bytes(b"".join(pending), pending_cs))
                pending.clear()
            if not between_words:
                out.append(gap)
        pending.append(data)
        pending_cs = charset
        pos = m.end()
    if pending:
        out.append(decode_bytes(b"".join(pending), pending_cs))
    out.append(value[pos:])
    return "".join(out)


def unfolded(raw: bytes, hint: str | None = None) -> str:
    """A raw header value as text, unfolded (RFC 5322), encoded words still encoded.
    Raw ISO-2022-JP (7-bit, with escape sequences) is decoded as such."""
    if not raw.isascii() and b"=?" in raw:
        raw = repair_raw_words(raw)
    if raw.isascii():
        text = decode_bytes(raw, "iso-2022-jp") if b"\x1b" in raw else raw.decode("ascii")
    else:
        text = decode_bytes(raw, hint, utf8_first=True)
    return text.replace("\n", "")


def header_text(raw: bytes | str, hint: str | None = None) -> str:
    """A raw header value (bytes from the wire, or str) as one clean line of text."""
    return sanitize(decode_words(unfolded(raw, hint) if isinstance(raw, bytes) else raw))


def clean_email(addr: str) -> str | None:
    """`local@domain` with the domain lower-cased, or None if it is not a usable
    mailbox (no @, spaces, controls, brackets, empty labels, over-long)."""
    addr = addr.strip()
    if addr.startswith("@") and ":" in addr:          # obsolete source route
        addr = addr.rsplit(":", 1)[1]
    if not addr or len(addr) > 320 or addr != sanitize(addr) or "@" not in addr:
        return None
    local, domain = addr.rsplit("@", 1)
    domain = canonical_domain(domain.rstrip("."))            # IDN: A-labels, so both spellings compare equal
    if not _LOCAL_OK.match(local) or not _DOMAIN_OK.match(domain) or ".." in domain:
        return None
    return f"{local}@{domain}"


def _unquote(phrase: str) -> str:
    """A display name without its quotes; quoted pairs (`\\"`) stand for their character."""
    phrase = phrase.strip()
    if len(phrase) >= 2 and phrase[0] == '"' and phrase[-1] == '"' and '"' not in _QUOTED_PAIR.sub("", phrase[1:-1]):
        return _QUOTED_PAIR.sub(r"\1", phrase[1:-1])
    return _QUOTED_PAIR.sub(r"\1", _BARE_QUOTE.sub("", phrase))


@lru_cache(maxsize=64)                # machine detection asks again for the same headers
def parse_addresses(value: str) -> tuple[Address, ...]:
    """Mailboxes from an unfolded address header value (RFC 2047 words still encoded,
    so an encoded comma or bracket cannot forge a second address). Groups such as
    `undisclosed-recipients:;` are flattened; unusable entries and repeats dropped."""
    found: list[Address] = []
    seen: set[str] = set()
    words = ""                  # a name cut off by an unquoted comma ("Doe, John <j@x.org>")
    for phrase, angle, comment in split_mailboxes(value):
        email = clean_email(angle) if angle else clean_email(phrase)
        name = _unquote(phrase) if angle else _QUOTED_PAIR.sub(r"\1", comment)
        if email is None and not angle:
            email, name = _bare_after_name(phrase, comment)
        if email is None and not angle and phrase.strip() and "@" not in phrase:
            words = f"{words}, {_unquote(phrase)}" if words else _unquote(phrase)
            continue
        if angle and words and email is not None:
            name = f"{words}, {name}" if name else words
        words = ""
        if email is None or email.lower() in seen:
            continue
        seen.add(email.lower())
        found.append(Address(name=strip_bidi(sanitize(decode_words(name))), email=email))
    return tuple(found)


def _bare_after_name(phrase: str, comment: str) -> tuple[str | None, str]:
    """`John Smith john@example.org` (no angle brackets): the last word that is an
    address, with the other words as the name."""
    words = phrase.split()
    for k in range(len(words) - 1, -1, -1):
        if "@" in words[k] and (email := clean_email(words[k].strip("<>[]'\",;"))):
            name = " ".join(words[:k] + words[k + 1:])
            return email, _unquote(name) or comment
    return None, comment


def message_ids(value: str) -> tuple[str, ...]:
    """Message-IDs in header order without brackets, deduplicated; junk between them
    is ignored; bare `x@y` tokens count when there is no bracketed id. At most
    MAX_IDS (the first and the newest ones are kept)."""
    ids = [sanitize(i).replace(" ", "") for i in _ANGLE_ID.findall(value)]
    if not ids:
        ids = [sanitize(t.strip("<>,;\"'()")) for t in value.split() if "@" in t]
    ids = list(dict.fromkeys(i for i in ids if i and len(i) <= 998))
    if len(ids) > MAX_IDS:
        ids = ids[:1] + ids[-(MAX_IDS - 1):]
    return tuple(ids)


def parse_date(value: str | None) -> datetime | None:
    """A Date header as an aware UTC datetime (no zone means UTC); None if unusable."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return when.astimezone(timezone.utc)
    except (TypeError, ValueError, IndexError, OverflowError, AttributeError):
        return None


def display_filename(raw: str | None, index: int, content_type: str) -> str:
    """An attachment's file name for display only: RFC 2047 decoded, basename only, no
    control/bidi characters, Windows device names prefixed, at most 255 characters;
    `attachment-N.ext` when nothing usable is left."""
    name = decode_words(raw or "")
    if _SURROGATE.search(name):       # raw 8-bit bytes in the parameter
        name = decode_bytes(name.encode("utf-8", "surrogateescape"), utf8_first=True)
    name = name.replace("\\", "/").rsplit("/", 1)[-1].translate(_FILENAME_TABLE)
    name = " ".join(name.split()).strip(" .")
    if name.split(".", 1)[0].rstrip().upper() in _RESERVED_NAMES:
        name = "_" + name
    if len(name) > 255:
        stem, dot, ext = name.rpartition(".")
        ext = dot + ext if stem and len(ext) <= 16 else ""
        name = name[:255 - len(ext)] + ext
    if not name:
        default = ".txt" if content_type.startswith("text/") else ".bin"
        name = f"attachment-{index}{_EXTENSIONS.get(content_type, default)}"
    return name
