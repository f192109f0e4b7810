"""HTML to readable text for the parse stage: the text body of a mail that has only HTML
(or whose text part is empty). Pure: no I/O, no logging; never raises.

Rendered the way mail clients write the text/plain alternative of their own HTML, so the
reply stripper can read it: "> " before each line of a <blockquote>, and the "-- " line
before a signature block the client marked as one (`SIGNATURE_MARKS`), when text came
before it: some clients (iOS Mail, webmail editors) let the sender type into the
signature's element, and a mark above everything written would make all of it signature.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser

_BLANK_RUN = re.compile(r"\n{3,}")
# class or id tokens (data-marker, name for Zimbra and Spark) of the element a client
# wraps its signature in: Gmail, Thunderbird, Apple Mail, Outlook (web, mobile), Yahoo,
# Proton, Roundcube, Zimbra, Spark.
SIGNATURE_MARKS = frozenset({
    "gmail_signature", "moz-signature", "applemailsignature", "signature", "x_signature",
    "ms-outlook-mobile-signature", "ymail_android_signature", "protonmail_signature_block",
    "_rc_sig", "__sig_pre__", "messagesignaturesection"})
SIG = re.compile("sig", re.IGNORECASE)      # in every name above: a cheap first test
_MARK_ATTRS = frozenset({"class", "id", "data-marker", "name", "data-smartmail"})
_MAX_QUOTE = 16


def may_mark(markup: str) -> bool:
    """Whether a signature mark can be in `markup` at all (a fast scan, no regex)."""
    return "sig" in markup or "Sig" in markup or "SIG" in markup


def is_signature(attrs: list[tuple[str, str | None]]) -> bool:
    """Whether a start tag's attributes mark the client's signature block."""
    for name, value in attrs:
        if value and name in _MARK_ATTRS and SIG.search(value) and \
                not SIGNATURE_MARKS.isdisjoint(value.lower().split()):
            return True
    return False


class _HTMLText(HTMLParser):
    """Readable text from HTML: script/style dropped, block elements become newlines,
    link text kept (followed by the http(s) target when the text does not show it)."""

    _BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table",
              "ul", "ol", "blockquote", "pre", "hr", "section", "article", "header",
              "footer", "address", "dd", "dt", "dl", "title", "form", "center"}
    _SKIP = {"script", "style", "head", "template", "noscript", "svg"}

    def __init__(self, marks: bool = True) -> None:
        super().__init__(convert_charrefs=True)
        self.marks = marks              # whether a signature mark can be in the document at all
        self.out: list[str] = []
        self.skip = 0
        self.links: list[tuple[str, int]] = []
        self.quote = 0                  # <blockquote> depth
        self.wrote = False              # text seen outside any blockquote
        self.line_start = True          # nothing written on the current line yet

    def _newline(self, text: str = "\n") -> None:
        self.out.append(text)
        self.line_start = text.endswith("\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self.skip += 1
            return
        signature = self.marks and self.wrote and is_signature(attrs)
        if tag in self._BLOCK or signature:
            self._newline()
        if signature:
            self.handle_data("-- ")
            self._newline()
        if tag == "blockquote":
            self.quote += 1
        if tag in self._BLOCK:
            if tag == "li":
                self.handle_data("- ")
        elif tag in ("td", "th"):
            self.out.append(" ")
        if tag == "a":
            self.links.append((next((v or "" for k, v in attrs if k == "href"), ""),
                               len(self.out)))

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in self._BLOCK and tag not in ("li", "br"):
            self._newline()
            self.quote = max(0, self.quote - (tag == "blockquote"))
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            shown = "".join(self.out[start:]).strip()
            if shown and href.startswith(("http:", "https:")) and href not in shown:
                self.out.append(f" <{href}>")

    def handle_data(self, data: str) -> None:
        if not self.skip:           # collapse white space, keeping one at either edge
            words = " ".join(data.split())
            if not words:
                self.out.append(" " if data else "")
                return
            if self.line_start and self.quote:
                self.out.append("> " * min(self.quote, _MAX_QUOTE))
            self.wrote = self.wrote or not self.quote
            self.out.append(f"{' ' if data[:1].isspace() else ''}{words}"
                            f"{' ' if data[-1:].isspace() else ''}")
            self.line_start = False


def html_to_text(html: str) -> str:
    """Plain-text rendering of an HTML body (stdlib html.parser; never raises)."""
    parser = _HTMLText(marks=may_mark(html))
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # noqa: BLE001 - keep whatever was read before the fault
        pass
    lines = (" ".join(ln.split()) for ln in "".join(parser.out).split("\n"))
    return _BLANK_RUN.sub("\n\n", "\n".join(lines)).strip()
