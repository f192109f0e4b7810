"""Where the shipped defaults live: config.toml, rules/ and templates/.

An installed wheel carries them as package data (`daemon/shipped/`, put there by setup.py's
build step) and they are found with importlib.resources; a source checkout or an editable
install reads the repo's own top-level files. Nothing here looks under the virtualenv's
share/ or at the working directory. Edge module: it only answers paths.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from daemon.errors import ConfigError

NAMES = ("config.toml", "rules", "templates")


def _complete(root: Path) -> bool:
    return (root / "config.toml").is_file() and (root / "rules").is_dir() and (root / "templates").is_dir()


def shipped_root() -> Path:
    """The directory holding the shipped config.toml, rules/ and templates/."""
    packaged = resources.files("daemon") / "shipped"
    if isinstance(packaged, Path) and _complete(packaged):
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
