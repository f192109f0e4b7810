"""One message's path through the pipeline, for the spool worker (daemon.worker).

`prepare` runs before the write transaction: parse (unless a helper process did), recognise
our own mail (daemon.outbound), and the agent path's prelude (daemon.agents: reply token,
sender authentication - DNS never runs while the transaction holds its lock). `lock` opens
the transaction by locking the thread keys of every message of the batch (store.saving).
`store_one` runs inside the worker's `store.writing.WriteTx`: thread (or map a bounce to the
mail it reports on), the agent path or classify by the rules, save, plan the mail and SLA
timers the change causes and apply them (and, when the message carried thread keys of
another ticket too, the notice to the agents that the tickets were linked). Each stage runs
once per message; a failure comes out as `StageFailed` naming the stage.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Callable

from sqlalchemy.exc import SQLAlchemyError

from daemon.agents import AgentDesk, Prelude
from daemon.clock import utcnow
from daemon.errors import ParseError, StoreUnavailable
from daemon.model import Envelope, ParsedMessage, ThreadCandidates, ThreadDecision
from daemon.outbound import Outbound
from daemon.pipeline import classify as classify_mod
from daemon.pipeline.parse import DEFAULT_LIMITS, parse
from daemon.pipeline.strip import strip_reply
from daemon.pipeline.thread import subject_tag, thread, thread_keys
from daemon.problems import link_new
from daemon.rules.loader import RuleSet
from daemon.settings import WorkerSettings
from daemon.spool import Claim
from store.records import SaveResult
from store.writing import Saved, WriteTx


@dataclass
class Entry:
    """One message on its way through the pipeline: from the spool (`claim`, or None for a
    message handed to `process`), parsed (`msg`) or refused (`error`), with its prelude."""

    claim: Claim | None
    raw: bytes
    envelope: Envelope
    msg: ParsedMessage | None = None
    pre: Prelude | None = None
    error: Exception | None = None

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


@dataclass(frozen=True)
class Done:
    """What the transaction did for one entry: the save result and the outbox rows and
    fuse alerts to hand on after the commit; or `deferred` (wait in the spool)."""

    result: SaveResult | None
    outbox_ids: tuple[int, ...] = ()
    alerts: tuple = ()
    deferred: str = ""


class StageFailed(Exception):
    """A message failed inside the transaction at `stage` (carries the cause)."""

    def __init__(self, stage: str, cause: Exception):
        super().__init__(f"{stage}: {cause}")
        self.stage, self.cause = stage, cause


class MessagePath:
    """See module docstring."""

    def __init__(self, settings: WorkerSettings, *, clock: Callable[[], datetime] = utcnow,
                 rules: Callable[[], "RuleSet | None"] = lambda: None, mail: Outbound | None = None,
                 agents: AgentDesk | None = None, parse: Callable[..., ParsedMessage] = parse):
        self.settings, self.clock, self.rules, self.mail, self.agents = settings, clock, rules, mail, agents
        self.parse = parse                   # daemon.parse_guard.ParseGuard.parse in a daemon (a time budget)

    # ------------------------------------------------------------------ before the transaction
    def prepare(self, entry: Entry, ahead: "ParsedMessage | ParseError | None" = None) -> Entry:
        """Parse (unless a helper did: `ahead`) and compute the agent prelude; a failure is
        kept on the entry (`error`, with its stage)."""
        try:
            if isinstance(ahead, ParseError):
                raise ahead
            msg = ahead if ahead is not None else self.parse(entry.raw, limits=self.settings.limits or DEFAULT_LIMITS,
                                                             envelope_mail_from=entry.envelope.mail_from)
            entry.msg = self.mail.inspect(msg, entry.envelope) if self.mail is not None else msg
        except Exception as exc:
            entry.error = exc if isinstance(exc, ParseError) else StageFailed("parse", exc)
            return entry
        try:
            entry.pre = self.agents.prelude(entry.msg, entry.envelope, entry.raw) if self.agents else None
        except Exception as exc:
            entry.error = StageFailed("agent", exc)
        return entry

    # ------------------------------------------------------------------ inside the transaction
    def lock(self, tx: WriteTx, entries: "list[Entry]") -> None:
        """First thing in the transaction: lock every thread key the entries carry (their own
        ids, In-Reply-To, References), then every ticket they may change - the ones the keys
        lead to, subject tags, reply tokens, the tickets commands name (a merge's second
        ticket; a problem's incidents when its status changes), a bounce's or our own mail's
        ticket - in the store's one order (store.writing). A racing transaction with a shared
        key waits, then threads on what this one committed; a merge takes the threads lock
        alone (it moves keys)."""
        keys: set[str] = set()
        tickets: set[int] = set()
        exclusive = False
        for e in entries:
            if e.msg is None:
                continue
            keys.update((*thread_keys(e.msg), e.msg.message_id, *e.msg.in_reply_to, *e.msg.references))
            tickets.update(self._targets(tx, e))
            named = self.agents.lock_targets(e.pre) if self.agents is not None else None
            if named is not None:
                tickets.update(named.tickets)
                exclusive = exclusive or named.merge
                if named.status:                       # a problem resolved resolves its incidents
                    tickets.update(i.id for t in named.tickets for i in tx.problems.incidents(t))
        tx.lock_threads(keys, tickets, exclusive=exclusive)
        tx.prefetch_digests(e.msg.message_id for e in entries if e.msg is not None)

    def _targets(self, tx: WriteTx, e: Entry) -> set[int]:
        """Tickets named outside the thread keys: the subject tag, our own mail come back, the
        mail a bounce reports on (read before the locks: an outbox row's ticket never changes)."""
        msg, found = e.msg, set()
        tag = subject_tag(msg.subject, self.settings.tag_prefix)
        found.add(tag)
        if self.mail is not None:
            found.add(self.mail.own_ticket(msg))
            if msg.machine.kind == "bounce":
                ref = self.mail.bounce_ref(tx, msg, e.envelope)
                found.add(ref.ticket_id if ref is not None else None)
                dsn = msg.machine.dsn
                if dsn and dsn.original_message_id:
                    found.add(tx.ticket_of_message(dsn.original_message_id))
        return {t for t in found if t}

    def store_one(self, tx: WriteTx, e: Entry) -> Done:
        """Thread, route, save and plan one prepared message in `tx`. Raises StageFailed with the
        stage, or StoreUnavailable."""
        msg, stage = e.msg, "thread"
        try:
            ref = self.mail.bounce_ref(tx, msg, e.envelope) if self.mail and msg.machine.kind == "bounce" else None
            decision, candidates = self._decide(tx, msg, ref)
            stage = "agent"
            handled = self.agents.handle(tx, msg, e.envelope, e.raw, decision, e.pre, self.clock()) \
                if self.agents else None
            if handled is not None:
                return Done(handled.result, handled.outbox_ids, handled.alerts,
                            handled.reason if handled.kind == "deferred" else "")
            stage = "classify"
            routing = classify_mod.classify(msg, decision, self.rules(), self.settings.defaults,
                                            now=self._arrival(e.envelope), envelope_rcpts=e.envelope.rcpt_to)
            survey = self._survey_answer(tx, msg, decision)
            if survey is not None:                  # a survey answer threads in and never reopens
                decision = replace(decision, action="append")
            if decision.action in ("append", "reopen"):
                msg = replace(msg, text=e.pre.text if e.pre is not None else strip_reply(msg.text))
            stage = "store"
            return self._save(tx, e, msg, decision, routing, ref, survey, candidates)
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise StageFailed(stage, exc) from exc

    def _survey_answer(self, tx: WriteTx, msg: ParsedMessage, decision: ThreadDecision):
        surveys = self.mail.surveys if self.mail is not None else None
        return surveys.answer_of(tx, msg, decision) if surveys is not None else None

    def _save(self, tx: WriteTx, e: Entry, msg: ParsedMessage, decision: ThreadDecision, routing, ref,
              survey=None, candidates=None) -> Done:
        """Save dated now, or an archived mail (envelope source "archive") by its own date
        with the import time kept on a ticket it opens (its past escalations never fire).
        `candidates`: what threading read (nothing has written since: the save reads none
        of it again); planning gets the ticket as the save left it unless a rule's problem
        link wrote to it since."""
        own = self.settings.own_addresses | {r.lower() for r in e.envelope.rcpt_to}
        now = self.clock()
        archived = e.envelope.source == "archive"
        when = min(self._arrival(e.envelope), now) if archived else now
        result = tx.save_message(msg, e.envelope, e.raw, e.sha, decision, routing, when, own,
                                 archived_at=now if archived else None, candidates=candidates)
        if result.outcome in ("created", "linked") and routing.problem:      # also when archived: no mail
            link_new(tx, result.ticket_id, routing, now, self.settings.tag_prefix)   # before planning: the ack
            result = replace(result, written=None)                             # it wrote: planning reads again
        if self.mail is None or result.outcome == "duplicate":
            return Done(result)
        if survey is not None:                      # the score is kept; no agent notice but a bad score's
            effects = self.mail.surveys.record(tx, survey, msg, now)
            applied = tx.apply_mail(effects, result.ticket_id, now)
            return Done(result, applied.outbox_ids, applied.alerts)
        effects = self.mail.plan_message(tx, msg, decision, routing, result.outcome, result.ticket_id, now, ref,
                                         written=result.written)
        if result.met:                                  # keys of two tickets met: they are linked, agents told
            split = self.mail.plan_split(tx, result.ticket_id, result.met, msg.message_id, now)
            effects = replace(effects, mails=effects.mails + split.mails, suppressed=effects.suppressed + split.suppressed)
        applied = tx.apply_mail(effects, result.ticket_id, now)
        return Done(result, applied.outbox_ids, applied.alerts)

    def _arrival(self, envelope: Envelope) -> datetime:
        """When the message reached us (a retry is judged at the same time), else now."""
        try:
            return datetime.fromisoformat(envelope.received_at)
        except (TypeError, ValueError):
            return self.clock()

    def _decide(self, tx: WriteTx, msg: ParsedMessage, ref) -> tuple[ThreadDecision, ThreadCandidates | None]:
        """Where the message goes, and the thread candidates read for it (None: not read)."""
        own = self.mail.own_ticket(msg) if self.mail is not None else None
        if own is not None:                             # our own mail came back: file it, trigger nothing
            return ThreadDecision("append", own, f"our own mail <{msg.message_id}> came back (verified Message-ID)"), \
                None
        keys = thread_keys(msg) + (msg.message_id,)     # own id: a reply may have come first
        tag = subject_tag(msg.subject, self.settings.tag_prefix)
        candidates = tx.thread_candidates(keys, tag)
        if msg.machine.kind == "bounce":
            return self._bounce_decision(tx, msg, candidates, ref), candidates
        return thread(msg, candidates, tag_prefix=self.settings.tag_prefix), candidates

    def _bounce_decision(self, tx: WriteTx, msg: ParsedMessage, candidates, ref) -> ThreadDecision:
        """A bounce never opens a ticket: it is filed (internal) on the ticket of the mail it
        reports on - our outbox row (VERP token or verified original Message-ID) first."""
        if ref is not None and ref.ticket_id is not None:
            return ThreadDecision("bounce", ref.ticket_id, f"delivery report for our mail <{ref.message_id}> "
                                                           f"(outbox #{ref.id})")
        dsn = msg.machine.dsn
        if dsn and dsn.original_message_id:
            ticket = tx.ticket_of_message(dsn.original_message_id)
            if ticket is not None:
                return ThreadDecision("bounce", ticket, f"dsn original message <{dsn.original_message_id}>")
        real = [k for k in candidates.known if not k.ghost] or list(candidates.known)
        if real:
            return ThreadDecision("bounce", real[0].ticket_id, f"bounce references <{real[0].message_id}>")
        return ThreadDecision("bounce", None, "bounce for no known message")



def wrote(exc: StageFailed) -> bool:
    """Whether the failing message may have written in the transaction (then it is unusable)."""
    return exc.stage in ("agent", "store") or isinstance(exc.cause, SQLAlchemyError)


def cause(exc: Exception) -> Exception:
    return exc.cause if isinstance(exc, StageFailed) else exc


def saved(d: Done) -> SaveResult:
    r = d.result
    return Saved(r.outcome, r.ticket_id, r.message_pk, r.message_id, met=r.met, outbox_ids=d.outbox_ids,
                 alerts=d.alerts)
