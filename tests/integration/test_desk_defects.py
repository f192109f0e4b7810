"""Defects of issue 17, each a test: a public answer is the first response; an
answer assigns an unassigned ticket to the agent who answered (queue setting
`assign_on_answer`, on by default); `check` counts templates as `serve` does; a SIGHUP logs
the rules reload result once; `quarantine show` prints text unless `--json`."""
from __future__ import annotations

import json
import logging
import shutil
from datetime import timedelta

import pytest

from daemon.cli import main
from daemon.model import Envelope
from daemon.sla.views import SlaReader
from tests.agentkit import Zone, agent_reply
from tests.integration.test_agents import opened, send_agent
from tests.conftest import REPO
from tests.integration.test_outbox import close_desk, make_desk


def own_rules(tmp_path, edit=lambda rules: None):
    """A copy of the shipped rules the test may change."""
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    edit(rules)
    return rules


def agent_desk(tmp_path, rules):
    d = make_desk(tmp_path, extra=f'[paths]\nrules = "{rules}"\n')
    zone = Zone()
    d.pem = zone.publish("mail", "example.com")
    d.app.mail.agents.auth.lookup = zone
    return d


@pytest.fixture
def desk(tmp_path):
    d = agent_desk(tmp_path, own_rules(tmp_path))
    yield d
    close_desk(d)


def first_response(d, tid: int = 1):
    sla = SlaReader(d.app.config, d.store.engine).show(tid, d.clock())
    return sla, next(c for c in sla["clocks"] if c["target"] == "first_response")


def test_a_public_answer_is_the_first_response(desk):
    notice = opened(desk)
    desk.clock.advance(minutes=10)
    send_agent(desk, agent_reply(notice, "#resolve\nFixed: the tray was loose."))
    sla, fr = first_response(desk)
    assert sla["responded_at"] is not None and fr["met"] is True


def test_a_commands_only_mail_is_not_the_first_response(desk):
    """Issue 17 defect: `#priority` / `#resolve` alone showed first_response `met` with
    responded_at null, and the SLA report counted it as met."""
    notice = opened(desk)
    desk.clock.advance(minutes=10)
    send_agent(desk, agent_reply(notice, "#priority P2"))
    sla, fr = first_response(desk)
    assert sla["responded_at"] is None and fr["state"] == "running" and not fr["met"]
    send_agent(desk, agent_reply(notice, "#resolve", n=2))
    sla, fr = first_response(desk)
    assert sla["responded_at"] is None and sla["breached"] == []
    assert (fr["state"], fr["met"], fr["unanswered"], fr["phase"]) == ("unanswered", False, True, "stopped")
    now = desk.clock()
    report = SlaReader(desk.app.config, desk.store.engine).report(now - timedelta(days=1), now + timedelta(days=1),
                                                                  now)
    row = report.row("all", "all", "first_response")
    assert (row.met, row.unanswered, row.breached, row.attainment) == (0, 1, 0, None)
    assert report.row("all", "all", "resolution").met == 1


def test_an_answer_assigns_the_unassigned_ticket_to_whoever_answered(desk):
    notice = opened(desk)
    send_agent(desk, agent_reply(notice, "#priority P2"))                 # commands only: no
    assert desk.store.ticket_detail(1).ticket.assignee is None
    send_agent(desk, agent_reply(notice, "Which floor, Ann?", n=2))
    t = desk.store.ticket_detail(1)
    assert t.ticket.assignee == "ana@example.com"
    assert any(e.kind == "changed" and json.loads(e.detail)["field"] == "assignee" for e in t.events)
    other = opened(desk, 2)
    send_agent(desk, agent_reply(other, "#assign ben@example.com\nBen will call you.", n=3))
    assert desk.store.ticket_detail(2).ticket.assignee == "ben@example.com"   # an explicit #assign wins


def test_assign_on_answer_false_leaves_it_unassigned(tmp_path):
    def edit(rules):
        text = (rules / "queues.yaml").read_text()
        line = '    description: "First line: everything not routed elsewhere"\n'
        (rules / "queues.yaml").write_text(text.replace(line, line + "    assign_on_answer: false\n"))
    d = agent_desk(tmp_path, own_rules(tmp_path, edit))
    try:
        assert d.app.rules.current.queues["general"].assign_on_answer is False
        send_agent(d, agent_reply(opened(d), "Which floor, Ann?"))
        assert d.store.ticket_detail(1).ticket.assignee is None
    finally:
        close_desk(d)


def test_check_counts_templates_as_serve_logs_them(desk, tmp_path, capsys, caplog):
    assert main(["--config", str(tmp_path / "site.toml"), "check"]) == 0
    out = capsys.readouterr().out
    served = len(desk.app.mail.templates.current.names)
    assert f"{served} template(s) (" in out


def test_a_sighup_logs_the_rules_reload_result_once(desk, tmp_path, caplog):
    rules = desk.app.rules
    assert rules.path.is_relative_to(tmp_path)
    (rules.path / "routing.yaml").write_text("rules: [\n")
    with caplog.at_level(logging.INFO):
        desk.app.reload()
    failed = [r for r in caplog.records if "rules reload failed" in r.getMessage()]
    assert len(failed) == 1


def test_quarantine_show_prints_text_unless_json(desk, tmp_path, capsys):
    desk.app.spool.put(b"this is not a mail at all", Envelope("x@example.org", ("support@example.com",), "smtp"))
    desk.app.worker.drain()
    site = ["--config", str(tmp_path / "site.toml")]
    rows = desk.store.quarantine_list()
    assert len(rows) == 1
    qid = str(rows[0].id)
    assert main(site + ["quarantine", "show", qid]) == 0
    text = capsys.readouterr().out
    assert text.startswith("id:") and "reason:" in text and not text.lstrip().startswith("{")
    assert main(site + ["quarantine", "show", qid, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == rows[0].id
