"""Collecting load problems and checking the shape of YAML mappings.

Loading never stops at the first mistake: every check appends a `file:line: reason`
line (with `rule 'name': ` when inside a rule) to a `Problems` list, and the loader
raises one `RulesError` carrying them all. `check_keys` refuses unknown keys with a
"did you mean" suggestion and reports missing required ones.
"""
from __future__ import annotations

from typing import Any, Iterable

from daemon.rules.registry import did_you_mean
from daemon.rules.textmatch import type_name
from daemon.rules.yamlload import YDict, YList


class Problems:
    """An ordered list of `file:line: reason` lines."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, file: str, line: int, reason: str, rule: str | None = None) -> None:
        where = f"rule {rule!r}: " if rule is not None else ""
        self.items.append(f"{file}:{line}: {where}{reason}")

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items)


def line_of(node: Any, key: Any = None) -> int:
    if key is not None and isinstance(node, (YDict, YList)):
        return node.line_of(key)
    return getattr(node, "line", 1)


def check_keys(node: YDict, allowed: Iterable[str], path: str, file: str, problems: Problems, *,
               required: Iterable[str] = (), rule: str | None = None) -> bool:
    """Report unknown and missing keys of `node`; True when there were none."""
    allowed = tuple(allowed)
    ok = True
    for key in node:
        if key not in allowed:
            shown = key if isinstance(key, str) else f"{key!r} ({type_name(key)})"
            problems.add(file, node.line_of(key),
                         f"{path}: unknown key {shown!r}{did_you_mean(key, allowed)}; "
                         f"allowed: {', '.join(allowed)}", rule)
            ok = False
    for key in required:
        if key not in node:
            problems.add(file, node.line, f"{path}: missing required key {key!r}", rule)
            ok = False
    return ok


def expect_mapping(value: Any, path: str, file: str, line: int, problems: Problems,
                   rule: str | None = None) -> YDict | None:
    if isinstance(value, YDict):
        return value
    problems.add(file, line, f"{path}: expected a mapping, got {type_name(value)}", rule)
    return None


def expect_names(value: Any, path: str, file: str, line: int, problems: Problems, *,
                 allow_empty: bool = False) -> tuple[str, ...]:
    """A list of unique non-empty strings (reported, and skipped, when wrong)."""
    if not isinstance(value, list) or (not value and not allow_empty):
        problems.add(file, line, f"{path}: expected a {'' if allow_empty else 'non-empty '}list of names, "
                                 f"got {type_name(value)}")
        return ()
    out: list[str] = []
    for i, item in enumerate(value):
        at = line_of(value, i)
        if not isinstance(item, str) or not item.strip():
            problems.add(file, at, f"{path}[{i}]: expected a name, got {type_name(item)}")
        elif item in out:
            problems.add(file, at, f"{path}[{i}]: {item!r} is listed twice")
        else:
            out.append(item)
    return tuple(out)


def expect_str(node: YDict, key: str, path: str, file: str, problems: Problems, *,
               default: str | None = None, rule: str | None = None) -> str | None:
    if key not in node:
        return default
    value = node[key]
    if isinstance(value, str):
        return value
    problems.add(file, node.line_of(key), f"{path}.{key}: expected a string, got {type_name(value)}", rule)
    return default
