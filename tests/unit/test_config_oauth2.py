"""The OAuth 2.0 keys of [[imap]] and [outbound] (CONTRACT "Mailboxes with OAuth 2.0")."""
from __future__ import annotations

import pytest

from daemon.config import load_config
from daemon.errors import ConfigError
from daemon.mailer import relay_settings
from daemon.oauth2_login import oauth2_accounts
from tests.unit.test_config import site

IMAP = """[[imap]]
name = "support"
host = "outlook.office365.com"
username = "support@example.com"
auth = "oauth2"
oauth2_token_url = "https://login.microsoftonline.com/t/oauth2/v2.0/token"
oauth2_client_id = "app"
oauth2_scope = "https://outlook.office365.com/IMAP.AccessAsUser.All offline_access"
oauth2_refresh_token_credential = "imap-rt"
"""
OUTBOUND = """[outbound]
host = "smtp.office365.com"
port = 587
security = "starttls"
username = "support@example.com"
auth = "oauth2"
oauth2_token_url = "https://oauth2.googleapis.com/token"
oauth2_client_id = "app"
oauth2_client_secret_env = "HD_SECRET"
"""


def test_defaults_are_password_auth(tmp_path):
    cfg = load_config(site(tmp_path, ""))
    assert cfg.outbound.auth == "password" and cfg.outbound.oauth2_token_url == ""


def test_imap_and_outbound_oauth2_keys(tmp_path):
    cfg = load_config(site(tmp_path, OUTBOUND + "\n" + IMAP))
    acct = cfg.imap[0]
    assert (acct.auth, acct.oauth2_client_id, acct.oauth2_refresh_token_credential) == ("oauth2", "app", "imap-rt")
    assert cfg.outbound.auth == "oauth2" and cfg.outbound.oauth2_client_secret_env == "HD_SECRET"
    accounts = oauth2_accounts(cfg)
    assert sorted(accounts) == ["outbound", "support"]
    assert accounts["support"].oauth2_device_url == "https://login.microsoftonline.com/t/oauth2/v2.0/devicecode"
    assert accounts["outbound"].oauth2_device_url == "https://oauth2.googleapis.com/device/code"
    relay = relay_settings(cfg, environ={})                  # no password read with oauth2
    assert relay.auth == "oauth2" and relay.password == "" and relay.oauth2.key == "outbound"


@pytest.mark.parametrize("text, needle", [
    (IMAP.replace('auth = "oauth2"', 'auth = "kerberos"'), "imap[0].auth: must be password or oauth2"),
    (IMAP.replace('oauth2_client_id = "app"\n', ""), "imap[0].oauth2_client_id: required when auth"),
    (IMAP.replace("https://login", "http://login"), "imap[0].oauth2_token_url: plain http is refused"),
    (IMAP.replace('oauth2_token_url = "https://login.microsoftonline.com/t/oauth2/v2.0/token"',
                  'oauth2_token_url = "login.example"'), "imap[0].oauth2_token_url: not an http(s) URL"),
    (IMAP + 'oauth2_scopes = "x"\n', "imap[0].oauth2_scopes: unknown key"),
    (OUTBOUND.replace('username = "support@example.com"\n', ""), "outbound.username: required when auth"),
    (OUTBOUND + 'oauth2_device_url = "ftp://x"\n', "outbound.oauth2_device_url: not an http(s) URL"),
])
def test_bad_oauth2_keys_name_the_key(tmp_path, text, needle):
    with pytest.raises(ConfigError) as err:
        load_config(site(tmp_path, text))
    assert needle in str(err.value) and "site.toml" in str(err.value)


def test_the_oauth2_defaults_the_checks_use_are_the_keys_of_the_sections():
    """daemon.oauth2_config spells the defaults out (no dataclass at a command's start)."""
    from dataclasses import fields

    from daemon.config_sections import OAuth2Keys
    from daemon.oauth2_config import OAUTH2_DEFAULTS
    assert OAUTH2_DEFAULTS == {f.name: f.default for f in fields(OAuth2Keys)}
