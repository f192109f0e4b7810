"""Key loading, daemon.tokens (reliability.md F 64, 75, 76); the tokens themselves are
tested in test_token_macs.py."""
from __future__ import annotations

import stat

import pytest

from daemon import tokens
from daemon.errors import ConfigError


def test_generated_key_file_is_private_and_stable(tmp_path):
    ring = tokens.load_keyring(tmp_path, environ={})
    path = tmp_path / "keys" / "helpdesk.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert tokens.load_keyring(tmp_path, environ={}).keys == ring.keys and len(ring.keys[1]) == 32


def test_key_from_environment_and_credential(tmp_path):
    env = {"HD_KEY": "2 " + "ab" * 16 + "\n1 " + "cd" * 16}
    ring = tokens.load_keyring(tmp_path, key_env="HD_KEY", environ=env)
    assert ring.current == 2 and set(ring.keys) == {1, 2}
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "hd-key").write_text("# comment\n" + "Zm9vYmFyYmF6cXV4cXV1eHh4eA==\n")
    ring = tokens.load_keyring(tmp_path, key_credential="hd-key",
                               environ={"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")})
    assert ring.current == 1 and ring.keys[1] == b"foobarbazquxquuxxxx"
    assert not (tmp_path / "keys").exists()                    # nothing generated when configured


@pytest.mark.parametrize("text, needle", [
    ("", "no key found"), ("1 short", "at least 16 bytes"), ("0 " + "ab" * 16, "1..255"),
    ("1 " + "ab" * 16 + "\n1 " + "cd" * 16, "unique"), ("a b c", "expected"),
])
def test_bad_key_material(text, needle):
    with pytest.raises(ConfigError, match=needle):
        tokens.parse_keys(text, "$HD_KEY")


def test_missing_key_sources_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="helpdesk.key_env"):
        tokens.load_keyring(tmp_path, key_env="NOPE", environ={})
    with pytest.raises(ConfigError, match="helpdesk.key_credential"):
        tokens.load_keyring(tmp_path, key_credential="nope", environ={})
