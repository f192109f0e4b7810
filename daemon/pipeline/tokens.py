"""MAC'd identifiers in the mail we send (pure): make and verify them with a `Keyring`.

Three things carry a MAC so that our own mail, and answers to it, can be recognised
without trusting anything a stranger can type:

* our **Message-ID** `<hd.TOKEN@domain>`: TOKEN = base32(kid | kind | ticket id (6 bytes) |
  nonce (8 bytes) | HMAC-SHA256(key[kid], "msgid" | those bytes)[:14]) - 48 characters, a
  112-bit tag. In-Reply-To/References pointing at it can be checked the same way.
* the **bounce (VERP) envelope sender** `local+bounce-TOKEN@domain`: TOKEN = base32(kid |
  nonce | HMAC(key[kid], "bounce" | kid | nonce)[:12]) - 34 characters, a 96-bit tag; the
  nonce names the outbox row, so a bounce is matched to the exact mail.
* the **agent reply address** `local+TOKEN@domain` in the Reply-To of every mail to an agent:
  TOKEN = base32(kid | flags | ticket id (5 bytes) | principal (4 bytes) | expiry day (2 bytes) |
  HMAC-SHA256(key[kid], "reply" | those bytes)[:12]) - 40 characters, a 96-bit tag. It
  authorises only "write into ticket T as agent P until the expiry day" (flags: reply or
  internal comment); the principal is a hash of P's registered address (`principal_id`).
  Who may act on it is decided in daemon.identity / daemon.pipeline.agent.

Tokens are lower-case base32 without padding (some MTAs case-fold local parts) and verified
with `hmac.compare_digest` on one code path, also for an unknown key id. Keys rotate by key
id: the first key signs, every listed key verifies. Keys come from an environment variable
or a systemd credential named in config (loaded by the edge module daemon/tokens.py).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Mapping

from daemon.errors import ConfigError

KINDS = {"ack": 1, "notice": 2, "agent": 3, "reply": 4}     # reply: an agent's answer to a customer
_KIND_NAMES = {v: k for k, v in KINDS.items()}
_MSGID_MAC, _BOUNCE_MAC = 14, 12
_MSGID_LEN = 48                          # base32 characters of a Message-ID token
_BOUNCE_LEN = 34
_BOUNCE_TAG = "+bounce-"
_MSGID_RE = re.compile(r"^hd\.([a-z2-7]{48})@", re.I)


@dataclass(frozen=True)
class Keyring:
    """Keys by id (1..255); `current` signs, all verify."""

    keys: Mapping[int, bytes] = field(repr=False)
    current: int

    def key(self, kid: int) -> tuple[bytes, bool]:
        """The key for `kid` and whether it exists (a dummy key otherwise: same code path)."""
        found = self.keys.get(kid)
        return (found, True) if found is not None else (b"\0" * 32, False)


@dataclass(frozen=True)
class MessageTag:
    """What a verified Message-ID of ours says."""

    kind: str
    ticket_id: int
    nonce: bytes
    kid: int


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _unb32(text: str) -> bytes | None:
    try:
        return base64.b32decode(text.upper() + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        return None


def _mac(key: bytes, label: bytes, data: bytes, size: int) -> bytes:
    return hmac.new(key, label + b"|" + data, hashlib.sha256).digest()[:size]


# ---------------------------------------------------------------------- Message-ID
def message_id(ring: Keyring, kind: str, ticket_id: int, nonce: bytes, domain: str) -> str:
    """Our Message-ID (without angle brackets) for a mail of `kind` about `ticket_id`."""
    body = bytes([ring.current, KINDS[kind]]) + int(ticket_id).to_bytes(6, "big") + nonce[:8].ljust(8, b"\0")
    key, _ = ring.key(ring.current)
    return f"hd.{_b32(body + _mac(key, b'msgid', body, _MSGID_MAC))}@{domain.lower()}"


def read_message_id(ring: Keyring, value: str) -> MessageTag | None:
    """The tag of a Message-ID we made (brackets allowed), or None: not ours, tampered, or
    signed by a key we no longer hold."""
    m = _MSGID_RE.match((value or "").strip().strip("<>"))
    raw = _unb32(m.group(1)) if m else None
    if raw is None or len(raw) != 16 + _MSGID_MAC:
        return None
    body, tag = raw[:16], raw[16:]
    key, known = ring.key(body[0])
    ok = hmac.compare_digest(_mac(key, b"msgid", body, _MSGID_MAC), tag)
    if not (ok and known and body[1] in _KIND_NAMES):
        return None
    return MessageTag(_KIND_NAMES[body[1]], int.from_bytes(body[2:8], "big"), body[8:16], body[0])


# ---------------------------------------------------------------------- bounce address
def bounce_token(ring: Keyring, nonce: bytes) -> str:
    body = bytes([ring.current]) + nonce[:8].ljust(8, b"\0")
    key, _ = ring.key(ring.current)
    return _b32(body + _mac(key, b"bounce", body, _BOUNCE_MAC))


def read_bounce_token(ring: Keyring, token: str) -> bytes | None:
    """The nonce in a valid bounce token, else None."""
    raw = _unb32(token.strip()) if len(token.strip()) == _BOUNCE_LEN else None
    if raw is None or len(raw) != 9 + _BOUNCE_MAC:
        return None
    body, tag = raw[:9], raw[9:]
    key, known = ring.key(body[0])
    ok = hmac.compare_digest(_mac(key, b"bounce", body, _BOUNCE_MAC), tag)
    return body[1:] if ok and known else None


def bounce_address(ring: Keyring, address: str, nonce: bytes) -> str:
    """`local+bounce-TOKEN@domain`: the envelope sender of one outgoing mail."""
    local, _, domain = address.rpartition("@")
    out = f"{local}{_BOUNCE_TAG}{bounce_token(ring, nonce)}"
    if len(out) > 64:
        raise ConfigError(f"helpdesk.address: local part {local!r} too long for bounce addresses "
                          f"(at most {64 - len(_BOUNCE_TAG) - _BOUNCE_LEN} characters)")
    return f"{out}@{domain}"


def check_address(address: str) -> None:
    """Raise ConfigError when bounce addresses cannot be built for `address`."""
    bounce_address(Keyring({1: b"\0" * 32}, 1), address, b"\0" * 8)


def bounce_nonce(ring: Keyring, recipient: str, address: str) -> bytes | None:
    """The nonce when `recipient` is a valid bounce address for our `address`, else None."""
    local, _, domain = (recipient or "").strip().strip("<>").rpartition("@")
    base_local, _, base_domain = address.rpartition("@")
    if domain.lower() != base_domain.lower():
        return None
    prefix = (base_local + _BOUNCE_TAG).lower()
    if not local.lower().startswith(prefix):
        return None
    return read_bounce_token(ring, local[len(prefix):])


def reply_address(address: str, token: str | None = None) -> str:
    """Where replies to our mail go: the helpdesk address, or `local+TOKEN@domain` once
    per-agent reply tokens exist (the token must be lower-case base32)."""
    if not token:
        return address
    local, _, domain = address.rpartition("@")
    return f"{local}+{token}@{domain}"


# ---------------------------------------------------------------------- agent reply address
_REPLY_MAC, _REPLY_LEN = 12, 40          # 25 bytes = 40 base32 characters; a 96-bit tag
_REPLY_BODY = 13                         # kid, flags, ticket (5), principal (4), expiry day (2)
_EPOCH = date(1970, 1, 1)
FLAG_REPLY, FLAG_COMMENT = 0, 1
FLAG_APPROVAL = 2                        # an approver's reply address (daemon.approvals); never an agent's


@dataclass(frozen=True)
class ReplyTag:
    """What a genuine agent reply token says (its MAC verified; expiry not yet judged)."""

    ticket_id: int
    principal: bytes
    expires: date
    comment: bool
    kid: int


@dataclass(frozen=True)
class ReplyCheck:
    """A reply token judged: status valid | expired | invalid (malformed, tampered or an
    unknown key id: one generic reason). `tag` is set for valid and expired tokens."""

    status: str
    tag: ReplyTag | None = None


def principal_id(email: str) -> bytes:
    """The 4-byte principal of an agent in reply tokens: a hash of the registered address."""
    return hashlib.sha256(b"principal|" + email.strip().lower().encode()).digest()[:4]


def reply_token(ring: Keyring, ticket_id: int, agent_email: str, expires: date, *, comment: bool = False,
                flag: int | None = None) -> str:
    """The token for agent `agent_email` writing into `ticket_id` until `expires` (a day);
    `flag=FLAG_APPROVAL` makes an approver's token (see approval_token)."""
    days = max(0, min((expires - _EPOCH).days, 0xFFFF))
    flag = flag if flag is not None else (FLAG_COMMENT if comment else FLAG_REPLY)
    body = (bytes([ring.current, flag]) + int(ticket_id).to_bytes(5, "big")
            + principal_id(agent_email) + days.to_bytes(2, "big"))
    key, _ = ring.key(ring.current)
    return _b32(body + _mac(key, b"reply", body, _REPLY_MAC))


def approval_token(ring: Keyring, ticket_id: int, approver: str, expires: date) -> str:
    """The reply token of an approval request: "approver P decides on change T until the
    expiry day". The agent path refuses it (its flag is no agent's)."""
    return reply_token(ring, ticket_id, approver, expires, flag=FLAG_APPROVAL)


def check_approval_token(ring: Keyring, token: str, today: date) -> ReplyCheck:
    """Judge an approval token as check_reply_token judges an agent's ("invalid" for any
    other token, an agent's included)."""
    return check_reply_token(ring, token, today, flags=(FLAG_APPROVAL,))


def check_reply_token(ring: Keyring, token: str, today: date,
                      flags: tuple[int, ...] = (FLAG_REPLY, FLAG_COMMENT)) -> ReplyCheck:
    """Judge a token from a reply address (any letter case). Malformed, tampered and
    unknown-key tokens all take the same path through one `compare_digest`; a token whose
    flag is not in `flags` is invalid."""
    text = (token or "").strip()
    raw = _unb32(text) if len(text) == _REPLY_LEN and text.isalnum() else None
    if raw is None or len(raw) != _REPLY_BODY + _REPLY_MAC:
        raw = b"\0" * (_REPLY_BODY + _REPLY_MAC)          # same work as a real token, then refused
        shaped = False
    else:
        shaped = True
    body, tag = raw[:_REPLY_BODY], raw[_REPLY_BODY:]
    key, known = ring.key(body[0])
    ok = hmac.compare_digest(_mac(key, b"reply", body, _REPLY_MAC), tag)
    if not (ok and known and shaped and body[1] in flags):
        return ReplyCheck("invalid")
    found = ReplyTag(int.from_bytes(body[2:7], "big"), body[7:11],
                     _EPOCH + timedelta(days=int.from_bytes(body[11:13], "big")), body[1] == FLAG_COMMENT, body[0])
    return ReplyCheck("valid" if today <= found.expires else "expired", found)


def loop_marker(address: str) -> str:
    """Our X-Loop value: the desk address and an instance id derived from it."""
    instance = hashlib.sha256(b"helpdeskd|" + address.lower().encode()).hexdigest()[:12]
    return f"{address.lower()} helpdeskd/{instance}"
