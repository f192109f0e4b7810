"""Classify: decide type, queue and priority for a message (pure).

Until the YAML rules land, every ticket gets the configured defaults; the built-in guard
runs first: machine mail (auto-replies, bounces, lists, bulk) never gets an automatic
answer, whatever the rules say later.
"""
from __future__ import annotations

from dataclasses import dataclass

from daemon.model import ParsedMessage, Routing, ThreadDecision


@dataclass(frozen=True)
class Defaults:
    """The configured fallbacks: [helpdesk] default_type, default_queue, default_priority."""

    type: str = "incident"
    queue: str = "general"
    priority: str = "P3"


def classify(msg: ParsedMessage, decision: ThreadDecision, defaults: Defaults) -> Routing:
    """Routing for `msg`: built-in machine-mail guard, then the defaults."""
    hits: list[str] = []
    if msg.machine.no_auto_reply:
        hits.append(f"builtin:machine-mail ({msg.machine.kind})")
    hits.append("builtin:defaults")
    return Routing(type=defaults.type, queue=defaults.queue, priority=defaults.priority,
                   hits=tuple(hits), rules_version="builtin",
                   suppress_ack=msg.machine.no_auto_reply)
