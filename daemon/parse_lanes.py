"""Parse lanes: the worker's parsing, a few messages at a time, so that one slow message
holds up the rest of the mail for a moment, not for its whole parse budget.

`ParseLanes` runs the parse stage of spool entries in `lanes` threads; each waits on its
own child of the parse guard (daemon.parse_guard, which kills a parse at its time budget).
`harvest` waits until every entry in line is parsed (so a batch stays whole) and hands
them back in the order they were given (the order matters: a reply stored before its
parent would open the conversation). The one exception is an entry that has been parsing
for longer than `overtake_seconds` (far beyond any normal parse; an entry still queued for
a lane is never overdue): the entries behind it go, and it stays in its lane for a later
harvest. `harvest` never hands back an empty hand while work is in flight: it waits (it
never spins) until something may go.
"""
from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable

from daemon.model import ParsedMessage
from daemon.pipeline.parse import DEFAULT_LIMITS, ParseLimits

Parse = Callable[..., ParsedMessage]
OVERTAKE_SECONDS = 2.0


class _Job:
    """One entry in line: its future, and when a lane began parsing it (None: still queued)."""

    __slots__ = ("entry", "future", "started")

    def __init__(self, entry, future: Future | None = None):
        self.entry, self.future, self.started = entry, future, None


class ParseLanes:
    """See module docstring. `parse` has the signature of daemon.pipeline.parse.parse."""

    def __init__(self, parse: Parse, lanes: int, limits: ParseLimits | None = None, *,
                 overtake_seconds: float = OVERTAKE_SECONDS, monotonic: Callable[[], float] = time.monotonic):
        self.parse, self.lanes, self.limits = parse, max(1, lanes), limits or DEFAULT_LIMITS
        self.overtake_seconds, self.monotonic = overtake_seconds, monotonic
        self._pool: ThreadPoolExecutor | None = None          # started on first use
        self._pending: list[_Job] = []

    def submit(self, entry) -> None:
        """Start parsing `entry` (a daemon.message_path.Entry) in a free lane, or queue it."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="helpdesk-parse-lane")
        job = _Job(entry)
        job.future = self._pool.submit(self._parse, job)
        self._pending.append(job)

    def add_parsed(self, entry, result: "ParsedMessage | Exception") -> None:
        """An entry parsed elsewhere (ahead, by helper processes): it keeps its place in line."""
        future: Future = Future()
        future.set_result(result)
        self._pending.append(_Job(entry, future))

    def _parse(self, job: _Job) -> ParsedMessage | Exception:
        job.started = self.monotonic()
        try:
            return self.parse(job.entry.raw, limits=self.limits, envelope_mail_from=job.entry.envelope.mail_from)
        except Exception as exc:                 # the worker decides what a failed parse means
            return exc

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _overdue(self, job: _Job, now: float) -> bool:
        return job.started is not None and now - job.started >= self.overtake_seconds

    def harvest(self) -> list[tuple[object, ParsedMessage | Exception]]:
        """(entry, parsed message or the exception the parse raised) for the entries that
        may go now, in order (see module docstring). Waits until every entry in line is
        parsed or overdue; with nothing to hand back, until the first one is."""
        while self._pending:
            now = self.monotonic()
            waiting = [j for j in self._pending if not j.future.done() and not self._overdue(j, now)]
            if not waiting:
                break
            head = waiting[0]
            if head.started is None:             # queued behind busy lanes: wait for one to free
                wait([j.future for j in waiting], return_when=FIRST_COMPLETED)
            else:
                wait([head.future], timeout=max(0.0, head.started + self.overtake_seconds - now))
        taken = self._take()
        if not taken and self._pending:          # every one left is overdue: wait for the first to end
            wait([j.future for j in self._pending], return_when=FIRST_COMPLETED)
            taken = self._take()
        return taken

    def _take(self) -> list[tuple[object, ParsedMessage | Exception]]:
        taken, kept, now = [], [], self.monotonic()
        for i, job in enumerate(self._pending):
            if job.future.done():
                taken.append((job.entry, job.future.result()))
            elif self._overdue(job, now):
                kept.append(job)                          # overdue: the rest may pass it
            else:
                kept += self._pending[i:]
                break
        self._pending = kept
        return taken

    def close(self) -> None:
        """Stop taking work; a parse in progress ends at its budget (its guard kills it)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pending = []
