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
from typing import Callable

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
    def process(self, raw: bytes, envelope: Envelope) -> SaveResult:
        """Run one message through the pipeline and store it. Raises on failure."""
        stage = "parse"
        try:
            msg = parse(raw, limits=self.settings.limits or DEFAULT_LIMITS,
                        envelope_mail_from=envelope.mail_from)
            if self.mail is not None:
                msg = self.mail.inspect(msg, envelope)       # our own mail, our bounce addresses
            stage = "thread"
            ref = self.mail.bounce_ref(msg, envelope) if self.mail and msg.machine.kind == "bounce" else None
            decision = self._decide(msg, ref)
            stage = "agent"
            handled = self.agents.process(msg, envelope, raw, decision, self.clock()) if self.agents else None
            if handled is not None:              # an agent's mail (or one claiming to be): daemon.agents
                self._after(handled, msg)
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
            result = self.store.save_incoming(msg, envelope, raw, hashlib.sha256(raw).hexdigest(),
                                              decision, routing, now, own_addresses=own, plan=plan)
        except (ParseError, StoreUnavailable):
            raise
        except Exception as exc:
            exc.helpdesk_stage = stage          # type: ignore[attr-defined]
            raise
        self._after(result, msg)
        return result

    def _after(self, result: SaveResult, msg: ParsedMessage) -> None:
        """After the commit: hand the new outbox rows to the queue."""
        if self.mail is not None and result.outcome != "duplicate":
            self.mail.after_save(result)

    def _arrival(self, envelope: Envelope) -> datetime:
        """When the message reached us (a retry is judged at the same time), else now."""
        try:
            return datetime.fromisoformat(envelope.received_at)
        except (TypeError, ValueError):
            return self.clock()

    def _decide(self, msg: ParsedMessage, ref=None) -> ThreadDecision:
        own = self.mail.own_ticket(msg) if self.mail is not None else None
        if own is not None:                             # our own mail came back: file it, trigger nothing
            return ThreadDecision("append", own, f"our own mail <{msg.message_id}> came back (verified Message-ID)")
        keys = thread_keys(msg) + (msg.message_id,)     # own id: a reply may have come first
        tag = subject_tag(msg.subject, self.settings.tag_prefix)
        candidates = self.store.thread_candidates(keys, tag)
        if msg.machine.kind == "bounce":
            return self._bounce_decision(msg, candidates, ref)
        return thread(msg, candidates, tag_prefix=self.settings.tag_prefix)

    def _bounce_decision(self, msg: ParsedMessage, candidates, ref=None) -> ThreadDecision:
        """A bounce never opens a ticket: it is filed (internal) on the ticket of the mail it
        reports on - our outbox row (VERP token or verified original Message-ID) first."""
        if ref is not None and ref.ticket_id is not None:
            return ThreadDecision("bounce", ref.ticket_id, f"delivery report for our mail <{ref.message_id}> "
                                                           f"(outbox #{ref.id})")
        dsn = msg.machine.dsn
        if dsn and dsn.original_message_id:
            ticket = self.store.ticket_of_message(dsn.original_message_id)
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
        try:
            envelope, raw = self.spool.read(claim)
        except Exception as exc:                             # a damaged spool file
            self.spool.set_aside(claim, f"unreadable spool entry: {exc}")
            log.error("spool entry %s unreadable, set aside: %s", claim.base, exc)
            return Outcome("set_aside", claim.base, reason=str(exc))
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

    def _handle(self, claim: Claim, raw: bytes, envelope: Envelope) -> Outcome:
        try:
            result = self.process(raw, envelope)
        except ParseError as exc:
            return self._quarantine(claim, raw, envelope, "parse", exc.reason, exc.detail)
        except StoreUnavailable as exc:
            self.spool.release(claim, count_attempt=False)
            self._not_before[claim.base] = time.monotonic() + self.settings.retry_seconds
            self.stats["retry"] += 1
            log.warning("store unavailable, message %s kept in spool: %s", claim.base, exc)
            return Outcome("retry", claim.base, reason=str(exc))
        except AuthDeferred as exc:                      # DNS temperror: keep it, authenticate later
            self.spool.release(claim, count_attempt=False)
            self._not_before[claim.base] = time.monotonic() + self.settings.auth_retry_seconds
            self.stats["retry"] += 1
            log.warning("sender not authenticated yet, message %s kept in spool: %s", claim.base, exc)
            return Outcome("retry", claim.base, reason=str(exc))
        except Exception as exc:
            stage = getattr(exc, "helpdesk_stage", "worker")
            reason = f"{exc.__class__.__name__}: {exc}"
            log.exception("message %s failed at %s (attempt %d)", claim.base, stage, claim.attempt)
            if claim.attempt >= self.settings.max_attempts:
                return self._quarantine(claim, raw, envelope, stage, "failed", reason)
            self.spool.release(claim)
            self._not_before[claim.base] = time.monotonic() + self.settings.retry_seconds * 2 ** (claim.attempt - 1)
            self.stats["retry"] += 1
            return Outcome("retry", claim.base, reason=reason)
        self.spool.done(claim)
        self._not_before.pop(claim.base, None)
        self.stats["duplicate" if result.outcome == "duplicate" else "stored"] += 1
        log.info("stored message_id=<%s> ticket=%s outcome=%s", result.message_id, result.ticket_id, result.outcome)
        return Outcome("stored", claim.base, result=result)

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
        """Handle entries until none is ready; returns how many were handled."""
        n = 0
        while not (stop and stop.is_set()):
            if self.run_once(only) is None:
                break
            n += 1
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
