"""Registries by name: the vocabulary of rule conditions and actions.

A condition or action is a small function registered under its YAML key with a
decorator. It *compiles* its YAML argument at load time (checking types, compiling
regexes, resolving names against the declared queues, agents, services...) and returns
what evaluation runs per message. Registering the same name twice fails at import.
Compile functions signal a bad argument by raising `Invalid`; the loader adds the file,
line and rule name.
"""
from __future__ import annotations

import difflib
from typing import Any, Callable, Generic, Iterable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class Invalid(Exception):
    """A rule argument is wrong; `line` (1-based) when more precise than the key's line."""

    def __init__(self, reason: str, line: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.line = line


class Reported(Invalid):
    """The problems inside this argument were already recorded (nested conditions)."""

    def __init__(self) -> None:
        super().__init__("already reported")


def did_you_mean(word: Any, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or ''."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word.lower(), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Registry(Generic[F]):
    """Functions by unique name, with per-entry metadata (e.g. how an action merges)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, F] = {}
        self.meta: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[F], F]:
        def add(fn: F) -> F:
            if name in self._items:
                raise ValueError(f"duplicate {self.kind} {name!r}: {self._items[name].__module__}."
                                 f"{self._items[name].__qualname__} and {fn.__module__}.{fn.__qualname__}")
            self._items[name] = fn
            self.meta[name] = meta
            return fn
        return add

    def get(self, name: Any) -> F | None:
        return self._items.get(name) if isinstance(name, str) else None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
