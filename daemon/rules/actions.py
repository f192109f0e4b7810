"""Rule actions: the `then:` vocabulary, one registered function per YAML key.

Each function checks its argument against the declared vocabulary (types, queues,
agents, roles, tags, services, templates, priority levels) and returns `Effect`s:
(field, value) pairs. Evaluation merges the effects of every rule that hit, in order,
by the field's merge mode, registered with the action:
  first  the first rule that sets the field wins (type, queue, assignee, priority,
         service, ack, disposition, problem) — later ones are reported as overridden;
  max    impact and urgency only ever go up (a VIP rule can raise urgency whatever
         the rule that picks the queue says);
  union  tags accumulate.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from daemon.pipeline.ruleset import MERGE, Effect
from daemon.rules.registry import Invalid, Registry, did_you_mean
from daemon.rules.textmatch import string_list, type_name


ACTIONS: Registry[Callable[[Any, Any], tuple[Effect, ...]]] = Registry("action")
DISPOSITIONS = ("ticket", "drop", "quarantine", "spam")
_PROBLEM_REF = re.compile(r"^(?:[A-Za-z]+-)?#?(\d{1,12})$")


def action(name: str, field: str) -> Callable:
    if field not in MERGE:
        raise ValueError(f"action {name!r}: unknown field {field!r}")
    return ACTIONS.register(name, field=field)


def _name(arg: Any, key: str) -> str:
    if not isinstance(arg, str) or not arg:
        raise Invalid(f"{key}: expected a name, got {type_name(arg)}")
    return arg


def _member(value: str, known, key: str, what: str, where: str) -> str:
    if value not in known:
        listed = ", ".join(sorted(known)[:20]) or "none declared"
        raise Invalid(f"{key}: unknown {what} {value!r}{did_you_mean(value, known)}; "
                      f"{where} declares: {listed}")
    return value


@action("type", "type")
def set_type(arg: Any, ctx) -> tuple[Effect, ...]:
    """Ticket type, one of `types` in vocabulary.yaml."""
    return (Effect("type", _member(_name(arg, "type"), ctx.types, "type", "type", "vocabulary.yaml")),)


@action("queue", "queue")
def set_queue(arg: Any, ctx) -> tuple[Effect, ...]:
    """Queue (team), one of `queues` in queues.yaml."""
    return (Effect("queue", _member(_name(arg, "queue"), ctx.queues, "queue", "queue", "queues.yaml")),)


@action("tags", "tags")
def add_tags(arg: Any, ctx) -> tuple[Effect, ...]:
    """Tags to add, each one of `tags` in vocabulary.yaml."""
    tags = string_list(arg, "tags", lower=False)
    for t in tags:
        _member(t, ctx.tags, "tags", "tag", "vocabulary.yaml")
    return (Effect("tags", tags),)


@action("assign", "assignee")
def assign(arg: Any, ctx) -> tuple[Effect, ...]:
    """An agent's address from queues.yaml, or `{role: lead}`: that role in the final queue."""
    if isinstance(arg, dict):
        if set(arg) != {"role"}:
            raise Invalid("assign: expected an agent address or {role: NAME}")
        role = _member(_name(arg["role"], "assign.role"), ctx.roles, "assign.role", "role", "queues.yaml")
        return (Effect("assignee", ("role", role)),)
    email = _name(arg, "assign").lower()
    _member(email, ctx.agents, "assign", "agent", "queues.yaml")
    return (Effect("assignee", ("agent", email)),)


@action("priority", "priority")
def set_priority(arg: Any, ctx) -> tuple[Effect, ...]:
    """Priority set directly (skips the impact x urgency matrix), one of priority.yaml levels."""
    return (Effect("priority", _member(_name(arg, "priority"), ctx.matrix.levels, "priority", "priority level", "priority.yaml")),)


@action("impact", "impact")
def set_impact(arg: Any, ctx) -> tuple[Effect, ...]:
    """Raise impact to at least this level (priority.yaml impact_levels)."""
    level = _member(_name(arg, "impact"), ctx.matrix.impacts, "impact", "impact level", "priority.yaml")
    return (Effect("impact", level),)


@action("urgency", "urgency")
def set_urgency(arg: Any, ctx) -> tuple[Effect, ...]:
    """Raise urgency to at least this level (priority.yaml urgency_levels)."""
    level = _member(_name(arg, "urgency"), ctx.matrix.urgencies, "urgency", "urgency level", "priority.yaml")
    return (Effect("urgency", level),)


@action("service", "service")
def set_service(arg: Any, ctx) -> tuple[Effect, ...]:
    """A service from services.yaml: brings its owner queue, default impact and SLA policy."""
    return (Effect("service", _member(_name(arg, "service"), ctx.services, "service", "service", "services.yaml")),)


@action("ack", "ack")
def set_ack(arg: Any, ctx) -> tuple[Effect, ...]:
    """Acknowledgement: a template name, `true` for the standard one, `false` for none."""
    if isinstance(arg, bool):
        return (Effect("ack", arg),)
    name = _name(arg, "ack")
    if ctx.templates is not None:
        _member(name, ctx.templates, "ack", "template", "the templates directory")
    return (Effect("ack", name),)


@action("disposition", "disposition")
def set_disposition(arg: Any, ctx) -> tuple[Effect, ...]:
    """What happens to the mail: ticket (default), drop, quarantine or spam."""
    return (Effect("disposition", _member(_name(arg, "disposition"), DISPOSITIONS, "disposition",
                                          "disposition", "the rule format")),)


@action("problem", "problem")
def link_problem(arg: Any, ctx) -> tuple[Effect, ...]:
    """Link a new ticket to an open problem: `problem: HD-7` (for an outage keyword). The
    ticket must be a problem and open when the mail arrives (`helpdesk check` says so of the
    database it is given); otherwise the new ticket is not linked and its events say why."""
    if isinstance(arg, int) and not isinstance(arg, bool) and arg > 0:
        return (Effect("problem", arg),)
    found = _PROBLEM_REF.match(arg.strip()) if isinstance(arg, str) else None
    if found is None or int(found.group(1)) == 0:
        raise Invalid(f"problem: expected a ticket such as HD-7, got {arg!r}")
    return (Effect("problem", int(found.group(1))),)
