"""HTML to readable text for the parse stage: the text body of a mail that has only HTML
(or whose text part is empty). Pure: no I/O, no logging; never raises.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser

_BLANK_RUN = re.compile(r"\n{3,}")


class _HTMLText(HTMLParser):
    """Readable text from HTML: script/style dropped, block elements become newlines,
    link text kept (followed by the http(s) target when the text does not show it)."""

    _BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table",
              "ul", "ol", "blockquote", "pre", "hr", "section", "article", "header",
              "footer", "address", "dd", "dt", "dl", "title", "form", "center"}
    _SKIP = {"script", "style", "head", "template", "noscript", "svg"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.links: list[tuple[str, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self.skip += 1
        elif tag in self._BLOCK:
            self.out.append("\n- " if tag == "li" else "\n")
        elif tag in ("td", "th"):
            self.out.append(" ")
        if tag == "a":
            self.links.append((next((v or "" for k, v in attrs if k == "href"), ""),
                               len(self.out)))

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in self._BLOCK and tag not in ("li", "br"):
            self.out.append("\n")
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            shown = "".join(self.out[start:]).strip()
            if shown and href.startswith(("http:", "https:")) and href not in shown:
                self.out.append(f" <{href}>")

    def handle_data(self, data: str) -> None:
        if not self.skip:           # collapse white space, keeping one at either edge
            words = " ".join(data.split())
            self.out.append(f"{' ' if data[:1].isspace() else ''}{words}"
                            f"{' ' if data[-1:].isspace() and words else ''}")


def html_to_text(html: str) -> str:
    """Plain-text rendering of an HTML body (stdlib html.parser; never raises)."""
    parser = _HTMLText()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # noqa: BLE001 - keep whatever was read before the fault
        pass
    lines = (" ".join(ln.split()) for ln in "".join(parser.out).split("\n"))
    return _BLANK_RUN.sub("\n\n", "\n".join(lines)).strip()
