"""Reading delivery reports for machine-mail detection (daemon.pipeline.machine).

An RFC 3464 delivery-status part is cut into per-recipient records (action, status,
recipients, diagnostic); a bounce without one is read from its own notice text (the
failed recipients named in it, before any returned message). Both give a `DsnReport`
with the original message's Message-ID when the returned message shows it. `PartView`
is one MIME entity as machine detection sees it. Pure: no I/O, no logging.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from daemon.model import DsnReport
from daemon.pipeline.addresses import clean_email, parse_addresses, sanitize

DAEMON_LOCAL = re.compile(
    r"^(mailer[-_.]?daemon|mail[-_.]?daemon|postmaster|post_master|mdaemon|"
    r"mail\.delivery\.system|mailadmin)$", re.I)
_SMTP_CODE = re.compile(r"\b[45]\d\d[ -]")
_PERMANENT = re.compile(r"permanent|fatal", re.I)
_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
# an address as RFC 5321 bounds it (local part <= 64, domain <= 255): unbounded `+` runs made
# findall quadratic on one long line without an "@" (fuzz seed 2026, mutant 37633: 2.5 s)
_ADDR = r"[^\s<>()\[\]\"',;:@]{1,64}@[^\s<>()\[\]\"',;:@]{1,253}\.[A-Za-z0-9-]{1,63}"
# the line patterns below allow only horizontal space ([ \t\r]) where they could begin or end a
# line: `\s*` after `^` would run over every following blank line at each line start, and a
# bounce of 6,000 blank lines took 2.9 s (fuzz seed 2026, mutant 14169)
ANGLE_LINE = re.compile(r"^[ \t]*<(" + _ADDR + r")>[ \t\r]*(?:[:.,]|\.\.\.|$)", re.M)
_RCPT_TO = re.compile(r"rcpt to:\s*<(" + _ADDR + r")>", re.I)
_SMTP_PREFIX = re.compile(r"^(smtp|rfc-?822)=", re.I)
_TRIGGER = re.compile(
    r"following (recipients?|addresse?s?|users?|destinations?)(\(e?s\))?|permanent fatal errors|"
    r"failed recipients|(could not|couldn't|unable to|was not|cannot) (be )?deliver(ed)?( \w+){0,3} to|"
    r"did not reach|addressed to|was addressed|intended recipient|delivery to|your message to|"
    r"delivery of (e-?mail|(your )?message) to|"
    r"not (be )?(delivered|reached)", re.I)
_ALONE_LINE = re.compile(r"^[ \t]*<?(" + _ADDR + r")>?[ \t\r]*:?[ \t\r]*$", re.M)
_ANY_ADDR = re.compile(r"<?(" + _ADDR + r")>?")
_FAILURE_WORDS = re.compile(
    r"unknown|not exist|no such|invalid|reject|fail|undeliver|not (be )?delivered|"
    r"mailbox|quota|unavailable|not found|refused|permanent|denied|disabled|"
    r"error|bad destination|not listed|inactive|expired|delay", re.I)
ORIGINAL_MARKER = re.compile(
    r"^[ \t>|*=_-]*(start of |begin )?(below this line is a copy of|(a )?copy of (the |your )?"
    r"(original |returned )?message|(the )?(original|returned|undelivered|unsent|bounced) "
    r"(message|mail)\b(?! (to|was|could))|message headers? follows?|headers? of (the )?original "
    r"message|the header of the original message|old message:)", re.I | re.M)
_MESSAGE_ID_LINE = re.compile(r"^message-id:\s*<?([^\s<>]{3,900})>?", re.I | re.M)
_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)\s*:\s*(.*)$")
_RECIPIENT_FIELDS = {"final-recipient", "original-recipient"}
_MAX_SCAN = 65536
_DELAY = re.compile(r"\bdelay|not yet been delivered|will (continue|keep) (to )?try|"
                    r"still trying", re.I)


@dataclass(frozen=True)
class PartView:
    """One MIME entity as machine detection sees it, in document order. `text` is the
    decoded text of body text parts and report parts (for an attached message, its
    header block); `report_type` is set on multipart/report."""

    content_type: str
    text: str = ""
    report_type: str = ""


def part_text(parts: Sequence[PartView], *types: str) -> str:
    return next((p.text for p in parts if p.content_type in types), "")

def report_fields(text: str) -> list[tuple[str, str]]:
    """`name: value` fields of a report block; continuation lines are joined and a
    blank line is kept as ("", "") so callers can see record boundaries."""
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        if not line.strip():
            out.append(("", ""))
        elif line[0] in " \t" and out and out[-1][0]:
            out[-1] = (out[-1][0], out[-1][1] + " " + line.strip())
        elif m := _FIELD.match(line):
            out.append((m.group(1).lower(), m.group(2).strip()))
    return out

def _recipient_records(text: str) -> list[dict[str, str]]:
    """Per-recipient field groups of a delivery-status part. A group ends at a blank
    line, when one of its fields repeats, or at an Original-Recipient after a group
    that already has its Action/Status (some MTAs omit the blank lines)."""
    records: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    for name, value in report_fields(text) + [("", "")]:
        starts = name in cur or (name == "original-recipient" and "final-recipient" in cur
                                 and ("action" in cur or "status" in cur))
        if (not name or starts) and _RECIPIENT_FIELDS & cur.keys():
            records.append(cur)
            cur = {}
        if name and name not in cur:
            cur[name] = value
    return records

def _address_of(value: str) -> str | None:
    """The address of an rfc822-typed recipient field; None for x400 and the like."""
    kind, _, addr = value.rpartition(";")
    if kind.strip().lower() not in ("", "rfc822", "utf-8"):
        return None
    return clean_email(addr.strip().strip("<>").strip())

def _action_of(rec: dict[str, str]) -> str:
    action = rec.get("action", "").split()[0].lower() if rec.get("action") else ""
    if action:
        return action
    status = _STATUS.search(rec.get("status", "") + " " + rec.get("diagnostic-code", ""))
    return {"5": "failed", "4": "delayed", "2": "delivered"}.get(
        status.group(1)[0] if status else "5", "failed")

def dsn_report(h: dict[str, list[str]], parts: Sequence[PartView]) -> DsnReport:
    text = "\n\n".join(p.text for p in parts if p.content_type.endswith("delivery-status"))
    records = [(r, _action_of(r)) for r in _recipient_records(text)]
    actions = [a for _, a in records]
    action = next((a for a in ("failed", "delayed") if a in actions), actions[0] if actions
                  else text_action(h, parts))
    chosen = [r for r, a in records if a == action]
    recipients = [_address_of(r.get("original-recipient", "")) or
                  _address_of(r.get("final-recipient", "")) for r in chosen]
    found = [r for r in recipients if r] or _failed_from_headers(h)
    if not records and not found:
        found = _failed_from_text(h, parts)
    first = chosen[0] if chosen else {}
    status = _STATUS.search(first.get("status", "") + " " + first.get("diagnostic-code", ""))
    return DsnReport(
        action=action, status=status.group(1) if status else text_status(parts),
        recipients=tuple(dict.fromkeys(found)), original_message_id=_original_id(parts),
        diagnostic=sanitize(first.get("diagnostic-code", "").split(";", 1)[-1])[:500])

def _original_id(parts: Sequence[PartView]) -> str | None:
    for p in parts:
        if p.content_type in ("message/rfc822", "message/global", "text/rfc822-headers",
                              "message/rfc822-headers", "message/global-headers"):
            if m := _MESSAGE_ID_LINE.search(p.text):
                return m.group(1)
    notice = notice_text(parts)
    marker = ORIGINAL_MARKER.search(notice)
    if marker and (m := _MESSAGE_ID_LINE.search(notice, marker.end())):
        return m.group(1)
    return None

def notice_text(parts: Sequence[PartView]) -> str:
    """The human-readable notification: the first text/plain part (or the first text
    part), limited in size."""
    text = part_text(parts, "text/plain") or next(
        (p.text for p in parts if p.content_type.startswith("text/") and p.text), "")
    return text[:_MAX_SCAN]

def text_action(h: dict[str, list[str]], parts: Sequence[PartView]) -> str:
    subject = (h.get("subject") or [""])[0]
    head = notice_text(parts)[:2000]
    return "delayed" if _DELAY.search(subject) or (
        _DELAY.search(head) and not _PERMANENT.search(head)) else "failed"

def text_status(parts: Sequence[PartView]) -> str:
    m = _STATUS.search(notice_text(parts)[:8000])
    return m.group(1) if m else ""

def text_dsn(h: dict[str, list[str]], parts: Sequence[PartView]) -> DsnReport:
    notice = notice_text(parts)
    diag = next((ln for ln in notice.splitlines() if _SMTP_CODE.search(ln)), "")
    return DsnReport(action=text_action(h, parts), status=text_status(parts),
                     recipients=tuple(_failed_from_headers(h) or _failed_from_text(h, parts)),
                     original_message_id=_original_id(parts), diagnostic=sanitize(diag)[:500])

def _failed_from_headers(h: dict[str, list[str]]) -> list[str]:
    values = ",".join(h.get("x-failed-recipients", []))
    return [a.email for a in parse_addresses(values)]

def _failed_from_text(h: dict[str, list[str]], parts: Sequence[PartView]) -> list[str]:
    """Failed recipients named in a bounce's own text (before any returned message).
    In order of trust: `<addr>:` lines and `RCPT TO:<addr>`, plus addresses in the
    paragraph after a phrase like "the following addresses failed"; then addresses
    alone on a line; then addresses on lines that speak of failure. The bounce's own
    From/To/Reply-To/Sender are never among them."""
    notice = notice_text(parts)
    if m := ORIGINAL_MARKER.search(notice):
        notice = notice[:m.start()]
    own = {a.email.lower() for n in ("from", "to", "reply-to", "sender")
           for a in parse_addresses(", ".join(h.get(n, [])))}
    trusted = ANGLE_LINE.findall(notice) + _RCPT_TO.findall(notice)
    for trigger in _TRIGGER.finditer(notice):
        trusted += _paragraph_addresses(notice, trigger.end())
    weak = [a for ln in notice.splitlines() if _FAILURE_WORDS.search(ln)
            for a in _ANY_ADDR.findall(ln)]
    for group in (trusted, _ALONE_LINE.findall(notice), weak):
        found = [e for e in (clean_email(_SMTP_PREFIX.sub("", a).strip(".")) for a in group)
                 if e and e.lower() not in own and not DAEMON_LOCAL.match(e.rsplit("@", 1)[0])]
        if found:
            return list(dict.fromkeys(found))[:50]
    return []

def _paragraph_addresses(text: str, start: int) -> list[str]:
    """Addresses from `start` to the first blank line that follows an address."""
    found: list[str] = []
    for line in text[start:start + 2000].split("\n"):
        if not line.strip() and found:
            break
        found += _ANY_ADDR.findall(line)
    return found
