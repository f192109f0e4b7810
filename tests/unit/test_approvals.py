"""Change approval, the pure parts and the loader: quorum arithmetic, reading a reply's
decision, approvals.yaml errors with file:line, hot reload keeping the last good set, and
approval tokens the agent path refuses."""
from __future__ import annotations

import os
import shutil
from types import SimpleNamespace
from datetime import date, timedelta

import pytest

from daemon.approval_rules import LiveApprovals, approval_problems, load_approvals
from daemon.check import check
from daemon.config import load_config
from daemon.errors import RulesError
from daemon.pipeline import tokens
from daemon.pipeline.approvals import Approver, Decision, Refusal, Stage, Vote, plan_for, read_decision, tally
from daemon.rules.loader import load_rules
from store.approvals_store import status_refusal
from tests.conftest import REPO, write_site_config

RING = tokens.Keyring({1: b"k" * 32}, 1)


def stage(n: int, quorum: int) -> Stage:
    return Stage("cab", tuple(Approver(f"a{i}@example.com") for i in range(n)), quorum)


@pytest.mark.parametrize("votes,quorum,want", [
    (("approved", "pending", "pending"), 2, "pending"),
    (("approved", "approved", "pending"), 2, "approved"),
    (("rejected", "rejected", "pending"), 2, "rejected"),
    (("rejected", "approved", "pending"), 2, "pending"),
    (("approved", "pending", "pending"), 1, "approved"),
    (("rejected", "pending", "pending"), 3, "rejected"),
    (("expired", "expired", "approved"), 1, "approved"),
])
def test_tally(votes, quorum, want):
    assert tally(stage(3, quorum), [Vote(f"a{i}@example.com", s) for i, s in enumerate(votes)]) == want


@pytest.mark.parametrize("text,kind,comment", [
    ("approve", "approve", ""), ("Approved - fine by me", "approve", "fine by me"),
    ("REJECT: not now\nwait for the audit", "reject", "not now\nwait for the audit"),
    ("  rejected.", "reject", ""),
])
def test_read_decision(text, kind, comment):
    assert read_decision(text) == Decision(kind, comment)


@pytest.mark.parametrize("text", ["", "ok", "No problem, go ahead", "approvement", "I approve"])
def test_anything_else_is_refused_with_the_reason(text):
    got = read_decision(text)
    assert isinstance(got, Refusal) and "approve" in got.reason and "reject" in got.reason


def test_the_shipped_file_loads_and_picks_service_then_queue_then_default():
    rules = load_approvals(REPO / "rules", load_rules(REPO / "rules"))
    net, where = plan_for(rules, None, "network")
    assert where == "queue network" and [s.quorum_text for s in net.stages] == ["2 of 3", "1 of 1"]
    assert plan_for(rules, "erp", "network")[1] == "service erp"
    assert plan_for(rules, None, "workplace")[1] == "default"


def test_errors_name_file_and_line(tmp_path):
    shutil.copytree(REPO / "rules", tmp_path / "rules")
    (tmp_path / "rules" / "approvals.yaml").write_text(
        "settings:\n  remind_after: soon\n"
        "queues:\n  nosuch:\n    approvers: [a@example.com]\n"
        "  network:\n    cab:\n      members: [a@example.com, not-an-address]\n      quorum: 5\n"
        "  general:\n    approvers: [a@example.com]\n    color: red\n")
    with pytest.raises(RulesError) as exc:
        load_approvals(tmp_path / "rules", load_rules(tmp_path / "rules"))
    text = "\n".join(exc.value.problems)
    path = tmp_path / "rules" / "approvals.yaml"
    assert f"{path}:2: settings.remind_after: expected a duration" in text
    assert f"{path}:4: queues: unknown queue 'nosuch'" in text
    assert f"{path}:8: queues.network.cab.members: 'not-an-address' is not an email address" in text
    assert f"{path}:9: queues.network.cab.quorum: expected any, all or a number from 1 to 1" in text
    assert f"{path}:12: queues.general: unknown key 'color'" in text


def test_reload_swaps_a_good_file_and_keeps_the_last_good_one(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    ruleset = load_rules(rules)
    live = LiveApprovals(rules, rules=lambda: ruleset)
    first = live.current()
    (rules / "approvals.yaml").write_text("default:\n  approvers: [boss@example.com]\n")
    assert live.reload() == [] and live.current().default.stages[0].approvers[0].email == "boss@example.com"
    good = live.current()
    (rules / "approvals.yaml").write_text("default:\n  approvers: []\n")
    problems = live.reload()
    assert problems and ":2: default.approvers: expected a non-empty list" in problems[0]
    assert live.current() is good and good is not first
    os.remove(rules / "approvals.yaml")
    assert live.reload() == [] and live.current().default is None


def test_approval_tokens_are_not_agent_tokens():
    today = date(2026, 3, 2)
    t = tokens.approval_token(RING, 7, "chen@example.com", today + timedelta(days=30))
    check = tokens.check_approval_token(RING, t, today)
    assert check.status == "valid" and check.tag.ticket_id == 7
    assert check.tag.principal == tokens.principal_id("chen@example.com")
    assert tokens.check_reply_token(RING, t, today).status == "invalid"
    agent = tokens.reply_token(RING, 7, "chen@example.com", today + timedelta(days=30))
    assert tokens.check_approval_token(RING, agent, today).status == "invalid"
    assert tokens.check_approval_token(RING, t, today + timedelta(days=31)).status == "expired"


def test_check_lists_approvals_problems_with_file_and_line(tmp_path):
    shutil.copytree(REPO / "rules", tmp_path / "rules")
    (tmp_path / "rules" / "approvals.yaml").write_text("queues:\n  network:\n    cab: {members: [a@example.com], "
                                                       "quorum: 2}\n")
    found, _ = check(load_config(str(write_site_config(tmp_path, '[paths]\nrules = "rules"\n'))))
    assert found == [f"{tmp_path / 'rules' / 'approvals.yaml'}:3: queues.network.cab.quorum: expected any, all or "
                     f"a number from 1 to 1 (the members), got 2"]


def test_a_failed_reload_is_a_status_problem(tmp_path):
    shutil.copytree(REPO / "rules", tmp_path / "rules")
    ruleset = load_rules(tmp_path / "rules")
    live = LiveApprovals(tmp_path / "rules", rules=lambda: ruleset)
    app = SimpleNamespace(mail=SimpleNamespace(approvals=SimpleNamespace(live=live)))
    assert approval_problems(app) == [] and approval_problems(SimpleNamespace()) == []
    (tmp_path / "rules" / "approvals.yaml").write_text("queues: [1]\n")
    live.reload()
    assert approval_problems(app) == [f"{tmp_path / 'rules' / 'approvals.yaml'}:1: queues: expected a mapping of "
                                      f"queue name to policy"]


@pytest.mark.parametrize("kind,state,status,refused", [
    ("change", None, "resolved", "has not started yet"), ("change", "awaiting-approval", "closed", "still awaiting"),
    ("change", "rejected", "resolved", "was rejected"), ("change", "expired", "resolved", "was expired"),
    ("change", "rejected", "closed", None), ("change", "approved", "resolved", None),
    ("change", "awaiting-approval", "pending", None), ("incident", None, "resolved", None)])
def test_a_change_is_resolved_only_once_approved(kind, state, status, refused):
    why = status_refusal(kind, state, status, "HD-7")
    assert (why is None) if refused is None else (refused in why and why.startswith("HD-7 is a change"))
