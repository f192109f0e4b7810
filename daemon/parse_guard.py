"""Parsing under a time budget, in processes that are killed at the deadline (an edge).

The parse stage is pure and linear on the hostile input we know of, but it runs the
stdlib's and mail-parser's code on attacker-supplied bytes, and one slow message must
never hold up everyone's mail. `ParseGuard.parse` has the arguments of
`daemon.pipeline.parse.parse` plus `seconds`: the message is parsed in one of a few
reused child processes; if no answer comes by the deadline the child is killed
(SIGKILL: nothing is trusted to return) and `ParseError("parse_timeout")` is raised,
so the worker quarantines the mail and goes on. A child that dies (out of memory, a
crash in C code) gives `ParseError("parse_crashed")`. The next call gets a fresh child.
Calls from several threads run in parallel, one child each (`processes` of them).

Children are forked while the process has a single thread, and come from a fork server
once threads run (forking a threaded process can inherit a held lock). `parse_within`
is the same call on a guard shared by the calling process (made on first use).
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

from daemon.errors import ParseError
from daemon.model import ParsedMessage
from daemon.pipeline.parse import DEFAULT_LIMITS, ParseLimits, parse

log = logging.getLogger(__name__)

DEFAULT_SECONDS = 10.0
DEFAULT_PROCESSES = 2
_ORPHAN_CHECK_SECONDS = 2.0        # an idle child looks this often whether its parent lives


def _child(conn: Connection, hang_marker: bytes | None, parent: int) -> None:
    """A parse process: answers (raw, limits, mail_from) jobs until its pipe closes or
    its parent is gone (a forked child also holds copies of the parent's pipe ends, so
    EOF alone cannot be trusted to come). Stop signals are the parent's business (a
    terminal's Ctrl-C reaches the whole process group)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    while True:
        try:
            while not conn.poll(_ORPHAN_CHECK_SECONDS):
                if os.getppid() != parent:
                    return
            raw, limits, mail_from = conn.recv()
        except (EOFError, OSError):
            return
        if hang_marker is not None and hang_marker in raw:
            while True:                       # test hook: a parse that never returns
                time.sleep(3600)
        try:
            answer: tuple = ("ok", parse(raw, limits=limits, envelope_mail_from=mail_from))
        except ParseError as exc:
            answer = ("error", exc.reason, exc.detail)
        except BaseException as exc:          # noqa: BLE001 - parse promises this never happens
            answer = ("error", "parse_failed", f"{type(exc).__name__} in the parse process"[:200])
        try:
            conn.send(answer)
        except (OSError, ValueError):
            return


@dataclass
class _Slot:
    """One child process and our end of its pipe."""

    process: multiprocessing.process.BaseProcess
    conn: Connection

    def kill(self) -> None:
        try:
            self.process.kill()
        except (OSError, AttributeError, ValueError):
            pass
        self.process.join(5)
        self.conn.close()


class ParseGuard:
    """A small pool of reused parse processes with a per-message deadline."""

    def __init__(self, processes: int = DEFAULT_PROCESSES, *, hang_marker: bytes | None = None):
        self.processes = max(1, processes)
        self.hang_marker = hang_marker           # tests only: mail holding it hangs the child
        self._idle: queue.LifoQueue[_Slot | None] = queue.LifoQueue()   # a warm child first
        for _ in range(self.processes):
            self._idle.put(None)                  # a place for a child, started on first use
        self._closed = False
        self._busy: dict[int, _Slot] = {}        # thread id -> the child it is waiting on
        self.stats = {"parsed": 0, "timeouts": 0, "crashes": 0, "started": 0}

    def parse(self, raw: bytes, *, limits: ParseLimits = DEFAULT_LIMITS,
              envelope_mail_from: str | None = None,
              seconds: float = DEFAULT_SECONDS) -> ParsedMessage:
        """`daemon.pipeline.parse.parse` in a child, answered within `seconds` or
        refused with ParseError("parse_timeout")."""
        if self._closed:
            raise RuntimeError("ParseGuard is closed")
        slot = self._idle.get()
        me = threading.get_ident()
        try:
            slot = slot if slot is not None and slot.process.is_alive() else self._start(slot)
            self._busy[me] = slot
            answer = self._ask(slot, (raw, limits, envelope_mail_from), max(0.01, seconds))
        except BaseException:
            if slot is not None:
                slot.kill()
            self._idle.put(None)
            raise
        finally:
            self._busy.pop(me, None)
        self._idle.put(slot)
        self.stats["parsed"] += 1
        if answer[0] == "ok":
            return answer[1]
        raise ParseError(answer[1], answer[2])

    def _ask(self, slot: _Slot, job: tuple, seconds: float) -> tuple:
        try:
            slot.conn.send(job)
            ready = slot.conn.poll(seconds)
        except (OSError, ValueError, EOFError):
            ready = True                         # the child is gone: recv() says so below
        if not ready:
            self.stats["timeouts"] += 1
            raise ParseError("parse_timeout", f"no result after {seconds:g} s; the parse process was killed")
        try:
            return slot.conn.recv()
        except (EOFError, OSError):
            self.stats["crashes"] += 1
            slot.process.join(5)
            raise ParseError("parse_crashed",
                             f"the parse process died (exit {slot.process.exitcode})") from None

    def _start(self, old: _Slot | None) -> _Slot:
        if old is not None:
            old.kill()
        method = "fork" if threading.active_count() == 1 else "forkserver"
        if method not in multiprocessing.get_all_start_methods():
            method = "spawn"
        ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            ctx.set_forkserver_preload(["daemon.parse_guard"])
        ours, theirs = ctx.Pipe(duplex=True)
        process = ctx.Process(target=_child, args=(theirs, self.hang_marker, os.getpid()), daemon=True,
                              name="helpdesk-parse")
        process.start()
        theirs.close()
        self.stats["started"] += 1
        log.debug("parse process %s started (%s)", process.pid, method)
        return _Slot(process, ours)

    def busy_pids(self) -> list[int]:
        """Process ids of the children parsing a message right now."""
        return [slot.process.pid for slot in list(self._busy.values()) if slot.process.pid]

    def close(self) -> None:
        """Stop every child (waiting ones are killed; a call in progress gets its answer
        or its timeout first)."""
        self._closed = True
        for _ in range(self.processes):
            slot = self._idle.get()
            if slot is not None:
                slot.kill()


_shared: dict[int, ParseGuard] = {}
_shared_lock = threading.Lock()


def shared_guard() -> ParseGuard:
    """This process's guard, made on first use (a forked child gets its own)."""
    pid = os.getpid()
    with _shared_lock:
        guard = _shared.get(pid)
        if guard is None:
            guard = _shared[pid] = ParseGuard()
        return guard


def parse_within(raw: bytes, *, limits: ParseLimits = DEFAULT_LIMITS,
                 envelope_mail_from: str | None = None,
                 seconds: float = DEFAULT_SECONDS) -> ParsedMessage:
    """`parse(raw, limits=..., envelope_mail_from=...)` with a time budget, on this
    process's shared guard: the drop-in replacement for the worker's parse call."""
    return shared_guard().parse(raw, limits=limits, envelope_mail_from=envelope_mail_from,
                                seconds=seconds)
