"""The layers only point down: no import cycles, no layer violations, no function-level
imports of project modules (bench/layers.py prints the same; its LAYERS say the order).

One deliberate exception: the command-line dispatcher (daemon.cli) imports each command's
modules inside that command, so a command pays only for what it runs - a pipe delivery from
the MTA must hand the message to the running daemon's spool without loading the pipeline,
the database layer or the queue, and `tickets`/`show` must start fast (issues 13 and 16).
It is a dispatcher, not a layer: it may import any layer, lazily, and nothing imports it.
"""
from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_layers", REPO / "bench" / "layers.py")
layers = sys.modules["bench_layers"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(layers)

DISPATCHER = "daemon.cli"
# Function-level imports of required (not optional) third-party or stdlib modules: (importer, module).
FOREIGN_ALLOWLIST = {("daemon.cli", "logging"), ("daemon.cli", "traceback"),     # the dispatcher, lazily
                     ("daemon.cli", "pathlib.Path"), ("daemon.cli", "sqlite3")}

EDGES, FOREIGN = layers.all_imports()
CHECKED = [e for e in EDGES if e.source != DISPATCHER]


def show(edges) -> list[str]:
    return [f"{e.source} -> {e.target} (line {e.line})" for e in edges]


def test_no_import_cycles():
    assert layers.cycles(CHECKED) == []


def test_no_layer_violations():
    assert [f"{e.source} -> {e.target}: {why}" for e, why in layers.violations(CHECKED)] == []


def test_no_function_level_imports_of_project_modules():
    assert show(layers.function_level(CHECKED)) == []


def test_function_level_imports_only_for_optional_dependencies():
    found = {(f.source, f.target) for f in layers.bad_foreign(FOREIGN)}
    assert found == FOREIGN_ALLOWLIST


def test_every_module_has_a_layer():
    assert layers.unplaced(sorted(layers.project_modules())) == []


def test_the_dispatcher_is_imported_by_nobody():
    assert sorted(e.source for e in EDGES if e.target == DISPATCHER and e.source != "daemon.__main__") == []


def test_the_pure_pipeline_and_the_store_import_only_what_they_may():
    for edge in EDGES:
        if edge.source.startswith("daemon.pipeline"):
            assert edge.target.startswith(("daemon.pipeline", "daemon.model", "daemon.errors", "daemon.clock")), edge
        if edge.source.startswith("store") and edge.target.startswith("daemon") and edge.target != "daemon":
            assert edge.target.startswith(("daemon.model", "daemon.errors", "daemon.clock")), edge


def test_the_checker_counts_type_checking_and_function_level_imports(tmp_path):
    path = tmp_path / "mod.py"
    path.write_text(textwrap.dedent("""\
        from typing import TYPE_CHECKING
        from daemon import model
        if TYPE_CHECKING:
            from daemon.app import build_app
        def f():
            import psycopg
            from store.tables import Ticket
            from . import spool
    """))
    modules = {"daemon": REPO / "daemon/__init__.py", "daemon.model": REPO / "daemon/model/__init__.py",
               "daemon.app": REPO / "daemon/app.py", "store.tables": REPO / "store/tables.py",
               "daemon.spool": REPO / "daemon/spool.py", "daemon.x": path}
    edges, foreign = layers.imports_of("daemon.x", path, modules)
    assert [(e.target, e.line, e.in_function) for e in edges] == [
        ("daemon.model", 2, False), ("daemon.app", 4, False), ("store.tables", 7, True), ("daemon.spool", 8, True)]
    assert [f.target for f in foreign] == ["psycopg"] and layers.bad_foreign(foreign) == []


def test_a_lazy_dependency_is_allowed_only_in_the_module_named_for_it(tmp_path):
    path = tmp_path / "mod.py"
    path.write_text("def f():\n    from alembic import command\n    import yaml\n")
    modules = {"store.migrate": path, "store.other": path}
    _, in_migrate = layers.imports_of("store.migrate", path, modules)
    _, elsewhere = layers.imports_of("store.other", path, modules)
    assert [f.target for f in layers.bad_foreign(in_migrate)] == ["yaml"]
    assert [f.target for f in layers.bad_foreign(elsewhere)] == ["alembic.command", "yaml"]


def test_the_checker_finds_cycles_and_upward_edges():
    Import = layers.Import
    edges = [Import("daemon.pipeline.a", "daemon.app", 1, False), Import("daemon.app", "daemon.pipeline.a", 1, False),
             Import("store.x", "daemon.config", 1, False)]
    assert layers.cycles(edges) == [["daemon.app", "daemon.pipeline.a"]]
    assert [why for _, why in layers.violations(edges)] == [
        "pipeline imports root", "store may import only store, =daemon, daemon.model, daemon.errors, daemon.clock"]
