"""SLA timers against a real store, on SQLite and PostgreSQL: the policy chosen at
creation, deadlines in the acknowledgement, each escalation level firing exactly once at
its time (reliability.md 25: two concurrent firers; 26: clock jumps of an hour either way),
never for a paused, answered or resolved ticket, re-planning on every change, reloads,
restarts, and `show`/report data. The harness is test_outbox's `Desk` (the real worker,
store, rules, templates and planner, huey immediate, a settable clock); the shipped
rules: standard policy, office calendar (Berlin 08-18), P3 = first response 4h."""
from __future__ import annotations

import hashlib
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from daemon import tasks
from daemon.escalation import Escalator
from daemon.model import Envelope
from daemon.pipeline.parse import parse
from daemon.sla.views import SlaReader
from store import tables as m
from store.sla_store import QUIET_EVENTS, SlaFired, SlaStore
from tests.integration.test_outbox import START, close_desk, make_desk, new_mail, parsed, reply_to

WARN = datetime(2026, 3, 2, 12, 30, tzinfo=timezone.utc)         # 75 % of 4h from Mon 10:30 Berlin
BREACH = datetime(2026, 3, 2, 13, 30, tzinfo=timezone.utc)       # 100 %
MANAGER = datetime(2026, 3, 2, 15, 30, tzinfo=timezone.utc)      # 150 %


@pytest.fixture(params=["sqlite", "postgresql"])
def desk(request, tmp_path):
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
    d = make_desk(tmp_path, url)
    d.esc, d.others = d.app.mail.escalator, []
    yield d
    for other in d.others:
        other.store.engine.dispose()
    close_desk(d)


def escalations(desk, ticket_id: int | None = None) -> list[tuple[str, str]]:
    """(recipient, subject) of every escalation mail in the outbox."""
    return [(v.recipients[0][0], parsed(v.raw)["Subject"].strip()) for v in desk.rows(ticket_id=ticket_id)
            if v.kind == "escalation"]


def fired(desk, ticket_id: int) -> list[str]:
    with Session(desk.store.engine) as s:
        return sorted(s.exec(select(SlaFired.key).where(SlaFired.ticket_id == ticket_id)).all())


def at(desk, when: datetime) -> int:
    desk.clock.now = when
    return desk.esc.sweep()


def agent_answer(desk, ticket_id: int, n: int = 1, status: str = "open") -> None:
    """An agent's public answer, stored by the agent path's store (store.tickets)."""
    from store.tickets import AgentWrite, TicketStore
    raw = (f"From: Ana Lima <ana@example.com>\r\nTo: support+x@example.com\r\nSubject: Re: [HD-{ticket_id}]\r\n"
           f"Message-ID: <answer{n}.{ticket_id}@example.com>\r\n\r\nWe are on it.\r\n").encode()
    write = AgentWrite(ticket_id, "out", "public", "acted", "ana@example.com", "token and DKIM", "We are on it.",
                       implicit_status=status)
    result = TicketStore(desk.store).record(parse(raw), Envelope("ana@example.com", ()), raw,
                                            hashlib.sha256(raw).hexdigest(), write, desk.clock())
    desk.outbound.after_commit(result.ticket_id)   # what the worker does after the agent path stored it


# ---------------------------------------------------------------------- policy and deadlines
def test_policy_is_chosen_at_creation_and_the_acknowledgement_states_the_targets(desk):
    r = desk.mail(new_mail())
    ticket, row, history, _, _ = SlaStore(desk.store.engine).view(r.ticket_id)
    assert (row.policy, row.reason, row.queue) == ("standard", "default_policy", "general")
    assert row.next_due_at == WARN
    ack = next(v for v in desk.rows() if v.kind == "ack")
    text = parsed(ack.raw).get_body(("plain",)).get_content()
    assert "get back to you by 2026-03-02 13:30 UTC" in text
    assert "resolved by 2026-03-05 09:30 UTC" in text             # 30h of office time, Thursday 10:30 Berlin
    new = next(v for v in desk.rows() if v.kind == "agent_new")
    assert "Respond by: 2026-03-02 13:30 UTC" in parsed(new.raw).get_body(("plain",)).get_content()


def test_a_ticket_tracked_by_several_messages_of_one_batch_is_armed_once_and_never_re_planned(desk):
    """A new mail and two replies stored in one batch transaction: each message tracks the
    ticket; after the commit the latest plan is armed once, and no extra transaction runs
    `fire` for it (the second message's after_commit used to take the ticket for untracked)."""
    calls = {"fire": 0, "arm": []}
    fire, arm = desk.esc.fire, desk.esc.arm
    desk.esc.fire = lambda tid: (calls.__setitem__("fire", calls["fire"] + 1), fire(tid))[1]
    desk.esc.arm = lambda tid, due: (calls["arm"].append((tid, due)), arm(tid, due))[1]
    env = Envelope("ann@example.org", ("support@example.com",), "smtp", "127.0.0.1", desk.clock().isoformat())
    first = new_mail()
    bases = desk.app.spool.put_many([(first, env), (reply_to("m1.ann@example.org", 1), env),
                                     (reply_to("m1.ann@example.org", 2), env)])
    outcomes = desk.app.worker.run_batch(set(bases), limit=10)
    tickets = {o.result.ticket_id for o in outcomes}
    assert [o.kind for o in outcomes] == ["stored"] * 3 and len(tickets) == 1
    row = SlaStore(desk.store.engine).view(tickets.pop())[1]
    assert calls == {"fire": 0, "arm": [(row.ticket_id, row.next_due_at)]} and row.next_due_at == WARN
    assert desk.esc._pending == {}


def test_planning_gets_the_ticket_as_the_store_holds_it_and_a_new_one_has_nothing_to_read(desk, monkeypatch):
    """Planning takes the ticket as its save left it (store.records.Written) instead of
    reading it again: for every message of a batch - new tickets, replies, a reopen - it
    equals what the store reads back, and a ticket the message created has no plan, fired
    level or problem, and the plan inputs taken for it are those the store would give."""
    real, checked = desk.outbound.plan_message, []

    def plan_message(tx, msg, decision, routing, outcome, ticket_id, now, ref=None, written=None):
        assert written is not None and written.ticket == tx.ticket(ticket_id)
        if written.created:
            assert tx.sla.row(ticket_id) is None and tx.sla.fired_keys(ticket_id) == frozenset()
            assert tx.sla.created_inputs(written.ticket, "standard", written.last_event) == \
                tx.sla.plan_inputs(written.ticket, "standard")
            assert tx.problems.known_error(ticket_id) is None
        checked.append((outcome, written.created))
        return real(tx, msg, decision, routing, outcome, ticket_id, now, ref, written=written)
    monkeypatch.setattr(desk.outbound, "plan_message", plan_message)
    env = Envelope("ann@example.org", ("support@example.com",), "smtp", "127.0.0.1", desk.clock().isoformat())
    bases = desk.app.spool.put_many([(new_mail(1), env), (reply_to("m1.ann@example.org", 1), env),
                                     (new_mail(2, frm="bob@example.org", subject="VPN"), env)])
    outcomes = desk.app.worker.run_batch(set(bases), limit=10, seconds=60)      # one batch, even when slow
    first = outcomes[0].result.ticket_id
    desk.outbound.resolve(first)
    desk.mail(reply_to("m1.ann@example.org", 2))
    assert checked == [("created", True), ("appended", False), ("created", True), ("reopened", False)]
    with Session(desk.store.engine) as s:                          # the plan saw the save's last event
        last = s.exec(select(func.max(m.Event.id)).where(m.Event.ticket_id == outcomes[2].result.ticket_id,
                                                         m.Event.kind.not_in(QUIET_EVENTS))).one()
    assert SlaStore(desk.store.engine).view(outcomes[2].result.ticket_id)[1].seen_event == last


def test_a_service_policy_wins_and_a_domain_selector_applies(desk):
    vip = desk.mail(new_mail(1, frm="ceo@board.example.com", subject="Laptop"))
    assert SlaStore(desk.store.engine).view(vip.ticket_id)[1].policy == "vip"


# ---------------------------------------------------------------------- firing
def test_each_level_fires_once_at_its_time_not_before(desk):
    r = desk.mail(new_mail())
    at(desk, WARN - timedelta(seconds=1))
    assert escalations(desk) == []
    at(desk, WARN)
    assert sorted(escalations(desk)) == [
        ("ana@example.com", "[HD-1] SLA warning: first response due 2026-03-02 13:30 UTC - Printer jams"),
        ("ben@example.com", "[HD-1] SLA warning: first response due 2026-03-02 13:30 UTC - Printer jams")]
    for _ in range(3):                                   # sweeps, tasks and replays fire nothing more
        at(desk, WARN + timedelta(minutes=5))
        desk.esc.fire(r.ticket_id)
    assert len(escalations(desk)) == 2 and fired(desk, r.ticket_id) == ["standard:first_response:warn"]
    at(desk, BREACH)
    detail = desk.store.ticket_detail(r.ticket_id)
    assert detail.ticket.assignee == "ana@example.com"              # reassign: {role: lead}
    assert len(escalations(desk)) == 4
    at(desk, MANAGER)
    assert desk.store.ticket_detail(r.ticket_id).ticket.priority == "P2"   # priority: raise
    # P2's resolution target is 8h: the raise puts 6h used at its 75 % warning, which fires too
    assert escalations(desk)[4:] == [
        ("it-manager@example.com", "[HD-1] Escalation: first response overdue (P2, general) - Printer jams"),
        ("ana@example.com", "[HD-1] SLA warning: resolution due 2026-03-03 07:30 UTC - Printer jams")]
    assert fired(desk, r.ticket_id) == ["standard:first_response:breached", "standard:first_response:manager",
                                        "standard:first_response:warn", "standard:resolution:warn"]
    kinds = [e.kind for e in desk.store.ticket_detail(r.ticket_id).events]
    assert kinds.count("sla_escalation") == 4 and kinds.count("changed") == 2


def test_answered_in_time_never_escalates_the_first_response(desk):
    r = desk.mail(new_mail())
    desk.clock.now = WARN - timedelta(minutes=10)
    agent_answer(desk, r.ticket_id)
    at(desk, MANAGER + timedelta(hours=1))
    assert escalations(desk) == []
    sla = SlaReader(desk.app.config, desk.store.engine).show(r.ticket_id, desk.clock())
    assert sla["responded_at"] == (WARN - timedelta(minutes=10)).isoformat()
    assert sla["response_due"] == BREACH.isoformat() and sla["breached"] == []


def test_resolved_and_paused_tickets_never_escalate_and_a_pause_moves_the_deadline(desk):
    a = desk.mail(new_mail(1))
    b = desk.mail(new_mail(2, frm="bob@example.org"))
    desk.clock.now = START + timedelta(hours=1)
    desk.outbound.resolve(a.ticket_id)
    desk.outbound.change_status(b.ticket_id, "pending")
    at(desk, MANAGER + timedelta(hours=2))
    assert escalations(desk) == []
    # the customer answers two hours later: the clock resumes, 1h used, warn at 3h
    desk.clock.now = START + timedelta(hours=3)
    desk.outbound.change_status(b.ticket_id, "open")
    assert SlaStore(desk.store.engine).next_due(b.ticket_id) == START + timedelta(hours=5)
    at(desk, START + timedelta(hours=5) - timedelta(seconds=1))
    assert escalations(desk) == []
    at(desk, START + timedelta(hours=5))
    assert {t for t, _ in escalations(desk, b.ticket_id)} == {"ana@example.com", "ben@example.com"}


def test_a_change_made_elsewhere_is_picked_up_by_the_sweep(desk):
    """A status change that did not re-plan (no plan callback): the event feed catches it."""
    r = desk.mail(new_mail())
    desk.esc.sweep()                                      # the feed's first position
    desk.store.change_status(r.ticket_id, "resolved", START + timedelta(minutes=1))
    at(desk, START + timedelta(minutes=2))
    assert SlaStore(desk.store.engine).next_due(r.ticket_id) is None
    at(desk, MANAGER)
    assert escalations(desk) == []


# ---------------------------------------------------------------------- exactly once (case 25)
class Blind(Escalator):
    """A firer that cannot see the fired rows (as an overlapping run without row locks, or
    one that read before the other committed, would): only the unique row can stop it."""

    def fired_keys(self, tx, ticket_id):
        return frozenset()


def second_firer(desk, *, stale: bool) -> Escalator:
    """Another worker process: its own escalator, engine and clock reading."""
    from store.db import make_engine
    engine = make_engine(desk.store.engine.url.render_as_string(hide_password=False))
    other = (Blind if stale else Escalator)(desk.esc.desk, desk.esc.fuses, SlaStore(engine), desk.esc.live,
                                            desk.esc.templates, desk.esc.ring, clock=desk.clock)
    desk.others.append(other)
    return other


@pytest.mark.parametrize("stale", [False, True], ids=["locked", "constraint"])
def test_case_25_two_concurrent_firers_send_one_escalation(desk, stale):
    """Both fire the same due level at the same moment. `constraint`: the second cannot see
    the first's row (as an overlapping run without row locks would), so only the unique
    (ticket, key) row stops it: it rolls back its mails with it."""
    r = desk.mail(new_mail())
    desk.clock.now = WARN
    firers = [desk.esc, second_firer(desk, stale=stale)]
    go = threading.Barrier(2)
    got: list[tuple] = []

    def run(esc):
        go.wait()
        got.append(esc.fire(r.ticket_id))
    threads = [threading.Thread(target=run, args=(f,)) for f in firers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(got) == [(), ("standard:first_response:warn",)]
    assert len(escalations(desk)) == 2 and fired(desk, r.ticket_id) == ["standard:first_response:warn"]
    assert [e.kind for e in desk.store.ticket_detail(r.ticket_id).events].count("sla_escalation") == 1
    firers[1].fire(r.ticket_id)                          # and once more afterwards: still nothing
    assert len(escalations(desk)) == 2


def test_case_25_a_stale_firer_after_the_fact_sends_nothing(desk):
    r = desk.mail(new_mail())
    at(desk, WARN)
    late = second_firer(desk, stale=True)
    assert late.fire(r.ticket_id) == () and len(escalations(desk)) == 2


# ---------------------------------------------------------------------- clock jumps (case 26), restarts
def test_case_26_clock_jumps_fire_nothing_twice_and_skip_nothing(desk):
    r = desk.mail(new_mail())
    at(desk, WARN)
    assert len(escalations(desk)) == 2
    at(desk, WARN - timedelta(hours=1))                   # back one hour: the level is in the future again
    at(desk, WARN + timedelta(minutes=1))                 # and due again: it fired already
    assert len(escalations(desk)) == 2
    at(desk, BREACH + timedelta(hours=1))                 # forward past the next level: it fires, once
    assert len(escalations(desk)) == 4
    at(desk, BREACH - timedelta(minutes=30))
    at(desk, BREACH + timedelta(hours=1, minutes=1))
    assert len(escalations(desk)) == 4 and len(fired(desk, r.ticket_id)) == 2
    assert all(f.fired_at.tzinfo is not None for f in SlaStore(desk.store.engine).view(r.ticket_id)[3])


def test_a_level_due_while_the_daemon_was_down_fires_once_after_the_restart(desk):
    r = desk.mail(new_mail())
    restarted = second_firer(desk, stale=False)            # a new process: nothing in memory
    desk.clock.now = BREACH + timedelta(minutes=5)
    restarted.sweep()
    assert fired(desk, r.ticket_id) == ["standard:first_response:breached", "standard:first_response:warn"]
    assert len(escalations(desk)) == 4
    second_firer(desk, stale=False).sweep()
    assert len(escalations(desk)) == 4


# ---------------------------------------------------------------------- changes and reloads
def test_priority_change_moves_deadlines_and_queue_change_reselects_the_policy(desk):
    r = desk.mail(new_mail())
    desk.esc.sweep()                                      # the change feed starts here
    with Session(desk.store.engine) as s:
        from store import tables as m
        t = s.get(m.Ticket, r.ticket_id)
        t.priority, t.queue = "P2", "security"                  # as an agent's #priority / #queue would
        s.add(t)
        s.add(m.Event(ticket_id=r.ticket_id, at=START, kind="changed", detail='{"field": "queue"}'))
        s.commit()
    desk.esc.sweep()
    _, row, _, _, _ = SlaStore(desk.store.engine).view(r.ticket_id)
    assert row.policy == "security" and "select matched" in row.reason
    assert row.next_due_at == START + timedelta(minutes=15)       # security P2: 30m, warn (critical) at 50 %
    kinds = [e.kind for e in desk.store.ticket_detail(r.ticket_id).events]
    assert "sla_policy" in kinds


def test_a_reload_rebuilds_the_sla_settings_and_replans(desk, tmp_path):
    import shutil
    from tests.conftest import REPO
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    desk.esc.live.path = rules
    r = desk.mail(new_mail())
    text = (rules / "sla.yaml").read_text().replace("P3: {first_response: 4h, resolution: 30h}",
                                                    "P3: {first_response: 2h, resolution: 30h}")
    (rules / "sla.yaml").write_text(text)
    assert desk.esc.live.reload() == []
    desk.esc.sweep()
    assert SlaStore(desk.store.engine).next_due(r.ticket_id) == START + timedelta(hours=1, minutes=30)
    (rules / "sla.yaml").write_text(text.replace("default_policy: standard", "default_policy: nope"))
    assert desk.esc.live.reload() and desk.esc.live.sla.version == desk.esc.live.loaded[1].version


def test_report_reads_the_store(desk):
    a = desk.mail(new_mail(1))
    desk.mail(new_mail(2, frm="bob@example.org"))
    desk.clock.now = START + timedelta(minutes=30)
    agent_answer(desk, a.ticket_id)
    report = SlaReader(desk.app.config, desk.store.engine).report(START - timedelta(days=1), START + timedelta(days=1),
                                                                   BREACH + timedelta(minutes=1))
    row = report.row("all", "all", "first_response")
    assert (report.tickets, row.met, row.breached) == (2, 1, 1)
