"""The sender's journal: what the relay answered, durable before the outbox row is marked.

A sender sends a batch on one relay session and marks the rows in one database
transaction afterwards. Between the relay's 250 and that mark a crash (SIGKILL, power,
the database gone) would leave rows `sending`; their lease expires and the sweep sends
them again: the same Message-ID twice. So each answer is written to a journal file of the
batch before the next mail goes out - in the kernel then, it survives the process being
killed - and the file is fsync'd once at the end of the batch, before the mark (a power
loss inside a batch can still resend what that batch sent); when the mark commits, the
file is removed. A file left behind (its writer died, or the mark failed) is replayed into the
outbox before the next claim: the rows are marked from it (their lease token still
matches) and not sent again. A journal belongs to its writer while the writer holds its
flock; one that can be locked is an orphan (the kernel drops a dead process's locks).

Lines are JSON: one per attempt, as store.outbox_sender.Attempt holds it.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Iterator

from store.outbox_sender import Attempt, Claimed, RcptOutcome

log = logging.getLogger(__name__)


def to_line(a: Attempt) -> bytes:
    c = a.claim
    return json.dumps({"id": c.id, "token": c.lease_token, "attempts": c.attempts, "ticket_id": c.ticket_id,
                       "kind": c.kind, "message_id": c.message_id, "created_at": c.created_at.isoformat(),
                       "next": a.next_attempt.isoformat() if a.next_attempt else None, "error": a.error,
                       "outcomes": [[o.email, o.status, o.code, o.reason, o.bouncing] for o in a.outcomes]},
                      ensure_ascii=False).encode() + b"\n"


def from_line(line: bytes) -> Attempt:
    d = json.loads(line)
    claim = Claimed(d["id"], d["ticket_id"], d["kind"], d["message_id"], "", b"", (), d["attempts"],
                    datetime.fromisoformat(d["created_at"]), d["token"])
    return Attempt(claim, tuple(RcptOutcome(*o) for o in d["outcomes"]),
                   datetime.fromisoformat(d["next"]) if d["next"] else None, d["error"])


class Batch:
    """One batch's journal file, held (flock) until `done` or `close`."""

    def __init__(self, path: Path):
        self.path = path
        part = path.with_suffix(".part")          # locked before it gets the name replays look for
        self.fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        os.rename(part, path)

    def note(self, attempt: Attempt) -> None:
        """Keep one relay answer (it outlives this process from here on)."""
        line = to_line(attempt)
        while line:
            line = line[os.write(self.fd, line):]

    def sync(self) -> None:
        """Make the batch's answers durable on disk (once, before the mark)."""
        os.fdatasync(self.fd)

    def done(self) -> None:
        """The batch is marked in the outbox: forget it."""
        self.path.unlink(missing_ok=True)
        self.close()

    def close(self) -> None:
        """Leave the file for a replay (the mark did not commit)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Journal:
    """The journal directory of one state directory (see module docstring)."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.seq = 0

    def batch(self) -> Batch:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.seq += 1
        return Batch(self.dir / f"{os.getpid()}-{os.urandom(4).hex()}-{self.seq}.jsonl")

    def orphans(self) -> Iterator[tuple[Path, list[Attempt]]]:
        """Journal files nobody holds, with their attempts; each stays locked by us until
        the caller's next step (the loop moves on)."""
        if not self.dir.is_dir():
            return
        for path in sorted(self.dir.glob("*.jsonl")):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue                          # its writer is alive
                data = path.read_bytes()
                attempts = []
                for line in data.splitlines():
                    try:
                        attempts.append(from_line(line))
                    except (ValueError, KeyError, TypeError):   # a torn last line: that answer never became durable
                        log.warning("send journal %s: unreadable line skipped", path.name)
                yield path, attempts
            finally:
                os.close(fd)
