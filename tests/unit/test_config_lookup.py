"""Config lookup, shipped defaults and errors an admin understands: `FILE:LINE: key: reason
(did you mean ...)`, state next to the site file, the shipped rules and templates when a
site file sets no [paths], and no command without a config file."""
from __future__ import annotations

from pathlib import Path

import pytest

from daemon import config_lookup as config_mod
from daemon.cli import main
from daemon.config import find_site_config, key_location, load_config, site_config_path
from daemon.config_text import did_you_mean, key_line, locate
from daemon.errors import ConfigError
from daemon.shipped import shipped_root

REPO = Path(__file__).resolve().parents[2]


def site(tmp_path: Path, text: str) -> str:
    p = tmp_path / "site.toml"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize("text, expected", [
    ("[helpdesk]\nname = \"x\"\n\n[smtp]\nport = 25\nprot = 3\n", "site.toml:6: smtp.prot: unknown key (did you mean 'port'?)"),
    ("[smpt]\nport = 25\n", "site.toml:1: [smpt]: unknown section (did you mean 'smtp'?)"),
    ("# c\n[smtp]\n  port = \"25\"   # quoted\n", "site.toml:3: smtp.port: expected int, got str '25'"),
    ("smtp.port = \"25\"\n", "site.toml:1: smtp.port: expected int"),
    ("[queue]\nbackend = \"redis\"\n", "site.toml:1: queue.url: required when queue.backend is redis"),
    ("[helpdesk\n", "site.toml:1: "),
    ("[smtp]\nport = 25\nport = 26\n", "site.toml:3: "),
    ("[[imap]]\nname = \"a\"\nhost = \"127.0.0.1\"\nusername = \"u\"\nsecurity = \"none\"\n"
     "[[imap]]\nname = \"b\"\nhost = \"imap.x\"\nusername = \"u\"\npasword_env = \"X\"\n",
     "site.toml:10: imap[1].pasword_env: unknown key (did you mean 'password_env'?)"),
    ("[[imap]]\nname = \"a\"\n\n[[imap]]\nname = \"b\"\nhost = \"h\"\n", "site.toml:1: imap[0].host: missing value"),
])
def test_config_errors_name_file_line_and_key(tmp_path, text, expected):
    with pytest.raises(ConfigError) as err:
        load_config(site(tmp_path, text))
    assert str(err.value).startswith(str(tmp_path / expected.split(":", 1)[0]) + ":" + expected.split(":", 1)[1])


def test_did_you_mean_only_when_close():
    assert did_you_mean("prot", ["port", "host"]) == " (did you mean 'port'?)"
    assert did_you_mean("zzz", ["port", "host"]) == ""


def test_key_line_follows_tables_and_arrays():
    text = "[a]\nx = 1\n[b]\nx = 2\n[[c]]\ny = 1\n[[c]]\ny = 2\n"
    assert key_line(text, "b", "x") == 4
    assert key_line(text, "c", "y", 1) == 8
    assert key_line(text, "a", "nope") is None


def test_locate_leaves_other_messages_alone(tmp_path):
    assert locate("something else entirely", [tmp_path / "x.toml"]) == "something else entirely"


def test_a_site_file_without_paths_uses_the_shipped_rules_and_keeps_state_beside_it(tmp_path, monkeypatch):
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    cfg = load_config(site(tmp_path, "[outbound]\nport = 18025\n"))
    assert cfg.paths.rules == shipped_root() / "rules" and cfg.paths.rules.is_dir()
    assert cfg.paths.templates == shipped_root() / "templates"
    assert cfg.state_dir == tmp_path / "var"                  # never inside the installation
    assert cfg.outbound.port == 18025


def test_key_location_names_the_file_that_set_the_key(tmp_path):
    cfg = load_config(site(tmp_path, "[helpdesk]\nname = \"x\"\n[smtp]\nport = 2600\n"))
    assert key_location(cfg, "smtp.port") == f"{tmp_path / 'site.toml'}:4"
    assert key_location(cfg, "smtp.host").startswith(f"{shipped_root() / 'config.toml'}:")


def test_lookup_order_is_flag_env_cwd_then_etc(tmp_path, monkeypatch):
    etc = tmp_path / "etc" / "config.toml"
    etc.parent.mkdir()
    etc.write_text("")
    monkeypatch.setattr(config_mod, "SYSTEM_CONFIG", etc)
    monkeypatch.delenv("HELPDESK_CONFIG", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert site_config_path(None) == etc
    (work / "config.toml").write_text("")
    assert site_config_path(None) == Path("config.toml")
    monkeypatch.setenv("HELPDESK_CONFIG", "/from/env.toml")
    assert site_config_path(None) == Path("/from/env.toml")
    assert site_config_path("/flag.toml") == Path("/flag.toml")


def test_no_config_anywhere_refuses_every_command_but_init_and_opens_no_database(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(config_mod, "SYSTEM_CONFIG", tmp_path / "etc" / "config.toml")
    monkeypatch.delenv("HELPDESK_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="helpdesk init DIR"):
        find_site_config(None)
    for argv in (["tickets"], ["check"], ["serve"], ["db", "current"]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "no config file" in err and "helpdesk init DIR" in err, argv
    assert list(tmp_path.iterdir()) == []
    assert not (shipped_root() / "var").exists() or shipped_root() == REPO   # the checkout's own var/ is its


def test_the_repo_config_as_site_file_is_the_readme_serve_setup(monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("HELPDESK_CONFIG", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    cfg = load_config(str(find_site_config(None)))
    assert cfg.paths.rules == REPO / "rules" and cfg.state_dir == REPO / "var"
