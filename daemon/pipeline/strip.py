"""Reply stripping: the pure stage that keeps only what the sender newly wrote.

`strip_reply(text)` takes the text body of an incoming reply and returns the new text:
quoted history, attribution lines ("On ... wrote:", "Am ... schrieb ...:", "Le ... a
écrit :"), Outlook header blocks ("From: / Sent: / To: / Subject:"), forwarded and
"-----Original Message-----" blocks and the signature ("-- " blocks, mobile taglines,
list footers) are removed; the closing ("Regards,\\nAnna") stays.  If everything looks
quoted, the original text is returned: a customer who only forwarded something must not
lose it; but a chain of nothing but attribution lines and empty quotes (nested spam
re-sends) holds no text at all, and gives "".  `split_reply` returns the parts as a `Reply`, `split_thread` the messages of
the quoted chain (newest first), and `strip_reply_html` handles an HTML-only body.

How: every line is classified (blank, quoted, rule, mobile tagline, text) and attribution
headers are found as line spans (patterns in strip_patterns).  The reply ends at the
first header with new text above it, unless the quote below it is answered inline.  Each
line is matched a bounded number of times against patterns cut to MAX_SCAN characters,
and only the first MAX_LINES lines are examined, so the cost stays bounded whatever the
message holds (bench/strip.py measures it).  No I/O, no logging.
"""
from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from itertools import accumulate

from daemon.pipeline import strip_patterns as P
from daemon.pipeline.strip_html import html_text

BLANK, QUOTE, HEADER, RULE, TAGLINE, TEXT = "e", "q", "h", "d", "s", "t"
INLINE_MIN_TEXT = 7  # this many text lines after a quote mean the quote is answered inline
JOIN_MAX_LINES = 5   # an attribution may wrap over this many lines ("On ...\n<a@b>\nwrote:")
TAGLINE_BLOCK_LINES = 6  # a tagline with this many lines under it opens the signature
MAX_LINES = 20_000   # lines examined; what lies below is history, or kept if no end was seen


@dataclass(frozen=True)
class Reply:
    """One message of a reply chain.

    `text` is the message as written (body, closing and signature, without quoted
    history); `body` leaves out the closing and the signature; a bare rule line with
    nothing under it (the "-----" a client puts above the quoted header) ends the body,
    or the closing when there is one; `header` is the attribution or header block that
    introduced the message in the chain ("" when none).
    """

    text: str
    body: str
    closing: str
    signature: str
    header: str


@dataclass(frozen=True)
class _Lines:
    raw: tuple[str, ...]      # the lines as written (line endings normalised)
    content: tuple[str, ...]  # without the quote prefix, cut to MAX_SCAN + 1 characters
    depth: tuple[int, ...]    # quote depth (number of '>' in the prefix)
    fenced: tuple[bool, ...]  # inside a ``` code fence: plain text, never a marker


def strip_reply(text: str) -> str:
    """The new text of a reply; the original text when all of it looks quoted, unless
    nothing in it was written by anyone (only attributions, header blocks, quote marks
    and rules): then ""."""
    lines, rest = _prepare(text)
    spans = _find_headers(lines)
    _, kept, ended = _newest(lines, spans)
    if rest and not ended:  # a huge reply: keep what was not examined (or all, below)
        kept = (kept + "\n" + rest).strip("\n") if kept.strip() else ""
    if kept.strip() or not text.strip():
        return kept
    return _normalise(text).strip() if rest or _has_content(lines, spans) else ""


def _has_content(lines: _Lines, spans: list[tuple[int, int, int]]) -> bool:
    """Whether any line, at any quote depth, is text outside attributions and headers."""
    kinds = _kinds(lines, quoted_is_text=True)
    for start, end, _ in spans:
        kinds[start:end] = [HEADER] * (end - start)
    return TEXT in kinds or TAGLINE in kinds


def split_reply(text: str) -> Reply:
    """The newest message in parts (body is "" when all is quoted; MAX_LINES examined)."""
    lines, _ = _prepare(text)
    return _newest(lines, _find_headers(lines))[0]


def split_thread(text: str) -> tuple[Reply, ...]:
    """The newest message, then each older one found under an attribution or header.

    Older messages keep their quote prefixes ("> Hi,"); with inline answers the split is
    approximate (an older message then also holds them).  MAX_LINES lines are examined.
    """
    lines, _ = _prepare(text)
    spans = _find_headers(lines)
    kinds = _kinds(lines, quoted_is_text=True)
    bounds = [start for start, _, _ in spans] + [len(lines.raw)]
    older = []
    for k, (start, end, _) in enumerate(spans):
        if k == 0 and all(_kind(lines, i) != TEXT for i in range(start)):
            continue  # a header on top introduces the newest message itself
        header = _join(lines.raw, range(start, end))
        older.append(_finish(lines, list(range(end, bounds[k + 1])), kinds, header)[0])
    return (_newest(lines, spans)[0], *older)


def strip_reply_html(markup: str) -> str:
    """strip_reply() for an HTML-only body: blockquotes become '>' quotes, tags go."""
    return strip_reply(html_text(markup))


# --- line analysis --------------------------------------------------------------------

def _normalise(text: str) -> str:
    """LF line endings; soft line breaks of an undecoded quoted-printable body rejoined."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "=\n" in text and len(P.QP_ESCAPE.findall(text, 0, 100_000)) >= 2:
        text = text.replace("=\n", "")
    return text


def _prepare(text: str) -> tuple[_Lines, str]:
    """The first MAX_LINES lines analysed, and the rest of the text ("" if none)."""
    text, end = _normalise(text), -1
    for _ in range(MAX_LINES):
        end = text.find("\n", end + 1)
        if end < 0:
            return _analyse(text.split("\n")), ""
    return _analyse(text[:end].split("\n")), text[end + 1:]


def _analyse(raw: list[str]) -> _Lines:
    content, depth, fenced, in_fence = [], [], [], False
    for line in raw:
        m = P.QUOTE_PREFIX.match(line) if ">" in line[:64] else None
        start = m.end() if m else 0
        depth.append(line.count(">", 0, start))
        content.append(line[start:start + P.MAX_SCAN + 1])
        fence = not depth[-1] and ("`" in line[:64] or "~" in line[:64]) and P.FENCE.match(line)
        in_fence ^= bool(fence)
        fenced.append(bool(fence) or (in_fence and not depth[-1]))
    return _Lines(tuple(raw), tuple(content), tuple(depth), tuple(fenced))


def _kinds(lines: _Lines, quoted_is_text: bool = False) -> list[str]:
    """The class of every line; an underline right under text is a heading, not a rule."""
    kinds = [_kind(lines, i, quoted_is_text) for i in range(len(lines.raw))]
    for i in range(1, len(kinds)):
        text = lines.content[i].strip()
        if kinds[i] == RULE and kinds[i - 1] == TEXT and len(text) >= 3 and set(text) <= {"=", "-"}:
            kinds[i] = TEXT  # "Problem\n=======" or "Steps\n-----"
    return kinds


def _kind(lines: _Lines, i: int, quoted_is_text: bool = False) -> str:
    """The class of line i; with quoted_is_text, quoted lines are judged by their content."""
    text = lines.content[i]
    if lines.depth[i] and not quoted_is_text:
        return QUOTE
    if not text.strip():
        return BLANK
    if lines.fenced[i]:
        return TEXT
    if P.is_delimiter(text):
        return RULE
    return TAGLINE if P.is_tagline(text) else TEXT


def _find_headers(lines: _Lines) -> list[tuple[int, int, int]]:
    """Every attribution/header span as (first line, end line, quote depth), in order."""
    spans, i, n = [], 0, len(lines.raw)
    while i < n:
        text = lines.content[i].strip()
        end = 0
        if P.may_be_header(text) and not lines.fenced[i] and len(text) <= P.MAX_SCAN:
            end = _header_at(lines, i, text)
        if end:
            first = _wrapped_start(lines, i, text, spans[-1][1] if spans else 0)
            spans.append((first, end, lines.depth[i]))
        i = end or i + 1
    return spans


def _wrapped_start(lines: _Lines, i: int, text: str, floor: int) -> int:
    """First line of an attribution found at line i whose opening is on the line or two
    above ("ma 6.1.2025 klo 9.14 Bob Smith\n<bob@example.com> kirjoitti:"): line i
    when none is."""
    first = i
    for k in (1, 2):
        j = i - k
        if j < floor or lines.depth[j] != lines.depth[i] or lines.fenced[j]:
            break
        above = lines.content[j].strip()
        if not above or len(above) > 120 or above[-1:] in ".!?;,":
            break
        joined = " ".join(lines.content[x].strip() for x in range(j, i)) + " " + text
        if P.could_start_attribution(above) and P.is_attribution(joined) and (
                P.starts_with_lead(above) or P.DATE_START.match(above)):
            first = j
    return first


def _header_at(lines: _Lines, i: int, text: str) -> int:
    """End (exclusive) of the header starting at line i, or 0 if none starts there."""
    if P.is_forward_marker(text):
        j = i + 1
        while j < min(len(lines.raw), i + 3) and not lines.content[j].strip():
            j += 1
        return (_field_block(lines, j) if j < len(lines.raw) else 0) or i + 1
    end = _field_block(lines, i)
    if end:
        return end
    found = i + 1 if P.is_attribution(text) else 0
    if (found and not P.is_open_attribution(text)) or not P.could_start_attribution(text):
        return found
    joined = text
    for j in range(i + 1, min(len(lines.raw), i + JOIN_MAX_LINES)):
        nxt = lines.content[j].strip()
        if lines.depth[j] < lines.depth[i] or (nxt and P.starts_with_lead(nxt)):
            break
        if not nxt:
            continue
        # a quoted-printable soft break ("w=" + "rote:") joins without a space
        joined = joined[:-1] + nxt if joined.endswith("=") else joined + " " + nxt
        if len(joined) > P.MAX_SCAN:
            break
        if P.is_attribution(joined):
            found = j + 1
            if not P.is_open_attribution(joined):
                break
        elif found:
            break
    return found


def _field_block(lines: _Lines, i: int) -> int:
    """End of an Outlook-style header block (From plus Sent/To/Subject) at line i, or 0."""
    first = P.field_kind(lines.content[i])
    if first is None:
        return 0
    kinds, last, loose = {first}, i, 0
    for j in range(i + 1, min(len(lines.raw), i + 12)):
        text = lines.content[j]
        if not text.strip() or lines.depth[j] != lines.depth[i]:
            break
        kind = P.field_kind(text)
        if kind:
            kinds.add(kind)
            last, loose = j, 0
        else:
            loose += 1  # a wrapped value ("spans over 2 lines", "On Behalf Of ...")
            if loose > 2:
                break
    return last + 1 if last > i and "from" in kinds and len(kinds) >= 2 else 0


# --- the newest message ---------------------------------------------------------------

def _newest(lines: _Lines, spans: list[tuple[int, int, int]]) -> tuple[Reply, str, bool]:
    """The newest message, what strip_reply keeps of it, and whether it ended in `lines`."""
    kinds = _kinds(lines)
    for start, end, depth in spans:
        if not depth:
            kinds[start:end] = [HEADER] * (end - start)
    start, cut, dropped, top = _locate(kinds, spans)
    region = [i for i in range(start, cut) if i not in dropped]
    if top is not None:
        region = _reply_below(region, kinds)
    header = _join(lines.raw, range(top[0], top[1])) if top else ""
    ended = cut < len(kinds) or any(kinds[i] == RULE for i in region)
    return (*_finish(lines, region, kinds, header), ended)


def _locate(kinds: list[str], spans: list[tuple[int, int, int]]):
    """(start, cut, dropped header lines, first top header span or None) of the new text."""
    inline = _InlineTest(kinds)
    start, dropped, top = 0, set(), None
    for first, end, depth in spans:
        if depth or first < start:
            continue
        if inline.text[first] == inline.text[start]:  # nothing new above: a header on top
            start, top = end, top or (first, end)
        elif inline.answered(end):
            dropped.update(range(first, end))
        else:
            return start, first, dropped, top
    return start, len(kinds), dropped, top


class _InlineTest:
    """Whether the quote under a header is answered inline rather than left below it.

    Under the header, up to the next rule line: inline unless all there is, is quotes
    (and headers) followed by fewer than INLINE_MIN_TEXT text lines.  Prefix counts make
    each question O(1), so many headers cost no more than one.
    """

    def __init__(self, kinds: list[str]) -> None:
        self.text = list(accumulate((k == TEXT for k in kinds), initial=0))
        self.wordy = list(accumulate((k in (TEXT, TAGLINE) for k in kinds), initial=0))
        self.quote = list(accumulate((k == QUOTE for k in kinds), initial=0))
        self.quotes = [i for i, k in enumerate(kinds) if k in (QUOTE, HEADER)]
        self.rules = [i for i, k in enumerate(kinds) if k == RULE]
        self.n = len(kinds)

    def answered(self, begin: int) -> bool:
        k = bisect_left(self.rules, begin)
        stop = self.rules[k] if k < len(self.rules) else self.n
        if self.quote[stop] == self.quote[begin]:
            return False  # no quote under the header at all
        last = self.quotes[bisect_left(self.quotes, stop) - 1]  # >= begin: a quote is there
        text_among_quotes = self.wordy[last + 1] - self.wordy[begin]
        text_below = self.wordy[stop] - self.wordy[last + 1]
        return bool(text_among_quotes) or text_below >= INLINE_MIN_TEXT


def _reply_below(region: list[int], kinds: list[str]) -> list[int]:
    """Under a header on top, a reply written below the whole quote is the new text."""
    body = [kinds[i] for i in region]
    body = body[:body.index(RULE)] if RULE in body else body
    first = body.index(TEXT) if TEXT in body else len(body)
    return region if first == len(body) or QUOTE in body[first:] else region[first:]


def _finish(lines: _Lines, region: list[int], kinds: list[str],
            header: str) -> tuple[Reply, str]:
    """The lines of one message as a Reply, and as body plus closing (what strip keeps).
    A signature starts at the first rule line, or at a mobile tagline opening a short
    last block ("Sent from my iPhone\nBob Smith\nIT"); rule lines with no text under
    them end the body (or the closing) of the Reply, and are not kept by strip."""
    rule = next((k for k, i in enumerate(region) if kinds[i] == RULE), len(region))
    rule = min(rule, _tagline_block(region, kinds))
    before, after = region[:rule], region[rule:]
    last_text = max((k for k, i in enumerate(before) if kinds[i] == TEXT), default=-1)
    body = before[:last_text + 1]
    signature = [i for i in before[last_text + 1:] if kinds[i] in (TAGLINE, BLANK)]
    while after and kinds[after[-1]] in (QUOTE, BLANK):
        after.pop()
    signature += after
    rules: list[int] = []
    if not any(kinds[i] in (TEXT, TAGLINE) for i in signature):
        # only rules and blank lines: no signature.  A bare rule (the line a client puts
        # above the quoted header) stays with the message as written; strip drops it.
        if all(kinds[i] in (RULE, BLANK) for i in signature):
            last = max((k for k, i in enumerate(signature) if kinds[i] == RULE), default=-1)
            rules = signature[:last + 1]
        signature = []
    split = _closing_start(lines, body)
    main, closing = body[:split], body[split:]
    if closing:
        closing = closing + rules
    else:
        main = main + rules
    return Reply(text=_join(lines.raw, body + rules + signature),
                 body=_join(lines.raw, main),
                 closing=_join(lines.raw, closing),
                 signature=_join(lines.raw, signature),
                 header=header), _join(lines.raw, body)


def _tagline_block(region: list[int], kinds: list[str]) -> int:
    """Index in `region` of a mobile tagline that opens a paragraph after some text and
    has at most TAGLINE_BLOCK_LINES lines under it; len(region) when there is none."""
    seen_text = False
    for k, i in enumerate(region):
        if kinds[i] == TEXT:
            seen_text = True
        elif kinds[i] == TAGLINE and seen_text and k and kinds[region[k - 1]] == BLANK:
            below = sum(1 for x in region[k + 1:] if kinds[x] != BLANK)
            return k if below <= TAGLINE_BLOCK_LINES else len(region)
        elif kinds[i] in (RULE, QUOTE, HEADER):
            break
    return len(region)


def _closing_start(lines: _Lines, body: list[int]) -> int:
    """Index in `body` where a closing ("Regards,\\nAnna", "-Abhishek Kona") starts."""
    filled = [k for k, i in enumerate(body) if lines.content[i].strip()]
    found = len(body)
    for rank, k in enumerate(reversed(filled[-4:])):
        text = lines.content[body[k]].strip()
        if P.is_closing_start(text, last=rank == 0):
            found = k
        elif len(text) > 40 or text.endswith("?") or len(text.split()) > 5:
            break  # a sentence, not a name, title or phone number under a closing
    return found if filled and found > filled[0] else len(body)


def _join(raw: tuple[str, ...], indexes) -> str:
    """The lines joined, without blank lines around (indentation of the first is kept)."""
    picked = [raw[i] for i in indexes]
    first = next((k for k, line in enumerate(picked) if line.strip()), len(picked))
    last = next((k for k in range(len(picked) - 1, -1, -1) if picked[k].strip()), -1)
    return "\n".join(picked[first:last + 1]).rstrip()
