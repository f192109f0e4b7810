"""Only a public answer to the requester is a first response (issue 17), end to end: mail
over SMTP into a real `helpdesk serve`, agents' DKIM-signed mail, a real relay sink, and the
real `helpdesk update` / `reply` / `show --json` / `sla report --json` programs.

A commands-only mail (`#priority`, `#resolve`) and `helpdesk update` leave `responded_at`
null and the first-response target not met: running while the ticket is open, `unanswered`
once it is resolved (not `met`; counted apart in the SLA report). `#resolve` by mail and
`update --status resolved` both tell the customer (requester/resolve). `helpdesk reply` is
a first response."""
from __future__ import annotations

import json

from tests.agentkit import agent_reply, reply_address, sign
from tests.e2e.helpers import helpdesk, show, wait_for
from tests.e2e.test_ack import by_rcpt, mail, parsed, smtp_send
from tests.e2e.test_agents import desk  # noqa: F401  (pytest fixture; sink: tests/e2e/conftest.py)


def first_response(ticket: dict) -> dict:
    return next(c for c in ticket["sla"]["clocks"] if c["target"] == "first_response")


def to_customer(sink, since: int) -> list:
    return [parsed(raw) for _, rcpts, raw in sink.handler.messages[since:] if rcpts == ("ann@example.org",)]


def opened(cfg, sink, n: int) -> bytes:
    """Ticket HD-n by mail; the notification Ana got (with her signed reply address)."""
    before = len(sink.handler.messages)
    smtp_send(cfg, mail(n))
    got = wait_for(lambda: len(sink.handler.messages) >= before + 3 and sink.handler.messages[before:])
    return by_rcpt(got)["ana@example.com"][2]


def test_commands_and_cli_updates_are_not_a_first_response_a_public_answer_is(desk, sink):  # noqa: F811
    cfg, pem, _ = desk
    notice = opened(cfg, sink, 1)

    def by_mail(body: str, n: int) -> None:
        smtp_send(cfg, sign(agent_reply(notice, body, n=n), "example.com", pem), frm="ana@example.com",
                  to=reply_address(notice))

    by_mail("#priority P2", 1)                                         # commands only, by mail
    ticket = wait_for(lambda: (t := show(cfg, "HD-1"))["priority"] == "P2" and t)
    fr = first_response(ticket)
    assert ticket["sla"]["responded_at"] is None and fr["state"] == "running" and fr["met"] is False

    n = len(sink.handler.messages)
    by_mail("#resolve", 2)                                             # resolved by mail, no answer
    told = wait_for(lambda: to_customer(sink, n))
    assert "[HD-1]" in str(told[0]["Subject"]) and "resolved" in told[0].get_body(("plain",)).get_content().lower()
    ticket = wait_for(lambda: (t := show(cfg, "HD-1"))["status"] == "resolved" and t)
    fr = first_response(ticket)
    assert ticket["sla"]["responded_at"] is None and ticket["sla"]["breached"] == []
    assert (fr["phase"], fr["state"], fr["met"], fr["unanswered"]) == ("stopped", "unanswered", False, True)

    opened(cfg, sink, 2)                                               # the same from the command line
    n = len(sink.handler.messages)
    helpdesk(cfg, "update", "HD-2", "--priority", "P2", "--as", "ana@example.com", check=True)
    helpdesk(cfg, "update", "HD-2", "--status", "resolved", "--as", "ana@example.com", check=True)
    told = wait_for(lambda: to_customer(sink, n))
    assert "[HD-2]" in str(told[0]["Subject"])
    ticket = show(cfg, "HD-2")
    assert ticket["sla"]["responded_at"] is None and first_response(ticket)["state"] == "unanswered"
    kinds = lambda t: sorted({e["kind"] for e in t["events"]} - {"mail_sent", "mail_queued"})  # noqa: E731
    assert "status" in kinds(ticket) and kinds(ticket) == kinds(show(cfg, "HD-1"))

    opened(cfg, sink, 3)                                               # a public answer: the first response
    helpdesk(cfg, "update", "HD-3", "--priority", "P2", "--as", "ana@example.com", check=True)
    assert show(cfg, "HD-3")["sla"]["responded_at"] is None
    helpdesk(cfg, "reply", "HD-3", "--as", "ana@example.com", "-m", "Is it the tray?", check=True)
    ticket = show(cfg, "HD-3")
    assert ticket["sla"]["responded_at"] is not None and first_response(ticket)["state"] == "met"

    report = json.loads(helpdesk(cfg, "sla", "report", "--json", check=True).stdout)
    row = next(r for r in report["rows"] if (r["dimension"], r["target"]) == ("all", "first_response"))
    assert (row["tickets"], row["met"], row["unanswered"], row["breached"], row["open"]) == (3, 1, 2, 0, 0)
    assert row["attainment"] == 100.0                                  # met / (met + breached)
    text = helpdesk(cfg, "sla", "report", check=True).stdout.decode()
    assert "unanswered" in text
