"""The daily agent digest and the SLA notes of ticket listings (pure).

`due_digests(agents, now, hour, default_zone)`: the registered agents whose local time (their
queues.yaml `timezone`, else the default zone) has reached `hour` today, each with that local
date and the key that makes their digest once per agent per day (`digest:EMAIL:DATE`). A day
whose hour has not come yet is not due; a day past is never due again (the key names the
local date, and only today's is asked for), so a daemon down over the hour sends that day's
digest when it comes back the same day, and none for days it missed.

`sla_note(state, risk_percent)`: the business time left on a ticket's running first-response
or resolution clock (`first response in 2h05`, `resolution overdue by 0h40`) and whether it
is a risk: overdue, or at/past `risk_percent` of its target. #mine, #queue and the digest
print these. `digest_lines` lays out the digest: the risks first, then the other tickets,
each with its reply address (the caller's `entry` makes the two lines of one ticket).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Callable, Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo

from daemon.model import Agent
from daemon.pipeline.sla import SlaState


@dataclass(frozen=True)
class DigestDue:
    """One agent's digest to send now: their local date and its once-only key."""

    agent: Agent
    zone: str
    day: date

    @property
    def key(self) -> str:
        return f"digest:{self.agent.email}:{self.day.isoformat()}"


@dataclass(frozen=True)
class SlaNote:
    text: str                 # '' when no first-response or resolution clock runs
    risk: bool


def roster_agents(queues: Mapping) -> tuple[Agent, ...]:
    """Every registered agent once (by address, in queue order); the time zone is the first
    one given on any of their queue entries."""
    seen: dict[str, Agent] = {}
    for q in queues.values():
        for a in q.agents:
            known = seen.get(a.email)
            if known is None:
                seen[a.email] = a
            elif not known.timezone and a.timezone:
                seen[a.email] = Agent(known.email, known.name or a.name, known.role, a.timezone)
    return tuple(seen.values())


def due_digests(agents: Iterable[Agent], now: datetime, hour: int, default_zone: str) -> tuple[DigestDue, ...]:
    """The agents whose digest for their local today is due at `now` (see module docstring)."""
    out = []
    for agent in agents:
        zone = agent.timezone or default_zone
        local = now.astimezone(ZoneInfo(zone))
        if local.hour >= hour:
            out.append(DigestDue(agent, zone, local.date()))
    return tuple(out)


def sla_note(state: SlaState | None, risk_percent: float) -> SlaNote:
    """The tightest running first-response/resolution clock (see module docstring)."""
    running = [c for c in state.clocks if c.phase == "running" and c.target != "update"] if state else []
    if not running:
        return SlaNote("", False)
    c = min(running, key=lambda c: c.left)
    name = c.target.replace("_", " ")
    minutes = int(c.left.total_seconds() // 60)
    if minutes < 0:
        return SlaNote(f"{name} overdue by {-minutes // 60}h{-minutes % 60:02d}", True)
    return SlaNote(f"{name} in {minutes // 60}h{minutes % 60:02d}", c.percent >= risk_percent)


def digest_lines(tickets: Sequence, notes: Mapping[int, SlaNote], entry: Callable[[object, SlaNote], list[str]],
                 *, day: date, listed_max: int) -> tuple[str, list[str]]:
    """(subject, body lines) of one agent's digest of `tickets` (open, assigned to them)."""
    risks = [t for t in tickets if notes[t.id].risk]
    others = [t for t in tickets if not notes[t.id].risk]
    more = f" (the first {listed_max})" if len(tickets) >= listed_max else ""
    title = f"Your desk on {day.isoformat()}: {len(tickets)} open, {len(risks)} at SLA risk"
    lines = [f"{len(tickets)} open ticket(s) assigned to you{more}, {len(risks)} at SLA risk."]
    for heading, group in (("At SLA risk (overdue or close to it):", risks), ("Your other open tickets:", others)):
        if group:
            lines += ["", heading]
            for t in group:
                lines += entry(t, notes[t.id])
    return title, lines

