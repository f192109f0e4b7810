"""Threading: the pure stage that decides which ticket a parsed message belongs to.

parse -> **thread** -> classify. The worker asks the store about `thread_keys(msg)` (and
about `msg.message_id` among ghosts, see below), gets `ThreadCandidates`, and calls
`thread()`. The decision is taken by fixed precedence and says which evidence decided:

1. In-Reply-To / References naming a message the store knows, ours or theirs. A "ghost"
   (an id only ever seen in the In-Reply-To/References of a stored message) counts too.
   Inside this rule: a real stored message beats a ghost; In-Reply-To beats References
   (so a typo in References cannot win); among References the rightmost known one wins.
   Known ids that point at other tickets are reported as a conflict in the evidence.
   Last comes the message's own id found as a ghost: a reply to it arrived first.
2. The subject tag `[HD-42]`, only from a participant of ticket 42 (requester, Cc'd
   participant or agent). From anyone else it opens a new ticket linked to 42, so nobody
   takes over a ticket by typing its number.
3. Otherwise a new ticket.

A hit on a resolved ticket reopens it; a hit on a closed ticket opens a new linked one.
Subjects never decide anything else: `normalize_subject` only strips reply/forward prefixes
(in many languages, stacked, `Re[2]:`, fullwidth colon) and our tag, for display.
Malformed ids (no `@`, such as git send-email's famous `<yes>`) are never thread keys.
"""
from __future__ import annotations

import re
from functools import lru_cache

from daemon.model import KnownMessage, ParsedMessage, ThreadCandidates, ThreadDecision

MAX_REFERENCES = 100        # a hostile References header is cut to its first + last 99 ids
RESOLVED = "resolved"       # a reply reopens the ticket
CLOSED = "closed"           # a reply opens a new ticket linked to it

_ID_RE = re.compile(r"[^\s<>]+@[^\s<>@]+")
_IRT, _REFS, _SELF = "in-reply-to", "references", "message-id"

# Reply and forward prefixes seen in the wild (Outlook, Thunderbird, Apple Mail, Gmail,
# Foxmail... localised). Single letters (Italian R:/I:) and words that also start real
# subjects (Ref:, FS:) are left out on purpose.
_PREFIX_WORDS = (
    "re", "fwd", "fw", "aw", "wg", "sv", "vs", "vb", "vl", "antw", "antwort", "doorst",
    "tr", "rif", "ynt", "İlt", "ilt", "odp", "pd", "res", "enc", "rv", "atb", "yml", "bls",
    "vá", "továbbítás", "απ", "σχετ", "πρθ", "отв", "השב", "הועבר", "رد", "回复", "答复",
    "转发", "回覆", "答覆", "轉寄", "轉發", "轉送", "返信", "転送", "회신", "전달",
)
_PREFIX_RE = re.compile(
    r"^\s*(?:(?:" + "|".join(re.escape(w) for w in sorted(_PREFIX_WORDS, key=len, reverse=True))
    + r")(?:\s*(?:\[\d+\]|\(\d+\)|\^\d+))?\s*[:：]\s*)+",
    re.IGNORECASE,
)
_WRAPPED_FWD_RE = re.compile(r"^\[\s*fwd?\s*[:：]\s*(.*?)\s*\]$", re.IGNORECASE)
_TRAILING_FWD_RE = re.compile(r"\s*\(fwd\)\s*$", re.IGNORECASE)
_SPACES_RE = re.compile(r"\s+")


@lru_cache(maxsize=16)
def _tag_re(prefix: str) -> re.Pattern[str]:
    """`[HD-42]`, `[ hd - 42 ]`, fullwidth brackets, dash and digits: group 1 is the number."""
    return re.compile(
        r"[\[［]\s*" + re.escape(prefix) + r"\s*[-‐‑‒–—－]\s*([0-9０-９]{1,18})\s*[\]］]",
        re.IGNORECASE,
    )


def subject_tag(subject: str, prefix: str) -> int | None:
    """The ticket number of the first `[PREFIX-n]` tag in `subject`, or None."""
    match = _tag_re(prefix).search(subject or "")
    return int(match.group(1)) if match else None


def normalize_subject(subject: str, prefix: str = "HD") -> str:
    """`subject` without reply/forward prefixes and without our `[PREFIX-n]` tags.

    For display and for the outgoing `[HD-42] subject`; never used to thread."""
    text = _SPACES_RE.sub(" ", subject or "").strip()
    while True:
        before = text
        text = _tag_re(prefix).sub(" ", text)
        text = _PREFIX_RE.sub("", text)
        wrapped = _WRAPPED_FWD_RE.match(text.strip())
        text = wrapped.group(1) if wrapped else text
        text = _SPACES_RE.sub(" ", _TRAILING_FWD_RE.sub("", text)).strip()
        if text == before:
            return text


def _clean_id(raw: str) -> str | None:
    """`raw` without whitespace and one pair of angle brackets, if it is a well-formed id."""
    value = (raw or "").strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    return value if _ID_RE.fullmatch(value) else None


def _clean_ids(raws: tuple[str, ...]) -> list[str]:
    """The well-formed ids of `raws`, in order (duplicates kept)."""
    return [value for value in map(_clean_id, raws) if value is not None]


def _references(msg: ParsedMessage) -> list[str]:
    """The well-formed References ids, oldest first, capped at MAX_REFERENCES."""
    refs = _clean_ids(msg.references)
    if len(refs) > MAX_REFERENCES:
        refs = refs[:1] + refs[-(MAX_REFERENCES - 1):]
    return refs


def thread_keys(msg: ParsedMessage) -> tuple[str, ...]:
    """The ids the store should look up: In-Reply-To ids, then References rightmost first.

    Deduplicated, without angle brackets, malformed ids and the message's own id. The store
    should also register these as ghosts of the ticket the message lands in. To catch a
    parent that arrives after its reply, it should also look up `msg.message_id` among
    ghosts; `thread()` honours such a hit with the lowest precedence."""
    own = _clean_id(msg.message_id)
    ordered = (*_clean_ids(msg.in_reply_to), *reversed(_references(msg)))
    return tuple(dict.fromkeys(key for key in ordered if key != own))


def _ranked_hits(
    msg: ParsedMessage, known: tuple[KnownMessage, ...]
) -> list[tuple[str, str, KnownMessage]]:
    """(header, id, known) for every relevant known message, best first.

    Order: real In-Reply-To, real References (rightmost first), ghost In-Reply-To, ghost
    References, own id as a ghost; equal ids on several tickets: lowest ticket first."""
    keys = {key: index for index, key in enumerate(thread_keys(msg))}
    irt = set(_clean_ids(msg.in_reply_to))
    own = _clean_id(msg.message_id)
    ranked: list[tuple[tuple[int, int, int], tuple[str, str, KnownMessage]]] = []
    for entry in known:
        mid = _clean_id(entry.message_id)
        if mid is not None and mid in keys:
            header = _IRT if mid in irt else _REFS
            tier = (2 if entry.ghost else 0) + (0 if header == _IRT else 1)
            rank = (tier, keys[mid], entry.ticket_id)
        elif mid is not None and mid == own and entry.ghost:
            header, rank = _SELF, (4, 0, entry.ticket_id)
        else:
            continue
        ranked.append((rank, (header, mid, entry)))
    return [hit for _, hit in sorted(ranked, key=lambda pair: pair[0])]


def _describe(header: str, mid: str, entry: KnownMessage) -> str:
    """One hit as evidence text, e.g. `references <a@b> (ghost)`."""
    if header == _SELF:
        return f"message-id <{mid}> already referenced by a reply (ghost)"
    return f"{header} <{mid}>" + (" (ghost)" if entry.ghost else "")


def parent_message_id(msg: ParsedMessage, known: tuple[KnownMessage, ...] = ()) -> str | None:
    """The message `msg` answers, for the message tree (may be a ghost or unknown).

    Only a single well-formed In-Reply-To id counts. First a real stored message: that
    In-Reply-To, else the rightmost stored References entry (notmuch's "fake root": an
    In-Reply-To naming an unknown message loses to known References); then the same for
    ghosts; with nothing known, that In-Reply-To, else the last References id."""
    irt = _clean_ids(msg.in_reply_to)
    single = irt[0] if len(msg.in_reply_to) == 1 and len(irt) == 1 else None
    own = _clean_id(msg.message_id)
    refs = [ref for ref in _references(msg) if ref != own]
    single = None if single == own else single
    real: dict[str, bool] = {}
    for entry in known:
        mid = _clean_id(entry.message_id)
        if mid is not None:
            real[mid] = real.get(mid, False) or not entry.ghost
    order = ([single] if single else []) + refs[::-1]
    for want_real in (True, False):
        for mid in order:
            if real.get(mid) is want_real:
                return mid
    return single or (refs[-1] if refs else None)


def _by_status(
    ticket_id: int, status: str, evidence: str, parent: str | None, note: str = ""
) -> ThreadDecision:
    """append, reopen (resolved) or new_linked (closed) for a hit on `ticket_id`."""
    state = (status or "").strip().lower()
    if state == RESOLVED:
        return ThreadDecision("reopen", ticket_id,
                              f"{evidence}: ticket {ticket_id} resolved, reopened{note}", parent)
    if state == CLOSED:
        return ThreadDecision("new_linked", None,
                              f"{evidence}: ticket {ticket_id} closed, new linked ticket{note}",
                              parent, link_to=ticket_id)
    return ThreadDecision("append", ticket_id, evidence + note, parent)


def _by_headers(
    hits: list[tuple[str, str, KnownMessage]], tag_note: str, parent: str | None
) -> ThreadDecision:
    """Rule 1: the best hit decides; hits on other tickets are recorded as a conflict."""
    header, mid, best = hits[0]
    others: dict[int, str] = {}
    for other_header, other_mid, entry in hits[1:]:
        if entry.ticket_id != best.ticket_id and entry.ticket_id not in others:
            others[entry.ticket_id] = _describe(other_header, other_mid, entry)
    note = "".join(f"; conflict: {text} is in ticket {ticket}"
                   for ticket, text in others.items())
    return _by_status(best.ticket_id, best.ticket_status,
                      _describe(header, mid, best), parent, note + tag_note)


def _sender(msg: ParsedMessage) -> str:
    """The From address, lower-cased, or "" when there is none."""
    return msg.from_addr.email.strip().lower() if msg.from_addr else ""


def _by_tag(msg: ParsedMessage, tag: int, candidates: ThreadCandidates, prefix: str,
            parent: str | None) -> ThreadDecision:
    """Rule 2: the subject tag counts only when its sender takes part in the ticket."""
    label = f"subject tag {prefix}-{tag}"
    glance = candidates.tagged
    if glance is None or glance.ticket_id != tag:
        return ThreadDecision("new", None, f"{label} names no known ticket: new ticket", parent)
    sender = _sender(msg)
    participants = {address.strip().lower() for address in glance.participants}
    if sender and sender in participants:
        return _by_status(tag, glance.status, f"{label} from participant {sender}", parent)
    return ThreadDecision("new_linked", None,
                          f"{label} from non-participant {sender or 'without From'}: "
                          "new linked ticket", parent, link_to=tag)


def thread(
    msg: ParsedMessage, candidates: ThreadCandidates, *, tag_prefix: str = "HD"
) -> ThreadDecision:
    """Where `msg` goes, by fixed precedence: known thread keys, subject tag, new ticket."""
    parent = parent_message_id(msg, candidates.known)
    hits = _ranked_hits(msg, candidates.known)
    tag = subject_tag(msg.subject, tag_prefix)
    if hits:
        ignored = tag is not None and tag != hits[0][2].ticket_id
        note = f"; subject tag {tag_prefix}-{tag} ignored" if ignored else ""
        return _by_headers(hits, note, parent)
    if tag is not None:
        return _by_tag(msg, tag, candidates, tag_prefix, parent)
    return ThreadDecision("new", None, "no known thread key: new ticket", parent)
