"""classify(): the machine-mail guard, every action, merge order, defaults and explanations."""
from __future__ import annotations

import pytest

from daemon.pipeline.classify import Defaults, classify, classify_explained, event_of
from daemon.model import ThreadDecision
from daemon.rules import actions, load_rules
from tests.unit.test_rules_support import MONDAY_10, NEW, REPLY, msg, rules_yaml, write_rules


@pytest.fixture
def route(tmp_path):
    """route(rules_yaml_list, message=msg(), **kw) -> Routing."""
    counter = iter(range(1000))

    def run(rules: str, message=None, *, head: str | None = None, decision=NEW, defaults=Defaults(), **kw):
        root = write_rules(tmp_path / f"r{next(counter)}", routing=rules_yaml(rules, head=head))
        return classify(message or msg(), decision, load_rules(root), defaults, now=MONDAY_10, **kw)
    return run


def test_no_rule_set_gives_the_configured_defaults():
    r = classify(msg(), NEW, None, Defaults("request", "desk", "P2"), now=MONDAY_10)
    assert (r.type, r.queue, r.priority, r.rules_version) == ("request", "desk", "P2", "builtin")
    assert r.hits == ("builtin:defaults (no rule set loaded)",) and not r.suppress_ack


def test_machine_mail_never_gets_an_ack_whatever_the_rules_say(route):
    r = route("- {name: ack, when: {subject: x}, then: {ack: true}}", msg(subject="x", machine="auto_reply"))
    assert r.suppress_ack and r.hits[0] == "builtin:machine-mail (auto_reply): no automatic answer"
    r = route("- {name: ack, when: {subject: x}, then: {ack: some/template}}", msg(subject="x", machine="bulk"))
    assert r.suppress_ack and r.ack_template == "some/template"
    r = route("- {name: a, when: {subject: x}, then: {type: request}}", msg(suppress_auto_reply=True))
    assert r.suppress_ack and "X-Auto-Response-Suppress" in r.hits[0]


def test_first_match_wins_and_stops(route):
    r = route("""
        - {name: one, when: {subject: vpn}, then: {queue: network}}
        - {name: two, when: {subject: vpn}, then: {queue: workplace}}
    """, msg(subject="VPN"))
    assert r.queue == "network"
    assert r.hits[0].startswith("routing.yaml:11 one: subject contains 'vpn' -> queue=network")
    assert r.misses == ()                           # 'two' was never tried


def test_continue_keeps_looking_and_first_setter_of_a_field_wins(route):
    r = route("""
        - {name: vip, when: {from_domain: vip.example}, then: {urgency: high, tags: [vip], queue: general},
           continue: true}
        - {name: miss, when: {subject: printer}, then: {queue: workplace}}
        - {name: vpn, when: {subject: vpn}, then: {queue: network, type: request, tags: [outage]}}
    """, msg(subject="vpn", sender="boss@vip.example"))
    assert (r.queue, r.type, r.tags, r.urgency) == ("general", "request", ("vip", "outage"), "high")
    assert any(h == "overridden: vpn: queue=network ignored, kept general from 'vip'" for h in r.hits)
    assert r.misses == ("routing.yaml:13 miss: subject does not contain 'printer'",)


def test_impact_and_urgency_only_go_up_and_feed_the_matrix(route):
    r = route("""
        - {name: vip, when: {subject: x}, then: {urgency: high}, continue: true}
        - {name: calm, when: {subject: x}, then: {urgency: low, impact: medium}}
    """, msg(subject="x"))
    assert (r.urgency, r.impact, r.priority) == ("high", "medium", "P2")
    assert "priority: P2 = matrix[impact medium][urgency high]" in r.hits


def test_matrix_uses_default_impact_or_urgency_for_the_missing_one(route):
    assert route("- {name: a, when: {subject: x}, then: {urgency: high}}", msg(subject="x")).priority == "P3"
    assert route("- {name: a, when: {subject: x}, then: {impact: high}}", msg(subject="x")).priority == "P2"


def test_direct_priority_beats_the_matrix(route):
    r = route("""
        - {name: a, when: {subject: x}, then: {impact: low, urgency: low}, continue: true}
        - {name: b, when: {subject: x}, then: {priority: P1}}
    """, msg(subject="x"))
    assert r.priority == "P1" and "priority" in r.decided


def test_service_brings_queue_impact_and_sla(route):
    r = route("- {name: erp, when: {subject: erp}, then: {service: erp, urgency: medium}}", msg(subject="ERP"))
    assert (r.service, r.queue, r.impact, r.sla_policy, r.priority) == ("erp", "general", "high", "critical", "P2")
    assert "service erp: impact=high" in r.hits
    r = route("- {name: vpn, when: {subject: vpn}, then: {service: vpn, queue: workplace, impact: high}}",
              msg(subject="vpn"))
    assert (r.queue, r.impact) == ("workplace", "high")       # a rule's queue and higher impact win


def test_assign_an_agent_or_a_role_in_the_final_queue(route):
    assert route("- {name: a, when: {subject: x}, then: {assign: ben@example.com}}", msg(subject="x")).assignee \
        == "ben@example.com"
    r = route("- {name: a, when: {subject: x}, then: {queue: network, assign: {role: lead}}}", msg(subject="x"))
    assert r.assignee == "chen@example.com" and "assign: lead of queue network is chen@example.com" in r.hits
    r = route("- {name: a, when: {subject: x}, then: {queue: workplace, assign: {role: lead}}}", msg(subject="x"))
    assert r.assignee is None and "assign: queue workplace has no lead; left unassigned" in r.hits


def test_tags_accumulate_in_order_without_duplicates(route):
    r = route("""
        - {name: a, when: {subject: x}, then: {tags: [vip, outage]}, continue: true}
        - {name: b, when: {subject: x}, then: {tags: [outage, hardware]}}
    """, msg(subject="x"))
    assert r.tags == ("vip", "outage", "hardware")


@pytest.mark.parametrize("disposition", ["drop", "quarantine", "spam", "ticket"])
def test_dispositions(route, disposition):
    r = route(f"- {{name: a, when: {{subject: x}}, then: {{disposition: {disposition}}}}}", msg(subject="x"))
    assert r.action == disposition and r.suppress_ack == (disposition != "ticket")


def test_ack_template_and_no_ack(route):
    r = route("- {name: a, when: {subject: x}, then: {ack: requester/ack-vip}}", msg(subject="x"))
    assert r.ack_template == "requester/ack-vip" and not r.suppress_ack
    r = route("- {name: a, when: {subject: x}, then: {ack: false}}", msg(subject="x"))
    assert r.suppress_ack and r.ack_template is None and "suppress_ack" in r.decided


def test_routing_default_then_config_defaults(route):
    r = route("- {name: a, when: {subject: x}, then: {tags: [vip]}}", msg(subject="nothing"))
    assert (r.type, r.queue, r.priority) == ("incident", "general", "P3")
    assert "default: queue=general" in r.hits and r.decided == ()
    r = route("- {name: a, when: {subject: x}, then: {tags: [vip]}}", msg(subject="x"), head="",
              defaults=Defaults("change", "workplace", "P4"))
    assert (r.type, r.queue, r.priority, r.tags) == ("change", "workplace", "P4", ("vip",))
    r = route("- {name: a, when: {subject: x}, then: {type: request}}", msg(subject="x"),
              head="default: {tags: [after-hours], assign: ana@example.com, disposition: quarantine}\n")
    assert (r.tags, r.assignee, r.action) == (("after-hours",), "ana@example.com", "quarantine")


def test_replies_only_see_reply_rules(route):
    rules = """
        - {name: new-only, when: {subject: x}, then: {queue: network}}
        - {name: on-reply, applies_to: reply, when: {subject: x}, then: {urgency: high}}
        - {name: both, applies_to: any, when: {subject: x}, then: {tags: [vip]}}
    """
    r = route(rules, msg(subject="x"), decision=REPLY)
    assert r.queue == "general" and r.urgency == "high" and r.tags == ()
    assert set(r.decided) == {"urgency", "priority"}
    assert [h.split(":")[1].split()[1] for h in r.hits if h.startswith("routing.yaml")] == ["on-reply"]
    r = route(rules, msg(subject="x"), decision=NEW)
    assert r.queue == "network" and r.urgency is None


@pytest.mark.parametrize("action, event", [("new", "new"), ("new_linked", "new"), ("append", "reply"),
                                           ("reopen", "reply"), ("bounce", "reply")])
def test_event_of_a_thread_decision(action, event):
    assert event_of(ThreadDecision(action, 1, "")) == event


def test_version_and_explanations_are_recorded(route, tmp_path):
    root = write_rules(tmp_path / "v", routing=rules_yaml("""
        - {name: a, when: {subject: printer}, then: {queue: workplace}}
        - {name: b, when: {subject: vpn}, then: {queue: network}}
    """))
    rs = load_rules(root)
    r, ev = classify_explained(msg(subject="vpn"), NEW, rs, Defaults(), now=MONDAY_10)
    assert r.rules_version == rs.version == ev.version
    assert r.misses == ("routing.yaml:11 a: subject does not contain 'printer'",)
    assert r.hits == ("routing.yaml:12 b: subject contains 'vpn' -> queue=network", "default: priority=P3",
                      "default: type=incident")
    assert ev.stopped_by == "b" and ev.untried == 0 and ev.set_by == {"queue": "b"}
    assert r.decided == ("queue",)


def test_envelope_recipients_reach_the_conditions(route):
    r = route("- {name: a, when: {to: {equals: it@example.com}}, then: {queue: network}}",
              envelope_rcpts=("IT@example.com",))
    assert r.queue == "network"


def test_every_action_is_documented_and_has_a_merge_mode():
    for name in actions.ACTIONS.names():
        assert actions.ACTIONS.get(name).__doc__, name
        assert actions.MERGE[actions.ACTIONS.meta[name]["field"]] in ("first", "max", "union")
    with pytest.raises(ValueError, match="duplicate action 'queue'"):
        actions.action("queue", "queue")(lambda arg, ctx: ())
