"""Peak memory of `helpdesk serve` while many clients send large mails at once.

The attack of issue 12 (defect 4): 10 parallel SMTP transfers of 24 MB each. Starts a real
daemon (a subprocess, SQLite state in a temp dir), sends the mails from threads, samples
the daemon's RSS from /proc every 20 ms and reads its high-water mark (VmHWM) when all
250s are in (`--drain` also waits until the worker has stored them all). Prints figures;
asserts nothing.

    .venv/bin/python bench/smtp_memory.py [--parallel 10] [--mb 24] [--drain] [--repo PATH] [--intake-only]

`--repo` runs another checkout's daemon (e.g. an export of main) for a before/after figure.
"""
from __future__ import annotations

import argparse
import base64
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import free_port  # noqa: E402
from tests.integration.intake_memory import send_at_once, start_intake, status_kb, stop_intake  # noqa: E402


def big_mail(i: int, mb: int) -> bytes:
    """A mail with a base64 attachment, `mb` MB on the wire, CRLF line ends."""
    payload = base64.encodebytes(os.urandom(mb * 1024 * 1024 * 3 // 4 - 4096)).replace(b"\n", b"\r\n")
    head = (f"From: user{i}@example.org\r\nTo: support@example.com\r\nSubject: big {i}\r\n"
            f"Message-ID: <big-{i}@example.org>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
            "--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
            f"Content-Disposition: attachment; filename=dump{i}.bin\r\n\r\n").encode()
    return head + payload + b"--b--\r\n"


def start_intake_only(repo: Path, state: Path, port: int) -> subprocess.Popen:
    """Only the SMTP intake (no worker parsing what arrives): its own memory."""
    return start_intake(state / "spool", port, max_bytes=30_000_000, timeout=300, repo=repo)


def start(repo: Path, state: Path, port: int) -> subprocess.Popen:
    cfg = state / "bench.toml"
    cfg.write_text(f'[helpdesk]\nstate_dir = "state"\n[smtp]\nport = {port}\ndomains = ["example.com"]\n'
                   'max_message_bytes = 30000000\n[worker]\nidle_poll_seconds = 0.2\n')
    env = dict(os.environ, PYTHONPATH=str(repo))
    env.pop("HELPDESK_CONFIG", None)
    log = open(state / "serve.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(cfg), "serve"], cwd=str(state),
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while b" ready" not in (state / "serve.log").read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("serve did not start: " + (state / "serve.log").read_text()[-2000:])
        time.sleep(0.05)
    return proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parallel", type=int, default=10)
    ap.add_argument("--mb", type=int, default=24)
    ap.add_argument("--drain", action="store_true", help="also wait until the worker stored every mail")
    ap.add_argument("--repo", type=Path, default=REPO)
    ap.add_argument("--intake-only", action="store_true", help="run only the SMTP intake, not `serve`")
    args = ap.parse_args()
    mails = [big_mail(i, args.mb) for i in range(args.parallel)]
    with tempfile.TemporaryDirectory(prefix="hd-bench-mem-") as tmp:
        state, port = Path(tmp), free_port()
        proc = (start_intake_only if args.intake_only else start)(args.repo.resolve(), state, port)
        try:
            base = status_kb(proc.pid, "VmRSS")
            peak, done = [base], threading.Event()

            def sample() -> None:
                while not done.wait(0.02):
                    peak[0] = max(peak[0], status_kb(proc.pid, "VmRSS"))
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            t0 = time.monotonic()
            results = send_at_once(port, mails, timeout=300)
            took = time.monotonic() - t0
            received_hwm = status_kb(proc.pid, "VmHWM")
            if args.drain:
                spool = state / "state" / "spool"
                while any(os.listdir(spool / d) for d in ("new", "cur")):
                    time.sleep(0.2)
            done.set()
            hwm = status_kb(proc.pid, "VmHWM")
        finally:
            if args.intake_only:
                stop_intake(proc)
            else:
                proc.terminate()
                proc.wait(timeout=60)
    ok = results.count("250")
    print(f"{args.parallel} x {args.mb} MB in parallel: {ok} answered 250 in {took:.1f} s "
          f"({args.parallel * args.mb / took:.0f} MB/s)")
    for r in results:
        if r != "250":
            print("  not accepted:", r)
    print(f"daemon RSS: {base / 1024:.0f} MB at start, peak {max(peak[0], received_hwm) / 1024:.0f} MB while "
          f"receiving (VmHWM {received_hwm / 1024:.0f} MB)" + (f", VmHWM {hwm / 1024:.0f} MB after the worker "
                                                               "stored them" if args.drain else ""))


if __name__ == "__main__":
    main()
