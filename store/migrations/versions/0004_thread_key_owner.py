"""A thread key belongs to one ticket (unique `threadkey.key`); `nodebeat`, every process's heartbeat.

Revision ID: 0004_thread_key_owner
Revises: 0003_message_search

Before this revision two tickets could hold the same key (a reply and its parent stored at
the same moment by two daemons: a split conversation). Upgrading keeps, for each key held
twice, the row of the ticket that really holds the message (ghost = false), else the oldest
ticket, links the tickets that shared it (`ticketlink` related, both ways, with a `linked`
event saying why), and drops the other rows; then the unique index is made. `nodebeat` is
new (store/nodes.py). Like the baseline, it makes only what the database lacks.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0004_thread_key_owner"
down_revision = "0003_message_search"
branch_labels = None
depends_on = None

TK = sa.table("threadkey", sa.column("key", sa.String), sa.column("ticket_id", sa.Integer),
              sa.column("ghost", sa.Boolean))
LINK = sa.table("ticketlink", sa.column("ticket_id", sa.Integer), sa.column("other_id", sa.Integer),
                sa.column("kind", sa.String))
EVENT = sa.table("event", sa.column("ticket_id", sa.Integer), sa.column("at", sa.DateTime(timezone=True)),
                 sa.column("kind", sa.String), sa.column("detail", sa.Text))


def _dedupe(bind) -> None:
    shared = sa.select(TK.c.key).group_by(TK.c.key).having(sa.func.count() > 1)
    rows = bind.execute(sa.select(TK.c.key, TK.c.ticket_id, TK.c.ghost).where(TK.c.key.in_(shared))).all()
    by_key: dict[str, list] = {}
    for key, tid, ghost in rows:
        by_key.setdefault(key, []).append((bool(ghost), tid))
    linked = {tuple(r) for r in bind.execute(sa.select(LINK.c.ticket_id, LINK.c.other_id)
                                             .where(LINK.c.kind == "related")).all()}
    now = datetime.now(timezone.utc)
    for key, holders in by_key.items():
        keep = min(holders)[1]                  # the real message's ticket, else the oldest
        for _, tid in holders:
            if tid == keep:
                continue
            bind.execute(sa.delete(TK).where(TK.c.key == key, TK.c.ticket_id == tid))
            for a, b in ((keep, tid), (tid, keep)):
                if (a, b) not in linked:
                    linked.add((a, b))
                    bind.execute(sa.insert(LINK).values(ticket_id=a, other_id=b, kind="related"))
                    bind.execute(sa.insert(EVENT).values(ticket_id=a, at=now, kind="linked", detail=json.dumps(
                        {"ticket": b, "why": f"thread key <{key}> was held by both tickets (split conversation, "
                                             f"found on upgrade)"})))


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    if "uq_threadkey_key" not in {ix["name"] for ix in inspector.get_indexes("threadkey")}:
        _dedupe(bind)
        op.create_index("uq_threadkey_key", "threadkey", ["key"], unique=True)
    if not inspector.has_table("nodebeat"):
        _nodebeat()


def _nodebeat() -> None:
    op.create_table(
        "nodebeat",
        sa.Column("node", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("host", sa.String(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("spool_depth", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("node", "kind"),
    )


def downgrade() -> None:
    raise NotImplementedError("helpdeskd migrations go forward only; restore the backup instead")
