"""Benchmark: one MTA pipe delivery (`helpdesk ingest` on stdin) handed to a running daemon.

Starts a real `helpdesk serve` on a temp state directory, then times, interleaved, N runs
of `python3 -c pass` and N pipe deliveries (`helpdesk --config SITE ingest --sender ...
--recipient ...` with one message on stdin), and prints the medians and their ratio (the
target: within 3x). The delivery is run three ways: the console script of a regular
(non-editable) install in a throwaway venv - what an admin has; the console script of
this venv (an editable install adds its import finder to every start); and
`python3 -m daemon` with PYTHONPATH. The fast path imports only stdlib modules, so the
throwaway venv needs no dependencies (`pip install --no-deps`).

Run by hand (prints figures; no assertions):
    .venv/bin/python bench/handoff.py            # 10 runs each
    .venv/bin/python bench/handoff.py -n 30 --no-install
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import write_site_config  # noqa: E402

PYTHON3 = os.path.realpath(getattr(sys, "_base_executable", sys.executable))   # not a pyenv shim
MSG = b"From: ann@example.org\nTo: support@example.com\nSubject: printer\n\nIt jams.\n"


def timed(argv: list[str], env: dict, stdin: bytes | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child): CPU time is steadier on a busy machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, input=stdin, capture_output=True, env=env)
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    if proc.stderr:
        raise SystemExit(f"{argv[0]} wrote to stderr: {proc.stderr.decode()[-500:]}")
    return took, cpu


def plain_install(tmp: Path) -> Path | None:
    """A throwaway venv with a regular install of this checkout; its `helpdesk` script."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    proc = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", str(REPO)],
                          capture_output=True)
    if proc.returncode != 0:
        print(f"(regular install failed, skipped: {proc.stderr.decode()[-300:]})")
        return None
    return venv / "bin" / "helpdesk"


def start_serve(cfg: Path, env: dict) -> subprocess.Popen:
    log = open(cfg.parent / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(cfg), "serve"], stdout=log,
                            stderr=subprocess.STDOUT, env=env, cwd=str(cfg.parent))
    run = cfg.parent / "state" / "run"
    deadline = time.monotonic() + 120
    while not (run.is_dir() and any(run.glob("serve-*.json"))):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("serve did not start: " + (cfg.parent / "serve.log").read_text()[-2000:])
        time.sleep(0.05)
    return proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10, help="runs of each (default 10)")
    ap.add_argument("--no-install", action="store_true", help="skip the regular-install variant")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cfg = write_site_config(tmp, "[queue]\nbackend = \"immediate\"\n[outbound]\nport = 9\n")
        env = dict(os.environ, PYTHONPATH=str(REPO))
        env.pop("HELPDESK_CONFIG", None)
        serve = start_serve(cfg, env)
        try:
            tail = ["--config", str(cfg), "ingest", "--sender", "ann@example.org", "--recipient", "support@example.com"]
            ways = {"console script, regular install": None if args.no_install else plain_install(tmp),
                    "console script, this venv (editable)": Path(sys.executable).with_name("helpdesk"),
                    "python3 -m daemon": None}
            variants = {name: [str(script), *tail] for name, script in ways.items() if script and script.exists()}
            variants["python3 -m daemon"] = [PYTHON3, "-m", "daemon", *tail]
            base, times = [], {name: [] for name in variants}
            for _ in range(args.n):
                base.append(timed([PYTHON3, "-c", "pass"], env))
                for name, argv in variants.items():
                    times[name].append(timed(argv, env, MSG))
            print(f"python3 = {PYTHON3}; load average {os.getloadavg()[0]:.1f}; medians of {args.n}")
            for i, what in ((0, "wall"), (1, "CPU")):
                ref = statistics.median(t[i] for t in base)
                print(f"{what}: python3 -c pass {ref * 1000:.1f} ms")
                for name, runs in times.items():
                    med = statistics.median(t[i] for t in runs)
                    print(f"{what}: pipe hand-off, {name}: {med * 1000:.1f} ms = {med / ref:.2f} x python3 -c pass")
            deadline = time.monotonic() + 60
            while any((tmp / "state" / "spool" / "new").iterdir()) and time.monotonic() < deadline:
                time.sleep(0.1)
            print(f"spool drained by the daemon: {not any((tmp / 'state' / 'spool' / 'new').iterdir())}")
        finally:
            serve.terminate()
            serve.wait(timeout=60)


if __name__ == "__main__":
    main()
