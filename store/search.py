"""Full-text search over tickets: the subject and text of every stored message.

SQLite: an FTS5 table `message_fts` (rowid = the message's id). PostgreSQL: a table
`message_search` with a stored `tsvector` column and a GIN index ('simple' configuration:
no stemming, so German, French and English mail all match word for word). A message is
indexed by `index_message` in the transaction that stores it (store.saving.save_message,
store.tickets.record), so the index never lags the messages. `create_index` is the DDL (run by migration 0003_message_search),
idempotent (IF NOT EXISTS), called from store.db.create_schema; a database made before it
existed is filled from the stored messages once (`backfill`).

`search` takes the user's words, never their syntax: each word becomes a quoted term, all
must match; tickets come newest first (by their newest matching message), each once, with a snippet of its newest match.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from daemon.clock import aware

_WORD = re.compile(r"\w+", re.UNICODE)
SQLITE_DDL = ("CREATE VIRTUAL TABLE IF NOT EXISTS message_fts USING fts5(subject, body, ticket_id UNINDEXED, "
              "at UNINDEXED, tokenize = 'unicode61 remove_diacritics 2')",)
PG_DDL = ("CREATE TABLE IF NOT EXISTS message_search (message_pk INTEGER PRIMARY KEY, ticket_id INTEGER NOT NULL, "
          "at TIMESTAMP NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL, doc tsvector GENERATED ALWAYS AS "
          "(setweight(to_tsvector('simple', subject), 'A') || to_tsvector('simple', body)) STORED)",
          "CREATE INDEX IF NOT EXISTS ix_message_search_doc ON message_search USING GIN (doc)",
          "CREATE INDEX IF NOT EXISTS ix_message_search_at ON message_search (at)")
MAX_BODY = 200_000                          # characters of one message indexed


@dataclass(frozen=True)
class Hit:
    """A ticket that matched: its newest matching message's time and a snippet."""

    ticket_id: int
    subject: str
    status: str
    at: datetime
    snippet: str


def _pg(bind) -> bool:
    return bind.dialect.name == "postgresql"


TABLES = ("message_fts", "message_search")   # outside the ORM metadata (and their FTS5 shadow tables)


def is_search_table(name: str) -> bool:
    """Whether a table is the full-text index's (Alembic's model comparison skips them)."""
    return name.startswith(TABLES)


def create_index(c: Connection) -> None:
    """Create the search table (and on PostgreSQL its indexes) if missing, and fill it
    from the messages already stored: migration 0003_message_search runs it."""
    pg = _pg(c)
    if pg:                                       # two processes starting at once: one creates and fills
        c.exec_driver_sql("SELECT pg_advisory_xact_lock(4711)")
    existed = _exists(c, pg)
    for ddl in PG_DDL if pg else SQLITE_DDL:
        c.exec_driver_sql(ddl)
    if not existed:
        backfill(c)
        if pg:
            c.exec_driver_sql("ANALYZE message_search")           # word statistics: the planner picks GIN


def _exists(c: Connection, pg: bool) -> bool:
    q = ("SELECT 1 FROM information_schema.tables WHERE table_name = 'message_search'" if pg
         else "SELECT 1 FROM sqlite_master WHERE name = 'message_fts'")
    return c.exec_driver_sql(q).first() is not None


def backfill(c: Connection) -> None:
    """Index every stored message with a ticket (a database older than the index)."""
    table = "message_search (message_pk, ticket_id, at, subject, body)" if _pg(c) else \
        "message_fts (rowid, ticket_id, at, subject, body)"
    c.exec_driver_sql(f"INSERT INTO {table} SELECT id, ticket_id, received_at, coalesce(subject, ''), "
                      f"substr(coalesce(text, ''), 1, {MAX_BODY}) FROM message WHERE ticket_id IS NOT NULL")


INDEX_PG = text("INSERT INTO message_search (message_pk, ticket_id, at, subject, body) "
                "VALUES (:pk, :tid, :at, :subject, :body) ON CONFLICT (message_pk) DO NOTHING")
INDEX_SQLITE = text("INSERT INTO message_fts (rowid, ticket_id, at, subject, body) "
                    "VALUES (:pk, :tid, :at, :subject, :body)")


def index_message(c: Connection, message_pk: int, ticket_id: int | None, at: datetime, subject: str,
                  body: str, later=None) -> None:
    """Index one message in the caller's open transaction; with `later(statement, row)`
    the row is handed to it instead (store.writing runs them all in one executemany
    before the commit: nothing reads the index inside the transaction)."""
    if ticket_id is None:
        return
    values = {"pk": message_pk, "tid": ticket_id, "at": at, "subject": subject or "",
              "body": (body or "")[:MAX_BODY]}
    stmt = INDEX_PG if _pg(c) else INDEX_SQLITE
    if later is not None:
        later(stmt, values)
    else:
        c.execute(stmt, values)


def terms(query: str) -> list[str]:
    """The words of a query (its punctuation and operators are not syntax)."""
    return _WORD.findall(query or "")[:20]


def search(engine: Engine, query: str, limit: int = 20) -> list[Hit]:
    """Tickets matching every word of `query`, newest match first (see module docstring)."""
    words = terms(query)
    if not words or limit <= 0:
        return []
    with engine.connect() as c:
        rows = _pg_rows(c, words, limit) if _pg(c) else _sqlite_rows(c, words, limit)
    hits: dict[int, Hit] = {}
    for tid, at, snippet, subject, status in rows:
        if tid not in hits:
            hits[tid] = Hit(tid, subject, status, aware(at) if isinstance(at, datetime) else _when(at),
                            " ".join((snippet or "").split()))
        if len(hits) >= limit:
            break
    return list(hits.values())


def _when(value) -> datetime:
    return aware(datetime.fromisoformat(str(value)))


def _sqlite_rows(c: Connection, words: list[str], limit: int):
    """FTS5 walks its index newest first (rowid = message id, which grows as messages are
    stored) and stops at the limit; the snippets are made for those rows only."""
    match = " ".join('"' + w.replace('"', '""') + '"' for w in words)
    return c.execute(text(
        "WITH f AS (SELECT rowid AS id, ticket_id, at FROM message_fts WHERE message_fts MATCH :q "
        "ORDER BY rowid DESC LIMIT :n) "
        "SELECT f.ticket_id, f.at, (SELECT snippet(message_fts, -1, '[', ']', '...', 12) FROM message_fts "
        "WHERE message_fts MATCH :q AND rowid = f.id), t.subject, t.status "
        "FROM f JOIN ticket t ON t.id = f.ticket_id ORDER BY f.id DESC"), {"q": match, "n": limit * 5}).all()


def _pg_rows(c: Connection, words: list[str], limit: int):
    query = " & ".join("'" + w.replace("'", "''") + "'" for w in words)
    return c.execute(text(
        "WITH m AS (SELECT ticket_id, at, subject, body, message_pk FROM message_search "
        "WHERE doc @@ to_tsquery('simple', :q) ORDER BY at DESC, message_pk DESC LIMIT :n) "
        "SELECT m.ticket_id, m.at, ts_headline('simple', m.subject || ' - ' || m.body, to_tsquery('simple', :q), "
        "'StartSel=[, StopSel=], MaxWords=14, MinWords=5, MaxFragments=1'), t.subject, t.status "
        "FROM m JOIN ticket t ON t.id = m.ticket_id ORDER BY m.at DESC, m.message_pk DESC"),
        {"q": query, "n": limit * 5}).all()
