"""Agents' forwarded and relayed mail (issue 19): relaxed DKIM alignment by organisational
domain (Public Suffix List) as a per-domain option, and ARC (RFC 8617) from trusted
forwarders - with real RSA keys, real DKIM signatures and ARC seals (dkimpy) and a dict DNS.
Secure by default: strict alignment, no forwarder trusted, a forged From never passes."""
from __future__ import annotations

import pytest

from daemon.alignment import aligned, org_domain
from daemon.arc import _ams_problem
from daemon.identity import Authenticator, AuthPolicy
from tests.agentkit import Zone, arc_seal, as_list_delivers, sign

MAIL = (b"From: Ana Lima <ana@eu.example.com>\r\nTo: support@example.com\r\nSubject: Re: [HD-7] printer\r\n"
        b"Date: Mon, 02 Mar 2026 09:40:00 +0000\r\nMessage-ID: <f1@eu.example.com>\r\n\r\n#close\r\nDone.\r\n")
TOP = MAIL.replace(b"ana@eu.example.com", b"ana@example.com")
LIST, RESULTS = "lists.example.org", "dkim=pass header.d=example.com; dmarc=pass header.from=example.com"


@pytest.fixture(scope="module")
def zone():
    z = Zone()
    z.org = z.publish("mail", "example.com")
    z.eu = z.publish("mail", "eu.example.com", label="b")
    z.lists = z.publish("arc", LIST, label="c")
    z.evil = z.publish("arc", "evil.test", label="d")
    return z


def auth(zone, raw, **policy):
    return Authenticator(AuthPolicy(**policy), zone).authenticate(raw)


# ---------------------------------------------------------------------- organisational domains
@pytest.mark.parametrize("name, org", [
    ("eu.corp.example.com", "example.com"), ("example.com", "example.com"), ("mail.corp.example.co.uk", "example.co.uk"),
    ("a.b.alice.github.io", "alice.github.io"), ("co.uk", None), ("github.io", None), ("com", None),
    ("bücher.example", "xn--bcher-kva.example"), ("not a domain", None), ("", None)])
def test_organisational_domain_by_the_public_suffix_list(name, org):
    assert org_domain(name) == org


def test_alignment_strict_and_relaxed():
    assert aligned("example.com", "EXAMPLE.com") and not aligned("example.com", "eu.example.com")
    assert aligned("example.com", "eu.example.com", relaxed=True)
    assert aligned("eu.example.com", "example.com", relaxed=True)           # either way round (RFC 7489 3.1.1)
    assert not aligned("alice.github.io", "bob.github.io", relaxed=True)    # private-section suffix
    assert not aligned("co.uk", "example.co.uk", relaxed=True)              # d= a public suffix
    assert not aligned("example.com.evil.test", "example.com", relaxed=True)
    assert not aligned("badexample.com", "example.com", relaxed=True)


# ---------------------------------------------------------------------- relaxed DKIM, per domain
def test_parent_domain_signature_needs_the_relaxed_option_for_that_domain(zone):
    raw = sign(MAIL, "example.com", zone.org)
    strict = auth(zone, raw)
    assert not strict.passed and "not aligned with the From domain eu.example.com" in " ".join(strict.evidence)
    other = auth(zone, raw, relaxed=frozenset({"other.example.net"}))
    assert not other.passed                                                   # the option is per domain
    relaxed = auth(zone, raw, relaxed=frozenset({"eu.example.com"}))
    assert relaxed.passed and relaxed.address == "ana@eu.example.com" and relaxed.method == "dkim"
    assert "relaxed alignment with eu.example.com" in " ".join(relaxed.evidence)


def test_relaxed_never_accepts_another_organisation_or_a_forged_body(zone):
    evil = sign(MAIL, "evil.test", zone.evil, selector="arc")
    assert not auth(zone, evil, relaxed=frozenset({"eu.example.com"})).passed
    forged = sign(MAIL, "example.com", zone.org).replace(b"Done.", b"#assign ben")
    assert auth(zone, forged, relaxed=frozenset({"eu.example.com"})).result == "fail"


def test_relaxed_applies_to_our_mtas_authentication_results_too(zone):
    ar = b"Authentication-Results: mx.example.com; dkim=pass header.d=example.com\r\n"
    ids = frozenset({"mx.example.com"})
    assert not auth(zone, ar + MAIL, mode="authres", authserv_ids=ids).passed
    a = auth(zone, ar + MAIL, mode="authres", authserv_ids=ids, relaxed=frozenset({"eu.example.com"}))
    assert a.passed and a.method == "authres"


# ---------------------------------------------------------------------- ARC
def listed(zone, raw=TOP, results=RESULTS, sealer=LIST, pem=None):
    """The agent's signed mail as the list forwards it: DKIM broken by the list, ARC-sealed."""
    return arc_seal(as_list_delivers(sign(raw, "example.com", zone.org)), sealer, pem or zone.lists, results)


def test_the_list_breaks_dkim_and_a_trusted_arc_seal_vouches(zone):
    raw = listed(zone)
    assert not auth(zone, raw).passed                                         # DKIM broken, ARC not trusted
    a = auth(zone, raw, arc_trusted=frozenset({LIST}))
    assert a.passed and a.address == "ana@example.com" and a.method == "arc"
    text = " ".join(a.evidence)
    assert "sealed by lists.example.org" in text and "dkim=pass header.d=example.com" in text


def test_an_untrusted_sealer_is_not_believed(zone):
    raw = listed(zone, sealer="evil.test", pem=zone.evil)
    a = auth(zone, raw, arc_trusted=frozenset({LIST}))
    assert not a.passed and "evil.test is not a trusted forwarder" in " ".join(a.evidence)


def test_a_forged_from_through_a_trusted_list_is_not_an_agent(zone):
    forged = TOP                                                              # no signature of example.com
    raw = arc_seal(as_list_delivers(forged), LIST, zone.lists, "dkim=none; dmarc=fail header.from=example.com")
    a = auth(zone, raw, arc_trusted=frozenset({LIST}))
    assert not a.passed and "dmarc=fail" in " ".join(a.evidence)
    other = arc_seal(as_list_delivers(sign(TOP, "evil.test", zone.evil, selector="arc")), LIST, zone.lists,
                     "dkim=pass header.d=evil.test")                         # signed, by someone else
    assert not auth(zone, other, arc_trusted=frozenset({LIST})).passed


def test_changes_after_the_seal_break_the_chain(zone):
    raw = listed(zone).replace(b"Done.", b"#assign mallory")
    a = auth(zone, raw, arc_trusted=frozenset({LIST}))
    assert a.result == "fail" and "chain does not validate" in " ".join(a.evidence)
    swapped = listed(zone).replace(b"From: Ana Lima <ana@example.com>", b"From: Ana Lima <ana@example.com >")
    assert not auth(zone, swapped, arc_trusted=frozenset({LIST})).passed


def test_only_the_last_hop_counts(zone):
    """A trusted seal followed by an untrusted hop: the untrusted one could have changed the
    mail under its own seal, so the trusted record no longer vouches for it."""
    raw = arc_seal(listed(zone), "evil.test", zone.evil, "arc=pass; dkim=fail header.d=example.com")
    a = auth(zone, raw, arc_trusted=frozenset({LIST}))
    assert not a.passed and "i=2 sealed by evil.test" in " ".join(a.evidence)
    both = auth(zone, raw, arc_trusted=frozenset({LIST, "evil.test"}))
    assert not both.passed                                                    # the last hop's record says fail


def test_arc_with_relaxed_alignment_of_the_recorded_signature(zone):
    raw = listed(zone, raw=MAIL, results="dkim=pass header.d=example.com")
    trusted = frozenset({LIST})
    assert not auth(zone, raw, arc_trusted=trusted).passed
    a = auth(zone, raw, arc_trusted=trusted, relaxed=frozenset({"eu.example.com"}))
    assert a.passed and a.address == "ana@eu.example.com"


def test_sealer_key_dns_failure_is_temperror(zone):
    raw = listed(zone)
    zone.down.add(f"arc._domainkey.{LIST}")
    try:
        assert auth(zone, raw, arc_trusted=frozenset({LIST})).result == "temperror"
    finally:
        zone.down.clear()


def test_garbage_arc_headers_are_a_fail_not_a_crash(zone):
    junk = b"ARC-Seal: i=1; garbage\r\nARC-Message-Signature: ;;;\r\nARC-Authentication-Results: x\r\n" + TOP
    assert auth(zone, junk, arc_trusted=frozenset({LIST})).result == "fail"
    many = b"".join(f"ARC-Seal: i={i}; a=rsa-sha256; d=x; s=y; cv=pass; b=\r\n".encode() for i in range(1, 13)) + TOP
    assert auth(zone, many, arc_trusted=frozenset({LIST})).result == "fail"


def test_the_newest_message_signature_must_cover_from_without_l():
    ams = [("arc-message-signature", b"i=1; a=rsa-sha256; d=lists.example.org; s=arc; h=to:subject; bh=x; b=y")]
    assert "does not cover From" in _ams_problem(ams, 1)
    ams = [("arc-message-signature", b"i=1; a=rsa-sha256; d=l.example; s=arc; l=10; h=from:to; bh=x; b=y")]
    assert "l=" in _ams_problem(ams, 1)
    assert _ams_problem([("arc-message-signature", b"i=1; h=From : to; bh=x; b=y")], 1) == ""
    assert _ams_problem([], 1) == "no message signature"


def test_config_keys_are_domains_in_a_labels(tmp_path):
    from daemon.agents import build_authenticator
    from daemon.config import load_config
    from daemon.errors import ConfigError
    from tests.unit.test_config import site
    cfg = load_config(site(tmp_path, '[agents]\ndkim_relaxed_domains = ["EU.Example.com", "bücher.example"]\n'
                                     'arc_trusted_forwarders = ["lists.example.org"]\n'))
    assert cfg.agents.dkim_relaxed_domains == ("eu.example.com", "xn--bcher-kva.example")
    policy = build_authenticator(cfg).policy
    assert policy.relaxed == {"eu.example.com", "xn--bcher-kva.example"} and policy.arc_trusted == {LIST}
    defaults = build_authenticator(load_config(site(tmp_path, ""))).policy
    assert defaults.relaxed == frozenset() and defaults.arc_trusted == frozenset()     # secure by default
    with pytest.raises(ConfigError, match=r"site.toml:\d+: agents.arc_trusted_forwarders: .*not a valid domain"):
        load_config(site(tmp_path, '[agents]\narc_trusted_forwarders = ["not a domain"]\n'))
