"""Loading rules/sla.yaml (edge) into validated, immutable `SlaSettings`: calendars,
policies, escalation ladders, policy selection.

`load_sla(rules_dir, ruleset)` reads sla.yaml through the rules loader's YAML door and
checks everything up front: keys (with "did you mean"), types, durations, times, zones,
holidays, country codes, and every reference (calendars, ladders and policies in the file;
queues, services, priorities, roles, agents and tags of the rule set; templates when
`known_templates` is given; services.yaml `sla:` names). One `RulesError` lists every
problem as `file:line: reason`. Policies name routing.yaml's calendars (the rule set
carries them) or sla.yaml's own; `routing` is routing.yaml's `calendar:`, the default of
a policy that names none. `version` hashes sla.yaml's bytes with the rule set's version.
"""
from __future__ import annotations

import hashlib
import re
from datetime import date, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Collection

from daemon.errors import RulesError
from daemon.pipeline.calendar import BusinessCalendar, from_routing
from daemon.pipeline.sla import TARGETS, Action, Level, Policy, Selector, SlaSettings, Targets
from daemon.rules.calendars import CALENDARS_FILE, CalendarCtx, parse_calendar
from daemon.rules.loader import RuleSet
from daemon.rules.registry import Invalid, did_you_mean
from daemon.rules.schema import Problems
from daemon.rules.textmatch import string_list, type_name
from daemon.rules.yamlload import YamlProblem, YDict, YList, load_yaml

SLA_FILE = "sla.yaml"
ROUTING_CALENDAR = "routing"
TOP_KEYS = ("calendars", "escalations", "policies", "select", "default_policy")
POLICY_KEYS = ("description", "calendar", "escalations", "targets")
TARGET_KEYS = ("first_response", "resolution", "update", "calendar")
LEVEL_KEYS = ("name", "at", "targets", "notify", "to", "reassign", "priority", "tags")
WHEN_KEYS = ("queue", "priority", "service", "domain")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_DURATION = re.compile(r"^(?:(\d{1,5})h)?\s*(?:(\d{1,6})m)?\s*(?:(\d{1,7})s)?$")


class _Ctx(CalendarCtx):
    """Where problems go, and the rule set's vocabulary references are checked against."""

    def __init__(self, problems: Problems, file: str, rules: RuleSet, templates: Collection[str] | None):
        super().__init__(problems, file)
        self.rules = rules
        self.templates = None if templates is None else frozenset(templates)

    def named(self, name: Any, what: str, line: int) -> bool:
        if isinstance(name, str) and _NAME.match(name):
            return True
        self.report(line, f"{what} name {name!r}: use letters, digits, '-', '_' or '.' (at most 64)")
        return False

    def ref(self, name: Any, known: Collection[str], what: str, path: str, line: int) -> bool:
        if isinstance(name, str) and name in known:
            return True
        shown = ", ".join(sorted(known)) or "none declared"
        self.report(line, f"{path}: unknown {what} {name!r}{did_you_mean(name, known)}; known: {shown}")
        return False


def load_sla(path: str | Path, rules: RuleSet, *, known_templates: Collection[str] | None = None) -> SlaSettings:
    """The validated SLA settings in `path`/sla.yaml, checked against `rules`; RulesError
    listing every problem. `known_templates`: names `notify:` may use (None: unchecked)."""
    file = Path(path) / SLA_FILE
    problems = Problems()
    try:
        data, raw = load_yaml(file)
    except YamlProblem as exc:
        raise RulesError(f"{file}:{exc.line}: {exc.reason}", [f"{file}:{exc.line}: {exc.reason}"]) from None
    except ValueError as exc:                  # PyYAML builds 2026-02-30 as a date and fails
        line, text = _bad_date(file)
        where = f"{file}:{line}: {text} is not a real date ({exc})"
        raise RulesError(where, [where]) from None
    ctx = _Ctx(problems, str(file), rules, known_templates)
    if not isinstance(data, YDict):
        ctx.report(getattr(data, "line", 1), f"expected a mapping at the top level, got {type_name(data)}")
        raise RulesError(problems.items[0], problems.items)
    ctx.keys(data, TOP_KEYS, "sla.yaml", required=("policies", "default_policy"))
    calendars = _calendars(ctx, data)
    ladders = {name: _ladder(ctx, name, node, at) for name, node, at in _entries(ctx, data, "escalations")
               if ctx.named(name, "escalation ladder", at)}
    policies = {name: _policy(ctx, name, node, at, calendars, ladders)
                for name, node, at in _entries(ctx, data, "policies") if ctx.named(name, "policy", at)}
    if "policies" in data and isinstance(data["policies"], YDict) and not data["policies"]:
        ctx.report(data.line_of("policies"), "policies: declare at least one policy")
    selectors = _selectors(ctx, data.get("select"), data.line_of("select"), policies)
    default = ctx.string(data, "default_policy", "sla.yaml")
    if default is not None:
        ctx.ref(default, policies, "policy", "default_policy", data.line_of("default_policy"))
    _check_services(ctx, Path(path), policies)
    if problems:
        raise RulesError(f"{len(problems)} problem(s) in {file}", problems.items)
    version = hashlib.sha256(raw + b"\0" + rules.version.encode()).hexdigest()[:16]
    return SlaSettings(version, str(file), MappingProxyType(calendars),
                       MappingProxyType({k: v for k, v in policies.items() if v is not None}),
                       selectors, default or "")


def _bad_date(file: Path) -> tuple[int, str]:
    """The line and text of the first YYYY-MM-DD that is not a real date (PyYAML's ValueError)."""
    for number, line in enumerate(file.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        for m in re.finditer(r"\b\d{4}-\d{1,2}-\d{1,2}\b", line.split("#", 1)[0]):
            try:
                date(*map(int, m.group().split("-")))
            except ValueError:
                return number, m.group()
    return 1, "a value"


def _entries(ctx: _Ctx, data: YDict, key: str):
    """(name, body, line) of each entry of the top-level mapping `key` (absent: none)."""
    if key not in data:
        return
    table = ctx.mapping(data[key], key, data.line_of(key))
    for name, body in (table or {}).items():
        yield name, body, table.line_of(name)


# ------------------------------------------------------------------ calendars
def _calendars(ctx: _Ctx, data: YDict) -> dict[str, BusinessCalendar | None]:
    """`routing` (routing.yaml's calendar), routing.yaml's `calendars:` (the same objects the
    rule set has) and the ones declared here (None: failed to load)."""
    calendars: dict[str, BusinessCalendar | None] = {ROUTING_CALENDAR: from_routing(ctx.rules.calendar),
                                                     **ctx.rules.calendars}
    for name, node, at in _entries(ctx, data, "calendars"):
        if name == ROUTING_CALENDAR:
            ctx.report(at, "calendars.routing: that name is routing.yaml's calendar; choose another")
        elif name in ctx.rules.calendars:
            ctx.report(at, f"calendars.{name}: already declared in {CALENDARS_FILE}; use that one or choose another name")
        elif ctx.named(name, "calendar", at):
            calendars[name] = parse_calendar(ctx, name, node, at)
    return calendars


# ------------------------------------------------------------------ escalation ladders
def _ladder(ctx: _Ctx, name: str, node: Any, at: int) -> tuple[Level, ...] | None:
    path = f"escalations.{name}"
    if not isinstance(node, YList) or not node:
        ctx.report(at, f"{path}: expected a non-empty list of levels, got {type_name(node)}")
        return None
    levels, seen = [], {}
    for i, item in enumerate(node):
        level = _level(ctx, item, f"{path}[{i}]", node.line_of(i))
        if level is not None and level.name in seen:
            ctx.report(node.line_of(i), f"{path}[{i}]: level name {level.name!r} is already used on line "
                                        f"{seen[level.name]}")
            return None
        if level is None:
            return None
        seen[level.name] = node.line_of(i)
        levels.append(level)
    return tuple(sorted(levels, key=lambda lv: lv.percent))


def _level(ctx: _Ctx, node: Any, path: str, line: int) -> Level | None:
    lv = ctx.mapping(node, path, line)
    if lv is None or not ctx.keys(lv, LEVEL_KEYS, path, required=("name", "at")):
        return None
    name = ctx.string(lv, "name", path)
    ok = name is not None and ctx.named(name, "level", lv.line_of("name"))
    percent = _percent(ctx, lv.get("at"), f"{path}.at", lv.line_of("at"))
    targets = frozenset(TARGETS)
    if "targets" in lv:
        try:
            targets = frozenset(string_list(lv["targets"], f"{path}.targets"))
            for t in targets - set(TARGETS):
                raise Invalid(f"{path}.targets: {t!r} is not one of {', '.join(TARGETS)}{did_you_mean(t, TARGETS)}")
        except Invalid as exc:
            ctx.report(lv.line_of("targets"), exc.reason)
            ok = False
    actions = _actions(ctx, lv, path)
    if actions == ():
        ctx.report(lv.line, f"{path}: a level needs at least one of notify, reassign, priority, tags")
    if not ok or percent is None or not actions:
        return None
    return Level(name, percent, actions, targets)


def _percent(ctx: _Ctx, value: Any, path: str, line: int) -> float | None:
    text = value[:-1].strip() if isinstance(value, str) and value.endswith("%") else value
    try:
        number = float(text) if isinstance(text, (str, int, float)) and not isinstance(text, bool) else None
    except ValueError:
        number = None
    if number is None or not 0 < number <= 1000:
        ctx.report(line, f"{path}: expected a percentage of the target such as 75% (over 0, at most 1000%), "
                         f"got {value!r}")
        return None
    return number


def _actions(ctx: _Ctx, lv: YDict, path: str) -> tuple[Action, ...] | None:
    out: list[Action] = []
    ok = True
    rules = ctx.rules
    if "notify" in lv:
        template = ctx.string(lv, "notify", path)
        to = _recipients(ctx, lv.get("to", ["assignee"]), f"{path}.to", lv.line_of("to"))
        if template is not None and ctx.templates is not None:
            ok = ctx.ref(template, ctx.templates, "template", f"{path}.notify", lv.line_of("notify")) and ok
            if template in ctx.templates and not template.rpartition("/")[2].startswith("sla-"):
                ctx.report(lv.line_of("notify"), f"{path}.notify: {template!r}: escalation templates are named "
                                                 "<audience>/sla-<name> (only they get the `escalation` variable)")
                ok = False
        ok = ok and template is not None and to is not None
        out.append(Action("notify", template or "", to or ()))
    elif "to" in lv:
        ctx.report(lv.line_of("to"), f"{path}.to: only means something with notify:")
        ok = False
    if "reassign" in lv:
        who = _person(ctx, lv["reassign"], f"{path}.reassign", lv.line_of("reassign"), agents_only=True)
        ok = ok and who is not None
        out.append(Action("reassign", who or ""))
    if "priority" in lv:
        level = lv["priority"]
        if level != "raise":
            ok = ctx.ref(level, rules.matrix.levels, "priority level (or raise)", f"{path}.priority",
                         lv.line_of("priority")) and ok
        out.append(Action("priority", str(level)))
    if "tags" in lv:
        try:
            for tag in string_list(lv["tags"], f"{path}.tags", lower=False):
                ok = ctx.ref(tag, rules.tags, "tag (declare it in vocabulary.yaml)", f"{path}.tags",
                             lv.line_of("tags")) and ok
                out.append(Action("tag", tag))
        except Invalid as exc:
            ctx.report(lv.line_of("tags"), exc.reason)
            ok = False
    return tuple(out) if ok else None


def _recipients(ctx: _Ctx, value: Any, path: str, line: int) -> tuple[str, ...] | None:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if item in ("assignee", "queue"):
            out.append(item)
            continue
        who = _person(ctx, item, path, line, agents_only=False)
        if who is None:
            return None
        out.append(who)
    return tuple(out) if out else None


def _person(ctx: _Ctx, value: Any, path: str, line: int, *, agents_only: bool) -> str | None:
    """`{role: lead}` -> "role:lead"; an address -> itself (an agent when `agents_only`)."""
    if isinstance(value, dict):
        if set(value) != {"role"}:
            ctx.report(line, f"{path}: expected {{role: NAME}}, got keys {', '.join(map(str, value))}")
            return None
        return f"role:{value['role']}" if ctx.ref(value["role"], ctx.rules.roles, "role", path, line) else None
    if not isinstance(value, str) or not _EMAIL.match(value):
        extra = "" if agents_only else ", assignee, queue"
        ctx.report(line, f"{path}: expected an address, {{role: NAME}}{extra}; got {value!r}")
        return None
    if agents_only and value.lower() not in ctx.rules.agents:
        ctx.report(line, f"{path}: {value!r} is not an agent in queues.yaml"
                         f"{did_you_mean(value.lower(), ctx.rules.agents)}")
        return None
    return value.lower()


# ------------------------------------------------------------------ policies
def _policy(ctx: _Ctx, name: str, node: Any, at: int, calendars: dict, ladders: dict) -> Policy | None:
    path = f"policies.{name}"
    p = ctx.mapping(node, path, at)
    if p is None or not ctx.keys(p, POLICY_KEYS, path, required=("targets",)):
        return None
    calendar = _calendar_ref(ctx, p, path, calendars, ROUTING_CALENDAR)
    levels: tuple[Level, ...] | None = ()
    if "escalations" in p:
        ladder = p["escalations"]
        levels = ladders.get(ladder) if ctx.ref(ladder, ladders, "escalation ladder", f"{path}.escalations",
                                                p.line_of("escalations")) else None
    table = ctx.mapping(p.get("targets"), f"{path}.targets", p.line_of("targets"))
    if table is None:
        return None
    levels_known = ctx.rules.matrix.levels
    targets, ok = {}, calendar is not None and levels is not None
    for prio, body in table.items():
        if ctx.ref(prio, levels_known, "priority level", f"{path}.targets", table.line_of(prio)):
            targets[prio] = _targets(ctx, body, f"{path}.targets.{prio}", table.line_of(prio), calendars, calendar)
    missing = [lvl for lvl in levels_known if lvl not in table]
    if missing:
        ctx.report(table.line, f"{path}.targets: no targets for {', '.join(missing)} (every priority level "
                               "in priority.yaml needs them)")
    if not ok or missing or None in targets.values():
        return None
    return Policy(name, MappingProxyType(targets), levels or (), ctx.string(p, "description", path, "") or "",
                  f"{Path(ctx.file).name}:{at}")


def _calendar_ref(ctx: _Ctx, node: YDict, path: str, calendars: dict, default: Any) -> Any:
    if "calendar" not in node:
        return calendars.get(default) if isinstance(default, str) else default
    name = node["calendar"]
    if not ctx.ref(name, calendars, "calendar", f"{path}.calendar", node.line_of("calendar")):
        return None
    return calendars[name]


def _targets(ctx: _Ctx, node: Any, path: str, at: int, calendars: dict, default: Any) -> Targets | None:
    t = ctx.mapping(node, path, at)
    if t is None or not ctx.keys(t, TARGET_KEYS, path, required=("first_response", "resolution")):
        return None
    calendar = _calendar_ref(ctx, t, path, calendars, default)
    goals = {k: _duration(ctx, t[k], f"{path}.{k}", t.line_of(k)) for k in TARGETS if k in t}
    if calendar is None or None in goals.values():
        return None
    if goals["first_response"] > goals["resolution"]:
        ctx.report(t.line_of("first_response"), f"{path}: first_response is longer than resolution")
        return None
    return Targets(calendar, goals["first_response"], goals["resolution"], goals.get("update"))


def _duration(ctx: _Ctx, value: Any, path: str, line: int) -> timedelta | None:
    """'4h', '30m', '1h30m', '90s': business time. Days are refused: ambiguous in business
    time. Seconds are for tests and demonstrations (a policy measured in seconds)."""
    m = _DURATION.match(value.strip()) if isinstance(value, str) else None
    if m and any(m.groups()):
        got = timedelta(hours=int(m.group(1) or 0), minutes=int(m.group(2) or 0), seconds=int(m.group(3) or 0))
        if got > timedelta(0):
            return got
    hint = ""
    if isinstance(value, str) and re.search(r"\d\s*d", value):
        hint = " (days are ambiguous in business time: write hours, e.g. 3 office days of 10h = 30h)"
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        hint = " (a bare number has no unit: write 4h or 30m)"
    ctx.report(line, f"{path}: expected a duration such as 4h, 30m or 1h30m, got {value!r}{hint}")
    return None


# ------------------------------------------------------------------ selection
def _selectors(ctx: _Ctx, node: Any, line: int, policies: dict) -> tuple[Selector, ...]:
    if node is None:
        return ()
    if not isinstance(node, YList):
        ctx.report(line, f"select: expected a list of {{when: ..., policy: ...}}, got {type_name(node)}")
        return ()
    found = (_selector(ctx, item, f"select[{i}]", node.line_of(i), policies) for i, item in enumerate(node))
    return tuple(s for s in found if s is not None)


def _selector(ctx: _Ctx, item: Any, path: str, at: int, policies: dict) -> Selector | None:
    s = ctx.mapping(item, path, at)
    if s is None or not ctx.keys(s, ("when", "policy"), path, required=("when", "policy")):
        return None
    ok = ctx.ref(s["policy"], policies, "policy", f"{path}.policy", s.line_of("policy"))
    when = ctx.mapping(s["when"], f"{path}.when", s.line_of("when"))
    if when is None or not ctx.keys(when, WHEN_KEYS, f"{path}.when"):
        return None
    if not when:
        ctx.report(when.line, f"{path}.when: empty; the catch-all is default_policy")
        return None
    known = {"queue": ctx.rules.queues, "priority": ctx.rules.matrix.levels, "service": ctx.rules.services}
    got: dict[str, Any] = {}
    for key, value in when.items():
        where = f"{path}.when.{key}"
        try:
            got[key] = names = string_list(value, where, lower=key == "domain")
        except Invalid as exc:
            ctx.report(when.line_of(key), exc.reason)
            ok = False
            continue
        for n in names:
            if key == "domain" and not _DOMAIN.match(n):
                ctx.report(when.line_of(key), f"{where}: {n!r} is not a domain name")
                ok = False
            elif key != "domain":
                ok = ctx.ref(n, known[key], key, where, when.line_of(key)) and ok
    if not ok:
        return None
    sets = (frozenset(got[k]) if k in got else None for k in ("queue", "priority", "service"))
    return Selector(s["policy"], *sets, got.get("domain"), f"{Path(ctx.file).name}:{at}")


def _check_services(ctx: _Ctx, root: Path, policies: dict) -> None:
    """Every services.yaml `sla:` must name a policy; reported at services.yaml's line."""
    dangling = {n: s.sla for n, s in ctx.rules.services.items() if s.sla is not None and s.sla not in policies}
    if not dangling:
        return
    file, lines = root / "services.yaml", {}
    try:
        doc, _ = load_yaml(file)
        table = doc["services"]
        lines = {n: table[n].line_of("sla") for n in dangling}
    except (YamlProblem, KeyError, TypeError, AttributeError):
        pass
    for name, sla in dangling.items():
        ctx.problems.add(str(file), lines.get(name, 1), f"services.{name}.sla: unknown SLA policy {sla!r}"
                                                        f"{did_you_mean(sla, policies)}; sla.yaml policies: "
                                                        f"{', '.join(sorted(policies)) or 'none'}")
