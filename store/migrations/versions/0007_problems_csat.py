"""Problem management and customer satisfaction: known errors, problem notices, surveys.

Revision ID: 0007_problems_csat
Revises: 0006_ticket_archived_at

Incidents are linked to their problem in the existing `ticketlink` table (kinds `problem`
and `incident`), so no column changes; three new tables (store/tables.py): `knownerror`
(a problem's workaround), `problemnotice` (requesters told a problem was resolved, once
each) and `csatsurvey` (surveys sent and their scores, which reports read).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_problems_csat"
down_revision = "0006_ticket_archived_at"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('csatsurvey',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('requester', sa.String(), nullable=False),
    sa.Column('queue', sa.String(), nullable=False),
    sa.Column('message_id', sa.Text(), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('score', sa.Integer(), nullable=True),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('answer_message_id', sa.String(), nullable=True),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('message_id')
    )
    with op.batch_alter_table('csatsurvey', schema=None) as batch_op:
        batch_op.create_index('ix_csatsurvey_requester_sent', ['requester', 'sent_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_csatsurvey_ticket_id'), ['ticket_id'], unique=False)

    op.create_table('knownerror',
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('workaround', sa.Text(), nullable=False),
    sa.Column('set_by', sa.String(), nullable=False),
    sa.Column('set_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
    sa.PrimaryKeyConstraint('ticket_id')
    )
    op.create_table('problemnotice',
    sa.Column('problem_id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
    sa.PrimaryKeyConstraint('problem_id', 'email')
    )


def downgrade() -> None:
    raise NotImplementedError("helpdeskd migrations go forward only; restore the backup instead")
