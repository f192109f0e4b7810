"""Config loading: defaults + site overlay, unknown keys and wrong types name the key."""
from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import load_config
from daemon.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def site(tmp_path: Path, text: str) -> str:
    p = tmp_path / "site.toml"
    p.write_text(text)
    return str(p)


def test_defaults_alone(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HELPDESK_CONFIG", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    cfg = load_config()
    assert cfg.helpdesk.ticket_prefix == "HD"
    assert cfg.paths.rules == REPO / "rules"
    assert cfg.state_dir == REPO / "var"
    assert cfg.database_url == f"sqlite:///{REPO / 'var' / 'helpdesk.db'}"
    assert cfg.imap == ()


def test_site_overlay_keeps_repo_paths_and_resolves_its_own(tmp_path):
    cfg = load_config(site(tmp_path, '[helpdesk]\nstate_dir = "st"\nname = "ACME"\n'))
    assert cfg.helpdesk.name == "ACME"
    assert cfg.helpdesk.address == "support@example.com"        # default kept
    assert cfg.state_dir == tmp_path / "st"                      # relative to the site file
    assert cfg.paths.templates == REPO / "templates"             # relative to the repo file


def test_env_var_and_state_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("HELPDESK_CONFIG", site(tmp_path, "[smtp]\nport = 2600\n"))
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/helpdesk")
    cfg = load_config()
    assert cfg.smtp.port == 2600
    assert cfg.state_dir == Path("/var/lib/helpdesk")


@pytest.mark.parametrize("text, needle", [
    ("[smtp]\nprot = 25\n", "smtp.prot: unknown key"),
    ("[smpt]\nport = 25\n", "[smpt]: unknown section"),
    ("[smtp]\nport = \"25\"\n", "smtp.port: expected int"),
    ("[smtp]\nenabled = 1\n", "smtp.enabled: expected bool"),
    ("[smtp]\ndomains = \"example.com\"\n", "smtp.domains: expected list of strings"),
    ("[queue]\nbackend = \"rabbit\"\n", "queue.backend"),
    ("[queue]\nbackend = \"redis\"\n", "queue.url: required"),
    ("[helpdesk]\ndefault_priority = \"high\"\n", "helpdesk.default_priority"),
    ("[helpdesk\n", "site.toml"),
    ("[[imap]]\nname = \"a\"\nhost = \"imap.x\"\n", "imap[0].username: missing value"),
    ("[[imap]]\nname = \"a\"\nhost = \"imap.x\"\nusername = \"u\"\nsecurity = \"none\"\n", "refused unless host is loopback"),
    ("[[imap]]\nname = \"a\"\nhost = \"imap.x\"\nusername = \"u\"\npasword_env = \"X\"\n", "imap[0].pasword_env: unknown key"),
])
def test_bad_site_files_name_the_key(tmp_path, text, needle):
    with pytest.raises(ConfigError) as err:
        load_config(site(tmp_path, text))
    assert needle in str(err.value)
    assert "site.toml" in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "nope.toml"))


def test_imap_accounts(tmp_path):
    cfg = load_config(site(tmp_path, """
[[imap]]
name = "support"
host = "127.0.0.1"
username = "u@x"
security = "none"
port = 1143
[[imap]]
name = "sales"
host = "imap.example.com"
username = "s@x"
"""))
    assert [a.name for a in cfg.imap] == ["support", "sales"]
    assert cfg.imap[0].port == 1143 and cfg.imap[1].port == 993 and cfg.imap[1].idle is True


def test_queue_workers_zero_only_with_redis(tmp_path):
    """A serve node that only takes mail in (`helpdesk worker` processes send): redis only."""
    cfg = load_config(site(tmp_path, '[queue]\nbackend = "redis"\nurl = "redis://127.0.0.1:6379/0"\nworkers = 0\n'))
    assert cfg.queue.workers == 0
    with pytest.raises(ConfigError, match=r"queue\.workers: must be positive \(0 only with backend"):
        load_config(site(tmp_path, '[queue]\nworkers = 0\n'))


def test_node_health_keys_have_defaults(tmp_path):
    cfg = load_config(site(tmp_path, '[health]\nnode = "mx1"\n'))
    assert cfg.health.node == "mx1" and cfg.health.node_silent_seconds == 60


@pytest.mark.parametrize("zone, ok", [("UTC", True), ("Europe/Berlin", True), ("Europe/Berln", False), ("", False)])
def test_the_digest_time_zone_is_checked_also_when_zoneinfo_is_loaded_only_for_another_zone(tmp_path, zone, ok):
    """daemon.digest_config loads zoneinfo only for a zone other than the default "UTC"."""
    path = site(tmp_path, f'[digest]\ntimezone = "{zone}"\n')
    if ok:
        assert load_config(path).digest.timezone == zone
    else:
        with pytest.raises(ConfigError, match=r"site\.toml:2: digest\.timezone: unknown time zone"):
            load_config(path)
