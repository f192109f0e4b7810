"""`helpdesk export --raw` is a backup: `helpdesk import` restores it into an empty database
with tickets, messages, events, attachments (rows and files) and raw mail identical, on
SQLite and PostgreSQL; a non-empty database and a plain export are refused."""
from __future__ import annotations

import base64
import hashlib
import json

from datetime import datetime, timezone

import pytest
from sqlalchemy import text
from sqlmodel import Session

from store import tables as m

from daemon import backup as backup_mod
from daemon.config import load_config
from store.db import make_engine
from tests.conftest import write_site_config
from tests.e2e.helpers import helpdesk
from tests.integration.test_migrate import dump, fill
from tests.integration.test_outbox import close_desk, make_desk, new_mail

SCOPED = ("ticket", "message", "event", "attachment", "participant", "threadkey", "ticketsla", "tickettag",
          "outbox", "outboxrecipient", "rawmessage")
ITIL = ("ticketlink", "knownerror", "problemnotice", "csatsurvey", "changeapproval", "approvalvote")


def fill_itil(engine) -> None:
    """A row in every table of problems, satisfaction and change approval (issue 18):
    HD-1 a problem with a workaround and HD-2 linked to it, its requester told; a survey
    answered on HD-3; HD-4 a change approved by one of two approvers, the other superseded."""
    at = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
    with Session(engine) as s:
        for tid, kind in ((1, "problem"), (4, "change")):
            s.get(m.Ticket, tid).type = kind
        s.add_all([m.TicketLink(ticket_id=2, other_id=1, kind="problem"),
                   m.TicketLink(ticket_id=1, other_id=2, kind="incident"),
                   m.KnownError(ticket_id=1, workaround="Print to floor 2.", set_by="ana@example.com", set_at=at),
                   m.ProblemNotice(problem_id=1, email="ann@example.org", ticket_id=2, sent_at=at),
                   m.CsatSurvey(ticket_id=3, requester="ann@example.org", queue="general", message_id="s1@x",
                                sent_at=at, score=4, comment="quick", answered_at=at, answer_message_id="a1@x"),
                   m.ChangeApproval(ticket_id=4, state="approved", policy="queue general",
                                    plan='{"stages": [{"kind": "cab", "quorum": 1, "approvers": '
                                         '[{"email": "xena@example.com"}, {"email": "yuri@example.com"}]}]}',
                                    stage=1, stage_started_at=at, started_at=at, decided_at=at, version="v1")])
        s.flush()
        s.add_all([m.ApprovalVote(ticket_id=4, stage=1, approver="xena@example.com", status="approved",
                                  requested_at=at, decided_at=at, comment="ok", evidence='["dkim pass"]',
                                  message_id="v1@x"),
                   m.ApprovalVote(ticket_id=4, stage=1, approver="yuri@example.com", status="superseded",
                                  requested_at=at, reminded_at=at, decided_at=at)])
        s.commit()


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
    fill_itil(desk.app.store.engine)
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
    for table in SCOPED + ITIL:
        assert after[table] == before[table], table
    assert all(before[table] for table in ITIL)
    restored = (tmp_path / "b" / "state" / "attachments" / att["sha256"][:2] / att["sha256"]).read_bytes()
    assert restored == (blobs_root / att["sha256"][:2] / att["sha256"]).read_bytes()
    assert hashlib.sha256(restored).hexdigest() == att["sha256"]
    assert _without_sla(_export(target)) == _without_sla(_export(site))
    shown = json.loads(helpdesk(target, "show", "HD-4", "--json", check=True).stdout)
    assert [v["status"] for v in shown["approvals"]["votes"]] == ["approved", "superseded"]
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


@pytest.mark.parametrize("backend,batch", [("sqlite", 1), ("postgresql", 200)])
def test_an_old_backup_with_split_thread_keys_imports_linked(request, tmp_path, monkeypatch, backend, batch):
    """A backup from before revision 0004 may hold one thread key on two tickets (a split
    conversation). Import keeps every message, gives each key to one ticket (the one holding
    the message itself, else the older), links the two tickets and tells the agents in an
    event - whether the two tickets are restored in one batch or in two."""
    src_url, dst_url = _urls(request, backend)
    (tmp_path / "a").mkdir()
    desk = make_desk(tmp_path / "a", src_url)
    desk.mail(new_mail(1, subject="VPN down"))                       # HD-1 holds <m1.ann@example.org>
    desk.mail(new_mail(2, frm="bob@example.org", subject="Printer"))  # HD-2 holds <m2.bob@example.org>
    out: list[str] = []
    backup_mod.export_backup(desk.app.config, desk.store, None, out.append)
    close_desk(desk)
    objs = json.loads("".join(out))
    by_id = {o["id"]: o for o in objs}
    for tid, key in ((2, "m1.ann@example.org"), (1, "m2.bob@example.org"),     # ghosts of the other's message
                     (1, "lost@example.org"), (2, "lost@example.org")):         # both ghosts: the older keeps it
        by_id[tid]["backup"]["rows"]["threadkey"].append({"key": key, "ticket_id": tid, "ghost": True})
    for o in objs:
        o["backup"]["revision"] = "0003_message_search"
    old = tmp_path / "old.json"
    old.write_text("[\n" + ",\n".join(json.dumps(o) for o in objs) + "\n]\n")

    monkeypatch.setattr(backup_mod, "BATCH", batch)
    (tmp_path / "b").mkdir()
    cfg = load_config(str(write_site_config(tmp_path / "b", db_url=dst_url)))
    summary = backup_mod.import_backup(cfg, str(old))
    assert "imported 2 ticket(s), 2 message(s)" in summary and "1 pair(s) of tickets" in summary
    engine = make_engine(dst_url or f"sqlite:///{tmp_path / 'b' / 'state' / 'helpdesk.db'}")
    with engine.connect() as c:
        owners = dict(c.execute(text("SELECT key, ticket_id FROM threadkey")).all())
        links = set(c.execute(text("SELECT ticket_id, other_id FROM ticketlink WHERE kind = 'related'")).all())
        events = c.execute(text("SELECT ticket_id, detail FROM event WHERE kind = 'linked' ORDER BY ticket_id")).all()
        messages = c.execute(text("SELECT message_id, ticket_id FROM message ORDER BY id")).all()
    engine.dispose()
    assert owners["m1.ann@example.org"] == 1 and owners["m2.bob@example.org"] == 2 and owners["lost@example.org"] == 1
    assert links == {(1, 2), (2, 1)}
    assert [t for t, _ in events] == [1, 2]
    assert all("split conversation, found on import" in json.loads(d)["why"] for _, d in events)
    assert [tuple(r) for r in messages] == [("m1.ann@example.org", 1), ("m2.bob@example.org", 2)]
