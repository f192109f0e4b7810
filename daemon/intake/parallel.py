"""Parallel draining for large imports: helper processes each take whole conversations.

A reply must be processed after the message it answers, so spool entries are partitioned
by a thread root read cheaply from the raw headers (the first References id, else
In-Reply-To, else the message's own Message-ID): every message of one conversation goes to
the same process, in spool order, while different conversations run side by side on the
machine's other cores. The database serialises the writes; parsing, threading, rules and
rendering run in parallel. Used by `helpdesk ingest` for big imports only; SMTP, IMAP and
small pipe deliveries stay in one process.
"""
from __future__ import annotations

import multiprocessing
import re
import zlib
from concurrent.futures import Future, ProcessPoolExecutor

ID = re.compile(rb"<([^<>\s]+)>")
_APP = None                                     # the helper process's own App (built once)


def _header(head: bytes, name: bytes) -> bytes:
    """The unfolded value of the first header `name` in a raw header block, or b""."""
    m = re.search(rb"(?im)^" + name + rb":[ \t]*(.*(?:\r?\n[ \t].*)*)", head)
    return m.group(1) if m else b""


def thread_root(raw: bytes) -> bytes:
    """The id naming this message's conversation, from the headers only (no full parse)."""
    end = raw.find(b"\n\n")
    end2 = raw.find(b"\r\n\r\n")
    head = raw[:min(x for x in (end, end2, 65536) if x >= 0)]
    for name in (rb"references", rb"in-reply-to", rb"message-id"):
        ids = ID.findall(_header(head, name))
        if ids:
            return ids[0].lower()
    return head[:512]


def partition(entries: list[tuple[str, bytes]], n: int) -> list[list[str]]:
    """Spool bases split into n lists by thread root, each keeping spool order."""
    out: list[list[str]] = [[] for _ in range(n)]
    for base, raw in entries:
        out[zlib.crc32(thread_root(raw)) % n].append(base)
    return out


def _init(config_path: str | None, outbound: bool) -> None:
    global _APP
    from daemon.app import build_app
    from daemon.config import load_config
    _APP = build_app(load_config(config_path), outbound=outbound)


def _drain(bases: list[str]) -> tuple[list[str], dict[str, int]]:
    """In a helper: process these entries; return those left (retry later) and the counts."""
    todo, counts = set(bases), {}
    while todo:
        outcome = _APP.worker.run_once(todo)
        if outcome is None:
            break
        if outcome.kind != "retry":
            todo.discard(outcome.base)
            key = outcome.result.outcome if outcome.result else outcome.kind
            counts[key] = counts.get(key, 0) + 1
    return sorted(todo), counts


class Helpers:
    """`n` helper processes, each with its own App built from the same config."""

    def __init__(self, config_path: str | None, outbound: bool, n: int):
        ctx = multiprocessing.get_context("spawn")      # no inherited connections or threads
        self.pool = ProcessPoolExecutor(n, mp_context=ctx, initializer=_init, initargs=(config_path, outbound))
        self.n = n

    def submit(self, bases: list[str]) -> Future:
        return self.pool.submit(_drain, bases)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
