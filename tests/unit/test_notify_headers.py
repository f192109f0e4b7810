"""The bytes of the mails we send: marks, threading headers, and header/template injection
(reliability.md E 60, G 78-81, 87, 88), asserted on the composed message."""
from __future__ import annotations

import email
import re
from dataclasses import replace
from datetime import datetime, timezone
from email import policy
from pathlib import Path

import pytest

from daemon import tokens
from daemon.model import Address, MailHistory
from daemon.pipeline.compose import Headers, compose, mail_address, outbound_address
from daemon.pipeline.notify import Desk, Fuses, QueueInfo, Trigger, build_mails, plan_notifications
from daemon.pipeline.parse import parse
from daemon.pipeline.render import Rendered
from daemon.templates import load_templates
from daemon.rules.declarations import Agent
from store.records import TicketRow

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = load_templates(REPO / "templates")
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)
DESK = Desk("Example Service Desk", "support@example.com", "HD", frozenset({"support@example.com"}))
RING = tokens.Keyring({1: b"s" * 32}, 1)
AGENTS = (Agent("ana@example.com", "Ana Lima", "lead"),)
TICKET = TicketRow(42, "Printer", "incident", "new", "P3", "general", "ann@example.org", None, NOW, NOW, 1)


def counter():
    n = iter(range(1, 10_000))
    return lambda size: next(n).to_bytes(size, "big")


def mails(ticket=TICKET, *, event="created", history=MailHistory(sender_new_tickets=1), **trigger):
    trigger.setdefault("sender", Address("Ann", ticket.requester))
    t = Trigger(event=event, **trigger)
    p = plan_notifications(ticket, t, AGENTS, history, DESK, Fuses(), NOW)
    built = build_mails(p, ticket, t, history, DESK, TEMPLATES, RING, QueueInfo("general"), NOW, counter())
    assert not built.problems
    return {m.kind: m for m in built.mails}


def parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=policy.default)


def body_text(msg) -> str:
    return msg.get_body(("plain",)).get_content()


def assert_clean_bytes(raw: bytes) -> None:
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert not re.search(rb"(?im)^(bcc|cc):", head)
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    head.decode("ascii")                                   # headers are 7-bit: encoded words


def test_acknowledgement_is_marked_threaded_and_verifiable():
    ack = mails(message_id="orig@example.org")["ack"]
    assert_clean_bytes(ack.raw)
    m = parsed(ack.raw)
    assert m["Subject"] == "[HD-42] Printer"
    assert m["From"] == "Example Service Desk <support@example.com>" and m["To"] == "ann@example.org"
    assert m["Auto-Submitted"] == "auto-replied" and m["X-Auto-Response-Suppress"] == "All"
    assert m["X-Loop"] == tokens.loop_marker("support@example.com")
    assert m["In-Reply-To"] == "<orig@example.org>" and "<orig@example.org>" in m["References"]
    tag = tokens.read_message_id(RING, m["Message-ID"])
    assert m["Message-ID"] == f"<{ack.message_id}>" and tag.kind == "ack" and tag.ticket_id == 42
    assert ack.recipients == ("ann@example.org",) and ack.auto == "auto-replied"
    assert tokens.bounce_nonce(RING, ack.mail_from, "support@example.com") == bytes.fromhex(ack.nonce)
    assert m.get_body(("html",)) is not None                   # the shipped ack has an HTML part


def test_agent_notification_reply_to_and_marks():
    note = mails(message_id="orig@example.org")["agent_new"]
    m = parsed(note.raw)
    assert m["Reply-To"] == "support@example.com" and m["Auto-Submitted"] == "auto-generated"
    assert m["To"] == "Ana Lima <ana@example.com>" and m["From"] == "Ann via Example Service Desk <support@example.com>"
    assert tokens.read_message_id(RING, m["Message-ID"]).kind == "agent"
    assert "[HD-42]" in m["Subject"]


def test_reply_to_slot_takes_a_per_agent_token():
    t = Trigger(event="created", sender=Address("Ann", "ann@example.org"), message_id="x@example.org")
    history = MailHistory(sender_new_tickets=1)
    p = plan_notifications(TICKET, t, AGENTS, history, DESK, Fuses(), NOW)
    built = build_mails(p, TICKET, t, history, DESK, TEMPLATES, RING, QueueInfo("general"), NOW, counter(),
                        reply_token=lambda ticket_id, agent: f"t{ticket_id}{agent[:3]}")
    note = next(m for m in built.mails if m.kind == "agent_new")
    assert parsed(note.raw)["Reply-To"] == "support+t42ana@example.com"
    assert parsed(next(m for m in built.mails if m.kind == "ack").raw)["Reply-To"] is None


def test_resolve_notice_threads_on_the_conversation():
    history = MailHistory(conversation=("first@example.org", "second@example.org"))
    note = mails(event="resolved", sender=None, human=False, history=history)["resolve"]
    m = parsed(note.raw)
    assert m["In-Reply-To"] == "<second@example.org>"
    assert m["References"] == "<first@example.org> <second@example.org>"
    assert "reply to this" in body_text(m).lower()


@pytest.mark.parametrize("subject", ["Hi\r\nBcc: x@evil.test", "Hi\nBcc: x@evil.test", "Hi\rBcc: x@evil.test",
                                     "Hi\u2028Bcc: x@evil.test", "Hi\x85Bcc: x@evil.test"])
def test_case_78_subject_with_line_breaks(subject):
    for mail in mails(replace(TICKET, subject=subject)).values():
        assert_clean_bytes(mail.raw)
        m = parsed(mail.raw)
        assert m["Bcc"] is None and "Bcc: x@evil.test" in m["Subject"]
    ack = mails(replace(TICKET, subject=subject))["ack"]
    assert ack.recipients == ("ann@example.org",) and parsed(ack.raw)["To"] == "ann@example.org"


def test_case_79_encoded_word_newline():
    raw = (b"From: ann@example.org\r\nTo: support@example.com\r\nMessage-ID: <e79@example.org>\r\n"
           b"Subject: Hi =?UTF-8?Q?x=0ABcc:_x@evil.test?=\r\n\r\nbody\r\n")
    msg = parse(raw)
    assert "\n" not in msg.subject and "\r" not in msg.subject
    ack = mails(replace(TICKET, subject=msg.subject), message_id=msg.message_id)["ack"]
    assert_clean_bytes(ack.raw)
    assert b"\nBcc:" not in ack.raw and b"\r\nBcc:" not in ack.raw


def test_case_80_addresses_and_display_names_with_line_breaks():
    assert outbound_address("a@b.test\r\nRCPT TO:<x@evil.test>") is None
    assert outbound_address("ann@example.org") == "ann@example.org"
    assert outbound_address("ann@bücher.example") == "ann@xn--bcher-kva.example"
    for bad in ("ann@example.org\r\n", "a b@example.org", '"a"@example.org', "ann", "ä@example.org"):
        assert outbound_address(bad) is None
    assert mail_address("ä@example.org") == "ä@example.org"           # UTF-8 local part: RFC 6531/6532
    for bad in ("jo sé@example.org", "josé\r\n@example.org", "jos\u2028é@example.org", "josé@", "<josé>@x.org",
                "jos\u00a0é@example.org", "josé\x00@example.org"):
        assert mail_address(bad) is None
    evil = Address("Evil\r\nBcc: x@evil.test", "ann@example.org")
    note = mails(sender=evil, message_id="x@example.org")["agent_new"]
    assert_clean_bytes(note.raw)
    m = parsed(note.raw)
    assert m["Bcc"] is None and len(m["From"].addresses) == 1
    assert m["From"].addresses[0].addr_spec == "support@example.com"
    with pytest.raises(ValueError, match="refusing unusable address"):
        compose(Headers("x", "support@example.com", (Address("", "a@b.test\r\nBcc: x@evil.test"),), "s", "m@x",
                        NOW), Rendered("s", "t\n", None, "t", None))


def test_case_81_87_customer_text_arrives_literally_and_escaped():
    text = "{{ 7*7 }} <script>alert(1)</script> {% for c in ''.__class__.__mro__ %}x{% endfor %}"
    ack = mails(text=text, message_id="x@example.org")["ack"]
    m = parsed(ack.raw)
    plain, html = body_text(m), m.get_body(("html",)).get_content()
    assert "{{ 7*7 }}" in plain and "49" not in plain and "{% for c in ''.__class__.__mro__ %}" in plain
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert "{{ 7*7 }}" in html


def test_case_88_long_non_ascii_subject_is_folded_and_encoded():
    subject = "Drucker im dritten Stock druckt nur noch Hieroglyphen: äöü ß € 日本語 " * 4
    mail = mails(replace(TICKET, subject=subject))["ack"]
    assert_clean_bytes(mail.raw)
    head = mail.raw.split(b"\r\n\r\n", 1)[0]
    subject_lines = re.search(rb"Subject: .*?\r\n(?=[^ \t])", head, re.S).group(0).split(b"\r\n")
    assert len(subject_lines) > 2 and all(len(line) <= 78 for line in subject_lines)
    assert b"=?utf-8?" in head.lower()
    decoded = parsed(mail.raw)["Subject"]
    assert decoded.startswith("[HD-42] Drucker") and "日本語" in decoded and len(decoded) <= 250


def test_hostile_references_are_dropped_not_injected():
    history = MailHistory(conversation=("ok@example.org", "bad id@x", "<x>\r\nBcc: y@evil.test", "a" * 600 + "@x"))
    mail = mails(message_id="orig@example.org", history=history)["ack"]
    assert_clean_bytes(mail.raw)
    assert parsed(mail.raw)["References"] == "<ok@example.org> <orig@example.org>"


def test_every_mail_is_marked_automatic():
    for mail in mails(message_id="x@example.org").values():
        m = parsed(mail.raw)
        assert m["Auto-Submitted"] in ("auto-replied", "auto-generated")
        assert m["X-Auto-Response-Suppress"] == "All" and m["X-Loop"]
        assert tokens.read_message_id(RING, m["Message-ID"]) is not None
        assert "+bounce-" in mail.mail_from


def test_sla_targets_reach_the_templates_when_given():
    sla = {"response_due": "2026-03-02 13:30 UTC", "resolution_due": "2026-03-04 17:00 UTC"}
    ack = parsed(mails(sla=sla, message_id="x@example.org")["ack"].raw)
    assert "get back to you by 2026-03-02 13:30 UTC" in " ".join(body_text(ack).split())
    assert "as soon as possible" in body_text(parsed(mails(message_id="x@example.org")["ack"].raw))


def test_german_requester_gets_german_acknowledgement():
    ack = mails(language="de", message_id="x@example.org")["ack"]
    m = parsed(ack.raw)
    assert m["Content-Language"] == "de" and "vielen Dank" in body_text(m) and ack.template == "de/requester/ack"
    agent = parsed(mails(language="de", message_id="x@example.org")["agent_new"].raw)
    assert agent["Content-Language"] is None                 # agents: never the requester's language


def test_ack_to_a_utf8_local_part_has_utf8_headers_and_nothing_else_changes():
    jose = replace(TICKET, requester="josé@example.org")
    built = mails(jose, message_id="orig@example.org", sender=Address("José Núñez", "josé@example.org"))
    ack = built["ack"]
    assert ack.recipients == ("josé@example.org",)
    head, _, body = ack.raw.partition(b"\r\n\r\n")
    text = head.decode("utf-8")                                # RFC 6532: UTF-8, raw
    assert "\r\nTo: josé@example.org\r\n" in text and b"\r\nBcc" not in head
    assert body.isascii()                                      # the parts stay quoted-printable
    m = email.message_from_string(ack.raw.decode("utf-8"), policy=policy.default)
    assert m["To"].addresses[0].addr_spec == "josé@example.org" and m["Auto-Submitted"] == "auto-replied"
    assert built["agent_new"].raw.split(b"\r\n\r\n", 1)[0].isascii()   # agents' mail stays 7-bit


def test_no_ack_to_a_hostile_utf8_address():
    evil = replace(TICKET, requester="jos\u2028é@example.org")
    t = Trigger(event="created", sender=Address("", evil.requester))
    p = plan_notifications(evil, t, AGENTS, MailHistory(sender_new_tickets=1), DESK, Fuses(), NOW)
    assert "ack" not in {m.kind for m in p.mails} and any("no usable requester address" in s for s in p.suppressed)
