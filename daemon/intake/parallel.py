"""Parsing ahead for large imports: helper processes parse while this process stores.

A big `helpdesk ingest` spends about as long parsing as storing. Storing must stay in one
process and in order (a reply is threaded after the message it answers; SQLite has one
writer), but parsing is pure: helper processes parse batch k+1 while this process threads,
classifies and stores batch k (daemon.intake.ingest). The helpers are forked before the
application opens its database or starts a thread, and they only ever parse: no
connection, no lock, no spool entry is theirs. A helper that fails leaves its messages to
be parsed here, so a broken helper costs time, never mail. A chunk that is not done in
time (`parse_seconds` plus a little per message: a hostile message may be in it) is
given up and its helpers are killed; the worker parses those messages itself, under its
own per-message budget (daemon.parse_guard), so one slow message costs at most that.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from daemon.errors import ParseError
from daemon.model import ParsedMessage
from daemon.pipeline.parse import ParseLimits, parse

log = logging.getLogger(__name__)

BIG_IMPORT_BYTES = 2 * 1024 * 1024          # below this an import is parsed in one process
PER_MESSAGE_SECONDS = 0.25                   # a chunk's allowance on top of parse_seconds
_LIMITS: ParseLimits | None = None           # the helper's parse limits (set once, at fork)


def _init(limits: ParseLimits) -> None:
    global _LIMITS
    _LIMITS = limits


def _parse_chunk(items: list[tuple[bytes, str | None]]) -> list:
    """In a helper: each message parsed, or ("error", reason, detail) for mail we cannot read."""
    out: list = []
    for raw, mail_from in items:
        try:
            out.append(parse(raw, limits=_LIMITS, envelope_mail_from=mail_from))
        except ParseError as exc:
            out.append(("error", exc.reason, exc.detail))
    return out


def is_big_import(paths: list[str]) -> bool:
    """Worth helpers: a folder (Maildir) or files of BIG_IMPORT_BYTES or more; never stdin
    (an MTA pipe delivers one message)."""
    total = 0
    for path in paths:
        if path == "-":
            continue
        if os.path.isdir(path):
            return True
        try:
            total += os.path.getsize(path)
        except OSError:
            continue
    return total >= BIG_IMPORT_BYTES


class ParseAhead:
    """`n` forked helper processes parsing batches of raw messages."""

    def __init__(self, limits: ParseLimits, n: int, parse_seconds: float = 10.0):
        ctx = multiprocessing.get_context("fork")
        self.pool = ProcessPoolExecutor(n, mp_context=ctx, initializer=_init, initargs=(limits,))
        self.pool.submit(int).result()          # fork them all now: no connection or thread exists yet
        self.n = n
        self.parse_seconds = parse_seconds
        self.stuck = False

    @classmethod
    def for_import(cls, paths: list[str], limits: ParseLimits, processes: int,
                   parse_seconds: float = 10.0) -> "ParseAhead | None":
        """Helpers for this import, or None (one process, stdin, a small import, no fork())."""
        if processes < 2 or not is_big_import(paths) or "fork" not in multiprocessing.get_all_start_methods():
            return None
        try:
            helpers = cls(limits, processes - 1, parse_seconds)
            log.info("ingest: %d helper process(es) parse ahead", helpers.n)
            return helpers
        except Exception as exc:                # no helpers: the import still runs, in one process
            log.warning("ingest: no parsing helpers (%s); parsing in this process", exc)
            return None

    def submit(self, items: list[tuple[bytes, str | None]]) -> list[tuple[int, Future]]:
        """Start parsing (raw, MAIL FROM) pairs: one contiguous chunk per helper, each with
        the index of its first message."""
        size = -(-len(items) // self.n) or 1
        try:
            return [(i, self.pool.submit(_parse_chunk, items[i:i + size])) for i in range(0, len(items), size)]
        except Exception as exc:                # a helper died earlier (broken pool): parse here
            log.warning("ingest: parsing helpers unavailable (%s); parsing in this process", exc)
            return []

    def gather(self, bases: list[str], chunks: list[tuple[int, Future]]) -> dict[str, ParsedMessage | ParseError]:
        """`collect` with a deadline for each chunk; on a missed one the helpers are killed
        (a helper stuck on a hostile message never returns) and the rest is parsed here."""
        sizes = [size for size in _chunk_sizes(len(bases), chunks)]
        deadline = time.monotonic() + self.parse_seconds + PER_MESSAGE_SECONDS * max(sizes, default=0)
        out = self.collect(bases, chunks, deadline=deadline)
        if len(out) < len(bases) and any(not f.done() for _, f in chunks):
            self.stuck = True
            log.warning("ingest: a parsing helper is stuck (a slow message?); it is stopped and "
                        "its messages are parsed in this process")
            self._kill()
        return out

    def _kill(self) -> None:
        for process in list(getattr(self.pool, "_processes", {}).values()):
            try:
                process.kill()
            except (OSError, AttributeError):
                pass

    @staticmethod
    def collect(bases: list[str], chunks: list[tuple[int, Future]],
                deadline: float | None = None) -> dict[str, ParsedMessage | ParseError]:
        """Parsed messages (or their ParseError) by spool base; a failed chunk, or one not
        done by `deadline` (time.monotonic()), is left out (the worker parses it)."""
        out: dict[str, ParsedMessage | ParseError] = {}
        for start, future in chunks:
            try:
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                results = future.result(timeout=wait)
            except FutureTimeout:
                continue
            except Exception as exc:
                log.warning("ingest: a parsing helper failed (%s); parsing its messages here", exc)
                continue
            for base, r in zip(bases[start:start + len(results)], results):
                out[base] = ParseError(r[1], r[2]) if isinstance(r, tuple) else r
        return out

    def close(self) -> None:
        if self.stuck:
            self._kill()
        self.pool.shutdown(wait=not self.stuck, cancel_futures=True)


def _chunk_sizes(total: int, chunks: list[tuple[int, Future]]) -> list[int]:
    starts = [start for start, _ in chunks] + [total]
    return [b - a for a, b in zip(starts, starts[1:])]
