"""The desk by mail, end to end over SMTP into a real `helpdesk serve` with a real relay
sink: `#macro` in an agent's DKIM-signed answer reaches the customer rendered, with its
changes made; `#help` and `#mine` to the desk address answer the agent (no ticket), and
`helpdesk reply` from the command line reaches the customer through the same outbox."""
from __future__ import annotations

import json

from tests.agentkit import agent_reply, reply_address, sign
from tests.e2e.helpers import helpdesk, show, wait_for
from tests.e2e.test_ack import by_rcpt, mail, parsed, smtp_send
from tests.e2e.test_agents import desk  # noqa: F401  (pytest fixture; sink: tests/e2e/conftest.py)


def text_of(raw: bytes) -> str:
    return parsed(raw).get_body(("plain",)).get_content()


def test_macro_help_mine_and_cli_reply_over_smtp(desk, sink):  # noqa: F811
    cfg, pem, _ = desk
    smtp_send(cfg, mail(1))
    notice = by_rcpt(sink.handler.wait_for(3))["ana@example.com"][2]
    answer = sign(agent_reply(notice, "#macro password-reset"), "example.com", pem)
    smtp_send(cfg, answer, frm="ana@example.com", to=reply_address(notice))
    got = sink.handler.wait_for(4)
    reply = next(raw for _, rcpts, raw in got[3:] if rcpts == ("ann@example.org",))
    assert "password.example.com" in text_of(reply) and "#macro" not in text_of(reply)
    ticket = wait_for(lambda: (t := show(cfg, "HD-1"))["status"] == "pending" and t)
    assert "access" in ticket["tags"] and ticket["assignee"] == "ana@example.com"
    ask = (b"From: Ana Lima <ana@example.com>\r\nTo: support@example.com\r\nSubject: desk\r\n"
           b"Date: Mon, 02 Mar 2026 09:45:00 +0000\r\nMessage-ID: <mine-1@example.com>\r\n\r\n#mine\r\n")
    n = len(sink.handler.messages)
    smtp_send(cfg, sign(ask, "example.com", pem), frm="ana@example.com")
    listing = wait_for(lambda: [raw for _, rcpts, raw in sink.handler.messages[n:] if rcpts == ("ana@example.com",)])
    text = text_of(listing[0])
    assert "1 open ticket(s)" in text and "HD-1  P3  pending" in text and "reply to work it: support+" in text
    n = len(sink.handler.messages)
    done = helpdesk(cfg, "reply", "HD-1", "--as", "ana@example.com", "-m", "Did the reset work?", check=True)
    assert "HD-1: open" in done.stdout.decode()
    cli = wait_for(lambda: [raw for _, rcpts, raw in sink.handler.messages[n:] if rcpts == ("ann@example.org",)])
    assert "Did the reset work?" in text_of(cli[0]) and parsed(cli[0])["Subject"] == "Re: [HD-1] Printer on floor 3 jams"
    assert len(json.loads(helpdesk(cfg, "tickets", "--json", check=True).stdout)) == 1     # #mine opened none
