from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dvm.relay.backoff import BackoffPolicy, backoff_delays

PLAIN = BackoffPolicy(quick_attempts=0)


def test_exponential_capped_without_jitter_at_r_zero() -> None:
    delays = list(itertools.islice(backoff_delays(PLAIN, random=lambda: 0.0), 9))
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_default_retries_quickly_before_backing_off() -> None:
    delays = list(itertools.islice(backoff_delays(BackoffPolicy(), random=lambda: 0.0), 24))
    assert delays == [0.25] * 20 + [0.5, 1.0, 2.0, 4.0]
    # The quick phase, at its slowest (no jitter), is over within 5 s of the first failure.
    assert sum(delays[:20]) == pytest.approx(5.0)


def test_quick_base_never_slows_a_faster_policy() -> None:
    fast = BackoffPolicy(initial_s=0.1, max_s=0.5, quick_attempts=2)
    delays = list(itertools.islice(backoff_delays(fast, random=lambda: 0.0), 5))
    assert delays == pytest.approx([0.1, 0.1, 0.1, 0.2, 0.4])


def test_jitter_keeps_at_least_half_the_base() -> None:
    values = iter([0.999, 0.5, 0.0])
    delays = list(itertools.islice(backoff_delays(PLAIN, random=lambda: next(values)), 3))
    assert delays == pytest.approx([0.5 * (1 - 0.4995), 1.0 * 0.75, 2.0])
    assert all(d > base / 2 for d, base in zip(delays, [0.5, 1.0, 2.0], strict=True))


@given(st.lists(st.floats(min_value=0, max_value=1, exclude_max=True), min_size=30, max_size=30))
def test_quick_delays_are_sub_second_and_later_ones_grow(rs: list[float]) -> None:
    values = iter(rs)
    delays = list(
        itertools.islice(backoff_delays(BackoffPolicy(), random=lambda: next(values)), 30)
    )
    assert all(0.125 <= d <= 0.25 for d in delays[:20])
    assert all(d >= 0.25 for d in delays[20:])


def test_bad_policy_and_bad_random() -> None:
    with pytest.raises(ValueError, match="initial_s"):
        BackoffPolicy(initial_s=0)
    with pytest.raises(ValueError, match="jitter"):
        BackoffPolicy(jitter=2)
    with pytest.raises(ValueError, match="quick"):
        BackoffPolicy(quick_attempts=-1)
    with pytest.raises(ValueError, match="quick"):
        BackoffPolicy(quick_s=0)
    with pytest.raises(ValueError, match="random"):
        next(backoff_delays(BackoffPolicy(), random=lambda: 1.0))
    with pytest.raises(ValueError, match="random"):
        next(backoff_delays(PLAIN, random=lambda: -0.1))
