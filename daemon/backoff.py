"""The one backoff formula: how long to wait before attempt n+1 after n failures.

Pure: takes the attempt number, a `BackoffPolicy` and (for jitter) a number in [0, 1) that
the caller draws, so tests pin every result. Used by the outbound relay's retry schedule
(daemon.mailer), IMAP reconnects and refused logins (daemon.intake.imap), the token
endpoint client (daemon.oauth2) and the spool worker's retry delay.

    delay = min(cap, base * 2^(attempt-1)) * (low + (high - low) * rand)

`spread = (low, high)` is the jitter: (1, 1) none, (0.5, 1) "equal jitter" (never more than
the capped delay, at least half of it), (1, 1.1) upward only (never sooner than the plain
delay, for lockout-prone logins). An attempt below 1 counts as 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

NO_JITTER = (1.0, 1.0)
EQUAL_JITTER = (0.5, 1.0)
UPWARD_JITTER = (1.0, 1.1)
_MAX_DOUBLINGS = 60                      # 2**60 * any sane base overflows every cap


@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential backoff from `base` seconds, doubling, at most `cap` seconds before jitter."""

    base: float
    cap: float = math.inf
    spread: tuple[float, float] = NO_JITTER


def backoff(attempt: int, policy: BackoffPolicy, rand: float = 0.0) -> float:
    """Seconds to wait after failure number `attempt` (1 = the first failure)."""
    doublings = min(max(attempt, 1) - 1, _MAX_DOUBLINGS)
    delay = min(policy.cap, policy.base * 2 ** doublings)
    low, high = policy.spread
    return delay * (low + (high - low) * rand)
