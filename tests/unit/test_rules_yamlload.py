"""The safe YAML reader: line numbers, duplicate keys, tags, aliases, size, empty files."""
from __future__ import annotations

import time

import pytest

from daemon.rules import yamlload
from daemon.rules.yamlload import YamlProblem, YDict, YList, load_yaml, parse_yaml


def problem(text: str | bytes) -> YamlProblem:
    with pytest.raises(YamlProblem) as info:
        parse_yaml(text.encode() if isinstance(text, str) else text)
    return info.value


def test_mappings_and_lists_remember_lines():
    data = parse_yaml(b"# comment\na: 1\nb:\n  - x\n  - {c: 2}\n")
    assert isinstance(data, YDict) and data == {"a": 1, "b": ["x", {"c": 2}]}
    assert data.line_of("a") == 2 and data.line_of("b") == 3
    assert isinstance(data["b"], YList) and data["b"].line_of(0) == 4 and data["b"].line_of(1) == 5
    assert data["b"][1].line == 5


def test_duplicate_key_is_refused_with_both_lines():
    p = problem("rules:\n  - name: a\n    name: b\n")
    assert p.line == 3
    assert "duplicate key 'name' (first on line 2)" in p.reason


def test_merge_keys_are_allowed_and_explicit_keys_win():
    data = parse_yaml(b"base: &b {queue: a, type: x}\nrule:\n  <<: *b\n  queue: c\n")
    assert data["rule"] == {"queue": "c", "type": "x"}


def test_syntax_error_names_line_and_column():
    p = problem("a: 1\nb: [unclosed\nc: 3\n")
    assert p.line >= 2 and "YAML error at column" in p.reason


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system ['touch /tmp/pwned']",
                                 "!!python/name:os.system", "!!python/object:builtins.dict {}"])
def test_python_tags_are_refused_and_nothing_runs(tag):
    p = problem(f"a: 1\nb: {tag}\n")
    assert p.line == 2
    assert "safe loading only" in p.reason


def test_alias_bomb_is_refused_quickly():
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    started = time.monotonic()
    p = problem("\n".join(lines) + "\n")
    assert time.monotonic() - started < 2
    assert "alias bomb" in p.reason


def test_reasonable_aliases_are_fine():
    data = parse_yaml(b"vip: &vip [a.example, b.example]\nx: *vip\ny: *vip\n")
    assert data["x"] == ["a.example", "b.example"]


def test_recursive_alias_is_refused():
    p = problem("a: &a\n  b: *a\n")
    assert "refers to the node that contains it" in p.reason or "alias" in p.reason


@pytest.mark.parametrize("text", ["", "   \n\n", "# only a comment\n# and another\n", "---\n"])
def test_empty_file_is_an_error_not_no_rules(text):
    assert "empty" in problem(text).reason


def test_not_utf8_names_the_line():
    p = problem(b"a: 1\nb: caf\xe9\n")
    assert p.line == 2 and "UTF-8" in p.reason


def test_oversized_file_is_refused_unread(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_bytes(b"a: " + b"x" * (yamlload.MAX_BYTES + 10) + b"\n")
    with pytest.raises(YamlProblem) as info:
        load_yaml(path)
    assert "1 MiB" in info.value.reason


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(YamlProblem, match="missing"):
        load_yaml(tmp_path / "nope.yaml")
    (tmp_path / "dir.yaml").mkdir()             # reading a directory fails even as root
    with pytest.raises(YamlProblem, match="cannot read"):
        load_yaml(tmp_path / "dir.yaml")


def test_unhashable_key_is_refused():
    p = problem("? [a, b]\n: 1\n")
    assert "plain value" in p.reason


def test_deep_nesting_is_refused_not_crashing():
    p = problem("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "YAML" in p.reason
