"""`helpdesk export --raw` and `helpdesk import FILE`: an export that is a backup.

`export --raw` writes the contract's export (one JSON array of `show --json` objects, one
object a line) and adds to each ticket: every message's raw bytes (`raw`, base64), each
attachment's `sha256`, and `backup`: the schema revision and every stored row of the ticket
(store/backup.py). `import` restores such a file into an empty database: the rows with their
ids, the raw mail, and the attachment files, taken again from the raw mail by the parse
stage and checked against their sha256. Tickets are restored 200 to a transaction. A backup
from before revision 0004 with a thread key on two tickets is restored with the key on one
and the tickets linked (store.backup.settle_split_keys).
"""
from __future__ import annotations

import base64
import hashlib
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from daemon import views
from daemon.app import open_store
from daemon.config import Config
from daemon.errors import HelpdeskError, ParseError
from daemon.pipeline.parse import parse
from daemon.sla.views import SlaReader
from store import backup as rows_of
from store.migrate import head_revision
from store.repo import Store

FORMAT = 1
BATCH = 200


class RestoreError(HelpdeskError):
    """Raised when `helpdesk import` gets a file that is not an `export --raw` backup, a
    database that is not empty, or rows this version cannot restore."""


def _with_backup(obj: dict, detail, rows: dict[str, list[dict]], raw: dict[str, bytes]) -> dict:
    sha_of = {r["id"]: r["raw_sha256"] for r in rows.get("message", [])}
    for out, msg in zip(obj["messages"], detail.messages):
        data = raw.get(sha_of.get(msg.pk, ""))
        out["raw"] = base64.b64encode(data).decode("ascii") if data is not None else None
        for att_out, att in zip(out["attachments"], msg.attachments):
            att_out["sha256"] = att.sha256
    obj["backup"] = {"format": FORMAT, "revision": head_revision(), "rows": rows}
    return obj


def export_backup(cfg: Config, store: Store, since: datetime | None, write: Callable[[str], Any]) -> int:
    """Stream every ticket (updated since `since`) with its raw mail and rows; exit code."""
    prefix, engine = cfg.helpdesk.ticket_prefix, store.engine
    reader, now = SlaReader(cfg, engine), datetime.now(timezone.utc)
    write("[")
    first, batch = True, []

    def flush() -> None:
        nonlocal first
        rows = rows_of.dump_rows(engine, [d.ticket.id for d in batch])
        shas = {r["raw_sha256"] for per in rows.values() for r in per.get("message", [])}
        raw = rows_of.raw_messages(engine, shas)
        for detail, sla in zip(batch, reader.export(batch, now)):
            obj = _with_backup(views.detail_json(detail, prefix, sla), detail, rows[detail.ticket.id], raw)
            write(("\n" if first else ",\n") + json.dumps(obj, ensure_ascii=False))
            first = False
        batch.clear()
    for detail in store.iter_details(since=since):
        batch.append(detail)
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    write("\n]\n")
    return 0


def _objects(path: str) -> Iterator[tuple[int, dict]]:
    """(line, ticket object) of an export: one object a line, else the whole file as JSON."""
    fh = sys.stdin if path == "-" else open(path, encoding="utf-8")
    try:
        lines = iter(fh)
        first = next(lines, "").strip()
        if first != "[":
            rest = first + "".join(lines)
            for obj in json.loads(rest) if rest.strip() else []:
                yield 0, obj
            return
        for no, line in enumerate(lines, 2):
            line = line.strip().rstrip(",")
            if line and line != "]":
                yield no, json.loads(line)
    except json.JSONDecodeError as exc:
        raise RestoreError(f"{path}: not an export: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RestoreError(f"{path}: cannot read: {exc}") from None
    finally:
        if fh is not sys.stdin:
            fh.close()


def _raw_of(obj: dict, where: str) -> dict[str, bytes]:
    raw = {}
    for m in obj.get("messages", []):
        if m.get("raw") is not None:
            data = base64.b64decode(m["raw"])
            raw[hashlib.sha256(data).hexdigest()] = data
    missing = {r["raw_sha256"] for r in obj["backup"]["rows"].get("message", [])} - set(raw)
    if missing:
        raise RestoreError(f"{where}: the raw mail of {len(missing)} message(s) is missing or damaged "
                           f"(sha256 {sorted(missing)[0][:12]}...)")
    return raw


def _attachment_files(store: Store, rows: dict[str, list[dict]], raw: dict[str, bytes], where: str) -> int:
    """Write the attachment files again from the raw mail; every sha256 must be found."""
    wanted: dict[int, set[str]] = {}
    for a in rows.get("attachment", []):
        wanted.setdefault(a["message_pk"], set()).add(a["sha256"])
    sha_of = {r["id"]: r["raw_sha256"] for r in rows.get("message", [])}
    for pk, shas in wanted.items():
        try:
            parts = parse(raw[sha_of[pk]]).attachments
        except (KeyError, ParseError) as exc:
            raise RestoreError(f"{where}: cannot take the attachments of message {pk} from its raw mail: {exc}") from None
        found = {hashlib.sha256(p.data).hexdigest(): p.data for p in parts}
        for sha in shas:
            if sha not in found:
                raise RestoreError(f"{where}: attachment {sha[:12]}... of message {pk} is not in its raw mail")
            store.blobs.put(found[sha], sha)
    return sum(len(s) for s in wanted.values())


def _restore(store: Store, batch: list[tuple[str, dict]], lost: list[dict]) -> tuple[int, int]:
    rows: dict[str, list[dict]] = {}
    raw: dict[str, bytes] = {}
    files = 0
    for where, obj in batch:
        ticket_raw = _raw_of(obj, where)
        files += _attachment_files(store, obj["backup"]["rows"], ticket_raw, where)
        raw.update(ticket_raw)
        for table, per in obj["backup"]["rows"].items():
            rows.setdefault(table, []).extend(per)
    try:
        lost += rows_of.restore_rows(store.engine, rows, raw)
    except KeyError as exc:
        raise RestoreError(f"{batch[0][0]}: column {exc} is unknown to this helpdeskd (export from a newer "
                           f"version?)") from None
    return len(rows.get("message", [])), files


def import_backup(cfg: Config, path: str) -> str:
    """Restore an `export --raw` file into the (empty) database; a one-line summary."""
    store = open_store(cfg)
    if not rows_of.is_empty(store.engine):
        raise RestoreError(f"{cfg.database_url if cfg.database.url else cfg.state_dir}: the database is not "
                           f"empty; import restores into an empty database only")
    tickets = messages = files = 0
    batch: list[tuple[str, dict]] = []
    lost: list[dict] = []                     # thread keys held twice (a backup from before 0004)
    for no, obj in _objects(path):
        where = f"{path}:{no}" if no else path
        if not isinstance(obj, dict) or not isinstance(obj.get("backup"), dict) or "rows" not in obj["backup"]:
            raise RestoreError(f"{where}: ticket {obj.get('ref') if isinstance(obj, dict) else '?'} has no "
                               f"backup rows: make the file with 'helpdesk export --raw'")
        batch.append((where, obj))
        if len(batch) >= BATCH:
            m, f = _restore(store, batch, lost)
            tickets, messages, files, batch = tickets + len(batch), messages + m, files + f, []
    if batch:
        m, f = _restore(store, batch, lost)
        tickets, messages, files = tickets + len(batch), messages + m, files + f
    rows_of.reset_sequences(store.engine)
    linked = rows_of.settle_split_keys(store.engine, lost, datetime.now(timezone.utc)) if lost else 0
    store.engine.dispose()
    split = f"; {linked} pair(s) of tickets shared thread keys (a split conversation): linked" if linked else ""
    return (f"imported {tickets} ticket(s), {messages} message(s), {files} attachment file(s) from "
            f"{Path(path).name}{split}")
