"""`helpdesk show --full`: every message of a ticket with its original, unstripped text.

The desk stores what a reply newly says (reply stripping, daemon.pipeline.strip) and keeps
the raw mail exactly as received (table `rawmessage`, keyed by the sha256 in each message
row). This view reads each message's raw mail again through the parse stage and gives its
whole text body as the sender sent it (quoted history, attribution lines and signatures
included), with the sha256 and size that identify the stored raw mail. A raw mail that is
missing or no longer parses says so; the stored text is then all there is to show.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daemon.errors import ParseError
from daemon.pipeline.parse import DEFAULT_LIMITS, ParseLimits, parse
from store.records import MessageRow, TicketDetail


@dataclass(frozen=True)
class Original:
    """One message's stored raw mail and its text as sent.

    `size` is None when no raw mail is stored under `raw_sha256`; `text` is None when
    there is no raw mail or it does not parse (`problem` says which)."""

    raw_sha256: str
    size: int | None
    text: str | None
    problem: str = ""


def read_original(raw: bytes | None, raw_sha256: str, limits: ParseLimits = DEFAULT_LIMITS) -> Original:
    """The original text of one stored raw mail (None: not stored)."""
    if raw is None:
        return Original(raw_sha256, None, None, "raw mail not stored")
    try:
        return Original(raw_sha256, len(raw), parse(raw, limits=limits).text)
    except ParseError as exc:
        return Original(raw_sha256, len(raw), None, f"raw mail does not parse: {exc}")


def read_originals(detail: TicketDetail, raws: dict[str, bytes],
                   limits: ParseLimits = DEFAULT_LIMITS) -> dict[int, Original]:
    """Each message's Original, by message pk; `raws` maps sha256 to the stored raw mail."""
    return {x.pk: read_original(raws.get(x.raw_sha256), x.raw_sha256, limits) for x in detail.messages}


def original_lines(message: MessageRow, original: Original) -> list[str]:
    """What `show --full` prints for one message's body: the raw mail's identity, then
    the whole original text (the stored text when the raw mail cannot be read)."""
    size = f"{original.size} bytes" if original.size is not None else "not stored"
    lines = [f"[raw mail] sha256 {original.raw_sha256 or '-'} ({size}), Message-ID <{message.message_id}>"]
    if original.text is None:
        lines.append(f"[{original.problem}; the stored text follows]")
        text = message.text
    else:
        lines.append("[original text, unstripped]")
        text = original.text
    return lines + (text.strip("\n").splitlines() or ["(no text)"])


def full_bodies(detail: TicketDetail, originals: dict[int, Original]) -> dict[int, list[str]]:
    """The body lines of every message for views.detail_text(bodies=...)."""
    return {x.pk: original_lines(x, originals[x.pk]) for x in detail.messages}


def add_originals(shown: dict[str, Any], detail: TicketDetail, originals: dict[int, Original]) -> dict[str, Any]:
    """The JSON of `show --json` with, per message, `raw_sha256`, `raw_size` (null: not
    stored), `original_text` (null: unreadable) and `original_problem`."""
    for out, x in zip(shown["messages"], detail.messages):
        o = originals[x.pk]
        out.update(raw_sha256=o.raw_sha256, raw_size=o.size, original_text=o.text,
                   original_problem=o.problem or None)
    return shown
