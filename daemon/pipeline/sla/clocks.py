"""SLA clocks, deadlines and escalation plans over one ticket's history (pure).

Role in the pipeline: after the store has recorded a ticket change, `sla_state` says where
each target stands at `now` and `plan_escalations` which escalation levels are still to
fire and when; the store/queue edge schedules and fires them (exactly once, by `key`).
Policies and calendars come from rules/sla.yaml (daemon.sla.loader.load_sla); time is
always an argument.

Clock rules (docs: rules/sla.yaml):
- Three targets: `first_response` (until the first public agent reply), `resolution`
  (until resolved) and optionally `update` (from the latest public agent reply to the
  next one, once there was a first response).
- Every clock runs only while the ticket's status is neither paused (`pending`: waiting
  on the customer) nor stopped (`resolved`, `closed`), and only in the calendar's open
  time. A reopen resumes the resolution clock where it stopped (time already used stays
  used). Only a public answer to the requester is a first response: resolving a ticket
  without one stops the first-response clock too (its time while resolved is not
  counted, and a reopen resumes it), but the target is then `unanswered` - not met;
  breached when it had already run past its goal.
- A priority (or policy) change recomputes everything as if the ticket had always had
  the new one: elapsed business time is measured from creation on the new calendar.
- A target is met when its elapsed business time is <= the target, breached when >.
  `due_at` is the latest instant that still meets it (see calendar.add_business_time:
  a deadline running out at closing time falls on the next business morning).
- An escalation level at p % is due when p % of the target has elapsed. Its `key`
  (policy:target:level; the update target adds its cycle start) identifies it for
  firing exactly once; a priority change does not re-arm levels already fired.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Collection, Iterable, Mapping

from daemon.model import INITIAL_STATUS, PAUSED, STOPPED, StatusChange, TicketHistory
from daemon.pipeline.calendar import (BusinessCalendar, add_business_time, add_us, between_us,
                                      business_time_between, from_us, to_us)

__all__ = ["Action", "BusinessCalendar", "ClockState", "Escalation", "Level", "Policy", "PolicyChoice",
           "Selector", "SlaSettings", "SlaState", "StatusChange", "Targets", "TicketHistory",
           "add_business_time", "business_time_between", "due_now", "plan_escalations", "policy_for",
           "select_policy", "sla_state"]

TARGETS = ("first_response", "resolution", "update")
_ONE = timedelta(microseconds=1)


# ------------------------------------------------------------------ inputs
# ------------------------------------------------------------------ policies (built by daemon.sla.loader)
@dataclass(frozen=True)
class Action:
    """One effect of an escalation level. kind: notify (value = template, `to` =
    recipients: assignee | queue | role:NAME | an address), reassign (value = agent
    address or role:NAME), priority (value = a level or "raise"), tag (value = tag)."""

    kind: str
    value: str
    to: tuple[str, ...] = ()


@dataclass(frozen=True)
class Level:
    """An escalation level: due at `percent` % of each target in `targets`."""

    name: str
    percent: float
    actions: tuple[Action, ...]
    targets: frozenset[str] = frozenset(TARGETS)


@dataclass(frozen=True)
class Targets:
    """The targets of one priority in one policy, measured on `calendar`."""

    calendar: BusinessCalendar
    first_response: timedelta
    resolution: timedelta
    update: timedelta | None = None

    def goal(self, target: str) -> timedelta | None:
        return getattr(self, target)


@dataclass(frozen=True)
class Policy:
    """A named SLA: targets per priority level and an escalation ladder."""

    name: str
    targets: Mapping[str, Targets]
    levels: tuple[Level, ...] = ()
    description: str = ""
    where: str = ""                  # "sla.yaml:40"


@dataclass(frozen=True)
class Selector:
    """`select:` entry: the policy for tickets matching every given (non-None) field."""

    policy: str
    queues: frozenset[str] | None = None
    priorities: frozenset[str] | None = None
    services: frozenset[str] | None = None
    domains: tuple[str, ...] | None = None
    where: str = ""

    def matches(self, priority: str, queue: str, service: str | None, domain: str | None) -> bool:
        d = (domain or "").lower()
        return ((self.queues is None or queue in self.queues)
                and (self.priorities is None or priority in self.priorities)
                and (self.services is None or service in self.services)
                and (self.domains is None or any(d == x or d.endswith("." + x) for x in self.domains)))


@dataclass(frozen=True)
class SlaSettings:
    """rules/sla.yaml, validated: calendars, policies, selectors, the default policy."""

    version: str
    source: str
    calendars: Mapping[str, BusinessCalendar]
    policies: Mapping[str, Policy]
    selectors: tuple[Selector, ...]
    default_policy: str


@dataclass(frozen=True)
class PolicyChoice:
    name: str
    reason: str


def select_policy(settings: SlaSettings, *, priority: str, queue: str, service: str | None = None,
                  domain: str | None = None, requested: str | None = None) -> PolicyChoice:
    """The policy for a ticket: `requested` (Routing.sla_policy, from a service) when it
    exists, else the first matching `select:` entry, else `default_policy`."""
    if requested and requested in settings.policies:
        return PolicyChoice(requested, f"routing chose {requested!r}"
                                       f"{f' (service {service})' if service else ''}")
    for sel in settings.selectors:
        if sel.matches(priority, queue, service, domain):
            return PolicyChoice(sel.policy, f"{sel.where} select matched")
    note = f" (routing asked for unknown {requested!r})" if requested else ""
    return PolicyChoice(settings.default_policy, f"default_policy{note}")


def policy_for(settings: SlaSettings, history: TicketHistory) -> Policy:
    """The ticket's stored policy, or the default one when sla.yaml no longer has it."""
    return settings.policies.get(history.policy) or settings.policies[settings.default_policy]


# ------------------------------------------------------------------ outputs
@dataclass(frozen=True)
class ClockState:
    """One target at `now`. phase: running | paused | stopped | inactive (the update
    target before any first response). `elapsed` is business time; `due_at` is the
    deadline while running, the breach instant once breached, else None. `unanswered`:
    a first-response clock stopped by a resolve without any public answer (not met)."""

    target: str
    goal: timedelta
    phase: str
    elapsed: timedelta
    due_at: datetime | None
    done_at: datetime | None = None
    unanswered: bool = False

    @property
    def breached(self) -> bool:
        return self.elapsed > self.goal

    @property
    def met(self) -> bool:
        return self.phase == "stopped" and not self.breached and not self.unanswered

    @property
    def state(self) -> str:
        """met | breached | unanswered (stopped without an answer, within the goal) | the phase."""
        if self.breached:
            return "breached"
        if self.met:
            return "met"
        return "unanswered" if self.unanswered else self.phase

    @property
    def left(self) -> timedelta:
        """Business time left (negative once breached)."""
        return self.goal - self.elapsed

    @property
    def percent(self) -> float:
        return 100.0 * (self.elapsed / self.goal)


@dataclass(frozen=True)
class SlaState:
    ticket_id: int
    policy: str
    priority: str
    at: datetime
    clocks: tuple[ClockState, ...]

    def clock(self, target: str) -> ClockState | None:
        return next((c for c in self.clocks if c.target == target), None)

    @property
    def breaches(self) -> tuple[str, ...]:
        return tuple(c.target for c in self.clocks if c.breached)


@dataclass(frozen=True)
class Escalation:
    """A level still to fire: at `due_at` (maybe already past: fire now)."""

    ticket_id: int
    key: str
    target: str
    level: str
    percent: float
    due_at: datetime
    actions: tuple[Action, ...]


# ------------------------------------------------------------------ clocks
Period = tuple[int, int, str]          # [from, to) in µs and the status during it


def _periods(h: TicketHistory, now: int) -> list[Period]:
    """Status periods from creation to now; changes after now are not known yet."""
    t, status, out = to_us(h.created_at), INITIAL_STATUS, []
    for change in h.status_changes:
        at = to_us(change.at)
        if at > now:
            break
        at = max(at, t)
        out.append((t, at, status))
        t, status = at, change.status
    out.append((t, max(t, now), status))
    return out


def _running(periods: list[Period], start: int, end: int) -> list[tuple[int, int]]:
    out = []
    for a, b, status in periods:
        if status in PAUSED or status in STOPPED:
            continue
        a, b = max(a, start), min(b, end)
        if a <= b:
            out.append((a, b))
    return out


class _Clock:
    """Segments of running wall time with their business lengths: the deadline for any
    fraction of the target is then one pass and at most one add_us."""

    __slots__ = ("cal", "segs", "lens", "elapsed", "running")

    def __init__(self, cal: BusinessCalendar, segs: list[tuple[int, int]], running: bool):
        self.cal, self.segs, self.running = cal, segs, running
        self.lens = [between_us(cal, a, b) for a, b in segs]
        self.elapsed = sum(self.lens)

    def deadline(self, goal: int) -> int | None:
        used = 0
        for (a, _), n in zip(self.segs, self.lens):
            if used + n > goal:
                return add_us(self.cal, a, goal - used)
            used += n
        if self.running and self.segs:
            return add_us(self.cal, self.segs[-1][0], goal - (used - self.lens[-1]))
        return None


Clocks = Iterable[tuple[str, int, str, "_Clock", int | None, int]]


def _clocks(h: TicketHistory, targets: Targets, now: int) -> Clocks:
    """(target, goal µs, phase, clock, done_at µs, cycle start µs) for each set target.
    A first-response clock whose done_at is set without a first response is unanswered."""
    periods = _periods(h, now)
    created, status = periods[0][0], periods[-1][2]
    phase = "stopped" if status in STOPPED else "paused" if status in PAUSED else "running"
    fr = _known(h.first_response_at, now)
    cal = targets.calendar

    whole = _Clock(cal, _running(periods, created, now), phase == "running")
    resolved = _stopped_since(periods) if phase == "stopped" else None
    if fr is not None:
        yield "first_response", targets.first_response // _ONE, "stopped", \
            _Clock(cal, _running(periods, created, fr), False), fr, created
    else:                                    # until answered, it is the resolution clock's twin
        yield "first_response", targets.first_response // _ONE, phase, whole, resolved, created
    yield "resolution", targets.resolution // _ONE, phase, whole, resolved, created
    if targets.update is not None:
        start = _known(h.last_update_at, now)
        start = fr if start is None else start
        if start is None:
            yield "update", targets.update // _ONE, "inactive", _Clock(cal, [], False), None, created
        else:
            yield "update", targets.update // _ONE, phase, \
                _Clock(cal, _running(periods, start, now), phase == "running"), resolved, start


def _stopped_since(periods: list[Period]) -> int:
    """Start of the trailing run of stopped periods (resolved, then closed: the resolve)."""
    at = periods[-1][0]
    for a, _, status in reversed(periods):
        if status not in STOPPED:
            break
        at = a
    return at


def _known(at: datetime | None, now: int) -> int | None:
    if at is None:
        return None
    t = to_us(at)
    return t if t <= now else None


def sla_state(history: TicketHistory, policy: Policy, now: datetime) -> SlaState:
    """Each target of the ticket's priority in `policy`, as of `now` (no clocks when the
    policy has no targets for that priority)."""
    targets = policy.targets.get(history.priority)
    clocks: list[ClockState] = []
    if targets is not None:
        answered = _known(history.first_response_at, to_us(now)) is not None
        for target, goal, phase, clock, done, _ in _clocks(history, targets, to_us(now)):
            due = clock.deadline(goal)
            clocks.append(ClockState(target, timedelta(microseconds=goal), phase,
                                     timedelta(microseconds=clock.elapsed),
                                     None if due is None else from_us(due),
                                     None if done is None else from_us(done),
                                     target == "first_response" and phase == "stopped" and not answered))
    return SlaState(history.ticket_id, policy.name, history.priority, now, tuple(clocks))


def plan_escalations(history: TicketHistory, policy: Policy, now: datetime,
                     fired: Collection[str] = frozenset()) -> tuple[Escalation, ...]:
    """Escalation levels of running targets not yet in `fired`, by due time (then target,
    then level). Paused and resolved tickets get none; a met target gets none; a level
    already overdue has its past `due_at` and should fire at once, unless it was due before
    an archive import stored the ticket (`history.archived_at`): that is the past."""
    targets = policy.targets.get(history.priority)
    if targets is None or not policy.levels:
        return ()
    quiet = to_us(history.archived_at) if history.archived_at is not None else None
    out: list[tuple[int, int, float, Escalation]] = []
    for rank, (target, goal, phase, clock, _, cycle) in enumerate(_clocks(history, targets, to_us(now))):
        if phase != "running":
            continue
        base = f"{policy.name}:{target}" + (f"@{from_us(cycle).isoformat()}" if target == "update" else "")
        for level in policy.levels:
            key = f"{base}:{level.name}"
            if target not in level.targets or key in fired:
                continue
            due = clock.deadline(round(goal * level.percent / 100))
            if due is not None and (quiet is None or due >= quiet):
                out.append((due, rank, level.percent, Escalation(history.ticket_id, key, target, level.name,
                                                                 level.percent, from_us(due), level.actions)))
    out.sort(key=lambda x: x[:3])
    return tuple(x[3] for x in out)


def due_now(plans: Iterable[Escalation], now: datetime) -> tuple[Escalation, ...]:
    """The planned escalations due at or before `now` (naive = UTC)."""
    t = to_us(now)
    return tuple(e for e in plans if to_us(e.due_at) <= t)
