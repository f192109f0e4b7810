"""Loading business-hours calendars (edge): one declaration for routing and SLA.

routing.yaml declares the desk's calendars under `calendars:` (see the comments there):
timezone, days, hours (one interval or several), per-weekday `week` exceptions,
holidays (fixed dates or yearly MM-DD), national holidays by `country`/`subdivision`
(expanded with the `holidays` package), or `always_open`. routing.yaml's `calendar:` names
one of them (what `business_hours` means) and sla.yaml's policies name them too, so routing
and the SLA clocks answer "is the desk open?" from the same `BusinessCalendar`, the one
calendar type (daemon.pipeline.calendar). sla.yaml may still declare calendars of its own
in the same format. `parse_calendar` turns one entry into a BusinessCalendar, reporting
every problem as file:line.
"""
from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from daemon.pipeline.calendar import ALWAYS, BusinessCalendar, Interval
from daemon.rules.conditions import parse_clock, parse_days
from daemon.rules.registry import Invalid, did_you_mean
from daemon.rules.schema import Problems, check_keys, expect_mapping, line_of
from daemon.rules.textmatch import type_name
from daemon.rules.yamlload import YDict, YList

CALENDARS_FILE = "routing.yaml"           # where the shared calendars are declared
COUNTRY_YEARS = range(2000, 2100)       # national holidays are expanded for these years
CALENDAR_KEYS = ("description", "timezone", "always_open", "days", "hours", "week", "holidays",
                 "country", "subdivision")
_MONTH_DAY = re.compile(r"^(\d\d)-(\d\d)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class CalendarCtx:
    """Where problems in one file go (and the national holidays expanded once per load)."""

    def __init__(self, problems: Problems, file: str):
        self.problems, self.file = problems, file
        self.national: dict[tuple[str, str | None], set[date]] = {}

    def report(self, line: int, reason: str) -> None:
        self.problems.add(self.file, line, reason)

    def keys(self, node: YDict, allowed: tuple[str, ...], path: str, required: tuple[str, ...] = ()) -> bool:
        return check_keys(node, allowed, path, self.file, self.problems, required=required)

    def mapping(self, value: Any, path: str, line: int) -> YDict | None:
        return expect_mapping(value, path, self.file, line, self.problems)

    def string(self, node: YDict, key: str, path: str, default: str | None = None) -> str | None:
        value = node.get(key, default)
        if value is None or isinstance(value, str):
            return value
        self.report(node.line_of(key), f"{path}.{key}: expected a string, got {type_name(value)}")
        return None


def parse_calendar(ctx: CalendarCtx, name: str, node: Any, at: int) -> BusinessCalendar | None:
    """The calendar `name` declared by `node` (at line `at`), or None after reporting why."""
    path = f"calendars.{name}"
    c = ctx.mapping(node, path, at)
    if c is None or not ctx.keys(c, CALENDAR_KEYS, path):
        return None
    description = ctx.string(c, "description", path, "") or ""
    always = c.get("always_open", False)
    if not isinstance(always, bool):
        ctx.report(c.line_of("always_open"), f"{path}.always_open: expected true or false, got {type_name(always)}")
        return None
    if always:
        extra = [k for k in c if k not in ("description", "always_open", "timezone")]
        if extra:
            ctx.report(c.line_of(extra[0]), f"{path}: always_open: true leaves nothing to set; remove "
                                            f"{', '.join(extra)}")
            return None
        return BusinessCalendar(name, _zone(ctx, c, path) or "UTC", ALWAYS, description=description)
    if "timezone" not in c:
        ctx.report(at, f"{path}: missing required key 'timezone' (an IANA name such as Europe/Berlin)")
    if "hours" not in c and "week" not in c:
        ctx.report(at, f'{path}: give hours: {{from: "08:00", to: "18:00"}} (and days:), or week:')
    tz, week, fixed, yearly = _zone(ctx, c, path), _week(ctx, c, path), _holidays(ctx, c, path), frozenset()
    if fixed is not None:
        fixed, yearly = fixed
        fixed |= _country(ctx, c, path)
    if tz is None or week is None or fixed is None:
        return None
    if not any(week):
        ctx.report(at, f"{path}: the calendar is never open")
        return None
    return BusinessCalendar(name, tz, week, frozenset(fixed), frozenset(yearly), description)


def _zone(ctx: CalendarCtx, c: YDict, path: str) -> str | None:
    tz = ctx.string(c, "timezone", path, "UTC")
    try:
        ZoneInfo(tz or "")
        return tz
    except (ZoneInfoNotFoundError, ValueError):
        ctx.report(c.line_of("timezone"), f"{path}.timezone: unknown time zone {tz!r} "
                                          "(use an IANA name such as Europe/Berlin)")
        return None


def _week(ctx: CalendarCtx, c: YDict, path: str) -> tuple[tuple[Interval, ...], ...] | None:
    try:
        days = parse_days(c.get("days", list(_WEEKDAYS[:5])), f"{path}.days")
    except Invalid as exc:
        ctx.report(c.line_of("days"), exc.reason)
        return None
    hours = _intervals(ctx, c["hours"], f"{path}.hours", c.line_of("hours")) if "hours" in c else ()
    week = [hours if d in days else () for d in range(7)]
    ok = hours is not None
    if "week" in c:
        table = ctx.mapping(c["week"], f"{path}.week", c.line_of("week"))
        for day, value in (table or {}).items():
            at = table.line_of(day)
            if day not in _WEEKDAYS:
                ctx.report(at, f"{path}.week: {day!r} is not a weekday ({', '.join(_WEEKDAYS)})"
                               f"{did_you_mean(day, _WEEKDAYS)}")
                ok = False
                continue
            got = _intervals(ctx, value, f"{path}.week.{day}", at)
            ok = ok and got is not None
            week[_WEEKDAYS.index(day)] = got or ()
        ok = ok and table is not None
    return tuple(week) if ok else None


def _intervals(ctx: CalendarCtx, value: Any, path: str, line: int) -> tuple[Interval, ...] | None:
    """{from, to} or a list of them ([] = closed), sorted, not overlapping, not wrapping."""
    items = [value] if isinstance(value, dict) else value
    if not isinstance(items, list):
        ctx.report(line, f'{path}: expected {{from: "HH:MM", to: "HH:MM"}} or a list of them, got {type_name(value)}')
        return None
    out: list[Interval] = []
    for i, item in enumerate(items):
        at = line_of(items, i) if isinstance(items, YList) else line
        if not isinstance(item, dict) or set(item) != {"from", "to"}:
            ctx.report(at, f'{path}: expected {{from: "HH:MM", to: "HH:MM"}}, got {type_name(item)}')
            return None
        try:
            start, end = parse_clock(item["from"], f"{path}.from"), parse_clock(item["to"], f"{path}.to")
        except Invalid as exc:
            ctx.report(at, exc.reason)
            return None
        if start >= end:
            ctx.report(at, f"{path}: from {item['from']} is not before to {item['to']} (an interval cannot "
                           "wrap past midnight: write one ending \"24:00\" and one starting \"00:00\" the next day)")
            return None
        out.append((start, end))
    out.sort()
    for (_, end), (start, _) in zip(out, out[1:]):
        if start < end:
            ctx.report(line, f"{path}: intervals overlap at {start // 60:02d}:{start % 60:02d}")
            return None
    return tuple(out)


def _holidays(ctx: CalendarCtx, c: YDict, path: str) -> tuple[set[date], set[tuple[int, int]]] | None:
    """Fixed dates (2026-12-24) and yearly month-days ("12-25") from `holidays:`."""
    value = c.get("holidays", [])
    if not isinstance(value, list):
        ctx.report(c.line_of("holidays"), f"{path}.holidays: expected a list of dates, got {type_name(value)}")
        return None
    fixed, yearly, ok = set(), set(), True
    for i, item in enumerate(value):
        at = line_of(value, i) if isinstance(value, YList) else c.line_of("holidays")
        m = _MONTH_DAY.match(item) if isinstance(item, str) else None
        try:
            if isinstance(item, date) and not isinstance(item, datetime):
                fixed.add(item)
            elif m:
                date(2000, int(m.group(1)), int(m.group(2)))          # 2000: 02-29 is allowed
                yearly.add((int(m.group(1)), int(m.group(2))))
            else:
                fixed.add(date.fromisoformat(str(item)))
        except (ValueError, TypeError):
            ctx.report(at, f"{path}.holidays[{i}]: {item!r} is not a date YYYY-MM-DD or a yearly MM-DD")
            ok = False
    return (fixed, yearly) if ok else None


def country_codes() -> list[str]:
    """The keys of holidays.list_supported_countries() (ISO codes and aliases), without what
    that call does besides: import every country's module for its subdivisions (a tenth of
    a second at each rules load, e.g. each `helpdesk show`; issue 16). The registry's list
    where this holidays version has it, else that call."""
    loader = getattr(getattr(holidays, "registry", None), "EntityLoader", None)
    codes = getattr(loader, "get_country_codes", None)
    return list(codes(include_aliases=True)) if codes else list(holidays.list_supported_countries())


def _country(ctx: CalendarCtx, c: YDict, path: str) -> set[date]:
    """National (and regional) holidays from the `holidays` package, as fixed dates."""
    if "country" not in c:
        if "subdivision" in c:
            ctx.report(c.line_of("subdivision"), f"{path}.subdivision: needs country:")
        return set()
    code, sub = ctx.string(c, "country", path), ctx.string(c, "subdivision", path)
    supported = country_codes()
    if code not in supported:
        ctx.report(c.line_of("country"), f"{path}.country: {code!r} is not a supported ISO 3166 country code"
                                         f"{did_you_mean(code, supported)}")
        return set()
    subdivisions = list(getattr(holidays, code).subdivisions)
    if sub is not None and sub not in subdivisions:
        ctx.report(c.line_of("subdivision"), f"{path}.subdivision: {sub!r} is not a subdivision of {code}; "
                                             f"known: {', '.join(subdivisions)}")
        return set()
    if (code, sub) not in ctx.national:
        ctx.national[(code, sub)] = set(holidays.country_holidays(code, subdiv=sub, years=COUNTRY_YEARS))
    return ctx.national[(code, sub)]


def load_calendars(node: Any, file: str, line: int, problems: Problems) -> dict[str, BusinessCalendar]:
    """The calendars declared under `calendars:` (those that failed are reported, left out)."""
    ctx = CalendarCtx(problems, file)
    table = ctx.mapping(node, "calendars", line)
    out: dict[str, BusinessCalendar] = {}
    for name, body in (table or {}).items():
        at = table.line_of(name)
        if not isinstance(name, str) or not _NAME.match(name):
            ctx.report(at, f"calendar name {name!r}: use letters, digits, '-', '_' or '.' (at most 64)")
            continue
        found = parse_calendar(ctx, name, body, at)
        if found is not None:
            out[name] = found
    return out
