"""Many concurrent large attachments over IMAP (reliability case 98): three pollers, each
on its own account holding 4 x 4 MB mails (48 MB in all), run at once in a subprocess of
their own; the fetch is chunked by `batch_bytes` (here 4 MB: one mail a FETCH), so the
process's peak RSS (VmHWM) grows by what the chunks hold, not by the mail volume.

Bound: growth under 48 MB (the volume). Measured here: 35 MB (3 pollers x one 4 MB mail in
imaplib's buffers, its copies and the spool write); the same run with the default 32 MB
chunks (each account's whole backlog in one FETCH) grew by 92 MB.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

SCRIPT = """
import os, sys, threading, time
from pathlib import Path
from daemon.config import ImapAccount
from daemon.intake.imap import ImapPoller
from daemon.spool import Spool
from store import imap_state
from store.db import make_engine

port, root, users = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
spool = Spool(root / "spool").ensure()
engine = make_engine(f"sqlite:///{root}/state.db")
imap_state.create_tables(engine)
def kb(field):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field + ":"))
print("start", kb("VmRSS"), flush=True)
stop, pollers = threading.Event(), []
for i, user in enumerate(users):
    acct = ImapAccount(name=f"acct{i}", host="127.0.0.1", port=port, security="none", username=user,
                       password_env="PW", password_credential="", folder="INBOX", move_to="", idle=False,
                       poll_seconds=30, verify_tls=True, ca_file="")
    pollers.append(ImapPoller(acct, spool, engine, None, stop, f"mem-{i}", environ={"PW": "secret"},
                              batch_bytes=4 << 20, tick=0.05))
threads = [p.start() for p in pollers]
deadline = time.monotonic() + 120
while len(os.listdir(spool.new)) < 4 * len(users) and time.monotonic() < deadline:
    time.sleep(0.05)
print("taken", len(os.listdir(spool.new)), flush=True)
print("hwm", kb("VmHWM"), flush=True)
stop.set()
for t in threads:
    t.join(timeout=30)
"""


def big(tag: str, i: int) -> bytes:
    line = b"x" * 76 + b"\r\n"
    return (f"From: user@example.org\r\nTo: support@example.com\r\nSubject: {tag} {i}\r\n"
            f"Message-ID: <{tag}-{i}@example.org>\r\n\r\n").encode() + line * (4 * 1024 * 1024 // len(line))


def test_three_pollers_with_large_mail_keep_memory_bounded(dovecot, tmp_path):
    users = [dovecot.add_user() for _ in range(3)]
    for n, user in enumerate(users):
        c = dovecot.client(user, "secret")
        for i in range(4):
            c.append("INBOX", big(f"acct{n}", i))
        c.logout()
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(dovecot.port), str(tmp_path), *users],
                         cwd=str(REPO), env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
                         timeout=300)
    lines = dict(line.split(" ", 1) for line in out.stdout.decode().splitlines() if " " in line)
    assert out.returncode == 0 and "hwm" in lines, out.stderr.decode()[-3000:]
    assert int(lines["taken"]) == 12
    growth_mb = (int(lines["hwm"]) - int(lines["start"])) / 1024
    assert growth_mb < 48, f"3 pollers grew the process by {growth_mb:.0f} MB taking 48 MB of mail"
    stored = sorted(p.read_bytes()[-100:] for p in (tmp_path / "spool" / "new").iterdir())
    assert len(stored) == 12 and all(s.endswith(b"x" * 76 + b"\r\n") for s in stored)
