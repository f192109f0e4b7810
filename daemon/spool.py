"""The spool: where every intake edge makes a message durable before acknowledging it.

Layout under `<state_dir>/spool/`: `tmp/` (being written), `new/` (durable, waiting),
`cur/` (claimed by a worker), `bad/` (kept aside when even quarantine failed).
Write to tmp, fsync the file, rename into new/, fsync the directory = commit. A batch
(`put_many`, imports) writes all its files and makes them durable with one syncfs(2) of the
spool's file system - one journal commit instead of one fsync per file, measured 7x
cheaper per message - where the platform has it, else with an fsync per file. A worker
claims an entry by renaming it into cur/ with its host and pid, which also counts the
attempt in the name, so a message that crashes the process is recognised on restart.
`recover()` returns entries of dead owners to new/. Nothing here parses mail.
`open_entry` writes one entry as it arrives (SMTP DATA streams into it, so a session
holds a line, not the message, in memory) and commits it the same way.

An entry file is `HDSPOOL1 <n>\\n` + n bytes of JSON envelope + the raw message bytes.
"""
from __future__ import annotations

import ctypes
import json
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from daemon.errors import SpoolError
from daemon.envelope import Envelope

log = logging.getLogger(__name__)

MAGIC = b"HDSPOOL1 "
NAME_RE = re.compile(r"^(?P<base>\d+\.[0-9a-f]+)\.a(?P<attempt>\d+)(?:@(?P<host>[^,]+),(?P<pid>\d+))?$")


@dataclass(frozen=True)
class Claim:
    """An entry this process has claimed: its stable base id, attempt number and path."""

    base: str
    attempt: int
    path: Path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _load_syncfs():
    """libc's syncfs(2) (Linux), or None where there is none."""
    try:
        call = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    call.argtypes, call.restype = [ctypes.c_int], ctypes.c_int
    return call


_SYNCFS = _load_syncfs()


def _syncfs(path: Path) -> None:
    """Make everything written on `path`'s file system durable (one call for a batch)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _SYNCFS(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def entry_header(envelope: Envelope) -> bytes:
    meta = json.dumps(asdict(envelope), separators=(",", ":")).encode()
    return MAGIC + str(len(meta)).encode() + b"\n" + meta


def encode_entry(raw: bytes, envelope: Envelope) -> bytes:
    return entry_header(envelope) + raw


class SpoolWriter:
    """One entry written as it arrives: `write` chunks, then `commit` (fsync, rename into
    new/, fsync the directory) or `abort`. A write error is kept and raised by `commit`,
    so the caller can drain its input first and answer once."""

    FLUSH = 256 * 1024

    def __init__(self, spool: "Spool", envelope: Envelope):
        self.spool, self.base = spool, spool._new_base()
        self.path = spool.tmp / self.base
        self.fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.buf = bytearray(entry_header(envelope))
        self.error: OSError | None = None
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.error is None:
            self.buf += chunk
            if len(self.buf) >= self.FLUSH:
                self._flush()

    def _flush(self) -> None:
        try:
            view = memoryview(self.buf)
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as exc:
            self.error = exc
        finally:
            self.buf = bytearray()

    def commit(self) -> str:
        """Make the entry durable; returns its base id. Raises SpoolError (file removed)."""
        try:
            self._flush()
            if self.error is not None:
                raise self.error
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = None
            os.rename(self.path, self.spool.new / f"{self.base}.a0")
            _fsync_dir(self.spool.new)
        except OSError as exc:
            self.abort()
            raise SpoolError(f"cannot write spool {self.spool.root}: {exc.strerror or exc}") from exc
        return self.base

    def abort(self) -> None:
        """Forget the entry (nobody was told 250): close and remove the tmp file."""
        self.buf = bytearray()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.path.unlink(missing_ok=True)


def decode_entry(data: bytes) -> tuple[Envelope, bytes]:
    if not data.startswith(MAGIC):
        raise SpoolError("spool entry without header")
    nl = data.index(b"\n")
    n = int(data[len(MAGIC):nl])
    meta = json.loads(data[nl + 1:nl + 1 + n])
    meta["rcpt_to"] = tuple(meta.get("rcpt_to") or ())
    return Envelope(**meta), data[nl + 1 + n:]


class Spool:
    """A directory of durable messages waiting for the pipeline (see module docstring)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.tmp, self.new, self.cur, self.bad = (self.root / d for d in ("tmp", "new", "cur", "bad"))
        self.host = os.uname().nodename.replace(",", "_").replace("@", "_").replace("/", "_")
        self._queue: list[str] = []
        self._reaper: ThreadPoolExecutor | None = None
        self._reaped: list = []
        self.observer = None             # daemon.metrics.SpoolObserver: told of each read and done entry

    def ensure(self) -> "Spool":
        for d in (self.tmp, self.new, self.cur, self.bad):
            d.mkdir(parents=True, exist_ok=True)
        return self

    @staticmethod
    def _new_base() -> str:
        return f"{time.time_ns()}.{os.urandom(6).hex()}"

    def _write_tmp(self, data: bytes, sync: bool = True) -> tuple[str, Path]:
        base = self._new_base()
        path = self.tmp / base
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if sync:
                os.fsync(fd)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
        return base, path

    def open_entry(self, envelope: Envelope) -> SpoolWriter:
        """Start an entry to be written piecewise (see SpoolWriter); raises SpoolError."""
        try:
            return SpoolWriter(self, envelope)
        except OSError as exc:
            raise SpoolError(f"cannot write spool {self.root}: {exc.strerror or exc}") from exc

    def put(self, raw: bytes, envelope: Envelope) -> str:
        """Make one message durable; returns its base id. Raises SpoolError on failure."""
        return self.put_many([(raw, envelope)])[0]

    def put_many(self, items: Iterable[tuple[bytes, Envelope]]) -> list[str]:
        """Make several messages durable with one file-system sync (else an fsync each) and
        one directory sync; all or none committed."""
        items = list(items)
        group = len(items) > 1 and _SYNCFS is not None
        written: list[tuple[str, Path]] = []
        try:
            for raw, envelope in items:
                written.append(self._write_tmp(encode_entry(raw, envelope), sync=not group))
            if group:
                _syncfs(self.tmp)
            for base, path in written:
                os.rename(path, self.new / f"{base}.a0")
            _fsync_dir(self.new)
        except OSError as exc:
            for base, path in written:
                for p in (path, self.new / f"{base}.a0"):
                    try:
                        p.unlink()
                    except OSError:
                        pass
            raise SpoolError(f"cannot write spool {self.root}: {exc.strerror or exc}") from exc
        return [base for base, _ in written]

    def _refill(self) -> None:
        try:
            names = os.listdir(self.new)
        except FileNotFoundError:
            names = []
        self._queue = sorted((n for n in names if NAME_RE.match(n)), reverse=True)

    def claim(self, only: set[str] | None = None) -> Claim | None:
        """Claim the oldest waiting entry (or the oldest whose base is in `only`)."""
        for _ in range(2):
            if not self._queue:
                self._refill()
            while self._queue:
                name = self._queue.pop()
                m = NAME_RE.match(name)
                if only is not None and m["base"] not in only:
                    continue
                attempt = int(m["attempt"]) + 1
                dest = self.cur / f"{m['base']}.a{attempt}@{self.host},{os.getpid()}"
                try:
                    os.rename(self.new / name, dest)
                except FileNotFoundError:
                    continue            # another worker took it
                return Claim(m["base"], attempt, dest)
            if only is not None:
                self._queue = []
        return None

    def read(self, claim: Claim) -> tuple[Envelope, bytes]:
        """The entry's envelope and raw bytes (read once: no copy of a large message)."""
        with open(claim.path, "rb") as fh:
            head = fh.readline(64)
            if not head.startswith(MAGIC) or not head.endswith(b"\n"):
                raise SpoolError("spool entry without header")
            meta = fh.read(int(head[len(MAGIC):-1]))
            envelope, raw = decode_entry(head + meta)[0], fh.read()
        if self.observer is not None:
            self.observer.read(claim, envelope)
        return envelope, raw

    def done(self, claim: Claim) -> None:
        """The message is committed to the store: forget the spool copy."""
        _unlink(claim.path)
        if self.observer is not None:
            self.observer.done(claim)

    def done_behind(self, claim: Claim) -> None:
        """`done`, with the unlink left to a thread of the spool's own (on a busy disk an
        unlink costs milliseconds, per message): a big import goes on storing meanwhile.
        Nothing is lost if the process dies first: the entry is recovered at the next start
        and the store recognises it as a duplicate. `settle` waits for them."""
        if self._reaper is None:
            self._reaper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-reaper")
        self._reaped.append(self._reaper.submit(_unlink, claim.path))
        if self.observer is not None:
            self.observer.done(claim)

    def settle(self) -> None:
        """Wait until every `done_behind` unlink has run."""
        reaped, self._reaped = self._reaped, []
        for future in reaped:
            future.result()

    def release(self, claim: Claim, *, count_attempt: bool = True) -> None:
        """Give an entry back to new/ for a later retry (a temporary failure)."""
        attempt = claim.attempt if count_attempt else claim.attempt - 1
        os.rename(claim.path, self.new / f"{claim.base}.a{attempt}")

    def set_aside(self, claim: Claim, reason: str) -> Path:
        """Move an entry to bad/ with a reason file, when it cannot even be quarantined."""
        dest = self.bad / claim.base
        (self.bad / f"{claim.base}.reason").write_text(reason + "\n")
        os.rename(claim.path, dest)
        return dest

    def _owner_alive(self, host: str, pid: int) -> bool:
        if host != self.host:
            return True                  # another machine's claim: not ours to judge
        if pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def recover(self) -> int:
        """Return entries claimed by dead processes of this host to new/; count them."""
        moved = 0
        for name in os.listdir(self.cur):
            m = NAME_RE.match(name)
            if not m or not m["host"]:
                continue
            if self._owner_alive(m["host"], int(m["pid"])):
                continue
            try:
                os.rename(self.cur / name, self.new / f"{m['base']}.a{m['attempt']}")
                moved += 1
            except FileNotFoundError:
                pass
        stale = time.time() - 3600
        for entry in os.scandir(self.tmp):       # never committed, so nobody got a 250;
            if entry.stat().st_mtime < stale:    # young ones may be another writer's
                os.unlink(entry.path)
        if moved:
            log.warning("spool: recovered %d message(s) left in flight by a dead worker", moved)
        return moved

    def pending_bases(self) -> set[str]:
        """Base ids still waiting or in flight."""
        out = set()
        for d in (self.new, self.cur):
            for name in os.listdir(d):
                m = NAME_RE.match(name)
                if m:
                    out.add(m["base"])
        return out

    def depth(self) -> int:
        """Entries waiting in new/ (raises OSError, e.g. EMFILE: callers in loops catch it)."""
        return sum(1 for n in os.listdir(self.new) if NAME_RE.match(n))
