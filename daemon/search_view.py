"""`helpdesk search QUERY [--json] [--limit N]`: tickets whose subject or message text
matches every word (store.search: SQLite FTS5, PostgreSQL full-text), newest first, each
with the snippet of its newest matching message (matches in [brackets])."""
from __future__ import annotations

import json

from store.search import Hit, search


def hits_json(hits: list[Hit], prefix: str) -> str:
    return json.dumps([{"id": h.ticket_id, "ref": f"{prefix}-{h.ticket_id}", "subject": h.subject,
                        "status": h.status, "matched_at": h.at.isoformat(timespec="seconds"),
                        "snippet": h.snippet} for h in hits], ensure_ascii=False, indent=1)


def hits_text(hits: list[Hit], prefix: str) -> str:
    if not hits:
        return "no tickets match"
    lines = []
    for h in hits:
        lines.append(f"{prefix}-{h.ticket_id:<6} {h.status:<9} {h.at:%Y-%m-%d %H:%M}  {h.subject[:70]}")
        lines.append(f"    {h.snippet[:160]}")
    return "\n".join(lines)


def cmd_search(cfg, args, store, out, usage) -> int:
    if args.limit is not None and args.limit < 1:
        raise usage("--limit must be at least 1")
    hits = search(store.engine, args.query, args.limit or 20)
    prefix = cfg.helpdesk.ticket_prefix
    out(hits_json(hits, prefix) if args.json else hits_text(hits, prefix))
    return 0
