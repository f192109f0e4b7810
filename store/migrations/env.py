"""Alembic environment: runs the migrations on the connection store/migrate.py hands over.

There is no alembic.ini and no URL here: store/migrate.py opens the connection (with the
advisory lock held) and passes it as `config.attributes["connection"]`. All pending
revisions run in one transaction, so a failed upgrade leaves the database as it was
(PostgreSQL and SQLite both have transactional DDL). SQLite alters go through batch mode.
"""
from __future__ import annotations

from alembic import context

from store.migrate import metadata
from store.search import is_search_table

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata(),
                  render_as_batch=connection.dialect.name == "sqlite", compare_type=True,
                  transactional_ddl=True,
                  include_name=lambda name, kind, _parent: not (kind == "table" and is_search_table(name)))
with context.begin_transaction():
    context.run_migrations()
