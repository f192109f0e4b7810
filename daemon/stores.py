"""The store of a Config: the one way a process opens its database (edge).

A command that only reads or writes tickets (`show`, `export`, `agents`, `search`, ...)
needs the store, not an App: opening it here costs the database layer only, not the
queue, the mail planner or their backends (daemon.app imports those; issue 16).
"""
from __future__ import annotations

from daemon.config import Config
from store.blobs import Blobs
from store.db import create_schema, make_engine
from store.repo import Store


def open_store(cfg: Config) -> Store:
    """The store at cfg's database URL, its schema brought to the newest (store.db.create_schema)."""
    engine = make_engine(cfg.database_url, echo=cfg.database.echo)
    create_schema(engine)
    return Store(engine, Blobs(cfg.state_dir / "attachments"))
