"""Caps on MIME header blocks, applied to the raw bytes before the stdlib parser sees them.

Part of the parse stage. The stdlib's parameter parser (`email.message._parseparam`)
costs time quadratic in the number of `;` parameters, and the parse stage calls it
several times per part (charset, filename, boundary); a 1 MB Content-Type of 60,000
parameters took over ten seconds. `cap_headers` finds the header block of every MIME
entity (the top one, the one after each delimiter line of a declared boundary, and the
one that opens the body of a message/* part) and cuts, in those blocks only, a
Content-* field after MAX_PARAMS parameters and any field after MAX_FIELD_BYTES bytes.
Each cut is reported as a defect. Mail that needs no cut is returned as it is, after
one cheap look at each block. Pure: no I/O, no logging.
"""
from __future__ import annotations

import re

MAX_PARAMS = 100              # `;` in one Content-* field (real mail has a handful)
MAX_CONTENT_FIELD_BYTES = 16 * 1024
MAX_FIELD_BYTES = 64 * 1024   # any other field of a part's header block
MAX_BLOCKS = 5000             # header blocks examined (the part limit refuses more anyway)

_BOUNDARY = re.compile(rb'boundary\s*=\s*(?:"([^"\n]{1,200})"|([^\s;"]{1,200}))', re.I)
_DELIMITER = re.compile(rb"\n--([^\n]{1,210})")
_FIELD_START = re.compile(rb"\n(?![ \t])")
_MESSAGE_TYPE = re.compile(rb"(?:^|\n)content-type:[ \t]*message/", re.I)


def cap_headers(text: bytes, starts: list[int] | None = None) -> tuple[bytes, list[str]]:
    """`text` (LF line ends, starting with a header block) with over-long header fields
    and parameter floods cut, and one defect line per kind of cut. `starts`: where the
    header blocks after delimiter lines begin, when the caller found them already."""
    starts = _block_starts(text) if starts is None else starts
    out: list[bytes] = []
    defects: dict[str, None] = {}
    pos = 0
    queue = sorted(starts)[:MAX_BLOCKS]
    seen = set(queue)
    while queue and len(seen) <= MAX_BLOCKS:
        start = queue.pop(0)
        if start < pos:
            continue
        end = text.find(b"\n\n", start)
        end = len(text) if end < 0 else end + 1
        block = text[start:end]
        inner = _message_body(text, block, end)
        if inner is not None and inner not in seen:
            seen.add(inner)
            queue.append(inner)
            queue.sort()
        if len(block) <= MAX_CONTENT_FIELD_BYTES and block.count(b";") <= MAX_PARAMS:
            continue                                  # the common case: nothing to cut
        capped = _cap_block(block, defects)
        if capped is not block:
            out += [text[pos:start], capped]
            pos = end
    if not out:
        return text, []
    out.append(text[pos:])
    return b"".join(out), list(defects)


def _block_starts(text: bytes) -> list[int]:
    """Offset 0 and the line after each delimiter line of a declared boundary."""
    declared = {a or b for a, b in _BOUNDARY.findall(text)}
    starts = [0]
    for m in _DELIMITER.finditer(text) if declared else ():
        line = m.group(1).rstrip(b" \t")
        if line in declared:                          # not the closing "--B--"
            starts.append(m.end() + 1)
            if len(starts) > MAX_BLOCKS:
                break
    return starts


def _message_body(text: bytes, block: bytes, end: int) -> int | None:
    """Where the header block of an attached message starts, when `block` is the header
    block of a message/* part (its body is a message with headers of its own)."""
    if b"essage/" not in block and b"ESSAGE/" not in block:
        return None
    if not _MESSAGE_TYPE.search(block):
        return None
    start = end + 1
    return start if start < len(text) else None


def _cap_block(block: bytes, defects: dict[str, None]) -> bytes:
    fields = _FIELD_START.split(block)
    changed = False
    for i, field in enumerate(fields):
        name = field.split(b":", 1)[0].strip().lower()
        is_content = name.startswith(b"content-")
        if is_content and field.count(b";") > MAX_PARAMS:
            field = _cut_params(field)
            defects[f"{name.decode('ascii', 'replace')}: parameters after {MAX_PARAMS} dropped"] = None
        limit = MAX_CONTENT_FIELD_BYTES if is_content else MAX_FIELD_BYTES
        if len(field) > limit:
            field = field[:limit].rstrip(b"\n")
            defects[f"{name.decode('ascii', 'replace')[:60]}: field cut at {limit} bytes"] = None
        if field is not fields[i]:
            fields[i], changed = field, True
    if not changed:
        return block
    joined = b"\n".join(fields)
    return joined if joined.endswith(b"\n") else joined + b"\n"


def _cut_params(field: bytes) -> bytes:
    """The field up to (not including) its (MAX_PARAMS + 1)th `;`."""
    pos = -1
    for _ in range(MAX_PARAMS + 1):
        pos = field.find(b";", pos + 1)
    return field[:pos].rstrip()
