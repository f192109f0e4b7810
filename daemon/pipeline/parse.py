"""Parse stage: raw RFC 5322 bytes -> `ParsedMessage`. Pure: no I/O, no logging.

The first stage of the pure pipeline and the only importer of mail-parser. Cheap limits
run on the bytes first (size, header block, an upper bound on MIME parts and depth).
The top header block is cut from the original bytes and decoded by `addresses` (handing
every address, Received and Date header to mail-parser would triple the cost for values
we decode ourselves anyway), so mail-parser gets the MIME headers and the body, after
`header_caps` has cut parameter floods and over-long fields in every part's header
block (the stdlib is quadratic on them); the tree is built with a policy that writes
headers back as they came (linear), and exact part and depth limits are checked on it.
Bodies and attachments come from the tree through `mime_parts` (which also repairs
slightly broken structures) and the charset alias and repair layer (`charsets`). The
content digest covers the message without transport trace headers. Mail we cannot
process raises `ParseError(reason, detail)`; no other exception escapes. A caller that
must not trust the parser to return uses daemon.parse_guard (a time budget).
"""
from __future__ import annotations

import hashlib
import re
from email import message_from_bytes
from email.message import Message

import mailparser
from mailparser.exceptions import MailParserRecursionError

from daemon.errors import ParseError
from daemon.model import Address, ParsedMessage
from daemon.pipeline import addresses as hdr
from daemon.pipeline.header_caps import cap_headers
from daemon.pipeline.html_text import html_to_text  # noqa: F401 (part of this stage's API)
from daemon.pipeline.machine import PartView, judge
from daemon.pipeline.mime_parts import AS_RECEIVED, BodyParts
from daemon.pipeline.parse_limits import ParseLimits  # noqa: F401 (re-exported: part of this stage's API)
from daemon.pipeline.mime_parts import children as _children


DEFAULT_LIMITS = ParseLimits()

_BOM = b"\xef\xbb\xbf"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_BOUNDARY = re.compile(rb'boundary\s*=\s*(?:"([^"\n]{1,200})"|([^\s;"]{1,200}))', re.I)
_DELIMITER = re.compile(rb"\n--([^\n]{1,210})")
_MESSAGE_TYPE = re.compile(rb"content-type:[ \t]*message/", re.I)
_CHARSET = re.compile(rb'charset\s*=\s*"?([\w.:-]{1,40})', re.I)
_TRACE_FIELDS = {"received", "return-path", "delivered-to", "x-original-to", "envelope-to",
                 "authentication-results", "x-received", "received-spf", "x-virus-scanned",
                 "x-greylist", "status", "x-status", "x-keywords", "x-uid", "x-mozilla-status",
                 "x-mozilla-status2", "x-mozilla-keys"}
_TRACE_PREFIXES = ("x-envelope-", "arc-", "x-spam-", "x-helpdesk-")
_MIME_FIELDS = ("content-", "mime-version")
_PARTS_SLACK = 4            # an estimate this far over the part limit is not parsed at all
_SYNTHETIC_DOMAIN = "synthetic.helpdeskd.invalid"
_VIEW_CHARS = 65536
_MAX_DEFECTS = 50


def parse(raw: bytes, *, limits: ParseLimits = DEFAULT_LIMITS,
          envelope_mail_from: str | None = None) -> ParsedMessage:
    """Turn one raw mail into a `ParsedMessage`, or raise `ParseError`.

    `envelope_mail_from` is the SMTP MAIL FROM when the intake knows it ("" for `<>`);
    it only feeds machine-mail detection."""
    try:
        return _parse(raw, limits, envelope_mail_from)
    except ParseError:
        raise
    except RecursionError:
        raise ParseError("too_deep", "recursion limit reached while parsing") from None
    except Exception as exc:  # noqa: BLE001 - the contract: nothing else escapes
        detail = hdr.sanitize(f"{type(exc).__name__}: {exc}")[:200]
        raise ParseError("parse_failed", detail) from None


def _parse(raw: bytes, limits: ParseLimits, envelope_mail_from: str | None) -> ParsedMessage:
    if len(raw) > limits.max_bytes:
        raise ParseError("too_large", f"{len(raw)} bytes > {limits.max_bytes}")
    data = raw[len(_BOM):] if raw.startswith(_BOM) else raw
    if data.startswith(_OLE_MAGIC):
        raise ParseError("not_mail", "OLE2 compound file (an Outlook .msg?), not RFC 5322")
    text = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    fields, header_end = hdr.scan_header_block(text, max_fields=limits.max_headers,
                                               max_bytes=limits.max_header_bytes)
    delimiters = _estimate_structure(text, limits)
    rest = text[header_end:].rstrip(b"\n") + b"\n"
    digest = hashlib.sha256(b"".join(f.raw for f in fields if not _is_trace(f.name)))
    digest.update(rest)
    mime = b"".join(f.raw for f in fields if f.name.lower().startswith(_MIME_FIELDS))
    if not mime and not rest.startswith(b"\n"):
        mime = b"\n"                  # no MIME headers: the body must not pass for headers
    shift = len(mime) - header_end         # offsets in text -> offsets in mime + rest
    content, defects = cap_headers(mime + rest, [0] + [p + shift for p in delimiters if p >= header_end])
    msg, library_defects = _mime_tree(content, limits)
    hint = _charset_hint(text)
    headers = tuple((f.name, hdr.header_text(f.value, hint)) for f in fields
                    if not f.name.lower().startswith("x-helpdesk-"))
    body = BodyParts(limits.max_text_chars, lambda tree: _exact_structure(tree, limits))
    body.collect(msg)
    body_text = body.text()
    defects += library_defects
    views = body.views if any(t.strip() for t in body.texts) or not body_text else \
        [*body.views, PartView("text/plain", body_text[:_VIEW_CHARS])]
    mid, synthetic = _message_id(fields, digest.hexdigest())

    def addresses(name: str) -> tuple[Address, ...]:
        values = [hdr.unfolded(f.value, hint) for f in fields if f.name.lower() == name]
        return hdr.parse_addresses(", ".join(values)) if values else ()

    return ParsedMessage(
        message_id=mid, message_id_synthetic=synthetic, content_digest=digest.hexdigest(),
        subject=_first(headers, "subject") or "", from_addr=next(iter(addresses("from")), None),
        reply_to=addresses("reply-to"), to=addresses("to"), cc=addresses("cc"),
        date=hdr.parse_date(_first(headers, "date")),
        in_reply_to=hdr.message_ids(_raw_first(fields, "in-reply-to", hint)),
        references=hdr.message_ids(_raw_first(fields, "references", hint)),
        text=body_text, html=body.html, attachments=tuple(body.attachments), headers=headers,
        defects=tuple(dict.fromkeys(defects + body.defects))[:_MAX_DEFECTS],
        machine=judge(headers, views, envelope_mail_from=envelope_mail_from))


def _is_trace(name: str) -> bool:
    low = name.lower()
    return low in _TRACE_FIELDS or low.startswith(_TRACE_PREFIXES)


def _charset_hint(text: bytes) -> str | None:
    m = _CHARSET.search(text, 0, 65536)
    return m.group(1).decode("ascii") if m else None


def _first(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name), None)


def _raw_first(fields: list[hdr.Field], name: str, hint: str | None) -> str:
    return hdr.unfolded(next((f.value for f in fields if f.name.lower() == name), b""), hint)


def _message_id(fields: list[hdr.Field], digest: str) -> tuple[str, bool]:
    value = _raw_first(fields, "message-id", None)
    ids = hdr.message_ids(value)
    if ids:
        return ids[0], False
    bare = hdr.sanitize(value).replace(" ", "").strip("<>")
    if bare and len(bare) <= 998:
        return bare, False
    return f"{digest[:32]}@{_SYNTHETIC_DOMAIN}", True


# -- limits on the structure --------------------------------------------------------------

def _estimate_structure(text: bytes, limits: ParseLimits) -> list[int]:
    """Cheap bounds, so a 10,000-part or 1,000-deep message never reaches the parser:
    depth from how the spans of the declared boundaries' delimiter lines nest (one with
    no closing delimiter reaches to the end), parts
    from the number of delimiter lines plus message/* types. A borderline estimate
    (many attached messages, or a few too many delimiters) is settled by building the
    tree with the stdlib and counting exactly. Returns where the line after each opening
    delimiter line starts (a part's header block)."""
    declared = {a or b for a, b in _BOUNDARY.findall(text)}
    spans: dict[bytes, list[int]] = {}
    opening: list[int] = []
    closed: set[bytes] = set()
    for m in _DELIMITER.finditer(text) if declared else ():
        line = m.group(1).rstrip(b" \t")
        if line in declared:
            opening.append(m.end() + 1)
        elif line.endswith(b"--"):
            line = line[:-2]
            closed.add(line)
        if line in declared:
            spans.setdefault(line, []).append(m.start())
    # a multipart never closed (a truncated message) stays open to the end of the text
    events = sorted([(p[0], 1) for p in spans.values()] +
                    [(p[-1] + 1 if b in closed else len(text), -1) for b, p in spans.items()])
    depth = deepest = 0
    for _, step in events:
        depth += step
        deepest = max(deepest, depth)
    if deepest > limits.max_depth:
        raise ParseError("too_deep", f"about {deepest} nested multiparts")
    messages = len(_MESSAGE_TYPE.findall(text))
    parts = sum(map(len, spans.values())) - len(spans) + messages
    if parts > _PARTS_SLACK * limits.max_parts:
        raise ParseError("too_many_parts", f"about {parts} MIME parts")
    if parts > limits.max_parts or deepest + messages > limits.max_depth:
        _exact_structure(_stdlib_tree(text), limits)
    return opening


def _stdlib_tree(content: bytes) -> Message:
    try:
        return message_from_bytes(content, policy=AS_RECEIVED)
    except RecursionError:
        raise ParseError("too_deep", "MIME nesting too deep to parse") from None


def _exact_structure(msg: Message, limits: ParseLimits) -> None:
    """Count MIME entities and nesting on the parsed tree, iteratively."""
    stack, count = [(msg, 0)], 0
    while stack:
        part, depth = stack.pop()
        count += 1
        if count > limits.max_parts:
            raise ParseError("too_many_parts", f"more than {limits.max_parts} MIME parts")
        if depth > limits.max_depth:
            raise ParseError("too_deep", f"MIME nesting deeper than {limits.max_depth}")
        stack.extend((p, depth + 1) for p in _children(part))


def _mime_tree(content: bytes, limits: ParseLimits) -> tuple[Message, list[str]]:
    """Parse with mail-parser, on a tree built with a policy that writes headers back
    as they came (linear; compat32's own folding is quadratic). If mail-parser's own
    post-processing fails on a tree the stdlib built fine (e.g. a missing start boundary
    with no epilogue), use that same stdlib tree and record the failure as a defect."""
    try:
        parsed = mailparser.MailParser(_stdlib_tree(content))
        msg, defects = parsed.message, _library_defects(parsed.defects)
    except (MailParserRecursionError, RecursionError):
        raise ParseError("too_deep", "MIME nesting too deep to parse") from None
    except Exception as exc:  # noqa: BLE001 - a library bug; the stdlib tree still stands
        msg = _stdlib_tree(content)
        defects = [f"mail-parser failed: {type(exc).__name__}"] + _tree_defects(msg)
    if not isinstance(msg, Message):
        raise ParseError("parse_failed", "mail-parser returned no message")
    _exact_structure(msg, limits)
    return msg, defects


def _library_defects(raw: object) -> list[str]:
    out: list[str] = []
    for entry in raw if isinstance(raw, list) else []:
        for where, items in (entry.items() if isinstance(entry, dict) else ()):
            for item in items if isinstance(items, list) else [items]:
                name, _, rest = str(item).partition(":")
                detail = rest.strip() if name.endswith("HeaderDefect") else ""
                out.append(hdr.sanitize(f"{name} ({where}) {detail}")[:160])
    return out


def _tree_defects(msg: Message) -> list[str]:
    out, stack = [], [msg]
    while stack:
        part = stack.pop()
        out += [f"{type(d).__name__} ({part.get_content_type()})" for d in part.defects]
        stack.extend(_children(part))
    return out


