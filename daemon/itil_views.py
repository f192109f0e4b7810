"""What `helpdesk show` adds for problem management and satisfaction (read side).

JSON keys added to the ticket object (`show --json`, `update --json`):

  problem      on an incident: the problem it is linked to, {ref, subject, status} or null
  incidents    on a problem: its linked incidents, [{ref, subject, status, requester}]
  known_error  on a problem: {workaround, set_at} or null
  csat         the latest satisfaction survey: {sent_at, score (1-5 or null while
               unanswered), comment, answered_at} or null

The text view gets the same as header lines. Strings from mail pass through views.shown.
"""
from __future__ import annotations

from typing import Any

from sqlmodel import Session

from daemon.views import iso, shown
from store import tables as m
from store.csat import SurveyTx
from store.problems import ProblemTx


def itil_json(engine, ticket_id: int, prefix: str) -> dict[str, Any]:
    """The keys above for one ticket."""
    with Session(engine) as s:
        ticket = s.get(m.Ticket, ticket_id)
        if ticket is None:
            return {}
        problems = ProblemTx(s)
        pid = problems.problem_of(ticket_id)
        problem = s.get(m.Ticket, pid) if pid else None
        out: dict[str, Any] = {"problem": {"ref": f"{prefix}-{problem.id}", "subject": problem.subject,
                                           "status": problem.status} if problem is not None else None}
        if ticket.type == "problem":
            out["incidents"] = [{"ref": f"{prefix}-{i.id}", "subject": i.subject, "status": i.status,
                                 "requester": i.requester} for i in problems.incidents(ticket_id)]
            known = s.get(m.KnownError, ticket_id)
            out["known_error"] = {"workaround": known.workaround, "set_at": iso(known.set_at)} if known else None
        surveys = SurveyTx(s).for_ticket(ticket_id)
        last = surveys[-1] if surveys else None
        out["csat"] = {"sent_at": iso(last.sent_at), "score": last.score, "comment": last.comment,
                       "answered_at": iso(last.answered_at)} if last is not None else None
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
