"""The import graph of daemon/ and store/: cycles, layer violations, function-level imports.

    python3 bench/layers.py [--graph]

Reads every module with `ast` (no import is executed) and counts every import anywhere in a
module: at the top, under `if TYPE_CHECKING:` or `try:`, and inside function bodies. An import
under `if TYPE_CHECKING:` is an edge like any other: a type a module names is a dependency of
that module, and a cycle hidden behind TYPE_CHECKING is still a cycle a reader has to untangle.

The layers are data (LAYERS below, lowest first): a module may import modules of its own layer
or of lower layers, never higher ones. RESTRICT narrows a few layers further (the pure pipeline
imports only itself and the base; store/ imports from daemon/ only the base). Function-level
imports are allowed only for the optional third-party dependencies in OPTIONAL and, in the one
module each names, the heavy required ones in LAZY. Importing
a.b.c also runs the packages a and a.b (their __init__), so those count as imported too. Exit status 1
when anything is printed, 0 when the house is in order. tests/unit/test_layers.py asserts the
same rules (with an allowlist of edges that are being fixed).
"""
from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("daemon", "store")

# Lowest first. A pattern "a.b" matches the module a.b and everything under it, "=a" only the
# module a itself (a package's __init__); the most specific (longest) pattern wins, so
# "daemon.rules.tester" sits above "daemon.rules". A module in no layer is reported.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("=daemon", "daemon.errors", "daemon.model", "daemon.envelope", "daemon.idn", "daemon.smtp_address", "daemon.clock", "=store")),
    ("pipeline", ("daemon.pipeline",)),
    ("edges", ("store", "daemon.rules", "daemon.templates", "daemon.tokens", "daemon.identity",
               "daemon.config", "daemon.spool", "daemon.mailer", "daemon.systemd", "daemon.health",
               "daemon.secrets", "daemon.reload", "daemon.intake", "daemon.sla", "daemon.backoff",
               "daemon.handoff", "daemon.http", "daemon.logfmt", "daemon.metrics", "daemon.oauth2",
               "daemon.oauth2_config", "daemon.digest_config", "daemon.oauth2_login", "daemon.oauth2_store", "daemon.processes",
               "daemon.parse_guard", "daemon.settings", "daemon.config_lookup", "daemon.config_text", "daemon.config_sections", "daemon.config_read",
               "daemon.listen", "daemon.shipped", "daemon.macros", "daemon.alignment", "daemon.arc",
               "daemon.node_beat", "daemon.approval_rules", "daemon.approval_plan", "daemon.report", "daemon.stores",
               "daemon.relay_session", "daemon.send_journal", "daemon.heap", "daemon.huey_lean")),
    ("services", ("daemon.worker", "daemon.tasks", "daemon.escalation", "daemon.agents", "daemon.agent_notices",
                  "daemon.message_path", "daemon.outbound", "daemon.parse_lanes", "daemon.observe", "daemon.desk_mail",
                  "daemon.digest", "daemon.problems", "daemon.csat", "daemon.approvals", "daemon.report.mailing",
                  "daemon.delivery")),
    ("root", ("daemon.app",)),
    ("commands", ("daemon.cli", "daemon.cli_args", "daemon.__main__", "daemon.check", "daemon.views",
                  "daemon.rules.tester", "daemon.sla.views", "daemon.sla.report",
                  "daemon.intake.ingest", "daemon.backup", "daemon.schema_commands", "daemon.site_init",
                  "daemon.desk_cli", "daemon.itil_views", "daemon.problem_check", "daemon.roster_view", "daemon.search_view",
                  "daemon.filters", "daemon.rules_replay", "daemon.oauth2_check", "daemon.original_view",
                  "daemon.approval_view", "daemon.report.command")),
)

# Layers whose project imports are limited to these modules (and what is under them;
# "=daemon" is the package itself, which importing daemon.model runs).
RESTRICT: dict[str, tuple[str, ...]] = {
    "daemon.pipeline": ("daemon.pipeline", "daemon.model", "daemon.errors", "daemon.clock"),
    "store": ("store", "=daemon", "daemon.model", "daemon.errors", "daemon.clock"),
}

# Third-party packages that may be imported inside a function (installed only when used).
OPTIONAL = frozenset({"psycopg", "psycopg2", "redis", "systemd", "watchdog", "pyinotify"})

# Required packages that one module may import inside a function, because importing them
# costs more than the common path of that module that does not use them (issue 16: a
# command's start). Each is named with the one module allowed; anywhere else it is reported.
LAZY: dict[str, frozenset[str]] = {
    "alembic": frozenset({"store.migrate"}),    # only to create or upgrade: a database at head needs none
    "zoneinfo": frozenset({"daemon.digest_config"}),   # only for a [digest] timezone other than "UTC"
    "huey": frozenset({"daemon.huey_lean"}),     # huey.storage, imported with its optional clients hidden
}


@dataclass(frozen=True)
class Import:
    """One import statement's edge: `source` imports `target` (line `line`)."""

    source: str
    target: str
    line: int
    in_function: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module `name` refers to (its longest existing prefix), or None."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _with_packages(target: str, source: str, modules: dict[str, Path]) -> list[str]:
    """`target` and the packages above it that importing it runs (their __init__), except
    the packages `source` is inside of (already being imported when `source` runs)."""
    parts = target.split(".")
    parents = [".".join(parts[:i]) for i in range(1, len(parts))]
    return [p for p in parents if p in modules and not (source + ".").startswith(p + ".")] + [target]


def _base_of(node: ast.ImportFrom, source: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    package = source.split(".") if is_package else source.split(".")[:-1]
    package = package[: len(package) - node.level + 1]
    return ".".join(package + ([node.module] if node.module else []))


def _names(node: ast.Import | ast.ImportFrom, source: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = _base_of(node, source, is_package)
    return [f"{base}.{alias.name}" if base else alias.name for alias in node.names]


class _Walker(ast.NodeVisitor):
    def __init__(self) -> None:
        self.depth = 0
        self.found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        self.found.append((node, self.depth > 0))

    visit_ImportFrom = visit_Import


def imports_of(source: str, path: Path, modules: dict[str, Path]) -> tuple[list[Import], list[Import]]:
    """(edges to project modules, function-level imports of third-party modules)."""
    walker = _Walker()
    walker.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    is_package = path.name == "__init__.py"
    edges: list[Import] = []
    foreign: list[Import] = []
    for node, in_function in walker.found:
        for name in _names(node, source, is_package):
            target = _resolve(name, modules)
            if target is not None and target != source:
                edges += [Import(source, t, node.lineno, in_function) for t in _with_packages(target, source, modules)]
            elif target is None and in_function:
                foreign.append(Import(source, name, node.lineno, in_function))
    return list(dict.fromkeys(edges)), list(dict.fromkeys(foreign))


def all_imports() -> tuple[list[Import], list[Import]]:
    modules = project_modules()
    edges: list[Import] = []
    foreign: list[Import] = []
    for name, path in modules.items():
        e, f = imports_of(name, path, modules)
        edges += e
        foreign += f
    return edges, foreign


def _match(module: str, pattern: str) -> bool:
    if pattern.startswith("="):
        return module == pattern[1:]
    return module == pattern or module.startswith(pattern + ".")


def layer_of(module: str) -> int | None:
    """The index into LAYERS of `module`'s layer (most specific pattern wins), or None."""
    best: tuple[int, int] | None = None
    for index, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            if _match(module, pattern) and (best is None or len(pattern) > best[0]):
                best = (len(pattern), index)
    return None if best is None else best[1]


def restriction_of(module: str) -> tuple[str, tuple[str, ...]] | None:
    """(the RESTRICT key, its allowed imports) for `module`, or None."""
    for prefix, allowed in RESTRICT.items():
        if _match(module, prefix):
            return prefix, allowed
    return None


def violations(edges: list[Import]) -> list[tuple[Import, str]]:
    """Edges that point up the layers or leave a restricted layer, with the reason."""
    out: list[tuple[Import, str]] = []
    for edge in edges:
        low, high = layer_of(edge.source), layer_of(edge.target)
        restricted = restriction_of(edge.source)
        if low is None or high is None:
            continue
        if high > low:
            out.append((edge, f"{LAYERS[low][0]} imports {LAYERS[high][0]}"))
        elif restricted and not any(_match(edge.target, a) for a in restricted[1]):
            out.append((edge, f"{restricted[0]} may import only {', '.join(restricted[1])}"))
    return out


def unplaced(modules: list[str]) -> list[str]:
    return [m for m in modules if layer_of(m) is None]


def cycles(edges: list[Import]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), sorted."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def function_level(edges: list[Import]) -> list[Import]:
    return [e for e in edges if e.in_function]


def bad_foreign(foreign: list[Import]) -> list[Import]:
    """Function-level imports of third-party or stdlib modules that are neither OPTIONAL
    nor LAZY in the module that imports them."""
    return [f for f in foreign if f.target.split(".")[0] not in OPTIONAL
            and f.source not in LAZY.get(f.target.split(".")[0], ())]


def _where(edge: Import) -> str:
    path = project_modules()[edge.source].relative_to(REPO)
    return f"{path}:{edge.line}"


def report(show_graph: bool = False) -> int:
    edges, foreign = all_imports()
    problems = 0
    found = cycles(edges)
    print(f"import cycles: {len(found)}")
    for component in found:
        inner = sorted({(e.source, e.target) for e in edges
                        if e.source in component and e.target in component})
        print(f"  cycle of {len(component)}: {' '.join(component)}")
        for source, target in inner:
            print(f"      {source} -> {target}")
    bad = violations(edges)
    print(f"layer violations: {len(bad)}")
    for edge, reason in sorted(bad, key=lambda b: (b[0].source, b[0].line)):
        print(f"  {_where(edge)}: {edge.source} -> {edge.target} ({reason})")
    local = function_level(edges)
    print(f"function-level imports of project modules: {len(local)}")
    for edge in sorted(local, key=lambda e: (e.source, e.line)):
        print(f"  {_where(edge)}: {edge.source} -> {edge.target}")
    other = bad_foreign(foreign)
    print(f"function-level imports of other non-optional modules (stdlib or required): {len(other)}")
    for edge in sorted(other, key=lambda e: (e.source, e.line)):
        print(f"  {_where(edge)}: {edge.target}")
    lost = unplaced(sorted(project_modules()))
    print(f"modules in no layer: {len(lost)}")
    for module in lost:
        print(f"  {module}")
    problems = len(found) + len(bad) + len(local) + len(lost)
    if show_graph:
        print("edges:")
        for source, target in sorted({(e.source, e.target) for e in edges}):
            print(f"  {source} -> {target}")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--graph", action="store_true", help="also print every project edge")
    return report(parser.parse_args(argv).graph)


if __name__ == "__main__":
    sys.exit(main())
