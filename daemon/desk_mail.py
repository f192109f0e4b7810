"""Agents find their way by mail: `#help`, `#mine` and `#queue NAME` sent to the desk address.

An authenticated registered agent (the agent path's prelude: DKIM or our MTA's
Authentication-Results) whose mail to the plain desk address holds only these command
lines gets an answer instead of a new ticket: `#help` lists the commands and the macros
they may use and the queues they work; `#mine` their open assigned tickets, `#queue NAME`
the open tickets of a queue they work - each with ref, subject, priority, the business
time left on its SLA clock and a signed
reply address for that ticket (answering it is working the ticket). Nothing is stored
but the answer's outbox row (template agent/desk). An unauthenticated mail goes on as
any other (the agent path decides on it).

The same query delivered twice (an MTA's retry, an IMAP re-poll) is answered once: the
answer's nonce - which keys its outbox row and makes its Message-ID - is derived from the
query's Message-ID and content digest (`answer_nonce`), so a second delivery finds the
row (outcome `duplicate`) and two nodes racing on it hit the outbox's UNIQUE nonce.
"""
from __future__ import annotations

import hashlib
from datetime import datetime

from daemon import tokens
from daemon.model import MailEffects
from daemon.pipeline.agent_mail import MailKit, agent_mail
from daemon.pipeline.commands import NAMES
from daemon.pipeline.digest import SlaNote, sla_note
from daemon.pipeline.sla import policy_for, sla_state
from store.desk_reads import open_tickets
from store.records import SaveResult
from daemon.agent_notices import Handled

QUERIES = ("help", "mine", "queue")
MAX_LISTED = 50


def answer_nonce(msg) -> bytes:
    """The 8-byte nonce of the answer to query mail `msg` (see module docstring)."""
    key = f"desk-answer\0{msg.message_id}\0{msg.content_digest}".encode("utf-8", "surrogateescape")
    return hashlib.sha256(key).digest()[:8]


def query_of(pre) -> tuple[str, str] | None:
    """(name, argument) when the mail holds only query lines, else None."""
    lines = pre.parsed.lines
    if not lines or any(name not in QUERIES for _, name, _ in lines) or pre.parsed.body.strip():
        return None
    _, name, arg = lines[0]
    return name, arg.strip()


class DeskQueries:
    """See module docstring."""

    def __init__(self, notices, macros=None, escalator=None):
        self.notices, self.macros, self.escalator = notices, macros, escalator

    def answer(self, tx, msg, pre, rules, now: datetime):
        """A `Handled` (daemon.agents) when this was a query it answered, else None."""
        agent, auth = pre.claim.from_agent, pre.auth
        if pre.check is not None or pre.claim.comment or agent is None or not msg.machine.is_human:
            return None
        if auth is None or not auth.passed or auth.address != agent.email:
            return None
        query = query_of(pre)
        if query is None:
            return None
        nonce = answer_nonce(msg)
        if tx.outbox_ref(nonce=nonce.hex()) is not None:          # answered already: a redelivery
            return Handled("recorded", SaveResult("duplicate", None, None, msg.message_id))
        title, lines = self._lines(tx, query, agent, rules, now)
        n = self.notices
        kit = MailKit(n.desk, n.templates.current, n.ring, now, lambda size: nonce[:size], n.reply_token)
        mail = agent_mail(kit, "agent_desk", "desk", agent, None, None, {"name": "", "description": ""},
                          {"lines": lines, "title": title}, title)
        applied = tx.apply_mail(MailEffects(mails=(mail,)), None, now)
        return Handled("recorded", SaveResult(f"agent:{query[0]}", None, None, msg.message_id),
                       applied.outbox_ids, applied.alerts)

    def sla_note(self, tx, ticket_id: int, now: datetime, risk_percent: float = 100.0) -> SlaNote:
        """The ticket's running SLA clock (daemon.pipeline.digest.sla_note); no text when none runs."""
        settings = self.escalator.settings()[1] if self.escalator is not None else None
        row = tx.sla.row(ticket_id) if settings is not None else None
        trow = tx.ticket(ticket_id) if row is not None else None
        if trow is None:
            return SlaNote("", False)
        history = tx.sla.history(trow, row.policy)
        return sla_note(sla_state(history, policy_for(settings, history), now), risk_percent)

    def entry(self, t, agent, note: SlaNote) -> list[str]:
        """The two lines of one listed ticket: ref, priority, status, subject, SLA; its reply address."""
        prefix, address = self.notices.desk.prefix, self.notices.desk.address
        reply = tokens.reply_address(address, self.notices.reply_token(t.id, agent.email))
        return [f"{prefix}-{t.id}  {t.priority}  {t.status:<8} {t.subject[:70]}"
                + (f"  (SLA: {note.text})" if note.text else ""),
                f"    assignee {t.assignee or 'none'}; reply to work it: {reply}"]

    def _lines(self, tx, query: tuple[str, str], agent, rules, now: datetime) -> tuple[str, list[str]]:
        name, arg = query
        mine = sorted(q.name for q in rules.queues.values() if any(a.email == agent.email for a in q.agents))
        if name == "help":
            macros = self.macros().names if self.macros is not None else ()
            return "Commands you may use", [
                "Answer a ticket mail (its Reply-To is your signed address) and start with commands:",
                *(f"  #{c}" for c in NAMES), "  #resolve #close #pending #open (shortcuts)",
                "  #macro NAME   answer with a canned text: " + (", ".join(macros) or "none defined"),
                f"Your queues: {', '.join(mine) or 'none'}",
                f"Write #mine or #queue NAME to {self.notices.desk.address} for open tickets."]
        if name == "queue" and arg not in rules.queues:
            return f"No queue {arg!r}", [f"There is no queue {arg!r}. Queues: {', '.join(sorted(rules.queues))}."]
        if name == "queue" and arg not in mine:
            return f"Queue {arg}", [f"You are not an agent of queue {arg}. Your queues: {', '.join(mine) or 'none'}."]
        rows = open_tickets(tx.s, assignee=agent.email, limit=MAX_LISTED) if name == "mine" \
            else open_tickets(tx.s, queue=arg, limit=MAX_LISTED)
        title = "Your open tickets" if name == "mine" else f"Open tickets of queue {arg}"
        lines = [f"{len(rows)} open ticket(s){' (the first ' + str(MAX_LISTED) + ')' if len(rows) >= MAX_LISTED else ''}:"]
        for t in rows:
            lines += self.entry(t, agent, self.sla_note(tx, t.id, now))
        return title, lines
