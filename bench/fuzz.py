"""Fuzzing the whole pipeline with mutated real mail, run by hand (issue 12).

    .venv/bin/python bench/fuzz.py [--count N] [--seed S] [--corpus DIR] [--budget SECONDS]
                                   [--out DIR]

Mutates the .eml files of ../shared/corpus (byte flips, truncation, duplicated headers,
broken boundaries, odd charsets, overlong lines, parameter floods, encoded-word floods,
deep nesting; one to three of them per mutant, chosen by a seeded generator, so a run is
reproducible) and runs every mutant through the real pipeline: parse under the time
budget (daemon.parse_guard) -> thread -> classify -> store, into a temporary SQLite
store built the way the tests build an App (no mail is planned). Mail the parser refuses
is quarantined in that store, with its reason. Prints: mutants, stored (by outcome),
quarantined (by reason; a mutant over smtp.max_message_bytes counts as refused at intake,
as SMTP answers 552 before spooling it), crashed, lost (neither stored nor quarantined), the slowest
message and the p50/p99 per-message time. A crashed or over-budget mutant is written to
--out (default ./fuzz-out) with its seed and mutators, to be replayed with `helpdesk
rules test` or `parse()`. Exit 1 when anything crashed or was lost.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import random
import re
import statistics
import sys
import tempfile
import time
import traceback
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daemon.errors import ParseError  # noqa: E402
from daemon.model import Envelope  # noqa: E402

DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus"
ODD_CHARSETS = ["utf-32", "utf-16", "utf-7", "iso-2022-jp", "x-unknown", "unicode-escape", "base64",
                "gb2312", "shift_jis", "koi8-r", "cp1252", "", '"', "utf-8'en'", "idna", "rot13",
                "iso-8859-8-i", "ks_c_5601-1987", "x-mac-roman", "a" * 300]


def _lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\n")


def flip_bytes(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 20)):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def truncate(rng: random.Random, raw: bytes) -> bytes:
    return raw[:rng.randrange(1, max(2, len(raw)))]


def duplicate_headers(rng: random.Random, raw: bytes) -> bytes:
    head, sep, body = raw.partition(b"\n\n")
    lines = _lines(head)
    if not lines:
        return raw
    line = rng.choice(lines)
    k = rng.randrange(len(lines))
    return b"\n".join(lines[:k] + [line] * rng.choice([2, 10, 500, 3000]) + lines[k:]) + sep + body


def break_boundaries(rng: random.Random, raw: bytes) -> bytes:
    m = re.search(rb'boundary="?([^";\s]+)', raw, re.I)
    if not m:
        return raw
    b = m.group(1)
    choice = rng.randrange(4)
    if choice == 0:
        return raw.replace(b"--" + b + b"--", b"")                    # no closing delimiter
    if choice == 1:
        return raw.replace(m.group(0), m.group(0)[:-1], 1)            # declared one differs
    if choice == 2:
        return raw.replace(b"--" + b, b"--" + b[:-1] + b"X", 1)       # first delimiter wrong
    return raw.replace(m.group(0), b"boundary='" + b + b"'", 1)      # single quotes


def odd_charset(rng: random.Random, raw: bytes) -> bytes:
    label = rng.choice(ODD_CHARSETS).encode()
    if re.search(rb"charset=", raw, re.I):
        return re.sub(rb'charset="?[^";\s]*"?', b"charset=" + label, raw, count=rng.randint(1, 3), flags=re.I)
    return raw.replace(b"\n\n", b"\nContent-Type: text/plain; charset=" + label + b"\n\n", 1)


def overlong_line(rng: random.Random, raw: bytes) -> bytes:
    unit = rng.choice([b"a", b"a ", b"\xe9", b"=?utf-8?q?=C3=A9?= ", b"<", b";", b"("])
    filler = unit * (rng.choice([1_000, 20_000, 200_000]) // len(unit))
    where = rng.randrange(3)
    if where == 0:
        return b"Subject: " + filler + b"\n" + raw
    if where == 1:
        return b"From: " + filler + b" <x@example.org>\n" + raw
    head, sep, body = raw.partition(b"\n\n")
    return head + sep + filler + b"\n" + body


def parameter_flood(rng: random.Random, raw: bytes) -> bytes:
    flood = b"".join(b";\n p%d=v%d" % (i, i) for i in range(rng.choice([200, 5_000, 40_000])))
    m = re.search(rb"content-(type|disposition):[^\n]*", raw, re.I)
    if m:
        return raw[:m.end()] + flood + raw[m.end():]
    return b"Content-Type: text/plain" + flood + b"\n" + raw


def nest(rng: random.Random, raw: bytes) -> bytes:
    depth = rng.choice([5, 40, 400])
    head = "".join(f'--n{i}\nContent-Type: multipart/mixed; boundary="n{i + 1}"\n\n' for i in range(depth))
    tail = "".join(f"--n{i}--\n" for i in reversed(range(depth)))
    return (b'Content-Type: multipart/mixed; boundary="n0"\nFrom: a@example.org\n\n' + head.encode()
            + b"--n%d\nContent-Type: message/rfc822\n\n" % depth + raw + b"\n" + tail.encode())


MUTATORS = [flip_bytes, truncate, duplicate_headers, break_boundaries, odd_charset, overlong_line,
            parameter_flood, nest]


def mutate(rng: random.Random, raw: bytes) -> tuple[bytes, list[str]]:
    chosen = rng.sample(MUTATORS, rng.randint(1, 3))
    for f in chosen:
        raw = f(rng, raw)
    return raw, [f.__name__ for f in chosen]


def build_app(tmp: Path):
    from daemon.app import build_app as build
    from daemon.config import load_config
    from tests.conftest import write_site_config
    return build(load_config(str(write_site_config(tmp))), outbound=False)


def run(args: argparse.Namespace) -> int:
    from daemon.parse_guard import ParseGuard
    logging.disable(logging.CRITICAL)               # mail-parser logs every odd part
    corpus = [p.read_bytes() for p in sorted(args.corpus.rglob("*.eml"))]
    if not corpus:
        print(f"no .eml files under {args.corpus}", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    out = Path(args.out)
    guard = ParseGuard(1)
    tmp = Path(tempfile.mkdtemp(prefix="helpdesk-fuzz-"))
    app = build_app(tmp)
    limits = app.worker.settings.limits
    max_bytes = app.config.smtp.max_message_bytes
    outcomes, reasons, crashes = Counter(), Counter(), Counter()
    times: list[tuple[float, int, list[str]]] = []
    started = time.monotonic()
    for n in range(args.count):
        raw, how = mutate(rng, rng.choice(corpus))
        if len(raw) > max_bytes:                   # SMTP refuses it (552): never spooled
            reasons["552 at intake (over smtp.max_message_bytes)"] += 1
            continue
        env = Envelope("fuzz@example.org", ("support@example.com",), "fuzz", f"mutant {n}",
                       datetime.now(timezone.utc).isoformat())
        t0 = time.perf_counter()
        try:
            try:
                msg = guard.parse(raw, limits=limits, envelope_mail_from=env.mail_from, seconds=args.budget)
            except ParseError as exc:
                app.store.quarantine(raw, hashlib.sha256(raw).hexdigest(), env, "parse", exc.reason,
                                     exc.detail, datetime.now(timezone.utc))
                reasons[exc.reason] += 1
            else:
                outcomes[app.worker.process(raw, env, msg).outcome] += 1
        except Exception as exc:                    # noqa: BLE001 - what fuzzing is for
            crashes[type(exc).__name__] += 1
            _keep(out, n, args.seed, how, raw, traceback.format_exc())
        elapsed = time.perf_counter() - t0
        times.append((elapsed, n, how))
        if elapsed > args.budget:
            _keep(out, n, args.seed, how, raw, f"over the budget: {elapsed:.2f} s")
        elif args.keep_slower and elapsed > args.keep_slower:
            _keep(out, n, args.seed, how, raw, f"slow: {elapsed:.2f} s")
        if args.progress and n and n % 1000 == 0:
            print(f"  {n} mutants, {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
        if args.report_every and n and n % args.report_every == 0:
            _report(argparse.Namespace(**{**vars(args), "count": n + 1}), outcomes, reasons, crashes, times,
                    app, time.monotonic() - started)
    guard.close()
    _report(args, outcomes, reasons, crashes, times, app, time.monotonic() - started)
    return 1 if crashes or _lost(args.count, outcomes, reasons, crashes) else 0


def _lost(count: int, outcomes: Counter, reasons: Counter, crashes: Counter) -> int:
    return count - sum(outcomes.values()) - sum(reasons.values()) - sum(crashes.values())


def _keep(out: Path, n: int, seed: int, how: list[str], raw: bytes, why: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"seed{seed}-mutant{n}.eml").write_bytes(raw)
    (out / f"seed{seed}-mutant{n}.txt").write_text(f"mutators: {' '.join(how)}\n{why}\n")


def _report(args, outcomes, reasons, crashes, times, app, wall: float) -> None:
    ordered = sorted(t for t, _, _ in times)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    worst, wn, whow = max(times)
    counts = app.store.counts()
    held = len(app.store.quarantine_list())
    print(f"seed {args.seed}: {args.count} mutants in {wall:.0f} s ({args.count / wall:.0f}/s), "
          f"parse budget {args.budget:g} s")
    print(f"stored      {sum(outcomes.values()):>7}  " + ", ".join(f"{k} {v}" for k, v in outcomes.most_common()))
    print(f"quarantined {sum(reasons.values()):>7}  " + ", ".join(f"{k} {v}" for k, v in reasons.most_common()))
    print(f"crashed     {sum(crashes.values()):>7}  " + ", ".join(f"{k} {v}" for k, v in crashes.most_common()))
    print(f"lost        {_lost(args.count, outcomes, reasons, crashes):>7}")
    print(f"store: {counts} ; quarantine rows held: {held} (identical bytes are kept once)")
    print(f"per message: p50 {statistics.median(ordered) * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms, "
          f"slowest {worst:.3f} s (mutant {wn}: {' '.join(whow)}); over the budget: "
          f"{sum(1 for t in ordered if t > args.budget)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--budget", type=float, default=10.0, help="parse budget per message (s)")
    parser.add_argument("--out", default="fuzz-out", help="where crashed / over-budget mutants go")
    parser.add_argument("--keep-slower", type=float, default=0.0,
                        help="also keep every mutant slower than this (s), to re-time it on a quiet machine")
    parser.add_argument("--progress", action="store_true", help="a line on stderr every 1,000")
    parser.add_argument("--report-every", type=int, default=0, help="the figures so far every N mutants")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
