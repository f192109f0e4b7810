"""Installed as an admin installs it: a real non-editable `pip install` into a fresh venv, used
from another working directory (shipped rules and templates found as package data, `init`,
`check`, no database opened without a config); and a second `serve` on a busy port."""
from __future__ import annotations

import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import REPO, missing
from tests.e2e.helpers import helpdesk


def test_a_second_serve_on_a_busy_port_names_the_key(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        site = tmp_path / "site.toml"
        site.write_text(f'[helpdesk]\nstate_dir = "st"\n\n[smtp]\nport = {port}\n')
        proc = helpdesk(site, "serve", timeout=120)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert (f"{site}:5: smtp.port: cannot listen on 127.0.0.1:{port}: address already in use "
            f"(another helpdesk serve, or another daemon, may be running)") in err
    assert "internal error" not in err and "Traceback" not in err


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with helpdeskd pip-installed from the repo (not editable); its dependencies
    come from this test run's environment through a .pth line."""
    root = tmp_path_factory.mktemp("admin")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    site_packages = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; "
                                         "print(sysconfig.get_paths()['purelib'])"],
                                        capture_output=True, text=True, check=True).stdout.strip())
    (site_packages / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    build = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", str(REPO)],
                           capture_output=True, text=True, timeout=600, cwd=str(root))
    if build.returncode != 0:
        missing(f"pip could not build the package (build dependencies unreachable?): {build.stderr[-500:]}")
    return venv


def run(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run([str(venv / "bin" / "helpdesk"), *args], capture_output=True, text=True,
                          cwd=str(cwd), env=env, timeout=300)


def test_the_installed_package_is_used_not_the_checkout(installed, tmp_path):
    where = subprocess.run([str(installed / "bin" / "python"), "-c", "import daemon, store.migrations; "
                            "print(daemon.__file__); print(store.migrations.__file__)"],
                           capture_output=True, text=True, check=True, cwd=str(tmp_path)).stdout
    assert str(REPO) not in where and str(installed) in where


def test_a_site_file_with_only_a_relay_port_checks_from_another_directory(installed, tmp_path):
    (tmp_path / "site.toml").write_text("[outbound]\nport = 18025\n")
    proc = run(installed, tmp_path, "--config", "site.toml", "check")
    assert proc.returncode == 0, proc.stderr
    assert "daemon/shipped/rules" in proc.stdout and str(REPO) not in proc.stdout


def test_no_config_opens_no_database_anywhere(installed, tmp_path):
    proc = run(installed, tmp_path, "tickets")
    assert proc.returncode == 1 and "helpdesk init DIR" in proc.stderr
    assert list(tmp_path.iterdir()) == []
    assert not list(installed.rglob("helpdesk.db"))


def test_init_check_and_use_a_site_directory(installed, tmp_path):
    init = run(installed, tmp_path, "init", "desk")
    assert init.returncode == 0, init.stderr
    assert "helpdesk --config" in init.stdout
    assert run(installed, tmp_path, "--config", "desk/config.toml", "check").returncode == 0
    current = run(installed, tmp_path, "--config", "desk/config.toml", "db", "upgrade")
    assert current.returncode == 0, current.stderr
    listed = run(installed, tmp_path, "--config", "desk/config.toml", "tickets")
    assert listed.returncode == 0 and listed.stdout.strip() == "no tickets"
    assert (tmp_path / "desk" / "var" / "helpdesk.db").is_file()
    assert not list(installed.rglob("helpdesk.db"))
