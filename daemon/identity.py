"""Identity: is an agent's mail really from the address in its From (the agent path's edge).

parse -> thread -> **identity** -> plan (daemon.pipeline.agent). The reply token says which
ticket and which agent a mail claims (daemon.tokens); this module says whether the sender
is authenticated as the From address, by one of two signals, chosen per From domain
(`[agents] auth`, `[agents] domains`):

  dkim     the daemon verifies the DKIM signatures itself (dkimpy): a signature passes only
           if it verifies, its `d=` equals the From domain (strict alignment; relaxed - the
           same organisational domain by the Public Suffix List, daemon.alignment - for the
           From domains in `dkim_relaxed_domains`) and it has no `l=` tag (a body length
           limit lets anyone append text). Every signature is tried. When none passes and
           `arc_trusted_forwarders` is set, an ARC chain sealed last by a trusted forwarder
           may vouch for the From instead (daemon.arc, RFC 8617).
  authres  a DMARC or DKIM pass in an Authentication-Results header added by our own MTA:
           only the topmost `authres_count` A-R fields whose authserv-id is configured count
           (our MTA prepends them); copies a sender placed below them are ignored.
  either   whichever passes.

Before either: exactly one From field with exactly one address, else `fail`. A DNS failure
(timeout, SERVFAIL) is `temperror`: the caller keeps the mail and tries again later; it is
never a pass. DNS goes through a lookup function (name -> TXT bytes or None; raises
DnsTemporary): `dns_lookup` uses dnspython, `pinned_lookup` serves keys from a file first
(internal domains without public DNS; tests). This module and daemon.arc are the only
importers of dkim and authres.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import authres
import dkim
import dns.exception
import dns.resolver
from dkim.util import InvalidTagValueList, parse_tag_value

from daemon.alignment import aligned
from daemon.arc import arc_auth
from daemon.errors import ConfigError, DnsTemporary
from daemon.model import Auth
from daemon.pipeline import addresses as hdr

log = logging.getLogger(__name__)
_DKIMPY = logging.getLogger("daemon.identity.dkimpy")     # dkimpy logs every bad key as an error
_DKIMPY.setLevel(logging.CRITICAL)
_DKIMPY.propagate = False

MODES = ("dkim", "authres", "either")
Lookup = Callable[[str], "bytes | None"]
MAX_SIGNATURES = 5                   # DKIM signatures tried per mail (each may cost a DNS query)


@dataclass(frozen=True)
class AuthPolicy:
    """How agent mail is authenticated ([agents] in config)."""

    mode: str = "dkim"
    domains: Mapping[str, str] = field(default_factory=dict)     # From domain -> mode
    authserv_ids: frozenset[str] = frozenset()
    authres_count: int = 1
    min_key_bits: int = 1024
    dns_timeout: float = 5.0
    relaxed: frozenset[str] = frozenset()           # From domains with relaxed DKIM alignment
    arc_trusted: frozenset[str] = frozenset()       # ARC sealers trusted to vouch for a From

    def mode_for(self, domain: str) -> str:
        return self.domains.get(domain.lower(), self.mode)


@dataclass(frozen=True)
class Sender:
    """The From of a mail as the wire has it: every From field's mailboxes."""

    fields: int
    addresses: tuple[str, ...]
    problem: str = ""

    @property
    def address(self) -> str | None:
        return self.addresses[0] if not self.problem else None


def header_fields(raw: bytes) -> list[tuple[str, bytes]]:
    """The top header fields as (lower-case name, raw value), top first."""
    text = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    try:
        fields, _ = hdr.scan_header_block(text, max_fields=1000, max_bytes=1024 * 1024)
    except Exception:                     # noqa: BLE001 - a broken header authenticates nobody
        return []
    return [(f.name.lower(), f.value) for f in fields]


def sender_of(fields: list[tuple[str, bytes]]) -> Sender:
    """Exactly one From field with exactly one address, or a Sender with the problem."""
    values = [v for n, v in fields if n == "from"]
    found: list[str] = []
    for v in values:
        found += [a.email.lower() for a in hdr.parse_addresses(hdr.unfolded(v))]
    if len(values) != 1:
        return Sender(len(values), tuple(found), f"{len(values)} From fields (exactly one is required)")
    if len(found) != 1:
        return Sender(1, tuple(found), f"From holds {len(found)} addresses (exactly one is required)")
    return Sender(1, tuple(found))


class Authenticator:
    """Authenticates the From of raw mail by policy; `lookup` does the DNS TXT queries."""

    def __init__(self, policy: AuthPolicy, lookup: Lookup):
        if policy.mode not in MODES or any(m not in MODES for m in policy.domains.values()):
            raise ConfigError(f"agents.auth: must be one of {', '.join(MODES)}")
        self.policy, self.lookup = policy, lookup

    def authenticate(self, raw: bytes) -> Auth:
        fields = header_fields(raw)
        sender = sender_of(fields)
        if sender.address is None:
            return Auth("fail", evidence=(sender.problem,))
        domain = sender.address.rpartition("@")[2]
        mode = self.policy.mode_for(domain)
        tried: list[Auth] = []
        if mode in ("dkim", "either"):
            tried.append(self._dkim(raw, fields, sender.address, domain))
            if not tried[0].passed and self.policy.arc_trusted:
                tried.append(self._arc(raw, fields, sender.address, domain))
        if mode in ("authres", "either") and not any(a.passed for a in tried):
            tried.append(self._authres(fields, sender.address, domain))
        evidence = tuple(e for a in tried for e in a.evidence)
        for a in tried:
            if a.passed:
                return Auth("pass", sender.address, a.method, evidence)
        result = "temperror" if any(a.result == "temperror" for a in tried) else \
            "fail" if any(a.result == "fail" for a in tried) else "none"
        return Auth(result, None, "", evidence or (f"no {mode} result",))

    # ------------------------------------------------------------------ DKIM (dkimpy)
    def _dkim(self, raw: bytes, fields, address: str, domain: str) -> Auth:
        sigs = [v for n, v in fields if n == "dkim-signature"]
        if not sigs:
            return Auth("none", method="dkim", evidence=("dkim: no signature",))
        evidence, temporary = [], False
        for idx, value in enumerate(sigs[:MAX_SIGNATURES]):
            try:
                tags = parse_tag_value(value.replace(b"\n", b""))
            except (InvalidTagValueList, ValueError) as exc:
                evidence.append(f"dkim #{idx + 1}: malformed signature ({exc})")
                continue
            d = tags.get(b"d", b"").decode("ascii", "replace").strip().lower()
            if b"l" in tags:
                evidence.append(f"dkim #{idx + 1} d={d}: has an l= body length limit: not accepted")
                continue
            relaxed = domain in self.policy.relaxed
            if not aligned(d, domain, relaxed):
                evidence.append(f"dkim #{idx + 1} d={d}: not aligned with the From domain {domain}"
                                + (" (relaxed: another organisational domain)" if relaxed else ""))
                continue
            ok, why, temp = self._verify(raw, idx)
            if ok:
                how = "" if d == domain else f" (relaxed alignment with {domain})"
                evidence.append(f"dkim #{idx + 1} d={d} s={tags.get(b's', b'').decode('ascii', 'replace')}: pass{how}")
                return Auth("pass", address, "dkim", tuple(evidence))
            temporary |= temp
            evidence.append(f"dkim #{idx + 1} d={d}: {why}")
        return Auth("temperror" if temporary else "fail", method="dkim", evidence=tuple(evidence))

    def _verify(self, raw: bytes, idx: int) -> tuple[bool, str, bool]:
        """(verified, why not, temporary DNS failure) for signature number `idx`."""
        failures: list[str] = []

        def txt(name, timeout=5):
            key = (name.decode("ascii", "replace") if isinstance(name, bytes) else str(name)).rstrip(".").lower()
            try:
                return self.lookup(key)
            except (DnsTemporary, TimeoutError, OSError) as exc:
                failures.append(str(exc) or exc.__class__.__name__)
                raise dkim.DnsTimeoutError(str(exc)) from None
        try:
            d = dkim.DKIM(raw, logger=_DKIMPY, minkey=self.policy.min_key_bits, timeout=self.policy.dns_timeout)
            ok = bool(d.verify(idx=idx, dnsfunc=txt))
        except dkim.DKIMException as exc:
            return False, f"invalid: {exc}", False
        except Exception as exc:            # noqa: BLE001 - a resolver bug must defer, never pass
            return False, f"DNS lookup failed: {exc.__class__.__name__}: {exc}", True
        if failures:
            return False, f"temperror: DNS lookup failed: {failures[0]}", True
        return ok, "" if ok else "signature does not verify (or no usable key)", False

    def _arc(self, raw: bytes, fields, address: str, domain: str) -> Auth:
        p = self.policy
        return arc_auth(raw, fields, address, domain, trusted=p.arc_trusted, relaxed=domain in p.relaxed,
                        lookup=self.lookup, min_key_bits=p.min_key_bits, timeout=p.dns_timeout)

    # ------------------------------------------------------------------ Authentication-Results
    def _authres(self, fields, address: str, domain: str) -> Auth:
        ids = self.policy.authserv_ids
        if not ids:
            return Auth("none", method="authres", evidence=("authres: no trusted authserv-id configured",))
        trusted, ignored = [], 0
        for name, value in fields:
            if name != "authentication-results":
                continue
            try:
                parsed = authres.AuthenticationResultsHeader.parse_value(hdr.unfolded(value).strip())
            except (authres.AuthResError, ValueError, IndexError):
                continue
            if str(parsed.authserv_id).lower() not in ids:
                continue
            if len(trusted) < self.policy.authres_count:
                trusted.append(parsed)
            else:
                ignored += 1                       # below ours: the sender wrote it
        evidence = [f"authres: {ignored} lower Authentication-Results with our authserv-id ignored"] if ignored else []
        if not trusted:
            return Auth("none", method="authres", evidence=tuple(evidence + ["authres: no header from our MTA"]))
        temporary = False
        for h in trusted:
            for r in h.results:
                method, result = str(r.method).lower(), str(r.result).lower()
                props = {f"{p.type}.{p.name}".lower(): str(p.value).lower() for p in r.properties}
                d = props.get("header.d", "")
                if result == "pass" and ((method == "dmarc" and props.get("header.from") == domain)
                                         or (method == "dkim" and d and aligned(d, domain, domain in self.policy.relaxed))):
                    key = f"header.from={domain}" if method == "dmarc" else f"header.d={d}"
                    evidence.append(f"authres {h.authserv_id}: {method}=pass {key}")
                    return Auth("pass", address, "authres", tuple(evidence))
                if method in ("dmarc", "dkim") and result == "temperror":
                    temporary = True
                if method in ("dmarc", "dkim"):
                    evidence.append(f"authres {h.authserv_id}: {method}={result} "
                                    f"{' '.join(f'{k}={v}' for k, v in props.items())}".strip())
        return Auth("temperror" if temporary else "fail", method="authres", evidence=tuple(evidence))


# ---------------------------------------------------------------------- DNS
def dns_lookup(timeout: float = 5.0) -> Lookup:
    """TXT lookups through dnspython: no such record -> None; a timeout, SERVFAIL or no
    reachable server -> DnsTemporary (temperror)."""

    def lookup(name: str) -> bytes | None:
        try:
            answer = dns.resolver.resolve(name, "TXT", lifetime=timeout, raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.NoResolverConfiguration) as exc:
            raise DnsTemporary(f"{name}: {exc.__class__.__name__}") from None
        except dns.exception.DNSException as exc:
            raise DnsTemporary(f"{name}: {exc.__class__.__name__}: {exc}") from None
        for rrset in answer.response.answer:
            for item in rrset:
                strings = getattr(item, "strings", None)
                if strings:
                    return b"".join(strings)
        return None
    return lookup


def load_pinned(path: str | Path) -> dict[str, bytes]:
    """Pinned DKIM keys: one `NAME TXT-VALUE` per line (`sel._domainkey.example.com
    v=DKIM1; k=rsa; p=...`); `#` starts a comment."""
    keys: dict[str, bytes] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"agents.dkim_keys_file: cannot read {path}: {exc.strerror}") from None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition(" ")
        if "._domainkey." not in name or not value.strip():
            raise ConfigError(f"{path}:{n}: expected 'SELECTOR._domainkey.DOMAIN TXT-VALUE'")
        keys[name.rstrip(".").lower()] = value.strip().encode("ascii")
    return keys


def pinned_lookup(keys: Mapping[str, bytes], fallback: Lookup | None) -> Lookup:
    """Serve pinned keys first, then ask `fallback` (None: no record)."""
    def lookup(name: str) -> bytes | None:
        found = keys.get(name.rstrip(".").lower())
        if found is not None or fallback is None:
            return found
        return fallback(name)
    return lookup
