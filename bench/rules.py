"""Benchmark: rule evaluation cost per message for 10, 100 and 1,000 rules.

    /work/venv/bin/python bench/rules.py [--messages N] [--body-bytes B]

Builds rule sets in a temporary directory (the shipped queues/priority/vocabulary/services
plus generated routing rules), then times `classify()` — Facts, every rule tried, the
miss explanations and the Routing — on a typical message that matches no rule, so all N
rules are tried (the worst case for first-match-wins). Two mixes:

  mixed       what real rule sets look like: subject contains / regex, sender domain,
              body contains, header presence, any/all combinations (1 in 10 touch the body)
  body-regex  every rule runs a regex over the body (pathological)

Target: under 1 ms per message at 1,000 rules for the mixed set.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from daemon.model import Address, MachineVerdict, ParsedMessage, ThreadDecision  # noqa: E402
from daemon.pipeline.classify import Defaults, classify  # noqa: E402
from daemon.rules import load_rules  # noqa: E402

HEAD = """calendar: {timezone: Europe/London, days: [mon, tue, wed, thu, fri], hours: {from: "08:00", to: "18:00"}}
default: {type: incident, queue: general, priority: P3}
rules:
"""


def mixed_rule(i: int) -> str:
    kind = i % 10
    word = f"w{i:04d}x"
    when = {
        0: f"{{subject: {word}}}",
        1: f"{{subject: [{word}, {word}y, {word}z]}}",
        2: f"{{subject: {{matches: '\\b{word}\\b'}}}}",
        3: f"{{from_domain: [d{i}.example, e{i}.example]}}",
        4: f"{{from: {{equals: user{i}@example.org}}}}",
        5: f"{{body: {word}}}",
        6: f"{{header: {{name: X-Tag-{i}, present: true}}}}",
        7: f"{{any: [{{subject: {word}}}, {{from_domain: d{i}.example}}]}}",
        8: f"{{subject: {word}, from_domain: d{i}.example}}",
        9: f"{{to: {{equals: team{i}@example.com}}}}",
    }[kind]
    return f"  - {{name: r{i}, when: {when}, then: {{queue: network, type: request, tags: [vip]}}}}\n"


def body_regex_rule(i: int) -> str:
    return (f"  - {{name: r{i}, when: {{body: {{matches: '\\bw{i:04d}x\\b'}}}}, "
            f"then: {{queue: network}}}}\n")


def build(root: Path, n: int, make) -> Path:
    shutil.copytree(REPO / "rules", root, ignore=shutil.ignore_patterns("tests", "routing.yaml"))
    (root / "routing.yaml").write_text(HEAD + "".join(make(i) for i in range(n)), encoding="utf-8")
    return root


def message(body_bytes: int) -> ParsedMessage:
    line = "The shared printer on the third floor shows an error and my documents do not come out. "
    text = (line * (body_bytes // len(line) + 1))[:body_bytes]
    return ParsedMessage(
        message_id="bench@example.com", message_id_synthetic=False, content_digest="0" * 64,
        subject="Printer on the third floor is not printing anything", from_addr=Address("A", "a@corp.example"),
        reply_to=(), to=(Address("", "support@example.com"),), cc=(), date=None, in_reply_to=(), references=(),
        text=text, html=None, attachments=(),
        headers=tuple((f"X-Header-{k}", "value") for k in range(15)), machine=MachineVerdict("human"))


def time_one(rules, msg, repeat: int) -> tuple[float, float]:
    decision, defaults, now = ThreadDecision("new", None, "bench"), Defaults(), datetime.now(timezone.utc)
    for _ in range(min(50, repeat)):
        classify(msg, decision, rules, defaults, now=now)
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        r = classify(msg, decision, rules, defaults, now=now)
        samples.append(time.perf_counter() - t)
    assert len(r.misses) == len(rules.rules), "every rule must be tried"
    return statistics.median(samples) * 1000, statistics.mean(samples) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=2000, help="timed messages per case")
    ap.add_argument("--body-bytes", type=int, default=2000, help="size of the message body")
    args = ap.parse_args()
    msg = message(args.body_bytes)
    print(f"classify() per message, all rules tried (no match); body {args.body_bytes} bytes; "
          f"Python {sys.version.split()[0]}")
    print(f"{'mix':<11} {'rules':>6} {'median ms':>10} {'mean ms':>9} {'µs/rule':>8} {'load s':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for mix, make in (("mixed", mixed_rule), ("body-regex", body_regex_rule)):
            for n in (10, 100, 1000):
                t = time.perf_counter()
                rules = load_rules(build(Path(tmp) / f"{mix}{n}", n, make))
                load = time.perf_counter() - t
                repeat = max(50, args.messages * 10 // n) if n < 1000 else args.messages // 4
                median, mean = time_one(rules, msg, repeat)
                print(f"{mix:<11} {n:>6} {median:>10.3f} {mean:>9.3f} {median * 1000 / n:>8.2f} {load:>7.2f}")


if __name__ == "__main__":
    main()
