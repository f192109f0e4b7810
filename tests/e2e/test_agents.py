"""Agents by mail, end to end: a customer's mail over SMTP into a real `helpdesk serve`, the
agent notification caught by a real aiosmtpd relay, the agent's answer with a real DKIM
signature (key pinned through [agents] dkim_keys_file, so the daemon verifies it itself)
sent back over SMTP, and the answer arriving in the customer's inbox at the relay. A spoofed
agent mail (F61) and a stranger writing to the reply address (F77) change nothing."""
from __future__ import annotations

import pytest

from tests.agentkit import agent_reply, reply_address, sign
from tests.e2e.helpers import show, wait_for
from tests.e2e.test_ack import by_rcpt, mail, parsed, smtp_send


@pytest.fixture
def desk(signed_desk):
    return signed_desk()


def test_agent_answers_from_their_mail_client(desk, sink):
    cfg, pem, _ = desk
    smtp_send(cfg, mail(1))
    notice = by_rcpt(sink.handler.wait_for(3))["ana@example.com"][2]
    to = reply_address(notice)
    assert to.startswith("support+") and len(to.split("@")[0]) <= 64
    answer = sign(agent_reply(notice, "#priority P2\nHello Ann,\nplease power-cycle the printer."), "example.com", pem)
    smtp_send(cfg, answer, frm="ana@example.com", to=to)
    got = sink.handler.wait_for(5)
    reply = parsed(next(raw for _, rcpts, raw in got[3:] if rcpts == ("ann@example.org",)))
    assert reply["From"] == "Ana Lima via Example Service Desk <support@example.com>"
    assert reply["Subject"] == "Re: [HD-1] Printer on floor 3 jams" and reply["In-Reply-To"] == "<e2e-1@example.org>"
    text = reply.get_body(("plain",)).get_content()
    assert "power-cycle" in text and "#priority" not in text and "wrote:" not in text and "support+" not in text
    confirm = parsed(next(raw for _, rcpts, raw in got[3:] if rcpts == ("ana@example.com",)))
    assert "Commands" in confirm["Subject"] and "priority: P3 -> P2" in confirm.get_body(("plain",)).get_content()
    ticket = wait_for(lambda: (t := show(cfg, "HD-1"))["priority"] == "P2" and t)
    assert ticket["status"] == "open"
    out = [x for x in ticket["messages"] if x["direction"] == "out"]
    assert len(out) == 1 and out[0]["visibility"] == "public" and out[0]["text"].startswith("Hello Ann")


def test_spoofed_agent_and_stranger_change_nothing(desk, sink):
    cfg, pem, _ = desk
    smtp_send(cfg, mail(2))
    notice = by_rcpt(sink.handler.wait_for(3))["ana@example.com"][2]
    spoof = agent_reply(notice, "#close\nClosing.", n=61)                # right token, no DKIM
    smtp_send(cfg, spoof, frm="ana@example.com", to=reply_address(notice))
    trick = (f"From: noreply@thirdparty.test\r\nTo: {reply_address(notice)}\r\nSubject: Confirm\r\n"
             f"Message-ID: <t77@thirdparty.test>\r\n\r\nCode 123456\r\n").encode()
    smtp_send(cfg, trick, frm="bounce@thirdparty.test", to=reply_address(notice))
    warning = parsed(sink.handler.wait_for(4)[3][2])
    assert warning["To"] == "Ana Lima <ana@example.com>" and "not accepted" in warning["Subject"]
    ticket = wait_for(lambda: (t := show(cfg, "HD-1")) and any(e["kind"] == "unverified" for e in t["events"]) and t)
    assert ticket["status"] == "new"
    assert [m["visibility"] for m in ticket["messages"]] == ["public", "internal"]
    assert not [m for m in sink.handler.messages if m[1] == ("ann@example.org",)][1:]
