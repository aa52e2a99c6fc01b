"""dvm.client.verify: every crafted attestation is refused with its reason (no relay needed)."""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attestation.simulated import SimulatedTee
from attestation.snp.validate import DEFAULT_POLICY, Policy
from attestation.verification import Trust
from dvm.client import AttestationRefused, trust_simulated_roots, verify_attestation
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip90 import JobRequest, build_job_request, parse_job_request

from .fake_provider import PINS, FakeProvider, Tamper


def _request(provider: FakeProvider, *, model: str = "echo", tee: str = "simulated") -> JobRequest:
    user = SecretKey.generate(secrets.token_bytes)
    session = SecretKey.generate(secrets.token_bytes)
    unsigned = build_job_request(
        requester=user.public_key,
        provider=provider.pubkey,
        tee=tee,
        nonce=secrets.token_bytes(32),
        created_at=int(time.time()),
        params=[("model", model), ("mode", "oneshot")],
        session=session.public_key,
    )
    return parse_job_request(unsigned.sign(user, aux_rand=secrets.token_bytes(32)))


def _attest(
    provider: FakeProvider, request: JobRequest, *, edit: object = None
) -> tuple[Event, SecretKey]:
    container = SecretKey.generate(secrets.token_bytes)
    unsigned: UnsignedEvent = provider._attestation(request, container)
    if callable(edit):
        unsigned = edit(unsigned)
    return unsigned.sign(container, aux_rand=secrets.token_bytes(32)), container


def _verify(
    event: Event,
    request: JobRequest,
    container: str,
    trust: Trust,
    *,
    now: datetime | None = None,
    policy: Policy = DEFAULT_POLICY,
) -> object:
    return verify_attestation(
        event,
        request=request,
        container=container,
        policy=policy,
        trust=trust,
        now=now or datetime.now(UTC),
        pins=PINS,
    )


@pytest.fixture
def trust(sim_root: Path) -> Trust:
    return trust_simulated_roots([sim_root])


def test_honest_attestation_verifies(sim_tee: SimulatedTee, trust: Trust) -> None:
    provider = FakeProvider("ws://127.0.0.1:1", sim_tee)
    request = _request(provider)
    event, container = _attest(provider, request)
    verification = verify_attestation(
        event,
        request=request,
        container=container.public_key.hex(),
        policy=DEFAULT_POLICY,
        trust=trust,
        now=datetime.now(UTC),
        pins=PINS,
    )
    assert verification.container == container.public_key.hex()
    assert verification.job_id == request.id
    assert verification.simulated
    assert verification.measurement == sim_tee.measurement.hex()
    assert verification.claims.nonce == request.nonce
    assert any("REPORT_DATA" in c for c in verification.checks)
    # the measurement and the model are pinned (the policy's own note would be false)
    assert f"measurement is pinned with --measurement: {sim_tee.measurement.hex()}" in (
        verification.checks
    )
    assert any(
        c.startswith("model sha256 is pinned with --model-sha256") for c in verification.checks
    )
    assert not any("measurement not pinned" in w for w in verification.warnings)
    assert not any("claims.model.sha256 not compared" in w for w in verification.warnings)


def test_no_pins_refuse_an_honest_container_and_say_what_to_pin(
    sim_tee: SimulatedTee, trust: Trust
) -> None:
    provider = FakeProvider("ws://127.0.0.1:1", sim_tee)
    request = _request(provider)
    event, container = _attest(provider, request)
    with pytest.raises(AttestationRefused) as caught:
        verify_attestation(
            event,
            request=request,
            container=container.public_key.hex(),
            policy=DEFAULT_POLICY,
            trust=trust,
            now=datetime.now(UTC),
        )
    measurement, model = caught.value.reasons
    assert measurement.startswith(f"measurement {sim_tee.measurement.hex()} is not pinned")
    assert "--measurement" in measurement
    assert "cdvm trust add" in measurement
    assert model.startswith("model sha256 ")
    assert "--model-sha256" in model


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (Tamper(nonce="00" * 32), "claims.nonce is 00"),
        (Tamper(other_job="22" * 32), "claims.job differs"),
        (Tamper(flip_report=True), "SignatureInvalid"),
    ],
)
def test_tampered_attestation_is_refused(
    sim_tee: SimulatedTee, trust: Trust, tamper: Tamper, reason: str
) -> None:
    provider = FakeProvider("ws://127.0.0.1:1", sim_tee, tamper=tamper)
    request = _request(provider)
    event, container = _attest(provider, request)
    with pytest.raises(AttestationRefused) as caught:
        _verify(event, request, container.public_key.hex(), trust)
    assert any(reason in r for r in caught.value.reasons), caught.value.reasons


def test_another_provider_is_refused(sim_tee: SimulatedTee, trust: Trust) -> None:
    other = SecretKey.generate(secrets.token_bytes).public_key
    provider = FakeProvider("ws://127.0.0.1:1", sim_tee, tamper=Tamper(provider=other))
    request = _request(provider)
    event, container = _attest(provider, request)
    with pytest.raises(AttestationRefused) as caught:
        _verify(event, request, container.public_key.hex(), trust)
    assert any(f"claims.provider is {other.hex()}" in r for r in caught.value.reasons)


def test_untrusted_simulated_root_is_refused(sim_tee: SimulatedTee) -> None:
    provider = FakeProvider("ws://127.0.0.1:1", sim_tee)
    request = _request(provider)
    event, container = _attest(provider, request)
    with pytest.raises(AttestationRefused) as caught:
        _verify(event, request, container.public_key.hex(), Trust())
    assert any("UntrustedRoot" in r for r in caught.value.reasons)


def test_a_key_other_than_the_named_container_is_refused(
    sim_tee: SimulatedTee, trust: Trust
) -> None:
    provider = FakeProvider("ws://127.0.0.1:1", sim_tee)
    request = _request(provider)
    event, _ = _attest(provider, request)
    named = SecretKey.generate(secrets.token_bytes).public_key.hex()
    with pytest.raises(AttestationRefused) as caught:
        _verify(event, request, named, trust)
    assert any("not by the container" in r for r in caught.value.reasons)
    assert any("claims.pubkey" in r for r in caught.value.reasons)


def test_expired_attestation_is_refused(sim_tee: SimulatedTee, trust: Trust) -> None:
    provider = FakeProvider("ws://127.0.0.1:1", sim_tee)
    request = _request(provider)
    event, container = _attest(provider, request)
    later = datetime.now(UTC) + timedelta(hours=1)
    with pytest.raises(AttestationRefused) as caught:
        _verify(event, request, container.public_key.hex(), trust, now=later)
    assert any("expired" in r for r in caught.value.reasons)


def test_wrong_recipient_model_and_tee_are_all_listed(sim_tee: SimulatedTee, trust: Trust) -> None:
    provider = FakeProvider("ws://127.0.0.1:1", sim_tee)
    request = _request(provider)
    stranger = SecretKey.generate(secrets.token_bytes).public_key.hex()

    def edit(unsigned: UnsignedEvent) -> UnsignedEvent:
        tags = tuple(
            ("p", stranger) if t[0] == "p" else ("tee", "sev-snp") if t[0] == "tee" else t
            for t in unsigned.tags
        )
        return dataclasses.replace(unsigned, tags=tags)

    event, container = _attest(provider, request, edit=edit)
    other_model = _request(provider, model="other")
    with pytest.raises(AttestationRefused) as caught:
        _verify(event, request, container.public_key.hex(), trust)
    reasons = caught.value.reasons
    assert any("addressed to" in r for r in reasons)
    assert any("tee tag" in r for r in reasons)
    assert other_model.model == "other"
    with pytest.raises(AttestationRefused) as caught2:
        _verify(event, other_model, container.public_key.hex(), trust)
    assert any("claims.model.name" in r for r in caught2.value.reasons)


def test_policy_failures_are_listed_one_by_one(sim_tee: SimulatedTee, trust: Trust) -> None:
    provider = FakeProvider("ws://127.0.0.1:1", sim_tee)
    request = _request(provider)
    event, container = _attest(provider, request)
    policy = Policy(measurements=frozenset({bytes(48)}), allow_smt=False)
    with pytest.raises(AttestationRefused) as caught:
        _verify(event, request, container.public_key.hex(), trust, policy=policy)
    policy_reasons = [r for r in caught.value.reasons if r.startswith("policy:")]
    assert len(policy_reasons) == 2, caught.value.reasons


def test_garbage_content_is_refused(sim_tee: SimulatedTee, trust: Trust) -> None:
    provider = FakeProvider("ws://127.0.0.1:1", sim_tee)
    request = _request(provider)
    event, container = _attest(
        provider, request, edit=lambda u: dataclasses.replace(u, content="{not json")
    )
    with pytest.raises(AttestationRefused) as caught:
        _verify(event, request, container.public_key.hex(), trust)
    assert any("does not parse" in r for r in caught.value.reasons)


_GARBAGE_USER = SecretKey(bytes(31) + b"\x05")
_GARBAGE_PROVIDER = SecretKey(bytes(31) + b"\x06").public_key
_GARBAGE_REQUEST = parse_job_request(
    build_job_request(
        requester=_GARBAGE_USER.public_key,
        provider=_GARBAGE_PROVIDER,
        tee="simulated",
        nonce=bytes(32),
        created_at=1,
        params=[("model", "echo")],
    ).sign(_GARBAGE_USER, aux_rand=bytes(32))
)


@settings(max_examples=80, deadline=None)
@given(
    content=st.one_of(
        st.text(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=10), inner, max_size=4)
            ),
            max_leaves=12,
        ).map(json.dumps),
    ),
    tags=st.lists(st.lists(st.text(max_size=70), min_size=1, max_size=3), max_size=6),
)
def test_garbage_attestations_raise_only_attestation_refused(
    content: str, tags: list[list[str]]
) -> None:
    signer = SecretKey(bytes(31) + b"\x08")
    all_tags = (("e", _GARBAGE_REQUEST.id), *(tuple(t) for t in tags))
    event = UnsignedEvent(signer.public_key.hex(), 1, 7100, all_tags, content).sign(
        signer, aux_rand=bytes(32)
    )
    with pytest.raises(AttestationRefused) as caught:
        _verify(event, _GARBAGE_REQUEST, signer.public_key.hex(), Trust())
    assert caught.value.reasons
