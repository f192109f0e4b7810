"""`helpdesk agents`: every registered agent (rules/queues.yaml) with their queues, their
roles there and the open tickets assigned to them. `agent_rows` is pure (the rule set's
queues and the counts in); the command reads the rules and the store."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from sqlmodel import Session
from daemon.rules.loader import load_rules
from store.desk_reads import open_counts


@dataclass(frozen=True)
class AgentRow:
    """One agent: address, name, the queues they work with their role in each, and how
    many open tickets are assigned to them."""

    email: str
    name: str
    queues: tuple[str, ...]
    roles: tuple[str, ...]
    open_assigned: int


def agent_rows(queues, counts: dict[str, int]) -> list[AgentRow]:
    """Agents sorted by address; an assignee who is no longer registered is listed too
    (their tickets still need someone), with no queues."""
    seen: dict[str, dict] = {}
    for q in queues.values():
        for a in q.agents:
            row = seen.setdefault(a.email.lower(), {"name": a.name, "queues": [], "roles": []})
            row["name"] = row["name"] or a.name
            row["queues"].append(q.name)
            row["roles"].append(a.role)
    for email in counts:
        seen.setdefault(email, {"name": "", "queues": [], "roles": []})
    return [AgentRow(e, r["name"], tuple(r["queues"]), tuple(r["roles"]), counts.get(e, 0))
            for e, r in sorted(seen.items())]


def agents_text(rows: list[AgentRow]) -> str:
    if not rows:
        return "no agents (declare them in rules/queues.yaml)"
    lines = [f"{'AGENT':<30} {'NAME':<20} {'OPEN':>4}  QUEUES (ROLE)"]
    for r in rows:
        where = ", ".join(f"{q} ({role})" for q, role in zip(r.queues, r.roles)) or "(not registered)"
        lines.append(f"{r.email:<30} {r.name[:20]:<20} {r.open_assigned:>4}  {where}")
    return "\n".join(lines)


def agents_json(rows: list[AgentRow]) -> str:
    return json.dumps([dict(asdict(r), queues=list(r.queues), roles=list(r.roles)) for r in rows], indent=1,
                      ensure_ascii=False)


def cmd_agents(cfg, args, store, out) -> int:
    """`helpdesk agents [--json]`."""
    rules = load_rules(cfg.paths.rules)
    with Session(store.engine) as s:
        counts = open_counts(s)
    rows = agent_rows(rules.queues, counts)
    out(agents_json(rows) if args.json else agents_text(rows))
    return 0
