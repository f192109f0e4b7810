"""HTML to quotable text for reply stripping (daemon.pipeline.strip.strip_reply_html).

One line per block element or <br>, "> " per enclosing <blockquote>, and a "-- " line
before a block the client marked as its signature (html_text.SIGNATURE_MARKS) when text
came before it (see html_text: a sender may type into that block), so the line-based
stripper can see what was quoted and where the signature starts. Pure: no I/O, no
logging; linear on any input.
"""
from __future__ import annotations

import html
import re

from daemon.pipeline.html_text import SIG, SIGNATURE_MARKS, may_mark

# --- HTML to text -----------------------------------------------------------------------
# A small tokenizer on str.find: linear on any input.  (html.parser in CPython 3.11 is
# quadratic on unterminated "<!--" or "</": 400 KB of "<!--" took a minute.)

_BLOCK_TAGS = frozenset(
    "address article aside blockquote center dd div dl dt fieldset figcaption figure footer "
    "form h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section table tbody td tfoot th "
    "thead tr ul".split())
_SKIP_END = re.compile(r"</\s*(?:head|style|script|title|template)\s*>", re.IGNORECASE)
_TAG = re.compile(r"(/?)\s*([A-Za-z][A-Za-z0-9:-]{0,30})")
_MARK_ATTR = re.compile(r"""\b(?:class|id|data-marker|name|data-smartmail)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""",
                        re.IGNORECASE)


def _marks_signature(markup: str, start: int, end: int) -> bool:
    """Whether the attribute text markup[start:end] of a start tag marks the client's
    signature block (looked at only when "sig" is in it: no copy of every tag)."""
    return SIG.search(markup, start, end) is not None and any(
        not SIGNATURE_MARKS.isdisjoint("".join(m.groups("")).lower().split())
        for m in _MARK_ATTR.finditer(markup, start, min(end, start + 2000)))


def html_text(markup: str) -> str:
    """Text of an HTML mail: one line per block or <br>, '> ' per enclosing blockquote."""
    out = _HtmlLines()
    pos, n = 0, len(markup)
    marks = may_mark(markup)                     # a signature mark can be in it at all
    while pos < n:
        lt = markup.find("<", pos)
        out.parts.append(html.unescape(markup[pos:n if lt < 0 else lt]))
        if lt < 0:
            break
        if markup.startswith("<!--", lt):
            end = markup.find("-->", lt + 4)
            pos = n if end < 0 else end + 3
            continue
        gt = markup.find(">", lt + 1)
        if gt < 0:
            break  # an unterminated tag hides the rest, as in a browser
        pos = gt + 1
        m = _TAG.match(markup, lt + 1, gt)
        if not m:
            continue  # <!DOCTYPE>, <?xml?>, stray "<"
        name = m.group(2).lower()
        if not m.group(1) and name in ("head", "style", "script", "title", "template"):
            end = _SKIP_END.search(markup, pos)
            pos = n if end is None else end.end()
        else:
            out.tag(name, closing=bool(m.group(1)))
            if marks and not m.group(1) and _marks_signature(markup, m.end(), gt):
                out.signature()
    return out.text()


class _HtmlLines:
    """Collects text into lines for _html_text."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.parts: list[str] = []
        self.quote = self.pre = 0
        self.wrote = False          # a line of text outside any blockquote

    def flush(self, always: bool = False) -> None:
        line = "".join(self.parts)
        line = line.rstrip() if self.pre else " ".join(line.split())
        self.parts = []
        if line or always:
            self.lines.append(("> " * min(self.quote, 16) + line).rstrip())  # bounded prefix
            self.wrote = self.wrote or bool(line and not self.quote)

    def tag(self, name: str, closing: bool) -> None:
        if name == "br":
            self.flush(always=not closing)
        elif name in _BLOCK_TAGS:
            self.flush()
            step = -1 if closing else 1
            self.quote = max(0, self.quote + step * (name == "blockquote"))
            self.pre = max(0, self.pre + step * (name == "pre"))

    def signature(self) -> None:
        self.flush()
        if self.wrote:
            self.lines.append("> " * min(self.quote, 16) + "-- ")

    def text(self) -> str:
        self.flush()
        return "\n".join(self.lines)
