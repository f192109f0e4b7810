"""Configuration, read and checked: the repo's config.toml holds every default; a site file
is laid over it. `read_config` reads both, refuses unknown keys and wrong types naming the
key, resolves relative paths against the file that set them, and returns the checked
values (`ConfigValues`): plain dicts per section, no dataclass. daemon/config.py builds the
frozen `Config` from them (`load_config`); the read-only commands that start light
(`helpdesk tickets`, `show`, the pipe hand-off: issue 16) read the same values as
attributes without building it - defining the ~20 section dataclasses costs more than
what these commands do. The checks are the same either way: one code path reads.

The defaults are the shipped config.toml (package data, daemon/shipped.py); `rules` and
`templates` a site file does not set are the shipped ones, and a `state_dir` it does not set
is `$STATE_DIRECTORY` (systemd) or `var` next to the site file - never a folder of the
installation. Errors read `FILE:LINE: key: reason (did you mean ...)` (daemon/config_text.py).
Edge module (it reads files and the environment); nothing else reads config.toml.
"""
from __future__ import annotations

import os
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from daemon import shipped
from daemon.config_lookup import site_config_path
from daemon.config_text import did_you_mean, locate
from daemon.digest_config import check_digest
from daemon.errors import ConfigError
from daemon.idn import domain_keys
from daemon.oauth2_config import OAUTH2_DEFAULTS, check_auth

PATH_KEYS = {("helpdesk", "state_dir"), ("paths", "rules"), ("paths", "templates")}

IMAP_DEFAULTS: dict[str, Any] = {
    "name": "", "host": "", "port": 993, "security": "tls", "username": "",
    "password_env": "", "password_credential": "", "folder": "INBOX", "move_to": "",
    "idle": True, "poll_seconds": 60, "verify_tls": True, "ca_file": "", **OAUTH2_DEFAULTS,
}
IMAP_REQUIRED = ("name", "host", "username")


def database_url(url: str, state_dir: Path) -> str:
    """The SQLAlchemy URL: the configured one, else SQLite in the state directory."""
    return url or f"sqlite:///{state_dir / 'helpdesk.db'}"


class ConfigValues:
    """The checked configuration as plain values: `sections` (name -> its keys, paths
    resolved, domains in A-labels), `imap` (each account's keys) and `sources` (the files
    read, defaults first). A section reads as attributes (`values.helpdesk.ticket_prefix`),
    as on a Config; nothing here is a dataclass."""

    def __init__(self, sections: dict[str, dict[str, Any]], imap: tuple[dict[str, Any], ...],
                 sources: tuple[Path, ...]):
        self.sections, self.imap, self.sources = sections, imap, sources
        for name, keys in sections.items():
            setattr(self, name, SimpleNamespace(**keys))

    @property
    def state_dir(self) -> Path:
        return self.sections["helpdesk"]["state_dir"]

    @property
    def database_url(self) -> str:
        return database_url(self.sections["database"]["url"], self.state_dir)


def default_config_path() -> Path:
    """The shipped config.toml: package data, or the checkout's own file (editable install)."""
    return shipped.shipped_config()


def read_config(explicit: str | None = None, *, defaults: Path | None = None) -> ConfigValues:
    """Read and check the defaults and the site file (see `site_config_path`)."""
    default_path = (defaults or default_config_path()).resolve()
    sources = [default_path]
    site_path = site_config_path(explicit)
    if site_path is not None and site_path.resolve() != default_path:
        sources.append(site_path.resolve())
    try:
        return _read(sources)
    except ConfigError as exc:
        raise ConfigError(locate(str(exc), sources)) from None


def _read(sources: list[Path]) -> ConfigValues:
    default_path = sources[0]
    base = _read_toml(default_path)
    base_dirs: dict[tuple[str, str], Path] = {k: default_path.parent for k in PATH_KEYS}
    # state not set by the site file: next to the site file, never inside the installation
    base_dirs[("helpdesk", "state_dir")] = sources[-1].parent
    site: dict[str, Any] = {}
    if len(sources) > 1:
        site_path = sources[1]
        site = _read_toml(site_path)
        _overlay(base, base_dirs, site, site_path)
    where = sources[-1]
    state_env = os.environ.get("STATE_DIRECTORY")
    if state_env and "state_dir" not in site.get("helpdesk", {}):
        base["helpdesk"]["state_dir"] = state_env.split(":")[0]
    _validate(base, where)
    for section, key in PATH_KEYS:
        base[section][key] = (base_dirs[(section, key)] / base[section][key]).resolve()
    for section, key in (("agents", "dkim_keys_file"), ("debug", "clock_file"), ("lmtp", "socket"),
                         ("smtp", "tls_cert"), ("smtp", "tls_key")):
        _resolve_optional_path(base, base_dirs, default_path, section, key)
    base["smtp"]["domains"] = domain_keys(base["smtp"]["domains"], f"{where}: smtp.domains")   # IDN: A-labels
    imap = _imap_values(site.get("imap", base.get("imap")), where)
    return ConfigValues({name: keys for name, keys in base.items() if name != "imap"}, imap, tuple(sources))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except PermissionError:
        raise ConfigError(f"{path}: config file not readable (permission denied)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None


def _check_type(path: Path, key: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, list):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        want = type(default).__name__ if not isinstance(default, list) else "list of strings"
        raise ConfigError(f"{path}: {key}: expected {want}, got {type(value).__name__} {value!r}")
    return value


def _overlay(base: dict, base_dirs: dict, site: dict, site_path: Path) -> None:
    """Lay `site` over `base` in place, checking every key and type."""
    for section, values in site.items():
        if section == "imap":
            continue
        if section not in base:
            raise ConfigError(f"{site_path}: [{section}]: unknown section{did_you_mean(section, base)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{site_path}: {section}: expected a [{section}] table")
        for key, value in values.items():
            name = f"{section}.{key}"
            if key not in base[section]:
                raise ConfigError(f"{site_path}: {name}: unknown key{did_you_mean(key, base[section])}")
            base[section][key] = _check_type(site_path, name, value, base[section][key])
            base_dirs[(section, key)] = site_path.parent


def _imap_values(raw: Any, path: Path) -> tuple[dict[str, Any], ...]:
    """The checked keys of each [[imap]] account (daemon.config builds an ImapAccount of each)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: imap: expected [[imap]] tables")
    accounts, names = [], set()
    for i, entry in enumerate(raw):
        where = f"{path}: imap[{i}]"
        values = dict(IMAP_DEFAULTS)
        for key, value in entry.items():
            if key not in IMAP_DEFAULTS:
                raise ConfigError(f"{where}.{key}: unknown key{did_you_mean(key, IMAP_DEFAULTS)}")
            values[key] = _check_type(path, f"imap[{i}].{key}", value, IMAP_DEFAULTS[key])
        for key in IMAP_REQUIRED:
            if not values[key]:
                raise ConfigError(f"{where}.{key}: missing value")
        if values["security"] not in ("tls", "starttls", "none"):
            raise ConfigError(f"{where}.security: must be tls, starttls or none")
        if values["security"] == "none" and values["host"] not in ("127.0.0.1", "::1", "localhost"):
            raise ConfigError(f"{where}.security: 'none' is refused unless host is loopback")
        check_auth(values, where)
        if values["name"] in names:
            raise ConfigError(f"{where}.name: duplicate account name {values['name']!r}")
        names.add(values["name"])
        accounts.append(values)
    return tuple(accounts)


def _validate(cfg: dict, where: Path) -> None:
    hd = cfg["helpdesk"]
    if not hd["ticket_prefix"].isalpha():
        raise ConfigError(f"{where}: helpdesk.ticket_prefix: letters only, got {hd['ticket_prefix']!r}")
    if "@" not in hd["address"]:
        raise ConfigError(f"{where}: helpdesk.address: not an email address: {hd['address']!r}")
    if hd["default_priority"] not in ("P1", "P2", "P3", "P4"):
        raise ConfigError(f"{where}: helpdesk.default_priority: must be P1..P4")
    if cfg["queue"]["backend"] not in ("sqlite", "redis", "immediate"):
        raise ConfigError(f"{where}: queue.backend: must be sqlite, redis or immediate")
    if cfg["queue"]["backend"] == "redis" and not cfg["queue"]["url"]:
        raise ConfigError(f"{where}: queue.url: required when queue.backend is redis")
    if cfg["log"]["level"] not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"{where}: log.level: must be debug, info, warning or error")
    if cfg["log"].get("format", "text") not in ("text", "json"):
        raise ConfigError(f"{where}: log.format: must be text or json")
    for section in ("lmtp", "http"):
        if section in cfg and not 0 <= cfg[section]["port"] <= 65535:
            raise ConfigError(f"{where}: {section}.port: out of range")
    for key in ("max_message_bytes", "max_recipients", "max_connections_per_ip", "max_sessions"):
        if cfg["smtp"][key] <= 0:
            raise ConfigError(f"{where}: smtp.{key}: must be positive")
    _validate_smtp(cfg["smtp"], where)
    if not 0 <= cfg["smtp"]["port"] <= 65535:
        raise ConfigError(f"{where}: smtp.port: out of range")
    _validate_outbound(cfg, where)
    _validate_agents(cfg, where)
    if "digest" in cfg:
        check_digest(cfg["digest"], where)
    _validate_worker(cfg["worker"], where)
    _validate_reports(cfg.get("reports", {}), where)


def _validate_worker(worker: dict, where: Path) -> None:
    for key in ("ingest_processes", "parse_processes"):
        if not 1 <= worker[key] <= 32:
            raise ConfigError(f"{where}: worker.{key}: must be 1 to 32, got {worker[key]}")


def _validate_reports(reports: dict, where: Path) -> None:
    if reports.get("schedule", "weekly") not in ("daily", "weekly", "monthly"):
        raise ConfigError(f"{where}: reports.schedule: must be daily, weekly or monthly")
    if not 0 <= reports.get("hour", 7) <= 23:
        raise ConfigError(f"{where}: reports.hour: must be 0..23 (UTC)")
    for address in reports.get("to", ()):
        if not isinstance(address, str) or "@" not in address or any(c in address for c in " <>,\r\n"):
            raise ConfigError(f"{where}: reports.to: not an email address: {address!r}")


def _validate_smtp(smtp: dict, where: Path) -> None:
    if smtp["max_messages_per_ip_minute"] < 0:
        raise ConfigError(f"{where}: smtp.max_messages_per_ip_minute: must be 0 (no limit) or positive")
    if bool(smtp["tls_cert"]) != bool(smtp["tls_key"]):
        raise ConfigError(f"{where}: smtp.tls_cert / smtp.tls_key: set both or neither")
    for address in smtp["recipients"]:
        if "@" not in address or address.rpartition("@")[2].lower() not in {d.lower() for d in smtp["domains"]}:
            raise ConfigError(f"{where}: smtp.recipients: {address!r} is not an address in smtp.domains")
    smtp["recipients"] = tuple(a.lower() for a in smtp["recipients"])


def _validate_agents(cfg: dict, where: Path) -> None:
    a = cfg.get("agents")
    if a is None:
        return
    modes = ("dkim", "authres", "either")
    if a["auth"] not in modes:
        raise ConfigError(f"{where}: agents.auth: must be dkim, authres or either")
    for domain, mode in a["domains"].items():
        if mode not in modes:
            raise ConfigError(f"{where}: agents.domains.{domain}: must be dkim, authres or either")
    for key in ("authres_count", "dkim_min_key_bits", "dns_timeout_seconds", "dns_retry_seconds", "defer_hours",
                "token_days", "max_warnings_per_hour", "max_bad_tokens_per_hour"):
        if a[key] <= 0:
            raise ConfigError(f"{where}: agents.{key}: must be positive")
    if a["token_days"] > 3650:
        raise ConfigError(f"{where}: agents.token_days: at most 3650")
    bad = [c for c in a["requester_commands"] if c not in ("resolve", "close")]
    if bad:
        raise ConfigError(f"{where}: agents.requester_commands: {bad[0]!r}: use resolve and/or close")
    a["domains"] = {domain_keys([d], f"{where}: agents.domains")[0]: v for d, v in a["domains"].items()}
    for key in ("dkim_relaxed_domains", "arc_trusted_forwarders"):
        a[key] = domain_keys(a[key], f"{where}: agents.{key}")
    for key in ("authserv_ids", "requester_commands"):
        a[key] = tuple(a[key])


def _validate_outbound(cfg: dict, where: Path) -> None:
    out, queue = cfg["outbound"], cfg["queue"]
    if out["security"] not in ("starttls", "tls", "none"):
        raise ConfigError(f"{where}: outbound.security: must be starttls, tls or none")
    if out["security"] == "none" and out["host"] not in ("127.0.0.1", "::1", "localhost"):
        raise ConfigError(f"{where}: outbound.security: 'none' (plaintext) is refused unless host is loopback")
    check_auth(out, f"{where}: outbound")
    if out["username"] and out["auth"] == "password" and not (out["password_env"] or out["password_credential"]):
        raise ConfigError(f"{where}: outbound.username: needs password_env or password_credential")
    if not 0 < out["port"] <= 65535:
        raise ConfigError(f"{where}: outbound.port: out of range")
    for key in ("timeout", "retry_first_seconds", "retry_max_seconds", "retry_days", "bounce_suppress_days"):
        if out[key] <= 0:
            raise ConfigError(f"{where}: outbound.{key}: must be positive")
    for key in ("lease_seconds", "sweep_seconds"):
        if queue[key] <= 0:
            raise ConfigError(f"{where}: queue.{key}: must be positive")
    if queue["workers"] < 0 or (queue["workers"] == 0 and queue["backend"] != "redis"):
        raise ConfigError(f"{where}: queue.workers: must be positive (0 only with backend = \"redis\": this serve "
                          f"sends nothing, `helpdesk worker` processes do)")
    for key, value in cfg["loops"].items():
        if key == "same_notice_days" and value < 0:
            raise ConfigError(f"{where}: loops.same_notice_days: must be 0 (off) or more")
        if value <= 0 and key != "same_notice_days":
            raise ConfigError(f"{where}: loops.{key}: must be positive")


def _resolve_optional_path(base: dict, base_dirs: dict, default_path: Path, section: str, key: str) -> None:
    """A path key that may be empty: when set, relative to the file that set it."""
    value = base.get(section, {}).get(key)
    if value:
        base[section][key] = str((base_dirs.get((section, key), default_path.parent) / value).resolve())
