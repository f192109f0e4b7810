"""The SLA state for people and scripts: `helpdesk show` (the contract's `sla` object plus
its `clocks`), `helpdesk export`, and the inputs of `helpdesk sla report`.

`sla_json` is pure: the ticket's history, its policy and `now` in, plain data out:
  response_due, resolution_due   the deadlines (for a met target: the one that applied;
                                 null while the clock is paused, since it is not known yet)
  responded_at                   the first public agent reply (by mail or `helpdesk reply`;
                                 commands, notes and CLI updates are not one)
  breached                       the targets missed (a breach cannot be undone)
  policy, policy_reason, priority, clocks: per target its phase (running | paused |
  stopped | inactive), its state (met | breached | unanswered | the phase; unanswered: a
  first response never given, the ticket resolved within the goal - not met), goal,
  business time used and left (seconds), percent, due and done times; next_escalation
  and escalations (levels fired) when the store's rows are given.
`SlaReader` is the edge: it loads sla.yaml with the rules (a file that does not load
leaves the `sla` object empty rather than failing `show` or `export`) and reads the store.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Iterable

from daemon.settings import defaults_of
from daemon.errors import RulesError
from daemon.pipeline.sla import (SlaSettings, TicketHistory, plan_escalations, policy_for, select_policy,
                                 sla_state)
from daemon.rules.loader import load_rules
from daemon.sla.loader import SLA_FILE, load_sla
from daemon.sla.report import SlaReport, build_report
from store.records import TicketDetail
from store.sla_store import FiredRow, SlaRow, SlaStore, build_history, is_agent_reply, status_of

log = logging.getLogger(__name__)
EMPTY = {"response_due": None, "resolution_due": None, "responded_at": None, "breached": []}
_TICK = timedelta(microseconds=1)


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat(timespec="seconds") if dt is not None else None


def _secs(d: timedelta | None) -> float | None:
    return None if d is None else round(d.total_seconds(), 3)


def sla_json(history: TicketHistory, settings: SlaSettings, now: datetime, *, row: SlaRow | None = None,
             fired: Iterable[FiredRow] | None = None) -> dict[str, Any]:
    """The `sla` object of `show --json` (see module docstring)."""
    policy = policy_for(settings, history)
    state = sla_state(history, policy, now)
    if not state.clocks:
        return dict(EMPTY, policy=policy.name, priority=history.priority, clocks=[],
                    note=f"policy {policy.name} has no targets for priority {history.priority}")
    clocks, due = [], {}
    for c in state.clocks:
        at = c.due_at
        if at is None and c.phase == "stopped" and c.done_at is not None and c.done_at > history.created_at:
            before = sla_state(history, policy, c.done_at - _TICK).clock(c.target)   # the deadline that applied
            at = before.due_at if before is not None else None
        due[c.target] = at
        targets = policy.targets[history.priority]
        clocks.append({"target": c.target, "phase": c.phase, "goal_seconds": _secs(c.goal),
                       "elapsed_seconds": _secs(c.elapsed), "left_seconds": _secs(c.left),
                       "percent": round(c.percent, 1), "due_at": _iso(at), "done_at": _iso(c.done_at),
                       "met": c.met, "breached": c.breached, "unanswered": c.unanswered,
                       "state": c.state, "calendar": targets.calendar.name})
    out: dict[str, Any] = {
        "response_due": _iso(due.get("first_response")), "resolution_due": _iso(due.get("resolution")),
        "responded_at": _iso(history.first_response_at), "breached": list(state.breaches),
        "policy": policy.name, "priority": history.priority, "clocks": clocks}
    if row is not None:
        out["policy_reason"] = row.reason
    if fired is not None:
        fired = list(fired)
        nxt = plan_escalations(history, policy, now, {f.key for f in fired})
        out["next_escalation"] = ({"at": _iso(nxt[0].due_at), "key": nxt[0].key, "target": nxt[0].target,
                                   "level": nxt[0].level} if nxt else None)
        out["escalations"] = [{"key": f.key, "target": f.target, "level": f.level, "due_at": _iso(f.due_at),
                               "fired_at": _iso(f.fired_at), "notified": [n["to"] for n in f.detail.get("notify", [])],
                               **{k: f.detail[k] for k in ("reassigned_to", "priority", "tags", "notes")
                                  if k in f.detail}} for f in fired]
    return out


def sla_text(sla: dict[str, Any]) -> list[str]:
    """Lines for `helpdesk show` (text)."""
    if not sla.get("clocks"):
        return [f"sla: {sla.get('note', 'no SLA')}"]
    lines = [f"sla: policy {sla['policy']} · priority {sla['priority']}"
             + (f" · {sla['policy_reason']}" if sla.get("policy_reason") else "")
             + (f" · BREACHED: {', '.join(sla['breached'])}" if sla["breached"] else "")]
    for c in sla["clocks"]:
        left = c["left_seconds"]
        state = c["state"]
        when = f"due {c['due_at']}" if c["due_at"] else "due -"
        lines.append(f"  {c['target']:<15} {state:<9} {when:<31} used {_dur(c['elapsed_seconds'])} of "
                     f"{_dur(c['goal_seconds'])} ({c['percent']:g}%), "
                     + (f"{_dur(left)} left" if left is not None and left >= 0 else f"over by {_dur(-left)}")
                     + (f", done {c['done_at']}" if c["done_at"] else "") + f" [{c['calendar']}]")
    nxt = sla.get("next_escalation")
    if nxt:
        lines.append(f"  next escalation: {nxt['level']} ({nxt['target']}) at {nxt['at']}")
    for e in sla.get("escalations", ()):
        lines.append(f"  escalated: {e['level']} ({e['target']}) at {e['fired_at']} -> "
                     f"{', '.join(e['notified']) or '-'}")
    return lines


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s < 600 else f"{s // 60}m"


def history_of_detail(d: TicketDetail, policy: str) -> TicketHistory:
    """The SLA history from what `show`/`export` already read (no extra queries)."""
    statuses = [(e.at, to) for e in d.events if e.kind == "status" and (to := status_of(e.detail)) is not None]
    replies = [x.received_at for x in d.messages if is_agent_reply(x.direction, x.visibility)]
    return build_history(d.ticket, policy, statuses, replies)


class SlaReader:
    """The read side for the CLI: settings loaded once, the store's SLA rows."""

    def __init__(self, cfg, engine):
        self.store = SlaStore(engine)
        self.settings = load_settings(cfg)

    def show(self, ticket_id: int, now: datetime) -> dict[str, Any]:
        got = self.store.view(ticket_id) if self.settings is not None else None
        if got is None:
            return dict(EMPTY)
        ticket, row, history, fired, _ = got
        return sla_json(self._with_policy(history, row is not None, ticket.requester), self.settings, now, row=row,
                        fired=fired)

    def export(self, details: list[TicketDetail], now: datetime) -> list[dict[str, Any]]:
        """The `sla` objects of a batch of exported tickets (one query for their policies)."""
        if self.settings is None:
            return [dict(EMPTY) for _ in details]
        policies = self.store.policies([d.ticket.id for d in details])
        return [sla_json(self._with_policy(history_of_detail(d, policies.get(d.ticket.id, "")),
                                           d.ticket.id in policies, d.ticket.requester), self.settings, now)
                for d in details]

    def report(self, start: datetime, end: datetime, now: datetime) -> SlaReport:
        if self.settings is None:
            raise RulesError("no SLA settings: rules/sla.yaml is missing", ["sla.yaml:1: not found"])
        histories = (self._with_policy(h, stored, requester) for h, stored, requester
                     in self.store.histories(start, end))
        return build_report(histories, self.settings, start=start, end=end, now=now)

    def _with_policy(self, h: TicketHistory, stored: bool, requester: str) -> TicketHistory:
        """A ticket without a stored policy (created before SLAs, or not planned yet) gets
        the one select_policy chooses now (its service is not known any more)."""
        if stored:
            return h
        domain = requester.rpartition("@")[2].lower() if "@" in (requester or "") else None
        return replace(h, policy=select_policy(self.settings, priority=h.priority, queue=h.queue, domain=domain).name)


def load_settings(cfg) -> SlaSettings | None:
    """sla.yaml checked against the rules; None (logged) when absent or not loading."""
    root = cfg.paths.rules
    if not (root / SLA_FILE).exists():
        return None
    try:
        return load_sla(root, load_rules(root, defaults=defaults_of(cfg)))
    except RulesError as exc:
        log.warning("SLA state not shown: the rules do not load (%d problem(s)); run 'helpdesk check'",
                    len(exc.problems))
        return None


def sla_preview(settings: SlaSettings, routing, requester: str | None, at: datetime) -> dict[str, Any]:
    """`helpdesk rules test`: the policy a new ticket with this routing gets, its deadlines,
    and the escalation levels that would fire if nobody answered (pure)."""
    domain = requester.rpartition("@")[2].lower() if requester and "@" in requester else None
    choice = select_policy(settings, priority=routing.priority, queue=routing.queue, service=routing.service,
                           domain=domain, requested=routing.sla_policy)
    h = TicketHistory(0, at, routing.priority, routing.queue, choice.name)
    policy = policy_for(settings, h)
    state = sla_state(h, policy, at)
    due = {c.target: c.due_at for c in state.clocks}
    return {"policy": policy.name, "reason": choice.reason, "response_due": _iso(due.get("first_response")),
            "resolution_due": _iso(due.get("resolution")),
            "escalations": [{"at": _iso(e.due_at), "target": e.target, "level": e.level, "percent": e.percent,
                             "actions": [f"{a.kind} {a.value}" + (f" to {', '.join(a.to)}" if a.to else "")
                                         for a in e.actions]} for e in plan_escalations(h, policy, at)]}


def preview_text(p: dict[str, Any]) -> list[str]:
    lines = [f"SLA: policy {p['policy']} ({p['reason']}); respond by {p['response_due'] or '-'}, "
             f"resolve by {p['resolution_due'] or '-'}"]
    lines += [f"  if nobody answers: {e['at']} {e['level']} ({e['target']} {e['percent']:g}%): "
              f"{'; '.join(e['actions'])}" for e in p["escalations"]]
    return lines
