from __future__ import annotations

import itertools

import pytest

from dvm.relay.backoff import BackoffPolicy, backoff_delays


def test_exponential_capped_without_jitter_at_r_zero() -> None:
    delays = list(itertools.islice(backoff_delays(BackoffPolicy(), random=lambda: 0.0), 9))
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_jitter_keeps_at_least_half_the_base() -> None:
    values = iter([0.999, 0.5, 0.0])
    delays = list(itertools.islice(backoff_delays(BackoffPolicy(), random=lambda: next(values)), 3))
    assert delays == pytest.approx([0.5 * (1 - 0.4995), 1.0 * 0.75, 2.0])
    assert all(d > base / 2 for d, base in zip(delays, [0.5, 1.0, 2.0], strict=True))


def test_bad_policy_and_bad_random() -> None:
    with pytest.raises(ValueError, match="initial_s"):
        BackoffPolicy(initial_s=0)
    with pytest.raises(ValueError, match="jitter"):
        BackoffPolicy(jitter=2)
    with pytest.raises(ValueError, match="random"):
        next(backoff_delays(BackoffPolicy(), random=lambda: 1.0))
