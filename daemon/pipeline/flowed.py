"""format=flowed text (RFC 3676) as its sender wrote it, for the parse stage.

Mail clients (Apple Mail, Thunderbird, iOS) wrap long lines of a text/plain part marked
`format=flowed` with a trailing space on every line that continues the paragraph; with
`delsp=yes` that space was added by the wrapper (CJK text has no spaces to break at) and
is not part of the text. `unflow` joins such lines back into their paragraph, per quote
depth, undoes space-stuffing, and leaves the signature separator "-- " alone, as a client
shows it. Senders that declare delsp=yes but break Latin text at its own spaces are common
(the space is then the only one between two words), so the space is deleted only where
a side of the break is a wide (CJK) character; between two narrow characters it stays.
Pure: no I/O, no logging; linear in the text.
"""
from __future__ import annotations

from unicodedata import east_asian_width


def unflow(text: str, delsp: bool = False) -> str:
    """The paragraphs of a format=flowed text, each on one line ("> " per quote level)."""
    out: list[str] = []
    depth, pieces = -1, []           # the paragraph being joined: its quote depth, its lines
    for line in text.split("\n"):
        level = len(line) - len(line.lstrip(">"))
        body = line[level:]
        body = body[1:] if body.startswith(" ") else body       # space-stuffing
        soft = body.endswith(" ") and body != "-- "
        if pieces and level != depth:        # a quote level change ends the paragraph
            out.append(_line(depth, pieces, delsp))
            pieces = []
        depth = level
        pieces.append(body)
        if not soft:
            out.append(_line(depth, pieces, delsp))
            pieces = []
    if pieces:
        out.append(_line(depth, pieces, delsp))
    return "\n".join(out)


def _line(depth: int, pieces: list[str], delsp: bool) -> str:
    if delsp:
        pieces = [p[:-1] if k + 1 < len(pieces) and _wide_break(p, pieces[k + 1]) else p
                  for k, p in enumerate(pieces)]
    text = "".join(pieces)
    return (">" * depth + " " + text).rstrip(" ") if depth else text


def _wide_break(piece: str, following: str) -> bool:
    """Whether the soft space ending `piece` was put between characters of a script
    written without spaces (a wide character on either side)."""
    before, after = piece[-2:-1], following[:1]
    return any(ch and east_asian_width(ch) in ("W", "F") for ch in (before, after))
