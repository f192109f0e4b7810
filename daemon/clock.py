"""Time: the one set of time helpers, and the clock every part of a helpdeskd process reads.

Helpers (pure, used by every layer; this module imports only the standard library and
daemon.errors):
  utcnow()            the wall clock, aware UTC
  as_utc(dt)          aware UTC; a naive value is taken as UTC (what the database wants)
  aware(dt)           a value read back from the database, made aware (None stays None)
  stamp(dt)           a time for people: `2026-03-02 09:30 UTC`
  duration_text(d)    `1h05m`, `45m`, `30s`, `-`

Clocks (an edge: the composition root builds ONE with `build_clock(cfg)` and passes it to
everything that takes `clock=`). A `Clock` is called like the `Callable[[], datetime]`
those parameters take, and has `now()`; both return aware UTC.
  SystemClock         the wall clock; what production runs.
  FileClock           tests only, `[debug] clock_file`: the wall clock plus an offset read
                      from a file, so a test moves a running daemon's time (and the CLI's,
                      which reads the same config) without waiting. The file holds seconds
                      (`3600`, `-90.5`) or an ISO time (the clock read that time when the
                      file was written, and runs on from there); a missing or empty file is
                      offset 0. It is re-read only when its mtime, size or inode changes (one
                      stat() per reading). `write_offset` replaces it atomically.
  ManualClock         in-process tests: stands still until moved.
A clock moved forward makes deadlines due at once: the SLA sweep compares stored due times
with the clock every `[queue] sweep_seconds`; timers scheduled in the queue by wall time run
later than the moved clock says, and then find nothing left to do.
"""
from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

from daemon.errors import ConfigError

log = logging.getLogger(__name__)
UTC = timezone.utc


# ---------------------------------------------------------------------- helpers
def utcnow() -> datetime:
    """The wall clock, aware UTC."""
    return datetime.now(UTC)


def as_utc(dt: datetime) -> datetime:
    """Aware UTC; a naive value is taken as UTC (sqlmodel's UTCDateTime wants aware values)."""
    return dt.astimezone(UTC) if dt.tzinfo else dt.replace(tzinfo=UTC)


def aware(dt: datetime | None) -> datetime | None:
    """A value read back from the database, made aware (SQLite returns naive UTC)."""
    return dt.replace(tzinfo=UTC) if dt is not None and dt.tzinfo is None else dt


def stamp(dt: datetime | None) -> str:
    """A time for people: `2026-03-02 09:30 UTC` ('' for none)."""
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if dt is not None else ""


def duration_text(d: timedelta | None, *, seconds: bool = True) -> str:
    """'1h05m', '45m', '-' for none; the sign is dropped. With `seconds` a duration under a
    minute reads '30s' (targets measured in seconds); without, everything is rounded to
    the minute (reports)."""
    if d is None:
        return "-"
    total = abs(d.total_seconds())
    if seconds:
        whole = round(total)
        if 0 < whole < 60:
            return f"{whole}s"
        minutes = round(whole / 60)
    else:
        minutes = round(total / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


# ---------------------------------------------------------------------- clocks
class Clock(Protocol):
    """What everything that needs the time is given."""

    def now(self) -> datetime: ...

    def __call__(self) -> datetime: ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    __call__ = now

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that stands still until a test moves it (in-process tests)."""

    def __init__(self, start: datetime | None = None):
        self._now = as_utc(start) if start is not None else datetime.now(UTC)

    def now(self) -> datetime:
        return self._now

    __call__ = now

    def advance(self, seconds: float | timedelta) -> datetime:
        step = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
        self._now += step
        return self._now

    def set(self, when: datetime) -> None:
        self._now = as_utc(when)


def parse_offset(text: str, written: datetime) -> timedelta:
    """The offset a clock file's text means; `written` is the file's mtime. ValueError names
    what is wrong."""
    text = text.strip()
    if not text:
        return timedelta(0)
    try:
        return timedelta(seconds=float(text))
    except ValueError:
        pass
    except OverflowError:
        raise ValueError(f"offset out of range: {text[:40]!r}") from None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"neither seconds nor an ISO time: {text[:40]!r}") from None
    return as_utc(when) - written


def read_offset(path: Path | str) -> timedelta:
    """The offset a clock file holds now (0 when it is missing). ValueError when it is bad."""
    path = Path(path)
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return timedelta(0)
    return parse_offset(text, datetime.fromtimestamp(st.st_mtime_ns / 1e9, UTC))


def write_offset(path: Path | str, offset: float | timedelta) -> None:
    """Replace a clock file with `offset` seconds, atomically (a reader never sees half)."""
    path = Path(path)
    seconds = offset.total_seconds() if isinstance(offset, timedelta) else float(offset)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(f"{seconds!r}\n", encoding="utf-8")
    os.replace(tmp, path)


class FileClock:
    """The wall clock plus the offset in `path` (tests only; see module docstring)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._key: tuple[int, int, int] | None = None
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset()

    __call__ = now

    def offset(self) -> timedelta:
        """The file's offset, re-read when the file changed; a bad file keeps the last good one."""
        try:
            st = os.stat(self.path)
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            key = (0, 0, 0)
        if key == self._key:
            return self._offset
        with self._lock:
            if key != self._key:
                try:
                    self._offset = read_offset(self.path)
                except (OSError, ValueError) as exc:
                    log.warning("clock file %s: %s; the clock keeps offset %ss", self.path, exc,
                                self._offset.total_seconds())
                self._key = key
        return self._offset

    def __repr__(self) -> str:
        return f"FileClock({str(self.path)!r})"


def build_clock(cfg) -> SystemClock | FileClock:
    """The process's one clock: the wall clock, or the test clock `[debug] clock_file` names.
    A clock file that exists but cannot be read is refused at start, naming the key."""
    path = getattr(getattr(cfg, "debug", None), "clock_file", "")
    if not path:
        return SystemClock()
    try:
        offset = read_offset(path)
    except (OSError, ValueError) as exc:
        where = cfg.sources[-1] if getattr(cfg, "sources", ()) else "config"
        raise ConfigError(f"{where}: debug.clock_file: {path}: {getattr(exc, 'strerror', None) or exc}") from None
    log.warning("TEST CLOCK in use: wall clock + the offset in %s (now %ss) - never in production", path,
                offset.total_seconds())
    return FileClock(path)


to_utc = as_utc                      # the name the store and the write path use
