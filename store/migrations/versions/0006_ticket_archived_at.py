"""ticket.archived_at: when an archive import (`helpdesk ingest --no-mail`) stored the ticket.

Revision ID: 0006_ticket_archived_at
Revises: 0005_agent_digest

An archived ticket is dated by its mail's own date (created_at), so its SLA clocks run
from then; archived_at keeps the import time, before which no escalation level fires
(daemon.pipeline.sla.clocks.plan_escalations). NULL for every ticket stored live, and
for all tickets of an older database.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_ticket_archived_at"
down_revision = "0005_agent_digest"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.add_column(sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    raise NotImplementedError("helpdeskd migrations go forward only; restore the backup instead")
