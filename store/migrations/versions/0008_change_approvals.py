"""Change approval: changeapproval (one per change ticket) and approvalvote (one per approver and stage)

Revision ID: 0008_change_approvals
Revises: 0007_problems_csat
Create Date: 2026-12-02 16:32:57.134892
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_change_approvals"
down_revision = "0007_problems_csat"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('approvalvote',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('stage', sa.Integer(), nullable=False),
    sa.Column('approver', sa.String(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reminded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('evidence', sa.Text(), nullable=False),
    sa.Column('message_id', sa.String(), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('ticket_id', 'stage', 'approver', name='uq_approvalvote')
    )
    with op.batch_alter_table('approvalvote', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_approvalvote_ticket_id'), ['ticket_id'], unique=False)

    op.create_table('changeapproval',
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(), nullable=False),
    sa.Column('policy', sa.String(), nullable=False),
    sa.Column('plan', sa.Text(), nullable=False),
    sa.Column('stage', sa.Integer(), nullable=False),
    sa.Column('stage_started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('version', sa.String(), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
    sa.PrimaryKeyConstraint('ticket_id')
    )
    with op.batch_alter_table('changeapproval', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_changeapproval_state'), ['state'], unique=False)



def downgrade() -> None:
    raise NotImplementedError("helpdeskd migrations go forward only; restore the backup instead")
