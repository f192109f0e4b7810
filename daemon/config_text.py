"""Line numbers and suggestions for config errors: `FILE:LINE: key: reason (did you mean ...)`.

tomllib gives values without positions, so the line of a key is found in the file's text:
a small scanner follows `[table]` and `[[array]]` headers and matches `key =` lines in them.
`locate` rewrites a ConfigError message of the form `FILE: key: reason` (the form every
validator in daemon/config.py raises) to name the file that set the key and its line.
Pure functions over text, apart from reading the named files in `locate`.
"""
from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Iterable

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"""^\s*("?)([A-Za-z0-9_\-.]+)\1\s*=""")
_MESSAGE = re.compile(r"^(?P<file>[^\n]+?): (?P<key>\[[\w\-]+\]|[a-z_]\w*(?:\[\d+\])?(?:\.[\w\-]+)*): "
                      r"(?P<reason>.*)$", re.S)
_TOML_AT = re.compile(r"^(?P<file>[^\n]+?): (?P<reason>.*?) \(at line (?P<line>\d+), column \d+\)$", re.S)
_DOTTED = re.compile(r"^(?P<table>[a-z_]\w*)(?:\[(?P<index>\d+)\])?(?:\.(?P<key>[\w\-]+))?$")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _headers(lines: list[str]):
    """(line number, table name, is array) of every table header."""
    for no, line in enumerate(lines, 1):
        m = _HEADER.match(line)
        if m:
            yield no, m.group(2).replace('"', "").replace(" ", ""), m.group(1) == "[["


def table_line(text: str, table: str, index: int | None = None) -> int | None:
    """The line of `[table]`, or of the index-th `[[table]]`."""
    seen = -1
    for no, name, is_array in _headers(text.splitlines()):
        if name == table:
            seen += 1
            if not is_array or index is None or seen == index:
                return no
    return None


def key_line(text: str, table: str, key: str, index: int | None = None) -> int | None:
    """The line where `key` is set in `[table]` (or the index-th `[[table]]`), also as `table.key = `."""
    lines = text.splitlines()
    current, seen = "", -1
    for no, line in enumerate(lines, 1):
        m = _HEADER.match(line)
        if m:
            current = m.group(2).replace('"', "").replace(" ", "")
            seen += current == table and m.group(1) == "[["
            continue
        k = _KEY.match(line)
        if not k:
            continue
        name = k.group(2)
        in_table = current == table and (index is None or seen == index)
        if (in_table and name == key) or (current == "" and name == f"{table}.{key}"):
            return no
    return None


def _line_in(text: str, key: str) -> int | None:
    if key.startswith("["):
        return table_line(text, key[1:-1])
    m = _DOTTED.match(key)
    if not m:
        return None
    index = int(m.group("index")) if m.group("index") is not None else None
    if m.group("key"):
        found = key_line(text, m.group("table"), m.group("key"), index)
        if found:
            return found
    return None


def find_key(sources: Iterable[Path], key: str) -> tuple[Path, int] | None:
    """The last of `sources` that sets `key` (`smtp.port`, `imap[0].host`, `[smtp]`), with its line."""
    for path in reversed(list(sources)):
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        line = _line_in(text, key)
        if line:
            return Path(path), line
    return None


def _table_of(key: str) -> tuple[str, int | None] | None:
    m = _DOTTED.match(key)
    if not m:
        return None
    return m.group("table"), int(m.group("index")) if m.group("index") is not None else None


def locate(message: str, sources: Iterable[Path]) -> str:
    """`FILE: key: reason` -> `SETTER:LINE: key: reason`; other messages come back unchanged."""
    sources = list(sources)
    toml = _TOML_AT.match(message)
    if toml:
        return f"{toml['file']}:{toml['line']}: {toml['reason']}"
    m = _MESSAGE.match(message)
    if not m:
        return message
    key, named = m["key"], Path(m["file"])
    found = find_key([named], key) if named in sources else None
    if found is None and named in sources:        # not set there: point at its table in the named file
        table = _table_of(key)
        text = named.read_text(encoding="utf-8", errors="replace") if named.is_file() else ""
        line = table_line(text, *table) if table else None
        found = (named, line) if line else None
    found = found or find_key(sources, key)
    if found is None:
        return message
    return f"{found[0]}:{found[1]}: {key}: {m['reason']}"
