"""A connection flood against `helpdesk serve` (issue 12 defect 1): idle connections from
loopback, then a normal client. Prints how fast the probe is refused during the flood
(421 from the session cap) and how fast it gets a 250 once the flood ends; with
`--nofile N` the daemon's open-files limit is set to N (prlimit) so the flood also
exhausts its descriptors (EMFILE in accept and everywhere else).

    .venv/bin/python bench/smtp_flood.py [--sessions 500] [--flood 1100] [--nofile 1024]
"""
from __future__ import annotations

import argparse
import os
import resource
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import free_port  # noqa: E402

MSG = b"From: ann@example.org\r\nTo: support@example.com\r\nSubject: probe\r\n\r\nhello\r\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=500, help="[smtp] max_sessions")
    ap.add_argument("--flood", type=int, default=1100, help="idle connections to open")
    ap.add_argument("--nofile", type=int, default=0, help="the daemon's RLIMIT_NOFILE (0: leave it)")
    args = ap.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (args.flood + 512, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    with tempfile.TemporaryDirectory(prefix="hd-bench-flood-") as tmp:
        state, port = Path(tmp), free_port()
        cfg = state / "bench.toml"
        cfg.write_text(f'[helpdesk]\nstate_dir = "state"\n[smtp]\nport = {port}\ndomains = ["example.com"]\n'
                       f'max_sessions = {args.sessions}\nmax_connections_per_ip = {args.flood + 10}\n'
                       '[health]\nstatus_seconds = 1\n')
        env = dict(os.environ, PYTHONPATH=str(REPO))
        env.pop("HELPDESK_CONFIG", None)
        log = state / "serve.log"
        proc = subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(cfg), "serve"], cwd=str(state),
                                env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while b" ready" not in log.read_bytes():
                time.sleep(0.05)
            if args.nofile:
                resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (args.nofile, args.nofile))
            socks = []
            t0 = time.monotonic()
            for _ in range(args.flood):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", port))
                socks.append(s)
            fds, still = 0, 0                                 # let the daemon accept what it can: SYNs
            while still < 30 and time.monotonic() - t0 < 60:  # over the backlog are retried 1, 3, 7 s later
                time.sleep(0.1)
                now = len(os.listdir(f"/proc/{proc.pid}/fd"))
                fds, still = now, (still + 1 if now == fds else 0)
            t1 = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as p:
                    probe = p.recv(64).split(b"\r\n")[0].decode(errors="replace") or "(closed)"
            except OSError as exc:
                probe = f"{exc.__class__.__name__}"
            during = time.monotonic() - t1
            for s in socks:
                s.close()
            t2 = time.monotonic()
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as c:
                c.sendmail("ann@example.org", ["support@example.com"], MSG)
            after = time.monotonic() - t2
            alive = proc.poll() is None
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
        text = log.read_text(errors="replace")
    print(f"flood of {args.flood} idle connections (max_sessions {args.sessions}, nofile "
          f"{args.nofile or 'unchanged'}) opened in {t1 - t0:.1f} s (until the daemon held a steady number)")
    print(f"probe during the flood: {probe!r} after {during * 1000:.0f} ms (daemon held {fds} descriptors)")
    print(f"probe after the flood: 250 after {after * 1000:.0f} ms; daemon alive {alive}, exit code on SIGTERM {code}")
    print(f"log: {text.count('cannot read state')} health retries, {text.count('watch:')} watcher retries, "
          f"{text.count('Too many open files')} EMFILE lines, internal error: {'internal error' in text}")


if __name__ == "__main__":
    main()
