"""Benchmark of the parse stage (daemon.pipeline.parse), run by hand.

    .venv/bin/python bench/parse.py [CORPUS_DIR] [--repeat N]

Parses every .eml file of ../shared/corpus and prints the cost of one parse() call per
message (total, median, p95, max; the fastest of --repeat runs of each message counts,
the least disturbed by the machine), then the cost of a few hostile mails built here
(a Content-Type with thousands of parameters, an attached message whose Subject is one
100,000-byte line of 8-bit bytes, a huge header). Refused mail counts as parsed: its
ParseError is the result. Compare two branches on the same machine, one after the other.
"""
from __future__ import annotations

import argparse
import gc
import logging
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daemon.errors import ParseError  # noqa: E402
from daemon.pipeline.parse import parse  # noqa: E402

DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus"


def hostile_mails() -> dict[str, bytes]:
    """The attack mails of issue 12 (defect 2), and a few of the same family."""
    head = b"From: a@example.org\r\nTo: help@desk.test\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
    params = b"".join(b";\r\n p%d=v%d" % (i, i) for i in range(60_000))
    inner = b"From: b@example.org\r\nSubject: " + b"\xe9" * 100_000 + b"\r\n\r\nhi\r\n"
    attached = (head + b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\n'
                b"Content-Type: text/plain\r\n\r\nsee attached\r\n--B\r\n"
                b"Content-Type: message/rfc822\r\n"
                b"Content-Disposition: attachment; filename=inner.eml\r\n\r\n" + inner + b"--B--\r\n")
    return {
        "content-type parameter flood (1 MB)": head + b"Content-Type: text/plain" + params
        + b"\r\n\r\nbody\r\n",
        "attached message, 100 KB 8-bit Subject": attached,
        "100 KB Subject of encoded words": head + b"Subject: "
        + b" ".join([b"=?utf-8?q?=C3=A9?="] * 6_000) + b"\r\n\r\nbody\r\n",
    }


def time_call(raw: bytes, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        try:
            parse(raw)
        except ParseError:
            pass
        best = min(best, time.perf_counter() - start)
    return best


def render_stats(label: str, seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (f"{label:<26} n={len(ordered):<4} total {sum(ordered):7.3f} s   median "
            f"{statistics.median(ordered) * 1e3:7.3f} ms   p95 {p95 * 1e3:7.3f} ms   "
            f"max {ordered[-1] * 1e3:8.3f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-hostile", action="store_true", help="skip the hostile mails")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)       # mail-parser logs every part type it skips
    files = sorted(args.corpus.rglob("*.eml"))
    if not files:
        print(f"no .eml files under {args.corpus}", file=sys.stderr)
        return 2
    mails = {str(p.relative_to(args.corpus)): p.read_bytes() for p in files}
    gc.collect()
    costs = {name: time_call(raw, args.repeat) for name, raw in mails.items()}
    print(render_stats("corpus (.eml)", list(costs.values())))
    slowest = sorted(costs, key=costs.get, reverse=True)[:3]
    print("slowest:", ", ".join(f"{name} {costs[name] * 1e3:.1f} ms" for name in slowest))
    if not args.no_hostile:
        for label, raw in hostile_mails().items():
            print(f"hostile: {label:<42} {time_call(raw, 1):8.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
