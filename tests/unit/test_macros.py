"""Macros (daemon.macros): loading with file:line problems, expansion of `#macro` lines,
and the live set's reload (a bad file keeps the last good set)."""
from __future__ import annotations

import pytest

from daemon.errors import RulesError
from daemon.macros import LiveMacros, command_lines, expand, load_macros
from daemon.pipeline.commands import Vocabulary, named_tickets, parse_commands

VOCAB = Vocabulary(frozenset({"general", "network"}), frozenset({"incident", "request"}),
                   frozenset({"access", "vip"}), frozenset({"ana@example.com"}), ("P1", "P2", "P3", "P4"))
GOOD = """macros:
  - name: reset
    text: "Hello from {{ agent_name }} about {{ ref }}."
    set: {status: pending, tags: [access]}
  - name: thanks
    text: Thanks!
"""
CTX = {"ref": "HD-7", "subject": "VPN", "status": "open", "priority": "P3", "queue": "general",
       "requester": "ann@example.org", "agent_name": "Ana Lima", "agent_email": "ana@example.com"}


def write(tmp_path, text: str):
    (tmp_path / "macros.yaml").write_text(text)
    return tmp_path


def test_the_shipped_macros_load_against_the_shipped_rules():
    from daemon.macros import vocabulary
    from daemon.rules.loader import load_rules
    from tests.conftest import REPO
    assert set(load_macros(REPO / "rules", vocabulary(load_rules(REPO / "rules"), "HD")).names) >= {"password-reset"}


def test_expand_puts_the_text_first_and_the_changes_as_commands(tmp_path):
    macros = load_macros(write(tmp_path, GOOD), VOCAB)
    parsed, refused = expand(parse_commands("#macro reset\n#priority P2\n\nCall me if not."), macros, CTX)
    assert refused == ()
    assert [n for _, n, _ in parsed.lines] == ["status", "tag", "priority"]
    assert parsed.body == "Hello from Ana Lima about HD-7.\n\nCall me if not."
    same, none = expand(parse_commands("#pending\nText"), macros, CTX)
    assert same == parse_commands("#pending\nText") and none == ()


def test_what_a_macro_changes_is_known_before_the_locks(tmp_path):
    """The write transaction locks what a mail may change before it runs (store.writing): a
    macro that sets a status counts as the agent's own #status line (a problem resolved
    resolves its incidents, so they are locked first), unrendered and with unknown names kept."""
    macros = load_macros(write(tmp_path, GOOD), VOCAB)
    parsed = parse_commands("#macro reset\n#link HD-9\n#macro nope\nText")
    lines = command_lines(parsed, macros)
    assert [n for _, n, _ in lines.lines] == ["status", "tag", "link", "macro"] and lines.body == "Text"
    assert named_tickets(lines).status and not named_tickets(parsed).status
    assert named_tickets(lines).tickets == {9}
    assert command_lines(parsed, None) is parsed
    plain = parse_commands("#pending\nText")
    assert command_lines(plain, macros) is plain


def test_an_unknown_macro_is_refused_with_the_list(tmp_path):
    macros = load_macros(write(tmp_path, GOOD), VOCAB)
    parsed, refused = expand(parse_commands("#macro rest\nHi"), macros, CTX)
    assert [r.reason for r in refused] == ["unknown macro 'rest'; macros: reset, thanks"]
    assert parsed.lines == () and parsed.body == "Hi"


@pytest.mark.parametrize("text,want", [
    ("macros:\n  - name: a\n    text: '{{ oops'\n", "macros.yaml:3: macro 'a': template:"),
    ("macros:\n  - name: a\n    text: x\n  - name: a\n    text: y\n", "macros.yaml:4: macro 'a' is defined twice"),
    ("macros:\n  - name: a\n    text: x\n    set: {queue: netwrok}\n", "macro 'a': #queue netwrok: unknown queue"),
    ("macros:\n  - name: a\n    text: x\n    set: {colour: red}\n", "set.colour: unknown field"),
    ("macros:\n  - name: a b\n    text: x\n", "macros.yaml:2: name: letters"),
    ("macros:\n  - name: a\n    txt: x\n", "macros.yaml:3: txt: unknown key"),
    ("macros: 3\n", "macros.yaml:1: expected a mapping"),
])
def test_problems_name_file_and_line(tmp_path, text, want):
    with pytest.raises(RulesError) as exc:
        load_macros(write(tmp_path, text), VOCAB)
    assert any(want in p for p in exc.value.problems), exc.value.problems


def test_a_template_cannot_reach_out_of_the_sandbox(tmp_path):
    macros = load_macros(write(tmp_path, "macros:\n  - name: a\n    text: '{{ ref.__class__.__mro__ }}'\n"), VOCAB)
    _, refused = expand(parse_commands("#macro a"), macros, CTX)
    assert refused and "did not render" in refused[0].reason


def test_live_macros_reload_on_change_and_keep_the_last_good_set(tmp_path):
    live = LiveMacros(write(tmp_path, GOOD), VOCAB, check_every=0)
    assert live.current().names == ("reset", "thanks")
    write(tmp_path, GOOD + "  - name: more\n    text: More.\n")
    assert live.current().names == ("more", "reset", "thanks")
    write(tmp_path, "macros:\n  - name: [\n")
    assert live.current().names == ("more", "reset", "thanks") and live.last_problems
    assert live.reload() == live.last_problems
