"""Change approval by mail, end to end: customer mail over SMTP into a real `helpdesk serve`,
approval requests caught by a real aiosmtpd relay, approvers' answers with real DKIM
signatures (key pinned through [agents] dkim_keys_file) sent back over SMTP to their signed
reply addresses. The daemon's clock is a test clock file the test moves: reminders and
expiry come from the approval sweep seeing the moved time, never from waiting.

  HD-1  a change by rule (queue network, a CAB of three, quorum 2): a forged approval (the
        approver's From, no signature) and a stranger using the reply address do not count;
        two signed approvals approve it; the requester is told; a late answer is refused.
  HD-2  made a change by `helpdesk update --type change` (queue workplace, one approver):
        rejected with a comment; the requester is told.
  HD-3  a change nobody answers: one reminder each after remind_after, expiry after
        expire_after; the requester is told.
"""
from __future__ import annotations

import email
import json
import shutil
from datetime import timedelta
from email import policy
from pathlib import Path

import pytest

from daemon.config import load_config
from tests.agentkit import agent_reply, reply_address, sign
from tests.conftest import REPO
from tests.e2e.helpers import advance, helpdesk, show, wait_for
from tests.e2e.test_ack import mail, smtp_send

APPROVALS = """\
settings:
  remind_after: 4h
  expire_after: 2d
queues:
  network:
    cab:
      members: [chen@example.com, dora@example.com, gus@example.com]
      quorum: 2
  workplace:
    approvers: [eli@example.com]
"""
CHANGE_RULE = """rules:
  - name: change-requests
    description: "Subject 'Change request: ...' is a change for the network team"
    when:
      subject: {matches: '(?i)^change request'}
    then:
      type: change
      queue: network
"""


@pytest.fixture
def desk(tmp_path, signed_desk):
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    (rules / "approvals.yaml").write_text(APPROVALS)
    routing = (rules / "routing.yaml").read_text()
    (rules / "routing.yaml").write_text(routing.replace("\nrules:\n", "\n" + CHANGE_RULE, 1))
    cfg, pem, _ = signed_desk('[paths]\nrules = "rules"\n[debug]\nclock_file = "clock"\n')
    return cfg, pem


def parsed(raw: bytes):
    return email.message_from_bytes(raw, policy=policy.default)


def mails(sink, words: str, ticket: str | None = None) -> list[tuple[str, object]]:
    """(recipient, message) of every mail whose subject holds `words` (for `ticket`)."""
    out = []
    for _, rcpts, raw in list(sink.handler.messages):
        msg = parsed(raw)
        if words in msg["Subject"] and (ticket is None or msg["X-Helpdesk-Ticket"] == ticket):
            out.append((rcpts[0], msg, raw))
    return out


def requests(sink, ticket: str, n: int, words: str = "Approval needed") -> dict[str, bytes]:
    got = wait_for(lambda: len(found := mails(sink, words, ticket)) >= n and found, timeout=30)
    return {rcpt: raw for rcpt, _, raw in got}


def outcomes(sink, words: str, n: int) -> dict[str, object]:
    """Recipient -> message of the `n` outcome mails of HD-1 (the requester's and the owners')."""
    got = wait_for(lambda: len(found := mails(sink, words, "HD-1")) >= n and found, timeout=30)
    return {rcpt: msg for rcpt, msg, _ in got}


def answer(cfg, request: bytes, who: str, text: str, n: int, pem: bytes | None) -> None:
    """The approver's reply from their mail client, DKIM-signed unless `pem` is None."""
    raw = agent_reply(request, text, frm=f"{who.split('@')[0].title()} <{who}>", n=n)
    smtp_send(cfg, sign(raw, "example.com", pem) if pem else raw, frm=who, to=reply_address(request))


def body(msg) -> str:
    return msg.get_body(("plain",)).get_content()


def test_cab_approves_with_two_of_three_and_forgeries_do_not_count(desk, sink):
    cfg, pem = desk
    smtp_send(cfg, mail(1, subject="Change request: replace core switch in room 2"))
    asked = requests(sink, "HD-1", 3)
    assert set(asked) == {"chen@example.com", "dora@example.com", "gus@example.com"}
    request = parsed(asked["chen@example.com"])
    assert request["Reply-To"].startswith("support+") and "2 of 3" in body(request)
    assert "> It jams on every page." in body(request)            # what is asked: the change's first mail
    assert reply_address(asked["chen@example.com"]) != reply_address(asked["dora@example.com"])

    answer(cfg, asked["chen@example.com"], "chen@example.com", "approve", 1, None)          # forged: no DKIM
    stranger = (f"From: mallory@evil.test\r\nTo: {reply_address(asked['dora@example.com'])}\r\nSubject: Re: x\r\n"
                f"Message-ID: <m1@evil.test>\r\n\r\napprove\r\n").encode()
    smtp_send(cfg, stranger, frm="mallory@evil.test", to=reply_address(asked["dora@example.com"]))
    ticket = wait_for(lambda: (t := show(cfg, "HD-1")) and len([e for e in t["events"]
                                                                 if e["kind"] == "approval_refused"]) == 2 and t)
    assert ticket["approvals"]["state"] == "awaiting-approval"
    assert all(v["status"] == "pending" for v in ticket["approvals"]["votes"])
    alerts = wait_for(lambda: len(found := mails(sink, "Not recorded")) >= 2 and found)
    warned = {rcpt: body(msg) for rcpt, msg, _ in alerts}
    assert "not authenticated" in warned["chen@example.com"] and "tell the helpdesk" in warned["chen@example.com"]
    assert "came from mallory@evil.test" in warned["dora@example.com"]

    answer(cfg, asked["chen@example.com"], "chen@example.com", "Approve - the maintenance window is fine", 2, pem)
    answer(cfg, asked["dora@example.com"], "dora@example.com", "approved\nBackup config first.", 3, pem)
    outcome = outcomes(sink, "Change approved", 3)
    assert set(outcome) == {"ann@example.org", "chen@example.com", "dora@example.com"}    # unassigned: the queue
    assert "has been approved" in body(outcome["ann@example.org"])
    assert "may be implemented now" in body(outcome["dora@example.com"])
    ticket = show(cfg, "HD-1")
    approvals = ticket["approvals"]
    assert approvals["state"] == "approved" and approvals["quorum"][0]["quorum"] == 2
    votes = {v["approver"]: v for v in approvals["votes"]}
    assert votes["chen@example.com"]["status"] == "approved"
    assert votes["chen@example.com"]["comment"] == "the maintenance window is fine"
    assert votes["dora@example.com"]["status"] == "approved" and votes["gus@example.com"]["status"] == "superseded"
    decisions = [e["detail"] for e in ticket["events"] if e["kind"] == "approval"]
    assert [d["approver"] for d in decisions] == ["chen@example.com", "dora@example.com"]
    assert all(d["auth"]["result"] == "pass" and d["auth"]["evidence"] and d["at"] for d in decisions)

    answer(cfg, asked["gus@example.com"], "gus@example.com", "maybe next week", 4, pem)     # too late, not a word
    refused = wait_for(lambda: [m for m in mails(sink, "Not recorded", "HD-1") if m[0] == "gus@example.com"])
    assert "already approved" in body(refused[0][1]) and "tell the helpdesk" not in body(refused[0][1])


def test_single_approver_rejects_a_change_made_by_update(desk, sink):
    cfg, pem = desk
    smtp_send(cfg, mail(5, subject="Please install the new VPN client on all laptops"))
    wait_for(lambda: mails(sink, "VPN client", "HD-1"))
    helpdesk(cfg, "update", "HD-1", "--type", "change", "--queue", "workplace", "--as", "chen@example.com",
             check=True)
    asked = requests(sink, "HD-1", 1)
    assert set(asked) == {"eli@example.com"}
    answer(cfg, asked["eli@example.com"], "eli@example.com", "I think so", 6, pem)
    refused = wait_for(lambda: mails(sink, "Not recorded", "HD-1"))
    assert "must start with the word 'approve' or 'reject'" in body(refused[0][1])
    answer(cfg, asked["eli@example.com"], "eli@example.com", "Reject: not before the audit", 7, pem)
    outcome = outcomes(sink, "Change rejected", 3)
    assert set(outcome) == {"ann@example.org", "eli@example.com", "ben@example.com"}      # workplace's agents
    assert "not before the audit" in body(outcome["ann@example.org"])
    assert "do not implement it" in body(outcome["ben@example.com"]) and "not before the audit" in body(
        outcome["ben@example.com"])
    approvals = show(cfg, "HD-1")["approvals"]
    assert approvals["state"] == "rejected" and approvals["votes"][0]["comment"] == "not before the audit"
    updated = json.loads(helpdesk(cfg, "update", "HD-1", "--status", "closed", "--as", "eli@example.com", "--json",
                                  check=True).stdout)                  # a rejected change may be closed
    shown = show(cfg, "HD-1")
    assert updated["approvals"] == shown["approvals"] and shown["approvals"]["state"] == "closed"
    assert set(updated) == set(shown)                                    # update --json is show --json's shape


def test_reminder_then_expiry(desk, sink):
    cfg, _ = desk
    clock = Path(load_config(str(cfg)).debug.clock_file)
    smtp_send(cfg, mail(9, subject="Change request: new Wi-Fi SSID for guests"))
    requests(sink, "HD-1", 3)
    advance(clock, timedelta(hours=4, minutes=5))
    reminded = requests(sink, "HD-1", 3, "Reminder")
    assert set(reminded) == {"chen@example.com", "dora@example.com", "gus@example.com"}
    advance(clock, timedelta(hours=1))                     # a second pass: no second reminder
    advance(clock, timedelta(days=2))
    told = outcomes(sink, "Change expired", 2)               # dora's is held: the hourly cap, after SLA mails
    assert {"ann@example.org", "chen@example.com"} <= set(told) <= {"ann@example.org", "chen@example.com",
                                                                    "dora@example.com"}
    assert len(mails(sink, "Reminder", "HD-1")) == 3
    ticket = show(cfg, "HD-1")
    assert ticket["approvals"]["state"] == "expired"
    assert {v["status"] for v in ticket["approvals"]["votes"]} == {"expired"}
    assert [e["kind"] for e in ticket["events"]].count("approval_reminded") == 3
