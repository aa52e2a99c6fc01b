"""Request screening: each malformed or unserved request gets its cdvm/1 reason."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvm.node.admission import Admission, Refusal
from dvm.node.config import NodeConfig, parse_config
from dvm.node.intake import Accepted, is_for_us, precheck, screen
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.nip90 import ErrorReason
from tests.unit.dvm.node.conftest import NOW, key, make_request

REQUESTER, PROVIDER = key(2), key(1)


def _screen(config: NodeConfig, event: Event, *, running: int = 0) -> Accepted | Refusal:
    return screen(
        event, config=config, admission=Admission(config.limits), running_jobs=running, now=NOW
    )


def _raw(tags: Sequence[Sequence[str]], *, content: str = "", kind: int = 5050) -> Event:
    unsigned = UnsignedEvent(
        REQUESTER.public_key.hex(), NOW, kind, tuple(tuple(t) for t in tags), content
    )
    return unsigned.sign(REQUESTER, aux_rand=bytes(32))


_P = ("p", PROVIDER.public_key.hex())
_TEE = ("tee", "simulated")
_NONCE = ("nonce", "11" * 32)
_MODEL = ("param", "model", "tiny")


def test_a_valid_request_is_accepted(config: NodeConfig) -> None:
    decision = _screen(config, make_request(REQUESTER, PROVIDER))
    assert isinstance(decision, Accepted)
    assert decision.model.name == "tiny"
    assert decision.request.nonce == "07" * 32


@pytest.mark.parametrize(
    ("event", "reason", "text"),
    [
        (_raw([_P, _TEE, _MODEL]), ErrorReason.BAD_REQUEST, "nonce"),
        (_raw([_P, _TEE, _MODEL, ("nonce", "xyz")]), ErrorReason.BAD_REQUEST, "nonce"),
        (_raw([_P, _TEE, _MODEL, _NONCE, _NONCE]), ErrorReason.BAD_REQUEST, "nonce"),
        (_raw([_P, _NONCE, _MODEL]), ErrorReason.BAD_REQUEST, "'tee'"),
        (_raw([_P, _TEE, _NONCE, _MODEL], content="secret"), ErrorReason.BAD_REQUEST, "content"),
        (_raw([_P, _TEE, _NONCE, _MODEL, ("i", "hello", "text")]), ErrorReason.BAD_REQUEST, "'i'"),
        (_raw([_P, _TEE, _NONCE]), ErrorReason.BAD_REQUEST, "names no model"),
        (
            make_request(REQUESTER, PROVIDER, tee="tdx"),
            ErrorReason.UNSUPPORTED_TEE,
            "offered: simulated",
        ),
        (
            make_request(REQUESTER, PROVIDER, tee="sev-snp"),
            ErrorReason.UNSUPPORTED_TEE,
            "'sev-snp'",
        ),
        (
            make_request(REQUESTER, PROVIDER, params=[("model", "gpt-9")]),
            ErrorReason.UNSUPPORTED_MODEL,
            "served: tiny",
        ),
        (
            make_request(REQUESTER, PROVIDER, expiration=NOW - 1),
            ErrorReason.BAD_REQUEST,
            "expired",
        ),
        (
            make_request(REQUESTER, PROVIDER, expiration=NOW),
            ErrorReason.BAD_REQUEST,
            "expired",
        ),
        (
            make_request(REQUESTER, PROVIDER, extra_tags=[("pad", "x" * 20_000)]),
            ErrorReason.BAD_REQUEST,
            "at most 16384",
        ),
        (
            make_request(REQUESTER, PROVIDER, params=[("model", "tiny"), ("colour", "red")]),
            ErrorReason.BAD_REQUEST,
            "unknown parameter 'colour'",
        ),
        (
            make_request(REQUESTER, PROVIDER, params=[("model", "tiny"), ("max_tokens", "0")]),
            ErrorReason.BAD_REQUEST,
            "'max_tokens' must be an integer from 1 to 1024",
        ),
        (
            make_request(REQUESTER, PROVIDER, params=[("model", "tiny"), ("mode", "batch")]),
            ErrorReason.BAD_REQUEST,
            "'mode' must be one of oneshot, chat",
        ),
        (make_request(REQUESTER, PROVIDER, kind=5001), ErrorReason.BAD_REQUEST, "kind 5001"),
    ],
)
def test_refusal_reasons(config: NodeConfig, event: Event, reason: ErrorReason, text: str) -> None:
    decision = _screen(config, event)
    assert isinstance(decision, Refusal)
    assert decision.reason is reason
    assert text in decision.message


def test_future_expiration_is_fine(config: NodeConfig) -> None:
    decision = _screen(config, make_request(REQUESTER, PROVIDER, expiration=NOW + 60))
    assert isinstance(decision, Accepted)


def test_capacity_is_checked_last(config: NodeConfig) -> None:
    full = _screen(config, make_request(REQUESTER, PROVIDER), running=2)
    assert isinstance(full, Refusal)
    assert full.reason is ErrorReason.CAPACITY
    # a malformed request is refused for what is wrong with it, not for capacity
    bad = _screen(config, make_request(REQUESTER, PROVIDER, tee="tdx"), running=2)
    assert isinstance(bad, Refusal)
    assert bad.reason is ErrorReason.UNSUPPORTED_TEE


def test_rate_limit_counts_malformed_requests_too(config: NodeConfig) -> None:
    limits = dataclasses.replace(config.limits, rate_limit_burst=2)
    admission = Admission(limits, clock=lambda: 0.0)
    tight = dataclasses.replace(config, limits=limits)
    for _ in range(2):
        screen(_raw([_P, _TEE, _MODEL]), config=tight, admission=admission, running_jobs=0, now=NOW)
    decision = screen(
        make_request(REQUESTER, PROVIDER),
        config=tight,
        admission=admission,
        running_jobs=0,
        now=NOW,
    )
    assert isinstance(decision, Refusal)
    assert decision.reason is ErrorReason.RATE_LIMITED


def test_allow_list_refuses_others(config: NodeConfig) -> None:
    limits = dataclasses.replace(
        config.limits, allowed_requesters=frozenset({key(9).public_key.hex()})
    )
    decision = _screen(
        dataclasses.replace(config, limits=limits), make_request(REQUESTER, PROVIDER)
    )
    assert isinstance(decision, Refusal)
    assert decision.reason is ErrorReason.BAD_REQUEST
    assert "allow-list" in decision.message


def test_pow_minimum(config: NodeConfig) -> None:
    limits = dataclasses.replace(config.limits, min_pow_bits=12)
    decision = _screen(
        dataclasses.replace(config, limits=limits), make_request(REQUESTER, PROVIDER)
    )
    assert isinstance(decision, Refusal)
    assert "proof of work" in decision.message


def test_is_for_us() -> None:
    ours = make_request(REQUESTER, PROVIDER)
    assert is_for_us(ours, PROVIDER.public_key.hex())
    assert not is_for_us(ours, key(7).public_key.hex())
    note = UnsignedEvent(REQUESTER.public_key.hex(), NOW, 1, (_P,), "hi").sign(
        REQUESTER, aux_rand=bytes(32)
    )
    assert not is_for_us(note, PROVIDER.public_key.hex())


_tag = st.lists(st.text(max_size=70), min_size=1, max_size=4).map(tuple)


@settings(max_examples=200, deadline=None)
@given(
    tags=st.lists(st.one_of(_tag, st.sampled_from([_P, _TEE, _NONCE, _MODEL])), max_size=8),
    content=st.text(max_size=20),
    kind=st.integers(min_value=5000, max_value=5999),
)
def test_garbage_requests_get_a_refusal_never_an_exception(
    tags: list[tuple[str, ...]], content: str, kind: int
) -> None:
    event = UnsignedEvent(REQUESTER.public_key.hex(), NOW, kind, tuple(tags), content).sign(
        REQUESTER, aux_rand=bytes(32)
    )
    decision = screen(
        event, config=_STATIC, admission=Admission(_STATIC.limits), running_jobs=0, now=NOW
    )
    assert isinstance(decision, Accepted | Refusal)


def _static_config() -> NodeConfig:
    return parse_config(
        {
            "node": {"key_file": "k", "data_dir": "d", "relays": ["ws://127.0.0.1:1"]},
            "tee": {"kinds": ["simulated"]},
            "models": [{"name": "tiny", "runner": "onnx", "path": "m", "sha256": "0" * 64}],
        },
        base_dir=Path("/"),
    )


_STATIC = _static_config()


# --- precheck: the cheap checks that run before the ledger --------------------------------


def _pre(config: NodeConfig, event: Event, admission: Admission | None = None) -> Refusal | None:
    return precheck(event, config=config, admission=admission or Admission(config.limits), now=NOW)


def _with(config: NodeConfig, **limits: object) -> NodeConfig:
    return dataclasses.replace(config, limits=dataclasses.replace(config.limits, **limits))


def test_precheck_refuses_cheaply_without_spending_rate_tokens(config: NodeConfig) -> None:
    config = _with(config, max_request_bytes=2048, rate_limit_burst=1)
    admission = Admission(config.limits, clock=lambda: 0.0)
    cases = [
        _raw([_P, _TEE, _NONCE, _MODEL, ("x", "y" * 3000)]),  # size
        _raw([_P, _TEE, _NONCE, _MODEL], kind=5051),  # kind not served
        _raw([_P, _TEE, _NONCE, _MODEL, ("expiration", str(NOW))]),  # expired
    ]
    for event in cases:
        refusal = _pre(config, event, admission)
        assert refusal is not None
        assert refusal.reason is ErrorReason.BAD_REQUEST
    good = _raw([_P, _TEE, _NONCE, _MODEL])
    assert _pre(config, good, admission) is None
    # none of the refusals spent the requester's one rate-limit token
    assert admission.check_rate(good.pubkey) is None


def test_precheck_leaves_a_malformed_expiration_to_the_parser(config: NodeConfig) -> None:
    event = _raw([_P, _TEE, _NONCE, _MODEL, ("expiration", "soon")])
    assert _pre(config, event) is None
    refusal = _screen(config, event)
    assert isinstance(refusal, Refusal)
    assert "malformed job request" in refusal.message


def test_precheck_applies_allow_list_and_proof_of_work(config: NodeConfig) -> None:
    refusal = _pre(_with(config, min_pow_bits=12), _raw([_P, _TEE, _NONCE, _MODEL]))
    assert refusal is not None
    assert "proof of work" in refusal.message
    others = _with(config, allowed_requesters=frozenset({key(9).public_key.hex()}))
    refusal = _pre(others, _raw([_P, _TEE, _NONCE, _MODEL]))
    assert refusal is not None
    assert "allow-list" in refusal.message
