"""Classify: decide type, queue, priority, tags, assignee and disposition (pure).

parse -> thread -> **classify** -> plan. The built-in guard runs first: machine mail
(auto-replies, bounces, lists, bulk...) never gets an automatic answer, whatever the
rules say. Then the YAML `RuleSet` is evaluated (`daemon.pipeline.evaluate`) for the
message's event — `new` for a new ticket, `reply` for a message on an existing one —
and the merged decisions are completed:

  queue     a rule's queue, else the service's owner queue, else the default;
  impact    the highest of the rules' impacts and the service's default impact;
  priority  a rule's direct priority, else impact x urgency through the matrix when a
            rule or service set either, else routing.yaml's default, else config;
  assignee  an agent, or `{role: lead}` resolved in the final queue;
  ack       suppressed for machine mail, `ack: false`, or any disposition but ticket.

The whole message is routed by one RuleSet object (the caller reads the live one once),
and its version is recorded in `Routing.rules_version`; hits and misses say why.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from daemon.model import ParsedMessage, Routing, ThreadDecision
from daemon.pipeline.evaluate import Evaluation, evaluate, show
from daemon.pipeline.facts import Facts
from daemon.pipeline.ruleset import RuleSet

REPLY_ACTIONS = frozenset({"append", "reopen", "bounce"})
_FIELD = {"disposition": "action", "ack": "ack_template"}        # rule field -> Routing attribute


@dataclass(frozen=True)
class Defaults:
    """The configured fallbacks: [helpdesk] default_type, default_queue, default_priority."""

    type: str = "incident"
    queue: str = "general"
    priority: str = "P3"


def event_of(decision: ThreadDecision) -> str:
    """'reply' for a message joining an existing ticket, else 'new'."""
    return "reply" if decision.action in REPLY_ACTIONS else "new"


def classify(msg: ParsedMessage, decision: ThreadDecision, rules: RuleSet | None, defaults: Defaults, *,
             now: datetime, envelope_rcpts: tuple[str, ...] = ()) -> Routing:
    """Routing for `msg`: built-in machine-mail guard, then the rules, then the defaults."""
    return classify_explained(msg, decision, rules, defaults, now=now, envelope_rcpts=envelope_rcpts)[0]


def classify_explained(msg: ParsedMessage, decision: ThreadDecision, rules: RuleSet | None,
                       defaults: Defaults, *, now: datetime,
                       envelope_rcpts: tuple[str, ...] = ()) -> tuple[Routing, Evaluation | None]:
    """As `classify`, plus the full evaluation (for `helpdesk rules test`)."""
    hits: list[str] = []
    machine = msg.machine.no_auto_reply
    if machine:
        hits.append(f"builtin:machine-mail ({msg.machine.kind}): no automatic answer" if not msg.machine.is_human
                    else "builtin:sender asked for no automatic answer (X-Auto-Response-Suppress)")
    if rules is None:
        hits.append("builtin:defaults (no rule set loaded)")
        return Routing(type=defaults.type, queue=defaults.queue, priority=defaults.priority,
                       hits=tuple(hits), rules_version="builtin", suppress_ack=machine), None
    facts = Facts(msg, now, rules.calendar, envelope_rcpts)
    ev = evaluate(rules, facts, event_of(decision))
    for rule, why in ev.hits:
        sets = ", ".join(f"{e.field}={show(e.value)}" for e in rule.effects)
        hits.append(f"{rule.label}{why} -> {sets}")
    hits.extend(f"overridden: {o}" for o in ev.overridden)
    misses = tuple([r.label + why for r, hit, why in ev.trials if not hit])
    return _complete(rules, ev, defaults, hits, misses, machine), ev


def _complete(rules: RuleSet, ev: Evaluation, defaults: Defaults, hits: list[str],
              misses: tuple[str, ...], machine: bool) -> Routing:
    got, dflt = ev.fields, {e.field: e.value for e in rules.default}

    def pick(name: str, fallback: Any) -> Any:
        if name in got:
            return got[name]
        if name in dflt:
            hits.append(f"default: {name}={show(dflt[name])}")
            return dflt[name]
        return fallback

    service = rules.services.get(got["service"]) if "service" in got else None
    queue = got.get("queue")
    if queue is None and service is not None:
        queue = service.queue
        hits.append(f"service {service.name}: queue={queue}")
    queue = queue or pick("queue", defaults.queue)
    impact, urgency = got.get("impact"), got.get("urgency")
    if service is not None and service.impact:
        raised = rules.matrix.higher("impact", impact, service.impact)
        if raised != impact:
            hits.append(f"service {service.name}: impact={raised}")
        impact = raised
    priority = _priority(rules, got, impact, urgency, pick, defaults, hits)
    assignee = _assignee(rules, pick("assignee", None), queue, hits)
    disposition = pick("disposition", "ticket")
    ack = pick("ack", True)
    tags = tuple(dict.fromkeys([*got.get("tags", ()), *dflt.get("tags", ())]))
    decided = {_FIELD.get(name, name) for name in got} | ({"queue", "impact", "sla_policy"} if service else set())
    if "priority" not in got and (impact or urgency):
        decided.add("priority")
    if ack is False and "ack" in got:
        decided.add("suppress_ack")
    return Routing(
        type=pick("type", defaults.type), queue=queue, priority=priority, tags=tags, assignee=assignee,
        hits=tuple(hits), misses=misses, rules_version=rules.version,
        suppress_ack=machine or ack is False or disposition != "ticket", action=disposition,
        impact=impact, urgency=urgency, service=service.name if service else None,
        sla_policy=service.sla if service else None, ack_template=ack if isinstance(ack, str) else None,
        decided=tuple(sorted(decided)), problem=got.get("problem"))


def _priority(rules: RuleSet, got: dict, impact: str | None, urgency: str | None, pick,
              defaults: Defaults, hits: list[str]) -> str:
    if "priority" in got:
        return got["priority"]
    if impact or urgency:
        m = rules.matrix
        p = m.priority(impact, urgency)
        hits.append(f"priority: {p} = matrix[impact {impact or m.default_impact}"
                    f"{'' if impact else ' (default)'}][urgency {urgency or m.default_urgency}"
                    f"{'' if urgency else ' (default)'}]")
        return p
    return pick("priority", defaults.priority)


def _assignee(rules: RuleSet, value: tuple[str, str] | None, queue: str, hits: list[str]) -> str | None:
    if value is None:
        return None
    kind, name = value
    if kind == "agent":
        return name
    q = rules.queues.get(queue)
    agent = q.with_role(name) if q else None
    hits.append(f"assign: {name} of queue {queue} is {agent.email}" if agent
                else f"assign: queue {queue} has no {name}; left unassigned")
    return agent.email if agent else None
