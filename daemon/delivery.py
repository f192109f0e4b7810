"""The sender: due outbox rows, claimed in batches, out over one relay session, marked.

The outbox table with its due index is the queue; huey only wakes a sender. `wake()`
enqueues one `send_due` task (daemon.tasks) - when this process consumes its own queue,
only if none is already waiting, since one drain takes every row that is due. `drain()`
claims up to `batch` due rows at a time (one write transaction, as many as the per-minute
limit allows now), sends them one after the other on one `RelaySession` (reused across
the drain's batches and kept open `keep_seconds` for the next drain; PIPELINING, RSET
after a failed mail: daemon.relay_session), notes
each relay answer in the send journal (daemon.send_journal: kept before the next mail
goes out, fsync'd once a batch) and marks the batch in one transaction. Temporary failures get their next
attempt from the backoff (daemon.mailer.settle) and one scheduled wake-up per second in
which they fall due. Over the rate limit the drain stops and schedules a wake-up for when
the next mail may go. `send(outbox_id)` is the same for one given row. `sweep()` replays
orphaned journals and wakes a sender when rows are due that nobody took (huey lost the
task, a sender died and its lease expired).
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Sequence

from sqlalchemy.exc import OperationalError

from daemon.clock import utcnow
from daemon.errors import HelpdeskError
from daemon.mailer import RateLimit, Relay, RetryPolicy, settle
from daemon.metrics import Metrics
from daemon.send_journal import Journal
from store.outbox_sender import Attempt, Claimed, OutboxStore, RcptOutcome

log = logging.getLogger(__name__)


@dataclass
class Delivery:
    """What the senders need: the outbox, the relay, the retry policy, a clock, the queue's
    two ways of waking a sender (now, later), the rate limit and the journal."""

    outbox: OutboxStore
    relay: Relay
    policy: RetryPolicy
    lease_seconds: float = 120.0
    clock: Callable[[], datetime] = utcnow
    wake_task: Callable[[], Any] = lambda: None           # enqueue one send_due now
    schedule: Callable[[float], Any] = lambda delay: None  # ... after `delay` seconds
    limit: RateLimit | None = None
    metrics: Metrics | None = None
    journal: Journal | None = None
    batch: int = 50                        # rows claimed (and marked) at a time
    scheduled: bool = True                 # a queue runs scheduled wake-ups (False: immediate mode)
    coalesce: bool = False                 # this process consumes its wake-ups: one waiting is enough
    drain_seconds: float = 30.0            # a drain hands over to a fresh task after this long
    keep_seconds: float = 10.0             # a relay session idle this long is not reused (QUIT)
    _parked: list = field(default_factory=list, repr=False)
    _armed: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _replaying: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # ------------------------------------------------------------------ waking a sender
    def wake(self, *_outbox_ids: int) -> None:
        """Have a sender drain the outbox soon (the ids are not needed: every due row goes)."""
        with self._lock:
            if self.coalesce and self._armed:
                return
            self._armed = True
        try:
            self.wake_task()
        except Exception:
            self._armed = False
            raise

    def _later(self, delay: float) -> None:
        if not self.scheduled:
            return                                    # immediate mode: the sweep finds it when due
        try:
            self.schedule(max(delay, 0.0))
        except Exception as exc:                      # the sweep finds it when it is due
            log.warning("outbox wake-up in %.0fs not scheduled (%s); the sweep will", delay, exc)

    # ------------------------------------------------------------------ sending
    def drain(self) -> int:
        """Send every due row, batch by batch; how many were attempted."""
        with self._lock:
            self._armed = False                       # from here on a new row needs a new wake-up
        started, done = time.monotonic(), 0
        session = None
        try:
            self.replay()
            allowed = self._allowance(self.batch)
            claims = self._taken(allowed, self.outbox.claim_due(self.clock(), self.lease_seconds, allowed)
                                 if allowed else [])
            while claims:
                session = session or self._session()
                attempts, took, journal = self._transmit(session, claims)
                done += len(attempts)
                finished = len(claims) < allowed and len(attempts) == len(claims)   # nothing more due
                late = time.monotonic() - started > self.drain_seconds
                allowed = 0 if finished or late else self._allowance(self.batch)
                claims = self._taken(allowed, self._mark(attempts, took, journal, allowed)[1])
                if late:
                    self.wake()                           # a fresh task goes on
        except (HelpdeskError, OperationalError) as exc:  # database away: the sweep tries again later
            log.warning("outbox not drained now: %s", exc)
        except Exception:                             # a sender never dies of one batch
            log.exception("outbox drain failed")
        finally:
            if session is not None:
                self._park(session)
        return done

    def _session(self):
        """A relay session: one kept from an earlier drain if it is fresh enough, else new."""
        with self._lock:
            parked, self._parked = self._parked, []
        session = None
        for s, since in parked:
            if session is None and time.monotonic() - since <= self.keep_seconds:
                session = s
            else:
                s.close()
        return session or self.relay.session()

    def _park(self, session) -> None:
        """Keep the drain's session for the next drain (closed when it has gone bad)."""
        if self.keep_seconds > 0 and getattr(session, "broken", None) is None:
            with self._lock:
                self._parked.append((session, time.monotonic()))
        else:
            session.close()

    def close(self) -> None:
        """Close the kept relay sessions (QUIT)."""
        with self._lock:
            parked, self._parked = self._parked, []
        for s, _ in parked:
            s.close()

    def send(self, outbox_id: int) -> str | None:
        """One attempt at one given row; its new status, or None when it was not ours to send."""
        try:
            self.replay()
            if self._allowance(1) == 0:
                return None
            claims = self.outbox.claim_due(self.clock(), self.lease_seconds, 1, ids=(outbox_id,))
            if not claims:
                if self.limit is not None:
                    self.limit.give_back(1)
                return None
            with self.relay.session() as session:
                return self._send(session, claims)[0]
        except (HelpdeskError, OperationalError) as exc:
            log.warning("outbox=%s not sent now: %s", outbox_id, exc)
        except Exception:
            log.exception("outbox=%s send failed", outbox_id)
        return None

    def _allowance(self, want: int) -> int:
        """How many mails may go now (the rate limit); 0 schedules a wake-up for later."""
        if self.limit is None:
            return want
        granted, wait = self.limit.take_up_to(want)
        if granted == 0:
            self._later(wait)
        return granted

    def _taken(self, allowed: int, claims: list[Claimed]) -> list[Claimed]:
        """Claims made with `allowed` tokens of the rate limit: the ones not used go back."""
        if self.limit is not None and len(claims) < allowed:
            self.limit.give_back(allowed - len(claims))
        return claims

    def _send(self, session, claims: Sequence[Claimed]) -> list[str | None]:
        """Send claimed rows on `session` and mark them."""
        attempts, took, journal = self._transmit(session, claims)
        return self._mark(attempts, took, journal)[0]

    def _transmit(self, session, claims: Sequence[Claimed]) -> tuple[list[Attempt], list[float], Any]:
        """Send claimed rows one after the other, each answer into the batch's journal (fsync'd
        at the end); rows left when half the lease is gone are given back unsent."""
        journal = self.journal.batch() if self.journal is not None else None
        attempts, took, claimed = [], [], time.monotonic()
        try:
            for k, claim in enumerate(claims):
                t0 = time.monotonic()
                if k and t0 - claimed > self.lease_seconds / 2:   # a slow relay: leave the rest to the next
                    self.outbox.release(claims[k:])            # claim before another sender may take them
                    log.warning("outbox: %d mail(s) of a batch given back unsent (half the lease used)",
                                len(claims) - k)
                    break
                attempts.append(self._attempt(session, claim))
                if journal is not None:
                    journal.note(attempts[-1])
                took.append(time.monotonic() - t0)
            if journal is not None:
                journal.sync()
        except BaseException:
            if journal is not None:
                journal.close()                       # left for the replay; unsent claims: the lease expires
            raise
        return attempts, took, journal

    def _mark(self, attempts: list[Attempt], took: list[float], journal, limit: int = 0
              ) -> tuple[list[str | None], list[Claimed]]:
        """Record the attempts (and claim up to `limit` more in the same transaction); log
        them, schedule the retries' wake-ups, forget the journal."""
        now = self.clock()
        try:
            statuses, claims = self.outbox.record_and_claim(attempts, now, scheduled=self.scheduled,
                                                            lease_seconds=self.lease_seconds, limit=limit)
        except BaseException:
            if journal is not None:
                journal.close()
            raise
        if journal is not None:
            journal.done()
        due_in = set()
        for a, status, t in zip(attempts, statuses, took):
            if self.metrics is not None:
                self.metrics.outbox_result(status)
            self._log(a, status, t)
            if status == "pending" and a.next_attempt is not None:
                due_in.add(math.ceil((a.next_attempt - now).total_seconds()))
        for delay in sorted(due_in):
            self._later(delay)
        return statuses, claims

    def _attempt(self, session, claim: Claimed) -> Attempt:
        blocked = claim.bouncing
        todo = [r for r in claim.recipients if r not in blocked]
        results = session.send(claim.mail_from, todo, claim.raw) if todo else []
        outcomes, next_at = settle(results, attempt=claim.attempts, created_at=claim.created_at, now=self.clock(),
                                   policy=self.policy)
        outcomes += [RcptOutcome(r, "suppressed", 0, "recipient is bouncing") for r in blocked]
        error = "; ".join(sorted({o.reason for o in outcomes if o.reason}))[:1000]
        return Attempt(claim, tuple(outcomes), next_at, error)

    def _log(self, a: Attempt, status: str | None, took: float) -> None:
        claim = a.claim
        summary = ", ".join(f"{o.email}={o.status}{f' {o.code}' if o.code and o.status != 'sent' else ''}"
                            for o in a.outcomes)
        level = logging.INFO if status == "sent" else logging.WARNING
        log.log(level, "outbox=%s message_id=<%s> ticket=%s attempt=%d %s -> %s (%.3fs)", claim.id, claim.message_id,
                claim.ticket_id, claim.attempts, summary, status or "lease lost", took)

    # ------------------------------------------------------------------ recovery
    def replay(self) -> int:
        """Mark the rows of orphaned send journals (a sender that died between the relay's
        answer and the mark); how many answers were recorded."""
        if self.journal is None:
            return 0
        n = 0
        with self._replaying:
            for path, attempts in self.journal.orphans():
                statuses = self.outbox.record_many(attempts, self.clock()) if attempts else []
                path.unlink(missing_ok=True)
                n += sum(s is not None for s in statuses)
                log.warning("send journal %s replayed: %d relay answer(s), %d row(s) marked now, not sent again",
                            path.name, len(attempts), sum(s is not None for s in statuses))
        return n

    def sweep(self) -> int:
        """Replay orphaned journals; wake a sender when rows are due that nobody took; how many."""
        try:
            self.replay()
            ids = self.outbox.due(self.clock(), self.lease_seconds)
        except (HelpdeskError, OperationalError) as exc:
            log.warning("outbox sweep skipped: %s", exc)
            return 0
        except Exception:
            log.exception("outbox sweep failed")
            return 0
        if ids:
            log.info("outbox sweep: %d mail(s) due, waking a sender", len(ids))
            try:
                self.wake()
            except Exception as exc:
                log.warning("outbox sender not woken (%s); next sweep", exc)
        return len(ids)
