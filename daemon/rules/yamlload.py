"""Reading one admin-edited YAML file safely, keeping line numbers for every key.

The rules loader's only door to YAML. Safe loading only (a `!!python/...` tag is an
error, nothing is executed); files over 1 MiB are refused before parsing; duplicate keys
are refused (plain PyYAML silently keeps the last); an anchor/alias graph whose expansion
would exceed `MAX_NODES` (an "alias bomb") or that refers to itself is refused after
composing and before constructing, in time linear in the file. Mappings come back as
`YDict` and sequences as `YList`, which remember the 1-based line of the node and of each
key or item, so every later check can say `file:line`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1024 * 1024          # bigger files are refused unread
MAX_NODES = 200_000              # expanded YAML nodes (aliases counted at their full size)


class YDict(dict):
    """A YAML mapping: `line` of the mapping, `key_lines[key]` of each key."""

    line: int = 1
    key_lines: dict

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class YList(list):
    """A YAML sequence: `line` of the sequence, `item_lines[i]` of each item."""

    line: int = 1
    item_lines: list

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if 0 <= index < len(self.item_lines) else self.line


class YamlProblem(Exception):
    """One reason a file cannot be used, with its 1-based line."""

    def __init__(self, line: int, reason: str):
        super().__init__(reason)
        self.line = line
        self.reason = reason


class _Loader(yaml.SafeLoader):
    """SafeLoader building YDict/YList and refusing duplicate keys."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> YDict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:
            raise YamlProblem(key_node.start_mark.line + 1, "a mapping key must be a plain value") from None
        if first is not None:
            raise YamlProblem(key_node.start_mark.line + 1, f"duplicate key {key!r} (first on line {first})")
        seen[key] = key_node.start_mark.line + 1
    loader.flatten_mapping(node)
    out = YDict()
    out.line, out.key_lines = node.start_mark.line + 1, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> YList:
    out = YList(loader.construct_object(child, deep=True) for child in node.value)
    out.line, out.item_lines = node.start_mark.line + 1, [c.start_mark.line + 1 for c in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _construct_timestamp(loader: _Loader, node: yaml.ScalarNode) -> Any:
    """A date/time scalar; an impossible one (2026-02-30) is a load error with its line."""
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except ValueError as exc:
        raise YamlProblem(node.start_mark.line + 1, f"{node.value} is not a real date: {exc}") from None


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def _expanded_size(root: yaml.Node) -> int:
    """Nodes the document would have with every alias expanded; raises on cycles or bombs.

    Iterative and memoised per node object, so it costs one visit per distinct node."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            total = 1 + sum(sizes[id(c)] for c in _children(node))
            if total > MAX_NODES:
                raise YamlProblem(node.start_mark.line + 1,
                                  f"document expands to more than {MAX_NODES} nodes (alias bomb?)")
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise YamlProblem(node.start_mark.line + 1, "an alias refers to the node that contains it")
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise YamlProblem(child.start_mark.line + 1, "an alias refers to the node that contains it")
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def read_bytes(path: Path) -> bytes:
    """The file's bytes, refusing missing, unreadable, oversized and empty files."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise YamlProblem(1, f"file is {size} bytes; the limit is {MAX_BYTES} (1 MiB)")
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise YamlProblem(1, "file is missing") from None
    except OSError as exc:
        raise YamlProblem(1, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise YamlProblem(1, f"file is over the limit of {MAX_BYTES} bytes (1 MiB)")
    return data


def parse_yaml(data: bytes) -> Any:
    """The document in `data` as YDict/YList/scalars; raises YamlProblem."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise YamlProblem(line, "not UTF-8 text") from None
    if not text.strip() or all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines()):
        raise YamlProblem(1, "file is empty (an empty file is an error, not 'no rules')")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise YamlProblem(1, "file is empty (an empty file is an error, not 'no rules')")
        _expanded_size(node)
        data = loader.construct_document(node)
        if data is None:
            raise YamlProblem(1, "file is empty (an empty file is an error, not 'no rules')")
        return data
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or exc.context or "invalid YAML"
        if "could not determine a constructor" in what:
            what = f"tag not allowed here (safe loading only): {what.split('tag', 1)[-1].strip()}"
        raise YamlProblem(line, f"YAML error at column {col}: {what}") from None
    except yaml.YAMLError as exc:
        raise YamlProblem(1, f"YAML error: {exc}") from None
    except RecursionError:
        raise YamlProblem(1, "YAML nesting too deep") from None
    finally:
        loader.dispose()


def load_yaml(path: Path) -> tuple[Any, bytes]:
    """The parsed document and the exact bytes it came from; raises YamlProblem."""
    data = read_bytes(path)
    return parse_yaml(data), data
