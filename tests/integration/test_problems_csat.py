"""Problem management and satisfaction surveys in one process (immediate queue, a fake
relay, a manual clock): the details the end-to-end test (tests/e2e/test_problems_csat.py)
does not repeat - refused links, a rule naming a closed problem, `check` on the database,
surveys never for machine mail or spam, a reply without a score reopening as usual."""
from __future__ import annotations

import json
import mailbox

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from daemon.cli import main
from daemon.desk_cli import Act, perform
from store import tables as m
from tests.e2e.helpers import helpdesk
from tests.agentkit import agent_reply
from tests.integration.test_agents import opened, send_agent, sent_to
from tests.integration.test_desk_defects import agent_desk, own_rules
from tests.integration.test_outbox import close_desk, new_mail

RULE = """
  - name: vpn-outage
    description: "While problem HD-1 is open, VPN trouble is one of its incidents"
    when:
      subject: vpn
    then:
      problem: HD-1
    continue: true
"""
SURVEY = "    survey:\n      every_days: 30\n      notify_lead: true\n"


def _edit(rules):
    routing = (rules / "routing.yaml").read_text()
    routing = routing.replace("\nrules:\n", "\nrules:\n" + RULE, 1)
    (rules / "routing.yaml").write_text(routing)
    queues = (rules / "queues.yaml").read_text()
    line = '    description: "First line: everything not routed elsewhere"\n'
    (rules / "queues.yaml").write_text(queues.replace(line, line + SURVEY))


@pytest.fixture
def desk(tmp_path):
    d = agent_desk(tmp_path, own_rules(tmp_path, _edit))
    yield d
    close_desk(d)


def show(d, tid: int, tmp_path, capsys) -> dict:
    assert main(["--config", str(tmp_path / "site.toml"), "show", str(tid), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _events(d, tid: int, kind: str) -> list[dict]:
    return [json.loads(e.detail) for e in d.store.ticket_detail(tid).events if e.kind == kind]


def test_links_refusals_and_the_rule(desk, tmp_path, capsys):
    problem = opened(desk, 1, subject="Printers offline")            # HD-1, no "vpn": no rule
    send_agent(desk, agent_reply(problem, "#type problem\n#workaround Print to the floor 2 printer."))
    incident = opened(desk, 2, frm="bob@example.org", subject="Printer on 3 dead")
    send_agent(desk, agent_reply(incident, "#problem HD-1\n#problem HD-9", n=2))
    data = show(desk, 2, tmp_path, capsys)
    assert data["problem"]["ref"] == "HD-1" and data["csat"] is None
    done = _events(desk, 2, "agent_mail")[-1]["commands"]
    assert done[0]["ok"] and not done[1]["ok"] and "no ticket HD-9" in done[1]["detail"]
    other = opened(desk, 3, frm="carl@example.org", subject="Toner")
    send_agent(desk, agent_reply(other, "#problem HD-2", n=3))                # HD-2 is an incident
    assert "not a problem" in _events(desk, 3, "agent_mail")[-1]["commands"][0]["detail"]
    desk.mail(new_mail(4, frm="dan@example.org", subject="VPN is down"))     # the rule links it
    assert show(desk, 4, tmp_path, capsys)["problem"]["ref"] == "HD-1"
    ack = sent_to(desk, "dan@example.org")[-1].get_body(("plain",)).get_content()
    assert "Print to the floor 2 printer." in ack and "HD-1" in ack
    send_agent(desk, agent_reply(other, "#link HD-2 HD-4", n=5))         # on an incident: related, each
    assert set(desk.store.ticket_detail(3).links) >= {(2, "related"), (4, "related")}
    data = show(desk, 1, tmp_path, capsys)
    assert [i["ref"] for i in data["incidents"]] == ["HD-2", "HD-4"]
    assert data["known_error"]["workaround"] == "Print to the floor 2 printer."


def test_a_rule_never_links_to_a_closed_problem_and_check_says_so(desk, tmp_path, capsys):
    problem = opened(desk, 1, subject="Printers offline")
    send_agent(desk, agent_reply(problem, "#type problem\n#close"))
    desk.mail(new_mail(2, frm="dan@example.org", subject="VPN is down"))
    assert show(desk, 2, tmp_path, capsys)["problem"] is None
    assert "is closed" in _events(desk, 2, "problem_not_linked")[0]["why"]
    assert main(["--config", str(tmp_path / "site.toml"), "check"]) == 1
    assert "problem: HD-1 is closed, not open" in capsys.readouterr().err


def test_an_archive_import_links_by_the_rule_and_mails_nobody(desk, tmp_path, capsys):
    problem = opened(desk, 1, subject="Printers offline")
    send_agent(desk, agent_reply(problem, "#type problem\n#workaround Use the web VPN."))
    box = mailbox.mbox(str(tmp_path / "old.mbox"))
    box.add(new_mail(7, frm="dan@example.org", subject="VPN is down", extra="Date: Mon, 02 Mar 2026 08:00:00 +0000\r\n"))
    box.close()
    with Session(desk.store.engine) as s:
        before = s.exec(select(func.count()).select_from(m.Outbox)).one()
    helpdesk(tmp_path / "site.toml", "ingest", "--no-mail", str(tmp_path / "old.mbox"), check=True)
    assert show(desk, 2, tmp_path, capsys)["problem"]["ref"] == "HD-1"        # the rule linked it, as live mail
    assert [i["ref"] for i in show(desk, 1, tmp_path, capsys)["incidents"]] == ["HD-2"]
    with Session(desk.store.engine) as s:
        assert s.exec(select(func.count()).select_from(m.Outbox)).one() == before      # and planned no mail


def test_no_survey_for_machine_mail_or_spam_and_a_reply_without_a_score_reopens(desk, tmp_path, capsys):
    desk.mail(new_mail(1, frm="robot@example.org", subject="Disk full", extra="Auto-Submitted: auto-generated\r\n"))
    perform(desk.app, Act(1, "ana@example.com", ("status resolved",)))
    assert "machine mail" in _events(desk, 1, "csat_skipped")[0]["why"]
    desk.mail(new_mail(2, frm="eve@example.org", subject="Cheap watches"))
    perform(desk.app, Act(2, "ana@example.com", ("tag spam", "status resolved")))
    assert "spam" in _events(desk, 2, "csat_skipped")[0]["why"]
    desk.mail(new_mail(3, subject="Printer jams"))
    perform(desk.app, Act(3, "ana@example.com", ("status resolved",)))
    survey = sent_to(desk, "ann@example.org")[-1]
    assert "How did we do?" in str(survey["Subject"])
    answer = (f"From: Ann <ann@example.org>\r\nTo: support@example.com\r\nSubject: Re: {survey['Subject']}\r\n"
              f"Message-ID: <ans-1@example.org>\r\nIn-Reply-To: {survey['Message-ID']}\r\n"
              f"References: {survey['Message-ID']}\r\n\r\nIt jams again on every page.\r\n").encode()
    desk.mail(answer)
    data = show(desk, 3, tmp_path, capsys)
    assert data["status"] == "open" and data["csat"]["score"] is None


def test_a_problem_resolved_by_status_change_and_the_text_view(desk, tmp_path, capsys):
    problem = opened(desk, 1, subject="Printers offline")
    send_agent(desk, agent_reply(problem, "#type problem\n#workaround\n\nPrint to the floor 2 printer."))
    assert _events(desk, 1, "workaround")[0]["text"] == "Print to the floor 2 printer."
    assert not [m for m in sent_to(desk, "ann@example.org") if "floor 2" in m.get_body(("plain",)).get_content()]
    for n, who in ((2, "bob@example.org"), (3, "bob@example.org"), (4, "carl@example.org")):
        opened(desk, n, frm=who, subject=f"Printer {n} dead")
    send_agent(desk, agent_reply(problem, "#link HD-2 HD-3 HD-4", n=2))
    desk.outbound.resolve(1, "fixed")                          # a status change outside the agent path
    assert [str(m["X-Helpdesk-Ticket"]) for m in sent_to(desk, "bob@example.org") if "Fixed:" in str(m["Subject"])] \
        == ["HD-2"]                                            # two incidents, one notice
    assert len([m for m in sent_to(desk, "carl@example.org") if "Fixed:" in str(m["Subject"])]) == 1
    assert {desk.store.ticket_detail(t).ticket.status for t in (2, 3, 4)} == {"resolved"}
    assert main(["--config", str(tmp_path / "site.toml"), "show", "1"]) == 0
    out = capsys.readouterr().out
    assert "incidents: HD-2 (resolved), HD-3 (resolved), HD-4 (resolved)" in out
    assert "workaround: Print to the floor 2 printer." in out
    assert main(["--config", str(tmp_path / "site.toml"), "show", "3"]) == 0
    assert "problem: HD-1 (resolved) Printers offline" in capsys.readouterr().out


def test_export_has_what_show_json_has(desk, tmp_path, capsys):
    problem = opened(desk, 1, subject="Printers offline")
    send_agent(desk, agent_reply(problem, "#type problem\n#workaround Use floor 2."))
    opened(desk, 2, frm="bob@example.org", subject="Printer dead")
    send_agent(desk, agent_reply(problem, "#link HD-2", n=2))
    assert main(["--config", str(tmp_path / "site.toml"), "export"]) == 0
    exported = {t["ref"]: t for t in json.loads(capsys.readouterr().out)}
    for ref in ("HD-1", "HD-2"):
        shown = show(desk, int(ref[3:]), tmp_path, capsys)
        for key in ("problem", "incidents", "known_error", "csat"):
            assert exported[ref].get(key, "absent") == shown.get(key, "absent")
    assert exported["HD-2"]["problem"]["ref"] == "HD-1" and exported["HD-1"]["known_error"]["workaround"] == "Use floor 2."
