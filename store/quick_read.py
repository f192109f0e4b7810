"""The light read path of `helpdesk tickets` and `helpdesk show` on SQLite (issue 16).

A read-only command should cost little more than starting Python; SQLAlchemy, sqlmodel and
Alembic alone cost ten times that. So when the database is an SQLite file already at the
newest schema revision, these reads use plain `sqlite3` and hand out the same read-side
values as store.repo (store.quick_tickets: the list as store.records.TicketRow; here the
connection and whether a ticket exists, which `show` of a missing ticket asks without
defining any dataclass). The newest revision is read from the
migration files' `revision = ...` / `down_revision = ...` lines, not from Alembic.

`open_current` returns None for anything else - PostgreSQL, a URL with options, a missing
file, a schema behind or ahead, an unreadable database - and the caller takes the full
path (store.db.create_schema), which creates, upgrades or refuses as it always did, with
its own messages. Nothing here writes. Edge module (store/).
"""
from __future__ import annotations

import re
import sqlite3
from pathlib import Path

VERSIONS = Path(__file__).resolve().parent / "migrations" / "versions"
_ASSIGN = re.compile(r'^(revision|down_revision)\s*(?::[^=]*)?=\s*(?:"([^"]*)"|\'([^\']*)\'|None)\s*$', re.M)


def head_revision(versions: Path = VERSIONS) -> str | None:
    """The one revision no other revision names as its down_revision; None when the files
    do not say it plainly (several heads, a tuple down_revision): then ask Alembic."""
    revisions: set[str] = set()
    downs: set[str] = set()
    for path in versions.glob("*.py"):
        found = {m.group(1): m.group(2) or m.group(3) for m in _ASSIGN.finditer(path.read_text(encoding="utf-8"))}
        if "revision" not in found:
            continue
        if not found["revision"] or "down_revision" not in found:
            return None
        revisions.add(found["revision"])
        if found["down_revision"]:
            downs.add(found["down_revision"])
    heads = revisions - downs
    return heads.pop() if len(heads) == 1 else None


def sqlite_file(url: str) -> Path | None:
    """The file of a plain `sqlite:///PATH` URL (as store.db.make_engine reads it), else None."""
    if not url.startswith("sqlite:///") or "?" in url or len(url) == len("sqlite:///"):
        return None
    return Path(url[len("sqlite:///"):])


def open_current(url: str) -> sqlite3.Connection | None:
    """A read-only connection to the SQLite database `url` when it exists and is at the
    newest revision; None otherwise (the caller takes the full path)."""
    path, head = sqlite_file(url), head_revision()
    if path is None or head is None or not path.is_file():
        return None
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=10)
    except sqlite3.Error:
        return None
    try:
        rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.Error:
        rows = []
    if rows != [(head,)]:
        conn.close()
        return None
    return conn


def ticket_exists(conn: sqlite3.Connection, ticket_id: int) -> bool:
    return conn.execute("SELECT 1 FROM ticket WHERE id = ?", (ticket_id,)).fetchone() is not None
