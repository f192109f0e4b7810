"""Benchmark: the cost per message of the agent path, run by hand (prints figures).

    /work/venv/bin/python bench/agents.py [-n 200]

Stages, each timed per message (median, p95) in one process on SQLite:
  token      checking a reply token (HMAC, one compare_digest)
  dkim       authenticating a 2048-bit RSA DKIM signature (dkimpy; the key from a dict DNS,
             so no network time is included - add your resolver's latency)
  decide     claim, verdict, command parsing and validation (pure)
  agent mail the whole worker path of a signed agent answer with two commands: parse,
             thread, token, DKIM, store transaction (message, commands, events, outbox rows
             for the customer's reply and the confirmation), mail built; sending is a no-op
  customer   the same worker path for a customer's reply (the baseline, no agent path)
Signing the test mails is not timed.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daemon import tokens  # noqa: E402
from daemon.model import Envelope  # noqa: E402
from daemon.pipeline import agent as plan  # noqa: E402
from daemon.pipeline.commands import Vocabulary, parse_commands, validate  # noqa: E402
from daemon.pipeline.parse import parse  # noqa: E402
from tests.agentkit import Zone, agent_reply, reply_address, sign  # noqa: E402
from tests.integration.test_outbox import close_desk, make_desk, new_mail  # noqa: E402


def timed(label: str, fn, items) -> None:
    runs = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        runs.append(time.perf_counter() - t)
    runs.sort()
    p95 = runs[min(len(runs) - 1, int(len(runs) * 0.95))]
    print(f"{label:<11} n={len(runs):<5} median {statistics.median(runs) * 1000:8.3f} ms   p95 {p95 * 1000:8.3f} ms")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=200)
    n = ap.parse_args().n
    with tempfile.TemporaryDirectory() as tmp:
        d = make_desk(Path(tmp))
        try:
            zone = Zone()
            pem = zone.publish("mail", "example.com")
            agents = d.app.worker.agents
            agents.auth.lookup = zone
            d.mail(new_mail(1))
            notice = next(raw for _, r, raw in d.relay.sent if "ana@example.com" in r)
            to = reply_address(notice)
            tok = to.split("@")[0].split("+", 1)[1]
            timed("token", lambda _: tokens.check_reply_token(agents.ring, tok, d.clock().date()), range(n))
            signed = [sign(agent_reply(notice, f"#priority P2\n#tag vip\nAnswer {i}.", n=i), "example.com", pem)
                      for i in range(n)]
            timed("dkim", agents.auth.authenticate, signed[:n])
            rules = d.app.rules.current
            roster = plan.roster_of(rules.queues)
            vocab = Vocabulary(frozenset(rules.queues), frozenset(rules.types), frozenset(rules.tags),
                               frozenset(roster), tuple(rules.matrix.levels))
            env = Envelope("ana@example.com", (to,), "smtp", "", d.clock().isoformat())
            msgs = [parse(raw) for raw in signed[:n]]
            check = tokens.check_reply_token(agents.ring, tok, d.clock().date())
            ticket = agents.tickets.state(1)
            from daemon.identity import Auth
            from daemon.model import ThreadDecision
            ok = Auth("pass", "ana@example.com", "dkim")

            def decide(m):
                claim = plan.claim_of(m, env, roster, "support@example.com")
                plan.decide(m, claim, check, ok, ticket, ThreadDecision("append", 1, ""), roster)
                validate(parse_commands(m.text), vocab, sender="ana@example.com", ticket_id=1)
            timed("decide", decide, msgs)
            timed("agent mail", lambda raw: d.app.worker.process(raw, env), signed)
            ack = next(raw for _, r, raw in d.relay.sent if "ann@example.org" in r)
            import email
            from email import policy
            mid = email.message_from_bytes(ack, policy=policy.default)["Message-ID"]
            replies = [(f"From: Ann <ann@example.org>\r\nTo: support@example.com\r\nSubject: Re: [HD-1] Printer jams"
                        f"\r\nMessage-ID: <c{i}@example.org>\r\nIn-Reply-To: {mid}\r\n\r\nStill jams ({i}).\r\n"
                        ).encode() for i in range(n)]
            cenv = Envelope("ann@example.org", ("support@example.com",), "smtp", "", d.clock().isoformat())
            timed("customer", lambda raw: d.app.worker.process(raw, cenv), replies)
        finally:
            close_desk(d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
