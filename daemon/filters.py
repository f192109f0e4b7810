"""Filters given on the command line (`tickets --status/--queue/--type`) checked against the
names that exist: the ticket statuses and the live rule set's queues and types. An unknown
value is a usage error naming the valid ones (and the nearest, when one is close), never
an empty list that looks like "no such tickets".

The rule set is the caller's (`rules`, called only when a queue or type is given), so that
`tickets --status open` loads no rules and imports no YAML parser (issue 16)."""
from __future__ import annotations

import difflib
from typing import Any, Callable, Iterable

TICKET_STATUSES = ("new", "open", "pending", "resolved", "closed")


def unknown(option: str, value: str, valid: Iterable[str]) -> str | None:
    """The message for a value not in `valid` (case-insensitive), or None when it is one."""
    names = sorted(set(valid))
    if value.lower() in {n.lower() for n in names}:
        return None
    near = difflib.get_close_matches(value.lower(), [n.lower() for n in names], n=1, cutoff=0.6)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return f"{option} {value!r}: unknown{hint}; valid: {', '.join(names) or 'none'}"


def check_filters(rules: Callable[[], Any], *, status: str | None = None, queue: str | None = None,
                  type: str | None = None) -> list[str]:
    """Every problem with the filters given; `rules()` (the live rule set: its queues and
    types) is called only when a queue or type is."""
    problems = [p for p in [unknown("--status", status, TICKET_STATUSES) if status else None] if p]
    if queue or type:
        rules = rules()
        problems += [p for p in (unknown("--queue", queue, rules.queues) if queue else None,
                                 unknown("--type", type, rules.types) if type else None) if p]
    return problems
