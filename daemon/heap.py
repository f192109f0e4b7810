"""The memory edge of a long-running process (`helpdesk serve`, `helpdesk worker`; issue 16).

Three things keep its resident size down, all measured with bench/serve_memory.py:
- `limit_arenas()`, at start before any thread: glibc gives threads malloc arenas of their
  own (up to 8 per core), each keeping freed memory; two are enough for a process whose
  threads mostly wait. It is what MALLOC_ARENA_MAX=2 in the systemd units does, for a serve
  started any other way (mallopt(M_ARENA_MAX)); an explicit MALLOC_ARENA_MAX wins.
- `Trim`, ticked by the main loop: every `every` seconds malloc_trim(0) hands the free pages
  inside the arenas back to the kernel (glibc keeps them otherwise).
- `skip_drivers(names)`: huey imports the redis and psycopg clients when they are installed
  (~17 MB) though a SQLite site never uses them; `unused_drivers(cfg)` names those it does not.
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


def unused_drivers(database_url: str, queue_backend: str) -> tuple[str, ...]:
    """The optional client libraries a process with this database and queue never uses."""
    unused = [] if queue_backend == "redis" else ["redis"]
    if not database_url.startswith("postgres"):
        unused += ["psycopg", "psycopg2"]
    return tuple(unused)


def skip_drivers(names: tuple[str, ...], modules: dict = sys.modules) -> None:
    """Make `import name` fail as if it were not installed (before anything imported it):
    what imports it optionally (huey.storage) then goes without."""
    for name in names:
        if name not in modules:
            modules[name] = None
