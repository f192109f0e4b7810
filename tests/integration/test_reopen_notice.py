"""The reopen notice never promises a deadline that has passed (issue 17): after the first
response was given, the answer the customer is promised is the resolution target."""
from __future__ import annotations

from datetime import timedelta

from tests.integration.test_outbox import START, new_mail, parsed, reply_to
from tests.integration.test_sla_escalation import agent_answer, desk  # noqa: F401  (fixture)


def _reopen_text(desk) -> str:  # noqa: F811
    [notice] = [v for v in desk.rows() if v.kind == "reopen"]
    return parsed(notice.raw).get_body(("plain",)).get_content()


def test_the_reopen_notice_promises_a_time_still_to_come(desk):  # noqa: F811
    r = desk.mail(new_mail())
    desk.clock.now = START + timedelta(minutes=10)
    agent_answer(desk, r.ticket_id)                                   # first response: met at 09:40
    desk.clock.now = START + timedelta(minutes=20)
    desk.outbound.resolve(r.ticket_id)
    desk.clock.now = START + timedelta(minutes=40)                   # the old response time is past
    again = desk.mail(reply_to("m1.ann@example.org", 1))
    assert again.outcome == "reopened"
    text = " ".join(_reopen_text(desk).split())
    promised = text.split("get back to you by ", 1)[1].split(".")[0] if "get back to you by " in text else ""
    assert promised != "2026-03-02 09:40 UTC" and "09:40" not in promised
    if promised and promised != "as soon as possible":
        assert promised > "2026-03-02 10:10 UTC"                       # later than the reopening
