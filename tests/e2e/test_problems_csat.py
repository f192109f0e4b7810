"""Problem management and satisfaction surveys end to end: customers' mail over SMTP into a
real `helpdesk serve`, agents answering with real DKIM signatures (keys pinned through
[agents] dkim_keys_file) and from the command line, every mail out caught by a real
aiosmtpd relay, the time read from a test clock (`[debug] clock_file`) that the test moves.

Problems: incidents linked by mail (`#problem` on an incident, `#link` on the problem), from
the command line (`update --problem`) and by a rule (`problem: HD-1`); the workaround in a
new incident's acknowledgement; resolving the problem resolves the incidents and tells each
requester once, and resolving it again tells nobody again.
Satisfaction: a survey answered "5 thanks", none sent again inside the window, one after the
window answered "bad", which tells the queue's lead; the answers never reopen the ticket.
Barriers are later mail, never sleeps."""
from __future__ import annotations

import json
import shutil
import signal
from datetime import timedelta
from pathlib import Path

import pytest

from daemon.config import load_config
from tests.agentkit import Zone, agent_reply, reply_address, sign
from tests.conftest import REPO
from tests.e2e.helpers import Daemon, advance, helpdesk, show, wait_for
from tests.e2e.test_ack import mail, parsed, site, smtp_send
from tests.integration.test_outbox_relay import Sink

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
WORKAROUND = "Reconnect the VPN client; it then holds for an hour."


@pytest.fixture
def sink():
    with Sink() as s:
        yield s


def start(tmp_path: Path, sink, *, survey: bool):
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    routing = (rules / "routing.yaml").read_text()
    (rules / "routing.yaml").write_text(routing.replace("\nrules:\n", "\nrules:\n" + RULE, 1))
    if survey:
        queues = (rules / "queues.yaml").read_text()
        line = '    description: "First line: everything not routed elsewhere"\n'
        (rules / "queues.yaml").write_text(queues.replace(line, line + SURVEY))
    zone = Zone()
    pem = zone.publish("mail", "example.com")
    (tmp_path / "dkim-keys").write_text(zone.pinned_file())
    cfg = site(tmp_path, sink.port, '\n[paths]\nrules = "rules"\n[debug]\nclock_file = "clock"\n'
                                    '[agents]\ndkim_keys_file = "dkim-keys"\n')
    assert helpdesk(cfg, "check").returncode == 0, helpdesk(cfg, "check").stderr
    return cfg, pem, Daemon(cfg).start()


def to(sink, rcpt: str, subject: str = "") -> list:
    """The mails the relay got for `rcpt` (parsed), whose subject contains `subject`."""
    return [parsed(raw) for _, rcpts, raw in list(sink.handler.messages)
            if rcpt in rcpts and subject in str(parsed(raw)["Subject"])]


def one(sink, rcpt: str, subject: str = ""):
    return wait_for(lambda: to(sink, rcpt, subject))[-1]


def raw_of(sink, rcpt: str, subject: str) -> bytes:
    """The bytes of the latest mail to `rcpt` with `subject` (an agent answers those)."""
    return wait_for(lambda: [raw for _, rcpts, raw in list(sink.handler.messages)
                             if rcpt in rcpts and subject in str(parsed(raw)["Subject"])])[-1]


def text(msg) -> str:
    return msg.get_body(("plain",)).get_content()


def agent_answer(cfg, pem, raw: bytes, body: str, n: int, frm: str) -> None:
    answer = sign(agent_reply(raw, body, frm=frm, n=n), "example.com", pem)
    smtp_send(cfg, answer, frm=frm.split("<")[1].rstrip(">"), to=reply_address(raw))


def reply(cfg, survey, body: str, n: int, frm: str = "ann@example.org") -> None:
    raw = (f"From: Ann Example <{frm}>\r\nTo: support@example.com\r\nSubject: Re: {survey['Subject']}\r\n"
           f"Message-ID: <answer-{n}@example.org>\r\nIn-Reply-To: {survey['Message-ID']}\r\n"
           f"References: {survey['Message-ID']}\r\n\r\n{body}\r\n\r\nOn Mon, the desk wrote:\r\n> How did we do?\r\n")
    smtp_send(cfg, raw.encode(), frm=frm)


def test_incidents_linked_to_a_problem_the_workaround_and_everyone_told_once(tmp_path, sink):
    cfg, pem, daemon = start(tmp_path, sink, survey=False)
    chen, ana = "Chen Wei <chen@example.com>", "Ana Lima <ana@example.com>"
    try:
        smtp_send(cfg, mail(1, frm="pat@example.org", subject="VPN drops every hour"))      # HD-1, queue network
        problem_notice = raw_of(sink, "chen@example.com", "VPN drops every hour")
        helpdesk(cfg, "update", "HD-1", "--type", "problem", "--workaround", WORKAROUND, "--as", "chen@example.com",
                 check=True)
        smtp_send(cfg, mail(2, frm="bob@example.org", subject="File server unreachable"))   # HD-2, by #problem
        agent_answer(cfg, pem, raw_of(sink, "ana@example.com", "File server"), "#problem HD-1", 2, ana)
        smtp_send(cfg, mail(3, frm="carl@example.org", subject="Mail is slow"))             # HD-3, by #link
        one(sink, "carl@example.org", "Mail is slow")
        agent_answer(cfg, pem, problem_notice, "#link HD-3", 3, chen)
        smtp_send(cfg, mail(4, frm="dan@example.org", subject="Printer queue stuck"))       # HD-4, from the CLI
        one(sink, "dan@example.org", "Printer queue")
        helpdesk(cfg, "update", "HD-4", "--problem", "HD-1", "--as", "ana@example.com", check=True)
        smtp_send(cfg, mail(5, frm="erin@example.org", subject="VPN down again"))           # HD-5, by the rule
        ack = one(sink, "erin@example.org", "VPN down again")
        assert WORKAROUND in text(ack) and "HD-1" in text(ack)
        assert WORKAROUND not in text(one(sink, "bob@example.org", "File server"))     # linked after its ack
        linked = wait_for(lambda: len((p := show(cfg, "HD-1"))["incidents"]) == 4 and p)
        assert [i["ref"] for i in linked["incidents"]] == ["HD-2", "HD-3", "HD-4", "HD-5"]
        assert linked["type"] == "problem" and linked["known_error"]["workaround"] == WORKAROUND
        assert show(cfg, "HD-2")["problem"]["ref"] == "HD-1"
        assert {t["ref"] for t in json.loads(helpdesk(cfg, "tickets", "--json", "--type", "problem",
                                                      check=True).stdout)} == {"HD-1"}

        agent_answer(cfg, pem, problem_notice, "#resolve\nThe VPN concentrator is replaced.", 4, chen)
        requesters = {"bob@example.org": "HD-2", "carl@example.org": "HD-3", "dan@example.org": "HD-4",
                      "erin@example.org": "HD-5"}
        for rcpt, ref in requesters.items():
            notice = one(sink, rcpt, "Fixed:")
            assert notice["X-Helpdesk-Ticket"] == ref and "HD-1" in text(notice)
        for ref in requesters.values():
            assert show(cfg, ref)["status"] == "resolved"
        assert "concentrator" in text(one(sink, "pat@example.org", "Re: [HD-1]"))    # the problem's own requester

        helpdesk(cfg, "update", "HD-1", "--status", "open", "--as", "chen@example.com", check=True)
        helpdesk(cfg, "update", "HD-1", "--status", "resolved", "--as", "chen@example.com", check=True)
        one(sink, "pat@example.org", "Resolved:")                                       # the barrier
        for rcpt in requesters:
            assert len(to(sink, rcpt, "Fixed:")) == 1
        queued = [e["detail"]["mails"] for e in show(cfg, "HD-1")["events"] if e["kind"] == "mail_queued"]
        sent = [m["template"] for m in queued[-1]]
        assert "requester/resolve" in sent and "requester/problem-resolved" not in sent   # nobody told again
    finally:
        daemon.kill(signal.SIGTERM)


def test_a_survey_answered_5_thanks_never_twice_in_the_window_then_bad(tmp_path, sink):
    cfg, pem, daemon = start(tmp_path, sink, survey=True)
    try:
        smtp_send(cfg, mail(1, subject="Printer on floor 3 jams"))                           # HD-1
        one(sink, "ann@example.org", "Printer on floor 3")
        helpdesk(cfg, "reply", "HD-1", "--as", "ana@example.com", "-m", "The tray was loose; fixed.", "--resolve",
                 check=True)
        survey = one(sink, "ann@example.org", "How did we do?")
        assert survey["X-Helpdesk-Ticket"] == "HD-1" and "1 (bad) to 5" in text(survey)
        reply(cfg, survey, "5 thanks", 1)
        got = wait_for(lambda: (t := show(cfg, "HD-1"))["csat"]["score"] is not None and t)
        assert got["csat"]["score"] == 5 and got["csat"]["comment"] == "thanks" and got["status"] == "resolved"
        assert any(x["text"].startswith("5 thanks") for x in got["messages"])            # threaded into the ticket

        smtp_send(cfg, mail(2, subject="Printer prints blank pages"))                     # HD-2, same requester
        one(sink, "ann@example.org", "Printer prints blank pages")
        helpdesk(cfg, "update", "HD-2", "--status", "resolved", "--as", "ana@example.com", check=True)
        one(sink, "ann@example.org", "Resolved: Printer prints")                          # the barrier
        assert len(to(sink, "ann@example.org", "How did we do?")) == 1
        skipped = [e["detail"]["why"] for e in show(cfg, "HD-2")["events"] if e["kind"] == "csat_skipped"]
        assert len(skipped) == 1 and "at most one in 30 day(s)" in skipped[0]

        advance(Path(load_config(str(cfg)).debug.clock_file), timedelta(days=31))
        smtp_send(cfg, mail(3, subject="Printer tray squeaks"))                           # HD-3, after the window
        one(sink, "ann@example.org", "Printer tray")
        helpdesk(cfg, "update", "HD-3", "--status", "resolved", "--as", "ana@example.com", check=True)
        survey = one(sink, "ann@example.org", "How did we do? Printer tray")
        reply(cfg, survey, "bad\nIt took far too long.", 3)
        lead = one(sink, "ana@example.com", "Bad satisfaction score (1/5)")
        assert "It took far too long." in text(lead) and lead["X-Helpdesk-Ticket"] == "HD-3"
        got = show(cfg, "HD-3")
        assert got["csat"]["score"] == 1 and got["status"] == "resolved"
        assert len(to(sink, "ann@example.org", "How did we do?")) == 2
    finally:
        daemon.kill(signal.SIGTERM)
