"""The `helpdesk` commands as users run them: ingest, tickets, show, export, quarantine, check."""
from __future__ import annotations

import hashlib
import json
import mailbox

from tests.conftest import write_site_config
from tests.e2e.helpers import helpdesk, show, tickets

FIRST = (b"From: Ann Example <ann@example.org>\nTo: support@example.com\nSubject: Printer on 3rd floor jams\n"
         b"Message-ID: <first@example.org>\nDate: Mon, 02 Mar 2026 09:00:00 +0000\n\nIt jams on every page.\n")
REPLY = (b"From: ann@example.org\nTo: support@example.com\nSubject: RE: Printer on 3rd floor jams\n"
         b"Message-ID: <second@example.org>\nIn-Reply-To: <first@example.org>\n"
         b"References: <first@example.org>\n\nStill jamming.\n\nOn Mon, Ann wrote:\n> It jams on every page.\n")
OTHER = (b"From: bob@example.org\nTo: support@example.com\nSubject: VPN down\nMessage-ID: <vpn@example.org>\n\n"
         b"Cannot connect.\n")


def test_ingest_files_thread_and_show(tmp_path):
    cfg = write_site_config(tmp_path)
    (tmp_path / "a.eml").write_bytes(FIRST)
    (tmp_path / "b.eml").write_bytes(REPLY)
    assert helpdesk(cfg, "ingest", str(tmp_path / "a.eml"), str(tmp_path / "b.eml")).returncode == 0
    [t] = tickets(cfg)
    assert t["ref"] == f"HD-{t['id']}" and t["message_count"] == 2 and t["status"] == "new"
    for key in ("id", "ref", "subject", "type", "status", "priority", "queue", "requester",
                "created_at", "updated_at", "message_count"):
        assert key in t
    assert t["created_at"].endswith("+00:00") and t["requester"] == "ann@example.org"
    d = show(cfg, t["ref"])
    assert [m["message_id"] for m in d["messages"]] == ["first@example.org", "second@example.org"]
    m2 = d["messages"][1]
    assert m2["direction"] == "in" and m2["visibility"] == "public" and "in-reply-to" in m2["thread_evidence"]
    assert m2["text"].strip() == "Still jamming."                 # quoted history stripped
    assert "It jams on every page." in d["messages"][0]["text"]
    assert {"response_due", "resolution_due", "responded_at", "breached"} <= set(d["sla"])     # + clocks detail
    assert d["sla"]["response_due"] and d["sla"]["breached"] == [] and d["sla"]["clocks"]
    assert show(cfg, str(t["id"]))["id"] == t["id"]
    text = helpdesk(cfg, "show", t["ref"], check=True).stdout.decode()
    assert "Printer on 3rd floor jams" in text


def test_ingest_is_idempotent_across_paths(tmp_path):
    cfg = write_site_config(tmp_path)
    (tmp_path / "a.eml").write_bytes(FIRST)
    helpdesk(cfg, "ingest", str(tmp_path / "a.eml"), check=True)
    # the same mail again through the MTA pipe, with a Received and Delivered-To line added
    piped = b"Received: from mx by us; Mon, 2 Mar 2026 09:00:01 +0000\nDelivered-To: support@example.com\n" + FIRST
    assert helpdesk(cfg, "ingest", input=piped).returncode == 0
    assert helpdesk(cfg, "ingest", "-", input=FIRST).returncode == 0
    [t] = tickets(cfg)
    assert t["message_count"] == 1


def test_mbox_maildir_and_stdin(tmp_path):
    cfg = write_site_config(tmp_path)
    mb = mailbox.mbox(str(tmp_path / "in.mbox"))
    for raw in (FIRST, REPLY, OTHER):
        mb.add(raw)
    mb.close()
    md = mailbox.Maildir(str(tmp_path / "Maildir"))
    md.add(OTHER.replace(b"vpn@", b"vpn2@"))
    assert helpdesk(cfg, "ingest", str(tmp_path / "in.mbox"), str(tmp_path / "Maildir")).returncode == 0
    rows = tickets(cfg)
    assert sorted(r["message_count"] for r in rows) == [1, 1, 2]
    assert [r["subject"] for r in tickets(cfg, "--status", "new")][0] == "VPN down"  # newest first
    assert tickets(cfg, "--status", "closed") == []


def test_export_streams_every_ticket(tmp_path):
    cfg = write_site_config(tmp_path)
    (tmp_path / "a.eml").write_bytes(FIRST)
    (tmp_path / "c.eml").write_bytes(OTHER)
    helpdesk(cfg, "ingest", str(tmp_path / "a.eml"), str(tmp_path / "c.eml"), check=True)
    data = json.loads(helpdesk(cfg, "export", check=True).stdout)
    assert [d["subject"] for d in data] == ["Printer on 3rd floor jams", "VPN down"]
    assert all({"messages", "events", "sla"} <= set(d) for d in data)
    assert json.loads(helpdesk(cfg, "export", "--since", "2999-01-01", check=True).stdout) == []
    assert helpdesk(cfg, "export", "--since", "yesterday").returncode == 2


def test_quarantine_list_show_release(tmp_path, corpus):
    cfg = write_site_config(tmp_path)
    msg_file = corpus / "weird" / "mail-parser" / "mail_outlook_1.msg"
    assert helpdesk(cfg, "ingest", str(msg_file)).returncode == 0        # kept, so ingest succeeded
    assert tickets(cfg) == []
    rows = json.loads(helpdesk(cfg, "quarantine", "list", "--json", check=True).stdout)
    assert len(rows) == 1 and rows[0]["stage"] == "parse" and rows[0]["reason"] == "not_mail"
    qid = str(rows[0]["id"])
    assert json.loads(helpdesk(cfg, "quarantine", "show", qid, "--json", check=True).stdout)["id"] == rows[0]["id"]
    assert helpdesk(cfg, "quarantine", "show", qid, "--raw", check=True).stdout == msg_file.read_bytes()
    again = helpdesk(cfg, "quarantine", "release", qid)
    assert again.returncode == 1 and b"still fails" in again.stderr
    assert helpdesk(cfg, "quarantine", "show", "999").returncode == 1
    assert helpdesk(cfg, "quarantine", "release").returncode == 2


def test_exit_codes_and_clear_errors(tmp_path):
    cfg = write_site_config(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text("[smtp]\nprot = 25\n")
    r = helpdesk(bad, "tickets")
    assert r.returncode == 1 and b"smtp.prot: unknown key" in r.stderr and b"Traceback" not in r.stderr
    assert helpdesk(cfg, "show", "XX-1").returncode == 2
    assert helpdesk(cfg, "nonsense").returncode == 2
    r = helpdesk(cfg, "show", "HD-999")
    assert r.returncode == 1 and b"ticket 999 not found" in r.stderr
    r = helpdesk(cfg, "ingest", str(tmp_path / "missing.eml"))
    assert r.returncode == 1 and b"missing.eml" in r.stderr


def test_database_down_is_tempfail_for_the_mta(tmp_path):
    from tests.conftest import free_port
    cfg = write_site_config(tmp_path, db_url=f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none")
    r = helpdesk(cfg, "ingest", input=FIRST)
    assert r.returncode == 75, r.stderr
    assert b"Traceback" not in r.stderr


def test_check_reports_every_problem_with_file_and_line(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "broken.yaml").write_text("rules:\n  - name: a\n    name: b\n")
    (rules / "syntax.yaml").write_text("rules: [\n")
    tpl = tmp_path / "templates"
    tpl.mkdir()
    (tpl / "ack.txt.j2").write_text("Hello {{ name\n")
    cfg = write_site_config(tmp_path, '[paths]\nrules = "rules"\ntemplates = "templates"\n')
    r = helpdesk(cfg, "check")
    err = r.stderr.decode()
    assert r.returncode == 1
    assert "broken.yaml:3:" in err and "duplicate key" in err
    assert "syntax.yaml:" in err and "ack.txt.j2:1:" in err
    (tmp_path / "ok").mkdir()
    ok = write_site_config(tmp_path / "ok")                  # the repo's own rules and templates
    assert helpdesk(ok, "check").returncode == 0


def test_big_import_is_parsed_ahead_by_a_helper_and_threads_exactly_as_one_process(tmp_path):
    """A big import (over BIG_IMPORT_BYTES): a forked helper parses each batch while this
    process stores the one before; every reply lands in its root's ticket, once, exactly as
    with one process; mail that is not mail is quarantined by way of the helper too."""
    from daemon.intake.parallel import BIG_IMPORT_BYTES
    box = mailbox.mbox(str(tmp_path / "big.mbox"))
    pad = "lorem ipsum dolor sit amet " * 200                # ~5 KB bodies: 450 of them > 2 MB
    for turn in range(3):                              # 150 conversations x 3 messages, interleaved
        for t in range(150):
            mid = f"t{t}-m{turn}@example.org"
            refs = " ".join(f"<t{t}-m{k}@example.org>" for k in range(turn))
            head = f"From: u{t}@example.org\nTo: support@example.com\nMessage-ID: <{mid}>\n"
            if turn:
                head += f"In-Reply-To: <t{t}-m{turn - 1}@example.org>\nReferences: {refs}\nSubject: Re: case {t}\n"
            else:
                head += f"Subject: case {t}\n"
            box.add((head + f"\nmessage {turn} of case {t}\n{pad}\n").encode())
    box.add(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600)        # an Outlook .msg, not mail
    box.close()
    assert (tmp_path / "big.mbox").stat().st_size > BIG_IMPORT_BYTES
    results = {}
    for processes in (2, 1):
        site = tmp_path / f"p{processes}"
        site.mkdir()
        cfg = write_site_config(site, f"ingest_processes = {processes}\n")      # goes into its [worker]
        r = helpdesk(cfg, "ingest", "--no-mail", str(tmp_path / "big.mbox"))
        assert r.returncode == 0, r.stderr
        assert ("helper process(es) parse ahead" in r.stderr.decode()) == (processes == 2)
        rows = tickets(cfg)
        assert len(rows) == 150 and {t["message_count"] for t in rows} == {3}
        assert {t["subject"] for t in rows} == {f"case {t}" for t in range(150)}    # roots opened them
        q = helpdesk(cfg, "quarantine", "list", "--json")
        held = json.loads(q.stdout)
        assert [e["reason"] for e in held] == ["not_mail"], held
        results[processes] = sorted((t["id"], t["subject"], t["message_count"]) for t in rows)
    assert results[2] == results[1]

def test_show_full_gives_each_message_its_original_text_and_raw_mail(tmp_path):
    """The stored reply is stripped; `show --full` shows what the sender sent, unstripped,
    with the sha256 and size of the raw mail the desk keeps (issue 15)."""
    cfg = write_site_config(tmp_path)
    (tmp_path / "a.eml").write_bytes(FIRST)
    (tmp_path / "b.eml").write_bytes(REPLY)
    helpdesk(cfg, "ingest", str(tmp_path / "a.eml"), str(tmp_path / "b.eml"), check=True)
    [t] = tickets(cfg)
    plain = helpdesk(cfg, "show", t["ref"], check=True).stdout.decode()
    assert "On Mon, Ann wrote:" not in plain
    full = helpdesk(cfg, "show", t["ref"], "--full", check=True).stdout.decode()
    for raw in (FIRST, REPLY):
        assert f"[raw mail] sha256 {hashlib.sha256(raw).hexdigest()} ({len(raw)} bytes)" in full
    assert "    Still jamming.\n    \n    On Mon, Ann wrote:\n    > It jams on every page." in full
    d = json.loads(helpdesk(cfg, "show", t["ref"], "--full", "--json", check=True).stdout)
    reply = d["messages"][1]
    assert reply["text"].strip() == "Still jamming."
    assert reply["original_text"] == "Still jamming.\n\nOn Mon, Ann wrote:\n> It jams on every page.\n"
    assert reply["raw_sha256"] == hashlib.sha256(REPLY).hexdigest() and reply["raw_size"] == len(REPLY)
    assert reply["original_problem"] is None
    assert "original_text" not in show(cfg, t["ref"])["messages"][1]  # plain --json unchanged
