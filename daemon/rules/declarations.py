"""The declared vocabulary rules may name: queues and agents, types and tags, services,
and the business-hours calendar.

Read from queues.yaml, vocabulary.yaml, services.yaml and the `calendar:` section of
routing.yaml (the name of one of its `calendars:`, which the SLA policies share, or an
inline section). Each `load_*` takes a parsed document, reports every problem to a
`Problems` list (file:line) and returns frozen values; names the rules use are checked
against these later, so a rule naming an unknown queue or agent fails the load.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from daemon.model import Agent, PriorityMatrix, Queue, Service  # noqa: F401 - importable from here too
from daemon.pipeline.calendar import BusinessCalendar, from_routing
from daemon.pipeline.facts import within
from daemon.model.idn import canonical_address
from daemon.rules.calendars import CALENDARS_FILE
from daemon.rules.conditions import parse_clock, parse_days
from daemon.rules.queue_itil import QUEUE_KEYS, load_queue_itil
from daemon.rules.registry import Invalid, did_you_mean
from daemon.rules.schema import Problems, check_keys, expect_mapping, expect_names, expect_str, line_of
from daemon.rules.textmatch import type_name
from daemon.rules.yamlload import YDict

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Calendar:
    """routing.yaml's inline `calendar:` section as written: timezone, working days (0=Mon),
    hours as minutes, holidays. The loader turns it into the one calendar type,
    daemon.pipeline.calendar.BusinessCalendar (`from_routing`); `is_open` here states what
    the section means, and the conversion is tested against it."""

    timezone: str = "UTC"
    days: frozenset[int] = frozenset(range(5))
    start: int = 9 * 60
    end: int = 17 * 60
    holidays: frozenset[date] = frozenset()

    def local(self, now: datetime) -> datetime:
        aware = now if now.tzinfo else now.replace(tzinfo=timezone.utc)
        return aware.astimezone(ZoneInfo(self.timezone))

    def is_open(self, local: datetime) -> bool:
        minute = local.hour * 60 + local.minute
        return (local.weekday() in self.days and local.date() not in self.holidays
                and within(minute, self.start, self.end))


def _name_ok(name: Any, what: str, file: str, line: int, problems: Problems) -> bool:
    if isinstance(name, str) and _NAME.match(name):
        return True
    problems.add(file, line, f"{what} name {name!r}: use letters, digits, '-', '_' or '.' (at most 64)")
    return False


def load_vocabulary(data: YDict, file: str, problems: Problems) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(types, tags) from vocabulary.yaml."""
    check_keys(data, ("types", "tags"), "vocabulary", file, problems, required=("types", "tags"))
    types = expect_names(data.get("types"), "types", file, data.line_of("types"), problems)
    tags = expect_names(data.get("tags"), "tags", file, data.line_of("tags"), problems, allow_empty=True)
    return types, tags


def load_queues(data: YDict, file: str, problems: Problems) -> tuple[dict[str, Queue], tuple[str, ...]]:
    """(queues by name, roles) from queues.yaml."""
    check_keys(data, ("roles", "queues"), "queues.yaml", file, problems, required=("queues",))
    roles = expect_names(data["roles"], "roles", file, data.line_of("roles"), problems) \
        if "roles" in data else ("lead", "agent")
    table = expect_mapping(data.get("queues"), "queues", file, data.line_of("queues"), problems)
    queues: dict[str, Queue] = {}
    if table is None:
        return queues, roles
    if not table:
        problems.add(file, table.line, "queues: declare at least one queue")
    for qname, body in table.items():
        at = table.line_of(qname)
        if not _name_ok(qname, "queue", file, at, problems):
            continue
        q = expect_mapping(body, f"queues.{qname}", file, at, problems)
        if q is None:
            continue
        check_keys(q, ("description", "email", "agents", "assign_on_answer") + QUEUE_KEYS, f"queues.{qname}", file,
                   problems)
        on_answer = q.get("assign_on_answer", True)
        if not isinstance(on_answer, bool):
            problems.add(file, q.line_of("assign_on_answer"), f"queues.{qname}.assign_on_answer: expected true or "
                                                               f"false, got {type_name(on_answer)}")
        agents = _load_agents(q.get("agents", []), f"queues.{qname}.agents", file, q.line_of("agents"),
                              roles, problems)
        queues[qname] = Queue(qname, expect_str(q, "description", f"queues.{qname}", file, problems, default="")
                              or "", expect_str(q, "email", f"queues.{qname}", file, problems, default="") or "",
                              agents, on_answer is not False, **load_queue_itil(q, f"queues.{qname}", file, problems))
    return queues, roles


def _load_agents(value: Any, path: str, file: str, line: int, roles: tuple[str, ...],
                 problems: Problems) -> tuple[Agent, ...]:
    if not isinstance(value, list):
        problems.add(file, line, f"{path}: expected a list of agents, got {type_name(value)}")
        return ()
    out: list[Agent] = []
    for i, item in enumerate(value):
        at = line_of(value, i)
        if isinstance(item, str):
            item = YDict(email=item)
            item.line, item.key_lines = at, {}
        a = expect_mapping(item, f"{path}[{i}]", file, at, problems)
        if a is None or not check_keys(a, ("email", "name", "role", "timezone"), f"{path}[{i}]", file, problems,
                                       required=("email",)):
            continue
        email = expect_str(a, "email", f"{path}[{i}]", file, problems, default="") or ""
        role = expect_str(a, "role", f"{path}[{i}]", file, problems, default="agent") or "agent"
        if not _EMAIL.match(email):
            problems.add(file, a.line_of("email"), f"{path}[{i}].email: {email!r} is not an email address")
            continue
        if role not in roles:
            problems.add(file, a.line_of("role"), f"{path}[{i}].role: unknown role {role!r}; "
                                                  f"roles: {', '.join(roles)}")
            continue
        if any(x.email == canonical_address(email) for x in out):
            problems.add(file, a.line_of("email"), f"{path}[{i}]: {email!r} is listed twice")
            continue
        name = expect_str(a, "name", f"{path}[{i}]", file, problems, default="") or ""
        zone = expect_str(a, "timezone", f"{path}[{i}]", file, problems, default="") or ""
        if zone and not _zone_ok(zone):
            problems.add(file, a.line_of("timezone"), f"{path}[{i}].timezone: unknown time zone {zone!r} "
                                                      "(an IANA name such as Europe/Berlin)")
            zone = ""
        out.append(Agent(canonical_address(email), name, role, zone))     # IDN domain in A-labels
    return tuple(out)


def _zone_ok(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def load_services(data: YDict, file: str, problems: Problems, queues: dict[str, Queue],
                  matrix: PriorityMatrix | None) -> dict[str, Service]:
    """Services by name from services.yaml; owner queues and impacts must be declared."""
    check_keys(data, ("services",), "services.yaml", file, problems, required=("services",))
    table = expect_mapping(data.get("services"), "services", file, data.line_of("services"), problems)
    out: dict[str, Service] = {}
    for sname, body in (table or {}).items():
        at = table.line_of(sname)
        s = expect_mapping(body, f"services.{sname}", file, at, problems) \
            if _name_ok(sname, "service", file, at, problems) else None
        if s is None:
            continue
        path = f"services.{sname}"
        check_keys(s, ("description", "queue", "impact", "sla"), path, file, problems, required=("queue",))
        queue = expect_str(s, "queue", path, file, problems, default="") or ""
        impact = expect_str(s, "impact", path, file, problems)
        if "queue" in s and queue not in queues:
            problems.add(file, s.line_of("queue"), f"{path}.queue: unknown queue {queue!r}")
        if impact is not None and matrix is not None and impact not in matrix.impacts:
            problems.add(file, s.line_of("impact"), f"{path}.impact: {impact!r} is not one of "
                                                    f"impact_levels {list(matrix.impacts)}")
        out[sname] = Service(sname, expect_str(s, "description", path, file, problems, default="") or "",
                             queue, impact, expect_str(s, "sla", path, file, problems))
    return out


def load_calendar(node: Any, file: str, line: int, problems: Problems) -> Calendar:
    """The `calendar:` section: timezone, days, hours {from, to}, holidays [YYYY-MM-DD]."""
    cal = expect_mapping(node, "calendar", file, line, problems)
    if cal is None or not check_keys(cal, ("timezone", "days", "hours", "holidays"), "calendar", file, problems):
        return Calendar()
    tz = expect_str(cal, "timezone", "calendar", file, problems, default="UTC") or "UTC"
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        problems.add(file, cal.line_of("timezone"), f"calendar.timezone: unknown timezone {tz!r} "
                                                    "(use an IANA name such as Europe/Berlin)")
        tz = "UTC"
    default = Calendar(timezone=tz)
    parsers = {"days": lambda v: parse_days(v, "calendar.days"), "hours": _hours,
               "holidays": lambda v: frozenset(_dates(v))}
    values: dict[str, Any] = {}
    for key, parse in parsers.items():
        if key in cal:
            try:
                values[key] = parse(cal[key])
            except Invalid as exc:
                problems.add(file, cal.line_of(key), exc.reason)
    start, end = values.get("hours", (default.start, default.end))
    return Calendar(tz, values.get("days", default.days), start, end, values.get("holidays", frozenset()))


def routing_calendar(node: Any, file: str, line: int, calendars: dict[str, BusinessCalendar],
                     problems: Problems) -> BusinessCalendar:
    """The calendar `business_hours` uses: the name of one of routing.yaml's `calendars:`
    (which sla.yaml's policies name too), or an inline section (load_calendar)."""
    if not isinstance(node, str):
        return from_routing(load_calendar(node, file, line, problems))
    if node not in calendars:
        problems.add(file, line, f"calendar: unknown calendar {node!r}{did_you_mean(node, calendars)}; "
                                 f"{CALENDARS_FILE} calendars: {', '.join(sorted(calendars)) or 'none'}")
        return from_routing(Calendar())
    return calendars[node]


def _hours(value: Any) -> tuple[int, int]:
    if not isinstance(value, dict) or set(value) != {"from", "to"}:
        raise Invalid('calendar.hours: expected {from: "HH:MM", to: "HH:MM"}')
    return parse_clock(value["from"], "calendar.hours.from"), parse_clock(value["to"], "calendar.hours.to")


def _dates(value: Any) -> list[date]:
    if not isinstance(value, list):
        raise Invalid(f"calendar.holidays: expected a list of dates, got {type_name(value)}")
    out = []
    for item in value:
        if isinstance(item, date) and not isinstance(item, datetime):   # YAML reads 2026-12-25 as a date
            out.append(item)
            continue
        try:
            out.append(date.fromisoformat(str(item)))
        except ValueError:
            raise Invalid(f"calendar.holidays: {item!r} is not a date YYYY-MM-DD") from None
    return out
