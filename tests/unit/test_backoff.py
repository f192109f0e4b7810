"""The one backoff formula (daemon.backoff) gives what each of its three former copies gave."""
from __future__ import annotations

import math

import pytest

from daemon.backoff import EQUAL_JITTER, NO_JITTER, UPWARD_JITTER, BackoffPolicy, backoff
from daemon.mailer import RetryPolicy
from daemon.mailer import backoff as relay_backoff

RANDS = (0.0, 0.25, 0.5, 0.999)


def old_imap_connect(attempt, base, cap, rand):          # daemon/intake/imap.py before the merge
    d = min(cap, base * 2 ** min(max(attempt, 1) - 1, 40))
    return d * (0.5 + rand / 2)


def old_imap_auth(attempt, base, cap, rand):
    delay = min(cap, base * 2 ** min(attempt - 1, 20))
    return delay * (1 + rand / 10)


def old_relay(attempt, first, most):
    return min(first * 2 ** max(attempt - 1, 0), most)


def old_worker(attempt, retry_seconds):
    return retry_seconds * 2 ** (attempt - 1)


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 9, 12, 20])
@pytest.mark.parametrize("rand", RANDS)
def test_imap_reconnect_and_refused_login_unchanged(attempt, rand):
    assert backoff(attempt, BackoffPolicy(1.0, 300.0, EQUAL_JITTER), rand) == old_imap_connect(attempt, 1, 300, rand)
    assert backoff(attempt, BackoffPolicy(300.0, 3600.0, UPWARD_JITTER), rand) == pytest.approx(
        old_imap_auth(attempt, 300, 3600, rand))


@pytest.mark.parametrize("attempt", [0, 1, 2, 3, 4, 5, 9, 50])
def test_relay_retry_schedule_unchanged(attempt):
    assert relay_backoff(attempt, RetryPolicy(300, 3600, 5)) == old_relay(attempt, 300, 3600)


@pytest.mark.parametrize("attempt", [1, 2, 3, 6])
def test_worker_retry_delay_is_the_uncapped_policy(attempt):
    assert backoff(attempt, BackoffPolicy(30.0)) == old_worker(attempt, 30)


def test_jitter_bounds_and_huge_attempts():
    p = BackoffPolicy(10.0, 100.0, EQUAL_JITTER)
    assert backoff(10**6, p, 0.0) == 50.0 and backoff(10**6, p, 0.999) < 100.0
    assert backoff(-3, BackoffPolicy(10.0), 0.7) == 10.0            # NO_JITTER ignores rand
    assert math.isfinite(backoff(10**9, BackoffPolicy(1.0)))
    assert BackoffPolicy(1.0).spread == NO_JITTER
