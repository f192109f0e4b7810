"""`helpdesk ingest` and `quarantine release`: files and stdin through the spool.

Messages are made durable in the spool in batches (one file-system sync per batch), then
processed by this process's worker before the command returns, a batch per transaction
(group commit). In a big import, helper processes parse the next batch while this one is
stored (daemon.intake.parallel). Exit 0 only when every
message is stored (or quarantined: kept with a reason); 75 when the spool could not take
them or the database stayed unavailable, so an MTA piping to us retries (the retry is
recognised as a duplicate). A progress line is drawn on a terminal.

An archive import (`--no-mail`, from files) dates each message by the mail's own time
(daemon.pipeline.archive_date: its Date, checked against its Received chain; the import
time when both are absurd): the envelope's `received_at` carries it, with source
"archive", so the store can date the ticket and its SLA clocks by it and fire no
escalation for the past. `quarantine release` of a message quarantined during such an
import stores it the same way (`is_archived`): by its own date, with no mail planned.
"""
from __future__ import annotations

import logging
import sys
import time
from datetime import datetime, timezone

from daemon.errors import SpoolError
from daemon.intake.files import iter_messages
from daemon.intake.parallel import ParseAhead
from daemon.handoff import envelope_sender
from daemon.model import Envelope
from daemon.pipeline.archive_date import archive_date_of_raw

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


def _drain(app, bases: set[str], progress: Progress, patience: float = 5.0, parsed=None) -> set[str]:
    """Process our own entries; return the bases still not done after `patience` seconds
    of trying (database down), waiting also for entries another process claimed."""
    deadline = time.monotonic() + patience
    while bases:
        outcomes = app.worker.run_batch(bases, limit=BATCH, parsed=parsed)
        for outcome in outcomes:
            if outcome.kind != "retry":
                bases.discard(outcome.base)
                progress.done += 1
                key = outcome.result.outcome if outcome.result else outcome.kind
                progress.counts[key] = progress.counts.get(key, 0) + 1
        progress.update()
        if any(o.kind != "retry" for o in outcomes):
            continue
        left = bases & app.spool.pending_bases()
        progress.done += len(bases) - len(left)
        bases.intersection_update(left)
        if not bases or time.monotonic() > deadline:
            break
        time.sleep(min(0.2, app.worker.next_retry_in() or 0.2))
    return bases


def envelope_for(raw: bytes, origin: str, imported_at: datetime, archive: bool, mail_from: str | None = None,
                 rcpts: tuple[str, ...] = ()) -> Envelope:
    """The envelope of a message read from a file or stdin; an archived one is dated by
    its own time (source "archive")."""
    if origin.startswith("stdin"):
        return Envelope(mail_from, rcpts, "stdin", origin, imported_at.isoformat())
    if not archive:
        return Envelope(mail_from, rcpts, "ingest", origin, imported_at.isoformat())
    when = archive_date_of_raw(raw, imported_at).when.astimezone(timezone.utc)
    return Envelope(mail_from, rcpts, "archive", origin, when.isoformat())


def ingest(app, paths: list[str], *, progress: bool = False, helpers: ParseAhead | None = None,
           archive: bool = False, sender: str | None = None, recipients: "list[str] | tuple[str, ...]" = ()) -> int:
    """Spool and process every message in `paths` (stdin when empty). With `helpers`, each
    batch is parsed by them while the batch before it is stored; with `archive`, messages
    from files are dated by their own time (see the module docstring). `sender`/`recipients`:
    the envelope an MTA gave (`--sender`, `--recipient`)."""
    app.worker.reap_behind = True          # spool unlinks overlap the storing (settled before we return)
    try:
        return _ingest(app, paths, progress, helpers, archive, sender, recipients)
    finally:
        app.worker.reap_behind = False
        app.spool.settle()


def _ingest(app, paths, progress, helpers, archive, sender, recipients) -> int:
    mail_from, rcpts = envelope_sender(sender), tuple(r.strip().strip("<>") for r in recipients)
    bar = Progress(progress)
    left: set[str] = set()
    batch: list[tuple[bytes, Envelope]] = []
    waiting: list[tuple[list[str], list]] = []     # spooled batches: bases, parse-ahead jobs

    def work(bases: list[str], jobs: list) -> None:
        parsed = helpers.gather(bases, jobs) if jobs and helpers else None
        left.update(_drain(app, set(bases), bar, patience=0.0, parsed=parsed))

    def flush() -> None:
        if not batch:
            return
        bases = app.spool.put_many(batch)
        jobs = helpers.submit([(raw, env.mail_from) for raw, env in batch]) if helpers else []
        batch.clear()
        waiting.append((bases, jobs))
        if len(waiting) > 1 or helpers is None:     # one batch parses ahead while the one before is stored
            work(*waiting.pop(0))

    try:
        for incoming in iter_messages(paths):
            envelope = envelope_for(incoming.raw, incoming.origin, app.clock(), archive, mail_from, rcpts)
            batch.append((incoming.raw, envelope))
            bar.read += 1
            if len(batch) >= BATCH:
                flush()
        flush()
        while waiting:
            work(*waiting.pop(0))
    except SpoolError as exc:
        bar.finish()
        sys.stderr.write(f"helpdesk: temporary failure: {exc}\n")
        return EX_TEMPFAIL
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


def is_archived(row) -> bool:
    """Whether a quarantine row holds a message of an archive import (`ingest --no-mail`):
    it is released as that import would have stored it, so the app to release it with
    plans no mail (`build_app(outbound=False)`), and its envelope keeps the mail's date."""
    return (row.envelope or {}).get("source") == "archive"


def release(app, row, raw: bytes) -> int:
    """Run a quarantined message (`row`, `raw`: store.quarantine_get) through the pipeline
    again, with the envelope it had (an archived one keeps its source and date)."""
    qid = row.id
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
    app.store.quarantine_mark_released(qid, app.clock())
    res = outcome.result
    where = f"ticket {res.ticket_id}" if res and res.ticket_id else "no ticket"
    print(f"released quarantine #{qid}: {res.outcome if res else outcome.kind}, {where}")
    return EX_OK
