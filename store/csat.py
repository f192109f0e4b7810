"""Satisfaction surveys' rows (`csatsurvey`), in the caller's open transaction or a read session.

One row per survey sent: the ticket, the requester, the ticket's queue at the time, the
survey mail's Message-ID (a reply names it in In-Reply-To/References), when it was sent,
and once answered the score (1-5), the comment, when, and the answering message. The
latest answer counts. Reports read `scores` (or the table directly: see docs/problems-csat.md).
Nothing here commits.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, select

from daemon.clock import aware, to_utc
from store import tables as m


@dataclass(frozen=True)
class SurveyRow:
    """One survey and its answer (score None while unanswered)."""

    id: int
    ticket_id: int
    requester: str
    queue: str
    message_id: str
    sent_at: datetime
    score: int | None = None
    comment: str = ""
    answered_at: datetime | None = None


def _row(r: m.CsatSurvey) -> SurveyRow:
    return SurveyRow(r.id, r.ticket_id, r.requester, r.queue, r.message_id, aware(r.sent_at), r.score, r.comment,
                     aware(r.answered_at) if r.answered_at else None)


class SurveyTx:
    """Survey rows over one session (WriteTx.surveys, or a read session for views)."""

    def __init__(self, s: Session):
        self.s = s

    def last_sent(self, requester: str) -> datetime | None:
        """When this requester was last sent a survey (any ticket)."""
        at = self.s.exec(select(func.max(m.CsatSurvey.sent_at))
                         .where(m.CsatSurvey.requester == requester.lower())).one()
        return aware(at) if at else None

    def opened_by_human(self, ticket_id: int) -> bool:
        """Whether a person wrote the mail that opened the ticket."""
        kind = self.s.exec(select(m.Message.machine_kind).where(m.Message.ticket_id == ticket_id)
                           .order_by(m.Message.id).limit(1)).first()
        return kind in (None, "human")

    def answered(self, ticket_id: int, refs: tuple[str, ...]) -> SurveyRow | None:
        """The ticket's survey that one of these message ids names, if any."""
        if not refs:
            return None
        r = self.s.exec(select(m.CsatSurvey).where(m.CsatSurvey.ticket_id == ticket_id,
                                                   m.CsatSurvey.message_id.in_(list(refs)))
                        .order_by(m.CsatSurvey.id.desc())).first()
        return _row(r) if r is not None else None

    def sent(self, ticket_id: int, requester: str, queue: str, message_id: str, now: datetime) -> None:
        self.s.add(m.CsatSurvey(ticket_id=ticket_id, requester=requester.lower(), queue=queue,
                                message_id=message_id, sent_at=to_utc(now)))
        self._event(ticket_id, now, "csat_sent", {"to": requester.lower(), "message_id": message_id})

    def answer(self, survey_id: int, score: int, comment: str, message_id: str, now: datetime) -> None:
        """Record (or replace: the latest answer counts) a survey's score."""
        r = self.s.get(m.CsatSurvey, survey_id)
        r.score, r.comment, r.answered_at, r.answer_message_id = score, comment, to_utc(now), message_id
        self.s.add(r)
        self._event(r.ticket_id, now, "csat", {"score": score, "comment": comment[:500], "message_id": message_id})

    def note(self, ticket_id: int, now: datetime, why: str) -> None:
        """Why no survey was sent when the ticket was resolved."""
        self._event(ticket_id, now, "csat_skipped", {"why": why})

    def for_ticket(self, ticket_id: int) -> list[SurveyRow]:
        return [_row(r) for r in self.s.exec(select(m.CsatSurvey).where(m.CsatSurvey.ticket_id == ticket_id)
                                             .order_by(m.CsatSurvey.id))]

    def _event(self, ticket_id: int, at: datetime, kind: str, detail: dict) -> None:
        self.s.add(m.Event(ticket_id=ticket_id, at=to_utc(at), kind=kind,
                           detail=json.dumps(detail, ensure_ascii=False)))


def scores(s: Session, since: datetime | None = None, until: datetime | None = None) -> list[SurveyRow]:
    """Every survey sent in [since, until) with its answer, oldest first: what a report
    reads (answered ones have a score; the response rate is answered / sent)."""
    q = select(m.CsatSurvey).order_by(m.CsatSurvey.sent_at, m.CsatSurvey.id)
    if since is not None:
        q = q.where(m.CsatSurvey.sent_at >= to_utc(since))
    if until is not None:
        q = q.where(m.CsatSurvey.sent_at < to_utc(until))
    return [_row(r) for r in s.exec(q)]
