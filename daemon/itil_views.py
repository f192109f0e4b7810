"""What `helpdesk show` adds for problem management and satisfaction (read side).

JSON keys added to the ticket object (`show --json`, `update --json`):

  problem      on an incident: the problem it is linked to, {ref, subject, status} or null
  incidents    on a problem: its linked incidents, [{ref, subject, status, requester}]
  known_error  on a problem: {workaround, set_at} or null
  csat         the latest satisfaction survey: {sent_at, score (1-5 or null while
               unanswered), comment, answered_at} or null
  approvals    on a change: its approval (daemon.approval_view), else null

`itil_show` gives `show` and `update`/`reply --json` the same keys (one shape everywhere).

The text view gets the same as header lines; `export` the same keys per ticket
(`itil_batch`: four queries per batch of tickets). Strings from mail pass through views.shown.
"""
from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from daemon.approval_view import approvals_json, approvals_text
from daemon.clock import aware
from daemon.views import iso, shown
from store import tables as m
from store.approvals_store import ApprovalStore
from store.problems import INCIDENT, PROBLEM


def itil_show(engine, ticket_id: int, prefix: str, status: str) -> tuple[dict[str, Any], list[str]]:
    """The keys above (approvals too) for one ticket of status `status`, and their text lines."""
    extra = itil_json(engine, ticket_id, prefix)
    approval = ApprovalStore(engine).read(ticket_id)
    return {**extra, "approvals": approvals_json(approval, status)}, itil_lines(extra) + approvals_text(approval, status)


def itil_json(engine, ticket_id: int, prefix: str) -> dict[str, Any]:
    """The keys above for one ticket ({} when there is no such ticket)."""
    with Session(engine) as s:
        ticket = s.get(m.Ticket, ticket_id)
        return _batch(s, [(ticket.id, ticket.type)], prefix)[ticket.id] if ticket is not None else {}


def itil_batch(engine, tickets: list[tuple[int, str]], prefix: str) -> dict[int, dict[str, Any]]:
    """The keys above for many (id, type) tickets in four queries (export's batches)."""
    if not tickets:
        return {}
    with Session(engine) as s:
        return _batch(s, tickets, prefix)


def _batch(s: Session, tickets: list[tuple[int, str]], prefix: str) -> dict[int, dict[str, Any]]:
    ids = [tid for tid, _ in tickets]
    links = s.exec(select(m.TicketLink).where(m.TicketLink.ticket_id.in_(ids),
                                              m.TicketLink.kind.in_((PROBLEM, INCIDENT)))).all()
    others = {t.id: t for t in s.exec(select(m.Ticket).where(m.Ticket.id.in_({ln.other_id for ln in links})))} \
        if links else {}
    known = {k.ticket_id: k for k in s.exec(select(m.KnownError).where(m.KnownError.ticket_id.in_(ids)))}
    last = {r.ticket_id: r for r in s.exec(select(m.CsatSurvey).where(m.CsatSurvey.ticket_id.in_(ids))
                                           .order_by(m.CsatSurvey.id))}
    out: dict[int, dict[str, Any]] = {tid: {"problem": None} for tid in ids}
    for tid, kind in tickets:
        if kind == PROBLEM:
            out[tid].update(incidents=[], known_error=None)
    for ln in sorted(links, key=lambda x: x.other_id):
        other = others.get(ln.other_id)
        if other is None:
            continue
        if ln.kind == PROBLEM:
            out[ln.ticket_id]["problem"] = {"ref": f"{prefix}-{other.id}", "subject": other.subject,
                                            "status": other.status}
        elif "incidents" in out[ln.ticket_id]:
            out[ln.ticket_id]["incidents"].append({"ref": f"{prefix}-{other.id}", "subject": other.subject,
                                                   "status": other.status, "requester": other.requester})
    for tid, k in known.items():
        if "known_error" in out[tid]:
            out[tid]["known_error"] = {"workaround": k.workaround, "set_at": iso(aware(k.set_at))}
    for tid in ids:
        r = last.get(tid)
        out[tid]["csat"] = {"sent_at": iso(aware(r.sent_at)), "score": r.score, "comment": r.comment,
                            "answered_at": iso(aware(r.answered_at)) if r.answered_at else None} if r else None
    return out


def itil_lines(data: dict[str, Any]) -> list[str]:
    """The same as text lines for `show`."""
    lines: list[str] = []
    if data.get("problem"):
        p = data["problem"]
        lines.append(f"problem: {p['ref']} ({p['status']}) {shown(p['subject'])}")
    if "incidents" in data:
        lines.append("incidents: " + (", ".join(f"{i['ref']} ({i['status']})" for i in data["incidents"])
                                      or "none linked"))
    if data.get("known_error"):
        lines.append("workaround: " + shown(data["known_error"]["workaround"][:300]))
    c = data.get("csat")
    if c is not None:
        lines.append(f"satisfaction: {c['score']}/5" + (f" \"{shown(c['comment'][:200])}\"" if c["comment"] else "")
                     + f" (answered {c['answered_at']})" if c["score"] is not None
                     else f"satisfaction: survey sent {c['sent_at']}, no answer yet")
    return lines
