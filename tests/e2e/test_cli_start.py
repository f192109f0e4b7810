"""`helpdesk tickets` and `show` start light on SQLite (issue 16): what they import, and the
light read path (store.quick_read) giving what the store gives. No timing here: the figures
are bench/cli_start.py's; these tests keep the imports that cost the time from coming back."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from daemon import views
from daemon.app import open_store
from daemon.config import load_config
from store import migrate, quick_read, quick_tickets
from tests.conftest import write_site_config
from tests.e2e.helpers import REPO, helpdesk, tickets

# the database layer, the queue and the optional backends a read-only command must not load
HEAVY = ("sqlalchemy", "sqlmodel", "alembic", "huey", "redis", "psycopg", "psycopg2", "jinja2", "dkim",
         "mailparser", "prometheus_client", "yaml", "daemon.app", "store.repo", "store.db")

# what they no longer load either (issue 16, second round): the Config dataclasses (they read
# daemon.config_read's values), the model package, logging (set up when a command leaves the
# light path), the clock, zoneinfo (only for a [digest] zone other than UTC), shutil (argparse's
# help width), importlib.resources (daemon.shipped), every read-side row but TicketRow
LIGHT = ("daemon.config", "daemon.config_sections", "daemon.model", "daemon.clock", "logging", "zoneinfo",
         "shutil", "importlib.resources", "store.records")

# what `show` of an existing ticket (the full read path, through SQLAlchemy) still must not load
QUEUE_AND_BACKENDS = ("huey", "redis", "psycopg", "psycopg2", "jinja2", "dkim", "prometheus_client", "alembic",
                      "daemon.app", "daemon.tasks")

RUN = """
import json, sys
from daemon.cli import main
try:
    rc = main(sys.argv[2:])
except SystemExit as exc:
    rc = exc.code
with open(sys.argv[1], "w") as fh:
    json.dump({"rc": rc, "modules": sorted(sys.modules)}, fh)
"""


def mail(n: int, subject: str) -> bytes:
    return (f"From: user{n}@example.org\nTo: support@example.com\nSubject: {subject}\n"
            f"Message-ID: <m{n}@example.org>\nDate: Mon, 02 Mar 2026 09:0{n}:00 +0000\n\nHelp {n}.\n").encode()


def imported(cfg: Path, *args: str, stdin: bytes | None = None) -> tuple[int, list[str]]:
    """(exit status, sys.modules after it) of `helpdesk --config cfg ARGS` in a fresh interpreter."""
    out = cfg.parent / "modules.json"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("HELPDESK_CONFIG", None)
    proc = subprocess.run([sys.executable, "-c", RUN, str(out), "--config", str(cfg), *args], env=env,
                          input=stdin, capture_output=True, timeout=120, cwd=str(cfg.parent))
    assert proc.stderr in (b"", b"helpdesk: ticket 1 not found\n"), proc.stderr.decode()[-2000:]
    got = json.loads(out.read_text())
    return got["rc"], got["modules"]


def heavy(modules: list[str], names: tuple[str, ...] = HEAVY) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in names)]


def test_tickets_and_show_on_sqlite_load_no_database_layer_queue_or_optional_backend(tmp_path):
    cfg = write_site_config(tmp_path)
    assert helpdesk(cfg, "tickets", check=True).stdout == b"no tickets\n"      # creates the schema (full path)
    for args, status in ((("tickets",), 0), (("tickets", "--json", "--status", "new", "--limit", "5"), 0),
                         (("show", "1"), 1), (("show", "HD-1", "--json"), 1), (("--help",), 0)):
        rc, modules = imported(cfg, *args)
        assert rc == status, args
        assert heavy(modules) == [] and heavy(modules, LIGHT) == [], args
        if args[0] != "--help":
            assert "store.quick_read" in modules, args         # it did take the light path
        if args[0] == "show":                                  # a missing ticket: not one dataclass
            assert "dataclasses" not in modules and "store.ticket_row" not in modules, args


def test_the_check_of_imports_sees_a_heavy_one(tmp_path):
    """The test above could not fail if `imported` missed what a command loads."""
    cfg = write_site_config(tmp_path)
    helpdesk(cfg, "tickets", check=True)
    rc, modules = imported(cfg, "agents")                  # a command that opens the full store
    assert rc == 0 and "sqlalchemy" in heavy(modules) and "store.db" in heavy(modules)
    assert {"daemon.config_sections", "logging", "daemon.model"} <= set(heavy(modules, LIGHT))
    rc, modules = imported(cfg, "tickets", "--queue", "general")   # a queue is checked against the rules
    assert rc == 0 and {"daemon.config_sections", "logging"} <= set(heavy(modules, LIGHT))


def test_the_pipe_hand_off_loads_no_config_dataclass_model_or_pipeline(tmp_path):
    """`helpdesk ingest` from an MTA's pipe with a serve running (here: a stand-in process
    registered as this state directory's serve, which ignores the wake-up signal)."""
    from daemon.processes import ProcessFile
    cfg = write_site_config(tmp_path)
    stand_in = subprocess.Popen([sys.executable, "-c", "import signal, sys; signal.signal(signal.SIGUSR1, "
                                 "signal.SIG_IGN); print('ready', flush=True); sys.stdin.read()"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert stand_in.stdout.readline() == b"ready\n"
        ProcessFile(tmp_path / "state", "serve", "2026-03-02T09:00:00+00:00", pid=stand_in.pid).beat()
        rc, modules = imported(cfg, "ingest", "--sender", "ann@example.org", "--recipient", "support@example.com",
                               stdin=mail(1, "printer"))
    finally:
        stand_in.stdin.close()
        stand_in.wait(timeout=60)
        stand_in.stdout.close()
    assert rc == 0 and len(list((tmp_path / "state" / "spool" / "new").iterdir())) == 1     # handed off
    assert "daemon.handoff" in modules and "daemon.envelope" in modules
    assert heavy(modules) == [] and heavy(modules, LIGHT + ("daemon.pipeline", "daemon.intake.ingest")) == \
        ["logging"]                                        # the spool's logger, only


def test_the_light_path_reads_what_the_store_reads(tmp_path):
    cfg_path = write_site_config(tmp_path)
    for n, subject in enumerate(("Printer jams", "VPN down", "Ünïcode — subject")):
        (tmp_path / f"{n}.eml").write_bytes(mail(n, subject))
    helpdesk(cfg_path, "ingest", "--no-mail", str(tmp_path / "0.eml"), check=True)      # archived_at set
    helpdesk(cfg_path, "ingest", str(tmp_path / "1.eml"), str(tmp_path / "2.eml"), check=True)
    cfg = load_config(str(cfg_path))
    store = open_store(cfg)
    conn = quick_read.open_current(cfg.database_url)
    assert conn is not None
    try:
        every = store.list_tickets()
        assert len(every) == 3 and any(t.archived_at for t in every) and any(t.archived_at is None for t in every)
        queue = every[0].queue
        for filters in ({}, {"status": "new"}, {"status": "closed"}, {"queue": queue}, {"type": every[0].type},
                        {"limit": 2}, {"limit": 0}, {"status": "new", "queue": queue, "limit": 1}):
            assert quick_tickets.list_tickets(conn, **filters) == store.list_tickets(**filters), filters
        assert [quick_read.ticket_exists(conn, t.id) for t in every] == [True] * 3
        assert not quick_read.ticket_exists(conn, max(t.id for t in every) + 1)
    finally:
        conn.close()
        store.engine.dispose()
    for args in (("show", str(every[0].id)), ("show", str(every[0].id), "--json"), ("export",)):
        rc, modules = imported(cfg_path, *args)          # the full path: SQLAlchemy, but no queue, no Alembic
        assert rc == 0 and "sqlalchemy" in modules and heavy(modules, QUEUE_AND_BACKENDS) == [], args
    # and the command prints from the light path what it prints from the store's rows
    prefix = cfg.helpdesk.ticket_prefix
    assert tickets(cfg_path) == [views.ticket_json(t, prefix) for t in every]
    assert helpdesk(cfg_path, "tickets", check=True).stdout.decode() == views.tickets_text(every, prefix) + "\n"
    assert tickets(cfg_path, "--queue", queue, "--limit", "1") == [views.ticket_json(every[0], prefix)]
    assert helpdesk(cfg_path, "tickets", "--queue", "nosuchqueue").returncode == 2
    behind(cfg.database_url)
    assert quick_read.open_current(cfg.database_url) is None


def behind(url: str) -> None:
    """Mark the database one revision behind (the full path then upgrades it)."""
    conn = sqlite3.connect(str(quick_read.sqlite_file(url)))
    with conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (previous_revision(),))
    conn.close()


def previous_revision() -> str:
    text = next(p for p in quick_read.VERSIONS.glob("*.py")
                if f'revision = "{migrate.head_revision()}"' in p.read_text()).read_text()
    return text.split('down_revision = "', 1)[1].split('"', 1)[0]


def test_the_light_path_knows_the_head_alembic_knows_and_steps_aside_otherwise(tmp_path):
    assert quick_read.head_revision() == migrate.head_revision()
    assert quick_read.open_current(f"sqlite:///{tmp_path / 'missing.db'}") is None
    assert not (tmp_path / "missing.db").exists()                # and it created nothing
    assert quick_read.open_current("postgresql://127.0.0.1/test") is None
    assert quick_read.open_current(f"sqlite:///{tmp_path / 'x.db'}?timeout=5") is None
    (tmp_path / "junk.db").write_bytes(b"not a database at all, not even close to one" * 40)
    assert quick_read.open_current(f"sqlite:///{tmp_path / 'junk.db'}") is None
    two_heads = tmp_path / "versions"
    two_heads.mkdir()
    (two_heads / "a.py").write_text('revision = "a"\ndown_revision = None\n')
    (two_heads / "b.py").write_text('revision = "b"\ndown_revision = None\n')
    assert quick_read.head_revision(two_heads) is None
    (two_heads / "b.py").write_text("revision = 'b'\ndown_revision = 'a'\n")
    assert quick_read.head_revision(two_heads) == "b"
