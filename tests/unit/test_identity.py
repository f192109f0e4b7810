"""Reply tokens, sender authentication (DKIM with a dict DNS, Authentication-Results) and the
agent verdicts (reliability.md F 64, 68, 70-73, 75, 76)."""
from __future__ import annotations

import hmac
import os
import re
from datetime import date

import pytest

from daemon.pipeline import tokens
from daemon.identity import Authenticator, AuthPolicy, load_pinned, pinned_lookup
from daemon.model import Address, Envelope, MachineVerdict, ParsedMessage, ThreadDecision
from daemon.pipeline import agent as plan
from daemon.rules.declarations import Agent
from tests.agentkit import Zone, sign

RING = tokens.Keyring({1: b"k" * 32}, 1)
TODAY = date(2026, 3, 2)
LATER = date(2026, 4, 1)


# ---------------------------------------------------------------------- tokens
def test_token_shape_and_round_trip():
    tok = tokens.reply_token(RING, 123456, "Ana@Example.com", LATER)
    assert len(tok) == 40 and re.fullmatch(r"[a-z2-7]{40}", tok)
    assert len(tokens.reply_address("support@example.com", tok).split("@")[0]) <= 64
    assert tokens._REPLY_MAC * 8 >= 96
    check = tokens.check_reply_token(RING, tok, TODAY)
    assert check.status == "valid" and check.tag.ticket_id == 123456 and check.tag.expires == LATER
    assert check.tag.principal == tokens.principal_id("ana@example.com") and not check.tag.comment
    assert tokens.check_reply_token(RING, tokens.reply_token(RING, 1, "a@b.c", LATER, comment=True), TODAY).tag.comment


def test_f76_case_folded_token_verifies():
    tok = tokens.reply_token(RING, 7, "ana@example.com", LATER)
    assert tokens.check_reply_token(RING, tok.upper(), TODAY).status == "valid"


@pytest.mark.parametrize("pos", range(0, 40, 3))
def test_f64_every_tampered_position_is_rejected(pos):
    tok = tokens.reply_token(RING, 7, "ana@example.com", LATER)
    bad = tok[:pos] + ("a" if tok[pos] != "a" else "b") + tok[pos + 1:]
    assert tokens.check_reply_token(RING, bad, TODAY) == tokens.ReplyCheck("invalid")


def test_f64_expired_and_retired_keys():
    tok = tokens.reply_token(RING, 7, "ana@example.com", TODAY)
    assert tokens.check_reply_token(RING, tok, TODAY).status == "valid"
    assert tokens.check_reply_token(RING, tok, date(2026, 3, 3)).status == "expired"
    rotated = tokens.Keyring({2: b"n" * 32, 1: b"k" * 32}, 2)
    assert tokens.check_reply_token(rotated, tok, TODAY).status == "valid"          # old key still verifies
    assert tokens.check_reply_token(tokens.Keyring({2: b"n" * 32}, 2), tok, TODAY).status == "invalid"


def test_f64_one_code_path_for_every_kind_of_bad_token(monkeypatch):
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(tokens.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    tok = tokens.reply_token(RING, 7, "ana@example.com", LATER)
    unknown = tokens.reply_token(tokens.Keyring({9: b"z" * 32}, 9), 7, "ana@example.com", LATER)
    for value in (tok, tok[:5] + "a" + tok[6:], unknown, "short", "", "!" * 40, tok + "aa"):
        tokens.check_reply_token(RING, value, TODAY)
    assert len(calls) == 7


def test_f75_ten_thousand_random_tokens_are_all_rejected():
    import base64
    for _ in range(10_000):
        guess = base64.b32encode(os.urandom(25)).decode().lower()
        assert tokens.check_reply_token(RING, guess, TODAY).status == "invalid"


# ---------------------------------------------------------------------- DKIM and A-R
@pytest.fixture(scope="module")
def zone():
    z = Zone()
    z.pem = z.publish("mail", "example.com")
    z.other = z.publish("x", "attacker.test", label="b")
    return z


MAIL = (b"From: Ana Lima <ana@example.com>\r\nTo: support@example.com\r\nSubject: hi\r\n"
        b"Message-ID: <1@example.com>\r\n\r\nHello\r\n")


def auth(zone, raw, **policy):
    return Authenticator(AuthPolicy(**policy), zone).authenticate(raw)


def test_dkim_pass_is_aligned_with_the_from_domain(zone):
    a = auth(zone, sign(MAIL, "example.com", zone.pem))
    assert a.passed and a.address == "ana@example.com" and a.method == "dkim"


def test_dkim_unsigned_or_body_changed_fails(zone):
    assert auth(zone, MAIL).result == "none"
    assert auth(zone, sign(MAIL, "example.com", zone.pem).replace(b"Hello", b"#close")).result == "fail"


def test_f71_l_tag_is_never_accepted(zone):
    a = auth(zone, sign(MAIL, "example.com", zone.pem, length=True))
    assert not a.passed and "l=" in " ".join(a.evidence)


def test_f72_unaligned_d_is_not_authentication(zone):
    a = auth(zone, sign(MAIL, "attacker.test", zone.other, selector="x"))
    assert not a.passed and "not aligned" in " ".join(a.evidence)


def test_f73_dns_timeout_is_temperror_never_pass(zone):
    raw = sign(MAIL, "example.com", zone.pem)
    zone.down.add("mail._domainkey.example.com")
    try:
        assert auth(zone, raw).result == "temperror"
    finally:
        zone.down.clear()


@pytest.mark.parametrize("head", [b"From: a@example.com\r\nFrom: ana@example.com\r\n",
                                  b"From: ana@example.com, m@attacker.test\r\n", b""])
def test_f70_exactly_one_from_with_one_address(zone, head):
    raw = sign(head + MAIL.split(b"\r\n", 1)[1], "example.com", zone.pem)
    assert auth(zone, raw).result == "fail"


AR = b"Authentication-Results: mx.example.com; dmarc=pass (p=reject) header.from=example.com\r\n"


def test_authres_trusted_topmost_header(zone):
    a = auth(zone, AR + MAIL, mode="authres", authserv_ids=frozenset({"mx.example.com"}))
    assert a.passed and a.method == "authres"
    assert auth(zone, AR + MAIL, mode="authres").result == "none"                 # no trusted id configured
    other = AR.replace(b"mx.example.com", b"mx.attacker.test")
    assert not auth(zone, other + MAIL, mode="authres", authserv_ids=frozenset({"mx.example.com"})).passed


def test_f68_forged_copy_below_ours_is_ignored(zone):
    ours = b"Authentication-Results: mx.example.com; dmarc=fail header.from=example.com\r\n"
    a = auth(zone, ours + b"Received: from x by y\r\n" + AR + MAIL, mode="authres",
             authserv_ids=frozenset({"mx.example.com"}))
    assert not a.passed and "ignored" in " ".join(a.evidence)


def test_either_and_per_domain_modes(zone):
    ids = frozenset({"mx.example.com"})
    assert auth(zone, AR + MAIL, mode="either", authserv_ids=ids).passed
    assert not auth(zone, AR + MAIL, mode="dkim", authserv_ids=ids).passed
    assert auth(zone, AR + MAIL, mode="dkim", domains={"example.com": "authres"}, authserv_ids=ids).passed
    temp = b"Authentication-Results: mx.example.com; dkim=temperror header.d=example.com\r\n"
    assert auth(zone, temp + MAIL, mode="authres", authserv_ids=ids).result == "temperror"


def test_pinned_keys_file(tmp_path, zone):
    path = tmp_path / "keys"
    path.write_text("# pinned\n" + zone.pinned_file())
    lookup = pinned_lookup(load_pinned(path), None)
    assert Authenticator(AuthPolicy(), lookup).authenticate(sign(MAIL, "example.com", zone.pem)).passed


# ---------------------------------------------------------------------- claims and verdicts
ANA, BEN = Agent("ana@example.com", "Ana Lima", "lead"), Agent("ben@example.com", "Ben", "agent")
ROSTER = {a.email: a for a in (ANA, BEN)}
NEW = ThreadDecision("new", None, "no key")


def msg(frm: Address, *, to=("support@example.com",), reply_to=(), kind="human") -> ParsedMessage:
    return ParsedMessage("x@y", False, "d", "s", frm, tuple(Address("", r) for r in reply_to),
                         tuple(Address("", t) for t in to), (), None, (), (), "text", None, (), (),
                         MachineVerdict(kind))


def test_claims():
    env = Envelope("x", ("SUPPORT+ABC@example.com",))
    c = plan.claim_of(msg(Address("", "m@x.test"), to=("support+comment@example.com",)), env, ROSTER,
                      "support@example.com")
    assert c.details == ("abc",) and c.comment and c.from_agent is None
    assert plan.claim_of(msg(Address("", "m@x.test"), to=("support+bounce-zz@example.com",)), Envelope("x"),
                         ROSTER, "support@example.com").details == ()
    spoof = plan.claim_of(msg(Address("ana@example.com (IT)", "m@x.test")), Envelope("x"), ROSTER,
                          "support@example.com")
    assert spoof.display_agent == ANA and spoof.agent_path
    rt = plan.claim_of(msg(Address("", "m@x.test"), reply_to=("ben@example.com",)), Envelope("x"), ROSTER,
                       "support@example.com")
    assert rt.reply_to_agent == BEN
    assert not plan.claim_of(msg(Address("Ann", "ann@example.org")), Envelope("x"), ROSTER,
                             "support@example.com").agent_path


def test_verdict_table():
    from daemon.identity import Auth
    tok = tokens.check_reply_token(RING, tokens.reply_token(RING, 1, "ana@example.com", LATER), TODAY)
    ticket = plan.TicketState(1, "s", "new", "P3", "general", "incident", "ann@example.org", None)
    ok, temp, bad = Auth("pass", "ana@example.com", "dkim"), Auth("temperror"), Auth("fail")
    m_ana = msg(Address("Ana", "ana@example.com"))
    claim = plan.claim_of(m_ana, Envelope("x"), ROSTER, "support@example.com")

    def v(a, t=tok, m=m_ana, c=claim, tk=ticket, **kw):
        return plan.decide(m, c, t, a, tk, NEW, ROSTER, **kw).kind
    assert v(ok) == "act" and v(temp) == "defer" and v(temp, can_defer=False) == "unverified"
    assert v(bad) == "unverified" and v(None) == "unverified"
    assert v(ok, t=tokens.ReplyCheck("invalid")) == "quarantine"
    m_ben = msg(Address("Ben", "ben@example.com"))
    assert v(Auth("pass", "ben@example.com"), m=m_ben, c=plan.claim_of(m_ben, Envelope("x"), ROSTER,
                                                                       "support@example.com")) == "unverified"
    assert v(ok, t=None) == "note"                           # authenticated agent on a ticket: a note
    assert v(ok, t=None, tk=None) == "none"                  # ... without a ticket: a new ticket
    assert v(bad, t=None) == "quarantine"                    # F61
