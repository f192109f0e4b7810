"""Where the shipped defaults live: config.toml, rules/ and templates/.

An installed wheel carries them as package data (`daemon/shipped/`, put there by setup.py's
build step) beside this module (what importlib.resources.files("daemon") answers for a
package on the file system, without importing importlib.resources: about 7 ms of every
command's start, issue 16); a source checkout or an editable install reads the repo's own
top-level files. Nothing here looks under the virtualenv's
share/ or at the working directory. Edge module: it only answers paths.
"""
from __future__ import annotations

from pathlib import Path

from daemon.errors import ConfigError

NAMES = ("config.toml", "rules", "templates")


def _complete(root: Path) -> bool:
    return (root / "config.toml").is_file() and (root / "rules").is_dir() and (root / "templates").is_dir()


def shipped_root() -> Path:
    """The directory holding the shipped config.toml, rules/ and templates/."""
    packaged = Path(__file__).parent / "shipped"          # a zipped package has no such directory
    if _complete(packaged):
        return packaged
    checkout = Path(__file__).resolve().parent.parent
    if _complete(checkout) and (checkout / "pyproject.toml").is_file():
        return checkout
    raise ConfigError(f"{packaged}: the shipped config.toml, rules/ and templates/ are missing; "
                      f"reinstall helpdeskd (pip install .)")


def shipped_config() -> Path:
    return shipped_root() / "config.toml"


def shipped_rules() -> Path:
    return shipped_root() / "rules"


def shipped_templates() -> Path:
    return shipped_root() / "templates"
