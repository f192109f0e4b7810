"""The pipe hand-off: `helpdesk ingest` from an MTA's pipe into a running daemon's spool.

Run as the MTA runs it (a subprocess, stdin, `--sender`/`--recipient`), against a stand-in
`serve` process that registers itself and exits 0 when it gets the wake signal."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

from daemon.config import load_config
from daemon.processes import ProcessFile, read_all, running_serve
from daemon.spool import Spool
from tests.conftest import write_site_config
from tests.e2e.helpers import REPO
from tests.integration.intake_helpers import entries

MSG = b"From: ann@example.org\nTo: support@example.com\nSubject: printer\nMessage-ID: <h1@example.org>\n\nIt jams.\n"
HEAVY = ("huey", "sqlalchemy", "sqlmodel", "mailparser", "jinja2", "yaml", "aiosmtpd", "imapclient", "dkim",
         "daemon.pipeline", "daemon.worker", "store.")

STAND_IN = """
import signal, sys
from daemon.processes import ProcessFile
pf = ProcessFile(sys.argv[1], "serve", "2026-01-01T00:00:00+00:00")
pf.beat()
signal.signal(signal.SIGUSR1, lambda *a: sys.exit(0))
print("ready", flush=True)
signal.pause()
"""


def run_ingest(cfg, *args, data=MSG, importtime=False):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("HELPDESK_CONFIG", None)
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "daemon", "--config", str(cfg),
           "ingest", *args]
    return subprocess.run(cmd, input=data, capture_output=True, env=env, timeout=120, cwd=str(cfg.parent))


def stand_in(state_dir):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", STAND_IN, str(state_dir)], stdout=subprocess.PIPE, env=env)
    assert proc.stdout.readline() == b"ready\n"
    return proc


def end(proc) -> None:
    proc.kill()
    proc.wait()
    proc.stdout.close()


def test_hand_off_spools_with_the_envelope_wakes_the_daemon_and_loads_no_pipeline(tmp_path):
    cfg_path = write_site_config(tmp_path)
    cfg = load_config(str(cfg_path))
    daemon = stand_in(cfg.state_dir)
    try:
        proc = run_ingest(cfg_path, "--sender", "ann@example.org", "--recipient", "support@example.com",
                          "--recipient", "it@example.com", importtime=True)
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        assert daemon.wait(timeout=30) == 0                       # it got SIGUSR1
    finally:
        end(daemon)
    stderr = proc.stderr.decode()
    imported = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", stderr, re.M)
    assert "daemon.handoff" in imported
    assert [m for m in imported if m.startswith(HEAVY)] == []
    assert [line for line in stderr.splitlines() if not line.startswith("import time:")] == []
    (env, raw), = entries(Spool(cfg.state_dir / "spool"))
    assert raw == MSG
    assert (env.mail_from, env.rcpt_to, env.source) == ("ann@example.org", ("support@example.com", "it@example.com"),
                                                          "pipe")


def test_null_sender_and_recipients_as_postfix_expands_them(tmp_path):
    cfg_path = write_site_config(tmp_path)
    cfg = load_config(str(cfg_path))
    daemon = stand_in(cfg.state_dir)
    try:
        # ${recipient} with two recipients expands to two words after one --recipient
        proc = run_ingest(cfg_path, "--sender", "MAILER-DAEMON", "--recipient", "support@example.com", "it@example.com")
        assert proc.returncode == 0 and proc.stderr == b""
        daemon.wait(timeout=30)
    finally:
        end(daemon)
    (env, _raw), = entries(Spool(cfg.state_dir / "spool"))
    assert env.mail_from == "" and env.rcpt_to == ("support@example.com", "it@example.com")


def test_unwritable_spool_is_exit_75_for_the_mta(tmp_path):
    cfg_path = write_site_config(tmp_path)
    cfg = load_config(str(cfg_path))
    daemon = stand_in(cfg.state_dir)
    spool = Spool(cfg.state_dir / "spool").ensure()
    spool.tmp.rmdir()
    spool.tmp.write_text("not a directory")                      # fails for root too
    try:
        proc = run_ingest(cfg_path, "--sender", "ann@example.org", "--recipient", "support@example.com")
    finally:
        end(daemon)
    assert proc.returncode == 75
    assert proc.stderr.decode().startswith("helpdesk: temporary failure: cannot write spool")
    assert proc.stderr.count(b"\n") == 1


def test_without_a_daemon_the_mail_is_processed_here_with_only_errors_on_stderr(tmp_path):
    cfg_path = write_site_config(tmp_path)
    cfg = load_config(str(cfg_path))
    ProcessFile(cfg.state_dir, "serve", "2026-01-01T00:00:00+00:00", pid=2 ** 22 + 7).beat()   # no such process
    proc = run_ingest(cfg_path, "--sender", "ann@example.org", "--recipient", "support@example.com")
    assert proc.returncode == 0 and proc.stderr == b""
    import sqlite3
    with sqlite3.connect(cfg.state_dir / "helpdesk.db") as db:
        (envelope,), = db.execute("select envelope from message").fetchall()
    env = json.loads(envelope)
    assert env["mail_from"] == "ann@example.org" and env["rcpt_to"] == ["support@example.com"]
    assert env["source"] == "stdin"
    assert Spool(cfg.state_dir / "spool").depth() == 0


def test_process_files_alive_dead_and_stale(tmp_path):
    me = ProcessFile(tmp_path, "worker", "2026-01-01T00:00:00+00:00", http="127.0.0.1:9425")
    me.beat()
    ProcessFile(tmp_path, "serve", "2026-01-02T00:00:00+00:00", pid=2 ** 22 + 9).beat()
    seen = read_all(tmp_path, stale_after=60)
    assert [(s.kind, s.alive, s.why) for s in seen] == [("worker", True, ""), ("serve", False, "process gone")]
    assert running_serve(tmp_path, 60) is None
    stale = read_all(tmp_path, stale_after=60, now=time.time() + 120)
    assert stale[0].why.startswith("no beat for")
    me.remove()
    assert [s.kind for s in read_all(tmp_path, 60)] == ["serve"]
    again = ProcessFile(tmp_path, "serve", "2026-01-03T00:00:00+00:00")
    again.beat()                                                     # a new start clears the dead entry
    assert [(s.kind, s.pid, s.alive) for s in read_all(tmp_path, 60)] == [("serve", again.pid, True)]
    assert signal.SIGUSR1                                           # the wake signal exists here
