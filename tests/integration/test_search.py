"""Full-text search (store.search) on SQLite FTS5 and PostgreSQL: a message is indexed in the
transaction that stores it (customer mail and agent answers), tickets come newest first
with a snippet, the user's punctuation is never query syntax, and a database made before
the index existed is filled once at start."""
from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import text

from daemon.cli import main
from daemon.desk_cli import Act, perform
from store import migrate
from store.db import create_schema
from store.search import search
from tests.integration.test_outbox import close_desk, make_desk, new_mail


@pytest.fixture(params=["sqlite", "postgresql"])
def desk(request, tmp_path):
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
    d = make_desk(tmp_path, url)
    yield d
    close_desk(d)


def fill(d) -> None:
    d.mail(new_mail(1, subject="VPN drops every hour"))
    d.clock.advance(minutes=5)
    d.mail(new_mail(2, frm="bob@example.org", subject="Printer on floor 3"))
    d.clock.advance(minutes=5)
    d.mail(new_mail(3, frm="cy@example.org", subject="Müller's laptop: VPN-client crashes"))
    d.clock.advance(minutes=5)
    perform(d.app, Act(2, "ana@example.com", (), "Please send the printer's serial number."))


def test_subject_and_text_match_newest_first_with_a_snippet(desk):
    fill(desk)
    hits = search(desk.store.engine, "vpn")
    assert [h.ticket_id for h in hits] == [3, 1]
    assert "[VPN]" in hits[0].snippet or "[vpn]" in hits[0].snippet.lower()
    assert [h.ticket_id for h in search(desk.store.engine, "jams every page")] == [3, 2, 1]
    assert [h.ticket_id for h in search(desk.store.engine, "serial")] == [2]        # the agent's answer
    assert "[serial]" in search(desk.store.engine, "serial")[0].snippet
    assert [h.ticket_id for h in search(desk.store.engine, "vpn crashes")] == [3]    # every word must match
    assert [h.ticket_id for h in search(desk.store.engine, "jams", limit=1)] == [3]


def test_punctuation_and_operators_are_words_not_syntax(desk):
    fill(desk)
    for q in ('VPN-client"', "vpn OR printer", "NEAR(vpn", "'; drop table ticket; --", "*", "müller's"):
        search(desk.store.engine, q)                     # never raises
    assert [h.ticket_id for h in search(desk.store.engine, "müller's")] == [3]
    assert search(desk.store.engine, "vpn OR printer") == []     # OR is a word here
    assert search(desk.store.engine, "  ") == []


LATER_TABLES = ("csatsurvey", "problemnotice", "knownerror")     # 0004_problems_csat


def before_index(engine, table: str) -> None:
    """Make the desk's database one from before the index (revision 0002): without the
    index and without the tables later revisions add."""
    with engine.begin() as c:
        c.execute(text(f"DROP TABLE {table}"))
        for later in LATER_TABLES:
            c.execute(text(f"DROP TABLE IF EXISTS {later}"))
        c.execute(text("UPDATE alembic_version SET version_num = '0002_schemainfo_v2'"))


def upgrade_at_start(engine) -> None:
    """What a start does: SQLite is upgraded by create_schema; PostgreSQL by `helpdesk db upgrade`."""
    if engine.dialect.name == "postgresql":
        migrate.upgrade(engine)
    else:
        create_schema(engine)


def test_an_older_database_is_indexed_once_at_start(desk):
    fill(desk)
    engine = desk.store.engine
    table = "message_search" if engine.dialect.name == "postgresql" else "message_fts"
    before_index(engine, table)
    upgrade_at_start(engine)
    upgrade_at_start(engine)                         # up to date now: no second copy
    assert [h.ticket_id for h in search(engine, "vpn")] == [3, 1]
    with engine.connect() as c:
        assert c.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 4


def test_search_command(desk, tmp_path, capsys):
    fill(desk)
    site = ["--config", str(tmp_path / "site.toml")]
    assert main(site + ["search", "printer", "--json"]) == 0
    [hit] = json.loads(capsys.readouterr().out)
    assert (hit["ref"], hit["subject"]) == ("HD-2", "Printer on floor 3") and "[" in hit["snippet"]
    assert main(site + ["search", "nothing-like-this"]) == 0
    assert capsys.readouterr().out.strip() == "no tickets match"
    assert main(site + ["search", "vpn", "--limit", "0"]) == 2


def test_two_processes_starting_at_once_on_an_older_database_both_start(desk):
    fill(desk)
    engine = desk.store.engine
    table = "message_search" if engine.dialect.name == "postgresql" else "message_fts"
    before_index(engine, table)
    errors: list = []

    def start() -> None:
        try:
            upgrade_at_start(engine)
        except Exception as exc:                 # noqa: BLE001 - collected for the assertion
            errors.append(exc)
    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with engine.connect() as c:
        assert c.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 4
