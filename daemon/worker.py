"""The spool worker: claims durable messages and runs them through the pipeline.

One path for a batch of one or many (group commit): entries are claimed and read, then
parsed and given their agent-path prelude (daemon.agents: reply token, sender
authentication) outside the write transaction, where nothing holds a lock; then, in one
`store.writing.WriteTx`, each message is threaded, routed (the agent path, or classified as
a customer's), saved, and its planned effects (mail into the outbox, SLA timers) applied.
One commit makes the lot durable; only then are spool entries removed and mail enqueued.

A parse failure quarantines at once (it will not get better); a database outage (or a
full attachment volume) puts the entries back without counting them and backs off; an
agent mail whose sender cannot be authenticated yet (DNS temperror) waits in the spool; any
other failure while writing rolls the transaction back and the batch's entries are done
one by one, so a failing message takes only itself to retry and, after `max_attempts`,
to quarantine with its stage and reason. An entry tried before (it may have killed a
batch) is handled alone. The worker never dies of a message. With a mail planner (`mail`,
daemon.outbound) our own mail coming back is recognised before threading and bounces are
matched to the outbox row they are about. This is the only place besides the intake edges
that catches broadly.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Mapping

from sqlalchemy.exc import IntegrityError

from daemon.agents import AgentDesk
from daemon.backoff import BackoffPolicy, backoff
from daemon.clock import utcnow
from daemon.errors import AuthDeferred, ParseError, StoreUnavailable
from daemon.message_path import Done, Entry, MessagePath, StageFailed, cause, saved, wrote
from daemon.settings import WorkerSettings
from daemon.model import Envelope, ParsedMessage
from daemon.outbound import Outbound
from daemon.parse_lanes import OVERTAKE_SECONDS, ParseLanes
from daemon.rules.loader import RuleSet
from daemon.spool import Claim, Spool
from store.records import SaveResult
from store.repo import Store

log = logging.getLogger(__name__)


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
    """Drains a spool into the store (see module docstring); each message takes the
    MessagePath (daemon.message_path)."""

    def __init__(self, spool: Spool, store: Store, settings: WorkerSettings, *,
                 clock: Callable[[], datetime] = utcnow, rules: Callable[[], "RuleSet | None"] = lambda: None,
                 mail: Outbound | None = None, agents: AgentDesk | None = None, parse=None,
                 lanes: int = 0, overtake_seconds: float = OVERTAKE_SECONDS):
        self.spool, self.store, self.settings = spool, store, settings
        self.path = MessagePath(settings, clock=clock, rules=rules, mail=mail, agents=agents,
                                **({"parse": parse} if parse is not None else {}))
        # lanes > 0: parse a batch's entries side by side (daemon.parse_lanes), in order, so a
        # slow one holds up the rest for overtake_seconds at most; 0: one by one, here
        self.lanes = ParseLanes(self.path.parse, lanes, settings.limits,
                                overtake_seconds=overtake_seconds) if lanes > 0 else None
        self._not_before: dict[str, float] = {}
        self.reap_behind = False      # `helpdesk ingest`: spool unlinks on the spool's thread (Spool.done_behind)
        self.stats = {"stored": 0, "duplicate": 0, "quarantined": 0, "retry": 0}

    # what the message path holds, read through it (one copy of each)
    @property
    def clock(self) -> Callable[[], datetime]:
        return self.path.clock

    @property
    def mail(self) -> Outbound | None:
        return self.path.mail

    @property
    def agents(self) -> AgentDesk | None:
        return self.path.agents

    def _after(self, done: Done) -> None:
        """After the commit: hand the new outbox rows to the queue, schedule the SLA check."""
        if self.mail is not None and done.result is not None and done.result.outcome != "duplicate":
            self.mail.after_commit(done.result.ticket_id, done.outbox_ids, done.alerts)

    # ------------------------------------------------------------------ one message, no spool
    def process(self, raw: bytes, envelope: Envelope, parsed: ParsedMessage | None = None) -> SaveResult:
        """Run one message through the pipeline in a transaction of its own (commands,
        tests, benchmarks; `parsed` when the caller parsed it already). Raises on failure
        (the cause, not the stage wrapper)."""
        e = self.path.prepare(Entry(None, raw, envelope), parsed)
        if e.error is not None:
            raise cause(e.error)
        try:
            with self.store.write() as tx:
                self.path.lock(tx, [e])
                done = self.path.store_one(tx, e)
                tx.commit()
        except StageFailed as exc:
            if isinstance(exc.cause, IntegrityError) and self.store.is_duplicate(e.msg.message_id,
                                                                                 e.msg.content_digest):
                return SaveResult("duplicate", None, None, e.msg.message_id)
            raise exc.cause from exc
        if done.deferred:
            raise AuthDeferred(done.deferred)
        self._after(done)
        return saved(done)

    # ------------------------------------------------------------------ the spool loop
    def run_once(self, only: set[str] | None = None) -> Outcome | None:
        """Claim and handle one entry; None when nothing is ready."""
        outcomes = self.run_batch(only, limit=1)
        return outcomes[0] if outcomes else None

    def run_batch(self, only: set[str] | None = None, limit: int = 100, seconds: float = 0.5,
                  parsed: "Mapping[str, ParsedMessage | ParseError] | None" = None) -> list[Outcome]:
        """Claim up to `limit` ready entries (claiming for at most about `seconds`), prepare
        them, and store them in one transaction (see module docstring). `parsed`: entries
        already parsed ahead by helper processes (daemon.intake.parallel), by spool base.
        Returns the outcomes ([] when nothing is ready)."""
        outcomes: list[Outcome] = []
        ready: list[Entry] = []
        refused: list[Entry] = []
        alone = self._gather(only, limit, seconds, parsed or {}, outcomes, ready, refused)
        outcomes += self._transact(ready)
        outcomes += [self._failed(e, e.error) for e in refused]
        if alone is not None:
            outcomes += self._alone(alone)
        return outcomes

    def _gather(self, only, limit: int, seconds: float, parsed: Mapping, outcomes: list, ready: list,
                refused: list) -> Entry | None:
        """Claim, read and prepare entries; an entry tried before is returned to be handled
        alone, after the batch (it may be the one that killed a batch). With parse lanes a
        slow parse stays in its lane for a later batch."""
        deadline = time.monotonic() + seconds
        alone = None
        while len(outcomes) + len(ready) + len(refused) + self._in_lanes() < limit and time.monotonic() < deadline:
            claim = self._claim_ready(only)
            if claim is None:
                break
            entry = self._read(claim)
            if isinstance(entry, Outcome):
                outcomes.append(entry)
                continue
            if claim.attempt > 1:
                alone = entry
                break
            if self.lanes is not None:                     # in line: parsed here or ahead
                if claim.base in parsed:
                    self.lanes.add_parsed(entry, parsed[claim.base])
                else:
                    self.lanes.submit(entry)
                continue
            self.path.prepare(entry, parsed.get(claim.base))
            (refused if entry.error is not None else ready).append(entry)
        if self.lanes is not None:
            for entry, result in self.lanes.harvest():
                self._prepared(entry, result)
                (refused if entry.error is not None else ready).append(entry)
        return alone

    def _in_lanes(self) -> int:
        return self.lanes.pending if self.lanes is not None else 0

    def _prepared(self, entry: Entry, result: "ParsedMessage | Exception") -> None:
        """Finish preparing an entry whose parse ran in a lane."""
        if isinstance(result, Exception) and not isinstance(result, ParseError):
            entry.error = StageFailed("parse", result)
        else:
            self.path.prepare(entry, result)

    def _alone(self, e: Entry) -> list[Outcome]:
        if e.claim.attempt > self.settings.max_attempts:
            return [self._quarantine(e, "worker", "crashed", f"processing was interrupted {e.claim.attempt - 1} times")]
        self.path.prepare(e)
        return [self._failed(e, e.error)] if e.error is not None else self._transact([e])

    def _transact(self, ready: list[Entry]) -> list[Outcome]:
        """Store prepared entries in one transaction; after a failing write, one by one."""
        if not ready:
            return []
        done: list[tuple[Entry, Done]] = []
        later: list[Outcome] = []
        with self.store.write() as tx:
            try:
                self.path.lock(tx, ready)
            except StoreUnavailable as exc:
                tx.rollback()
                return [self._failed(x, exc) for x in ready]
            for e in ready:
                try:
                    d = self.path.store_one(tx, e)
                except StoreUnavailable as exc:               # nothing more can be stored now
                    tx.rollback()
                    return [self._failed(x, exc) for x in ready]
                except StageFailed as exc:
                    if not wrote(exc):                       # nothing written for it: the batch goes on
                        later.append(self._failed(e, exc))
                        continue
                    tx.rollback()
                    return self._one_by_one(ready, e, exc, later)
                if d.deferred:
                    later.append(self._defer(e, d.deferred))
                else:
                    done.append((e, d))
            try:
                tx.commit()
            except StoreUnavailable as exc:
                return [self._failed(x, exc) for x, _ in done] + later
        if self.mail is None:
            stored = [self._stored(e, d, alone=len(done) == 1) for e, d in done]
        else:
            with self.mail.one_wake_up():                   # one sender and one SLA wake-up for the batch
                stored = [self._stored(e, d, alone=len(done) == 1) for e, d in done]
        if len(done) > 1:                                  # one line per batch; per message at DEBUG
            counts: dict[str, int] = {}
            for o in stored:
                counts[o.result.outcome] = counts.get(o.result.outcome, 0) + 1
            log.info("stored %d message(s) in one transaction: %s", len(done),
                     ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
        return stored + later

    def _one_by_one(self, ready: list[Entry], failing: Entry, exc: "StageFailed", later: list[Outcome]) -> list[Outcome]:
        """After a failing write rolled the transaction back: each entry alone (the ones
        already finished stay finished)."""
        if len(ready) == 1:
            if isinstance(exc.cause, IntegrityError) and self.store.is_duplicate(failing.msg.message_id,
                                                                                 failing.msg.content_digest):
                return [self._stored(failing, Done(SaveResult("duplicate", None, None, failing.msg.message_id)))]
            return [self._failed(failing, exc)]
        log.warning("batch of %d rolled back (%s); its messages are handled one by one", len(ready), exc)
        finished = {o.base for o in later}
        out = list(later)
        for e in ready:
            if e.claim.base not in finished:
                out += self._transact([e])
        return out

    def _claim_ready(self, only: set[str] | None) -> Claim | None:
        now = time.monotonic()
        waiting = {b for b, t in self._not_before.items() if t > now}
        if not waiting:
            return self.spool.claim(only)
        allowed = (only if only is not None else self.spool.pending_bases()) - waiting
        return self.spool.claim(allowed) if allowed else None

    def _read(self, claim: Claim) -> "Entry | Outcome":
        try:
            envelope, raw = self.spool.read(claim)
            return Entry(claim, raw, envelope)
        except Exception as exc:                             # a damaged spool file
            self.spool.set_aside(claim, f"unreadable spool entry: {exc}")
            log.error("spool entry %s unreadable, set aside: %s", claim.base, exc)
            return Outcome("set_aside", claim.base, reason=str(exc))

    # ------------------------------------------------------------------ finishing an entry
    def _stored(self, e: Entry, d: Done, alone: bool = True) -> Outcome:
        """The message is committed: forget the spool copy, hand its mail on. Its log line
        is INFO when it was stored alone, DEBUG in a batch (which logs one line)."""
        (self.spool.done_behind if self.reap_behind else self.spool.done)(e.claim)
        self._not_before.pop(e.claim.base, None)
        result = saved(d)
        self.stats["duplicate" if result.outcome == "duplicate" else "stored"] += 1
        log.log(logging.INFO if alone else logging.DEBUG, "stored message_id=<%s> ticket=%s outcome=%s",
                result.message_id, result.ticket_id, result.outcome)
        self._after(d)
        return Outcome("stored", e.claim.base, result=result)

    def _later(self, e: Entry, delay: float, counted: bool) -> None:
        self.spool.release(e.claim, count_attempt=counted)
        self._not_before[e.claim.base] = time.monotonic() + delay
        self.stats["retry"] += 1

    def _defer(self, e: Entry, reason: str) -> Outcome:
        """Not the message's fault (its sender cannot be authenticated yet): not counted."""
        self._later(e, self.settings.auth_retry_seconds, False)
        log.warning("sender not authenticated yet, message %s kept in spool: %s", e.claim.base, reason)
        return Outcome("retry", e.claim.base, reason=reason)

    def _failed(self, e: Entry, exc: Exception) -> Outcome:
        """Quarantine, or put back for a retry, an entry whose processing raised `exc`."""
        if isinstance(exc, ParseError):
            return self._quarantine(e, "parse", exc.reason, exc.detail)
        if isinstance(exc, StoreUnavailable):               # not the message's fault: not counted
            self._later(e, self.settings.retry_seconds, False)
            log.warning("store unavailable, message %s kept in spool: %s", e.claim.base, exc)
            return Outcome("retry", e.claim.base, reason=str(exc))
        stage, cause = (exc.stage, exc.cause) if isinstance(exc, StageFailed) else ("worker", exc)
        reason = f"{cause.__class__.__name__}: {cause}"
        log.error("message %s failed at %s (attempt %d)", e.claim.base, stage, e.claim.attempt, exc_info=cause)
        if e.claim.attempt >= self.settings.max_attempts:
            return self._quarantine(e, stage, "failed", reason)
        self._later(e, backoff(e.claim.attempt, BackoffPolicy(self.settings.retry_seconds)), True)
        return Outcome("retry", e.claim.base, reason=reason)

    def _quarantine(self, e: Entry, stage: str, reason: str, detail: str) -> Outcome:
        try:
            qid = self.store.quarantine(e.raw, e.sha, e.envelope, stage, reason, detail, self.clock(),
                                        *_peek_headers(e.raw))
        except StoreUnavailable as exc:
            self._later(e, self.settings.retry_seconds, False)
            return Outcome("retry", e.claim.base, reason=str(exc))
        self.spool.done(e.claim)
        self._not_before.pop(e.claim.base, None)
        self.stats["quarantined"] += 1
        log.warning("quarantined %s as #%d: stage=%s reason=%s %s", e.claim.base, qid, stage, reason, detail[:200])
        return Outcome("quarantined", e.claim.base, quarantine_id=qid, reason=reason)

    def drain(self, only: set[str] | None = None, stop: threading.Event | None = None) -> int:
        """Handle entries until none is ready, a batch at a time (group commit: a backlog
        costs one commit per batch, a lone message is a batch of one); returns how many
        were handled."""
        n = 0
        while not (stop and stop.is_set()):
            outcomes = self.run_batch(only)
            if not outcomes and not self._in_lanes():
                break
            n += len(outcomes)
        return n

    def close(self) -> None:
        """Stop the parse lanes (entries still in one stay claimed; the spool's recovery at
        the next start hands them out again)."""
        if self.lanes is not None:
            self.lanes.close()

    def next_retry_in(self) -> float | None:
        """Seconds until the earliest delayed entry is due, or None."""
        if not self._not_before:
            return None
        return max(0.0, min(self._not_before.values()) - time.monotonic())

    def run_forever(self, stop: threading.Event, wake: threading.Event, idle_poll: float = 2.0) -> None:
        """The serve loop: drain, then sleep until woken, a retry is due, or idle_poll."""
        recovered = False
        while not stop.is_set():
            try:
                if not recovered:                   # inside the loop: EMFILE at start is retried too
                    self.spool.recover()
                    recovered = True
                self.drain(stop=stop)
            except Exception:                                # never die; log and go on
                log.exception("worker loop error")
            wait = idle_poll
            retry = self.next_retry_in()
            if retry is not None:
                wait = min(wait, max(retry, 0.05))
            wake.wait(wait)
            wake.clear()


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
