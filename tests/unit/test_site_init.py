"""`helpdesk init DIR`: a site directory that checks on its own, with the shipped rules and
templates copied in, state inside it, nothing overwritten without --force."""
from __future__ import annotations

import tomllib

from daemon.cli import main
from daemon.config import load_config
from daemon.shipped import shipped_root


def test_init_makes_a_site_directory_that_checks(tmp_path, capsys):
    target = tmp_path / "desk"
    assert main(["init", str(target)]) == 0
    out = capsys.readouterr().out
    assert f"helpdesk --config {target / 'config.toml'} check" in out and "serve" in out
    for tree in ("rules", "templates"):
        shipped = sorted(p.relative_to(shipped_root() / tree) for p in (shipped_root() / tree).rglob("*")
                         if p.is_file() and "__pycache__" not in p.parts)
        copied = sorted(p.relative_to(target / tree) for p in (target / tree).rglob("*") if p.is_file())
        assert copied == shipped and copied
    assert (target / "rules" / "routing.yaml").read_bytes() == (shipped_root() / "rules" / "routing.yaml").read_bytes()
    cfg = load_config(str(target / "config.toml"))
    assert cfg.paths.rules == target / "rules" and cfg.paths.templates == target / "templates"
    assert cfg.state_dir == target / "var"
    assert main(["--config", str(target / "config.toml"), "check"]) == 0
    assert "ok: config" in capsys.readouterr().out


def test_the_site_config_holds_only_the_usual_keys_commented(tmp_path):
    assert main(["init", str(tmp_path)]) == 0
    text = (tmp_path / "config.toml").read_text()
    data = tomllib.loads(text)
    assert set(data) == {"helpdesk", "database", "queue", "smtp", "outbound", "reports", "paths"}
    assert set(data["helpdesk"]) == {"address", "name", "ticket_prefix", "state_dir"}
    shipped = tomllib.loads((shipped_root() / "config.toml").read_text())
    assert data["reports"] == shipped["reports"]                      # the defaults, spelled out
    cfg = load_config(str(tmp_path / "config.toml"))                  # and valid: the loader takes it
    assert (tuple(cfg.reports.to), cfg.reports.schedule, cfg.reports.hour) == ((), "weekly", 7)
    assert all("#" in line for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_init_refuses_to_overwrite_without_force(tmp_path, capsys):
    assert main(["init", str(tmp_path)]) == 0
    (tmp_path / "config.toml").write_text("# mine\n")
    (tmp_path / "rules" / "routing.yaml").write_text("# mine\n")
    capsys.readouterr()
    assert main(["init", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "config.toml") in err and "--force" in err
    assert (tmp_path / "config.toml").read_text() == "# mine\n"
    assert main(["init", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "rules" / "routing.yaml").read_bytes() == (shipped_root() / "rules" / "routing.yaml").read_bytes()


def test_init_state_dir_option_for_systemd(tmp_path):
    assert main(["init", str(tmp_path / "etc"), "--state-dir", str(tmp_path / "lib")]) == 0
    assert load_config(str(tmp_path / "etc" / "config.toml")).state_dir == tmp_path / "lib"
