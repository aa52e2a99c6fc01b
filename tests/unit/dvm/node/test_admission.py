"""Admission: capacity, per-requester token buckets (injected clock), PoW, allow-list."""

from __future__ import annotations

import dataclasses

import pytest

from dvm.node.admission import Admission, LoadMeter, TokenBucket
from dvm.node.config import LimitsConfig
from dvm.nostr.nip13 import mine
from dvm.nostr.nip90 import ErrorReason, build_job_request
from tests.unit.dvm.node.conftest import NOW, key, make_request


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_spends_and_refills() -> None:
    bucket = TokenBucket(2, 0.5, now=0.0)
    assert bucket.take(0.0)
    assert bucket.take(0.0)
    assert not bucket.take(0.0)
    assert not bucket.take(1.9)  # 0.95 tokens
    assert bucket.take(2.0)
    assert bucket.tokens(100.0) == 2.0  # capped at capacity


def test_token_bucket_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="capacity"):
        TokenBucket(0, 1.0, now=0.0)
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(1, 0.0, now=0.0)


def test_rate_limit_is_per_requester_with_injected_clock() -> None:
    clock = FakeClock()
    admission = Admission(LimitsConfig(rate_limit_burst=2, rate_limit_per_minute=6.0), clock=clock)
    alice, bob = "aa" * 32, "bb" * 32
    assert admission.check_rate(alice) is None
    assert admission.check_rate(alice) is None
    refusal = admission.check_rate(alice)
    assert refusal is not None
    assert refusal.reason is ErrorReason.RATE_LIMITED
    assert admission.check_rate(bob) is None  # bob has his own bucket
    clock.now += 10.0  # 6 per minute: one token back after 10 s
    assert admission.check_rate(alice) is None
    assert admission.check_rate(alice) is not None


def test_rate_limiter_memory_is_bounded() -> None:
    clock = FakeClock()
    admission = Admission(LimitsConfig(rate_limit_burst=1), clock=clock, max_tracked_requesters=2)
    first = "01" * 32
    assert admission.check_rate(first) is None
    assert admission.check_rate(first) is not None
    admission.check_rate("02" * 32)
    admission.check_rate("03" * 32)  # evicts the first key's bucket
    assert admission.check_rate(first) is None


def test_capacity() -> None:
    admission = Admission(LimitsConfig(max_concurrent_jobs=2))
    assert admission.check_capacity(0) is None
    assert admission.check_capacity(1) is None
    refusal = admission.check_capacity(2)
    assert refusal is not None
    assert refusal.reason is ErrorReason.CAPACITY


def test_allow_list() -> None:
    allowed = key(2).public_key.hex()
    admission = Admission(LimitsConfig(allowed_requesters=frozenset({allowed})))
    assert admission.check_allowed(allowed) is None
    refusal = admission.check_allowed(key(3).public_key.hex())
    assert refusal is not None
    assert refusal.reason is ErrorReason.BAD_REQUEST
    assert "allow-list" in refusal.message
    assert Admission(LimitsConfig()).check_allowed(key(3).public_key.hex()) is None


def test_proof_of_work() -> None:
    requester, provider = key(2), key(1)
    admission = Admission(LimitsConfig(min_pow_bits=8))
    plain = make_request(requester, provider)
    refusal = admission.check_pow(plain)
    assert refusal is not None
    assert refusal.reason is ErrorReason.BAD_REQUEST
    assert "proof of work" in refusal.message
    unsigned = build_job_request(
        requester=requester.public_key,
        provider=provider.public_key,
        tee="simulated",
        nonce=b"\x01" * 32,
        created_at=NOW,
        params=[("model", "tiny")],
    )
    mined = mine(unsigned, 8).sign(requester, aux_rand=bytes(32))
    assert admission.check_pow(mined) is None
    too_little = mine(unsigned, 4).sign(requester, aux_rand=bytes(32))
    low = admission.check_pow(too_little)
    assert low is not None
    assert "below the required 8" in low.message
    assert Admission(dataclasses.replace(LimitsConfig(), min_pow_bits=0)).check_pow(plain) is None


def test_load_meter_counts_the_last_minute_in_bounded_memory() -> None:
    meter = LoadMeter()
    for t in range(600):  # one event per second for ten minutes
        meter.add(float(t))
    assert 50 <= meter.count(599.0) <= 60  # only the last minute's slots count
    assert meter.count(599.0 + 61.0) == 0
    assert len(meter._counts) <= 6  # the bound is the point of the test


def test_proof_of_work_rises_under_load_and_falls_back() -> None:
    clock = FakeClock()
    limits = LimitsConfig(min_pow_bits=2, load_pow_bits=8, load_refusals_per_minute=3)
    admission = Admission(limits, clock=clock)
    requester, provider = key(2), key(1)
    unsigned = build_job_request(
        requester=requester.public_key,
        provider=provider.public_key,
        tee="simulated",
        nonce=b"\x02" * 32,
        created_at=NOW,
        params=[("model", "tiny")],
    )
    light = mine(unsigned, 2).sign(requester, aux_rand=bytes(32))
    heavy = mine(unsigned, 8).sign(requester, aux_rand=bytes(32))
    assert admission.required_pow_bits() == 2
    assert admission.check_pow(light) is None
    for _ in range(3):
        admission.note_refusal()
    assert admission.under_load()
    assert admission.required_pow_bits() == 8
    refusal = admission.check_pow(light)
    assert refusal is not None
    assert refusal.reason is ErrorReason.BAD_REQUEST
    assert "8 bits required while this provider is under load" in refusal.message
    assert admission.check_pow(heavy) is None
    clock.now += 61.0  # a quiet minute later: the floor again
    assert not admission.under_load()
    assert admission.check_pow(light) is None


def test_the_floor_stays_when_it_is_above_the_load_bits() -> None:
    clock = FakeClock()
    admission = Admission(
        LimitsConfig(min_pow_bits=12, load_pow_bits=4, load_refusals_per_minute=1), clock=clock
    )
    admission.note_refusal()
    assert admission.required_pow_bits() == 12


def test_refusal_answers_are_limited_per_requester_and_node_wide() -> None:
    clock = FakeClock()
    limits = LimitsConfig(
        rate_limit_burst=2,
        rate_limit_per_minute=6.0,
        refusal_feedback_burst=3,
        refusal_feedback_per_minute=6.0,
    )
    admission = Admission(limits, clock=clock)
    alice = "aa" * 32
    assert admission.may_answer(alice)
    assert admission.may_answer(alice)
    assert not admission.may_answer(alice)  # her bucket (the rate limit's size) is empty
    assert admission.may_answer("bb" * 32)  # the node-wide bucket had one left
    fresh = [f"{i:064x}" for i in range(50)]
    assert not any(admission.may_answer(k) for k in fresh)  # fresh keys: node-wide bound
    clock.now += 10.0  # 6 per minute: one node-wide token back
    assert sum(admission.may_answer(k) for k in fresh) == 1
    clock.now += 600.0
    assert sum(admission.may_answer(k) for k in fresh) == 3  # never more than the burst


def test_a_denied_answer_spends_no_token_of_the_requester() -> None:
    clock = FakeClock()
    limits = LimitsConfig(
        rate_limit_burst=1, refusal_feedback_burst=1, refusal_feedback_per_minute=1.0
    )
    admission = Admission(limits, clock=clock)
    assert admission.may_answer("01" * 32)  # spends the node-wide token
    assert not admission.may_answer("02" * 32)
    clock.now += 60.0
    assert admission.may_answer("02" * 32)  # its own token was not spent by the denial


def test_token_bucket_says_how_long_to_wait() -> None:
    bucket = TokenBucket(1, 2.0, now=0.0)
    assert bucket.wait_s(0.0) == 0.0
    assert bucket.take(0.0)
    assert bucket.wait_s(0.0) == pytest.approx(0.5)
    assert bucket.wait_s(0.25) == pytest.approx(0.25)
