"""Record schema version 2 in `schemainfo`, so a helpdeskd from before migrations refuses it.

Revision ID: 0002_schemainfo_v2
Revises: 0001_baseline

helpdeskd before migrations ran `create_all` at start and refused a database whose
`schemainfo.version` was newer than its own (1). Raising it to 2 makes an old binary,
started by mistake on an upgraded database, stop with "upgrade helpdeskd" instead of
writing into a schema it does not know. Alembic's `alembic_version` is the revision from
now on; `schemainfo.version` only moves when old binaries must be kept out again.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_schemainfo_v2"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None

SCHEMAINFO = sa.table("schemainfo", sa.column("key", sa.String), sa.column("value", sa.String))


def upgrade() -> None:
    bind = op.get_bind()
    found = bind.execute(sa.select(SCHEMAINFO.c.value).where(SCHEMAINFO.c.key == "version")).first()
    if found is None:
        op.execute(SCHEMAINFO.insert().values(key="version", value="2"))
    else:
        op.execute(SCHEMAINFO.update().where(SCHEMAINFO.c.key == "version").values(value="2"))


def downgrade() -> None:
    raise NotImplementedError("helpdeskd migrations go forward only; restore the backup instead")
