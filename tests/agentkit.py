"""Test helpers for the agent path: real RSA keys (openssl), real DKIM signatures (dkimpy),
a dict-backed DNS, and agent mails built the way a mail client answers a ticket mail."""
from __future__ import annotations

import base64
import email
import subprocess
from dataclasses import dataclass, field
from email import policy
from functools import lru_cache

import dkim

from daemon.errors import DnsTemporary


@lru_cache(maxsize=8)
def rsa_key(bits: int = 2048, label: str = "a") -> tuple[bytes, str]:
    """(PKCS#1 private key PEM, public key base64 DER) - cached per test session."""
    pem = subprocess.run(["openssl", "genrsa", "-traditional", str(bits)], check=True,
                         capture_output=True).stdout
    if b"BEGIN RSA PRIVATE KEY" not in pem:               # older openssl without -traditional
        pem = subprocess.run(["openssl", "rsa", "-traditional"], input=pem, check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "rsa", "-pubout", "-outform", "DER"], input=pem, check=True,
                         capture_output=True).stdout
    return pem, base64.b64encode(der).decode()


@dataclass
class Zone:
    """DKIM keys by DNS name; names in `down` time out (temperror)."""

    records: dict[str, bytes] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)
    queries: list[str] = field(default_factory=list)

    def publish(self, selector: str, domain: str, bits: int = 2048, label: str = "a") -> bytes:
        pem, pub = rsa_key(bits, label)
        self.records[f"{selector}._domainkey.{domain}"] = f"v=DKIM1; k=rsa; p={pub}".encode()
        return pem

    def __call__(self, name: str) -> bytes | None:
        self.queries.append(name)
        if name in self.down or "*" in self.down:
            raise DnsTemporary(f"{name}: timed out")
        return self.records.get(name)

    def pinned_file(self) -> str:
        return "".join(f"{k} {v.decode()}\n" for k, v in self.records.items())


def sign(raw: bytes, domain: str, pem: bytes, selector: str = "mail", *, length: bool = False,
         headers: tuple[bytes, ...] = (b"from", b"to", b"subject", b"date", b"message-id", b"in-reply-to",
                                       b"references")) -> bytes:
    """`raw` with a real DKIM-Signature prepended (d=domain, s=selector)."""
    sig = dkim.sign(raw, selector.encode(), domain.encode(), pem, include_headers=list(headers), length=length)
    return sig + raw


def reply_address(agent_mail: bytes) -> str:
    """The Reply-To of a mail we sent an agent (their token address)."""
    return str(email.message_from_bytes(agent_mail, policy=policy.default)["Reply-To"])


def agent_reply(notice: bytes, body: str, *, frm: str = "Ana Lima <ana@example.com>", to: str | None = None,
                n: int = 1, extra: str = "", quote: bool = True, subject: str | None = None) -> bytes:
    """An agent's answer to one of our mails, as a mail client writes it: to its Reply-To,
    `Re:` subject, In-Reply-To/References, the original quoted below an attribution line."""
    parent = email.message_from_bytes(notice, policy=policy.default)
    to = to or str(parent["Reply-To"] or parent["From"])
    quoted = ""
    if quote:
        original = parent.get_body(("plain",)).get_content()
        quoted = "\r\n\r\nOn Mon, 2 Mar 2026 at 09:31, Example Service Desk <support@example.com> wrote:\r\n" + \
            "\r\n".join("> " + line for line in original.splitlines())
    refs = " ".join(x for x in (str(parent.get("References", "")), parent["Message-ID"]) if x)
    text = body.replace("\n", "\r\n") + "\r\n-- \r\nAna Lima, IT Support, ext. 4411" + quoted + "\r\n"
    return (f"From: {frm}\r\nTo: {to}\r\nSubject: {subject or 'Re: ' + str(parent['Subject'])}\r\n"
            f"Date: Mon, 02 Mar 2026 09:40:00 +0000\r\nMessage-ID: <agent-{n}@example.com>\r\n"
            f"In-Reply-To: {parent['Message-ID']}\r\nReferences: {refs}\r\n{extra}"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}").encode()


def arc_seal(raw: bytes, sealer: str, pem: bytes, results: str, selector: str = "arc",
             headers: tuple[bytes, ...] = (b"from", b"to", b"subject", b"date", b"message-id")) -> bytes:
    """`raw` as an ARC sealer (a list or forwarder, RFC 8617) hands it on: its own
    Authentication-Results (`results`, what it saw on arrival, e.g. "dkim=pass
    header.d=example.com") and a real ARC set (dkimpy) prepended, for the next instance."""
    marked = f"Authentication-Results: {sealer}; {results}\r\n".encode() + raw
    arc = dkim.arc_sign(marked, selector.encode(), sealer.encode(), pem, sealer.encode(),
                        include_headers=list(headers), timestamp=1772443200)
    return b"".join(arc) + marked


def as_list_delivers(raw: bytes, tag: bytes = b"[it-team] ", footer: bytes = b"-- \r\nthe it-team list\r\n") -> bytes:
    """What a mailing list does to a mail: a subject tag and a footer (which break DKIM)."""
    return raw.replace(b"Subject: ", b"Subject: " + tag, 1) + footer
