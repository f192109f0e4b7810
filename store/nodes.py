"""Every node's heartbeat, in the database all nodes share: for `helpdesk status` on any node.

Each `serve` and `worker` process upserts its row of `nodebeat` (node name, kind, host, pid,
start time, last seen, spool depth) every `[health] status_seconds`, with the process's
clock; `read_nodes` returns them all, oldest beat first. A node's row stays after it stops
or dies: mail its spool accepted waits there until it comes back, and the others must see
that (daemon.health alerts on it). Edge module: SQL only, no policy.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from daemon.clock import aware, to_utc
from store import tables as m
from store.saving import insert_ignore

NB = m.NodeBeat.__table__


@dataclass(frozen=True)
class NodeSeen:
    """One node's last heartbeat."""

    node: str
    kind: str
    host: str
    pid: int
    started_at: datetime
    last_seen: datetime
    spool_depth: int


def beat(engine: Engine, seen: NodeSeen) -> None:
    """Record this node's heartbeat (its own short transaction)."""
    values = {"host": seen.host, "pid": seen.pid, "started_at": to_utc(seen.started_at),
              "last_seen": to_utc(seen.last_seen), "spool_depth": int(seen.spool_depth)}
    with engine.begin() as c:
        done = c.execute(update(NB).where(NB.c.node == seen.node, NB.c.kind == seen.kind).values(**values)).rowcount
        if not done:
            c.execute(insert_ignore(c, NB), {"node": seen.node, "kind": seen.kind, **values})


def read_nodes(engine: Engine) -> list[NodeSeen]:
    """Every node that ever beat, oldest heartbeat first."""
    with engine.connect() as c:
        rows = c.execute(select(NB).order_by(NB.c.last_seen, NB.c.node, NB.c.kind)).all()
    return [NodeSeen(r.node, r.kind, r.host, r.pid, aware(r.started_at), aware(r.last_seen), r.spool_depth)
            for r in rows]
