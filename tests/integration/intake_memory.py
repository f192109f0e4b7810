"""The SMTP-memory attack, shared by tests/integration/test_smtp_memory.py (a bound) and
bench/smtp_memory.py (the figures): the intake alone in a subprocess, its RSS read from
/proc, and many large transfers sent at once."""
from __future__ import annotations

import os
import smtplib
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

INTAKE = """
import sys
from pathlib import Path
from daemon.intake.smtp import IntakeController, IntakeHandler
from daemon.spool import Spool
spool = Spool(Path(sys.argv[1])).ensure()
ctl = IntakeController(IntakeHandler(spool, ("example.com",)), "127.0.0.1", int(sys.argv[2]),
                       max_message_bytes=int(sys.argv[3]), timeout=float(sys.argv[4]))
ctl.start()
print("ready", flush=True)
sys.stdin.read()
ctl.stop()
"""


def status_kb(pid: int, field: str) -> int:
    """A field of /proc/PID/status in kB (VmRSS, VmHWM); 0 when the process has none (or
    has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def start_intake(spool_dir: Path, port: int, *, max_bytes: int, timeout: float,
                 repo: Path = REPO) -> subprocess.Popen:
    """Only the SMTP intake of `repo` (no worker parsing what arrives) on `port`, spooling to
    `spool_dir`; stops when its stdin is closed."""
    env = dict(os.environ, PYTHONPATH=str(repo))
    proc = subprocess.Popen([sys.executable, "-c", INTAKE, str(spool_dir), str(port), str(max_bytes), str(timeout)],
                            cwd=str(repo), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            start_new_session=True)
    assert proc.stdout.readline().strip() == b"ready"
    return proc


def stop_intake(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    proc.wait(timeout=60)
    proc.stdout.close()


def send_at_once(port: int, mails: list[bytes], *, timeout: float) -> list[str]:
    """Send every mail on its own connection, all at once; "250" or the error, per mail."""
    results: list[str] = []

    def send(raw: bytes, i: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=timeout) as c:
                c.sendmail(f"user{i}@example.org", ["support@example.com"], raw)
            results.append("250")
        except (OSError, smtplib.SMTPException) as exc:
            results.append(f"{exc.__class__.__name__}: {exc}")
    threads = [threading.Thread(target=send, args=(raw, i)) for i, raw in enumerate(mails)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results
