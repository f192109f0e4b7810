"""Content-addressed files under `<state_dir>/attachments/`: name = sha256 of the bytes.

A mail's attachment filename never reaches the filesystem: the path is derived from the
hash only, and the resolved path is checked to stay inside the root. Writing is
tmp + fsync + rename, so a blob either exists whole or not at all; writing the same
bytes twice is a no-op.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

HEX64 = re.compile(r"^[0-9a-f]{64}$")


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
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{digest}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return digest

    def get(self, sha256: str) -> bytes:
        return self.path_for(sha256).read_bytes()
