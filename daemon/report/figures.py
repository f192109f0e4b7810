"""The continual improvement report's figures (pure): counts, times, rates and weekly trends.

`build_figures` takes plain rows (store.report_reads: tickets that may have been open in
the period, satisfaction answers, problems; SLA histories with the SLA settings) and
computes, for the tickets CREATED in [start, end):

  volume        by type, queue, service and channel (the intake of the first message)
  times         first response (first public answer) and resolution (first resolved or
                closed): median and p90 by nearest rank, wall-clock time; SLA attainment
                (met / (met + breached), business time, as `helpdesk sla report`) overall
                and by queue
  reopen rate   of those resolved, the share reopened afterwards
and, for the period as a whole: the backlog at its end (open tickets, with their age in
buckets), satisfaction (answers given in the period: average, distribution, share 4-5),
the problems with the most linked incidents, and week by week (ISO weeks, Monday 00:00
UTC): created, resolved, backlog at the week's end and median first response, with the
change from the week before.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable, Sequence

from daemon.pipeline.sla import SlaSettings, TicketHistory, policy_for, sla_state
from store.report_reads import ProblemLinks, Score, TicketFacts

DONE = ("resolved", "closed")
DIMENSIONS = ("type", "queue", "service", "channel")
AGE_BUCKETS = ((timedelta(days=1), "under 1 day"), (timedelta(days=3), "1-3 days"),
               (timedelta(days=7), "3-7 days"), (timedelta(days=30), "7-30 days"), (None, "over 30 days"))


@dataclass(frozen=True)
class Times:
    """One measure (first response or resolution) over a group of tickets."""

    target: str
    key: str
    measured: int
    median: timedelta | None
    p90: timedelta | None
    met: int = 0
    breached: int = 0

    @property
    def attainment(self) -> float | None:
        decided = self.met + self.breached
        return 100.0 * self.met / decided if decided else None


@dataclass(frozen=True)
class Week:
    start: datetime
    created: int
    resolved: int
    backlog: int
    first_response_median: timedelta | None


@dataclass(frozen=True)
class Satisfaction:
    answers: int
    average: float | None
    distribution: tuple[tuple[int, int], ...]          # (score, count) for 1..5
    satisfied: float | None                            # % of answers scoring 4 or 5
    by_queue: tuple[tuple[str, int, float], ...]       # (queue, answers, average)


@dataclass(frozen=True)
class Figures:
    start: datetime
    end: datetime
    generated_at: datetime
    tickets: int
    volume: dict[str, tuple[tuple[str, int], ...]]
    times: tuple[Times, ...]
    resolved: int
    reopened: int
    backlog: int
    backlog_ages: tuple[tuple[str, int], ...]
    oldest: timedelta | None
    satisfaction: Satisfaction | None
    problems: tuple[ProblemLinks, ...] | None
    weeks: tuple[Week, ...] = field(default=())

    @property
    def reopen_rate(self) -> float | None:
        return 100.0 * self.reopened / self.resolved if self.resolved else None

    def time(self, target: str, key: str = "all") -> Times | None:
        return next((t for t in self.times if (t.target, t.key) == (target, key)), None)


def status_at(t: TicketFacts, when: datetime) -> str:
    status = "new"
    for at, to in t.statuses:
        if at > when:
            break
        status = to
    return status


def resolved_at(t: TicketFacts) -> datetime | None:
    return next((at for at, to in t.statuses if to in DONE), None)


def reopened(t: TicketFacts) -> bool:
    seen_done = False
    for _, to in t.statuses:
        if to in DONE:
            seen_done = True
        elif seen_done:
            return True
    return False


def median_p90(values: Sequence[timedelta]) -> tuple[timedelta | None, timedelta | None]:
    times = sorted(values)
    if not times:
        return None, None
    return statistics.median(times), times[math.ceil(0.9 * len(times)) - 1]


def _counts(values: Iterable[str]) -> tuple[tuple[str, int], ...]:
    out: dict[str, int] = {}
    for v in values:
        out[v or "(none)"] = out.get(v or "(none)", 0) + 1
    return tuple(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def _sla(histories: Iterable[TicketHistory], settings: SlaSettings | None, now: datetime,
         ids: set[int]) -> dict[tuple[str, str], list[int]]:
    """(target, queue or "all") -> [met, breached]."""
    out: dict[tuple[str, str], list[int]] = {}
    if settings is None:
        return out
    for h in histories:
        if h.ticket_id not in ids:
            continue
        state = sla_state(h, policy_for(settings, h), now)
        for target in ("first_response", "resolution"):
            clock = state.clock(target) if state.clocks else None
            if clock is None or not (clock.met or clock.breached):
                continue
            for key in ("all", h.queue):
                out.setdefault((target, key), [0, 0])[0 if clock.met else 1] += 1
    return out


def _times(created: list[TicketFacts], sla: dict) -> tuple[Times, ...]:
    out = []
    for target, when in (("first_response", lambda t: t.first_response_at), ("resolution", resolved_at)):
        groups: dict[str, list[timedelta]] = {"all": []}
        for t in created:
            groups.setdefault(t.queue, [])
            at = when(t)
            if at is not None:
                groups["all"].append(at - t.created_at)
                groups[t.queue].append(at - t.created_at)
        for key in ["all", *sorted(k for k in groups if k != "all")]:
            med, p90 = median_p90(groups[key])
            met, breached = sla.get((target, key), (0, 0))
            out.append(Times(target, key, len(groups[key]), med, p90, met, breached))
    return tuple(out)


def _ages(open_: list[TicketFacts], end: datetime) -> tuple[tuple[str, int], ...]:
    counts = {label: 0 for _, label in AGE_BUCKETS}
    for t in open_:
        age = end - t.created_at
        counts[next(label for limit, label in AGE_BUCKETS if limit is None or age < limit)] += 1
    return tuple(counts.items())


def satisfaction_of(scores: list[Score] | None) -> Satisfaction | None:
    if scores is None:
        return None
    values = [s.score for s in scores]
    by_queue: dict[str, list[int]] = {}
    for s in scores:
        by_queue.setdefault(s.queue, []).append(s.score)
    return Satisfaction(len(values), statistics.fmean(values) if values else None,
                        tuple((n, values.count(n)) for n in range(1, 6)),
                        100.0 * sum(1 for v in values if v >= 4) / len(values) if values else None,
                        tuple((q, len(v), statistics.fmean(v)) for q, v in sorted(by_queue.items())))


def weeks_of(start: datetime, end: datetime, tickets: list[TicketFacts]) -> tuple[Week, ...]:
    monday = (start - timedelta(days=start.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    out = []
    ws = monday
    while ws < end:
        we = ws + timedelta(days=7)
        lo, hi = max(ws, start), min(we, end)
        made = [t for t in tickets if lo <= t.created_at < hi]
        done = sum(1 for t in tickets for at, to in t.statuses if to == "resolved" and lo <= at < hi)
        backlog = sum(1 for t in tickets if t.created_at < hi and status_at(t, hi) not in DONE)
        med, _ = median_p90([t.first_response_at - t.created_at for t in made if t.first_response_at])
        out.append(Week(lo, len(made), done, backlog, med))
        ws = we
    return tuple(out)


def build_figures(tickets: Iterable[TicketFacts], *, start: datetime, end: datetime, now: datetime,
                  histories: Iterable[TicketHistory] = (), settings: SlaSettings | None = None,
                  scores: list[Score] | None = None, problems: list[ProblemLinks] | None = None) -> Figures:
    """The report's figures (see module docstring); `tickets`: those that may have been open
    in the period (store.report_reads.ReportReads.maybe_open)."""
    everything = list(tickets)
    created = [t for t in everything if start <= t.created_at < end]
    volume = {dim: _counts(getattr(t, dim) for t in created) for dim in DIMENSIONS}
    done = [t for t in created if resolved_at(t) is not None]
    open_ = [t for t in everything if t.created_at < end and status_at(t, end) not in DONE]
    oldest = max((end - t.created_at for t in open_), default=None)
    sla = _sla(histories, settings, now, {t.id for t in created})
    return Figures(start, end, now, len(created), volume, _times(created, sla), len(done),
                   sum(1 for t in done if reopened(t)), len(open_), _ages(open_, end), oldest,
                   satisfaction_of(scores), tuple(problems) if problems is not None else None,
                   weeks_of(start, end, everything))
