"""Macros: canned answers an agent sends with `#macro NAME` (or `helpdesk reply --macro NAME`).

`rules/macros.yaml` (optional) lists them:

    macros:
      - name: password-reset            # letters, digits, - _ .
        text: |                         # a Jinja2 template, the mail templates' sandbox
          Hello, this is {{ agent_name }} about {{ ref }} ...
        set:                            # optional field changes, as the agent's commands
          status: pending               # status priority queue type assign
          tags: [access]                # added (a leading - removes)

`load_macros` reads and validates the file (names unique, every template compiles, every
change is a valid command for the rule set); `expand` (pure) turns the `#macro` lines of an
agent's parsed commands into the macro's command lines and puts the rendered text before
the agent's own text; an unknown name is refused with the list of macros. `LiveMacros`
reloads when the file changes (checked when read, at most once a second) or on SIGHUP,
building the new set completely and swapping it in with one assignment; on error the last
good set stays live and the problem is logged.
"""
from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import jinja2

from daemon.errors import RulesError
from daemon.pipeline.commands import Parsed, Refusal, Vocabulary, parse_commands, validate
from daemon.templates import _Sandbox
from daemon.rules.yamlload import YamlProblem, load_yaml
from daemon.pipeline.agent import roster_of

log = logging.getLogger(__name__)
MACROS_FILE = "macros.yaml"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_FIELDS = ("status", "priority", "queue", "type", "assign")


@dataclass(frozen=True)
class Macro:
    """One canned answer: its name, the text template's source and the command lines
    (without `#`) its changes stand for."""

    name: str
    text: str
    commands: tuple[str, ...]
    line: int = 1


@dataclass(frozen=True)
class Macros:
    """The loaded macros by name, with their compiled templates."""

    by_name: Mapping[str, Macro]
    templates: Mapping[str, Any]
    version: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self.by_name))


NO_MACROS = Macros({}, {})


def _env() -> jinja2.Environment:
    return _Sandbox(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, trim_blocks=True,
                    lstrip_blocks=True, autoescape=False)


def load_macros(rules_dir: str | Path, vocab: Vocabulary | None = None) -> Macros:
    """The macros of `rules_dir/macros.yaml` (none when the file is absent); RulesError
    listing every problem as `file:line: reason`."""
    path = Path(rules_dir) / MACROS_FILE
    if not path.exists():
        return NO_MACROS
    try:
        doc, data = load_yaml(path)
    except YamlProblem as exc:
        raise RulesError(f"{path}:{exc.line}: {exc.reason}", [f"{path}:{exc.line}: {exc.reason}"]) from None
    problems: list[str] = []
    items = doc.get("macros") if isinstance(doc, dict) else None
    if doc is not None and not isinstance(items, list):
        problems.append(f"{path}:1: expected a mapping with a list under 'macros'")
        items = []
    env, by_name, templates = _env(), {}, {}
    for i, item in enumerate(items or []):
        line = items.line_of(i) if hasattr(items, "line_of") else 1
        macro = _one(item, line, path, problems, vocab)
        if macro is None:
            continue
        if macro.name in by_name:
            problems.append(f"{path}:{line}: macro {macro.name!r} is defined twice (first on line "
                            f"{by_name[macro.name].line})")
            continue
        try:
            templates[macro.name] = env.from_string(macro.text)
        except jinja2.TemplateSyntaxError as exc:
            at = item.line_of("text") if hasattr(item, "line_of") else line
            problems.append(f"{path}:{at + (exc.lineno or 1) - 1}: macro {macro.name!r}: template: {exc.message}")
            continue
        by_name[macro.name] = macro
    if problems:
        raise RulesError(problems[0], problems)
    return Macros(by_name, templates, hashlib.sha256(data).hexdigest()[:16])


def _one(item: Any, line: int, path: Path, problems: list[str], vocab: Vocabulary | None) -> Macro | None:
    if not isinstance(item, dict):
        problems.append(f"{path}:{line}: a macro is a mapping with name, text and optional set")
        return None
    at = item.line_of if hasattr(item, "line_of") else (lambda _k: line)
    unknown = sorted(set(item) - {"name", "text", "set"})
    if unknown:
        problems.append(f"{path}:{at(unknown[0])}: {unknown[0]}: unknown key (known: name, text, set)")
    name, text = item.get("name"), item.get("text")
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(f"{path}:{at('name')}: name: letters, digits, - _ . (got {name!r})")
        return None
    if not isinstance(text, str) or not text.strip():
        problems.append(f"{path}:{at('text')}: macro {name!r}: text is required")
        return None
    commands = _changes(item.get("set") or {}, name, path, at("set"), problems, vocab)
    return Macro(name, text, commands, line)


def _changes(changes: Any, name: str, path: Path, line: int, problems: list[str],
             vocab: Vocabulary | None) -> tuple[str, ...]:
    if not isinstance(changes, dict):
        problems.append(f"{path}:{line}: macro {name!r}: set is a mapping of {', '.join(_FIELDS)}, tags")
        return ()
    out: list[str] = []
    for key, value in changes.items():
        if key == "tags":
            tags = value if isinstance(value, list) else [value]
            out += [f"tag {t}" for t in tags]
        elif key in _FIELDS:
            out.append(f"{key} {value}")
        else:
            problems.append(f"{path}:{line}: macro {name!r}: set.{key}: unknown field (known: "
                            f"{', '.join(_FIELDS)}, tags)")
    if vocab is not None:
        parsed = parse_commands("\n".join(f"#{c}" for c in out))
        for r in validate(parsed, vocab, sender="macro@invalid", ticket_id=0).refused:
            problems.append(f"{path}:{line}: macro {name!r}: {r.line}: {r.reason}")
    return tuple(out)


# --------------------------------------------------------------------------- in an agent's mail
def expand(parsed: Parsed, macros: Macros, context: Mapping[str, Any]) -> tuple[Parsed, tuple[Refusal, ...]]:
    """`parsed` with each `#macro NAME` line replaced by the macro's command lines and its
    rendered text put before the agent's own text; unknown names and texts that do not
    render are refused (the list of macros named)."""
    lines, texts, refused = [], [], []
    for line, name, arg in parsed.lines:
        if name != "macro":
            lines.append((line, name, arg))
            continue
        macro = macros.by_name.get(arg.strip())
        if macro is None:
            known = ", ".join(macros.names) or "none (rules/macros.yaml)"
            refused.append(Refusal(line, f"unknown macro {arg.strip()!r}; macros: {known}"))
            continue
        try:
            texts.append(macros.templates[macro.name].render(**context).strip())
        except Exception as exc:              # noqa: BLE001 - a template error is named to the agent
            refused.append(Refusal(line, f"macro {macro.name!r} did not render: {exc.__class__.__name__}: {exc}"))
            continue
        lines += command_lines(Parsed(((line, name, arg),), ""), macros).lines
    if not texts and not refused and len(lines) == len(parsed.lines):
        return parsed, ()
    body = "\n\n".join(t for t in (*texts, parsed.body.strip()) if t)
    return Parsed(tuple(lines), body), tuple(refused)


def command_lines(parsed: Parsed, macros: Macros | None) -> Parsed:
    """`parsed` with each known `#macro NAME` line replaced by the macro's command lines and
    nothing rendered: what the mail may change, known before its transaction locks the
    tickets (a macro's `link: HD-7` names HD-7 as the agent's own line would)."""
    if macros is None or not any(name == "macro" for _, name, _ in parsed.lines):
        return parsed
    lines = []
    for line, name, arg in parsed.lines:
        macro = macros.by_name.get(arg.strip()) if name == "macro" else None
        lines += [(f"#{c}", *(c.split(None, 1) + [""])[:2]) for c in macro.commands] if macro is not None \
            else [(line, name, arg)]
    return Parsed(tuple(lines), parsed.body)


def context_of(ticket, agent, prefix: str) -> dict[str, Any]:
    """What a macro's text may use: the ticket's ref, subject, status, priority, queue and
    requester, and the agent's name and address."""
    requester = ticket.requester or ""
    return {"ref": f"{prefix}-{ticket.id}", "subject": ticket.subject, "status": ticket.status,
            "priority": ticket.priority, "queue": ticket.queue, "requester": requester,
            "agent_name": agent.name or agent.email, "agent_email": agent.email}


class LiveMacros:
    """The current Macros of a process (see module docstring)."""

    def __init__(self, rules_dir: str | Path, vocab=None, check_every: float = 1.0):
        self.dir, self.vocab, self.every = Path(rules_dir), vocab, check_every
        self._lock = threading.Lock()
        self._seen = self._stat()
        self._checked = time.monotonic()
        self.macros = load_macros(self.dir, self._vocab())
        self.last_problems: list[str] = []

    def _vocab(self):
        return self.vocab() if callable(self.vocab) else self.vocab

    def _stat(self):
        try:
            st = (self.dir / MACROS_FILE).stat()
            return st.st_mtime_ns, st.st_size, st.st_ino
        except OSError:
            return None

    def current(self) -> Macros:
        now = time.monotonic()
        if now - self._checked >= self.every:
            self._checked = now
            if self._stat() != self._seen:
                self.reload()
        return self.macros

    def reload(self) -> list[str]:
        with self._lock:
            self._seen = self._stat()
            try:
                fresh = load_macros(self.dir, self._vocab())
            except RulesError as exc:
                self.last_problems = list(exc.problems)
                log.error("macros reload failed; keeping %d macro(s). %d problem(s):\n%s", len(self.macros.by_name),
                          len(exc.problems), "\n".join(exc.problems))
                return self.last_problems
            self.last_problems = []
            if fresh.version != self.macros.version:
                self.macros = fresh
                log.info("macros reloaded: %d macro(s)", len(fresh.by_name))
            return []


def vocabulary(rules, prefix: str) -> Vocabulary:
    """The command vocabulary of a rule set (what macro changes are checked against)."""
    return Vocabulary(frozenset(rules.queues), frozenset(rules.types), frozenset(rules.tags),
                      frozenset(roster_of(rules.queues)), tuple(rules.matrix.levels), prefix)


def with_macros(cmds, refused: tuple[Refusal, ...]):
    """Commands with the macro refusals first."""
    return replace(cmds, refused=refused + cmds.refused) if refused else cmds
