"""Engine construction and schema creation for SQLite (embedded) and PostgreSQL.

SQLite runs in WAL mode with synchronous=FULL, a busy timeout and foreign keys on, so a
commit is durable before anything is acknowledged. The schema comes from the Alembic
migrations (store/migrate.py): `create_schema` makes an empty database, upgrades an SQLite
one that is behind (after a backup copy), and refuses a PostgreSQL one that is behind or
a database from a newer helpdeskd.
"""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import create_engine

from daemon.errors import StoreUnavailable
from store import imap_state, migrate  # noqa: F401  (imap_state: its tables, on the metadata)

SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=10000", "foreign_keys=ON")


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    for pragma in SQLITE_PRAGMAS:
        cur.execute(f"PRAGMA {pragma}")
    cur.close()


def _no_autobegin(dbapi_conn, _record) -> None:
    dbapi_conn.isolation_level = None


def _begin(conn) -> None:
    immediate = conn.get_execution_options().get("sqlite_immediate")
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for `url`; for SQLite the parent directory is created."""
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite defers BEGIN on its own; we emit it, so that a write transaction
        # (execution option sqlite_immediate) takes the write lock up front and two
        # writers never deadlock upgrading a read lock. Reads stay plain BEGIN (WAL).
        event.listen(engine, "connect", _no_autobegin)
        event.listen(engine, "begin", _begin)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True)


def create_schema(engine: Engine) -> None:
    """Bring the database to the newest schema at start, or refuse (see store/migrate.py).

    Raises migrate.SchemaError (exit 1) for a PostgreSQL database that is behind or any
    database newer than this helpdeskd; StoreUnavailable (exit 75) when it cannot be reached.
    """
    try:
        migrate.ensure_schema(engine)
    except migrate.SchemaError:
        engine.dispose()                      # the caller stops; leave no connection behind
        raise
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StoreUnavailable(f"cannot open database: {exc.__class__.__name__}: {exc.orig if hasattr(exc, 'orig') else exc}") from exc


def table_names(engine: Engine) -> list[str]:
    return inspect(engine).get_table_names()
