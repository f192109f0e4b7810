"""A real Postfix in front of a real `helpdesk serve`: LMTP (UNIX socket) and pipe delivery,
a temporary failure on each that Postfix defers and later delivers exactly once.

Postfix's master must run as root; the desk runs as `nobody` (Postfix refuses to run a pipe
command as root), so the daemon, the pipe's `helpdesk ingest` and every command reading the
database run as that user. Retries are forced with `postqueue -f`, never waited for.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import smtplib
import sqlite3
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

from tests.conftest import free_port, missing
from tests.e2e.helpers import REPO, wait_for
from tests.integration.postfix import Postfix, postfix_binaries
from tests.integration.test_outbox_relay import Sink

USER, GROUP = "nobody", "nogroup"


def _usable_by_desk(python: str, pythonpath: str) -> bool:
    try:
        return subprocess.run([python, "-c", "import daemon.cli, sqlalchemy, huey"], env={"PYTHONPATH": pythonpath},
                              capture_output=True, user=USER, group=GROUP, extra_groups=[], timeout=120).returncode == 0
    except OSError:
        return False


def desk_runtime() -> tuple[str, str]:
    """A Python the desk user may run, and its PYTHONPATH: this one; else (this one lives under
    a home only root may enter, e.g. pyenv in /root) the system's of the same version with
    this one's site-packages."""
    if _usable_by_desk(sys.executable, str(REPO)):
        return sys.executable, str(REPO)
    system = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    path = f"{REPO}:{sysconfig.get_paths()['purelib']}:{sysconfig.get_paths()['platlib']}"
    if os.access(system, os.X_OK) and _usable_by_desk(system, path):
        return system, path
    missing(f"no Python the user {USER} may run with helpdeskd's dependencies ({sys.executable} is not reachable)")
    raise AssertionError("unreachable")


class Desk:
    """helpdesk commands and `serve` as the unprivileged desk user."""

    def __init__(self, d: Path, config: Path, python: str, pythonpath: str):
        self.d, self.config, self.proc, self.python = d, config, None, python
        self.env = {"PYTHONPATH": pythonpath, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}

    def argv(self) -> list[str]:
        """What Postfix's pipe runs (its environment is empty, so PYTHONPATH goes through env)."""
        return ["/usr/bin/env", f"PYTHONPATH={self.env['PYTHONPATH']}", self.python, "-m", "daemon"]

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.python, "-m", "daemon", "--config", str(self.config), *args],
                              capture_output=True, env=self.env, cwd=str(self.d), timeout=120, user=USER,
                              group=GROUP, extra_groups=[])

    def start(self) -> None:
        log = open(self.d / "serve.log", "ab")
        self.proc = subprocess.Popen([self.python, "-m", "daemon", "--config", str(self.config), "serve"],
                                     stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=str(self.d), user=USER,
                                     group=GROUP, extra_groups=[], start_new_session=True)
        log.close()
        wait_for(lambda: (self.d / "state" / "run").is_dir() and list((self.d / "state" / "run").glob("serve-*.json")),
                 timeout=120, interval=0.1)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            assert self.proc.wait(timeout=60) == 0
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            self.proc = None

    def tickets(self) -> list[dict]:
        proc = self.run("tickets", "--json")
        return json.loads(proc.stdout) if proc.returncode == 0 else []


@pytest.fixture
def world():
    if postfix_binaries() is None:
        missing("postfix is not installed (Debian package postfix; .ci/run installs it)")
    if os.getuid() != 0:
        missing("Postfix's master runs as root; run this test as root")
    runtime = desk_runtime()
    d = Path(tempfile.mkdtemp(prefix="hd-postfix-"))
    d.chmod(0o755)                               # pytest's tmp_path parent is 0700: nobody could not enter
    nobody = pwd.getpwnam(USER)
    hd = d / "hd"
    (hd / "state").mkdir(parents=True)
    for p in (hd, hd / "state"):
        os.chown(p, nobody.pw_uid, nobody.pw_gid)
    sink = Sink().__enter__()
    config = hd / "site.toml"
    config.write_text(f"""
[helpdesk]
address = "support@helpdesk.test"
state_dir = "state"

[smtp]
enabled = false
domains = ["helpdesk.test"]

[lmtp]
enabled = true
socket = "state/run/lmtp.sock"

[outbound]
port = {sink.port}

[worker]
retry_seconds = 0
idle_poll_seconds = 0.5

[health]
status_seconds = 1
""")
    desk = Desk(hd, config, *runtime)
    argv = " ".join(desk.argv() + ["--config", str(config), "ingest", "--sender", "${sender}",
                                       "--recipient", "${recipient}"])
    port = free_port()
    postfix = Postfix(d / "postfix", port, {"pipe@helpdesk.test": "helpdesk:",
                                            "helpdesk.test": f"lmtp:unix:{hd}/state/run/lmtp.sock"}, argv,
                      pipe_user=USER)
    postfix.start()
    try:
        yield desk, postfix, port
    finally:
        try:
            desk.stop()
        finally:
            postfix.stop()
            sink.__exit__(None, None, None)
            shutil.rmtree(d, ignore_errors=True)


def send(port: int, rcpt: str, n: int, tag: str) -> list[str]:
    subjects = []
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        for i in range(n):
            subject = f"{tag} {i}"
            s.sendmail("ann@example.org", [rcpt], (f"From: Ann <ann@example.org>\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
                                                   f"Message-ID: <{tag}-{i}@example.org>\r\n\r\nHelp {i}.\r\n").encode())
            subjects.append(subject)
    return subjects


def test_postfix_delivers_by_lmtp_and_pipe_and_a_deferral_is_delivered_once(world):
    desk, postfix, port = world
    desk.start()
    sent = send(port, "support@helpdesk.test", 3, "lmtp") + send(port, "pipe@helpdesk.test", 3, "pipe")
    wait_for(lambda: not postfix.queue() and len(desk.tickets()) == 6, timeout=120, interval=0.3)
    assert [d[3] for d in postfix.deliveries()] == ["sent"] * 6

    desk.stop()                                           # LMTP: nobody listens on the socket
    tmp = desk.d / "state" / "spool" / "tmp"
    os.chown(tmp, 0, 0)                                   # pipe: the spool refuses the desk user (exit 75)
    tmp.chmod(0o755)
    sent += send(port, "support@helpdesk.test", 2, "down-lmtp") + send(port, "pipe@helpdesk.test", 2, "down-pipe")
    wait_for(lambda: len([d for d in postfix.deliveries() if d[3] == "deferred"]) == 4, timeout=120, interval=0.3)
    queued = postfix.queue()
    assert len(queued) == 4 and {q["queue_name"] for q in queued} == {"deferred"}
    reasons = sorted(r["delay_reason"] for q in queued for r in q["recipients"])
    assert sum("lmtp.sock" in r for r in reasons) == 2
    assert sum("temporary failure" in r.lower() for r in reasons) == 2, reasons

    nobody = pwd.getpwnam(USER)
    os.chown(tmp, nobody.pw_uid, nobody.pw_gid)
    desk.start()
    postfix.flush()
    wait_for(lambda: not postfix.queue() and len(desk.tickets()) == 10, timeout=120, interval=0.3)
    desk.stop()

    deliveries = postfix.deliveries()
    done = [d for d in deliveries if d[3] == "sent"]
    deferred = [d for d in deliveries if d[3] == "deferred"]
    assert len(done) == 10 and len({d[0] for d in done}) == 10          # each queue id delivered once
    assert {d[0] for d in deferred} <= {d[0] for d in done}             # every deferred one delivered later
    rows = desk.tickets()
    assert sorted(r["subject"] for r in rows) == sorted(sent)           # no duplicates, nothing lost
    with sqlite3.connect(f"file:{desk.d / 'state' / 'helpdesk.db'}?immutable=1", uri=True) as db:
        envelopes = [json.loads(e) for (e,) in db.execute("select envelope from message where direction = 'in'")]
    assert len(envelopes) == 10
    by_source = sorted((e["source"], e["mail_from"], tuple(e["rcpt_to"])) for e in envelopes)
    assert by_source == sorted([("lmtp", "ann@example.org", ("support@helpdesk.test",))] * 5
                               + [("pipe", "ann@example.org", ("pipe@helpdesk.test",))] * 5)
    print(f"\npostfix: {len(sent)} messages, {len(deferred)} deferrals, "
          f"{len(rows) - len(set(r['subject'] for r in rows)) + len(done) - len({d[0] for d in done})} duplicates")
