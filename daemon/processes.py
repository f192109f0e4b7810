"""Which helpdeskd processes run on a state directory: one small file per live process.

`serve` and `worker` each keep `<state_dir>/run/<kind>-<host>-<pid>.json` up to date
(kind, pid, host, start time, last beat, their http port and a few figures) and remove
it when they stop. `helpdesk status` lists them; the pipe hand-off
(`daemon.handoff`) finds a running `serve` to wake. A file whose process is gone (a
kill -9) or whose beat is older than `stale_after` is reported as dead, never trusted,
until a process of the same host starts on the state directory and clears it.
Edge module: files and the clock; stdlib only, since the pipe path imports it.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

RUN_DIR = "run"


def host_name() -> str:
    return os.uname().nodename.replace("/", "_").replace("-", "_")    # = gethostname(), without socket


@dataclass(frozen=True)
class Seen:
    """One process file as read back: its content and whether it looks alive."""

    kind: str
    pid: int
    host: str
    info: dict
    alive: bool
    why: str                      # "" when alive, else why it is not trusted
    path: Path | None = None


class ProcessFile:
    """This process's entry; `beat()` rewrites it atomically, `remove()` at a clean stop."""

    def __init__(self, state_dir: Path, kind: str, started_at: str, *, pid: int | None = None, **info):
        self.dir = Path(state_dir) / RUN_DIR
        self.kind, self.pid, self.host = kind, pid or os.getpid(), host_name()
        self.path = self.dir / f"{kind}-{self.host}-{self.pid}.json"
        self.base = {"kind": kind, "pid": self.pid, "host": self.host, "started_at": started_at, **info}
        self._pruned = False

    def beat(self, **figures) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self._pruned:                   # the first beat clears this host's dead entries
            self._pruned = True
            for seen in read_all(self.dir.parent, stale_after=float("inf")):
                if seen.host == self.host and seen.why == "process gone" and seen.path is not None:
                    seen.path.unlink(missing_ok=True)
        data = {**self.base, **figures, "beat_at": time.time()}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, default=str))
        os.replace(tmp, self.path)

    def remove(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:            # alive, another user's
        return True
    return True


def read_all(state_dir: Path, stale_after: float, now: float | None = None) -> list[Seen]:
    """Every process file of the state directory, oldest start first."""
    now = time.time() if now is None else now
    here, out = host_name(), []
    try:
        names = sorted(os.listdir(Path(state_dir) / RUN_DIR))
    except (FileNotFoundError, NotADirectoryError):
        return []
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            info = json.loads((Path(state_dir) / RUN_DIR / name).read_text())
            kind, pid, host = str(info["kind"]), int(info["pid"]), str(info["host"])
            age = now - float(info["beat_at"])
        except (OSError, ValueError, KeyError, TypeError):
            continue                   # being replaced, or not ours
        why = ""
        if host == here and not pid_alive(pid):
            why = "process gone"
        elif age > stale_after:
            why = f"no beat for {age:.0f}s"
        out.append(Seen(kind, pid, host, info, not why, why, Path(state_dir) / RUN_DIR / name))
    return sorted(out, key=lambda s: str(s.info.get("started_at", "")))


def running_serve(state_dir: Path, stale_after: float) -> Seen | None:
    """A live `serve` of this host on this state directory (the newest), or None."""
    here = host_name()
    found = [s for s in read_all(state_dir, stale_after) if s.alive and s.kind == "serve" and s.host == here]
    return found[-1] if found else None
