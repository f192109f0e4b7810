"""Render store records as the contract's JSON objects and as readable text (pure).

Everything shown comes from mail, i.e. from strangers. The text views pass each such
string through `shown`, which makes control characters (a terminal escape sequence in a
subject, body or file name could rewrite the agent's screen) and bidi overrides (an
`exe.pdf` trick) visible as `\\xNN` / `\\u202e` instead of acting on the terminal. JSON
escapes control characters itself. Nothing here ever outputs attachment bytes or HTML:
an HTML body is shown only as its text rendering, an attachment only by name, type and size.
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable, Iterator

if TYPE_CHECKING:                 # only named: `tickets` on the light path defines no other row type
    from store.records import QuarantineRow, TicketDetail, TicketRow


_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def shown(value: str, *, newlines: bool = False) -> str:
    """`value` safe to print on a terminal: control and bidi characters made visible
    (tabs kept; newlines kept only when `newlines`)."""
    out = _UNSAFE.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", value)
    return out if newlines else out.replace("\n", "\\n")


def iso(dt: datetime | None) -> str | None:
    return dt.isoformat(timespec="seconds") if dt is not None else None


def ref(prefix: str, ticket_id: int) -> str:
    return f"{prefix}-{ticket_id}"


def ticket_json(t: TicketRow, prefix: str) -> dict[str, Any]:
    return {"id": t.id, "ref": ref(prefix, t.id), "subject": t.subject, "type": t.type,
            "status": t.status, "priority": t.priority, "queue": t.queue, "requester": t.requester,
            "assignee": t.assignee, "created_at": iso(t.created_at), "updated_at": iso(t.updated_at),
            "message_count": t.message_count}


def _event_detail(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def detail_json(d: TicketDetail, prefix: str, sla: dict[str, Any] | None = None) -> dict[str, Any]:
    """The contract's ticket object; `sla` from daemon.sla.views (nulls when not given)."""
    out = ticket_json(d.ticket, prefix)
    out["tags"] = list(d.tags)
    out["participants"] = [{"email": e, "role": r} for e, r in d.participants]
    out["links"] = [{"ref": ref(prefix, other), "kind": kind} for other, kind in d.links]
    out["messages"] = [{
        "message_id": x.message_id,
        "from": f"{x.from_name} <{x.from_addr}>" if x.from_name else x.from_addr,
        "to": list(x.to), "cc": list(x.cc), "subject": x.subject, "direction": x.direction,
        "visibility": x.visibility, "text": x.text, "received_at": iso(x.received_at),
        "machine": x.machine_kind, "thread_evidence": x.thread_evidence,
        "attachments": [{"filename": a.filename, "content_type": a.content_type, "size": a.size}
                        for a in x.attachments],
    } for x in d.messages]
    out["events"] = [{"at": iso(e.at), "kind": e.kind, "detail": _event_detail(e.detail)} for e in d.events]
    out["sla"] = sla if sla is not None else {"response_due": None, "resolution_due": None, "responded_at": None,
                                              "breached": []}
    return out


def tickets_text(rows: list[TicketRow], prefix: str) -> str:
    return "\n".join(tickets_lines(rows, prefix))


def tickets_lines(rows: Iterable[TicketRow], prefix: str) -> Iterator[str]:
    """`helpdesk tickets` a line at a time (the header first; "no tickets" for none)."""
    head = False
    for t in rows:
        if not head:
            yield f"{'REF':<10} {'STATUS':<9} {'PRI':<4} {'TYPE':<9} {'QUEUE':<12} {'UPDATED':<17} {'REQUESTER':<28} SUBJECT"
            head = True
        yield (f"{ref(prefix, t.id):<10} {t.status:<9} {t.priority:<4} {t.type[:9]:<9} {t.queue[:12]:<12} "
               f"{t.updated_at:%Y-%m-%d %H:%M}  {shown(t.requester[:28]):<28} {shown(t.subject[:70])}")
    if not head:
        yield "no tickets"


def json_list_pieces(objs: Iterable) -> Iterator[str]:
    """json.dumps(list(objs), ensure_ascii=False, indent=1), a piece at a time: an output of
    any length in flat memory, the same bytes."""
    first = True
    for obj in objs:
        yield ("[\n " if first else ",\n ") + json.dumps(obj, ensure_ascii=False, indent=1).replace("\n", "\n ")
        first = False
    yield "[]" if first else "\n]"


def detail_text(d: TicketDetail, prefix: str, sla_lines: list[str] | None = None,
                bodies: dict[int, list[str]] | None = None) -> str:
    """The ticket as text; each message shows its stored text (200 lines at most), or
    all of `bodies[pk]` when given (`show --full`: daemon.original_view)."""
    t = d.ticket
    lines = [f"{ref(prefix, t.id)}  {shown(t.subject)}",
             f"  status {t.status} · priority {t.priority} · type {t.type} · queue {t.queue}",
             f"  requester {shown(t.requester)} · assignee {shown(t.assignee or '-')} · {t.message_count} message(s)",
             f"  created {iso(t.created_at)} · updated {iso(t.updated_at)}"]
    if d.links:
        lines.append("  linked: " + ", ".join(f"{ref(prefix, o)} ({k})" for o, k in d.links))
    if d.tags:
        lines.append("  tags: " + ", ".join(shown(tag) for tag in d.tags))
    lines += ["  " + line for line in sla_lines or ()]
    for x in d.messages:
        who = shown(f"{x.from_name} <{x.from_addr}>" if x.from_name else x.from_addr)
        flag = "" if x.visibility == "public" else f" [{x.visibility}]"
        lines += ["", f"--- {iso(x.received_at)} {x.direction} from {who}{flag}",
                  f"    Subject: {shown(x.subject)}", f"    ({shown(x.thread_evidence)})"]
        body = bodies[x.pk] if bodies is not None else (x.text.strip() or "(no text)").splitlines()[:200]
        lines += ["    " + shown(line) for line in body]
        for a in x.attachments:
            lines.append(f"    [attachment] {shown(a.filename)} ({shown(a.content_type)}, {a.size} bytes)")
    lines.append("")
    lines.append("events:")
    lines += [f"  {iso(e.at)} {e.kind} {shown(e.detail)}" for e in d.events]
    return "\n".join(lines)


def quarantine_json(q: QuarantineRow) -> dict[str, Any]:
    return {"id": q.id, "created_at": iso(q.created_at), "stage": q.stage, "reason": q.reason,
            "detail": q.detail, "size": q.size, "from": q.header_from, "subject": q.header_subject,
            "status": q.status, "released_at": iso(q.released_at), "envelope": q.envelope,
            "sha256": q.raw_sha256}


def quarantine_text(rows: list[QuarantineRow]) -> str:
    if not rows:
        return "quarantine is empty"
    lines = [f"{'ID':<6} {'WHEN':<17} {'STAGE':<12} {'REASON':<18} FROM / SUBJECT"]
    for q in rows:
        lines.append(f"{q.id:<6} {q.created_at:%Y-%m-%d %H:%M}  {q.stage[:12]:<12} {q.reason[:18]:<18} "
                     f"{shown(q.header_from[:40])} / {shown(q.header_subject[:60])}")
    return "\n".join(lines)
