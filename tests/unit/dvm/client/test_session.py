"""dvm.client.session against a real relay process and a test-side fake provider/container.

The attack cases publish crafted attestation events to the relay (fake_provider.Tamper) and
check the client refuses with that reason and sends nothing to the container.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from attestation.errors import FetchError
from attestation.simulated import SimulatedTee
from attestation.simulated.chain import SIMULATED_TCB
from attestation.snp.abi import Product
from attestation.snp.crl import CrlMode, CrlPolicy
from attestation.snp.validate import TcbFloor
from attestation.verification import Trust
from dvm.cdvm.refs import (
    LaunchInputs,
    LaunchMeasurement,
    ModelHash,
    ReferenceValues,
    SourceRef,
    build_reference_event,
)
from dvm.client import (
    AttestationRefused,
    Chat,
    ClientTimeout,
    JobMode,
    JobOptions,
    JobSession,
    ProgressListener,
    Step,
    Timeouts,
    submit,
    trust_simulated_roots,
)
from dvm.client.pins import PinKind, Pins
from dvm.client.references import fetch_references
from dvm.nostr import nip44
from dvm.nostr.errors import DecryptionError
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.filters import Filter
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip19 import encode_npub
from dvm.nostr.nip59 import GIFT_WRAP_KIND
from dvm.nostr.nip90 import FeedbackStatus
from dvm.relay import RelayPool
from tests.integration.conftest import RelayProcess
from tests.waiting import wait_for

from .fake_provider import MODEL_SHA256, PINS, FakeProvider, Tamper
from .minted_crl import crl_policy

pytestmark = pytest.mark.relay


async def _only_the_probe_reaches(provider: FakeProvider, timeout_s: float = 10.0) -> None:
    """No wrap reached the container but our probe: wait until the probe arrived, then check.

    The relay delivers in order, so a wrap the client had published (its pool is closed by now)
    would have arrived before the probe: the absence is asserted after a positive fact.
    """
    probe = await provider.probe(provider.containers[0])
    await wait_for(
        lambda: probe in provider.wrap_ids,
        timeout_s=timeout_s,
        what="the probe wrap reaching the container",
    )
    assert provider.wrap_ids == [probe]
    assert provider.wraps_received == 1


def _options(
    relay: RelayProcess, provider: FakeProvider, root: Path | None, **kw: object
) -> JobOptions:
    steps: list[tuple[Step, str]] = kw.pop("steps", [])  # type: ignore[assignment]
    base = {
        "provider": provider.pubkey,
        "relays": (relay.url,),
        "model": "echo",
        "tee": "simulated",
        "trust": trust_simulated_roots([root]) if root else Trust(),
        "timeouts": Timeouts(attestation_s=15, answer_s=15, destroyed_s=15),
        "progress": lambda step, detail: steps.append((step, detail)),
        "pins": PINS,
    }
    base.update(kw)
    return JobOptions(**base)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_oneshot_job_verifies_sends_and_sees_destruction(
    relay: RelayProcess, sim_tee: SimulatedTee, sim_root: Path
) -> None:
    steps: list[tuple[Step, str]] = []
    async with FakeProvider(relay.url, sim_tee) as provider:
        outcome = await submit(
            _options(relay, provider, sim_root, steps=steps), "hello there", identity=None
        )
    assert outcome.answer == "echo: hello there"
    assert outcome.result == "echo: hello there"
    assert outcome.status is FeedbackStatus.SUCCESS
    assert outcome.destroyed
    assert outcome.ok
    assert outcome.container == provider.containers[0]
    assert outcome.verification.simulated
    assert outcome.verification.label == "SIMULATED: not confidential"
    assert [s for s, _ in steps] == list(Step)
    verified = dict(steps)[Step.VERIFIED]
    assert "SIMULATED: not confidential" in verified
    assert "checked:" in verified
    assert provider.inputs == ["hello there"]


@pytest.mark.asyncio
async def test_each_job_has_a_fresh_session_key_and_container(
    relay: RelayProcess, sim_tee: SimulatedTee, sim_root: Path
) -> None:
    identity = SecretKey.generate(secrets.token_bytes)
    async with FakeProvider(relay.url, sim_tee) as provider:
        opts = _options(relay, provider, sim_root)
        seen = []
        for _ in range(2):
            async with Chat(opts, identity=identity) as chat:
                seen.append((chat.session_key.hex(), chat.request.session, chat.verification))
                await chat.send("x")
                await chat.end()
    (s1, tag1, v1), (s2, tag2, v2) = seen
    assert s1 != s2
    assert (tag1, tag2) == (s1, s2)
    assert identity.public_key.hex() not in (s1, s2)
    assert v1.container != v2.container


@pytest.mark.asyncio
async def test_chat_two_messages_then_end(
    relay: RelayProcess, sim_tee: SimulatedTee, sim_root: Path
) -> None:
    async with FakeProvider(relay.url, sim_tee) as provider:
        opts = _options(relay, provider, sim_root, wrap_kind=GIFT_WRAP_KIND)
        async with Chat(opts) as chat:
            first = await chat.send("one")
            second = await chat.send("two " * 20000)  # chunked: over one relay event
            outcome = await chat.end()
    assert first == "echo: one"
    assert second == "echo: " + "two " * 20000
    assert outcome.answers == (first, second)
    assert outcome.result is not None
    assert json.loads(outcome.result) == [first, second]
    assert outcome.ok


@pytest.mark.asyncio
async def test_impostor_attestation_and_feedback_are_ignored(
    relay: RelayProcess, sim_tee: SimulatedTee, sim_root: Path
) -> None:
    tamper = Tamper(impostor_attestation=True, impostor_feedback=True)
    provider = FakeProvider(relay.url, sim_tee, tamper=tamper)
    async with provider, Chat(_options(relay, provider, sim_root)) as chat:
        assert chat.verification.container == provider.containers[0]
        answer = await chat.send("hi")
        ignored = chat.ignored
        await chat.end()
    assert answer == "echo: hi"
    assert ignored.get("feedback not signed by the provider") == 1


_ATTACKS = [
    pytest.param(Tamper(nonce="00" * 32), "claims.nonce", id="wrong-nonce"),
    pytest.param(Tamper(other_job="11" * 32), "job", id="another-job"),
    pytest.param(
        Tamper(provider=SecretKey.generate(secrets.token_bytes).public_key),
        "claims.provider",
        id="another-provider",
    ),
    pytest.param(Tamper(flip_report=True), "signature", id="tampered-report"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("tamper", "reason"), _ATTACKS)
async def test_crafted_attestation_is_refused_and_nothing_is_sent(
    relay: RelayProcess, sim_tee: SimulatedTee, sim_root: Path, tamper: Tamper, reason: str
) -> None:
    async with FakeProvider(relay.url, sim_tee, tamper=tamper) as provider:
        with pytest.raises(AttestationRefused) as caught:
            await submit(_options(relay, provider, sim_root), "secret input")
        await _only_the_probe_reaches(provider)
    assert any(reason in r for r in caught.value.reasons), caught.value.reasons
    assert caught.value.container == provider.containers[0]
    assert "secret input" not in str(caught.value)


@pytest.mark.asyncio
async def test_untrusted_simulated_root_is_refused(
    relay: RelayProcess, sim_tee: SimulatedTee
) -> None:
    async with FakeProvider(relay.url, sim_tee) as provider:
        with pytest.raises(AttestationRefused) as caught:
            await submit(_options(relay, provider, None), "secret input")
        await _only_the_probe_reaches(provider)
    assert any("UntrustedRoot" in r and "SIMULATED" in r for r in caught.value.reasons)


@pytest.mark.asyncio
async def test_simulated_evidence_never_satisfies_a_sev_snp_request(
    relay: RelayProcess, sim_tee: SimulatedTee, sim_root: Path
) -> None:
    async with FakeProvider(relay.url, sim_tee) as provider:
        with pytest.raises(AttestationRefused) as caught:
            await submit(_options(relay, provider, sim_root, tee="sev-snp"), "x")
    assert any("request asked for sev-snp" in r for r in caught.value.reasons)


@pytest.mark.asyncio
async def test_no_provider_times_out_at_the_attestation_step(relay: RelayProcess) -> None:
    absent = SecretKey.generate(secrets.token_bytes)
    opts = JobOptions(
        provider=absent.public_key,
        relays=(relay.url,),
        model="echo",
        tee="simulated",
        timeouts=Timeouts(attestation_s=1.0),
    )
    with pytest.raises(ClientTimeout) as caught:
        await submit(opts, "x")
    assert caught.value.step == "attestation"


@pytest.mark.asyncio
async def test_missing_destruction_is_reported_not_hidden(
    relay: RelayProcess, sim_tee: SimulatedTee, sim_root: Path
) -> None:
    async with FakeProvider(relay.url, sim_tee, tamper=Tamper(skip_success=True)) as provider:
        opts = _options(
            relay, provider, sim_root, timeouts=Timeouts(attestation_s=15, destroyed_s=1)
        )
        outcome = await submit(opts, "x")
    assert outcome.answer == "echo: x"
    assert not outcome.destroyed
    assert not outcome.ok


_IMAGE = "registry.example/cdvm/job@sha256:" + "ab" * 32


def _coco_trust(sim_tee: SimulatedTee) -> Trust:
    """TEST ONLY: the simulated ARK pinned as AMD's Genoa root, so sev-snp items verify."""
    ark = hashlib.sha256(sim_tee.chain.der("ark")).hexdigest()
    return Trust(amd_arks={Product.GENOA: frozenset({ark})})


@pytest.mark.asyncio
async def test_a_coco_job_checks_host_data_and_notes_an_image_accepted_unpinned(
    relay: RelayProcess, sim_tee: SimulatedTee, crl: CrlPolicy
) -> None:
    steps: list[tuple[Step, str]] = []
    tamper = Tamper(coco_image=_IMAGE)
    pins = dataclasses.replace(PINS, accept_unpinned=frozenset({PinKind.IMAGE}))
    async with FakeProvider(relay.url, sim_tee, tamper=tamper) as provider:
        opts = _options(
            relay,
            provider,
            None,
            tee="sev-snp",
            trust=_coco_trust(sim_tee),
            crl=crl,
            steps=steps,
            pins=pins,
        )
        outcome = await submit(opts, "hello")
    assert outcome.answer == "echo: hello"
    verified = [detail for step, detail in steps if step is Step.VERIFIED]
    assert len(verified) == 1
    assert "checked: HOST_DATA = SHA-256 of this job's initdata" in verified[0]
    assert (
        "note: UNPINNED image accepted (--accept-unpinned image): nothing you chose vouches for "
        f"{_IMAGE}" in verified[0]
    )


@pytest.mark.asyncio
async def test_a_coco_job_outside_the_trusted_images_is_refused(
    relay: RelayProcess, sim_tee: SimulatedTee, crl: CrlPolicy
) -> None:
    other = "registry.example/cdvm/job@sha256:" + "cd" * 32
    async with FakeProvider(relay.url, sim_tee, tamper=Tamper(coco_image=_IMAGE)) as provider:
        opts = _options(
            relay,
            provider,
            None,
            tee="sev-snp",
            trust=_coco_trust(sim_tee),
            crl=crl,
            trusted_images=(other,),
        )
        with pytest.raises(AttestationRefused) as caught:
            await submit(opts, "secret input")
        await _only_the_probe_reaches(provider)
    (reason,) = caught.value.reasons
    assert reason.startswith(f"image {_IMAGE} is not pinned: ")


@pytest.mark.asyncio
async def test_a_coco_job_without_pins_is_refused_and_nothing_is_sent(
    relay: RelayProcess, sim_tee: SimulatedTee, crl: CrlPolicy
) -> None:
    async with FakeProvider(relay.url, sim_tee, tamper=Tamper(coco_image=_IMAGE)) as provider:
        opts = _options(
            relay, provider, None, tee="sev-snp", trust=_coco_trust(sim_tee), crl=crl, pins=Pins()
        )
        with pytest.raises(AttestationRefused) as caught:
            await submit(opts, "secret input")
        await _only_the_probe_reaches(provider)
    measurement, image, model = caught.value.reasons
    assert measurement.startswith(f"measurement {sim_tee.measurement.hex()} is not pinned")
    assert f"--trust-image {_IMAGE}" in image
    assert f"--model-sha256 {MODEL_SHA256}" in model
    assert all("cdvm trust add NPUB" in r for r in caught.value.reasons)


@pytest.mark.asyncio
async def test_a_coco_job_whose_vcek_is_revoked_is_refused_and_nothing_is_sent(
    relay: RelayProcess, sim_tee: SimulatedTee, sim_ark_key: rsa.RSAPrivateKey
) -> None:
    revoked = crl_policy(sim_tee, sim_ark_key, [sim_tee.chain.vcek.serial_number])
    pins = dataclasses.replace(PINS, images=frozenset({_IMAGE}))
    async with FakeProvider(relay.url, sim_tee, tamper=Tamper(coco_image=_IMAGE)) as provider:
        opts = _options(
            relay, provider, None, tee="sev-snp", trust=_coco_trust(sim_tee), crl=revoked, pins=pins
        )
        with pytest.raises(AttestationRefused) as caught:
            await submit(opts, "secret input")
        await _only_the_probe_reaches(provider)
    assert any(r.startswith("Revoked: VCEK ") for r in caught.value.reasons), caught.value.reasons
    assert any(r.startswith("revocation: AMD revoked a key") for r in caught.value.reasons)


@pytest.mark.asyncio
async def test_a_coco_job_with_an_unavailable_crl_goes_on_only_when_accepted(
    relay: RelayProcess, sim_tee: SimulatedTee
) -> None:
    def unreachable(url: str) -> bytes:
        raise FetchError(f"cannot reach {url}")

    pins = dataclasses.replace(PINS, images=frozenset({_IMAGE}))
    steps: list[tuple[Step, str]] = []
    async with FakeProvider(relay.url, sim_tee, tamper=Tamper(coco_image=_IMAGE)) as provider:
        accepted = CrlPolicy(CrlMode.ACCEPT_UNAVAILABLE, unreachable)
        opts = _options(relay, provider, None, tee="sev-snp", trust=_coco_trust(sim_tee), pins=pins)
        with pytest.raises(AttestationRefused) as caught:  # the default: require
            await submit(
                dataclasses.replace(opts, crl=CrlPolicy(CrlMode.REQUIRE, unreachable)), "x"
            )
        outcome = await submit(
            dataclasses.replace(opts, crl=accepted, progress=_record(steps)), "hi"
        )
    assert any(r.startswith("CrlUnavailable: ") for r in caught.value.reasons)
    assert outcome.answer == "echo: hi"
    (verified,) = [detail for step, detail in steps if step is Step.VERIFIED]
    assert "revocation not checked: the AMD CRL https://kdsintf.amd.com/vcek/v1/" in verified


def _record(steps: list[tuple[Step, str]]) -> ProgressListener:
    return lambda step, detail: steps.append((step, detail))


def _reference(key: SecretKey, sim_tee: SimulatedTee, floor: TcbFloor) -> Event:
    values = ReferenceValues(
        release="coco-test",
        tee="sev-snp",
        runtime_version="0.1.0",
        images=(_IMAGE,),
        measurements=(
            LaunchMeasurement(
                sim_tee.measurement.hex(),
                Product.GENOA,
                2,
                "EPYC-Genoa",
                LaunchInputs("01" * 32, "02" * 32, None, "04" * 32, 1),
            ),
        ),
        min_tcb=((Product.GENOA, floor),),
        models=(ModelHash("echo", MODEL_SHA256),),
        recipe="test",
        source=SourceRef("https://example.org/cdvm.git", "5" * 40),
    )
    unsigned = build_reference_event(values, publisher=key.public_key, created_at=int(time.time()))
    return unsigned.sign(key, aux_rand=secrets.token_bytes(32))


@pytest.mark.asyncio
@pytest.mark.parametrize(("floor_snp", "ok"), [(SIMULATED_TCB.snp, True), (99, False)])
async def test_a_coco_job_pinned_by_a_trusted_publishers_event_on_the_relay(
    relay: RelayProcess, sim_tee: SimulatedTee, crl: CrlPolicy, floor_snp: int, ok: bool
) -> None:
    publisher = SecretKey.generate(secrets.token_bytes)
    stranger = SecretKey.generate(secrets.token_bytes)
    async with RelayPool([relay.url]) as pool:
        await pool.publish(_reference(publisher, sim_tee, TcbFloor(snp=floor_snp)))
        await pool.publish(_reference(stranger, sim_tee, TcbFloor(snp=0)))
    trusted = frozenset({publisher.public_key.hex()})
    fetched = await fetch_references([relay.url], trusted)
    assert fetched.complete
    assert [r.publisher for r in fetched.references] == [publisher.public_key.hex()]
    pins = Pins(references=fetched.references, trusted_publishers=trusted)
    steps: list[tuple[Step, str]] = []
    async with FakeProvider(relay.url, sim_tee, tamper=Tamper(coco_image=_IMAGE)) as provider:
        opts = _options(
            relay,
            provider,
            None,
            tee="sev-snp",
            trust=_coco_trust(sim_tee),
            crl=crl,
            pins=pins,
            steps=steps,
        )
        if not ok:
            with pytest.raises(AttestationRefused) as caught:
                await submit(opts, "secret input")
            await _only_the_probe_reaches(provider)
            (reason,) = caught.value.reasons
            assert reason.startswith("reported TCB (bl=10 tee=0 snp=23 ucode=84) is below")
            return
        outcome = await submit(opts, "hello")
    assert outcome.answer == "echo: hello"
    npub = encode_npub(publisher.public_key)
    (verified,) = [detail for step, detail in steps if step is Step.VERIFIED]
    for value in ("measurement", "image", "model sha256"):
        assert f"checked: {value} matches reference values published by {npub} (release " in (
            verified
        )
    assert f"meets the minimum Genoa TCB stated by {npub}" in verified
    assert encode_npub(stranger.public_key) not in verified


@pytest.mark.asyncio
async def test_a_given_pool_is_used_and_left_open(
    relay: RelayProcess, sim_tee: SimulatedTee, sim_root: Path
) -> None:
    async with FakeProvider(relay.url, sim_tee) as provider:
        opts = _options(relay, provider, sim_root)
        async with RelayPool([relay.url]) as pool:
            outcome = await submit(opts, "through a shared pool", pool=pool)
            assert outcome.ok
            async with Chat(opts, pool=pool) as chat:
                assert await chat.send("again") == "echo: again"
                await chat.end()
            author = SecretKey.generate(secrets.token_bytes)
            note = UnsignedEvent(author.public_key.hex(), int(time.time()), 1, (), "still open")
            assert (await pool.publish(note.sign(author, aux_rand=bytes(32)))).ok  # not closed
    assert outcome.answer == "echo: through a shared pool"
    assert provider.inputs == ["through a shared pool", "again"]


async def _stored(url: str, event_id: str) -> Event:
    """The event as the relay keeps it, fetched after the job by a fresh connection."""
    async with RelayPool([url]) as pool:
        sub = await pool.subscribe([Filter(ids=(event_id,))])
        assert await sub.wait_eose(timeout_s=10)
        stored = sub.get_nowait()
    assert stored is not None
    return stored


@pytest.mark.asyncio
@pytest.mark.parametrize("keep_readable", [False, True])
async def test_after_the_job_the_stored_result_opens_with_u_only_when_asked(
    relay: RelayProcess, sim_tee: SimulatedTee, sim_root: Path, keep_readable: bool
) -> None:
    identity = SecretKey.generate(secrets.token_bytes)
    async with FakeProvider(relay.url, sim_tee) as provider:
        opts = _options(relay, provider, sim_root, result_to_requester=keep_readable)
        job = JobSession(opts, mode=JobMode.ONESHOT, identity=identity)
        async with job:
            await job.send("hello")
            outcome = await job.finish()
    assert outcome.result == "echo: hello"  # read during the job (with S, or U when asked)
    assert outcome.result_id is not None
    session = job._session  # white box: the key object the job held
    assert session.reveal_bytes() == bytes(32)  # S is wiped on close
    assert identity.reveal_bytes() != bytes(32)  # U is the caller's, kept
    stored = await _stored(relay.url, outcome.result_id)
    conv = nip44.get_conversation_key(identity, PublicKey.from_hex(stored.pubkey))
    if keep_readable:
        assert nip44.decrypt(stored.content, conv) == "echo: hello"
    else:
        with pytest.raises(DecryptionError):
            nip44.decrypt(stored.content, conv)
