"""The shipped rules/ load clean and pass their own corpus; `helpdesk rules test` output."""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from daemon.pipeline.classify import Defaults
from daemon.rules import load_rules
from daemon.rules.tester import add_rules_parser, load_expectations, run_rules_command, template_names

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "rules"
CORPUS = RULES / "tests"


def run(cfg, capsys, *argv: str) -> tuple[int, str, str]:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config")
    parser = argparse.ArgumentParser(parents=[common])
    add_rules_parser(parser.add_subparsers(dest="command", required=True), common)
    code = run_rules_command(cfg, parser.parse_args(list(argv)))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_shipped_rules_load_clean_with_the_shipped_config_defaults():
    rs = load_rules(RULES, known_templates=template_names(REPO / "templates"),
                    defaults=Defaults("incident", "general", "P3"))
    assert len(rs.rules) >= 10
    assert {"lead"} <= {a.role for q in rs.queues.values() for a in q.agents}
    assert rs.services and rs.matrix.levels == ("P1", "P2", "P3", "P4")


def test_config_points_at_the_shipped_rules(config):
    assert config.paths.rules.resolve() == RULES.resolve()


def test_shipped_rules_pass_their_own_corpus(config, capsys):
    code, out, err = run(config, capsys, "rules", "test", "--corpus", str(CORPUS), "--expect",
                         str(CORPUS / "expect.yaml"))
    assert code == 0, out + err
    expected = load_expectations(CORPUS / "expect.yaml")
    assert f"{len(expected)}/{len(expected)} as expected" in out
    assert len(expected) >= 8 and "FAIL" not in out and "----" not in out


def test_a_mismatch_exits_1_listing_every_one(config, capsys, tmp_path):
    expect = tmp_path / "expect.yaml"
    expect.write_text("outage.eml: {queue: general, priority: P1}\n"
                      "newsletter.eml: {action: ticket}\n"
                      "vip-access.eml: {tags: [access, vip]}\n"
                      "ghost.eml: {queue: general}\n")
    code, out, _ = run(config, capsys, "rules", "test", "--corpus", str(CORPUS), "--expect", str(expect))
    assert code == 1
    assert "FAIL outage.eml: queue: expected general, got network" in out
    assert "FAIL newsletter.eml: action: expected ticket, got drop" in out
    assert "ok   vip-access.eml" in out                            # tags compare as a set
    assert "FAIL ghost.eml: expected, but no such file in the corpus" in out
    assert "---- laptop-request.eml: no expectation" in out
    assert "1/4 as expected" in out


def test_corpus_json_and_expectations_in_json(config, capsys, tmp_path):
    expect = tmp_path / "expect.json"
    expect.write_text(json.dumps({"outage.eml": {"type": "incident", "priority": "P1"}}))
    code, out, _ = run(config, capsys, "rules", "test", "--corpus", str(CORPUS), "--expect", str(expect), "--json")
    report = json.loads(out)
    assert code == 0 and report["failed"] == 0
    outage = next(r for r in report["results"] if r["file"] == "outage.eml")
    assert outage["status"] == "ok" and outage["routing"]["queue"] == "network"


@pytest.mark.parametrize("text, message", [
    ("outage.eml: {colour: red}\n", "cannot expect 'colour'"),
    ("outage.eml: P1\n", "expected a mapping of fields"),
    ("outage.eml: {queue: a}\noutage.eml: {queue: b}\n", "duplicate key"),
    ("- outage.eml\n", "expected a mapping of file name"),
])
def test_bad_expectation_files(config, capsys, tmp_path, text, message):
    expect = tmp_path / "expect.yaml"
    expect.write_text(text)
    code, _, err = run(config, capsys, "rules", "test", "--corpus", str(CORPUS), "--expect", str(expect))
    assert code == 1 and message in err and str(expect) in err


def test_one_message_explained_as_text(config, capsys):
    code, out, _ = run(config, capsys, "rules", "test", str(CORPUS / "vip-access.eml"))
    assert code == 0
    assert "routed as a new ticket at 2026-03-04T14:30:00+00:00 (Date header)" in out
    assert "HIT   routing.yaml:" in out and "vip-senders: sender domain is 'board.example.com'" in out
    assert "(continue)" in out and "miss  routing.yaml:" in out
    assert "later rule(s) not tried: 'access-requests' matched and stops" in out
    assert "urgency       high" in out and "rule vip-senders" in out


def test_one_message_as_json_with_options(config, capsys):
    code, out, _ = run(config, capsys, "rules", "test", str(CORPUS / "laptop-request.eml"), "--json",
                       "--at", "2026-03-07T23:00:00+00:00")
    data = json.loads(out)
    assert code == 0 and data["at"].endswith("(--at)")
    assert data["routing"]["tags"] == ["after-hours", "hardware"]
    assert data["event"] == "new" and data["stopped_by"] == "hardware-requests"
    hit = [t for t in data["trials"] if t["hit"]]
    assert [t["rule"] for t in hit] == ["after-hours", "hardware-requests"]
    assert all({"rule", "where", "hit", "reason", "continue"} <= set(t) for t in data["trials"])


def test_reply_mode_and_envelope_recipients(config, capsys, tmp_path):
    mail = tmp_path / "m.eml"
    mail.write_text("From: a@example.com\nTo: x@example.com\nSubject: Still not working\n"
                    "Date: Mon, 02 Mar 2026 10:00:00 +0000\n\nHello\n")
    code, out, _ = run(config, capsys, "rules", "test", str(mail), "--reply", "--json")
    data = json.loads(out)
    assert data["event"] == "reply" and data["routing"]["urgency"] == "high"
    assert [t["rule"] for t in data["trials"]] == ["reply-escalation"]
    code, out, _ = run(config, capsys, "rules", "test", str(mail), "--json", "--rcpt", "support+security@example.com")
    assert json.loads(out)["routing"]["queue"] == "security"


def test_usage_errors_exit_2(config, capsys):
    assert run(config, capsys, "rules", "test")[0] == 2
    assert run(config, capsys, "rules", "test", "x.eml", "--corpus", "d", "--expect", "e")[0] == 2
    assert run(config, capsys, "rules", "test", "--corpus", str(CORPUS))[0] == 2
    code, _, err = run(config, capsys, "rules", "test", str(CORPUS / "outage.eml"), "--at", "yesterday")
    assert code == 2 and "not an ISO time" in err


def test_broken_rules_exit_1_with_every_problem(config, capsys, tmp_path):
    broken = tmp_path / "rules"
    shutil.copytree(RULES, broken)
    text = (broken / "routing.yaml").read_text().replace("      queue: network\n", "      queue: netwrok\n", 1)
    (broken / "routing.yaml").write_text(text.replace("'\\b(vpn|remote access)\\b'", "'(a+)+'"))
    code, _, err = run(config, capsys, "rules", "test", str(CORPUS / "outage.eml"), "--rules", str(broken))
    assert code == 1
    assert "unknown queue 'netwrok' (did you mean 'network'?)" in err and "exponential time" in err
    assert "do not load (2 problem(s))" in err


def test_unparseable_or_missing_message(config, capsys, tmp_path):
    code, _, err = run(config, capsys, "rules", "test", str(tmp_path / "missing.eml"))
    assert code == 1 and "missing.eml" in err


def test_template_names(tmp_path):
    assert template_names(tmp_path / "none") is None
    assert template_names(tmp_path) is None
    (tmp_path / "requester").mkdir()
    (tmp_path / "requester" / "ack.txt.j2").write_text("x")
    (tmp_path / "requester" / "ack.html.j2").write_text("x")
    (tmp_path / "agent.v2").mkdir()
    (tmp_path / "agent.v2" / "new.txt.j2").write_text("x")
    assert template_names(tmp_path) == {"requester/ack", "agent.v2/new"}
