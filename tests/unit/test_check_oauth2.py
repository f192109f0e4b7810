"""`helpdesk check` on OAuth 2.0 setups (issue 19): a missing token URL, client id or
refresh-token source, an unset variable, an unreadable or empty credential, a broken token
state file - each a clear line naming the key and the line that set it; no secret printed."""
from __future__ import annotations

from pathlib import Path

import pytest

from daemon.check import check
from daemon.config import load_config
from daemon.errors import ConfigError
from daemon.oauth2_store import TokenStore
from tests.unit.test_config_oauth2 import IMAP, OUTBOUND

HEAD = '[helpdesk]\naddress = "support@example.com"\nstate_dir = "state"\n\n'


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "site.toml"
    p.write_text(HEAD + text)
    return p


def line_of(path: Path, start: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(start))


def problems(path: Path, environ: dict) -> list[str]:
    found, _summary = check(load_config(str(path)), environ)
    return found


@pytest.mark.parametrize("key", ["oauth2_token_url", "oauth2_client_id", "username"])
def test_a_missing_key_names_itself_and_the_account_line(tmp_path, key):
    path = write(tmp_path, "\n".join(line for line in IMAP.splitlines() if not line.startswith(key)) + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert str(err.value).startswith(f"{path}:{line_of(path, '[[imap]]')}: imap[0].{key}: ")   # the account's table
    assert "required when auth" in str(err.value) or "missing value" in str(err.value)


def test_no_refresh_token_and_no_secret_says_how_to_get_one(tmp_path):
    text = "\n".join(line for line in IMAP.splitlines() if "refresh_token" not in line) + "\n"
    path = write(tmp_path, text)
    [line] = problems(path, {})
    assert line.startswith(f"{path}:{line_of(path, 'auth = ')}: imap[0].oauth2_refresh_token_env: no refresh token")
    assert "helpdesk oauth2 login support" in line


def test_unset_credentials_directory_and_empty_or_unreadable_credentials(tmp_path):
    path = write(tmp_path, IMAP)
    at = f"{path}:{line_of(path, 'oauth2_refresh_token_credential')}: imap[0].oauth2_refresh_token_credential: "
    [line] = problems(path, {})
    assert line.startswith(at) and "$CREDENTIALS_DIRECTORY is not set" in line
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "imap-rt").write_text("\n")
    [line] = problems(path, {"CREDENTIALS_DIRECTORY": str(creds)})
    assert line.startswith(at) and "is empty" in line
    (creds / "imap-rt").unlink()
    (creds / "imap-rt").mkdir()                                    # unreadable as a file, even for root
    [line] = problems(path, {"CREDENTIALS_DIRECTORY": str(creds)})
    assert line.startswith(at) and "cannot read credential 'imap-rt'" in line
    (creds / "imap-rt").rmdir()
    (creds / "imap-rt").write_bytes(b"\xff\xfe secret")
    [line] = problems(path, {"CREDENTIALS_DIRECTORY": str(creds)})
    assert line.startswith(at) and "not UTF-8" in line
    (creds / "imap-rt").write_text("the-refresh-token\n")
    found, summary = check(load_config(str(path)), {"CREDENTIALS_DIRECTORY": str(creds)})
    assert found == [] and "oauth2 imap[support]: first refresh token from the config" in summary
    assert "the-refresh-token" not in summary


def test_client_secret_variable_not_set_names_its_line(tmp_path):
    path = write(tmp_path, OUTBOUND)
    [line] = problems(path, {})
    assert line == (f"{path}:{line_of(path, 'oauth2_client_secret_env')}: outbound.oauth2_client_secret_env: "
                    f"environment variable HD_SECRET is not set")
    found, summary = check(load_config(str(path)), {"HD_SECRET": "s3cret"})
    assert found == [] and "oauth2 outbound: client-credentials grant" in summary and "s3cret" not in summary


def test_a_stored_refresh_token_is_enough_and_a_broken_state_file_is_named(tmp_path):
    path = write(tmp_path, IMAP)
    cfg = load_config(str(path))
    store = TokenStore(cfg.state_dir, "imap[support]")
    store.save_refresh_token("rotated-token", 1000.0)
    found, summary = check(cfg, {})                                # the first one is gone: fine, as serve does
    assert found == [] and "refresh token stored in" in summary and "rotated-token" not in summary
    store.path.write_text("{not json")
    [line] = problems(path, {})
    assert line.startswith(f"{path}:{line_of(path, 'auth = ')}: imap[0].auth: {store.path}: unreadable OAuth 2.0 state")
    assert "helpdesk oauth2 login" in line
