"""Receive memory is bounded (issue 12 defect 4, reliability case 13): the SMTP intake in
a subprocess of its own takes 10 parallel large transfers and its peak RSS (VmHWM) grows
by a bounded amount, not by a multiple of the mail volume.

Figures for the full attack (10 x 24 MB) are printed by bench/smtp_memory.py: intake
alone 25 -> 37 MB (aiosmtpd's own DATA: 25 -> 531 MB). Here 10 x 8 MB = 80 MB arrive at
once; the bound is 48 MB of growth: streaming measured ~12 MB, the old whole-message DATA
would need ~4 x 80 = 320 MB, so the margin covers allocator noise either way.
"""
from __future__ import annotations

import os
import smtplib
import subprocess
import sys
import threading
from pathlib import Path

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
INTAKE = """
import sys
from pathlib import Path
from daemon.intake.smtp import IntakeController, IntakeHandler
from daemon.spool import Spool
spool = Spool(Path(sys.argv[1])).ensure()
ctl = IntakeController(IntakeHandler(spool, ("example.com",)), "127.0.0.1", int(sys.argv[2]),
                       max_message_bytes=10_000_000, timeout=120)
ctl.start()
print("ready", flush=True)
sys.stdin.read()
ctl.stop()
"""


def kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def mail(i: int, mb: int) -> bytes:
    line = (b"%02d" % i) + b"x" * 74 + b"\r\n"
    return b"Subject: big %d\r\n\r\n" % i + line * (mb * 1024 * 1024 // len(line))


def test_ten_parallel_large_transfers_keep_the_intake_small(tmp_path):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", INTAKE, str(tmp_path / "spool"), str(port)], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=str(REPO))
    try:
        assert proc.stdout.readline().strip() == b"ready"
        start = kb(proc.pid, "VmRSS")
        mails = [mail(i, 8) for i in range(10)]
        codes: list[int] = []

        def send(raw: bytes) -> None:
            with smtplib.SMTP("127.0.0.1", port, timeout=120) as c:
                c.sendmail("a@x.test", ["support@example.com"], raw)
                codes.append(250)
        threads = [threading.Thread(target=send, args=(m,)) for m in mails]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        growth_mb = (kb(proc.pid, "VmHWM") - start) / 1024
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
        proc.stdout.close()
    assert codes == [250] * 10
    stored = [p.read_bytes() for p in (tmp_path / "spool" / "new").iterdir()]
    assert sorted(s[s.index(b"Subject:"):] for s in stored) == sorted(mails)       # every byte kept
    assert growth_mb < 48, f"intake RSS grew by {growth_mb:.0f} MB receiving 80 MB"
