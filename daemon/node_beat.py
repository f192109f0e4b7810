"""A node's heartbeat in the shared database, and what `helpdesk status` makes of every node's.

With several nodes on one PostgreSQL database (two `serve`, a `worker`...), each keeps its
own spool: mail a node accepted waits there until that node stores it. `Heart.beat` (serve:
from daemon.health every `[health] status_seconds`; worker: from daemon.observe) records the
node's name, kind, host, pid, spool depth and the time by the process's clock
(store.nodes). `nodes_view` turns every node's row into the status lines and the alerts: a
node with mail in its spool that has been silent longer than `[health] node_silent_seconds`.
"""
from __future__ import annotations

import logging
import os
from datetime import datetime
from typing import Callable

from sqlalchemy.exc import SQLAlchemyError

from daemon.clock import utcnow
from daemon.processes import host_name
from store.nodes import NodeSeen, beat

log = logging.getLogger(__name__)


def node_name(cfg) -> str:
    """`[health] node`, else `<host>:<state_dir>` (unique per spool)."""
    return cfg.health.node or f"{host_name()}:{cfg.state_dir}"


class Heart:
    """This process's row of `nodebeat`; a database outage costs a log line, never the process."""

    def __init__(self, engine, cfg, kind: str, clock: Callable[[], datetime] = utcnow):
        self.engine, self.kind, self.clock = engine, kind, clock
        self.node, self.started, self.pid, self.host = node_name(cfg), clock(), os.getpid(), host_name()
        self.failing = False

    def beat(self, spool_depth: int = 0) -> None:
        try:
            beat(self.engine, NodeSeen(self.node, self.kind, self.host, self.pid, self.started, self.clock(),
                                       int(spool_depth or 0)))
        except SQLAlchemyError as exc:
            if not self.failing:
                log.warning("node heartbeat not recorded (%s); retrying", exc.__class__.__name__)
            self.failing = True
            return
        self.failing = False


def nodes_view(nodes: list[NodeSeen], now: datetime, silent_seconds: float) -> tuple[list[dict], list[str]]:
    """(every node as JSON, the alerts): a node with mail in its spool silent too long."""
    out, alerts = [], []
    for n in nodes:
        silent = max(0.0, (now - n.last_seen).total_seconds())
        stuck = n.spool_depth > 0 and silent > silent_seconds
        out.append({"node": n.node, "kind": n.kind, "host": n.host, "pid": n.pid, "spool_depth": n.spool_depth,
                    "started_at": n.started_at.isoformat(), "last_seen": n.last_seen.isoformat(),
                    "silent_seconds": round(silent, 1), "alert": stuck})
        if stuck:
            alerts.append(f"node {n.node} ({n.kind}, pid {n.pid} on {n.host}) has {n.spool_depth} message(s) in its "
                          f"spool and was last seen {silent:.0f}s ago (limit {silent_seconds:.0f}s, [health] "
                          f"node_silent_seconds): that mail waits until the node runs again")
    return out, alerts
