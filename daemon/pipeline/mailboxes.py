"""A tolerant RFC 5322 mailbox-list tokenizer for the parse stage (used by `addresses`).

`split_mailboxes(value)` cuts an unfolded address header value into (phrase, angle-addr,
comment) items in one linear pass. It reads what real mail holds, not only what RFC 5322
allows: nested comments and escaped parentheses (`(a (b) \\) c)`), comments inside the
local part and after the domain (`jo(x)e@example.org (Joe)`, `<joe(x)@example(y).org>`),
an unbalanced `(` or `"` (taken as a literal character, so `Smith (IT <a@b.c>` keeps its
address), and RFC 2047 encoded words as atoms (an encoded `:`, `,` or `<` can neither
open a group nor forge a second address). Group names (`undisclosed-recipients:;`) are
skipped. Pure: no I/O, no logging.
"""
from __future__ import annotations

import re

MAX_ITEMS = 1000
MAX_CHARS = 64 * 1024      # of one header value; a longer one is cut (no real list is that long)

_ENCODED_WORD = re.compile(r"=\?[^?\s]{1,64}\?[QqBb]\?[^?]*\?=")
_ANGLE = re.compile(r"<+([^<>]*)>*")
# a run of text, of '=' not opening an encoded word, of backslashes or of stray ')' / '>'
_TEXT = re.compile(r'[^",;:<(=\\]+|(?:=(?!\?))+|\\+|.', re.S)
_SEPARATORS = re.compile(r"[,;:\s]+")
_PAREN_OR_ESCAPE = re.compile(r"\\.|[()]", re.S)
_LITERAL_RUN = re.compile(r'[^,;:<"]*')
_BAD_WORDS = re.compile(r'(?:=\?[^",;:<(=\\]*)+')
_COMMENT = re.compile(r"\((?:[^()\\]|\\.)*\)")
_ADDRESS_INSIDE = re.compile(r"<[^<>]*@[^<>]*>")


def _paren_matches(value: str) -> dict[int, int]:
    """Position of each `(` -> position of its `)`, for balanced pairs (with `\\` escapes)."""
    matches: dict[int, int] = {}
    stack: list[int] = []
    for m in _PAREN_OR_ESCAPE.finditer(value):
        c = m.group(0)
        if c == "(":
            stack.append(m.start())
        elif c == ")" and stack:
            matches[stack.pop()] = m.start()
    return matches


def _quote_end(value: str, start: int) -> int:
    """Index of the `"` closing the quoted string opened at `start`, or -1."""
    i, n = start + 1, len(value)
    while i < n:
        c = value[i]
        if c == "\\":
            i += 2
        elif c == '"':
            return i
        else:
            i += 1
    return -1


def _angle_text(inner: str) -> str:
    """An angle-addr's content without comments (`<joe(x)@example(y).org>`)."""
    return _COMMENT.sub("", inner) if "(" in inner else inner


def split_mailboxes(value: str) -> list[tuple[str, str, str]]:
    """(phrase, angle-addr, first comment) of each mailbox in `value`, in order. Each
    step takes a whole run (of text, separators, unbalanced `(`), so the Python loop
    runs once per token, not per character of a flood."""
    value = value[:MAX_CHARS]
    items: list[tuple[str, str, str]] = []
    phrase: list[str] = []
    angle: str | None = None
    comment = ""
    at_seen = False
    parens = _paren_matches(value) if "(" in value else {}
    i, n = 0, len(value)
    while i < n and len(items) < MAX_ITEMS:
        c = value[i]
        if c in ",;" or (c == ":" and angle is None):
            run = _SEPARATORS.match(value, i).group(0)
            if (";" in run or "," in run) and (phrase or angle is not None or comment):
                items.append(("".join(phrase), angle or "", comment))
            phrase, angle, comment, at_seen = [], None, "", False
            i += len(run)
        elif c == '"':
            end = _quote_end(value, i)
            if angle is None:
                phrase.append(value[i:end + 1] if end > 0 else '"')
            i = end + 1 if end > 0 else i + 1
        elif c == "(":
            end = parens.get(i, -1)
            inner = value[i + 1:end] if end > 0 else ""
            if end < 0 or _ADDRESS_INSIDE.search(inner):
                j = _LITERAL_RUN.match(value, i + 1).end()  # unbalanced, or it would swallow
                if angle is None:                           # an address: text up to the next
                    phrase.append(value[i:j])               # separator, quote or angle
                    at_seen = at_seen or "@" in value[i:j]
                i = j
            else:                                # the one after the address names it
                comment = inner if (at_seen or not comment) else comment
                i = end + 1
        elif c == "<":
            m = _ANGLE.match(value, i)
            if angle is None:
                angle = _angle_text(m.group(1)).strip()
            i = m.end()
        else:
            m = None
            if value.startswith("=?", i):          # an encoded word, or "=?" junk (one run)
                m = _ENCODED_WORD.match(value, i) or _BAD_WORDS.match(value, i)
            m = m or _TEXT.match(value, i)
            if angle is None:
                phrase.append(m.group(0))
                at_seen = at_seen or "@" in m.group(0)
            i = m.end()
    if (phrase or angle is not None or comment) and len(items) < MAX_ITEMS:
        items.append(("".join(phrase), angle or "", comment))
    return items
