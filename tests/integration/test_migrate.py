"""Schema migrations (store/migrate.py, Alembic) on SQLite and PostgreSQL: a database made by
the version before migrations, filled through the real pipeline, upgrades with every row
kept; the migrations build exactly the models' schema; PostgreSQL behind is refused until
`helpdesk db upgrade`; two first starts at once on an empty PostgreSQL database both start."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic import command
from sqlalchemy import MetaData, select, text
from sqlalchemy.exc import IntegrityError

from daemon.cli import main
from store import migrate
from store.search import is_search_table
from store.db import create_schema, make_engine
from tests.conftest import REPO, TEST_KEY_ENV
from tests.integration.test_outbox import close_desk, make_desk, new_mail, reply_to

LEGACY = Path(__file__).parent / "legacy_schema"
# Columns later migrations add to the legacy tables: the desk that fills a legacy database
# runs today's code, which writes them; `to_legacy` drops them again after the filling.
ADDED_COLUMNS = {"ticket": ("archived_at",)}     # 0006_ticket_archived_at


def legacy_create_schema(engine) -> None:
    """create_schema as it was before migrations: its tables (frozen DDL) and version 1,
    with ADDED_COLUMNS for today's code to fill it (`to_legacy` takes them out)."""
    with engine.begin() as c:
        if "ticket" in c.dialect.get_table_names(c):
            return
        body = "\n".join(line for line in (LEGACY / f"{engine.dialect.name}.sql").read_text().splitlines()
                         if not line.startswith("--"))
        for stmt in filter(None, (s.strip() for s in re.split(r"^;$", body, flags=re.M))):
            c.exec_driver_sql(stmt)
        c.execute(text("INSERT INTO schemainfo (key, value) VALUES ('version', '1')"))
        kind = "TIMESTAMP WITH TIME ZONE" if engine.dialect.name == "postgresql" else "DATETIME"
        for table, columns in ADDED_COLUMNS.items():
            for column in columns:
                c.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def to_legacy(engine) -> None:
    """Drop the columns later migrations add: the filled database is the legacy one."""
    with engine.begin() as c:
        for table, columns in ADDED_COLUMNS.items():
            for column in columns:
                c.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN {column}")


def without_added(rows: dict[str, list[tuple]], engine) -> dict[str, list[tuple]]:
    """`dump` rows with ADDED_COLUMNS left out (they are NULL after the upgrade: asserted)."""
    md = MetaData()
    md.reflect(engine)
    out = dict(rows)
    for table, columns in ADDED_COLUMNS.items():
        names = [c.name for c in md.tables[table].columns]
        drop = [names.index(c) for c in columns]
        assert all(row[i] is None for row in rows[table] for i in drop)
        out[table] = sorted((tuple(v for i, v in enumerate(row) if i not in drop) for row in rows[table]), key=repr)
    return out


def attachment_mail(n: int) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "Bob <bob@example.org>", "support@example.com", f"screenshot {n}"
    msg["Message-ID"] = f"<att{n}.bob@example.org>"
    msg.set_content("The error is in the attached screenshot.")
    msg.add_attachment(bytes(range(256)) * 40 + bytes([n]), maintype="image", subtype="png", filename=f"err{n}.png")
    return msg.as_bytes()


def fill(desk) -> None:
    """Tickets, replies, attachments, acknowledgements in the outbox and SLA timers: the real path."""
    for n in range(1, 5):
        assert desk.mail(new_mail(n, subject=f"Printer {n} jams")).outcome == "created"
    for n in range(3):
        assert desk.mail(reply_to("m1.ann@example.org", n)).outcome == "appended"
    assert desk.mail(attachment_mail(1)).outcome == "created"


def dump(engine) -> dict[str, list[tuple]]:
    """Every row of every table of the models, sorted (schemainfo apart: its version moves).
    A table the database does not have yet (added by a later migration) has no rows: []."""
    md = MetaData()
    md.reflect(engine)
    out = {}
    with engine.connect() as c:
        for name in sorted(migrate.metadata().tables):
            if name != "schemainfo":
                out[name] = sorted((tuple(r) for r in c.execute(select(md.tables[name]))), key=repr) \
                    if name in md.tables else []
    return out


def counts(rows: dict[str, list]) -> dict[str, int]:
    return {name: len(v) for name, v in rows.items() if v}


@pytest.fixture(params=["sqlite", "postgresql"])
def legacy(request, tmp_path, monkeypatch):
    """A desk on a database made by the last version before migrations, filled, then closed."""
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
    monkeypatch.setattr("daemon.stores.create_schema", legacy_create_schema)
    monkeypatch.setattr("store.search.index_message", lambda *a, **kw: None)   # that version had no index
    desk = make_desk(tmp_path, url)
    fill(desk)
    engine_url = str(desk.app.store.engine.url.render_as_string(hide_password=False))
    close_desk(desk)
    engine = make_engine(engine_url)
    to_legacy(engine)
    engine.dispose()
    monkeypatch.undo()
    return request.param, engine_url, tmp_path / "site.toml"


def test_a_database_from_before_migrations_upgrades_with_everything_kept(legacy, capsys):
    backend, url, site = legacy
    engine = make_engine(url)
    before = dump(engine)
    figures = counts(before)
    assert figures["ticket"] == 5 and figures["message"] == 8 and figures["attachment"] == 1
    assert figures["outbox"] >= 5 and figures["ticketsla"] == 5 and figures["event"] >= 8
    assert main(["--config", str(site), "db", "current", "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == {"current": None, "head": migrate.head_revision(),
                                                   "up_to_date": False}
    if backend == "postgresql":
        with pytest.raises(migrate.SchemaError, match=r"helpdesk db upgrade"):
            create_schema(engine)                                   # serve/worker/ingest at start
        assert main(["--config", str(site), "db", "upgrade"]) == 0
    else:
        create_schema(engine)                                       # SQLite: upgraded at start
        backup = Path(engine.url.database + ".bak-unversioned")
        assert backup.is_file()
        assert counts(dump(make_engine(f"sqlite:///{backup}"))) == figures
    after = without_added(dump(engine), engine)
    print(f"\n{backend}: before {figures}\n{backend}: after  {counts(after)}")
    assert {k: v for k, v in after.items() if k in before} == before and not set(after) - set(before) - {"nodebeat"}
    assert migrate.schema_state(engine).up_to_date
    with engine.connect() as c:
        assert c.execute(text("SELECT value FROM schemainfo WHERE key = 'version'")).scalar() == "2"
    assert main(["--config", str(site), "db", "current"]) == 0
    engine.dispose()


def test_the_upgraded_database_still_threads_replies_into_old_tickets(legacy, tmp_path):
    backend, url, _site = legacy
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    desk = make_desk(tmp_path, "" if backend == "sqlite" else url)
    try:
        outcome = desk.mail(reply_to("m2.ann@example.org", 50))
        assert outcome.ticket_id == 2 and outcome.outcome == "appended"
        assert len(desk.store.list_tickets()) == 5
    finally:
        close_desk(desk)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path):
    return request.getfixturevalue("pg_url") if request.param == "postgresql" else f"sqlite:///{tmp_path}/hd.db"


def test_the_migrations_build_exactly_the_models_schema(empty_url):
    engine = make_engine(empty_url)
    before, after, backup = migrate.upgrade(engine)
    assert before.empty and after.up_to_date and backup is None
    with engine.connect() as c:
        skip = lambda name, kind, _parent: not (kind == "table" and is_search_table(name))  # noqa: E731
        diffs = compare_metadata(MigrationContext.configure(c, opts={"compare_type": True, "include_name": skip}),
                                 migrate.metadata())
    engine.dispose()
    assert diffs == [], ("the models differ from the migrated schema: write a migration "
                         "(python -m store.migrate revision 'what changes')")


def test_a_database_from_a_newer_helpdeskd_is_refused(empty_url):
    engine = make_engine(empty_url)
    create_schema(engine)
    with engine.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(migrate.SchemaError, match="newer than this helpdeskd"):
        create_schema(engine)
    engine.dispose()


def test_postgresql_behind_is_refused_by_ingest_naming_db_upgrade(pg_url, tmp_path, capsys):
    engine = make_engine(pg_url)
    legacy_create_schema(engine)
    engine.dispose()
    site = tmp_path / "site.toml"
    site.write_text(f'[helpdesk]\nstate_dir = "st"\nkey_env = "{TEST_KEY_ENV}"\n[database]\nurl = "{pg_url}"\n')
    mail = tmp_path / "m.eml"
    mail.write_bytes(new_mail(1))
    assert main(["--config", str(site), "ingest", "--quiet", "--no-mail", str(mail)]) == 1
    err = capsys.readouterr().err
    assert "helpdesk db upgrade" in err and "Traceback" not in err


START = ("import sys; from daemon.cli import main; sys.exit(main(['--config', sys.argv[1], 'ingest', "
         "'--quiet', '--no-mail', sys.argv[2]]))")


def test_two_first_starts_at_once_on_an_empty_postgresql_database_both_start(pg_url, tmp_path):
    """Both processes find the database empty and queue for the schema lock (held here until
    both wait on it); the first creates the schema, the second finds it done. Both store."""
    site = tmp_path / "site.toml"
    site.write_text(f'[helpdesk]\nstate_dir = "st"\nkey_env = "{TEST_KEY_ENV}"\n[database]\nurl = "{pg_url}"\n')
    mails = []
    for n in (1, 2):
        mails.append(tmp_path / f"m{n}.eml")
        mails[-1].write_bytes(new_mail(n, subject=f"case {n}"))
    engine = make_engine(pg_url)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": migrate.PG_LOCK_KEY})
        holder.commit()
        procs = [subprocess.Popen([sys.executable, "-c", START, str(site), str(m)], env=env, cwd=str(tmp_path),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for m in mails]
        waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        deadline = time.monotonic() + 120
        while holder.execute(text(waiting)).scalar() < 2:
            holder.commit()
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            assert time.monotonic() < deadline, "the two starts never queued for the schema lock"
            time.sleep(0.05)
        holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": migrate.PG_LOCK_KEY})
        holder.commit()
    results = [(p.returncode, out.decode() + err.decode()) for p in procs for out, err in [p.communicate(timeout=120)]]
    assert [rc for rc, _ in results] == [0, 0], results
    assert migrate.schema_state(engine).up_to_date
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM ticket")).scalar() == 2
    engine.dispose()


def test_a_database_from_before_the_sla_tables_gets_them_and_keeps_its_rows(tmp_path, monkeypatch):
    """History only added tables: a database made before store/sla_store.py lacks them; the
    baseline adds what is missing and leaves the rest alone."""
    monkeypatch.setattr("daemon.stores.create_schema", legacy_create_schema)
    monkeypatch.setattr("store.search.index_message", lambda *a, **kw: None)   # that version had no index
    desk = make_desk(tmp_path)
    fill(desk)
    engine = desk.app.store.engine
    close_desk(desk)
    to_legacy(engine)
    with engine.begin() as c:
        for table in ("slafired", "ticketsla", "slacursor"):
            c.exec_driver_sql(f"DROP TABLE {table}")
    kept = _dump_present(engine)
    create_schema(engine)
    after = without_added(dump(engine), engine)
    assert all(after[name] == rows for name, rows in kept.items())
    assert after["ticketsla"] == [] and migrate.schema_state(engine).up_to_date
    engine.dispose()


def _dump_present(engine) -> dict[str, list[tuple]]:
    md = MetaData()
    md.reflect(engine)
    with engine.connect() as c:
        return {name: sorted((tuple(r) for r in c.execute(select(t))), key=repr)
                for name, t in md.tables.items() if name != "schemainfo"}


def test_a_split_conversation_from_before_0004_is_kept_once_and_linked(empty_url):
    """Two tickets holding one thread key (a split made before keys had one owner): the upgrade
    keeps the key with the ticket holding the real message, links both tickets, and from then on
    the key is unique."""
    engine = make_engine(empty_url)
    with engine.connect() as conn:
        command.upgrade(migrate.alembic_config(conn), "0003_message_search")
        conn.commit()
    now = "2026-03-02 09:30:00"
    with engine.begin() as c:
        for tid in (1, 2):
            c.execute(text("INSERT INTO ticket (id, subject, type, status, priority, queue, requester, created_at, "
                           "updated_at, message_count, rules_version) VALUES (:i, 's', 'incident', 'new', 'P3', "
                           "'general', 'ann@example.org', :now, :now, 1, '')"), {"i": tid, "now": now})
        c.execute(text("INSERT INTO threadkey (key, ticket_id, ghost) VALUES "
                       "('p@x.test', 2, false), ('p@x.test', 1, true), ('r@x.test', 1, false)"))
    migrate.upgrade(engine)
    with engine.connect() as c:
        keys = sorted(c.execute(text("SELECT key, ticket_id FROM threadkey")).all())
        links = sorted(c.execute(text("SELECT ticket_id, other_id FROM ticketlink WHERE kind = 'related'")).all())
        events = c.execute(text("SELECT ticket_id, detail FROM event WHERE kind = 'linked'")).all()
    assert keys == [("p@x.test", 2), ("r@x.test", 1)] and links == [(1, 2), (2, 1)]
    assert len(events) == 2 and all("p@x.test" in d for _, d in events)
    with pytest.raises(IntegrityError), engine.begin() as c:
        c.execute(text("INSERT INTO threadkey (key, ticket_id, ghost) VALUES ('r@x.test', 2, true)"))
    engine.dispose()
