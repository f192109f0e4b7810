"""ARC (RFC 8617): an agent's mail that came through a trusted forwarder or mailing list.

A forwarder that changes a mail (a list's subject tag or footer) breaks the author's DKIM
signature. If it is an ARC sealer, it recorded what it saw on arrival in an
ARC-Authentication-Results field (AAR) and sealed that with its own key. `arc_auth` accepts
such a mail as authenticated for its From address only when all of these hold:

* the whole ARC chain validates (dkimpy: every ARC-Seal, the newest ARC-Message-Signature,
  cv= consistent), with RSA keys of at least `min_key_bits`;
* the newest ARC set - the hop that handed the mail on to us - is sealed (`ARC-Seal d=`) by a
  domain in `[agents] arc_trusted_forwarders` (exact names), and its message signature
  covers the From field and has no `l=` body length limit, so nothing after that hop can have
  changed who the mail is from or appended text;
* that set's AAR says `dmarc=pass header.from=<the From domain>`, or `dkim=pass` with a
  `header.d` aligned with the From domain (strict, or relaxed where configured:
  daemon.alignment).

Anything less is not a pass: a forged From sent through a trusted list carries the list's
own honest `dkim=fail`/`dmarc=fail` record, and an untrusted sealer's claims are ignored.
A DNS failure while fetching a sealer's key is `temperror` (the mail waits, never passes).
Edge module: DNS goes through the caller's lookup function (daemon.identity).
"""
from __future__ import annotations

import logging
import re
from typing import Callable

import authres
import dkim
from dkim.util import InvalidTagValueList, parse_tag_value

from daemon.alignment import aligned
from daemon.errors import DnsTemporary
from daemon.model import Auth
from daemon.pipeline import addresses as hdr

_DKIMPY = logging.getLogger("daemon.arc.dkimpy")        # dkimpy logs every bad seal as an error
_DKIMPY.setLevel(logging.CRITICAL)
_DKIMPY.propagate = False
_INSTANCE = re.compile(rb"^\s*i\s*=\s*(\d{1,2})\s*;", re.I)
MAX_SETS = 10                                            # RFC 8617 5.1.1.1: more than 50 is invalid; we stop early
Lookup = Callable[[str], "bytes | None"]


def arc_auth(raw: bytes, fields: list[tuple[str, bytes]], address: str, domain: str, *,
             trusted: frozenset[str], relaxed: bool, lookup: Lookup, min_key_bits: int = 1024,
             timeout: float = 5.0) -> Auth:
    """The ARC verdict on a mail whose From is `address` (domain `domain`, A-labels);
    `fields` are its header fields (lower-case name, raw value), top first."""
    seals = [v for n, v in fields if n == "arc-seal"]
    if not seals:
        return Auth("none", method="arc", evidence=("arc: no ARC set",))
    if not trusted:
        return Auth("none", method="arc", evidence=("arc: no trusted forwarder configured",))
    if len(seals) > MAX_SETS:
        return Auth("fail", method="arc", evidence=(f"arc: {len(seals)} ARC sets (more than {MAX_SETS})",))
    cv, results, why, temporary = _verify(raw, lookup, min_key_bits, timeout)
    if temporary:
        return Auth("temperror", method="arc", evidence=(f"arc: temperror: DNS lookup failed: {why}",))
    if cv != dkim.CV_Pass or not results:
        return Auth("fail", method="arc", evidence=(f"arc: chain does not validate ({why})",))
    newest = results[0]
    n, sealer = newest["instance"], _text(newest["as-domain"]).lower()
    evidence = [f"arc: chain of {len(results)} set(s) validates; i={n} sealed by {sealer}"]
    if sealer not in trusted:
        return Auth("fail", method="arc", evidence=tuple(evidence + [f"arc: {sealer} is not a trusted forwarder"]))
    problem = _ams_problem(fields, n)
    if problem:
        return Auth("fail", method="arc", evidence=tuple(evidence + [f"arc i={n}: {problem}"]))
    verdict = _aar_verdict(newest.get("aar-value") or b"", domain, relaxed)
    evidence.append(f"arc i={n} {sealer} recorded: {verdict[1]}")
    if verdict[0]:
        return Auth("pass", address, "arc", tuple(evidence))
    return Auth("fail", method="arc", evidence=tuple(evidence))


def _verify(raw: bytes, lookup: Lookup, min_key_bits: int, timeout: float) -> tuple[object, list, str, bool]:
    """(cv, per-instance results newest first, reason, DNS failed) from dkimpy."""
    failures: list[str] = []

    def txt(name, timeout=timeout):
        key = (name.decode("ascii", "replace") if isinstance(name, bytes) else str(name)).rstrip(".").lower()
        try:
            return lookup(key)
        except (DnsTemporary, TimeoutError, OSError) as exc:
            failures.append(str(exc) or exc.__class__.__name__)
            raise dkim.DnsTimeoutError(str(exc)) from None
    try:
        cv, results, why = dkim.ARC(raw, logger=_DKIMPY, minkey=min_key_bits, timeout=timeout).verify(dnsfunc=txt)
    except dkim.DKIMException as exc:
        cv, results, why = dkim.CV_Fail, [], str(exc)
    except Exception as exc:                # noqa: BLE001 - a resolver or parser bug must not pass
        return dkim.CV_Fail, [], f"{exc.__class__.__name__}: {exc}", True
    if failures:
        return dkim.CV_Fail, [], failures[0], True
    return cv, results, _text(why), False


def _ams_problem(fields: list[tuple[str, bytes]], instance: int) -> str:
    """Why the newest ARC-Message-Signature does not protect the From field ("" if it does)."""
    for name, value in fields:
        if name != "arc-message-signature":
            continue
        try:
            tags = parse_tag_value(value.replace(b"\r", b"").replace(b"\n", b""))
        except (InvalidTagValueList, ValueError):
            continue
        if tags.get(b"i", b"").strip() != str(instance).encode():
            continue
        if b"l" in tags:
            return "the message signature has an l= body length limit: not accepted"
        signed = {h.strip().lower() for h in tags.get(b"h", b"").split(b":")}
        return "" if b"from" in signed else "the message signature does not cover From"
    return "no message signature"


def _aar_verdict(value: bytes, domain: str, relaxed: bool) -> tuple[bool, str]:
    """(passes, what the AAR says) for the From domain."""
    body = _INSTANCE.sub(b"", value, count=1)
    try:
        parsed = authres.AuthenticationResultsHeader.parse_value(hdr.unfolded(body).strip())
    except (authres.AuthResError, ValueError, IndexError):
        return False, "unreadable ARC-Authentication-Results"
    said = []
    for r in parsed.results:
        method, result = str(r.method).lower(), str(r.result).lower()
        props = {f"{p.type}.{p.name}".lower(): str(p.value).lower() for p in r.properties}
        if method == "dmarc":
            said.append(f"dmarc={result} header.from={props.get('header.from', '')}")
            if result == "pass" and props.get("header.from") == domain:
                return True, said[-1]
        elif method == "dkim":
            d = props.get("header.d", "")
            said.append(f"dkim={result} header.d={d}")
            if result == "pass" and d and aligned(d, domain, relaxed):
                return True, said[-1] + ("" if d == domain else f" (relaxed alignment with {domain})")
    return False, "; ".join(said) or "no dkim or dmarc result"


def _text(value) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
