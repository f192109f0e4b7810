"""SMTP intake over real loopback sockets: policy, durability and hostile clients."""
from __future__ import annotations

import os
import smtplib
import socket
import threading

import pytest

from daemon.intake.smtp import IntakeController, IntakeHandler
from daemon.spool import Spool
from tests.conftest import free_port
from tests.integration.intake_helpers import entries, raw_session

MSG = b"From: ann@example.org\r\nTo: support@example.com\r\nSubject: printer\r\nMessage-ID: <p1@example.org>\r\n\r\nIt jams.\r\n"


@pytest.fixture
def intake(tmp_path):
    spool = Spool(tmp_path / "spool").ensure()
    stored = []
    handler = IntakeHandler(spool, ("example.com",), max_recipients=5, on_stored=stored.append)
    port = free_port()
    ctl = IntakeController(handler, "127.0.0.1", port, max_message_bytes=10_000, per_ip=3, timeout=5)
    ctl.start()
    ctl.spool, ctl.port, ctl.stored = spool, port, stored
    yield ctl
    ctl.stop()


def client(intake) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", intake.port, timeout=5)


def test_accepts_for_our_domain_and_stores_exact_bytes(intake):
    with client(intake) as c:
        refused = c.sendmail("ann@example.org", ["support@example.com"], MSG)
    assert refused == {}
    [(env, raw)] = entries(intake.spool)
    assert raw == MSG
    assert env.mail_from == "ann@example.org" and env.rcpt_to == ("support@example.com",)
    assert env.source == "smtp" and env.peer == "127.0.0.1"
    assert len(intake.stored) == 1


def test_foreign_domain_is_550_and_nothing_stored(intake):
    with client(intake) as c:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as err:
            c.sendmail("a@x.test", ["victim@elsewhere.test"], MSG)
    code, text = err.value.recipients["victim@elsewhere.test"]
    assert code == 550 and b"5.7.1" in text
    assert entries(intake.spool) == []


def test_mixed_recipients_store_once_with_accepted_only(intake):
    with client(intake) as c:
        refused = c.sendmail("a@x.test", ["support@example.com", "x@evil.test", "help@EXAMPLE.com"], MSG)
    assert set(refused) == {"x@evil.test"}
    [(env, _)] = entries(intake.spool)
    assert env.rcpt_to == ("support@example.com", "help@EXAMPLE.com")


def test_null_sender_is_recorded(intake):
    with client(intake) as c:
        c.sendmail("<>", ["support@example.com"], MSG)
    [(env, _)] = entries(intake.spool)
    assert env.mail_from == ""


def test_size_announced_and_enforced_at_mail(intake):
    with client(intake) as c:
        c.ehlo()
        assert c.has_extn("size") and int(c.esmtp_features["size"]) == 10_000
        code, text = c.mail("a@x.test", ["SIZE=20000"])
    assert code == 552
    assert entries(intake.spool) == []


def test_oversize_without_size_is_552_after_data(intake):
    big = MSG + (b"y" * 70 + b"\r\n") * 300
    replies = raw_session(intake.port, b"HELO x\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<support@example.com>\r\n"
                                        b"DATA\r\n" + big + b".\r\nQUIT\r\n")
    assert b"\r\n552 " in replies
    assert entries(intake.spool) == []


def test_spool_failure_is_451_without_internals(intake):
    intake.spool.new = intake.spool.root / "missing-dir"     # a real failure: rename has no target
    with client(intake) as c:
        with pytest.raises(smtplib.SMTPDataError) as err:
            c.sendmail("a@x.test", ["support@example.com"], MSG)
    assert err.value.smtp_code == 451
    text = err.value.smtp_error.decode()
    assert text.startswith("4.3.0") and "Error" not in text and "Traceback" not in text
    assert os.listdir(intake.spool.tmp) == []


def test_smtp_smuggling_yields_one_message(intake):
    body = (b"Subject: one\r\n\r\nhello\n.\nMAIL FROM:<ceo@example.com>\r\nRCPT TO:<support@example.com>\r\n"
            b"DATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n")
    replies = raw_session(intake.port, b"EHLO x\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<support@example.com>\r\n"
                                        b"DATA\r\n" + body + b"QUIT\r\n")
    got = entries(intake.spool)
    assert len(got) == 1, replies
    assert b"smuggled" in got[0][1]          # content preserved inside the one message


def test_line_too_long_is_rejected_and_nothing_stored(intake):
    replies = raw_session(intake.port, b"EHLO x\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<support@example.com>\r\n"
                                        b"DATA\r\nSubject: x\r\n\r\n" + b"a" * 2000 + b"\r\n.\r\nQUIT\r\n")
    assert b"500 Line too long" in replies or b"552" in replies
    assert entries(intake.spool) == []


def test_disconnect_mid_data_stores_nothing(intake):
    s = socket.create_connection(("127.0.0.1", intake.port), timeout=30)
    s.recv(1024)
    s.sendall(b"EHLO x\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<support@example.com>\r\nDATA\r\n")
    replies = b""
    while b"354 " not in replies:                  # barrier: the server is inside DATA
        replies += s.recv(1024) or pytest.fail(f"closed before DATA: {replies!r}")
    s.sendall(b"Subject: half\r\n\r\npart")
    s.shutdown(socket.SHUT_WR)                      # the client goes away mid-DATA
    while s.recv(1024):                             # barrier: the server handled that and closed its end
        pass
    s.close()
    assert entries(intake.spool) == [] and os.listdir(intake.spool.tmp) == []


def test_per_ip_connection_cap_and_others_still_served(intake):
    held = [client(intake) for _ in range(3)]
    try:
        s = socket.create_connection(("127.0.0.1", intake.port), timeout=5)
        assert s.recv(1024).startswith(b"421 4.7.0")
        s.close()
    finally:
        for c in held:
            c.quit()
    with client(intake) as c:                     # capacity comes back
        assert c.sendmail("a@x.test", ["support@example.com"], MSG) == {}


def test_shutdown_answers_421_to_new_sessions(intake):
    intake.gate.closing = True
    s = socket.create_connection(("127.0.0.1", intake.port), timeout=5)
    assert s.recv(1024).startswith(b"421 4.3.2")
    s.close()


def test_too_many_recipients(intake):
    with client(intake) as c:
        c.ehlo()
        c.mail("a@x.test")
        codes = [c.rcpt(f"u{i}@example.com")[0] for i in range(7)]
    assert codes[:5] == [250] * 5 and codes[5:] == [452, 452]


def test_slow_storage_answers_451_within_the_budget(intake):
    import threading
    gate = threading.Event()
    real_open = intake.spool.open_entry
    intake.handler.data_budget = 0.3

    def slow_open(env):                       # DATA streams into an entry; its commit hangs
        entry = real_open(env)
        real_commit = entry.commit
        entry.commit = lambda: (gate.wait(5), real_commit())[1]   # longer than the DATA budget
        return entry
    intake.spool.open_entry = slow_open
    try:
        with client(intake) as c:
            with pytest.raises(smtplib.SMTPDataError) as err:
                c.sendmail("a@x.test", ["support@example.com"], MSG)
        assert err.value.smtp_code == 451 and b"slow" in err.value.smtp_error
    finally:
        gate.set()


def test_durability_knobs_of_the_embedded_database(app):
    from sqlalchemy import text
    with app.store.engine.connect() as c:
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert c.execute(text("PRAGMA synchronous")).scalar() == 2          # FULL


def test_spool_fsyncs_file_and_directory_before_returning(tmp_path, monkeypatch):
    calls, me = [], threading.get_ident()
    real_fsync, real_rename = os.fsync, os.rename
    monkeypatch.setattr(os, "fsync", lambda fd: (threading.get_ident() == me and calls.append("fsync"),
                                                 real_fsync(fd))[1])
    monkeypatch.setattr(os, "rename", lambda a, b: (threading.get_ident() == me and calls.append("rename"),
                                                    real_rename(a, b))[1])
    spool = Spool(tmp_path / "s").ensure()
    from daemon.model import Envelope
    spool.put(b"x", Envelope("a@x", ("b@example.com",)))
    assert calls == ["fsync", "rename", "fsync"]     # file data, then commit by rename, then the directory


def test_spool_batch_is_synced_once_before_any_entry_is_committed(tmp_path, monkeypatch):
    """put_many (imports): every file written, one syncfs, then the renames, then the
    directory; no entry is visible in new/ before its bytes are durable."""
    import daemon.spool as spool_mod
    if spool_mod._SYNCFS is None:
        pytest.skip("no syncfs(2) on this platform: put_many fsyncs each file (covered above)")
    calls, me = [], threading.get_ident()           # only this thread's calls (a daemon thread may sync too)
    real_fsync, real_rename, real_syncfs = os.fsync, os.rename, spool_mod._SYNCFS

    def record(name, real):
        return lambda *a: (threading.get_ident() == me and calls.append(name), real(*a))[1]
    monkeypatch.setattr(os, "fsync", record("fsync", real_fsync))
    monkeypatch.setattr(os, "rename", record("rename", real_rename))
    monkeypatch.setattr(spool_mod, "_SYNCFS", record("syncfs", real_syncfs))
    spool = Spool(tmp_path / "s").ensure()
    from daemon.model import Envelope
    bases = spool.put_many([(b"x%d" % i, Envelope(None, (), "ingest")) for i in range(3)])
    assert calls == ["syncfs", "rename", "rename", "rename", "fsync"]
    assert sorted(p.name.rsplit(".a", 1)[0] for p in spool.new.iterdir()) == sorted(bases)


def test_spool_batch_reports_a_failed_sync_and_commits_nothing(tmp_path, monkeypatch):
    import errno
    import daemon.spool as spool_mod
    if spool_mod._SYNCFS is None:
        pytest.skip("no syncfs(2) on this platform")
    monkeypatch.setattr(spool_mod, "_SYNCFS", lambda fd: -1)
    monkeypatch.setattr(spool_mod.ctypes, "get_errno", lambda: errno.EIO)
    spool = Spool(tmp_path / "s").ensure()
    from daemon.errors import SpoolError
    from daemon.model import Envelope
    with pytest.raises(SpoolError, match="Input/output error"):
        spool.put_many([(b"x%d" % i, Envelope(None, (), "ingest")) for i in range(3)])
    assert list(spool.new.iterdir()) == [] and list(spool.tmp.iterdir()) == []
