"""The one secret reader (daemon.secrets) and its three users: the relay password, the
signing keys and the IMAP password. Env or systemd credential; never the working directory."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from daemon import tokens
from daemon.errors import ConfigError
from daemon.mailer import relay_settings
from daemon.secrets import read_secret


@pytest.fixture
def creds(tmp_path):
    d = tmp_path / "creds"
    d.mkdir()
    (d / "relay").write_text("s3cret\n")
    return d


def test_environment_variable_wins(creds):
    s = read_secret("outbound.password", "HD_PW", "relay", environ={"HD_PW": "from-env",
                                                                    "CREDENTIALS_DIRECTORY": str(creds)})
    assert (s.value, s.origin) == ("from-env", "$HD_PW")
    assert "from-env" not in repr(s)


def test_systemd_credential_with_trailing_newline_dropped(creds):
    s = read_secret("outbound.password", "", "relay", environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert s.value == "s3cret" and s.origin == str(creds / "relay")


def test_unset_variable_falls_back_to_the_credential(creds):
    s = read_secret("outbound.password", "HD_PW", "relay", environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert s.value == "s3cret"


def test_explicit_credentials_dir_overrides_the_environment(creds, tmp_path):
    s = read_secret("k", "", "relay", environ={"CREDENTIALS_DIRECTORY": str(tmp_path)}, credentials_dir=str(creds))
    assert s.value == "s3cret"


def test_missing_variable_names_the_env_key():
    with pytest.raises(ConfigError, match=r"^outbound\.password_env: environment variable HD_PW is not set"):
        read_secret("outbound.password", "HD_PW", "", environ={})


def test_nothing_configured_names_both_keys():
    with pytest.raises(ConfigError, match="set k_env or k_credential"):
        read_secret("k", environ={})


@pytest.mark.parametrize("name", ["../relay", "a/b", ".", ".."])
def test_credential_must_be_a_plain_name(creds, name):
    with pytest.raises(ConfigError, match="k_credential: not a plain credential name"):
        read_secret("k", "", name, environ={"CREDENTIALS_DIRECTORY": str(creds)})


def test_missing_and_empty_credential_files(creds):
    with pytest.raises(ConfigError, match="k_credential: cannot read credential 'nope'"):
        read_secret("k", "", "nope", environ={"CREDENTIALS_DIRECTORY": str(creds)})
    (creds / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="k_credential: credential 'empty' .* is empty"):
        read_secret("k", "", "empty", environ={"CREDENTIALS_DIRECTORY": str(creds)})


def test_unset_credentials_directory_never_reads_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "relay").write_text("planted\n")          # ./relay exists in the cwd
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"k_credential: \$CREDENTIALS_DIRECTORY is not set"):
        read_secret("k", "", "relay", environ={})


def _outbound(**kw):
    values = dict(host="127.0.0.1", port=25, security="none", username="u", password_env="",
                  password_credential="", verify_tls=True, ca_file="", timeout=30.0, helo="", auth="password")
    values.update(kw)
    return SimpleNamespace(outbound=SimpleNamespace(**values), state_dir=None)


def test_relay_password_uses_the_reader_and_not_the_working_directory(tmp_path, monkeypatch, creds):
    (tmp_path / "relay").write_text("planted\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"outbound\.password_credential: \$CREDENTIALS_DIRECTORY is not set"):
        relay_settings(_outbound(password_credential="relay"), environ={})
    got = relay_settings(_outbound(password_credential="relay"), environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert got.password == "s3cret" and "s3cret" not in repr(got)
    assert relay_settings(_outbound(password_env="PW"), environ={"PW": "x"}).password == "x"


def test_signing_keys_use_the_reader_and_not_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "hd-key").write_text("1 " + "ab" * 16 + "\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"helpdesk\.key_credential: \$CREDENTIALS_DIRECTORY is not set"):
        tokens.load_keyring(tmp_path / "state", key_credential="hd-key", environ={})
    ring = tokens.load_keyring(tmp_path / "state", key_credential="hd-key",
                               environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert ring.keys[1] == bytes.fromhex("ab" * 16)
