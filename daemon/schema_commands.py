"""`helpdesk db upgrade` and `helpdesk db current [--json]`: the schema migrations by hand.

`current` prints the database's revision and the newest one; exit 0 when up to date, 1
when behind (or newer than this helpdeskd). `upgrade` applies the pending migrations under
the schema lock (store/migrate.py), after a backup copy for SQLite. Neither runs the
automatic upgrade that other commands do at start.
"""
from __future__ import annotations

import json
import sys

from daemon.config import Config
from store import migrate
from store.db import make_engine

EX_OK, EX_ERROR = 0, 1


def _describe(state: migrate.SchemaState) -> str:
    if state.current is not None:
        return state.current + ("" if state.known else " (unknown to this helpdeskd: newer?)")
    return "none (empty database)" if state.empty else "none (made before migrations)"


def db_current(cfg: Config, as_json: bool) -> int:
    engine = make_engine(cfg.database_url, echo=cfg.database.echo)
    try:
        state = migrate.schema_state(engine)
    finally:
        engine.dispose()
    if as_json:
        sys.stdout.write(json.dumps(state.as_json()) + "\n")
    else:
        verdict = "up to date" if state.up_to_date else (
            "newer than this helpdeskd" if not state.known else "behind: run 'helpdesk db upgrade'")
        sys.stdout.write(f"current: {_describe(state)}\nhead:    {state.head}\n{verdict}\n")
    return EX_OK if state.up_to_date else EX_ERROR


def db_upgrade(cfg: Config) -> int:
    engine = make_engine(cfg.database_url, echo=cfg.database.echo)
    try:
        before, after, backup = migrate.upgrade(engine)
    finally:
        engine.dispose()
    if before.up_to_date:
        sys.stdout.write(f"already up to date: {after.head}\n")
    else:
        if backup is not None:
            sys.stdout.write(f"backup: {backup}\n")
        sys.stdout.write(f"upgraded: {_describe(before)} -> {after.current}\n")
    return EX_OK


def run_db_command(cfg: Config, args) -> int:
    if args.db_command == "current":
        return db_current(cfg, args.json)
    return db_upgrade(cfg)
