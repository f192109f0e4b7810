"""Which site file a command runs with: --config, $HELPDESK_CONFIG, ./config.toml, then
/etc/helpdesk/config.toml. Without any, `find_site_config` says how to make one (every
command but `init` stops there), so no command silently opens another database.
"""
from __future__ import annotations

import os
from pathlib import Path

from daemon.errors import ConfigError

SYSTEM_CONFIG = Path("/etc/helpdesk/config.toml")


def site_config_path(explicit: str | None) -> Path | None:
    """--config, then $HELPDESK_CONFIG, then ./config.toml, then /etc/helpdesk/config.toml."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("HELPDESK_CONFIG")
    if env:
        return Path(env)
    for candidate in (Path("config.toml"), SYSTEM_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def find_site_config(explicit: str | None) -> Path:
    """The site file a command runs with; without one, a ConfigError saying how to make one."""
    found = site_config_path(explicit)
    if found is None:
        raise ConfigError(f"no config file: none given with --config or $HELPDESK_CONFIG, and neither "
                          f"./config.toml nor {SYSTEM_CONFIG} exists; make a site directory with "
                          f"'helpdesk init DIR', then run 'helpdesk --config DIR/config.toml check'")
    return found
