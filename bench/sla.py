"""Benchmark: SLA deadlines and escalation sweeps for many open tickets.

    /work/venv/bin/python bench/sla.py [--tickets 100000] [--repeat 3] [--seed 1]

Loads the shipped rules/ and rules/sla.yaml (Berlin office calendar with German holidays,
24x7 for P1, the security desk's split shifts), generates open tickets aged up to 14 days
(exponential, mean 2 days) (P1 5 %, P2 20 %, P3 50 %, P4 25 %; 60 % answered, a third of those with a
later update; 20 % were pending for a while and resumed; 10 % are pending now) and times:

  arithmetic    add_business_time / business_time_between per call (warm caches)
  state         sla_state() for every ticket: every target's deadline, time left, breach
  plan          plan_escalations() for every ticket: (target, level, due_at, actions)
  sweep         what a periodic sweep does without stored timers: plan every open ticket
                and keep the levels due now that have not fired (fired = what the
                previous sweep, 15 minutes earlier, found due)
  sweep, index  the same decision when each ticket's next due time was stored at its
                last change (an indexed column): select next_due <= now (bisect on a
                sorted list standing in for the index) plus the tickets changed since the
                last sweep (their change re-plans them anyway); re-plan only those
  first use     the same `state` pass on freshly loaded settings (calendar years built)

Figures are the best of --repeat runs, on one core, pure Python.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from bisect import bisect_right
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from daemon.pipeline.sla import (StatusChange, TicketHistory, add_business_time,  # noqa: E402
                                 business_time_between, due_now, plan_escalations, policy_for, sla_state)
from daemon.rules import load_rules  # noqa: E402
from daemon.sla.loader import load_sla  # noqa: E402

NOW = datetime(2026, 3, 11, 10, 0, tzinfo=ZoneInfo("Europe/Berlin")).astimezone(timezone.utc)
PRIORITIES = (("P1", 5), ("P2", 20), ("P3", 50), ("P4", 25))
POLICIES = (("standard", 70), ("business-critical", 15), ("security", 10), ("vip", 5))


def pick(rnd: random.Random, table) -> str:
    return rnd.choices([k for k, _ in table], weights=[w for _, w in table])[0]


def make_tickets(n: int, seed: int) -> list[TicketHistory]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        created = NOW - timedelta(seconds=min(rnd.expovariate(1 / (2 * 86400)), 14 * 86400))
        age = (NOW - created).total_seconds()
        changes: list[StatusChange] = []
        first = last = None
        if rnd.random() < 0.6:
            first = created + timedelta(seconds=rnd.random() * age * 0.3)
            changes.append(StatusChange(first, "open"))
            if rnd.random() < 0.33:
                last = first + timedelta(seconds=rnd.random() * (NOW - first).total_seconds() * 0.5)
            if rnd.random() < 0.2:
                a = first + timedelta(seconds=rnd.random() * (NOW - first).total_seconds() * 0.5)
                b = a + (NOW - a) * rnd.random() * 0.5
                changes += [StatusChange(a, "pending"), StatusChange(b, "open")]
            if rnd.random() < 0.1:
                changes.append(StatusChange(NOW - (NOW - changes[-1].at) * rnd.random(), "pending"))
        out.append(TicketHistory(i, created, pick(rnd, PRIORITIES), "general", pick(rnd, POLICIES),
                                 tuple(changes), first, last or first))
    return out


def best(repeat: int, fn) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickets", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    opts = ap.parse_args()
    rules = load_rules(REPO / "rules")
    t0 = time.perf_counter()
    settings = load_sla(REPO / "rules", rules)
    load_s = time.perf_counter() - t0
    tickets = make_tickets(opts.tickets, opts.seed)
    pairs = [(h, policy_for(settings, h)) for h in tickets]
    n = len(pairs)
    print(f"{n} open tickets; sla.yaml loaded in {load_s * 1000:.0f} ms (national holidays 2000-2099 included)")

    cold_s, _ = best(1, lambda: [sla_state(h, p, NOW) for h, p in pairs])
    office = settings.calendars["office"]
    starts = [h.created_at for h in tickets[:20_000]]
    add_s, _ = best(opts.repeat, lambda: [add_business_time(s, timedelta(hours=30), office) for s in starts])
    btw_s, _ = best(opts.repeat, lambda: [business_time_between(s, NOW, office) for s in starts])
    state_s, states = best(opts.repeat, lambda: [sla_state(h, p, NOW) for h, p in pairs])
    plan_s, plans = best(opts.repeat, lambda: [plan_escalations(h, p, NOW) for h, p in pairs])
    earlier = NOW - timedelta(minutes=15)
    fired = [frozenset(e.key for e in due_now(plan_escalations(h, p, earlier), earlier)) for h, p in pairs]

    def sweep():
        return [e for (h, p), f in zip(pairs, fired) for e in due_now(plan_escalations(h, p, NOW, f), NOW)]
    sweep_s, due = best(opts.repeat, sweep)

    # next_due as stored after the previous sweep: the first unfired level of each ticket
    nxt = []
    for k, ((h, p), f) in enumerate(zip(pairs, fired)):
        plan = plan_escalations(h, p, earlier, f)
        rest = [e for e in plan if e.key not in f]
        if rest:
            nxt.append((rest[0].due_at, k))
    nxt.sort()
    cut = [d for d, _ in nxt]

    # tickets that changed since (a reply, a status change) are re-planned by the change itself
    changed = {k for k, (h, _) in enumerate(pairs)
               if any(earlier < x <= NOW for x in (h.created_at, h.first_response_at, h.last_update_at,
                                                   *(c.at for c in h.status_changes)) if x is not None)}

    def indexed():
        hit = sorted({k for _, k in nxt[:bisect_right(cut, NOW)]} | changed)
        return [e for k in hit for e in due_now(plan_escalations(*pairs[k], NOW, fired[k]), NOW)], len(hit)
    index_s, (due_ix, selected) = best(opts.repeat, indexed)
    assert sorted(e.key + str(e.ticket_id) for e in due_ix) == sorted(e.key + str(e.ticket_id) for e in due)

    breached = sum(1 for s in states if s.breaches)
    levels = sum(len(x) for x in plans)
    print(f"arithmetic   add_business_time(30h)  {add_s / len(starts) * 1e6:6.2f} us/call")
    print(f"             business_time_between   {btw_s / len(starts) * 1e6:6.2f} us/call")
    print(f"state        {state_s:6.2f} s  {state_s / n * 1e6:6.1f} us/ticket   ({breached} tickets breached)")
    print(f"plan         {plan_s:6.2f} s  {plan_s / n * 1e6:6.1f} us/ticket   ({levels} pending levels)")
    print(f"sweep        {sweep_s:6.2f} s  {sweep_s / n * 1e6:6.1f} us/ticket   ({len(due)} newly due now, "
          f"{sum(map(len, fired))} fired before)")
    print(f"sweep, index {index_s:6.3f} s  for {selected} selected tickets ({len(due_ix)} due; same as sweep)")
    print(f"first use    {cold_s:6.2f} s  (state pass on fresh settings, calendar years built on demand)")


if __name__ == "__main__":
    main()
