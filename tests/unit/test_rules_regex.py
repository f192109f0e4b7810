"""The regex linter and text matchers: catastrophic patterns never reach a message."""
from __future__ import annotations

import time

import pytest

from daemon.rules.registry import Invalid
from daemon.rules.textmatch import MAX_PATTERN, compile_matcher, compile_regex, required_literal

CATASTROPHIC = [
    "(a+)+$", "(a*)*", "(.*)*", "(.+)+x", "(a|a)*", "(a|ab)+", "(x+x+)+y", "((a|a)b)*",
    r"(\w+\.)+com", r"(\d+\s?)+$", "(a.|ab)+", "(?:a+){2,}", "(.|\\s)*",
]
SAFE = [
    "outage|down", r"\b(vpn|remote access)\b", r"(ab|cd)+", r"(abc|abd)+", r"(\d{3}-)+", r"([a-z]|\d)+",
    r"(?:foo|bar)+baz", r"^\[?hd-\d+\]?", r"a{1,5}b{2,}", r"licen[cs]e", r"(?:re|fwd?):\s*", r"stock levels?",
]


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_catastrophic_patterns_are_refused(pattern):
    with pytest.raises(Invalid, match="exponential time"):
        compile_regex(pattern)


@pytest.mark.parametrize("pattern", SAFE)
def test_ordinary_patterns_compile_case_insensitive(pattern):
    rx = compile_regex(pattern)
    assert rx.flags & 2                          # re.IGNORECASE


def test_backreferences_are_refused():
    with pytest.raises(Invalid, match="backreferences"):
        compile_regex(r"(a)\1")


def test_bad_regex_says_why():
    with pytest.raises(Invalid, match=r"bad regex /\(unclosed/: missing \)"):
        compile_regex("(unclosed")


def test_length_is_capped():
    compile_regex("a" * MAX_PATTERN)
    with pytest.raises(Invalid, match="limit"):
        compile_regex("a" * (MAX_PATTERN + 1))


@pytest.mark.parametrize("value", ["", 5, None, ["a"]])
def test_non_strings_and_empty_are_refused(value):
    with pytest.raises(Invalid):
        compile_regex(value)


def test_accepted_patterns_stay_fast_on_hostile_input():
    hostile = "a" * 50_000 + "!"
    for pattern in SAFE:
        rx = compile_regex(pattern)
        started = time.monotonic()
        rx.search(hostile)
        assert time.monotonic() - started < 0.5, pattern


def test_matchers():
    contains, desc = compile_matcher(["outage", "Down"])
    assert contains("network down now") == "contains 'down'" and contains("fine") is None
    assert desc == "contain any of 'outage', 'down'"
    equals, desc = compile_matcher({"equals": "Boss@Example.com"})
    assert equals("boss@example.com") == "is 'boss@example.com'" and equals("xboss@example.com") is None
    regex, desc = compile_matcher({"matches": r"\bvpn\b"})
    assert regex("my vpn broke").startswith("matches /\\bvpn\\b/") and regex("vpnx") is None
    assert desc == r"match /\bvpn\b/"


@pytest.mark.parametrize("spec, message", [
    ({"contians": "x"}, "did you mean 'contains'"),
    ({"contains": "x", "equals": "y"}, "exactly one"),
    ({}, "exactly one"),
    ([], "non-empty list"),
    (["a", 3], "non-empty strings"),
    (True, "boolean"),
])
def test_matcher_errors(spec, message):
    with pytest.raises(Invalid, match=message):
        compile_matcher(spec)


@pytest.mark.parametrize("pattern, literal", [
    (r"\bw0001x\b", "w0001x"), ("outage|down", None), (r"\b(vpn|remote access)\b", None),
    ("Licen[cs]e key", "e key"), ("abc?d", None), ("xyz+", None), ("down for everyone", "down for everyone"),
    ("VPN down", "vpn down"), ("kiosk", None), (r"^\[?hd-\d+\]?", "hd-"), ("ab(c|d)ef", None),
])
def test_required_literal_prefilter_is_safe(pattern, literal):
    assert required_literal(pattern) == literal


def test_prefilter_never_changes_the_answer():
    texts = ["vpn down", "the licence key is", "hd-42 done", "ſystem", "ab cd", "kiosk kiſok", "w0001x!"]
    for pattern in SAFE + [r"\bw0001x\b", "Licen[cs]e key", "VPN down", "system", "kiosk"]:
        match, _ = compile_matcher({"matches": pattern})
        rx = compile_regex(pattern)
        for text in texts:
            assert (match(text) is None) == (rx.search(text) is None), (pattern, text)
