"""`helpdesk ingest` and `quarantine release`: files and stdin through the spool.

Messages are made durable in the spool in batches (one directory sync per batch), then
processed by this process's worker before the command returns. Exit 0 only when every
message is stored (or quarantined: kept with a reason); 75 when the spool could not take
them or the database stayed unavailable, so an MTA piping to us retries (the retry is
recognised as a duplicate). A progress line is drawn on a terminal.
"""
from __future__ import annotations

import logging
import sys
import time
from datetime import datetime, timezone

from daemon.errors import SpoolError
from daemon.intake.files import iter_messages
from daemon.intake.parallel import Helpers, partition
from daemon.model import Envelope

log = logging.getLogger(__name__)

BATCH = 200
EX_OK, EX_ERROR, EX_TEMPFAIL = 0, 1, 75


class Progress:
    """A one-line progress display on stderr, redrawn at most 5 times a second."""

    def __init__(self, enabled: bool):
        self.enabled, self.start, self.last = enabled, time.monotonic(), 0.0
        self.read = self.done = 0
        self.counts: dict[str, int] = {}

    def update(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self.last < 0.2):
            return
        self.last = now
        rate = self.done / max(now - self.start, 1e-6)
        width = 30
        filled = int(width * self.done / self.read) if self.read else 0
        bar = "#" * filled + "-" * (width - filled)
        extra = " ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        sys.stderr.write(f"\ringest [{bar}] {self.done}/{self.read} {rate:6.0f} msg/s {extra}   ")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            self.update(force=True)
            sys.stderr.write("\n")


def _drain(app, bases: set[str], progress: Progress, patience: float = 5.0) -> set[str]:
    """Process our own entries; return the bases still not done after `patience` seconds
    of trying (database down), waiting also for entries another process claimed."""
    deadline = time.monotonic() + patience
    while bases:
        outcome = app.worker.run_once(bases)
        if outcome is not None:
            if outcome.kind != "retry":
                bases.discard(outcome.base)
                progress.done += 1
                key = outcome.result.outcome if outcome.result else outcome.kind
                progress.counts[key] = progress.counts.get(key, 0) + 1
                progress.update()
            continue
        left = bases & app.spool.pending_bases()
        progress.done += len(bases) - len(left)
        bases.intersection_update(left)
        if not bases or time.monotonic() > deadline:
            break
        time.sleep(min(0.2, app.worker.next_retry_in() or 0.2))
    return bases


def _drain_parallel(app, helpers: Helpers, entries: list[tuple[str, bytes]], bar: Progress) -> set[str]:
    """One batch over this process and the helpers, whole conversations per process."""
    groups = partition(entries, helpers.n + 1)
    futures = [(g, helpers.submit(g)) for g in groups[1:] if g]
    left = _drain(app, set(groups[0]), bar, patience=0.0)
    for group, future in futures:
        try:
            rest, counts = future.result()
        except Exception as exc:                  # a helper died: its entries stay in the spool
            log.error("ingest helper failed (%s); its %d message(s) stay in the spool", exc, len(group))
            rest, counts = group, {}
        left.update(rest)
        bar.done += len(group) - len(rest)
        for key, n in counts.items():
            bar.counts[key] = bar.counts.get(key, 0) + n
        bar.update()
    return left


def ingest(app, paths: list[str], *, progress: bool = False, processes: int = 1,
           config_path: str | None = None, outbound: bool = True) -> int:
    """Spool and process every message in `paths` (stdin when empty). With `processes` > 1
    a big import (from its first full batch on) is worked by that many processes."""
    bar = Progress(progress)
    left: set[str] = set()
    batch: list[tuple[bytes, Envelope]] = []
    now = lambda: datetime.now(timezone.utc).isoformat()  # noqa: E731
    helpers: Helpers | None = None

    def flush() -> None:
        nonlocal helpers
        if not batch:
            return
        bases = app.spool.put_many(batch)
        entries = [(b, raw) for b, (raw, _) in zip(bases, batch)]
        batch.clear()
        if helpers is None and processes > 1 and len(bases) >= BATCH:
            helpers = Helpers(config_path, outbound, processes - 1)
        if helpers is None:
            left.update(_drain(app, set(bases), bar, patience=0.0))
        else:
            left.update(_drain_parallel(app, helpers, entries, bar))

    try:
        for incoming in iter_messages(paths):
            source = "stdin" if incoming.origin.startswith("stdin") else "ingest"
            batch.append((incoming.raw, Envelope(None, (), source, incoming.origin, now())))
            bar.read += 1
            if len(batch) >= BATCH:
                flush()
        flush()
    except SpoolError as exc:
        bar.finish()
        sys.stderr.write(f"helpdesk: temporary failure: {exc}\n")
        return EX_TEMPFAIL
    finally:
        if helpers is not None:
            helpers.close()
    if left:
        left = _drain(app, left, bar, patience=10.0)
    bar.finish()
    if bar.read == 0 and (not paths or paths == ["-"]):
        sys.stderr.write("helpdesk: no message on standard input\n")
        return EX_ERROR
    if left:
        sys.stderr.write(f"helpdesk: temporary failure: {len(left)} message(s) not processed yet and kept "
                         f"in the spool (see the log above); the next run or the daemon retries them\n")
        return EX_TEMPFAIL
    summary = ", ".join(f"{v} {k}" for k, v in sorted(bar.counts.items())) or "nothing to do"
    log.info("ingest: %d message(s): %s", bar.read, summary)
    return EX_OK


def release(app, qid: int) -> int:
    """Run a quarantined message through the pipeline again."""
    row, raw = app.store.quarantine_get(qid)
    if row.status != "held":
        sys.stderr.write(f"helpdesk: quarantine entry {qid} was already released\n")
        return EX_ERROR
    env = row.envelope or {}
    envelope = Envelope(env.get("mail_from"), tuple(env.get("rcpt_to") or ()), env.get("source", "release"),
                        f"quarantine#{qid}", env.get("received_at", ""))
    base = app.spool.put(raw, envelope)
    outcome = None
    deadline = time.monotonic() + 10
    while outcome is None or outcome.kind == "retry":
        outcome = app.worker.run_once({base})
        if time.monotonic() > deadline:
            sys.stderr.write("helpdesk: temporary failure: database unavailable\n")
            return EX_TEMPFAIL
        if outcome is None or outcome.kind == "retry":
            time.sleep(0.2)
    if outcome.kind == "quarantined":
        sys.stderr.write(f"helpdesk: message still fails: {outcome.reason} (quarantine #{outcome.quarantine_id})\n")
        return EX_ERROR
    app.store.quarantine_mark_released(qid, datetime.now(timezone.utc))
    res = outcome.result
    where = f"ticket {res.ticket_id}" if res and res.ticket_id else "no ticket"
    print(f"released quarantine #{qid}: {res.outcome if res else outcome.kind}, {where}")
    return EX_OK
