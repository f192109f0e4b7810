"""The SLA timer queue's nudges: when this process schedules a huey wake-up.

The SLA table is the timer queue (store.sla_store's ticketsla.next_due_at, indexed); a
wake-up (daemon.escalation's `sla_wake` task) fires every ticket due then and asks for the
next one. `WakeUps.at(due)` schedules one unless a wake-up this process scheduled comes at
or before `due` and is still ahead (it will read the table after the caller's commit, so it
sees the new due time or chains to it). Inside `batch()` (around the after_commits of one
committed batch, or a wake-up's or a sweep's fires) only the earliest due time is kept,
and scheduled once at its end: a batch of new tickets costs at most one queue transaction.

Other processes' wake-ups are not known here: a duplicate fires nothing (the unique
slafired row). A schedule that fails is logged; the sweep catches up.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)
_NO_BATCH = object()                  # `batch` is not open in this thread


class WakeUps:
    """The wake-ups one process scheduled and still ahead, and the batch open per thread."""

    def __init__(self, schedule: Callable[[datetime], Any], clock: Callable[[], datetime]):
        self.schedule, self.clock = schedule, clock
        self._batch = threading.local()           # the earliest due time of the batch open in this thread
        self._ahead: list[datetime] = []
        self._lock = threading.Lock()

    def at(self, due: datetime) -> None:
        """A wake-up at `due` (at once when it has passed): now, or at the end of the batch
        open in this thread."""
        held = getattr(self._batch, "due", _NO_BATCH)
        if held is _NO_BATCH:
            self._schedule(due)
        elif held is None or due < held:
            self._batch.due = due

    @contextmanager
    def batch(self) -> Iterator[None]:
        """At most one wake-up for every `at` inside, at the earliest time; nested, the
        outermost schedules."""
        if getattr(self._batch, "due", _NO_BATCH) is not _NO_BATCH:
            yield
            return
        self._batch.due = None
        try:
            yield
        finally:
            due, self._batch.due = self._batch.due, _NO_BATCH
            if due is not None:
                self._schedule(due)

    def _schedule(self, due: datetime) -> None:
        with self._lock:
            now = self.clock()
            self._ahead = [w for w in self._ahead if w > now]      # run, or running: they read before us
            if any(w <= due for w in self._ahead):
                return
        try:
            self.schedule(due)
        except Exception as exc:                  # the sweep finds it when it is due
            log.warning("SLA wake-up at %s not scheduled (%s); the sweep will", due.isoformat(), exc)
            return
        with self._lock:
            self._ahead.append(due)
