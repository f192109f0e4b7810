"""Rows of a ticket for a backup, and putting them back: the SQL of `export --raw` / `import`.

A ticket's rows are those of every table with a `ticket_id` column (messages, events,
participants, links, tags, thread keys, SLA state, outbox, agent verdicts...) and of the
tables that hang off those by foreign key (attachments, outbox recipients), found from the
metadata so a new table joins the backup without a change here. Values become JSON:
datetimes as ISO 8601, bytes as base64; `restore_rows` turns them back by column type. The
raw mail (`rawmessage`) travels with each message, not here.

A backup taken before revision 0004 may hold one thread key on two tickets (a conversation
split by a race); this schema has one owner per key. `restore_rows` inserts one row per key
and hands back the others; once every ticket is in, `settle_split_keys` gives each such key
to one ticket - the one that holds the message itself, else the older, as the upgrade to
0004 does - and links the tickets (related, both ways) with a `linked` event on each that
says why. No mail is dropped: messages are rows of their own, only the duplicate key goes.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import Table, func, inspect, insert, select, text, update
from sqlalchemy.engine import Engine

from store.migrate import metadata

SKIP = {"rawmessage"}                      # carried as each message's "raw"


@dataclass(frozen=True)
class Scope:
    """How a table belongs to a ticket: by `column` = ticket id, or through `parent`."""

    table: Table
    column: str
    parent: str = ""                       # a ticket-scoped table whose primary key `column` points to


def scopes() -> list[Scope]:
    """Every ticket-scoped table, parents before children (insert order)."""
    md = metadata()
    direct = {t.name for t in md.sorted_tables if "ticket_id" in t.c and t.name not in SKIP}
    out: list[Scope] = []
    for t in md.sorted_tables:
        if t.name == "ticket":
            out.append(Scope(t, "id"))
        elif t.name in direct:
            out.append(Scope(t, "ticket_id"))
        elif t.name not in SKIP:
            for fk in t.foreign_keys:
                if fk.column.table.name in direct:
                    out.append(Scope(t, fk.parent.name, fk.column.table.name))
                    break
    return out


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (bytes, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def _python_type(col) -> type | None:
    kind = getattr(col.type, "impl_instance", col.type)         # through sqlmodel's TypeDecorators
    try:
        return kind.python_type
    except NotImplementedError:
        return None


def _decode(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in row.items():
        kind = _python_type(table.c[name])  # KeyError: a column this version does not have
        if value is not None and kind is datetime:
            value = datetime.fromisoformat(value)
        elif value is not None and kind is bytes:
            value = base64.b64decode(value)
        out[name] = value
    return out


def dump_rows(engine: Engine, ticket_ids: list[int]) -> dict[int, dict[str, list[dict]]]:
    """ticket id -> table name -> its rows (JSON-ready dicts), for a batch of tickets."""
    out: dict[int, dict[str, list[dict]]] = {i: {} for i in ticket_ids}
    owner: dict[str, dict[Any, int]] = {}     # table -> primary key -> ticket id
    with engine.connect() as c:
        for sc in scopes():
            t = sc.table
            if sc.parent:
                parents = owner.get(sc.parent, {})
                rows = c.execute(select(t).where(t.c[sc.column].in_(list(parents)))).mappings() if parents else []
                pick = lambda r: parents[r[sc.column]]          # noqa: E731
            else:
                rows = c.execute(select(t).where(t.c[sc.column].in_(ticket_ids))).mappings()
                pick = lambda r: r[sc.column]                   # noqa: E731
            pk = [col.name for col in t.primary_key.columns]
            for r in rows:
                tid = pick(r)
                out[tid].setdefault(t.name, []).append({k: _encode(v) for k, v in r.items()})
                if len(pk) == 1:
                    owner.setdefault(t.name, {})[r[pk[0]]] = tid
    return out


def raw_messages(engine: Engine, shas: Iterable[str]) -> dict[str, bytes]:
    raw = metadata().tables["rawmessage"]
    with engine.connect() as c:
        return {r.sha256: bytes(r.data) for r in c.execute(select(raw).where(raw.c.sha256.in_(list(shas))))}


def is_empty(engine: Engine) -> bool:
    md = metadata()
    with engine.connect() as c:
        return all(c.execute(select(func.count()).select_from(md.tables[n])).scalar() == 0
                   for n in ("ticket", "message", "rawmessage"))


def restore_rows(engine: Engine, rows: dict[str, list[dict]], raw: dict[str, bytes]) -> list[dict]:
    """Insert one batch (table -> rows, sha256 -> raw mail) in one transaction; returns the
    thread-key rows left out because another ticket holds the key (module docstring)."""
    md = metadata()
    lost: list[dict] = []
    with engine.begin() as c:
        if raw:
            have = set(c.execute(select(md.tables["rawmessage"].c.sha256)
                                 .where(md.tables["rawmessage"].c.sha256.in_(list(raw)))).scalars())
            new = [{"sha256": s, "size": len(d), "data": d} for s, d in raw.items() if s not in have]
            if new:
                c.execute(md.tables["rawmessage"].insert(), new)
        for sc in scopes():
            batch = [_decode(sc.table, r) for r in rows.get(sc.table.name, [])]
            if sc.table.name == "threadkey":
                batch, lost = _one_owner(c, sc.table, batch)
            if batch:
                c.execute(sc.table.insert(), batch)
    return lost


def _rank(row) -> tuple[bool, int]:
    """Which ticket keeps a key held twice: the one with the message itself, else the older."""
    return bool(row["ghost"]), row["ticket_id"]


def _one_owner(c, table: Table, rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """One row per key among `rows` and the keys already restored; (kept, left out)."""
    held = set(c.execute(select(table.c.key).where(table.c.key.in_({r["key"] for r in rows}))).scalars()) \
        if rows else set()
    best: dict[str, dict] = {}
    lost: list[dict] = []
    for r in rows:
        other = best.get(r["key"])
        if r["key"] in held:
            lost.append(r)
        elif other is None:
            best[r["key"]] = r
        else:
            keep, drop = (r, other) if _rank(r) < _rank(other) else (other, r)
            best[r["key"]] = keep
            lost.append(drop)
    return list(best.values()), lost


def settle_split_keys(engine: Engine, lost: list[dict], now: datetime) -> int:
    """Give each key of `lost` to one ticket and link the tickets that shared it (module
    docstring); how many pairs of tickets were linked. Run after every ticket is restored."""
    md = metadata()
    tk, link, event = md.tables["threadkey"], md.tables["ticketlink"], md.tables["event"]
    pairs = 0
    with engine.begin() as c:
        for r in lost:
            holder = c.execute(select(tk.c.ticket_id, tk.c.ghost).where(tk.c.key == r["key"])).mappings().first()
            if holder is None or holder["ticket_id"] == r["ticket_id"]:
                continue
            if _rank(r) < _rank(holder):
                c.execute(update(tk).where(tk.c.key == r["key"]).values(ticket_id=r["ticket_id"], ghost=r["ghost"]))
            a, b = sorted((holder["ticket_id"], r["ticket_id"]))
            have = set(c.execute(select(link.c.ticket_id).where(
                link.c.kind == "related", ((link.c.ticket_id == a) & (link.c.other_id == b)) |
                ((link.c.ticket_id == b) & (link.c.other_id == a)))).scalars())
            if have >= {a, b}:
                continue
            pairs += 1
            why = (f"thread key <{r['key']}> was held by both tickets in the backup (split conversation, "
                   f"found on import)")
            for x, y in ((a, b), (b, a)):
                if x not in have:
                    c.execute(insert(link).values(ticket_id=x, other_id=y, kind="related"))
                c.execute(insert(event).values(ticket_id=x, at=now, kind="linked",
                                               detail=json.dumps({"ticket": y, "why": why}, ensure_ascii=False)))
    return pairs


def reset_sequences(engine: Engine) -> None:
    """PostgreSQL: move each serial id past the restored rows (SQLite does it by itself)."""
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as c:
        for t in metadata().sorted_tables:
            pk = list(t.primary_key.columns)
            if len(pk) == 1 and pk[0].autoincrement is not False and pk[0].type.python_type is int \
                    and inspect(c).has_table(t.name):
                c.execute(text(f"SELECT setval(pg_get_serial_sequence('{t.name}', '{pk[0].name}'), "
                               f"coalesce(max({pk[0].name}), 1), max({pk[0].name}) IS NOT NULL) FROM {t.name}"))
