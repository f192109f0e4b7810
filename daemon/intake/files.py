"""File intake edge: messages from .eml files, mbox files, Maildir folders and stdin.

`iter_messages` yields raw messages one at a time with bounded memory (an mbox is read
line by line, never whole). The `ingest` command puts them through the same spool as SMTP.
An mbox is recognised by its first line (`From `), a Maildir by its cur/ and new/ folders;
any other directory is walked for files. mboxrd/mboxo quoting (`>From `) is undone.
"""
from __future__ import annotations

import io
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from daemon.errors import HelpdeskError

FROM_QUOTED = re.compile(rb"^>+From ")


@dataclass(frozen=True)
class Incoming:
    """One raw message and where it came from (for logs and the envelope)."""

    raw: bytes
    origin: str


def _is_mbox(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(5) == b"From "


def _split_mbox(fh: BinaryIO, origin: str) -> Iterator[Incoming]:
    lines: list[bytes] = []
    n = 0
    prev_blank = True
    for line in fh:
        if line.startswith(b"From ") and prev_blank:
            if lines:
                n += 1
                yield Incoming(_mbox_body(lines), f"{origin}#{n}")
            lines = []
            prev_blank = False
            continue
        prev_blank = line in (b"\n", b"\r\n")
        lines.append(FROM_QUOTED.sub(lambda mt: mt.group(0)[1:], line) if line.startswith(b">") else line)
    if lines:
        yield Incoming(_mbox_body(lines), f"{origin}#{n + 1}")


def _mbox_body(lines: list[bytes]) -> bytes:
    if lines and lines[-1] in (b"\n", b"\r\n"):
        lines = lines[:-1]               # the separator blank line belongs to the mbox
    return b"".join(lines)


def _maildir_files(path: Path) -> Iterator[Path]:
    for sub in ("cur", "new"):
        d = path / sub
        if d.is_dir():
            yield from sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith("."))


def _dir_files(path: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def iter_path(path: Path) -> Iterator[Incoming]:
    """Every message in one path (file, mbox, Maildir or directory)."""
    if not path.exists():
        raise HelpdeskError(f"{path}: no such file or directory")
    if path.is_dir():
        files = _maildir_files(path) if (path / "cur").is_dir() or (path / "new").is_dir() else _dir_files(path)
        for f in files:
            yield from iter_path(f)
        return
    try:
        if _is_mbox(path):
            with open(path, "rb") as fh:
                yield from _split_mbox(fh, str(path))
            return
        yield Incoming(path.read_bytes(), str(path))
    except PermissionError:
        raise HelpdeskError(f"{path}: permission denied") from None


def split_stdin(data: bytes) -> Iterator["Incoming"]:
    """What came on stdin: an mbox, one message with an MTA's From_ line, or one message."""
    if data.startswith(b"From "):
        yield from _split_mbox(io.BytesIO(data), "stdin")
    elif data:
        yield Incoming(data, "stdin")


def iter_messages(paths: list[str]) -> Iterator[Incoming]:
    """Messages from the given paths; no path or `-` means standard input (one message,
    or an mbox when it starts with `From `)."""
    if not paths:
        paths = ["-"]
    for p in paths:
        if p == "-":
            yield from split_stdin(sys.stdin.buffer.read())
        else:
            yield from iter_path(Path(p))
