"""`[digest]`: the optional daily mail to each agent of their open tickets and SLA risks.

  enabled       false by default
  hour          the local hour (0-23) at which it is sent, in the agent's time zone
  timezone      the zone of agents whose rules/queues.yaml entry has no `timezone:`
  risk_percent  a running SLA clock at or past this share of its target is listed as a risk
Checked here (daemon.config_read); its frozen DigestSection is one of the config's sections
(daemon.config_sections), which daemon.digest (the sender) reads. No dataclass here: the
check runs at every command's start.
"""
from __future__ import annotations


from daemon.errors import ConfigError


def check_digest(values: dict, where: object) -> None:
    """Refuse an out-of-range hour, an unknown time zone or a bad percent, naming the key."""
    if not 0 <= values["hour"] <= 23:
        raise ConfigError(f"{where}: digest.hour: must be 0..23 (a local hour), got {values['hour']}")
    if values["timezone"] != "UTC" and not _known_zone(values["timezone"] or ""):
        raise ConfigError(f"{where}: digest.timezone: unknown time zone {values['timezone']!r} "
                          "(an IANA name such as Europe/Berlin)")
    if not 0 < values["risk_percent"] <= 1000:
        raise ConfigError(f"{where}: digest.risk_percent: must be above 0 (and at most 1000)")


def _known_zone(name: str) -> bool:
    """ZoneInfo(name) loads. Imported here, for a zone other than the default "UTC" (in every
    time zone database) only: zoneinfo and the sysconfig it reads cost about 3 ms of each
    command's start (issue 16; bench/layers.py's LAZY allows it in this module)."""
    from zoneinfo import ZoneInfo
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        return False
    return True
