"""What rule conditions look at (pure): one message, seen once, lower-cased, computed lazily.

`Facts` wraps a `ParsedMessage`, the envelope recipients, the routing time and the rule
set's `BusinessCalendar` (the one calendar type routing and SLA share). Each attribute is computed on first use and cached, so a rule set that
never looks at the body never lower-cases it. Body conditions see the first `MAX_BODY`
characters (of the text part, else of the HTML with tags removed), which bounds the cost
of any regex. `guess_language` is a cheap stop-word count, used when parse gave none.
"""
from __future__ import annotations

import re
from datetime import datetime
from functools import cached_property

from daemon.model import ParsedMessage
from daemon.pipeline.calendar import BusinessCalendar

MAX_BODY = 100_000
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TAG = re.compile(r"<[^>]{0,2000}>")
_WORDS = re.compile(r"[^\W\d_]{2,}")

_STOPWORDS = {
    "en": "the and you that have for not with this but from they please thanks can will would "
          "could our your are was is it my me we of to in on",
    "de": "der die das und ist nicht ich sie mit den von zu ein eine auf für bitte danke ihr wir "
          "haben kann wird auch sich dem des",
    "fr": "le la les et est pas je vous que une des pour avec merci dans sur ce qui nous mon "
          "bonjour votre sont ne",
    "es": "el la los las y es no que una por para con gracias usted nos mi del hola está pero "
          "como se lo",
    "it": "il la di che non è per una con sono grazie mi ho gli del della questo ciao buongiorno "
          "anche si come",
    "nl": "de het een en is niet ik je van dat met voor op zijn bedankt graag we er maar ook "
          "wij hebben",
    "pt": "o a os as e é não que um uma para com obrigado por do da em nos você meu está mas "
          "olá",
}
_STOP = {lang: frozenset(words.split()) for lang, words in _STOPWORDS.items()}


def within(minute: int, start: int, end: int) -> bool:
    """minute in [start, end), wrapping past midnight when end <= start."""
    return start <= minute < end if start < end else minute >= start or minute < end


def guess_language(text: str) -> str | None:
    """ISO 639-1 code of the likeliest of a few European languages, or None if unsure."""
    words = _WORDS.findall(text[:3000].lower())
    if len(words) < 4:
        return None
    scores = sorted(((sum(w in stop for w in words), lang) for lang, stop in _STOP.items()), reverse=True)
    (best, lang), (second, _) = scores[0], scores[1]
    return lang if best >= 3 and best >= 1.5 * second else None


class Facts:
    """Lazily computed, cached views of one message for condition checks (see module doc)."""

    def __init__(self, msg: ParsedMessage, now: datetime, calendar: BusinessCalendar,
                 envelope_rcpts: tuple[str, ...] = ()):
        self.msg, self.now, self.calendar, self.envelope_rcpts = msg, now, calendar, envelope_rcpts

    @cached_property
    def subject(self) -> str:
        return self.msg.subject.lower()

    @cached_property
    def body(self) -> str:
        text = self.msg.text or ""
        if not text.strip() and self.msg.html:
            text = _TAG.sub(" ", self.msg.html[:MAX_BODY * 2])
        return text[:MAX_BODY].lower()

    @cached_property
    def sender(self) -> str:
        return self.msg.from_addr.email.lower() if self.msg.from_addr else ""

    @cached_property
    def sender_domain(self) -> str:
        return self.sender.rpartition("@")[2]

    @cached_property
    def recipients(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for a in (*self.envelope_rcpts, *(x.email for x in self.msg.to), *(x.email for x in self.msg.cc)):
            seen.setdefault(a.lower().strip(), None)
        return tuple(a for a in seen if a)

    @cached_property
    def plus_details(self) -> tuple[str, ...]:
        out = []
        for a in self.recipients:
            local = a.rpartition("@")[0]
            if "+" in local:
                out.append(local.split("+", 1)[1])
        return tuple(out)

    @cached_property
    def headers(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, list[str]] = {}
        for name, value in self.msg.headers:
            out.setdefault(name.lower(), []).append(value.lower())
        return {k: tuple(v) for k, v in out.items()}

    @cached_property
    def attachments(self) -> tuple[tuple[str, str], ...]:
        """(filename, content type), lower-cased, for each non-inline part."""
        return tuple((a.filename.lower(), a.content_type.lower()) for a in self.msg.attachments if not a.inline)

    @cached_property
    def language(self) -> str | None:
        return self.msg.language.lower() if self.msg.language else guess_language(self.body)

    @cached_property
    def local_time(self) -> datetime:
        return self.calendar.local(self.now)

    @cached_property
    def business_hours(self) -> bool:
        return self.calendar.is_open(self.now)
