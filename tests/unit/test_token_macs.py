"""MAC'd Message-IDs and bounce tokens, daemon.pipeline.tokens (reliability.md F 64, 75, 76)."""
from __future__ import annotations

import hmac
import os

import pytest

from daemon.errors import ConfigError
from daemon.pipeline import tokens

RING = tokens.Keyring({1: b"k" * 32}, 1)
NONCE = bytes(range(8))


def test_message_id_round_trip_and_tag_length():
    mid = tokens.message_id(RING, "ack", 42, NONCE, "Example.com")
    local, domain = mid.split("@")
    assert domain == "example.com" and local.startswith("hd.") and len(local) == 3 + 48
    tag = tokens.read_message_id(RING, f"<{mid}>")
    assert tag == tokens.MessageTag("ack", 42, NONCE, 1)
    assert tokens._MSGID_MAC * 8 >= 96                       # >= 96 bits of HMAC-SHA256


@pytest.mark.parametrize("pos", [3, 10, 20, 30, 40, 50])
def test_tampered_message_id_is_rejected(pos):
    mid = tokens.message_id(RING, "agent", 7, NONCE, "example.com")
    swapped = "a" if mid[pos] != "a" else "b"
    assert tokens.read_message_id(RING, mid[:pos] + swapped + mid[pos + 1:]) is None


def test_case_folded_and_foreign_ids():
    mid = tokens.message_id(RING, "notice", 9, NONCE, "example.com")
    assert tokens.read_message_id(RING, mid.upper()).ticket_id == 9        # case-insensitive base32
    for other in ("", "abc@example.com", "<hd.short@example.com>", "hd." + "a" * 48 + "@x",
                  mid.replace("@", "x@")):
        assert tokens.read_message_id(RING, other) is None


def test_key_rotation_and_unknown_key_id():
    old, new = tokens.Keyring({1: b"o" * 32}, 1), tokens.Keyring({2: b"n" * 32, 1: b"o" * 32}, 2)
    signed_old = tokens.message_id(old, "ack", 1, NONCE, "example.com")
    assert tokens.read_message_id(new, signed_old).kid == 1                 # old key still verifies
    assert tokens.read_message_id(tokens.Keyring({2: b"n" * 32}, 2), signed_old) is None  # retired key
    assert tokens.read_message_id(new, tokens.message_id(new, "ack", 1, NONCE, "example.com")).kid == 2
    other = tokens.Keyring({1: b"x" * 32}, 1)                                 # same kid, other secret
    assert tokens.read_message_id(other, signed_old) is None


def test_verification_takes_one_code_path(monkeypatch):
    """Valid, tampered and unknown-key tokens all go through exactly one compare_digest."""
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(tokens.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    mid = tokens.message_id(RING, "ack", 1, NONCE, "example.com")
    unknown = tokens.message_id(tokens.Keyring({9: b"z" * 32}, 9), "ack", 1, NONCE, "example.com")
    for value in (mid, mid[:20] + ("a" if mid[20] != "a" else "b") + mid[21:], unknown):
        tokens.read_message_id(RING, value)
    assert len(calls) == 3


def test_bounce_address_round_trip_and_case_folding():
    addr = tokens.bounce_address(RING, "support@example.com", NONCE)
    local = addr.split("@")[0]
    assert local.startswith("support+bounce-") and len(local) <= 64
    assert tokens.bounce_nonce(RING, addr, "support@example.com") == NONCE
    assert tokens.bounce_nonce(RING, addr.upper(), "support@example.com") == NONCE
    assert tokens.bounce_nonce(RING, f"<{addr}>", "support@example.com") == NONCE
    assert tokens.bounce_nonce(RING, addr.replace("example.com", "evil.test"), "support@example.com") is None
    assert tokens.bounce_nonce(RING, "support@example.com", "support@example.com") is None
    tampered = addr[:20] + ("a" if addr[20] != "a" else "b") + addr[21:]
    assert tokens.bounce_nonce(RING, tampered, "support@example.com") is None


def test_bounce_address_refuses_long_local_part():
    with pytest.raises(ConfigError, match="too long for bounce addresses"):
        tokens.check_address("a-very-long-local-part-for-support@example.com")
    tokens.check_address("helpdesk@example.com")


def test_brute_force_tokens_all_rejected():
    rejected = sum(tokens.read_bounce_token(RING, tokens._b32(os.urandom(21))) is None for _ in range(2000))
    assert rejected == 2000


def test_reply_address_slot_and_loop_marker():
    assert tokens.reply_address("support@example.com") == "support@example.com"
    assert tokens.reply_address("support@example.com", "abc234") == "support+abc234@example.com"
    assert tokens.loop_marker("Support@Example.com") == tokens.loop_marker("support@example.com")
    assert "helpdeskd/" in tokens.loop_marker("support@example.com")
