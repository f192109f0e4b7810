"""Pure parts of IMAP intake: which UID ranges to SEARCH, how to chunk FETCHes, and the
Message-ID of raw bytes. No I/O; tested on values."""
from __future__ import annotations

import re
from typing import Mapping

SEARCH_WINDOW = 10_000          # UIDs per SEARCH, so no response line nears imaplib's 1 MB cap
HEADER_END = re.compile(rb"\r?\n\r?\n")
MESSAGE_ID = re.compile(rb"^message-id:[ \t]*((?:.*)(?:\r?\n[ \t].*)*)", re.I | re.M)


def message_id_of(raw: bytes) -> str:
    """The Message-ID header value (unfolded), "" when absent. Looks at the header only."""
    head = HEADER_END.split(raw[:262_144], 1)[0]
    m = MESSAGE_ID.search(head)
    return " ".join(m.group(1).decode("latin-1").split()) if m else ""


def plan_windows(last: int, until: int, uidnext: int, width: int = SEARCH_WINDOW
                 ) -> list[tuple[int, int | None, bool]]:
    """UID ranges to SEARCH, oldest first: (lo, hi or None for `*`, in resync scope?).
    UIDs up to `until` belong to a first sync/resync; the rest are plain new mail."""
    out, lo = [], last + 1
    for end, scoped in ((until, True), (uidnext - 1, False)):
        while lo <= end:
            hi = min(lo + width - 1, end)
            out.append((lo, hi, scoped))
            lo = hi + 1
    out.append((lo, None, False))
    return out


def plan_chunks(uids: list[int], sizes: Mapping[int, int], max_count: int, max_bytes: int) -> list[list[int]]:
    """Split UIDs into FETCH chunks of at most `max_count` messages and `max_bytes` (a
    single larger message gets a chunk of its own), keeping their order."""
    chunks: list[list[int]] = []
    current: list[int] = []
    total = 0
    for uid in uids:
        size = sizes.get(uid, 0)
        if current and (len(current) >= max_count or total + size > max_bytes):
            chunks.append(current)
            current, total = [], 0
        current.append(uid)
        total += size
    if current:
        chunks.append(current)
    return chunks
