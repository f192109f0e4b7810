"""Rule conditions: the `when:` vocabulary, one registered function per YAML key.

Each function gets the key's YAML argument and the load context, checks and compiles
the argument, and returns a `Check`: `facts -> (matched, reason)`. Reasons for a miss
are built at load time, so trying a rule that misses costs no formatting. A `when:`
mapping with several keys needs all of them; `any`, `all` and `not` combine conditions.
Text tests take a matcher (see `textmatch`): a string or list means "contains any of".
"""
from __future__ import annotations

import fnmatch
import re
from typing import Any, Callable

from daemon.pipeline.facts import DAYS, Facts, within
from daemon.pipeline.ruleset import Check
from daemon.rules.registry import Invalid, Registry, Reported, did_you_mean
from daemon.rules.textmatch import compile_matcher, string_list, type_name

CONDITIONS: Registry[Callable[[Any, Any], Check]] = Registry("condition")
condition = CONDITIONS.register

MACHINE_KINDS = ("human", "auto_reply", "auto_generated", "bulk", "list", "bounce", "feedback", "loop")
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


# ------------------------------------------------------------------ combinators
@condition("all")
def all_of(arg: Any, ctx) -> Check:
    """Every listed condition matches."""
    return combine_all(_condition_list(arg, ctx, "all"))


@condition("any")
def any_of(arg: Any, ctx) -> Check:
    """At least one listed condition matches."""
    checks = _condition_list(arg, ctx, "any")

    def check(f: Facts) -> tuple[bool, str]:
        whys = []
        for c in checks:
            ok, why = c(f)
            if ok:
                return True, why
            whys.append(why)
        return False, "none of: " + "; ".join(whys)
    return check


@condition("not")
def not_(arg: Any, ctx) -> Check:
    """The condition (a mapping, all of its keys) does not match."""
    inner = ctx.compile_when(arg, "not")

    def check(f: Facts) -> tuple[bool, str]:
        ok, why = inner(f)
        return (not ok), f"not ({why})"
    return check


def combine_all(checks: list[Check]) -> Check:
    if len(checks) == 1:
        return checks[0]

    def check(f: Facts) -> tuple[bool, str]:
        whys = []
        for c in checks:
            ok, why = c(f)
            if not ok:
                return False, why
            whys.append(why)
        return True, " and ".join(whys)
    return check


def _condition_list(arg: Any, ctx, key: str) -> list[Check]:
    if not isinstance(arg, list) or not arg:
        raise Invalid(f"{key}: expected a non-empty list of conditions, got {type_name(arg)}")
    checks, failed = [], False
    for i, item in enumerate(arg):
        try:
            checks.append(ctx.compile_when(item, f"{key}[{i}]", line=arg.line_of(i)))
        except Reported:
            failed = True
    if failed:
        raise Reported()
    return checks


# ------------------------------------------------------------------ text fields
def _text(field: str, label: str) -> Callable[[Any, Any], Check]:
    def compile_(arg: Any, ctx) -> Check:
        match, desc = compile_matcher(arg)
        miss = (False, f"{label} does not {desc}")

        def check(f: Facts) -> tuple[bool, str]:
            ev = match(getattr(f, field))
            return miss if ev is None else (True, f"{label} {ev}")
        return check
    compile_.__doc__ = f"The {label} (lower-cased) passes a text test."
    return compile_


def _text_any(field: str, label: str) -> Callable[[Any, Any], Check]:
    def compile_(arg: Any, ctx) -> Check:
        match, desc = compile_matcher(arg)
        miss = (False, f"{label}s: none {desc}")

        def check(f: Facts) -> tuple[bool, str]:
            for value in getattr(f, field):
                ev = match(value)
                if ev is not None:
                    return True, f"{label} {value!r} {ev}"
            return miss
        return check
    compile_.__doc__ = f"Any {label} passes a text test."
    return compile_


condition("subject")(_text("subject", "subject"))
condition("body")(_text("body", "body"))
condition("from")(_text("sender", "sender"))
condition("to")(_text_any("recipients", "recipient"))
condition("plus")(_text_any("plus_details", "plus-address detail"))


@condition("from_domain")
def from_domain(arg: Any, ctx) -> Check:
    """The sender's domain is one of these, or a subdomain of one."""
    domains = tuple(d.lstrip("@.") for d in string_list(arg, "from_domain"))
    suffixes = tuple("." + d for d in domains)
    miss = (False, f"sender domain not in {list(domains)}")

    def check(f: Facts) -> tuple[bool, str]:
        d = f.sender_domain
        if d in domains or d.endswith(suffixes):
            return True, f"sender domain is {d!r}"
        return miss
    return check


@condition("header")
def header(arg: Any, ctx) -> Check:
    """`{name: X-Foo, <text test>}` on any value of the header, or `{name: X-Foo, present: bool}`."""
    if not isinstance(arg, dict) or not isinstance(arg.get("name"), str) or not arg.get("name"):
        raise Invalid(f"header: expected a mapping with 'name' and a test, got {type_name(arg)}")
    name = arg["name"].lower()
    rest = {k: v for k, v in arg.items() if k != "name"}
    if "present" in rest:
        want = rest.pop("present")
        if not isinstance(want, bool) or rest:
            raise Invalid("header: 'present' takes true or false, and no other test")
        hit, miss = (True, f"header {arg['name']} {'present' if want else 'absent'}"), \
            (False, f"header {arg['name']} {'absent' if want else 'present'}")
        return lambda f: hit if (name in f.headers) == want else miss
    if not rest:
        raise Invalid("header: add a test (contains, equals, matches or present)")
    match, desc = compile_matcher(rest)
    miss = (False, f"header {arg['name']}: none {desc}")

    def check(f: Facts) -> tuple[bool, str]:
        for value in f.headers.get(name, ()):
            ev = match(value)
            if ev is not None:
                return True, f"header {arg['name']} {ev}"
        return miss
    return check


# ------------------------------------------------------------------ attachments, machine, language
def _bool(arg: Any, key: str) -> bool:
    if not isinstance(arg, bool):
        raise Invalid(f"{key}: expected true or false, got {type_name(arg)}")
    return arg


@condition("has_attachment")
def has_attachment(arg: Any, ctx) -> Check:
    """The mail has (true) or has no (false) attached file; inline images do not count."""
    want = _bool(arg, "has_attachment")
    hit, miss = (True, f"has_attachment is {str(want).lower()}"), (False, f"has_attachment is {str(not want).lower()}")
    return lambda f: hit if bool(f.attachments) == want else miss


@condition("attachment_type")
def attachment_type(arg: Any, ctx) -> Check:
    """An attachment's content type matches one of these (`image/*` globs allowed)."""
    patterns = string_list(arg, "attachment_type")
    for p in patterns:
        if "/" not in p:
            raise Invalid(f"attachment_type: {p!r} is not a content type such as application/pdf or image/*")
    miss = (False, f"no attachment of type {list(patterns)}")

    def check(f: Facts) -> tuple[bool, str]:
        for filename, ctype in f.attachments:
            for p in patterns:
                if fnmatch.fnmatchcase(ctype, p):
                    return True, f"attachment {filename!r} is {ctype}"
        return miss
    return check


@condition("attachment_name")
def attachment_name(arg: Any, ctx) -> Check:
    """An attachment's file name passes a text test."""
    match, desc = compile_matcher(arg)
    miss = (False, f"attachment names: none {desc}")

    def check(f: Facts) -> tuple[bool, str]:
        for filename, _ in f.attachments:
            ev = match(filename)
            if ev is not None:
                return True, f"attachment name {ev}"
        return miss
    return check


@condition("machine")
def machine(arg: Any, ctx) -> Check:
    """The machine-mail verdict of parse is one of these kinds (human, bulk, list, ...)."""
    kinds = string_list(arg, "machine")
    for k in kinds:
        if k not in MACHINE_KINDS:
            raise Invalid(f"machine: unknown kind {k!r}{did_you_mean(k, MACHINE_KINDS)}; "
                          f"known: {', '.join(MACHINE_KINDS)}")
    wanted = frozenset(kinds)
    miss = (False, f"machine verdict not in {list(kinds)}")
    return lambda f: (True, f"machine verdict is {f.msg.machine.kind}") if f.msg.machine.kind in wanted else miss


@condition("language")
def language(arg: Any, ctx) -> Check:
    """The body's language (from parse, else a cheap guess) is one of these ISO codes."""
    codes = frozenset(string_list(arg, "language"))
    miss_text = f"language not in {sorted(codes)}"

    def check(f: Facts) -> tuple[bool, str]:
        lang = f.language
        return (True, f"language is {lang}") if lang in codes else (False, f"{miss_text} ({lang or 'unknown'})")
    return check


# ------------------------------------------------------------------ time
@condition("business_hours")
def business_hours(arg: Any, ctx) -> Check:
    """The routing time is (true) or is not (false) within the calendar in routing.yaml."""
    want = _bool(arg, "business_hours")
    hit, miss = (True, f"{'in' if want else 'outside'} business hours"), \
        (False, f"{'outside' if want else 'in'} business hours")
    return lambda f: hit if f.business_hours == want else miss


def parse_clock(value: Any, what: str) -> int:
    """'HH:MM' -> minutes since midnight ('24:00' allowed as the end of the day)."""
    if value == "24:00":
        return 24 * 60
    if not isinstance(value, str):
        hint = " (quote times: unquoted 18:00 is read by YAML as the number 1080)" if isinstance(value, int) else ""
        raise Invalid(f"{what}: expected a time such as \"08:30\", got {type_name(value)}{hint}")
    m = _TIME.match(value)
    if not m:
        raise Invalid(f"{what}: {value!r} is not a time HH:MM")
    return int(m.group(1)) * 60 + int(m.group(2))


_DAY_NAMES = {**{d: i for i, d in enumerate(DAYS)},
              **{d: i for i, d in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday",
                                             "saturday", "sunday"))}}


def parse_days(value: Any, what: str) -> frozenset[int]:
    """Weekday names (mon or monday...) -> set of 0=Monday..6=Sunday."""
    out = set()
    for n in string_list(value, what):
        if n not in _DAY_NAMES:
            raise Invalid(f"{what}: {n!r} is not a weekday (mon, tue, wed, thu, fri, sat, sun)")
        out.add(_DAY_NAMES[n])
    return frozenset(out)


@condition("time")
def time_(arg: Any, ctx) -> Check:
    """`{days: [...], from: "HH:MM", to: "HH:MM"}` in the calendar's timezone (any part optional)."""
    if not isinstance(arg, dict) or not arg:
        raise Invalid(f"time: expected a mapping with days, from, to; got {type_name(arg)}")
    ctx.check_keys(arg, ("days", "from", "to"), "time")
    days = parse_days(arg["days"], "time.days") if "days" in arg else None
    start = parse_clock(arg["from"], "time.from") if "from" in arg else 0
    end = parse_clock(arg["to"], "time.to") if "to" in arg else 24 * 60
    desc = f"{'/'.join(DAYS[d] for d in sorted(days)) if days is not None else 'any day'} " \
           f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"
    miss = (False, f"local time not within {desc}")

    def check(f: Facts) -> tuple[bool, str]:
        t = f.local_time
        if (days is None or t.weekday() in days) and within(t.hour * 60 + t.minute, start, end):
            return True, f"local time {t:%a %H:%M} within {desc}"
        return miss
    return check
