"""Run the real `helpdesk` program as a subprocess, wait for it, and move its test clock."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from daemon.clock import read_offset, write_offset

REPO = Path(__file__).resolve().parents[2]


def helpdesk(config: Path, *args: str, input: bytes | None = None, check: bool = False,
             timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("HELPDESK_CONFIG", None)
    proc = subprocess.run([sys.executable, "-m", "daemon", "--config", str(config), *args], input=input,
                          capture_output=True, env=env, timeout=timeout, cwd=str(config.parent))
    if check and proc.returncode != 0:
        raise AssertionError(f"helpdesk {' '.join(args)} exited {proc.returncode}: {proc.stderr.decode()}")
    return proc


def tickets(config: Path, *args: str) -> list[dict]:
    return json.loads(helpdesk(config, "tickets", "--json", *args, check=True).stdout)


def show(config: Path, ref: str) -> dict:
    return json.loads(helpdesk(config, "show", ref, "--json", check=True).stdout)


class Daemon:
    """`helpdesk serve` (or `command`, e.g. "worker") in a subprocess; started, waited for
    `ready`, killed."""

    def __init__(self, config: Path, env: dict | None = None, command: str = "serve"):
        self.config, self.proc, self.command = config, None, command
        self.log = config.parent / f"{command}.log"
        self.extra_env = env or {}

    def start(self, timeout: float = 30) -> "Daemon":
        env = dict(os.environ, PYTHONPATH=str(REPO), **self.extra_env)
        env.pop("HELPDESK_CONFIG", None)
        self.logfh = open(self.log, "ab")
        start = self.log.stat().st_size
        self.proc = subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(self.config), self.command],
                                     stdout=self.logfh, stderr=subprocess.STDOUT, env=env,
                                     cwd=str(self.config.parent), start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.command} exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            with open(self.log, "rb") as fh:
                fh.seek(start)
                if b" ready" in fh.read():
                    return self
            time.sleep(0.05)
        raise AssertionError(f"{self.command} did not become ready: " + self.log.read_text()[-2000:])

    def kill(self, sig: int = signal.SIGKILL) -> int:
        if self.proc is None:
            return 0
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        code = self.proc.wait(timeout=30)
        self.logfh.close()
        self.proc = None
        return code


def wait_for(predicate, timeout: float = 30, interval: float = 0.1, state=None):
    """Poll `predicate` until it is true; on timeout the failure says what `state()` saw last."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met in {timeout:g} s" + (f": {state()}" if state else ""))


def advance(clock_file: Path, seconds: float | timedelta) -> timedelta:
    """Move the clock of every process whose `[debug] clock_file` is `clock_file` forward by
    `seconds` (back when negative); the new offset from the wall clock. The daemon sees it at
    its next reading of the time, with no restart."""
    step = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
    offset = read_offset(clock_file) + step
    write_offset(clock_file, offset)
    return offset
