"""Parse lanes: the worker's parsing, a few messages at a time, so that one slow message
holds up only itself.

`ParseLanes` runs the parse stage of spool entries in `lanes` threads; each waits on its
own child of the parse guard (daemon.parse_guard, which kills a parse at its time budget).
`harvest` hands back the entries whose parse has finished, in the order they were given:
it waits for all of them up to a short window, and past the window returns what is done,
leaving a slow one in its lane for a later harvest. While a hostile mail spends its budget
in one lane, the mail behind it is parsed in the others and stored. Only when nothing at
all has finished does `harvest` wait for the first result, so a caller is never handed
back an empty hand while work is in flight (and never spins).
"""
from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable

from daemon.model import ParsedMessage
from daemon.pipeline.parse import DEFAULT_LIMITS, ParseLimits

Parse = Callable[..., ParsedMessage]


class ParseLanes:
    """See module docstring. `parse` has the signature of daemon.pipeline.parse.parse."""

    def __init__(self, parse: Parse, lanes: int, limits: ParseLimits | None = None):
        self.parse, self.lanes, self.limits = parse, max(1, lanes), limits or DEFAULT_LIMITS
        self._pool: ThreadPoolExecutor | None = None          # started on first use
        self._pending: list[tuple[object, Future]] = []

    def submit(self, entry) -> None:
        """Start parsing `entry` (a daemon.message_path.Entry) in a free lane, or queue it."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="helpdesk-parse-lane")
        self._pending.append((entry, self._pool.submit(self._parse, entry.raw, entry.envelope.mail_from)))

    def _parse(self, raw: bytes, mail_from: str) -> ParsedMessage | Exception:
        try:
            return self.parse(raw, limits=self.limits, envelope_mail_from=mail_from)
        except Exception as exc:                 # the worker decides what a failed parse means
            return exc

    @property
    def pending(self) -> int:
        return len(self._pending)

    def harvest(self, window: float) -> list[tuple[object, ParsedMessage | Exception]]:
        """(entry, parsed message or the exception the parse raised) for every finished
        entry, oldest first; waits up to `window` seconds for all, and without any result
        for the first one."""
        if not self._pending:
            return []
        futures = [f for _, f in self._pending]
        wait(futures, timeout=window)
        if not any(f.done() for f in futures):
            wait(futures, return_when=FIRST_COMPLETED)
        done = [(e, f.result()) for e, f in self._pending if f.done()]
        self._pending = [(e, f) for e, f in self._pending if not f.done()]
        return done

    def close(self) -> None:
        """Stop taking work; a parse in progress ends at its budget (its guard kills it)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pending = []
