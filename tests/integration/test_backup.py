"""`helpdesk export --raw` is a backup: `helpdesk import` restores it into an empty database
with tickets, messages, events, attachments (rows and files) and raw mail identical, on
SQLite and PostgreSQL; a non-empty database and a plain export are refused."""
from __future__ import annotations

import base64
import hashlib
import json

import pytest
from sqlalchemy import text

from store.db import make_engine
from tests.conftest import write_site_config
from tests.e2e.helpers import helpdesk
from tests.integration.test_migrate import dump, fill
from tests.integration.test_outbox import close_desk, make_desk

SCOPED = ("ticket", "message", "event", "attachment", "participant", "threadkey", "ticketsla", "tickettag",
          "outbox", "outboxrecipient", "rawmessage")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request):
    return request.param


def _urls(request, backend):
    if backend == "sqlite":
        return "", ""
    return request.getfixturevalue("pg_url"), request.getfixturevalue("second_pg_url")


def _export(site, *extra) -> str:
    return helpdesk(site, "export", *extra, check=True).stdout.decode()


def _without_sla(export: str) -> list[dict]:
    objs = json.loads(export)
    for o in objs:
        o.pop("sla")
    return objs


def test_export_raw_round_trips_through_import(request, backend, tmp_path):
    src_url, dst_url = _urls(request, backend)
    (tmp_path / "a").mkdir()
    desk = make_desk(tmp_path / "a", src_url)
    fill(desk)
    blobs_root = desk.app.store.blobs.root
    src_engine = desk.app.store.engine
    close_desk(desk)
    site = tmp_path / "a" / "site.toml"
    backup_text = _export(site, "--raw")
    objs = json.loads(backup_text)
    assert len(objs) == 5
    with_att = next(o for o in objs if o["messages"][0]["attachments"])
    att = with_att["messages"][0]["attachments"][0]
    raw = base64.b64decode(with_att["messages"][0]["raw"])
    assert b"screenshot 1" in raw and len(att["sha256"]) == 64
    (tmp_path / "backup.json").write_text(backup_text)

    (tmp_path / "b").mkdir()
    target = write_site_config(tmp_path / "b", db_url=dst_url)
    restore = helpdesk(target, "import", str(tmp_path / "backup.json"), check=True)
    assert "imported 5 ticket(s), 8 message(s), 1 attachment file(s)" in restore.stdout.decode()

    dst_engine = make_engine(dst_url or f"sqlite:///{tmp_path / 'b' / 'state' / 'helpdesk.db'}")
    before, after = dump(src_engine), dump(dst_engine)
    for table in SCOPED:
        assert after[table] == before[table], table
    restored = (tmp_path / "b" / "state" / "attachments" / att["sha256"][:2] / att["sha256"]).read_bytes()
    assert restored == (blobs_root / att["sha256"][:2] / att["sha256"]).read_bytes()
    assert hashlib.sha256(restored).hexdigest() == att["sha256"]
    assert _without_sla(_export(target)) == _without_sla(_export(site))
    with dst_engine.connect() as c:                    # new rows get new ids after the restored ones
        top = c.execute(text("SELECT max(id) FROM ticket")).scalar()
    dst_engine.dispose()
    src_engine.dispose()
    mail = tmp_path / "new.eml"
    mail.write_bytes(b"From: zoe@example.org\r\nTo: support@example.com\r\nSubject: after restore\r\n"
                     b"Message-ID: <after@example.org>\r\n\r\nhello\r\n")
    helpdesk(target, "ingest", "--quiet", "--no-mail", str(mail), check=True)
    listed = json.loads(helpdesk(target, "tickets", "--json", check=True).stdout)
    assert max(t["id"] for t in listed) == top + 1

    again = helpdesk(target, "import", str(tmp_path / "backup.json"))
    assert again.returncode == 1 and "not empty" in again.stderr.decode()


def test_import_refuses_a_plain_export(tmp_path):
    desk = make_desk(tmp_path)
    fill(desk)
    close_desk(desk)
    plain = tmp_path / "plain.json"
    plain.write_text(_export(tmp_path / "site.toml"))
    (tmp_path / "b").mkdir()
    target = write_site_config(tmp_path / "b")
    refused = helpdesk(target, "import", str(plain))
    err = refused.stderr.decode()
    assert refused.returncode == 1, err
    assert "has no backup rows" in err and "export --raw" in err and "plain.json:2" in err
