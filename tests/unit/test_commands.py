"""Commands at the top of a reply: parsing and validation against the rule vocabulary."""
from __future__ import annotations

import pytest

from daemon.pipeline.commands import Named, Vocabulary, named_tickets, parse_commands, validate, validate_requester

VOCAB = Vocabulary(frozenset({"general", "network"}), frozenset({"incident", "request"}),
                   frozenset({"vip", "outage"}), frozenset({"ana@example.com", "ben@example.com"}),
                   ("P1", "P2", "P3", "P4"))


def run(text: str, sender: str = "ana@example.com", ticket: int = 5):
    return validate(parse_commands(text), VOCAB, sender=sender, ticket_id=ticket)


def test_block_at_the_top_then_the_body():
    p = parse_commands("\n#status pending\n\n#priority p1\nHello Ann,\n#tag vip is not a command here\n")
    assert [n for _, n, _ in p.lines] == ["status", "priority"]
    assert p.body == "Hello Ann,\n#tag vip is not a command here"


def test_no_commands_keeps_the_text():
    p = parse_commands("Hello\n#1 on my list")
    assert p.lines == () and p.body == "Hello\n#1 on my list"
    assert parse_commands("#1 thing").lines == ()


@pytest.mark.parametrize("line, name, value", [
    ("#status Resolved", "status", "resolved"), ("#resolve", "status", "resolved"), ("#close", "status", "closed"),
    ("#pending", "status", "pending"), ("#priority p2", "priority", "P2"), ("#assign me", "assign", "ana@example.com"),
    ("#assign BEN@example.com", "assign", "ben@example.com"), ("#assign none", "assign", ""),
    ("#queue Network", "queue", "network"), ("#type request", "type", "request"), ("#tag VIP", "tag", "vip"),
    ("#tag -vip", "untag", "vip"), ("#untag outage", "untag", "outage"), ("#merge HD-17", "merge", "17"),
    ("#link [HD-9]", "link", "9"), ("#link 9", "link", "9"), ("#note", "note", ""),
])
def test_valid_commands(line, name, value):
    c = run(line)
    assert not c.refused and [(x.name, x.value) for x in c.commands] == [(name, value)]


@pytest.mark.parametrize("line, why", [
    ("#status done", "unknown status"), ("#priority P9", "unknown priority"), ("#queue nowhere", "unknown queue"),
    ("#type bug", "unknown type"), ("#tag shiny", "unknown tag"), ("#assign eve@attacker.test", "not a registered"),
    ("#merge HD-5", "itself"), ("#link XY-3", "needs a ticket"), ("#frobnicate", "unknown command"),
    ("#priority", "exactly one value"), ("#note now", "takes no value"), ("#resolve now", "takes no value"),
])
def test_refused_commands_say_why(line, why):
    c = run(line)
    assert not c.commands and why in c.refused[0].reason


def test_note_and_status_helpers():
    c = run("#note\n#pending\n#status open\nbody")
    assert c.note and c.status() == "open" and c.body == "body"


def test_requester_may_only_resolve_by_default():
    c = validate_requester(parse_commands("#resolve\n#priority P1\nthanks"), ("resolve",))
    assert [(x.name, x.value) for x in c.commands] == [("status", "resolved")]
    assert "requesters may only #resolve" in c.refused[0].reason
    assert not validate_requester(parse_commands("#close"), ("resolve",)).commands
    assert validate_requester(parse_commands("#status closed"), ("resolve", "close")).commands
    assert not validate_requester(parse_commands("#resolve"), ()).commands


def test_at_most_twenty_commands():
    c = run("\n".join(["#tag vip"] * 25))
    assert len(c.commands) == 20 and len(c.refused) == 5


def test_the_tickets_a_block_names_are_known_before_the_transaction_locks():
    named = named_tickets(parse_commands("#link HD-12 13\n#merge hd-7\n#problem #9\n#resolve\nBody #link HD-99"))
    assert named == Named(frozenset({7, 9, 12, 13}), merge=True, status=True)
    assert named_tickets(parse_commands("#link HD-3\n#tag vip")) == Named(frozenset({3}), False, False)
    assert named_tickets(parse_commands("#merge nonsense\nHi")) == Named(frozenset(), True, False)
