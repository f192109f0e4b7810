"""The light read path of `helpdesk tickets` and `helpdesk show` on SQLite (issue 16).

A read-only command should cost little more than starting Python; SQLAlchemy, sqlmodel and
Alembic alone cost ten times that. So when the database is an SQLite file already at the
newest schema revision, these reads use plain `sqlite3` and hand out the same read-side
values as store.repo (store.records.TicketRow). The newest revision is read from the
migration files' `revision = ...` / `down_revision = ...` lines, not from Alembic.

`open_current` returns None for anything else - PostgreSQL, a URL with options, a missing
file, a schema behind or ahead, an unreadable database - and the caller takes the full
path (store.db.create_schema), which creates, upgrades or refuses as it always did, with
its own messages. Nothing here writes. Edge module (store/).
"""
from __future__ import annotations

import re
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from store.ticket_row import TicketRow

VERSIONS = Path(__file__).resolve().parent / "migrations" / "versions"
_ASSIGN = re.compile(r'^(revision|down_revision)\s*(?::[^=]*)?=\s*(?:"([^"]*)"|\'([^\']*)\'|None)\s*$', re.M)
TICKET_COLUMNS = ("id, subject, type, status, priority, queue, requester, assignee, created_at, updated_at, "
                  "message_count, rules_version, archived_at")


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


def _aware(text: str | None) -> datetime | None:
    """A stored time as store.repo hands it out: SQLite keeps naive UTC text."""
    if text is None:
        return None
    dt = datetime.fromisoformat(text)
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt


def _ticket(row: tuple) -> TicketRow:
    (tid, subject, type_, status, priority, queue, requester, assignee, created, updated, count, version,
     archived) = row
    return TicketRow(tid, subject, type_, status, priority, queue, requester, assignee, _aware(created),
                     _aware(updated), count, version, _aware(archived))


def list_tickets(conn: sqlite3.Connection, *, status: str | None = None, queue: str | None = None,
                 type: str | None = None, limit: int | None = None) -> list[TicketRow]:
    """store.repo.Store.list_tickets: newest first, optionally filtered."""
    return list(iter_tickets(conn, status=status, queue=queue, type=type, limit=limit))


def iter_tickets(conn: sqlite3.Connection, *, status: str | None = None, queue: str | None = None,
                 type: str | None = None, limit: int | None = None) -> Iterator[TicketRow]:
    """list_tickets a row at a time, from the cursor (the statement runs before the first row)."""
    where, params = [], []
    for column, value in (("status", status), ("queue", queue), ("type", type)):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    sql = f"SELECT {TICKET_COLUMNS} FROM ticket" + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY id DESC" + (" LIMIT ?" if limit else "")
    cursor = conn.execute(sql, params + ([limit] if limit else []))
    return map(_ticket, cursor)


def ticket_exists(conn: sqlite3.Connection, ticket_id: int) -> bool:
    return conn.execute("SELECT 1 FROM ticket WHERE id = ?", (ticket_id,)).fetchone() is not None
