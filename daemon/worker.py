"""The spool worker: claims durable messages and runs them through the pipeline.

parse -> (bounce mapping | thread) -> [agent path] -> classify -> store, one message at a time. With a
mail planner (`mail`, see daemon.tasks.Outbound) our own mail coming back is recognised
first (stored without triggers), bounces are matched to the outbox row they are about, and
the mail each message causes is planned into the outbox inside the store transaction and
enqueued after the commit. A parse
failure quarantines at once (it will not get better); a database outage puts the message
back without counting it and backs off; any other failure is retried with a growing delay
and quarantined with its stage and reason after `max_attempts`. The worker never dies of
a message. Mail that involves an agent (reply token, comment address, an agent's From)
is handled by `agents` (daemon.agents) after threading; a DNS temperror there
(AuthDeferred) puts the message back without counting it.
This is the only place besides the intake edges that catches broadly.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Callable, Mapping

from daemon.errors import AuthDeferred, ParseError, StoreUnavailable
from daemon.model import Envelope, ParsedMessage, ThreadDecision
from daemon.pipeline import classify as classify_mod
from daemon.pipeline.parse import DEFAULT_LIMITS, ParseLimits, parse
from daemon.pipeline.strip import strip_reply
from daemon.pipeline.thread import subject_tag, thread, thread_keys
from daemon.rules.loader import RuleSet
from daemon.spool import Claim, Spool
from store.records import SaveResult
from store.repo import Store

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class WorkerSettings:
    """What the worker needs from config."""

    tag_prefix: str = "HD"
    own_addresses: frozenset[str] = frozenset()
    defaults: classify_mod.Defaults = classify_mod.Defaults()
    limits: ParseLimits | None = None
    max_attempts: int = 5
    retry_seconds: float = 10.0
    auth_retry_seconds: float = 60.0     # [agents] dns_retry_seconds: a DNS temperror is retried after this


@dataclass(frozen=True)
class Outcome:
    """What happened to one spool entry: stored (with the store's result), quarantined,
    retry (put back), or set_aside (unreadable spool file)."""

    kind: str
    base: str
    result: SaveResult | None = None
    quarantine_id: int | None = None
    reason: str = ""


class Worker:
    """Drains a spool into the store (see module docstring)."""

    def __init__(self, spool: Spool, store: Store, settings: WorkerSettings,
                 clock: Callable[[], datetime] = utcnow,
                 rules: Callable[[], "RuleSet | None"] = lambda: None, mail=None):
        self.spool, self.store, self.settings, self.clock = spool, store, settings, clock
        self.rules = rules                   # read once per message: one rule-set version
        self.mail = mail                     # daemon.tasks.Outbound, or None: no mail is planned
        self.agents = None                   # daemon.agents.AgentDesk, or None: no agent path
        self._not_before: dict[str, float] = {}
        self.stats = {"stored": 0, "duplicate": 0, "quarantined": 0, "retry": 0}

    # ------------------------------------------------------------------ one message
    def process(self, raw: bytes, envelope: Envelope, db=None) -> SaveResult:
        """Run one message through the pipeline and store it. Raises on failure."""
        return self.process_parsed(self.parse(raw, envelope), raw, envelope, db)

    def parse(self, raw: bytes, envelope: Envelope, ahead: "ParsedMessage | ParseError | None" = None) -> ParsedMessage:
        """The parse stage (no store access): raises ParseError for mail we cannot read.
        `ahead` is this message already parsed (or refused) by a helper process."""
        if isinstance(ahead, ParseError):
            raise ahead
        try:
            msg = ahead if ahead is not None else parse(raw, limits=self.settings.limits or DEFAULT_LIMITS,
                                                        envelope_mail_from=envelope.mail_from)
            return self.mail.inspect(msg, envelope) if self.mail is not None else msg   # our own mail coming back
        except ParseError:
            raise
        except Exception as exc:
            exc.helpdesk_stage = "parse"        # type: ignore[attr-defined]
            raise

    def process_parsed(self, msg: ParsedMessage, raw: bytes, envelope: Envelope, db=None) -> SaveResult:
        """Thread, classify and store a parsed message. `db` is where threading reads and the
        message is saved: the Store (its own transaction) or an open store.batch.WriteBatch,
        which hands agent mail back (_OnItsOwn)."""
        db = db if db is not None else self.store
        stage = "thread"
        try:
            ref = self.mail.bounce_ref(msg, envelope) if self.mail and msg.machine.kind == "bounce" else None
            decision = self._decide(msg, ref, db)
            stage = "agent"
            if self.agents is not None and db is not self.store and self.agents.may_handle(msg, envelope, decision):
                raise _OnItsOwn()
            handled = self.agents.process(msg, envelope, raw, decision, self.clock()) if self.agents else None
            if handled is not None:              # an agent's mail (or one claiming to be): daemon.agents
                self._after(handled)
                return handled
            stage = "classify"
            routing = classify_mod.classify(msg, decision, self.rules(), self.settings.defaults,
                                            now=self._arrival(envelope), envelope_rcpts=envelope.rcpt_to)
            if decision.action in ("append", "reopen"):
                stage = "strip"
                msg = replace(msg, text=strip_reply(msg.text))
            stage = "store"
            own = self.settings.own_addresses | {r.lower() for r in envelope.rcpt_to}
            now = self.clock()
            plan = self.mail.plan_message(msg, decision, routing, now, ref) if self.mail is not None else None
            result = db.save_incoming(msg, envelope, raw, hashlib.sha256(raw).hexdigest(),
                                      decision, routing, now, own_addresses=own, plan=plan)
        except (ParseError, StoreUnavailable, _OnItsOwn):
            raise
        except Exception as exc:
            exc.helpdesk_stage = stage          # type: ignore[attr-defined]
            raise
        if db is self.store:                     # committed: hand its mail to the queue now
            self._after(result)
        return result

    def _after(self, result: SaveResult) -> None:
        """After the commit: hand the new outbox rows to the queue."""
        if self.mail is not None and result.outcome != "duplicate":
            self.mail.after_save(result)

    def _arrival(self, envelope: Envelope) -> datetime:
        """When the message reached us (a retry is judged at the same time), else now."""
        try:
            return datetime.fromisoformat(envelope.received_at)
        except (TypeError, ValueError):
            return self.clock()

    def _decide(self, msg: ParsedMessage, ref, db) -> ThreadDecision:
        own = self.mail.own_ticket(msg) if self.mail is not None else None
        if own is not None:                             # our own mail came back: file it, trigger nothing
            return ThreadDecision("append", own, f"our own mail <{msg.message_id}> came back (verified Message-ID)")
        keys = thread_keys(msg) + (msg.message_id,)     # own id: a reply may have come first
        tag = subject_tag(msg.subject, self.settings.tag_prefix)
        candidates = db.thread_candidates(keys, tag)
        if msg.machine.kind == "bounce":
            return self._bounce_decision(msg, candidates, ref, db)
        return thread(msg, candidates, tag_prefix=self.settings.tag_prefix)

    def _bounce_decision(self, msg: ParsedMessage, candidates, ref, db) -> ThreadDecision:
        """A bounce never opens a ticket: it is filed (internal) on the ticket of the mail it
        reports on - our outbox row (VERP token or verified original Message-ID) first."""
        if ref is not None and ref.ticket_id is not None:
            return ThreadDecision("bounce", ref.ticket_id, f"delivery report for our mail <{ref.message_id}> "
                                                           f"(outbox #{ref.id})")
        dsn = msg.machine.dsn
        if dsn and dsn.original_message_id:
            ticket = db.ticket_of_message(dsn.original_message_id)
            if ticket is not None:
                return ThreadDecision("bounce", ticket, f"dsn original message <{dsn.original_message_id}>")
        real = [k for k in candidates.known if not k.ghost] or list(candidates.known)
        if real:
            return ThreadDecision("bounce", real[0].ticket_id, f"bounce references <{real[0].message_id}>")
        return ThreadDecision("bounce", None, "bounce for no known message")

    # ------------------------------------------------------------------ spool loop
    def run_once(self, only: set[str] | None = None) -> Outcome | None:
        """Claim and handle one entry; None when nothing is ready."""
        claim = self._claim_ready(only)
        if claim is None:
            return None
        entry = self._read(claim)
        if isinstance(entry, Outcome):
            return entry
        envelope, raw = entry
        return self._one(claim, raw, envelope)

    def _one(self, claim: Claim, raw: bytes, envelope: Envelope) -> Outcome:
        if claim.attempt > self.settings.max_attempts:
            return self._quarantine(claim, raw, envelope, "worker", "crashed",
                                    f"processing was interrupted {claim.attempt - 1} times")
        return self._handle(claim, raw, envelope)

    def _claim_ready(self, only: set[str] | None) -> Claim | None:
        now = time.monotonic()
        waiting = {b for b, t in self._not_before.items() if t > now}
        if not waiting:
            return self.spool.claim(only)
        allowed = (only if only is not None else self.spool.pending_bases()) - waiting
        return self.spool.claim(allowed) if allowed else None

    def _handle(self, claim: Claim, raw: bytes, envelope: Envelope, msg: ParsedMessage | None = None) -> Outcome:
        """Process one entry in its own transaction (`msg`: already parsed)."""
        try:
            result = self.process(raw, envelope) if msg is None else self.process_parsed(msg, raw, envelope)
        except Exception as exc:
            return self._failed(claim, raw, envelope, exc)
        return self._stored(claim, result)

    def _failed(self, claim: Claim, raw: bytes, envelope: Envelope, exc: Exception) -> Outcome:
        """Quarantine, or put back for a retry, a message whose processing raised `exc`."""
        if isinstance(exc, ParseError):
            return self._quarantine(claim, raw, envelope, "parse", exc.reason, exc.detail)
        if isinstance(exc, (StoreUnavailable, AuthDeferred)):   # not the message's fault: not counted
            self.spool.release(claim, count_attempt=False)
            unavailable = isinstance(exc, StoreUnavailable)
            delay = self.settings.retry_seconds if unavailable else self.settings.auth_retry_seconds
            self._not_before[claim.base] = time.monotonic() + delay
            self.stats["retry"] += 1
            log.warning("%s, message %s kept in spool: %s", "store unavailable" if unavailable
                        else "sender not authenticated yet", claim.base, exc)
            return Outcome("retry", claim.base, reason=str(exc))
        stage = getattr(exc, "helpdesk_stage", "worker")
        reason = f"{exc.__class__.__name__}: {exc}"
        log.error("message %s failed at %s (attempt %d)", claim.base, stage, claim.attempt, exc_info=exc)
        if claim.attempt >= self.settings.max_attempts:
            return self._quarantine(claim, raw, envelope, stage, "failed", reason)
        self.spool.release(claim)
        self._not_before[claim.base] = time.monotonic() + self.settings.retry_seconds * 2 ** (claim.attempt - 1)
        self.stats["retry"] += 1
        return Outcome("retry", claim.base, reason=reason)

    def _stored(self, claim: Claim, result: SaveResult) -> Outcome:
        """The message is committed: forget the spool copy."""
        self.spool.done(claim)
        self._not_before.pop(claim.base, None)
        self.stats["duplicate" if result.outcome == "duplicate" else "stored"] += 1
        log.info("stored message_id=<%s> ticket=%s outcome=%s", result.message_id, result.ticket_id, result.outcome)
        return Outcome("stored", claim.base, result=result)

    # ------------------------------------------------------------------ group commit
    def run_batch(self, only: set[str] | None = None, limit: int = 100, seconds: float = 0.5,
                  parsed: "Mapping[str, ParsedMessage | ParseError] | None" = None) -> list[Outcome]:
        """Claim and handle up to `limit` ready entries (claiming for at most about `seconds`)
        with one commit for the lot (group commit, store.batch). They are parsed first, outside
        the write transaction (another process may write meanwhile), then threaded, classified
        and saved in one transaction. After the commit each entry is finished as `run_once`
        would. A message that fails while writing rolls the batch back and its entries are
        handled one by one; agent mail commits what came before it and is handled on its own.
        An entry tried before (it may be the one that killed a batch) ends the batch and is
        handled alone, so a message that kills the process only ever takes itself down.
        `parsed`: entries already parsed ahead by helper processes (daemon.intake.parallel),
        by spool base. Returns the outcomes ([] when nothing is ready)."""
        outcomes: list[Outcome] = []
        failed: list[tuple[Claim, bytes, Envelope, Exception]] = []  # finished after the commit
        ready: list[tuple[Claim, bytes, Envelope, ParsedMessage]] = []
        alone: tuple[Claim, bytes, Envelope] | None = None
        deadline = time.monotonic() + seconds
        while len(outcomes) + len(failed) + len(ready) < limit and time.monotonic() < deadline:
            claim = self._claim_ready(only)
            if claim is None:
                break
            entry = self._read(claim)
            if isinstance(entry, Outcome):
                outcomes.append(entry)
                continue
            envelope, raw = entry
            if claim.attempt > 1:        # tried before (it may have killed a batch): on its own, after
                alone = (claim, raw, envelope)
                break
            try:
                ready.append((claim, raw, envelope, self.parse(raw, envelope, (parsed or {}).get(claim.base))))
            except Exception as exc:
                failed.append((claim, raw, envelope, exc))
        db = self.store.batch()
        todo: list[tuple[Claim, bytes, Envelope, ParsedMessage]] = []   # saved in the open transaction
        results: list[SaveResult] = []
        try:
            for i, (claim, raw, envelope, msg) in enumerate(ready):
                try:
                    result = self.process_parsed(msg, raw, envelope, db)
                except _OnItsOwn:
                    self._commit_batch(db, todo, results, outcomes)
                    outcomes.append(self._handle(claim, raw, envelope, msg))
                    continue
                except StoreUnavailable as exc:                   # nothing more can be stored now
                    db.rollback()
                    for c, r, e, _ in todo + ready[i:]:
                        outcomes.append(self._failed(c, r, e, exc))
                    todo.clear()
                    results.clear()
                    break
                except Exception as exc:
                    if getattr(exc, "helpdesk_stage", "") != "store":
                        failed.append((claim, raw, envelope, exc))    # nothing written for it
                        continue
                    db.rollback()                                     # one by one, as run_once would
                    log.warning("batch of %d rolled back (%s: %s); its messages are handled one by one",
                                len(todo) + 1, exc.__class__.__name__, exc)
                    for c, r, e, m in todo + [(claim, raw, envelope, msg)]:
                        outcomes.append(self._handle(c, r, e, m))
                    todo.clear()
                    results.clear()
                    continue
                todo.append((claim, raw, envelope, msg))
                results.append(result)
            self._commit_batch(db, todo, results, outcomes)
        finally:
            db.rollback()
        for claim, raw, envelope, exc in failed:
            outcomes.append(self._failed(claim, raw, envelope, exc))
        if alone is not None:
            outcomes.append(self._one(*alone))
        return outcomes

    def _commit_batch(self, db, todo: list, results: list, outcomes: list[Outcome]) -> None:
        """Commit the open batch and finish its entries."""
        try:
            db.commit()
        except StoreUnavailable as exc:
            for c, r, e, _ in todo:
                outcomes.append(self._failed(c, r, e, exc))
        else:
            for (claim, *_), result in zip(todo, results):
                self._after(result)
                outcomes.append(self._stored(claim, result))
        todo.clear()
        results.clear()

    def _read(self, claim: Claim) -> "tuple[Envelope, bytes] | Outcome":
        try:
            return self.spool.read(claim)
        except Exception as exc:                             # a damaged spool file
            self.spool.set_aside(claim, f"unreadable spool entry: {exc}")
            log.error("spool entry %s unreadable, set aside: %s", claim.base, exc)
            return Outcome("set_aside", claim.base, reason=str(exc))

    def _quarantine(self, claim: Claim, raw: bytes, envelope: Envelope, stage: str, reason: str,
                    detail: str) -> Outcome:
        try:
            qid = self.store.quarantine(raw, hashlib.sha256(raw).hexdigest(), envelope, stage, reason, detail,
                                        self.clock(), *_peek_headers(raw))
        except StoreUnavailable as exc:
            self.spool.release(claim, count_attempt=False)
            self._not_before[claim.base] = time.monotonic() + self.settings.retry_seconds
            return Outcome("retry", claim.base, reason=str(exc))
        self.spool.done(claim)
        self._not_before.pop(claim.base, None)
        self.stats["quarantined"] += 1
        log.warning("quarantined %s as #%d: stage=%s reason=%s %s", claim.base, qid, stage, reason, detail[:200])
        return Outcome("quarantined", claim.base, quarantine_id=qid, reason=reason)

    def drain(self, only: set[str] | None = None, stop: threading.Event | None = None) -> int:
        """Handle entries until none is ready, a batch at a time (group commit: a backlog
        costs one commit per batch, a lone message is a batch of one); returns how many
        were handled."""
        n = 0
        while not (stop and stop.is_set()):
            outcomes = self.run_batch(only)
            if not outcomes:
                break
            n += len(outcomes)
        return n

    def next_retry_in(self) -> float | None:
        """Seconds until the earliest delayed entry is due, or None."""
        if not self._not_before:
            return None
        return max(0.0, min(self._not_before.values()) - time.monotonic())

    def run_forever(self, stop: threading.Event, wake: threading.Event, idle_poll: float = 2.0) -> None:
        """The serve loop: drain, then sleep until woken, a retry is due, or idle_poll."""
        self.spool.recover()
        while not stop.is_set():
            try:
                self.drain(stop=stop)
            except Exception:                                # never die; log and go on
                log.exception("worker loop error")
            wait = idle_poll
            retry = self.next_retry_in()
            if retry is not None:
                wait = min(wait, max(retry, 0.05))
            wake.wait(wait)
            wake.clear()


class _OnItsOwn(Exception):
    """Raised inside a batch for agent mail: it is handled alone, after a commit."""


def _peek_headers(raw: bytes) -> tuple[str, str]:
    """From and Subject for the quarantine listing, read without the full parser."""
    head = raw[:65536].split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
    found = {"from": "", "subject": ""}
    for line in head.splitlines():
        name, _, value = line.partition(b":")
        key = name.strip().lower().decode("latin-1")
        if key in found and not found[key]:
            found[key] = " ".join(value.decode("utf-8", "replace").split())[:300]
    return found["from"], found["subject"]
