"""Evaluating a RuleSet against one message: which rules hit, which missed, and why.

Pure. Rules for the message's event (`new` ticket or `reply`) are tried in file order;
the first rule that matches stops evaluation unless it says `continue: true`. The
effects of every rule that hit are merged by each field's merge mode (see `actions`):
the first rule to set a single-valued field wins, impact and urgency only go up, tags
accumulate. Nothing here formats per-miss text beyond one concatenation, so trying a
thousand rules stays well under a millisecond.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daemon.pipeline.facts import Facts
from daemon.pipeline.ruleset import MERGE, Effect, Rule, RuleSet


@dataclass(frozen=True)
class Evaluation:
    """The outcome of trying the rules on one message.

    `trials` holds (rule, hit, reason) for each rule tried, in order; `fields` the merged
    decisions; `set_by[field]` the rule that decided it; `overridden` lists effects a
    later rule could not apply (`rule: field=value kept from 'other'`); `untried` counts
    rules skipped after the stopping rule."""

    version: str
    event: str
    trials: tuple[tuple[Rule, bool, str], ...]
    fields: dict[str, Any]
    set_by: dict[str, str]
    overridden: tuple[str, ...]
    stopped_by: str | None
    untried: int

    @property
    def hits(self) -> tuple[tuple[Rule, str], ...]:
        return tuple((r, why) for r, hit, why in self.trials if hit)


def evaluate(rules: RuleSet, facts: Facts, event: str) -> Evaluation:
    """Try `rules` for `event` ('new' or 'reply') against `facts`."""
    candidates = rules.by_event.get(event, ())
    trials: list[tuple[Rule, bool, str]] = []
    fields: dict[str, Any] = {}
    set_by: dict[str, str] = {}
    overridden: list[str] = []
    stopped_by = None
    for i, rule in enumerate(candidates):
        ok, why = rule.when(facts)
        trials.append((rule, ok, why))
        if not ok:
            continue
        _merge(rules, rule.effects, rule.name, fields, set_by, overridden)
        if not rule.cont:
            stopped_by = rule.name
            break
    return Evaluation(rules.version, event, tuple(trials), fields, set_by, tuple(overridden), stopped_by,
                      len(candidates) - len(trials))


def _merge(rules: RuleSet, effects: tuple[Effect, ...], by: str, fields: dict[str, Any],
           set_by: dict[str, str], overridden: list[str]) -> None:
    for name, value in effects:
        mode = MERGE[name]
        if mode == "first":
            if name in fields:
                overridden.append(f"{by}: {name}={show(value)} ignored, kept {show(fields[name])} "
                                  f"from {set_by[name]!r}")
            else:
                fields[name], set_by[name] = value, by
        elif mode == "max":
            old = fields.get(name)
            new = rules.matrix.higher(name, old, value)
            if new != old:
                fields[name], set_by[name] = new, by
        else:
            tags = fields.setdefault(name, [])
            added = [t for t in value if t not in tags]
            if added:
                tags.extend(added)
                set_by[name] = f"{set_by[name]}, {by}" if name in set_by else by


def show(value: Any) -> str:
    """An effect value as written in YAML."""
    if isinstance(value, tuple) and len(value) == 2 and value[0] in ("agent", "role"):
        return value[1] if value[0] == "agent" else f"{{role: {value[1]}}}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(str, value)) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
