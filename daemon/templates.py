"""The template loader (edge): read and validate the templates directory, reload it live.

Layout (see templates/README.md): `<audience>/<event>.txt.j2` plus an optional
`.html.j2`; per-language copies under `<lang>/<audience>/...`; per-queue overrides under
`queues/<queue>/<audience>/...` and `queues/<queue>/<lang>/<audience>/...`. A text
template may start with a `Subject: ...` line (then a blank line); without one the subject
is `[HD-42] original subject`, and the ticket tag is always kept in it.

Templates run in a sandbox that also refuses method calls (`x.format`, `x|attr(...)`),
with StrictUndefined; HTML templates autoescape. Ticket text only ever enters as
variables. `load_templates` reads every file once into memory, compiles each and renders
it with complete sample contexts (with and without the optional values), so syntax
errors, undefined names and sandbox violations fail the load as `file:line: reason`
(RulesError). `LiveTemplates.reload()` swaps in a new set with one assignment and keeps the
last good one on error. Rendering a loaded snapshot is pure and lives in
daemon.pipeline.render (`Templates`, `build_context`); MIME bytes in daemon.pipeline.compose.
"""
from __future__ import annotations

import hashlib
import logging
import re
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Mapping

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from daemon.errors import RulesError
from daemon.pipeline import csat, problems
from daemon.pipeline.render import (LANG_DIR, AUDIENCES, ESCALATION_EVENTS, ESCALATION_SAMPLE, NO_MESSAGE_EVENTS,
                                    REQUIRED, Templates, build_context, message_vars, quote, split_subject)

log = logging.getLogger(__name__)

_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SUFFIXES = (".txt.j2", ".html.j2")
_MAX_FILE = 256 * 1024


class _Sandbox(SandboxedEnvironment):
    """The Jinja2 sandbox, stricter: templates read values, they never call methods."""

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        return not callable(value) and super().is_safe_attribute(obj, attr, value)

    def wrap_str_format(self, value: Any) -> None:
        return None                  # no str.format either, not even the sandboxed one


class _SnapshotLoader(jinja2.BaseLoader):
    """Serves the sources read at load time, so a half-edited directory never leaks in."""

    def __init__(self, sources: Mapping[str, tuple[str, str]]):
        self.sources = sources

    def get_source(self, environment, template):
        if template not in self.sources:
            raise jinja2.TemplateNotFound(template)
        source, path = self.sources[template]
        return source, path, lambda: True

    def list_templates(self):
        return sorted(self.sources)


def template_names(path: Path) -> frozenset[str] | None:
    """Template names under `path` (`requester/ack` for requester/ack.txt.j2); None if none."""
    if not path.is_dir():
        return None
    names = {(p.relative_to(path).parent / p.name.split(".", 1)[0]).as_posix() for p in path.rglob("*.j2")}
    return frozenset(names) or None


def template_name(path: Path, root: Path) -> tuple[str | None, str]:
    """(name, '') for a well-placed template file, else (None, why not)."""
    rel = path.relative_to(root).as_posix()
    suffix = next((s for s in _SUFFIXES if rel.endswith(s)), None)
    if suffix is None:
        return None, "not a template (expected .txt.j2 or .html.j2)"
    parts = rel[:-len(suffix)].split("/")
    head = parts[:-2]
    if len(parts) < 2 or parts[-2] not in AUDIENCES or not _PART.match(parts[-1]):
        return None, (f"expected <audience>/<event>{suffix} with audience one of {', '.join(AUDIENCES)}")
    ok = (head == [] or (len(head) == 1 and LANG_DIR.match(head[0]))
          or (len(head) in (2, 3) and head[0] == "queues" and _PART.match(head[1])
              and (len(head) == 2 or LANG_DIR.match(head[2]))))
    if not ok:
        return None, ("unexpected location: use <audience>/, <lang>/<audience>/, queues/<queue>/<audience>/ "
                      "or queues/<queue>/<lang>/<audience>/")
    return "/".join(parts), ""


# The variables of problem management's and the survey's templates, for the trial render.
EVENT_SAMPLES: dict[str, dict[str, Any]] = {"problem-resolved": problems.SAMPLE, "survey": csat.SAMPLE,
                                            "csat-bad": csat.SAMPLE}


def _samples(audience: str, event: str) -> list[dict[str, Any]]:
    """Complete contexts for a trial render: with and without SLA targets; without a
    message only for events no message causes (resolve)."""
    desk = {"name": "Example Service Desk", "address": "support@example.com"}
    ticket = {"id": 42, "ref": "HD-42", "tag": "[HD-42]", "subject": "Printer on floor 3 jams",
              "status": "new", "priority": "P3", "queue": "general", "type": "incident",
              "created": "2026-03-02 09:30 UTC", "requester": "ann@example.org"}
    requester = {"name": "Ann Example", "email": "ann@example.org", "display": "Ann Example"}
    msg = message_vars("Printer on floor 3 jams", "It jams on every page.\n{{ 7*7 }}", "Ann Example",
                       "ann@example.org", "2026-03-02 09:30 UTC")
    queue = {"name": "general", "description": "First line"}
    agent = {"name": "Ben Okafor", "email": "ben@example.com", "role": "agent", "display": "Ben Okafor"} \
        if audience == "agent" else None
    sla = {"response_due": "2026-03-02 13:30 UTC", "resolution_due": "2026-03-04 17:00 UTC"}
    escalation = ESCALATION_SAMPLE if event.startswith(ESCALATION_EVENTS) else None
    out = []
    known = (None, problems.KNOWN_ERROR_SAMPLE) if event == "ack" else (None,)
    for message in (msg, None) if event.startswith(NO_MESSAGE_EVENTS) else (msg,):
        for s in (None, sla):
            for k in known:
                ctx = build_context(desk=desk, ticket=ticket, requester=requester, message=message, queue=queue,
                                    lang="en", reply_to=desk["address"], agent=agent, sla=s, escalation=escalation,
                                    known_error=k)
                out.append({**ctx, **EVENT_SAMPLES.get(event, {})})
    return out


# ---------------------------------------------------------------------- loading
def load_templates(root: str | Path) -> Templates:
    """Read, compile and trial-render every template under `root`; RulesError listing every
    problem as `file:line: reason`."""
    root = Path(root)
    if not root.is_dir():
        raise RulesError(f"{root}:1: templates directory not found", [f"{root}:1: templates directory not found"])
    problems: list[str] = []
    sources: dict[str, tuple[str, str]] = {}
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(".j2")):
        name, why = template_name(path, root)
        if name is None:
            problems.append(f"{path}:1: {why}")
            continue
        try:
            if path.stat().st_size > _MAX_FILE:
                raise ValueError(f"larger than {_MAX_FILE} bytes")
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            problems.append(f"{path}:1: cannot read: {exc}")
            continue
        file = path.relative_to(root).as_posix()
        sources[file] = (source, str(path))
        digest.update(f"{file}\0{len(source)}\0{source}".encode())
    env = _Sandbox(loader=_SnapshotLoader(sources), undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
                   autoescape=lambda n: bool(n) and n.endswith(".html.j2"), auto_reload=False)
    env.filters["quote"] = quote
    names = {f[:-len(".txt.j2")] for f in sources if f.endswith(".txt.j2")}
    for file, (_, path) in sources.items():
        if file.endswith(".html.j2") and file[:-len(".html.j2")] not in names:
            problems.append(f"{path}:1: an HTML template needs its text template "
                            f"{file[:-len('.html.j2')]}.txt.j2 (the text part is always sent)")
        problems += _trial(env, file, path)
    for need in REQUIRED:
        if need not in names:
            problems.append(f"{root / (need + '.txt.j2')}:1: required template is missing")
    if problems:
        raise RulesError(f"{len(problems)} problem(s) in the templates in {root}", problems)
    return Templates(root, env, frozenset(names), digest.hexdigest()[:16])


def _trial(env: jinja2.Environment, file: str, path: str) -> list[str]:
    """Compile `file` and render it with every sample context; problems as file:line."""
    try:
        template = env.get_template(file)
    except jinja2.TemplateSyntaxError as exc:
        return [f"{exc.filename or path}:{exc.lineno}: {exc.message}"]
    audience, event = file.split("/")[-2:]
    for ctx in _samples(audience, event.split(".")[0]):
        try:
            out = template.render(ctx)
        except Exception as exc:                    # noqa: BLE001 - every failure is a problem to report
            file_, line = _where(exc.__traceback__, path)
            return [f"{file_}:{line}: {_reason(exc)}"]
        if file.endswith(".txt.j2"):
            subject, _ = split_subject(out)
            if subject is not None and not subject:
                return [f"{path}:1: the Subject: line renders empty"]
    return []


def _where(tb: TracebackType | None, path: str) -> tuple[str, int]:
    """The deepest template frame of a traceback: (file, line)."""
    found = (path, 1)
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if name.endswith(".j2"):
            found = (name, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _reason(exc: Exception) -> str:
    if isinstance(exc, jinja2.exceptions.SecurityError):
        return f"not allowed in templates (sandbox): {exc}"
    if isinstance(exc, jinja2.UndefinedError):
        return f"undefined: {exc.message}"
    return f"{exc.__class__.__name__}: {exc}"


def template_files(root: Path) -> tuple:
    """(path, mtime_ns, size, inode) of every file under `root`, for change detection."""
    out = []
    for p in sorted(root.rglob("*")) if root.is_dir() else ():
        try:
            st = p.stat()
            out.append((str(p), st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            continue
    return tuple(out)


class LiveTemplates:
    """The current Templates of a running daemon; reload swaps on success, keeps the last
    good set on error (mirrors daemon.rules.live.LiveRules)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self.seen = template_files(self.path)
        self.current: Templates = load_templates(self.path)
        self.last_problems: list[str] = []
        log.info("templates loaded from %s: version %s, %d template(s)", self.path, self.current.version,
                 len(self.current.names))

    def reload(self) -> list[str]:
        """Load again; swap on success. Returns the problems ([] when the new set is live)."""
        with self._lock:
            self.seen = template_files(self.path)
            try:
                fresh = load_templates(self.path)
            except RulesError as exc:
                self.last_problems = list(exc.problems)
                log.error("templates reload failed; keeping version %s. %d problem(s):\n%s",
                          self.current.version, len(exc.problems), "\n".join(exc.problems))
                return list(exc.problems)
            self.last_problems = []
            if fresh.version != self.current.version:
                old, self.current = self.current.version, fresh         # the one assignment readers see
                log.info("templates reloaded: version %s -> %s", old, fresh.version)
            return []


def watch_templates(live: LiveTemplates, stop: threading.Event, interval: float = 2.0,
                    on_reload: Callable[[list[str]], None] | None = None) -> None:
    """Poll every `interval` seconds; reload once a change has settled (two equal polls)."""
    pending = None
    while not stop.wait(interval):
        try:
            now = template_files(live.path)
            if now == live.seen:
                pending = None
                continue
            if now != pending:
                pending = now
                continue
            problems = live.reload()
        except OSError as exc:                  # e.g. EMFILE: the watcher never dies
            log.warning("templates watch: %s; retrying", exc)
            continue
        pending = None
        if on_reload is not None:
            on_reload(problems)
