"""The pure parts of problem management and satisfaction: survey scores in the shipped
languages, who gets a survey, who is told a problem was resolved, the new commands, the
rule action and the queue settings."""
from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone

import pytest

from daemon.errors import RulesError
from daemon.pipeline.commands import Vocabulary, parse_commands, validate
from daemon.pipeline.csat import SurveyFacts, plan_survey, score_of
from daemon.pipeline.problems import Incident, plan_resolution
from daemon.rules.actions import link_problem
from daemon.rules.loader import load_rules
from daemon.rules.registry import Invalid
from tests.conftest import REPO

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)
VOCAB = Vocabulary(frozenset({"general"}), frozenset({"incident", "problem"}), frozenset(), frozenset(),
                   ("P1", "P2", "P3", "P4"))


@pytest.mark.parametrize("text,score,comment", [
    ("5 thanks", 5, "thanks"), ("5", 5, ""), ("5/5 great job", 5, "great job"), ("4 - ok", 4, "ok"),
    ("bad", 1, ""), ("Bad!\nIt took a week.", 1, "It took a week."), ("good", 4, ""), ("very good", 5, ""),
    ("not good, slow", 2, "slow"), ("sehr gut, danke", 5, "danke"), ("Schlecht", 1, ""), ("gut", 4, ""),
    ("\n\n  3 \n", 3, ""), ("4 von 5", 4, ""),
])
def test_scores_in_the_shipped_languages(text, score, comment):
    answer = score_of(text)
    assert answer is not None and (answer.score, answer.comment) == (score, comment)


@pytest.mark.parametrize("text", ["", "It still jams", "12 pages jam", "5th floor now", "0", "6", "4.5",
                                  "goodbye", "gute Nachrichten", "badly broken"])
def test_what_is_not_a_score(text):
    assert score_of(text) is None


def facts(**kw) -> SurveyFacts:
    base = dict(enabled_days=30, ticket_type="incident", requester="ann@example.org", opened_by_human=True, tags=(),
                last_survey_at=None, own=frozenset({"support@example.com"}))
    return SurveyFacts(**{**base, **kw})


def test_who_gets_a_survey():
    assert plan_survey(facts(), NOW)[0]
    assert plan_survey(facts(last_survey_at=NOW - timedelta(days=31)), NOW)[0]
    for kw, why in ((dict(enabled_days=None), "no surveys"), (dict(opened_by_human=False), "machine mail"),
                    (dict(tags=("spam",)), "spam"), (dict(ticket_type="problem"), "problem"),
                    (dict(requester="support@example.com"), "no usable"),
                    (dict(last_survey_at=NOW - timedelta(days=29)), "at most one in 30 day(s)")):
        send, reason = plan_survey(facts(**kw), NOW)
        assert not send and why in reason


def test_each_requester_is_told_once_and_open_incidents_resolved():
    incidents = [Incident(2, "open", "Bob@example.org"), Incident(3, "resolved", "carl@example.org"),
                 Incident(4, "pending", "bob@example.org"), Incident(5, "new", "dan@example.org"),
                 Incident(6, "closed", "support@example.com")]
    plan = plan_resolution(incidents, frozenset({"dan@example.org"}), frozenset({"support@example.com"}), True)
    assert plan.resolve == (2, 4, 5)
    assert plan.notify == ((2, "bob@example.org"), (3, "carl@example.org"))
    assert plan_resolution(incidents, frozenset(), frozenset(), False).resolve == ()


def test_problem_commands():
    cmds = validate(parse_commands("#problem HD-7\n#link HD-12 HD-13, 14\n#workaround Restart the client."),
                    VOCAB, sender="ana@example.com", ticket_id=1)
    assert [(c.name, c.value) for c in cmds.commands] == [("problem", "7"), ("link", "12 13 14"),
                                                          ("workaround", "Restart the client.")]
    body = validate(parse_commands("#workaround\n\nUse the web client\nuntil Monday."), VOCAB, sender="a@x.org",
                    ticket_id=1)
    assert [(c.name, c.value) for c in body.commands] == [("note", ""), ("workaround",
                                                                         "Use the web client\nuntil Monday.")]
    bad = validate(parse_commands("#workaround\n#problem HD-1\n#link HD-2 nope"), VOCAB, sender="a@x.org",
                   ticket_id=1)
    assert not bad.commands and len(bad.refused) == 3
    assert "needs the text" in bad.refused[0].reason and "itself" in bad.refused[1].reason


def test_the_rule_action_problem():
    assert link_problem("HD-7", None)[0].value == 7 and link_problem(12, None)[0].value == 12
    for arg in ("", "HD-", "seven", True, ["HD-7"], "HD-0"):
        with pytest.raises(Invalid):
            link_problem(arg, None)


def _queues(tmp_path, text: str):
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    line = '    description: "First line: everything not routed elsewhere"\n'
    queues = rules / "queues.yaml"
    queues.write_text(queues.read_text().replace(line, line + text))
    return rules


def test_queue_settings_load_and_bad_ones_name_their_line(tmp_path):
    good = load_rules(_queues(tmp_path / "a", "    survey: {every_days: 14, notify_lead: false}\n"
                                              "    resolve_linked_incidents: false\n"))
    general = good.queues["general"]
    assert (general.survey_days, general.survey_notify_lead, general.resolve_linked_incidents) == (14, False, False)
    assert good.queues["network"].survey_days is None and good.queues["network"].resolve_linked_incidents
    with pytest.raises(RulesError) as bad:
        load_rules(_queues(tmp_path / "b", "    survey: {every_days: 0, notfy_lead: true}\n"
                                           "    resolve_linked_incidents: maybe\n"))
    text = "\n".join(bad.value.problems)
    assert "queues.yaml:" in text and "survey.every_days" in text and "notfy_lead" in text
    assert "resolve_linked_incidents: expected true or false" in text
