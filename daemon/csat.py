"""Customer satisfaction in the worker's write transaction: the survey a resolved ticket
may cause, and the answers.

`on_resolved` (called whenever a ticket becomes resolved: an agent's #resolve by mail or
`helpdesk update/reply`, a requester's #resolve, `Outbound.change_status`) asks
daemon.pipeline.csat.plan_survey whether the requester gets the survey now; if so it builds
`requester/survey` (daemon.pipeline.requester_notice) and records the survey with its
Message-ID in `csatsurvey` (store.csat); if not, and the queue sends surveys, the ticket's
`csat_skipped` event says why.

`answer_of` recognises an answer before the message is stored: a person's reply on the
ticket from its requester that names the survey mail (In-Reply-To/References: only our
own MAC-verified notice Message-IDs are looked up, so other replies cost no query) and whose
first line is a score (score_of). Such a reply threads into the ticket as a message but
never reopens it (daemon.message_path stores it as `append`); `record` then keeps the
score and, for a bad one when the queue says `notify_lead`, mails the queue's lead
(`agent/csat-bad`, with their reply address). A reply to the survey that holds no score
is an ordinary reply.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from daemon import tokens
from daemon.model import MailEffects, ParsedMessage, ThreadDecision
from daemon.pipeline.agent_mail import MailKit, Said, agent_mail
from daemon.pipeline.csat import Answer, SurveyFacts, plan_survey, score_of, survey_vars
from daemon.pipeline.notify import Desk
from daemon.pipeline.requester_notice import Notice, requester_notice
from daemon.pipeline.strip import strip_reply
from store.csat import SurveyRow
from store.records import TicketRow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SurveyAnswer:
    """A recognised answer: the survey it answers and its score."""

    survey: SurveyRow
    answer: Answer


class Surveys:
    """See module docstring. Built once by the composition root (daemon.app)."""

    def __init__(self, desk: Desk, templates, ring: tokens.Keyring, rules: Callable[[], Any],
                 random: Callable[[int], bytes], reply_token: Callable[[int, str], str | None] | None = None):
        self.desk, self.templates, self.ring, self.rules, self.random = desk, templates, ring, rules, random
        self.reply_token = reply_token

    def _queue(self, name: str):
        rules = self.rules()
        return rules.queues.get(name) if rules is not None else None

    # ------------------------------------------------------------------ a ticket resolved
    def on_resolved(self, tx, ticket: TicketRow, now: datetime) -> MailEffects:
        """The survey this resolution causes, if any (module docstring)."""
        queue = self._queue(ticket.queue)
        days = queue.survey_days if queue is not None else None
        if days is None:
            return MailEffects()
        facts = SurveyFacts(days, ticket.type, ticket.requester, tx.surveys.opened_by_human(ticket.id),
                            tx.agent_reads().tags(ticket.id), tx.surveys.last_sent(ticket.requester or ""),
                            self.desk.own)
        send, why = plan_survey(facts, now)
        history = tx.mail_history(ticket.id, [ticket.requester], "", now) if send else None
        if history is not None and ticket.requester.lower() in history.bouncing:
            send, why = False, f"mail to {ticket.requester} bounced recently"
        if not send:
            tx.surveys.note(ticket.id, now, why)
            return MailEffects()
        ref = f"{self.desk.prefix}-{ticket.id}"
        notice = Notice("survey", "survey", {"survey": survey_vars(ref, ticket.subject)})
        try:
            mail = requester_notice(notice, ticket, history, self.desk, self.templates.current, self.ring,
                                    {"name": ticket.queue, "description": queue.description}, now, self.random(8))
        except Exception as exc:                   # noqa: BLE001 - a bad template must not block the resolve
            log.error("ticket=%s survey not built: %s", ticket.id, exc)
            return MailEffects(suppressed=(f"not built: survey: {exc.__class__.__name__}: {exc}",))
        tx.surveys.sent(ticket.id, ticket.requester, ticket.queue, mail.message_id, now)
        return MailEffects(mails=(mail,))

    # ------------------------------------------------------------------ an answer
    def answer_of(self, tx, msg: ParsedMessage, decision: ThreadDecision) -> SurveyAnswer | None:
        """The survey answer `msg` is, or None (module docstring)."""
        if decision.action not in ("append", "reopen") or decision.ticket_id is None or not msg.machine.is_human:
            return None
        ours = tuple(r for r in (*msg.in_reply_to, *msg.references)      # only our notices can be a survey
                     if (tag := tokens.read_message_id(self.ring, r)) is not None and tag.kind == "notice"
                     and tag.ticket_id == decision.ticket_id)
        if not ours:
            return None
        survey = tx.surveys.answered(decision.ticket_id, tuple(dict.fromkeys(ours)))
        sender = msg.from_addr.email.lower() if msg.from_addr else ""
        if survey is None or sender != survey.requester:
            return None
        answer = score_of(strip_reply(msg.text))
        return SurveyAnswer(survey, answer) if answer is not None else None

    def record(self, tx, found: SurveyAnswer, msg: ParsedMessage, now: datetime) -> MailEffects:
        """Keep the score; a bad one may tell the queue's lead."""
        a, survey = found.answer, found.survey
        tx.surveys.answer(survey.id, a.score, a.comment, msg.message_id, now)
        log.info("ticket=%s survey answered: score %d", survey.ticket_id, a.score)
        queue = self._queue(survey.queue)
        lead = queue.with_role("lead") if queue is not None else None
        if not a.bad or queue is None or not queue.survey_notify_lead or lead is None:
            return MailEffects()
        ticket = tx.ticket(survey.ticket_id)
        kit = MailKit(self.desk, self.templates.current, self.ring, now, self.random, self.reply_token)
        said = Said(msg.from_addr.name if msg.from_addr else "", survey.requester, msg.subject, a.comment, now)
        extra = {"survey": {**survey_vars(f"{self.desk.prefix}-{ticket.id}", ticket.subject), "score": a.score,
                            "comment": a.comment, "requester": survey.requester}}
        subject = f"[{self.desk.prefix}-{ticket.id}] Bad satisfaction score ({a.score}/5): {ticket.subject}"
        try:
            mail = agent_mail(kit, "csat_bad", "csat-bad", lead, ticket, said,
                              {"name": queue.name, "description": queue.description}, extra, subject)
        except Exception as exc:                   # noqa: BLE001
            log.error("ticket=%s bad-score notice not built: %s", ticket.id, exc)
            return MailEffects(suppressed=(f"not built: csat-bad: {exc.__class__.__name__}: {exc}",))
        return MailEffects(mails=(mail,))
