"""Identifier alignment (DMARC, RFC 7489 section 3.1): does a DKIM `d=` vouch for a From domain?

Strict alignment (the default for agents) wants the two names equal. Relaxed alignment,
an option per From domain (`[agents] dkim_relaxed_domains`), also accepts a `d=` with the
same *organisational domain*: the registrable name one label below its public suffix, by
the Public Suffix List (the maintained `publicsuffixlist` package, which ships the list;
ICANN and private sections both, so `a.github.io` and `b.github.io` are never aligned).
A name that is itself a public suffix (`co.uk`, `github.io`) has no organisational domain
and aligns with nothing but itself under strict rules. Names are compared in A-labels,
lower case (daemon.model.idn). The list is loaded once per process, on first use.
"""
from __future__ import annotations

from functools import lru_cache

from publicsuffixlist import PublicSuffixList

from daemon.model.idn import domain_key


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


def _key(domain: str) -> str | None:
    try:
        return domain_key(domain)
    except ValueError:
        return None


@lru_cache(maxsize=4096)
def org_domain(domain: str) -> str | None:
    """The organisational domain of `domain` (`eu.corp.example.co.uk` -> `example.co.uk`),
    None when it is not a valid name or is itself a public suffix."""
    name = _key(domain)
    return _psl().privatesuffix(name) if name else None


def aligned(d: str, from_domain: str, relaxed: bool = False) -> bool:
    """Whether a DKIM signature by `d` is aligned with `from_domain`: the same name, or
    with `relaxed`, the same organisational domain."""
    a, b = _key(d), _key(from_domain)
    if a is None or b is None:
        return False
    if a == b:
        return True
    if not relaxed:
        return False
    org = org_domain(a)
    return org is not None and org == org_domain(b)
