"""The agent path through the real spool worker, store, rules, templates and outbox, with
real DKIM signatures verified against a dict-backed DNS (reliability.md F 61-77, and the
commands of issue 6). Mail leaves through a recording relay (huey immediate)."""
from __future__ import annotations

import email
import json
from email import policy

import pytest
from sqlmodel import Session, select

from daemon.model import Envelope
from store import tables as m
from store.tickets import TicketTag
from tests.agentkit import Zone, agent_reply, reply_address, sign
from tests.integration.test_outbox import close_desk, make_desk, new_mail

AGENT = "Ana Lima <ana@example.com>"


@pytest.fixture
def desk(tmp_path):
    d = make_desk(tmp_path, extra='[agents]\nauthserv_ids = ["mx.example.com"]\n')
    zone = Zone()
    d.pem = zone.publish("mail", "example.com")
    d.attacker_pem = zone.publish("evil", "attacker.test", label="b")
    d.zone = zone
    d.app.mail.agents.auth.lookup = zone
    yield d
    close_desk(d)


def parsed(raw: bytes):
    return email.message_from_bytes(raw, policy=policy.default)


def sent_to(d, rcpt: str) -> list:
    return [parsed(raw) for _, rcpts, raw in d.relay.sent if rcpt in rcpts]


def opened(d, n: int = 1, **kw) -> bytes:
    """A customer's ticket; returns the notification Ana got (with her reply address)."""
    before = len(sent_to(d, "ana@example.com"))
    d.mail(new_mail(n, **kw))
    return [raw for _, r, raw in d.relay.sent if "ana@example.com" in r][before]


def send_agent(d, raw: bytes, *, to: str | None = None, signed: bool = True, domain: str = "example.com",
               pem: bytes | None = None):
    rcpt = to or str(parsed(raw)["To"])
    body = sign(raw, domain, pem or d.pem) if signed else raw
    env = Envelope("ana@example.com", (rcpt,), "smtp", "198.51.100.7", d.clock().isoformat())
    return d.app.worker.process(body, env)


def detail(d, tid: int = 1):
    return d.store.ticket_detail(tid)


def quarantined(d):
    return d.store.quarantine_list()


def customer_mails(d) -> list:
    return [x for x in sent_to(d, "ann@example.org") if "Commands" not in str(x["Subject"])]


# ---------------------------------------------------------------------- the happy path
def test_agent_reply_reaches_the_customer_as_the_desk(desk):
    notice = opened(desk)
    token_addr = reply_address(notice)
    assert token_addr.startswith("support+") and len(token_addr.split("@")[0]) <= 64
    result = send_agent(desk, agent_reply(notice, "Hello Ann,\nplease restart the printer.\n\nRegards, Ana"))
    assert result.outcome == "agent:acted"
    reply = customer_mails(desk)[-1]
    assert reply["From"] == "Ana Lima via Example Service Desk <support@example.com>"
    assert reply["Subject"] == "Re: [HD-1] Printer jams" and reply["In-Reply-To"] == "<m1.ann@example.org>"
    assert reply["Reply-To"] is None and reply["Auto-Submitted"] == "no"
    text = reply.get_body(("plain",)).get_content()
    assert "please restart the printer" in text and "wrote:" not in text and "ext. 4411" not in text
    assert "support+" not in reply.as_string()                  # the customer never sees a token
    t = detail(desk)
    assert t.ticket.status == "open"
    out = t.messages[-1]
    assert (out.direction, out.visibility, out.from_addr) == ("out", "public", "ana@example.com")
    assert "wrote:" not in out.text and out.text.startswith("Hello Ann")
    with Session(desk.store.engine) as s:
        row = s.exec(select(m.Message).where(m.Message.message_id == "agent-1@example.com")).one()
        assert b"wrote:" in s.get(m.RawMessage, row.raw_sha256).data


def test_replay_of_an_agent_mail_sends_nothing_twice(desk):
    notice = opened(desk)
    raw = sign(agent_reply(notice, "Hello Ann, fixed."), "example.com", desk.pem)
    env = Envelope("ana@example.com", (reply_address(notice),), "smtp", "", desk.clock().isoformat())
    desk.app.worker.process(raw, env)
    n = len(desk.relay.sent)
    assert desk.app.worker.process(raw, env).outcome == "duplicate" and len(desk.relay.sent) == n


def test_pending_and_commands_with_an_answer(desk):
    notice = opened(desk)
    send_agent(desk, agent_reply(notice, "#pending\n#priority p2\n#tag vip\n#type request\n\nWhich floor, Ann?"))
    t = detail(desk)
    assert (t.ticket.status, t.ticket.priority, t.ticket.type) == ("pending", "P2", "request")
    confirm = sent_to(desk, "ana@example.com")[-1]
    body = confirm.get_body(("plain",)).get_content()
    assert "[HD-1] Commands" in confirm["Subject"] and "#priority P2" in body and "REFUSED" not in body
    assert "Which floor" in customer_mails(desk)[-1].get_body(("plain",)).get_content()
    with Session(desk.store.engine) as s:
        assert s.exec(select(TicketTag.tag).where(TicketTag.ticket_id == 1)).all() == ["vip"]


def test_commands_only_change_the_ticket_and_send_nothing_to_the_customer(desk):
    notice = opened(desk)
    n = len(customer_mails(desk))
    send_agent(desk, agent_reply(notice, "#assign me\n#queue network\n#priority P9\n#queue nowhere\n#frobnicate"))
    assert len(customer_mails(desk)) == n
    t = detail(desk)
    assert (t.ticket.assignee, t.ticket.queue, t.ticket.priority) == ("ana@example.com", "network", "P3")
    assert (t.messages[-1].direction, t.messages[-1].visibility) == ("in", "internal")
    body = sent_to(desk, "ana@example.com")[-1].get_body(("plain",)).get_content()
    assert "unknown priority 'P9'" in body and "unknown queue 'nowhere'" in body and "unknown command #frobnicate" in body
    # the confirmation goes to the registered address, even when the From differs in case
    assert sent_to(desk, "ana@example.com")[-1]["To"] == "Ana Lima <ana@example.com>"


def test_resolve_merge_and_link(desk):
    first = opened(desk, 1)
    opened(desk, 2, frm="bob@example.org", subject="Printer jams too")
    opened(desk, 3, frm="cy@example.org", subject="Scanner broken")
    send_agent(desk, agent_reply(first, "#link HD-3\n#merge HD-2\n#link HD-1"))
    t1, t2 = detail(desk, 1), detail(desk, 2)
    assert t1.ticket.status == "closed" and (2, "merged_into") in t1.links and (3, "related") in t1.links
    assert ("ann@example.org", "cc") in t2.participants
    body = sent_to(desk, "ana@example.com")[-1].get_body(("plain",)).get_content()
    assert "cannot be linked to itself" in body
    # Ann's next reply to her acknowledgement now lands on HD-2
    ack = sent_to(desk, "ann@example.org")[0]
    desk.mail((f"From: Ann <ann@example.org>\r\nTo: support@example.com\r\nSubject: Re: {ack['Subject']}\r\n"
               f"Message-ID: <after-merge@example.org>\r\nIn-Reply-To: {ack['Message-ID']}\r\n\r\nStill broken.\r\n"
               ).encode())
    assert detail(desk, 2).messages[-1].message_id == "after-merge@example.org"


def test_note_by_command_and_by_comment_address_reaches_agents_only(desk):
    notice = opened(desk)
    n = len(customer_mails(desk))
    send_agent(desk, agent_reply(notice, "#note\nCustomer is on floor 3, printer HP-7.", n=1))
    note = sent_to(desk, "ben@example.com")[-1]
    assert "Note" in note["Subject"] and "floor 3" in note.get_body(("plain",)).get_content()
    assert note["Reply-To"].startswith("support+")
    # the comment address: plus-address, authenticated agent, ticket by In-Reply-To
    send_agent(desk, agent_reply(notice, "Ordered a new drum.", n=2), to="support+comment@example.com")
    assert len(customer_mails(desk)) == n
    t = detail(desk)
    assert [(x.direction, x.visibility) for x in t.messages[-2:]] == [("in", "internal")] * 2
    assert "Ordered a new drum." in sent_to(desk, "ben@example.com")[-1].get_body(("plain",)).get_content()


def test_out_of_office_from_an_agent_never_reaches_the_customer(desk):
    notice = opened(desk)
    n = len(desk.relay.sent)
    oof = agent_reply(notice, "I am out of the office until Monday.", extra="Auto-Submitted: auto-replied\r\n",
                      quote=False)
    assert send_agent(desk, oof).outcome == "agent:machine"
    assert len(desk.relay.sent) == n and detail(desk).messages[-1].visibility == "internal"


def test_requester_may_resolve_but_not_reprioritise(desk):
    opened(desk)
    ack = sent_to(desk, "ann@example.org")[0]

    def answer(n, body):
        return (f"From: Ann <ann@example.org>\r\nTo: support@example.com\r\nSubject: Re: {ack['Subject']}\r\n"
                f"Message-ID: <r{n}@example.org>\r\nIn-Reply-To: {ack['Message-ID']}\r\n\r\n{body}\r\n").encode()
    desk.mail(answer(1, "#priority P1\nPlease hurry"))
    assert detail(desk).ticket.priority == "P3"
    desk.mail(answer(2, "#resolve\nWorks now, thanks!"))
    t = detail(desk)
    assert t.ticket.status == "resolved" and t.messages[-1].text == "Works now, thanks!"
    assert "Resolved" in str(sent_to(desk, "ann@example.org")[-1]["Subject"])


# ---------------------------------------------------------------------- F: spoofing
def test_f61_spoofed_agent_from_without_dkim_runs_nothing_and_warns(desk):
    opened(desk)
    n = len(customer_mails(desk))
    spoof = (b"From: Ana Lima <ana@example.com>\r\nTo: support@example.com\r\nSubject: Re: [HD-1] Printer jams\r\n"
             b"Message-ID: <spoof-61@evil.test>\r\n\r\n#close\r\nClosing this.\r\n")
    result = desk.mail(spoof, mail_from="ana@example.com")
    assert result.outcome == "quarantined" and detail(desk).ticket.status == "new"
    assert len(customer_mails(desk)) == n
    (q,) = quarantined(desk)
    assert q.reason == "agent: unauthenticated" and q.stage == "agent"
    warning = sent_to(desk, "ana@example.com")[-1]
    assert "not accepted" in warning["Subject"] and "Closing this" not in warning.as_string()


def test_f62_valid_token_forwarded_to_someone_else(desk):
    notice = opened(desk)
    fwd = agent_reply(notice, "#resolve\nDone.", frm="Ben Okafor <ben@example.com>")   # a colleague, signed
    assert send_agent(desk, fwd).outcome == "agent:unverified"
    t = detail(desk)
    assert t.ticket.status == "new" and t.messages[-1].visibility == "internal"
    assert any(e.kind == "unverified" for e in t.events)
    assert "not accepted" in sent_to(desk, "ana@example.com")[-1]["Subject"]
    stranger = agent_reply(notice, "#resolve", frm="Mallory <m@attacker.test>", n=2)
    assert send_agent(desk, stranger, domain="attacker.test", pem=desk.attacker_pem).outcome == "quarantined"
    assert detail(desk).ticket.status == "new"


def test_f63_token_for_a_decides_subject_tag_of_b_is_ignored(desk):
    notice_a = opened(desk, 1)
    opened(desk, 2, frm="bob@example.org", subject="Other")
    send_agent(desk, agent_reply(notice_a, "#priority P1\nOn it.", subject="Re: [HD-2] Other"))
    assert detail(desk, 1).ticket.priority == "P1" and detail(desk, 2).ticket.priority == "P3"
    assert detail(desk, 2).ticket.message_count == 1


@pytest.mark.parametrize("how", ["tampered", "expired", "retired-key"])
def test_f64_tampered_expired_and_retired_tokens_are_rejected(desk, how):
    from daemon import tokens
    notice = opened(desk)
    addr = reply_address(notice)
    local, domain = addr.split("@")
    tok = local.split("+", 1)[1]
    if how == "tampered":
        tok = tok[:10] + ("a" if tok[10] != "a" else "b") + tok[11:]
    elif how == "expired":
        desk.clock.advance(days=31)
    else:
        desk.app.mail.agents.ring = tokens.Keyring({9: b"n" * 32}, 9)
    result = send_agent(desk, agent_reply(notice, "#resolve\nDone."), to=f"support+{tok}@{domain}")
    assert result.outcome == "quarantined" and detail(desk).ticket.status == "new"
    reason = quarantined(desk)[0].reason
    assert reason == ("agent: token-expired" if how == "expired" else "agent: token-invalid")
    if how == "expired":                      # the agent gets a fresh address to write again
        warning = sent_to(desk, "ana@example.com")[-1]
        assert warning["Reply-To"] != addr and warning["Reply-To"].startswith("support+")


def test_f65_another_customer_with_the_tag_gets_a_new_ticket_and_nothing_of_it(desk):
    notice = opened(desk)
    desk.mail(new_mail(9, frm="bob@example.org", subject="Re: [HD-1] Printer jams"))
    assert detail(desk, 2).ticket.requester == "bob@example.org"
    assert "bob@example.org" not in dict(detail(desk, 1).participants)
    send_agent(desk, agent_reply(notice, "Answer for Ann only."))
    assert not [x for x in sent_to(desk, "bob@example.org") if "Answer for Ann" in x.as_string()]


def test_f66_cc_from_unauthenticated_mail_gets_no_agent_reply(desk):
    desk.mail(new_mail(1, extra="Cc: Eve <eve@attacker.test>\r\n"))
    notice = sent_to(desk, "ana@example.com")[0]
    send_agent(desk, agent_reply(notice.as_bytes(), "Your new password is ..."))
    assert not sent_to(desk, "eve@attacker.test")
    assert sent_to(desk, "ann@example.org")[-1].get_body(("plain",)).get_content().startswith("Your new password")
    confirm = sent_to(desk, "ana@example.com")[-1].get_body(("plain",)).get_content()
    assert "eve@attacker.test" in confirm and "not authenticated" in confirm


def test_f66_cc_from_an_authenticated_requester_do_get_it(desk):
    pem = desk.zone.publish("s1", "example.org", label="c")
    raw = sign(new_mail(1, extra="Cc: Carl <carl@example.org>\r\n"), "example.org", pem, selector="s1",
               headers=(b"from", b"to", b"cc", b"subject", b"message-id"))
    desk.mail(raw)
    notice = sent_to(desk, "ana@example.com")[0]
    send_agent(desk, agent_reply(notice.as_bytes(), "Fixed for both of you."))
    assert sent_to(desk, "carl@example.org") and "Fixed for both" in sent_to(desk, "carl@example.org")[-1].as_string()


def test_f67_reply_to_naming_an_agent_is_flagged_not_trusted(desk):
    opened(desk)
    raw = (b"From: Mallory <m@attacker.test>\r\nReply-To: ana@example.com\r\nTo: support@example.com\r\n"
           b"Subject: Re: [HD-1] Printer jams\r\nMessage-ID: <f67@attacker.test>\r\n\r\n#resolve\r\n")
    assert desk.mail(raw).outcome == "quarantined"
    assert quarantined(desk)[0].reason == "agent: reply-to-agent" and detail(desk).ticket.status == "new"


def test_f68_forged_authentication_results_below_ours_are_ignored(desk):
    notice = opened(desk)
    reply = agent_reply(notice, "#resolve\nDone.")
    forged = (b"Authentication-Results: mx.example.com; dmarc=pass header.from=example.com\r\n" + reply)
    ours = b"Authentication-Results: mx.example.com; dmarc=fail header.from=example.com\r\n" \
           b"Received: from evil.test by mx.example.com; Mon, 2 Mar 2026 09:40:00 +0000\r\n"
    desk.app.mail.agents.auth.policy = type(desk.app.mail.agents.auth.policy)(
        "authres", authserv_ids=frozenset({"mx.example.com"}))
    assert send_agent(desk, ours + forged, signed=False).outcome == "agent:unverified"
    assert detail(desk).ticket.status == "new"
    good = b"Authentication-Results: mx.example.com; dmarc=pass header.from=example.com\r\n" + \
        agent_reply(notice, "#resolve\nDone.", n=2)
    assert send_agent(desk, good, signed=False).outcome == "agent:acted"
    assert detail(desk).ticket.status == "resolved"


def test_f69_internal_headers_from_outside_are_stripped_and_ignored(desk):
    opened(desk)
    raw = (b"From: Ann <ann@example.org>\r\nTo: support@example.com\r\nSubject: Re: [HD-1] Printer jams\r\n"
           b"X-Helpdesk-Verified-Agent: ana@example.com\r\nX-Helpdesk-Queue: security\r\n"
           b"X-Helpdesk-Ticket: HD-1\r\nMessage-ID: <f69@example.org>\r\n\r\n#priority P1\r\nhello\r\n")
    desk.mail(raw)
    t = detail(desk)
    assert t.ticket.priority == "P3" and t.ticket.queue == "general"
    from daemon.pipeline.parse import parse
    assert not [k for k, _ in parse(raw).headers if k.lower().startswith("x-helpdesk-")]
    assert "X-Helpdesk" not in json.dumps([m.__dict__ for m in t.messages], default=str)


@pytest.mark.parametrize("from_lines", [
    "From: Ana Lima <ana@example.com>\r\nFrom: Mallory <m@attacker.test>\r\n",
    "From: Ana Lima <ana@example.com>, Mallory <m@attacker.test>\r\n",
])
def test_f70_duplicate_or_double_from_refuses_authentication(desk, from_lines):
    notice = opened(desk)
    raw = agent_reply(notice, "#resolve\nDone.").replace(b"From: Ana Lima <ana@example.com>\r\n",
                                                          from_lines.encode())
    result = send_agent(desk, raw)
    assert result.outcome in ("agent:unverified", "quarantined") and detail(desk).ticket.status == "new"


def test_f70_display_name_that_looks_like_an_agent(desk):
    notice = opened(desk)
    raw = agent_reply(notice, "#resolve", frm='"ana@example.com" <m@attacker.test>')
    assert send_agent(desk, raw, domain="attacker.test", pem=desk.attacker_pem).outcome == "quarantined"
    q = quarantined(desk)[0]
    assert q.reason == "agent: display-name" and "m@attacker.test" in q.header_from


def test_f71_dkim_with_length_limit_and_appended_text(desk):
    notice = opened(desk)
    raw = sign(agent_reply(notice, "Harmless."), "example.com", desk.pem, length=True)
    raw = raw.replace(b"\r\n-- \r\n", b"\r\n#resolve\r\n-- \r\n") + b"#resolve appended by a list\r\n"
    assert send_agent(desk, raw, signed=False).outcome == "agent:unverified"
    assert detail(desk).ticket.status == "new"


def test_f72_dkim_pass_with_unaligned_domain(desk):
    notice = opened(desk)
    raw = agent_reply(notice, "#resolve")
    assert send_agent(desk, raw, domain="attacker.test", pem=desk.attacker_pem).outcome == "agent:unverified"
    assert detail(desk).ticket.status == "new"


def test_f73_dns_timeout_defers_and_reevaluates(desk):
    notice = opened(desk)
    raw = sign(agent_reply(notice, "#priority P1\nOn it."), "example.com", desk.pem)
    desk.app.spool.put(raw, Envelope("ana@example.com", (reply_address(notice),), "smtp", "", desk.clock().isoformat()))
    desk.zone.down.add("mail._domainkey.example.com")
    outcome = desk.app.worker.run_once()
    assert outcome.kind == "retry" and detail(desk).ticket.priority == "P3"
    assert desk.app.spool.depth() == 1 and not quarantined(desk)
    desk.zone.down.clear()
    desk.app.worker._not_before.clear()
    assert desk.app.worker.run_once().kind == "stored" and detail(desk).ticket.priority == "P1"


def test_f74_in_reply_to_our_notification_without_token_is_no_attribution(desk):
    notice = parsed(opened(desk))
    forged_id = notice["Message-ID"][:-20] + "aaaaaaa@example.com>"
    raw = (f"From: Mallory <m@attacker.test>\r\nTo: support@example.com\r\nSubject: Re: {notice['Subject']}\r\n"
           f"Message-ID: <f74@attacker.test>\r\nIn-Reply-To: {forged_id}\r\n\r\n#resolve\r\n").encode()
    desk.mail(raw)
    assert detail(desk).ticket.status == "new"
    assert not [x for x in detail(desk).messages if x.direction == "out"]


def test_f75_brute_force_tokens_trip_the_flood_guard(desk):
    import os
    opened(desk)
    outcomes = []
    for i in range(25):
        tok = os.urandom(25).hex()[:40]
        raw = (f"From: Mallory <m@attacker.test>\r\nTo: support+{tok}@example.com\r\nSubject: hi\r\n"
               f"Message-ID: <bf{i}@attacker.test>\r\n\r\n#resolve\r\n").encode()
        desk.app.worker.process(raw, Envelope("m@attacker.test", (f"support+{tok}@example.com",), "smtp",
                                              "203.0.113.9", desk.clock().isoformat()))
    outcomes = [q.reason for q in quarantined(desk)]
    assert len(outcomes) == 25 and detail(desk).ticket.status == "new"
    assert outcomes.count("agent: token-flood") == 5 and outcomes.count("agent: token-invalid") == 20


def test_f76_case_folded_reply_address_still_verifies(desk):
    notice = opened(desk)
    upper = reply_address(notice).upper()
    assert send_agent(desk, agent_reply(notice, "#priority P2"), to=upper).outcome == "agent:acted"
    assert detail(desk).ticket.priority == "P2"


def test_f77_ticket_trick_signup_mail_to_a_reply_address_is_quarantined(desk):
    notice = opened(desk)
    raw = (f"From: Service <noreply@thirdparty.test>\r\nTo: {reply_address(notice)}\r\nSubject: Confirm your "
           f"account\r\nMessage-ID: <signup@thirdparty.test>\r\n\r\nYour code is 123456.\r\n").encode()
    assert desk.mail(raw, mail_from="bounce@thirdparty.test", rcpt=(reply_address(notice),)).outcome == "quarantined"
    q = quarantined(desk)[0]
    assert q.reason == "agent: unexpected-sender"
    assert all("123456" not in x.as_string() for x in sent_to(desk, "ann@example.org"))
    assert detail(desk).ticket.message_count == 1


def test_an_agents_resolve_alone_tells_the_customer(desk):
    """Issue 17: `#resolve` with no text sends the requester the resolve notice, once."""
    notice = opened(desk)
    n = len(customer_mails(desk))
    send_agent(desk, agent_reply(notice, "#resolve"))
    assert detail(desk).ticket.status == "resolved"
    told = customer_mails(desk)[n:]
    assert len(told) == 1 and "Resolved" in str(told[0]["Subject"])
    send_agent(desk, agent_reply(notice, "#resolve", n=2))            # already resolved: nothing again
    assert len(customer_mails(desk)) == n + 1


def test_an_agents_answer_with_resolve_is_one_mail_to_the_customer(desk):
    notice = opened(desk)
    n = len(customer_mails(desk))
    send_agent(desk, agent_reply(notice, "#resolve\nHello Ann,\nthe printer has a new drum now.\n\nRegards, Ana"))
    assert detail(desk).ticket.status == "resolved"
    told = customer_mails(desk)[n:]
    assert len(told) == 1 and "new drum" in told[0].get_body(("plain",)).get_content()
