"""The full-text index of messages (helpdesk search): SQLite FTS5, PostgreSQL tsvector + GIN.

Revision ID: 0003_message_search
Revises: 0002_schemainfo_v2

The index is raw DDL outside the ORM metadata (an FTS5 virtual table has no SQLModel
form); store/search.py holds it. Upgrading a database fills the index from the messages
already stored, so `helpdesk search` finds old mail too.
"""
from __future__ import annotations

from alembic import op

from store.search import create_index

revision = "0003_message_search"
down_revision = "0002_schemainfo_v2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_index(op.get_bind())


def downgrade() -> None:
    raise NotImplementedError("helpdeskd migrations go forward only; restore the backup instead")
