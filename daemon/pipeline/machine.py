"""Machine-mail detection for the parse stage: did a human write this, and if not, what?

`judge` looks at decoded headers and a flat view of the MIME parts and returns a
`MachineVerdict` with its evidence. Evidence, strongest first: RFC 3464 delivery
reports, ARF feedback reports and vendor complaint headers; X-Failed-Recipients; an
explicit `Auto-Submitted: auto-replied`; recognisable non-standard bounces; RFC 8098
read receipts; other RFC 3834 and vendor auto-reply headers and subjects; list and bulk
headers; null sender and daemon/no-reply senders. `X-Auto-Response-Suppress` asks us not
to auto-answer but says nothing about who wrote the mail, so it sets
`suppress_auto_reply` and leaves the kind alone. Pure: no I/O, no logging.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from daemon.model import MachineVerdict
from daemon.pipeline.addresses import parse_addresses
from daemon.pipeline.machine_reports import (  # noqa: F401 (PartView re-exported)
    ANGLE_LINE, DAEMON_LOCAL, ORIGINAL_MARKER, PartView, dsn_report, notice_text, part_text,
    report_fields, text_dsn)

_DAEMON_TEXT = re.compile(r"mailer[- _]?daemon|postmaster|post_master|mail delivery|"
                          r"delivery subsystem|mail administrator|system administrator|"
                          r"\bndr\b|smtp", re.I)
_NOREPLY_LOCAL = re.compile(r"^(no[-_.]?reply|do[-_.]?not[-_.]?reply|bounces?)([-+_.].*)?$",
                            re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|returned mail|mail delivery (failed|failure|problem|warning)|delivery "
    r"(status notification|failure|notification|failed|has failed|problem|report|delayed|"
    r"warning)|failure notice|failure delivery|failed (delivery|mail)|non[- ]?deliver|"
    r"permanent delivery|message delivery (failure|has failed|delayed)|mail (not delivered|"
    r"could not be delivered|failed|failure|system error)|warning: (message|could not)|"
    r"there was an error sending|automatically rejected|could not be delivered|"
    r"not (been )?delivered|delayed mail|returned to sender|non remis|unzustellbar|"
    r"nicht zugestellt|non distribuable|no entregado|non recapitabile|не доставлено|"
    r"未送達|退信|无法(投递|送达|发送)|传输失败|配信(エラー|失敗)|送信エラー|not (a )?member|"
    r"loop (alert|detected)|duplicated message-id|too many hops", re.I)
_BOUNCE_BODY = re.compile(
    r"could not be (delivered|reached)|couldn't be delivered|was not delivered|undeliverable|"
    r"undelivered mail|delivery (has )?failed|delivery to the following|permanent(ly)? "
    r"(fatal )?(error|failure)|following address(es)? failed|user unknown|unknown user|"
    r"no such (user|mailbox|address)|mailbox (is )?(full|unavailable|not found)|"
    r"returned to (the )?sender|returning message to sender|not yet been delivered|"
    r"unable to deliver|(wasn't|was not|not) able to deliver|failed to deliver|"
    r"mail delivery failed|delivery status notification|rejected your message|message "
    r"(was )?rejected|quota exceeded|over quota|host unknown|\b[45]\d\d[ -][45]\.\d{1,3}"
    r"\.\d{1,3}\b|qmail-send program|did not reach the following|not accepted|invalid "
    r"mailbox|user not found|recipient (name )?is not recognized|unknown recipient|has been "
    r"returned|returned mail|failed recipients|address rejected|does not exist|"
    r"не может быть доставлено|не доставлено|无法(发送|送达|投递)|不能送达|未能送达|"
    r"konnte nicht zugestellt|unzustellbar|n'a pas pu être (remis|distribué)|"
    r"no (pudo|se pudo) (ser )?entregar|配信できません|送信できません|届きませんでした|"
    r"not a member of this (mailing )?list|duplicated message-id|too many hops", re.I)
_LIST_ADMIN_LOCAL = re.compile(r"[-+_.](admin|owner|request)$|^owner[-+_.]", re.I)
_BOUNCE_LOCAL = re.compile(r"(^|[-+_.])bounces?([-+_.=]|$)", re.I)
_FORWARDED = re.compile(r"^\W*(re|fwd?|fw|wg|aw|tr|sv|vs|rv|enc|i|r)\s*(\[\d+\])?\s*:", re.I)
_FEEDBACK_HEADERS = ("x-hmxmroriginalrecipient", "x-apple-unsubscribe")
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\W*(auto(matic|matische)?[ -]?(reply|response|antwort|respuesta)|autoreply|"
    r"out of (the )?office|abwesenheit|r[ée]ponse automatique|respuesta autom[áa]tica|"
    r"risposta automatica|away from (the )?office|on vacation)\b", re.I)
_XARS = {"all", "oof", "autoreply"}


def judge(headers: Sequence[tuple[str, str]], parts: Sequence[PartView] = (), *,
          envelope_mail_from: str | None = None) -> MachineVerdict:
    """Classify one message as human or machine-made, with the evidence. `headers` are
    decoded (name, value) pairs in order; `parts` the MIME entities in document order,
    without the insides of attached messages."""
    h = _index(headers)
    suppress = _xars(h)
    verdict = _reports(h, parts) or _bounce_or_reply(h, parts, envelope_mail_from) or \
        _receipt(parts)
    if verdict is None:
        verdict = _auto_headers(h) or _lists(h) or _senders(h, envelope_mail_from)
    if verdict is None:
        return MachineVerdict("human", reasons=suppress, suppress_auto_reply=bool(suppress))
    return MachineVerdict(verdict.kind, verdict.reasons + suppress, verdict.dsn,
                          suppress_auto_reply=bool(suppress))


def _index(headers: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in headers:
        out.setdefault(name.lower(), []).append(value)
    return out


def _why(name: str, value: str) -> str:
    return f"{name.title()}: {value}"[:200]


def _xars(h: dict[str, list[str]]) -> tuple[str, ...]:
    for value in h.get("x-auto-response-suppress", []):
        if _XARS & {v.lower() for v in re.split(r"[\s,;]+", value)}:
            return (_why("X-Auto-Response-Suppress", value),)
    return ()


# -- delivery, feedback and disposition reports -------------------------------------------

def _reports(h: dict[str, list[str]], parts: Sequence[PartView]) -> MachineVerdict | None:
    types = {p.content_type for p in parts}
    reports = {p.report_type.lower() for p in parts if p.report_type}
    if types & {"message/delivery-status", "message/global-delivery-status"} or \
            "delivery-status" in reports:
        dsn = dsn_report(h, parts)
        return MachineVerdict("bounce", (f"DSN: {dsn.action} {dsn.status}".strip(),), dsn)
    if "message/feedback-report" in types or "feedback-report" in reports:
        fields = report_fields(part_text(parts, "message/feedback-report"))
        kind = next((v for k, v in fields if k == "feedback-type"), "unknown")
        return MachineVerdict("feedback", (_why("Feedback-Type", kind),))
    for name in _FEEDBACK_HEADERS:             # non-ARF complaints (Hotmail JMRP, iCloud)
        if name in h:
            return MachineVerdict("feedback", (_why(name, h[name][0]),))
    return None


def _receipt(parts: Sequence[PartView]) -> MachineVerdict | None:
    """An RFC 8098 disposition notification (read receipt) that is not a bounce."""
    types = {p.content_type for p in parts}
    if "message/disposition-notification" in types or "disposition-notification" in {
            p.report_type.lower() for p in parts}:
        fields = report_fields(part_text(parts, "message/disposition-notification"))
        disp = next((v for k, v in fields if k == "disposition"), "")
        return MachineVerdict("auto_generated", (_why("Disposition", disp),))
    return None


# -- non-standard bounces and auto-replies ------------------------------------------------

def _from_parts(h: dict[str, list[str]]) -> tuple[str, str]:
    """(local part of the From address, the whole From value)."""
    value = (h.get("from") or [""])[0]
    found = parse_addresses(value)
    local = found[0].email.rsplit("@", 1)[0] if found else value.strip().strip("<>")
    return local, value


def _null_sender(h: dict[str, list[str]], envelope: str | None) -> str | None:
    if envelope is not None and envelope.strip("<> ") == "":
        return "envelope MAIL FROM: <>"
    rp = (h.get("return-path") or [None])[0]
    if rp is not None and rp.strip("<> ") == "":
        return _why("Return-Path", rp)
    return None


def _bounce_or_reply(h: dict[str, list[str]], parts: Sequence[PartView],
                     envelope: str | None) -> MachineVerdict | None:
    """A bounce that is not an RFC 3464 report, or an explicit auto-reply. A bounce
    needs X-Failed-Recipients, or bounce wording (subject or text) from a daemon, null,
    no-reply or otherwise automated sender; or wording in both subject and text from a
    list-admin sender or to a bounce address, or in a mail that is no reply/forward and
    returns a message. `Auto-Submitted: auto-replied` wins unless a daemon sender also
    uses a bounce subject."""
    failed = h.get("x-failed-recipients")
    local, from_value = _from_parts(h)
    subject = (h.get("subject") or [""])[0]
    daemon = bool(DAEMON_LOCAL.match(local) or _DAEMON_TEXT.search(from_value))
    null = _null_sender(h, envelope)
    sender = daemon or null is not None or bool(_NOREPLY_LOCAL.match(local))
    subject_hit = bool(_BOUNCE_SUBJECT.search(subject))
    replied = next((v for v in h.get("auto-submitted", [])
                    if v.strip().lower().startswith("auto-replied")), None)
    notice = notice_text(parts) if failed or sender or subject_hit else ""
    body_hit = bool(_BOUNCE_BODY.search(notice) or ANGLE_LINE.search(notice))
    if replied and not failed and not (daemon and subject_hit):
        return MachineVerdict("auto_reply", (_why("Auto-Submitted", replied),))
    sender = sender or _automated(h)
    weak = bool(_LIST_ADMIN_LOCAL.search(local)) or _to_bounce_address(h)
    if not notice and weak and subject_hit:
        notice = notice_text(parts)
        body_hit = bool(_BOUNCE_BODY.search(notice) or ANGLE_LINE.search(notice))
    if not (failed or (sender and (subject_hit or body_hit)) or (subject_hit and body_hit and (
            weak or (not _FORWARDED.match(subject) and _has_returned_message(parts))))):
        return None
    evidence = [e for e in (
        _why("X-Failed-Recipients", failed[0]) if failed else "",
        _why("From", from_value) if daemon else "", null or "",
        _why("Subject", subject) if subject_hit else "",
        "bounce wording in the text" if body_hit else "") if e]
    return MachineVerdict("bounce", tuple(evidence), text_dsn(h, parts))


def _to_bounce_address(h: dict[str, list[str]]) -> bool:
    """Sent to a bounce-handling address (list `-bounces`, VERP): nobody writes there."""
    return any(_BOUNCE_LOCAL.search(a.email.rsplit("@", 1)[0])
               for a in parse_addresses(", ".join(h.get("to", []))))


def _automated(h: dict[str, list[str]]) -> bool:
    """Headers by which software marks its own mail (bulk, auto-submitted...)."""
    precedence = {v.strip().lower() for n in ("precedence", "x-precedence") for v in h.get(n, [])}
    return bool(precedence & {"bulk", "junk", "list", "auto_reply"}) or any(
        n in h for n in ("auto-submitted", "x-autogenerated", "x-autoreply", "x-autorespond"))


def _has_returned_message(parts: Sequence[PartView]) -> bool:
    return any(p.content_type in ("message/rfc822", "text/rfc822-headers") for p in parts) \
        or bool(ORIGINAL_MARKER.search(notice_text(parts)))


# -- headers that say "automatic" -------------------------------------------------------

def _auto_headers(h: dict[str, list[str]]) -> MachineVerdict | None:
    for value in h.get("auto-submitted", []):
        token = value.split(";", 1)[0].strip().lower()
        if token and token != "no":
            kind = "auto_reply" if token == "auto-replied" else "auto_generated"
            return MachineVerdict(kind, (_why("Auto-Submitted", value),))
    for name in ("x-autoreply", "x-autorespond", "x-autoresponder", "x-autoreply-from",
                 "x-mail-autoreply"):
        if name in h:
            return MachineVerdict("auto_reply", (_why(name, h[name][0]),))
    if "x-autogenerated" in h:
        return MachineVerdict("auto_generated", (_why("X-Autogenerated", h["x-autogenerated"][0]),))
    for name in ("precedence", "x-precedence"):
        for value in h.get(name, []):
            if value.strip().lower() in ("auto_reply", "auto-reply"):
                return MachineVerdict("auto_reply", (_why(name, value),))
    subject = (h.get("subject") or [""])[0]
    if _AUTO_REPLY_SUBJECT.search(subject):
        return MachineVerdict("auto_reply", (_why("Subject", subject),))
    return None


def _lists(h: dict[str, list[str]]) -> MachineVerdict | None:
    for name in ("precedence", "x-precedence"):
        for value in h.get(name, []):
            token = value.strip().lower()
            if token in ("bulk", "junk", "list"):
                return MachineVerdict("list" if token == "list" else "bulk", (_why(name, value),))
    if "list-id" in h:
        return MachineVerdict("list", (_why("List-Id", h["list-id"][0]),))
    if "list-unsubscribe" in h:
        return MachineVerdict("bulk", (_why("List-Unsubscribe", h["list-unsubscribe"][0]),))
    return None


def _senders(h: dict[str, list[str]], envelope: str | None) -> MachineVerdict | None:
    null = _null_sender(h, envelope)
    if null:
        return MachineVerdict("auto_generated", (null,))
    local, value = _from_parts(h)
    if DAEMON_LOCAL.match(local) or _NOREPLY_LOCAL.match(local):
        return MachineVerdict("auto_generated", (_why("From", value),))
    return None
