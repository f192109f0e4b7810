"""`helpdesk check` refuses an agent's address as an intake mailbox, and our own address as
an agent's (reliability case 57): either makes notifications come back as tickets."""
from __future__ import annotations

from daemon.check import check
from daemon.config import load_config
from tests.conftest import write_site_config

IMAP = """
[[imap]]
name = "{name}"
host = "127.0.0.1"
security = "none"
username = "{user}"
password_env = "NOPE"
"""


def problems(tmp_path, extra: str) -> list[str]:
    return check(load_config(str(write_site_config(tmp_path, extra))))[0]


def test_agent_mailbox_polled_as_intake_is_refused(tmp_path):
    found = problems(tmp_path, IMAP.format(name="support", user="support@example.com")
                     + IMAP.format(name="ana", user="Ana@Example.com"))
    assert len(found) == 1
    assert "imap[1].username: Ana@Example.com is the address of an agent" in found[0]
    assert found[0].startswith(str(tmp_path / "site.toml") + ":1:")


def test_agent_address_as_smtp_recipient_is_refused(tmp_path):
    cfg = write_site_config(tmp_path)
    cfg.write_text(cfg.read_text().replace('domains = ["example.com", "helpdesk.test"]\n',
                                           'domains = ["example.com", "helpdesk.test"]\n'
                                           'recipients = ["support@example.com", "ana@example.com"]\n'))
    [found] = check(load_config(str(cfg)))[0]
    assert "smtp.recipients: ana@example.com is the address of an agent" in found


def test_our_own_address_as_an_agent_is_refused(tmp_path):
    cfg = write_site_config(tmp_path)
    cfg.write_text(cfg.read_text().replace('address = "support@example.com"', 'address = "ana@example.com"'))
    [found] = check(load_config(str(cfg)))[0]
    assert "helpdesk.address: ana@example.com is the address of an agent" in found


def test_ordinary_intake_passes(tmp_path):
    assert problems(tmp_path, IMAP.format(name="support", user="support@example.com")) == []
