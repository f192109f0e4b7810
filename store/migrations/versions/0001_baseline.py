"""Baseline: the schema as it was before migrations (helpdeskd up to SCHEMA_VERSION 1).

Revision ID: 0001_baseline
Revises: (none)

Databases made before migrations existed got their tables from SQLModel.metadata.create_all
at every start, and history only ever added tables. So this revision creates each table
(and each index) only when the database lacks it: on an empty database it makes today's
schema; on one made by any earlier version it adds what that version did not have yet and
keeps every row. Written out by hand (not from the models), so later model changes never
change it.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def _table(name: str, *columns) -> None:
    if not sa.inspect(op.get_bind()).has_table(name):
        op.create_table(name, *columns)


def _index(table: str, name: str, columns: list[str]) -> None:
    have = {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes(table)}
    if name not in have:
        op.create_index(name, table, columns, unique=False)


def upgrade() -> None:
    _table('imapfolder',
        sa.Column('account', sa.String(), nullable=False),
        sa.Column('folder', sa.String(), nullable=False),
        sa.Column('uidvalidity', sa.BigInteger(), nullable=False),
        sa.Column('last_uid', sa.BigInteger(), nullable=False),
        sa.Column('resync_until', sa.BigInteger(), nullable=False),
        sa.Column('resync_since', sa.DateTime(timezone=True), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('account', 'folder')
    )
    _table('imaplease',
        sa.Column('account', sa.String(), nullable=False),
        sa.Column('folder', sa.String(), nullable=False),
        sa.Column('owner', sa.String(), nullable=False),
        sa.Column('expires_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('account', 'folder')
    )
    _table('imaptaken',
        sa.Column('account', sa.String(), nullable=False),
        sa.Column('folder', sa.String(), nullable=False),
        sa.Column('uidvalidity', sa.BigInteger(), nullable=False),
        sa.Column('uid', sa.BigInteger(), nullable=False),
        sa.Column('sha256', sa.String(), nullable=False),
        sa.Column('message_id', sa.String(), nullable=False),
        sa.Column('spool_base', sa.String(), nullable=False),
        sa.Column('taken_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('acked', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('account', 'folder', 'uidvalidity', 'uid')
    )
    _index('imaptaken', 'ix_imaptaken_acked', ['account', 'folder', 'uidvalidity', 'acked'])
    _index('imaptaken', 'ix_imaptaken_sha', ['account', 'folder', 'sha256'])
    _table('mailfuse',
        sa.Column('key', sa.String(), nullable=False),
        sa.Column('until', sa.DateTime(timezone=True), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('key')
    )
    _table('mailsuppression',
        sa.Column('email', sa.String(), nullable=False),
        sa.Column('until', sa.DateTime(timezone=True), nullable=False),
        sa.Column('since', sa.DateTime(timezone=True), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('email')
    )
    _table('quarantine',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('stage', sa.String(), nullable=False),
        sa.Column('reason', sa.String(), nullable=False),
        sa.Column('detail', sa.Text(), nullable=False),
        sa.Column('raw_sha256', sa.String(), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('envelope', sa.String(), nullable=False),
        sa.Column('header_from', sa.String(), nullable=False),
        sa.Column('header_subject', sa.String(), nullable=False),
        sa.Column('status', sa.String(), nullable=False),
        sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id')
    )
    _index('quarantine', 'ix_quarantine_raw_sha256', ['raw_sha256'])
    _index('quarantine', 'ix_quarantine_status', ['status'])
    _table('rawmessage',
        sa.Column('sha256', sa.String(), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint('sha256')
    )
    _table('schemainfo',
        sa.Column('key', sa.String(), nullable=False),
        sa.Column('value', sa.String(), nullable=False),
        sa.PrimaryKeyConstraint('key')
    )
    _table('slacursor',
        sa.Column('name', sa.String(), nullable=False),
        sa.Column('low', sa.Integer(), nullable=False),
        sa.Column('high', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('name')
    )
    _table('ticket',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('subject', sa.Text(), nullable=False),
        sa.Column('type', sa.String(), nullable=False),
        sa.Column('status', sa.String(), nullable=False),
        sa.Column('priority', sa.String(), nullable=False),
        sa.Column('queue', sa.String(), nullable=False),
        sa.Column('requester', sa.String(), nullable=False),
        sa.Column('assignee', sa.String(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('message_count', sa.Integer(), nullable=False),
        sa.Column('rules_version', sa.String(), nullable=False),
        sa.PrimaryKeyConstraint('id')
    )
    _index('ticket', 'ix_ticket_created_at', ['created_at'])
    _index('ticket', 'ix_ticket_queue', ['queue'])
    _index('ticket', 'ix_ticket_requester', ['requester'])
    _index('ticket', 'ix_ticket_status', ['status'])
    _table('event',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('ticket_id', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('kind', sa.String(), nullable=False),
        sa.Column('detail', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
        sa.PrimaryKeyConstraint('id')
    )
    _index('event', 'ix_event_ticket', ['ticket_id', 'id'])
    _table('message',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('ticket_id', sa.Integer(), nullable=True),
        sa.Column('message_id', sa.String(), nullable=False),
        sa.Column('message_id_synthetic', sa.Boolean(), nullable=False),
        sa.Column('message_id_reuse', sa.Boolean(), nullable=False),
        sa.Column('digest', sa.String(), nullable=False),
        sa.Column('raw_sha256', sa.String(), nullable=False),
        sa.Column('direction', sa.String(), nullable=False),
        sa.Column('visibility', sa.String(), nullable=False),
        sa.Column('from_addr', sa.String(), nullable=False),
        sa.Column('from_name', sa.String(), nullable=False),
        sa.Column('to_addrs', sa.String(), nullable=False),
        sa.Column('cc_addrs', sa.String(), nullable=False),
        sa.Column('subject', sa.Text(), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('in_reply_to', sa.String(), nullable=False),
        sa.Column('refs', sa.Text(), nullable=False),
        sa.Column('parent_message_id', sa.String(), nullable=True),
        sa.Column('machine_kind', sa.String(), nullable=False),
        sa.Column('machine_reasons', sa.String(), nullable=False),
        sa.Column('thread_evidence', sa.String(), nullable=False),
        sa.Column('routing', sa.String(), nullable=False),
        sa.Column('envelope', sa.String(), nullable=False),
        sa.Column('defects', sa.String(), nullable=False),
        sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('message_id', 'digest', name='uq_message_identity')
    )
    _index('message', 'ix_message_message_id', ['message_id'])
    _index('message', 'ix_message_ticket', ['ticket_id', 'id'])
    _table('outbox',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('ticket_id', sa.Integer(), nullable=True),
        sa.Column('kind', sa.String(), nullable=False),
        sa.Column('audience', sa.String(), nullable=False),
        sa.Column('template', sa.String(), nullable=False),
        sa.Column('auto', sa.String(), nullable=False),
        sa.Column('message_id', sa.Text(), nullable=False),
        sa.Column('nonce', sa.Text(), nullable=False),
        sa.Column('mail_from', sa.String(), nullable=False),
        sa.Column('raw', sa.LargeBinary(), nullable=False),
        sa.Column('status', sa.String(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('lease_token', sa.String(), nullable=False),
        sa.Column('enqueued_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('message_id'),
        sa.UniqueConstraint('nonce')
    )
    _index('outbox', 'ix_outbox_due', ['status', 'next_attempt_at'])
    _index('outbox', 'ix_outbox_ticket_id', ['ticket_id'])
    _table('participant',
        sa.Column('ticket_id', sa.Integer(), nullable=False),
        sa.Column('email', sa.String(), nullable=False),
        sa.Column('role', sa.String(), nullable=False),
        sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
        sa.PrimaryKeyConstraint('ticket_id', 'email')
    )
    _table('slafired',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('ticket_id', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(), nullable=False),
        sa.Column('target', sa.String(), nullable=False),
        sa.Column('level', sa.String(), nullable=False),
        sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('fired_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('detail', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('ticket_id', 'key', name='uq_slafired_ticket_key')
    )
    _table('threadkey',
        sa.Column('key', sa.String(), nullable=False),
        sa.Column('ticket_id', sa.Integer(), nullable=False),
        sa.Column('ghost', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
        sa.PrimaryKeyConstraint('key', 'ticket_id')
    )
    _table('ticketlink',
        sa.Column('ticket_id', sa.Integer(), nullable=False),
        sa.Column('other_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(), nullable=False),
        sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
        sa.PrimaryKeyConstraint('ticket_id', 'other_id', 'kind')
    )
    _table('ticketmail',
        sa.Column('ticket_id', sa.Integer(), nullable=False),
        sa.Column('language', sa.String(), nullable=True),
        sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
        sa.PrimaryKeyConstraint('ticket_id')
    )
    _table('ticketsla',
        sa.Column('ticket_id', sa.Integer(), nullable=False),
        sa.Column('policy', sa.String(), nullable=False),
        sa.Column('reason', sa.String(), nullable=False),
        sa.Column('service', sa.String(), nullable=True),
        sa.Column('requested', sa.String(), nullable=True),
        sa.Column('queue', sa.String(), nullable=False),
        sa.Column('version', sa.String(), nullable=False),
        sa.Column('next_due_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('planned_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('seen_event', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
        sa.PrimaryKeyConstraint('ticket_id')
    )
    _index('ticketsla', 'ix_ticketsla_next_due', ['next_due_at'])
    _table('tickettag',
        sa.Column('ticket_id', sa.Integer(), nullable=False),
        sa.Column('tag', sa.String(), nullable=False),
        sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
        sa.PrimaryKeyConstraint('ticket_id', 'tag')
    )
    _table('agentmessage',
        sa.Column('message_pk', sa.Integer(), nullable=False),
        sa.Column('ticket_id', sa.Integer(), nullable=False),
        sa.Column('verdict', sa.String(), nullable=False),
        sa.Column('agent', sa.String(), nullable=False),
        sa.Column('reason', sa.String(), nullable=False),
        sa.Column('evidence', sa.String(), nullable=False),
        sa.ForeignKeyConstraint(['message_pk'], ['message.id'], ),
        sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
        sa.PrimaryKeyConstraint('message_pk')
    )
    _index('agentmessage', 'ix_agentmessage_ticket_id', ['ticket_id'])
    _table('attachment',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('message_pk', sa.Integer(), nullable=False),
        sa.Column('filename', sa.String(), nullable=False),
        sa.Column('content_type', sa.String(), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('sha256', sa.String(), nullable=False),
        sa.Column('inline', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['message_pk'], ['message.id'], ),
        sa.PrimaryKeyConstraint('id')
    )
    _index('attachment', 'ix_attachment_message_pk', ['message_pk'])
    _table('outboxrecipient',
        sa.Column('outbox_id', sa.Integer(), nullable=False),
        sa.Column('email', sa.String(), nullable=False),
        sa.Column('status', sa.String(), nullable=False),
        sa.Column('code', sa.Integer(), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('planned_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['outbox_id'], ['outbox.id'], ),
        sa.PrimaryKeyConstraint('outbox_id', 'email')
    )
    _index('outboxrecipient', 'ix_outboxrcpt_email_time', ['email', 'planned_at'])


def downgrade() -> None:
    raise NotImplementedError("helpdeskd migrations go forward only; restore the backup instead")
