"""Loading the rules directory into one validated, immutable `RuleSet`.

`load_rules(path)` reads queues.yaml, vocabulary.yaml, priority.yaml, routing.yaml and
(optionally) services.yaml from the rules directory (other files there belong to other
parts of the daemon and are ignored here), checks everything up front — YAML syntax,
safe tags, size, aliases, duplicate and unknown keys, types, regexes, references to
queues, agents, roles, tags, types, services and templates — and either returns a
complete `RuleSet` or raises one `RulesError` listing every problem as
`file:line: [rule 'name': ] reason`. The rule set's `version` is a hash of the exact
bytes read, recorded on every routing decision made with it.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from types import MappingProxyType
from typing import Any, Collection, Iterable

from daemon.errors import RulesError
from daemon.model import PriorityMatrix
from daemon.pipeline.ruleset import Check, Effect, Rule, RuleSet
from daemon.rules.actions import ACTIONS
from daemon.rules.conditions import CONDITIONS, combine_all
from daemon.pipeline.calendar import from_routing
from daemon.rules.calendars import load_calendars
from daemon.rules.declarations import Calendar, load_queues, load_services, load_vocabulary, routing_calendar
from daemon.rules.matrix import load_matrix
from daemon.rules.registry import Invalid, Reported, did_you_mean
from daemon.rules.schema import Problems, check_keys
from daemon.rules.textmatch import type_name
from daemon.rules.yamlload import YamlProblem, YDict, YList, load_yaml

REQUIRED_FILES = ("queues.yaml", "vocabulary.yaml", "priority.yaml", "routing.yaml")
OPTIONAL_FILES = ("services.yaml",)
RULE_KEYS = ("name", "description", "applies_to", "when", "then", "continue", "enabled")
ROUTING_KEYS = ("calendars", "calendar", "default", "rules")
EVENTS = ("new", "reply")
MAX_RULES = 10_000


class _Anything:
    """Stands in for a declaration file that failed to load: every name is accepted, so a
    broken queues.yaml is reported once, not once per rule naming a queue."""

    def __contains__(self, item: object) -> bool:
        return True

    def __iter__(self):
        return iter(())


class _Ctx:
    """What condition and action compilers may consult, and where problems are reported."""

    def __init__(self, problems: Problems, file: str, vocab: dict[str, Any]):
        self.problems, self.file, self.rule = problems, file, None
        self.types, self.tags, self.roles = vocab["types"], vocab["tags"], vocab["roles"]
        self.queues, self.agents, self.services = vocab["queues"], vocab["agents"], vocab["services"]
        self.templates, self.matrix = vocab["templates"], vocab["matrix"]

    def report(self, line: int, reason: str) -> None:
        self.problems.add(self.file, line, reason, self.rule)

    def check_keys(self, arg: dict, allowed: Iterable[str], path: str) -> None:
        allowed = tuple(allowed)
        for key in arg:
            if key not in allowed:
                raise Invalid(f"{path}: unknown key {key!r}{did_you_mean(key, allowed)}; allowed: {', '.join(allowed)}",
                              line=arg.line_of(key) if isinstance(arg, YDict) else None)

    def compile_when(self, node: Any, path: str, line: int | None = None) -> Check:
        """All conditions of a mapping, compiled; raises Reported after reporting problems."""
        at = line or getattr(node, "line", 1)
        if not isinstance(node, YDict) or not node:
            self.report(at, f"{path}: expected a mapping of conditions, got "
                            f"{'an empty mapping' if isinstance(node, dict) else type_name(node)}")
            raise Reported()
        checks, failed = [], False
        for key, arg in node.items():
            compile_ = CONDITIONS.get(key)
            if compile_ is None:
                hint = "; that is an action: put it under then:" if key in ACTIONS else \
                    did_you_mean(key, CONDITIONS.names())
                self.report(node.line_of(key), f"{path}: unknown condition {key!r}{hint}")
                failed = True
                continue
            try:
                checks.append(compile_(arg, self))
            except Reported:
                failed = True
            except Invalid as exc:
                self.report(exc.line or node.line_of(key), f"{path}.{key}: {_strip(exc.reason, key)}")
                failed = True
        if failed:
            raise Reported()
        return combine_all(checks)

    def compile_then(self, node: Any, path: str, line: int) -> tuple[Effect, ...] | None:
        if not isinstance(node, YDict) or not node:
            self.report(line, f"{path}: expected a mapping of actions, got "
                              f"{'an empty mapping' if isinstance(node, dict) else type_name(node)}")
            return None
        effects: list[Effect] = []
        failed = False
        for key, arg in node.items():
            compile_ = ACTIONS.get(key)
            if compile_ is None:
                hint = "; that is a condition: put it under when:" if key in CONDITIONS else \
                    did_you_mean(key, ACTIONS.names())
                self.report(node.line_of(key), f"{path}: unknown action {key!r}{hint}")
                failed = True
                continue
            try:
                effects.extend(compile_(arg, self))
            except Invalid as exc:
                self.report(exc.line or node.line_of(key), f"{path}.{key}: {_strip(exc.reason, key)}")
                failed = True
        if not failed:
            failed = not self._consistent(effects, node, path)
        return None if failed else tuple(effects)

    def _consistent(self, effects: list[Effect], node: YDict, path: str) -> bool:
        """An agent assigned together with a queue must belong to that queue."""
        got = {e.field: e.value for e in effects}
        agent, queue = got.get("assignee"), got.get("queue")
        if agent and agent[0] == "agent" and queue and isinstance(self.agents, dict) \
                and queue not in self.agents.get(agent[1], ()):
            self.report(node.line_of("assign"), f"{path}.assign: {agent[1]!r} is not an agent of queue {queue!r}")
            return False
        return True


def _strip(reason: str, key: str) -> str:
    """'queue: unknown ...' -> 'unknown ...' when the path already names the key."""
    return reason[len(key) + 2:] if reason.startswith(key + ": ") else reason


# ------------------------------------------------------------------ files
def _read_files(root: Path, problems: Problems) -> tuple[dict[str, tuple[YDict, str]], str]:
    docs: dict[str, tuple[YDict, str]] = {}
    digest = hashlib.sha256()
    for name in REQUIRED_FILES + OPTIONAL_FILES:
        path = root / name
        if name in OPTIONAL_FILES and not path.exists():
            continue
        try:
            data, raw = load_yaml(path)
        except YamlProblem as exc:
            problems.add(str(path), exc.line, exc.reason + (" (required)" if exc.reason == "file is missing" else ""))
            continue
        digest.update(f"{name}\0{len(raw)}\0".encode() + raw)
        if not isinstance(data, YDict):
            problems.add(str(path), getattr(data, "line", 1), f"expected a mapping at the top level, got "
                                                              f"{type_name(data)}")
            continue
        docs[name] = (data, str(path))
    return docs, digest.hexdigest()[:16]


def load_rules(path: str | Path, *, known_templates: Collection[str] | None = None,
               defaults: Any = None) -> RuleSet:
    """The validated rule set in directory `path`; RulesError listing every problem.

    `known_templates`: template names `ack:` may use (None: not checked). `defaults`:
    the configured fallbacks (classify.Defaults); when given, they must be declared."""
    root = Path(path)
    problems = Problems()
    if not root.is_dir():
        raise RulesError(f"{root}:1: rules directory not found", [f"{root}:1: rules directory not found"])
    docs, version = _read_files(root, problems)
    vocab = _declarations(docs, problems, known_templates)
    rules: tuple[Rule, ...] = ()
    default: tuple[Effect, ...] | None = ()
    calendar = from_routing(Calendar())
    if "routing.yaml" in docs:
        data, file = docs["routing.yaml"]
        check_keys(data, ROUTING_KEYS, "routing.yaml", file, problems, required=("rules",))
        if "calendar" in data:
            calendar = routing_calendar(data["calendar"], file, data.line_of("calendar"), vocab["calendars"],
                                        problems)
        ctx = _Ctx(problems, file, vocab)
        if "default" in data:
            default = _load_default(ctx, data["default"], data.line_of("default"))
        if "rules" in data:
            rules = _load_rule_list(ctx, data["rules"], data.line_of("rules"))
    if defaults is not None and "queues.yaml" in docs:
        _check_defaults(defaults, vocab, default or (), docs, problems)
    if problems:
        raise RulesError(f"{len(problems)} problem(s) in the rules in {root}", problems.items)
    return RuleSet(
        version=version, source=str(root), types=vocab["types"], tags=vocab["tags"], roles=vocab["roles"],
        queues=MappingProxyType(vocab["queues"]), agents=MappingProxyType(vocab["agents"]),
        services=MappingProxyType(vocab["services"]), matrix=vocab["matrix"], calendar=calendar,
        calendars=MappingProxyType(vocab["calendars"]),
        default=default or (), rules=rules,
        by_event=MappingProxyType({e: tuple(r for r in rules if e in r.applies_to) for e in EVENTS}))


def _declarations(docs: dict, problems: Problems, templates: Collection[str] | None) -> dict[str, Any]:
    anything = _Anything()
    vocab: dict[str, Any] = {"types": anything, "tags": anything, "roles": anything, "queues": anything,
                             "agents": anything, "services": {}, "matrix": None, "calendars": {},
                             "templates": None if templates is None else frozenset(templates)}
    if "vocabulary.yaml" in docs:
        vocab["types"], vocab["tags"] = load_vocabulary(*docs["vocabulary.yaml"], problems)
    if "queues.yaml" in docs:
        queues, roles = load_queues(*docs["queues.yaml"], problems)
        agents: dict[str, tuple[str, ...]] = {}
        for q in queues.values():
            for a in q.agents:
                agents[a.email] = agents.get(a.email, ()) + (q.name,)
        vocab.update(queues=queues, roles=roles, agents=agents)
    if "priority.yaml" in docs:
        vocab["matrix"] = load_matrix(*docs["priority.yaml"], problems)
    if "routing.yaml" in docs and "calendars" in docs["routing.yaml"][0]:
        data, file = docs["routing.yaml"]
        vocab["calendars"] = load_calendars(data["calendars"], file, data.line_of("calendars"), problems)
    if vocab["matrix"] is None:
        vocab["matrix"] = _AnyMatrix()
    if "services.yaml" in docs:
        queues = vocab["queues"]                      # _Anything when queues.yaml failed: no cascade
        matrix = vocab["matrix"] if isinstance(vocab["matrix"], PriorityMatrix) else None
        vocab["services"] = load_services(*docs["services.yaml"], problems, queues, matrix)
    return vocab


class _AnyMatrix:
    """Stands in for a priority.yaml that failed to load (see _Anything)."""

    levels = impacts = urgencies = _Anything()

    def higher(self, kind: str, a: str | None, b: str) -> str:
        return b


# ------------------------------------------------------------------ rules
def _load_default(ctx: _Ctx, node: Any, line: int) -> tuple[Effect, ...] | None:
    ctx.rule = None
    effects = ctx.compile_then(node, "default", line)
    for e in effects or ():
        if e.field in ("impact", "urgency"):
            ctx.report(node.line_of(e.field), f"default.{e.field}: set default_{e.field} in priority.yaml instead")
            return None
    return effects


def _load_rule_list(ctx: _Ctx, node: Any, line: int) -> tuple[Rule, ...]:
    if not isinstance(node, YList):
        ctx.report(line, f"rules: expected a list of rules, got {type_name(node)}")
        return ()
    if len(node) > MAX_RULES:
        ctx.report(line, f"rules: {len(node)} rules; the limit is {MAX_RULES}")
        return ()
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(node):
        rule = _load_rule(ctx, item, i, node.line_of(i), seen)
        if rule is not None:
            rules.append(rule)
    _check_reachable(ctx, rules)
    return tuple(rules)


def _load_rule(ctx: _Ctx, item: Any, index: int, line: int, seen: dict[str, int]) -> Rule | None:
    ctx.rule = None
    if not isinstance(item, YDict):
        ctx.report(line, f"rules[{index}]: expected a rule (a mapping with name, when, then), got {type_name(item)}")
        return None
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        got = "" if "name" not in item else f", got {type_name(name)}"
        ctx.report(item.line_of("name"), f"rules[{index}]: every rule needs a name (a non-empty string){got}")
        name = f"#{index + 1}"
    elif name in seen:
        ctx.report(item.line_of("name"), f"rules[{index}]: rule name {name!r} is already used on line {seen[name]}")
    seen.setdefault(name, item.line_of("name"))
    ctx.rule = name
    ok = check_keys(item, RULE_KEYS, "rule", ctx.file, ctx.problems, required=("then",), rule=name)
    applies = _applies_to(ctx, item)
    flags = {k: _flag(ctx, item, k, default) for k, default in (("continue", False), ("enabled", True))}
    when: Check | None = None
    try:
        when = ctx.compile_when(item["when"], "when") if "when" in item else (lambda f: (True, "always"))
    except Reported:
        ok = False
    effects = ctx.compile_then(item["then"], "then", item.line_of("then")) if "then" in item else None
    description = item.get("description", "")
    if not isinstance(description, str):
        ctx.report(item.line_of("description"), f"description: expected a string, got {type_name(description)}")
        ok = False
    if not ok or applies is None or None in flags.values() or when is None or effects is None:
        return None
    if not flags["enabled"]:
        return None
    return Rule(name, ctx.file, item.line, applies, when, effects, flags["continue"], "when" not in item, description)


def _applies_to(ctx: _Ctx, item: YDict) -> frozenset[str] | None:
    value = item.get("applies_to", "new")
    names = [value] if isinstance(value, str) else value
    if value == "any":
        return frozenset(EVENTS)
    if not isinstance(names, list) or not names or any(n not in EVENTS for n in names):
        ctx.report(item.line_of("applies_to"), f"applies_to: expected new, reply, any or a list of new/reply; "
                                               f"got {value!r}")
        return None
    return frozenset(names)


def _flag(ctx: _Ctx, item: YDict, key: str, default: bool) -> bool | None:
    value = item.get(key, default)
    if isinstance(value, bool):
        return value
    ctx.report(item.line_of(key), f"{key}: expected true or false, got {type_name(value)}")
    return None


def _check_reachable(ctx: _Ctx, rules: list[Rule]) -> None:
    """A rule after an unconditional, stopping rule (for the same events) is never tried."""
    ctx.rule = None
    for event in EVENTS:
        stopper = None
        for r in rules:
            if event not in r.applies_to:
                continue
            if stopper is not None:
                ctx.problems.add(ctx.file, r.line, f"is never tried for {event} messages: rule "
                                                   f"{stopper.name!r} (line {stopper.line}) has no conditions "
                                                   "and no 'continue: true'", r.name)
                return
            if r.always and not r.cont:
                stopper = r


def _check_defaults(defaults: Any, vocab: dict, default: tuple[Effect, ...], docs: dict,
                    problems: Problems) -> None:
    """The configured fallbacks must exist unless routing.yaml's default replaces them."""
    set_here = {e.field for e in default}
    checks = (("type", defaults.type, vocab["types"], "vocabulary.yaml"),
              ("queue", defaults.queue, vocab["queues"], "queues.yaml"),
              ("priority", defaults.priority, vocab["matrix"].levels, "priority.yaml"))
    for fieldname, value, known, fname in checks:
        if fieldname not in set_here and fname in docs and value not in known:
            problems.add(docs[fname][1], 1, f"config [helpdesk] default_{fieldname} {value!r} is not declared here "
                                            f"(or set {fieldname} under default: in routing.yaml)")
