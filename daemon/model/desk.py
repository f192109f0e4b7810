"""The desk's declared people and places, as values: agents, queues, services, the
priority matrix, and the verdict on who sent a mail.

Built by the edge loaders (daemon.rules.declarations, daemon.rules.matrix,
daemon.identity); read by the pure stages and the store.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class Agent:
    email: str
    name: str
    role: str
    timezone: str = ""               # IANA zone from queues.yaml; "" = [digest] timezone


@dataclass(frozen=True)
class Queue:
    """A team: its agents (with roles) and an optional description and address."""

    name: str
    description: str
    email: str
    agents: tuple[Agent, ...]
    assign_on_answer: bool = True        # an unassigned ticket goes to the first agent who answers
    resolve_linked_incidents: bool = True   # resolving a problem resolves its open incidents
    survey_days: int | None = None       # satisfaction survey at most once per requester in N days; None: off
    survey_notify_lead: bool = True      # a bad survey score tells the queue's lead

    def with_role(self, role: str) -> Agent | None:
        return next((a for a in self.agents if a.role == role), None)


@dataclass(frozen=True)
class Service:
    """A catalogue entry: owner queue, default impact, SLA policy name."""

    name: str
    description: str
    queue: str
    impact: str | None
    sla: str | None


@dataclass(frozen=True)
class PriorityMatrix:
    """Priority levels and the impact x urgency table (all lists highest first)."""

    levels: tuple[str, ...]
    impacts: tuple[str, ...]
    urgencies: tuple[str, ...]
    cells: Mapping[tuple[str, str], str] = field(repr=False)
    default_impact: str
    default_urgency: str

    def priority(self, impact: str | None, urgency: str | None) -> str:
        """The cell for (impact, urgency), a missing one taking its default."""
        return self.cells[(impact or self.default_impact, urgency or self.default_urgency)]

    def higher(self, kind: str, a: str | None, b: str) -> str:
        """The higher of two impact (kind='impact') or urgency levels; `a` may be None."""
        order = self.impacts if kind == "impact" else self.urgencies
        return b if a is None or order.index(b) < order.index(a) else a


@dataclass(frozen=True)
class Auth:
    """The verdict on a mail's sender. result: pass | fail | none | temperror. `address`
    is the authenticated From address (lower-case) on pass; `evidence` says why."""

    result: str
    address: str | None = None
    method: str = ""
    evidence: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.result == "pass" and bool(self.address)
