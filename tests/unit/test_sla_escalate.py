"""The pure side of SLA escalations: what a due level does (recipients, reassignment,
priority, tags), its template variables and mails; durations in seconds; escalation
templates; the `sla` object of `show`; sla.yaml as part of a live rule set."""
from __future__ import annotations

import email
import shutil
from datetime import datetime, timedelta, timezone
from email import policy
from pathlib import Path


from daemon import tokens
from daemon.model import MailHistory
from daemon.pipeline.sla.escalate import (build_escalation_mails, duration_text, escalation_vars, plan_escalation,
                                      with_changes)
from daemon.pipeline.notify import Desk, Fuses, QueueInfo
from daemon.pipeline.sla import Action, Escalation, StatusChange, TicketHistory, policy_for, sla_state
from daemon.pipeline.render import ESCALATION_SAMPLE
from daemon.templates import load_templates
from daemon.rules import load_rules
from daemon.rules.live import LiveRules
from daemon.sla.loader import load_sla
from daemon.sla.views import sla_json, sla_text
from store.records import TicketRow
from tests.unit.test_sla_policy import BASE, load, problems

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 2, 13, 30, tzinfo=timezone.utc)
CREATED = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)          # Monday 10:30 in Berlin
RULES = load_rules(REPO / "rules")
SETTINGS = load_sla(REPO / "rules", RULES)
DESK = Desk("Example Service Desk", "support@example.com", "HD", frozenset({"support@example.com"}))
RING = tokens.Keyring({1: b"k" * 32}, 1)


def ticket(**kw) -> TicketRow:
    base = dict(id=42, subject="Printer jams", type="incident", status="open", priority="P3", queue="general",
                requester="ann@example.org", assignee=None, created_at=CREATED, updated_at=CREATED,
                message_count=1)
    base.update(kw)
    return TicketRow(**base)


def level(*actions: Action, target: str = "first_response", percent: float = 100.0) -> Escalation:
    return Escalation(42, f"standard:{target}:lvl", target, "lvl", percent, NOW, actions)


# ---------------------------------------------------------------------- deciding
def test_recipients_assignee_queue_role_and_address():
    notify = Action("notify", "agent/sla-breached", ("assignee", "queue", "role:lead", "boss@example.org",
                                                     "support@example.com"))
    plan = plan_escalation(ticket(assignee="ben@example.com"), level(notify), RULES, DESK.own)
    assert [(n.to.email, n.via) for n in plan.notices] == [
        ("ben@example.com", "assignee"), ("ana@example.com", "queue agents"), ("boss@example.org", "address")]
    assert plan.notices[0].to.name == "Ben Okafor"                 # names come from queues.yaml
    unassigned = plan_escalation(ticket(), level(Action("notify", "agent/sla-warning", ("assignee",))), RULES)
    assert [n.via for n in unassigned.notices] == ["queue agents (nobody assigned)"] * 2
    network = plan_escalation(ticket(queue="network"), level(Action("notify", "agent/sla-warning", ("queue",))),
                              RULES)
    assert [(n.to.email, n.agent.role) for n in network.notices] == [("netops@example.com", "queue")]


def test_reassign_raise_and_tags_and_what_cannot_be_done():
    plan = plan_escalation(ticket(), level(Action("reassign", "role:lead"), Action("priority", "raise"),
                                           Action("tag", "vip"), Action("tag", "vip")), RULES)
    assert (plan.assignee, plan.priority, plan.tags, plan.notes) == ("ana@example.com", "P2", ("vip",), ())
    assert with_changes(ticket(), plan).priority == "P2"
    top = plan_escalation(ticket(priority="P1", assignee="ana@example.com"),
                          level(Action("priority", "raise"), Action("priority", "P3"), Action("reassign", "role:lead")),
                          RULES)
    assert top.priority is None and top.assignee is None          # never lowered; already the lead's
    assert top.notes == ("priority: already P1, the highest", "priority: P1 is already P3 or higher "
                                                               "(escalations never lower it)")
    nobody = plan_escalation(ticket(queue="nowhere"), level(Action("notify", "agent/x", ("role:lead",))), RULES)
    assert nobody.notices == () and "nobody has role 'lead'" in nobody.notes[0]


# ---------------------------------------------------------------------- template variables and mails
def history(**kw) -> TicketHistory:
    return TicketHistory(42, CREATED, kw.pop("priority", "P3"), "general", "standard", **kw)


def test_escalation_variables_match_the_sample_templates_are_tried_with():
    h = history()
    policy = policy_for(SETTINGS, h)
    plan = plan_escalation(ticket(), level(Action("reassign", "role:lead")), RULES)
    v = escalation_vars(plan, ticket(), sla_state(h, policy, NOW + timedelta(minutes=5)), policy, RULES)
    assert set(v) == set(ESCALATION_SAMPLE)
    assert (v["breached"], v["overdue"], v["due"], v["goal"]) == (True, "5m", "2026-03-02 13:30 UTC", "4h00m")
    assert v["reassigned_to"] == "Ana Lima <ana@example.com>" and v["calendar"] == "office"
    assert duration_text(timedelta(seconds=4)) == "4s" and duration_text(timedelta(hours=30)) == "30h00m"


def build(notices_to=("assignee", "it-manager@example.com"), hist: MailHistory = MailHistory(), fuses=Fuses()):
    templates = load_templates(REPO / "templates")
    esc = level(Action("notify", "agent/sla-breached", notices_to), Action("reassign", "role:lead"))
    plan = plan_escalation(ticket(assignee="ben@example.com"), esc, RULES, DESK.own)
    h = history()
    state = sla_state(h, policy_for(SETTINGS, h), NOW)
    v = escalation_vars(plan, ticket(assignee="ben@example.com"), state, policy_for(SETTINGS, h), RULES)
    return build_escalation_mails(plan, with_changes(ticket(), plan), v, {"response_due": "x", "resolution_due": "y"},
                                  hist, DESK, fuses, templates, RING, QueueInfo("general", ""), NOW,
                                  lambda n: b"\x01" * n)


def test_escalation_mails_are_marked_automatic_threaded_and_tagged():
    effects = build(hist=MailHistory(conversation=("first@example.org",)))
    assert [m.recipients for m in effects.mails] == [("ben@example.com",), ("it-manager@example.com",)]
    msg = email.message_from_bytes(effects.mails[0].raw, policy=policy.default)
    assert msg["Subject"].strip().startswith("[HD-42] SLA BREACHED: first response (P3)")
    assert (msg["Auto-Submitted"], msg["X-Auto-Response-Suppress"]) == ("auto-generated", "All")
    assert msg["In-Reply-To"] == "<first@example.org>" and msg["X-Helpdesk-Ticket"] == "HD-42"
    assert tokens.read_message_id(RING, msg["Message-ID"]).kind == "agent"
    body = msg.get_body(("plain",)).get_content()
    assert "Hello Ben Okafor" in body and "assigned to Ana Lima <ana@example.com>" in body
    assert effects.mails[0].kind == "escalation" and effects.mails[0].template == "agent/sla-breached"


def test_bouncing_and_capped_recipients_are_held_back_and_a_missing_template_is_reported():
    held = build(hist=MailHistory(bouncing=frozenset({"ben@example.com"}),
                                  last_hour=(("it-manager@example.com", 5),)), fuses=Fuses(agent_hour=5))
    assert held.mails == () and len(held.suppressed) == 2 and held.alerts[0].key == "agent:it-manager@example.com"
    templates = load_templates(REPO / "templates")
    plan = plan_escalation(ticket(), level(Action("notify", "agent/sla-nothing", ("ben@example.com",))), RULES)
    got = build_escalation_mails(plan, ticket(), dict(ESCALATION_SAMPLE), None, MailHistory(), DESK, Fuses(),
                                 templates, RING, QueueInfo("general"), NOW, lambda n: b"\x02" * n)
    assert got.mails == () and "no template agent/sla-nothing" in got.suppressed[0]


# ---------------------------------------------------------------------- sla.yaml: seconds, templates
def test_durations_in_seconds(tmp_path):
    s = load(tmp_path, BASE.replace("P1: {first_response: 30m", "P1: {first_response: 45s")
             .replace("resolution: 4h, calendar", "resolution: 1m30s, calendar"))
    p1 = s.policies["critical"].targets["P1"]
    assert (p1.first_response, p1.resolution) == (timedelta(seconds=45), timedelta(seconds=90))


def test_escalation_templates_must_be_sla_templates(tmp_path):
    found = problems(tmp_path, templates={"agent/sla-warning", "agent/new", "agent/sla-breached"},
                     sla=BASE.replace("notify: agent/sla-warning", "notify: agent/new"))
    assert found == ["sla.yaml:9: escalations.ladder[0].notify: 'agent/new': escalation templates are named "
                     "<audience>/sla-<name> (only they get the `escalation` variable)"]


def test_shipped_sla_yaml_names_shipped_templates():
    from daemon.rules.tester import template_names
    assert load_sla(REPO / "rules", RULES, known_templates=template_names(REPO / "templates"))


# ---------------------------------------------------------------------- the `sla` object of show
def test_show_object_met_paused_and_breached():
    answered = history(first_response_at=CREATED + timedelta(hours=1),
                       status_changes=(StatusChange(CREATED + timedelta(hours=1), "open"),))
    out = sla_json(answered, SETTINGS, NOW)
    assert out["response_due"] == "2026-03-02T13:30:00+00:00"      # the deadline that applied, though met
    assert out["responded_at"] == "2026-03-02T10:30:00+00:00" and out["breached"] == []
    assert out["clocks"][0]["phase"] == "stopped" and out["clocks"][0]["met"]
    paused = sla_json(history(status_changes=(StatusChange(CREATED + timedelta(hours=1), "pending"),)), SETTINGS, NOW)
    assert paused["response_due"] is None and paused["clocks"][0]["phase"] == "paused"
    late = sla_json(history(), SETTINGS, NOW + timedelta(hours=1))
    assert late["breached"] == ["first_response"] and late["clocks"][0]["left_seconds"] == -3600
    assert any("over by 1h00m" in line for line in sla_text(late))


# ---------------------------------------------------------------------- live: sla.yaml reloads with the rules
def test_sla_yaml_is_part_of_the_live_rule_set(tmp_path):
    root = tmp_path / "rules"
    shutil.copytree(REPO / "rules", root)
    live = LiveRules(root)
    first = live.loaded
    assert first[1] is live.sla and live.sla.default_policy == "standard"
    sla = root / "sla.yaml"
    sla.write_text(sla.read_text().replace("default_policy: standard", "default_policy: vip"))
    assert live.reload() == [] and live.sla.default_policy == "vip" and live.loaded == (live.current, live.sla)
    sla.write_text(sla.read_text().replace("default_policy: vip", "default_policy: gold"))
    assert live.reload() and live.sla.default_policy == "vip"               # refused: the last good set stays
    sla.unlink()
    assert live.reload() == [] and live.sla is None                           # no sla.yaml: no SLAs


# ---------------------------------------------------------------------- rules test shows the timers
def test_rules_test_shows_the_policy_deadlines_and_escalations(capsys):
    import json
    from daemon.cli import main
    assert main(["--config", str(REPO / "config.toml"), "rules", "test", str(REPO / "rules/tests/erp-error.eml"),
                 "--json"]) == 0
    sla = json.loads(capsys.readouterr().out)["sla"]
    assert sla["policy"] == "business-critical" and "service erp" in sla["reason"]
    assert [e["level"] for e in sla["escalations"][:2]] == ["warn", "breached"]
    assert "reassign role:lead" in sla["escalations"][1]["actions"]


def test_check_loads_sla_yaml_against_the_rules(tmp_path):
    from daemon.check import check
    from daemon.config import load_config
    from tests.conftest import write_site_config
    root = tmp_path / "rules"
    shutil.copytree(REPO / "rules", root)
    cfg = load_config(str(write_site_config(tmp_path, '\n[paths]\nrules = "rules"\n')))
    problems, summary = check(cfg)
    assert problems == [] and "sla.yaml: 4 SLA policies" in summary
    (root / "sla.yaml").write_text((root / "sla.yaml").read_text().replace("notify: agent/sla-warning",
                                                                           "notify: agent/sla-warn"))
    problems, _ = check(cfg)
    assert problems and all(p.startswith(f"{root / 'sla.yaml'}:") for p in problems)
    assert "unknown template 'agent/sla-warn' (did you mean 'agent/sla-warning'?)" in problems[0]
