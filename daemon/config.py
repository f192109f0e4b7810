"""Configuration: the frozen `Config` of the shipped config.toml with a site file laid over it.

`load_config` reads and checks both files (daemon/config_read.py: unknown keys and wrong
types refused naming the key, relative paths resolved against the file that set them) and
builds one frozen dataclass per section (daemon/config_sections.py) into a `Config`.
`build_config` builds it from values already read (a command that started light, issue 16,
and then needs the whole configuration). Edge module; nothing else reads config.toml.
Errors read `FILE:LINE: key: reason (did you mean ...)` (daemon/config_text.py).
"""
from __future__ import annotations

from pathlib import Path

from daemon.config_lookup import SYSTEM_CONFIG, find_site_config, site_config_path  # noqa: F401 (re-exported)
from daemon.config_read import (  # noqa: F401 (re-exported)
    IMAP_DEFAULTS, IMAP_REQUIRED, PATH_KEYS, ConfigValues, default_config_path, read_config)
from daemon.config_sections import (  # noqa: F401 (re-exported: the sections are part of this module's API)
    HelpdeskSection, DatabaseSection, QueueSection, SmtpSection, OutboundSection,
    LoopsSection, AgentsSection, ReportsSection, PathsSection, WorkerSection,
    LimitsSection, LogSection, LmtpSection, HttpSection, HealthSection,
    DebugSection, ImapAccount, Config, SECTIONS)
from daemon.config_text import find_key, locate
from daemon.errors import ConfigError


def key_location(cfg: "Config | ConfigValues", key: str) -> str:
    """`FILE:LINE` of the file that set `key` (e.g. `smtp.port`), else the last config file."""
    found = find_key(cfg.sources, key)
    return f"{found[0]}:{found[1]}" if found else f"{cfg.sources[-1]}"


def load_config(explicit: str | None = None, *, defaults: Path | None = None) -> Config:
    """Read the defaults and the site file (see `site_config_path`) into one Config."""
    return build_config(read_config(explicit, defaults=defaults))


def build_config(values: "Config | ConfigValues") -> Config:
    """The Config of checked values (a Config is returned as it is)."""
    if isinstance(values, Config):
        return values
    sources = list(values.sources)
    built = {}
    for name, cls in SECTIONS.items():
        try:
            built[name] = cls(**values.sections[name])
        except TypeError as exc:
            raise ConfigError(locate(f"{sources[-1]}: [{name}]: {exc}", sources)) from None
    return Config(**built, imap=tuple(ImapAccount(**keys) for keys in values.imap), sources=values.sources)
