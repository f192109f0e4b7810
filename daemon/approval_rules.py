"""Loading rules/approvals.yaml (edge): who approves change requests, validated and hot-reloaded.

`load_approvals(rules_dir, ruleset)` reads the optional file and returns the pure
`ApprovalRules` of daemon.pipeline.approvals, or raises one RulesError listing every problem
as `file:line: reason` (unknown keys, an address that is not one, a quorum larger than the
board, a service or queue the rule set does not declare, a bad duration). `LiveApprovals`
keeps the current set: it reloads when the file changes (checked when read, at most once a
second) or on SIGHUP, builds the new set completely and swaps it in with one assignment; on
error the last good set stays live and the problems are logged. The shape is documented in
the shipped rules/approvals.yaml.
"""
from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

from daemon.errors import RulesError
from daemon.pipeline.approvals import NO_APPROVALS, ApprovalPolicy, ApprovalRules, Approver, Stage
from daemon.rules.yamlload import YamlProblem, load_yaml

log = logging.getLogger(__name__)
APPROVALS_FILE = "approvals.yaml"
TOP_KEYS = ("settings", "default", "services", "queues")
POLICY_KEYS = ("approvers", "cab", "then", "remind_after", "expire_after")
_DURATION = re.compile(r"^\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s)?\s*$")
_EMAIL = re.compile(r"^[^\s@<>\"',;]+@[^\s@<>\"',;]+\.[^\s@<>\"',;]+$")
DEFAULT_REMIND, DEFAULT_EXPIRE = timedelta(hours=24), timedelta(days=5)


class _Ctx:
    def __init__(self, path: Path):
        self.path, self.problems = path, []

    def report(self, line: int, reason: str) -> None:
        self.problems.append(f"{self.path}:{line}: {reason}")


def _line(node: Any, key: Any, default: int = 1) -> int:
    return node.line_of(key) if hasattr(node, "line_of") else getattr(node, "line", default)


def duration(value: Any) -> timedelta | None:
    """'24h', '5d', '1d12h', '30m', '90s' (wall-clock time), else None."""
    m = _DURATION.match(value) if isinstance(value, str) else None
    if not m or not any(m.groups()):
        return None
    d, h, mi, s = (int(g or 0) for g in m.groups())
    got = timedelta(days=d, hours=h, minutes=mi, seconds=s)
    return got if got > timedelta(0) else None


def _approvers(ctx: _Ctx, node: Any, line: int, what: str) -> tuple[Approver, ...]:
    if not isinstance(node, list) or not node:
        ctx.report(line, f"{what}: expected a non-empty list of addresses")
        return ()
    out: list[Approver] = []
    for i, item in enumerate(node):
        at = _line(node, i, line)
        email, name = (item, "") if isinstance(item, str) else \
            ((item.get("email"), item.get("name") or "") if isinstance(item, dict) else (None, ""))
        if isinstance(item, dict) and set(item) - {"email", "name"}:
            ctx.report(at, f"{what}: unknown key(s) {', '.join(sorted(map(str, set(item) - {'email', 'name'})))}"
                           f" (expected email, name)")
        if not isinstance(email, str) or not _EMAIL.match(email.strip()):
            ctx.report(at, f"{what}: {email!r} is not an email address")
            continue
        if any(a.email == email.strip().lower() for a in out):
            ctx.report(at, f"{what}: {email} is listed twice")
            continue
        out.append(Approver(email.strip().lower(), str(name)))
    return tuple(out)


def _stage(ctx: _Ctx, node: dict, line: int, where: str) -> Stage | None:
    has = [k for k in ("approvers", "cab") if k in node]
    if len(has) != 1:
        ctx.report(line, f"{where}: give exactly one of 'approvers' (all must approve) or 'cab' (a board with "
                         f"a quorum)")
        return None
    if has[0] == "approvers":
        people = _approvers(ctx, node["approvers"], _line(node, "approvers", line), f"{where}.approvers")
        return Stage("approvers", people, len(people)) if people else None
    cab, at = node["cab"], _line(node, "cab", line)
    if not isinstance(cab, dict) or set(cab) - {"members", "quorum"} or "members" not in cab:
        ctx.report(at, f"{where}.cab: expected a mapping with 'members' (a list) and 'quorum' (any, all or a number)")
        return None
    people = _approvers(ctx, cab["members"], _line(cab, "members", at), f"{where}.cab.members")
    quorum = _quorum(ctx, cab.get("quorum", "all"), _line(cab, "quorum", at), len(people), where)
    return Stage("cab", people, quorum) if people and quorum else None


def _quorum(ctx: _Ctx, value: Any, line: int, members: int, where: str) -> int | None:
    if value == "any":
        return 1
    if value == "all":
        return members
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= max(members, 1):
        return value
    ctx.report(line, f"{where}.cab.quorum: expected any, all or a number from 1 to {members} (the members), "
                     f"got {value!r}")
    return None


def _policy(ctx: _Ctx, name: str, node: Any, line: int, settings: dict) -> ApprovalPolicy | None:
    if not isinstance(node, dict):
        ctx.report(line, f"{name}: expected a mapping with 'approvers' or 'cab'")
        return None
    for key in node:
        if key not in POLICY_KEYS:
            ctx.report(_line(node, key, line), f"{name}: unknown key {key!r} (expected {', '.join(POLICY_KEYS)})")
    first = _stage(ctx, node, line, name)
    stages = [first]
    if "then" in node:
        then, at = node["then"], _line(node, "then", line)
        if not isinstance(then, dict) or set(then) - {"approvers", "cab"}:
            ctx.report(at, f"{name}.then: expected a mapping with 'approvers' or 'cab' (the second stage)")
            stages.append(None)
        else:
            stages.append(_stage(ctx, then, at, f"{name}.then"))
    times = {k: _time(ctx, node.get(k, settings[k]), _line(node, k, line), f"{name}.{k}") for k in settings}
    if None in stages or None in times.values():
        return None
    if times["remind_after"] >= times["expire_after"]:
        ctx.report(line, f"{name}: remind_after must be shorter than expire_after")
        return None
    return ApprovalPolicy(name, tuple(stages), times["remind_after"], times["expire_after"])


def _time(ctx: _Ctx, value: Any, line: int, what: str) -> timedelta | None:
    if isinstance(value, timedelta):
        return value
    got = duration(value)
    if got is None:
        ctx.report(line, f"{what}: expected a duration such as 24h, 5d or 1d12h, got {value!r}")
    return got


def _section(ctx: _Ctx, doc: dict, key: str, known, settings: dict, kind: str) -> dict[str, ApprovalPolicy]:
    node = doc.get(key)
    if node is None:
        return {}
    if not isinstance(node, dict):
        ctx.report(_line(doc, key), f"{key}: expected a mapping of {kind} name to policy")
        return {}
    out = {}
    for name, policy in node.items():
        at = _line(node, name)
        if known is not None and name not in known:
            ctx.report(at, f"{key}: unknown {kind} {name!r} (declared: {', '.join(sorted(known)) or 'none'})")
            continue
        got = _policy(ctx, f"{key}.{name}", policy, at, settings)
        if got is not None:
            out[str(name)] = got
    return out


def load_approvals(rules_dir: str | Path, ruleset=None) -> ApprovalRules:
    """rules_dir/approvals.yaml checked against `ruleset` (its queues and services);
    NO_APPROVALS when the file is absent. RulesError with every problem otherwise."""
    path = Path(rules_dir) / APPROVALS_FILE
    if not path.exists():
        return NO_APPROVALS
    ctx = _Ctx(path)
    try:
        doc, data = load_yaml(path)
    except YamlProblem as exc:
        raise RulesError(f"{path}:{exc.line}: {exc.reason}", [f"{path}:{exc.line}: {exc.reason}"]) from None
    doc = doc if doc is not None else {}
    if not isinstance(doc, dict):
        raise RulesError(f"{path}:1: expected a mapping", [f"{path}:1: expected a mapping"])
    for key in doc:
        if key not in TOP_KEYS:
            ctx.report(_line(doc, key), f"unknown key {key!r} (expected {', '.join(TOP_KEYS)})")
    settings = _settings(ctx, doc.get("settings"), _line(doc, "settings"))
    queues = getattr(ruleset, "queues", None)
    services = getattr(ruleset, "services", None)
    rules = ApprovalRules(_section(ctx, doc, "services", services, settings, "service"),
                          _section(ctx, doc, "queues", queues, settings, "queue"),
                          _policy(ctx, "default", doc["default"], _line(doc, "default"), settings)
                          if "default" in doc else None, hashlib.sha256(data).hexdigest()[:12])
    if ctx.problems:
        raise RulesError(f"{len(ctx.problems)} problem(s) in {path}", ctx.problems)
    return rules


def _settings(ctx: _Ctx, node: Any, line: int) -> dict:
    out: dict[str, Any] = {"remind_after": DEFAULT_REMIND, "expire_after": DEFAULT_EXPIRE}
    if node is None:
        return out
    if not isinstance(node, dict):
        ctx.report(line, "settings: expected a mapping with remind_after and expire_after")
        return out
    for key, value in node.items():
        if key not in out:
            ctx.report(_line(node, key, line), f"settings: unknown key {key!r} (expected remind_after, expire_after)")
            continue
        out[key] = _time(ctx, value, _line(node, key, line), f"settings.{key}") or out[key]
    return out


class LiveApprovals:
    """The current ApprovalRules of a process (see module docstring); `rules` gives the
    live rule set the file is checked against."""

    def __init__(self, rules_dir: str | Path, rules: Callable[[], Any] = lambda: None, check_every: float = 1.0):
        self.dir, self.rules, self.every = Path(rules_dir), rules, check_every
        self._lock = threading.Lock()
        self._seen = self._stat()
        self._checked = time.monotonic()
        self.approvals = load_approvals(self.dir, rules())
        self.last_problems: list[str] = []

    def _stat(self):
        try:
            st = (self.dir / APPROVALS_FILE).stat()
            return st.st_mtime_ns, st.st_size, st.st_ino
        except OSError:
            return None

    def current(self) -> ApprovalRules:
        now = time.monotonic()
        if now - self._checked >= self.every:
            self._checked = now
            if self._stat() != self._seen:
                self.reload()
        return self.approvals

    def reload(self) -> list[str]:
        with self._lock:
            self._seen = self._stat()
            try:
                fresh = load_approvals(self.dir, self.rules())
            except RulesError as exc:
                self.last_problems = list(exc.problems)
                log.error("approvals reload failed; keeping version %s. %d problem(s):\n%s",
                          self.approvals.version or "-", len(exc.problems), "\n".join(exc.problems))
                return self.last_problems
            self.last_problems = []
            if fresh.version != self.approvals.version:
                self.approvals = fresh
                log.info("approvals reloaded: version %s", fresh.version or "(no file)")
            return []


def approval_problems(app) -> list[str]:
    """The last failed reload's problems of the app's approvals.yaml (status, /healthz)."""
    live = getattr(getattr(getattr(app, "mail", None), "approvals", None), "live", None)
    return list(getattr(live, "last_problems", []) or [])
