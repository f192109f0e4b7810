"""Loading rules/sla.yaml: a valid file gives complete settings; every mistake is
reported as file:line with the reason, like the rules loader does."""
from __future__ import annotations

import re
import textwrap
from datetime import date, timedelta
from pathlib import Path

import pytest

from daemon.errors import RulesError
from daemon.pipeline.calendar import ALWAYS, from_routing
from daemon.rules import load_rules
from daemon.sla.loader import load_sla
from tests.unit.test_rules_support import SERVICES, write_rules

REPO = Path(__file__).resolve().parents[2]

BASE = """\
calendars:
  office:
    timezone: Europe/Berlin
    hours: {from: "08:00", to: "18:00"}
  24x7:
    always_open: true
escalations:
  ladder:
    - {name: warn, at: 75%, notify: agent/sla-warning}
    - {name: late, at: 100%, notify: agent/sla-breached, to: [assignee, {role: lead}], reassign: {role: lead}}
policies:
  critical:
    calendar: office
    escalations: ladder
    targets:
      P1: {first_response: 30m, resolution: 4h, calendar: 24x7}
      P2: {first_response: 1h, resolution: 8h, update: 2h}
      P3: {first_response: 4h, resolution: 30h}
      P4: {first_response: 8h, resolution: 100h}
default_policy: critical
"""
#   line numbers of BASE: 2 office, 3 timezone, 4 hours, 9 warn, 12 critical, 13 calendar,
#   14 escalations, 16 P1, 19 P4, 20 default_policy


def write(tmp_path: Path, sla: str = BASE, **rules_files) -> Path:
    root = write_rules(tmp_path / "rules", **rules_files)
    (root / "sla.yaml").write_text(textwrap.dedent(sla), encoding="utf-8")
    return root


def load(tmp_path: Path, sla: str = BASE, templates=None, **rules_files):
    root = write(tmp_path, sla, **rules_files)
    return load_sla(root, load_rules(root), known_templates=templates)


def problems(tmp_path: Path, sla: str = BASE, templates=None, **rules_files) -> list[str]:
    with pytest.raises(RulesError) as info:
        load(tmp_path, sla, templates, **rules_files)
    for p in info.value.problems:
        assert re.match(r"^.+\.yaml:\d+: ", p), p
    return [re.sub(r"^.*?/rules/", "", p) for p in info.value.problems]


def one(tmp_path: Path, sla: str, **kw) -> str:
    found = problems(tmp_path, sla, **kw)
    assert len(found) == 1, found
    return found[0]


# ------------------------------------------------------------------ valid files
def test_the_base_file_loads(tmp_path):
    s = load(tmp_path)
    assert set(s.calendars) == {"routing", "office", "24x7"} and s.default_policy == "critical"
    pol = s.policies["critical"]
    assert pol.targets["P1"].calendar.week == ALWAYS and pol.targets["P2"].update == timedelta(hours=2)
    assert pol.targets["P3"].calendar.timezone == "Europe/Berlin" and pol.where == "sla.yaml:12"
    assert [lv.name for lv in pol.levels] == ["warn", "late"] and pol.levels[1].actions[0].to == ("assignee",
                                                                                               "role:lead")
    assert re.fullmatch(r"[0-9a-f]{16}", s.version)


def test_shipped_sla_yaml_loads_against_the_shipped_rules():
    rules = load_rules(REPO / "rules")
    s = load_sla(REPO / "rules", rules)
    assert {"standard", "business-critical", "security", "vip"} <= set(s.policies)
    office = s.calendars["office"]
    assert date(2026, 4, 3) in office.holidays and office.closed_on(date(2030, 12, 24))   # DE-BE; "12-24"
    assert s.calendars["security-desk"].week[5] == ((9 * 60, 13 * 60),)
    assert all(svc.sla in s.policies for svc in rules.services.values() if svc.sla)


def test_a_policy_without_a_calendar_uses_routing_yaml_s(tmp_path):
    s = load(tmp_path, BASE.replace("    calendar: office\n", ""))
    rules = load_rules(tmp_path / "rules")
    assert s.policies["critical"].targets["P3"].calendar == from_routing(rules.calendar)
    assert s.calendars["routing"].timezone == "Europe/London"


def test_several_intervals_week_overrides_and_holidays(tmp_path):
    s = load(tmp_path, BASE.replace('    hours: {from: "08:00", to: "18:00"}\n', """\
    hours: [{from: "13:00", to: "17:00"}, {from: "08:00", to: "12:00"}]
    week: {fri: [{from: "08:00", to: "14:00"}], sat: [{from: "10:00", to: "12:00"}], wed: []}
    holidays: [2026-12-28, "12-24", "02-29", "2027-01-02"]
    country: AT
"""))
    cal = s.calendars["office"]
    assert cal.week[0] == ((480, 720), (780, 1020)) and cal.week[2] == () and cal.week[4] == ((480, 840),)
    assert cal.week[5] == ((600, 720),) and cal.week[6] == ()
    assert {date(2026, 12, 28), date(2027, 1, 2), date(2026, 10, 26)} <= cal.holidays      # 26 Oct: AT
    assert cal.yearly == {(12, 24), (2, 29)}


def test_version_follows_the_file_and_the_rules(tmp_path):
    a = load(tmp_path / "a").version
    assert load(tmp_path / "b").version == a
    assert load(tmp_path / "c", BASE.replace("30m", "20m")).version != a
    assert load(tmp_path / "d", services=SERVICES.replace("vpn:", "vpn2:")).version != a


# ------------------------------------------------------------------ the file itself
def test_yaml_errors_missing_and_empty_files(tmp_path):
    assert "YAML error" in one(tmp_path / "a", "policies: [\n")
    assert one(tmp_path / "b", "# nothing\n").startswith("sla.yaml:1: file is empty")
    root = write_rules(tmp_path / "c" / "rules")
    with pytest.raises(RulesError, match=r"sla\.yaml:1: file is missing"):
        load_sla(root, load_rules(root))


def test_unknown_top_level_key_suggests(tmp_path):
    p = one(tmp_path, BASE + "polices: {}\n")
    assert p.startswith("sla.yaml:21: sla.yaml: unknown key 'polices' (did you mean 'policies'?)")


def test_wrong_top_level_types(tmp_path):
    found = problems(tmp_path, BASE.replace("default_policy: critical", "default_policy: [critical]"))
    assert found == ["sla.yaml:20: sla.yaml.default_policy: expected a string, got a list"]


# ------------------------------------------------------------------ calendars
@pytest.mark.parametrize("old, new, expected", [
    ("    timezone: Europe/Berlin", "    timzone: Europe/Berlin",
     "sla.yaml:3: calendars.office: unknown key 'timzone' (did you mean 'timezone'?)"),
    ("Europe/Berlin", "Europe/Berln", "sla.yaml:3: calendars.office.timezone: unknown time zone 'Europe/Berln'"),
    ('{from: "08:00", to: "18:00"}', '{from: "08:00", to: 18:00}',
     "sla.yaml:4: calendars.office.hours.to: expected a time such as \"08:30\", got a number (quote times"),
    ('{from: "08:00", to: "18:00"}', '{from: "22:00", to: "06:00"}',
     "sla.yaml:4: calendars.office.hours: from 22:00 is not before to 06:00 (an interval cannot wrap"),
    ('{from: "08:00", to: "18:00"}', '[{from: "08:00", to: "13:00"}, {from: "12:00", to: "18:00"}]',
     "sla.yaml:4: calendars.office.hours: intervals overlap at 12:00"),
    ('{from: "08:00", to: "18:00"}', '{from: "08:00", to: "18:00"}\n    days: [mon, fry]',
     "sla.yaml:5: calendars.office.days: 'fry' is not a weekday"),
    ('{from: "08:00", to: "18:00"}', '{from: "08:00", to: "18:00"}\n    holidays: ["25-12"]',
     "sla.yaml:5: calendars.office.holidays[0]: '25-12' is not a date YYYY-MM-DD or a yearly MM-DD"),
    ('{from: "08:00", to: "18:00"}', '{from: "08:00", to: "18:00"}\n    holidays: ["2026-02-30"]',
     "sla.yaml:5: calendars.office.holidays[0]: '2026-02-30' is not a date"),
    ('{from: "08:00", to: "18:00"}', '{from: "08:00", to: "18:00"}\n    holidays: [2026-01-01, 2026-02-30]',
     "sla.yaml:5: 2026-02-30 is not a real date: day is out of range for month"),
    ('{from: "08:00", to: "18:00"}', '{from: "08:00", to: "18:00"}\n    week: {sun: [], funday: []}',
     "sla.yaml:5: calendars.office.week: 'funday' is not a weekday"),
    ('{from: "08:00", to: "18:00"}', '{from: "08:00", to: "18:00"}\n    country: XX',
     "sla.yaml:5: calendars.office.country: 'XX' is not a supported ISO 3166 country code"),
    ('{from: "08:00", to: "18:00"}', '{from: "08:00", to: "18:00"}\n    country: DE\n    subdivision: XY',
     "sla.yaml:6: calendars.office.subdivision: 'XY' is not a subdivision of DE; known: BB, BE"),
    ('{from: "08:00", to: "18:00"}', '{from: "08:00", to: "18:00"}\n    subdivision: BE',
     "sla.yaml:5: calendars.office.subdivision: needs country:"),
    ("    always_open: true", "    always_open: true\n    days: [mon]",
     "sla.yaml:7: calendars.24x7: always_open: true leaves nothing to set; remove days"),
    ("    always_open: true", "    always_open: yes please",
     "sla.yaml:6: calendars.24x7.always_open: expected true or false, got a string"),
    ('    hours: {from: "08:00", to: "18:00"}', "    days: [mon]",
     'sla.yaml:2: calendars.office: give hours: {from: "08:00", to: "18:00"} (and days:), or week:'),
    ("  office:\n    timezone: Europe/Berlin\n", "  office:\n",
     "sla.yaml:2: calendars.office: missing required key 'timezone'"),
    ('{from: "08:00", to: "18:00"}', '{from: "08:00", to: "18:00"}\n    days: [sat]\n    week: {sat: []}',
     "sla.yaml:2: calendars.office: the calendar is never open"),
    ("  24x7:\n", "  routing:\n", "sla.yaml:5: calendars.routing: that name is routing.yaml's calendar"),
])
def test_calendar_mistakes(tmp_path, old, new, expected):
    assert old in BASE
    found = problems(tmp_path, BASE.replace(old, new, 1))
    assert found[0].startswith(expected), found


# ------------------------------------------------------------------ policies and targets
@pytest.mark.parametrize("old, new, expected", [
    ("    calendar: office", "    calendar: ofice",
     "sla.yaml:13: policies.critical.calendar: unknown calendar 'ofice' (did you mean 'office'?); "
     "known: 24x7, office, routing"),
    ("calendar: 24x7}", "calendar: 24x8}", "sla.yaml:16: policies.critical.targets.P1.calendar: unknown calendar"),
    ("    escalations: ladder", "    escalations: ladders",
     "sla.yaml:14: policies.critical.escalations: unknown escalation ladder 'ladders' (did you mean 'ladder'?)"),
    ("resolution: 30h}", "resolution: 30}",
     "sla.yaml:18: policies.critical.targets.P3.resolution: expected a duration such as 4h, 30m or 1h30m, got 30 "
     "(a bare number has no unit"),
    ("resolution: 30h}", "resolution: 3d}", "sla.yaml:18: policies.critical.targets.P3.resolution: expected a "
     "duration such as 4h, 30m or 1h30m, got '3d' (days are ambiguous in business time"),
    ("resolution: 30h}", "resolution: 30 hours}", "sla.yaml:18: policies.critical.targets.P3.resolution: expected"),
    ("resolution: 30h}", "resolution: 0m}", "sla.yaml:18: policies.critical.targets.P3.resolution: expected"),
    ("resolution: 30h}", "resolution: 3h}", "sla.yaml:18: policies.critical.targets.P3: first_response is longer"),
    ("      P4: {first_response: 8h, resolution: 100h}\n", "",
     "sla.yaml:16: policies.critical.targets: no targets for P4 (every priority level in priority.yaml"),
    ("      P4:", "      P5:", "sla.yaml:19: policies.critical.targets: unknown priority level 'P5'"),
    ("P2: {first_response: 1h,", "P2: {first_respnse: 1h,",
     "sla.yaml:17: policies.critical.targets.P2: unknown key 'first_respnse' (did you mean 'first_response'?)"),
    ("default_policy: critical", "default_policy: critcal",
     "sla.yaml:20: default_policy: unknown policy 'critcal' (did you mean 'critical'?)"),
    ("  critical:\n    calendar", "  critical!:\n    calendar", "sla.yaml:12: policy name 'critical!'"),
])
def test_policy_mistakes(tmp_path, old, new, expected):
    assert old in BASE
    found = problems(tmp_path, BASE.replace(old, new, 1))
    assert found[0].startswith(expected), found


def test_services_must_name_existing_policies(tmp_path):
    found = problems(tmp_path, services=SERVICES.replace("sla: critical", "sla: critcal"))
    assert found == ["services.yaml:2: services.erp.sla: unknown SLA policy 'critcal' (did you mean 'critical'?); "
                     "sla.yaml policies: critical"]


# ------------------------------------------------------------------ escalation levels
WARN = "    - {name: warn, at: 75%, notify: agent/sla-warning}"


@pytest.mark.parametrize("level, expected", [
    ("{name: warn, at: fast, notify: x/y}", "escalations.ladder[0].at: expected a percentage of the target"),
    ("{name: warn, at: 0%, notify: x/y}", "escalations.ladder[0].at: expected a percentage"),
    ("{name: warn, at: 75%}", "escalations.ladder[0]: a level needs at least one of notify, reassign"),
    ("{name: warn, at: 75%, to: [assignee]}", "escalations.ladder[0].to: only means something with notify:"),
    ("{name: warn, at: 75%, reassign: zed@example.com}",
     "escalations.ladder[0].reassign: 'zed@example.com' is not an agent in queues.yaml"),
    ("{name: warn, at: 75%, reassign: {role: boss}}",
     "escalations.ladder[0].reassign: unknown role 'boss'; known: agent, lead"),
    ("{name: warn, at: 75%, notify: a/b, to: [nobody]}",
     "escalations.ladder[0].to: expected an address, {role: NAME}, assignee, queue; got 'nobody'"),
    ("{name: warn, at: 75%, priority: P7}",
     "escalations.ladder[0].priority: unknown priority level (or raise) 'P7'"),
    ("{name: warn, at: 75%, tags: [sla-breached]}",
     "escalations.ladder[0].tags: unknown tag (declare it in vocabulary.yaml) 'sla-breached'"),
    ("{name: warn, at: 75%, notify: a/b, targets: [resolutoin]}",
     "escalations.ladder[0].targets: 'resolutoin' is not one of first_response, resolution, update "
     "(did you mean 'resolution'?)"),
    ("{name: warn, at: 75%, notify: a/b, color: red}", "escalations.ladder[0]: unknown key 'color'"),
    ("{name: late, at: 75%, notify: a/b}", "escalations.ladder[1]: level name 'late' is already used on line 9"),
])
def test_level_mistakes(tmp_path, level, expected):
    found = problems(tmp_path, BASE.replace(WARN, f"    - {level}"))
    assert re.sub(r"^sla\.yaml:\d+: ", "", found[0]).startswith(expected), found
    assert found[0].startswith(("sla.yaml:9:", "sla.yaml:10:")), found


def test_templates_are_checked_when_known(tmp_path):
    found = problems(tmp_path, templates={"agent/sla-warning", "agent/sla-breach"})
    assert found == ["sla.yaml:10: escalations.ladder[1].notify: unknown template 'agent/sla-breached' "
                     "(did you mean 'agent/sla-breach'?); known: agent/sla-breach, agent/sla-warning"]
    assert load(tmp_path / "ok", templates={"agent/sla-warning", "agent/sla-breached"})


def test_tags_roles_levels_and_agents_that_exist_load(tmp_path):
    s = load(tmp_path, BASE.replace(WARN, "    - {name: warn, at: 87.5%, tags: [vip], priority: raise, "
                                          "reassign: Ana@Example.com, notify: x/y, to: [queue, boss@example.org], "
                                          "targets: resolution}"))
    warn = s.policies["critical"].levels[0]
    assert warn.percent == 87.5 and warn.targets == {"resolution"}
    assert [(a.kind, a.value, a.to) for a in warn.actions] == [
        ("notify", "x/y", ("queue", "boss@example.org")), ("reassign", "ana@example.com", ()),
        ("priority", "raise", ()), ("tag", "vip", ())]


# ------------------------------------------------------------------ selection
SELECT = "select:\n  - when: {queue: network, domain: board.example.com}\n    policy: critical\n"


@pytest.mark.parametrize("old, new, expected", [
    ("queue: network", "queue: netwrok", "sla.yaml:22: select[0].when.queue: unknown queue 'netwrok' (did you mean "
                                         "'network'?)"),
    ("queue: network", "service: mail", "sla.yaml:22: select[0].when.service: unknown service 'mail'"),
    ("queue: network", "priority: [P1, P9]", "sla.yaml:22: select[0].when.priority: unknown priority 'P9'"),
    ("domain: board.example.com", "domain: 'board example'", "sla.yaml:22: select[0].when.domain: 'board example' "
                                                             "is not a domain name"),
    ("queue: network, domain: board.example.com", "", "sla.yaml:22: select[0].when: empty; the catch-all is "
                                                      "default_policy"),
    ("queue: network", "queues: network", "sla.yaml:22: select[0].when: unknown key 'queues' (did you mean "
                                          "'queue'?)"),
    ("policy: critical", "policy: gold", "sla.yaml:23: select[0].policy: unknown policy 'gold'"),
])
def test_select_mistakes(tmp_path, old, new, expected):
    found = problems(tmp_path, BASE + SELECT.replace(old, new))
    assert found[0].startswith(expected), found


def test_select_loads(tmp_path):
    s = load(tmp_path, BASE + SELECT)
    (sel,) = s.selectors
    assert sel.queues == {"network"} and sel.domains == ("board.example.com",) and sel.where == "sla.yaml:22"


def test_every_problem_is_reported_at_once(tmp_path):
    bad = BASE.replace("Europe/Berlin", "Mars/Olympus").replace("escalations: ladder", "escalations: nope") \
        .replace("default_policy: critical", "default_policy: gone")
    found = problems(tmp_path, bad)
    assert [p.split(":")[1] for p in found] == ["3", "14", "20"], found


def test_country_codes_are_the_holidays_packages_without_importing_every_country():
    """daemon.rules.calendars checks `country:` against the registry's codes (a rules load
    then imports one country's module, not all); they are the ones list_supported_countries gives."""
    import holidays
    from daemon.rules.calendars import country_codes
    supported = holidays.list_supported_countries()
    assert sorted(country_codes()) == sorted(supported) and "DE" in supported
    assert all(list(getattr(holidays, code).subdivisions) == supported[code] for code in ("DE", "US", "GB", "AT"))
