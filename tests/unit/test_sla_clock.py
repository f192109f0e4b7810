"""SLA clocks over ticket histories: deadlines, pauses, reopen, priority changes,
update cycles, escalation plans and policy selection — all with a settable clock."""
from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from zoneinfo import ZoneInfo

from daemon.pipeline.calendar import ALWAYS, BusinessCalendar
from daemon.pipeline.sla import (Action, Level, Policy, Selector, SlaSettings, StatusChange, Targets,
                                 TicketHistory, due_now, plan_escalations, policy_for, select_policy, sla_state)

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
H, M = timedelta(hours=1), timedelta(minutes=1)
REPO = Path(__file__).resolve().parents[2]

OFFICE = BusinessCalendar("office", "Europe/Berlin",
                          tuple(((8 * 60, 18 * 60),) if d < 5 else () for d in range(7)),
                          holidays=frozenset({date(2026, 4, 3), date(2026, 4, 6)}))
AROUND = BusinessCalendar("24x7", "UTC", ALWAYS)
NOTIFY = (Action("notify", "agent/sla-warning", ("assignee",)),)
LEVELS = (Level("warn", 75, NOTIFY),
          Level("breached", 100, (Action("notify", "agent/sla-breached", ("assignee", "role:lead")),
                                  Action("reassign", "role:lead"))),
          Level("manager", 150, (Action("priority", "raise"),), frozenset({"first_response", "resolution"})))
POLICY = Policy("std", {"P1": Targets(AROUND, 30 * M, 4 * H, H),
                        "P2": Targets(OFFICE, H, 8 * H, 4 * H),
                        "P3": Targets(OFFICE, 4 * H, 30 * H),
                        "P4": Targets(OFFICE, 8 * H, 100 * H)}, LEVELS)


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN).astimezone(UTC)


class Clock:
    """The settable clock of these tests: time moves only when a test says so."""

    def __init__(self, now: datetime):
        self.now = now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


def ticket(created: datetime, priority: str = "P3", changes: tuple = (), first: datetime | None = None,
           last: datetime | None = None, policy: str = "std") -> TicketHistory:
    return TicketHistory(1, created, priority, "general", policy,
                         tuple(StatusChange(at, s) for at, s in changes), first, last or first)


MON_9 = berlin(2026, 3, 2, 9)          # Monday 2 March 2026, 09:00 in Berlin


# ------------------------------------------------------------------ deadlines
def test_a_new_ticket_has_its_deadlines_in_business_time():
    st = sla_state(ticket(MON_9), POLICY, berlin(2026, 3, 2, 11))
    fr, res = st.clock("first_response"), st.clock("resolution")
    assert fr.due_at == berlin(2026, 3, 2, 13) and fr.left == 2 * H and fr.percent == 50 and fr.phase == "running"
    assert res.due_at == berlin(2026, 3, 5, 9)               # 9 + 10 + 10 + 1 hours of office time
    assert st.clock("update") is None and st.breaches == ()


def test_first_response_exactly_at_the_deadline_is_met_a_microsecond_later_is_not():
    due = berlin(2026, 3, 2, 13)
    met = sla_state(ticket(MON_9, first=due), POLICY, berlin(2026, 3, 3, 9)).clock("first_response")
    assert met.met and met.phase == "stopped" and met.done_at == due and met.elapsed == 4 * H and met.due_at is None
    late = sla_state(ticket(MON_9, first=due + timedelta(microseconds=1)), POLICY, berlin(2026, 3, 3, 9))
    fr = late.clock("first_response")
    assert fr.breached and fr.due_at == due and late.breaches == ("first_response",)


def test_a_reply_before_the_next_opening_still_meets_a_target_that_ran_out_at_closing_time():
    created = berlin(2026, 3, 2, 14)                             # 4h run out at 18:00 -> due Tue 08:00
    assert sla_state(ticket(created), POLICY, created).clock("first_response").due_at == berlin(2026, 3, 3, 8)
    fr = sla_state(ticket(created, first=berlin(2026, 3, 3, 7, 30)), POLICY, berlin(2026, 3, 3, 9))
    assert fr.clock("first_response").met


def test_running_and_overdue():
    fr = sla_state(ticket(MON_9), POLICY, berlin(2026, 3, 2, 15)).clock("first_response")
    assert fr.breached and fr.phase == "running" and fr.due_at == berlin(2026, 3, 2, 13) and fr.left == -2 * H


# ------------------------------------------------------------------ pauses
def test_pending_over_the_night_stops_the_clock_until_the_customer_replies():
    h = ticket(MON_9, changes=((berlin(2026, 3, 2, 9, 30), "open"), (berlin(2026, 3, 2, 17), "pending"),
                               (berlin(2026, 3, 3, 11), "open")), first=berlin(2026, 3, 2, 9, 30))
    res = sla_state(h, POLICY, berlin(2026, 3, 3, 12)).clock("resolution")
    assert res.elapsed == 9 * H                                  # Mon 09-17 and Tue 11-12, not Tue 08-11
    assert res.due_at == berlin(2026, 3, 5, 13)                  # 4h of office time later than unpaused


def test_a_paused_ticket_has_no_deadline_and_no_escalations():
    h = ticket(MON_9, changes=((berlin(2026, 3, 2, 10), "pending"),), first=berlin(2026, 3, 2, 10))
    st = sla_state(h, POLICY, berlin(2026, 3, 9, 10))
    assert st.clock("resolution").phase == "paused" and st.clock("resolution").due_at is None
    assert st.clock("resolution").elapsed == H
    assert plan_escalations(h, POLICY, berlin(2026, 3, 9, 10)) == ()


def test_a_breach_before_the_pause_stays_a_breach():
    h = ticket(MON_9, changes=((berlin(2026, 3, 2, 15), "pending"),))
    fr = sla_state(h, POLICY, berlin(2026, 3, 3, 12)).clock("first_response")
    assert fr.phase == "paused" and fr.breached and fr.due_at == berlin(2026, 3, 2, 13)


def test_changes_after_now_are_not_known_yet():
    h = ticket(MON_9, changes=((berlin(2026, 3, 2, 12), "pending"),), first=berlin(2026, 3, 2, 12))
    st = sla_state(h, POLICY, berlin(2026, 3, 2, 11))
    assert st.clock("first_response").phase == "running" and st.clock("resolution").phase == "running"


# ------------------------------------------------------------------ resolve and reopen
def test_resolved_tickets_do_not_escalate_and_reopen_resumes_the_resolution_clock():
    resolved = ticket(MON_9, changes=((berlin(2026, 3, 3, 10), "resolved"),), first=berlin(2026, 3, 2, 10))
    st = sla_state(resolved, POLICY, berlin(2026, 3, 3, 12))
    assert st.clock("resolution").met and st.clock("resolution").elapsed == 11 * H
    assert resolved.resolved_at == berlin(2026, 3, 3, 10)
    assert plan_escalations(resolved, POLICY, berlin(2026, 3, 3, 12)) == ()
    reopened = ticket(MON_9, changes=((berlin(2026, 3, 3, 10), "resolved"), (berlin(2026, 3, 4, 10), "open")),
                      first=berlin(2026, 3, 2, 10))
    res = sla_state(reopened, POLICY, berlin(2026, 3, 4, 12)).clock("resolution")
    assert res.phase == "running" and res.elapsed == 13 * H      # 11h before, 2h since the reopen
    assert res.due_at == berlin(2026, 3, 6, 9)                   # 17h left from Wed 12:00
    assert reopened.resolved_at is None


def test_resolving_without_a_public_reply_stops_the_first_response_clock_but_does_not_meet_it():
    # Issue 17: only a public answer to the requester is a first response (this test used
    # to assert that the resolve met the target).
    resolved = ticket(MON_9, changes=((berlin(2026, 3, 2, 10), "resolved"),))
    fr = sla_state(resolved, POLICY, berlin(2026, 3, 2, 16)).clock("first_response")
    assert fr.phase == "stopped" and fr.done_at == berlin(2026, 3, 2, 10) and fr.elapsed == H
    assert fr.unanswered and not fr.met and not fr.breached and fr.state == "unanswered"
    assert plan_escalations(resolved, POLICY, berlin(2026, 3, 2, 16)) == ()
    late = ticket(MON_9, changes=((berlin(2026, 3, 2, 15), "resolved"),))          # 6h of a 4h goal
    fr = sla_state(late, POLICY, berlin(2026, 3, 2, 16)).clock("first_response")
    assert fr.unanswered and fr.breached and fr.state == "breached" and fr.due_at == berlin(2026, 3, 2, 13)
    reopened = ticket(MON_9, changes=((berlin(2026, 3, 2, 10), "resolved"), (berlin(2026, 3, 2, 11), "open")))
    fr = sla_state(reopened, POLICY, berlin(2026, 3, 2, 12)).clock("first_response")
    assert fr.phase == "running" and fr.elapsed == 2 * H and not fr.unanswered    # the resolved hour not counted
    assert fr.due_at == berlin(2026, 3, 2, 14)
    answered = ticket(MON_9, changes=((berlin(2026, 3, 2, 10), "resolved"), (berlin(2026, 3, 2, 11), "open")),
                      first=berlin(2026, 3, 2, 12))
    fr = sla_state(answered, POLICY, berlin(2026, 3, 2, 16)).clock("first_response")
    assert fr.met and fr.done_at == berlin(2026, 3, 2, 12) and fr.elapsed == 2 * H


def test_closed_counts_as_resolved_from_the_first_stop():
    h = ticket(MON_9, changes=((berlin(2026, 3, 2, 10), "resolved"), (berlin(2026, 3, 9, 10), "closed")))
    assert h.resolved_at == berlin(2026, 3, 2, 10) and h.status == "closed"
    res = sla_state(h, POLICY, berlin(2026, 3, 10, 9)).clock("resolution")
    assert res.done_at == berlin(2026, 3, 2, 10) and res.elapsed == H and res.met


# ------------------------------------------------------------------ priority changes
def test_a_priority_change_recomputes_from_creation():
    now = berlin(2026, 3, 2, 10)
    p3, p2, p1 = (sla_state(ticket(MON_9, p), POLICY, now).clock("resolution") for p in ("P3", "P2", "P1"))
    assert p3.due_at == berlin(2026, 3, 5, 9) and p2.due_at == berlin(2026, 3, 2, 17)
    assert p1.due_at == MON_9 + 4 * H                            # P1 runs on the 24x7 calendar
    late = sla_state(ticket(MON_9, "P2"), POLICY, berlin(2026, 3, 2, 15)).clock("first_response")
    assert late.breached and late.due_at == berlin(2026, 3, 2, 10)


def test_p1_on_24x7_runs_through_the_weekend():
    sat = berlin(2026, 3, 7, 23)
    st = sla_state(ticket(sat, "P1"), POLICY, sat)
    assert st.clock("first_response").due_at == sat + 30 * M and st.clock("resolution").due_at == sat + 4 * H


def test_a_ticket_whose_priority_has_no_targets_has_no_clocks():
    h = ticket(MON_9, "P9")
    assert sla_state(h, POLICY, MON_9).clocks == () and plan_escalations(h, POLICY, MON_9) == ()


# ------------------------------------------------------------------ update cycles
def test_the_update_clock_restarts_at_each_public_agent_reply():
    first = berlin(2026, 3, 2, 9, 30)
    st = sla_state(ticket(MON_9, "P2", first=first), POLICY, berlin(2026, 3, 2, 10))
    assert st.clock("update").due_at == berlin(2026, 3, 2, 13, 30)
    h = ticket(MON_9, "P2", first=first, last=berlin(2026, 3, 2, 12))
    assert sla_state(h, POLICY, berlin(2026, 3, 2, 12)).clock("update").due_at == berlin(2026, 3, 2, 16)
    plans = plan_escalations(h, POLICY, berlin(2026, 3, 2, 12))
    updates = [(e.level, e.due_at) for e in plans if e.target == "update"]
    assert updates == [("warn", berlin(2026, 3, 2, 15)), ("breached", berlin(2026, 3, 2, 16))]   # no manager
    assert all(e.key.startswith("std:update@2026-03-02T11:00:00+00:00:") for e in plans if e.target == "update")


def test_no_update_is_due_before_the_first_response():
    st = sla_state(ticket(MON_9, "P2"), POLICY, berlin(2026, 3, 2, 9, 30))
    assert st.clock("update").phase == "inactive" and st.clock("update").due_at is None


# ------------------------------------------------------------------ escalation plans
def test_plan_is_sorted_and_skips_fired_levels():
    now = berlin(2026, 3, 2, 12)
    plans = plan_escalations(ticket(MON_9), POLICY, now)
    assert [(e.target, e.level, e.due_at) for e in plans] == [
        ("first_response", "warn", berlin(2026, 3, 2, 12)),
        ("first_response", "breached", berlin(2026, 3, 2, 13)),
        ("first_response", "manager", berlin(2026, 3, 2, 15)),
        ("resolution", "warn", berlin(2026, 3, 4, 11, 30)),    # 22.5h: 9 + 10 + 3.5
        ("resolution", "breached", berlin(2026, 3, 5, 9)),
        ("resolution", "manager", berlin(2026, 3, 6, 14)),
    ]
    assert plans[1].actions[1] == Action("reassign", "role:lead")
    assert [e.key for e in due_now(plans, now)] == ["std:first_response:warn"]
    assert due_now(plans, now.replace(tzinfo=None)) == due_now(plans, now)     # naive = UTC
    later = plan_escalations(ticket(MON_9), POLICY, now, fired={"std:first_response:warn"})
    assert [e.key for e in later][:1] == ["std:first_response:breached"]


def test_levels_already_overdue_are_planned_in_the_past():
    plans = plan_escalations(ticket(MON_9), POLICY, berlin(2026, 3, 3, 12))
    overdue = [e.level for e in due_now(plans, berlin(2026, 3, 3, 12))]
    assert overdue == ["warn", "breached", "manager"]            # first response: fire them now, in order
    assert plan_escalations(ticket(MON_9, first=berlin(2026, 3, 2, 10)), POLICY,
                            berlin(2026, 3, 2, 11))[0].target == "resolution"   # a met target plans nothing


def test_a_settable_clock_fires_each_level_exactly_once_and_not_while_pending():
    clock = Clock(MON_9)
    changes: list[tuple[datetime, str]] = []
    fired: dict[str, datetime] = {}
    first: datetime | None = None
    while clock.now < berlin(2026, 3, 13, 9):
        if clock.now == berlin(2026, 3, 2, 14):                  # agent answers late, asks a question
            first = clock.now
            changes.append((clock.now, "pending"))
        if clock.now == berlin(2026, 3, 4, 10):                  # the customer replies
            changes.append((clock.now, "open"))
        h = ticket(MON_9, changes=tuple(changes), first=first)
        for e in due_now(plan_escalations(h, POLICY, clock.now, fired), clock.now):
            assert e.key not in fired
            assert h.status != "pending"
            fired[e.key] = clock.now
        clock.advance(15 * M)
    assert fired == {
        "std:first_response:warn": berlin(2026, 3, 2, 12),
        "std:first_response:breached": berlin(2026, 3, 2, 13),
        # manager for the first response: due 15:00, but answered at 14:00
        # resolution: 5h used before the pause (Mon 14:00 - Wed 10:00), then 8 + 10 + ...
        "std:resolution:warn": berlin(2026, 3, 5, 17, 30),       # 22.5h = 5 + 8 + 9.5
        "std:resolution:breached": berlin(2026, 3, 6, 15),       # 30h = 5 + 8 + 10 + 7
        "std:resolution:manager": berlin(2026, 3, 10, 10),       # 45h = 5 + 8 + 10 + 10 + 10 + 2
    }


# ------------------------------------------------------------------ choosing the policy
SETTINGS = SlaSettings("v", "sla.yaml", {"office": OFFICE},
                       {"std": POLICY, "vip": Policy("vip", POLICY.targets), "sec": Policy("sec", POLICY.targets),
                        "crit": Policy("crit", POLICY.targets)},
                       (Selector("sec", queues=frozenset({"security"}), where="sla.yaml:9"),
                        Selector("vip", domains=("board.example.com",), priorities=frozenset({"P2", "P3"}))),
                       "std")


def test_policy_selection_order():
    pick = lambda **kw: select_policy(SETTINGS, **{"priority": "P3", "queue": "general", **kw}).name  # noqa: E731
    assert pick(requested="crit", queue="security") == "crit"
    assert pick(queue="security") == "sec"
    assert pick(domain="Paris.Board.Example.com") == "vip" and pick(domain="board.example.com") == "vip"
    assert pick(domain="board.example.com", priority="P1") == "std"
    assert pick(domain="notboard.example.com") == "std"
    choice = select_policy(SETTINGS, priority="P3", queue="general", requested="gone")
    assert choice.name == "std" and "unknown 'gone'" in choice.reason
    assert select_policy(SETTINGS, priority="P3", queue="security").reason == "sla.yaml:9 select matched"


def test_a_stored_policy_that_no_longer_exists_falls_back_to_the_default():
    assert policy_for(SETTINGS, ticket(MON_9, policy="removed")).name == "std"
    assert policy_for(SETTINGS, ticket(MON_9, policy="vip")).name == "vip"


# ------------------------------------------------------------------ the shipped sla.yaml
@pytest.fixture(scope="module")
def shipped():
    from daemon.rules import load_rules
    from daemon.sla.loader import load_sla
    return load_sla(REPO / "rules", load_rules(REPO / "rules"))


def test_shipped_standard_policy_over_easter(shipped):
    pol = shipped.policies["standard"]
    h = TicketHistory(5, berlin(2026, 4, 2, 16), "P3", "general", "standard")
    st = sla_state(h, pol, berlin(2026, 4, 2, 16))
    assert st.clock("first_response").due_at == berlin(2026, 4, 7, 10)      # Good Friday, Easter Monday (DE)
    p1 = sla_state(TicketHistory(6, berlin(2026, 4, 3, 23), "P1", "general", "standard"), pol, berlin(2026, 4, 3, 23))
    assert p1.clock("resolution").due_at == berlin(2026, 4, 4, 3)            # 24x7 for P1
    assert [e.level for e in plan_escalations(h, pol, berlin(2026, 4, 2, 16))][:2] == ["warn", "breached"]


def test_an_archived_ticket_runs_its_clocks_from_the_mail_but_fires_nothing_from_before_the_import():
    """ingest --no-mail (issue 15): created_at is the old mail's date, archived_at the import
    time; the levels due before the import are the past, the later ones fire as usual."""
    imported = berlin(2026, 3, 4, 12)            # resolution warn (Wed 11:30) is past, breached (Thu 9) not
    h = replace(ticket(MON_9), archived_at=imported)
    assert sla_state(h, POLICY, imported).clock("first_response").due_at == berlin(2026, 3, 2, 13)
    plans = plan_escalations(h, POLICY, imported)
    assert [(e.target, e.level) for e in plans] == [("resolution", "breached"), ("resolution", "manager")]
    assert due_now(plans, imported) == ()
    old = replace(ticket(berlin(2024, 3, 4, 9)), archived_at=imported)
    assert plan_escalations(old, POLICY, imported) == () and sla_state(old, POLICY, imported).clocks
