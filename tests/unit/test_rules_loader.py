"""Loading validates everything up front and reports every problem as file:line."""
from __future__ import annotations

import re

import pytest

from daemon.errors import RulesError
from daemon.pipeline.classify import Defaults
from daemon.rules import load_rules
from tests.unit.test_rules_support import PRIORITY, QUEUES, ROUTING, rules_yaml, write_rules


def problems_of(tmp_path, **files) -> list[str]:
    root = write_rules(tmp_path / "rules", **files)
    with pytest.raises(RulesError) as info:
        load_rules(root, **files.pop("_kw", {}))
    assert info.value.problems, "a RulesError always carries its problems"
    for p in info.value.problems:
        assert re.match(r"^.+\.yaml:\d+: ", p), p
    return info.value.problems


def one(tmp_path, rules: str, **kw) -> str:
    found = problems_of(tmp_path, routing=rules_yaml(rules), **kw)
    assert len(found) == 1, found
    return found[0]


def test_a_valid_set_loads(tmp_path):
    rs = load_rules(write_rules(tmp_path / "r"))
    assert [r.name for r in rs.rules] == ["outage"]
    assert set(rs.queues) == {"general", "network", "workplace"}
    assert rs.agents["ben@example.com"] == ("general", "workplace")
    assert rs.matrix.priority("high", "high") == "P1" and re.fullmatch(r"[0-9a-f]{16}", rs.version)


def test_version_is_a_hash_of_the_content(tmp_path):
    a = load_rules(write_rules(tmp_path / "a")).version
    assert load_rules(write_rules(tmp_path / "b")).version == a
    changed = ROUTING.replace("subject: outage", "subject: outages")
    assert load_rules(write_rules(tmp_path / "c", routing=changed)).version != a


def test_unknown_rule_key_suggests_the_right_one(tmp_path):
    p = one(tmp_path, """
        - name: typo
          wehn: {subject: x}
          then: {type: request}
    """)
    assert p.endswith("routing.yaml:12: rule 'typo': rule: unknown key 'wehn' (did you mean 'when'?); "
                      "allowed: name, description, applies_to, when, then, continue, enabled")


def test_unknown_condition_and_action_suggest(tmp_path):
    found = problems_of(tmp_path, routing=rules_yaml("""
        - name: r1
          when: {subjetc: x}
          then: {queeu: general}
    """))
    assert any("routing.yaml:12: rule 'r1': when: unknown condition 'subjetc' (did you mean 'subject'?)" in p
               for p in found)
    assert any("routing.yaml:13: rule 'r1': then: unknown action 'queeu' (did you mean 'queue'?)" in p
               for p in found)


def test_action_written_under_when_gets_a_hint(tmp_path):
    p = one(tmp_path, """
        - name: r1
          when: {queue: general}
          then: {type: request}
    """)
    assert "that is an action: put it under then:" in p


def test_duplicate_key_inside_a_rule(tmp_path):
    p = one(tmp_path, """
        - name: a
          name: b
          then: {type: request}
    """)
    assert "routing.yaml:12:" in p and "duplicate key 'name' (first on line 11)" in p


@pytest.mark.parametrize("rule, expected", [
    ("{name: r, when: {subject: '(unclosed'}, then: {type: request}}", "when.subject: bad regex"),
    ("{name: r, when: {subject: {matches: '(a+)+$'}}, then: {type: request}}", "exponential time"),
    ("{name: r, when: {body: {matches: '(a|a)*'}}, then: {type: request}}", "exponential time"),
])
def test_bad_and_catastrophic_regexes_name_the_rule(tmp_path, rule, expected):
    if "unclosed" in rule:
        rule = rule.replace("'(unclosed'", "{matches: '(unclosed'}")
    p = one(tmp_path, f"- {rule}")
    assert "routing.yaml:11: rule 'r': " in p and expected in p


@pytest.mark.parametrize("then, expected", [
    ("{queue: nowhere}", "then.queue: unknown queue 'nowhere'; queues.yaml declares: general, network, workplace"),
    ("{queue: netwrok}", "(did you mean 'network'?)"),
    ("{type: incdent}", "unknown type 'incdent' (did you mean 'incident'?)"),
    ("{tags: [vip, hardwre]}", "unknown tag 'hardwre' (did you mean 'hardware'?)"),
    ("{assign: zed@example.com}", "unknown agent 'zed@example.com'"),
    ("{assign: {role: boss}}", "unknown role 'boss'"),
    ("{service: mail}", "unknown service 'mail'"),
    ("{priority: high}", "unknown priority level 'high'"),
    ("{priority: 1}", "expected a name, got a number"),
    ("{impact: huge}", "unknown impact level 'huge'"),
    ("{urgency: [high]}", "expected a name, got a list"),
    ("{disposition: delete}", "unknown disposition 'delete'"),
    ("{queue: workplace, assign: chen@example.com}", "'chen@example.com' is not an agent of queue 'workplace'"),
    ("{}", "then: expected a mapping of actions, got an empty mapping"),
    ("[queue, general]", "then: expected a mapping of actions, got a list"),
    ("{subject: x}", "that is a condition: put it under when:"),
])
def test_dangling_references_and_wrong_types_in_actions(tmp_path, then, expected):
    p = one(tmp_path, f"- {{name: r, then: {then}}}")
    assert "rule 'r':" in p and expected in p, p


@pytest.mark.parametrize("when, expected", [
    ("{has_attachment: yes please}", "expected true or false, got a string"),
    ("{business_hours: 1}", "expected true or false, got a number"),
    ("{machine: [bulky]}", "unknown kind 'bulky' (did you mean 'bulk'?)"),
    ("{attachment_type: [pdf]}", "not a content type"),
    ("{time: {from: 18:00}}", "quote times"),
    ("{time: {form: '18:00'}}", "did you mean 'from'"),
    ("{time: {days: [funday]}}", "not a weekday"),
    ("{header: {contains: x}}", "expected a mapping with 'name'"),
    ("{header: {name: X-A}}", "add a test"),
    ("{header: {name: X-A, present: maybe}}", "'present' takes true or false"),
    ("{any: []}", "non-empty list"),
    ("{any: [subject]}", "expected a mapping of conditions, got a string"),
    ("{not: {}}", "got an empty mapping"),
    ("{}", "when: expected a mapping of conditions, got an empty mapping"),
    ("{from_domain: 5}", "expected a string or a non-empty list"),
    ("{subject: no}", "boolean (false; quote it"),
])
def test_wrong_types_in_conditions(tmp_path, when, expected):
    p = one(tmp_path, f"- {{name: r, when: {when}, then: {{type: request}}}}")
    assert "rule 'r':" in p and expected in p, p


def test_nested_condition_errors_point_at_their_own_line(tmp_path):
    found = problems_of(tmp_path, routing=rules_yaml("""
        - name: nested
          when:
            any:
              - subject: ok
              - not:
                  body: {matches: '(.*)*'}
              - subjet: x
          then: {type: request}
    """))
    assert any("routing.yaml:16: rule 'nested': not.body:" in p for p in found), found
    assert any("routing.yaml:17: rule 'nested': any[2]: unknown condition 'subjet'" in p for p in found), found


def test_every_problem_is_collected_not_just_the_first(tmp_path):
    found = problems_of(tmp_path, routing=rules_yaml("""
        - name: a
          when: {subject: {matches: '(a+)+'}}
          then: {queue: nowhere}
        - name: a
          then: {type: incdent}
        - then: {type: request}
    """), queues=QUEUES.replace("role: lead}", "role: chief}", 1))
    text = "\n".join(found)
    assert "queues.yaml" in text and "unknown role 'chief'" in text
    assert "exponential time" in text and "unknown queue 'nowhere'" in text
    assert "rule name 'a' is already used on line 11" in text
    assert "unknown type 'incdent'" in text and "every rule needs a name" in text
    assert len(found) >= 6


def test_unreachable_rule_after_an_unconditional_stop(tmp_path):
    p = one(tmp_path, """
        - name: catch-all
          then: {type: request}
        - name: later
          when: {subject: x}
          then: {type: change}
    """)
    assert "rule 'later': is never tried for new messages: rule 'catch-all'" in p


def test_rule_flags_and_applies_to_types(tmp_path):
    found = problems_of(tmp_path, routing=rules_yaml("""
        - {name: a, then: {type: request}, continue: "yes", when: {subject: x}}
        - {name: b, then: {type: request}, applies_to: replies, when: {subject: x}}
        - {name: c, then: {type: request}, enabled: 0, when: {subject: x}}
        - {name: d, then: {type: request}, description: [x], when: {subject: x}}
    """))
    text = "\n".join(found)
    assert "rule 'a': continue: expected true or false, got a string" in text
    assert "rule 'b': applies_to: expected new, reply, any" in text
    assert "rule 'c': enabled: expected true or false, got a number" in text
    assert "rule 'd': description: expected a string" in text


def test_template_names_checked_only_when_known(tmp_path):
    routing = rules_yaml("- {name: a, when: {subject: x}, then: {ack: requester/ack-vip}}")
    root = write_rules(tmp_path / "r", routing=routing)
    assert load_rules(root).rules[0].effects[0].value == "requester/ack-vip"
    assert load_rules(root, known_templates={"requester/ack-vip"}).rules
    with pytest.raises(RulesError) as info:
        load_rules(root, known_templates={"requester/ack", "requester/ack-vpi"})
    assert "unknown template 'requester/ack-vip' (did you mean 'requester/ack-vpi'?)" in info.value.problems[0]


def test_missing_required_file_and_top_level_shape(tmp_path):
    found = problems_of(tmp_path, priority=None)
    assert any(p.endswith("priority.yaml:1: file is missing (required)") for p in found)
    found = problems_of(tmp_path, vocabulary="- incident\n- request\n")
    assert any("vocabulary.yaml:1: expected a mapping at the top level, got a list" in p for p in found)
    assert load_rules(write_rules(tmp_path / "noservices", services=None)).services == {}


def test_empty_and_unreadable_files_fail_the_load(tmp_path):
    found = problems_of(tmp_path, routing="# nothing here yet\n")
    assert any("routing.yaml:1: file is empty" in p for p in found)
    root = write_rules(tmp_path / "dir")
    (root / "routing.yaml").unlink()
    (root / "routing.yaml").mkdir()
    with pytest.raises(RulesError) as info:
        load_rules(root)
    assert any("routing.yaml:1: cannot read" in p for p in info.value.problems)


def test_python_tag_in_a_rule_file_fails_the_load(tmp_path):
    found = problems_of(tmp_path, routing=ROUTING + "  - !!python/object/apply:os.system ['echo pwned']\n")
    assert any("safe loading only" in p for p in found)


def test_missing_directory(tmp_path):
    with pytest.raises(RulesError, match="rules directory not found"):
        load_rules(tmp_path / "nope")


@pytest.mark.parametrize("priority, expected", [
    (PRIORITY.replace("  low:    {high: P3, medium: P4, low: P4}\n", ""), "matrix: no row for impact 'low'"),
    (PRIORITY.replace("medium: P2, low: P3}", "medium: P2}"), "matrix.high: no cell for urgency 'low'"),
    (PRIORITY.replace("high: P1,", "high: P0,"), "matrix.high.high: 'P0' is not one of levels"),
    (PRIORITY.replace("default_urgency: medium", "default_urgency: mid"), "default_urgency: 'mid' is not in"),
    (PRIORITY.replace("levels: [P1, P2, P3, P4]", "levels: [P1, P1]"), "levels[1]: 'P1' is listed twice"),
    (PRIORITY + "extra: 1\n", "unknown key 'extra'"),
])
def test_priority_matrix_problems(tmp_path, priority, expected):
    found = problems_of(tmp_path, priority=priority)
    assert any("priority.yaml:" in p and expected in p for p in found), found


@pytest.mark.parametrize("queues, expected", [
    (QUEUES.replace("ana@example.com", "ana-at-example"), "is not an email address"),
    (QUEUES.replace("{email: ben@example.com}\n  network", "{emial: ben@example.com}\n  network"),
     "unknown key 'emial' (did you mean 'email'?)"),
    (QUEUES.replace("  workplace:", "  work place:"), "queue name 'work place'"),
    ("queues: {}\n", "declare at least one queue"),
    (QUEUES.replace("role: lead", "role: boss"), "unknown role 'boss'"),
])
def test_queue_declaration_problems(tmp_path, queues, expected):
    found = problems_of(tmp_path, queues=queues)
    assert any("queues.yaml:" in p and expected in p for p in found), found


def test_service_problems(tmp_path):
    found = problems_of(tmp_path, services="services:\n  erp: {queue: finance, impact: huge, sla: [x]}\n"
                                           "  crm: {impact: low}\n")
    text = "\n".join(found)
    assert "unknown queue 'finance'" in text and "'huge' is not one of impact_levels" in text
    assert "services.erp.sla: expected a string" in text and "services.crm: missing required key 'queue'" in text


@pytest.mark.parametrize("calendar, expected", [
    ("calendar: {timezone: Mars/Olympus}\n", "unknown timezone 'Mars/Olympus'"),
    ("calendar: {hours: {from: 08:00, to: 18:00}}\n", "quote times"),
    ("calendar: {hours: {from: '8', to: '18:00'}}\n", "is not a time HH:MM"),
    ("calendar: {holidays: [christmas]}\n", "'christmas' is not a date"),
    ("calendar: {dayz: [mon]}\n", "did you mean 'days'"),
])
def test_calendar_problems(tmp_path, calendar, expected):
    found = problems_of(tmp_path, routing=calendar + "rules:\n  - {name: a, when: {subject: x}, "
                                                     "then: {type: request}}\n")
    assert any("routing.yaml:1:" in p and expected in p for p in found), found


def test_config_defaults_must_be_declared_unless_routing_default_sets_them(tmp_path):
    root = write_rules(tmp_path / "r")
    load_rules(root, defaults=Defaults(type="incident", queue="nowhere", priority="P9"))  # default: covers
    bare = rules_yaml("- {name: a, when: {subject: x}, then: {type: request}}", head="")
    root = write_rules(tmp_path / "bare", routing=bare)
    load_rules(root, defaults=Defaults())
    with pytest.raises(RulesError) as info:
        load_rules(root, defaults=Defaults(type="incident", queue="nowhere", priority="P9"))
    text = "\n".join(info.value.problems)
    assert "queues.yaml:1: config [helpdesk] default_queue 'nowhere' is not declared" in text
    assert "priority.yaml:1: config [helpdesk] default_priority 'P9'" in text


def test_default_section_is_validated_like_actions(tmp_path):
    head = "default: {queue: nowhere, urgency: high}\n"
    found = problems_of(tmp_path, routing=rules_yaml("- {name: a, when: {subject: x}, then: {type: request}}",
                                                     head=head))
    assert any("routing.yaml:1: default.queue: unknown queue 'nowhere'" in p for p in found), found


def test_disabled_rules_are_validated_but_skipped(tmp_path):
    root = write_rules(tmp_path / "r", routing=rules_yaml("""
        - {name: dormant, enabled: false, when: {subject: x}, then: {type: request}}
        - {name: active, when: {subject: y}, then: {type: change}}
    """))
    assert [r.name for r in load_rules(root).rules] == ["active"]
    bad = write_rules(tmp_path / "bad", routing=rules_yaml(
        "- {name: dormant, enabled: false, when: {subject: x}, then: {queue: nowhere}}"))
    with pytest.raises(RulesError, match="1 problem"):
        load_rules(bad)


def test_a_broken_declaration_file_is_reported_once(tmp_path):
    found = problems_of(tmp_path, queues="queues: [broken\n")
    assert len(found) == 1 and "queues.yaml" in found[0]


def test_yaml_boolean_trap_in_a_rule_name_is_explained(tmp_path):
    found = problems_of(tmp_path, routing=rules_yaml("""
        - {name: off, when: {subject: x}, then: {type: request}}
        - {when: {subject: y}, then: {queue: nowhere}}
    """))
    assert any("rules[0]: every rule needs a name (a non-empty string), got a boolean (false; quote it" in p
               for p in found)
    assert any("rule '#2': then.queue: unknown queue 'nowhere'" in p for p in found)
    assert any("rules[1]: every rule needs a name (a non-empty string)" in p and "got" not in p for p in found)
