"""`helpdesk tickets` on the light read path (store.quick_read's connection, issue 16): the
list as store.repo.Store.list_tickets gives it, as store.records.TicketRow values, read
with plain sqlite3 and streamed from the cursor. Nothing here writes. Edge module (store/).
"""
from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from typing import Iterator

from store.ticket_row import TicketRow

TICKET_COLUMNS = ("id, subject, type, status, priority, queue, requester, assignee, created_at, updated_at, "
                  "message_count, rules_version, archived_at")


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
