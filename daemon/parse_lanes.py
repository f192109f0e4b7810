"""Parse lanes: the worker's parsing, a few messages at a time, so that one slow message
holds up the rest of the mail for a moment, not for its whole parse budget.

`ParseLanes` runs the parse stage of spool entries in `lanes` threads; each waits on its
own child of the parse guard (daemon.parse_guard, which kills a parse at its time budget).
`harvest` hands back finished entries in the order they were given (the order matters: a
reply stored before its parent would open the conversation), stopping at the first one
still parsing, unless that one has been parsing for longer than `overtake_seconds` (far
beyond any normal parse): then the entries behind it may go first, and it stays in its
lane for a later harvest. `harvest` never hands back an empty hand while work is in
flight: it waits (it never spins) until something may go.
"""
from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable

from daemon.model import ParsedMessage
from daemon.pipeline.parse import DEFAULT_LIMITS, ParseLimits

Parse = Callable[..., ParsedMessage]
OVERTAKE_SECONDS = 2.0


class ParseLanes:
    """See module docstring. `parse` has the signature of daemon.pipeline.parse.parse."""

    def __init__(self, parse: Parse, lanes: int, limits: ParseLimits | None = None, *,
                 overtake_seconds: float = OVERTAKE_SECONDS, monotonic: Callable[[], float] = time.monotonic):
        self.parse, self.lanes, self.limits = parse, max(1, lanes), limits or DEFAULT_LIMITS
        self.overtake_seconds, self.monotonic = overtake_seconds, monotonic
        self._pool: ThreadPoolExecutor | None = None          # started on first use
        self._pending: list[tuple[object, Future, float]] = []

    def submit(self, entry) -> None:
        """Start parsing `entry` (a daemon.message_path.Entry) in a free lane, or queue it."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="helpdesk-parse-lane")
        future = self._pool.submit(self._parse, entry.raw, entry.envelope.mail_from)
        self._pending.append((entry, future, self.monotonic()))

    def add_parsed(self, entry, result: "ParsedMessage | Exception") -> None:
        """An entry parsed elsewhere (ahead, by helper processes): it keeps its place in line."""
        future: Future = Future()
        future.set_result(result)
        self._pending.append((entry, future, self.monotonic()))

    def _parse(self, raw: bytes, mail_from: str) -> ParsedMessage | Exception:
        try:
            return self.parse(raw, limits=self.limits, envelope_mail_from=mail_from)
        except Exception as exc:                 # the worker decides what a failed parse means
            return exc

    @property
    def pending(self) -> int:
        return len(self._pending)

    def harvest(self, window: float) -> list[tuple[object, ParsedMessage | Exception]]:
        """(entry, parsed message or the exception the parse raised) for the entries that
        may go now, in order (see module docstring); waits up to `window` seconds for all."""
        if not self._pending:
            return []
        wait([f for _, f, _ in self._pending], timeout=window)
        while True:
            taken = self._take()
            if taken or not self._pending:
                return taken
            _, head, started = self._pending[0]
            left = started + self.overtake_seconds - self.monotonic()
            if left > 0:                              # wait for the head, or until it may be overtaken
                wait([head], timeout=left)
            else:
                wait([f for _, f, _ in self._pending[1:]], return_when=FIRST_COMPLETED)

    def _take(self) -> list[tuple[object, ParsedMessage | Exception]]:
        taken, kept, now = [], [], self.monotonic()
        for i, (entry, future, started) in enumerate(self._pending):
            if future.done():
                taken.append((entry, future.result()))
            elif now - started >= self.overtake_seconds:
                kept.append((entry, future, started))       # overdue: the rest may pass it
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
