"""A full attachment volume (a real, small tmpfs mounted on `<state_dir>/attachments`) is
not the message's fault: the mail waits in the spool uncounted, no partial `.tmp` file is
left behind, and it is stored once space returns (reliability case 23)."""
from __future__ import annotations

import os
import subprocess
from email.message import EmailMessage

import pytest

from daemon.errors import StorageFull, StoreUnavailable
from daemon.model import Envelope
from store.blobs import Blobs
from tests.conftest import missing


class Volume:
    """A small tmpfs mounted on `path`; `grow()` remounts it bigger (space returns)."""

    def __init__(self, path):
        self.path = path

    def grow(self, size: str = "16m") -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)


@pytest.fixture
def small_volume(tmp_path):
    where = tmp_path / "vol"
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        missing(f"cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): {proc.stderr.strip()}")
    try:
        yield Volume(where)
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def leftovers(root) -> list[str]:
    return [n for _, _, files in os.walk(root) for n in files if n.endswith(".tmp")]


def test_blob_put_on_a_full_volume_raises_storage_full_and_leaves_no_tmp(small_volume):
    blobs = Blobs(small_volume.path)
    with pytest.raises(StorageFull) as err:
        blobs.put(os.urandom(600_000))                  # more than the whole volume
    assert isinstance(err.value, StoreUnavailable)    # the worker's "not counted, kept" path
    assert "full" in str(err.value)
    assert leftovers(small_volume.path) == []
    small_volume.grow()
    data = os.urandom(600_000)
    digest = blobs.put(data)
    assert blobs.get(digest) == data and leftovers(small_volume.path) == []


def mail_with_attachment() -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "ann@example.org", "support@example.com", "scan attached"
    m["Message-ID"] = "<full-disk@example.org>"
    m.set_content("Please see the scan.\n")
    m.add_attachment(os.urandom(400_000), maintype="application", subtype="pdf", filename="scan.pdf")
    return m.as_bytes()


def test_mail_waits_uncounted_while_attachments_are_full_then_is_stored_once(app, small_volume):
    app.store.blobs = Blobs(small_volume.path)
    app.spool.put(mail_with_attachment(), Envelope("ann@example.org", ("support@example.com",), "smtp"))
    for _ in range(5):                                   # more tries than max_attempts would allow
        app.worker._not_before.clear()
        assert app.worker.run_once().kind == "retry"
    [name] = os.listdir(app.spool.new)                   # still waiting, attempt count never raised
    assert name.endswith(".a0")
    assert app.store.counts()["messages"] == 0 and app.store.quarantine_count() == 0
    assert leftovers(small_volume.path) == []
    assert app.worker.stats["retry"] == 5
    small_volume.grow()                                   # space returns
    app.worker._not_before.clear()
    assert app.worker.run_once().kind == "stored"
    assert app.store.counts() == {"tickets": 1, "messages": 1}
    assert os.listdir(app.spool.new) == [] and leftovers(small_volume.path) == []
    assert app.store.quarantine_count() == 0


def test_smtp_intake_on_a_full_spool_answers_452_and_leaves_no_tmp(small_volume):
    import smtplib

    from daemon.intake.smtp import IntakeController, IntakeHandler
    from daemon.spool import Spool
    from tests.conftest import free_port
    spool = Spool(small_volume.path / "spool").ensure()
    ctl = IntakeController(IntakeHandler(spool, ("example.com",)), "127.0.0.1", free_port(),
                           max_message_bytes=2_000_000, timeout=10)
    ctl.start()
    raw = b"Subject: big\r\n\r\n" + (b"z" * 76 + b"\r\n") * 6000          # ~470 KB on a 256 KiB volume
    try:
        with smtplib.SMTP("127.0.0.1", ctl.port, timeout=10) as c:
            with pytest.raises(smtplib.SMTPDataError) as err:
                c.sendmail("a@x.test", ["support@example.com"], raw)
        assert err.value.smtp_code == 452 and err.value.smtp_error.startswith(b"4.3.1")
        assert os.listdir(spool.tmp) == [] and os.listdir(spool.new) == []
        small_volume.grow()                                               # space returns: the retry is taken
        with smtplib.SMTP("127.0.0.1", ctl.port, timeout=10) as c:
            assert c.sendmail("a@x.test", ["support@example.com"], raw) == {}
        assert len(os.listdir(spool.new)) == 1 and os.listdir(spool.tmp) == []
    finally:
        ctl.stop()
