"""An archive import end to end (issue 15, archive dates): `helpdesk ingest --no-mail` of an
mbox of old mail dates every ticket and message by the mail's own date (checked against its
Received chain; an absurd one falls back to the import time), the SLA clocks run from that
date, and a real `helpdesk serve` started afterwards fires no escalation that was due before
the import - no mail storm - while a level due after the import fires as usual.

Nothing waits for a deadline: the CLI and the daemon read a test clock (`[debug]
clock_file`) that the test moves. The barriers are later escalations, never sleeps: the
recent archived ticket's escalation arriving shows the daemon's SLA sweep has planned every
imported ticket (its first pass plans all of them) and left the old one alone.
"""
from __future__ import annotations

import json
import mailbox
import shutil
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

from daemon.app import open_store
from daemon.config import load_config
from tests.conftest import REPO
from tests.e2e.helpers import Daemon, helpdesk, show, tickets, wait_for
from tests.e2e.test_ack import site
from tests.e2e.test_sla import SLA, escalations, move_to, now, sink  # noqa: F401  (sink: the relay fixture)

UTC = timezone.utc
OLD = (b"Received: from mx.example.org by mail.desk.test; Tue, 05 Mar 2024 09:00:07 +0000\n"
       b"From: Ann Example <ann@example.org>\nTo: support@example.com\nSubject: Old printer jams\n"
       b"Message-ID: <old-1@example.org>\nDate: Tue, 05 Mar 2024 10:00:00 +0100\n\nIt jams on every page.\n")
OLD_REPLY = (b"From: Ann Example <ann@example.org>\nTo: support@example.com\nSubject: Re: Old printer jams\n"
             b"Message-ID: <old-2@example.org>\nIn-Reply-To: <old-1@example.org>\n"
             b"Date: Wed, 06 Mar 2024 08:30:00 +0000\n\nStill jamming.\n")


def recent(sent: datetime) -> bytes:
    return (b"From: Bob Example <bob@example.org>\nTo: support@example.com\nSubject: Scanner is slow\n"
            b"Message-ID: <recent@example.org>\nDate: " + format_datetime(sent).encode() + b"\n\nVery slow.\n")


ABSURD = (b"From: Cy Example <cy@example.org>\nTo: support@example.com\nSubject: Badge reader\n"
          b"Message-ID: <absurd@example.org>\nDate: Fri, 01 Jan 2100 00:00:00 +0000\n\nIt beeps.\n")


def by_subject(cfg) -> dict[str, dict]:
    return {t["subject"]: t for t in tickets(cfg)}


def test_an_archive_is_dated_by_its_mail_and_fires_no_past_escalation(tmp_path, sink):  # noqa: F811
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    (rules / "sla.yaml").write_text(SLA)
    cfg = site(tmp_path, sink.port, '\n[paths]\nrules = "rules"\n[debug]\nclock_file = "clock"\n')
    start = now(cfg).replace(microsecond=0)
    sent = start - timedelta(minutes=10)
    box = mailbox.mbox(str(tmp_path / "archive.mbox"))
    for raw in (OLD, OLD_REPLY, recent(sent), ABSURD):
        box.add(raw)
    box.close()
    assert helpdesk(cfg, "ingest", "--no-mail", str(tmp_path / "archive.mbox")).returncode == 0
    imported = now(cfg)
    got = by_subject(cfg)
    old = show(cfg, got["Old printer jams"]["ref"])
    assert old["created_at"] == "2024-03-05T09:00:00+00:00"             # the Date, in UTC
    assert old["updated_at"] == "2024-03-06T08:30:00+00:00"             # the reply's Date, not the import
    assert [m["received_at"] for m in old["messages"]] == ["2024-03-05T09:00:00+00:00", "2024-03-06T08:30:00+00:00"]
    assert all(e["at"].startswith("2024-03-0") for e in old["events"])
    created = next(e for e in old["events"] if e["kind"] == "created")
    assert start <= datetime.fromisoformat(created["detail"]["archived"]["imported_at"]) <= imported
    assert old["sla"]["response_due"] == "2024-03-05T10:00:00+00:00"    # the clock ran from the mail's date
    assert old["sla"]["breached"] == ["first_response", "resolution"] and old["sla"]["escalations"] == []
    scan = show(cfg, got["Scanner is slow"]["ref"])
    assert datetime.fromisoformat(scan["created_at"]) == sent
    due = datetime.fromisoformat(scan["sla"]["response_due"])
    assert due == sent + timedelta(hours=1)
    badge = show(cfg, got["Badge reader"]["ref"])                       # absurd Date: the import time
    assert start <= datetime.fromisoformat(badge["created_at"]) <= imported
    badge_due = datetime.fromisoformat(badge["sla"]["response_due"])
    assert sink.handler.messages == []                                  # --no-mail: nothing was sent
    daemon = Daemon(cfg).start()
    try:
        move_to(cfg, due + timedelta(minutes=2))                        # the recent one is due, the badge not yet
        assert due + timedelta(minutes=2) < badge_due
        wait_for(lambda: escalations(sink), timeout=20)
        move_to(cfg, badge_due + timedelta(minutes=2))                  # a level due after the import fires
        wait_for(lambda: len(escalations(sink)) >= 2, timeout=20)
        refs = [ref for _, ref, _ in escalations(sink)]
        assert refs == [got["Scanner is slow"]["ref"], got["Badge reader"]["ref"]]   # never the old ticket
        assert len(sink.handler.messages) == 2                          # no acknowledgement, no storm
    finally:
        daemon.kill()
    old = show(cfg, got["Old printer jams"]["ref"])["sla"]
    assert old["escalations"] == [] and old["breached"] == ["first_response", "resolution"]
    assert json.loads(helpdesk(cfg, "show", got["Scanner is slow"]["ref"], "--json", check=True).stdout)[
        "sla"]["escalations"][0]["key"] == "standard:first_response:breached"


NEW = (b"Received: from mx.example.org by mail.desk.test; Mon, 02 Mar 2026 09:00:07 +0000\n"
       b"From: Dee Example <dee@example.org>\nTo: support@example.com\nSubject: Monitor flickers\n"
       b"Message-ID: <new-1@example.org>\nDate: Mon, 02 Mar 2026 09:00:00 +0000\n\nIt flickers.\n")


def outbox_kinds(cfg, ticket: int) -> list[str]:
    store = open_store(load_config(str(cfg)))
    try:
        return [row.kind for row in store.outbox.rows(ticket_id=ticket)]
    finally:
        store.engine.dispose()


def test_a_mail_quarantined_in_an_archive_import_is_released_as_the_import_would_store_it(
        tmp_path, sink):  # noqa: F811
    """`quarantine release` of a mail an archive import quarantined: dated by its own Date,
    no acknowledgement to its old sender, no past escalation; a mail quarantined by an
    ordinary ingest is still acknowledged when released."""
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    (rules / "sla.yaml").write_text(SLA)
    extra = '\n[paths]\nrules = "rules"\n[debug]\nclock_file = "clock"\n'
    cfg = site(tmp_path, sink.port, extra + "[limits]\nmax_headers = 5\n")   # OLD and NEW have 6
    start = now(cfg).replace(microsecond=0)
    sent = start - timedelta(minutes=10)
    box = mailbox.mbox(str(tmp_path / "archive.mbox"))
    for raw in (OLD, recent(sent)):
        box.add(raw)
    box.close()
    assert helpdesk(cfg, "ingest", "--no-mail", str(tmp_path / "archive.mbox")).returncode == 0
    (tmp_path / "new.eml").write_bytes(NEW)
    assert helpdesk(cfg, "ingest", str(tmp_path / "new.eml")).returncode == 0
    held = json.loads(helpdesk(cfg, "quarantine", "list", "--json", check=True).stdout)
    assert sorted(q["reason"] for q in held) == ["too_many_headers"] * 2
    assert list(by_subject(cfg)) == ["Scanner is slow"]
    qid = {q["envelope"]["source"]: str(q["id"]) for q in held}
    assert set(qid) == {"archive", "ingest"}

    cfg = site(tmp_path, sink.port, extra)                              # the limit lifted
    released = helpdesk(cfg, "quarantine", "release", qid["archive"], check=True)
    assert b"created" in released.stdout
    helpdesk(cfg, "quarantine", "release", qid["ingest"], check=True)
    got = by_subject(cfg)
    old = show(cfg, got["Old printer jams"]["ref"])
    assert old["created_at"] == "2024-03-05T09:00:00+00:00"             # its own Date, not the release
    assert [m["received_at"] for m in old["messages"]] == ["2024-03-05T09:00:00+00:00"]
    created = next(e for e in old["events"] if e["kind"] == "created")
    assert "imported_at" in created["detail"]["archived"]
    assert old["sla"]["breached"] == ["first_response", "resolution"] and old["sla"]["escalations"] == []
    assert outbox_kinds(cfg, old["id"]) == []                           # no mail planned at all
    assert "ack" in outbox_kinds(cfg, got["Monitor flickers"]["id"])    # an ordinary release acks

    due = datetime.fromisoformat(show(cfg, got["Scanner is slow"]["ref"])["sla"]["response_due"])
    daemon = Daemon(cfg).start()
    try:
        move_to(cfg, due + timedelta(minutes=2))
        wait_for(lambda: escalations(sink), timeout=20)                 # the sweep has run over all
        assert [ref for _, ref, _ in escalations(sink)] == [got["Scanner is slow"]["ref"]]
        wait_for(lambda: any("dee@example.org" in rcpts for _, rcpts, _ in sink.handler.messages),
                 timeout=20)                                            # the ordinary ack went out
        assert not [r for _, r, _ in sink.handler.messages if "ann@example.org" in r]
    finally:
        daemon.kill()
    assert show(cfg, got["Old printer jams"]["ref"])["sla"]["escalations"] == []
