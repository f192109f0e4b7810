"""Text matchers for rule conditions, and the regex linter that keeps them linear.

A condition on text (subject, body, an address, a header...) takes a *matcher*:
  - a string or a list of strings: case-insensitive "contains any of";
  - `{contains: str | [str]}`, `{equals: str | [str]}` or `{matches: REGEX}`.
All comparisons are case-insensitive; the text is lower-cased once per message.
`compile_matcher` turns the YAML value into a function `text -> evidence | None` at load
time, so a bad or dangerous regex fails the load, never a message.

Python's `re` backtracks, so patterns that can take exponential time are refused:
nested variable-length quantifiers such as `(a+)+` or `(.*)*`, quantified alternations
whose branches can start with the same character such as `(a|a)*` or `(a|ab)+`,
backreferences, and anything longer than `MAX_PATTERN` characters.
"""
from __future__ import annotations

import re
import re._constants as C  # noqa: N812 - the stdlib's own name
import re._parser as P  # noqa: N812
from typing import Any, Callable

from daemon.rules.registry import Invalid, did_you_mean

MAX_PATTERN = 300
MAX_NEEDLES = 1000
Matcher = Callable[[str], "str | None"]

_REPEATS = {C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT}
_WILD = None                     # a "first character" set meaning: could be anything
_DIGITS = frozenset("0123456789")
_SPACE = frozenset(" \t\n\r\f\v")
_WORD = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
_CATEGORY = {C.CATEGORY_DIGIT: _DIGITS, C.CATEGORY_SPACE: _SPACE, C.CATEGORY_WORD: _WORD}


# ------------------------------------------------------------------ regex linter
def compile_regex(pattern: Any) -> re.Pattern[str]:
    """A case-insensitive compiled regex, or Invalid saying what is wrong with it."""
    if not isinstance(pattern, str):
        raise Invalid(f"a regex must be a string, got {type_name(pattern)}")
    if not pattern:
        raise Invalid("empty regex (it would match everything)")
    if len(pattern) > MAX_PATTERN:
        raise Invalid(f"regex is {len(pattern)} characters; the limit is {MAX_PATTERN}")
    try:
        tree = P.parse(pattern, re.IGNORECASE)
        compiled = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise Invalid(f"bad regex /{pattern}/: {exc}") from None
    danger = _lint(tree)
    if danger:
        raise Invalid(f"regex /{pattern}/ can take exponential time: {danger}; "
                      "rewrite it without nested or overlapping repetition")
    return compiled


def _lint(items) -> str | None:
    for op, av in items:
        if op == C.GROUPREF or op == C.GROUPREF_EXISTS:
            return "backreferences are not allowed"
        if op in _REPEATS:
            lo, hi, sub = av
            many = hi == C.MAXREPEAT or hi > 1
            if many and _has_variable_repeat(sub):
                return "a repeated group contains another variable-length repetition"
            if many:
                bad = _overlapping_branches(sub)
                if bad:
                    return bad
            found = _lint(sub)
        else:
            found = None
            for child in _subpatterns(op, av):
                found = _lint(child)
                if found:
                    break
        if found:
            return found
    return None


def _subpatterns(op, av) -> list:
    if op == C.SUBPATTERN:
        return [av[-1]]
    if op == C.BRANCH:
        return list(av[1])
    if op in (C.ASSERT, C.ASSERT_NOT):
        return [av[1]]
    if op == C.ATOMIC_GROUP:
        return [av]
    return []


def _has_variable_repeat(sub) -> bool:
    for op, av in sub:
        if op in _REPEATS and av[0] != av[1]:
            return True
        if op in _REPEATS and _has_variable_repeat(av[2]):
            return True
        if any(_has_variable_repeat(c) for c in _subpatterns(op, av)):
            return True
    return False


def _overlapping_branches(sub) -> str | None:
    """An alternation inside a repetition whose branches may start alike or match empty.

    (`re` factors common prefixes first, so `(a|a)*` arrives here as `a(?:|)*`.)"""
    for op, av in sub:
        if op == C.BRANCH:
            firsts = [_first(list(branch)) for branch in av[1]]
            for i, a in enumerate(firsts):
                for b in firsts[i + 1:]:
                    if a is _WILD or b is _WILD or a & b:
                        return "alternatives inside a repetition can match the same text"
        for child in _subpatterns(op, av):
            found = _overlapping_branches(child)
            if found:
                return found
    return None


def _first(items) -> frozenset[str] | None:
    """Characters the sequence can start with, or _WILD when unknown, empty or anything."""
    if not items:
        return _WILD
    op, av = items[0]
    if op == C.LITERAL:
        return frozenset(chr(av).lower())
    if op == C.IN:
        chars: set[str] = set()
        for kind, val in av:
            if kind == C.LITERAL:
                chars.add(chr(val).lower())
            elif kind == C.RANGE and val[1] - val[0] < 512:
                chars.update(chr(c).lower() for c in range(val[0], val[1] + 1))
            elif kind == C.CATEGORY and val in _CATEGORY:
                chars.update(_CATEGORY[val])
            else:
                return _WILD
        return frozenset(chars)
    if op == C.SUBPATTERN:
        return _first(list(av[-1]) + list(items[1:]))
    if op in _REPEATS and av[0] >= 1:
        return _first(list(av[2]))
    if op == C.BRANCH:
        sets = [_first(list(b)) for b in av[1]]
        return _WILD if any(s is _WILD for s in sets) else frozenset().union(*sets)
    return _WILD


# Letters whose case-insensitive match includes non-ASCII characters that lower() does not
# map to them (re._casefix: i ~ ı, s ~ ſ); a literal prefilter must not rely on them.
_PREFILTER_UNSAFE = frozenset("is")


def required_literal(pattern: str) -> str | None:
    """The longest plain run of ASCII characters every match must contain (lower-cased,
    at least 3 long), so a search on lower-cased text can be skipped when it is absent.
    Only top-level literals count: every item of the top-level sequence is mandatory (a
    top-level `a|b` is one BRANCH item; optional or repeated parts just end a run)."""
    best, run = "", ""
    for op, av in P.parse(pattern, re.IGNORECASE):
        ch = chr(av).lower() if op == C.LITERAL else ""
        if ch and ch.isascii() and ch not in _PREFILTER_UNSAFE:
            run += ch
            continue
        best, run = max(best, run, key=len), ""
    best = max(best, run, key=len)
    return best if len(best) >= 3 else None


# ------------------------------------------------------------------ matchers
def type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()}; quote it if you meant text)"
    return {str: "a string", int: "a number", float: "a number"}.get(
        type(value), "a mapping" if isinstance(value, dict) else "a list" if isinstance(value, list)
        else type(value).__name__)


def string_list(value: Any, what: str = "value", *, lower: bool = True) -> tuple[str, ...]:
    """A string or list of non-empty strings, as a tuple (lower-cased by default)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise Invalid(f"{what}: expected a string or a non-empty list of strings, got {type_name(value)}")
    if len(items) > MAX_NEEDLES:
        raise Invalid(f"{what}: more than {MAX_NEEDLES} entries")
    out = []
    for item in items:
        if not isinstance(item, str) or not item:
            raise Invalid(f"{what}: expected non-empty strings, got {type_name(item)}")
        out.append(item.lower() if lower else item)
    return tuple(out)


def _show(needles: tuple[str, ...]) -> str:
    return repr(needles[0]) if len(needles) == 1 else "any of " + ", ".join(repr(n) for n in needles[:8]) + (
        ", ..." if len(needles) > 8 else "")


_OPS = ("contains", "equals", "matches")


def compile_matcher(spec: Any) -> tuple[Matcher, str]:
    """(function text -> evidence or None, description). `text` is lower-cased; the
    description is a verb phrase in the infinitive ("contain 'x'", "match /re/") so callers
    can say "subject does not ..." or "recipients: none ..."."""
    if isinstance(spec, dict):
        ops = [k for k in spec if k in _OPS]
        extra = [k for k in spec if k not in _OPS]
        if extra:
            raise Invalid(f"unknown key {extra[0]!r}{did_you_mean(extra[0], _OPS)}; "
                          "a text test is one of contains, equals, matches")
        if len(ops) != 1:
            raise Invalid("give exactly one of contains, equals, matches")
        op = ops[0]
        arg = spec[op]
    else:
        op, arg = "contains", spec
    if op == "matches":
        rx = compile_regex(arg)
        must = required_literal(arg) or ""              # "" is in every text: no prefilter

        def match_regex(text: str) -> str | None:
            if must not in text:
                return None
            m = rx.search(text)
            return None if m is None else f"matches /{rx.pattern}/ ({m.group(0)[:60]!r})"
        return match_regex, f"match /{rx.pattern}/"
    needles = string_list(arg, op)
    if op == "equals":
        wanted = frozenset(needles)
        desc = f"equal {_show(needles)}"

        def match_equals(text: str) -> str | None:
            return f"is {text!r}" if text in wanted else None
        return match_equals, desc

    def match_contains(text: str) -> str | None:
        for n in needles:
            if n in text:
                return f"contains {n!r}"
        return None
    return match_contains, f"contain {_show(needles)}"
