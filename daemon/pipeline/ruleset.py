"""The compiled rule set classify evaluates (values): rules, their effects, merge modes.

Built and validated by daemon.rules.loader from the YAML files (the conditions and
actions registries compile each `when:` into a `Check` and each `then:` into `Effect`s);
read by daemon.pipeline.evaluate and .classify. `MERGE` says how the effects of several
rules that hit combine: `first` (the first rule that sets the field wins), `max` (impact
and urgency only go up), `union` (tags accumulate).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

from daemon.model import PriorityMatrix, Queue, Service
from daemon.pipeline.calendar import BusinessCalendar
from daemon.pipeline.facts import Facts

Check = Callable[[Facts], tuple[bool, str]]
MERGE = {"type": "first", "queue": "first", "assignee": "first", "priority": "first",
         "service": "first", "ack": "first", "disposition": "first", "problem": "first",
         "impact": "max", "urgency": "max", "tags": "union"}


class Effect(NamedTuple):
    """One thing a rule decides: field name and value."""

    field: str
    value: Any


@dataclass(frozen=True)
class Rule:
    """One compiled rule: where it is written, when it applies, what it sets."""

    name: str
    file: str
    line: int
    applies_to: frozenset[str]
    when: Check = field(repr=False)
    effects: tuple[Effect, ...]
    cont: bool = False
    always: bool = False
    description: str = ""
    where: str = ""                  # "routing.yaml:12", for explanations
    label: str = ""                  # "routing.yaml:12 name: ", prefix of each hit/miss line

    def __post_init__(self) -> None:
        where = f"{Path(self.file).name}:{self.line}"
        object.__setattr__(self, "where", where)
        object.__setattr__(self, "label", f"{where} {self.name}: ")


@dataclass(frozen=True)
class RuleSet:
    """Everything routing needs, validated; one `version` (content hash) for all of it."""

    version: str
    source: str
    types: tuple[str, ...]
    tags: tuple[str, ...]
    roles: tuple[str, ...]
    queues: Mapping[str, Queue]
    agents: Mapping[str, tuple[str, ...]]
    services: Mapping[str, Service]
    matrix: PriorityMatrix
    calendar: BusinessCalendar               # what business_hours means
    default: tuple[Effect, ...]
    rules: tuple[Rule, ...]
    by_event: Mapping[str, tuple[Rule, ...]] = field(repr=False)
    calendars: Mapping[str, BusinessCalendar] = field(default_factory=dict, repr=False)  # declared ones
