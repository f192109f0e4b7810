"""One business calendar for routing and SLA: the shipped rules declare their calendars once
(routing.yaml `calendars:`), routing's `calendar:` names one and sla.yaml's policies name
the same ones, so `business_hours` and the SLA clocks never disagree about a mail."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon.errors import RulesError
from daemon.model import TicketHistory
from daemon.pipeline.calendar import BusinessCalendar
from daemon.pipeline.classify import Defaults, classify
from daemon.pipeline.sla import policy_for, sla_state
from daemon.rules import load_rules
from daemon.sla.loader import load_sla
from tests.unit.test_rules_support import NEW, msg, write_rules

REPO = Path(__file__).resolve().parents[2]
RULES = load_rules(REPO / "rules")
SLA = load_sla(REPO / "rules", RULES)
UTC = timezone.utc


def after_hours(at: datetime) -> bool:
    routing = classify(msg(subject="Printer jams", text="It jams."), NEW, RULES, Defaults(), now=at)
    return "after-hours" in routing.tags


def clock_runs(at: datetime) -> bool:
    """Whether a P3 ticket created at `at` has used business time a minute later."""
    history = TicketHistory(1, at, "P3", "general", SLA.default_policy)
    state = sla_state(history, policy_for(SLA, history), at + timedelta(minutes=1))
    return state.clock("first_response").elapsed > timedelta(0)


def test_the_shipped_routing_and_sla_calendars_are_one_object():
    office = SLA.calendars["office"]
    assert isinstance(RULES.calendar, BusinessCalendar) and RULES.calendar is office
    assert SLA.calendars["routing"] is office
    assert SLA.policies["standard"].targets["P3"].calendar is office


def test_a_mail_at_0725_utc_is_neither_after_hours_nor_off_the_clock():
    at = datetime(2026, 3, 2, 7, 25, tzinfo=UTC)          # Monday 08:25 in Berlin: the office is open
    assert after_hours(at) is False and clock_runs(at) is True


@pytest.mark.parametrize("at", [
    datetime(2026, 3, 2, 6, 55, tzinfo=UTC),               # Monday 07:55 Berlin: before opening
    datetime(2026, 3, 2, 7, 25, tzinfo=UTC),
    datetime(2026, 3, 2, 16, 55, tzinfo=UTC),              # 17:55: open
    datetime(2026, 3, 2, 17, 5, tzinfo=UTC),               # 18:05: closed
    datetime(2026, 3, 7, 10, 0, tzinfo=UTC),               # Saturday
    datetime(2026, 4, 3, 10, 0, tzinfo=UTC),               # Good Friday (DE-BE holiday)
    datetime(2026, 7, 6, 6, 30, tzinfo=UTC),               # summer time: 08:30 Berlin, open
    datetime(2026, 12, 24, 10, 0, tzinfo=UTC),             # "12-24", every year
])
def test_after_hours_exactly_when_the_sla_clock_waits(at):
    assert after_hours(at) is not clock_runs(at)


def test_an_unknown_routing_calendar_is_a_load_error(tmp_path):
    routing = "calendar: nope\ndefault: {type: incident}\nrules: []\n"
    with pytest.raises(RulesError) as err:
        load_rules(write_rules(tmp_path / "r", routing=routing))
    assert len(err.value.problems) == 1
    assert err.value.problems[0].endswith("routing.yaml:1: calendar: unknown calendar 'nope'; "
                                          "routing.yaml calendars: none")


def test_declared_calendars_are_checked_with_file_and_line(tmp_path):
    routing = ("calendars:\n  office:\n    timezone: Europe/Berln\n    hours: {from: \"08:00\", to: \"18:00\"}\n"
               "calendar: office\ndefault: {type: incident}\nrules: []\n")
    with pytest.raises(RulesError) as err:
        load_rules(write_rules(tmp_path / "r", routing=routing))
    assert [p.split("/r/")[-1] for p in err.value.problems] == [
        "routing.yaml:3: calendars.office.timezone: unknown time zone 'Europe/Berln' "
        "(use an IANA name such as Europe/Berlin)",
        "routing.yaml:5: calendar: unknown calendar 'office'; routing.yaml calendars: none"]


def test_sla_yaml_may_not_declare_a_routing_calendar_again(tmp_path):
    routing = ("calendars:\n  office:\n    timezone: Europe/Berlin\n    hours: {from: \"08:00\", to: \"18:00\"}\n"
               "calendar: office\ndefault: {type: incident}\nrules: []\n")
    root = write_rules(tmp_path / "r", routing=routing)
    rules = load_rules(root)
    assert rules.calendar.name == "office" and rules.calendar.timezone == "Europe/Berlin"
    (root / "sla.yaml").write_text("calendars:\n  office:\n    always_open: true\npolicies:\n  p:\n"
                                   "    targets:\n      P3: {first_response: 4h, resolution: 30h}\n"
                                   "default_policy: p\n")
    with pytest.raises(RulesError) as err:
        load_sla(root, rules)
    assert any(p.endswith("sla.yaml:2: calendars.office: already declared in routing.yaml; use that one or "
                          "choose another name") for p in err.value.problems), err.value.problems
