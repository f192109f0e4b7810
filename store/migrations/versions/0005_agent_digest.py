"""The daily agent digest's once-per-agent-per-day rows (`agentdigest`, daemon.digest).

Revision ID: 0005_agent_digest
Revises: 0004_thread_key_owner

A new table only; nothing existing changes.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_agent_digest"
down_revision = "0004_thread_key_owner"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agentdigest",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("agent", sa.String(), nullable=False),
        sa.Column("day", sa.String(), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"]),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    raise NotImplementedError("helpdeskd migrations go forward only; restore the backup instead")
