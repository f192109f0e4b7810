"""Benchmark: what a `helpdesk` command costs to start, against `python3 -c pass` (issue 16).

Makes a site with `helpdesk init` in a temp dir (SQLite; the database is created by the first
command, not timed) and, for the pipe hand-off, a second site with a real `helpdesk serve`
running (so that the mail it takes in does not fill the first one's database), then times,
interleaved, N runs of each:

    python -c pass                       the floor (the same interpreter)
    helpdesk --help
    helpdesk tickets                     empty database
    helpdesk show 1                      empty database: "ticket 1 not found", exit 1
    (--with-ticket: a database with one ticket instead: tickets, show 1 (it), show 2 (not found))
    helpdesk ingest (pipe hand-off)      one message on stdin, spooled for the running serve

and prints the medians (wall and CPU of the child; CPU is steadier on a busy machine) and
each one's ratio to `python -c pass` (the target: within 3x). Commands run as
`python -m daemon` with PYTHONPATH=--repo (default: this checkout), so another checkout can
be measured with the same interpreter and packages (`--repo /tmp/main-copy`). Bytecode is
cached (PYTHONPYCACHEPREFIX in the temp dir, PYTHONDONTWRITEBYTECODE unset) and one untimed
run of each warms it, as an installed package's .pyc files are: without it every start
compiles the project's sources again.

    .venv/bin/python bench/cli_start.py            # 10 runs each
    .venv/bin/python bench/cli_start.py -n 20 --with-ticket
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

from bench.handoff import start_serve  # noqa: E402

MSG = b"From: ann@example.org\nTo: support@example.com\nSubject: printer\n\nIt jams.\n"


def site(tmp: Path, env: dict, repo: Path) -> Path:
    """`helpdesk init` in tmp/site: the shipped config, rules and templates, as an admin starts."""
    subprocess.run([sys.executable, "-m", "daemon", "init", str(tmp / "site")], env=env, check=True,
                   capture_output=True, cwd=str(tmp))
    return tmp / "site" / "config.toml"


def handoff_site(tmp: Path) -> Path:
    """A second site for the hand-off, so that the serve's new tickets do not fill the first."""
    from tests.conftest import write_site_config
    (tmp / "pipe").mkdir()
    return write_site_config(tmp / "pipe", "[queue]\nbackend = \"immediate\"\n[outbound]\nport = 9\n")


def timed(argv: list[str], env: dict, stdin: bytes | None, expect: int, cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child); the exit status must be `expect`. Run in
    `cwd`, not here: `python -m` puts the working directory first on sys.path."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, input=stdin, capture_output=True, env=env, cwd=str(cwd))
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != expect:
        raise SystemExit(f"{' '.join(argv[2:])} exited {proc.returncode}: {proc.stderr.decode()[-800:]}")
    return took, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_checked(argv: list[str], env: dict, cwd: Path, stdin: bytes | None = None) -> None:
    proc = subprocess.run(argv, input=stdin, capture_output=True, env=env, cwd=str(cwd))
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[2:])} exited {proc.returncode}: {proc.stderr.decode()[-800:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10, help="runs of each (default 10)")
    ap.add_argument("--repo", type=Path, default=REPO, help="the checkout to run (PYTHONPATH); default this one")
    ap.add_argument("--with-ticket", action="store_true", help="also time `show` of an existing ticket")
    ap.add_argument("--no-serve", action="store_true", help="skip the pipe hand-off (no daemon started)")
    args = ap.parse_args()
    repo = args.repo.resolve()
    env = dict(os.environ, PYTHONPATH=str(repo))
    env.pop("HELPDESK_CONFIG", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    py = sys.executable
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        cfg = site(tmp, env, repo)
        base = [py, "-m", "daemon", "--config", str(cfg)]
        run_checked(base + ["tickets"], env, cfg.parent)          # creates the database (not timed)
        variants: dict[str, tuple[list[str], bytes | None, int]] = {
            "helpdesk --help": ([py, "-m", "daemon", "--help"], None, 0),
            "helpdesk tickets (empty db)": (base + ["tickets"], None, 0),
            "helpdesk show 1 (empty db: not found)": (base + ["show", "1"], None, 1),
        }
        if args.with_ticket:
            run_checked(base + ["ingest", "--no-mail", "-"], env, cfg.parent, MSG)
            variants = {"helpdesk --help": variants["helpdesk --help"],
                        "helpdesk tickets (one ticket)": (base + ["tickets"], None, 0),
                        "helpdesk show 1 (the ticket)": (base + ["show", "1"], None, 0),
                        "helpdesk show 2 (not found)": (base + ["show", "2"], None, 1)}
        serve = None
        if not args.no_serve:
            pipe = handoff_site(tmp)
            serve = start_serve(pipe, env)
            variants["pipe hand-off (ingest on stdin)"] = (
                [py, "-m", "daemon", "--config", str(pipe), "ingest", "--sender", "ann@example.org", "--recipient", "support@example.com"], MSG, 0)
        try:
            for argv, stdin, rc in variants.values():          # writes the bytecode cache
                timed(argv, env, stdin, rc, tmp)
            floor, times = [], {name: [] for name in variants}
            for _ in range(args.n):
                floor.append(timed([py, "-c", "pass"], env, None, 0, tmp))
                for name, (argv, stdin, rc) in variants.items():
                    times[name].append(timed(argv, env, stdin, rc, tmp))
        finally:
            if serve is not None:
                serve.terminate()
                serve.wait(timeout=60)
    print(f"repo {repo}; python {py}; load average {os.getloadavg()[0]:.1f}; medians of {args.n}")
    for i, what in ((0, "wall"), (1, "CPU")):
        ref = statistics.median(t[i] for t in floor)
        print(f"{what:>4}: {'python -c pass':<40} {ref * 1000:7.1f} ms")
        for name, runs in times.items():
            med = statistics.median(t[i] for t in runs)
            print(f"{what:>4}: {name:<40} {med * 1000:7.1f} ms = {med / ref:5.2f} x")


if __name__ == "__main__":
    main()
