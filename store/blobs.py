"""Content-addressed files under `<state_dir>/attachments/`: name = sha256 of the bytes.

A mail's attachment filename never reaches the filesystem: the path is derived from the
hash only, and the resolved path is checked to stay inside the root. Writing is
tmp + fsync + rename, so a blob either exists whole or not at all; writing the same
bytes twice is a no-op. Any failure removes the partial `.tmp` file (one left behind can
fill the volume); running out of space or quota raises `StorageFull`, which the worker
treats like a database outage (kept in the spool, not counted against the message).
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
from pathlib import Path

from daemon.errors import StorageFull

HEX64 = re.compile(r"^[0-9a-f]{64}$")
FULL = {errno.ENOSPC, errno.EDQUOT}


def _write_all(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


class Blobs:
    """The attachment store (see module docstring)."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()

    def path_for(self, sha256: str) -> Path:
        if not HEX64.match(sha256):
            raise ValueError("not a sha256 hex digest")
        path = (self.root / sha256[:2] / sha256).resolve()
        if self.root not in path.parents:
            raise ValueError("blob path escapes the attachment root")
        return path

    def put(self, data: bytes, sha256: str | None = None) -> str:
        """Store `data` durably; return its sha256."""
        digest = sha256 or hashlib.sha256(data).hexdigest()
        path = self.path_for(digest)
        if path.exists():
            return digest
        tmp = path.with_name(f".{digest}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_all(tmp, data)
            os.rename(tmp, path)
            dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError) and exc.errno in FULL:
                raise StorageFull(f"attachment store {self.root} is full: {exc.strerror}") from exc
            raise
        return digest

    def get(self, sha256: str) -> bytes:
        return self.path_for(sha256).read_bytes()
