"""The live rule set: reload by building a new RuleSet and swapping it in with one assignment.

`LiveRules` holds the current `RuleSet`. `reload()` loads the directory afresh; if the
new set is valid it replaces the old one in a single attribute assignment (atomic for
readers: a worker reads `live.current` once per message and routes the whole message
with that object); if not, the last good set stays live, the problems are logged and
returned. Construction refuses to start without a valid set — the daemon never runs on an
implicit empty rule set. sla.yaml, when the directory has one, is part of the set: it
is loaded against the new rules and swapped in with them (`sla`, and `loaded` for the
pair in one read); if it does not load, the whole reload is refused. `watch()` polls the
files' mtimes and sizes (sla.yaml included) and reloads once the change has settled (debounced: at most one reload per interval, however often files are
touched). Code is never reloaded, only data.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable, Collection

from daemon.errors import RulesError
from daemon.pipeline.sla import SlaSettings
from daemon.rules.loader import OPTIONAL_FILES, REQUIRED_FILES, RuleSet, load_rules
from daemon.sla.loader import SLA_FILE, load_sla

log = logging.getLogger(__name__)
_UNSET = object()


class LiveRules:
    """The current RuleSet of a running daemon (see module docstring)."""

    def __init__(self, path: str | Path, *, known_templates: Collection[str] | None = None,
                 defaults: object = None):
        self.path = Path(path)
        self.known_templates = known_templates
        self.defaults = defaults
        self._lock = threading.Lock()                   # one reload at a time; readers never lock
        self.seen = snapshot(self.path)                 # the files' state this load started from
        self.current: RuleSet = load_rules(self.path, known_templates=known_templates, defaults=defaults)
        self.sla: SlaSettings | None = self._load_sla(self.current)
        self.loaded: tuple[RuleSet, SlaSettings | None] = (self.current, self.sla)
        self.last_problems: list[str] = []
        log.info("rules loaded from %s: version %s, %d rule(s)%s", self.path, self.current.version,
                 len(self.current.rules), _sla_note(self.sla))

    def _load_sla(self, rules: RuleSet) -> SlaSettings | None:
        """sla.yaml checked against `rules`; None when the directory has none (no SLAs)."""
        if not (self.path / SLA_FILE).exists():
            return None
        return load_sla(self.path, rules, known_templates=self.known_templates)

    @property
    def version(self) -> str:
        return self.current.version

    def reload(self, *, known_templates: Collection[str] | None | object = _UNSET) -> list[str]:
        """Load again; swap on success. Returns the problems ([] when the new set is live)."""
        with self._lock:
            if known_templates is not _UNSET:
                self.known_templates = known_templates     # type: ignore[assignment]
            self.seen = snapshot(self.path)
            try:
                fresh = load_rules(self.path, known_templates=self.known_templates, defaults=self.defaults)
                sla = self._load_sla(fresh)
            except RulesError as exc:
                self.last_problems = exc.problems
                log.error("rules reload failed; keeping version %s. %d problem(s):\n%s",
                          self.current.version, len(exc.problems), "\n".join(exc.problems))
                return list(exc.problems)
            self.last_problems = []
            if fresh.version != self.current.version or _sla_version(sla) != _sla_version(self.sla):
                old = self.current.version
                self.loaded = (fresh, sla)                    # rules and SLA settings, read together
                self.sla = sla
                self.current = fresh                          # the one assignment readers see
                log.info("rules reloaded: version %s -> %s, %d rule(s)%s", old, fresh.version, len(fresh.rules),
                         _sla_note(sla))
            return []


def _sla_version(sla: SlaSettings | None) -> str | None:
    return sla.version if sla is not None else None


def _sla_note(sla: SlaSettings | None) -> str:
    return f", SLA version {sla.version} ({len(sla.policies)} policies)" if sla is not None else ", no sla.yaml"


def snapshot(path: Path) -> tuple:
    """(name, mtime_ns, size) of each rule file, so any edit, rename or removal shows."""
    out = []
    for name in REQUIRED_FILES + OPTIONAL_FILES + (SLA_FILE,):
        try:
            st = (path / name).stat()
            out.append((name, st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append((name, None, None, None))
    return tuple(out)


def watch(live: LiveRules, stop: threading.Event, interval: float = 2.0,
          on_reload: Callable[[list[str]], None] | None = None, *, max_wait: int = 5) -> None:
    """Poll every `interval` seconds until `stop` is set; reload once a change has settled.

    A change is applied when two polls in a row see the same new snapshot, so an editor's
    half-written save is (usually) not even tried; files that never stop changing are
    reloaded anyway every `max_wait` intervals. A storm of touches therefore costs at most
    one reload per interval, and usually far fewer. `on_reload(problems)` is called after
    each reload (problems is [] when the new set is live)."""
    pending, waited = None, 0
    while not stop.wait(interval):
        try:
            now = snapshot(live.path)
            if now == live.seen:                            # what the live set was loaded from
                pending, waited = None, 0
                continue
            if now != pending and waited < max_wait:
                pending, waited = now, waited + 1           # still changing: wait one more interval
                continue
            problems = live.reload()
        except OSError as exc:                              # e.g. EMFILE: the watcher never dies
            log.warning("rules watch: %s; retrying", exc)
            continue
        pending, waited = None, 0
        if on_reload is not None:
            on_reload(problems)
