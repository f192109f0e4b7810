"""International addresses (daemon.model.idn): IDN domains compare by A-labels, UTF-8
local parts need SMTPUTF8, hostile addresses are refused; config and parse use them."""
from __future__ import annotations

import pytest

from daemon.config import load_config
from daemon.errors import ConfigError
from daemon.pipeline.addresses import parse_addresses
from daemon.model.idn import (SmtpAddress, address_domain, canonical_address, domain_key, header_needs_utf8,
                                 plan_utf8, smtp_address)
from daemon.rules import load_rules
from tests.unit.test_config import site
from tests.unit.test_rules_support import QUEUES, write_rules

IDN, ACE = "bücher.example", "xn--bcher-kva.example"


def test_domain_key_is_a_labels_lower_case():
    assert domain_key("Bücher.Example.") == ACE and domain_key(ACE.upper()) == ACE
    assert domain_key("例え.テスト") == "xn--r8jz45g.xn--zckzah"
    for bad in ("", "a..b", "-a.example", "a b.example", "x" * 64 + ".example"):
        with pytest.raises(ValueError):
            domain_key(bad)
    assert address_domain(f"<ann@{IDN}>") == ACE and address_domain("no-at-sign") == ""


def test_parsed_addresses_and_agents_compare_in_one_form():
    (a,) = parse_addresses(f"Anna <Anna@{IDN.upper()}>")
    (b,) = parse_addresses(f"anna@{ACE}")
    assert a.email == f"Anna@{ACE}" and b.email == f"anna@{ACE}"
    assert canonical_address(a.email) == canonical_address(f"ANNA@{IDN}") == f"anna@{ACE}"
    assert parse_addresses("josé@example.com")[0].email == "josé@example.com"     # local part kept


@pytest.mark.parametrize("address, expected", [
    ("ann@example.org", SmtpAddress("ann@example.org", False)),
    (f"ann@{IDN}", SmtpAddress(f"ann@{ACE}", False)),                       # no extension needed
    ("josé@example.org", SmtpAddress("josé@example.org", True)),
    (f"用户@{IDN}", SmtpAddress(f"用户@{IDN}", True)),
    ("jose\u0301@example.org", SmtpAddress("josé@example.org", True)),       # NFC
    ("a@b.test\r\nRCPT TO:<x@evil.test>", None), ("a b@example.org", None), ('"a"@example.org', None),
    ("jo\u200bsé@example.org", None), ("jo\u00a0sé@example.org", None), ("josé@exa mple.org", None),
    ("..@example.org", None), ("@example.org", None), ("é" * 40 + "@example.org", None),
])
def test_smtp_address(address, expected):
    assert smtp_address(address) == expected


def test_plan_utf8_holds_only_what_needs_the_extension():
    ascii_from, utf8_from = SmtpAddress("d@x.test", False), SmtpAddress("dé@x.test", True)
    rcpts = {"a@x.test": SmtpAddress("a@x.test", False), "é@x.test": SmtpAddress("é@x.test", True)}
    plain, utf8_head = b"Subject: hi\r\n\r\nbody \xc3\xa9\r\n", "Subject: café\r\n\r\nx".encode()
    assert not header_needs_utf8(plain) and header_needs_utf8(utf8_head)
    assert plan_utf8(ascii_from, rcpts, plain, True) == (["a@x.test", "é@x.test"], {}, True)
    assert plan_utf8(ascii_from, {"a@x.test": rcpts["a@x.test"]}, plain, True) == (["a@x.test"], {}, False)
    now, held, utf8 = plan_utf8(ascii_from, rcpts, plain, False)
    assert now == ["a@x.test"] and list(held) == ["é@x.test"] and not utf8
    assert "does not offer SMTPUTF8" in held["é@x.test"] and "address" in held["é@x.test"]
    for sender, raw in ((utf8_from, plain), (ascii_from, utf8_head)):
        now, held, _ = plan_utf8(sender, rcpts, raw, False)
        assert now == [] and set(held) == set(rcpts) and "message" in held["a@x.test"]


def test_config_domains_are_stored_as_a_labels(tmp_path):
    cfg = load_config(site(tmp_path, f'[smtp]\ndomains = ["{IDN}", "{ACE}", "Example.COM"]\n'
                                     f'[agents]\ndomains = {{ "{IDN}" = "authres" }}\n'))
    assert cfg.smtp.domains == (ACE, "example.com") and cfg.agents.domains == {ACE: "authres"}
    with pytest.raises(ConfigError, match=r"site.toml:2: smtp.domains: not a valid domain name: 'a..b'"):
        load_config(site(tmp_path, '[smtp]\ndomains = ["a..b"]\n'))


def test_agents_with_idn_domains_are_one_agent_whichever_the_spelling(tmp_path):
    queues = QUEUES.replace("ben@example.com}\n  network", f"Ben@{IDN}}}\n  network").replace(
        "      - {email: ben@example.com}\n", f"      - {{email: ben@{ACE}}}\n")
    rs = load_rules(write_rules(tmp_path / "r", queues=queues))
    assert rs.agents[f"ben@{ACE}"] == ("general", "workplace")
    (sender,) = parse_addresses(f"Ben <ben@{IDN}>")                 # the From of his mail
    assert canonical_address(sender.email) in rs.agents
