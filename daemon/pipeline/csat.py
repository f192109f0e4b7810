"""Customer satisfaction (pure): who gets a survey, and what an answer's score is.

`plan_survey` decides, when a ticket is resolved, whether its requester gets the one-question
survey: only when the queue asks for surveys (`survey:` in queues.yaml), never for a ticket a
machine opened (auto-replies, bulk, monitoring: the opening mail is not `human`), never for
a spam ticket (tag `spam`), never for a problem ticket, never twice to one requester within
the queue's `every_days`, and never to our own addresses.

`score_of` reads an answer: the first line of the reply (quoted history already stripped)
starts with a score 1-5 (`5`, `5/5`, `4 - ok`) or a word for one in a shipped language
(English, German: "good", "bad", "gut", "schlecht", ...); what follows is the comment.
Anything else is not an answer (the reply is then an ordinary message on the ticket).
A score of BAD or lower is bad (the queue's lead may be told).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

BAD = 2
SCALE = (1, 5)

# Longest phrases first: "very good" must not be read as "very" + "good".
WORDS: dict[str, int] = {
    # English
    "excellent": 5, "very good": 5, "great": 5, "perfect": 5, "awesome": 5,
    "good": 4, "fine": 3, "ok": 3, "okay": 3, "neutral": 3, "average": 3,
    "not good": 2, "poor": 2, "very bad": 1, "bad": 1, "terrible": 1, "awful": 1, "horrible": 1,
    # German
    "ausgezeichnet": 5, "hervorragend": 5, "sehr gut": 5, "super": 5, "prima": 5,
    "gut": 4, "in ordnung": 3, "geht so": 3, "mittel": 3, "befriedigend": 3,
    "nicht gut": 2, "mangelhaft": 2, "sehr schlecht": 1, "schlecht": 1, "miserabel": 1, "ungenügend": 1,
}
_PHRASES = sorted(WORDS, key=len, reverse=True)
_NUMBER = re.compile(r"^\s*([1-5])(?:\s*(?:/|von|of|out of)\s*5)?(?![\d.,]\d)(?P<rest>.*)$", re.I | re.S)
_SEPARATORS = " \t-–—:,.;!()[]"


@dataclass(frozen=True)
class Answer:
    """A survey answer: score 1-5 and the comment ("" when none)."""

    score: int
    comment: str

    @property
    def bad(self) -> bool:
        return self.score <= BAD


@dataclass(frozen=True)
class SurveyFacts:
    """What planning a survey needs to know of the ticket and the requester."""

    enabled_days: int | None          # the queue's every_days; None: the queue sends none
    ticket_type: str
    requester: str
    opened_by_human: bool
    tags: tuple[str, ...]
    last_survey_at: datetime | None   # the requester's latest survey (any ticket)
    own: frozenset[str] = frozenset()


def plan_survey(f: SurveyFacts, now: datetime) -> tuple[bool, str]:
    """Whether to send the survey now, and why (or why not; stored as the event)."""
    email = (f.requester or "").lower()
    if f.enabled_days is None:
        return False, "the queue sends no surveys"
    if f.ticket_type == "problem":
        return False, "problem tickets get no survey"
    if not email or "@" not in email or email in f.own:
        return False, f"no usable requester address {email!r}"
    if not f.opened_by_human:
        return False, "the ticket was opened by machine mail"
    if "spam" in f.tags:
        return False, "the ticket is spam"
    if f.last_survey_at is not None and now - f.last_survey_at < timedelta(days=f.enabled_days):
        return False, (f"{email} got a survey on {f.last_survey_at:%Y-%m-%d %H:%M} UTC: at most one in "
                       f"{f.enabled_days} day(s)")
    return True, f"survey to {email} (at most one in {f.enabled_days} day(s))"


def score_of(text: str) -> Answer | None:
    """The score and comment of an answer (see module docstring), or None."""
    lines = [ln.strip() for ln in (text or "").replace("\r\n", "\n").split("\n")]
    lines = [ln for ln in lines if ln]
    if not lines:
        return None
    first, rest = lines[0], "\n".join(lines[1:])
    found = _NUMBER.match(first)
    if found is not None:
        tail = found.group("rest")
        if tail and tail[0].isalnum():             # "5th floor", "12": not a score
            return None
        return Answer(int(found.group(1)), _comment(tail, rest))
    low = first.lower()
    for phrase in _PHRASES:
        if low.startswith(phrase) and (len(low) == len(phrase) or not low[len(phrase)].isalnum()):
            return Answer(WORDS[phrase], _comment(first[len(phrase):], rest))
    return None


def _comment(tail: str, rest: str) -> str:
    text = "\n".join(x for x in (tail.strip(_SEPARATORS + "\n"), rest.strip()) if x)
    return text[:2000]


def survey_vars(ref: str, subject: str) -> dict:
    """The `survey` variable of the survey templates."""
    return {"ref": ref, "subject": subject, "scale": "1 (bad) to 5 (very good)"}


SAMPLE = {"survey": {"ref": "HD-42", "subject": "Printer on floor 3 jams", "scale": "1 (bad) to 5 (very good)",
                     "score": 1, "comment": "Took a week.", "requester": "ann@example.org"}}
