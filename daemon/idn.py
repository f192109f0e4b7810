"""International mail addresses: IDN domains (RFC 5890) and UTF-8 local parts (RFC 6531).

Pure helpers, no I/O. A domain is compared by its ASCII form (`domain_key`: A-labels,
lower case), so `bücher.example` in `[smtp] domains` or an agent's address matches mail for
`xn--bcher-kva.example` and the other way round; parsed addresses carry their domain in
that form (`canonical_domain`, used by daemon.pipeline.addresses). The addresses of SMTP
commands (UTF-8 local parts, SMTPUTF8) are daemon.smtp_address's: that module defines a
dataclass, and this one runs at every command's start (daemon.config_read checks the
configured domains with it; issue 16). IDNA 2003 from the standard library (the codec
daemon.pipeline.compose already uses); no extra dependency.
"""
from __future__ import annotations

import re

from daemon.errors import ConfigError

_A_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def domain_key(domain: str) -> str:
    """The domain in A-labels, lower case, without a trailing dot. ValueError when it is not
    a valid (internationalised) domain name."""
    name = domain.strip().rstrip(".")
    try:
        ascii_name = name.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ValueError(f"not a valid domain name: {domain!r}") from None
    if not _A_DOMAIN.match(ascii_name):
        raise ValueError(f"not a valid domain name: {domain!r}")
    return ascii_name


def canonical_domain(domain: str) -> str:
    """`domain_key` when the domain is a valid (IDN) name, else just lower-cased: for
    addresses read from mail, where an odd domain is kept rather than dropped here."""
    if domain.isascii():                          # the common case, and A-labels stay as they are
        return domain.lower()
    try:
        return domain_key(domain)
    except ValueError:
        return domain.lower()


def canonical_address(address: str) -> str:
    """`local@domain` with the domain by `canonical_domain`, the local part lower-cased
    (how agents and requesters are compared)."""
    local, at, domain = address.strip().rpartition("@")
    return f"{local.lower()}@{canonical_domain(domain)}" if at else address.strip().lower()


def domain_keys(domains, where: str) -> tuple[str, ...]:
    """Configured domains by `domain_key`; ConfigError naming `where` for an invalid one."""
    out = []
    for d in domains:
        try:
            out.append(domain_key(d))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return tuple(dict.fromkeys(out))


def address_domain(address: str) -> str:
    """The domain of `address` by `domain_key`, "" when it has none or an invalid one."""
    _, at, domain = address.rpartition("@")
    try:
        return domain_key(domain.strip().strip(">")) if at else ""
    except ValueError:
        return ""
