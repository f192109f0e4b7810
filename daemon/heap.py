"""The memory edge of a long-running process (`helpdesk serve`, `helpdesk worker`; issue 16).

Two things keep its resident size down, all measured with bench/serve_memory.py:
- `limit_arenas()`, at start before any thread: glibc gives threads malloc arenas of their
  own (up to 8 per core), each keeping freed memory; two are enough for a process whose
  threads mostly wait. It is what MALLOC_ARENA_MAX=2 in the systemd units does, for a serve
  started any other way (mallopt(M_ARENA_MAX)); an explicit MALLOC_ARENA_MAX wins.
- `Trim`, ticked by the main loop: every `every` seconds malloc_trim(0) hands the free pages
  inside the arenas back to the kernel (glibc keeps them otherwise).
(The third, huey without the redis and psycopg clients it imports when installed, ~16 MB,
is daemon.huey_lean, for every process that loads the queue.)
Outside glibc (musl, macOS) the malloc calls are no-ops.
"""
from __future__ import annotations

import ctypes
import os
import sys
import time
from typing import Callable

ARENAS = 2                  # as MALLOC_ARENA_MAX=2 in systemd/*.service
M_ARENA_MAX = -8            # glibc malloc.h
TRIM_SECONDS = 60.0


def _glibc():
    """The C library when it is glibc (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version                  # absent from musl
        return libc
    except (OSError, AttributeError):
        return None


def limit_arenas(arenas: int = ARENAS, environ=os.environ) -> bool:
    """At most `arenas` malloc arenas from now on (call before starting threads); True when
    set. Leaves an explicit MALLOC_ARENA_MAX (or glibc tunable) alone."""
    if "MALLOC_ARENA_MAX" in environ or "glibc.malloc.arena_max" in environ.get("GLIBC_TUNABLES", ""):
        return False
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, arenas))


def trim() -> bool:
    """malloc_trim(0): free pages go back to the kernel; True when some did."""
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0))


class Trim:
    """Calls `release` (malloc_trim) when `every` seconds have passed since the last call;
    `tick()` is cheap in between. `clock` is settable so tests need not wait."""

    def __init__(self, every: float = TRIM_SECONDS, *, release: Callable[[], bool] = trim,
                 clock: Callable[[], float] = time.monotonic):
        self.every, self.release, self.clock = every, release, clock
        self.last = clock()
        self.count = 0

    def tick(self) -> bool:
        """Trim when due; True when it ran."""
        now = self.clock()
        if self.every <= 0 or now - self.last < self.every:
            return False
        self.last = now
        self.count += 1
        self.release()
        return True
