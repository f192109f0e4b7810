"""A node of a shared (PostgreSQL) database must sign with the key every node shares (issue 14):
`check`, `serve`, `worker`, `ingest` (files, or a pipe with no daemon to hand off to), `update`,
`reply` and `quarantine release` refuse
a config without `[helpdesk] key_env`/`key_credential`, naming the key, exit 1, no traceback,
nothing stored; SQLite (one node) still generates its own key."""
from __future__ import annotations

import io
import sys

import pytest

from daemon.cli import main
from daemon.secrets import shared_key_problem

PG = "postgresql+psycopg://nobody@127.0.0.1:1/none"       # never reached: refused before connecting


def site(tmp_path, key: str = "") -> str:
    path = tmp_path / "site.toml"
    path.write_text(f'[helpdesk]\nstate_dir = "st"\n{key}\n[database]\nurl = "{PG}"\n[queue]\nbackend = "redis"\n'
                    f'url = "redis://127.0.0.1:1/0"\n')
    return str(path)


@pytest.mark.parametrize("command", ["serve", "worker", "check"])
def test_a_node_of_a_shared_database_without_the_signing_key_is_refused(tmp_path, capsys, command):
    assert main(["--config", site(tmp_path), command]) == 1
    err = capsys.readouterr().err
    assert "helpdesk.key_env" in err and "key_credential" in err and "same key on every node" in err
    assert "site.toml" in err and "Traceback" not in err and "internal error" not in err


MAIL = b"From: ann@example.org\r\nTo: support@example.com\r\nSubject: x\r\nMessage-ID: <k1@example.org>\r\n\r\nHi\r\n"


@pytest.mark.parametrize("how", ["file", "pipe"])
def test_ingest_on_a_shared_database_without_the_signing_key_is_refused(tmp_path, capsys, monkeypatch, how):
    eml = tmp_path / "one.eml"
    eml.write_bytes(MAIL)
    if how == "pipe":
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(MAIL)))
    argv = ["--config", site(tmp_path), "ingest", *([str(eml)] if how == "file" else
                                                    ["--sender", "ann@example.org", "--recipient", "support@example.com"])]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "helpdesk.key_env" in err and "key_credential" in err and "same key on every node" in err
    assert "site.toml" in err and "Traceback" not in err and "temporary failure" not in err
    spool = tmp_path / "st" / "spool"
    assert not spool.exists() or not any(p.is_file() for p in spool.rglob("*"))


@pytest.mark.parametrize("argv", [["update", "HD-1", "--status", "open", "--as", "a@example.com"],
                                  ["reply", "HD-1", "-m", "hello", "--as", "a@example.com"],
                                  ["quarantine", "release", "1"]])
def test_commands_that_sign_mail_are_refused_without_the_signing_key(tmp_path, capsys, argv):
    assert main(["--config", site(tmp_path), *argv]) == 1
    err = capsys.readouterr().err
    assert "helpdesk.key_env" in err and "same key on every node" in err and "Traceback" not in err


def test_the_rule_itself():
    assert shared_key_problem("", "", "") is None                                  # SQLite in state_dir
    assert shared_key_problem("sqlite:////var/lib/hd/helpdesk.db", "", "") is None
    assert shared_key_problem(PG, "HD_KEY", "") is None
    assert shared_key_problem(PG, "", "helpdesk-key") is None
    assert "helpdesk.key_env" in shared_key_problem(PG, "", "")


def test_check_passes_with_the_key_configured(tmp_path, capsys):
    assert main(["--config", site(tmp_path, 'key_env = "HD_KEY"'), "check"]) == 0
