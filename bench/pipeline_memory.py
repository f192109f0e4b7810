"""What grows in a `serve` process: the pipeline in-process, with tracemalloc and object counts.

The same parts `helpdesk serve` runs (build_app: spool, worker with its parse lanes, the
outbox and its sender threads, SLA escalator, agent desk), minus the SMTP socket: the
ingest corpus (bench/ingest.py) is put in the spool in batches and the worker stores them;
an aiosmtpd sink on loopback takes the mail the senders hand it. Every `--every` messages
it prints the process's VmRSS, the Python heap traced by tracemalloc, and the top allocation
sites and object types that grew since the first checkpoint (after a warm-up), so a leak
shows as a line whose size goes up with the number of messages. Prints figures; asserts nothing.

    .venv/bin/python bench/pipeline_memory.py [--messages 20000] [--every 5000] [--top 12] [--no-trace]
"""
from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aiosmtpd.controller import Controller  # noqa: E402

from bench.ingest import iter_corpus  # noqa: E402
from bench.serve_memory import Sink, site_config, status_kb  # noqa: E402
from tests.conftest import free_port  # noqa: E402


def type_counts() -> Counter:
    return Counter(type(o).__qualname__ for o in gc.get_objects())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--every", type=int, default=5_000)
    ap.add_argument("--warmup", type=int, default=2_000, help="messages before the baseline snapshot")
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--no-trace", action="store_true", help="no tracemalloc (RSS and object counts only)")
    args = ap.parse_args()
    from daemon import tasks
    from daemon.app import build_app, start_consumer
    from daemon.config import load_config
    from daemon.model import Envelope

    sink = Sink()
    ctl = Controller(sink, hostname="127.0.0.1", port=free_port())
    ctl.start()
    tmp = Path(tempfile.mkdtemp(prefix="hd-bench-pipe-mem-"))
    cfg = site_config(tmp, free_port(), ctl.port)
    cfg.write_text(cfg.read_text() + "[limits]\nparse_seconds = 300\n")     # a loaded machine, tracemalloc
    app = build_app(load_config(str(cfg)))
    tasks.huey.bind(app.mail.delivery)
    stop = start_consumer(app)
    env = Envelope("bench@example.org", ("support@example.com",), source="smtp", peer="127.0.0.1")
    corpus = iter_corpus(args.messages)
    done, base_snap, base_types, t0 = 0, None, None, time.monotonic()
    try:
        while done < args.messages:
            batch = [(raw.replace(b"\n", b"\r\n"), env) for raw, _, _ in
                     (next(corpus) for _ in range(min(100, args.messages - done)))]
            app.spool.put_many(batch)
            while app.spool.depth():
                app.worker.run_batch()
            done += len(batch)
            if done == args.warmup or (base_snap is None and done >= args.warmup):
                gc.collect()
                if not args.no_trace:
                    tracemalloc.start(8)
                    base_snap = tracemalloc.take_snapshot()
                else:
                    base_snap = True
                base_types = type_counts()
                print(f"{done:>7} baseline  VmRSS {status_kb('self', 'VmRSS') / 1024:.1f} MB", flush=True)
            elif done % args.every == 0 and base_snap is not None:
                gc.collect()
                line = f"{done:>7} msgs  {done / (time.monotonic() - t0):6.1f} msg/s  VmRSS {status_kb('self', 'VmRSS') / 1024:.1f} MB"
                if not args.no_trace:
                    snap = tracemalloc.take_snapshot()
                    cur, _ = tracemalloc.get_traced_memory()
                    line += f"  traced {cur / 1e6:.1f} MB"
                print(line + f"  relay got {sink.mails}", flush=True)
                if not args.no_trace:
                    for st in snap.compare_to(base_snap, "traceback")[:args.top]:
                        frames = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in st.traceback[:4])
                        print(f"    {st.size_diff / 1024:+9.0f} KiB {st.count_diff:+8d} blocks  {frames}")
                grown = type_counts() - base_types
                print("    objects grown: " + ", ".join(f"{k} +{v}" for k, v in grown.most_common(args.top)),
                      flush=True)
    finally:
        stop(5)
        app.close()
        ctl.stop()


if __name__ == "__main__":
    main()
