"""A node's health is visible to the others (issue 14): every serve/worker records a heartbeat
in the shared database; `helpdesk status` on any node lists every node with its spool depth
and last seen, and alerts (exit 1, saying why) when a node with mail in its spool has been
silent longer than `[health] node_silent_seconds`. Time moves by the test clock."""
from __future__ import annotations

import json

from daemon.app import open_store
from daemon.cli import main
from daemon.clock import build_clock, write_offset
from daemon.config import load_config
from daemon.node_beat import Heart
from tests.conftest import write_site_config


def node(tmp_path, name: str, db_url: str, clock_file) -> object:
    (tmp_path / name).mkdir()
    return write_site_config(tmp_path / name, f'[health]\nnode = "{name}"\nnode_silent_seconds = 30\n'
                                              f'[debug]\nclock_file = "{clock_file}"\n', db_url=db_url)


def status(site, capsys) -> tuple[int, dict, str]:
    code = main(["--config", str(site), "status", "--json"])
    out = capsys.readouterr()
    return code, json.loads(out.out), out.err


def test_status_on_any_node_lists_every_node_and_alerts_on_a_silent_one_with_mail(tmp_path, pg_url, capsys):
    clock_file = tmp_path / "clock"
    write_offset(clock_file, 0)
    a, b = node(tmp_path, "node-a", pg_url, clock_file), node(tmp_path, "node-b", pg_url, clock_file)
    cfg_a, cfg_b = load_config(str(a)), load_config(str(b))
    store = open_store(cfg_a)
    serve_a = Heart(store.engine, cfg_a, "serve", build_clock(cfg_a))
    worker_b = Heart(store.engine, cfg_b, "worker", build_clock(cfg_b))
    serve_a.beat(3)                                    # node-a holds 3 messages in its spool
    worker_b.beat(0)

    _, snap, _ = status(b, capsys)                     # asked on node-b
    seen = {(n["node"], n["kind"]): n for n in snap["nodes"]}
    assert set(seen) == {("node-a", "serve"), ("node-b", "worker")}
    assert seen[("node-a", "serve")]["spool_depth"] == 3 and not seen[("node-a", "serve")]["alert"]
    assert not any("node-a" in p for p in snap["problems"])

    write_offset(clock_file, 31)                       # node-a silent 31 s, with mail in its spool
    worker_b.beat(0)
    code, snap, err = status(b, capsys)
    assert code == 1
    why = [p for p in snap["problems"] if "node node-a" in p]
    assert len(why) == 1 and "3 message(s) in its spool" in why[0] and "node_silent_seconds" in why[0]
    assert "node node-a" in err and not any("node-b" in p for p in snap["problems"])

    write_offset(clock_file, 120)                      # node-b silent too, but its spool is empty
    serve_a.beat(0)                                    # node-a is back and drained its spool
    _, snap, _ = status(a, capsys)
    assert not any(p.startswith("node ") for p in snap["problems"])
    assert {n["node"]: n["silent_seconds"] >= 89 for n in snap["nodes"]} == {"node-a": False, "node-b": True}
    main(["--config", str(a), "status"])
    text = capsys.readouterr().out
    assert "node node-a (serve" in text and "node node-b (worker" in text and "spool 0" in text
    store.engine.dispose()
