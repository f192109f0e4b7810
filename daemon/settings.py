"""The values pipeline stages and the worker take, read off the Config (no I/O)."""
from __future__ import annotations

from dataclasses import dataclass

from daemon.config import Config
from daemon.pipeline.classify import Defaults
from daemon.pipeline.parse_limits import ParseLimits


@dataclass(frozen=True)
class WorkerSettings:
    """What the worker needs from config."""

    tag_prefix: str = "HD"
    own_addresses: frozenset[str] = frozenset()
    defaults: Defaults = Defaults()
    limits: ParseLimits | None = None
    max_attempts: int = 5
    retry_seconds: float = 10.0
    auth_retry_seconds: float = 60.0     # [agents] dns_retry_seconds: a DNS temperror is retried after this


def defaults_of(cfg: Config) -> Defaults:
    hd = cfg.helpdesk
    return Defaults(hd.default_type, hd.default_queue, hd.default_priority)


def worker_settings(cfg: Config) -> WorkerSettings:
    hd = cfg.helpdesk
    return WorkerSettings(
        tag_prefix=hd.ticket_prefix, own_addresses=frozenset({hd.address.lower()}),
        defaults=defaults_of(cfg),
        limits=ParseLimits(max_parts=cfg.limits.max_parts, max_depth=cfg.limits.max_depth,
                           max_headers=cfg.limits.max_headers, max_bytes=cfg.smtp.max_message_bytes * 2),
        max_attempts=cfg.worker.max_attempts, retry_seconds=cfg.worker.retry_seconds,
        auth_retry_seconds=cfg.agents.dns_retry_seconds)
