"""Benchmark: `helpdesk rules replay` rate (messages/s) on a generated month of mail.

Stores N first messages (default 3,000: about a month of a small desk) spread over 30 days
through the real worker (no outgoing mail), then replays them by the shipped rules and by
a candidate with one more rule, as `helpdesk rules replay` does (parse the stored bytes,
classify twice, diff). Prints the fill time, the replay time and the rate.

Run by hand (prints figures; no assertions):
    .venv/bin/python bench/rules_replay.py
    .venv/bin/python bench/rules_replay.py -n 10000
"""
from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from daemon.app import build_app, defaults_of  # noqa: E402
from daemon.config import load_config  # noqa: E402
from daemon.model import Envelope  # noqa: E402
from daemon.rules.loader import load_rules  # noqa: E402
from daemon.rules_replay import replay  # noqa: E402

SUBJECTS = ("Printer on floor {n} jams", "VPN drops every hour", "Password expired", "New laptop for {name}",
            "Outlook keeps asking for my password", "Access to the finance share", "Monitor flickers",
            "Server unreachable", "Wi-Fi slow in room {n}", "Licence for Visio", "Phishing mail received")
NAMES = ("Ann", "Bob", "Cy", "Dee", "Eve", "Fay", "Gus")
EXTRA_RULE = """rules:
  - name: printers-to-workplace
    when:
      subject: [printer]
    then:
      queue: workplace
"""


def mail(i: int, rng: random.Random, at: datetime) -> bytes:
    name = rng.choice(NAMES)
    subject = rng.choice(SUBJECTS).format(n=rng.randint(1, 9), name=name)
    dom = rng.choice(("example.org", "board.example.com", "example.net"))
    return (f"From: {name} <{name.lower()}{i}@{dom}>\r\nTo: support@example.com\r\nSubject: {subject}\r\n"
            f"Date: {at:%a, %d %b %Y %H:%M:%S +0000}\r\nMessage-ID: <b{i}@{dom}>\r\n\r\n"
            f"Hello,\r\n{subject.lower()} since this morning. Please help.\r\n{name}\r\n").encode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=3000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    (tmp / "site.toml").write_text('[helpdesk]\naddress = "support@example.com"\nstate_dir = "state"\n'
                                   '[queue]\nbackend = "immediate"\n')
    cfg = load_config(str(tmp / "site.toml"))
    app = build_app(cfg, outbound=False)
    rng, start = random.Random(3), datetime(2026, 2, 1, tzinfo=timezone.utc)
    t = time.perf_counter()
    for i in range(args.n):
        at = start + timedelta(seconds=30 * 86400 * i / args.n)
        app.worker.process(mail(i, rng, at), Envelope("x@example.org", ("support@example.com",), "smtp", "",
                                                       at.isoformat()))
    filled = time.perf_counter() - t
    cand = tmp / "candidate"
    shutil.copytree(REPO / "rules", cand)
    text = (cand / "routing.yaml").read_text()
    (cand / "routing.yaml").write_text(text.replace("rules:\n", EXTRA_RULE, 1))
    defaults = defaults_of(cfg)
    live, candidate = load_rules(cfg.paths.rules, defaults=defaults), load_rules(cand, defaults=defaults)
    report = replay(app.store.engine, live, candidate, defaults, start)
    print(f"stored {args.n} first messages in {filled:.1f}s; replayed {report.routed} in {report.seconds:.2f}s: "
          f"{report.rate:.0f} messages/s (each parsed once, routed twice); {len(report.changes)} would change")
    app.close()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
